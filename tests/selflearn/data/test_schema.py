"""The log schema: validation messages, loader errors naming file:line, the skip flag."""

import copy
import dataclasses
import json

import pytest

from selflearn.data import logs, schema
from selflearn.sim import simulator


def _write(path, rows):
  with open(path, "w") as f:
    for r in rows:
      f.write((r if isinstance(r, str) else schema.dumps(r)) + "\n")
  return path


@pytest.mark.parametrize(
  "mutate, message",
  [
    (lambda d: d.pop("user_id"), "user_id: missing field"),
    (lambda d: d.update(extra=1), "extra: unknown field"),
    (lambda d: d.update(schema_version=3), "schema_version: 3 is not supported"),
    (lambda d: d["turns"][0]["asr"].update(confidence=1.5), r"turns\[0\].asr.confidence: 1.5 is outside"),
    (lambda d: d["turns"][0]["asr"].update(confidence=True), r"turns\[0\].asr.confidence: expected a finite number"),
    (lambda d: d["turns"][0].update(turn_id=5), r"turns\[0\].turn_id: expected 0"),
    (lambda d: d["turns"][0]["truth"].update(failure_point="nlu"), r"failure_point: 'nlu', but the first"),
    (lambda d: d["turns"][0]["truth"]["tags"].append("O"), r"turns\[0\].truth.tags"),
    (lambda d: d["turns"][0]["result"].update(status="weird"), "is not one of"),
    (lambda d: d["truth"]["goals"][0]["turn_ids"].append(99), r"truth.goals\[0\].turn_ids"),
  ],
)
def test_validate_names_the_field(dialogues, mutate, message):
  d = copy.deepcopy(dialogues[0])
  mutate(d)
  with pytest.raises(ValueError, match=message):
    schema.validate(d)


def test_bad_rephrase_pair_is_rejected(dialogues):
  d = copy.deepcopy(next(d for d in dialogues if d["truth"]["rephrase_pairs"]))
  d["truth"]["rephrase_pairs"][0]["source_turn"] = d["truth"]["rephrase_pairs"][0]["target_turn"]
  with pytest.raises(ValueError, match=r"rephrase_pairs\[0\]"):
    schema.validate(d)


def test_loader_error_names_file_and_line(tmp_path, dialogues):
  bad = copy.deepcopy(dialogues[1])
  bad["turns"][0]["wake"]["score"] = "high"
  path = _write(tmp_path / "logs.jsonl", [dialogues[0], bad, dialogues[2]])
  with pytest.raises(logs.LogFormatError) as e:
    logs.load_logs(path)
  assert str(e.value).startswith(f"{path}:2: turns[0].wake.score: expected a finite number")
  assert e.value.line == 2


@pytest.mark.parametrize("line, message", [("{not json", "not JSON"), ("", "empty line"), ("[1, 2]", "JSON object")])
def test_loader_rejects_broken_lines(tmp_path, dialogues, line, message):
  path = _write(tmp_path / "logs.jsonl", [dialogues[0], line])
  with pytest.raises(logs.LogFormatError, match=f":2: .*{message}"):
    logs.load_logs(path)


def test_skip_flag_skips_and_counts(tmp_path, dialogues):
  bad = copy.deepcopy(dialogues[1])
  del bad["turns"]
  path = _write(tmp_path / "logs.jsonl", [dialogues[0], bad, "{oops", dialogues[2]])
  rows, stats = logs.load_logs(path, skip_invalid=True)
  assert [r["dialogue_id"] for r in rows] == [dialogues[0]["dialogue_id"], dialogues[2]["dialogue_id"]]
  assert stats.rows == 4 and stats.skipped == 2
  assert stats.errors[0].startswith(f"{path}:2: turns: missing field") and f"{path}:3:" in stats.errors[1]


def test_iter_logs_streams(tmp_path, dialogues):
  path = _write(tmp_path / "logs.jsonl", [dialogues[0], "{broken"])
  it = logs.iter_logs(path)
  assert next(it)["dialogue_id"] == dialogues[0]["dialogue_id"]  # the good row arrives before the bad one is read
  with pytest.raises(logs.LogFormatError):
    next(it)


def test_round_trip_is_exact(tmp_path, dialogues):
  path = _write(tmp_path / "logs.jsonl", dialogues[:20])
  rows, _ = logs.load_logs(path)
  assert rows == json.loads(json.dumps(dialogues[:20]))


def test_a_header_line_is_checked_and_skipped(tmp_path, dialogues, sim_config):
  path = tmp_path / "logs.jsonl"
  logs.write_logs(str(path), dialogues[:5], progress=False, header=simulator.header(sim_config))
  rows, stats = logs.load_logs(path)
  assert rows == json.loads(json.dumps(dialogues[:5])) and stats.rows == 5  # the header is not a row
  header = logs.read_header(path)
  assert header["sim_seed"] == sim_config.seed == 3 and header["sim_config"]["num_users"] == 40
  assert header["sim_config_hash"] == schema.config_hash(dataclasses.asdict(sim_config))
  assert logs.read_header(_write(tmp_path / "plain.jsonl", dialogues[:2])) is None  # a log without a header


@pytest.mark.parametrize(
  "mutate, line, message",
  [
    (lambda h, lines: h["log_header"].update(sim_seed=4), 1, "log_header.sim_seed: 4, but its sim_config has seed 3"),
    (lambda h, lines: h["log_header"]["sim_config"].update(num_users=41), 1, "log_header.sim_config_hash: .* is not"),
    (lambda h, lines: h["log_header"].pop("producer"), 1, "log_header.producer: missing field"),
    (lambda h, lines: lines.insert(1, lines[0]), 2, "log_header: a header must be the file's first line"),
  ],
)
def test_a_bad_header_names_file_line_and_field(tmp_path, dialogues, sim_config, mutate, line, message):
  header = simulator.header(sim_config)
  lines = [header, *dialogues[:2]]
  mutate(header, lines)
  path = _write(tmp_path / "logs.jsonl", lines)
  with pytest.raises(logs.LogFormatError, match=f"{path}:{line}: {message}"):
    logs.load_logs(path)
  if line == 1:
    with pytest.raises(logs.LogFormatError, match=f"{path}:1: {message}"):
      logs.read_header(path)
