"""Train / validation / test splits of a log: by dialogue index, or by day.

`split="dialogue"`: the last `test_fraction` of the dialogues (in log order)
is the test split, the `val_fraction` before it the validation split, the
rest the training split (`split_sizes` is the arithmetic).
`split="temporal"`: by the day a dialogue starts, counted from the UTC
midnight before the log's first dialogue (`day_of`): days `[0, train_days)`
train, `[train_days, train_days + val_days)` validation, the rest test
(`temporal_split`).  `read_split` reads a log through the validating loader
(`selflearn.data.logs`) and cuts it.
"""

from __future__ import annotations

import dataclasses
import os

from selflearn.data import contract, logs


@dataclasses.dataclass
class Dialogues:
  """The raw log rows of one run, split by dialogue (train / validation / test), plus their source."""

  train: list
  val: list
  test: list
  log_path: os.PathLike | str
  skipped: int
  skipped_errors: list
  has_truth: bool = True  # False for a log to the minimal contract (`data.contract`)
  report: dict = dataclasses.field(default_factory=dict)  # what the reader saw (contract logs: counts, vocabularies)


def split_sizes(n: int, *, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
  """(train, validation, test) dialogue counts of an `n`-dialogue log."""
  n_val, n_test = int(n * val_fraction), int(n * test_fraction)
  return n - n_val - n_test, n_val, n_test


SPLITS = ("dialogue", "temporal")


def day_of(dialogue: dict, origin: float) -> int:
  """Whole days between `origin` (unix seconds) and the dialogue's start."""
  return int((dialogue["start_time"] - origin) // 86400)


def temporal_split(rows: list, *, train_days: int = 60, val_days: int = 10) -> tuple[list, list, list]:
  """(train, validation, test) rows by start day (log order kept within each)."""
  if not rows:
    return [], [], []
  origin = min(r["start_time"] for r in rows) // 86400 * 86400
  parts = ([], [], [])
  for r in rows:
    day = day_of(r, origin)
    parts[0 if day < train_days else 1 if day < train_days + val_days else 2].append(r)
  return parts


def read_split(
  path: str | os.PathLike,
  *,
  val_fraction: float,
  test_fraction: float,
  skip_invalid: bool = False,
  split: str = "dialogue",
  train_days: int = 60,
  val_days: int = 10,
) -> Dialogues:
  """Reads and validates the log at `path` (skipping and counting bad rows if `skip_invalid`) and splits it."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  rows, stats = logs.load_logs(path, skip_invalid=skip_invalid)
  if stats.skipped:
    print(f"warning: skipped {stats.skipped} invalid rows of {path} (first: {stats.errors[0]})", flush=True)
  if split == "temporal":
    train, val, test = temporal_split(rows, train_days=train_days, val_days=val_days)
    return Dialogues(train, val, test, path, stats.skipped, stats.errors)
  n_train, n_val, _ = split_sizes(len(rows), val_fraction=val_fraction, test_fraction=test_fraction)
  cut = n_train + n_val
  return Dialogues(rows[:n_train], rows[n_train:cut], rows[cut:], path, stats.skipped, stats.errors)


def read_contract_split(
  path: str | os.PathLike, *, val_fraction: float, test_fraction: float, skip_invalid: bool = False
) -> Dialogues:
  """A log to the minimal per-turn contract, one observed dialogue per session (`contract.to_dialogue`), split."""
  scan = contract.scan(path, skip_invalid=skip_invalid)  # the learned vocabularies and counts, for the report
  stats = logs.LoadStats()
  rows = [contract.to_dialogue(s) for s in contract.iter_sessions(path, skip_invalid=skip_invalid, stats=stats)]
  if stats.skipped:
    print(f"warning: skipped {stats.skipped} invalid rows of {path} (first: {stats.errors[0]})", flush=True)
  n_train, n_val, _ = split_sizes(len(rows), val_fraction=val_fraction, test_fraction=test_fraction)
  cut = n_train + n_val
  return Dialogues(
    rows[:n_train], rows[n_train:cut], rows[cut:], path, stats.skipped, stats.errors, has_truth=False,
    report=scan.report(),
  )  # fmt: skip
