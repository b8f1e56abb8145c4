"""The committed study results recompute from the committed files.

`schedulers/study/results/results.json` holds the analysis and the records without
their curves; `curves.npz` holds the curves (regenerated bitwise by
`python -m schedulers.study.curves`).  Every reported number (the headline,
the 10% / 50% / AUC endpoints, the whole analysis and report.md) must come
back from those two files.
"""

import json
import pathlib

import pytest

from schedulers.study import curves as study_curves
from schedulers.study import report as study_report

RESULTS = pathlib.Path(__file__).resolve().parents[3] / "schedulers" / "study" / "results"


def _strict(obj):
  """As stored in results.json (NaN -> null, tuples -> lists)."""
  return json.loads(json.dumps(study_report.strict_json(obj)))


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
  assert analysis["headline"] == committed["analysis"]["headline"]
  step = analysis["headline"]["greedy_step"]
  assert step["n_cells"] == 186 and step["counts"]["worse"] == 19
  assert round(100 * step["equal_or_better_rate"], 1) == 75.8


@pytest.mark.parametrize("endpoint", ["at_10", "at_50", "final", "auc"])
def test_endpoint_summaries_and_cells_recompute(committed, recomputed, endpoint):
  analysis, _, _ = recomputed
  for variant in study_report.VARIANTS:
    assert analysis["summaries"][variant][endpoint] == committed["analysis"]["summaries"][variant][endpoint], variant
  cells = lambda a: [c for c in a["cells"] if c["endpoint"] == endpoint]
  assert cells(analysis) == cells(committed["analysis"])
  assert len(cells(analysis)) == 2 * 186


def test_whole_analysis_recomputes(committed, recomputed):
  analysis, _, _ = recomputed
  assert analysis.keys() == committed["analysis"].keys()
  for key in analysis:
    assert analysis[key] == committed["analysis"][key], key


def test_records_recompute(committed, recomputed):
  _, records, _ = recomputed
  assert _strict([study_report.compact_record(r) for r in records]) == committed["records"]


def test_report_rerenders(recomputed):
  _, _, report = recomputed
  assert report == (RESULTS / "report.md").read_text()
