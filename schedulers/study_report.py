"""Analysis, report and plots of the GreedyLR benchmark study.

`schedulers.study` runs every (task, optimizer, arm) cell with
`study_runner.run_cell` and hands the records here:

  analysis = analyze(records, delta_rel=0.01, k_std=1.0,
                     sensitivity_delta_rels=(0.005, 0.01, 0.02),
                     absolute_margin=0.1, confidence=0.95)
  paths = write_outputs(analysis, records, workdir)

`analyze` builds the paired cells of the protocol
(`shared/references/schedulers.md` §4.6): for each GreedyLR variant
(`VARIANTS`), each (task, optimizer) row holding that variant and each other
arm of the row (a baseline), the per-seed losses of both arms at each
endpoint of `ENDPOINTS`.  The statistics (margins, labels, Clopper–Pearson
rates, sensitivity, performance profiles) all come from `schedulers.stats`;
this module only gathers the numbers, formats them and draws the plots.

`write_outputs` writes `results.json` (strict JSON), `report.md` (a
README-ready markdown report) and `plots/*.png` (Figure + Agg canvas, no
pyplot state).  Partial studies are fine: missing tasks, rows or arms just
give fewer cells, rows without a variant give no cells for it, and NaN/inf
curves (diverged runs) follow the `stats.classify_cell` policy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import json
import math
import os
import pathlib
from typing import Any

import numpy as np

from schedulers import stats

# The GreedyLR arms (= `schedulers.arms.GREEDY_ARMS`; not imported, so that
# the report needs no JAX).
VARIANTS = ("greedy_step", "greedy_eval")
VARIANT_TITLES = {
    "greedy_step": "GreedyLR per step (train loss, smoothed)",
    "greedy_eval": "GreedyLR per eval (validation loss)",
}
# Endpoint name -> fraction of the step budget (None: AUC of validation).
ENDPOINTS = {"at_10": 0.1, "at_50": 0.5, "final": 1.0, "auc": None}
ENDPOINT_TITLES = {
    "at_10": "test metric at 10% of the budget",
    "at_50": "test metric at 50% of the budget",
    "final": "test metric at 100% of the budget (primary)",
    "auc": "mean validation metric over evaluations (normalised AUC)",
}
PRIMARY = "final"
CLAIM_THRESHOLD = 0.90
# Performance-profile thresholds: tau = 1 (wins) and relative (or offset)
# gaps from 1e-4 to 1e2.
PROFILE_TAUS = tuple([1.0] + [1.0 + g for g in np.geomspace(1e-4, 1e2, 121)])
LEGEND_COLUMNS = 7
LOG_SPAN = 10.0  # curves plots use log-y when the values span > 10x
LABEL_SYMBOLS = {stats.BETTER: "B", stats.EQUAL: "=", stats.WORSE: "W",
                 stats.INCONCLUSIVE: "?"}

Record = Mapping[str, Any]
Rows = dict[tuple[str, str], dict[str, Record]]


# ----------------------------------------------------------------------------
# Endpoints and cells


def endpoint_index(eval_steps: Sequence[int], num_steps: int,
                   fraction: float) -> int:
  """Index of the evaluation closest to `fraction` of the budget.

  Ties go to the earlier evaluation, so an endpoint never looks further
  into training than asked for.
  """
  if not eval_steps:
    raise ValueError("eval_steps is empty")
  target = fraction * num_steps
  gaps = [abs(step - target) for step in eval_steps]
  return int(np.argmin(gaps))


def endpoint_losses(record: Record, endpoint: str) -> np.ndarray:
  """Per-eval-seed losses of one record at one endpoint (NaN for null)."""
  fraction = ENDPOINTS[endpoint]
  if fraction is None:
    return _curve(record, "val").mean(axis=1)
  index = endpoint_index(record["eval_steps"], record["num_steps"], fraction)
  return _curve(record, "test")[:, index]


def _curve(record: Record, key: str) -> np.ndarray:
  """A [seeds, evals] curve as floats; JSON nulls become NaN."""
  arr = np.asarray(record["curves"][key], dtype=np.float64)
  return arr.reshape(len(record["eval_seeds"]), -1)


def _index_rows(records: Sequence[Record]) -> Rows:
  """{(task, optimizer): {arm: record}}, rows and arms in first-seen order."""
  rows: Rows = {}
  for record in records:
    key = (record["task"], record["optimizer"])
    rows.setdefault(key, {})[record["arm"]] = record
  return rows


def _arm_order(records: Sequence[Record]) -> list[str]:
  """Arm names in first-seen order, GreedyLR variants last."""
  names = list(dict.fromkeys(r["arm"] for r in records))
  return ([n for n in names if n not in VARIANTS]
          + [n for n in VARIANTS if n in names])


def _paired(greedy: Record, baseline: Record,
            endpoint: str) -> tuple[np.ndarray, np.ndarray]:
  """Losses of both arms on their common eval seeds, in greedy's order."""
  g_seeds, b_seeds = list(greedy["eval_seeds"]), list(baseline["eval_seeds"])
  g, b = endpoint_losses(greedy, endpoint), endpoint_losses(baseline, endpoint)
  if g_seeds == b_seeds:
    return g, b
  common = [s for s in g_seeds if s in b_seeds]
  return (g[[g_seeds.index(s) for s in common]],
          b[[b_seeds.index(s) for s in common]])


