"""Results tables of several `nlirl.main` runs, read against a floor and a ceiling.

  python -m nlirl.report DIR [DIR ...] [--plot=FILE.png] [--baselines=FILE] > results.md
  # each DIR holds a finished run; FILE: `python -m nlirl.baselines`'s results.json (default: the committed
  # nlirl/results/baselines/results.json; --baselines= leaves the rows out)

The first table: SR / SPL / NE / oracle SR per split, with the random-walker (floor) and scripted-reader
(ceiling) rows of the baselines file below the runs.  Then, per split, whether each row reads its
instruction: SR with each path's own and with another path's instruction (`sr_shuffled`), the language gain
(their paired difference), SR per template family, oracle SR - SR and the greedy P(STOP) within 3 m of the
goal and elsewhere (`nlirl.evaluation`); runs evaluated before these fields existed show "-" there.

Each cell is the mean over seeds of the per-seed mean over (path, instruction) pairs, with the half-width of
a 95% t-interval over seeds (none for a deterministic agent).  The last lines compare LangGoalIRL with the
best baseline (relative SR change, as the paper reports it), give the adaptation gain and name the rows at
or below the random-walk floor.

`--plot` also draws the learning curves of the runs (from their metrics.jsonl): the training rollouts'
success rate (mean over seeds, 10-iteration moving average) and the greedy SR of every evaluation.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from common import metrics as metrics_lib

BASELINES = ("bc", "gail", "airl")
FLOOR = "random_walk"  # the baselines file's agent every run must clear
COLUMNS = (("success", "SR"), ("spl", "SPL"), ("navigation_error", "NE (m)"), ("oracle_success", "oracle SR"))
LANGUAGE_COLUMNS = (
  ("success", "SR"),
  ("sr_shuffled", "SR shuffled"),
  ("language_gain", "language gain"),
  ("sr_step_by_step", "SR step_by_step"),
  ("sr_rooms", "SR rooms"),
  ("sr_goal", "SR goal"),
  ("oracle_gap", "oracle SR - SR"),
  ("p_stop_at_goal", "P(STOP \\| at goal)"),
  ("p_stop_away", "P(STOP \\| away)"),
)
SIGNED = ("language_gain", "language_gain_step_by_step", "language_gain_rooms", "language_gain_goal")
BASELINES_FILE = pathlib.Path(__file__).resolve().parent / "results" / "baselines" / "results.json"


def _name(results: dict) -> str:
  if "name" in results:  # a baselines-file row
    return results["name"]
  if results["algorithm"] != "langgoalirl":
    name = results["algorithm"] + (", recurrent follower" if results.get("policy") == "recurrent" else "")
    return name + (", early stopping" if "early_stopping" in results else "")
  off = [k for k, v in sorted(results["variant_flags"].items()) if not v]
  shuffled = (results.get("adaptation") or {}).get("labels") == "shuffled"
  return "langgoalirl" + "".join(f" -{k}" for k in off) + (", shuffled adaptation labels" if shuffled else "")


def _cell(m: dict | None, pct: bool, signed: bool = False) -> str:
  """The cell "mean ± ci95" (the mean alone for one seed; "-" for a field the run does not have)."""
  if m is None or m.get("mean") is None or not np.isfinite(m["mean"]):
    return "-"
  scale = 100.0 if pct else 1.0
  mean = f"{scale * m['mean']:+.1f}" if signed else f"{scale * m['mean']:.1f}"
  ci = m.get("ci95")
  return mean if ci is None or not np.isfinite(ci) else f"{mean} ± {scale * ci:.1f}"


def _episodes(rows: list[dict], split: str) -> set[int]:
  return {r["eval"][split]["success"]["episodes"] for r in rows if split in r["eval"]}


def table(runs: list[dict], floor: list[dict] | None = None) -> str:
  """The SR / SPL / NE / oracle SR table of `runs`, then the `floor` rows (a baselines file's agents)."""
  floor = floor or []
  rows = runs + floor
  splits = list(dict.fromkeys(s for r in rows for s in r["eval"]))
  head = "| method | seeds | iters | " + " | ".join(f"{s} {c}" for s in splits for _, c in COLUMNS) + " |"
  lines = [head, "|" + "---|" * (3 + len(splits) * len(COLUMNS))]
  for r in rows:
    cells = [_cell(r["eval"].get(s, {}).get(k), k != "navigation_error") for s in splits for k, _ in COLUMNS]
    lines.append(f"| {_name(r)} | {r['num_seeds']} | {r['iterations']} | " + " | ".join(cells) + " |")
  lines.append("")
  lines.append("SR, SPL, oracle SR in %; NE in metres; ± is the 95% t-interval half-width over seeds.")
  if floor and runs:
    counts = ", ".join(
      f"{s}: {'/'.join(map(str, sorted(_episodes(floor, s))))} (path, instruction) pairs, the runs "
      f"{'/'.join(map(str, sorted(_episodes(runs, s)))) or '-'}"
      for s in splits
    )
    lines.append(
      f"The last {len(floor)} rows (`python -m nlirl.baselines`) act on the observation alone; they are "
      f"evaluated on {counts}."
    )
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
  walk = next((r for r in floor if r["algorithm"] == FLOOR), None)
  if walk and runs:
    lines.append("")
    for s in splits:
      if s not in walk["eval"]:
        continue
      sr, oracle = walk["eval"][s]["success"]["mean"], walk["eval"][s]["oracle_success"]["mean"]
      below = [_name(r) for r in runs if s in r["eval"] and r["eval"][s]["success"]["mean"] <= sr]
      lines.append(
        f"* {s}: the random-walk floor is SR {100 * sr:.1f}% (oracle SR {100 * oracle:.1f}%); at or below it: "
        f"{', '.join(below) if below else 'none'}."
      )
  return "\n".join(lines) + "\n"


def language_tables(rows: list[dict]) -> str:
  """Per split: does each row read its instruction (shuffled SR, language gain, families, stopping)."""
  splits = list(dict.fromkeys(s for r in rows for s in r["eval"]))
  lines = []
  for s in splits:
    lines.append(f"{s}: does it read the instruction?")
    lines.append("")
    lines.append("| method | seeds | " + " | ".join(c for _, c in LANGUAGE_COLUMNS) + " |")
    lines.append("|" + "---|" * (2 + len(LANGUAGE_COLUMNS)))
    for r in rows:
      ev = r["eval"].get(s, {})
      cells = [_cell(ev.get(k), True, k in SIGNED) for k, _ in LANGUAGE_COLUMNS]
      lines.append(f"| {_name(r)} | {r['num_seeds']} | " + " | ".join(cells) + " |")
    lines.append("")
  lines.append(
    "All in %.  SR shuffled: each path commanded with another path of the same house's instruction (a fixed "
    "pairing shared by every method); language gain = SR - SR shuffled, paired per seed; SR <family>: the "
    "instructions of one template family; P(STOP | at goal) / P(STOP | away): the greedy policy's STOP rate on "
    "steps within 3 m of the goal / elsewhere, before stopping; - : not measured by that run."
  )
  return "\n".join(lines) + "\n"


def has_language_fields(rows: list[dict]) -> bool:
  return any("sr_shuffled" in ev for r in rows for ev in r["eval"].values())


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
  "usage: python -m nlirl.report DIR [DIR ...] [--plot=FILE.png] [--baselines=FILE]  (each DIR holds a "
  "finished nlirl.main run's results.json; FILE a python -m nlirl.baselines results.json, empty: none)"
)


