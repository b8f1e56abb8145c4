"""`train_and_evaluate(config, workdir)`: the `selflearn.main` binary's library.

Dispatches on `config.task` (fixed by the config file) to a task runner in
`selflearn.tasks`:

| task | runner | what | config |
|---|---|---|---|
| `fpi` | `tasks.fpi` | failure-point isolation (`understanding.fpi`) | `configs/fpi.py` |
| `labels` | `tasks.labels` | label generation (`understanding.labels`) | `configs/labels.py` |
| `rephrase` | `tasks.rephrase` | contextual rephrase detection (`rewriting.rephrase`) | `configs/rephrase.py` |
| `amc` | `tasks.amc` | absorbing-Markov-chain rewrites, win/loss (`rewriting.precomputed`) | `configs/amc.py` |
| `online` | `tasks.online` | retrieval + ranking, global / personal A/B (`rewriting.online`) | `configs/online.py` |
| `teach` | `tasks.teach` | teachable preferences (`teaching`) | `configs/teach.py` |

`fpi` and `labels` read encoded splits (`tasks.encoded.load_data`), the
other tasks the raw dialogues (`tasks.base.load_dialogues`); every runner
exposes `validate_config(config)` and `run(config, workdir, data)`.
"""

from __future__ import annotations

import importlib
import pathlib
from typing import Any

import ml_collections

from common import app
from selflearn.tasks import base, encoded

RESUMABLE_FIELDS = base.RESUMABLE_FIELDS
DEFAULT_CONFIG = str(pathlib.Path(__file__).parent / "configs" / "fpi.py")

__all__ = ["DEFAULT_CONFIG", "RESUMABLE_FIELDS", "TASKS", "train_and_evaluate", "validate_config"]

# task -> runner module; fpi and labels take the encoded `understanding.dataset.Data`, the others the raw
# `data.splits.Dialogues`.
TASKS = {
  "fpi": "selflearn.tasks.fpi",
  "labels": "selflearn.tasks.labels",
  "rephrase": "selflearn.tasks.rephrase",
  "amc": "selflearn.tasks.amc",
  "online": "selflearn.tasks.online",
  "teach": "selflearn.tasks.teach",
}


def _module(task: str):
  return importlib.import_module(TASKS[task])


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field (or ValueError naming a bad log row)."""
  app.check(config, "task", lambda v: v in TASKS, f"must be one of {tuple(TASKS)}")
  _module(config.task).validate_config(config)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs `config.task` in `workdir` (resuming it); returns the headline metrics."""
  workdir = pathlib.Path(workdir)
  module = _module(config.task)
  if config.task in encoded.TASKS:
    data = encoded.load_data(config, workdir)
  else:
    data = base.load_dialogues(config, workdir)
  return module.run(config, workdir, data)
