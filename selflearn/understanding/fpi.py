"""Failure-point isolation: which pipeline stage caused a defective turn.

A turn-level classifier over {false wake, ASR, NLU, entity, result, correct}
(`features.FAILURE_POINTS`): the dialogue model (`networks`) with one
6-way head, whose inputs are the extended dialogue context (previous and
next turns through the dialogue Transformer: rephrases, barge-ins, "stop"),
the per-stage confidences (wake score, ASR confidence and n-best margin, NLU
confidence and margin, ER score, result status) and the decision traces
(NLU domain and intents, unresolved slots, the response).  The closest
published system is FPI (Khaziev et al., NAACL 2022 Industry Track): request
and context embedded by pretrained transformers plus a "mixing encoder" over
the per-module metadata.

This module holds the head (`HEADS`) and the scores: accuracy, per-class
recall ("per-class accuracy") and F1, macro-F1 (`scores`), and the model's
share of human performance (`share_of_human`).  The `fpi` task runner
(`selflearn.tasks.fpi`) trains it and compares it with simulated
annotators.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from selflearn.evaluation import metrics
from selflearn.signals import features
from selflearn.understanding import networks

CLASSES = features.FAILURE_POINTS
HEADS = (("fpi", len(CLASSES), networks.TURN),)
KEYNOTE = {"share_of_human": 0.922}  # FPI paper (NAACL 2022 Industry): 92.2% of human performance


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
  """Accuracy, macro-F1 and per-class precision / recall / F1 / support over the 6 classes."""
  labels = list(range(len(CLASSES)))
  pc = metrics.per_class(y_true, y_pred, labels)
  return {
    "accuracy": metrics.accuracy(y_true, y_pred),
    "macro_f1": metrics.macro_f1(y_true, y_pred, labels),
    "per_class": {
      c: {k: float(pc[k][i]) if k != "support" else int(pc[k][i]) for k in pc} for i, c in enumerate(CLASSES)
    },
  }


def _ratio(a: float, b: float) -> float:
  return float(a / b) if b else float("nan")


def share_of_human(model: dict, human: dict) -> dict[str, Any]:
  """Model metric / human metric: accuracy, macro-F1, each class's F1 and recall."""
  return {
    "accuracy": _ratio(model["accuracy"], human["accuracy"]),
    "macro_f1": _ratio(model["macro_f1"], human["macro_f1"]),
    "per_class_f1": {c: _ratio(model["per_class"][c]["f1"], human["per_class"][c]["f1"]) for c in CLASSES},
    "per_class_recall": {c: _ratio(model["per_class"][c]["recall"], human["per_class"][c]["recall"]) for c in CLASSES},
  }
