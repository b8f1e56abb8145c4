"""The split reader: two streaming passes, the same splits as reading the whole log, bounded memory."""

import copy
import json
import pathlib
import tracemalloc

import pytest

from selflearn.data import contract, logs, schema, splits
from selflearn.sim import simulator

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "handwritten_log.jsonl"


def _write(path, rows):
  with open(path, "w") as f:
    for r in rows:
      f.write((r if isinstance(r, str) else schema.dumps(r)) + "\n")
  return path


def _whole_log_split(path, *, split, val_fraction=0.1, test_fraction=0.2, skip_invalid=False):
  """The reference: the whole log in memory, then cut (what `read_split` did before it streamed)."""
  rows, stats = logs.load_logs(path, skip_invalid=skip_invalid)
  if split == "temporal":
    return splits.temporal_split(rows, train_days=60, val_days=10), stats
  n_train, n_val, _ = splits.split_sizes(len(rows), val_fraction=val_fraction, test_fraction=test_fraction)
  return (rows[:n_train], rows[n_train : n_train + n_val], rows[n_train + n_val :]), stats


@pytest.mark.parametrize("split", splits.SPLITS)
def test_streamed_split_equals_the_whole_log_split(tmp_path, dialogues, sim_config, split):
  bad = copy.deepcopy(dialogues[3])
  bad["turns"][0]["wake"]["score"] = "high"
  rows = [simulator.header(sim_config), *dialogues[:3], bad, "{oops", *dialogues[4:200]]
  path = _write(tmp_path / "logs.jsonl", rows)
  d = splits.read_split(path, val_fraction=0.1, test_fraction=0.2, skip_invalid=True, split=split)
  (train, val, test), stats = _whole_log_split(path, split=split, skip_invalid=True)
  assert (d.train, d.val, d.test) == (train, val, test) and len(train) * len(val) * len(test) > 0
  assert (d.skipped, d.skipped_errors) == (2, stats.errors) and d.skipped_errors[0].startswith(f"{path}:5: ")
  routed = [(p, r["dialogue_id"]) for p, r in splits.iter_routed(splits.plan_split(path, val_fraction=0.1,
            test_fraction=0.2, skip_invalid=True, split=split))]  # fmt: skip
  assert routed == [(p, r["dialogue_id"]) for p, part in enumerate((train, val, test)) for r in part] or (
    split == "temporal"  # by day, the splits interleave in log order
    and sorted(routed) == sorted((p, r["dialogue_id"]) for p, part in enumerate((train, val, test)) for r in part)
  )


def test_a_bad_row_still_names_file_and_line(tmp_path, dialogues):
  path = _write(tmp_path / "logs.jsonl", [dialogues[0], dialogues[1], "[1, 2]"])
  with pytest.raises(logs.LogFormatError, match=f"{path}:3: expected a JSON object"):
    splits.read_split(path, val_fraction=0.1, test_fraction=0.2)


def test_contract_split_streams_the_same_sessions():
  d = splits.read_contract_split(FIXTURE, val_fraction=0.1, test_fraction=0.2)
  sessions = [contract.to_dialogue(s) for s in contract.iter_sessions(FIXTURE)]
  n_train, n_val, _ = splits.split_sizes(len(sessions), val_fraction=0.1, test_fraction=0.2)
  assert d.train == sessions[:n_train] and d.val == sessions[n_train : n_train + n_val]
  assert d.test == sessions[n_train + n_val :] and d.report == contract.scan(FIXTURE).report()


def test_a_log_that_changes_between_the_passes_is_refused(tmp_path, dialogues):
  path = _write(tmp_path / "logs.jsonl", dialogues[:10])
  plan = splits.plan_split(path, val_fraction=0.1, test_fraction=0.2)
  _write(path, dialogues[:12])
  with pytest.raises(ValueError, match="changed while being read"):
    list(splits.iter_routed(plan))


def _peak_bytes(path, kind):
  """Peak traced allocation of planning and routing a log (the routed dialogues counted, then dropped)."""
  tracemalloc.start()
  try:
    plan = splits.plan_split(path, val_fraction=0.1, test_fraction=0.2, kind=kind)
    counts = [0, 0, 0]
    for part, _ in splits.iter_routed(plan):
      counts[part] += 1
    return tracemalloc.get_traced_memory()[1], counts
  finally:
    tracemalloc.stop()


def test_reading_a_split_holds_one_dialogue_not_the_log(tmp_path, dialogues):
  """Six times the log, about the same peak: the passes never hold more than one dialogue (and a session)."""
  small = _write(tmp_path / "small.jsonl", dialogues[:12])
  big = [dict(d, dialogue_id=f"{d['dialogue_id']}-{k}") for k in range(6) for d in dialogues[:12]]
  large = _write(tmp_path / "large.jsonl", big)
  log_bytes = large.stat().st_size
  peak_small, counts_small = _peak_bytes(small, "dialogues")
  peak_large, counts_large = _peak_bytes(large, "dialogues")
  assert sum(counts_small) == 12 and counts_large == [51, 7, 14]
  assert peak_large < 1.5 * peak_small + 64 * 1024, (peak_small, peak_large)
  assert peak_large < log_bytes, (peak_large, log_bytes)  # the parsed log would take several times its file size
  rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
  contract_big = [dict(r, session_id=f"{r['session_id']}-{k}") for k in range(8) for r in rows]
  peak_c_small, _ = _peak_bytes(FIXTURE, "contract")
  peak_c_large, counts = _peak_bytes(_write(tmp_path / "c.jsonl", [json.dumps(r) for r in contract_big]), "contract")
  assert sum(counts) == 8 * 42
  # Session ids are kept (to check sessions are contiguous), so a little growth: far below the rows themselves.
  assert peak_c_large < 2 * peak_c_small + 64 * 1024, (peak_c_small, peak_c_large)
