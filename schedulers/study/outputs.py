"""Writing a study's outputs: results.json, curves.npz, report.md and plots.

Kept apart from `report` (the analysis) because the markdown and plot
modules import the analysis: this module sits above all three.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence

from schedulers.study import markdown as study_markdown
from schedulers.study import plots as study_plots
from schedulers.study import report as study_report
from schedulers.study.report import Record


def write_outputs(analysis: dict, records: Sequence[Record], workdir: str | os.PathLike) -> list[pathlib.Path]:
  """Writes results.json, curves.npz, report.md and plots/*.png.

  Returns their paths.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  plot_paths = study_plots.write_plots(analysis, records, workdir / "plots")
  results = workdir / study_report.RESULTS_FILE
  payload = study_report.strict_json(
    {"analysis": analysis, "records": [study_report.compact_record(r) for r in records]}
  )
  study_report.write_text_atomic(results, json.dumps(payload, indent=1, allow_nan=False))
  curves = workdir / study_report.CURVES_FILE
  study_report.write_curves(records, curves)
  report_md = workdir / "report.md"
  study_report.write_text_atomic(report_md, study_markdown.render_report(analysis, records, plot_paths, workdir))
  return [results, curves, report_md, *plot_paths]
