"""The metadata-only shortcut baseline: reads no text, and learns what metadata gives away."""

import numpy as np

from selflearn.signals import features
from selflearn.understanding import fpi, shortcut


def _encode(rows):
  return features.encode(rows, features.Vocab.build([], max_size=10), (), max_turns=12, max_tokens=4)


def test_features_ignore_text_and_the_tree_beats_the_majority_class(dialogues):
  train, test = _encode(dialogues[:450]), _encode(dialogues[450:])
  x, categorical = shortcut.metadata_features(train.inputs)
  assert x.shape == (int(train.inputs["turn_mask"].sum()), len(features.CATEGORICAL) + len(features.NUMERIC) + 6)
  assert categorical.sum() == len(features.CATEGORICAL)
  scrambled = dict(train.inputs, utt_ids=np.zeros_like(train.inputs["utt_ids"]))
  np.testing.assert_array_equal(shortcut.metadata_features(scrambled)[0], x)
  pred = shortcut.fit_predict(train.inputs, train.labels["fpi"], test.inputs)
  truth = test.labels["fpi"][test.inputs["turn_mask"]]
  majority = np.full_like(truth, np.bincount(truth).argmax())
  assert fpi.scores(truth, pred)["macro_f1"] > fpi.scores(truth, majority)["macro_f1"] + 0.2


def test_probabilities_leave_out_unlabelled_turns_and_match_the_classes(dialogues):
  train, test = _encode(dialogues[:450]), _encode(dialogues[450:])
  mask = test.inputs["turn_mask"]
  p = shortcut.fit_predict_proba(train.inputs, train.labels["success"], test.inputs, 2)
  assert p.shape == (*mask.shape, 2) and not p[~mask].any()
  np.testing.assert_allclose(p[mask].sum(-1), 1.0, rtol=1e-5)
  # -1 (outside a goal) is no class: relabelling those turns changes nothing
  other = np.where(train.labels["success"] < 0, -1, train.labels["success"])
  np.testing.assert_array_equal(shortcut.fit_predict_proba(train.inputs, other, test.inputs, 2), p)
  y = test.labels["success"][mask]
  assert np.mean((p[mask][:, 1] > 0.5)[y >= 0] == (y[y >= 0] == 1)) > 0.6
