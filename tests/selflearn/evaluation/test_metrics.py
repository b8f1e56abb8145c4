"""Metric functions against scikit-learn; BIO spans and majority votes by hand."""

import numpy as np
import pytest
from sklearn import metrics as skm

from selflearn import evaluation, features


@pytest.fixture
def labels():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 6, size=400)
  p = np.where(rng.random(400) < 0.6, y, rng.integers(0, 6, size=400))
  p[p == 5] = 4  # a class never predicted: zero division
  return y, p


def test_accuracy_and_confusion_match_sklearn(labels):
  y, p = labels
  assert evaluation.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
  np.testing.assert_array_equal(evaluation.confusion_matrix(y, p, 6), skm.confusion_matrix(y, p, labels=range(6)))


def test_per_class_and_macro_f1_match_sklearn(labels):
  y, p = labels
  pc = evaluation.per_class(y, p, range(6))
  prec, rec, f1, sup = skm.precision_recall_fscore_support(y, p, labels=range(6), zero_division=0)
  np.testing.assert_allclose(pc["precision"], prec)
  np.testing.assert_allclose(pc["recall"], rec)
  np.testing.assert_allclose(pc["f1"], f1)
  np.testing.assert_array_equal(pc["support"], sup)
  assert evaluation.macro_f1(y, p) == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))
  assert evaluation.macro_f1(y, p, range(6)) == pytest.approx(
    skm.f1_score(y, p, labels=range(6), average="macro", zero_division=0)
  )
  yb, pb = y % 2, p % 2
  assert evaluation.binary_f1(yb, pb) == pytest.approx(skm.f1_score(yb, pb))
  assert evaluation.binary_f1(yb, pb, positive=0) == pytest.approx(skm.f1_score(yb, pb, pos_label=0))


def test_span_f1_by_hand():
  true = [["B-song", "I-song", "O", "B-artist"], ["O", "B-city"]]
  pred = [["B-song", "O", "O", "B-artist"], ["O", "B-city"]]
  out = evaluation.span_f1(true, pred)  # spans: true 3, predicted 3, 2 exact matches
  assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(2 / 3)
  assert out["f1"] == pytest.approx(2 / 3)
  assert evaluation.span_f1([["O"]], [["O"]])["f1"] == 0.0
  with pytest.raises(ValueError):
    evaluation.span_f1([["O"]], [])


def test_spans_follow_conlleval():
  assert features.spans(["B-a", "I-a", "I-b", "O", "I-a"]) == {("a", 0, 2), ("b", 2, 3), ("a", 4, 5)}


def test_majority_vote():
  votes = np.array([[0, 1, 2, 3], [0, 2, 2, 4], [1, 2, 0, 5]])
  np.testing.assert_array_equal(evaluation.majority(votes), [0, 2, 2, 3])  # all differ: first voter
