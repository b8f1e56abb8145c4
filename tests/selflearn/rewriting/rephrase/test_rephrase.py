"""Contextual rephrase detection: examples, span decoding, losses, metrics, the detector's pairs."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax
from sklearn.metrics import precision_recall_fscore_support

from selflearn.data import truth as truth_lib
from selflearn.rewriting.rephrase import detector, examples, scores
from selflearn.rewriting.rephrase import networks as nets
from selflearn.signals import features, sessions

LAYOUT = examples.Layout(max_words=8, max_candidates=3, max_gap=45.0)


@pytest.fixture(scope="module")
def built(dialogues):
  vocab = examples.build_vocab(dialogues[:400], 2000)
  return vocab, examples.build_examples(dialogues, vocab, LAYOUT)


def test_target_span_covers_exactly_the_rephrase_words_and_null_otherwise(dialogues, built):
  vocab, ex = built
  positives = 0
  for e in range(ex.size):
    d = dialogues[ex.dialogue[e]]
    target = truth_lib.true_pairs(d).get(int(ex.source[e]))
    s, t = int(ex.labels["y_start"][e]), int(ex.labels["y_end"][e])
    if target is None:
      assert (s, t) == (0, 0)
      continue
    positives += 1
    c = int(np.flatnonzero(ex.cand_turns[e] == target)[0])  # every true target is in the 45 s window here
    want = [x for x in vocab.ids(features.words(d["turns"][target]["asr"]["text"]), LAYOUT.max_words) if x]
    assert list(ex.inputs["ids"][e, s : t + 1]) == want
    assert set(ex.inputs["segment"][e, s : t + 1]) == {c + 1}
    assert ex.inputs["ids"][e, s - 1] >= vocab.size  # a gap / signal token, not a word
    assert t + 1 == LAYOUT.seq_len or ex.inputs["ids"][e, t + 1] in (features.PAD, examples.special_id(vocab, "[SEP]"))
  assert positives == sum(len(d["truth"]["rephrase_pairs"]) for d in dialogues) > 100
  assert ex.size == sum(sessions.is_request(t) for d in dialogues for t in d["turns"])
  assert ex.inputs["ids"][:, 0].tolist() == [examples.special_id(vocab, "[CLS]")] * ex.size


def test_gap_threshold_drops_far_turns(dialogues, built):
  vocab, ex = built
  for e in range(0, ex.size, 7):
    d, k = dialogues[ex.dialogue[e]], int(ex.source[e])
    end = sessions.end_of(d["turns"][k])
    cands = [j for j in ex.cand_turns[e] if j >= 0]
    assert all(d["turns"][j]["timestamp"] - end <= LAYOUT.max_gap for j in cands)
    if len(cands) < LAYOUT.max_candidates and k + 1 + len(cands) < len(d["turns"]):
      assert d["turns"][k + 1 + len(cands)]["timestamp"] - end > LAYOUT.max_gap
  # Push a true rephrase (and what follows) past the window: it is no longer a candidate and the target is null.
  d = copy.deepcopy(next(d for d in dialogues if d["truth"]["rephrase_pairs"]))
  pair = d["truth"]["rephrase_pairs"][0]
  for t in d["turns"][pair["target_turn"] :]:
    t["timestamp"] += LAYOUT.max_gap + 1
  one = examples.build_examples([d], vocab, LAYOUT)
  e = int(np.flatnonzero(one.source == pair["source_turn"])[0])
  assert pair["target_turn"] not in one.cand_turns[e]
  assert (one.labels["y_start"][e], one.labels["y_end"][e]) == (0, 0)


def test_inputs_read_no_truth_but_the_rephrase_pairs(dialogues, built):
  vocab, ex = built
  stripped = copy.deepcopy(dialogues[:120])
  for d in stripped:
    d["truth"] = {"rephrase_pairs": d["truth"]["rephrase_pairs"]}
    for t in d["turns"]:
      t["truth"] = {}
  again = examples.build_examples(stripped, vocab, LAYOUT)
  n = again.size
  for k in ex.inputs:
    np.testing.assert_array_equal(again.inputs[k], ex.inputs[k][:n])
  for k in ex.labels:
    np.testing.assert_array_equal(again.labels[k], ex.labels[k][:n])
  for d in stripped:
    del d["truth"]
  bare = examples.build_examples(stripped, vocab, LAYOUT, labels=False)
  assert bare.labels == {} and all(np.array_equal(bare.inputs[k], again.inputs[k]) for k in again.inputs)


def _brute_force(start, end, ok, seg, max_span):
  best, arg = -np.inf, (0, 0)
  for i in range(len(start)):
    for j in range(i, min(i + max_span, len(start))):
      if ok[i] and ok[j] and seg[i] == seg[j] and start[i] + end[j] > best:
        best, arg = start[i] + end[j], (i, j)
  return arg, best - (start[0] + end[0])


def test_span_decoding_matches_a_brute_force_search():
  rng = np.random.default_rng(0)
  B, S = 40, 20
  start, end = rng.normal(size=(2, B, S)).astype(np.float32)
  seg = np.sort(rng.integers(0, 4, (B, S)), axis=1)
  ok = (rng.random((B, S)) < 0.6) & (seg > 0)
  ok[0] = False  # one example with no candidate word
  i, j, margin = (np.asarray(x) for x in nets.decode_spans(start, end, ok, seg, 4))
  for b in range(B):
    (bi, bj), m = _brute_force(start[b], end[b], ok[b], seg[b], 4)
    assert (i[b], j[b]) == (bi, bj)
    assert margin[b] == pytest.approx(m, abs=1e-5) if np.isfinite(m) else margin[b] == -np.inf


def test_span_loss_is_half_the_two_masked_cross_entropies():
  rng = np.random.default_rng(1)
  B, S = 6, 10
  start, end = rng.normal(size=(2, B, S)).astype(np.float32)
  ok = rng.random((B, S)) < 0.5
  ok[:, 0] = False
  y_start = np.array([0] + [int(rng.choice(np.flatnonzero(ok[b]))) for b in range(1, B)])
  y_end = np.array([0] + [int(np.flatnonzero(ok[b])[-1]) for b in range(1, B)])
  batch = {"span_ok": jnp.asarray(ok), "y_start": jnp.asarray(y_start), "y_end": jnp.asarray(y_end)}
  loss, metrics = nets.span_loss(jnp.asarray(start), jnp.asarray(end), batch)
  allowed = ok.copy()
  allowed[:, 0] = True

  def ce(logits, y):
    return np.mean([-log_softmax(logits[b][allowed[b]])[np.flatnonzero(allowed[b]) == y[b]][0] for b in range(B)])

  assert float(metrics["loss_start"]) == pytest.approx(ce(start, y_start), rel=1e-5)
  assert float(loss) == pytest.approx(0.5 * (ce(start, y_start) + ce(end, y_end)), rel=1e-5)
  noisy = np.where(allowed, start, 1e3)  # logits at disallowed positions do not matter
  assert float(nets.span_loss(jnp.asarray(noisy), jnp.asarray(end), batch)[0]) == pytest.approx(float(loss), rel=1e-5)
  logit, y = rng.normal(size=8).astype(np.float32), rng.integers(0, 2, 8)
  want = np.mean(np.logaddexp(0, logit) - y * logit)
  assert float(nets.pair_loss(jnp.asarray(logit), {"y_pair": jnp.asarray(y)})[0]) == pytest.approx(want, rel=1e-5)


def test_metrics_match_sklearn(dialogues):
  rng = np.random.default_rng(2)
  test = dialogues[:200]
  truth = [truth_lib.true_pairs(d) for d in test]
  pred = []
  for d, t in zip(test, truth):  # keep some true pairs, move some targets, add false ones
    p = [(s, g if rng.random() < 0.7 else g + 1) for s, g in t.items() if rng.random() < 0.8]
    p += [(k, k + 1) for k in range(len(d["turns"]) - 1) if k not in t and rng.random() < 0.15]
    pred.append(p)
  universe = sorted({(i, *q) for i, (t, p) in enumerate(zip(truth, pred)) for q in [*t.items(), *p]})
  y_true = [(q[1], q[2]) in truth[q[0]].items() for q in universe]
  y_pred = [(q[1], q[2]) in pred[q[0]] for q in universe]
  p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="binary", zero_division=0)
  got = scores.pair_scores(truth, pred)
  assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f))
  y_true, y_pred = [], []
  for d, t, q in zip(test, truth, pred):
    for k, turn in enumerate(d["turns"]):
      if sessions.is_request(turn) or k in t or k in dict(q):
        y_true.append(k in t)
        y_pred.append(k in dict(q))
  p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="binary", zero_division=0)
  got = scores.detection_scores(test, truth, pred)
  assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f))
  em = scores.span_exact_match([0, 3, 5, 0], [0, 4, 6, 0], np.array([0, 3, 5, 7]), np.array([0, 4, 7, 8]))
  assert em == {"all": 0.5, "positive": pytest.approx(1 / 3)}


def test_pairwise_examples_and_targets(dialogues, built):
  vocab, ex = built
  inputs, owner, slot, y = examples.pair_examples(dialogues, vocab, LAYOUT, ex, signals=False)
  assert len(owner) == int((ex.cand_turns >= 0).sum()) and inputs["ids"].shape == (len(owner), LAYOUT.pair_len)
  assert y.sum() == sum(len(d["truth"]["rephrase_pairs"]) for d in dialogues)
  assert not np.any(inputs["ids"] >= examples.special_id(vocab, "<barge_in>"))  # words, [CLS] and [SEP] only
  with_signals = examples.pair_examples(dialogues, vocab, LAYOUT, ex, signals=True)[0]
  assert np.any(with_signals["ids"] >= examples.gap_id(vocab, 0.0))
  cand = np.array([[4, 5, -1], [7, -1, -1], [9, 10, 11]])
  got = detector.pairwise_targets(
    np.array([0.6, 0.9, 0.4, 0.2, 0.7, 0.1]), *np.array([[0, 0, 1, 2, 2, 2], [0, 1, 0, 0, 1, 2]]), cand
  )
  assert got.tolist() == [5, -1, 10]


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
def test_embeddings_are_added_per_turn_and_change_the_output(dialogues, built, monkeypatch):
  vocab, _ = built
  ex = examples.build_examples(dialogues[:30], vocab, LAYOUT)
  fake = lambda kind, texts, cache_dir=None: np.array([[len(t), t.count("a"), 1.0] for t in texts], np.float32)
  monkeypatch.setattr(examples.text_features, "embed_texts", fake)
  assert examples.add_embeddings(ex, "random", LAYOUT.max_candidates + 1, None) == 3
  e = int(np.flatnonzero(ex.cand_turns[:, 1] >= 0)[0])
  np.testing.assert_array_equal(ex.inputs["turn_emb"][e, :3], fake("", ex.texts[e][:3]))
  net = nets.make_model(seq_len=LAYOUT.seq_len, num_segments=4, vocab_size=examples.vocab_size(vocab), dim=8,
                        num_layers=1, num_heads=2, text_dim=3)  # fmt: skip
  params = net.init(jax.random.PRNGKey(0))
  batch = {k: jnp.asarray(v[:4]) for k, v in ex.inputs.items()}
  start, end = net.apply(params, batch)
  assert start.shape == end.shape == (4, LAYOUT.seq_len)
  other = net.apply(params, {**batch, "turn_emb": batch["turn_emb"] + 1.0})[0]
  assert not np.allclose(start, other)


def test_predict_pairs_feeds_reformulation_sessions(dialogues, built):
  vocab, _ = built
  net = nets.make_model(seq_len=LAYOUT.seq_len, num_segments=4, vocab_size=examples.vocab_size(vocab), dim=8,
                        num_layers=1, num_heads=2)  # fmt: skip
  params = net.init(jax.random.PRNGKey(0))
  test = [{k: v for k, v in d.items() if k != "truth"} for d in dialogues[:60]]
  eager = detector.Detector(net, params, vocab, LAYOUT, max_span=8, threshold=-1e9, text_encoder="none")
  pairs = detector.predict_pairs(eager, test)
  ex = examples.build_examples(test, vocab, LAYOUT, labels=False)
  with_cands = {(int(d), int(s)): set(c[c >= 0].tolist()) for d, s, c in zip(ex.dialogue, ex.source, ex.cand_turns)}
  assert sum(map(len, pairs)) == sum(bool(c) for c in with_cands.values())  # every source with a candidate
  for i, (d, p) in enumerate(zip(test, pairs)):
    assert all(t in with_cands[(i, s)] for s, t in p)
    for s in sessions.reformulation_sessions(d, pairs=p):
      assert all((a, b) in p for a, b in zip(s.turns, s.turns[1:]))
  shy = detector.Detector(net, params, vocab, LAYOUT, max_span=8, threshold=1e9, text_encoder="none")
  assert detector.predict_pairs(shy, test) == [[] for _ in test]
