"""What the `fpi` and `labels` runners share: config checks, encoded data, annotator labels.

Both tasks train the dialogue model (`selflearn.understanding`) on encoded
splits (`load_data`), by default on one simulated annotator's pass rather
than on the truth (`train_labels`, `training_labels`), and score it next to
simulated annotators (`annotator_noise` reads the config's `annotator`
block into `sim.annotators.Noise`).
"""

from __future__ import annotations

import dataclasses
import pathlib

import ml_collections

from common import app
from selflearn.signals import features, text_features
from selflearn.sim import annotators
from selflearn.tasks import base
from selflearn.understanding import dataset

TASKS = ("fpi", "labels")
TRAIN_LABELS = ("truth", "annotator")


def _reference_config(task: str) -> ml_collections.ConfigDict:
  if task == "fpi":
    from selflearn.configs import fpi as module  # pylint: disable=g-import-not-at-top
  else:
    from selflearn.configs import labels as module  # pylint: disable=g-import-not-at-top
  return module.get_config()


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Validates an `fpi` / `labels` config: the common fields, then the dialogue model's and annotators'."""
  app.check(config, "task", lambda v: v in TASKS, f"must be one of {TASKS}")
  app.check_known_fields(config, _reference_config(config.task))
  app.check(
    config, "turn_encoder", lambda v: v in text_features.TURN_ENCODERS, f"must be one of {text_features.TURN_ENCODERS}"
  )
  app.check(config, "train_labels", lambda v: v in TRAIN_LABELS, f"must be one of {TRAIN_LABELS}")
  for field in ("model.token_dim", "model.model_dim", "model.num_heads"):
    app.check(config, field, base.positive_int, "must be an integer >= 1")
  for field in ("model.token_layers", "model.num_layers"):
    app.check(config, field, lambda v: isinstance(v, int) and v >= 1, "must be an integer >= 1")
  for field in ("model.token_dim", "model.model_dim"):
    app.check(config, field, lambda v: v % config.model.num_heads == 0, "must be a multiple of model.num_heads")
  app.check(config, "model.dropout_rate", lambda v: 0 <= v < 1, "must be in [0, 1)")
  try:
    annotator_noise(config)
  except ValueError as e:
    name = str(e).split(" ", 1)[0]
    raise app.ConfigError(f"annotator.{name}" if name in config.annotator else "annotator", str(e)) from None
  base.validate_common(config)


def annotator_noise(config: ml_collections.ConfigDict) -> annotators.Noise:
  """The `annotator` block as the simulated annotators' noise model."""
  a = config.annotator
  return annotators.Noise(
    segment=a.segment, success=a.success, intent=a.intent, slot=a.slot, fpi_accuracy=dict(a.fpi_accuracy)
  )


def load_data(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dataset.Data:
  """Simulates (once) or reads the logs, splits and encodes them (`understanding.dataset.encode_splits`).

  Also measures the recurrence of the test requests in training (`Data.recurrence`).
  """
  d = config.data
  dialogues = base.load_dialogues(config, workdir)
  data = dataset.encode_splits(
    dialogues,
    vocab_size=d.vocab_size,
    max_turns=d.max_turns,
    max_tokens=d.max_tokens,
    turn_encoder=config.turn_encoder,
    cache_dir=workdir / "data",
  )
  return dataclasses.replace(data, recurrence=base.recurrence_of(dialogues))


def training_labels(config: ml_collections.ConfigDict, split: features.Dataset, *, offset: int = 0) -> dict:
  """The labels a model trains on: the truth, or one simulated annotator's pass (`train_labels`).

  `offset` gives each split its own annotator draw (seed `annotator_seed + offset`).
  """
  if config.train_labels == "truth":
    return split.labels
  noise = annotator_noise(config)
  return annotators.annotate(split.labels, split.inputs["turn_mask"], noise, config.annotator_seed + offset)
