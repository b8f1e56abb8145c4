"""The metadata-only shortcut baseline: a gradient-boosted tree on one turn's metadata.

If a classifier that sees no text and no dialogue context (only the turn's
categorical and numeric log fields and its summary audio features,
`signals.features.CATEGORICAL` / `NUMERIC` / `audio`) matches the dialogue
model, the simulator's signals give the label away and the model's number
says nothing about the method.  Every FPI table reports this row next to
the model (scikit-learn's `HistGradientBoostingClassifier`, trained on the
same labels as the model; its own hyperparameters are the library defaults,
none tuned).  The label-generation table reports it for the turn-level
labels (goal segment, goal success, intent), which need no text model.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits


def metadata_features(inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """(features [turns, C + F + A], categorical column mask) of every real turn (`turn_mask`)."""
  mask = np.asarray(inputs["turn_mask"])
  cat = np.asarray(inputs["cat"])[mask].astype(np.float64)
  num = np.asarray(inputs["num"])[mask].astype(np.float64)
  audio = np.asarray(inputs["audio"])[mask].astype(np.float64)
  x = np.concatenate([cat, num, audio], axis=1)
  categorical = np.zeros(x.shape[1], bool)
  categorical[: cat.shape[1]] = True
  return x, categorical


def _fit(train_inputs, train_labels, seed):
  x, categorical = metadata_features(train_inputs)
  y = np.asarray(train_labels)[np.asarray(train_inputs["turn_mask"])]
  keep = y >= 0
  tree = HistGradientBoostingClassifier(categorical_features=categorical, random_state=seed)
  if len(np.unique(y[keep])) < 2:
    return None, y[keep][0] if keep.any() else 0
  # One OpenMP thread: a table of a few thousand turns gains nothing from threads, and
  # libgomp's spin-waiting makes a two-thread fit ~100x slower whenever another process
  # holds a core (measured: 420 s against 1.7 s for 600 rows on a busy 2-core machine).
  with threadpool_limits(limits=1, user_api="openmp"):
    tree.fit(x[keep], y[keep])
  return tree, None


def fit_predict(
  train_inputs: Mapping[str, np.ndarray],
  train_labels: np.ndarray,
  test_inputs: Mapping[str, np.ndarray],
  *,
  seed: int = 0,
) -> np.ndarray:
  """Class predictions for the real turns of `test_inputs` from a tree trained on `train_labels` [n, T].

  Turns labelled -1 (e.g. goal success outside a goal) are left out of training.
  """
  tree, constant = _fit(train_inputs, train_labels, seed)
  if tree is None:
    return np.full(int(np.asarray(test_inputs["turn_mask"]).sum()), constant)
  with threadpool_limits(limits=1, user_api="openmp"):
    return tree.predict(metadata_features(test_inputs)[0])


def fit_predict_proba(
  train_inputs: Mapping[str, np.ndarray],
  train_labels: np.ndarray,
  test_inputs: Mapping[str, np.ndarray],
  num_classes: int,
  *,
  seed: int = 0,
) -> np.ndarray:
  """Class probabilities [n, T, num_classes] of every test turn (padding: zeros); labels -1 left out."""
  mask = np.asarray(test_inputs["turn_mask"])
  out = np.zeros((*mask.shape, num_classes), np.float32)
  tree, constant = _fit(train_inputs, train_labels, seed)
  if tree is None:
    out[mask, int(constant)] = 1.0
    return out
  with threadpool_limits(limits=1, user_api="openmp"):
    p = tree.predict_proba(metadata_features(test_inputs)[0])
  rows = out[mask]
  rows[:, tree.classes_.astype(int)] = p
  out[mask] = rows
  return out
