"""Train / validation / test splits of a log: by dialogue index, or by day, in two streaming passes.

`split="dialogue"`: the last `test_fraction` of the dialogues (in log order)
is the test split, the `val_fraction` before it the validation split, the
rest the training split (`split_sizes` is the arithmetic).
`split="temporal"`: by the day a dialogue starts, counted from the UTC
midnight before the log's first dialogue (`day_of`): days `[0, train_days)`
train, `[train_days, train_days + val_days)` validation, the rest test
(`temporal_split`).

Reading never holds the log: `plan_split` is a first streaming pass that
validates every row and keeps only what the split needs (the dialogue count,
the earliest start, the skipped rows' count and first messages; for a
contract log the session ids and learned vocabularies, `contract.scan`);
`iter_routed(plan)` is a second streaming pass (parsing only: the first
validated) that yields each dialogue with its split (0 train, 1 validation, 2 test), one at a time, for an
encoder or writer to consume.  `read_split` / `read_contract_split` collect
the routed dialogues into lists (`Dialogues`) for the tasks that need them
in memory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Iterator, Optional

from selflearn.data import contract, logs, schema


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


def _part_of_day(day: int, train_days: int, val_days: int) -> int:
  return 0 if day < train_days else 1 if day < train_days + val_days else 2


def temporal_split(rows: list, *, train_days: int = 60, val_days: int = 10) -> tuple[list, list, list]:
  """(train, validation, test) rows by start day (log order kept within each)."""
  if not rows:
    return [], [], []
  origin = min(r["start_time"] for r in rows) // 86400 * 86400
  parts = ([], [], [])
  for r in rows:
    parts[_part_of_day(day_of(r, origin), train_days, val_days)].append(r)
  return parts


@dataclasses.dataclass
class SplitPlan:
  """What the first pass over a log kept: enough to route every dialogue to its split in a second pass."""

  path: os.PathLike | str
  kind: str  # "dialogues" (one simulated-format record per row) or "contract" (one turn per row)
  split: str
  count: int  # valid dialogues (contract: sessions)
  sizes: tuple[int, int, int]  # split="dialogue": (train, validation, test) counts
  origin: Optional[float]  # split="temporal": the UTC midnight before the earliest start
  train_days: int
  val_days: int
  skip_invalid: bool
  stats: logs.LoadStats
  report: dict = dataclasses.field(default_factory=dict)  # contract logs: counts and learned vocabularies
  fingerprint: tuple = ()  # (size, mtime_ns) of the file when the first pass began

  def part(self, index: int, dialogue: dict) -> int:
    """The split (0 train, 1 validation, 2 test) of the `index`-th valid dialogue."""
    if self.split == "temporal":
      return _part_of_day(day_of(dialogue, self.origin), self.train_days, self.val_days)
    return 0 if index < self.sizes[0] else 1 if index < self.sizes[0] + self.sizes[1] else 2


def plan_split(
  path: str | os.PathLike,
  *,
  val_fraction: float,
  test_fraction: float,
  skip_invalid: bool = False,
  split: str = "dialogue",
  train_days: int = 60,
  val_days: int = 10,
  kind: Optional[str] = None,
) -> SplitPlan:
  """The first pass: validates every row (raising `logs.LogFormatError`, or skipping and counting) and plans the split.

  Memory: a few numbers for a simulated-format log; the session ids and the
  vocabularies for a contract log (`kind`: `contract.detect(path)` if None).
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  kind = contract.detect(path) if kind is None else kind
  fingerprint = _fingerprint(path)
  report: dict = {}
  if kind == "contract":
    if split != "dialogue":
      raise ValueError(f"split={split!r}: a log to the minimal contract is split by session (split='dialogue')")
    scan = contract.scan(path, skip_invalid=skip_invalid)
    stats, count, origin, report = scan.stats, scan.sessions, None, scan.report()
  else:
    stats = logs.LoadStats()
    count, first = 0, math.inf
    for row in logs.iter_logs(path, skip_invalid=skip_invalid, stats=stats):
      count += 1
      first = min(first, row["start_time"])
    origin = first // 86400 * 86400 if count else None
  sizes = split_sizes(count, val_fraction=val_fraction, test_fraction=test_fraction)
  plan = SplitPlan(path, kind, split, count, sizes, origin, train_days, val_days, skip_invalid, stats, report)
  plan.fingerprint = fingerprint
  _check_unchanged(plan)
  return plan


def _fingerprint(path) -> tuple:
  st = os.stat(path)
  return st.st_size, st.st_mtime_ns


def _check_unchanged(plan: SplitPlan, seen: Optional[int] = None) -> None:
  if _fingerprint(plan.path) != plan.fingerprint or (seen is not None and seen != plan.count):
    what = "" if seen is None or seen == plan.count else f" ({plan.count} dialogues on the first pass, then {seen})"
    raise ValueError(f"{plan.path}: changed while being read{what}")


def _valid_records(plan: SplitPlan) -> Iterator[dict]:
  """The rows the first pass found valid, parsed again without re-validating (its skipped lines are skipped)."""
  skipped = set(plan.stats.skipped_lines)
  with open(plan.path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if lineno in skipped:
        continue
      d = json.loads(line)
      if lineno == 1 and schema.is_header(d):
        continue
      yield d


def iter_routed(plan: SplitPlan) -> Iterator[tuple[int, dict]]:
  """The second pass: (split, dialogue) of every valid dialogue, streaming, in log order.

  A simulated-format log's rows are parsed again but not re-validated (the
  first pass did; its skipped lines are skipped); a contract log's sessions
  are rebuilt through the validating reader.  Raises ValueError if the file
  changed since the first pass (size, modification time, dialogue count).
  """
  _check_unchanged(plan)
  if plan.kind == "contract":
    records = (contract.to_dialogue(s) for s in contract.iter_sessions(plan.path, skip_invalid=plan.skip_invalid))
  else:
    records = _valid_records(plan)
  n = 0
  for n, d in enumerate(records, 1):
    if n > plan.count:
      break
    yield plan.part(n - 1, d), d
  _check_unchanged(plan, n)


def _collect(plan: SplitPlan, *, has_truth: bool) -> Dialogues:
  if plan.stats.skipped:
    print(
      f"warning: skipped {plan.stats.skipped} invalid rows of {plan.path} (first: {plan.stats.errors[0]})", flush=True
    )
  parts: tuple[list, list, list] = ([], [], [])
  for part, d in iter_routed(plan):
    parts[part].append(d)
  return Dialogues(*parts, plan.path, plan.stats.skipped, plan.stats.errors, has_truth=has_truth, report=plan.report)


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
  plan = plan_split(
    path, val_fraction=val_fraction, test_fraction=test_fraction, skip_invalid=skip_invalid, split=split,
    train_days=train_days, val_days=val_days, kind="dialogues",
  )  # fmt: skip
  return _collect(plan, has_truth=True)


def read_contract_split(
  path: str | os.PathLike, *, val_fraction: float, test_fraction: float, skip_invalid: bool = False
) -> Dialogues:
  """A log to the minimal per-turn contract, one observed dialogue per session (`contract.to_dialogue`), split."""
  plan = plan_split(
    path, val_fraction=val_fraction, test_fraction=test_fraction, skip_invalid=skip_invalid, kind="contract"
  )
  return _collect(plan, has_truth=False)
