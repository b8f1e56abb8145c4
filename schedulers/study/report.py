"""Analysis of the GreedyLR benchmark study: records in, every reported number out.

`schedulers.study.main` runs every (task, optimizer, arm) cell with
`runner.run_cell`, analyses the records here and writes them with
`schedulers.study.outputs`:

  analysis = analyze(records, delta_rel=0.01, k_std=1.0,
                     sensitivity_delta_rels=(0.005, 0.01, 0.02),
                     absolute_margin=0.1, confidence=0.95)
  paths = outputs.write_outputs(analysis, records, workdir)

`analyze` builds the paired cells of the protocol (schedulers/README.md,
"The study"): for each GreedyLR variant
(`VARIANTS`), each (task, optimizer) row holding that variant and each other
arm of the row (a baseline), the per-seed losses of both arms at each
endpoint of `ENDPOINTS`.  The statistics (margins, labels, Clopper–Pearson
rates, sensitivity, performance profiles) all come from `schedulers.study.stats`;
this module only gathers the numbers.

`outputs.write_outputs` writes `results.json` (strict JSON: the analysis
and the records without their curves, `compact_record`), `curves.npz` (every
record's evaluation curves, compressed, as produced: `write_curves`),
`report.md` (`schedulers.study.markdown`) and `plots/*.png`
(`schedulers.study.plots`).  Those modules import this one for its
constants and record helpers (`curve`, `index_rows`, `arm_order`, `pct`),
and nothing here imports them: the dependency runs one way.  `load_records(dir)` joins results.json and
curves.npz back into full records, so
`analyze(load_records(dir), **settings_kwargs(analysis))` recomputes every
reported number (`schedulers.study.curves` regenerates and checks them).  Partial studies are fine: missing tasks,
rows or arms just give fewer cells, rows without a variant give no cells
for it, and NaN/inf curves (diverged runs) follow the
`stats.classify_cell` policy.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from schedulers.study import stats

# The GreedyLR arms (= `schedulers.study.arms.GREEDY_ARMS`; not imported, so that
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
RESULTS_FILE = "results.json"
CURVES_FILE = "curves.npz"
# The curves of a record (`study_runner.make_run`), each [eval seeds, evals].
CURVE_NAMES = ("val", "test", "train", "lr", "forward_passes", "nonfinite")
# The `analyze` keyword arguments, as stored in `analysis['settings']`.
SETTING_ARGS = ("delta_rel", "k_std", "sensitivity_delta_rels", "absolute_margin", "confidence")

Record = Mapping[str, Any]
Rows = dict[tuple[str, str], dict[str, Record]]


# ----------------------------------------------------------------------------
# Endpoints and cells


def endpoint_index(eval_steps: Sequence[int], num_steps: int, fraction: float) -> int:
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
    return curve(record, "val").mean(axis=1)
  index = endpoint_index(record["eval_steps"], record["num_steps"], fraction)
  return curve(record, "test")[:, index]


def curve(record: Record, key: str) -> np.ndarray:
  """A [seeds, evals] curve as floats; JSON nulls become NaN."""
  arr = np.asarray(record["curves"][key], dtype=np.float64)
  return arr.reshape(len(record["eval_seeds"]), -1)


def index_rows(records: Sequence[Record]) -> Rows:
  """{(task, optimizer): {arm: record}}, rows and arms in first-seen order."""
  rows: Rows = {}
  for record in records:
    key = (record["task"], record["optimizer"])
    rows.setdefault(key, {})[record["arm"]] = record
  return rows


def arm_order(records: Sequence[Record]) -> list[str]:
  """Arm names in first-seen order, GreedyLR variants last."""
  names = list(dict.fromkeys(r["arm"] for r in records))
  return [n for n in names if n not in VARIANTS] + [n for n in VARIANTS if n in names]


def _paired(greedy: Record, baseline: Record, endpoint: str) -> tuple[np.ndarray, np.ndarray]:
  """Losses of both arms on their common eval seeds, in greedy's order."""
  g_seeds, b_seeds = list(greedy["eval_seeds"]), list(baseline["eval_seeds"])
  g, b = endpoint_losses(greedy, endpoint), endpoint_losses(baseline, endpoint)
  if g_seeds == b_seeds:
    return g, b
  common = [s for s in g_seeds if s in b_seeds]
  return (g[[g_seeds.index(s) for s in common]], b[[b_seeds.index(s) for s in common]])


