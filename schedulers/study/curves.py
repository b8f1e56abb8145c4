"""Regenerates the evaluation curves of a committed study and checks them.

  python -m schedulers.study.curves --results=schedulers/study/results [--cache=runs/study_curves]

`results.json` keeps every cell's chosen learning rate, eval seeds and final
per-seed values, but not its curves.  A run is a pure function of
`(lr, seed)`, so this binary re-runs only the evaluation phase of each cell
(`study_runner.run_evaluation`, with the study's pairs per call and the
full task sizes, on CPU, fully optimised as the study ran), checks that the
recomputed final validation and test values equal the committed ones, and
caches each cell's curves in `--cache` (atomically; a re-run skips cached
cells, so a killed run resumes).  Once every cell is cached it writes
`curves.npz` next to `results.json`, recomputes the analysis from the two
files (`study_report.load_records`) and checks it, and the rendered
`report.md`, against the committed ones.  Exit status 1 on any mismatch.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from absl import flags

from common import app
from schedulers.study import arms as arms_lib
from schedulers.study import markdown as study_markdown
from schedulers.study import report as study_report
from schedulers.study import runner as study_runner
from schedulers.study import tasks as tasks_lib
from schedulers.study.configs import default as study_config

_RESULTS = flags.DEFINE_string("results", "schedulers/study/results", "Directory holding the study's results.json.")
_CACHE = flags.DEFINE_string("cache", "runs/study_curves", "Per-cell cache of regenerated curves.")
_VARIANT = flags.DEFINE_string(
  "variant", "", "Variant of schedulers/study/configs/default.py the study ran ('' or 'smoke')."
)

Record = Mapping[str, Any]


def _print(message: str) -> None:
  print(message, flush=True)  # progress shows in a redirected log


def cell_cache_path(cache: pathlib.Path, record: Record) -> pathlib.Path:
  return cache / record["task"] / record["optimizer"] / f"{record['arm']}.npz"


def study_settings(task: str, variant: str = "") -> tuple[str, int]:
  """The study's task size and (lr, seed) pairs per compiled call."""
  config = study_config.get_config(variant)
  batch = config.char_lm_pairs_per_call if task == "char_lm" else config.pairs_per_call
  return config.size, batch


def compare_finals(record: Record, curves: Mapping[str, np.ndarray]) -> dict:
  """Recomputed vs committed final val/test values of one record.

  Committed non-finite values are JSON nulls, so a null matches any
  non-finite value.  Returns `equal` (bitwise, as float64 of the float32
  results) and `max_abs_diff` over the seeds finite in both.
  """
  equal, diffs = True, [0.0]
  for key, name in (("final_val", "val"), ("final_test", "test")):
    new = np.asarray(curves[name], np.float64)[:, -1]
    old = np.asarray(record[key], np.float64)  # None -> NaN
    finite = np.isfinite(old)
    equal &= bool(np.all(np.where(finite, old == new, ~np.isfinite(new))))
    both = finite & np.isfinite(new)
    diffs += list(np.abs(old[both] - new[both]))
  return {"equal": equal, "max_abs_diff": float(max(diffs))}


def regenerate_cell(record: Record, task, batch: int) -> dict[str, np.ndarray]:
  """Re-runs the evaluation phase of one committed record."""
  arm = {a.name: a for a in arms_lib.make_arms(record["optimizer"])}[record["arm"]]
  if task.num_steps != record["num_steps"]:
    raise ValueError(f"{record['task']}: {task.num_steps} steps, the record has {record['num_steps']}.")
  compiled = study_runner.make_run_pairs(task, arm)
  return study_runner.run_evaluation(compiled, record["chosen_lr"], record["eval_seeds"], batch)


def _save_npz(path: pathlib.Path, arrays: Mapping[str, np.ndarray]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + f".tmp.{os.getpid()}.npz")
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, path)


