"""Aggregates finished `mql.main` runs over seeds into a results table and plots.

  python -m mql.report --family=point-robot --runs=runs/mql --out=mql/results/point-robot

Reads `<runs>/<family>/<method>/seed*/` for the methods `mql` (context TD3
with adaptation) and `td3` (the multi-task TD3 baseline without context, run
with `--config.use_context=False`), each workdir's `results.json` (the final
evaluation on the test tasks) and `metrics.jsonl` (return vs env steps).
Writes `results.json`, `results.md` and `return.png` to `--out`.

Each run's small files (results.json, metrics.jsonl, config.json,
tasks.json) are all it reads, so a directory holding only those rebuilds a
table without the checkpoints.

Intervals are 95% Student-t intervals over seeds (each seed's number is its
mean over the test tasks); the adaptation gain also gets a paired interval
over all (seed, test task) pairs, which is narrower but treats tasks as
independent draws.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from absl import flags
from scipy import stats

from common import app
from common import metrics as metrics_lib

_FAMILY = flags.DEFINE_string("family", "point-robot", "Task family.")
_RUNS = flags.DEFINE_string("runs", "runs/mql", "Directory holding <family>/<method>/seed*/ workdirs.")
_OUT = flags.DEFINE_string("out", None, "Output directory (default mql/results/<family>).")
METHODS = {"mql": "MQL (TD3 + GRU context)", "td3": "multi-task TD3, no context"}


def interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
  """Mean and Student-t interval of `values` (NaN bounds for fewer than 2 values)."""
  x = np.asarray(values, np.float64)
  mean = float(x.mean())
  if x.size < 2:
    return mean, float("nan"), float("nan")
  half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
  return mean, mean - half, mean + half


def load_method(directory: pathlib.Path) -> list[dict]:
  """Each finished seed's results.json and learning curve, seed order."""
  runs = []
  for workdir in sorted(directory.glob("seed*")):
    path = workdir / "results.json"
    if not path.exists():
      continue
    results = json.loads(path.read_text())
    rows = metrics_lib.read_metrics(workdir)
    curve = [(r["env_steps"], r["episode_return"]) for r in rows if r.get("episode_return") is not None]
    steps = {r["step"]: r["env_steps"] for r in rows if "env_steps" in r}
    evals = [
      (steps.get(r["step"]), r["eval/return_before_mql"], r["eval/return_after_mql"])
      for r in rows
      if r.get("eval/return_after_mql") is not None
    ]
    runs.append({"seed": results["seed"], "results": results, "curve": curve, "evals": evals})
  return runs


def summarize(runs: list[dict]) -> dict:
  before = np.asarray([r["results"]["per_task"]["before"] for r in runs], np.float64)  # [seeds, tasks, K]
  after = np.asarray([r["results"]["per_task"]["after"] for r in runs], np.float64)
  gain_tasks = (after.mean(-1) - before.mean(-1)).reshape(-1)
  out = {
    "seeds": [r["seed"] for r in runs],
    "env_steps": runs[0]["results"]["summary"]["env_steps"],
    "test_tasks": int(before.shape[1]),
    "before_mql": interval(before.mean(axis=(1, 2))),
    "after_mql": interval(after.mean(axis=(1, 2))),
    "before_pearl": interval(before[:, :, 1].mean(axis=1)),
    "after_pearl": interval(after[:, :, 1].mean(axis=1)),
    "gain_mql": interval(after.mean(axis=(1, 2)) - before.mean(axis=(1, 2))),
    "gain_pearl": interval(after[:, :, 1].mean(axis=1) - before[:, :, 1].mean(axis=1)),
    "gain_mql_paired_tasks": interval(gain_tasks),
    "tasks_improved": float(np.mean(gain_tasks > 0)),
    "classifier_accuracy": float(np.mean([r["results"]["summary"]["classifier_accuracy"] for r in runs])),
    "ess": float(np.mean([r["results"]["summary"]["ess"] for r in runs])),
  }
  return out


