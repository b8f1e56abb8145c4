"""The selflearn binary: both smoke configs, resume, bad config and bad data (exit 2, no workdir)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from common import app
from common import metrics as metrics_lib
from selflearn import train as train_lib
from selflearn.configs import fpi as fpi_config
from selflearn.configs import labels as labels_config
from selflearn.data import logs
from selflearn.sim import simulator
from selflearn.tasks import encoded

ROOT = pathlib.Path(__file__).resolve().parents[3]
FPI_SMOKE = "selflearn/configs/fpi.py:smoke"
LABELS_SMOKE = "selflearn/configs/labels.py:smoke"


def _run(config, workdir, *overrides, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "")  # the test session's compile flags, nothing of the caller's
  cmd = [sys.executable, "-m", "selflearn.main", f"--config={config}", f"--workdir={workdir}", *overrides]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def fpi_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("fpi") / "run"
  proc = _run(FPI_SMOKE, workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def test_fpi_smoke_writes_results_checkpoints_and_metrics(fpi_run):
  workdir, proc = fpi_run
  assert f"outputs in {workdir}" in proc.stdout and "simulating 120 dialogues" in proc.stdout
  results = json.loads((workdir / "results.json").read_text())
  assert set(results["vs_truth"]) == {"model", "metadata_gbt", "human"}
  assert sum(results["test_class_counts"].values()) == results["test_turns"] > 0
  assert 0 <= results["vs_truth"]["model"]["accuracy"] <= 1
  assert "share of the simulated human" in (workdir / "results.md").read_text().lower()
  rows = metrics_lib.read_metrics(workdir / "fpi")
  config = fpi_config.get_config("smoke")
  assert [r["epoch"] for r in rows] == list(range(1, config.num_epochs + 1))
  assert "train/lr" in rows[-1] and "eval/loss" in rows[-1]
  assert any((workdir / "fpi" / "checkpoints").iterdir())
  rows, stats = logs.load_logs(workdir / "data" / "logs.jsonl")
  assert len(rows) == config.data.num_dialogues and stats.skipped == 0


@pytest.mark.slow  # every other selflearn task smoke reruns and checks identical results
def test_rerun_resumes_and_reports_identically(fpi_run):
  workdir, _ = fpi_run
  before = (workdir / "results.json").read_text()
  proc = _run(FPI_SMOKE, workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "fpi: resuming from the checkpoint at step" in proc.stdout
  assert "simulating" not in proc.stdout  # the logs are reused
  assert (workdir / "results.json").read_text() == before


def test_labels_smoke_pretrains_then_trains_and_reports(tmp_path):
  workdir = tmp_path / "labels"
  proc = _run(LABELS_SMOKE, workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"outputs in {workdir}" in proc.stdout
  results = json.loads((workdir / "results.json").read_text())
  assert set(results["vs_majority"]) == {"model", "metadata_gbt", "single_annotator"}
  assert results["preset"] == "closed_world" and 0 <= results["recurrence"]["true_text_seen"] <= 1
  for ref in ("vs_truth", "vs_majority"):
    for name, m in results[ref].items():
      assert 0 <= m["segment_accuracy"] <= 1 and 0 <= m["intent_accuracy"] <= 1
      assert m["slot_f1"] is None if name == "metadata_gbt" else 0 <= m["slot_f1"] <= 1  # the tree tags no slots
  pre = metrics_lib.read_metrics(workdir / "model_pretrain")
  assert len(pre) == labels_config.get_config("smoke").pretrain.num_epochs and "train/loss_swap" in pre[0]
  assert "train/loss_segment" in metrics_lib.read_metrics(workdir / "model")[-1]


@pytest.mark.parametrize(
  "field, value",
  [
    ("batch_size", 0),
    ("turn_encoder", "bert"),
    ("annotator.success", 2.0),
    ("optimizer.learning_rate", -1.0),
    ("data.max_turns", 1),
    ("model.model_dim", 15),
    ("data.num_dialogues", 0),
  ],
)
def test_validate_config_names_the_bad_field(field, value):
  config = fpi_config.get_config("smoke")
  block, _, leaf = field.rpartition(".")
  (config[block] if block else config)[leaf] = value
  with pytest.raises(app.ConfigError) as e:
    train_lib.validate_config(config)
  assert e.value.field == field


def test_bad_config_exits_2_naming_the_field_and_line_without_a_workdir(tmp_path):
  workdir = tmp_path / "run"
  proc = _run(FPI_SMOKE, workdir, "--config.batch_size=0", timeout=120)
  assert proc.returncode == 2, proc.stderr
  assert "config.batch_size" in proc.stderr and "--config.batch_size=0" in proc.stderr
  assert not workdir.exists()


def _log_with_a_bad_row(tmp_path):
  path = tmp_path / "logs.jsonl"
  good = list(simulator.generate(simulator.preset("closed_world", seed=1, num_users=10), 60))
  good[1]["turns"][0]["asr"]["confidence"] = "sure"
  with open(path, "w") as f:
    for d in good:
      f.write(json.dumps(d) + "\n")
  return path


def test_bad_log_row_exits_2_naming_file_and_line(tmp_path):
  path = _log_with_a_bad_row(tmp_path)
  workdir = tmp_path / "run"
  proc = _run(FPI_SMOKE, workdir, f"--config.data.log_path={path}", timeout=120)
  assert proc.returncode == 2, proc.stderr
  assert f"{path}:2: turns[0].asr.confidence" in proc.stderr and "skip_invalid" in proc.stderr
  assert not workdir.exists()
  config = fpi_config.get_config("smoke")  # a missing file: the same validation, in process
  config.data.log_path = str(tmp_path / "nope.jsonl")
  with pytest.raises(app.ConfigError, match="no such file") as e:
    train_lib.validate_config(config)
  assert e.value.field == "data.log_path"


def test_skip_invalid_skips_and_counts_the_bad_rows(tmp_path):
  path = _log_with_a_bad_row(tmp_path)
  config = fpi_config.get_config("smoke")
  config.data.log_path = str(path)
  config.data.skip_invalid = True
  config.turn_encoder = "tokens"
  train_lib.validate_config(config)
  data = encoded.load_data(config, tmp_path / "run")
  assert data.skipped == 1 and f"{path}:2:" in data.skipped_errors[0]
  assert data.train.size + data.val.size + data.test.size == 59


@pytest.mark.slow
def test_a_run_stopped_early_and_resumed_ends_identically(tmp_path):
  straight = _run(FPI_SMOKE, tmp_path / "a", "--config.num_epochs=3")
  assert straight.returncode == 0, straight.stderr[-3000:]
  for epochs in (1, 3):  # a "killed" run (1 epoch), then resumed with the full budget
    proc = _run(FPI_SMOKE, tmp_path / "b", f"--config.num_epochs={epochs}")
    assert proc.returncode == 0, proc.stderr[-3000:]
  a, b = (json.loads((tmp_path / x / "results.json").read_text()) for x in "ab")
  assert a["vs_truth"] == b["vs_truth"]
  ra = metrics_lib.read_metrics(tmp_path / "a" / "fpi")
  rb = metrics_lib.read_metrics(tmp_path / "b" / "fpi")
  assert [r["train/loss"] for r in ra] == [r["train/loss"] for r in rb]