def _finite_mean(x: np.ndarray) -> float:
  return float(np.mean(x)) if x.size else float("nan")


def build_cells(rows: Rows, variant: str,
                endpoint: str) -> tuple[list[dict], list[dict]]:
  """`stats.summarize` cells of one variant at one endpoint, plus skips.

  A cell pairs the variant with every other non-greedy arm of its row.
  Cells with fewer than 2 common eval seeds are skipped (and listed).
  """
  cells, skipped = [], []
  for (task, optimizer), arms in rows.items():
    if variant not in arms:
      continue
    for baseline, record in arms.items():
      if baseline in VARIANTS:
        continue
      g, b = _paired(arms[variant], record, endpoint)
      ids = {"task": task, "optimizer": optimizer, "baseline": baseline}
      if g.size < 2:
        skipped.append({**ids, "reason": f"{g.size} common eval seeds"})
        continue
      cells.append({**ids, "greedy": g, "baseline_losses": b,
                    "greedy_mean": _finite_mean(g),
                    "baseline_mean": _finite_mean(b)})
  return cells, skipped


# ----------------------------------------------------------------------------
# Summaries and headline


def _summarize(cells: list[dict], *, delta_rel, k_std, sensitivity_delta_rels,
               absolute_margin, confidence) -> dict | None:
  """`stats.summarize` as plain Python, or None without cells."""
  if not cells:
    return None
  return to_python(stats.summarize(
      cells, delta_rels=tuple(sensitivity_delta_rels),
      absolute=absolute_margin, primary_rel=delta_rel, k_std=k_std,
      confidence=confidence, claim_threshold=CLAIM_THRESHOLD))


def _headline_entry(summary: dict | None) -> dict:
  """Primary-endpoint numbers of one variant (None rates without cells)."""
  if summary is None:
    return {"n_cells": 0, "counts": {lab: 0 for lab in stats.LABELS},
            "equal_or_better_rate": None, "equal_or_better_ci": None,
            "better_rate": None, "better_ci": None, "claim_supported": False,
            "paper_margin_rate": None, "paper_margin_ci": None}
  paper = [s for s in summary["sensitivity"] if s["kind"] == "abs"]
  return {
      "n_cells": summary["n_cells"],
      "counts": summary["counts"],
      "equal_or_better_rate": summary["equal_or_better"]["rate"],
      "equal_or_better_ci": summary["equal_or_better"]["ci"],
      "better_rate": summary["better"]["rate"],
      "better_ci": summary["better"]["ci"],
      "claim_supported": summary["claim_supported"],
      "paper_margin_rate": paper[0]["rate"] if paper else None,
      "paper_margin_ci": paper[0]["ci"] if paper else None,
  }


def _headline(summaries: dict, settings: dict) -> dict:
  """The binary's final metrics: primary endpoint, both variants."""
  head = {"primary_endpoint": PRIMARY,
          "confidence": settings["confidence"],
          "claim_threshold": CLAIM_THRESHOLD,
          "delta_rel": settings["delta_rel"], "k_std": settings["k_std"]}
  for variant in VARIANTS:
    head[variant] = _headline_entry(summaries[variant][PRIMARY])
  return head


def verdict(variant: str, entry: Mapping[str, Any],
            confidence: float = 0.95) -> str:
  """One plain sentence: is ">90% equal-or-better" supported for a variant."""
  name = VARIANT_TITLES.get(variant, variant)
  if not entry["n_cells"]:
    return f"{name}: no cells in this study, so no verdict."
  rate, (low, high) = entry["equal_or_better_rate"], entry["equal_or_better_ci"]
  ci = f"{confidence:.0%} CI {_pct(low)}–{_pct(high)}"
  n = entry["n_cells"]
  if entry["claim_supported"]:
    return (f"{name}: the \">90% equal-or-better\" claim is **supported** — "
            f"{_pct(rate)} of {n} cells, and the {ci} lies above 90%.")
  if rate > CLAIM_THRESHOLD:
    return (f"{name}: the \">90% equal-or-better\" claim is **not "
            f"supported** — the point estimate {_pct(rate)} of {n} cells is "
            f"above 90%, but the {ci} reaches below 90%.")
  return (f"{name}: the \">90% equal-or-better\" claim is **not supported** "
          f"— GreedyLR was equal-or-better in {_pct(rate)} of {n} cells "
          f"({ci}).")


# ----------------------------------------------------------------------------
# Per-arm tables and performance profiles


def _seed_stats(x: np.ndarray) -> dict:
  """Mean and std over finite seeds, and how many seeds were not finite."""
  ok = x[np.isfinite(x)]
  return {"mean": _finite_mean(ok),
          "std": float(np.std(ok, ddof=1)) if ok.size > 1 else float("nan"),
          "n_seeds": int(x.size), "n_diverged": int(x.size - ok.size)}


