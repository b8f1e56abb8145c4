"""The NMF learned-schedule binary: smoke run end to end, resume, re-run, bad configs, identical runs.

One test drives the subprocess runs, overlapped on the 2 cores: the
uninterrupted smoke run; a run with `num_iterations=2` killed once its
evaluation starts (training done, checkpoint committed); its re-run with the
smoke's 4 iterations, which must resume and end with the identical
results.json; and a re-run of the finished smoke workdir, which is skipped.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import app
from common import metrics as metrics_lib
from schedulers.learned import nmf_env, nmf_train
from schedulers.learned.configs import nmf as nmf_config

ROOT = pathlib.Path(__file__).resolve().parents[3]
SMOKE = "schedulers.learned.configs.nmf:smoke"
METHODS = ["policy", "constant_init", "constant", "step", "exponential", "cosine", "bound", "greedy_lr"]


def _cmd(workdir, *overrides):
  return [sys.executable, "-m", "schedulers.learned.nmf_main", f"--config={SMOKE}", f"--workdir={workdir}", *overrides]


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "")  # the test session's compile flags, nothing of the caller's
  return env


def _popen(workdir, *overrides, merge_stderr=False):
  stderr = subprocess.STDOUT if merge_stderr else subprocess.PIPE
  return subprocess.Popen(
    _cmd(workdir, *overrides), cwd=ROOT, env=_env(), text=True, stdout=subprocess.PIPE, stderr=stderr
  )


def _finish(proc, expect=0, timeout=300):
  out, err = proc.communicate(timeout=timeout)
  assert proc.returncode == expect, (err or out)[-3000:]
  return out, err


def run_main(workdir, *overrides, expect=0):
  return _finish(_popen(workdir, *overrides), expect=expect)


def _check_smoke_outputs(workdir, stdout):
  assert f"outputs in {workdir}" in stdout
  results = json.loads((workdir / "results.json").read_text())
  assert results["trained_iterations"] == 4 and results["training_episodes"] > 0
  recorded = json.loads((workdir / "config.json").read_text())
  assert results["config"] == {k: v for k, v in recorded.items() if k != "provenance"}
  assert results["provenance"] == recorded["provenance"]  # common.app adds it to both
  for task in ("synthetic", "digits"):
    summary = results["tasks"][task]
    rows = summary["comparison"]
    assert [r["method"] for r in rows] == METHODS and rows[0]["reference"]
    assert all(r["n"] == 4 and r["nonfinite"] == 0 and r["ratio_low"] <= r["ratio"] <= r["ratio_high"] for r in rows)
    for name in METHODS:
      method = summary["methods"][name]
      assert len(method["final_losses"]) == 4 and all(np.isfinite(method["final_losses"]))
      assert 0.0 <= method["at_clip"] <= 1.0 and len(method["geomean_loss_at_decisions"]) == 4 + 1
    assert summary["methods"]["bound"]["at_clip"] == 1.0  # the clip itself
    assert summary["methods"]["constant_init"]["fraction"] == 0.5 and not summary["methods"]["constant_init"]["tuned"]
    assert all(summary["methods"][n]["fraction"] in (0.5, 2.0) for n in nmf_train.TUNED)
    assert set(summary["tuning"]) == set(nmf_train.TUNED)
    assert len(summary["policy_actions_seed0"]) == 4 and sum(summary["policy_action_counts"]) == 16
  report = (workdir / "results.md").read_text()
  assert "## Synthetic held-out problems" in report and "## Digits NMF" in report
  assert "| **policy** |" in report and "2 · η_max" in report
  for name in ("lr_synthetic", "loss_synthetic", "lr_digits", "loss_digits", "agent"):
    assert (workdir / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
  assert [r["step"] for r in metrics_lib.read_metrics(workdir)] == [2, 4]


def test_smoke_run_and_rerun(tmp_path):
  smoke = tmp_path / "smoke"
  out, err = _finish(_popen(smoke))
  assert err == ""
  _check_smoke_outputs(smoke, out)
  before = (smoke / "results.json").read_bytes()
  out, err = run_main(smoke)
  assert "is up to date" in out and err == ""
  assert (smoke / "results.json").read_bytes() == before


@pytest.mark.opt
@pytest.mark.slow  # two more smoke-sized runs (the kill/resume contract; the default tier runs the smoke once)
def test_killed_run_resumes_to_the_same_results(tmp_path):
  smoke, split = tmp_path / "smoke", tmp_path / "split"
  full = _popen(smoke)
  part = _popen(split, "--config.num_iterations=2", merge_stderr=True)
  seen = []
  for line in part.stdout:  # training has ended (and checkpointed) once evaluation starts
    seen.append(line)
    if line.startswith("evaluating on"):
      break
  part.send_signal(signal.SIGKILL)
  part.communicate()
  assert seen and seen[-1].startswith("evaluating on"), "".join(seen)[-3000:]
  assert not (split / "results.json").exists()
  resumed = _popen(split)  # the smoke's 4 iterations: resumes from iteration 2, then evaluates
  _finish(full)
  out, _ = _finish(resumed)
  assert "resuming the agent from iteration 2 of 4" in out
  assert json.loads((split / "results.json").read_text()) == json.loads((smoke / "results.json").read_text())
  assert metrics_lib.read_metrics(split) == metrics_lib.read_metrics(smoke)


def test_bad_config_exits_2_naming_the_field(tmp_path):
  workdir = tmp_path / "bad"
  _, err = run_main(workdir, "--config.env.clip_c=-1.0", expect=2)
  lines = err.strip().splitlines()
  assert len(lines) == 1 and "config.env.clip_c" in lines[0], err
  assert not workdir.exists()


@pytest.mark.parametrize(
  "field, value",
  [
    ("env.batch_size", 100),
    ("env.multipliers", (1.0,)),
    ("ppo.num_minibatches", 3),
    ("ppo.discount", 1.5),
    ("optimizer.learning_rate", 0.0),
    ("num_iterations", 3),
    ("eval.seed", 0),
    ("eval.tuning_seed", 1),
    ("eval.num_seeds", 1),
    ("eval.lr_fractions", ()),
    ("eval.digits_batch_size", 200),
    ("baselines.step_factor", 1.5),
    ("baselines.greedy.factor", 2.0),
  ],
)
def test_validate_config_names_the_field(field, value):
  config = nmf_config.get_config("smoke")
  *path, leaf = field.split(".")
  node = config
  for part in path:
    node = node[part]
  node[leaf] = value
  with pytest.raises(app.ConfigError) as error:
    nmf_train.validate_config(config)
  assert error.value.field == field


@pytest.mark.parametrize("variant", list(nmf_config.VARIANTS))
def test_every_variant_validates(variant):
  nmf_train.validate_config(nmf_config.get_config(variant))


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
def test_evaluation_pairs_are_identical_runs():
  """The env's 'keep' policy (lr_cap = inf) is the constant baseline at init_lr_fraction, bitwise, step
  for step; so is a GreedyLR that never moves (huge patience): same problem, init, minibatches and clip."""
  env_config = nmf_env.make_nmf_config(
    m=12, n=16, rank=3, batch_size=4, steps_per_decision=3, num_decisions=4, clip_c=0.9, lr_cap=float("inf")
  )
  keys = jax.random.split(jax.random.PRNGKey(5), 3)
  keep = env_config.multipliers.index(1.0)
  policy, actions = jax.device_get(nmf_train.run_policy(env_config, lambda obs: jnp.int32(keep), keys))
  settings = nmf_train.BaselineSettings(greedy={"patience": 10**6})
  kinds = [nmf_train.KINDS.index("constant")] * 3 + [nmf_train.KINDS.index("greedy_lr")] * 3
  base = jax.device_get(nmf_train.run_baselines(env_config, settings, kinds, [0.5] * 6, jnp.tile(keys, (2, 1))))
  assert np.all(actions == keep)
  for name in ("loss", "lr", "eta_max"):
    ours, theirs = getattr(policy, name), getattr(base, name)
    np.testing.assert_array_equal(theirs[:3], ours, err_msg=name)
    np.testing.assert_array_equal(theirs[3:], theirs[:3], err_msg=name)
  lr0 = policy.lr[:, :1]
  assert np.any(policy.lr < lr0 * (1 - 1e-6))  # the per-step clip bound on some steps: the test covers it
  assert np.all(policy.lr <= 0.9 * policy.eta_max * (1 + 1e-6))
