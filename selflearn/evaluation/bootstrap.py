"""The dialogue-level bootstrap every selflearn comparison uses.

Turns of one dialogue are not independent, so confidence intervals resample
whole dialogues (groups) with replacement.  `resample_counts` draws how
often each group enters each resample, once for all statistics of a call;
`bootstrap_rates` gives per-turn rates of several systems over the same
resamples (paired: online A/B arms, taught preferences),
`ratio_ci` the percentile interval of a ratio of sums (the win/loss ratio
of a rewrite table), and `percentile_ci` the 95% percentile interval of any
resampled statistic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def resample_counts(num_groups: int, samples: int, seed) -> np.ndarray:
  """`[samples, num_groups]` int64: how often each group is drawn in each resample of `num_groups` draws.

  `seed` is anything `numpy.random.default_rng` takes; resample s is the
  s-th block of `num_groups` draws of that generator.
  """
  rng = np.random.default_rng(seed)
  counts = np.zeros((samples, num_groups), np.int64)
  for s in range(samples):
    counts[s] = np.bincount(rng.integers(0, num_groups, num_groups), minlength=num_groups)
  return counts


def bootstrap_rates(
  groups, flags: Sequence[np.ndarray], *, num_groups: int, samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Per-turn rates of each flag array and their paired bootstrap, resampling groups (dialogues).

  `groups[i]` in [0, num_groups) is turn i's dialogue.  Every arm uses the
  same resample of dialogues (paired).  Returns `(rates [k], resampled
  [samples, k])`: the rate of each flag over all turns, and over the turns of
  each resample.
  """
  groups = np.asarray(groups)
  n = np.bincount(groups, minlength=num_groups).astype(np.float64)
  sums = np.stack(
    [np.bincount(groups, weights=np.asarray(f, np.float64), minlength=num_groups) for f in flags], axis=-1
  )
  counts = resample_counts(num_groups, samples, seed).astype(np.float64)
  resampled = (counts @ sums) / np.maximum(counts @ n, 1.0)[:, None]
  return sums.sum(0) / max(n.sum(), 1.0), resampled


def ratio_ci(per_group: np.ndarray, samples: int, seed: int) -> list:
  """95% percentile interval of sum(numerator) / sum(denominator) over groups resampled with replacement.

  `per_group` is `[num_groups, 2]` integer (numerator, denominator) counts,
  e.g. each dialogue's wins and losses; a resample without any denominator
  gives inf.  The interval's ends are order statistics (`lower` / `higher`).
  """
  n = per_group.shape[0]
  if n == 0:
    return [float("nan"), float("nan")]
  counts = resample_counts(n, samples, [seed, 2022])
  num, den = counts @ per_group[:, 0], counts @ per_group[:, 1]
  ratios = np.where(den > 0, num / np.maximum(den, 1), np.inf)
  lo, hi = np.percentile(ratios, 2.5, method="lower"), np.percentile(ratios, 97.5, method="higher")
  return [float(lo), float(hi)]


def percentile_ci(x: np.ndarray, *, ignore_nan: bool = False) -> list:
  """The 95% percentile interval [2.5%, 97.5%] of resampled values (`ignore_nan`: of the finite ones)."""
  pct = np.nanpercentile if ignore_nan else np.percentile
  return [float(pct(x, 2.5)), float(pct(x, 97.5))]
