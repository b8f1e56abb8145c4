"""Outputs of the NMF learned-schedule binary: results.md, plots, strict JSON.

Pure functions of the evaluation summary (`nmf_train.train_and_evaluate`
builds it), kept apart from training and evaluation.
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from common import metrics as metrics_lib
from schedulers.learned import compare

POLICY = "policy"
TASKS = ("synthetic", "digits")


def geomean_curve(loss: np.ndarray) -> np.ndarray:
  """exp(mean over runs of log loss) at each step (NaN where a run is non-finite or 0)."""
  with np.errstate(divide="ignore", invalid="ignore"):
    logs = np.log(np.asarray(loss, np.float64))
  logs = np.where(np.isfinite(logs), logs, np.nan)
  return np.exp(np.mean(logs, axis=0))


# ---------------------------------------------------------------------------
# Outputs.
# ---------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
  """Nested values with non-finite floats as None (strict JSON)."""
  if isinstance(value, Mapping):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if isinstance(value, (np.floating, float)):
    return float(value) if math.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.bool_):
    return bool(value)
  return value


_SCHEDULES = {
  POLICY: "learned: the agent multiplies the rate by one of the action factors at every decision",
  "constant_init": "η_0 constant, η_0 = env.init_lr_fraction · η_max(0) (the env's 'keep' policy, lr_cap = inf)",
  "constant": "η_0 constant",
  "step": "η_0 · step_factor^⌊t / (step_every · K)⌋",
  "exponential": "η_0 · exponential_final^(t / K)",
  "cosine": "η_0 · (final + (1 − final) · ½(1 + cos(π t / K)))",
  "bound": "clip_c · η_max(t): the clip itself",
  "greedy_lr": "η_0 · GreedyLR scale, stepped on each minibatch loss (baselines.greedy)",
}


def fmt(x: Any, spec: str = ".4g") -> str:
  return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def report(results: Mapping[str, Any]) -> str:
  """results.md: the setup, the methods and both comparison tables.

  Tasks come in `TASKS` order and methods in the comparison's order, so the
  report renders the same from the in-memory summary and from results.json
  (whose keys are sorted).
  """
  tasks = {name: results["tasks"][name] for name in TASKS if name in results["tasks"]}
  method_order = [row["method"] for row in tasks[TASKS[0]]["comparison"]]
  cfg = results["config"]
  env = cfg["env"]
  lr_cap = "∞" if env["lr_cap"] is None else f"{env['lr_cap']:g}"  # inf is stored as null
  k = env["steps_per_decision"] * env["num_decisions"]
  ev = cfg["eval"]
  lines = [
    "# Learned learning-rate schedule for stochastic NMF: results",
    "",
    f"PPO agent after {results['trained_iterations']} iterations ({results['training_episodes']} training"
    f" episodes on fresh {env['m']}×{env['n']} rank-{env['rank']} problems, noise {env['noise']}, root"
    f" PRNGKey({cfg['seed']})); evaluated deterministically (argmax action).  An episode is one projected-SGD"
    f" run of K = {k} steps ({env['num_decisions']} decisions × {env['steps_per_decision']} steps), the rate"
    f" starting at {env['init_lr_fraction']:g} · η_max(0).",
    "",
    "**Identical runs.** On each held-out seed every method starts from the same `nmf_env.env_reset` state"
    " (problem, init, power vectors, minibatch key) and takes the same K steps on the same minibatches.  **Every"
    f" step of every method, baselines included, uses min(rate, {env['clip_c']:g} · η_max) at its point** (the"
    " env's clip, `clip_c`); the policy's rate is also clamped to"
    f" {lr_cap} · clip_c · η_max at each decision (`lr_cap`).",
    "",
    f"**Tuning.** η_0 = f · η_max(0); for the tuned baselines f is chosen from {list(ev['lr_fractions'])} by the"
    f" geometric-mean final loss of {ev['num_tuning_seeds']} tuning episodes of the same task (root"
    f" PRNGKey({ev['tuning_seed']})).  Held-out episodes come from root PRNGKey({ev['seed']}); training, tuning and"
    " held-out roots differ.  The policy is trained on synthetic problems only and is not tuned for digits, while"
    " the baselines are tuned on each task.",
    "",
    "**Statistics.** Final full-batch loss f = ½‖V − WH‖²/(mn).  Ratio = geometric-mean ratio method / policy"
    f" with a {ev['confidence']:.0%} paired t-interval on the log ratios (> 1: the method ends higher than the"
    f" policy); wins / ties / losses count the seeds where the policy ends lower / within {ev['tie_rtol']:g}"
    " (relative) / higher.",
    "",
    "## Methods",
    "",
  ]
  lines.append(
    "| method | schedule | "
    + " | ".join(f"{task}: f (× η_max(0)) | {task}: steps at the clip" for task in tasks)
    + " |"
  )
  lines.append("|" + "|".join(["---"] * (2 + 2 * len(tasks))) + "|")
  for name in method_order:
    cells = [name, _SCHEDULES[name]]
    for task in tasks.values():
      m = task["methods"][name]
      frac = "—" if m["fraction"] is None else f"{m['fraction']:g}" + (" (tuned)" if m["tuned"] else "")
      cells += [frac, f"{m['at_clip']:.0%}"]
    lines.append("| " + " | ".join(cells) + " |")
  for task_name, task in tasks.items():
    lines += [
      "",
      f"## {task['title']}",
      "",
      task["description"],
      "",
      compare.markdown_table(task["comparison"], confidence=ev["confidence"]),
    ]
    lines += ["", f"Tuning scores (geometric-mean final loss on the tuning episodes) for {task_name}:", ""]
    grid = [f"{f:g}" for f in ev["lr_fractions"]]
    lines.append("| baseline | " + " | ".join(f"f = {f}" for f in grid) + " |")
    lines.append("|" + "|".join(["---"] * (1 + len(grid))) + "|")
    for name in [m for m in method_order if m in task["tuning"]]:
      scores = task["tuning"][name]
      lines.append(f"| {name} | " + " | ".join(fmt(scores[f]) for f in grid) + " |")
    counts = task["policy_action_counts"]
    mults = env["multipliers"]
    lines += [
      "",
      "Policy actions over all held-out decisions: "
      + ", ".join(f"×{m:g}: {c}" for m, c in zip(mults, counts))
      + f"; seed 0: {' '.join(f'{mults[a]:g}' for a in task['policy_actions_seed0'])}.",
    ]
  lines += [
    "",
    "## Plots",
    "",
  ]
  for task_name in tasks:
    lines.append(
      f"- [`plots/lr_{task_name}.png`](plots/lr_{task_name}.png): rate and rate / η_max per SGD step on held-out"
      " seed 0, every method"
    )
    lines.append(
      f"- [`plots/loss_{task_name}.png`](plots/loss_{task_name}.png): geometric-mean full loss per step over the"
      " held-out seeds, and its ratio to the policy's"
    )
  lines.append("- [`plots/agent.png`](plots/agent.png): mean episode return and policy entropy during training")
  return "\n".join(lines) + "\n"


def _figure(n_panels: int, panel_size=(6.0, 3.8), legend_rows: int = 2):
  """A Figure with an Agg canvas, one row of axes and room for a legend below."""
  # pylint: disable=g-import-not-at-top
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  # pylint: enable=g-import-not-at-top
  bottom = 0.7 + 0.25 * legend_rows
  width, height = panel_size[0] * n_panels + 0.4, panel_size[1] + bottom + 0.7
  fig = Figure(figsize=(width, height), dpi=100)
  FigureCanvasAgg(fig)
  fig.subplots_adjust(left=0.9 / width, right=1 - 0.2 / width, bottom=bottom / height, top=1 - 0.75 / height)
  fig.subplots_adjust(wspace=0.3)
  return fig, list(fig.subplots(1, n_panels, squeeze=False).ravel())


def _styles(names: Sequence[str]) -> dict[str, dict]:
  """The policy thick and dark red, baselines thin (tab10 colours)."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  cmap = matplotlib.colormaps["tab10"]
  styles = {n: {"color": cmap(i % 10), "lw": 1.2, "alpha": 0.85, "zorder": 2} for i, n in enumerate(names)}
  styles[POLICY] = {"color": "#c00000", "lw": 2.6, "alpha": 0.9, "zorder": 4}
  return styles


