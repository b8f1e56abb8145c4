"""Failure-point isolation: scores, the share of human performance, the simulated human."""

import numpy as np
import pytest
from sklearn import metrics as skm

from selflearn import annotators, features, fpi


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


def test_render_has_the_keynote_column():
  y = np.arange(60) % 6
  r = {
    "test_turns": 60,
    "test_class_counts": {c: 10 for c in fpi.CLASSES},
    "train_labels": "annotator",
    "vs_truth": {"model": fpi.scores(y, y), "human": fpi.scores(y, (y + 1) % 6)},
    "vs_majority": {"model": fpi.scores(y, y), "human": fpi.scores(y, y)},
  }
  r["share_of_human"] = fpi.share_of_human(r["vs_truth"]["model"], r["vs_truth"]["human"])
  text = fpi.render(r)
  assert "> 92% (92.2% in the FPI paper)" in text and "| model | truth | 1.000 | 1.000 |" in text


def test_committed_results_rerender_from_their_json():
  import json
  import pathlib

  root = pathlib.Path(__file__).resolve().parents[2] / "selflearn" / "results"
  for name in ("fpi", "fpi_minilm"):
    if (root / name / "results.json").exists():
      results = json.loads((root / name / "results.json").read_text())
      assert fpi.render(results) == (root / name / "results.md").read_text()
      share = fpi.share_of_human(results["vs_truth"]["model"], results["vs_truth"]["human"])
      assert share["macro_f1"] == pytest.approx(results["share_of_human"]["macro_f1"])
      assert share["per_class_f1"] == pytest.approx(results["share_of_human"]["per_class_f1"])
