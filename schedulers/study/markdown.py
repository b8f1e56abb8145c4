"""Markdown rendering of the GreedyLR benchmark study report.

`render_report(analysis, records, plot_paths, workdir)` turns the output of
`schedulers.study.report.analyze` into the README-ready `report.md`: the
headline verdicts, setup and label definitions, margin sensitivity,
endpoints, per-baseline label maps, per-task final metrics, cost and the
list of plots.  It only formats numbers that `analyze` already computed;
`schedulers.study.outputs.write_outputs` calls it, and this module imports
`study_report` (never the reverse at import time) for the study constants
and shared record helpers.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from schedulers.study import report as study_report
from schedulers.study import stats

LABEL_SYMBOLS = {stats.BETTER: "B", stats.EQUAL: "=", stats.WORSE: "W", stats.INCONCLUSIVE: "?"}


def _rate_text(rate: Mapping[str, Any]) -> str:
  """'62.5% [40.6%, 81.2%] (10/16)' from a stats rate dict."""
  low, high = rate["ci"]
  pct = study_report.pct
  return f"{pct(rate['rate'])} [{pct(low)}, {pct(high)}] ({rate['successes']}/{rate['trials']})"


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
  rows = [
    [
      t,
      e["metric"],
      e["num_steps"],
      e["num_evals"],
      f"{e['endpoint_steps']['at_10']} / {e['endpoint_steps']['at_50']} / {e['endpoint_steps']['final']}",
      len(e["eval_seeds"]),
      ", ".join(e["optimizers"]),
      len(e["arms"]),
    ]
    for t, e in setup["tasks"].items()
  ]
  table = stats.markdown_table(
    rows, ["task", "metric", "steps", "evals", "10% / 50% / 100% step", "eval seeds", "optimizer rows", "arms"]
  )
  grids = "\n".join(f"- `{o}`: {', '.join(f'{x:g}' for x in g)}" for o, g in setup["lr_grids"].items())
  tuning = sorted({x for e in setup["tasks"].values() for x in e["tuning_seeds"]})
  conf = s["confidence"]
  lines = [
    "## Setup",
    "",
    table,
    "",
    "Learning-rate grids (the same grid for every arm of a row; the rate "
    f"is chosen by mean final validation loss on tuning seeds {tuning}, "
    "disjoint from the evaluation seeds):",
    grids,
    "",
    "A **cell** is (task × optimizer row × baseline arm); GreedyLR and the "
    "baseline share every evaluation seed (same initialisation and data "
    "order). With d_s = L_greedy,s − L_baseline,s and one-sided "
    f"{conf:.0%} paired-t bounds of mean(d), and margin "
    f"δ = max({s['delta_rel']:g} · |mean baseline loss|, "
    f"{s['k_std']:g} · baseline seed std):",
    "",
    "- **better**: upper bound < 0;",
    "- **equal** (equal-or-better, not better): 0 ≤ upper bound < δ;",
    "- **worse**: lower bound > δ, or GreedyLR diverged on a seed where the baseline did not;",
    "- **inconclusive**: anything else (incl. a diverged baseline); never counted as a win.",
    "",
    "Equal-or-better rates come with exact Clopper–Pearson "
    f'{conf:.0%} intervals; ">90%" counts as supported only if the '
    "interval's lower end exceeds 90%.",
  ]
  return "\n".join(lines)


def _headline_section(analysis: dict) -> str:
  """Primary-endpoint table for both variants and the verdicts."""
  conf = analysis["settings"]["confidence"]
  rows, verdicts = [], []
  for v in study_report.VARIANTS:
    summary = analysis["summaries"][v][study_report.PRIMARY]
    entry = analysis["headline"][v]
    verdicts.append(f"- {study_report.verdict(v, entry, conf)}")
    if summary is None:
      rows.append([v, 0] + ["—"] * 8)
      continue
    c = summary["counts"]
    paper = [x for x in summary["sensitivity"] if x["kind"] == "abs"]
    rows.append(
      [
        v,
        summary["n_cells"],
        c["better"],
        c["equal"],
        c["worse"],
        c["inconclusive"],
        _rate_text(summary["equal_or_better"]),
        _rate_text(summary["better"]),
        "yes" if summary["claim_supported"] else "no",
        _rate_text(paper[0]) if paper else "—",
      ]
    )
  table = stats.markdown_table(
    rows,
    [
      "variant",
      "cells",
      "better",
      "equal",
      "worse",
      "inconclusive",
      f"equal-or-better [{conf:.0%} CI]",
      f"better [{conf:.0%} CI]",
      ">90% supported",
      "equal-or-better, paper margin (abs)",
    ],
  )
  return "\n".join(["## Headline (primary endpoint: test metric at 100% of the budget)", "", table, "", *verdicts])


def _sensitivity_section(analysis: dict) -> str:
  """Equal-or-better rate under each margin, primary endpoint."""
  names: list[dict] = []
  by_variant = {}
  for v in study_report.VARIANTS:
    summary = analysis["summaries"][v][study_report.PRIMARY]
    sens = summary["sensitivity"] if summary else []
    by_variant[v] = {x["margin"]: x for x in sens}
    names += [x for x in sens if x["margin"] not in {n["margin"] for n in names}]
  if not names:
    return "## Sensitivity to the margin\n\nNo cells."
  rows = [
    [_margin_name(n)]
    + [_rate_text(by_variant[v][n["margin"]]) if n["margin"] in by_variant[v] else "—" for v in study_report.VARIANTS]
    for n in names
  ]
  table = stats.markdown_table(rows, ["margin", *study_report.VARIANTS])
  return "\n".join(
    [
      "## Sensitivity to the margin (primary endpoint)",
      "",
      "Equal-or-better rate [CI] (cells) when δ uses each "
      "relative margin (with the same seed-std term) or the "
      "paper's absolute margin.",
      "",
      table,
    ]
  )


def _endpoint_section(analysis: dict) -> str:
  """Counts and rates at 10%, 50%, 100% and AUC for both variants."""
  rows = []
  for endpoint in study_report.ENDPOINTS:
    for v in study_report.VARIANTS:
      s = analysis["summaries"][v][endpoint]
      if s is None:
        continue
      c = s["counts"]
      rows.append(
        [
          study_report.ENDPOINT_TITLES[endpoint],
          v,
          s["n_cells"],
          c["better"],
          c["equal"],
          c["worse"],
          c["inconclusive"],
          _rate_text(s["equal_or_better"]),
          _rate_text(s["better"]),
          s["wilcoxon_disagreements"],
        ]
      )
  if not rows:
    return "## Endpoints\n\nNo cells."
  table = stats.markdown_table(
    rows,
    [
      "endpoint",
      "variant",
      "cells",
      "better",
      "equal",
      "worse",
      "inconclusive",
      "equal-or-better [CI]",
      "better [CI]",
      "Wilcoxon disagreements",
    ],
  )
  return "\n".join(
    [
      "## Endpoints",
      "",
      "10%/50% use the evaluation closest to that fraction of the budget "
      "(steps in the setup table). Wilcoxon disagreements: cells where the "
      "one-sided signed-rank test at δ and the t rule disagree on "
      "equal-or-better." + _wilcoxon_note(analysis),
      "",
      table,
    ]
  )


def _wilcoxon_note(analysis: dict) -> str:
  """Warns when too few seeds let the signed-rank test ever reject."""
  n = min(len(e["eval_seeds"]) for e in analysis["setup"]["tasks"].values())
  conf = analysis["settings"]["confidence"]
  if 0.5**n < 1 - conf:
    return ""
  return (
    f" With {n} seeds the smallest one-sided signed-rank p is "
    f"1/{2**n} ≥ {1 - conf:g}, so the test can never confirm "
    "equal-or-better and disagreements are expected."
  )


def _per_baseline_section(analysis: dict) -> str:
  """Win/tie/loss/inconclusive per baseline and a label map, per variant."""
  parts = [
    "## Per-baseline results (primary endpoint)",
    "",
    "win = better, tie = equal, loss = worse. Label map: B better, "
    "= equal, W worse, ? inconclusive, blank = arm absent.",
  ]
  for v in study_report.VARIANTS:
    summary = analysis["summaries"][v][study_report.PRIMARY]
    parts += ["", f"### {v}", ""]
    if summary is None:
      parts.append("No cells (variant absent).")
      continue
    rows = [
      [b, r["n"], r["win"], r["tie"], r["loss"], r["inconclusive"], study_report.pct(r["equal_or_better_rate"])]
      for b, r in summary["per_baseline"].items()
    ]
    parts.append(
      stats.markdown_table(rows, ["baseline", "cells", "win", "tie", "loss", "inconclusive", "equal-or-better"])
    )
    parts += ["", _label_map(analysis, v, list(summary["per_baseline"]))]
  return "\n".join(parts)


def _label_map(analysis: dict, variant: str, baselines: list[str]) -> str:
  """Rows (task/optimizer) × baselines grid of primary-endpoint labels."""
  grid: dict[str, dict[str, str]] = {}
  for c in analysis["cells"]:
    if c["variant"] == variant and c["endpoint"] == study_report.PRIMARY:
      row = grid.setdefault(f"{c['task']}/{c['optimizer']}", {})
      row[c["baseline"]] = LABEL_SYMBOLS[c["label"]]
  rows = [[name] + [row.get(b, "") for b in baselines] for name, row in grid.items()]
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
  parts = [
    "## Final test metric per task",
    "",
    "Mean ± std over evaluation seeds (std over finite seeds) with "
    "the chosen learning rate; * = the chosen rate is at an edge of "
    "the grid (the optimum may lie outside it). GreedyLR arms in "
    "bold.",
  ]
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
      name = f"**{arm}**" if arm in study_report.VARIANTS else arm
      rows.append([name] + [_arm_cell(entries[(arm, o)]) if (arm, o) in entries else "—" for o in opts])
    parts += [
      "",
      f"### {task}",
      "",
      f"{info['metric']}, {info['num_steps']} steps, {len(info['eval_seeds'])} eval seeds.",
      "",
      stats.markdown_table(rows, ["arm", *opts]),
    ]
  return "\n".join(parts)


def _cost_section(analysis: dict) -> str:
  """SLS forward-pass cost, non-finite updates and wall-clock per arm."""
  arms = analysis["arms"]
  sls = [
    [
      e["task"],
      e["optimizer"],
      e["arm"],
      _num(e["extra_forward_passes_per_step"], ".3g"),
      _num(1 + e["extra_forward_passes_per_step"], ".3g"),
    ]
    for e in arms
    if e["extra_forward_passes_per_step"] > 0 or e["arm"] == "sls"
  ]
  parts = [
    "## Cost",
    "",
    "### Line-search forward passes",
    "",
    "Every arm takes one gradient evaluation per step; SLS adds backtracking forward passes (mean over eval seeds).",
  ]
  parts += [
    "",
    stats.markdown_table(sls, ["task", "optimizer", "arm", "extra forward passes / step", "forward passes / step"])
    if sls
    else "",
    "" if sls else "No arm used extra forward passes.",
  ]
  bad = [
    [
      e["task"],
      e["optimizer"],
      e["arm"],
      _num(e["nonfinite_updates_mean"], ".3g"),
      _num(e["nonfinite_updates_max"], ".3g"),
      f"{e['final_test']['n_diverged']}/{e['final_test']['n_seeds']}",
    ]
    for e in arms
    if e["nonfinite_updates_max"] > 0 or e["final_test"]["n_diverged"]
  ]
  parts += [
    "",
    "### Non-finite updates and diverged seeds",
    "",
    stats.markdown_table(
      bad, ["task", "optimizer", "arm", "skipped updates (mean)", "skipped updates (max)", "non-finite final metric"]
    )
    if bad
    else "None: every update and final metric was finite.",
  ]
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
  rows = [[a, n, _num(t, ".1f"), _num(ev, ".1f")] for a, (t, ev, n) in total.items()]
  return "Seconds summed over tasks and rows (tuning includes compilation).\n\n" + stats.markdown_table(
    rows, ["arm", "rows", "tuning s", "evaluation s"]
  )


def _plots_section(plot_paths: Sequence[pathlib.Path], workdir: pathlib.Path) -> str:
  lines = ["## Plots", ""]
  for p in plot_paths:
    rel = p.relative_to(workdir).as_posix()
    lines.append(f"- [`{rel}`]({rel}): {_plot_caption(p.name)}")
  return "\n".join(lines)


def _plot_caption(name: str) -> str:
  stem = name[: -len(".png")]
  if stem.startswith("curves_"):
    return f"mean test metric vs step per arm, task {stem[7:]}, one panel per optimizer row (GreedyLR bold)"
  if stem.startswith("lr_"):
    return f"learning rate of eval seed 0 per arm, task {stem[3:]} (log scale)"
  return f"performance profiles of {stem[8:]} vs each baseline (final test metric, problems = task × row × seed)"


def render_report(
  analysis: dict, records: Sequence[study_report.Record], plot_paths: Sequence[pathlib.Path], workdir: pathlib.Path
) -> str:
  """The full markdown report."""
  coverage = [c for c in analysis["coverage"] if c["missing_variants"]]
  notes = ""
  if coverage:
    notes = "\n\nRows without a GreedyLR variant (no cells for it): " + (
      "; ".join(f"{c['task']}/{c['optimizer']} lacks {', '.join(c['missing_variants'])}" for c in coverage) + "."
    )
  sections = [
    "# GreedyLR benchmark study" + "\n\n"
    f"{len(records)} (task, optimizer, arm) runs over "
    f"{len(analysis['setup']['tasks'])} task(s) and "
    f"{len(analysis['coverage'])} (task, optimizer) rows; protocol of "
    'schedulers/README.md ("The study").' + notes,
    _headline_section(analysis),
    _setup_section(analysis),
    _sensitivity_section(analysis),
    _endpoint_section(analysis),
    _per_baseline_section(analysis),
    _per_task_section(analysis, study_report.arm_order(records)),
    _cost_section(analysis),
    _plots_section(plot_paths, workdir),
  ]
  return "\n\n".join(sections) + "\n"
