"""MetricWriter durability and resume: what a checkpoint covers is logged, once."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np

from common.metrics import MetricWriter, read_metrics, read_tensorboard


def test_flush_makes_tensorboard_durable_before_close(tmp_path):
  # A child process flushes, then dies without closing (SIGKILL): the flushed
  # scalars must be on disk.  tensorboardX's queued SummaryWriter lost them.
  script = textwrap.dedent(f"""
      import os, signal
      from common.metrics import MetricWriter
      w = MetricWriter({str(tmp_path)!r}, progress=False)
      for step in range(1, 6):
        w.write(step, {{"loss": 1.0 / step}})
      w.flush()
      os.kill(os.getpid(), signal.SIGKILL)
  """)
  proc = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), capture_output=True, timeout=120)
  assert proc.returncode == -signal.SIGKILL
  assert read_tensorboard(tmp_path) == {"loss": [(s, float(np.float32(1.0 / s))) for s in range(1, 6)]}
  assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]


def test_resume_drops_the_steps_past_the_checkpoint_in_both_sinks(tmp_path):
  with MetricWriter(tmp_path, progress=False) as w:
    for step in (16, 32, 48, 64):
      w.write(step, {"loss": float(step)})
  # Resumed from the checkpoint at step 32: 48 and 64 are logged again.
  with MetricWriter(tmp_path, progress=False, resume_step=32) as w:
    for step in (48, 64, 80):
      w.write(step, {"loss": -float(step)})
  expected = [(16, 16.0), (32, 32.0), (48, -48.0), (64, -64.0), (80, -80.0)]
  assert read_tensorboard(tmp_path) == {"loss": expected}
  assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == expected


def test_read_tensorboard_stops_at_a_truncated_record(tmp_path):
  with MetricWriter(tmp_path, progress=False) as w:
    w.write(1, {"loss": 0.5})
    w.write(2, {"loss": 0.25})
  (event_file,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
  data = event_file.read_bytes()
  event_file.write_bytes(data[:-7])  # a writer killed mid-record
  assert read_tensorboard(tmp_path) == {"loss": [(1, 0.5)]}


def test_inactive_writer_writes_nothing(tmp_path):
  with MetricWriter(tmp_path / "w", active=False) as w:
    assert not w.active
    w.write(1, {"loss": 1.0})
    w.flush()
  assert not (tmp_path / "w").exists()


def test_progress_lines_without_a_bar(tmp_path, capsys):
  with MetricWriter(tmp_path, progress=False, tensorboard=False, total_steps=100, progress_lines=4) as w:
    for step in range(10, 101, 10):
      w.write(step, {"train/loss": 1.0 / step})
  out = capsys.readouterr().out.splitlines()
  assert [line.split()[1] for line in out] == ["30/100", "50/100", "80/100", "100/100"]
  assert out[-1] == "step 100/100 (100%), train/loss 0.01"
