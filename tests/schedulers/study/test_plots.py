"""Tests of schedulers.study.plots: the Figures' axes, line styles and ticks.

Synthetic records of one short task (4 evaluations, so default step ticks
would be fractional) whose learning rates stay within a factor of about 1.2,
so the log learning-rate axis spans well under a decade.
"""

import numpy as np
import pytest

from schedulers.study import plots as study_plots
from schedulers.study import report as study_report

EVAL_STEPS = [1, 2, 3, 4]
SEEDS = [0, 1]
METRIC = "held-out cross-entropy (nats)"
LRS = {
  "constant": [1e-3, 1e-3, 1e-3, 1e-3],
  "cosine": [1e-3, 0.98e-3, 0.93e-3, 0.9e-3],
  "greedy_step": [1e-3, 1.05e-3, 1.1e-3, 1.05e-3],
  "greedy_eval": [1e-3, 1e-3, 0.95e-3, 0.95e-3],
}


def _record(arm, optimizer="adamw"):
  lr = np.tile(LRS[arm], (len(SEEDS), 1))
  test = np.tile([1.0, 0.8, 0.7, 0.65], (len(SEEDS), 1))
  return {
    "task": "task_a",
    "optimizer": optimizer,
    "arm": arm,
    "metric": METRIC,
    "eval_steps": EVAL_STEPS,
    "eval_seeds": SEEDS,
    "curves": {"test": test.tolist(), "lr": lr.tolist()},
  }


@pytest.fixture(scope="module")
def figures():
  records = [_record(arm) for arm in LRS]
  rows = study_report.index_rows(records)
  styles = study_plots._arm_styles(study_report.arm_order(records))
  return {kind: study_plots.task_figure(rows, "task_a", styles, kind) for kind in ("curves", "lr")}


def _visible_axes(fig):
  return [ax for ax in fig.axes if ax.get_visible()]


@pytest.mark.parametrize("kind", ["curves", "lr"])
def test_axes_are_labelled_with_integer_step_ticks(figures, kind):
  (ax,) = _visible_axes(figures[kind])
  assert ax.get_xlabel() == "training step"
  expected = "learning rate" if kind == "lr" else METRIC
  assert expected in ax.get_ylabel()
  lo, hi = ax.get_xlim()
  ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
  assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


def test_learning_rates_are_steps_and_curves_are_lines(figures):
  (lr_ax,) = _visible_axes(figures["lr"])
  (curve_ax,) = _visible_axes(figures["curves"])
  assert len(lr_ax.get_lines()) == len(LRS)
  assert {line.get_drawstyle() for line in lr_ax.get_lines()} == {"steps-post"}
  assert {line.get_drawstyle() for line in curve_ax.get_lines()} == {"default"}


def test_narrow_log_lr_axis_has_three_labelled_ticks(figures):
  (ax,) = _visible_axes(figures["lr"])
  assert ax.get_yscale() == "log"
  figures["lr"].canvas.draw()
  lo, hi = sorted(ax.get_ylim())
  labels = [
    t.get_text() for t in ax.yaxis.get_ticklabels(which="both") if t.get_text() and lo <= t.get_position()[1] <= hi
  ]
  assert len(labels) >= 3 and len(set(labels)) == len(labels), labels


def test_profile_figure_axes_are_labelled():
  taus = [1.0, 1.01, 1.1, 2.0]
  pair = {
    "rho_greedy": [0.5, 0.6, 0.9, 1.0],
    "rho_baseline": [0.4, 0.5, 0.8, 1.0],
    "greedy_wins": 0.6,
    "baseline_wins": 0.4,
    "n_problems": 10,
  }
  profile = {"pairs": {"constant": pair}, "taus": taus, "offset": None}
  fig = study_plots.profile_figure("greedy_step", profile)
  (ax,) = _visible_axes(fig)
  assert ax.get_xlabel() and ax.get_ylabel()
  assert {line.get_drawstyle() for line in ax.get_lines()} == {"steps-post"}
