"""The metadata-only shortcut of rephrase detection: a gradient-boosted tree on a (source, candidate) pair.

The tree sees, per pair inside the detector's candidate window
(`examples.candidates`), no words at all: the gap from the end of the source
to the candidate, the candidate's position, each turn's confidences (ASR,
NLU, entity resolution, wake), result status, NLU domain and intent,
barge-in, slot and unresolved-entity counts, utterance and response
durations, and whether the two turns' NLU intents and domains agree.  If it
matches the span model, rephrases are given away by the log's metadata and
the detector's number says little.  Trained on the training split's true
pairs (scikit-learn's `HistGradientBoostingClassifier`, library defaults,
none tuned); per source, the candidate of highest probability above 0.5 is
its rephrase (`detector.pairwise_targets`, the pairwise classifier's rule).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from selflearn.data import schema
from selflearn.data import truth as truth_lib
from selflearn.language import ontology
from selflearn.rewriting.rephrase import detector, examples
from selflearn.signals import sessions

_DOMAINS = {d: i for i, d in enumerate(ontology.DOMAIN_NAMES)}
_INTENTS = {n: i for i, n in enumerate(ontology.INTENT_NAMES)}
_STATUSES = {s: i for i, s in enumerate(schema.STATUSES)}
_TURN_CATS = 3  # domain, intent, status
_TURN_NUMS = 9


def _turn(t) -> tuple[list[float], list[float]]:
  nan = float("nan")
  cats = [
    _DOMAINS.get(t["nlu"]["domain"], nan),
    _INTENTS.get(t["nlu"]["intent"], nan),
    _STATUSES.get(t["result"]["status"], nan),
  ]
  nums = [
    t["asr"]["confidence"],
    t["nlu"]["confidence"],
    t["er"]["score"],
    t["wake"]["score"],
    float(t["signals"]["barge_in"]),
    float(sum(v is None for v in t["er"]["resolved"].values())),
    float(len(t["nlu"]["slots"])),
    t["utterance_duration"],
    t["response"]["duration"],
  ]
  return cats, nums


def pair_features(dialogues: Sequence[dict], ex: examples.Examples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(features [pairs, F], owner example [pairs], candidate slot [pairs]) of every (source, candidate) pair."""
  rows, owner, slot = [], [], []
  for e in range(ex.size):
    turns = dialogues[int(ex.dialogue[e])]["turns"]
    src = turns[int(ex.source[e])]
    s_cat, s_num = _turn(src)
    for c, j in enumerate(ex.cand_turns[e]):
      if j < 0:
        continue
      cand = turns[int(j)]
      c_cat, c_num = _turn(cand)
      same = [float(src["nlu"][k] == cand["nlu"][k]) for k in ("intent", "domain")]
      rows.append(s_cat + c_cat + s_num + c_num + same + [cand["timestamp"] - sessions.end_of(src), float(c)])
      owner.append(e)
      slot.append(c)
  width = 2 * (_TURN_CATS + _TURN_NUMS) + 4
  x = np.asarray(rows, np.float64).reshape(-1, width)
  return x, np.asarray(owner, np.int64), np.asarray(slot, np.int64)


def _categorical(width: int) -> np.ndarray:
  mask = np.zeros(width, bool)
  mask[: 2 * _TURN_CATS] = True
  return mask


def pair_labels(dialogues: Sequence[dict], ex: examples.Examples, owner: np.ndarray, slot: np.ndarray) -> np.ndarray:
  """1 where the candidate is the source's true rephrase (`truth.rephrase_pairs`)."""
  truth = [truth_lib.true_pairs(d) for d in dialogues]
  return np.array(
    [int(truth[int(ex.dialogue[e])].get(int(ex.source[e]), -2) == ex.cand_turns[e, c]) for e, c in zip(owner, slot)],
    np.int32,
  )


def fit_predict(
  train: Sequence[dict], train_ex: examples.Examples, test: Sequence[dict], test_ex: examples.Examples, *, seed: int = 0
) -> list[list[tuple[int, int]]]:
  """Per test dialogue, the tree's (source, target) pairs."""
  x, owner, slot = pair_features(train, train_ex)
  y = pair_labels(train, train_ex, owner, slot)
  xt, t_owner, t_slot = pair_features(test, test_ex)
  if len(np.unique(y)) < 2 or not len(xt):
    prob = np.full(len(xt), float(y[0]) if len(y) else 0.0)
  else:
    tree = HistGradientBoostingClassifier(categorical_features=_categorical(x.shape[1]), random_state=seed)
    with threadpool_limits(limits=1, user_api="openmp"):  # see understanding.shortcut
      tree.fit(x, y)
      prob = tree.predict_proba(xt)[:, 1]
  target = detector.pairwise_targets(prob, t_owner, t_slot, test_ex.cand_turns)
  return detector.group_pairs(test_ex, target, len(test))
