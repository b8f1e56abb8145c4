"""Paired non-inferiority statistics for the GreedyLR benchmark.

Implements the decision rule of the benchmark protocol (schedulers/README.md,
"The study").  A *cell* is one
(task × optimizer × baseline scheduler [× regime]) combination with paired
per-seed held-out losses of GreedyLR and of the baseline (same seeds, init and
data order).  For each cell, with d_s = L_greedy,s − L_base,s:

* `paired_bounds`: one-sided `confidence` bounds of mean(d) from the paired t
  distribution;
* `margin`: the non-inferiority margin δ = max(δ_rel·|mean(L_base)|, k·σ_base),
  or the paper's absolute margin;
* `classify_cell`: 'better' (upper < 0), 'equal' (equal-or-better but not
  better: 0 ≤ upper < δ), 'worse' (lower > δ), else 'inconclusive'
  (never counted as a win);
* `wilcoxon_pvalue`: the signed-rank check of "equal-or-better" the protocol
  asks for next to the t bound.

Across cells, `summarize` gives the equal-or-better rate with its exact
Clopper–Pearson interval (`clopper_pearson`), the clearly-better rate,
per-baseline win/tie/loss/inconclusive counts, the sensitivity of the rate to
δ, and whether ">90%" is supported (interval lower end > 0.90).
`performance_profile` gives Dolan–Moré profiles and `markdown_table` formats
report tables.

Pure NumPy/SciPy: nothing here needs JAX.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

BETTER = "better"
EQUAL = "equal"
WORSE = "worse"
INCONCLUSIVE = "inconclusive"
LABELS = (BETTER, EQUAL, WORSE, INCONCLUSIVE)

# Keys of a cell dict in `summarize`; every other key is copied to the record.
GREEDY_KEY = "greedy"
BASELINE_LOSSES_KEY = "baseline_losses"
ID_KEYS = ("task", "optimizer", "baseline")


def _as_1d(x, name: str) -> np.ndarray:
  """Converts per-seed losses to a 1-D float array (rejects other shapes)."""
  arr = np.asarray(x, dtype=np.float64)
  if arr.ndim != 1:
    raise ValueError(f"{name} must be 1-D (one loss per seed), got shape {arr.shape}")
  return arr


def _check_confidence(confidence: float) -> None:
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _paired(greedy, baseline) -> tuple[np.ndarray, np.ndarray]:
  """Validates a paired sample: same length, at least 2 seeds."""
  g = _as_1d(greedy, "greedy")
  b = _as_1d(baseline, "baseline")
  if g.shape != b.shape:
    raise ValueError(f"paired samples differ in length: {g.size} vs {b.size}")
  if g.size < 2:
    raise ValueError(f"need at least 2 paired seeds, got {g.size}")
  return g, b


def paired_bounds(greedy, baseline, *, confidence: float = 0.95) -> tuple[float, float, float]:
  """One-sided paired-t confidence bounds of mean(greedy − baseline).

  upper = mean(d) + t_{confidence, n−1}·sd(d)/√n and lower = mean(d) −
  (same), each a one-sided `confidence` bound (so [lower, upper] is a
  two-sided 2·confidence − 1 interval).  `upper < 0` holds exactly when
  `scipy.stats.ttest_rel(greedy, baseline, alternative='less')` has p <
  1 − confidence.  With zero variance of d both bounds equal the mean.

  Args:
    greedy: per-seed losses of GreedyLR, shape (n,).
    baseline: per-seed losses of the baseline, same seed order, shape (n,).
    confidence: one-sided confidence level of each bound.

  Returns:
    (mean_diff, lower, upper).

  Raises:
    ValueError: n < 2, mismatched lengths, non-finite losses (see
      `classify_cell` for the policy on diverged runs), or bad confidence.
  """
  _check_confidence(confidence)
  g, b = _paired(greedy, baseline)
  if not (np.all(np.isfinite(g)) and np.all(np.isfinite(b))):
    raise ValueError("paired_bounds needs finite losses; classify_cell has a policy for diverged (non-finite) runs")
  d = g - b
  n = d.size
  mean = float(np.mean(d))
  sd = float(np.std(d, ddof=1))
  if sd == 0.0:
    return mean, mean, mean
  half = float(sps.t.ppf(confidence, n - 1)) * sd / math.sqrt(n)
  return mean, mean - half, mean + half


def margin(
  baseline,
  *,
  rel: float = 0.01,
  k_std: float = 1.0,
  absolute: float | None = None,
) -> float:
  """Non-inferiority margin δ of one cell.

  δ = max(rel·|mean(baseline)|, k_std·std(baseline, ddof=1)): the larger of a
  relative tolerance (the paper's 1% LLM margin) and the baseline's own
  seed-to-seed spread, so that seed noise alone is never called a loss.  The
  absolute value keeps δ ≥ 0 for losses that can be negative (identical to
  the protocol's rel·mean for the usual positive losses).  When `absolute` is
  given, δ = absolute (the paper's 0.1 margin) and the data are not used.

  Args:
    baseline: per-seed losses of the baseline, shape (n,).
    rel: relative margin δ_rel.
    k_std: multiple of the baseline's sample standard deviation.
    absolute: fixed margin overriding the data-driven one.

  Returns:
    δ as a Python float.

  Raises:
    ValueError: negative or non-finite parameters, n < 2 or non-finite losses
      (when `absolute` is None).
  """
  if absolute is not None:
    if not (math.isfinite(absolute) and absolute >= 0):
      raise ValueError(f"absolute margin must be finite and >= 0, got {absolute}")
    return float(absolute)
  if not (math.isfinite(rel) and rel >= 0 and math.isfinite(k_std) and k_std >= 0):
    raise ValueError(f"rel and k_std must be finite and >= 0, got {rel}, {k_std}")
  b = _as_1d(baseline, "baseline")
  if b.size < 2:
    raise ValueError(f"need at least 2 baseline seeds, got {b.size}")
  if not np.all(np.isfinite(b)):
    raise ValueError("baseline losses must be finite")
  return float(max(rel * abs(np.mean(b)), k_std * np.std(b, ddof=1)))


def classify_cell(greedy, baseline, *, delta: float, confidence: float = 0.95) -> str:
  """Labels one cell 'better', 'equal', 'worse' or 'inconclusive' (§4.6).

  With the one-sided paired-t bounds of mean(greedy − baseline):
  'better' if upper < 0; 'equal' (equal-or-better but not better) if
  upper < δ; 'worse' if lower > δ; otherwise 'inconclusive'.  Inequalities
  are strict, so a bound exactly on 0 or δ does not qualify.

  Diverged runs (NaN/inf losses): if GreedyLR is non-finite on a seed where
  the baseline is finite, the cell is 'worse' (GreedyLR failed where the
  baseline did not; conservative for the claim).  Any other non-finite loss
  (baseline diverged, or both) gives 'inconclusive': the t bound is
  undefined and the cell is not counted as a win.  These checks come before
  `delta` is validated, so a NaN δ from a diverged baseline is tolerated.

  Args:
    greedy: per-seed losses of GreedyLR, shape (n,).
    baseline: per-seed losses of the baseline, same seed order.
    delta: non-inferiority margin δ ≥ 0 (see `margin`).
    confidence: one-sided confidence level of the bounds.

  Returns:
    One of `LABELS`.
  """
  g, b = _paired(greedy, baseline)
  g_ok, b_ok = np.isfinite(g), np.isfinite(b)
  if np.any(~g_ok & b_ok):
    return WORSE
  if not (np.all(g_ok) and np.all(b_ok)):
    return INCONCLUSIVE
  if not (math.isfinite(delta) and delta >= 0):
    raise ValueError(f"delta must be finite and >= 0, got {delta}")
  _, lower, upper = paired_bounds(g, b, confidence=confidence)
  if upper < 0:
    return BETTER
  if upper < delta:
    return EQUAL
  if lower > delta:
    return WORSE
  return INCONCLUSIVE


def is_equal_or_better(label: str) -> bool:
  """Whether a cell label counts as a win for the claim ('better'/'equal')."""
  if label not in LABELS:
    raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
  return label in (BETTER, EQUAL)


def wilcoxon_pvalue(greedy, baseline, *, delta: float = 0.0) -> float:
  """One-sided Wilcoxon signed-rank p-value for "equal-or-better by δ".

  Tests H1: d − δ is located below 0, with d = greedy − baseline — the
  distribution-free check the protocol asks for next to the paired t bound.
  p < 1 − confidence agrees with upper < δ in most cells; disagreements flag
  heavy tails or outlier seeds.  Zero differences are dropped (Wilcoxon's
  convention); if all are zero there is no evidence and p = 1.  NaN if any
  loss is non-finite.  Note: with 5 seeds the smallest p is 1/32.

  Args:
    greedy: per-seed losses of GreedyLR.
    baseline: per-seed losses of the baseline, same seed order.
    delta: margin subtracted from every difference.

  Returns:
    The p-value as a float.
  """
  g, b = _paired(greedy, baseline)
  if not (np.all(np.isfinite(g)) and np.all(np.isfinite(b))):
    return float("nan")
  d = g - b - delta
  if np.all(d == 0):
    return 1.0
  ties_or_zeros = np.any(d == 0) or len(np.unique(np.abs(d))) < len(d)
  if ties_or_zeros and len(d) <= _MAX_ENUMERATED:
    return _sign_flip_pvalue_less(d)
  return float(sps.wilcoxon(d, alternative="less").pvalue)


_MAX_ENUMERATED = 13  # scipy's limit for its deterministic permutation test (2**13 < 9999 resamples)


def _sign_flip_pvalue_less(d: np.ndarray) -> float:
  """The p-value scipy's `wilcoxon(d, alternative='less')` gives with ties or zeros and n <= 13.

  scipy then runs `permutation_test` over all 2**n sign flips, one rank
  computation per flip in Python (~0.5 s a call); the ranks of |d| do not
  change under sign flips, so the same null distribution of R+ is one matrix
  product.  Zeros are dropped from the ranks (Wilcoxon's convention), ties get
  average ranks, and the comparison allows scipy's relative tolerance.
  """
  nonzero = d != 0
  ranks = np.zeros(len(d))
  ranks[nonzero] = sps.rankdata(np.abs(d[nonzero]))
  observed = float(np.sum(ranks * (d > 0)))
  # Every sign pattern, one per row: the null distribution of R+ (zeros have rank 0).
  signs = np.array(list(itertools.product((0.0, 1.0), repeat=len(d))))
  null = signs @ ranks
  gamma = abs(np.finfo(float).eps * 100 * observed)
  return float(np.mean(null <= observed + gamma))


def clopper_pearson(successes: int, trials: int, *, confidence: float = 0.95) -> tuple[float, float]:
  """Exact two-sided Clopper–Pearson interval of a binomial proportion.

  low = Beta⁻¹(α/2; k, n−k+1) (0 when k = 0) and
  high = Beta⁻¹(1−α/2; k+1, n−k) (1 when k = n), with α = 1 − confidence;
  matches `scipy.stats.binomtest(k, n).proportion_ci(method='exact')`.

  Args:
    successes: k, number of successes (0 ≤ k ≤ n).
    trials: n ≥ 1.
    confidence: two-sided confidence level.

  Returns:
    (low, high).
  """
  _check_confidence(confidence)
  k, n = int(successes), int(trials)
  if k != successes or n != trials:
    raise ValueError("successes and trials must be integers")
  if n < 1 or not 0 <= k <= n:
    raise ValueError(f"need trials >= 1 and 0 <= successes <= trials, got {successes}/{trials}")
  alpha = 1.0 - confidence
  low = 0.0 if k == 0 else float(sps.beta.ppf(alpha / 2, k, n - k + 1))
  high = 1.0 if k == n else float(sps.beta.ppf(1 - alpha / 2, k + 1, n - k))
  return low, high


def _rate(successes: int, trials: int, confidence: float) -> dict[str, Any]:
  """A proportion with its Clopper–Pearson interval."""
  return {
    "successes": successes,
    "trials": trials,
    "rate": successes / trials,
    "ci": clopper_pearson(successes, trials, confidence=confidence),
  }


def _cell_delta(b: np.ndarray, **margin_kwargs) -> float:
  """δ of a cell, NaN when a diverged baseline makes it undefined."""
  if margin_kwargs.get("absolute") is None and not np.all(np.isfinite(b)):
    return float("nan")
  return margin(b, **margin_kwargs)


def summarize(
  cells: Sequence[Mapping[str, Any]],
  *,
  delta_rels: Sequence[float] = (0.005, 0.01, 0.02),
  absolute: float | None = 0.1,
  primary_rel: float = 0.01,
  k_std: float = 1.0,
  confidence: float = 0.95,
  claim_threshold: float = 0.90,
) -> dict[str, Any]:
  """Classifies every cell and computes the claim statistics of §4.6.

  Each cell is a mapping with keys 'task', 'optimizer', 'baseline' (the
  baseline scheduler's name), 'greedy' (per-seed GreedyLR losses) and
  'baseline_losses' (per-seed baseline losses, same seed order); any other
  key (e.g. 'regime') is copied into the cell's record.  The primary margin
  is δ = margin(baseline_losses, rel=primary_rel, k_std=k_std).

  Args:
    cells: the pre-registered cell list (non-empty).
    delta_rels: δ_rel values of the sensitivity table (k_std kept).
    absolute: the paper's absolute margin added to the sensitivity table
      (None to omit).
    primary_rel: δ_rel of the primary analysis.
    k_std: multiple of the baseline's seed std in every relative margin.
    confidence: one-sided level of the t bounds and two-sided level of the
      Clopper–Pearson intervals.
    claim_threshold: the claimed proportion (0.90 for ">90%").

  Returns:
    A dict with
    'cells': per-cell records (ids, 'n', 'mean_diff', 'lower', 'upper' (NaN
      for diverged cells), 'delta', 'label', 'wilcoxon_p' (one-sided
      signed-rank p at δ), 'labels_by_margin' {margin name: label});
    'n_cells'; 'counts' {label: count};
    'equal_or_better', 'better': {'successes', 'trials', 'rate', 'ci'};
    'per_baseline': {baseline: {'win', 'tie', 'loss', 'inconclusive', 'n',
      'equal_or_better_rate'}} (win = better, tie = equal, loss = worse);
    'sensitivity': list of {'margin', 'kind' ('rel' or 'abs'), 'value',
      'successes', 'trials', 'rate', 'ci'};
    'wilcoxon_disagreements': number of cells where the signed-rank test
      (p < 1 − confidence) and the t rule disagree on equal-or-better;
    'claim_threshold', 'claim_supported' (CI lower end > claim_threshold);
    'confidence', 'primary' {'rel', 'k_std'}.
  """
  if not cells:
    raise ValueError("summarize needs at least one cell")
  margins = [(f"rel={r:.3g}", "rel", float(r), {"rel": r, "k_std": k_std}) for r in delta_rels]
  if absolute is not None:
    margins.append((f"abs={absolute:.3g}", "abs", float(absolute), {"absolute": absolute}))

  records = []
  for i, cell in enumerate(cells):
    missing = [k for k in (*ID_KEYS, GREEDY_KEY, BASELINE_LOSSES_KEY) if k not in cell]
    if missing:
      raise KeyError(f"cell {i} lacks keys {missing}")
    g = _as_1d(cell[GREEDY_KEY], f"cell {i} greedy")
    b = _as_1d(cell[BASELINE_LOSSES_KEY], f"cell {i} baseline_losses")
    try:
      g, b = _paired(g, b)
      delta = _cell_delta(b, rel=primary_rel, k_std=k_std)
      label = classify_cell(g, b, delta=delta, confidence=confidence)
      finite = bool(np.all(np.isfinite(g)) and np.all(np.isfinite(b)))
      if finite:
        mean_diff, lower, upper = paired_bounds(g, b, confidence=confidence)
      else:
        mean_diff = lower = upper = float("nan")
      by_margin = {
        name: classify_cell(g, b, delta=_cell_delta(b, **kw), confidence=confidence) for name, _, _, kw in margins
      }
    except ValueError as e:
      ids = {k: cell[k] for k in ID_KEYS}
      raise ValueError(f"cell {i} {ids}: {e}") from e
    record = {k: v for k, v in cell.items() if k not in (GREEDY_KEY, BASELINE_LOSSES_KEY)}
    record.update(
      n=int(g.size),
      mean_diff=mean_diff,
      lower=lower,
      upper=upper,
      delta=delta,
      label=label,
      wilcoxon_p=wilcoxon_pvalue(g, b, delta=delta) if finite else float("nan"),
      labels_by_margin=by_margin,
    )
    records.append(record)

  n = len(records)
  labels = [r["label"] for r in records]
  counts = {lab: labels.count(lab) for lab in LABELS}
  eob = counts[BETTER] + counts[EQUAL]

  per_baseline: dict[str, dict[str, Any]] = {}
  for r in records:
    row = per_baseline.setdefault(r["baseline"], {"win": 0, "tie": 0, "loss": 0, "inconclusive": 0, "n": 0})
    key = {BETTER: "win", EQUAL: "tie", WORSE: "loss", INCONCLUSIVE: "inconclusive"}[r["label"]]
    row[key] += 1
    row["n"] += 1
  for row in per_baseline.values():
    row["equal_or_better_rate"] = (row["win"] + row["tie"]) / row["n"]

  sensitivity = []
  for name, kind, value, _ in margins:
    k = sum(is_equal_or_better(r["labels_by_margin"][name]) for r in records)
    sensitivity.append({"margin": name, "kind": kind, "value": value, **_rate(k, n, confidence)})

  disagreements = 0
  for r in records:
    if np.isfinite(r["wilcoxon_p"]):
      disagreements += (r["wilcoxon_p"] < 1 - confidence) != is_equal_or_better(r["label"])

  eob_rate = _rate(eob, n, confidence)
  return {
    "cells": records,
    "n_cells": n,
    "counts": counts,
    "equal_or_better": eob_rate,
    "better": _rate(counts[BETTER], n, confidence),
    "per_baseline": per_baseline,
    "sensitivity": sensitivity,
    "wilcoxon_disagreements": int(disagreements),
    "claim_threshold": claim_threshold,
    "claim_supported": bool(eob_rate["ci"][0] > claim_threshold),
    "confidence": confidence,
    "primary": {"rel": primary_rel, "k_std": k_std},
  }


def performance_profile(
  losses_by_arm: Mapping[str, Any],
  taus,
  *,
  offset: float | None = None,
) -> dict[str, np.ndarray]:
  """Dolan–Moré performance profiles of arms over a common set of problems.

  Every arm's array holds one loss per problem (e.g. task × optimizer ×
  seed, any shape, flattened in C order; all arms the same shape).  With
  r_a,p = loss_a,p / min_arms loss_·,p, the profile is
  ρ_a(τ) = fraction of problems with r_a,p ≤ τ.  The best arm on a problem
  has r = 1 exactly, so ρ_a(1) is the fraction of problems arm a wins (ties
  count for every tied arm), and ρ_a is non-decreasing in τ.

  Non-finite losses (NaN/inf: diverged runs) mean "never solved": they count
  in the denominator but never satisfy r ≤ τ, and are ignored when taking
  the per-problem minimum (a problem no arm solves stays unsolved by all).

  Ratios need positive losses.  By default a finite loss ≤ 0 raises
  ValueError.  With `offset=c > 0` every problem is shifted by its own
  minimum, loss' = loss − min_p + c, so r = 1 + (loss − min_p)/c: a profile
  of additive gaps in units of c (e.g. c = the 0.1 absolute margin makes
  τ = 2 mean "within 0.1 of the best arm").  The shift applies to all
  problems, for a uniform meaning, whether or not their losses are positive.

  Args:
    losses_by_arm: {arm name: losses over problems}.
    taus: thresholds τ at which to evaluate the profiles.
    offset: None for plain ratios, or c > 0 for the shifted profile above.

  Returns:
    {arm name: ρ_a(taus) as a float array shaped like `taus`}.
  """
  if not losses_by_arm:
    raise ValueError("need at least one arm")
  names = list(losses_by_arm)
  arrays = [np.asarray(losses_by_arm[a], dtype=np.float64) for a in names]
  shape = arrays[0].shape
  for a, arr in zip(names, arrays):
    if arr.shape != shape:
      raise ValueError(f"arm {a!r} has shape {arr.shape}, expected {shape}")
  losses = np.stack([arr.reshape(-1) for arr in arrays])  # (arms, problems)
  if losses.shape[1] == 0:
    raise ValueError("need at least one problem")
  solved = np.isfinite(losses)
  any_solved = solved.any(axis=0)
  masked = np.where(solved, losses, np.inf)
  best = np.min(masked, axis=0)  # inf on problems nobody solves
  if offset is None:
    if np.any(masked <= 0):
      raise ValueError(
        "performance ratios need positive losses; pass offset=c > 0 to shift each problem by its minimum"
      )
    denom = best
  else:
    if not (math.isfinite(offset) and offset > 0):
      raise ValueError(f"offset must be finite and > 0, got {offset}")
    masked = np.where(solved, masked - np.where(any_solved, best, 0.0) + offset, np.inf)
    denom = np.full_like(best, offset)
  with np.errstate(invalid="ignore", divide="ignore"):
    ratios = np.where(solved, masked / np.where(any_solved, denom, 1.0), np.inf)
  t = np.asarray(taus, dtype=np.float64)
  # hits[a, p, j] = problem p solved by arm a within taus[j].
  hits = solved[:, :, None] & (ratios[:, :, None] <= t.reshape(-1)[None, None, :])
  rho = hits.mean(axis=1)
  return {a: rho[i].reshape(t.shape) for i, a in enumerate(names)}


def _format_cell(value: Any, floatfmt: str) -> str:
  if value is None:
    return ""
  if isinstance(value, (float, np.floating)):
    text = format(float(value), floatfmt)
  else:
    text = str(value)
  return text.replace("|", r"\|").replace("\n", " ")


def markdown_table(
  rows: Sequence[Sequence[Any]],
  headers: Sequence[Any],
  *,
  floatfmt: str = ".4g",
) -> str:
  """Formats rows as a GitHub-flavoured Markdown table for reports.

  Floats are formatted with `floatfmt`, None becomes an empty cell, and '|'
  is escaped so that cell text cannot break the table.

  Args:
    rows: table rows, each with len(headers) entries.
    headers: column headers.
    floatfmt: format spec for float entries.

  Returns:
    The table, one line per row, without a trailing newline.
  """
  width = len(headers)
  lines = ["| " + " | ".join(_format_cell(h, floatfmt) for h in headers) + " |", "|" + "|".join(["---"] * width) + "|"]
  for i, row in enumerate(rows):
    if len(row) != width:
      raise ValueError(f"row {i} has {len(row)} entries, expected {width}")
    lines.append("| " + " | ".join(_format_cell(v, floatfmt) for v in row) + " |")
  return "\n".join(lines)
