"""Cross-fitted rephrase-detector pairs: what `pairs_source="detector"` feeds the AMC chain and online mining.

The training split is cut into `folds` folds (dialogue `i` in fold
`i % folds`); fold `k`'s dialogues are labelled by a detector trained on the
other folds only (validated on the validation split), so no dialogue's pairs
come from a detector that saw its labels.  The validation and test splits
are labelled by fold 0's detector, which never saw them either.
`cross_fit` is the bookkeeping (any `fit` / `predict`); `detected_pairs`
runs it with the span model of `detector` under a rephrase config built from
the task's `detector` block.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable, Sequence

import ml_collections

from selflearn.data import splits
from selflearn.data import truth as truth_lib
from selflearn.rewriting.rephrase import detector as detector_lib
from selflearn.rewriting.rephrase import scores

Pairs = list[list[tuple[int, int]]]


def fold_of(index: int, folds: int) -> int:
  """The fold of training dialogue `index`."""
  return index % folds


def cross_fit(
  dialogues: splits.Dialogues,
  fit: Callable[[int, list], Any],
  predict: Callable[[Any, Sequence], Pairs],
  *,
  folds: int,
) -> dict[str, Pairs]:
  """{"train", "val", "test"}: per dialogue, the pairs of a detector that never trained on that dialogue.

  `fit(k, train_dialogues)` trains fold `k`'s detector on the other folds;
  `predict(model, dialogues)` gives per-dialogue pairs.
  """
  if folds < 2:
    raise ValueError(f"folds must be >= 2, got {folds}")
  train = dialogues.train
  if len(train) < folds:
    raise ValueError(f"{len(train)} training dialogues cannot make {folds} folds")
  out: Pairs = [[] for _ in train]
  first = None
  for k in range(folds):
    held = [i for i in range(len(train)) if fold_of(i, folds) == k]
    model = fit(k, [d for i, d in enumerate(train) if fold_of(i, folds) != k])
    for i, p in zip(held, predict(model, [train[i] for i in held])):
      out[i] = list(p)
    first = model if k == 0 else first
  return {"train": out, "val": predict(first, dialogues.val), "test": predict(first, dialogues.test)}


def detector_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The rephrase config the task's detectors train with: `configs/rephrase.py:<detector.variant>`, task data."""
  from selflearn.configs import rephrase as rephrase_config  # pylint: disable=g-import-not-at-top

  c = rephrase_config.get_config(config.detector.variant)
  c.data = ml_collections.ConfigDict(config.data.to_dict())
  c.seed = config.seed
  c.baseline = False
  c.num_epochs = config.detector.num_epochs
  return c


def detected_pairs(config: ml_collections.ConfigDict, workdir: pathlib.Path, dialogues: splits.Dialogues) -> dict:
  """Cross-fitted span-model pairs of every split, and their pair scores against the truth on each split.

  Each fold's detector trains (resuming) in `workdir/detector_fold<k>/`.
  """
  dc = detector_config(config)
  workdir = pathlib.Path(workdir)

  def fit(k, train):
    sub = dataclasses.replace(dialogues, train=train)
    return detector_lib.train_detector(dc, workdir / f"detector_fold{k}", sub)

  pairs = cross_fit(dialogues, fit, detector_lib.predict_pairs, folds=config.detector.folds)
  quality = {}
  if dialogues.has_truth:
    for name in ("train", "val", "test"):
      split = getattr(dialogues, name)
      true = [truth_lib.true_pairs(d) for d in split]
      quality[name] = {
        "detector": scores.pair_scores(true, pairs[name]),
        "gap": scores.pair_scores(true, detector_lib.heuristic_pairs(split)),
      }
  return {"pairs": pairs, "scores": quality, "folds": config.detector.folds, "variant": config.detector.variant}
