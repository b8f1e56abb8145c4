"""Tests for common.metrics: JSON lines, resume, TensorBoard, progress, PNGs."""

from __future__ import annotations

import json
import math
import struct

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from common import metrics as metrics_lib
from common.metrics import MetricWriter, plot_metrics, read_metrics

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _strict_rows(path) -> list[dict]:
  """Parses every line with a JSON parser that rejects NaN/Infinity."""

  def reject(constant):
    raise ValueError(f"non-strict JSON constant {constant}")

  lines = path.read_text().splitlines()
  return [json.loads(line, parse_constant=reject) for line in lines]


def test_write_jsonl_is_strict_and_converts_scalars(tmp_path):
  with MetricWriter(tmp_path, tensorboard=False, progress=False) as writer:
    writer.write(0, {"loss": 1.5, "acc": np.float32(0.25)})
    writer.write(
      np.int64(1),
      {
        "loss": jnp.asarray(0.5),
        "count": np.int32(3),
        "arr0d": np.array(2.0),
        "size1": jnp.ones((1,)),
        "flag": True,
      },
    )
    writer.write(2, {"loss": float("nan"), "grad_norm": jnp.inf, "x": -np.inf})
    # Flushed per line: readable before close.
    assert len(_strict_rows(writer.path)) == 3
  rows = _strict_rows(tmp_path / "metrics.jsonl")
  assert [r["step"] for r in rows] == [0, 1, 2]
  assert all(type(r["step"]) is int for r in rows)
  assert rows[0] == {"step": 0, "loss": 1.5, "acc": 0.25}
  assert rows[1] == {
    "step": 1,
    "loss": 0.5,
    "count": 3,
    "arr0d": 2.0,
    "size1": 1.0,
    "flag": True,
  }
  assert type(rows[1]["count"]) is int
  assert rows[2] == {"step": 2, "loss": None, "grad_norm": None, "x": None}
  assert read_metrics(tmp_path) == rows
  assert read_metrics(tmp_path / "metrics.jsonl") == rows


def test_write_rejects_bad_values(tmp_path):
  with MetricWriter(tmp_path, tensorboard=False, progress=False) as writer:
    with pytest.raises(TypeError, match="scalar"):
      writer.write(0, {"v": np.ones(3)})
    with pytest.raises(TypeError, match="real number"):
      writer.write(0, {"v": "text"})
    with pytest.raises(ValueError, match="reserved"):
      writer.write(0, {"step": 1})
  with pytest.raises(RuntimeError, match="closed"):
    writer.write(1, {"loss": 1.0})


def test_resume_drops_rows_after_resume_step(tmp_path):
  with MetricWriter(tmp_path, tensorboard=False, progress=False) as writer:
    for step in range(10):
      writer.write(step, {"loss": 10.0 - step})
  with MetricWriter(tmp_path, tensorboard=False, progress=False, resume_step=5) as writer:
    assert [r["step"] for r in read_metrics(tmp_path)] == list(range(6))
    for step in range(6, 8):
      writer.write(step, {"loss": 0.0})
  rows = _strict_rows(tmp_path / "metrics.jsonl")
  assert [r["step"] for r in rows] == list(range(8))
  assert rows[5]["loss"] == 5.0 and rows[7]["loss"] == 0.0
  assert not list(tmp_path.glob(".metrics.jsonl.*"))  # no temp file left


def test_resume_and_append_survive_a_half_written_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 0, "loss": 1.0}\n{"step": 1, "loss": 0.9}\n{"st')
  with MetricWriter(tmp_path, tensorboard=False, progress=False) as writer:
    writer.write(2, {"loss": 0.8})
  assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1, 2]
  with MetricWriter(tmp_path, tensorboard=False, progress=False, resume_step=1):
    pass
  assert [r["step"] for r in _strict_rows(path)] == [0, 1]


def _read_events(path) -> list[event_pb2.Event]:
  """Reads a TFRecord event file (length, crc, payload, crc per record)."""
  events = []
  with open(path, "rb") as f:
    while len(header := f.read(12)) == 12:
      (length,) = struct.unpack("<Q", header[:8])
      event = event_pb2.Event()
      event.ParseFromString(f.read(length))
      f.read(4)
      events.append(event)
  return events


def _scalars(path) -> list[tuple[int, str, float]]:
  return [(e.step, v.tag, v.simple_value) for e in _read_events(path) for v in e.summary.value]


