"""Multi-host: the smoke config as 2 local processes (CPU collectives over gloo)."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from common import metrics as metrics_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMOKE = "schedulers/configs/default.py:smoke"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
  return env


def _launch(workdir, num_processes, *overrides):
  port = _free_port()
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "schedulers.main",
        f"--config={SMOKE}",
        f"--workdir={workdir}",
        f"--coordinator_address=127.0.0.1:{port}",
        f"--num_processes={num_processes}",
        f"--process_id={i}",
        "--jax_cpu_collectives_implementation=gloo",
        *overrides,
      ],
      cwd=ROOT,
      env=_env(4),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(num_processes)
  ]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return [out for out, _ in outs]


@pytest.mark.slow  # three smoke runs (two joined processes, then one): the default tier's time budget
def test_two_processes_match_one_process_and_only_process_0_writes(tmp_path):
  one = tmp_path / "one"
  single = subprocess.run(
    [sys.executable, "-m", "schedulers.main", f"--config={SMOKE}", f"--workdir={one}"],
    cwd=ROOT,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert single.returncode == 0, single.stderr[-3000:]
  multi = tmp_path / "multi"
  outs = _launch(multi, 2)
  assert "outputs in" in outs[0] and "outputs in" not in outs[1]  # summary from process 0 only

  config = json.loads((multi / "config.json").read_text())
  assert config["batch_size"] % 8 == 0  # 2 processes x 4 devices share every batch
  fa = json.loads((one / "final_metrics.json").read_text())
  fb = json.loads((multi / "final_metrics.json").read_text())
  assert fb["step"] == fa["step"]
  for key in ("test_loss", "test_accuracy", "val_loss", "lr"):
    np.testing.assert_allclose(fb[key], fa[key], rtol=1e-5, err_msg=key)
  rows = metrics_lib.read_metrics(multi)
  assert [r["step"] for r in rows] == [r["step"] for r in metrics_lib.read_metrics(one)]  # no duplicates
  assert len(list((multi / "tensorboard").glob("events.out.tfevents.*"))) == 1
  assert len((multi / "config_history.jsonl").read_text().splitlines()) == 1

  # Every process restores the checkpoint and trains on: one more epoch.
  outs = _launch(multi, 2, "--config.num_epochs=4")
  assert "resuming from the checkpoint at step" in outs[0]
  assert [r["epoch"] for r in metrics_lib.read_metrics(multi)] == [1, 2, 3, 4]
