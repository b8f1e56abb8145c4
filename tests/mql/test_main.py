"""The MQL binary: smoke run and outputs, kill-and-resume, bad input, every family, 8 devices vs 1."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from common import app
from common import metrics as metrics_lib
from mql import envs, train
from mql.configs import default as default_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
BRAX_FAMILIES = [name for name in default_config.FAMILY_NAMES if name != "point-robot"]


def _run(workdir, *args, variant="smoke", env_extra=None, timeout=900):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "")  # the test session's compile flags, nothing of the caller's
  env.update(env_extra or {})
  cmd = [sys.executable, "-m", "mql.main", f"--config=mql.configs.default:{variant}", f"--workdir={workdir}", *args]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_smoke_binary_writes_results_plots_and_tasks(tmp_path):
  workdir = tmp_path / "run"
  proc = _run(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"outputs in {workdir}" in proc.stdout
  config = default_config.get_config("smoke")
  results = json.loads((workdir / "results.json").read_text())
  k = config.adaptation.num_eval_episodes
  assert np.asarray(results["per_task"]["before"]).shape == (config.num_test_tasks, k)
  assert np.asarray(results["per_task"]["after"]).shape == (config.num_test_tasks, k)
  assert np.asarray(results["per_task"]["after1"]).shape == (config.num_test_tasks, k)
  assert k >= 5 and np.all(np.isfinite(results["per_task"]["after"]))
  summary = results["summary"]
  np.testing.assert_allclose(summary["return_after1_mql"], np.mean(results["per_task"]["after1"]), rtol=1e-6)
  for name in ("actor_distance_stage1", "critic_distance_stage1", "actor_distance", "critic_distance"):
    assert np.asarray(results["per_task"][name]).shape == (config.num_test_tasks,)
    assert summary[name] > 0, name
  # Adaptation at meta-training's final effective rate (the last logged one).
  last_rate = [r["actor_learning_rate"] for r in metrics_lib.read_metrics(workdir) if "actor_learning_rate" in r][-1]
  np.testing.assert_allclose(summary["actor_learning_rate"], last_rate, rtol=1e-6)
  assert summary["env_steps"] == config.num_iterations * config.num_envs * config.td3.steps_per_iteration
  assert summary["updates_per_transition"] == summary["updates"] / summary["env_steps"] > 0
  np.testing.assert_allclose(summary["return_after_mql"], np.mean(results["per_task"]["after"]), rtol=1e-6)
  for name in ("return.png", "adaptation.png", "loss.png"):
    assert (workdir / "plots" / name).read_bytes()[:4] == b"\x89PNG"
  saved = envs.TaskSet.load(workdir / "tasks.json")
  expected = envs.sample_tasks("point-robot", config.task_seed, config.num_train_tasks, config.num_test_tasks)
  np.testing.assert_array_equal(saved.train, expected.train)
  np.testing.assert_array_equal(saved.test, expected.test)
  rows = metrics_lib.read_metrics(workdir)
  evals = [r["step"] for r in rows if "eval/return_after_mql" in r]
  assert evals == list(range(config.eval_every, config.num_iterations + 1, config.eval_every))
  assert (workdir / "tensorboard").is_dir() and any((workdir / "checkpoints").iterdir())


@pytest.mark.opt
@pytest.mark.slow  # three in-process runs (one compile)
def test_killed_run_resumes_and_ends_identically(tmp_path):
  """2 iterations (a run stopped after its checkpoint at 2), then resumed to 4 == 4 straight."""
  config = default_config.get_config("smoke")
  straight = train.train_and_evaluate(config, str(tmp_path / "straight"))
  short = default_config.get_config("smoke")
  short.num_iterations = 2
  train.train_and_evaluate(short, str(tmp_path / "resumed"))
  resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert resumed == straight
  rows = lambda d: [{k: v for k, v in r.items() if k != "time"} for r in metrics_lib.read_metrics(tmp_path / d)]
  assert rows("resumed") == rows("straight")
  per_task = lambda d: json.loads((tmp_path / d / "results.json").read_text())["per_task"]
  assert per_task("resumed") == per_task("straight")
  # The resumed part crosses td3.update_ratio_switch: the update count per step changed after the resume.
  ratios = [r["updates_per_transition"] for r in rows("resumed") if "updates_per_transition" in r]
  assert len(ratios) == config.num_iterations
  assert ratios[1] < config.td3.update_ratio_early < ratios[2] < ratios[3] == config.td3.update_ratio


# One launch per exit path in the default tier; each field's check runs in-process below.
_SLOW = pytest.mark.slow
BAD_FIELDS = [
  ("family", "hopper"),
  ("network.history_length", 0),
  ("num_test_tasks", 0),
  ("adaptation.prox", "sometimes"),
  ("td3.replay_size", 8),
  ("td3.update_ratio", 0.0),
  ("td3.update_ratio_early", -1.0),
  ("td3.update_ratio_switch", -5),
]


@pytest.mark.parametrize("field, value", BAD_FIELDS)
def test_validate_config_names_the_bad_field(field, value):
  config = default_config.get_config("smoke")
  block, _, leaf = field.rpartition(".")
  (config[block] if block else config)[leaf] = value
  with pytest.raises(app.ConfigError) as e:
    train.validate_config(config)
  assert e.value.field == field


@pytest.mark.parametrize(
  "args, field",
  [
    (["--config.family=hopper"], "config.family"),
    pytest.param(["--config.network.history_length=0"], "config.network.history_length", marks=_SLOW),
    pytest.param(["--config.num_test_tasks=0"], "config.num_test_tasks", marks=_SLOW),
    pytest.param(["--config.adaptation.prox=sometimes"], "config.adaptation.prox", marks=_SLOW),
    pytest.param(["--config.td3.replay_size=8"], "config.td3.replay_size", marks=_SLOW),
  ],
)
def test_bad_config_exits_2_naming_the_field(tmp_path, args, field):
  workdir = tmp_path / "bad"
  proc = _run(workdir, *args)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert field in proc.stderr and "Traceback" not in proc.stderr
  assert not workdir.exists()


def test_task_counts_and_device_divisibility_are_checked(tmp_path):
  config = default_config.get_config("cheetah-dir-smoke")  # in process; the binary's exit 2 is tested below
  config.num_train_tasks = 5
  with pytest.raises(app.ConfigError) as e:
    train.validate_config(config)
  assert e.value.field == "num_train_tasks"
  eight = {"XLA_FLAGS": os.environ.get("TESTS_XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"}
  proc = _run(tmp_path / "b", "--config.num_envs=8", "--config.td3.batch_size=36", env_extra=eight)
  assert proc.returncode == 2 and "config.td3.batch_size" in proc.stderr and "(8)" in proc.stderr, proc.stderr[-2000:]
  assert not (tmp_path / "b").exists()


def test_unknown_variant_lists_the_valid_ones():
  with pytest.raises(ValueError, match="cheetah-vel-smoke"):
    default_config.get_config("cheetah-speed")


@pytest.mark.slow  # each Brax family compiles its MJX physics (1-2 minutes)
@pytest.mark.parametrize("family", BRAX_FAMILIES)
def test_every_family_smoke(tmp_path, family):
  proc = _run(tmp_path / family, variant=f"{family}-smoke", timeout=1500)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((tmp_path / family / "results.json").read_text())
  assert np.all(np.isfinite(results["per_task"]["after"]))


@pytest.mark.slow  # two processes, each compiling the smoke programs
def test_eight_devices_match_one(tmp_path):
  """The smoke run sharded over 8 forced host devices against 1 device.

  Sharding changes only the order of floating-point reductions (the batch
  means of the TD3 losses and their gradients, all-reduced across devices), a
  few ulps per update; over the smoke's few dozen updates and 2 x 2 adaptations these
  stay below 1e-4 relative in the returns (measured ~1e-7).  Returns are
  sums of 20 rewards of size ~1, hence the absolute floor.
  """
  summaries = {}
  for devices in (1, 8):
    workdir = tmp_path / f"d{devices}"
    flags = {"XLA_FLAGS": os.environ.get("TESTS_XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"}
    proc = _run(workdir, "--config.num_envs=8", env_extra=flags)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries[devices] = json.loads((workdir / "results.json").read_text())
  for key in ("before", "after"):
    np.testing.assert_allclose(
      summaries[8]["per_task"][key], summaries[1]["per_task"][key], rtol=1e-4, atol=1e-4, err_msg=key
    )
  assert summaries[8]["summary"]["env_steps"] == summaries[1]["summary"]["env_steps"]


def test_workdirs_written_before_an_adaptation_field_was_added_may_resume():
  """Adaptation is a pure function of the checkpoint: its block may change on resume, nothing else may."""
  new = json.loads(json.dumps(default_config.get_config("smoke").to_dict()))  # as config.json holds it
  old = json.loads(json.dumps(new))
  del old["adaptation"]["beta_features"]  # a field added later
  old["adaptation"]["prox"] = "ess"  # a default changed later
  changes = app.config_changes(old, new)
  assert set(changes) == {"adaptation.beta_features", "adaptation.prox"}
  assert all(app._is_resumable(field, train.RESUMABLE_FIELDS) for field in changes)
  old["td3"]["batch_size"] = 7
  assert not app._is_resumable("td3.batch_size", train.RESUMABLE_FIELDS)
  # The compiled programs are cached on every field but the schedule's: a new adaptation setting rebuilds.
  config = default_config.get_config("smoke")
  other = default_config.get_config("smoke")
  other.adaptation.prox = "ess"
  assert train.build(config) is not train.build(other)
