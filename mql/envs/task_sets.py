"""Train/test task sets drawn from a task seed, saved with the run as JSON.

A `TaskSet` is the array of task parameters each split holds: row i of
`train` is train task i (`state.info['task_id'] == i`).  It is a function of
the family and the task key only, never of the run seed, so runs with
different seeds meet the same tasks (MQL's `main.py` seeded NumPy with the run
seed before sampling; this fixes that) and a run's tasks can be restored
exactly from its saved JSON.
"""

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np

FORMAT_VERSION = 1
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class TaskSet:
  """Task parameters of one family.

  Attributes:
    family: the family name (a key of `mql.envs.FAMILIES`).
    train: (num_train, task_size) float32 training tasks.
    test: (num_test, task_size) float32 held-out tasks (equal to `train` for
      the two-task direction families, as in MQL and PEARL).
    task_seed: the integer seed the sets were drawn from, if known.
  """

  family: str
  train: np.ndarray
  test: np.ndarray
  task_seed: int | None = None

  def __post_init__(self):
    for split in SPLITS:
      tasks = np.asarray(getattr(self, split), np.float32)
      if tasks.ndim != 2:
        raise ValueError(f"TaskSet.{split} must be (num_tasks, task_size), got shape {tasks.shape}")
      tasks.setflags(write=False)
      object.__setattr__(self, split, tasks)
    if self.train.shape[1] != self.test.shape[1]:
      raise ValueError(f"train and test task sizes differ: {self.train.shape[1]} vs {self.test.shape[1]}")

  @property
  def task_size(self) -> int:
    return int(self.train.shape[1])

  def split(self, name: str) -> np.ndarray:
    """The tasks of split `name` ('train' or 'test')."""
    if name not in SPLITS:
      raise ValueError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
    return getattr(self, name)

  def to_dict(self) -> dict[str, Any]:
    """A JSON-serialisable dict; float32 values survive the round trip exactly."""
    return {
      "format": FORMAT_VERSION,
      "family": self.family,
      "task_seed": self.task_seed,
      "task_size": self.task_size,
      "train": self.train.astype(np.float64).tolist(),
      "test": self.test.astype(np.float64).tolist(),
    }

  @classmethod
  def from_dict(cls, data: dict[str, Any]) -> "TaskSet":
    if data.get("format") != FORMAT_VERSION:
      raise ValueError(f"unsupported task-set format {data.get('format')!r} (expected {FORMAT_VERSION})")
    size = int(data["task_size"])
    arrays = {s: np.asarray(data[s], np.float32).reshape(-1, size) for s in SPLITS}
    return cls(family=data["family"], task_seed=data["task_seed"], **arrays)

  def to_json(self) -> str:
    return json.dumps(self.to_dict())

  @classmethod
  def from_json(cls, text: str) -> "TaskSet":
    return cls.from_dict(json.loads(text))

  def save(self, path: str | os.PathLike) -> None:
    """Writes the JSON to `path` (atomically: a temporary file, then a rename)."""
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w") as f:
      f.write(self.to_json())
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str | os.PathLike) -> "TaskSet":
    with open(path) as f:
      return cls.from_json(f.read())

  def equals(self, other: "TaskSet") -> bool:
    """Same family and bitwise-equal task arrays (the seed is informational)."""
    return self.family == other.family and all(np.array_equal(self.split(s), other.split(s)) for s in SPLITS)


def task_key(key: int | jax.Array) -> tuple[jax.Array, int | None]:
  """A PRNG key from an int seed or a key, plus the int seed if one was given."""
  if isinstance(key, (int, np.integer)):
    return jax.random.PRNGKey(int(key)), int(key)
  return key, None