def arm_table(records: Sequence[Record]) -> list[dict]:
  """One summary row per record: final test metric, tuning and cost."""
  table = []
  for r in records:
    final = endpoint_losses(r, PRIMARY)
    passes = _curve(r, "forward_passes")[:, -1]
    nonfinite = _curve(r, "nonfinite")[:, -1]
    seconds = r.get("seconds", {})
    table.append({
        "task": r["task"], "optimizer": r["optimizer"], "arm": r["arm"],
        "is_greedy": r["arm"] in VARIANTS,
        "final_test": _seed_stats(final),
        "chosen_lr": r["chosen_lr"],
        "chosen_at_grid_edge": bool(r["chosen_at_grid_edge"]),
        "extra_forward_passes_per_step": _finite_mean(passes) / r["num_steps"],
        "nonfinite_updates_mean": _finite_mean(nonfinite),
        "nonfinite_updates_max": float(np.max(nonfinite)),
        "seconds_tuning": float(seconds.get("tuning", float("nan"))),
        "seconds_evaluation": float(seconds.get("evaluation", float("nan"))),
    })
  return table


def _profile_problems(rows: Rows, variant: str) -> dict[str, tuple]:
  """{baseline: (greedy losses, baseline losses)} pooled over rows."""
  pooled: dict[str, tuple[list, list]] = {}
  for arms in rows.values():
    if variant not in arms:
      continue
    for baseline, record in arms.items():
      if baseline not in VARIANTS:
        g, b = _paired(arms[variant], record, PRIMARY)
        acc = pooled.setdefault(baseline, ([], []))
        acc[0].append(g)
        acc[1].append(b)
  return {k: (np.concatenate(g), np.concatenate(b))
          for k, (g, b) in pooled.items()}


def performance_profiles(rows: Rows, variant: str,
                         absolute_margin: float | None) -> dict | None:
  """Pairwise Dolan–Moré profiles of one variant against each baseline.

  Problems are (task, optimizer, eval seed) with the final test metric.
  Each baseline name is compared with the variant on the rows where both
  exist (pooled across rows), in its own two-arm profile: a multi-arm
  profile would need every arm on every problem, and arms such as SLS or
  Adam-HD exist on one row only.  Plain ratios are used when every finite
  loss is positive; otherwise each problem is shifted by its minimum with
  offset c = the absolute margin (0.1 by default), so tau − 1 is the gap to
  the better arm in units of c.
  """
  problems = _profile_problems(rows, variant)
  if not problems:
    return None
  values = np.concatenate([np.concatenate(p) for p in problems.values()])
  positive = bool(np.all(values[np.isfinite(values)] > 0))
  offset = None if positive else (absolute_margin or 0.1)
  pairs = {}
  for baseline, (g, b) in problems.items():
    rho = stats.performance_profile({variant: g, baseline: b}, PROFILE_TAUS,
                                    offset=offset)
    pairs[baseline] = {"n_problems": int(g.size),
                       "rho_greedy": rho[variant].tolist(),
                       "rho_baseline": rho[baseline].tolist(),
                       "greedy_wins": float(rho[variant][0]),
                       "baseline_wins": float(rho[baseline][0])}
  return {"problems": "task × optimizer × eval seed, final test metric",
          "offset": offset, "taus": list(PROFILE_TAUS), "pairs": pairs}


# ----------------------------------------------------------------------------
# analyze


def _setup(records: Sequence[Record]) -> dict:
  """Per-task setup (metric, budget, seeds, endpoint steps) and grids."""
  tasks: dict[str, dict] = {}
  grids: dict[str, list] = {}
  for r in records:
    steps = r["eval_steps"]
    entry = tasks.setdefault(r["task"], {
        "metric": r["metric"], "num_steps": r["num_steps"],
        "num_evals": len(steps), "eval_seeds": list(r["eval_seeds"]),
        "tuning_seeds": list(r["tuning_seeds"]),
        "endpoint_steps": {
            e: steps[endpoint_index(steps, r["num_steps"], f)]
            for e, f in ENDPOINTS.items() if f is not None},
        "optimizers": [], "arms": []})
    for key, value in (("optimizers", r["optimizer"]), ("arms", r["arm"])):
      if value not in entry[key]:
        entry[key].append(value)
    grids.setdefault(r["optimizer"], list(r["lr_grid"]))
  return {"tasks": tasks, "lr_grids": grids}


def _coverage(rows: Rows) -> list[dict]:
  """Which arms each row holds and which GreedyLR variants it lacks."""
  return [{"task": t, "optimizer": o, "arms": list(arms),
           "missing_variants": [v for v in VARIANTS if v not in arms]}
          for (t, o), arms in rows.items()]


