"""The GreedyLR benchmark study binary.

  python -m schedulers.study --config=schedulers.study.configs.default[:smoke] --workdir=DIR

Runs every (task, optimizer, arm) cell that is not yet in `DIR/cells/`
(a killed study resumes without redoing finished cells), then writes
`DIR/results.json`, `DIR/report.md` and `DIR/plots/*.png`.
"""

from __future__ import annotations

import ml_collections

from common import app
from schedulers.study import arms as arms_lib
from schedulers.study import outputs as study_outputs
from schedulers.study import report as study_report
from schedulers.study import runner as study_runner
from schedulers.study import tasks as tasks_lib
from schedulers.study.configs import default as study_config

# Changing these on a re-run adds cells or re-analyses the saved ones; every
# other field (grids, seeds, task sizes) defines what a saved cell means.
RESUMABLE_FIELDS = (
  "tasks",
  "optimizers",
  "arms",
  "delta_rel",
  "delta_k_std",
  "sensitivity_delta_rels",
  "absolute_margin",
  "confidence",
)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field."""
  app.check_known_fields(config, study_config.get_config())
  app.check(
    config,
    "tasks",
    lambda v: len(v) > 0 and set(v) <= set(tasks_lib.TASK_NAMES),
    f"must be a non-empty subset of {tasks_lib.TASK_NAMES}",
  )
  app.check(config, "size", lambda v: v in tasks_lib.SIZES, f"must be one of {tasks_lib.SIZES}")
  app.check(
    config,
    "optimizers",
    lambda v: len(v) > 0 and set(v) <= set(arms_lib.OPTIMIZERS),
    f"must be a non-empty subset of {arms_lib.OPTIMIZERS}",
  )
  known = {name for opt in arms_lib.OPTIMIZERS for name in arms_lib.arm_names(opt)}
  app.check(config, "arms", lambda v: set(v) <= known, f"must be a subset of {sorted(known)}")
  for opt in config.optimizers:
    app.check(
      config,
      f"lr_grid.{opt}",
      lambda v: len(v) > 0 and all(x > 0 for x in v),
      "must be a non-empty tuple of positive learning rates",
    )
  seeds_ok = lambda v: len(v) >= 2 and len(set(v)) == len(v)
  app.check(config, "eval_seeds", seeds_ok, "needs >= 2 distinct seeds (paired statistics)")
  app.check(config, "char_lm_eval_seeds", seeds_ok, "needs >= 2 distinct seeds (paired statistics)")
  app.check(
    config,
    "tuning_seeds",
    lambda v: len(v) >= 1 and not set(v) & set(config.eval_seeds) and not set(v) & set(config.char_lm_eval_seeds),
    "must be non-empty and disjoint from the evaluation seeds",
  )
  app.check(config, "pairs_per_call", lambda v: isinstance(v, int) and v >= 1, "must be an integer >= 1")
  app.check(config, "char_lm_pairs_per_call", lambda v: isinstance(v, int) and v >= 1, "must be an integer >= 1")
  app.check(config, "delta_rel", lambda v: v >= 0, "must be >= 0")
  app.check(config, "delta_k_std", lambda v: v >= 0, "must be >= 0")
  app.check(config, "sensitivity_delta_rels", lambda v: all(x >= 0 for x in v), "must be >= 0")
  app.check(config, "absolute_margin", lambda v: v >= 0, "must be >= 0")
  app.check(config, "confidence", lambda v: 0.5 < v < 1, "must be in (0.5, 1)")


def run_and_report(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the missing cells, then analyses all of them; returns the headline."""
  records = []
  for task in config.tasks:
    char_lm = task == "char_lm"
    eval_seeds = config.char_lm_eval_seeds if char_lm else config.eval_seeds
    protocol = study_runner.Protocol(
      lr_grids={opt: tuple(config.lr_grid[opt]) for opt in config.optimizers},
      tuning_seeds=tuple(config.tuning_seeds),
      eval_seeds=tuple(eval_seeds),
      batch=config.char_lm_pairs_per_call if char_lm else config.pairs_per_call,
    )
    records += study_runner.run_study(
      task_names=(task,),
      optimizers=tuple(config.optimizers),
      arm_names=tuple(config.arms) or None,
      protocol=protocol,
      size=config.size,
      workdir=workdir,
    )
  analysis = study_report.analyze(
    records,
    delta_rel=config.delta_rel,
    k_std=config.delta_k_std,
    sensitivity_delta_rels=tuple(config.sensitivity_delta_rels),
    absolute_margin=config.absolute_margin,
    confidence=config.confidence,
  )
  paths = study_outputs.write_outputs(analysis, records, workdir)
  print(f"study outputs in {workdir}: " + ", ".join(str(p) for p in paths))
  return analysis["headline"]


def main() -> None:
  app.run(run_and_report, validate=validate_config, default_config=study_config.__file__, resumable=RESUMABLE_FIELDS)


if __name__ == "__main__":
  main()
