"""`train_and_evaluate(config, workdir)`: the `selflearn.main` binary's library.

Dispatches on `config.task` (fixed by the config file):

| task | module | config |
|---|---|---|
| `fpi` | `selflearn.fpi`: failure-point isolation | `configs/fpi.py` |
| `labels` | `selflearn.labels`: label generation | `configs/labels.py` |
| `rephrase` | `selflearn.rephrase`: contextual rephrase detection | `configs/rephrase.py` |
| `amc` | `selflearn.precomputed`: absorbing-Markov-chain rewrites, win/loss | `configs/amc.py` |
| `online` | `selflearn.online`: retrieval + ranking rewrites, global / personal A/B | `configs/online.py` |
| `teach` | `selflearn.teaching`: teachable preferences | `configs/teach.py` |

`fpi` and `labels` share `selflearn.training`'s encoded data and dialogue
model; the other tasks read the raw dialogues (`training.load_dialogues`)
and reuse its resumable `fit` stage.  Every task module exposes
`validate_config(config)` and `run(config, workdir, ...)`.
"""

from __future__ import annotations

import importlib
import pathlib
from typing import Any

import ml_collections

from common import app
from selflearn.training import DEFAULT_CONFIG, RESUMABLE_FIELDS, load_data, load_dialogues

__all__ = ["DEFAULT_CONFIG", "RESUMABLE_FIELDS", "TASKS", "train_and_evaluate", "validate_config"]

# task -> module; fpi and labels take the encoded `training.Data`, the others the raw `training.Dialogues`.
TASKS = {
  "fpi": "selflearn.fpi",
  "labels": "selflearn.labels",
  "rephrase": "selflearn.rephrase",
  "amc": "selflearn.precomputed",
  "online": "selflearn.online",
  "teach": "selflearn.teaching",
}
_ENCODED = ("fpi", "labels")


def _module(task: str):
  return importlib.import_module(TASKS[task])


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field (or ValueError naming a bad log row)."""
  app.check(config, "task", lambda v: v in TASKS, f"must be one of {tuple(TASKS)}")
  if config.task in _ENCODED:
    from selflearn import training  # pylint: disable=g-import-not-at-top

    training.validate_config(config)
  else:
    _module(config.task).validate_config(config)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs `config.task` in `workdir` (resuming it); returns the headline metrics."""
  workdir = pathlib.Path(workdir)
  module = _module(config.task)
  data = load_data(config, workdir) if config.task in _ENCODED else load_dialogues(config, workdir)
  return module.run(config, workdir, data)