def _finite_mean(x: np.ndarray) -> float:
  return float(np.mean(x)) if x.size else float("nan")


def build_cells(rows: Rows, variant: str, endpoint: str) -> tuple[list[dict], list[dict]]:
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
      cells.append(
        {**ids, "greedy": g, "baseline_losses": b, "greedy_mean": _finite_mean(g), "baseline_mean": _finite_mean(b)}
      )
  return cells, skipped


# ----------------------------------------------------------------------------
# Summaries and headline


def _summarize(
  cells: list[dict], *, delta_rel, k_std, sensitivity_delta_rels, absolute_margin, confidence
) -> dict | None:
  """`stats.summarize` as plain Python, or None without cells."""
  if not cells:
    return None
  return to_python(
    stats.summarize(
      cells,
      delta_rels=tuple(sensitivity_delta_rels),
      absolute=absolute_margin,
      primary_rel=delta_rel,
      k_std=k_std,
      confidence=confidence,
      claim_threshold=CLAIM_THRESHOLD,
    )
  )


def _headline_entry(summary: dict | None) -> dict:
  """Primary-endpoint numbers of one variant (None rates without cells)."""
  if summary is None:
    return {
      "n_cells": 0,
      "counts": {lab: 0 for lab in stats.LABELS},
      "equal_or_better_rate": None,
      "equal_or_better_ci": None,
      "better_rate": None,
      "better_ci": None,
      "claim_supported": False,
      "paper_margin_rate": None,
      "paper_margin_ci": None,
    }
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
  head = {
    "primary_endpoint": PRIMARY,
    "confidence": settings["confidence"],
    "claim_threshold": CLAIM_THRESHOLD,
    "delta_rel": settings["delta_rel"],
    "k_std": settings["k_std"],
  }
  for variant in VARIANTS:
    head[variant] = _headline_entry(summaries[variant][PRIMARY])
  return head


def pct(x: float | None) -> str:
  """A rate as '62.5%' ('n/a' for None or non-finite)."""
  return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def verdict(variant: str, entry: Mapping[str, Any], confidence: float = 0.95) -> str:
  """One plain sentence: is ">90% equal-or-better" supported for a variant."""
  name = VARIANT_TITLES.get(variant, variant)
  if not entry["n_cells"]:
    return f"{name}: no cells in this study, so no verdict."
  rate, (low, high) = entry["equal_or_better_rate"], entry["equal_or_better_ci"]
  ci = f"{confidence:.0%} CI {pct(low)}–{pct(high)}"
  n = entry["n_cells"]
  if entry["claim_supported"]:
    return (
      f'{name}: the ">90% equal-or-better" claim is **supported** — '
      f"{pct(rate)} of {n} cells, and the {ci} lies above 90%."
    )
  if rate > CLAIM_THRESHOLD:
    return (
      f'{name}: the ">90% equal-or-better" claim is **not '
      f"supported** — the point estimate {pct(rate)} of {n} cells is "
      f"above 90%, but the {ci} reaches below 90%."
    )
  return (
    f'{name}: the ">90% equal-or-better" claim is **not supported** '
    f"— GreedyLR was equal-or-better in {pct(rate)} of {n} cells "
    f"({ci})."
  )


# ----------------------------------------------------------------------------
# Per-arm tables and performance profiles


def _seed_stats(x: np.ndarray) -> dict:
  """Mean and std over finite seeds, and how many seeds were not finite."""
  ok = x[np.isfinite(x)]
  return {
    "mean": _finite_mean(ok),
    "std": float(np.std(ok, ddof=1)) if ok.size > 1 else float("nan"),
    "n_seeds": int(x.size),
    "n_diverged": int(x.size - ok.size),
  }