def analyze(records: Sequence[Record], *, delta_rel: float, k_std: float,
            sensitivity_delta_rels: Sequence[float],
            absolute_margin: float | None, confidence: float) -> dict:
  """Classifies every (variant, endpoint) cell and gathers report tables.

  Returns a dict (plain Python; NaN where a value is undefined) with:
    'settings': the margins and confidence;
    'setup': {'tasks': {task: metric, budget, seeds, endpoint steps, rows,
      arms}, 'lr_grids': {optimizer: grid}};
    'coverage': per row, its arms and missing variants;
    'summaries': {variant: {endpoint: `stats.summarize` output without its
      'cells' (None without cells)}};
    'cells': every cell record of `stats.summarize` (ids, label, mean_diff,
      lower, upper, delta, wilcoxon_p, labels_by_margin, greedy_mean,
      baseline_mean), tagged with 'variant' and 'endpoint';
    'skipped': cells dropped for lack of paired seeds;
    'arms': `arm_table(records)`;
    'profiles': {variant: `performance_profiles` output or None};
    'headline': primary-endpoint numbers of each variant (see `_headline`).
  """
  settings = {"delta_rel": delta_rel, "k_std": k_std,
              "sensitivity_delta_rels": list(sensitivity_delta_rels),
              "absolute_margin": absolute_margin, "confidence": confidence,
              "claim_threshold": CLAIM_THRESHOLD, "primary_endpoint": PRIMARY}
  rows = _index_rows(records)
  summaries: dict[str, dict] = {v: {} for v in VARIANTS}
  all_cells, skipped = [], []
  for variant in VARIANTS:
    for endpoint in ENDPOINTS:
      cells, skip = build_cells(rows, variant, endpoint)
      summary = _summarize(
          cells, delta_rel=delta_rel, k_std=k_std,
          sensitivity_delta_rels=sensitivity_delta_rels,
          absolute_margin=absolute_margin, confidence=confidence)
      if summary is not None:
        all_cells += [{"variant": variant, "endpoint": endpoint, **c}
                      for c in summary.pop("cells")]
      summaries[variant][endpoint] = summary
      if endpoint == PRIMARY:
        skipped += [{"variant": variant, **s} for s in skip]
  return {
      "settings": settings,
      "setup": to_python(_setup(records)),
      "coverage": _coverage(rows),
      "summaries": summaries,
      "cells": all_cells,
      "skipped": skipped,
      "arms": arm_table(records),
      "profiles": {v: performance_profiles(rows, v, absolute_margin)
                   for v in VARIANTS},
      "headline": _headline(summaries, settings),
  }


# ----------------------------------------------------------------------------
# JSON


def to_python(obj: Any) -> Any:
  """NumPy scalars/arrays and tuples to plain Python (NaN kept)."""
  if isinstance(obj, Mapping):
    return {str(k): to_python(v) for k, v in obj.items()}
  if isinstance(obj, np.ndarray):
    return to_python(obj.tolist())
  if isinstance(obj, (list, tuple)):
    return [to_python(v) for v in obj]
  if isinstance(obj, (bool, np.bool_)):
    return bool(obj)
  if isinstance(obj, np.integer):
    return int(obj)
  if isinstance(obj, np.floating):
    return float(obj)
  return obj


def strict_json(obj: Any) -> Any:
  """`to_python` with NaN/±inf replaced by None (RFC 8259 has no NaN)."""
  obj = to_python(obj)
  if isinstance(obj, dict):
    return {k: strict_json(v) for k, v in obj.items()}
  if isinstance(obj, list):
    return [strict_json(v) for v in obj]
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  return obj


def compact_record(record: Record) -> dict:
  """A record without its curves, plus the per-seed final val/test values."""
  out = {k: v for k, v in record.items() if k != "curves"}
  out["final_test"] = endpoint_losses(record, PRIMARY)
  out["final_val"] = _curve(record, "val")[:, -1]
  return out


# ----------------------------------------------------------------------------
# Markdown report


def _pct(x: float | None) -> str:
  return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def _rate_text(rate: Mapping[str, Any]) -> str:
  """'62.5% [40.6%, 81.2%] (10/16)' from a stats rate dict."""
  low, high = rate["ci"]
  return (f"{_pct(rate['rate'])} [{_pct(low)}, {_pct(high)}] "
          f"({rate['successes']}/{rate['trials']})")


def _num(x: float | None, fmt: str = ".4g") -> str:
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "n/a"
  return format(x, fmt)


def _margin_name(entry: Mapping[str, Any]) -> str:
  if entry["kind"] == "abs":
    return f"absolute {entry['value']:g} (paper)"
  return f"δ_rel = {100 * entry['value']:g}%"


