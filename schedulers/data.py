"""Offline datasets for the schedulers binary (scikit-learn's bundled digits).

scikit-learn is imported when data is loaded, not with the module: it is a third
of the binaries' start-up, which `--help` and the exit-2 checks of a bad config
do not need.
"""

from __future__ import annotations

import numpy as np


def stratified_split(x, y, *, val_fraction: float, test_fraction: float, seed: int):
  """Splits arrays into stratified train/val/test dicts of `x` and `y`."""
  from sklearn import model_selection

  x_rest, x_test, y_rest, y_test = model_selection.train_test_split(
    x, y, test_size=test_fraction, stratify=y, random_state=seed
  )
  x_train, x_val, y_train, y_val = model_selection.train_test_split(
    x_rest, y_rest, test_size=val_fraction / (1.0 - test_fraction), stratify=y_rest, random_state=seed
  )
  return (
    {"x": x_train, "y": y_train},
    {"x": x_val, "y": y_val},
    {"x": x_test, "y": y_test},
  )


def load_digits(*, val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0):
  """The 1,797 8x8 digits, pixels scaled to [0, 1], split 60/20/20 by default.

  Shipped inside the scikit-learn wheel: nothing is downloaded.
  """
  from sklearn import datasets as sk_datasets

  digits = sk_datasets.load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  y = digits.target.astype(np.int32)
  return stratified_split(x, y, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
