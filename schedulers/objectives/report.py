"""Paired comparison of each variant with the constant rate, seeds as the unit."""

from __future__ import annotations

import numpy as np

from common import sweep


def interval(values) -> tuple[float, float, float]:
  """Mean and two-sided 95% t-interval of `values` (`common.sweep.t_interval`; nan bounds below 2 values)."""
  ci = sweep.t_interval([float(v) for v in values])
  return ci["mean"], ci["low"], ci["high"]


def compare(measured: dict[str, dict[str, list[float]]], reference: str = "constant") -> list[dict]:
  """Rows `{variant, metric, n, mean, lo, hi, diff, diff_lo, diff_hi, verdict}`, paired on the seed order.

  `measured[variant][metric]` holds per-seed values in seed order (higher is
  better).  The verdict reads the paired interval of variant − reference:
  'better' (above 0), 'worse' (below 0), 'n.s.', or 'one seed' (no interval).
  """
  rows = []
  base = measured.get(reference, {})
  for variant, metrics in measured.items():
    for metric, values in metrics.items():
      mean, lo, hi = interval(values)
      row = {"variant": variant, "metric": metric, "n": len(values), "mean": mean, "lo": lo, "hi": hi}
      ref = base.get(metric)
      if variant != reference and ref is not None:
        n = min(len(ref), len(values))
        d, d_lo, d_hi = interval(np.asarray(values[:n]) - np.asarray(ref[:n]))
        verdict = "one seed" if n < 2 else "better" if d_lo > 0 else "worse" if d_hi < 0 else "n.s."
        row.update(diff=d, diff_lo=d_lo, diff_hi=d_hi, paired_n=n, verdict=verdict)
      rows.append(row)
  return rows


def markdown(setting: str, objective: str, rows: list[dict], meanings: dict[str, str]) -> str:
  """One setting's table."""

  def fmt(m, lo, hi):
    return f"{m:.4g} [{lo:.4g}, {hi:.4g}]" if np.isfinite(lo) else f"{m:.4g}"

  lines = [
    f"### {setting} ({objective})",
    "",
    "| variant | metric | seeds | mean [95% CI] | paired diff vs constant [95% CI] | verdict |",
    "|---|---|---|---|---|---|",
  ]
  for r in rows:
    diff = fmt(r["diff"], r["diff_lo"], r["diff_hi"]) if "diff" in r else "—"
    lines.append(
      f"| {r['variant']} | {r['metric']} | {r['n']} | {fmt(r['mean'], r['lo'], r['hi'])} | {diff} |"
      f" {r.get('verdict', 'reference')} |"
    )
  lines += ["", "Variants: " + "; ".join(f"`{v}`: {meanings[v]}" for v in dict.fromkeys(r["variant"] for r in rows))]
  return "\n".join(lines) + "\n"