def _fmt(ci) -> str:
  mean, lo, hi = ci
  return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else f"{mean:.2f}"


def markdown(family: str, summaries: dict) -> str:
  lines = [
    f"# MQL on {family}: final test-task returns",
    "",
    "Means over seeds with 95% t-intervals; each seed's value is its mean over the test tasks. "
    "MQL protocol: mean of the evaluation episodes; PEARL protocol: the third trajectory "
    "(the collection episode counts as the first). 'before' is the meta-trained policy without adaptation.",
    "",
    "| method | seeds | env steps | before (MQL) | after (MQL) | gain (MQL) | before (PEARL) | after (PEARL) "
    "| gain (PEARL) | tasks improved |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for method, s in summaries.items():
    lines.append(
      f"| {METHODS[method]} | {len(s['seeds'])} | {s['env_steps']} | {_fmt(s['before_mql'])} | {_fmt(s['after_mql'])} "
      f"| {_fmt(s['gain_mql'])} | {_fmt(s['before_pearl'])} | {_fmt(s['after_pearl'])} | {_fmt(s['gain_pearl'])} "
      f"| {100 * s['tasks_improved']:.0f}% |"
    )
  if "mql" in summaries:
    s = summaries["mql"]
    lines += [
      "",
      f"MQL adaptation gain, paired over all {len(s['seeds'])} x {s['test_tasks']} (seed, task) pairs: "
      f"{_fmt(s['gain_mql_paired_tasks'])}; propensity classifier training accuracy {s['classifier_accuracy']:.2f}, "
      f"normalised ESS of the stage-2 weights {s['ess']:.2f}.",
    ]
  return "\n".join(lines) + "\n"


def plot(family: str, loaded: dict, path: pathlib.Path) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6.5, 4))
  for (method, runs), color in zip(loaded.items(), ("C0", "C1")):
    if not runs:
      continue
    n = min(len(r["curve"]) for r in runs)
    steps = np.asarray([s for s, _ in runs[0]["curve"][:n]])
    values = np.asarray([[v for _, v in r["curve"][:n]] for r in runs])
    mean = values.mean(0)
    ax.plot(steps, mean, color=color, label=f"{METHODS[method]}: training episodes")
    if len(runs) > 1:
      ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.2)
    evals = [r["evals"] for r in runs]
    m = min(len(e) for e in evals)
    if m:
      x = [evals[0][i][0] for i in range(m)]
      ax.plot(x, [np.mean([e[i][1] for e in evals]) for i in range(m)], "o--", color=color, label="test, before")
      ax.plot(x, [np.mean([e[i][2] for e in evals]) for i in range(m)], "s-", color=color, label="test, after")
  ax.set_xlabel("env steps (all slots)")
  ax.set_ylabel("episode return")
  ax.set_title(f"{family}: mean over seeds (band: min-max)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv) -> None:
  del argv
  family = _FAMILY.value
  out = pathlib.Path(_OUT.value or f"mql/results/{family}")
  root = pathlib.Path(_RUNS.value) / family
  loaded = {method: load_method(root / method) for method in METHODS}
  loaded = {m: runs for m, runs in loaded.items() if runs}
  if not loaded:
    print(f"error: no finished runs under {root}/<mql|td3>/seed*/", file=sys.stderr)
    sys.exit(app.EXIT_BAD_INPUT)
  summaries = {method: summarize(runs) for method, runs in loaded.items()}
  out.mkdir(parents=True, exist_ok=True)
  (out / "results.json").write_text(json.dumps({"family": family, "methods": summaries}, indent=1) + "\n")
  (out / "results.md").write_text(markdown(family, summaries))
  plot(family, loaded, out / "return.png")
  print(markdown(family, summaries))
  print(f"outputs in {out}: results.md, results.json, return.png")


if __name__ == "__main__":
  app.run_tool(main)
