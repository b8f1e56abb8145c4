"""Tests of schedulers.study.stats: paired bounds, margins, labels, CP, profiles."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from schedulers.study import stats

RNG_SEED = 20240531


# ----------------------------------------------------------------------------
# paired_bounds


def test_paired_bounds_hand_values():
  # d = [1, 2, 3]: mean 2, sd 1, t_{0.95, 2} = 2.919986.
  mean, lower, upper = stats.paired_bounds([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
  t_95_2 = 0.9 / math.sqrt(2 * 0.95 * 0.05)  # closed form for 2 dof
  half = t_95_2 / math.sqrt(3)
  assert mean == pytest.approx(2.0)
  assert upper == pytest.approx(2.0 + half, abs=1e-12)
  assert lower == pytest.approx(2.0 - half, abs=1e-12)
  assert upper == pytest.approx(3.685854, abs=1e-6)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_paired_bounds_direct_formula(confidence):
  rng = np.random.default_rng(RNG_SEED)
  b = rng.normal(1.0, 0.1, size=10)
  g = b + rng.normal(-0.02, 0.05, size=10)
  mean, lower, upper = stats.paired_bounds(g, b, confidence=confidence)
  d = g - b
  half = sps.t.ppf(confidence, 9) * d.std(ddof=1) / math.sqrt(10)
  assert mean == pytest.approx(d.mean(), rel=1e-12)
  assert upper == pytest.approx(d.mean() + half, rel=1e-12)
  assert lower == pytest.approx(d.mean() - half, rel=1e-12)


def test_paired_bounds_agree_with_ttest_rel():
  """upper < c ⇔ ttest_rel(g − c, b, 'less') p < α; lower > c likewise."""
  rng = np.random.default_rng(RNG_SEED)
  alpha = 0.05
  n_upper = n_lower = 0
  for trial in range(150):
    n = 5 if trial % 2 else 10
    b = rng.normal(1.0, 0.1, size=n)
    g = b + rng.normal(rng.uniform(-0.1, 0.1), 0.05, size=n)
    c = rng.choice([0.0, 0.01, 0.03])
    _, lower, upper = stats.paired_bounds(g, b, confidence=1 - alpha)
    p_less = sps.ttest_rel(g - c, b, alternative="less").pvalue
    p_greater = sps.ttest_rel(g - c, b, alternative="greater").pvalue
    assert (upper < c) == (p_less < alpha)
    assert (lower > c) == (p_greater < alpha)
    n_upper += upper < c
    n_lower += lower > c
  # Both outcomes of each comparison occurred, so the check has teeth.
  assert 0 < n_upper < 150 and 0 < n_lower < 150


def test_paired_bounds_zero_variance_and_errors():
  b = np.array([1.0, 2.0, 3.0, 4.0])
  assert stats.paired_bounds(b + 0.5, b) == (0.5, 0.5, 0.5)
  assert stats.paired_bounds(b, b) == (0.0, 0.0, 0.0)
  with pytest.raises(ValueError, match="at least 2"):
    stats.paired_bounds([1.0], [2.0])
  with pytest.raises(ValueError, match="length"):
    stats.paired_bounds([1.0, 2.0], [1.0, 2.0, 3.0])
  with pytest.raises(ValueError, match="finite"):
    stats.paired_bounds([1.0, np.nan], [1.0, 2.0])
  with pytest.raises(ValueError, match="confidence"):
    stats.paired_bounds(b, b, confidence=1.0)


# ----------------------------------------------------------------------------
# margin


def test_margin_math():
  b = np.array([1.0, 1.1, 0.9, 1.05, 0.95])
  sd = b.std(ddof=1)
  assert stats.margin(b) == pytest.approx(max(0.01, sd))
  assert stats.margin(b) == pytest.approx(sd)  # spread dominates here
  assert stats.margin(b, k_std=0.0) == pytest.approx(0.01)
  assert stats.margin(b, rel=0.5) == pytest.approx(0.5)
  assert stats.margin(b, k_std=2.0) == pytest.approx(2 * sd)
  assert stats.margin(b, absolute=0.1) == 0.1
  # A quiet baseline: the relative term dominates.
  quiet = np.array([10.0, 10.001, 9.999, 10.0005, 9.9995])
  assert stats.margin(quiet, rel=0.02) == pytest.approx(0.2)
  # Negative losses still give a non-negative margin.
  assert stats.margin(-quiet, k_std=0.0) == pytest.approx(0.1)
  with pytest.raises(ValueError):
    stats.margin([1.0])
  with pytest.raises(ValueError):
    stats.margin([1.0, np.nan])
  with pytest.raises(ValueError):
    stats.margin(b, rel=-0.01)
  with pytest.raises(ValueError):
    stats.margin(b, absolute=-0.1)


# ----------------------------------------------------------------------------
# classify_cell


BASE = np.array([1.0, 1.1, 0.9, 1.05, 0.95])
NOISY_D = np.array([0.3, -0.3, 0.2, -0.1, 0.05])


@pytest.mark.parametrize(
  "shift,expected",
  [
    (-0.2, "better"),
    (0.02, "equal"),
    (0.5, "worse"),
  ],
)
def test_classify_constant_shift(shift, expected):
  delta = stats.margin(BASE)
  assert 0.07 < delta < 0.09
  assert stats.classify_cell(BASE + shift, BASE, delta=delta) == expected


def test_classify_inconclusive_when_noisy():
  delta = stats.margin(BASE)
  _, lower, upper = stats.paired_bounds(BASE + NOISY_D, BASE)
  assert lower < delta < upper
  assert stats.classify_cell(BASE + NOISY_D, BASE, delta=delta) == ("inconclusive")


def test_classify_noisy_cases_for_each_label():
  rng = np.random.default_rng(RNG_SEED)
  b = rng.normal(1.0, 0.05, size=10)
  noise = rng.normal(0.0, 0.01, size=10)
  delta = 0.05
  assert stats.classify_cell(b - 0.05 + noise, b, delta=delta) == "better"
  assert stats.classify_cell(b + 0.01 + noise, b, delta=delta) == "equal"
  assert stats.classify_cell(b + 0.2 + noise, b, delta=delta) == "worse"
  # Mean difference right at δ: neither non-inferior nor shown worse.
  assert stats.classify_cell(b + delta + noise - noise.mean(), b, delta=delta) == "inconclusive"


def test_classify_boundaries_are_strict():
  # Zero variance: bounds equal the mean exactly.
  assert stats.classify_cell(BASE, BASE, delta=0.0) == "inconclusive"
  assert stats.classify_cell(BASE, BASE, delta=0.01) == "equal"
  # Dyadic values, so b + d − b is exactly d and the bounds are exactly d.
  b, d = np.array([1.0, 1.5, 0.75, 1.25, 0.5]), 0.25
  assert stats.paired_bounds(b + d, b) == (d, d, d)
  assert stats.classify_cell(b + d, b, delta=d) == "inconclusive"
  assert stats.classify_cell(b + d, b, delta=np.nextafter(d, 1.0)) == "equal"
  assert stats.classify_cell(b + d, b, delta=np.nextafter(d, 0.0)) == "worse"
  # Noisy case: δ placed exactly on the computed upper bound.
  g = BASE + 0.03 + 0.01 * np.array([1.0, -1.0, 0.5, -0.5, 0.0])
  _, lower, upper = stats.paired_bounds(g, BASE)
  assert 0 < lower < upper
  assert stats.classify_cell(g, BASE, delta=upper) == "inconclusive"
  assert stats.classify_cell(g, BASE, delta=np.nextafter(upper, 1.0)) == ("equal")
  assert stats.classify_cell(g, BASE, delta=np.nextafter(lower, 0.0)) == ("worse")
  assert stats.classify_cell(g, BASE, delta=lower) == "inconclusive"


def test_classify_nonfinite_policy():
  g = BASE.copy()
  g[2] = np.nan
  assert stats.classify_cell(g, BASE, delta=0.1) == "worse"
  g[2] = np.inf
  assert stats.classify_cell(g, BASE, delta=0.1) == "worse"
  b = BASE.copy()
  b[1] = np.nan
  # Baseline diverged: undefined bound, not a win; NaN δ tolerated.
  assert stats.classify_cell(BASE - 1.0, b, delta=float("nan")) == ("inconclusive")
  assert stats.classify_cell(g, g, delta=0.1) == "inconclusive"


def test_classify_rejects_bad_delta():
  with pytest.raises(ValueError):
    stats.classify_cell(BASE, BASE, delta=-0.1)
  with pytest.raises(ValueError):
    stats.classify_cell(BASE, BASE, delta=float("nan"))


def test_is_equal_or_better():
  assert stats.is_equal_or_better("better")
  assert stats.is_equal_or_better("equal")
  assert not stats.is_equal_or_better("worse")
  assert not stats.is_equal_or_better("inconclusive")
  with pytest.raises(ValueError):
    stats.is_equal_or_better("tie")


def test_wilcoxon_pvalue():
  # All 5 differences below δ: the exact minimum one-sided p, 1/32.
  assert stats.wilcoxon_pvalue(BASE - 0.1, BASE) == pytest.approx(1 / 32)
  assert stats.wilcoxon_pvalue(BASE + 0.1, BASE) == pytest.approx(1.0)
  assert stats.wilcoxon_pvalue(BASE, BASE) == 1.0
  assert stats.wilcoxon_pvalue(BASE + 0.1, BASE, delta=0.2) == (pytest.approx(1 / 32))
  assert math.isnan(stats.wilcoxon_pvalue([1.0, np.nan], [1.0, 2.0]))


def test_wilcoxon_pvalue_with_ties_and_zeros_equals_scipys_permutation_test():
  """The enumerated sign flips give scipy's p exactly where scipy runs its permutation test."""
  rng = np.random.default_rng(0)
  compared = 0
  for _ in range(60):
    n = int(rng.integers(2, 9))  # scipy's reference costs 2**n rank computations
    d = rng.integers(-3, 4, size=n) * rng.choice([1.0, 0.5, 0.013])
    if np.all(d == 0):
      continue
    nonzero = d[d != 0]
    compared += len(nonzero) < n or len(np.unique(np.abs(nonzero))) < len(nonzero)
    assert stats.wilcoxon_pvalue(d, np.zeros(n)) == float(sps.wilcoxon(d, alternative="less").pvalue), d
  assert compared > 40  # most draws have ties or zeros


