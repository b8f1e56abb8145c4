"""The committed learned-schedule results are consistent with themselves.

Each results.md re-renders from its results.json, and the headline numbers the
package README quotes are recomputed from the stored per-seed final losses.
"""

import json
import pathlib

import numpy as np
import pytest

from schedulers.learned import compare, dnn_train, nmf_report

RESULTS = pathlib.Path(__file__).resolve().parents[3] / "schedulers" / "learned" / "results"


def _load(name):
  return json.loads((RESULTS / name / "results.json").read_text())


def test_dnn_report_renders_from_results_json():
  assert dnn_train.report(_load("dnn")) == (RESULTS / "dnn" / "results.md").read_text()


@pytest.mark.parametrize("name", ["nmf", "nmf_wide_clip"])
def test_nmf_report_renders_from_results_json(name):
  assert nmf_report.report(_load(name)) == (RESULTS / name / "results.md").read_text()


@pytest.mark.parametrize("name", ["nmf", "nmf_wide_clip"])
def test_nmf_comparison_recomputes_from_the_final_losses(name):
  results = _load(name)
  for task in results["tasks"].values():
    finals = {m: np.asarray(task["methods"][m]["final_losses"]) for m in (r["method"] for r in task["comparison"])}
    rows = compare.compare(finals, nmf_report.POLICY, confidence=results["config"]["eval"]["confidence"])
    for stored, fresh in zip(task["comparison"], rows):
      assert stored["method"] == fresh["method"]
      np.testing.assert_allclose(stored["ratio"], fresh["ratio"], rtol=1e-12)
      np.testing.assert_allclose([stored["ratio_low"], stored["ratio_high"]], [fresh["ratio_low"], fresh["ratio_high"]])
      assert (stored["wins"], stored["losses"]) == (fresh["wins"], fresh["losses"])