def load_baselines(path: str | pathlib.Path | None) -> list[dict]:
  """The agent rows of a `python -m nlirl.baselines` results.json (none for None or "")."""
  if not path:
    return []
  return json.loads(pathlib.Path(path).read_text())["agents"]


def main(argv: list[str]) -> int:
  """Prints the tables; a missing argument or results file is one line on stderr and exit 2."""
  plots = [a.removeprefix("--plot=") for a in argv[1:] if a.startswith("--plot=")]
  given = [a.removeprefix("--baselines=") for a in argv[1:] if a.startswith("--baselines=")]
  dirs = [a for a in argv[1:] if not a.startswith(("--plot=", "--baselines="))]
  if not dirs or any(d in ("-h", "--help", "-help", "--helpfull") for d in dirs):
    print(__doc__ if dirs else USAGE, file=sys.stderr if not dirs else sys.stdout)
    return 0 if dirs else 2
  missing = [d for d in dirs if not (pathlib.Path(d) / "results.json").is_file()]
  if missing:
    print(f"no results.json in {', '.join(missing)} (is the run finished?); {USAGE}", file=sys.stderr)
    return 2
  baselines = given[-1] if given else (str(BASELINES_FILE) if BASELINES_FILE.is_file() else "")
  if baselines and not pathlib.Path(baselines).is_file():
    print(f"--baselines={baselines}: no such file; {USAGE}", file=sys.stderr)
    return 2
  runs = [json.loads((pathlib.Path(d) / "results.json").read_text()) for d in dirs]
  floor = load_baselines(baselines)
  print(table(runs, floor), end="")
  if floor or has_language_fields(runs):
    print("\n" + language_tables(runs + floor), end="")
  for path in plots:
    plot(dirs, runs, path)
    print(f"curves in {path}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
