"""Metric wrappers against scikit-learn's conventions; counts and BIO spans by hand."""

import numpy as np
import pytest
from sklearn import metrics as skm

from selflearn.evaluation import metrics


@pytest.fixture
def labels():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 6, size=400)
  p = np.where(rng.random(400) < 0.6, y, rng.integers(0, 6, size=400))
  p[p == 5] = 4  # a class never predicted: zero division
  return y, p


def test_accuracy_and_confusion_match_sklearn(labels):
  y, p = labels
  assert metrics.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
  np.testing.assert_array_equal(metrics.confusion_matrix(y, p, 6), skm.confusion_matrix(y, p, labels=range(6)))


def test_per_class_and_macro_f1_match_sklearn(labels):
  y, p = labels
  pc = metrics.per_class(y, p, range(6))
  prec, rec, f1, sup = skm.precision_recall_fscore_support(y, p, labels=range(6), zero_division=0)
  np.testing.assert_allclose(pc["precision"], prec)
  np.testing.assert_allclose(pc["recall"], rec)
  np.testing.assert_allclose(pc["f1"], f1)
  np.testing.assert_array_equal(pc["support"], sup)
  assert metrics.macro_f1(y, p) == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))
  assert metrics.macro_f1(y, p, range(6)) == pytest.approx(
    skm.f1_score(y, p, labels=range(6), average="macro", zero_division=0)
  )
  yb, pb = y % 2, p % 2
  assert metrics.binary_f1(yb, pb) == pytest.approx(skm.f1_score(yb, pb))
  assert metrics.binary_f1(yb, pb, positive=0) == pytest.approx(skm.f1_score(yb, pb, pos_label=0))


def test_empty_inputs_give_zeros_and_nan():
  assert np.isnan(metrics.accuracy([], []))
  pc = metrics.per_class(np.zeros(0, int), np.zeros(0, int), [0, 1])
  np.testing.assert_array_equal(pc["f1"], [0.0, 0.0])
  np.testing.assert_array_equal(pc["support"], [0, 0])


def test_prf_from_counts():
  assert metrics.prf(2, 4, 8) == {"precision": 0.5, "recall": 0.25, "f1": pytest.approx(1 / 3)}
  assert metrics.prf(0, 0, 3) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_span_f1_by_hand():
  true = [["B-song", "I-song", "O", "B-artist"], ["O", "B-city"]]
  pred = [["B-song", "O", "O", "B-artist"], ["O", "B-city"]]
  out = metrics.span_f1(true, pred)  # spans: true 3, predicted 3, 2 exact matches
  assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(2 / 3)
  assert out["f1"] == pytest.approx(2 / 3)
  assert metrics.span_f1([["O"]], [["O"]])["f1"] == 0.0
  with pytest.raises(ValueError):
    metrics.span_f1([["O"]], [])
