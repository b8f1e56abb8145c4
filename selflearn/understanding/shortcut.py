"""The metadata-only shortcut baseline: a gradient-boosted tree on one turn's metadata.

If a classifier that sees no text and no dialogue context (only the turn's
categorical and numeric log fields and its summary audio features,
`signals.features.CATEGORICAL` / `NUMERIC` / `audio`) matches the dialogue
model, the simulator's signals give the label away and the model's number
says nothing about the method.  Every FPI table reports this row next to
the model (scikit-learn's `HistGradientBoostingClassifier`, trained on the
same labels as the model; its own hyperparameters are the library defaults,
none tuned).
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


def fit_predict(
  train_inputs: Mapping[str, np.ndarray],
  train_labels: np.ndarray,
  test_inputs: Mapping[str, np.ndarray],
  *,
  seed: int = 0,
) -> np.ndarray:
  """Class predictions for the real turns of `test_inputs` from a tree trained on `train_labels` [n, T]."""
  x, categorical = metadata_features(train_inputs)
  y = np.asarray(train_labels)[np.asarray(train_inputs["turn_mask"])]
  if len(np.unique(y)) < 2:
    return np.full(int(np.asarray(test_inputs["turn_mask"]).sum()), y[0] if len(y) else 0)
  tree = HistGradientBoostingClassifier(categorical_features=categorical, random_state=seed)
  # One OpenMP thread: a table of a few thousand turns gains nothing from threads, and
  # libgomp's spin-waiting makes a two-thread fit ~100x slower whenever another process
  # holds a core (measured: 420 s against 1.7 s for 600 rows on a busy 2-core machine).
  with threadpool_limits(limits=1, user_api="openmp"):
    tree.fit(x, y)
    return tree.predict(metadata_features(test_inputs)[0])