def _setup_section(analysis: dict) -> str:
  """Tasks, grids, margins and label definitions."""
  s, setup = analysis["settings"], analysis["setup"]
  rows = [[t, e["metric"], e["num_steps"], e["num_evals"],
           f"{e['endpoint_steps']['at_10']} / {e['endpoint_steps']['at_50']}"
           f" / {e['endpoint_steps']['final']}",
           len(e["eval_seeds"]), ", ".join(e["optimizers"]), len(e["arms"])]
          for t, e in setup["tasks"].items()]
  table = stats.markdown_table(rows, [
      "task", "metric", "steps", "evals", "10% / 50% / 100% step",
      "eval seeds", "optimizer rows", "arms"])
  grids = "\n".join(f"- `{o}`: {', '.join(f'{x:g}' for x in g)}"
                    for o, g in setup["lr_grids"].items())
  tuning = sorted({x for e in setup["tasks"].values()
                   for x in e["tuning_seeds"]})
  conf = s["confidence"]
  lines = [
      "## Setup", "", table, "",
      "Learning-rate grids (the same grid for every arm of a row; the rate "
      f"is chosen by mean final validation loss on tuning seeds {tuning}, "
      "disjoint from the evaluation seeds):", grids, "",
      "A **cell** is (task × optimizer row × baseline arm); GreedyLR and the "
      "baseline share every evaluation seed (same initialisation and data "
      "order). With d_s = L_greedy,s − L_baseline,s and one-sided "
      f"{conf:.0%} paired-t bounds of mean(d), and margin "
      f"δ = max({s['delta_rel']:g} · |mean baseline loss|, "
      f"{s['k_std']:g} · baseline seed std):",
      "",
      "- **better**: upper bound < 0;",
      "- **equal** (equal-or-better, not better): 0 ≤ upper bound < δ;",
      "- **worse**: lower bound > δ, or GreedyLR diverged on a seed where "
      "the baseline did not;",
      "- **inconclusive**: anything else (incl. a diverged baseline); never "
      "counted as a win.",
      "",
      "Equal-or-better rates come with exact Clopper–Pearson "
      f"{conf:.0%} intervals; \">90%\" counts as supported only if the "
      "interval's lower end exceeds 90%.",
  ]
  return "\n".join(lines)


def _headline_section(analysis: dict) -> str:
  """Primary-endpoint table for both variants and the verdicts."""
  conf = analysis["settings"]["confidence"]
  rows, verdicts = [], []
  for v in VARIANTS:
    summary = analysis["summaries"][v][PRIMARY]
    entry = analysis["headline"][v]
    verdicts.append(f"- {verdict(v, entry, conf)}")
    if summary is None:
      rows.append([v, 0] + ["—"] * 8)
      continue
    c = summary["counts"]
    paper = [x for x in summary["sensitivity"] if x["kind"] == "abs"]
    rows.append([
        v, summary["n_cells"], c["better"], c["equal"], c["worse"],
        c["inconclusive"], _rate_text(summary["equal_or_better"]),
        _rate_text(summary["better"]),
        "yes" if summary["claim_supported"] else "no",
        _rate_text(paper[0]) if paper else "—"])
  table = stats.markdown_table(rows, [
      "variant", "cells", "better", "equal", "worse", "inconclusive",
      f"equal-or-better [{conf:.0%} CI]", f"better [{conf:.0%} CI]",
      ">90% supported", "equal-or-better, paper margin (abs)"])
  return "\n".join(["## Headline (primary endpoint: test metric at 100% of "
                    "the budget)", "", table, "", *verdicts])


def _sensitivity_section(analysis: dict) -> str:
  """Equal-or-better rate under each margin, primary endpoint."""
  names: list[dict] = []
  by_variant = {}
  for v in VARIANTS:
    summary = analysis["summaries"][v][PRIMARY]
    sens = summary["sensitivity"] if summary else []
    by_variant[v] = {x["margin"]: x for x in sens}
    names += [x for x in sens if x["margin"] not in
              {n["margin"] for n in names}]
  if not names:
    return "## Sensitivity to the margin\n\nNo cells."
  rows = [[_margin_name(n)] + [
      _rate_text(by_variant[v][n["margin"]]) if n["margin"] in by_variant[v]
      else "—" for v in VARIANTS] for n in names]
  table = stats.markdown_table(rows, ["margin", *VARIANTS])
  return "\n".join(["## Sensitivity to the margin (primary endpoint)", "",
                    "Equal-or-better rate [CI] (cells) when δ uses each "
                    "relative margin (with the same seed-std term) or the "
                    "paper's absolute margin.", "", table])


def _endpoint_section(analysis: dict) -> str:
  """Counts and rates at 10%, 50%, 100% and AUC for both variants."""
  rows = []
  for endpoint in ENDPOINTS:
    for v in VARIANTS:
      s = analysis["summaries"][v][endpoint]
      if s is None:
        continue
      c = s["counts"]
      rows.append([ENDPOINT_TITLES[endpoint], v, s["n_cells"], c["better"],
                   c["equal"], c["worse"], c["inconclusive"],
                   _rate_text(s["equal_or_better"]),
                   _rate_text(s["better"]), s["wilcoxon_disagreements"]])
  if not rows:
    return "## Endpoints\n\nNo cells."
  table = stats.markdown_table(rows, [
      "endpoint", "variant", "cells", "better", "equal", "worse",
      "inconclusive", "equal-or-better [CI]", "better [CI]",
      "Wilcoxon disagreements"])
  return "\n".join([
      "## Endpoints", "",
      "10%/50% use the evaluation closest to that fraction of the budget "
      "(steps in the setup table). Wilcoxon disagreements: cells where the "
      "one-sided signed-rank test at δ and the t rule disagree on "
      "equal-or-better." + _wilcoxon_note(analysis), "", table])


