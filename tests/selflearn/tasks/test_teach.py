"""The `teach` runner: config validation, the smoke binary and an identical rerun, a bad config."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from common import app
from selflearn.configs import teach as teach_config
from selflearn.tasks import teach
from selflearn.teaching import preferences

ROOT = pathlib.Path(__file__).resolve().parents[3]
SMOKE = "selflearn/configs/teach.py:smoke"


@pytest.mark.parametrize(
  "field, value",
  [
    ("teach.distractor_rate", 1.0),
    ("teach.max_words", 4),
    ("model.dim", 15),
    ("extract.fuzzy_cutoff", 0.0),
    ("eval.bootstrap", 0),
    ("batch_size", 100000),
    ("optimizer.learning_rate", -1.0),
  ],
)
def test_validate_config_names_the_bad_field(field, value):
  config = teach_config.get_config("smoke")
  block, _, leaf = field.rpartition(".")
  (config[block] if block else config)[leaf] = value
  with pytest.raises(app.ConfigError) as e:
    teach.validate_config(config)
  assert e.value.field == field


def test_unknown_field_is_named():
  config = teach_config.get_config("smoke")
  with config.unlocked():
    config.teach.colour = 1
  with pytest.raises(app.ConfigError) as e:
    teach.validate_config(config)
  assert e.value.field == "teach.colour"


def _run(workdir, *overrides, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "")  # the test session's compile flags, nothing of the caller's
  cmd = [sys.executable, "-m", "selflearn.main", f"--config={SMOKE}", f"--workdir={workdir}", *overrides]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_smoke_binary_writes_results_and_a_rerun_resumes_identically(tmp_path):
  workdir = tmp_path / "teach"
  proc = _run(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"outputs in {workdir}" in proc.stdout
  results = json.loads((workdir / "results.json").read_text())
  assert set(results["defects"]) == {"learned", "rules", "oracle_extraction", "full_knowledge"}
  assert results["restart"]["same_decisions"] is True
  for e in results["defects"].values():
    assert 0 <= e["overall"]["defect_rate_with"] <= 1
  store = preferences.PreferenceStore.load(workdir / "preferences.json")
  assert len(store) == results["store_entries"]["learned"]
  assert "Teachable preferences" in (workdir / "results.md").read_text()
  before = (workdir / "results.json").read_text()
  again = _run(workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "extractor: resuming from the checkpoint" in again.stdout and "simulating" not in again.stdout
  assert (workdir / "results.json").read_text() == before


def test_bad_config_exits_2_naming_the_field_without_a_workdir(tmp_path):
  workdir = tmp_path / "run"
  proc = _run(workdir, "--config.teach.distractor_rate=1.5", timeout=120)
  assert proc.returncode == 2, proc.stderr
  assert "config.teach.distractor_rate" in proc.stderr and "Traceback" not in proc.stderr
  assert not workdir.exists()
