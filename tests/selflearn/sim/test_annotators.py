"""Simulated annotators: the configured per-class accuracy, independent draws, the majority of three."""

import numpy as np
import pytest

from selflearn.signals import features
from selflearn.sim import annotators
from selflearn.understanding import fpi


def test_simulated_human_has_the_configured_per_class_accuracy(dialogues):
  vocab = features.Vocab.build(t["asr"]["text"] for d in dialogues for t in d["turns"])
  ds = features.encode(dialogues, vocab, features.value_vocab(dialogues), max_turns=12, max_tokens=12)
  mask = ds.inputs["turn_mask"]
  noise = annotators.Noise()
  y = ds.labels["fpi"][mask]
  votes = [annotators.annotate(ds.labels, mask, noise, seed)["fpi"][mask] for seed in range(8)]
  for i, c in enumerate(fpi.CLASSES):
    sel = y == i
    if sel.sum() < 30:
      continue
    acc = np.mean([np.mean(v[sel] == i) for v in votes])
    assert acc == pytest.approx(noise.fpi_accuracy[c], abs=0.05), c
  # Independent annotators; the majority of three beats a single one.
  panel = annotators.panel(ds.labels, mask, noise, seed=5)
  assert np.mean(panel["majority"]["fpi"][mask] == y) > np.mean(panel["single"]["fpi"][mask] == y)
  # Padding is never touched.
  assert np.all(panel["single"]["fpi"][~mask] == ds.labels["fpi"][~mask])


def test_majority_vote():
  votes = np.array([[0, 1, 2, 3], [0, 2, 2, 4], [1, 2, 0, 5]])
  np.testing.assert_array_equal(annotators.majority(votes), [0, 2, 2, 3])  # all differ: first voter
