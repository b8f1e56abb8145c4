"""Simulated human annotators: noisy single-pass labels and a three-annotator majority.

The keynote evaluates the label-generation model against single-pass
annotations and scores both against annotations corroborated by three
annotators; failure-point isolation is compared with human annotators.
The simulator knows the truth, so annotators are simulated by corrupting
it with an explicit noise model (`Noise`; the rates are assumptions, set in
the binaries' configs and reported next to every comparison):

* goal segmentation: a goal turn's B/I label is swapped with `segment`
  probability; a false wake is taken for a new goal (O -> B) with the same
  probability;
* goal success: flipped with `success` probability, per goal (an annotator
  judges a goal once);
* intent: replaced by a random other intent with `intent` probability;
* slots: a whole span is missed (tagged O) with `slot` probability, a value
  replaced with `slot` probability;
* failure point: a turn of class c is labelled correctly with probability
  `fpi_accuracy[c]`; otherwise, 70% of the time, with an adjacent pipeline
  stage (annotators confuse neighbours: ASR vs NLU, NLU vs entity ...),
  else with a uniformly random other class.

Each annotator is an independent draw; `majority` votes element-wise.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from selflearn.signals import features

NUM_INTENTS = len(features.INTENTS)


@dataclasses.dataclass(frozen=True)
class Noise:
  """Per-task error rates of one simulated annotator pass."""

  segment: float = 0.08
  success: float = 0.1
  intent: float = 0.06
  slot: float = 0.06
  fpi_accuracy: Mapping[str, float] = dataclasses.field(
    default_factory=lambda: {
      "false_wake": 0.95,
      "asr": 0.9,
      "nlu": 0.88,
      "entity": 0.86,
      "result": 0.75,
      "correct": 0.85,
    }
  )

  def __post_init__(self):
    for name in ("segment", "success", "intent", "slot"):
      if not 0 <= getattr(self, name) <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")
    if set(self.fpi_accuracy) != set(features.FAILURE_POINTS):
      raise ValueError(f"fpi_accuracy needs exactly the classes {features.FAILURE_POINTS}.")
    if not all(0 <= v <= 1 for v in self.fpi_accuracy.values()):
      raise ValueError("fpi_accuracy values must be in [0, 1].")


def annotate(labels: Mapping[str, np.ndarray], turn_mask: np.ndarray, noise: Noise, seed: int) -> dict[str, np.ndarray]:
  """One annotator's noisy copy of the label arrays of `features.encode` (padding untouched)."""
  rng = np.random.default_rng([seed, 0xA77])
  out = {k: np.array(v, copy=True) for k, v in labels.items()}
  valid = turn_mask.astype(bool)
  # Segmentation.
  seg = out["segment"]
  in_goal = valid & (seg != 2)
  swap = in_goal & (rng.random(seg.shape) < noise.segment)
  seg[swap] = 1 - seg[swap]
  wake = valid & (seg == 2) & (rng.random(seg.shape) < noise.segment)
  seg[wake] = 0
  # Goal success: one judgement per goal, copied to its turns.
  succ, goal = out["success"], labels["goal"]
  for i in range(succ.shape[0]):
    for g in np.unique(goal[i][goal[i] >= 0]):
      if rng.random() < noise.success:
        sel = goal[i] == g
        succ[i][sel] = 1 - succ[i][sel]
  # Intent.
  intent = out["intent"]
  flip = valid & (rng.random(intent.shape) < noise.intent)
  intent[flip] = (intent[flip] + rng.integers(1, NUM_INTENTS, size=int(flip.sum()))) % NUM_INTENTS
  # Slots: drop a span (B and its I's), or change its value.
  tags, values = out["tags"], out["values"]
  num_values = int(max(labels["values"].max(), 1)) + 1
  starts = np.argwhere(np.isin(tags, [features.TAGS.index(t) for t in features.TAGS if t.startswith("B-")]))
  for i, j, k in starts:
    end = k + 1
    while end < tags.shape[2] and features.TAGS[tags[i, j, end]].startswith("I-"):
      end += 1
    r = rng.random()
    if r < noise.slot:
      tags[i, j, k:end] = 0
      values[i, j, k:end] = 0
    elif r < 2 * noise.slot and num_values > 2:
      values[i, j, k:end] = rng.integers(2, num_values)
  # Failure points.
  fpi = out["fpi"]
  classes = features.FAILURE_POINTS
  acc = np.array([noise.fpi_accuracy[c] for c in classes])
  wrong = valid & (rng.random(fpi.shape) >= acc[fpi])
  for i, j in np.argwhere(wrong):
    c = int(fpi[i, j])
    if rng.random() < 0.7:
      neighbours = [x for x in (c - 1, c + 1) if 0 <= x < len(classes)]
      fpi[i, j] = neighbours[int(rng.integers(len(neighbours)))]
    else:
      fpi[i, j] = (c + int(rng.integers(1, len(classes)))) % len(classes)
  return out


def majority(votes: np.ndarray) -> np.ndarray:
  """Element-wise majority over the leading axis of `[k, ...]` int labels (ties: the first voter's label)."""
  votes = np.asarray(votes)
  k = votes.shape[0]
  counts = np.stack([(votes == votes[i]).sum(axis=0) for i in range(k)])  # [k, ...] support of each voter's label
  best = np.argmax(counts, axis=0)  # first voter among the most supported
  return np.take_along_axis(votes, best[None], axis=0)[0]


def panel(labels: Mapping[str, np.ndarray], turn_mask: np.ndarray, noise: Noise, seed: int) -> dict[str, dict]:
  """The evaluation panel: a single-pass annotator and the majority of three others.

  Returns:
    `{"single": labels, "majority": labels}`; the four annotators are
    independent (seeds `seed .. seed + 3`).
  """
  single = annotate(labels, turn_mask, noise, seed)
  three = [annotate(labels, turn_mask, noise, seed + k) for k in (1, 2, 3)]
  voted = {k: majority(np.stack([a[k] for a in three])) for k in labels}
  # A voted tag sequence can hold an I- after an O; spans() reads it as a new span (conlleval).
  voted["goal"] = np.asarray(labels["goal"])
  single["goal"] = np.asarray(labels["goal"])
  return {"single": single, "majority": voted}
