"""Runs the GreedyLR-on-non-stationary-objectives grid and writes its tables.

  python -m schedulers.objectives --settings=mql-point-robot,nlirl-airl --seeds=0,1,2,3,4

Each cell (setting, variant, seed) is one run of the setting's binary in
`--root/<setting>/<variant>/seed<k>` (settings whose binary vmaps its seeds
have one cell per variant, `.../all`).  Finished cells (their binary's
results file exists) are skipped, unfinished ones resumed by re-running
them, so the grid survives interruptions; cells run one at a time.  A
finished cell's measured files are copied to `--out/runs/` (the tables
rebuild from there, without the workdirs).  Then `--out` gets `results.md`
and `results.json`: per setting, every variant against the constant rate,
paired over seeds (95% t-intervals).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import time

from schedulers.objectives import grid, readers, report


def _cells(name: str, setting: grid.Setting, variants: list[str], seeds: list[int], root: str):
  for seed in seeds if setting.seed_field is not None else [None]:  # seed-major: partial grids stay paired
    for variant in variants:
      leaf = "all" if seed is None else f"seed{seed}"
      yield variant, seed, pathlib.Path(root) / name / variant / leaf


def run(
  settings: list[str],
  variants: list[str],
  seeds: list[int],
  root: str,
  out: str,
  *,
  report_only: bool = False,
  dry_run: bool = False,
) -> None:
  """Runs the unfinished cells of `settings` (only `variants`, if given), then writes the tables to `out`."""
  tables, payload = [], {}
  for name in settings:
    setting = grid.SETTINGS[name]
    chosen = [v for v in setting.variants if not variants or v in variants]
    measured: dict[str, dict[str, list[float]]] = {}
    for variant, seed, workdir in _cells(name, setting, chosen, seeds, root):
      if not (workdir / setting.done_file).exists() and not report_only:
        cmd = grid.command(setting, variant, seed if seed is not None else 0, str(workdir), sys.executable)
        if dry_run:
          print(" ".join(cmd))
          continue
        workdir.parent.mkdir(parents=True, exist_ok=True)
        print(f"[{time.strftime('%H:%M:%S')}] {name} / {variant} / {workdir.name}", flush=True)
        with open(workdir.parent / f"{workdir.name}.log", "a") as log:
          rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
        if rc:
          print(f"  exit {rc}: see {workdir.parent / (workdir.name + '.log')}", flush=True)
          continue
      kept = pathlib.Path(out) / "runs" / workdir.relative_to(root)
      if (workdir / setting.done_file).exists():
        kept.mkdir(parents=True, exist_ok=True)
        for file_name in setting.keep:
          shutil.copyfile(workdir / file_name, kept / file_name)
      if (kept / setting.done_file).exists():
        for metric, values in readers.READERS[setting.measure](kept).items():
          measured.setdefault(variant, {}).setdefault(metric, []).extend(values)
    if measured:
      rows = report.compare(measured)
      payload[name] = {"objective": setting.objective, "rows": rows, "per_seed": measured}
      tables.append(report.markdown(name, setting.objective, rows, {v: grid.VARIANTS[v].meaning for v in measured}))
  if dry_run or not payload:
    return
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  previous = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
  previous.update(payload)
  (out / "results.json").write_text(json.dumps(previous, indent=1, allow_nan=True) + "\n")
  head = "# GreedyLR on non-stationary objectives: each variant against the constant rate\n\n"
  body = [
    report.markdown(n, p["objective"], p["rows"], {v: grid.VARIANTS[v].meaning for v in p["per_seed"]})
    for n, p in previous.items()
  ]
  (out / "results.md").write_text(head + "\n".join(body))
  print(f"outputs in {out}: results.md, results.json")
  print("\n".join(tables))