def _wilcoxon_note(analysis: dict) -> str:
  """Warns when too few seeds let the signed-rank test ever reject."""
  n = min(len(e["eval_seeds"]) for e in analysis["setup"]["tasks"].values())
  conf = analysis["settings"]["confidence"]
  if 0.5 ** n < 1 - conf:
    return ""
  return (f" With {n} seeds the smallest one-sided signed-rank p is "
          f"1/{2 ** n} ≥ {1 - conf:g}, so the test can never confirm "
          "equal-or-better and disagreements are expected.")


def _per_baseline_section(analysis: dict) -> str:
  """Win/tie/loss/inconclusive per baseline and a label map, per variant."""
  parts = ["## Per-baseline results (primary endpoint)", "",
           "win = better, tie = equal, loss = worse. Label map: B better, "
           "= equal, W worse, ? inconclusive, blank = arm absent."]
  for v in VARIANTS:
    summary = analysis["summaries"][v][PRIMARY]
    parts += ["", f"### {v}", ""]
    if summary is None:
      parts.append("No cells (variant absent).")
      continue
    rows = [[b, r["n"], r["win"], r["tie"], r["loss"], r["inconclusive"],
             _pct(r["equal_or_better_rate"])]
            for b, r in summary["per_baseline"].items()]
    parts.append(stats.markdown_table(rows, [
        "baseline", "cells", "win", "tie", "loss", "inconclusive",
        "equal-or-better"]))
    parts += ["", _label_map(analysis, v, list(summary["per_baseline"]))]
  return "\n".join(parts)


def _label_map(analysis: dict, variant: str, baselines: list[str]) -> str:
  """Rows (task/optimizer) × baselines grid of primary-endpoint labels."""
  grid: dict[str, dict[str, str]] = {}
  for c in analysis["cells"]:
    if c["variant"] == variant and c["endpoint"] == PRIMARY:
      row = grid.setdefault(f"{c['task']}/{c['optimizer']}", {})
      row[c["baseline"]] = LABEL_SYMBOLS[c["label"]]
  rows = [[name] + [row.get(b, "") for b in baselines]
          for name, row in grid.items()]
  return stats.markdown_table(rows, ["row", *baselines])


def _arm_cell(entry: Mapping[str, Any]) -> str:
  """'0.2233 ± 0.0012 (lr 0.3*)' with diverged seeds noted."""
  f = entry["final_test"]
  text = f"{_num(f['mean'])} ± {_num(f['std'], '.2g')}"
  if f["n_diverged"]:
    text += f" ({f['n_diverged']}/{f['n_seeds']} diverged)"
  edge = "*" if entry["chosen_at_grid_edge"] else ""
  return f"{text} (lr {entry['chosen_lr']:.3g}{edge})"


def _per_task_section(analysis: dict, arm_order: list[str]) -> str:
  """Per task: final test metric (mean ± std) per arm × optimizer."""
  parts = ["## Final test metric per task", "",
           "Mean ± std over evaluation seeds (std over finite seeds) with "
           "the chosen learning rate; * = the chosen rate is at an edge of "
           "the grid (the optimum may lie outside it). GreedyLR arms in "
           "bold."]
  by_task: dict[str, dict] = {}
  for e in analysis["arms"]:
    by_task.setdefault(e["task"], {})[(e["arm"], e["optimizer"])] = e
  for task, entries in by_task.items():
    info = analysis["setup"]["tasks"][task]
    opts = info["optimizers"]
    rows = []
    for arm in arm_order:
      if not any((arm, o) in entries for o in opts):
        continue
      name = f"**{arm}**" if arm in VARIANTS else arm
      rows.append([name] + [_arm_cell(entries[(arm, o)])
                            if (arm, o) in entries else "—" for o in opts])
    parts += ["", f"### {task}", "",
              f"{info['metric']}, {info['num_steps']} steps, "
              f"{len(info['eval_seeds'])} eval seeds.", "",
              stats.markdown_table(rows, ["arm", *opts])]
  return "\n".join(parts)


def _cost_section(analysis: dict) -> str:
  """SLS forward-pass cost, non-finite updates and wall-clock per arm."""
  arms = analysis["arms"]
  sls = [[e["task"], e["optimizer"], e["arm"],
          _num(e["extra_forward_passes_per_step"], ".3g"),
          _num(1 + e["extra_forward_passes_per_step"], ".3g")]
         for e in arms if e["extra_forward_passes_per_step"] > 0
         or e["arm"] == "sls"]
  parts = ["## Cost", "", "### Line-search forward passes", "",
           "Every arm takes one gradient evaluation per step; SLS adds "
           "backtracking forward passes (mean over eval seeds)."]
  parts += ["", stats.markdown_table(sls, [
      "task", "optimizer", "arm", "extra forward passes / step",
      "forward passes / step"]) if sls else "", "" if sls else
      "No arm used extra forward passes."]
  bad = [[e["task"], e["optimizer"], e["arm"],
          _num(e["nonfinite_updates_mean"], ".3g"),
          _num(e["nonfinite_updates_max"], ".3g"),
          f"{e['final_test']['n_diverged']}/{e['final_test']['n_seeds']}"]
         for e in arms if e["nonfinite_updates_max"] > 0
         or e["final_test"]["n_diverged"]]
  parts += ["", "### Non-finite updates and diverged seeds", "",
            stats.markdown_table(bad, [
                "task", "optimizer", "arm", "skipped updates (mean)",
                "skipped updates (max)", "non-finite final metric"])
            if bad else "None: every update and final metric was finite."]
  parts += ["", "### Wall-clock", "", _seconds_table(arms)]
  return "\n".join(parts)


