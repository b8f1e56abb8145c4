"""The annotator-noise sweep: scale 0 is a perfect annotator, scale 1 the runs' own draw, more noise less F1."""

import numpy as np
import pytest

from selflearn.signals import features
from selflearn.sim import annotator_sweep, annotators
from selflearn.understanding import fpi


def test_scaled_accuracies():
  acc = {"a": 0.9, "b": 0.75}
  assert annotator_sweep.scaled(acc, 0) == {"a": 1.0, "b": 1.0}
  assert annotator_sweep.scaled(acc, 2) == pytest.approx({"a": 0.8, "b": 0.5})
  assert (
    annotator_sweep.scaled(acc, 10) == pytest.approx({"a": 0.0, "b": 0.0}) and annotator_sweep.scaled(acc, 20)["b"] == 0
  )


def test_curve_reproduces_the_panel_and_falls_with_noise(dialogues):
  enc = features.encode(dialogues, features.Vocab.build([], max_size=10), (), max_turns=12, max_tokens=4)
  mask, noise = enc.inputs["turn_mask"], annotators.Noise()
  curve = annotator_sweep.human_curve(enc.labels, mask, noise, 117, [0.0, 1.0, 2.0])
  f1 = [c["scores"]["macro_f1"] for c in curve]
  assert f1[0] == 1.0 and f1[0] > f1[1] > f1[2]
  y = enc.labels["fpi"][mask]
  panel = annotators.panel(enc.labels, mask, noise, 117)["single"]["fpi"][mask]
  assert f1[1] == pytest.approx(fpi.scores(y, panel)["macro_f1"])
  assert np.isfinite(f1).all()