def regenerate(records: Sequence[Record], cache: pathlib.Path, variant: str = "", log=_print) -> tuple[list[dict], int]:
  """Regenerates every uncached cell; returns the records with their curves.

  Also returns how many cells are bitwise equal to their committed finals.
  """
  tasks: dict[str, Any] = {}
  full, checks = [], []
  for i, record in enumerate(records):
    path = cell_cache_path(cache, record)
    ident = f"{record['task']}/{record['optimizer']}/{record['arm']}"
    if not path.exists():
      size, batch = study_settings(record["task"], variant)
      if record["task"] not in tasks:
        tasks.clear()  # one task's data in memory at a time
        tasks[record["task"]] = tasks_lib.make_task(record["task"], size=size)
      t0 = time.perf_counter()
      curves = regenerate_cell(record, tasks[record["task"]], batch)
      seconds = time.perf_counter() - t0
      _save_npz(path, {**curves, "seconds": np.float64(seconds)})
      check = compare_finals(record, curves)
      log(
        f"[{i + 1}/{len(records)}] {ident:<44} equal={check['equal']}"
        f" max_abs_diff={check['max_abs_diff']:.3g} {seconds:.1f}s"
        f" (recorded evaluation {record['seconds']['evaluation']:.1f}s)"
      )
    with np.load(path) as cached:
      curves = {n: cached[n] for n in study_report.CURVE_NAMES}
    checks.append({"cell": ident, **compare_finals(record, curves)})
    full.append(dict(record, curves=curves))
  equal = sum(c["equal"] for c in checks)
  log(
    f"{equal}/{len(checks)} cells bitwise equal to the committed finals;"
    f" max abs diff {max(c['max_abs_diff'] for c in checks):.3g}"
  )
  for c in checks:
    if not c["equal"]:
      log(f"  differs: {c['cell']} (max abs diff {c['max_abs_diff']:.3g})")
  return full, equal


def report_plot_paths(
  analysis: Mapping[str, Any], records: Sequence[Record], workdir: pathlib.Path
) -> list[pathlib.Path]:
  """The plot paths `study_plots.write_plots` returns, in its order."""
  tasks = dict.fromkeys(t for t, _ in study_report.index_rows(records))
  paths = [workdir / "plots" / f"{kind}_{t}.png" for t in tasks for kind in ("curves", "lr")]
  return paths + [workdir / "plots" / f"profile_{v}.png" for v, p in analysis["profiles"].items() if p is not None]


def recompute(results_dir: pathlib.Path) -> tuple[dict, list[dict], str]:
  """The analysis, full records and report.md recomputed from the files."""
  committed = study_report.load_results(results_dir)["analysis"]
  records = study_report.load_records(results_dir)
  analysis = study_report.analyze(records, **study_report.settings_kwargs(committed))
  report = study_markdown.render_report(
    analysis, records, report_plot_paths(analysis, records, results_dir), results_dir
  )
  return analysis, records, report


def check_results(results_dir: pathlib.Path, log=_print) -> bool:
  """Recomputes analysis and report from the files; True when both match."""
  committed = study_report.load_results(results_dir)
  analysis, _, report = recompute(results_dir)
  same_analysis = json.loads(json.dumps(study_report.strict_json(analysis))) == committed["analysis"]
  same_report = report == (results_dir / "report.md").read_text()
  log(
    f"analysis recomputed from {study_report.RESULTS_FILE} + {study_report.CURVES_FILE}:"
    f" {'identical' if same_analysis else 'DIFFERS'}; report.md: {'identical' if same_report else 'DIFFERS'}"
  )
  return same_analysis and same_report


def main(argv: Sequence[str]) -> int:
  del argv
  if os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS", "0") not in ("", "0", "false"):
    print(
      "warning: JAX_DISABLE_MOST_OPTIMIZATIONS is set; a study that ran fully optimised will not reproduce bitwise."
    )
  jax.config.update("jax_platforms", "cpu")  # the study's platform
  results_dir, cache = pathlib.Path(_RESULTS.value), pathlib.Path(_CACHE.value)
  records = study_report.load_results(results_dir)["records"]
  full, equal = regenerate(records, cache, _VARIANT.value)
  if equal < len(full):
    print(
      f"not writing {study_report.CURVES_FILE}: the curves of {len(full) - equal} cells"
      f" do not reproduce results.json (cached in {cache})"
    )
    return 1
  study_report.write_curves(full, results_dir / study_report.CURVES_FILE)
  size = (results_dir / study_report.CURVES_FILE).stat().st_size
  print(f"wrote {results_dir / study_report.CURVES_FILE} ({size / 1e6:.2f} MB)")
  ok = check_results(results_dir)
  return 0 if ok else 1


if __name__ == "__main__":
  app.run_tool(main)
