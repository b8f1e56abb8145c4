"""Results of several runs (simulator seeds) summarised per world: mean and 95% t-interval of each metric.

`python -m selflearn.evaluation.seeds --runs=DIR --out=selflearn/results/open_world` reads
`DIR/<task>_<world>_s<seed>/results.json` (world `open`, `tail`: the `tail_heavy` preset, or
`closed`), copies each run's `results.json` and `results.md` under `out/runs/<name>/`, and writes `summary.json` and
`summary.md`: per task, one row per metric, one column per world (mean [95% t-interval]
over the seeds found; `common.sweep.t_interval`).
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import shutil
import sys
from typing import Any, Callable, Mapping

from common import sweep


def _get(r: Mapping, *path, default=math.nan):
  for k in path:
    if not isinstance(r, Mapping) or k not in r or r[k] is None:
      return default
    r = r[k]
  return r


def _variant(r: Mapping, source: str, key: str, states: str = "text"):
  for v in r.get("variants", []):
    if v["pairs_source"] == source and v["states"] == states:
      return v.get(key, math.nan) if v.get(key) is not None else math.nan
  return math.nan


def _ratio(w, loss) -> float:
  return w / loss if loss else math.nan


# task -> [(metric label, function of a results dict)]
METRICS: dict[str, list[tuple[str, Callable[[Mapping], float]]]] = {
  "amc": [
    ("test requests seen in training (true text)", lambda r: _get(r, "recurrence", "true_text_seen")),
    ("defective test requests seen (true text)", lambda r: _get(r, "recurrence", "defective_true_text_seen")),
    ("defective test requests seen (ASR text)", lambda r: _get(r, "recurrence", "defective_asr_text_seen")),
    ("rules (gap sessions, text states)", lambda r: _get(r, "chain", "rules")),
    ("triggered test requests", lambda r: _get(r, "test", "triggered")),
    ("wins", lambda r: _get(r, "test", "wins")),
    ("losses", lambda r: _get(r, "test", "losses")),
    ("ties: both served", lambda r: _get(r, "test", "ties_both_served")),
    ("ties: both failed", lambda r: _get(r, "test", "ties_both_failed")),
    ("win/loss (seeds with a loss)", lambda r: _ratio(_get(r, "test", "wins"), _get(r, "test", "losses"))),
    ("precision@1: reads as what the user meant", lambda r: _get(r, "test", "precision_at_1")),
    ("precision@1: the true utterance", lambda r: _get(r, "test", "precision_at_1_true_text")),
    ("defect reduction, triggered requests", lambda r: _get(r, "test", "defect_reduction_triggered")),
    ("defect reduction, all requests", lambda r: _get(r, "test", "defect_reduction")),
    ("similarity threshold chosen on validation", lambda r: _get(r, "guardrails", "min_similarity")),
    ("without the similarity guard: wins", lambda r: _get(r, "similarity_ablation", "test", "wins")),
    ("without the similarity guard: losses", lambda r: _get(r, "similarity_ablation", "test", "losses")),
    ("without the similarity guard: precision@1", lambda r: _get(r, "similarity_ablation", "test", "precision_at_1")),
    ("detector pairs (cross-fitted, train) F1", lambda r: _get(r, "detector", "scores", "train", "detector", "f1")),
    ("gap-heuristic pairs (train) F1", lambda r: _get(r, "detector", "scores", "train", "gap", "f1")),
    ("detector sessions: wins", lambda r: _variant(r, "detector", "wins")),
    ("detector sessions: losses", lambda r: _variant(r, "detector", "losses")),
    ("detector sessions: precision@1", lambda r: _variant(r, "detector", "precision_at_1")),
    ("detector sessions: defect reduction, all", lambda r: _variant(r, "detector", "defect_reduction")),
    ("true pairs (upper bound): wins", lambda r: _variant(r, "truth", "wins")),
    ("true pairs (upper bound): losses", lambda r: _variant(r, "truth", "losses")),
    ("true pairs (upper bound): precision@1", lambda r: _variant(r, "truth", "precision_at_1")),
    ("true pairs (upper bound): defect reduction, all", lambda r: _variant(r, "truth", "defect_reduction")),
  ],
  "online": [
    ("test requests seen in training (true text)", lambda r: _get(r, "recurrence", "true_text_seen")),
    ("defective test requests seen (true text)", lambda r: _get(r, "recurrence", "defective_true_text_seen")),
    ("defect rate, no rewriting", lambda r: _get(r, "main", "ab", "arms", "none", "defect_rate")),
    ("global layer: relative defect change", lambda r: _get(r, "main", "ab", "none_vs_global", "relative")),
    ("global layer: wins", lambda r: _get(r, "main", "ab", "none_vs_global", "wins")),
    ("global layer: losses", lambda r: _get(r, "main", "ab", "none_vs_global", "losses")),
    ("global layer: trigger rate", lambda r: _get(r, "main", "ab", "arms", "global", "trigger_rate")),
    (
      "global layer switched off on validation (share of seeds)",
      lambda r: float(_get(r, "main", "ranker", "threshold_global") == "off"),
    ),  # fmt: skip
    ("+ personal vs global: relative defect change", lambda r: _get(r, "main", "ab", "global_vs_personal", "relative")),
    ("+ personal vs global: wins", lambda r: _get(r, "main", "ab", "global_vs_personal", "wins")),
    ("+ personal vs global: losses", lambda r: _get(r, "main", "ab", "global_vs_personal", "losses")),
    ("oracle rewrites: relative defect change", lambda r: _get(r, "main", "ab", "none_vs_oracle", "relative")),
    ("mined pairs whose target serves the goal", lambda r: _get(r, "main", "mining", "train_pair_target_serves_goal")),
  ],
  "fpi": [
    ("test requests seen in training (true text)", lambda r: _get(r, "recurrence", "true_text_seen")),
    ("defective test requests seen (true text)", lambda r: _get(r, "recurrence", "defective_true_text_seen")),
    ("defective test requests seen (ASR text)", lambda r: _get(r, "recurrence", "defective_asr_text_seen")),
    ("macro-F1, context model", lambda r: _get(r, "vs_truth", "model", "macro_f1")),
    ("macro-F1, no-context baseline", lambda r: _get(r, "vs_truth", "baseline", "macro_f1")),
    ("macro-F1, metadata-only tree (shortcut)", lambda r: _get(r, "vs_truth", "metadata_gbt", "macro_f1")),
    ("macro-F1, simulated single annotator", lambda r: _get(r, "vs_truth", "human", "macro_f1")),
    (
      "macro-F1, context model minus metadata tree",
      lambda r: _get(r, "vs_truth", "model", "macro_f1") - _get(r, "vs_truth", "metadata_gbt", "macro_f1"),
    ),  # fmt: skip
    ("accuracy, context model", lambda r: _get(r, "vs_truth", "model", "accuracy")),
    ("accuracy, metadata-only tree", lambda r: _get(r, "vs_truth", "metadata_gbt", "accuracy")),
    ("FPI/human macro-F1 ratio (share of human)", lambda r: _get(r, "share_of_human", "macro_f1")),
    (
      "metadata tree / human macro-F1 ratio",
      lambda r: _get(r, "vs_truth", "metadata_gbt", "macro_f1") / _get(r, "vs_truth", "human", "macro_f1"),
    ),  # fmt: skip
  ],
  "labels": [
    ("test requests seen in training (true text)", lambda r: _get(r, "recurrence", "true_text_seen")),
    ("defective test requests seen (true text)", lambda r: _get(r, "recurrence", "defective_true_text_seen")),
    *(
      (f"{label}, {name} (vs majority)", (lambda k, s: lambda r: _get(r, "vs_majority", s, k))(key, system))
      for key, label in (
        ("segment_accuracy", "segment accuracy"),
        ("success_accuracy", "goal success accuracy"),
        ("failure_f1", "goal failure F1"),
        ("intent_accuracy", "intent accuracy"),
        ("slot_f1", "slot F1"),
      )
      for system, name in (
        ("model", "context model"),
        ("baseline", "no-context baseline"),
        ("metadata_gbt", "metadata tree"),
        ("single_annotator", "single annotator"),
      )
      if not (system == "metadata_gbt" and key == "slot_f1")
    ),
    *(
      (
        f"{label}, context model minus metadata tree (vs majority)",
        (lambda k: lambda r: _get(r, "vs_majority", "model", k) - _get(r, "vs_majority", "metadata_gbt", k))(key),
      )
      for key, label in (
        ("segment_accuracy", "segment accuracy"),
        ("success_accuracy", "goal success accuracy"),
        ("failure_f1", "goal failure F1"),
        ("intent_accuracy", "intent accuracy"),
      )
    ),
  ],
  "rephrase": [
    ("test requests seen in training (true text)", lambda r: _get(r, "recurrence", "true_text_seen")),
    ("defective test requests seen (true text)", lambda r: _get(r, "recurrence", "defective_true_text_seen")),
    ("true rephrase pairs (test)", lambda r: _get(r, "test_true_pairs")),
    ("pair F1, span model", lambda r: _get(r, "systems", "span", "pairs", "f1")),
    ("pair F1, pairwise classifier", lambda r: _get(r, "systems", "pairwise", "pairs", "f1")),
    ("pair F1, time-gap heuristic", lambda r: _get(r, "systems", "gap_heuristic", "pairs", "f1")),
    ("pair F1, metadata-only tree (shortcut)", lambda r: _get(r, "systems", "metadata_gbt", "pairs", "f1")),
    (
      "pair F1, span model minus metadata tree",
      lambda r: _get(r, "systems", "span", "pairs", "f1") - _get(r, "systems", "metadata_gbt", "pairs", "f1"),
    ),  # fmt: skip
    ("pair precision, span model", lambda r: _get(r, "systems", "span", "pairs", "precision")),
    ("pair recall, span model", lambda r: _get(r, "systems", "span", "pairs", "recall")),
    ("pair precision, metadata tree", lambda r: _get(r, "systems", "metadata_gbt", "pairs", "precision")),
    ("pair recall, metadata tree", lambda r: _get(r, "systems", "metadata_gbt", "pairs", "recall")),
  ],
  "teach": [
    ("test requests seen in training (true text)", lambda r: _get(r, "recurrence", "true_text_seen")),
    ("extraction F1, learned extractor", lambda r: _get(r, "extraction", "learned", "all", "f1")),
    ("extraction F1, rule parser (baseline)", lambda r: _get(r, "extraction", "rules", "all", "f1")),
    ("defect rate without a store", lambda r: _get(r, "defects", "learned", "overall", "defect_rate_without")),
    ("learned store: relative reduction", lambda r: _get(r, "defects", "learned", "overall", "relative_reduction")),
    ("learned store: fixed", lambda r: _get(r, "defects", "learned", "fixed")),
    ("learned store: broken", lambda r: _get(r, "defects", "learned", "broken")),
    ("rule store: relative reduction", lambda r: _get(r, "defects", "rules", "overall", "relative_reduction")),
    (
      "oracle extraction: relative reduction",
      lambda r: _get(r, "defects", "oracle_extraction", "overall", "relative_reduction"),
    ),  # fmt: skip
    (
      "full knowledge: relative reduction",
      lambda r: _get(r, "defects", "full_knowledge", "overall", "relative_reduction"),
    ),  # fmt: skip
  ],
}
NAME = re.compile(r"^(?P<task>[a-z]+)_(?P<world>open|tail|closed)_s(?P<seed>\d+)$")


def collect(runs: pathlib.Path) -> dict[str, dict[str, dict[int, Mapping]]]:
  """task -> world -> seed -> results dict, for every finished run directory under `runs`."""
  out: dict[str, dict[str, dict[int, Mapping]]] = {}
  for d in sorted(runs.iterdir()):
    m = NAME.match(d.name)
    if m and (d / "results.json").is_file():
      out.setdefault(m["task"], {}).setdefault(m["world"], {})[int(m["seed"])] = json.loads(
        (d / "results.json").read_text()
      )
  return out


def summarise(found: Mapping) -> dict[str, Any]:
  """Per task and world: the seeds and each metric's t-interval."""
  out: dict[str, Any] = {}
  for task, worlds in found.items():
    out[task] = {}
    for world, by_seed in worlds.items():
      seeds = sorted(by_seed)
      out[task][world] = {
        "seeds": seeds,
        "metrics": {name: sweep.t_interval([float(f(by_seed[s])) for s in seeds]) for name, f in METRICS[task]},
      }
  return out


