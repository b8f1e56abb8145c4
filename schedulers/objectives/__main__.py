"""`python -m schedulers.objectives`: the flags of `schedulers.objectives.main.run`.

The flags live here, in the program's own module, so importing the library
(`schedulers.objectives.main`) defines none (a module-level `--out` would clash
with other tools' flags of that name in one process).
"""

from absl import flags

from common import app
from schedulers.objectives import grid, main

_SETTINGS = flags.DEFINE_list("settings", list(grid.SETTINGS), f"Settings to run: {', '.join(grid.SETTINGS)}.")
_VARIANTS = flags.DEFINE_list("variants", [], "Only these variants (default: each setting's own list).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Run seeds (settings with vmapped seeds: num_seeds).")
_ROOT = flags.DEFINE_string("root", "runs/objectives", "Directory of the cells' workdirs.")
_OUT = flags.DEFINE_string("out", "schedulers/objectives/results", "Where results.md and results.json go.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only tabulate the finished cells; run nothing.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands of the unfinished cells; run nothing.")


def _main(argv: list[str]) -> None:
  del argv
  unknown = [s for s in _SETTINGS.value if s not in grid.SETTINGS]
  if unknown:
    app.fail(f"--settings: unknown {unknown}; valid: {', '.join(grid.SETTINGS)}")
  bad = [v for v in _VARIANTS.value if v not in grid.VARIANTS]
  if bad:
    app.fail(f"--variants: unknown {bad}; valid: {', '.join(grid.VARIANTS)}")
  try:
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError:
    app.fail(f"--seeds: integers, got {_SEEDS.value}")
  main.run(
    _SETTINGS.value,
    _VARIANTS.value,
    seeds,
    _ROOT.value,
    _OUT.value,
    report_only=_REPORT_ONLY.value,
    dry_run=_DRY_RUN.value,
  )


app.run_tool(_main)
