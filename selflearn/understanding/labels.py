"""The label-generation model: synthetic labels (goals, success, intent, slots, values) from dialogue logs.

Following the keynote's description (and the closest papers: RoBERTaIQ,
Gupta et al. 2021; joint goal segmentation and success, Wang et al., COLING
2022; contrastive satisfaction pretraining, Kachuee et al., NAACL 2021), the
model (`networks.DialogueModel`) encodes each turn (utterance, response,
categorical and numerical features, optional audio features) and runs a
dialogue-level Transformer over the turns.  Training has two stages:

1. **self-supervised pretraining** (`workdir/<variant>_pretrain`): responses
   swapped in from other dialogues are synthetic defects; a turn head
   predicts swapped vs original (`losses.swap_responses`);
2. **multi-task supervised training** (`workdir/<variant>`), from the
   pretrained weights: goal segmentation (B/I/O per turn), goal success (per
   turn, averaged over the goal's turns), intent, slot tagging (BIO per
   recognised word) and slot values (the canonical entity per slot word).

The baseline is the same recipe without dialogue context (each turn
encoded alone), as the keynote's non-contextual RoBERTa baseline.  This
module holds the heads, the decoding of label arrays (`model_labels`) and
their scores (`label_scores`, `confident_success`); the `labels` task
runner (`selflearn.tasks.labels`) trains the model and scores it against the
truth and a three-annotator majority, next to a simulated single-pass
annotator, as the keynote does.
"""

from __future__ import annotations

import numpy as np

from selflearn.evaluation import metrics
from selflearn.signals import features
from selflearn.understanding import networks

TASKS = ("segment", "success", "intent", "tags", "values")


def heads(num_values: int) -> tuple:
  t, k = networks.TURN, networks.TOKEN
  return (
    ("segment", len(features.SEGMENTS), t),
    ("success", 2, t),
    ("intent", len(features.INTENTS), t),
    ("tags", len(features.TAGS), k),
    ("values", num_values, k),
    ("swap", 2, t),
  )


def model_labels(probs: dict[str, np.ndarray], goal: np.ndarray, turn_mask: np.ndarray) -> dict[str, np.ndarray]:
  """Argmax label arrays from head probabilities; goal success is the mean over the goal's turns."""
  out = {k: np.argmax(probs[k], -1).astype(np.int32) for k in ("segment", "intent", "tags", "values")}
  p = probs["success"][..., 1]
  success = np.full(goal.shape, -1, np.int32)
  confidence = np.zeros(goal.shape, np.float32)
  for i in range(goal.shape[0]):
    for g in np.unique(goal[i][(goal[i] >= 0) & turn_mask[i]]):
      sel = (goal[i] == g) & turn_mask[i]
      m = float(p[i][sel].mean())
      success[i][sel] = int(m > 0.5)
      confidence[i][sel] = max(m, 1 - m)
  out["success"], out["success_confidence"], out["goal"] = success, confidence, goal
  return out


def _goals(lbl: dict, turn_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(dialogue, turn) of each goal's first turn."""
  goal = lbl["goal"]
  first = np.zeros_like(turn_mask)
  for i in range(goal.shape[0]):
    for g in np.unique(goal[i][(goal[i] >= 0) & turn_mask[i]]):
      first[i, np.argmax(goal[i] == g)] = True
  return np.nonzero(first)


def _tag_names(ids: np.ndarray) -> list[str]:
  return [features.TAGS[int(x)] for x in ids]


def label_scores(pred: dict, ref: dict, turn_mask: np.ndarray, lengths: np.ndarray) -> dict[str, float]:
  """Every task's metrics of `pred` against `ref` (label dicts of `features` shape)."""
  m = turn_mask
  gi, gj = _goals(ref, m)
  ps, rs = pred["success"][gi, gj], ref["success"][gi, gj]
  true_tags, pred_tags, v_ok, v_n = [], [], 0, 0
  for i, j in zip(*np.nonzero(m)):
    n = int(lengths[i, j])
    rt, pt = _tag_names(ref["tags"][i, j, :n]), _tag_names(pred["tags"][i, j, :n])
    true_tags.append(rt)
    pred_tags.append(pt)
    for _, start, _ in features.spans(rt):
      v_n += 1
      v_ok += int(pred["values"][i, j, start] == ref["values"][i, j, start])
  span = metrics.span_f1(true_tags, pred_tags)
  return {
    "segment_accuracy": metrics.accuracy(ref["segment"][m], pred["segment"][m]),
    "segment_macro_f1": metrics.macro_f1(ref["segment"][m], pred["segment"][m], [0, 1, 2]),
    "success_accuracy": metrics.accuracy(rs, ps),
    "success_f1": metrics.binary_f1(rs, ps, positive=1),
    "failure_f1": metrics.binary_f1(rs, ps, positive=0),
    "intent_accuracy": metrics.accuracy(ref["intent"][m], pred["intent"][m]),
    "intent_macro_f1": metrics.macro_f1(ref["intent"][m], pred["intent"][m]),
    "slot_f1": span["f1"],
    "value_accuracy": v_ok / v_n if v_n else float("nan"),
  }


def confident_success(pred: dict, ref: dict, turn_mask: np.ndarray, threshold: float) -> dict[str, float]:
  """Goal-success accuracy on the goals the model is at least `threshold` sure of, and their share."""
  gi, gj = _goals(ref, turn_mask)
  conf = pred["success_confidence"][gi, gj]
  keep = conf >= threshold
  acc = metrics.accuracy(ref["success"][gi, gj][keep], pred["success"][gi, gj][keep]) if keep.any() else np.nan
  return {"threshold": threshold, "accuracy": float(acc), "coverage": float(keep.mean()) if keep.size else np.nan}