def _cell(ci: Mapping, pct: bool) -> str:
  if not ci["n"]:
    return "—"
  fmt = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}")
  if ci["n"] < 2 or not math.isfinite(ci["low"]):
    return fmt(ci["mean"]) + (" (1 seed)" if ci["n"] == 1 else "")
  return f"{fmt(ci['mean'])} [{fmt(ci['low'])}, {fmt(ci['high'])}]"


PCT = ("seen", "rate", "relative", "reduction", "serves", "share", "accuracy", "ratio", "recall")


def markdown(summary: Mapping) -> str:
  """One table per task: metric rows, world columns."""
  lines = ["# selflearn on the open and the closed world: mean [95% t-interval] over simulator seeds", ""]
  names = {"open": "open world", "tail": "tail-heavy world", "closed": "closed world"}
  for task, worlds in summary.items():
    order = [w for w in ("open", "tail", "closed") if w in worlds]
    seeds = "; ".join(f"{w}: seeds {worlds[w]['seeds']}" for w in order)
    lines += [f"## {task} ({seeds})", "", "| metric | " + " | ".join(names[w] for w in order) + " |"]
    lines.append("|---|" + "---|" * len(order))
    for name, _ in METRICS[task]:
      pct = any(p in name for p in PCT) or "F1" in name or "precision" in name
      pct = pct and "threshold" not in name
      cells = [_cell(worlds[w]["metrics"][name], pct) for w in order]
      lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  args = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
  if set(args) != {"runs", "out"}:
    print("usage: python -m selflearn.evaluation.seeds --runs=DIR --out=DIR", file=sys.stderr)
    return 2
  runs, out = pathlib.Path(args["runs"]), pathlib.Path(args["out"])
  if not runs.is_dir():
    print(f"--runs: no such directory {runs}", file=sys.stderr)
    return 2
  found = collect(runs)
  out.mkdir(parents=True, exist_ok=True)
  for task, worlds in found.items():
    for world, by_seed in worlds.items():
      for seed in by_seed:
        name = f"{task}_{world}_s{seed}"
        (out / "runs" / name).mkdir(parents=True, exist_ok=True)
        for f in ("results.json", "results.md"):
          if (runs / name / f).is_file():
            shutil.copyfile(runs / name / f, out / "runs" / name / f)
  summary = summarise(found)
  (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
  (out / "summary.md").write_text(markdown(summary))
  print(f"{sum(len(s) for w in found.values() for s in w.values())} runs -> {out}/summary.md")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