def _seconds_table(arms: list[dict]) -> str:
  """Wall-clock seconds per arm summed over tasks and rows."""
  total: dict[str, list[float]] = {}
  for e in arms:
    acc = total.setdefault(e["arm"], [0.0, 0.0, 0])
    acc[0] += e["seconds_tuning"]
    acc[1] += e["seconds_evaluation"]
    acc[2] += 1
  rows = [[a, n, _num(t, ".1f"), _num(ev, ".1f")]
          for a, (t, ev, n) in total.items()]
  return ("Seconds summed over tasks and rows (tuning includes "
          "compilation).\n\n" + stats.markdown_table(
              rows, ["arm", "rows", "tuning s", "evaluation s"]))


def _plots_section(plot_paths: Sequence[pathlib.Path],
                   workdir: pathlib.Path) -> str:
  lines = ["## Plots", ""]
  for p in plot_paths:
    rel = p.relative_to(workdir).as_posix()
    lines.append(f"- [`{rel}`]({rel}): {_plot_caption(p.name)}")
  return "\n".join(lines)


def _plot_caption(name: str) -> str:
  stem = name[:-len(".png")]
  if stem.startswith("curves_"):
    return (f"mean test metric vs step per arm, task {stem[7:]}, one panel "
            "per optimizer row (GreedyLR bold)")
  if stem.startswith("lr_"):
    return (f"learning rate of eval seed 0 per arm, task {stem[3:]} (log "
            "scale)")
  return (f"performance profiles of {stem[8:]} vs each baseline (final test "
          "metric, problems = task × row × seed)")


def render_report(analysis: dict, records: Sequence[Record],
                  plot_paths: Sequence[pathlib.Path],
                  workdir: pathlib.Path) -> str:
  """The full markdown report."""
  coverage = [c for c in analysis["coverage"] if c["missing_variants"]]
  notes = ""
  if coverage:
    notes = "\n\nRows without a GreedyLR variant (no cells for it): " + (
        "; ".join(f"{c['task']}/{c['optimizer']} lacks "
                  f"{', '.join(c['missing_variants'])}" for c in coverage)
        + ".")
  sections = [
      "# GreedyLR benchmark study" + "\n\n"
      f"{len(records)} (task, optimizer, arm) runs over "
      f"{len(analysis['setup']['tasks'])} task(s) and "
      f"{len(analysis['coverage'])} optimizer row(s); protocol of "
      "`shared/references/schedulers.md` §4." + notes,
      _headline_section(analysis),
      _setup_section(analysis),
      _sensitivity_section(analysis),
      _endpoint_section(analysis),
      _per_baseline_section(analysis),
      _per_task_section(analysis, _arm_order(records)),
      _cost_section(analysis),
      _plots_section(plot_paths, workdir),
  ]
  return "\n\n".join(sections) + "\n"


# ----------------------------------------------------------------------------
# Plots


def _figure(n_panels: int, ncols: int, panel_size=(5.0, 3.4),
            bottom_in: float = 0.6):
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
  fig.subplots_adjust(left=0.8 / width, right=1 - 0.2 / width,
                      bottom=bottom_in / height, top=1 - 0.75 / height,
                      wspace=0.3, hspace=0.55)
  axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
  for ax in axes[n_panels:]:
    ax.set_visible(False)
  return fig, axes[:n_panels]