# ----------------------------------------------------------------------------
# clopper_pearson


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (45, 49), (170, 196), (1, 66), (65, 66)])
@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_clopper_pearson_matches_binomtest(k, n, confidence):
  ci = sps.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
  low, high = stats.clopper_pearson(k, n, confidence=confidence)
  assert low == pytest.approx(ci.low, abs=1e-10)
  assert high == pytest.approx(ci.high, abs=1e-10)
  assert 0.0 <= low <= k / n <= high <= 1.0


def test_clopper_pearson_edges():
  assert stats.clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10)))
  low, high = stats.clopper_pearson(10, 10)
  assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 10))
  for bad in [(-1, 10), (11, 10), (0, 0), (1.5, 3)]:
    with pytest.raises(ValueError):
      stats.clopper_pearson(*bad)


# ----------------------------------------------------------------------------
# summarize


def _cell(task, baseline, greedy, base, **extra):
  return dict(
    task=task,
    optimizer="adamw",
    baseline=baseline,
    greedy=np.asarray(greedy),
    baseline_losses=np.asarray(base),
    **extra,
  )


QUIET = np.array([10.0, 10.001, 9.999, 10.0005, 9.9995])


def _synthetic_cells():
  return [
    _cell("t1", "cosine", BASE - 0.2, BASE),  # better
    _cell("t2", "cosine", BASE + 0.02, BASE),  # equal
    _cell("t3", "step", BASE + 0.5, BASE),  # worse
    _cell("t4", "step", BASE + NOISY_D, BASE),  # inconclusive
    # δ = 0.05 / 0.1 / 0.2 for δ_rel 0.5% / 1% / 2%, 0.1 absolute.
    _cell("t5", "step", QUIET + 0.15, QUIET, regime="shared_lr"),
  ]


