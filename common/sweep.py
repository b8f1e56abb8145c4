"""`python -m common.sweep`: a grid of seeds x config overrides for any training binary.

  python -m common.sweep --binary=mql.main --config=mql.configs.default:cheetah-vel \\
    --seeds=0,1,2 --set optimizer.greedy_mode=none,per_step --root=runs/sweep

runs `python -m mql.main --config=... --workdir=runs/sweep/<cell>/seed<s>
--config.seed=<s> --config.<field>=<value> ...` for every seed and every
combination of the `--set` values (a cell; without `--set` the workdirs are
`<root>/seed<s>`), one run at a time (`--parallel=N` runs N at once).
`--set` may be repeated (the grid is their product); its values are split
on `,`, or on `|` when one holds commas (`--set "model.hidden_sizes=16,16|32,32"`).

* Resuming: a workdir whose results file (`results.json`, or the
  `final_metrics.json` that `schedulers.main` writes) exists is finished and
  skipped; any other is run again, and the binary resumes it from its last
  checkpoint.  So re-running the same command completes an interrupted sweep.
* Output: each run's stdout and stderr go to `<root>/<cell>/seed<s>.log`; the
  sweep prints one line per run and ends with one table, `<root>/sweep.md` and
  `<root>/sweep.json`: every numeric field of the results files (nested keys
  dotted; lists, `config` and `provenance` left out), per cell, as the mean
  and 95% t-interval over the finished seeds.
* `--emit=slurm` writes `<root>/sweep.sbatch`, a SLURM array job with one
  task per run of the same grid (finished workdirs are skipped there too),
  instead of running anything; re-run the sweep command afterwards for the
  table.
* Bad flags, an unknown binary, config, variant or `--set` field exit 2 with
  one line before anything runs; a run that rejects its input (exit 2) stops
  the sweep with exit 2, and other failed runs make it exit 1 after the table.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import itertools
import json
import math
import os
import pathlib
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from absl import flags

from common import app

RESULT_FILES = ("results.json", "final_metrics.json")
SKIPPED_KEYS = ("config", "provenance")  # inputs and environment, not results
TABLE_MD = "sweep.md"
TABLE_JSON = "sweep.json"
SBATCH_FILE = "sweep.sbatch"
CONFIDENCE = 0.95
FLAGS = flags.FLAGS


def define_flags() -> None:
  """The binary's flags (defined by `__main__` only, so importing this module defines none)."""
  flags.DEFINE_string("binary", None, "Module of the training binary, e.g. mql.main (run as python -m).")
  flags.DEFINE_string("config", None, "Its --config: module (or file) and variant, e.g. mql.configs.default:smoke.")
  flags.DEFINE_list("seeds", ["0"], "Seeds, comma-separated; each run sets --config.<seed_field>=<seed>.")
  flags.DEFINE_multi_string(
    "set",
    [],
    "FIELD=V1,V2,...: a config field and its values (repeatable; the grid is the product; '|' splits values).",
  )
  flags.DEFINE_string("root", None, "Directory of the sweep: <root>/<cell>/seed<s> workdirs, logs and the table.")
  flags.DEFINE_integer("parallel", 1, "Runs at once (SLURM: the array's concurrency limit).")
  flags.DEFINE_enum("emit", "run", ["run", "slurm"], "run: run the grid here; slurm: write an sbatch array script.")
  flags.DEFINE_string("seed_field", "seed", "The config field that takes the seed.")
  flags.DEFINE_multi_string("extra", [], "A flag passed verbatim to every run, e.g. --extra=--jax_platforms=cpu.")


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of the grid: a cell (its overrides) and a seed."""

  cell: str
  overrides: tuple[tuple[str, str], ...]
  seed: int
  workdir: pathlib.Path

  @property
  def log(self) -> pathlib.Path:
    return self.workdir.with_name(self.workdir.name + ".log")


def parse_set(specs: Sequence[str]) -> list[tuple[str, list[str]]]:
  """`["a.b=1,2", "c=x|y,z"]` -> `[("a.b", ["1", "2"]), ("c", ["x", "y,z"])]`; ValueError for a malformed one."""
  parsed = []
  for spec in specs:
    field, sep, values = spec.partition("=")
    field = field.strip().removeprefix("--config.").removeprefix("config.")
    if not sep or not field or not values:
      raise ValueError(f"--set {spec!r}: expected FIELD=V1,V2,...")
    items = [v.strip() for v in values.split("|" if "|" in values else ",")]
    if any(not v for v in items) or len(set(items)) != len(items):
      raise ValueError(f"--set {spec!r}: values must be non-empty and distinct")
    if field in (f for f, _ in parsed):
      raise ValueError(f"--set {spec!r}: {field} is set twice")
    parsed.append((field, items))
  return parsed


def cell_name(overrides: Sequence[tuple[str, str]]) -> str:
  """A directory name for a cell: `field=value,field=value` (`default` without overrides)."""
  if not overrides:
    return "default"
  return ",".join(f"{f}={re.sub(r'[^A-Za-z0-9._+-]', '_', v)}" for f, v in overrides)


def make_grid(sets: Sequence[tuple[str, Sequence[str]]], seeds: Sequence[int], root: pathlib.Path) -> list[Run]:
  """Every (seed, cell), seed-major: each cell's first seed runs before any second seed."""
  cells = [tuple(zip([f for f, _ in sets], values)) for values in itertools.product(*[v for _, v in sets])]
  cell_dir = lambda c: root / cell_name(c) if sets else root  # no --set: <root>/seed<s>
  return [Run(cell_name(c), c, seed, cell_dir(c) / f"seed{seed}") for seed in seeds for c in cells]


