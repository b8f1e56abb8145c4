"""The open world checked against its config: recurrence, user activity, signal strength, friction, drift.

Statistics of one small generated log (1,500 dialogues over a 300-song
catalogue) are compared with what the config states, with tolerances of
about four binomial standard errors.
"""

import collections
import copy
import dataclasses
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from selflearn.data import schema, splits
from selflearn.evaluation import recurrence
from selflearn.sim import simulator
from selflearn.sim import world as world_lib

N = 1500
SMALL = dict(seed=5, num_users=300, catalogue_size=300, head_fraction=0.2)


@pytest.fixture(scope="module")
def open_config():
  return simulator.preset("open_world", **SMALL)


@pytest.fixture(scope="module")
def open_world(open_config):
  return world_lib.make_world_for(open_config)


@pytest.fixture(scope="module")
def open_log(open_config, open_world):
  return list(simulator.generate(open_config, N, world=open_world))


def _turns(log):
  return [t for d in log for t in d["turns"]]


def test_records_are_schema_2_and_deterministic(open_config, open_world, open_log):
  for d in open_log[:200]:
    schema.validate(d)
    assert d["schema_version"] == 2
  again = list(simulator.generate(open_config, 5, start=40, world=open_world))
  assert again == open_log[40:45]


def test_schema_2_blocks_are_optional(open_log):
  d = copy.deepcopy(open_log[0])
  del d["truth"]
  for t in d["turns"]:
    del t["truth"]
  schema.validate(d)  # a production log: no ground truth
  d["annotations"] = [
    {
      "annotator": "a1",
      "turns": [{"turn_id": 0, "segment": "B", "intent": None, "failure_point": "asr", "defect": True}],
      "goals": [],
    }
  ]
  schema.validate(d)
  d["annotations"][0]["turns"][0]["turn_id"] = 99
  with pytest.raises(ValueError, match=r"annotations\[0\].turns\[0\].turn_id"):
    schema.validate(d)
  v1 = copy.deepcopy(open_log[0])
  v1["schema_version"] = 1
  del v1["truth"]
  with pytest.raises(ValueError, match="truth: required in schema version 1"):
    schema.validate(v1)


def test_each_confidence_alone_has_the_stated_auc_whatever_failed(open_config, open_log):
  turns = _turns(open_log)
  y = np.array([t["truth"]["defect"] for t in turns])
  fp = np.array([t["truth"]["failure_point"] for t in turns])
  for name, get in {
    "asr": lambda t: t["asr"]["confidence"],
    "nlu": lambda t: t["nlu"]["confidence"],
    "er": lambda t: t["er"]["score"],
  }.items():
    s = np.array([get(t) for t in turns])
    assert abs(roc_auc_score(y, -s) - open_config.signal_auc) < 0.04, name
    # Class independence: the ASR confidence tells an entity failure as well as an ASR failure.
    by_class = {}
    for c in ("asr", "entity"):
      keep = (fp == c) | (fp == "correct")
      by_class[c] = roc_auc_score(fp[keep] == c, -s[keep])
    assert abs(by_class["asr"] - by_class["entity"]) < 0.08, (name, by_class)


def test_signal_strength_is_a_knob(open_config, open_world):
  flat = dataclasses.replace(open_config, signal_auc=0.5)
  turns = _turns(simulator.generate(flat, 600, world=open_world))
  y = [t["truth"]["defect"] for t in turns]
  assert abs(roc_auc_score(y, [-t["asr"]["confidence"] for t in turns]) - 0.5) < 0.05


def test_nbest_does_not_leak_asr_errors(open_log):
  lengths = collections.defaultdict(list)
  true_in_nbest = 0
  for t in _turns(open_log):
    err = t["truth"]["failure_point"] == "asr"
    lengths[err].append(len(t["asr"]["nbest"]))
    true_in_nbest += err and any(n["text"] == t["truth"]["utterance"] for n in t["asr"]["nbest"])
  assert abs(np.mean(lengths[True]) - np.mean(lengths[False])) < 0.15
  assert true_in_nbest / len(lengths[True]) < 0.1


def test_recurrence_of_defective_test_requests_is_at_most_half(open_log, dialogues):
  train, _, test = splits.temporal_split(open_log)
  r = recurrence.recurrence(train, test)
  assert r["defective"] > 50
  assert r["defective_true_text_seen"] <= 0.5
  assert r["asr_text_seen"] < r["true_text_seen"] < 0.7
  closed = recurrence.recurrence(dialogues[:480], dialogues[480:])  # the closed world recurs almost entirely
  assert closed["true_text_seen"] > 0.8


