"""What every task runner shares: the common config checks, the logs, the results files.

`load_dialogues(config, workdir)` gets a run's logs: it simulates
`data.num_dialogues` dialogues into `workdir/data/logs.jsonl` (once; reused
on resume), or reads `data.log_path` through the validating loader, and
splits them by dialogue (`selflearn.data.splits`).  `validate_common`
checks the fields of `configs/base.common_config` before anything is
simulated, read or compiled.  Runners may use the simulator (`world_of`,
the judge); the models they drive never do.
"""

from __future__ import annotations

import json
import math
import os
import pathlib

import jax
import ml_collections

from common import app, trainer
from schedulers import optimizers
from selflearn.data import logs, splits
from selflearn.sim import simulator
from selflearn.sim import world as world_lib

# May differ when a workdir is resumed: a longer budget, checkpoint cadence.
RESUMABLE_FIELDS = ("num_epochs", "checkpoint_every", "keep_checkpoints", "eval_every")


def positive_int(v) -> bool:
  """An integer >= 1 (not a bool)."""
  return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def finite_number(v) -> bool:
  """An int or float (not a bool) that is finite."""
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def sim_config(config: ml_collections.ConfigDict) -> simulator.SimConfig:
  """The simulator settings of the `data` block (raises ValueError naming a bad one)."""
  d = config.data
  return simulator.preset(
    d.preset, seed=d.sim_seed, num_users=d.num_users, error_scale=d.error_scale, max_turns=d.max_turns
  )


def world_of(config: ml_collections.ConfigDict) -> world_lib.World:
  """The simulated world the logs come from (`data.preset`, `data.sim_seed`, `data.num_users`)."""
  return world_lib.make_world_for(sim_config(config))


def require_closed_world(config: ml_collections.ConfigDict) -> None:
  """Tasks scored by the judge (`selflearn.sim.judge`) run on the closed world only, for now.

  The judge's NLU and resolver know the closed world's templates and catalogues; on the open
  world's generated catalogues, framed phrasings and personal names it would misjudge rewrites.
  """
  if config.data.preset != "closed_world":
    raise app.ConfigError(
      "data.preset",
      f"{config.data.preset!r}: this task is scored by the simulated judge, which covers the closed_world preset"
      " only (the open world's catalogues and phrasings are not in it yet)",
    )


def validate_common(config: ml_collections.ConfigDict, *, batch_unit: str = "dialogues") -> int:
  """Checks the fields every task has (`configs.base.common_config`); returns the training-split size.

  Raises `common.app.ConfigError` naming the first bad field, or ValueError
  naming a bad log row (`data.log_path` is read and validated here, before
  anything compiles).
  """
  for field in ("batch_size", "num_epochs", "eval_every", "checkpoint_every", "keep_checkpoints"):
    app.check(config, field, positive_int, "must be an integer >= 1")
  devices = jax.device_count()
  app.check(config, "batch_size", lambda v: v % devices == 0, f"must split evenly over the {devices} devices")
  app.check(
    config, "nonfinite", lambda v: v in trainer.NONFINITE_POLICIES, f"must be one of {trainer.NONFINITE_POLICIES}"
  )
  for field in ("data.max_turns", "data.max_tokens"):
    app.check(config, field, positive_int, "must be an integer >= 1")
  app.check(config, "data.max_turns", lambda v: v >= 2, "must be >= 2")
  app.check(config, "data.vocab_size", lambda v: isinstance(v, int) and v >= 10, "must be an integer >= 10")
  app.check(config, "data.split", lambda v: v in splits.SPLITS, f"must be one of {splits.SPLITS}")
  app.check(config, "data.preset", lambda v: v in simulator.PRESETS, f"must be one of {sorted(simulator.PRESETS)}")
  app.check(config, "data.train_days", positive_int, "must be an integer >= 1")
  app.check(config, "data.val_days", positive_int, "must be an integer >= 1")
  app.check(config, "data.val_fraction", lambda v: 0 < v < 0.5, "must be in (0, 0.5)")
  app.check(config, "data.test_fraction", lambda v: 0 < v < 0.5, "must be in (0, 0.5)")
  optimizers.check_optimizer_config(config, "optimizer")
  if config.data.log_path:
    path = pathlib.Path(config.data.log_path)
    if not path.is_file():
      raise app.ConfigError("data.log_path", f"no such file {path}")
    stats = logs.LoadStats()
    try:
      for _ in logs.iter_logs(path, skip_invalid=config.data.skip_invalid, stats=stats):
        pass
    except logs.LogFormatError as e:
      raise ValueError(f"bad log row {e} (set data.skip_invalid=True to skip and count such rows)") from None
    count = stats.rows - stats.skipped
  else:
    app.check(config, "data.num_dialogues", positive_int, "must be an integer >= 1")
    try:
      sim_config(config)
    except ValueError as e:
      raise app.ConfigError(f"data.{str(e).split(' ', 1)[0]}", str(e)) from None
    count = config.data.num_dialogues
  if config.data.split == "temporal":  # sizes by day are known after reading; expect uniform days over 90
    d = config.data
    train_count = int(count * min(d.train_days, 90) / 90)
    test_count = int(count * max(90 - d.train_days - d.val_days, 0) / 90)
  else:
    train_count, _, test_count = splits.split_sizes(
      count, val_fraction=config.data.val_fraction, test_fraction=config.data.test_fraction
    )
  if batch_unit == "dialogues":
    app.check(
      config,
      "batch_size",
      lambda v: v <= train_count and test_count >= 1,
      f"must be <= the {train_count} training dialogues (and the test split non-empty)",
    )
  else:
    app.check(config, "data.test_fraction", lambda v: int(count * v) >= 1, f"leaves no test dialogue of the {count}")
  return train_count


def load_dialogues(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> splits.Dialogues:
  """Simulates (once, into `workdir/data/logs.jsonl`) or reads the logs and splits them by dialogue."""
  d = config.data
  data_dir = workdir / "data"
  if d.log_path:
    path = pathlib.Path(d.log_path)
  else:
    path = data_dir / "logs.jsonl"
    if not path.exists() and jax.process_index() == 0:
      data_dir.mkdir(parents=True, exist_ok=True)
      tmp = data_dir / f".logs.{os.getpid()}.jsonl"
      print(f"simulating {d.num_dialogues} dialogues into {path}", flush=True)
      logs.write_logs(str(tmp), simulator.generate(sim_config(config), d.num_dialogues), total=d.num_dialogues)
      os.replace(tmp, path)
  return splits.read_split(
    path,
    val_fraction=d.val_fraction,
    test_fraction=d.test_fraction,
    skip_invalid=d.skip_invalid,
    split=d.split,
    train_days=d.train_days,
    val_days=d.val_days,
  )


def write_results(workdir: pathlib.Path, results: dict, markdown: str) -> None:
  """`results.json` and `results.md` in `workdir` (process 0 only)."""
  if jax.process_index() != 0:
    return
  (workdir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
  (workdir / "results.md").write_text(markdown)
