"""The `fpi` runner's report: the keynote column, committed results re-rendered from their JSON."""

import json
import pathlib

import numpy as np
import pytest

from selflearn.tasks import fpi as fpi_task
from selflearn.understanding import fpi


def test_render_has_the_keynote_column():
  y = np.arange(60) % 6
  r = {
    "test_turns": 60,
    "test_class_counts": {c: 10 for c in fpi.CLASSES},
    "train_labels": "annotator",
    "vs_truth": {"model": fpi.scores(y, y), "human": fpi.scores(y, (y + 1) % 6)},
    "vs_majority": {"model": fpi.scores(y, y), "human": fpi.scores(y, y)},
  }
  r["share_of_human"] = fpi.share_of_human(r["vs_truth"]["model"], r["vs_truth"]["human"])
  text = fpi_task.render(r)
  assert "> 92% (92.2% in the FPI paper)" in text and "| model | truth | 1.000 | 1.000 |" in text


def test_committed_results_rerender_from_their_json():
  root = pathlib.Path(__file__).resolve().parents[3] / "selflearn" / "results"
  for name in ("fpi", "fpi_minilm"):
    if (root / name / "results.json").exists():
      results = json.loads((root / name / "results.json").read_text())
      assert fpi_task.render(results) == (root / name / "results.md").read_text()
      share = fpi.share_of_human(results["vs_truth"]["model"], results["vs_truth"]["human"])
      assert share["macro_f1"] == pytest.approx(results["share_of_human"]["macro_f1"])
      assert share["per_class_f1"] == pytest.approx(results["share_of_human"]["per_class_f1"])
