"""Classification and tagging metrics: scikit-learn's where it has them, the rest here.

Conventions follow scikit-learn (it computes them): `macro_f1` averages over
the classes that occur in `y_true` or `y_pred` (unless `labels` is given), a
class with no predicted or no true examples has precision/recall 0
(`zero_division=0`).  Here: `prf` (precision / recall / F1 from counts, for
sets of pairs, spans or entries) and `span_f1` (conlleval's micro-averaged
F1 over exactly matching (slot, start, end) spans).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn import metrics as skm

from selflearn.signals import features


def _flat(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
  y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
  if y_true.shape != y_pred.shape:
    raise ValueError(f"y_true and y_pred differ in size: {y_true.shape} vs {y_pred.shape}")
  return y_true, y_pred


def accuracy(y_true, y_pred) -> float:
  """Share of equal labels (NaN for no labels)."""
  y_true, y_pred = _flat(y_true, y_pred)
  return float(skm.accuracy_score(y_true, y_pred)) if y_true.size else float("nan")


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
  """`[num_classes, num_classes]` counts: rows are true classes, columns predictions."""
  y_true, y_pred = _flat(y_true, y_pred)
  return skm.confusion_matrix(y_true, y_pred, labels=np.arange(num_classes)).astype(np.int64)


def per_class(y_true, y_pred, labels: Sequence[int]) -> dict[str, np.ndarray]:
  """Precision, recall, F1 and support of each class in `labels`."""
  y_true, y_pred = _flat(y_true, y_pred)
  if not y_true.size:
    zeros = np.zeros(len(labels))
    return {"precision": zeros, "recall": zeros.copy(), "f1": zeros.copy(), "support": np.zeros(len(labels), np.int64)}
  precision, recall, f1, support = skm.precision_recall_fscore_support(
    y_true, y_pred, labels=np.asarray(labels), average=None, zero_division=0
  )
  return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def macro_f1(y_true, y_pred, labels: Sequence[int] | None = None) -> float:
  """Unweighted mean of the per-class F1 over `labels` (default: every class seen in either array)."""
  y_true, y_pred = _flat(y_true, y_pred)
  if labels is None:
    labels = np.union1d(y_true, y_pred)
  return float(np.mean(per_class(y_true, y_pred, labels)["f1"])) if len(labels) else float("nan")


def binary_f1(y_true, y_pred, positive: int = 1) -> float:
  """F1 of the class `positive`."""
  return float(per_class(y_true, y_pred, [positive])["f1"][0])


def prf(tp: int, n_pred: int, n_true: int) -> dict[str, float]:
  """Precision, recall and F1 from counts: true positives, predictions, true items (0 where undefined)."""
  p = tp / n_pred if n_pred else 0.0
  r = tp / n_true if n_true else 0.0
  return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def span_f1(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict[str, float]:
  """Micro precision/recall/F1 over exact (slot, start, end) spans, summed over sequences."""
  tp = n_true = n_pred = 0
  for t, p in zip(true_tags, pred_tags, strict=True):
    ts, ps = features.spans(t), features.spans(p)
    tp += len(ts & ps)
    n_true += len(ts)
    n_pred += len(ps)
  return prf(tp, n_pred, n_true)
