"""nlirl.baselines: the JAX driver agrees with the reference env; the CLI writes its tables; bad flags exit 2."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from nlirl import baselines, envs, evaluation, report, scripted

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "nlirl" / "results" / "baselines"


def _run(*args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "nlirl.baselines", *args]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_driver_matches_the_reference_env():
  split = envs.load_split("val_unseen")
  houses, episodes = envs.load_arrays("val_unseen")
  keep = np.arange(0, 600, 60)
  episodes = jax.tree.map(lambda x: x[keep], episodes)
  tokens = np.asarray(episodes.instructions)
  make = lambda k, text: scripted.InstructionReader(text, memory=True)
  out = baselines.run_agents(houses, episodes, tokens, make)
  env = envs.ReferenceEnv(split.houses)
  vocab = envs.Vocabulary()
  for k in range(len(keep) * 3):
    ep, text = split.episodes[keep[k // 3]], vocab.decode(tokens[k // 3, k % 3])
    agent, obs = make(k, text), env.reset(ep)
    while not env.stopped and env.t < env.horizon:
      obs, _, _ = env.step(agent.act(np.asarray(obs, np.float32)))
    for name, value in env.metrics().items():
      if name in evaluation.METRIC_NAMES:
        np.testing.assert_allclose(out[name][k], value, rtol=1e-5, atol=1e-5, err_msg=name)
  assert out["success"].mean() > 0.6
  assert np.all(out["stops_at_goal"] + out["stops_away"] <= 1)  # one STOP at most, counted where it was taken


def test_random_agents_ignore_shuffled_instructions_and_readers_do_not():
  walk = baselines.evaluate_agent("random_walk", "val_unseen", [0, 1], max_paths=20)
  assert walk["success"]["per_seed"] == walk["sr_shuffled"]["per_seed"] and walk["language_gain"]["mean"] == 0.0
  assert len(walk["success"]["per_seed"]) == 2 and walk["p_stop_at_goal"]["mean"] == 0.0  # it never STOPs
  reader = baselines.evaluate_agent("reader", "val_unseen", [0, 1], max_paths=20)
  assert len(reader["success"]["per_seed"]) == 1  # deterministic: one run
  assert reader["language_gain"]["mean"] > 0.4 and reader["sr_step_by_step"]["mean"] == 1.0


@pytest.mark.parametrize(
  "args, flag",
  [(["--splits=val_seen,val_unknown"], "--splits"), (["--agents=oracle"], "--agents"), (["--seeds=a"], "--seeds")],
)
def test_bad_flags_exit_2_naming_the_flag(tmp_path, args, flag):
  proc = _run(*args, f"--out={tmp_path}", timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert flag in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "results.json").exists()


def test_committed_baselines_render_their_table():
  results = json.loads((COMMITTED / "results.json").read_text())
  rows = results["agents"]
  assert [r["algorithm"] for r in rows] == list(baselines.AGENTS)
  assert results["max_paths"] == 0 and results["seeds"] == [0, 1, 2]
  assert (COMMITTED / "results.md").read_text() == report.table(rows) + "\n" + report.language_tables(rows)
  by_name = {r["algorithm"]: r for r in rows}
  for split in ("val_seen", "val_unseen"):
    assert by_name["random_walk"]["eval"][split]["success"]["episodes"] == 3 * len(envs.load_split(split).episodes)
    floor, ceiling = (by_name[a]["eval"][split]["success"]["mean"] for a in ("random_walk", "reader"))
    assert 0.1 < floor < 0.25 and ceiling > 0.6


@pytest.mark.slow
def test_cli_reproduces_the_committed_baselines(tmp_path):
  """The committed floor and ceiling rows are what `python -m nlirl.baselines` computes (about a minute)."""
  proc = _run(f"--out={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"outputs in {tmp_path}" in proc.stdout
  assert (tmp_path / "results.json").read_text() == (COMMITTED / "results.json").read_text()
  assert (tmp_path / "results.md").read_text() == (COMMITTED / "results.md").read_text()
