"""Scores of rephrase detection against the simulator's true pairs.

Pair precision / recall / F1 over (source, target) pairs, detection
precision / recall / F1 of "request k has a rephrase", pair recall per
rephrase kind and span exact match.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from selflearn.data import schema
from selflearn.evaluation import metrics
from selflearn.signals import sessions


def pair_scores(true: Sequence[Mapping[int, int]], pred: Sequence[Sequence[tuple[int, int]]]) -> dict[str, Any]:
  """Precision / recall / F1 of predicted (source, target) pairs against the true ones, summed over dialogues."""
  tp = sum(len(set(t.items()) & set(map(tuple, p))) for t, p in zip(true, pred, strict=True))
  n_pred, n_true = sum(len(set(map(tuple, p))) for p in pred), sum(len(t) for t in true)
  return {**metrics.prf(tp, n_pred, n_true), "tp": tp, "predicted": n_pred, "true": n_true}


def detection_scores(dialogues, true, pred) -> dict[str, float]:
  """P/R/F1 of "request k has a rephrase", over the request turns (and any true or predicted source)."""
  y_true, y_pred = [], []
  for d, t, p in zip(dialogues, true, pred, strict=True):
    sources = {s for s, _ in p}
    universe = {k for k, turn in enumerate(d["turns"]) if sessions.is_request(turn)} | set(t) | sources
    y_true += [k in t for k in sorted(universe)]
    y_pred += [k in sources for k in sorted(universe)]
  pc = metrics.per_class(np.array(y_true, int), np.array(y_pred, int), [1])
  return {k: float(pc[k][0]) for k in ("precision", "recall", "f1")}


def recall_by_kind(dialogues, pred) -> dict[str, float]:
  """Pair recall per rephrase kind (repeat, clearer, paraphrase, fuller)."""
  hits, counts = dict.fromkeys(schema.REPHRASE_KINDS, 0), dict.fromkeys(schema.REPHRASE_KINDS, 0)
  for d, p in zip(dialogues, pred, strict=True):
    found = set(map(tuple, p))
    for q in d["truth"]["rephrase_pairs"]:
      counts[q["kind"]] = counts.get(q["kind"], 0) + 1
      hits[q["kind"]] = hits.get(q["kind"], 0) + ((q["source_turn"], q["target_turn"]) in found)
  return {k: hits[k] / counts[k] if counts[k] else float("nan") for k in counts}


def span_exact_match(i, j, y_start, y_end) -> dict[str, float]:
  """Share of examples whose decoded span (null = (0, 0)) equals the target, overall and on true rephrases."""
  same, pos = (np.asarray(i) == y_start) & (np.asarray(j) == y_end), np.asarray(y_start) > 0
  return {
    "all": float(same.mean()) if same.size else math.nan,
    "positive": float(same[pos].mean()) if pos.any() else math.nan,
  }


def system_scores(dialogues, true, pred) -> dict[str, Any]:
  return {
    "pairs": pair_scores(true, pred),
    "detection": detection_scores(dialogues, true, pred),
    "recall_by_kind": recall_by_kind(dialogues, pred),
  }
