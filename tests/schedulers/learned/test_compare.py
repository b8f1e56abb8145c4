"""schedulers.learned.compare: paired ratios against scipy.stats, outcome counts, table."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from schedulers.learned import compare


def _losses(seed=0, n=12):
  rng = np.random.default_rng(seed)
  ref = np.exp(rng.normal(-3.0, 0.5, n))
  return {
    "policy": ref,
    "worse": ref * np.exp(rng.normal(0.3, 0.2, n)),
    "noisy": ref * np.exp(rng.normal(0.0, 0.4, n)),
  }


@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_ratio_and_interval_match_scipy(confidence):
  losses = _losses()
  rows = {r["method"]: r for r in compare.compare(losses, "policy", confidence=confidence)}
  assert list(rows) == ["policy", "worse", "noisy"]
  for name in ("worse", "noisy"):
    d = np.log(losses[name]) - np.log(losses["policy"])
    ci = sps.ttest_rel(np.log(losses[name]), np.log(losses["policy"])).confidence_interval(confidence)
    row = rows[name]
    np.testing.assert_allclose(row["ratio"], sps.gmean(losses[name]) / sps.gmean(losses["policy"]), rtol=1e-12)
    np.testing.assert_allclose(row["ratio"], np.exp(d.mean()), rtol=1e-12)
    np.testing.assert_allclose([row["ratio_low"], row["ratio_high"]], np.exp([ci.low, ci.high]), rtol=1e-10)
    np.testing.assert_allclose(row["geomean"], sps.gmean(losses[name]), rtol=1e-12)
    np.testing.assert_allclose(row["mean"], losses[name].mean(), rtol=1e-12)
    assert row["n"] == 12 and row["nonfinite"] == 0 and not row["reference"]
  assert rows["worse"]["ratio_low"] > 1  # clearly worse than the reference
  ref = rows["policy"]
  assert ref["reference"] and ref["ratio"] == ref["ratio_low"] == ref["ratio_high"] == 1.0
  assert (ref["wins"], ref["ties"], ref["losses"]) == (0, 12, 0)


def test_wins_ties_losses_and_diverged_seeds():
  ref = np.array([1.0, 1.0, 1.0, 1.0, np.inf, np.nan, 2.0])
  method = np.array([2.0, 0.5, 1.0005, 1.0, 3.0, np.inf, np.nan])
  rows = compare.compare({"ref": ref, "m": method}, "ref", tie_rtol=1e-3)
  row = rows[1]
  # seed 0 win, 1 loss, 2-3 ties (within 0.1%), 4 loss (ref diverged), 5 tie (both), 6 win (method diverged).
  assert (row["wins"], row["ties"], row["losses"]) == (2, 3, 2)
  assert row["nonfinite"] == 2 and math.isnan(row["ratio"]) and math.isnan(row["ratio_low"])
  assert math.isnan(row["geomean"])
  strict = compare.compare({"ref": ref[:4], "m": method[:4]}, "ref", tie_rtol=0.0)[1]
  assert (strict["wins"], strict["ties"], strict["losses"]) == (2, 1, 1)


def test_identical_methods_have_a_degenerate_interval():
  x = np.array([0.1, 0.2, 0.3])
  row = compare.compare({"a": x, "b": x.copy()}, "a")[1]
  assert row["ratio"] == row["ratio_low"] == row["ratio_high"] == 1.0
  assert (row["wins"], row["ties"], row["losses"]) == (0, 3, 0)


@pytest.mark.parametrize(
  "losses, reference, kwargs, match",
  [
    ({"a": [1.0, 2.0]}, "b", {}, "reference"),
    ({"a": [1.0]}, "a", {}, "at least 2"),
    ({"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0]}, "a", {}, "has 3"),
    ({"a": [[1.0, 2.0]]}, "a", {}, "1-D"),
    ({"a": [1.0, 2.0]}, "a", {"confidence": 1.0}, "confidence"),
    ({"a": [1.0, 2.0]}, "a", {"tie_rtol": -1.0}, "tie_rtol"),
  ],
)
def test_bad_input_raises(losses, reference, kwargs, match):
  with pytest.raises(ValueError, match=match):
    compare.compare(losses, reference, **kwargs)


def test_markdown_table():
  losses = _losses()
  losses["diverged"] = np.where(np.arange(12) == 3, np.nan, losses["policy"])
  text = compare.markdown_table(compare.compare(losses, "policy"))
  lines = text.splitlines()
  assert lines[0].startswith("| method | mean final loss |") and "ratio to policy [95% CI]" in lines[0]
  assert len(lines) == 2 + 4 and all(line.count("|") == 7 for line in lines)
  assert lines[2].startswith("| **policy** |") and "1 (reference)" in lines[2] and "| — |" in lines[2]
  row = compare.compare(losses, "policy")[1]
  assert f"{row['ratio']:.3g} [{row['ratio_low']:.3g}, {row['ratio_high']:.3g}]" in lines[3]
  assert f"{row['wins']} / {row['ties']} / {row['losses']}" in lines[3]
  assert "n/a (non-finite loss)" in lines[5] and lines[5].endswith("| 1 |")
