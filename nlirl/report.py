"""Results table of several `nlirl.main` runs: SR / SPL / NE / oracle SR with 95% CIs over seeds.

  python -m nlirl.report DIR [DIR ...] > results.md   # each DIR holds a finished run's results.json

Each cell is the mean over seeds of the per-seed mean over (path, instruction) pairs, with the half-width of
a 95% t-interval over seeds.  The last lines compare LangGoalIRL with the best baseline (relative SR change,
as the paper reports it) and give the adaptation gain.
"""

from __future__ import annotations

import json
import pathlib
import sys

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


USAGE = "usage: python -m nlirl.report DIR [DIR ...]  (each DIR holds a finished nlirl.main run's results.json)"


def main(argv: list[str]) -> int:
  """Prints the table; a missing argument or results file is one line on stderr and exit 2."""
  dirs = argv[1:]
  if not dirs or any(d in ("-h", "--help", "-help", "--helpfull") for d in dirs):
    print(__doc__ if dirs else USAGE, file=sys.stderr if not dirs else sys.stdout)
    return 0 if dirs else 2
  missing = [d for d in dirs if not (pathlib.Path(d) / "results.json").is_file()]
  if missing:
    print(f"no results.json in {', '.join(missing)} (is the run finished?); {USAGE}", file=sys.stderr)
    return 2
  print(table([json.loads((pathlib.Path(d) / "results.json").read_text()) for d in dirs]), end="")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