def test_tensorboard_event_file(tmp_path):
  with MetricWriter(tmp_path, progress=False) as writer:
    writer.write(0, {"loss": 1.0, "nan_metric": float("nan")})
    writer.write(1, {"loss": 0.5})
  events = sorted((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert len(events) == 1 and events[0].stat().st_size > 0
  scalars = _scalars(events[0])
  assert [(s, t) for s, t, _ in scalars] == [(0, "loss"), (0, "nan_metric"), (1, "loss")]
  assert scalars[0][2] == 1.0 and math.isnan(scalars[1][2])
  # Resumed right away: a new file (no clobbering), with a purge marker.
  with MetricWriter(tmp_path, progress=False, resume_step=0) as writer:
    writer.write(1, {"loss": 0.25})
  events = sorted((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert len(events) == 2
  resumed = _read_events(events[1])
  assert any(
    e.step == 1 and e.HasField("session_log") and e.session_log.status == event_pb2.SessionLog.START for e in resumed
  )
  assert _scalars(events[1]) == [(1, "loss", 0.25)]


def test_tensorboard_disabled(tmp_path):
  with MetricWriter(tmp_path, tensorboard=False, progress=False) as writer:
    writer.write(0, {"loss": 1.0})
  assert not (tmp_path / "tensorboard").exists()


class _FakeTTY:
  def isatty(self):
    return True

  def write(self, s):
    return len(s)

  def flush(self):
    pass


def test_progress_default_follows_tty_and_ci(tmp_path, monkeypatch):
  monkeypatch.setattr(metrics_lib.sys, "stderr", _FakeTTY())
  monkeypatch.setenv("CI", "true")
  with MetricWriter(tmp_path, tensorboard=False) as writer:
    assert not writer.progress_enabled
  monkeypatch.delenv("CI")
  with MetricWriter(tmp_path, tensorboard=False, total_steps=3) as writer:
    assert writer.progress_enabled
    writer.write(1, {"loss": 0.5})
  with MetricWriter(tmp_path, tensorboard=False, progress=False) as writer:
    assert not writer.progress_enabled


def test_progress_quiet_without_tty(tmp_path, monkeypatch, capsys):
  monkeypatch.delenv("CI", raising=False)
  with MetricWriter(tmp_path, tensorboard=False) as writer:  # stderr captured
    assert not writer.progress_enabled
    writer.write(0, {"loss": 1.0})
  assert capsys.readouterr().err == ""


def test_progress_forced_shows_loss(tmp_path, capsys):
  with MetricWriter(tmp_path, tensorboard=False, progress=True, total_steps=10) as writer:
    assert writer.progress_enabled
    writer.write(5, {"loss": 0.125, "lr": 1e-3})
  assert "loss=0.125" in capsys.readouterr().err


def _is_png(path) -> bool:
  data = path.read_bytes()
  return len(data) > len(_PNG_MAGIC) and data.startswith(_PNG_MAGIC)


def test_plot_metrics(tmp_path):
  with MetricWriter(tmp_path, tensorboard=False, progress=False) as writer:
    for step in range(20):
      row = {"loss": 1.0 / (step + 1), "lr": 1e-3, "greedy_scale": 1.1}
      if step % 2:
        row["eval_loss"] = float("nan") if step == 5 else 2.0 / (step + 1)
      if step == 3:
        del row["lr"]
      writer.write(step, row)
  paths = plot_metrics(tmp_path)
  assert [p.name for p in paths] == ["loss.png", "learning_rate.png"]
  assert all(p.parent == tmp_path / "plots" for p in paths)
  assert all(_is_png(p) for p in paths)


def test_plot_metrics_partial_and_out_dir(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text(
    '{"step": 0, "train_loss": -1.0}\n'
    '{"step": 1, "train_loss": null, "acc": 0.5}\n'
    '{"acc": 0.7}\n'
    '{"step": 2, "train_loss": 2.0}\n'
  )
  out = tmp_path / "figs"
  paths = plot_metrics(tmp_path, out_dir=out)
  assert paths == [out / "loss.png"] and _is_png(paths[0])
  # No plottable key at all: nothing written, no error.
  (tmp_path / "other").mkdir()
  other = tmp_path / "other" / "metrics.jsonl"
  other.write_text('{"step": 0, "loss": null}\n')
  assert plot_metrics(tmp_path / "other") == []


def test_read_metrics_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError):
    read_metrics(tmp_path)


def test_nan_loss_in_progress_and_json(tmp_path):
  with MetricWriter(tmp_path, tensorboard=True, progress=True) as writer:
    writer.write(0, {"loss": jnp.nan})
  assert _strict_rows(tmp_path / "metrics.jsonl") == [{"step": 0, "loss": None}]


# ----------------------------------------------------------------------------
# Plot contents (the Figure before it is saved).


def _labelled_yticks(ax) -> list[str]:
  """Non-empty y tick labels (major and minor) inside the axis limits."""
  ax.figure.canvas.draw()
  lo, hi = sorted(ax.get_ylim())
  return [
    t.get_text() for t in ax.yaxis.get_ticklabels(which="both") if t.get_text() and lo <= t.get_position()[1] <= hi
  ]


def _ticks_in_view(ax) -> list[float]:
  lo, hi = sorted(ax.get_xlim())
  return [t for t in ax.get_xticks() if lo <= t <= hi]


def test_figures_label_axes_draw_steps_and_integer_step_ticks():
  rows = [
    {
      "step": s,
      "train/loss": 2.0 / (s + 1),
      "eval/loss": 2.5 / (s + 1),
      "train/lr": 1e-3 * 0.95 ** (s // 2),
      "greedy_scale": 0.95 ** (s // 2),
    }
    for s in range(4)
  ]  # a short run: default ticks would be 0, 0.5, ...
  plots = metrics_lib._plots(rows)
  assert list(plots) == ["loss.png", "learning_rate.png"]
  figures = {name: metrics_lib._figure(*spec) for name, spec in plots.items()}
  (loss_ax,) = figures["loss.png"].axes
  lr_ax, scale_ax = figures["learning_rate.png"].axes
  assert loss_ax.get_ylabel() == "loss"
  assert lr_ax.get_ylabel() == "learning rate"
  assert scale_ax.get_ylabel().startswith("scale")
  for ax in (loss_ax, lr_ax, scale_ax):
    assert ax.get_xlabel() == "training step"
    ticks = _ticks_in_view(ax)
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
  assert {line.get_drawstyle() for line in loss_ax.get_lines()} == {"default"}
  for ax in (lr_ax, scale_ax):
    assert [line.get_drawstyle() for line in ax.get_lines()] == ["steps-post"]


def test_loss_label_names_cross_entropy_in_nats_when_the_key_says_so():
  assert metrics_lib._loss_label(["train/nll_loss", "eval/xent_loss"]) == ("cross-entropy (nats)")
  assert metrics_lib._loss_label(["train/nll_loss", "loss"]) == "loss"


@pytest.mark.parametrize("span", [1.17, 3.0, 50.0])
def test_narrow_log_axis_has_three_labelled_ticks(span):
  # A constant-then-stepped learning rate spanning `span` (log-y: positive).
  xs = list(range(6))
  ys = [1e-3 * span ** (i / 5) for i in xs]
  fig = metrics_lib._figure("lr", [("learning rate", {"lr": (xs, ys)}, True)])
  (ax,) = fig.axes
  assert ax.get_yscale() == "log"
  labels = _labelled_yticks(ax)
  assert len(labels) >= 3 and len(set(labels)) == len(labels), labels


def test_wide_log_axis_keeps_decade_ticks():
  xs = list(range(5))
  ys = [10.0**-i for i in xs]  # four decades of loss
  fig = metrics_lib._figure("loss", [("loss", {"loss": (xs, ys)}, False)])
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  (ax,) = fig.axes
  assert len(_labelled_yticks(ax)) >= 3
  assert isinstance(ax.yaxis.get_major_locator(), ticker.LogLocator)


def test_plot_loss_label_names_the_unit(tmp_path):
  with MetricWriter(tmp_path, progress=False, tensorboard=False) as w:
    w.write(1, {"train/loss": 1.0, "lr": 0.1})
  ((_, panels),) = [
    v
    for k, v in metrics_lib._plots(metrics_lib.read_metrics(tmp_path), "cross-entropy (nats)").items()
    if k == "loss.png"
  ]
  fig = metrics_lib._figure("loss", panels)
  assert fig.axes[0].get_ylabel() == "cross-entropy (nats)"
