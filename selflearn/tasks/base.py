"""What every task runner shares: the common config checks, the logs, the results files.

`load_dialogues(config, workdir)` gets a run's logs: it simulates
`data.num_dialogues` dialogues into `workdir/data/logs.jsonl` (once; reused
on resume), or reads `data.log_path` through the validating loader, and
splits them by dialogue (`selflearn.data.splits`).  `data.log_path` may be
a simulated log (one dialogue per row, `data.schema`) or a log to the
minimal per-turn contract (`data.contract`, JSONL or Parquet: no ground
truth; a session is a dialogue); `validate_common` reads it once before any
work and refuses, naming the fields, a task that needs labels the log
cannot hold (`NEEDS_TRUTH`), an empty or all-skipped log, and, for the
tasks that judge with the simulator (`JUDGED_TASKS`), a simulated log whose
header (`data.schema.HEADER`) names another simulator seed or config than
the config's world, or that has no header (the judge would score it against
another world; a real log to the minimal contract runs without a judge).  `validate_common`
checks the fields of `configs/base.common_config` before anything is
simulated, read or compiled.  Runners may use the simulator (`world_of`,
the judge); the models they drive never do.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib

import jax
import ml_collections

from common import app, trainer
from schedulers import optimizers
from selflearn.data import contract, logs, schema, splits
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


# What each task needs from a simulated log that the minimal contract does not hold (`needs_truth`).
NEEDS_TRUTH = {
  "fpi": "truth.failure_point and truth.stage_errors (failure-point labels) and the simulated annotators",
  "labels": "truth.segment, truth.goal_id, truth.intent, truth.tags, truth.values and truth.goals (label targets)",
  "rephrase": "truth.rephrase_pairs (the detector's training labels)",
  "teach": "the simulator's teaching turns and their truth (extractor labels, judged replay)",
}


def needs_truth(config: ml_collections.ConfigDict) -> str | None:
  """What `config` needs that a log without ground truth lacks (None: it runs on the minimal contract)."""
  if config.task in NEEDS_TRUTH:
    return NEEDS_TRUTH[config.task]
  if config.get("pairs_source") == "truth":
    return "truth.rephrase_pairs (pairs_source='truth'; use pairs_source='gap')"
  if config.get("pairs_source") == "detector":
    return "truth.rephrase_pairs (the rephrase detector's training labels, pairs_source='detector'; use 'gap')"
  if config.task == "online" and config.get("compare_detector"):
    return "truth.rephrase_pairs (compare_detector=True trains the rephrase detector; set compare_detector=False)"
  if config.task == "amc" and config.get("states") == "interpretation":
    return "the simulator's NLU reading of each text (states='interpretation'; use states='text')"
  if config.task == "online" and config.get("upper_bound"):
    return "truth.rephrase_pairs (upper_bound=True runs pairs_source='truth'; set upper_bound=False)"
  return None


# Tasks that judge with the simulated world (`world_of`): their simulated log must come from the config's world.
JUDGED_TASKS = ("amc", "online", "teach")


# The config field behind each SimConfig field a run sets (`sim_config`); any other field comes with data.preset.
_SIM_FIELDS = {"seed": "data.sim_seed", "num_users": "data.num_users", "error_scale": "data.error_scale",
               "max_turns": "data.max_turns"}  # fmt: skip


def _check_simulated_log(config: ml_collections.ConfigDict, path: pathlib.Path) -> None:
  """A judged task's simulated log must name the config's world in its header (seed and config hash)."""
  try:
    header = logs.read_header(path)
  except logs.LogFormatError as e:
    raise ValueError(f"bad log header {e}") from None
  if header is None:
    raise app.ConfigError(
      "data.log_path",
      f"{path} has no simulator header (its first line): task {config.task!r} judges with the simulated world, and"
      " only a log's header says which world it came from; write simulated logs with python -m selflearn.simulate,"
      " or give a real log to the minimal contract (it runs without a judge)",
    )
  ours = sim_config(config)
  ours_dict = dataclasses.asdict(ours)
  ours_hash = schema.config_hash(ours_dict)
  if header["sim_seed"] == ours.seed and header["sim_config_hash"] == ours_hash:
    return
  theirs = header["sim_config"]
  diff = sorted(
    (k for k in set(theirs) | set(ours_dict) if theirs.get(k) != ours_dict.get(k)), key=lambda k: (k != "seed", k)
  )
  field = "data.sim_seed" if "seed" in diff else next((_SIM_FIELDS[k] for k in diff if k in _SIM_FIELDS), "data.preset")
  shown = ", ".join(f"{k}: log {theirs.get(k)!r} vs config {ours_dict.get(k)!r}" for k in diff[:4])
  raise app.ConfigError(
    field,
    f"{path}: its header names simulator seed {header['sim_seed']} and config {header['sim_config_hash']}, but the"
    f" config's world (data.preset, data.sim_seed, ...) is seed {ours.seed} and config {ours_hash} ({shown}): the"
    " judge would score the log against another world",
  )


def _scan_dialogue_log(config: ml_collections.ConfigDict, path: pathlib.Path) -> logs.LoadStats:
  stats = logs.LoadStats()
  try:
    for _ in logs.iter_logs(path, skip_invalid=config.data.skip_invalid, stats=stats):
      pass
  except logs.LogFormatError as e:
    raise ValueError(f"bad log row {e} (set data.skip_invalid=True to skip and count such rows)") from None
  if stats.rows > stats.skipped and config.task in JUDGED_TASKS:
    _check_simulated_log(config, path)
  return stats


def _empty_log(path, stats: logs.LoadStats) -> ValueError:
  first = f"; first: {stats.errors[0]}" if stats.errors else ""
  what = "is empty" if not stats.rows else f"has no valid row ({stats.rows} read, {stats.skipped} skipped{first})"
  return ValueError(f"data.log_path: {path} {what}")


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
    if contract.detect(path) == "contract":
      need = needs_truth(config)
      if need is not None:
        raise ValueError(
          f"data.log_path: {path} is a log to the minimal contract (no ground truth); task {config.task!r} needs {need}"
        )
      try:
        scan = contract.scan(path, skip_invalid=config.data.skip_invalid)
      except logs.LogFormatError as e:
        raise ValueError(f"bad log row {e} (set data.skip_invalid=True to skip and count such rows)") from None
      if not scan.sessions:
        raise _empty_log(path, scan.stats)
      count = scan.sessions
    else:
      stats = _scan_dialogue_log(config, path)
      count = stats.rows - stats.skipped
      if not count:
        raise _empty_log(path, stats)
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
    if contract.detect(path) == "contract":
      return splits.read_contract_split(
        path, val_fraction=d.val_fraction, test_fraction=d.test_fraction, skip_invalid=d.skip_invalid
      )
  else:
    path = data_dir / "logs.jsonl"
    if not path.exists() and jax.process_index() == 0:
      data_dir.mkdir(parents=True, exist_ok=True)
      tmp = data_dir / f".logs.{os.getpid()}.jsonl"
      print(f"simulating {d.num_dialogues} dialogues into {path}", flush=True)
      sc = sim_config(config)
      dialogues = simulator.generate(sc, d.num_dialogues)
      logs.write_logs(str(tmp), dialogues, total=d.num_dialogues, header=simulator.header(sc))
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


def recurrence_of(dialogues: splits.Dialogues) -> dict:
  """The share of test requests whose exact true / ASR text occurs in training (`evaluation.recurrence`)."""
  from selflearn.evaluation import recurrence  # pylint: disable=g-import-not-at-top

  return recurrence.recurrence(dialogues.train, dialogues.test)


def write_results(workdir: pathlib.Path, results: dict, markdown: str) -> None:
  """`results.json` and `results.md` in `workdir` (process 0 only)."""
  if jax.process_index() != 0:
    return
  (workdir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
  (workdir / "results.md").write_text(markdown)