def test_summarize_counts_and_rates():
  s = stats.summarize(_synthetic_cells())
  assert s["n_cells"] == 5
  assert [r["label"] for r in s["cells"]] == ["better", "equal", "worse", "inconclusive", "worse"]
  assert s["counts"] == {"better": 1, "equal": 1, "worse": 2, "inconclusive": 1}
  assert s["equal_or_better"]["successes"] == 2
  assert s["equal_or_better"]["rate"] == pytest.approx(0.4)
  assert s["equal_or_better"]["ci"] == pytest.approx(stats.clopper_pearson(2, 5))
  assert s["better"]["successes"] == 1
  assert s["better"]["rate"] == pytest.approx(0.2)
  assert s["per_baseline"]["cosine"] == {
    "win": 1,
    "tie": 1,
    "loss": 0,
    "inconclusive": 0,
    "n": 2,
    "equal_or_better_rate": 1.0,
  }
  assert s["per_baseline"]["step"] == {
    "win": 0,
    "tie": 0,
    "loss": 2,
    "inconclusive": 1,
    "n": 3,
    "equal_or_better_rate": 0.0,
  }
  assert s["claim_supported"] is False
  rec = s["cells"][4]
  assert rec["regime"] == "shared_lr" and rec["task"] == "t5"
  assert rec["delta"] == pytest.approx(0.1)
  assert "greedy" not in rec and "baseline_losses" not in rec
  assert rec["n"] == 5