def _arm_styles(arm_order: list[str]) -> dict[str, dict]:
  """Line style per arm: GreedyLR thick and dark, baselines thin."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  cmap = matplotlib.colormaps["tab20"]
  baselines = [a for a in arm_order if a not in VARIANTS]
  styles = {a: {"color": cmap(i % 20), "lw": 1.2, "alpha": 0.85, "zorder": 2}
            for i, a in enumerate(baselines)}
  styles["greedy_step"] = {"color": "#c00000", "lw": 2.6, "alpha": 0.9,
                           "zorder": 4}
  styles["greedy_eval"] = {"color": "#000000", "lw": 2.6, "ls": "--",
                           "alpha": 0.9, "zorder": 5}
  return styles


def _finite_seed_mean(curve: np.ndarray) -> np.ndarray:
  """Mean over seeds of the finite values at each evaluation (NaN if none)."""
  ok = np.isfinite(curve)
  count = ok.sum(axis=0)
  total = np.where(ok, curve, 0.0).sum(axis=0)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _seed0(record: Record) -> int:
  seeds = list(record["eval_seeds"])
  return seeds.index(0) if 0 in seeds else 0


def _draw_rows(fig, axes, arms_by_row, styles, series_fn, ylabel):
  """One panel per row; one line per arm; a shared legend below."""
  handles = {}
  for ax, ((task, opt), arms) in zip(axes, arms_by_row.items()):
    values = []
    for arm, record in arms.items():
      x, y = np.asarray(record["eval_steps"]), series_fn(record)
      ok = np.isfinite(y)
      values.append(y[ok])
      (line,) = ax.plot(x[ok], y[ok], label=arm,
                        marker="o" if ok.sum() <= 3 else None, ms=3,
                        **styles[arm])
      handles.setdefault(arm, line)
    values = np.concatenate(values) if values else np.array([])
    if (values.size and np.all(values > 0)
        and np.max(values) > LOG_SPAN * np.min(values)):
      ax.set_yscale("log")
    ax.set_title(f"{task} / {opt}")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
  order = [a for a in styles if a in handles]
  fig.legend([handles[a] for a in order], order, loc="lower center",
             bbox_to_anchor=(0.5, 0.0), ncol=LEGEND_COLUMNS, fontsize="small",
             frameon=False)


def plot_task(path: pathlib.Path, rows: Rows, task: str, styles: dict,
              kind: str) -> None:
  """`curves_<task>.png` (kind 'curves') or `lr_<task>.png` (kind 'lr')."""
  arms_by_row = {k: dict(sorted(v.items(), key=lambda kv: list(styles).index(
      kv[0]))) for k, v in rows.items() if k[0] == task}
  n_arms = len({a for arms in arms_by_row.values() for a in arms})
  legend_in = 0.25 * math.ceil(n_arms / LEGEND_COLUMNS)
  fig, axes = _figure(len(arms_by_row), ncols=3, bottom_in=0.75 + legend_in)
  if kind == "curves":
    series = lambda r: _finite_seed_mean(_curve(r, "test"))
    ylabel = "test metric (seed mean)"
    title = f"{task}: mean test metric per arm"
  else:
    series = lambda r: np.where(_curve(r, "lr")[_seed0(r)] > 0,
                                _curve(r, "lr")[_seed0(r)], np.nan)
    ylabel = "learning rate"
    title = f"{task}: learning rate at each evaluation (eval seed 0)"
  _draw_rows(fig, axes, arms_by_row, styles, series, ylabel)
  if kind == "lr":
    for ax in axes:
      ax.set_yscale("log")
  fig.suptitle(title)
  fig.savefig(path, format="png")


def plot_profile(path: pathlib.Path, variant: str, profile: dict) -> None:
  """`profile_<variant>.png`: one panel per baseline, both arms' ρ(τ)."""
  pairs = profile["pairs"]
  fig, axes = _figure(len(pairs), ncols=4, panel_size=(3.6, 2.8),
                      bottom_in=0.55)
  gaps = np.asarray(profile["taus"][1:]) - 1.0
  xlabel = ("loss / best − 1" if profile["offset"] is None else
            f"(loss − best) / {profile['offset']:g}")
  for ax, (baseline, p) in zip(axes, pairs.items()):
    ax.step(gaps, p["rho_greedy"][1:], where="post", color="#c00000", lw=2,
            label=f"{variant} (wins {_pct(p['greedy_wins'])})")
    ax.step(gaps, p["rho_baseline"][1:], where="post", color="#1f77b4",
            lw=1.5, label=f"{baseline} (wins {_pct(p['baseline_wins'])})")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"vs {baseline} ({p['n_problems']} problems)",
                 fontsize="medium")
    ax.set_xlabel(xlabel, fontsize="small")
    ax.set_ylabel("fraction of problems", fontsize="small")
    ax.legend(fontsize="x-small", loc="lower right")
    ax.grid(True, alpha=0.3)
  fig.suptitle(f"Performance profiles: {VARIANT_TITLES[variant]} "
               "(wins = fraction of problems at τ = 1; ties count for both)")
  fig.savefig(path, format="png")


def write_plots(analysis: dict, records: Sequence[Record],
                plot_dir: pathlib.Path) -> list[pathlib.Path]:
  """Per-task curve and learning-rate plots, and per-variant profiles."""
  plot_dir.mkdir(parents=True, exist_ok=True)
  rows = _index_rows(records)
  styles = _arm_styles(_arm_order(records))
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


# ----------------------------------------------------------------------------
# write_outputs


def _write_text(path: pathlib.Path, text: str) -> None:
  """Writes atomically (temp file + rename)."""
  tmp = path.with_suffix(path.suffix + f".tmp.{os.getpid()}")
  tmp.write_text(text)
  os.replace(tmp, path)


def write_outputs(analysis: dict, records: Sequence[Record],
                  workdir: str | os.PathLike) -> list[pathlib.Path]:
  """Writes results.json, report.md and plots/*.png; returns their paths."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  plot_paths = write_plots(analysis, records, workdir / "plots")
  results = workdir / "results.json"
  payload = strict_json({"analysis": analysis,
                         "records": [compact_record(r) for r in records]})
  _write_text(results, json.dumps(payload, indent=1, allow_nan=False))
  report = workdir / "report.md"
  _write_text(report, render_report(analysis, records, plot_paths, workdir))
  return [results, report, *plot_paths]
