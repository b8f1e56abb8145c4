"""The `labels` runner's report."""

import json
import pathlib

from selflearn.tasks import labels


def test_committed_results_rerender_from_their_json():
  root = pathlib.Path(__file__).resolve().parents[3] / "selflearn" / "results"
  for name in ("labels", "labels_minilm"):
    if (root / name / "results.json").exists():
      results = json.loads((root / name / "results.json").read_text())
      assert labels.render(results) == (root / name / "results.md").read_text()
