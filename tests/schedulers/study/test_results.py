"""The committed study results recompute from the committed files.

`schedulers/study/results/results.json` holds the analysis and the records without
their curves; `curves.npz` holds the curves (regenerated bitwise by
`python -m schedulers.study.curves`).  Every reported number (the headline,
the 10% / 50% / AUC endpoints, the whole analysis and report.md) must come
back from those two files.

Counts, labels and stored values compare exactly; floats the analysis derives
through transcendental functions (t-quantiles, logs, performance-profile taus)
compare to a relative 1e-12, since another CPU or libm may round their last
bit differently.
"""

import json
import math
import pathlib

import pytest

from schedulers.study import curves as study_curves
from schedulers.study import report as study_report

RESULTS = pathlib.Path(__file__).resolve().parents[3] / "schedulers" / "study" / "results"
RTOL = 1e-12


def _strict(obj):
  """As stored in results.json (NaN -> null, tuples -> lists)."""
  return json.loads(json.dumps(study_report.strict_json(obj)))


def assert_json_close(actual, expected, path="", rtol=RTOL):
  """JSON trees equal: floats to `rtol` (relative), everything else exactly."""
  if isinstance(expected, float):
    close = isinstance(actual, float) and math.isclose(actual, expected, rel_tol=rtol, abs_tol=0.0)
    assert close, f"{path}: {actual!r} != {expected!r}"
  elif isinstance(expected, dict):
    assert isinstance(actual, dict) and actual.keys() == expected.keys(), f"{path}: keys differ"
    for key in expected:
      assert_json_close(actual[key], expected[key], f"{path}.{key}", rtol)
  elif isinstance(expected, list):
    assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: lengths differ"
    for i, (a, e) in enumerate(zip(actual, expected)):
      assert_json_close(a, e, f"{path}[{i}]", rtol)
  else:
    assert type(actual) is type(expected) and actual == expected, f"{path}: {actual!r} != {expected!r}"


@pytest.fixture(scope="module")
def committed():
  return study_report.load_results(RESULTS)


@pytest.fixture(scope="module")
def recomputed():
  analysis, records, report = study_curves.recompute(RESULTS)
  return _strict(analysis), records, report


def test_curves_are_committed_and_small():
  path = RESULTS / study_report.CURVES_FILE
  assert path.exists(), f"{path} is missing (python -m schedulers.study.curves)"
  assert path.stat().st_size < 3e6


def test_every_record_has_full_curves(committed, recomputed):
  _, records, _ = recomputed
  assert len(records) == len(committed["records"]) == 222
  for r in records:
    for name in study_report.CURVE_NAMES:
      assert study_report.curve(r, name).shape == (len(r["eval_seeds"]), len(r["eval_steps"]))


def test_headline_recomputes(committed, recomputed):
  analysis, _, _ = recomputed
  assert_json_close(analysis["headline"], committed["analysis"]["headline"], "headline")
  step = analysis["headline"]["greedy_step"]
  assert step["n_cells"] == 186 and step["counts"]["worse"] == 19
  assert round(100 * step["equal_or_better_rate"], 1) == 75.8


@pytest.mark.parametrize("endpoint", ["at_10", "at_50", "final", "auc"])
def test_endpoint_summaries_and_cells_recompute(committed, recomputed, endpoint):
  analysis, _, _ = recomputed
  for variant in study_report.VARIANTS:
    expected = committed["analysis"]["summaries"][variant][endpoint]
    assert_json_close(analysis["summaries"][variant][endpoint], expected, f"summaries.{variant}.{endpoint}")
  cells = lambda a: [c for c in a["cells"] if c["endpoint"] == endpoint]
  assert_json_close(cells(analysis), cells(committed["analysis"]), "cells")
  assert len(cells(analysis)) == 2 * 186


def test_whole_analysis_recomputes(committed, recomputed):
  analysis, _, _ = recomputed
  assert analysis.keys() == committed["analysis"].keys()
  assert_json_close(analysis, committed["analysis"], "analysis")


def test_records_recompute(committed, recomputed):
  _, records, _ = recomputed
  # Stored values (per-seed finals, tuning grids): exact.
  assert _strict([study_report.compact_record(r) for r in records]) == committed["records"]


def test_report_rerenders(recomputed):
  _, _, report = recomputed
  assert report == (RESULTS / "report.md").read_text()


def test_tolerance_is_exact_except_for_floats():
  assert_json_close({"taus": [6.623413251903491], "n": 3}, {"taus": [6.62341325190349], "n": 3})
  for actual, expected in ([1.0 + 1e-9], [1.0]), ({"n": 3}, {"n": 4}), ({"n": 3}, {"n": 3.0}), (["a"], ["b"]):
    with pytest.raises(AssertionError):
      assert_json_close(actual, expected)