def results_path(workdir: pathlib.Path) -> pathlib.Path | None:
  """The run's results file, if it finished."""
  for name in RESULT_FILES:
    if (workdir / name).is_file():
      return workdir / name
  return None


def command(run: Run, *, binary: str, config: str, seed_field: str, extra: Sequence[str] = ()) -> list[str]:
  return [
    sys.executable,
    "-m",
    binary,
    f"--config={config}",
    f"--workdir={run.workdir}",
    f"--config.{seed_field}={run.seed}",
    *(f"--config.{f}={v}" for f, v in run.overrides),
    *extra,
  ]


def numeric_fields(tree: Any, prefix: str = "") -> dict[str, float]:
  """Dotted key -> value of every number in nested dicts (not in lists; bools, `config`, `provenance` left out)."""
  out = {}
  if isinstance(tree, Mapping):
    for key, value in tree.items():
      if not prefix and key in SKIPPED_KEYS:
        continue
      out.update(numeric_fields(value, f"{prefix}{key}."))
  elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
    out[prefix[:-1]] = float(tree)
  return out


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
  """Mean and two-sided t-interval of the finite values (NaN bounds for fewer than 2)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top

  finite = [v for v in values if math.isfinite(v)]
  n = len(finite)
  mean = math.fsum(finite) / n if n else math.nan
  if n < 2:
    return {"mean": mean, "low": math.nan, "high": math.nan, "n": n, "values": list(values)}
  sd = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1))
  half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
  return {"mean": mean, "low": mean - half, "high": mean + half, "n": n, "values": list(values)}


def aggregate(grid: Sequence[Run]) -> dict[str, Any]:
  """Per cell: finished runs and the t-interval of every numeric results field."""
  cells: dict[str, dict[str, Any]] = {}
  for run in grid:
    cell = cells.setdefault(
      run.cell, {"name": run.cell, "overrides": dict(run.overrides), "seeds": [], "finished": [], "values": {}}
    )
    cell["seeds"].append(run.seed)
    path = results_path(run.workdir)
    if path is None:
      continue
    try:
      fields = numeric_fields(json.loads(path.read_text()))
    except (OSError, ValueError):
      continue
    cell["finished"].append(run.seed)
    for name, value in fields.items():
      cell["values"].setdefault(name, []).append(value)
  out = []
  for cell in cells.values():
    values = cell.pop("values")
    cell["fields"] = {name: t_interval(v) for name, v in sorted(values.items())}
    out.append(cell)
  return {"confidence": CONFIDENCE, "cells": out}


def _number(x: float) -> str:
  return "nan" if not math.isfinite(x) else f"{x:.4g}"


def markdown(table: Mapping[str, Any], title: str) -> str:
  """Fields as rows, cells as columns: `mean [low, high] (n)`."""
  cells = table["cells"]
  fields = sorted({f for c in cells for f in c["fields"]})
  level = round(100 * table["confidence"])
  lines = [
    f"# {title}",
    "",
    f"Mean [{level}% t-interval] over the finished seeds (n); nested results keys are dotted.",
    "",
    "| field | " + " | ".join(c["name"] for c in cells) + " |",
    "|---|" + "---|" * len(cells),
    "| finished seeds | " + " | ".join(f"{len(c['finished'])}/{len(c['seeds'])}" for c in cells) + " |",
  ]
  for field in fields:
    entries = []
    for c in cells:
      s = c["fields"].get(field)
      if s is None:
        entries.append("")
      elif s["n"] < 2:
        entries.append(f"{_number(s['mean'])} (n={s['n']})")
      else:
        entries.append(f"{_number(s['mean'])} [{_number(s['low'])}, {_number(s['high'])}] (n={s['n']})")
    lines.append(f"| {field} | " + " | ".join(entries) + " |")
  return "\n".join(lines) + "\n"


def write_table(root: pathlib.Path, grid: Sequence[Run], title: str, meta: Mapping[str, Any]) -> dict[str, Any]:
  table = {**meta, **aggregate(grid)}
  root.mkdir(parents=True, exist_ok=True)
  strict = json.loads(json.dumps(table), parse_constant=lambda _: None)  # NaN -> null
  (root / TABLE_JSON).write_text(json.dumps(strict, indent=1) + "\n")
  (root / TABLE_MD).write_text(markdown(table, title))
  return table


def sbatch_script(
  grid: Sequence[Run], commands: Sequence[Sequence[str]], *, root: pathlib.Path, parallel: int | None
) -> str:
  """A SLURM array job: task i runs grid[i] unless its workdir has finished."""
  limit = f"%{parallel}" if parallel else ""
  finished = " || ".join(f'[ -f "$WORKDIR/{name}" ]' for name in RESULT_FILES)
  lines = [
    "#!/bin/bash",
    f"#SBATCH --job-name=sweep-{root.name}",
    f"#SBATCH --array=0-{len(grid) - 1}{limit}",
    f"#SBATCH --output={root}/slurm-%A_%a.out",
    f"# Written by python -m common.sweep; {len(grid)} runs.  Submit: sbatch {root / SBATCH_FILE}",
    "set -euo pipefail",
    f"cd {shlex.quote(os.getcwd())}",
    'case "$SLURM_ARRAY_TASK_ID" in',
  ]
  for i, (run, cmd) in enumerate(zip(grid, commands)):
    lines.append(f"  {i}) WORKDIR={shlex.quote(str(run.workdir))}; CMD=({shlex.join(cmd)}) ;;")
  lines += [
    '  *) echo "no run $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
    "esac",
    f'if {finished}; then echo "finished: $WORKDIR"; exit 0; fi',
    'exec "${CMD[@]}"',
  ]
  return "\n".join(lines) + "\n"


def _check_flags() -> tuple[list[tuple[str, list[str]]], list[int]]:
  """Validates the flags (exit 2 with one line); returns the `--set` grid and the seeds."""
  if not FLAGS.binary:
    app.fail("--binary is required, e.g. --binary=mql.main.")
  if not FLAGS.config:
    app.fail("--config is required, e.g. --config=mql.configs.default:smoke.")
  if not FLAGS.root:
    app.fail("--root is required: the directory of the sweep's workdirs and table.")
  if FLAGS.parallel < 1:
    app.fail(f"--parallel={FLAGS.parallel}: must be >= 1.")
  try:
    spec = importlib.util.find_spec(FLAGS.binary)
  except (ImportError, ValueError) as e:
    app.fail(f"--binary={FLAGS.binary}: cannot be found ({e}).")
  if spec is None:
    app.fail(f"--binary={FLAGS.binary}: no such module.")
  try:
    seeds = [int(s) for s in FLAGS.seeds]
  except ValueError:
    app.fail(f"--seeds={','.join(FLAGS.seeds)}: seeds must be integers.")
  if not seeds or len(set(seeds)) != len(seeds):
    app.fail(f"--seeds={','.join(FLAGS.seeds)}: give one or more distinct seeds.")
  try:
    sets = parse_set(FLAGS.set)
  except ValueError as e:
    app.fail(str(e) + ".")
  _, config = app.load_config(FLAGS.config)  # exits 2 for an unknown module, file or variant
  for field in [FLAGS.seed_field, *(f for f, _ in sets)]:
    try:
      app._get(config, field)  # pylint: disable=protected-access
    except (KeyError, AttributeError):
      flag = "--seed_field" if field == FLAGS.seed_field else "--set"
      app.fail(f"{flag}: unknown config field {field!r} in --config={FLAGS.config}.")
  return sets, seeds


def main(argv: Sequence[str]) -> int:
  del argv
  sets, seeds = _check_flags()
  root = pathlib.Path(FLAGS.root).expanduser().absolute()
  grid = make_grid(sets, seeds, root)
  commands = [
    command(r, binary=FLAGS.binary, config=FLAGS.config, seed_field=FLAGS.seed_field, extra=FLAGS.extra) for r in grid
  ]
  title = f"Sweep: python -m {FLAGS.binary} --config={FLAGS.config}, seeds {', '.join(map(str, seeds))}"
  if FLAGS.emit == "slurm":
    root.mkdir(parents=True, exist_ok=True)
    path = root / SBATCH_FILE
    parallel = FLAGS.parallel if FLAGS["parallel"].present else None
    path.write_text(sbatch_script(grid, commands, root=root, parallel=parallel))
    print(f"wrote {path} ({len(grid)} runs); submit it with: sbatch {path}")
    return 0

  lock = threading.Lock()
  failed: list[tuple[Run, int]] = []
  rejected: list[str] = []
  stop = threading.Event()

  def execute(i: int) -> None:
    run, cmd = grid[i], commands[i]
    label = f"[{i + 1}/{len(grid)}] {run.cell} seed {run.seed}"
    if results_path(run.workdir) is not None:
      with lock:
        print(f"{label}: finished, skipped ({run.workdir})", flush=True)
      return
    if stop.is_set():
      return
    with lock:
      print(f"{label}: running -> {run.workdir}", flush=True)
    run.workdir.parent.mkdir(parents=True, exist_ok=True)
    with open(run.log, "w", encoding="utf-8") as log:
      rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    with lock:
      if rc == 0 and results_path(run.workdir) is not None:
        print(f"{label}: done", flush=True)
        return
      failed.append((run, rc))
      last = next((line for line in reversed(run.log.read_text().splitlines()) if line.strip()), "")
      print(f"{label}: FAILED (exit {rc}; log {run.log}): {last}", flush=True)
      if rc == app.EXIT_BAD_INPUT:
        rejected.append(last)
        stop.set()

  with concurrent.futures.ThreadPoolExecutor(max_workers=FLAGS.parallel) as pool:
    list(pool.map(execute, range(len(grid))))
  if rejected:
    print(f"error: a run rejected its input, sweep stopped: {rejected[0]}", file=sys.stderr)
    return app.EXIT_BAD_INPUT
  meta = {
    "binary": FLAGS.binary,
    "config": FLAGS.config,
    "seeds": seeds,
    "set": {f: v for f, v in sets},
    "seed_field": FLAGS.seed_field,
  }
  table = write_table(root, grid, title, meta)
  done = sum(len(c["finished"]) for c in table["cells"])
  print(f"{done}/{len(grid)} runs finished; table: {root / TABLE_MD}, {root / TABLE_JSON}")
  if failed:
    print(f"error: {len(failed)} run(s) failed; see their logs", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  define_flags()
  app.run_tool(main)
