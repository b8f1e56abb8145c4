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
