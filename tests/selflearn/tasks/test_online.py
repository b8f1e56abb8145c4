"""The `online` runner: config validation, the smoke binary and an identical rerun, a bad config."""

import json
import os
import pathlib
import subprocess
import sys

import ml_collections
import pytest

from common import app
from selflearn.configs import online as online_config
from selflearn.tasks import online

ROOT = pathlib.Path(__file__).resolve().parents[3]
SMOKE = "selflearn/configs/online.py:smoke"


@pytest.mark.parametrize(
  "field, value",
  [
    ("pairs_source", "oracle"),
    ("retrieval.k", 0),
    ("retrieval.text_encoder", "bert"),
    ("ranker.hidden_dim", -1),
    ("guard.min_entity", 1.5),
    ("min_personal_history", -1),
    ("batch_size", 0),
  ],
)
def test_validate_config_names_the_bad_field(field, value):
  config = online_config.get_config("smoke")
  block, _, leaf = field.rpartition(".")
  (config[block] if block else config)[leaf] = value
  with pytest.raises(app.ConfigError) as e:
    online.validate_config(config)
  assert e.value.field == field


def test_unknown_field_is_named():
  config = online_config.get_config("smoke")
  with config.unlocked():
    config.guard.margn = 1.0
  with pytest.raises(app.ConfigError) as e:
    online.validate_config(config)
  assert e.value.field == "guard.margn"
  assert isinstance(online_config.get_config(""), ml_collections.ConfigDict) and set(online_config.VARIANTS) == {
    "",
    "smoke",
  }


def _run(workdir, *overrides, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "")  # the test session's compile flags, nothing of the caller's
  cmd = [sys.executable, "-m", "selflearn.main", f"--config={SMOKE}", f"--workdir={workdir}", *overrides]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_smoke_binary_writes_results_and_a_rerun_resumes_identically(tmp_path):
  workdir = tmp_path / "run"
  proc = _run(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"outputs in {workdir}" in proc.stdout
  results = json.loads((workdir / "results.json").read_text())
  ab = results["main"]["ab"]
  assert set(ab["arms"]) == {"none", "global", "personal", "oracle"} and ab["turns"] > 0
  for arm in ab["arms"].values():
    assert 0 <= arm["defect_rate"] <= 1 and 0 <= arm["trigger_rate"] <= 1
  assert "keynote" in results and "-13%" in (workdir / "results.md").read_text()
  for stage in ("encoder", "ranker_global", "ranker_personal"):
    assert any((workdir / stage / "checkpoints").iterdir())
  before = (workdir / "results.json").read_text()
  again = _run(workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "encoder: resuming from the checkpoint" in again.stdout and "simulating" not in again.stdout
  assert (workdir / "results.json").read_text() == before


def test_bad_config_exits_2_naming_the_field(tmp_path):
  workdir = tmp_path / "run"
  proc = _run(workdir, "--config.guard.min_entity=2.0", timeout=120)
  assert proc.returncode == 2, proc.stderr
  assert "config.guard.min_entity" in proc.stderr and not workdir.exists()


@pytest.mark.slow
def test_too_few_mined_pairs_exit_2_naming_the_log_size_without_a_workdir(tmp_path):
  workdir = tmp_path / "run"  # 6 dialogues of simulator seed 4: one reformulation pair in training
  proc = _run(workdir, "--config.data.num_dialogues=6", "--config.data.sim_seed=4", timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "config.data.num_dialogues" in proc.stderr and "only 1 reformulation pairs" in proc.stderr
  assert "Traceback" not in proc.stderr and not workdir.exists()