def test_summarize_sensitivity_table():
  s = stats.summarize(_synthetic_cells())
  table = {row["margin"]: row for row in s["sensitivity"]}
  assert list(table) == ["rel=0.005", "rel=0.01", "rel=0.02", "abs=0.1"]
  # Only the quiet cell (shift 0.15) changes: equal only when δ = 0.2.
  assert {k: v["successes"] for k, v in table.items()} == {"rel=0.005": 2, "rel=0.01": 2, "rel=0.02": 3, "abs=0.1": 2}
  assert table["rel=0.02"]["ci"] == pytest.approx(stats.clopper_pearson(3, 5))
  assert table["abs=0.1"]["kind"] == "abs"
  assert table["rel=0.02"]["value"] == pytest.approx(0.02)
  assert s["cells"][4]["labels_by_margin"] == {
    "rel=0.005": "worse",
    "rel=0.01": "worse",
    "rel=0.02": "equal",
    "abs=0.1": "worse",
  }
  # The primary analysis is the rel=1% row.
  assert table["rel=0.01"]["successes"] == s["equal_or_better"]["successes"]
  no_abs = stats.summarize(_synthetic_cells(), absolute=None)
  assert [r["margin"] for r in no_abs["sensitivity"]] == ["rel=0.005", "rel=0.01", "rel=0.02"]


def test_summarize_claim_threshold():
  # All cells better: CP lower end is 0.025^(1/n): 0.832 at n=20, 0.912 at 40.
  # Distinct differences (no ties) keep scipy's Wilcoxon on its fast path.
  jitter = np.array([0.0, 0.001, 0.002, 0.003, 0.004])

  def all_better(n):
    return [_cell(f"t{i}", "cosine", BASE - 0.2 - jitter, BASE) for i in range(n)]

  s20 = stats.summarize(all_better(20))
  assert s20["equal_or_better"]["rate"] == 1.0
  assert s20["equal_or_better"]["ci"][0] == pytest.approx(0.025 ** (1 / 20))
  assert s20["claim_supported"] is False
  s40 = stats.summarize(all_better(40))
  assert s40["claim_supported"] is True
  assert s40["better"]["rate"] == 1.0


def test_summarize_nonfinite_and_errors():
  g = BASE.copy()
  g[0] = np.nan
  b = BASE.copy()
  b[0] = np.inf
  s = stats.summarize([_cell("t1", "cosine", g, BASE), _cell("t2", "cosine", BASE, b)])
  assert [r["label"] for r in s["cells"]] == ["worse", "inconclusive"]
  assert math.isnan(s["cells"][0]["upper"])
  assert math.isnan(s["cells"][1]["delta"])
  assert s["cells"][1]["labels_by_margin"]["abs=0.1"] == "inconclusive"
  assert s["equal_or_better"]["successes"] == 0
  with pytest.raises(ValueError):
    stats.summarize([])
  with pytest.raises(KeyError):
    stats.summarize([{"task": "t", "greedy": BASE}])
  with pytest.raises(ValueError, match="cell 0"):
    stats.summarize([_cell("t1", "cosine", [1.0], [1.0])])


def test_summarize_wilcoxon_check():
  s = stats.summarize(_synthetic_cells())
  ps = [r["wilcoxon_p"] for r in s["cells"]]
  assert ps[0] == pytest.approx(1 / 32) and ps[1] == pytest.approx(1 / 32)
  assert ps[2] == pytest.approx(1.0)
  assert s["wilcoxon_disagreements"] == 0


# ----------------------------------------------------------------------------
# performance_profile


HAND = {
  "A": np.array([1.0, 2.0, 4.0, np.nan]),
  "B": np.array([2.0, 2.0, 2.0, 1.0]),
  "C": np.array([4.0, 1.0, 8.0, 2.0]),
}
TAUS = np.array([1.0, 1.5, 2.0, 4.0, 10.0])


