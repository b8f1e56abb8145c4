"""Classification and tagging metrics (NumPy; checked against scikit-learn in the tests).

Conventions follow scikit-learn: `macro_f1` averages over the classes that
occur in `y_true` or `y_pred` (unless `labels` is given), a class with no
predicted or no true examples has precision/recall 0 (`zero_division=0`).
`span_f1` is conlleval's micro-averaged F1 over exactly matching
(slot, start, end) spans.  `bootstrap_rates` is the paired dialogue-level
bootstrap the A/B evaluations (online rewriting, teachable preferences) share.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from selflearn import features


def _flat(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
  y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
  if y_true.shape != y_pred.shape:
    raise ValueError(f"y_true and y_pred differ in size: {y_true.shape} vs {y_pred.shape}")
  return y_true, y_pred


def accuracy(y_true, y_pred) -> float:
  y_true, y_pred = _flat(y_true, y_pred)
  return float(np.mean(y_true == y_pred)) if y_true.size else float("nan")


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
  """`[num_classes, num_classes]` counts: rows are true classes, columns predictions."""
  y_true, y_pred = _flat(y_true, y_pred)
  m = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(m, (y_true, y_pred), 1)
  return m


def per_class(y_true, y_pred, labels: Sequence[int]) -> dict[str, np.ndarray]:
  """Precision, recall, F1 and support of each class in `labels`."""
  y_true, y_pred = _flat(y_true, y_pred)
  labels = np.asarray(labels)
  tp = np.array([np.sum((y_true == c) & (y_pred == c)) for c in labels], np.float64)
  pred = np.array([np.sum(y_pred == c) for c in labels], np.float64)
  true = np.array([np.sum(y_true == c) for c in labels], np.float64)
  precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
  recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
  denom = precision + recall
  f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
  return {"precision": precision, "recall": recall, "f1": f1, "support": true.astype(np.int64)}


def macro_f1(y_true, y_pred, labels: Sequence[int] | None = None) -> float:
  y_true, y_pred = _flat(y_true, y_pred)
  if labels is None:
    labels = np.union1d(y_true, y_pred)
  return float(np.mean(per_class(y_true, y_pred, labels)["f1"])) if len(labels) else float("nan")


def binary_f1(y_true, y_pred, positive: int = 1) -> float:
  return float(per_class(y_true, y_pred, [positive])["f1"][0])


def span_f1(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict[str, float]:
  """Micro precision/recall/F1 over exact (slot, start, end) spans, summed over sequences."""
  tp = n_true = n_pred = 0
  for t, p in zip(true_tags, pred_tags, strict=True):
    ts, ps = features.spans(t), features.spans(p)
    tp += len(ts & ps)
    n_true += len(ts)
    n_pred += len(ps)
  precision = tp / n_pred if n_pred else 0.0
  recall = tp / n_true if n_true else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"precision": precision, "recall": recall, "f1": f1}


def majority(votes: np.ndarray) -> np.ndarray:
  """Element-wise majority over the leading axis of `[k, ...]` int labels (ties: the first voter's label)."""
  votes = np.asarray(votes)
  k = votes.shape[0]
  counts = np.stack([(votes == votes[i]).sum(axis=0) for i in range(k)])  # [k, ...] support of each voter's label
  best = np.argmax(counts, axis=0)  # first voter among the most supported
  return np.take_along_axis(votes, best[None], axis=0)[0]


def bootstrap_rates(
  groups, flags: Sequence[np.ndarray], *, num_groups: int, samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Per-turn rates of each flag array and their paired bootstrap, resampling groups (dialogues).

  `groups[i]` in [0, num_groups) is turn i's dialogue.  Every arm uses the
  same resample of dialogues (paired).  Returns `(rates [k], resampled
  [samples, k])`: the rate of each flag over all turns, and over the turns of
  each resample.
  """
  groups = np.asarray(groups)
  n = np.bincount(groups, minlength=num_groups).astype(np.float64)
  sums = np.stack(
    [np.bincount(groups, weights=np.asarray(f, np.float64), minlength=num_groups) for f in flags], axis=-1
  )
  rng = np.random.default_rng(seed)
  draws = (rng.integers(0, num_groups, num_groups) for _ in range(samples))
  counts = np.stack([np.bincount(d, minlength=num_groups) for d in draws]).astype(np.float64)
  resampled = (counts @ sums) / np.maximum(counts @ n, 1.0)[:, None]
  return sums.sum(0) / max(n.sum(), 1.0), resampled