def _legend(fig, axes) -> None:
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize="small", frameon=False)


def plot_task(plot_dir: pathlib.Path, task_name: str, title: str, runs: Mapping[str, Any], clip_c: float):
  """`lr_<task>.png` and `loss_<task>.png` from per-method `nmf_train.Runs` (loss, lr, eta_max arrays)."""
  names = list(runs)
  styles = _styles([n for n in names if n != POLICY])
  paths = []

  fig, (ax_lr, ax_rel) = _figure(2)
  for name in names:
    r = runs[name]
    steps = np.arange(r.lr.shape[1])
    lr = np.where(r.lr[0] > 0, r.lr[0], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
      rel = np.where(r.eta_max[0] > 0, r.lr[0] / r.eta_max[0], np.nan)
    ax_lr.plot(steps, lr, drawstyle="steps-post", label=name, **styles[name])
    ax_rel.plot(steps, rel, drawstyle="steps-post", label=name, **styles[name])
  ax_rel.axhline(clip_c, color="k", ls=":", lw=1, label=f"clip {clip_c:g}")
  ax_lr.set_ylabel("learning rate")
  ax_rel.set_ylabel("learning rate / η_max(t)")
  ax_lr.set_title("rate per SGD step (held-out seed 0)")
  ax_rel.set_title("rate relative to the bound (dotted: the clip)")
  for ax in (ax_lr, ax_rel):
    ax.set_yscale("log")
    ys = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.get_lines()])
    ys = ys[np.isfinite(ys) & (ys > 0)]
    if ys.size:  # a schedule decaying to ~0 (cosine) would squash the rest
      ax.set_ylim(bottom=max(ys.min(), 1e-3 * ys.max()) / 1.5, top=ys.max() * 1.5)
    metrics_lib.style_step_axis(ax, "SGD step")
    metrics_lib.readable_log_ticks(ax)
    ax.grid(True, alpha=0.3)
  _legend(fig, [ax_rel])
  fig.suptitle(f"{title}: learning-rate schedules")
  path = plot_dir / f"lr_{task_name}.png"
  fig.savefig(path, format="png")
  paths.append(path)

  fig, (ax_loss, ax_ratio) = _figure(2)
  ref = geomean_curve(runs[POLICY].loss)
  for name in names:
    curve = geomean_curve(runs[name].loss)
    steps = np.arange(curve.size)
    ax_loss.plot(steps, curve, label=name, **styles[name])
    ax_ratio.plot(steps, curve / ref, label=name, **styles[name])
  ax_loss.set_ylabel("full loss ½‖V − WH‖²/(mn), geometric mean")
  ax_ratio.set_ylabel("geometric-mean loss / policy's")
  ax_loss.set_title(f"loss over {runs[POLICY].loss.shape[0]} held-out seeds")
  ax_ratio.set_title("relative to the policy (> 1: higher loss)")
  for ax in (ax_loss, ax_ratio):
    ax.set_yscale("log")
    metrics_lib.style_step_axis(ax, "SGD step")
    metrics_lib.readable_log_ticks(ax)
    ax.grid(True, alpha=0.3)
  _legend(fig, [ax_loss])
  fig.suptitle(f"{title}: loss curves")
  path = plot_dir / f"loss_{task_name}.png"
  fig.savefig(path, format="png")
  paths.append(path)
  return paths


def plot_agent(plot_dir: pathlib.Path, rows: Sequence[Mapping[str, Any]]) -> pathlib.Path:
  fig, axes = _figure(2, legend_rows=0)
  steps = [r["step"] for r in rows]
  for ax, key, label in (
    (axes[0], "agent/episode_return", "mean episode return log(f_0 / f_T)"),
    (axes[1], "agent/entropy", "policy entropy (nats)"),
  ):
    ax.plot(steps, [r.get(key, np.nan) for r in rows], marker="o" if len(rows) <= 3 else None, color="#c00000")
    ax.set_ylabel(label)
    metrics_lib.style_step_axis(ax, "PPO iteration")
    ax.grid(True, alpha=0.3)
  fig.suptitle("PPO training (means over each chunk)")
  path = plot_dir / "agent.png"
  fig.savefig(path, format="png")
  return path


def write_atomic(path: pathlib.Path, text: str) -> None:
  tmp = path.with_name(f".{path.name}.{os.getpid()}")
  tmp.write_text(text)
  os.replace(tmp, path)