def test_performance_profile_hand_example():
  # Per-problem minima [1, 1, 2, 1]; ratios A [1, 2, 2, never],
  # B [2, 2, 1, 1], C [4, 1, 4, 2].
  rho = stats.performance_profile(HAND, TAUS)
  np.testing.assert_allclose(rho["A"], [0.25, 0.25, 0.75, 0.75, 0.75])
  np.testing.assert_allclose(rho["B"], [0.5, 0.5, 1.0, 1.0, 1.0])
  np.testing.assert_allclose(rho["C"], [0.25, 0.25, 0.5, 1.0, 1.0])
  # At τ = 1 each arm scores the problems it wins; no ties here, so they
  # partition the problems.
  assert sum(r[0] for r in rho.values()) == pytest.approx(1.0)
  # On the problems B wins, B's profile is 1 at τ = 1.
  wins_b = {k: v[2:] for k, v in HAND.items()}
  assert stats.performance_profile(wins_b, [1.0])["B"][0] == 1.0


def test_performance_profile_monotone_and_shapes():
  rng = np.random.default_rng(RNG_SEED)
  arms = {a: rng.lognormal(0.0, 0.3, size=(3, 2, 10)) for a in "xyz"}
  arms["z"][0, 0, :3] = np.nan
  taus = np.linspace(1.0, 3.0, 41)
  rho = stats.performance_profile(arms, taus)
  for r in rho.values():
    assert r.shape == taus.shape
    assert np.all(np.diff(r) >= 0)
    assert np.all((0 <= r) & (r <= 1))
  assert rho["z"][-1] <= 57 / 60
  assert sum(r[0] for r in rho.values()) >= 1.0 - 1e-12
  # taus may have any shape.
  assert stats.performance_profile(arms, taus.reshape(41, 1))["x"].shape == (41, 1)


def test_performance_profile_nan_handling():
  arms = {"a": [1.0, np.nan, np.nan], "b": [2.0, 3.0, np.inf]}
  rho = stats.performance_profile(arms, [1.0, 100.0])
  # Problem 3 is solved by nobody and stays in the denominator.
  np.testing.assert_allclose(rho["a"], [1 / 3, 1 / 3])
  np.testing.assert_allclose(rho["b"], [1 / 3, 2 / 3])
  rho = stats.performance_profile(arms, [np.inf])
  np.testing.assert_allclose(rho["a"], [1 / 3])


def test_performance_profile_nonpositive_losses():
  arms = {"a": [-1.0, 0.0], "b": [0.0, 0.5]}
  with pytest.raises(ValueError, match="offset"):
    stats.performance_profile(arms, [1.0])
  # Shifted by the per-problem minimum: r = 1 + (loss − min) / offset,
  # so a = [1, 1], b = [2, 1.5].
  rho = stats.performance_profile(arms, [1.0, 1.5, 2.0], offset=1.0)
  np.testing.assert_allclose(rho["a"], [1.0, 1.0, 1.0])
  np.testing.assert_allclose(rho["b"], [0.0, 0.5, 1.0])
  rho = stats.performance_profile({"a": [-1.0, np.nan], "b": [np.nan, np.nan]}, [1.0], offset=0.1)
  np.testing.assert_allclose(rho["a"], [0.5])
  np.testing.assert_allclose(rho["b"], [0.0])
  with pytest.raises(ValueError):
    stats.performance_profile(arms, [1.0], offset=0.0)
  with pytest.raises(ValueError, match="shape"):
    stats.performance_profile({"a": [1.0, 2.0], "b": [1.0]}, [1.0])


# ----------------------------------------------------------------------------
# markdown_table


def test_markdown_table():
  text = stats.markdown_table(
    [["cosine", 3, 0.123456, None], ["a|b", 0, 1.0, True]], ["baseline", "wins", "rate", "note"]
  )
  assert text == "\n".join(
    [
      "| baseline | wins | rate | note |",
      "|---|---|---|---|",
      "| cosine | 3 | 0.1235 |  |",
      r"| a\|b | 0 | 1 | True |",
    ]
  )
  assert stats.markdown_table([[0.5]], ["x"], floatfmt=".2f").endswith("| 0.50 |")
  with pytest.raises(ValueError):
    stats.markdown_table([[1, 2]], ["x"])
