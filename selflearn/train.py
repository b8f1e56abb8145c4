"""`train_and_evaluate(config, workdir)`: the `selflearn.main` binary's library.

Dispatches on `config.task` to failure-point isolation (`selflearn.fpi`) or
label generation (`selflearn.labels`); both share `selflearn.training` (data,
networks, the resumable fit).
"""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections

from selflearn import fpi, labels
from selflearn.training import DEFAULT_CONFIG, RESUMABLE_FIELDS, load_data, validate_config

__all__ = ["DEFAULT_CONFIG", "RESUMABLE_FIELDS", "load_data", "train_and_evaluate", "validate_config"]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs `config.task` in `workdir` (resuming it); returns the headline metrics."""
  workdir = pathlib.Path(workdir)
  data = load_data(config, workdir)
  run = fpi.run if config.task == "fpi" else labels.run
  return run(config, workdir, data)
