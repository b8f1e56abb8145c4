"""Paired comparison of final losses: every method against a reference (the learned policy).

The learned-schedule binaries evaluate each method on the same held-out seeds
(seed i = the same problem, init and minibatch stream for every method), so
losses are paired.  `compare` summarises each method by its mean final loss,
the geometric-mean ratio method / reference with a two-sided t-interval on
the paired log ratios (`schedulers.study.stats.paired_bounds`), and the
reference's wins, ties and losses over the seeds; `markdown_table` formats the
rows for a report.  Ratios > 1 mean the method ends with a higher loss than
the reference.

Pure NumPy/SciPy: nothing here needs JAX.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from schedulers.study import stats

__all__ = ["compare", "markdown_table"]


def _as_1d(name: str, values: Any) -> np.ndarray:
  arr = np.asarray(values, dtype=np.float64)
  if arr.ndim != 1:
    raise ValueError(f"final losses of {name!r} must be 1-D (one per seed), got shape {arr.shape}")
  return arr


def _outcomes(reference: np.ndarray, method: np.ndarray, tie_rtol: float) -> tuple[int, int, int]:
  """(wins, ties, losses) of the reference, seed by seed (lower loss wins).

  A tie is a relative difference of at most `tie_rtol` (of the larger
  magnitude).  A non-finite loss (a diverged run) loses to a finite one;
  two non-finite losses tie.
  """
  ref_ok, m_ok = np.isfinite(reference), np.isfinite(method)
  both = ref_ok & m_ok
  with np.errstate(invalid="ignore"):
    close = np.abs(reference - method) <= tie_rtol * np.maximum(np.abs(reference), np.abs(method))
  wins = (both & ~close & (reference < method)) | (ref_ok & ~m_ok)
  losses = (both & ~close & (reference > method)) | (~ref_ok & m_ok)
  ties = (both & close) | (~ref_ok & ~m_ok)
  return int(wins.sum()), int(ties.sum()), int(losses.sum())


def compare(
  final_losses: Mapping[str, Any],
  reference: str,
  *,
  confidence: float = 0.95,
  tie_rtol: float = 1e-3,
) -> list[dict[str, Any]]:
  """One row per method (input order, the reference included) against `reference`.

  With d_i = log(method_i) − log(reference_i) over the n paired seeds, the
  ratio is exp(mean d) (the ratio of geometric means) and its interval
  exp(mean d ± t_{(1+confidence)/2, n−1} · sd(d)/√n), i.e. the two one-sided
  bounds of `stats.paired_bounds` at level (1 + confidence)/2.  Ratio and
  interval are NaN when a loss of the pair is non-finite or <= 0 (the
  `nonfinite` count and the win/loss counts still say what happened).

  Args:
    final_losses: method name -> final losses, shape [n] (n >= 2), paired:
      index i is the same seed for every method.
    reference: the method the others are compared with (a key).
    confidence: two-sided level of the ratio's interval, in (0, 1).
    tie_rtol: relative difference up to which a seed is a tie.

  Returns:
    Dicts with 'method', 'reference' (bool), 'n', 'mean' (arithmetic mean
    final loss), 'geomean', 'ratio', 'ratio_low', 'ratio_high', 'wins',
    'ties', 'losses' (of the reference vs the method) and 'nonfinite'
    (the method's seeds with a non-finite loss).

  Raises:
    ValueError: unknown reference, mismatched or too short arrays, or bad
      `confidence` / `tie_rtol`.
  """
  if reference not in final_losses:
    raise ValueError(f"reference {reference!r} is not among the methods {list(final_losses)}")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  if not (math.isfinite(tie_rtol) and tie_rtol >= 0):
    raise ValueError(f"tie_rtol must be finite and >= 0, got {tie_rtol}")
  arrays = {name: _as_1d(name, values) for name, values in final_losses.items()}
  ref = arrays[reference]
  if ref.size < 2:
    raise ValueError(f"need at least 2 paired seeds, got {ref.size}")
  for name, arr in arrays.items():
    if arr.shape != ref.shape:
      raise ValueError(f"{name!r} has {arr.size} final losses, the reference {reference!r} has {ref.size}")
  rows = []
  for name, arr in arrays.items():
    valid = np.isfinite(arr) & (arr > 0) & np.isfinite(ref) & (ref > 0)
    if np.all(valid):
      mean_d, low_d, high_d = stats.paired_bounds(np.log(arr), np.log(ref), confidence=(1.0 + confidence) / 2)
      ratio, low, high = math.exp(mean_d), math.exp(low_d), math.exp(high_d)
    else:
      ratio = low = high = float("nan")
    positive = np.isfinite(arr) & (arr > 0)
    geomean = float(np.exp(np.mean(np.log(arr)))) if np.all(positive) else float("nan")
    wins, ties, losses = _outcomes(ref, arr, tie_rtol)
    rows.append(
      {
        "method": name,
        "reference": name == reference,
        "n": int(arr.size),
        "mean": float(np.mean(arr)),
        "geomean": geomean,
        "ratio": ratio,
        "ratio_low": low,
        "ratio_high": high,
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "nonfinite": int((~np.isfinite(arr)).sum()),
      }
    )
  return rows


def _ratio_text(row: Mapping[str, Any]) -> str:
  if row["reference"]:
    return "1 (reference)"
  if not math.isfinite(row["ratio"]):
    return "n/a (non-finite loss)"
  return f"{row['ratio']:.3g} [{row['ratio_low']:.3g}, {row['ratio_high']:.3g}]"


def markdown_table(rows: Sequence[Mapping[str, Any]], *, confidence: float = 0.95) -> str:
  """The rows of `compare` as a Markdown table (no trailing newline).

  Columns: method, mean and geometric-mean final loss, the ratio to the
  reference with its interval, the reference's wins / ties / losses, and the
  diverged (non-finite) seeds.
  """
  refs = [r["method"] for r in rows if r["reference"]]
  ref = refs[0] if refs else "reference"
  headers = (
    "method",
    "mean final loss",
    "geo-mean final loss",
    f"ratio to {ref} [{confidence:.0%} CI]",
    f"{ref} wins / ties / losses",
    "non-finite",
  )
  body = [
    (
      f"**{r['method']}**" if r["reference"] else r["method"],
      r["mean"],
      r["geomean"],
      _ratio_text(r),
      "—" if r["reference"] else f"{r['wins']} / {r['ties']} / {r['losses']}",
      r["nonfinite"],
    )
    for r in rows
  ]
  return stats.markdown_table(body, headers)
