"""selflearn.precomputed (task amc): chain from sessions, win/loss accounting, the binary."""

import copy
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from common import app
from selflearn import interpret, precomputed
from selflearn.configs import amc as amc_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMOKE = "selflearn/configs/amc.py:smoke"


def _turn(k, text, t, *, status="ok", barge=False, intent="play_song"):
  return {
    "turn_id": k,
    "timestamp": float(t),
    "utterance_duration": 1.0,
    "asr": {"text": text},
    "nlu": {"intent": intent, "domain": "music"},
    "result": {"status": status},
    "response": {"duration": 2.0},
    "signals": {"barge_in": barge, "barge_in_time": 0.5 if barge else None},
    "truth": {},
  }


def _dialogue(i, turns):
  return {"dialogue_id": f"d{i}", "user_id": "u0", "turns": turns, "truth": {"rephrase_pairs": []}}


def test_chain_from_hand_made_sessions():
  logs = [
    # "play wonder" barged in, rephrased 2 s later as "play thunder", which worked: one session, success.
    _dialogue(0, [_turn(0, "Play  Wonder", 0, barge=True), _turn(1, "play thunder", 4.5)]),
    # "play wonder" alone, no match and no follow-up: a single request absorbed into failure.
    _dialogue(1, [_turn(0, "play wonder", 0, status="no_match")]),
    # "play thunder" alone, no friction ("thank you" is not a request): success.
    _dialogue(2, [_turn(0, "play thunder", 0), _turn(1, "thank you", 60, intent="feedback_positive")]),
  ]
  chain = precomputed.build_chain(logs, None, states="text", pairs_source="gap", rephrase_gap=15.0, stop_gap=8.0)
  assert chain.keys == ["play thunder", "play wonder"] and chain.num_sessions == 1
  w, t = chain.index["play wonder"], chain.index["play thunder"]
  assert chain.Q[w, t] == pytest.approx(0.5) and chain.Q[t, w] == 0
  np.testing.assert_allclose(chain.R[w], [0, 0.5])
  np.testing.assert_allclose(chain.B[[t, w], 0], [1.0, 0.5])
  assert list(chain.support) == [2, 2] and chain.surface[w] == "play wonder"
  rows = precomputed.rewrite_table(
    chain, max_source_success=0.6, min_source_support=1, min_support=1, min_gain=0.2, min_visits=0.0
  )
  assert [(r["source"], r["rewrite"]) for r in rows] == [("play wonder", "play thunder")]
  rows = precomputed.rewrite_table(
    chain, max_source_success=0.6, min_source_support=1, min_support=3, min_gain=0.2, min_visits=0.0
  )
  assert rows == []


def test_chains_from_simulated_traffic_cover_every_request(dialogues, sim_world):
  requests = sum(precomputed.sessions.is_request(t) for d in dialogues for t in d["turns"])
  for pairs_source in precomputed.PAIRS_SOURCES:
    chain = precomputed.build_chain(
      dialogues, sim_world, states="interpretation", pairs_source=pairs_source, rephrase_gap=15.0, stop_gap=8.0
    )
    assert chain.support.sum() == requests
    np.testing.assert_allclose(chain.B.sum(1), 1.0, atol=1e-9)
    assert any(k.startswith("interp:") for k in chain.keys) and any(k.startswith("text:") for k in chain.keys)


def _cases(dialogues, world):
  """A (dialogue, turn) the simulator's rewrite fixes, one that worked as it was, one failing at the back end."""
  fixable = ok = backend = None
  for d in dialogues:
    for i, t in enumerate(d["turns"]):
      tr = t["truth"]
      if fixable is None and tr["rewrite"] and interpret.rewrite_succeeds(world, d, i, tr["rewrite"]):
        fixable = (d, i)
      if ok is None and interpret.original_succeeds(d, i) and precomputed.sessions.is_request(t):
        ok = (d, i)
      if backend is None and tr["failure_point"] == "result" and precomputed.sessions.is_request(t):
        backend = (d, i)
  return fixable, ok, backend


def _isolate(case, k):
  """A copy of the case's dialogue where only the chosen turn carries a recognisable text."""
  d, i = case
  d = copy.deepcopy(d)
  for j, t in enumerate(d["turns"]):
    t["asr"]["text"] = f"case {k}" if j == i else "unrelated"
  return d


