"""Plots of the GreedyLR benchmark study (Figure + Agg canvas, no pyplot).

`write_plots(analysis, records, plot_dir)` draws, per task, the mean test
metric and the learning rate of each arm against the step
(`curves_<task>.png`, `lr_<task>.png`), and per GreedyLR variant its
performance profiles against each baseline (`profile_<variant>.png`).
`task_figure` and `profile_figure` return the Figures (for tests); axes are
labelled with quantity and unit, step ticks are integers, learning rates
(sampled at each evaluation and held until the next) are drawn as steps.
`schedulers.study.outputs.write_outputs` calls it, and this module imports
`study_report` (never the reverse at import time) for the study constants
and shared record helpers.  matplotlib is imported inside the drawing
functions, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence

import numpy as np

from common import metrics
from schedulers.study import report as study_report

LEGEND_COLUMNS = 7
LOG_SPAN = 10.0  # curves plots use log-y when the values span > 10x


def _figure(n_panels: int, ncols: int, panel_size=(5.0, 3.4), bottom_in: float = 0.6):
  """A Figure with an Agg canvas, a grid of axes and fixed margins (inches).

  Margins are set by hand rather than by constrained layout, which costs a
  second full tick layout per axis (seconds per figure on a busy CPU).
  """
  # pylint: disable=g-import-not-at-top
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  # pylint: enable=g-import-not-at-top
  ncols = max(1, min(ncols, n_panels))
  nrows = math.ceil(n_panels / ncols)
  width = panel_size[0] * ncols + 0.4
  height = panel_size[1] * nrows + bottom_in + 0.7
  fig = Figure(figsize=(width, height), dpi=100)
  FigureCanvasAgg(fig)
  fig.subplots_adjust(
    left=1.0 / width, right=1 - 0.2 / width, bottom=bottom_in / height, top=1 - 0.75 / height, wspace=0.3, hspace=0.55
  )
  axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
  for ax in axes[n_panels:]:
    ax.set_visible(False)
  return fig, axes[:n_panels]


def _arm_styles(arm_order: list[str]) -> dict[str, dict]:
  """Line style per arm: GreedyLR thick and dark, baselines thin."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  cmap = matplotlib.colormaps["tab20"]
  baselines = [a for a in arm_order if a not in study_report.VARIANTS]
  styles = {a: {"color": cmap(i % 20), "lw": 1.2, "alpha": 0.85, "zorder": 2} for i, a in enumerate(baselines)}
  styles["greedy_step"] = {"color": "#c00000", "lw": 2.6, "alpha": 0.9, "zorder": 4}
  styles["greedy_eval"] = {"color": "#000000", "lw": 2.6, "ls": "--", "alpha": 0.9, "zorder": 5}
  return styles


def _finite_seed_mean(curve: np.ndarray) -> np.ndarray:
  """Mean over seeds of the finite values at each evaluation (NaN if none)."""
  ok = np.isfinite(curve)
  count = ok.sum(axis=0)
  total = np.where(ok, curve, 0.0).sum(axis=0)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _seed0(record: study_report.Record) -> int:
  seeds = list(record["eval_seeds"])
  return seeds.index(0) if 0 in seeds else 0


def _draw_rows(fig, axes, arms_by_row, styles, series_fn, ylabel, robust=False, steps=False):
  """One panel per row; one line per arm; a shared legend below.

  With `robust`, a panel whose largest value is far above the bulk (a
  diverged arm) is cut at 1.5x the 90th percentile, so the other arms stay
  readable; the title says so.  With `steps`, lines are drawn as steps
  (`steps-post`: each value holds until the next evaluation).
  """
  handles = {}
  for ax, ((task, opt), arms) in zip(axes, arms_by_row.items()):
    values = []
    for arm, record in arms.items():
      x, y = np.asarray(record["eval_steps"]), series_fn(record)
      ok = np.isfinite(y)
      values.append(y[ok])
      (line,) = ax.plot(
        x[ok],
        y[ok],
        label=arm,
        marker="o" if ok.sum() <= 3 else None,
        ms=3,
        drawstyle="steps-post" if steps else "default",
        **styles[arm],
      )
      handles.setdefault(arm, line)
    values = np.concatenate(values) if values else np.array([])
    title = f"{task} / {opt}"
    bulk = np.percentile(values, 90) if values.size else None
    if robust and bulk is not None and np.max(values) > 3 * bulk > 0:
      ax.set_ylim(min(0.0, np.min(values)), 1.5 * bulk)
      title += " (off-scale arms cut)"
    elif values.size and np.all(values > 0) and np.max(values) > LOG_SPAN * np.min(values):
      ax.set_yscale("log")
    ax.set_title(title)
    metrics.style_step_axis(ax)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
  order = [a for a in styles if a in handles]
  fig.legend(
    [handles[a] for a in order],
    order,
    loc="lower center",
    bbox_to_anchor=(0.5, 0.0),
    ncol=LEGEND_COLUMNS,
    fontsize="small",
    frameon=False,
  )


