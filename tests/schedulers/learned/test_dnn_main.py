"""The learned DNN-schedule binary: smoke run, exported policy, resume, bad input."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

import schedulers
from common import app
from common import metrics as metrics_lib
from schedulers.learned import dnn_env, dnn_train
from schedulers.learned import policy as policy_lib
from schedulers.learned.configs import dnn as dnn_config
from schedulers.objectives import readers as objective_readers

ROOT = pathlib.Path(__file__).resolve().parents[3]
SMOKE = "schedulers.learned.configs.dnn:smoke"
METHODS = ["learned", "constant", "step", "exponential", "cosine", "greedy_lr", "grid_search"]


def _run(workdir, *overrides, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "")  # the test session's compile flags, nothing of the caller's
  cmd = [sys.executable, "-m", "schedulers.learned.dnn_main", f"--config={SMOKE}", f"--workdir={workdir}", *overrides]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("dnn_smoke")
  proc = _run(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def test_smoke_writes_results_plots_and_a_deployable_policy(smoke_run):
  workdir, proc = smoke_run
  assert proc.stderr == ""
  assert f"outputs in {workdir}" in proc.stdout
  results = json.loads((workdir / "results.json").read_text())
  assert [row["method"] for row in results["rows"]] == METHODS
  assert all(np.isfinite(row["mean"]) for row in results["rows"])
  config = dnn_config.get_config("smoke")
  episodes = config.num_iterations * config.ppo.num_envs * config.ppo.unroll_length // config.env.num_decisions
  assert results["grid"]["agent_episodes"] == episodes
  assert results["grid"]["runs"] <= episodes  # the grid search costs no more than the agent's training
  assert "| **learned** |" in (workdir / "results.md").read_text()
  measured = objective_readers.ppo(workdir)  # the GreedyLR-objectives grid reads these files
  assert measured["neg_heldout_loss"] == [-results["rows"][0]["mean"]]
  assert all(np.isfinite(v[0]) for v in measured.values())
  agent_rows = [r for r in metrics_lib.read_metrics(workdir) if "agent/learning_rate" in r]
  assert agent_rows and all(
    0 < r["agent/learning_rate"] <= config.agent_optimizer.learning_rate * (1 + 1e-6) for r in agent_rows
  )
  for name in ("schedules.png", "val_loss.png"):
    assert (workdir / "plots" / name).read_bytes()[:4] == b"\x89PNG"
  # The exported policy, read back from its file, reproduces the evaluated run.
  policy = policy_lib.load_policy(workdir / "policy")
  task = dnn_env.make_dnn_task(**dnn_train._env_kwargs(config))
  key = dnn_train._keys(config.eval.seed, 1)[0]
  record = jax.jit(lambda k: task.run_tail(k, schedulers.learned_schedule(policy)))(key)
  np.testing.assert_allclose(record.lrs, results["curves"]["learned"]["lr_seed0"], rtol=1e-6)


@pytest.mark.slow
def test_rerun_resumes_and_reevaluates_identically(smoke_run):
  workdir, _ = smoke_run
  before = json.loads((workdir / "results.json").read_text())
  proc = _run(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "resuming the agent from iteration 4" in proc.stdout
  assert json.loads((workdir / "results.json").read_text())["rows"] == before["rows"]
  proc = _run(workdir, "--config.num_iterations=6")  # a longer budget continues the agent
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads((workdir / "results.json").read_text())["agent"]["iterations"] == 6


@pytest.mark.parametrize(
  "field, value",
  [
    ("eval.num_seeds", 1),
    ("env.initial_lr", 5.0),
    ("env.multipliers", (1.0,)),
    ("env.steps_per_decision", 0),
    ("ppo.num_minibatches", 3),
    ("ppo.clip_eps", -0.1),
    ("num_iterations", 5),
    ("eval.grid_families", ("linear",)),
    ("eval.confidence", 1.5),
    ("agent_optimizer.name", "lion"),
  ],
)
def test_bad_config_names_the_field(field, value):
  config = dnn_config.get_config("smoke")
  block = config
  *parents, name = field.split(".")
  for part in parents:
    block = block[part]
  block[name] = value
  with pytest.raises(app.ConfigError) as error:
    dnn_train.validate_config(config)
  assert error.value.field == field


def test_bad_config_exits_2_with_one_line_before_writing(tmp_path):
  proc = _run(tmp_path / "run", "--config.env.initial_lr=5.0", timeout=120)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "env.initial_lr" in lines[0], proc.stderr
  assert not (tmp_path / "run").exists()


SHIPPED = ROOT / "schedulers" / "learned" / "results" / "dnn"


def test_shipped_policy_reproduces_its_committed_evaluation():
  """The shipped policy (package data) replays held-out run 0 of the committed results."""
  results = json.loads((SHIPPED / "results.json").read_text())
  policy = policy_lib.shipped_policy()
  config = dnn_config.get_config()
  task = dnn_env.make_dnn_task(**dnn_train._env_kwargs(config))
  assert policy.spec.controller == task.controller
  key = dnn_train._keys(config.eval.seed, 1)[0]
  record = jax.jit(lambda k: task.run_tail(k, schedulers.learned_schedule(policy)))(key)
  np.testing.assert_allclose(record.lrs, results["curves"]["learned"]["lr_seed0"], rtol=1e-5)
  rows = {row["method"]: row for row in results["rows"]}
  assert set(rows) == set(METHODS)
