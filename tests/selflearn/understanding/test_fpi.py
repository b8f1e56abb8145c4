"""Failure-point isolation: scores and the share of human performance."""

import numpy as np
import pytest
from sklearn import metrics as skm

from selflearn.understanding import fpi


def test_scores_match_sklearn():
  rng = np.random.default_rng(1)
  y = rng.integers(0, 6, size=300)
  p = np.where(rng.random(300) < 0.7, y, rng.integers(0, 6, size=300))
  s = fpi.scores(y, p)
  assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
  assert s["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro", labels=range(6)))
  f1 = skm.f1_score(y, p, average=None, labels=range(6))
  recall = skm.recall_score(y, p, average=None, labels=range(6))
  for i, c in enumerate(fpi.CLASSES):
    assert s["per_class"][c]["f1"] == pytest.approx(f1[i])
    assert s["per_class"][c]["recall"] == pytest.approx(recall[i])


def test_share_of_human_is_the_ratio():
  y = np.array([0, 1, 2, 3, 4, 5] * 10)
  human = fpi.scores(y, np.where(np.arange(60) % 4 == 0, (y + 1) % 6, y))
  model = fpi.scores(y, np.where(np.arange(60) % 3 == 0, (y + 1) % 6, y))
  share = fpi.share_of_human(model, human)
  assert share["accuracy"] == pytest.approx(model["accuracy"] / human["accuracy"])
  assert share["macro_f1"] == pytest.approx(model["macro_f1"] / human["macro_f1"])
  assert share["macro_f1"] < 1  # the model errs more often here
  assert fpi.share_of_human(human, human)["macro_f1"] == pytest.approx(1.0)
