"""The dialogue-level bootstrap: one resampling for every interval, the same draws as before it was shared."""

import numpy as np
import pytest

from selflearn.evaluation import bootstrap, winloss


def test_resample_counts_are_the_generators_draws_in_blocks():
  counts = bootstrap.resample_counts(7, 5, seed=3)
  rng = np.random.default_rng(3)
  draws = rng.integers(0, 7, size=(5, 7))  # one call or one per resample: the same stream
  np.testing.assert_array_equal(counts, [np.bincount(d, minlength=7) for d in draws])
  assert counts.sum(1).tolist() == [7] * 5
  assert bootstrap.resample_counts(0, 3, seed=0).shape == (3, 0)


def test_bootstrap_rates_are_paired_and_weighted_by_turns():
  groups = np.asarray([0, 0, 1, 2, 2, 2])
  a = np.asarray([1, 0, 1, 0, 0, 1], float)
  rates, resampled = bootstrap.bootstrap_rates(groups, [a, 1 - a], num_groups=3, samples=200, seed=0)
  np.testing.assert_allclose(rates, [0.5, 0.5])
  np.testing.assert_allclose(resampled.sum(1), 1.0)  # same resample for both flags
  counts = bootstrap.resample_counts(3, 200, 0).astype(float)
  n, s = np.bincount(groups, minlength=3), np.bincount(groups, weights=a, minlength=3)
  np.testing.assert_allclose(resampled[:, 0], (counts @ s) / np.maximum(counts @ n, 1))


def test_ratio_ci():
  same = np.tile([2, 1], (30, 1))
  assert bootstrap.ratio_ci(same, 200, 0) == [2.0, 2.0]
  mixed = np.array([[3, 0]] * 10 + [[0, 1]] * 10)
  lo, hi = bootstrap.ratio_ci(mixed, 500, 1)
  assert lo < 3.0 < hi and bootstrap.ratio_ci(mixed, 500, 1) == [lo, hi]


def test_ratio_ci_uses_its_own_stream_and_order_statistics():
  per = np.array([[2, 1], [0, 1], [3, 0], [1, 1]])
  counts = bootstrap.resample_counts(4, 300, [5, 2022])
  wins, losses = counts @ per[:, 0], counts @ per[:, 1]
  ratios = np.where(losses > 0, wins / np.maximum(losses, 1), np.inf)
  assert bootstrap.ratio_ci(per, 300, 5) == [
    np.percentile(ratios, 2.5, method="lower"),
    np.percentile(ratios, 97.5, method="higher"),
  ]
  assert bootstrap.ratio_ci(np.zeros((0, 2), int), 10, 0) == [pytest.approx(np.nan, nan_ok=True)] * 2


def test_percentile_ci():
  x = np.arange(101, dtype=float)
  assert bootstrap.percentile_ci(x) == [2.5, 97.5]
  assert bootstrap.percentile_ci(np.append(x, np.nan), ignore_nan=True) == [2.5, 97.5]


def test_win_loss_definitions():
  assert [winloss.outcome(o, n) for o, n in ((False, True), (True, False), (True, True), (False, False))] == [
    "win",
    "loss",
    "tie",
    "tie",
  ]
  assert winloss.counts([False, True, True, False], [True, False, True, False]) == (1, 1)
  assert winloss.ratio(3, 1) == 3.0 and winloss.ratio(2, 0) == float("inf") and np.isnan(winloss.ratio(0, 0))
