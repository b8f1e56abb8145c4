"""The `amc` runner: config validation, the smoke binary and an identical rerun, a bad config."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from common import app
from selflearn.configs import amc as amc_config
from selflearn.tasks import amc

ROOT = pathlib.Path(__file__).resolve().parents[3]
SMOKE = "selflearn/configs/amc.py:smoke"


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
    amc.validate_config(config)
  assert e.value.field == field


def _run(workdir, *overrides, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "")  # the test session's compile flags, nothing of the caller's
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
