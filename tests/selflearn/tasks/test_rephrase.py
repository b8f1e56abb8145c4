"""The `rephrase` runner: config validation, the smoke binary and an identical rerun, a bad config, the full run."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from common import app
from selflearn.configs import base as config_base
from selflearn.configs import rephrase as rephrase_config
from selflearn.tasks import base, rephrase

ROOT = pathlib.Path(__file__).resolve().parents[3]
SMOKE = "selflearn/configs/rephrase.py:smoke"


@pytest.mark.parametrize(
  "field, value",
  [
    ("text_encoder", "bert"),
    ("max_gap", 0.0),
    ("max_candidates", 0),
    ("threshold", float("nan")),
    ("model.dim", 15),
    ("model.dropout_rate", 1.0),
    ("batch_size", 0),
    ("optimizer.learning_rate", -1.0),
  ],
)
def test_validate_config_names_the_bad_field(field, value):
  config = rephrase_config.get_config("smoke")
  block, _, leaf = field.rpartition(".")
  (config[block] if block else config)[leaf] = value
  with pytest.raises(app.ConfigError) as e:
    rephrase.validate_config(config)
  assert e.value.field == field


def _run(workdir, *overrides, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "")  # the test session's compile flags, nothing of the caller's
  cmd = [sys.executable, "-m", "selflearn.main", f"--config={SMOKE}", f"--workdir={workdir}", *overrides]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_smoke_binary_writes_results_and_resumes_identically(tmp_path):
  workdir = tmp_path / "run"
  proc = _run(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert set(results["systems"]) == {"span", "gap_heuristic", "metadata_gbt"}
  assert results["preset"] == "closed_world" and 0 <= results["recurrence"]["true_text_seen"] <= 1
  assert results["true_pairs_in_window"] <= results["test_true_pairs"] == results["systems"]["span"]["pairs"]["true"]
  for s in results["systems"].values():
    assert all(0 <= s[k]["f1"] <= 1 for k in ("pairs", "detection"))
  assert "| time-gap heuristic |" in (workdir / "results.md").read_text()
  assert "| metadata-only tree (shortcut) |" in (workdir / "results.md").read_text()
  before = (workdir / "results.json").read_text()
  again = _run(workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "rephrase: resuming from the checkpoint at step" in again.stdout and "simulating" not in again.stdout
  assert (workdir / "results.json").read_text() == before


def test_bad_config_exits_2_naming_the_field(tmp_path):
  workdir = tmp_path / "run"
  proc = _run(workdir, "--config.max_candidates=0", timeout=120)
  assert proc.returncode == 2, proc.stderr
  assert "config.max_candidates" in proc.stderr and "Traceback" not in proc.stderr
  assert not workdir.exists()


@pytest.mark.slow
def test_span_model_beats_the_pairwise_baseline(tmp_path):
  config = rephrase_config.get_config()
  config_base.closed_world(config)  # the closed world this comparison was made on (the default is the open one)
  config.data.num_dialogues, config.num_epochs = 2000, 3
  rephrase.validate_config(config)
  out = rephrase.run(config, tmp_path, base.load_dialogues(config, tmp_path))
  assert out["span_pair_f1"] > out["pairwise_pair_f1"] and out["span_pair_f1"] > out["gap_heuristic_pair_f1"]