def arm_table(records: Sequence[Record]) -> list[dict]:
  """One summary row per record: final test metric, tuning and cost."""
  table = []
  for r in records:
    final = endpoint_losses(r, PRIMARY)
    passes = curve(r, "forward_passes")[:, -1]
    nonfinite = curve(r, "nonfinite")[:, -1]
    seconds = r.get("seconds", {})
    table.append(
      {
        "task": r["task"],
        "optimizer": r["optimizer"],
        "arm": r["arm"],
        "is_greedy": r["arm"] in VARIANTS,
        "final_test": _seed_stats(final),
        "chosen_lr": r["chosen_lr"],
        "chosen_at_grid_edge": bool(r["chosen_at_grid_edge"]),
        "extra_forward_passes_per_step": _finite_mean(passes) / r["num_steps"],
        "nonfinite_updates_mean": _finite_mean(nonfinite),
        "nonfinite_updates_max": float(np.max(nonfinite)),
        "seconds_tuning": float(seconds.get("tuning", float("nan"))),
        "seconds_evaluation": float(seconds.get("evaluation", float("nan"))),
      }
    )
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
  return {k: (np.concatenate(g), np.concatenate(b)) for k, (g, b) in pooled.items()}


def performance_profiles(rows: Rows, variant: str, absolute_margin: float | None) -> dict | None:
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
    rho = stats.performance_profile({variant: g, baseline: b}, PROFILE_TAUS, offset=offset)
    pairs[baseline] = {
      "n_problems": int(g.size),
      "rho_greedy": rho[variant].tolist(),
      "rho_baseline": rho[baseline].tolist(),
      "greedy_wins": float(rho[variant][0]),
      "baseline_wins": float(rho[baseline][0]),
    }
  return {
    "problems": "task × optimizer × eval seed, final test metric",
    "offset": offset,
    "taus": list(PROFILE_TAUS),
    "pairs": pairs,
  }


# ----------------------------------------------------------------------------
# analyze


def _setup(records: Sequence[Record]) -> dict:
  """Per-task setup (metric, budget, seeds, endpoint steps) and grids."""
  tasks: dict[str, dict] = {}
  grids: dict[str, list] = {}
  for r in records:
    steps = r["eval_steps"]
    entry = tasks.setdefault(
      r["task"],
      {
        "metric": r["metric"],
        "num_steps": r["num_steps"],
        "num_evals": len(steps),
        "eval_seeds": list(r["eval_seeds"]),
        "tuning_seeds": list(r["tuning_seeds"]),
        "endpoint_steps": {
          e: steps[endpoint_index(steps, r["num_steps"], f)] for e, f in ENDPOINTS.items() if f is not None
        },
        "optimizers": [],
        "arms": [],
      },
    )
    for key, value in (("optimizers", r["optimizer"]), ("arms", r["arm"])):
      if value not in entry[key]:
        entry[key].append(value)
    grids.setdefault(r["optimizer"], list(r["lr_grid"]))
  return {"tasks": tasks, "lr_grids": grids}


def _coverage(rows: Rows) -> list[dict]:
  """Which arms each row holds and which GreedyLR variants it lacks."""
  return [
    {"task": t, "optimizer": o, "arms": list(arms), "missing_variants": [v for v in VARIANTS if v not in arms]}
    for (t, o), arms in rows.items()
  ]