def test_tail_share_lowers_recurrence(open_config, open_world):
  def media(truth):
    return truth["domain"] in ("music", "video", "books")

  seen = {}
  for share in (0.0, 1.0):
    log = list(simulator.generate(dataclasses.replace(open_config, tail_share=share), 1000, world=open_world))
    seen[share] = recurrence.recurrence(*splits.temporal_split(log)[::2], where=media)["true_text_seen"]
  assert seen[1.0] < seen[0.0] - 0.05, seen


def test_user_activity_is_zipf(open_config, open_log):
  counts = collections.Counter(d["user_id"] for d in open_log)
  per_user = np.array(sorted(counts.values()))
  assert np.median(per_user) <= 5 and np.mean(per_user <= 5) > 0.7
  w = np.arange(1, open_config.num_users + 1, dtype=float) ** -open_config.activity_exponent
  p0 = w[0] / w.sum()
  top = counts["u00000"] / N
  assert abs(top - p0) < 4 * np.sqrt(p0 * (1 - p0) / N), (top, p0)


def test_friction_after_first_time_success_has_the_stated_rates(open_config, open_log):
  n = stop = neg = barge = 0
  for d in open_log:
    for g in d["truth"]["goals"]:
      if not g["success"] or len(g["turn_ids"]) < 1:
        continue
      first = d["turns"][g["turn_ids"][0]]
      if first["truth"]["failure_point"] != "correct":
        continue
      n += 1
      barge += first["signals"]["barge_in"]
      side = [d["turns"][i]["truth"]["intent"] for i in g["turn_ids"][1:]]
      stop += "stop" in side
      neg += "feedback_negative" in side
  for observed, rate in (
    (barge, open_config.success_barge_in_rate),
    (stop, open_config.success_stop_rate),
    (neg, open_config.success_negative_rate),
  ):
    assert abs(observed / n - rate) < 4 * np.sqrt(rate * (1 - rate) / n) + 0.01, (observed / n, rate)


def test_personal_errors_and_releases(open_config, open_world, open_log):
  kinds = collections.Counter(t["truth"]["rewrite_kind"] for t in _turns(open_log))
  assert kinds["personal"] > 0 and kinds["global"] > 0 and kinds["user_asr"] > 0
  songs = open_world.open.catalogues["song"]
  release = {f"{t} by {a}": r for t, a, r in zip(songs.names, songs.artists, songs.release)}
  late = 0
  for d in open_log:
    day = int((d["start_time"] - simulator.BASE_TIME) // 86400)
    for g in d["truth"]["goals"]:
      if g["intent"] == "play_song":
        assert release[g["values"]["song"]] <= day
        late += release[g["values"]["song"]] > 0
  assert late > 0  # entities released after day 0 are asked for


def test_asr_update_on_the_drift_day(open_config, open_world):
  early, late = open_world.asr_confusions, open_world.open.late_confusions
  kept = len(set(early) & set(late)) / len(early)
  assert abs(kept - (1 - open_config.drift_share)) < 0.1
  assert set(late) - set(early)  # the update introduces confusions of its own


def test_closed_world_preset_is_the_original(sim_config, sim_world):
  assert sim_config.world == "closed" and sim_config.systematic_fraction == 0.5
  # The first 30 dialogues of the shared fixture's world, byte for byte as the simulator wrote them
  # before the open world existed (schema_version aside): every published closed-world result stands.
  digest = hashlib.sha256()
  for d in simulator.generate(sim_config, 30, world=sim_world):
    d.pop("schema_version")
    digest.update(json.dumps(d, sort_keys=True).encode())
  assert digest.hexdigest() == "b924f1f9dbb6f795c0f2d19b3b940d1ccc03fa41fe952ddb9beacf4dd2182416"


def test_simulate_binary_writes_schema_2(tmp_path):
  out = tmp_path / "logs.jsonl"
  args = ["--num_users=50", "--set=catalogue_size=100", "--set=head_fraction=0.2", "--num_dialogues=30", "--validate"]
  proc = subprocess.run(
    [sys.executable, "-m", "selflearn.simulate", f"--out={out}", *args], capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 0, proc.stderr
  header, *rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert len(rows) == 30 and {r["schema_version"] for r in rows} == {2}
  h = header["log_header"]  # the first line: the simulator's seed, config and its hash
  assert (h["schema_version"], h["sim_seed"], h["sim_config"]["num_users"], h["sim_config"]["catalogue_size"]) == (
    2,
    0,
    50,
    100,
  )
  bad = subprocess.run(
    [sys.executable, "-m", "selflearn.simulate", f"--out={out}", "--set=tail_share=2"],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert bad.returncode == 2 and "tail_share" in bad.stderr and "Traceback" not in bad.stderr