def _metric_label(arms_by_row) -> str:
  """The task's test metric as recorded (quantity and unit), or a generic one."""
  for arms in arms_by_row.values():
    for record in arms.values():
      if record.get("metric"):
        return f"{record['metric']}, seed mean"
  return "test metric, seed mean"


def task_figure(rows: study_report.Rows, task: str, styles: dict, kind: str):
  """The Figure of `curves_<task>.png` (kind 'curves') or `lr_<task>.png`."""
  arms_by_row = {
    k: dict(sorted(v.items(), key=lambda kv: list(styles).index(kv[0]))) for k, v in rows.items() if k[0] == task
  }
  n_arms = len({a for arms in arms_by_row.values() for a in arms})
  legend_in = 0.25 * math.ceil(n_arms / LEGEND_COLUMNS)
  fig, axes = _figure(len(arms_by_row), ncols=3, bottom_in=0.75 + legend_in)
  if kind == "curves":
    series = lambda r: _finite_seed_mean(study_report.curve(r, "test"))
    ylabel = _metric_label(arms_by_row)
    title = f"{task}: mean test metric per arm"
  else:
    lr = lambda r: study_report.curve(r, "lr")[_seed0(r)]
    series = lambda r: np.where(lr(r) > 0, lr(r), np.nan)
    ylabel = "learning rate"
    title = f"{task}: learning rate at each evaluation (eval seed 0)"
  _draw_rows(fig, axes, arms_by_row, styles, series, ylabel, robust=kind == "curves", steps=kind == "lr")
  if kind == "lr":
    for ax in axes:
      ax.set_yscale("log")
      ys = [np.asarray(line.get_ydata(), float) for line in ax.get_lines()]
      ys = np.concatenate(ys) if ys else np.array([])
      ys = ys[np.isfinite(ys) & (ys > 0)]
      if ys.size:  # schedules decaying to ~0 would squash the rest
        ax.set_ylim(bottom=max(ys.min(), 1e-4 * ys.max()) / 1.5, top=ys.max() * 1.5)
  for ax in axes:
    metrics.readable_log_ticks(ax)  # a narrow log range gets >= 3 labels
  fig.suptitle(title)
  return fig


def plot_task(path: pathlib.Path, rows: study_report.Rows, task: str, styles: dict, kind: str) -> None:
  """Writes `curves_<task>.png` (kind 'curves') or `lr_<task>.png` (kind 'lr')."""
  task_figure(rows, task, styles, kind).savefig(path, format="png")


def profile_figure(variant: str, profile: dict):
  """The Figure of `profile_<variant>.png`: per baseline, both arms' ρ(τ)."""
  pairs = profile["pairs"]
  fig, axes = _figure(len(pairs), ncols=4, panel_size=(3.6, 2.8), bottom_in=0.55)
  gaps = np.asarray(profile["taus"][1:]) - 1.0
  xlabel = "loss / best − 1" if profile["offset"] is None else f"(loss − best) / {profile['offset']:g}"
  pct = study_report.pct
  for ax, (baseline, p) in zip(axes, pairs.items()):
    ax.step(
      gaps, p["rho_greedy"][1:], where="post", color="#c00000", lw=2, label=f"{variant} (wins {pct(p['greedy_wins'])})"
    )
    ax.step(
      gaps,
      p["rho_baseline"][1:],
      where="post",
      color="#1f77b4",
      lw=1.5,
      label=f"{baseline} (wins {pct(p['baseline_wins'])})",
    )
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"vs {baseline} ({p['n_problems']} problems)", fontsize="medium")
    ax.set_xlabel(xlabel, fontsize="small")
    ax.set_ylabel("fraction of problems", fontsize="small")
    ax.legend(fontsize="x-small", loc="lower right")
    ax.grid(True, alpha=0.3)
  fig.suptitle(
    f"Performance profiles: {study_report.VARIANT_TITLES[variant]} "
    "(wins = fraction of problems at τ = 1; ties count for both)"
  )
  return fig


def plot_profile(path: pathlib.Path, variant: str, profile: dict) -> None:
  """Writes `profile_<variant>.png`."""
  profile_figure(variant, profile).savefig(path, format="png")


def write_plots(analysis: dict, records: Sequence[study_report.Record], plot_dir: pathlib.Path) -> list[pathlib.Path]:
  """Per-task curve and learning-rate plots, and per-variant profiles."""
  plot_dir.mkdir(parents=True, exist_ok=True)
  rows = study_report.index_rows(records)
  styles = _arm_styles(study_report.arm_order(records))
  paths = []
  for task in dict.fromkeys(t for t, _ in rows):
    for kind in ("curves", "lr"):
      path = plot_dir / f"{kind}_{task}.png"
      plot_task(path, rows, task, styles, kind)
      paths.append(path)
  for variant, profile in analysis["profiles"].items():
    if profile is not None:
      path = plot_dir / f"profile_{variant}.png"
      plot_profile(path, variant, profile)
      paths.append(path)
  return paths