def test_win_loss_accounting(dialogues, sim_world):
  fixable, ok, backend = _cases(dialogues, sim_world)
  assert not interpret.original_succeeds(*fixable)
  fix_text = fixable[0]["turns"][fixable[1]]["truth"]["rewrite"]
  ok_text = ok[0]["turns"][ok[1]]["truth"]["utterance"]
  assert precomputed.judge(sim_world, *fixable, fix_text) == "win"
  assert precomputed.judge(sim_world, *ok, "zzz qqq") == "loss"
  assert precomputed.judge(sim_world, *ok, ok_text) == "tie"  # both succeed
  assert precomputed.judge(sim_world, *backend, "zzz qqq") == "tie"  # both fail
  logs = [_isolate(fixable, 0), _isolate(ok, 1), _isolate(backend, 2), _isolate(fixable, 3)]
  table = {"case 0": fix_text, "case 1": "zzz qqq", "case 2": "zzz qqq"}  # case 3 is not triggered
  ev = precomputed.evaluate(sim_world, logs, table.get, bootstrap=20, seed=0)
  assert (ev["triggered"], ev["wins"], ev["losses"], ev["ties"], ev["win_loss"]) == (3, 1, 1, 1, 1.0)
  assert ev["defect_rate_triggered_before"] == pytest.approx(2 / 3)
  assert ev["defect_rate_triggered_after"] == pytest.approx(2 / 3)
  assert ev["labelled_triggered"] == 1 and ev["precision_at_1_exact"] == 1.0
  kind = fixable[0]["turns"][fixable[1]]["truth"]["rewrite_kind"]
  assert ev["by_kind"][kind]["win"] == 1
  before = ev["defect_rate_before"] * ev["requests"]
  assert ev["defect_rate_after"] * ev["requests"] == pytest.approx(before - 1 + 1)


def test_bootstrap_ci():
  same = np.tile([2, 1], (30, 1))
  assert precomputed.bootstrap_ci(same, 200, 0) == [2.0, 2.0]
  mixed = np.array([[3, 0]] * 10 + [[0, 1]] * 10)
  lo, hi = precomputed.bootstrap_ci(mixed, 500, 1)
  assert lo < 3.0 < hi and precomputed.bootstrap_ci(mixed, 500, 1) == [lo, hi]


@pytest.mark.parametrize(
  "field, value",
  [
    ("states", "words"),
    ("pairs_source", "oracle"),
    ("min_gain", 1.5),
    ("min_support", 0),
    ("min_visits", -1.0),
    ("max_source_success", 0.0),
    ("sweep.min_gain", [2.0]),
    ("data.num_dialogues", 0),
  ],
)
def test_validate_config_names_the_bad_field(field, value):
  config = amc_config.get_config("smoke")
  block, _, leaf = field.rpartition(".")
  (config[block] if block else config)[leaf] = value
  with pytest.raises(app.ConfigError) as e:
    precomputed.validate_config(config)
  assert e.value.field == field


def _run(workdir, *overrides, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  cmd = [sys.executable, "-m", "selflearn.main", f"--config={SMOKE}", f"--workdir={workdir}", *overrides]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_binary_smoke_and_identical_rerun(tmp_path):
  workdir = tmp_path / "run"
  proc = _run(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"outputs in {workdir}" in proc.stdout
  results = json.loads((workdir / "results.json").read_text())
  assert results["task"] == "amc" and results["test"]["requests"] > 0
  assert len(results["variants"]) == 4 and results["chain"]["rules"] == len(
    json.loads((workdir / "rewrites.json").read_text())
  )
  before = [(workdir / f).read_text() for f in ("results.json", "results.md", "rewrites.json")]
  proc = _run(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "simulating" not in proc.stdout
  assert [(workdir / f).read_text() for f in ("results.json", "results.md", "rewrites.json")] == before


def test_bad_config_exits_2_naming_the_field(tmp_path):
  workdir = tmp_path / "run"
  proc = _run(workdir, "--config.min_gain=2.0", timeout=120)
  assert proc.returncode == 2, proc.stderr
  assert "config.min_gain" in proc.stderr and "Traceback" not in proc.stderr
  assert not workdir.exists()
