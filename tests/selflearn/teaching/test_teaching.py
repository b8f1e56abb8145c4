"""The extractor of teachable preferences: decoding, normalisation, the rule baseline, scores, the network."""

import jax
import numpy as np
import pytest
from sklearn import metrics as skm

from selflearn.teaching import extraction, extractor, rules


def test_spans_and_decoding():
  words = "by portland i mean portland maine".split()
  tags = ["O", "B-KEY", "O", "O", "B-KEY", "B-VAL"]
  assert extraction.spans(words, tags) == {"KEY": ["portland", "portland"], "VAL": ["maine"]}
  assert extraction.spans(["lionel", "richie", "x"], ["I-VAL", "I-VAL", "O"]) == {"KEY": [], "VAL": ["lionel richie"]}
  ids = [extractor.TAG_NAMES.index(t) for t in tags]
  city = np.array([0.1, 0.1, 0.7, 0.1])
  assert extraction.decode(words, city, ids, threshold=0.5, cutoff=75) == (("city", "portland", "maine"), 0.7)
  assert extraction.decode(words, city, ids, threshold=0.8, cutoff=75)[0] is None  # not confident enough
  assert extraction.decode(words, np.array([0.6, 0.1, 0.2, 0.1]), ids, threshold=0.5, cutoff=75)[0] is None
  # the right kind, no value span: nothing to store
  assert extraction.decode(words, city, [0, 1, 0, 0, 1, 0], threshold=0.5, cutoff=75)[0] is None


def test_normalisation_maps_noisy_spans_to_valid_catalogue_entries(sim_world):
  nb = sim_world.neighbours
  norm = lambda *a: extraction.normalise(*a, cutoff=75, neighbours=nb)
  assert norm("song", ["hello"], ["christine aguilera"]) is None  # she does not sing "hello"
  assert norm("song", ["beautiful"], ["christine aguilera"]) == ("song", "beautiful", "christina aguilera")
  assert norm("song", [nb["hello"][0]], ["adele"]) == ("song", "hello", "adele")  # a phonetic neighbour
  assert norm("city", ["portland", "portland"], ["maine"]) == ("city", "portland", "maine")
  assert norm("city", ["portland"], ["ohio"]) is None
  assert norm("artist", ["lionel ritchie"], []) == ("artist", "lionel richie", "fan")
  assert norm("artist", ["my mother"], []) is None
  assert norm("none", ["hello"], ["adele"]) is None


def test_rule_parser_baseline():
  parse = lambda text: rules.rule_parse(text, cutoff=75)
  assert parse("when i say hello i mean the one by lionel richie") == ("song", "hello", "lionel richie")
  assert parse("by portland i mean portland maine") == ("city", "portland", "maine")
  assert parse("i live in springfield missouri") == ("city", "springfield", "missouri")
  assert parse("i'm a big lionel richie fan") == ("artist", "lionel richie", "fan")
  for text in ("play hello by adele", "when i say stop i mean it", "i'm a big fan of yours", "i love this song"):
    assert parse(text) is None, text
  assert parse("nobody beats adele for me") is None  # a held-out paraphrase the rules do not know


def test_extraction_scores_match_sklearn():
  truth = [("song", "hello", "adele"), None, ("city", "portland", "maine"), None, ("artist", "cher", "fan")]
  pred = [("song", "hello", "lionel richie"), ("city", "austin", "texas"), ("city", "portland", "maine"), None, None]
  s = extraction.extraction_scores(truth, pred)
  assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 3)
  assert s["exact_match"] == pytest.approx(2 / 5)
  yt, yp = [t is not None for t in truth], [p is not None for p in pred]
  p, r, f, _ = skm.precision_recall_fscore_support(yt, yp, average="binary")
  assert (s["detection_precision"], s["detection_recall"], s["detection_f1"]) == pytest.approx((p, r, f))


def test_extractor_network_shapes_and_loss():
  net = extractor.make_extractor(vocab_size=30, max_words=9, dim=8, num_layers=1, num_heads=2, dropout_rate=0.0)
  params = jax.jit(net.init)(jax.random.PRNGKey(0))
  batch = {"ids": np.ones((3, 9), np.int32), "mask": np.ones((3, 9), bool)}
  out = jax.jit(net.apply)(params, batch)
  assert out["kind"].shape == (3, 4) and out["tags"].shape == (3, 9, 5)
  batch.update(y_kind=np.array([0, 1, 2], np.int32), y_tags=np.zeros((3, 9), np.int32))
  loss, metrics = jax.jit(extractor.make_loss(net.apply, train=False))(params, batch, jax.random.PRNGKey(1))
  assert np.isfinite(loss) and set(metrics) == {"loss_kind", "loss_tags"}
