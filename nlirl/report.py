"""Results table of several `nlirl.main` runs: SR / SPL / NE / oracle SR with 95% CIs over seeds.

  python -m nlirl.report DIR [DIR ...] [--plot=FILE.png] > results.md   # each DIR holds a finished run

`--plot` also draws the learning curves of the runs (from their metrics.jsonl): the training rollouts'
success rate (mean over seeds, 10-iteration moving average) and the greedy SR of every evaluation.

Each cell is the mean over seeds of the per-seed mean over (path, instruction) pairs, with the half-width of
a 95% t-interval over seeds.  The last lines compare LangGoalIRL with the best baseline (relative SR change,
as the paper reports it) and give the adaptation gain.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from common import metrics as metrics_lib

BASELINES = ("bc", "gail", "airl")
COLUMNS = (("success", "SR"), ("spl", "SPL"), ("navigation_error", "NE (m)"), ("oracle_success", "oracle SR"))


def _name(results: dict) -> str:
  if results["algorithm"] != "langgoalirl":
    return results["algorithm"]
  off = [k for k, v in sorted(results["variant_flags"].items()) if not v]
  shuffled = (results.get("adaptation") or {}).get("labels") == "shuffled"
  return "langgoalirl" + "".join(f" -{k}" for k in off) + (", shuffled adaptation labels" if shuffled else "")


def _cell(m: dict, pct: bool) -> str:
  scale = 100.0 if pct else 1.0
  return f"{scale * m['mean']:.1f} ± {scale * m['ci95']:.1f}"


def table(runs: list[dict]) -> str:
  splits = list(runs[0]["eval"])
  head = "| method | seeds | iters | " + " | ".join(f"{s} {c}" for s in splits for _, c in COLUMNS) + " |"
  lines = [head, "|" + "---|" * (3 + len(splits) * len(COLUMNS))]
  for r in runs:
    cells = [_cell(r["eval"][s][k], k != "navigation_error") for s in splits for k, _ in COLUMNS]
    lines.append(f"| {_name(r)} | {r['num_seeds']} | {r['iterations']} | " + " | ".join(cells) + " |")
  lines.append("")
  lines.append("SR, SPL, oracle SR in %; NE in metres; ± is the 95% t-interval half-width over seeds.")
  ours = [r for r in runs if _name(r) == "langgoalirl"]
  base = [r for r in runs if r["algorithm"] in BASELINES]
  if ours and base:
    lines.append("")
    for s in splits:
      best = max(base, key=lambda r: r["eval"][s]["success"]["mean"])
      a, b = ours[0]["eval"][s]["success"]["mean"], best["eval"][s]["success"]["mean"]
      rel = f"{100 * (a - b) / b:+.0f}% relative" if b > 0 else "n/a relative (baseline SR 0)"
      lines.append(
        f"* {s}: LangGoalIRL SR {100 * a:.1f}% vs best baseline ({_name(best)}) {100 * b:.1f}%: "
        f"{100 * (a - b):+.1f} points, {rel}."
      )
    ad = ours[0].get("adaptation")
    if ad:
      before, after = ad["before"]["success"], ad["after"]["success"]
      rel = (after["mean"] - before["mean"]) / before["mean"] if before["mean"] > 0 else float("nan")
      lines.append(
        f"* adaptation ({ad['num_demos']} pseudo-demos, {ad['iterations']} iterations): val_unseen SR "
        f"{_cell(before, True)} -> {_cell(after, True)} ({100 * rel:+.0f}% relative; per-seed gains "
        f"{', '.join(f'{100 * g:+.1f}' for g in ad['success_gain_per_seed'])} points)."
      )
  return "\n".join(lines) + "\n"


def plot(dirs: list[str], runs: list[dict], path: str, window: int = 10) -> None:
  """Learning curves of the runs in `dirs` (their results `runs`), one colour per run, to the PNG `path`."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for i, (d, results) in enumerate(zip(dirs, runs)):
    name, colour = _name(results), f"C{i % 10}"
    metrics_file = pathlib.Path(d) / "metrics.jsonl"
    rows = metrics_lib.read_metrics(metrics_file) if metrics_file.is_file() else []
    train = sorted((r["step"], r["rollout/success"]) for r in rows if r.get("rollout/success") is not None)
    if train:
      steps, sr = np.asarray(train).T
      k = min(window, len(sr))
      axes[0].plot(steps[k - 1 :], 100 * np.convolve(sr, np.ones(k) / k, mode="valid"), color=colour, label=name)
    for ax, split in zip(axes[1:], ("val_seen", "val_unseen")):
      pts = sorted((r["step"], r[f"eval/{split}/success"]) for r in rows if r.get(f"eval/{split}/success") is not None)
      if pts:
        steps, sr = np.asarray(pts).T
        ax.plot(steps, 100 * sr, "o-", color=colour, label=name)
  titles = ("training rollouts (sampled policy)", "val_seen (greedy)", "val_unseen (greedy)")
  for ax, title in zip(axes, titles):
    ax.set_xlabel("iteration")
    ax.set_ylabel("success rate (%)")
    ax.set_title(title)
  axes[1].legend(fontsize=7)  # every run is evaluated; BC has no training rollouts
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


USAGE = (
  "usage: python -m nlirl.report DIR [DIR ...] [--plot=FILE.png]  (each DIR holds a finished nlirl.main run's "
  "results.json)"
)


def main(argv: list[str]) -> int:
  """Prints the table; a missing argument or results file is one line on stderr and exit 2."""
  plots = [a.removeprefix("--plot=") for a in argv[1:] if a.startswith("--plot=")]
  dirs = [a for a in argv[1:] if not a.startswith("--plot=")]
  if not dirs or any(d in ("-h", "--help", "-help", "--helpfull") for d in dirs):
    print(__doc__ if dirs else USAGE, file=sys.stderr if not dirs else sys.stdout)
    return 0 if dirs else 2
  missing = [d for d in dirs if not (pathlib.Path(d) / "results.json").is_file()]
  if missing:
    print(f"no results.json in {', '.join(missing)} (is the run finished?); {USAGE}", file=sys.stderr)
    return 2
  runs = [json.loads((pathlib.Path(d) / "results.json").read_text()) for d in dirs]
  print(table(runs), end="")
  for path in plots:
    plot(dirs, runs, path)
    print(f"curves in {path}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