def analyze(
  records: Sequence[Record],
  *,
  delta_rel: float,
  k_std: float,
  sensitivity_delta_rels: Sequence[float],
  absolute_margin: float | None,
  confidence: float,
) -> dict:
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
  settings = {
    "delta_rel": delta_rel,
    "k_std": k_std,
    "sensitivity_delta_rels": list(sensitivity_delta_rels),
    "absolute_margin": absolute_margin,
    "confidence": confidence,
    "claim_threshold": CLAIM_THRESHOLD,
    "primary_endpoint": PRIMARY,
  }
  rows = index_rows(records)
  summaries: dict[str, dict] = {v: {} for v in VARIANTS}
  all_cells, skipped = [], []
  for variant in VARIANTS:
    for endpoint in ENDPOINTS:
      cells, skip = build_cells(rows, variant, endpoint)
      summary = _summarize(
        cells,
        delta_rel=delta_rel,
        k_std=k_std,
        sensitivity_delta_rels=sensitivity_delta_rels,
        absolute_margin=absolute_margin,
        confidence=confidence,
      )
      if summary is not None:
        all_cells += [{"variant": variant, "endpoint": endpoint, **c} for c in summary.pop("cells")]
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
    "profiles": {v: performance_profiles(rows, v, absolute_margin) for v in VARIANTS},
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
  out["final_val"] = curve(record, "val")[:, -1]
  return out


def curves_key(record: Record, name: str) -> str:
  """The `curves.npz` entry of one curve: 'task/optimizer/arm/name'."""
  return f"{record['task']}/{record['optimizer']}/{record['arm']}/{name}"


def _curve_array(record: Record, name: str) -> np.ndarray:
  """One curve as stored: float32/int32 where that loses nothing."""
  arr = np.asarray(record["curves"][name])
  if arr.dtype.kind not in "iuf":  # JSON nulls: object arrays
    arr = curve(record, name)
  arr = arr.reshape(len(record["eval_seeds"]), -1)
  small = arr.astype(np.float32 if arr.dtype.kind == "f" else np.int32)
  return small if np.array_equal(small, arr, equal_nan=True) else arr


def write_curves(records: Sequence[Record], path: str | os.PathLike) -> None:
  """Writes every record's curves to a compressed `.npz` (atomically).

  Curves keep the values they were produced with (float32 losses, int32
  counters, NaN/inf of diverged runs), so the analysis of the reloaded
  records is the analysis of the originals.
  """
  path = pathlib.Path(path)
  arrays = {curves_key(r, name): _curve_array(r, name) for r in records for name in CURVE_NAMES}
  tmp = path.with_name(path.name + f".tmp.{os.getpid()}.npz")
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, path)


def _check_finals(record: Record) -> None:
  """Raises ValueError unless the curves end in the record's final values."""
  ends = {"final_test": endpoint_losses(record, PRIMARY), "final_val": curve(record, "val")[:, -1]}
  for key, end in ends.items():
    if key not in record:
      continue
    stored = np.asarray(record[key], dtype=np.float64)  # None -> NaN
    same = stored.shape == end.shape and np.all(np.where(np.isfinite(stored), stored == end, ~np.isfinite(end)))
    if not same:
      raise ValueError(f"{curves_key(record, key)}: the curves do not end in the record's {key}.")


def load_results(results_dir: str | os.PathLike) -> dict:
  """`results.json` of a study directory (the analysis and compact records)."""
  path = pathlib.Path(results_dir) / RESULTS_FILE
  return json.loads(path.read_text())


def load_records(results_dir: str | os.PathLike) -> list[dict]:
  """Full records (with curves) from `results.json` + `curves.npz`.

  Raises FileNotFoundError without the curves file, KeyError for a record
  without curves, and ValueError where a curve does not end in the final
  values stored in `results.json`.
  """
  results_dir = pathlib.Path(results_dir)
  compact = load_results(results_dir)["records"]
  records = []
  with np.load(results_dir / CURVES_FILE) as curves:
    for r in compact:
      record = dict(r, curves={n: curves[curves_key(r, n)] for n in CURVE_NAMES})
      _check_finals(record)
      records.append(record)
  return records


def settings_kwargs(analysis: Mapping[str, Any]) -> dict:
  """`analyze` keyword arguments from an analysis' stored 'settings'."""
  return {arg: analysis["settings"][arg] for arg in SETTING_ARGS}


# ----------------------------------------------------------------------------
# write_outputs


def write_text_atomic(path: pathlib.Path, text: str) -> None:
  """Writes atomically (temp file + rename)."""
  tmp = path.with_suffix(path.suffix + f".tmp.{os.getpid()}")
  tmp.write_text(text)
  os.replace(tmp, path)
