"""Scalar metric logging: JSON lines, TensorBoard, a progress bar, and plots.

`MetricWriter` is the one place a training loop sends its scalars.  Every
`write` appends one JSON object to `<workdir>/metrics.jsonl` (the record that
tests, notebooks and `plot_metrics` read back), mirrors the values to
TensorBoard under `<workdir>/tensorboard`, and advances an optional tqdm bar::

  with MetricWriter(workdir, total_steps=num_steps) as writer:
    for step in range(num_steps):
      ...
      writer.write(step, {"loss": loss, "lr": lr})
  plot_metrics(workdir)  # -> [<workdir>/plots/loss.png, .../learning_rate.png]

File format: one object per line, `{"step": <int>, "<name>": <number|null>,
...}`.  Values are converted to plain Python ints/floats (NumPy and JAX scalars
or size-1 arrays are accepted); NaN and +-Inf are written as `null`, so every
line is strict JSON (RFC 8259 has no NaN) that any parser accepts.  TensorBoard
still receives the non-finite values themselves.

Hyperparameters: when the workdir holds the run's `config.json` (written by
`common.app`), each TensorBoard writer records the resolved config once, as
hyperparameters (the HParams dashboard; nested fields dotted, sequences as
JSON text) and as a text summary `config` (the JSON itself, provenance
included).

Resuming: pass `resume_step` (the step of the restored checkpoint) and rows
with `step > resume_step` are dropped from metrics.jsonl (atomic rewrite), and
the new TensorBoard event file starts with a restart marker at
`resume_step + 1`, so the steps that the resumed run repeats are not logged
twice.  With a `flush()` before every checkpoint (as `common.trainer` does),
a killed-and-resumed run logs exactly the steps of an uninterrupted one in
both sinks; `read_tensorboard` reads the series back as TensorBoard shows them.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import pathlib
import struct
import sys
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

__all__ = ["MetricWriter", "read_metrics", "read_tensorboard", "plot_metrics"]

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
PLOTS_DIR = "plots"


def _to_python(name: str, value: Any) -> bool | int | float:
  """Converts a scalar-like metric value to a Python bool, int or float."""
  if hasattr(value, "shape") and hasattr(value, "dtype"):  # numpy / jax
    array = np.asarray(value)
    if array.size != 1:
      raise TypeError(f"metric {name!r} must be a scalar, got shape {array.shape}")
    value = array.reshape(()).item()
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, numbers.Integral):
    return int(value)
  if isinstance(value, numbers.Real):
    return float(value)
  raise TypeError(f"metric {name!r} must be a real number, got {type(value).__name__}")


def _json_value(value: bool | int | float) -> bool | int | float | None:
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def _in_ci() -> bool:
  return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def _default_progress() -> bool:
  """Progress bar on an interactive terminal outside CI."""
  try:
    interactive = sys.stderr is not None and sys.stderr.isatty()
  except (AttributeError, ValueError):  # replaced or closed stream
    interactive = False
  return interactive and not _in_ci()


def _metrics_path(path_or_workdir: str | os.PathLike[str]) -> pathlib.Path:
  path = pathlib.Path(path_or_workdir)
  return path / METRICS_FILE if path.is_dir() else path


def _parse_lines(path: pathlib.Path) -> list[tuple[str, dict[str, Any]]]:
  """(line, row) pairs of a metrics file; skips blank and malformed lines."""
  parsed = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        row = None
      if not isinstance(row, dict):
        # E.g. the half-written last line of a killed process.
        logging.warning("Skipping malformed line %d of %s.", lineno, path)
        continue
      parsed.append((line.rstrip("\n"), row))
  return parsed


def read_metrics(path_or_workdir: str | os.PathLike[str]) -> list[dict]:
  """Reads the rows written by `MetricWriter`, in file order.

  Args:
    path_or_workdir: a metrics.jsonl file, or a workdir containing one.

  Returns:
    One dict per line (`step` plus metrics; non-finite values are None).
    Malformed lines are skipped with a warning.

  Raises:
    FileNotFoundError: if there is no metrics file.
  """
  return [row for _, row in _parse_lines(_metrics_path(path_or_workdir))]


def _truncate_after(path: pathlib.Path, resume_step: int) -> int:
  """Atomically drops rows with `step > resume_step`; returns rows dropped."""
  parsed = _parse_lines(path)
  kept = [line for line, row in parsed if isinstance(row.get("step"), int) and row["step"] <= resume_step]
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      for line in kept:
        f.write(line + "\n")
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise
  return len(parsed) - len(kept)


class _TensorBoardScalars:
  """A synchronous TensorBoard scalar writer (one event file per instance).

  tensorboardX's `SummaryWriter` queues events for a background thread and its
  `flush()` does not drain that queue, so a run killed after a flush can still
  lose the newest scalars.  Here every `add_scalar` appends the record to the
  file and `flush()` pushes it to the OS: what a checkpoint's flush covers is
  on disk.  `purge_step` writes TensorBoard's restart marker (a `SessionLog`
  START event): readers drop the earlier events at or after that step.
  """

  def __init__(self, logdir: pathlib.Path, *, purge_step: int | None, filename_suffix: str):
    # pylint: disable=g-import-not-at-top
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto import event_pb2, summary_pb2
    # pylint: enable=g-import-not-at-top

    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    logdir.mkdir(parents=True, exist_ok=True)
    self._writer = EventsWriter(str(logdir / "events"), filename_suffix)
    if purge_step is not None:
      self._writer.write_event(
        event_pb2.Event(
          wall_time=time.time(),
          step=purge_step,
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START),
        )
      )
    self._writer.flush()

  def add_scalar(self, tag: str, value: float, step: int) -> None:
    summary = self._summary_pb2.Summary(value=[self._summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    self._writer.write_event(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

  def add_config(self, config: Mapping[str, Any], step: int) -> None:
    """The run's config as TensorBoard hyperparameters and as a text summary `config`."""
    # pylint: disable-next=g-import-not-at-top
    from tensorboardX import summary as tb_summary

    hparams = {k: v for k, v in hparam_values(config).items() if not k.startswith("provenance.")}
    # Session-start info only: TensorBoard then builds the experiment from every
    # run's hyperparameters and lists each scalar tag as a metric.
    _, session_start, _ = tb_summary.hparams(hparams, {})
    text = "```\n" + json.dumps(dict(config), indent=2, sort_keys=True) + "\n```"
    for summary in (session_start, tb_summary.text("config", text)):
      self._writer.write_event(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


def hparam_values(config: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
  """A JSON config flattened to dotted keys; sequences and None become JSON text."""
  out: dict[str, bool | int | float | str] = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping) and value:
      out.update(hparam_values(value, name + "."))
    elif isinstance(value, (bool, int, float, str)):
      out[name] = value
    else:
      out[name] = json.dumps(value)
  return out


def _read_records(path: pathlib.Path) -> list[bytes]:
  """The records of a TFRecord file; stops at a truncated tail (a killed writer)."""
  records = []
  with open(path, "rb") as f:
    while True:
      header = f.read(12)
      if len(header) < 12:
        break
      (length,) = struct.unpack("<Q", header[:8])
      data = f.read(length)
      if len(data) < length or len(f.read(4)) < 4:
        break
      records.append(data)
  return records


def read_tensorboard(path_or_workdir: str | os.PathLike[str]) -> dict[str, list[tuple[int, float]]]:
  """The scalar series of a run's TensorBoard events, as TensorBoard shows them.

  Event files are read in the order they were written; a restart marker at
  step `s` (what `MetricWriter(resume_step=s - 1)` writes) drops the earlier
  events with `step >= s`, like TensorBoard's own loader.

  Args:
    path_or_workdir: a workdir (its `tensorboard/` is read) or an event directory.

  Returns:
    tag -> [(step, value), ...] in step order.
  """
  # pylint: disable-next=g-import-not-at-top
  from tensorboardX.proto import event_pb2

  logdir = pathlib.Path(path_or_workdir)
  if (logdir / TENSORBOARD_DIR).is_dir():
    logdir = logdir / TENSORBOARD_DIR
  files = []
  for path in logdir.glob("events.out.tfevents.*"):
    events = [event_pb2.Event.FromString(r) for r in _read_records(path)]
    if events:
      files.append((events[0].wall_time, path.name, events))
  series: dict[str, list[tuple[int, float]]] = {}
  for _, _, events in sorted(files, key=lambda f: f[:2]):
    for event in events:
      if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
        series = {tag: [(s, v) for s, v in points if s < event.step] for tag, points in series.items()}
      for value in event.summary.value:
        if value.WhichOneof("value") == "simple_value":  # scalars only (not hparams or text)
          series.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
  return {tag: sorted(points, key=lambda p: p[0]) for tag, points in series.items()}


def _run_config(workdir: pathlib.Path) -> dict[str, Any] | None:
  """The workdir's `config.json` (written by `common.app`), if any."""
  try:
    config = json.loads((workdir / "config.json").read_text())
  except (OSError, ValueError):
    return None
  return config if isinstance(config, dict) else None


class MetricWriter:
  """Writes scalar metrics to metrics.jsonl, TensorBoard and a progress bar.

  Values are fetched from the device once per `write` (one `jax.device_get`
  for the whole mapping when JAX arrays are passed), so call it every few
  steps, not inside jitted code.  Not thread-safe.  In a multi-host run only
  process 0 writes (`active`); the others' calls are no-ops, so every process
  can run the same loop.

  Durability: each metrics.jsonl line is flushed as it is written; TensorBoard
  records reach the OS at `flush()`.  A training loop calls `flush()` before
  each checkpoint, so whatever a restored checkpoint covers is logged.
  """

  def __init__(
    self,
    workdir: str | os.PathLike[str],
    *,
    total_steps: int | None = None,
    progress: bool | None = None,
    tensorboard: bool = True,
    resume_step: int | None = None,
    progress_lines: int = 0,
    active: bool | None = None,
  ):
    """Opens (creating if needed) `workdir` for appending metrics.

    Args:
      workdir: run directory; metrics.jsonl and tensorboard/ go in it.
      total_steps: total of the progress bar (optional).
      progress: show a tqdm bar on stderr.  None: only when stderr is an
        interactive terminal and the `CI` environment variable is unset (or
        "0"/"false"), so tests and CI logs stay quiet.
      tensorboard: also write TensorBoard event files.
      resume_step: step of the checkpoint a resumed run starts from; rows
        after it are dropped (see the module docstring).  None appends to an
        existing file as is.
      progress_lines: without a progress bar, print about this many one-line
        progress reports to stdout over `total_steps` (0: none).
      active: whether this process writes; None: only process 0 of a
        multi-host run (`jax.process_index() == 0`).
    """
    if resume_step is not None:
      resume_step = int(resume_step)
      if resume_step < 0:
        raise ValueError(f"resume_step must be >= 0, got {resume_step}")
    if total_steps is not None and int(total_steps) < 0:
      raise ValueError(f"total_steps must be >= 0, got {total_steps}")
    if active is None:
      import jax  # pylint: disable=g-import-not-at-top

      active = jax.process_index() == 0
    self._active = bool(active)
    self._closed = False
    self._workdir = pathlib.Path(workdir).expanduser().absolute()
    self._path = self._workdir / METRICS_FILE
    self._tb = None
    self._bar = None
    self._total = None if total_steps is None else int(total_steps)
    self._next_line = None
    if not self._active:
      return
    self._workdir.mkdir(parents=True, exist_ok=True)
    if resume_step is not None and self._path.exists():
      dropped = _truncate_after(self._path, resume_step)
      if dropped:
        logging.info(
          "Dropped %d metric rows after step %d from %s.",
          dropped,
          resume_step,
          self._path,
        )
    needs_newline = False
    if self._path.exists() and self._path.stat().st_size > 0:
      with open(self._path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        needs_newline = f.read(1) != b"\n"  # half-written line of a crash
    self._file = open(self._path, "a", encoding="utf-8")
    if needs_newline:
      self._file.write("\n")
      self._file.flush()

    try:
      if tensorboard:
        self._tb = _TensorBoardScalars(
          self._workdir / TENSORBOARD_DIR,
          purge_step=None if resume_step is None else resume_step + 1,
          # The default name has 1 s resolution: a writer reopened within the
          # same second (a quick resume) would clobber the earlier file.
          filename_suffix=f".{os.getpid()}.{time.time_ns()}",
        )
        config = _run_config(self._workdir)
        if config is not None:
          self._tb.add_config(config, step=0 if resume_step is None else resume_step + 1)
          self._tb.flush()

      if _default_progress() if progress is None else progress:
        from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top

        self._bar = tqdm(
          total=self._total,
          initial=0 if resume_step is None else resume_step,
          file=sys.stderr,
          dynamic_ncols=True,
          unit="step",
        )
      elif progress_lines > 0 and self._total:
        self._line_every = max(1, -(-self._total // int(progress_lines)))
        self._next_line = ((resume_step or 0) // self._line_every + 1) * self._line_every
    except BaseException:
      self._file.close()
      raise

  @property
  def path(self) -> pathlib.Path:
    """The metrics.jsonl file."""
    return self._path

  @property
  def active(self) -> bool:
    """Whether this process writes (process 0 of a multi-host run)."""
    return self._active

  @property
  def progress_enabled(self) -> bool:
    """Whether a progress bar is shown."""
    return self._bar is not None

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Logs `metrics` at `step`: one flushed JSON line, TB scalars, the bar.

    Args:
      step: training step (int-like).
      metrics: name -> scalar (Python, NumPy or JAX; 0-d or size-1 arrays).
        The name "step" is reserved.

    Raises:
      TypeError: if a value is not a real scalar.
      ValueError: if `metrics` has a "step" key.
    """
    if self._closed:
      raise RuntimeError(f"MetricWriter for {self._workdir} is closed")
    if not self._active:
      return
    step = int(step)
    if "step" in metrics:
      raise ValueError('"step" is reserved; pass it as the `step` argument')
    if any(hasattr(v, "device") for v in metrics.values()):
      import jax  # pylint: disable=g-import-not-at-top

      metrics = jax.device_get(dict(metrics))  # one transfer for all
    values = {str(k): _to_python(str(k), v) for k, v in metrics.items()}

    row = {"step": step}
    row.update((k, _json_value(v)) for k, v in values.items())
    self._file.write(json.dumps(row, allow_nan=False) + "\n")
    self._file.flush()

    if self._tb is not None:
      for name, value in values.items():
        self._tb.add_scalar(name, float(value), step)

    loss_key = "loss" if "loss" in values else next((k for k in values if "loss" in k.lower()), None)
    if self._bar is not None:
      if loss_key is not None:
        self._bar.set_postfix({loss_key: f"{values[loss_key]:.4g}"}, refresh=False)
      if step > self._bar.n:
        self._bar.update(step - self._bar.n)
      else:
        self._bar.refresh()
    elif self._next_line is not None and (step >= self._next_line or step == self._total):
      self._next_line = (step // self._line_every + 1) * self._line_every
      loss = f", {loss_key} {values[loss_key]:.4g}" if loss_key is not None else ""
      print(f"step {step}/{self._total} ({100 * step / self._total:.0f}%){loss}", flush=True)

  def flush(self) -> None:
    """Makes every written metric durable: metrics.jsonl and TensorBoard."""
    if not self._closed and self._active:
      self._file.flush()
      if self._tb is not None:
        self._tb.flush()

  def close(self) -> None:
    """Flushes and closes all outputs.  Idempotent."""
    if self._closed:
      return
    self._closed = True
    if not self._active:
      return
    self._file.close()
    if self._tb is not None:
      self._tb.close()
    if self._bar is not None:
      self._bar.close()

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


# ----------------------------------------------------------------------------
# Plots.  Figure + Agg canvas directly: no pyplot, no global backend switch;
# matplotlib is imported inside the functions, so importing this module stays
# cheap.  `style_step_axis` and `readable_log_ticks` are shared with the
# study plots (schedulers/study/plots.py).

STEP_LABEL = "training step"
MIN_LOG_LABELS = 3  # labelled ticks wanted on a log axis of a narrow range
_CROSS_ENTROPY_TOKENS = ("cross_entropy", "crossentropy", "xent", "nll")


def _is_loss(key: str) -> bool:
  return "loss" in key.lower()


def _is_learning_rate(key: str) -> bool:
  k = key.lower().rsplit("/", 1)[-1]  # 'train/lr' is a learning rate too
  return k in ("lr", "learning_rate") or k.endswith("_lr") or "scale" in k


def _is_scale(key: str) -> bool:
  return "scale" in key.lower().rsplit("/", 1)[-1]


def _loss_label(keys) -> str:
  """y label of the loss panel: the unit only where the key names it."""
  if all(any(t in k.lower() for t in _CROSS_ENTROPY_TOKENS) for k in keys):
    return "cross-entropy (nats)"
  return "loss"


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
  """Finite numeric points of `key`; rows without it or a step are skipped."""
  xs, ys = [], []
  for row in rows:
    step, value = row.get("step"), row.get(key)
    if (
      isinstance(step, (int, float))
      and not isinstance(step, bool)
      and isinstance(value, (int, float))
      and not isinstance(value, bool)
      and math.isfinite(value)
    ):
      xs.append(step)
      ys.append(float(value))
  return xs, ys


def style_step_axis(ax, label: str = STEP_LABEL) -> None:
  """Labels the x axis (training steps) and keeps its ticks on integers."""
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  ax.set_xlabel(label)
  ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True, steps=[1, 2, 5, 10]))


def _tick_format(ticks):
  """A `%g` formatter with the fewest digits (1-8) that write `ticks` exactly."""
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  for digits in range(1, 9):
    if all(abs(float(f"{t:.{digits}g}") - t) <= 1e-9 * abs(t) for t in ticks):
      break
  return ticker.FuncFormatter(lambda value, _: f"{value:.{digits}g}")


def readable_log_ticks(ax, min_labels: int = MIN_LOG_LABELS) -> None:
  """Gives a log y axis spanning under two decades >= `min_labels` labels.

  Matplotlib labels only the decades (and, under one decade, a few minor
  ticks), so a learning rate between 1e-3 and 5e-2, or a GreedyLR scale
  between 0.9 and 1.05, gets one or two labels.  Under one decade, plain
  linear ticks (1, 2 or 5 times a power of ten) spread over the range;
  under two, 1-2-5 ticks per decade (1..9 if those are too few).  Call it
  after the limits are final; linear and wider log axes are left alone.
  """
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  if ax.get_yscale() != "log":
    return
  lo, hi = sorted(ax.get_ylim())
  if not (0 < lo < hi) or hi / lo >= 100:
    return
  if hi / lo < 10:
    locators = [ticker.MaxNLocator(nbins=n, steps=[1, 2, 5, 10]) for n in (5, 8, 12)]
  else:
    locators = [ticker.LogLocator(base=10, subs=subs, numticks=30) for subs in ((1.0, 2.0, 5.0), tuple(range(1, 10)))]
  for locator in locators:
    ticks = [t for t in locator.tick_values(lo, hi) if lo <= t <= hi]
    if len(ticks) >= min_labels:
      break
  ax.yaxis.set_major_locator(ticker.FixedLocator(ticks))
  ax.yaxis.set_major_formatter(_tick_format(ticks))
  ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _figure(title: str, panels: list[tuple[str, dict, bool]]):
  """A Figure of one panel per (y label, series, piecewise constant).

  Piecewise-constant series (learning rates, GreedyLR scales) are drawn as
  steps that hold each value until the next logged step; others as lines.
  A panel is log-y when every value is positive.
  """
  # pylint: disable=g-import-not-at-top
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  # pylint: enable=g-import-not-at-top

  fig = Figure(figsize=(7, 1.0 + 3.0 * len(panels)), dpi=100)
  FigureCanvasAgg(fig)
  axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
  for ax, (ylabel, series, steps) in zip(axes, panels):
    for key, (xs, ys) in series.items():
      ax.plot(xs, ys, label=key, marker="o" if len(xs) == 1 else None, drawstyle="steps-post" if steps else "default")
    if all(y > 0 for _, ys in series.values() for y in ys):
      ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    style_step_axis(ax)
    ax.grid(True, alpha=0.3)
    ax.legend()
  for ax in axes:
    readable_log_ticks(ax)  # after every panel: shared x can move limits
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def _plots(rows: list[dict], loss_label: str | None = None) -> dict[str, tuple[str, list]]:
  """File name -> (title, panels) of every plot that has a finite point."""
  keys = sorted({k for row in rows for k in row if k != "step"})
  series = {k: _series(rows, k) for k in keys}
  pick = lambda select: {k: xy for k, xy in series.items() if select(k) and xy[0]}
  losses = pick(_is_loss)
  rates = pick(lambda k: _is_learning_rate(k) and not _is_scale(k))
  scales = pick(lambda k: _is_learning_rate(k) and _is_scale(k))
  plots = {}
  if losses:
    plots["loss.png"] = ("loss", [(loss_label or _loss_label(losses), losses, False)])
  panels = [(label, s, True) for label, s in (("learning rate", rates), ("scale (x base learning rate)", scales)) if s]
  if panels:
    plots["learning_rate.png"] = ("learning rate / scale", panels)
  return plots


def plot_metrics(
  workdir: str | os.PathLike[str],
  *,
  out_dir: str | os.PathLike[str] | None = None,
  loss_label: str | None = None,
) -> list[pathlib.Path]:
  """Plots metrics.jsonl into PNGs.

  Writes `loss.png` (every key containing "loss", as lines) and
  `learning_rate.png` (keys `lr`, `learning_rate`, `*_lr`, and in a second
  panel keys containing "scale", as steps: they are piecewise constant), each
  only when it has at least one finite point.  Missing keys and nulls are
  skipped.  Axes are labelled; step ticks are integers.

  Args:
    workdir: run directory (or its metrics.jsonl).
    out_dir: where to write; default `<workdir>/plots`.
    loss_label: y label of the loss plot with its unit, e.g.
      "cross-entropy (nats)"; default: inferred from the key names.

  Returns:
    Paths of the PNGs written.

  Raises:
    FileNotFoundError: if there is no metrics file.
  """
  path = _metrics_path(workdir)
  rows = read_metrics(path)
  out = path.parent / PLOTS_DIR if out_dir is None else pathlib.Path(out_dir)
  written = []
  for name, (title, panels) in _plots(rows, loss_label).items():
    out.mkdir(parents=True, exist_ok=True)
    _figure(title, panels).savefig(out / name, format="png")
    written.append(out / name)
  return written
