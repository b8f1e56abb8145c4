"""The schedulers binary end to end: outputs, resume, kill/resume, multi-device."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common import metrics as metrics_lib
from schedulers.objectives import readers as objective_readers

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMOKE = "schedulers/configs/default.py:smoke"


def _cmd(workdir, *overrides):
  return [sys.executable, "-m", "schedulers.main", f"--config={SMOKE}", f"--workdir={workdir}", *overrides]


def _env(**extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "")  # the test session's compile flags, nothing of the caller's
  env.update(extra)
  return env


def run_main(workdir, *overrides, env=None, timeout=300):
  proc = subprocess.run(
    _cmd(workdir, *overrides), cwd=ROOT, env=env or _env(), capture_output=True, text=True, timeout=timeout
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def test_smoke_writes_every_output_and_resumes(tmp_path):
  proc = run_main(tmp_path)
  assert f"outputs in {tmp_path}" in proc.stdout
  final = json.loads((tmp_path / "final_metrics.json").read_text())
  assert {"test_loss", "test_accuracy", "val_loss", "lr", "step"} <= set(final)
  assert np.isfinite(final["test_loss"]) and final["test_accuracy"] > 0.3  # 10 classes: chance is 0.1
  rows = metrics_lib.read_metrics(tmp_path)
  assert [r["epoch"] for r in rows] == [1, 2, 3]
  assert rows[-1]["train/loss"] < rows[0]["train/loss"]
  # The default steps GreedyLR per epoch on the validation loss; the smoke's patience 0 makes
  # every new-best validation loss raise the rate right after it.
  lrs = [r["train/lr"] for r in rows]
  assert lrs[0] == pytest.approx(1e-3) and lrs[-1] > lrs[0]
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert (tmp_path / "plots" / "loss.png").read_bytes()[:4] == b"\x89PNG"
  assert (tmp_path / "plots" / "learning_rate.png").exists()
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())[-1] == final["step"]
  assert json.loads((tmp_path / "config.json").read_text())["greedy"]["factor"] == 0.95
  measured = objective_readers.digits(tmp_path)  # the GreedyLR-objectives grid reads these files
  assert measured["neg_test_loss"] == [-final["test_loss"]] and np.isfinite(measured["neg_val_loss_auc"][0])

  # Same command, same workdir: resumes at the end, trains nothing more.
  run_main(tmp_path)
  assert json.loads((tmp_path / "final_metrics.json").read_text()) == final
  assert len(metrics_lib.read_metrics(tmp_path)) == 3

  # A longer budget continues from the saved step.
  run_main(tmp_path, "--config.num_epochs=4")
  rows = metrics_lib.read_metrics(tmp_path)
  assert [r["epoch"] for r in rows] == [1, 2, 3, 4]


@pytest.mark.opt
@pytest.mark.slow  # two 25-epoch runs; the default tier's smoke test checks resuming, `make test-opt` this
def test_killed_run_resumes_to_identical_final_metrics(tmp_path):
  overrides = ("--config.num_epochs=25",)
  full = tmp_path / "full"
  run_main(full, *overrides)
  killed = tmp_path / "killed"
  proc = subprocess.Popen(
    _cmd(killed, *overrides), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  deadline = time.time() + 240
  ckpts = killed / "checkpoints"
  while time.time() < deadline:  # kill once two checkpoints are committed
    steps = [p for p in ckpts.iterdir() if p.name.isdigit()] if ckpts.exists() else []
    if len(steps) >= 2 or proc.poll() is not None:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / "final_metrics.json").exists(), "the run finished before it could be killed"
  run_main(killed, *overrides)
  assert json.loads((killed / "final_metrics.json").read_text()) == json.loads(
    (full / "final_metrics.json").read_text()
  )
  epochs = [r["epoch"] for r in metrics_lib.read_metrics(killed)]
  assert epochs == list(range(1, 26))
  # Both metric sinks hold exactly the uninterrupted run's series.
  assert metrics_lib.read_metrics(killed) == metrics_lib.read_metrics(full)
  tb_full, tb_killed = metrics_lib.read_tensorboard(full), metrics_lib.read_tensorboard(killed)
  assert sorted(tb_killed) == sorted(tb_full)
  for tag, points in tb_full.items():
    assert [s for s, _ in tb_killed[tag]] == [s for s, _ in points], tag
    np.testing.assert_array_equal([v for _, v in tb_killed[tag]], [v for _, v in points])
  assert len(list((killed / "tensorboard").glob("events.out.tfevents.*"))) == 2


def test_nonfinite_stop_policy_fails_clearly(tmp_path):
  proc = subprocess.run(
    _cmd(tmp_path, "--config.optimizer.name=sgd", "--config.optimizer.learning_rate=1e30", "--config.nonfinite=stop"),
    cwd=ROOT,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 1
  assert "NaN/Inf" in proc.stderr and "nonfinite='skip'" in proc.stderr


@pytest.mark.slow  # two smoke runs (8 forced devices, then 1): the default tier's time budget
def test_eight_devices_match_one_device(tmp_path):
  one = tmp_path / "one"
  eight = tmp_path / "eight"
  run_main(one)
  run_main(
    eight, env=_env(XLA_FLAGS=os.environ.get("TESTS_XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8")
  )
  config = json.loads((eight / "config.json").read_text())
  assert config["batch_size"] % 8 == 0
  a = [r["train/loss"] for r in metrics_lib.read_metrics(one)]
  b = [r["train/loss"] for r in metrics_lib.read_metrics(eight)]
  np.testing.assert_allclose(b, a, rtol=1e-5)
  fa = json.loads((one / "final_metrics.json").read_text())
  fb = json.loads((eight / "final_metrics.json").read_text())
  np.testing.assert_allclose(fb["test_loss"], fa["test_loss"], rtol=1e-5)


@pytest.mark.slow  # times every benchmark section: the default tier's time budget
def test_benchmark_binary_prints_ratios():
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "schedulers.benchmark",
      "--sections=overhead,vmap",
      "--steps=20",
      "--repeats=1",
      "--seeds=2",
    ],
    cwd=ROOT,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "1.000x adamw" in proc.stdout and "adamw + greedy_lr" in proc.stdout
  assert proc.stdout.count("(goal >= 5x)") == 3  # one line per vmap task
