"""The label-generation model: network contract, losses, label decoding and metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from selflearn.signals import features
from selflearn.sim import annotators
from selflearn.understanding import labels, losses, networks


@pytest.fixture(scope="module")
def dataset(dialogues):
  vocab = features.Vocab.build(t[k]["text"] for d in dialogues for t in d["turns"] for k in ("asr", "response"))
  return features.encode(dialogues[:64], vocab, features.value_vocab(dialogues), max_turns=8, max_tokens=8), vocab


def _model(context, vocab_size=50, values=10):
  return networks.make_dialogue_model(
    turns=5,
    tokens=4,
    vocab_size=vocab_size,
    cat_sizes=tuple(len(v) for v in features.CATEGORICAL.values()),
    num_numeric=len(features.NUMERIC),
    heads=labels.heads(values),
    num_audio=features.AUDIO_SIZE,
    token_dim=8,
    model_dim=8,
    num_layers=1,
    num_heads=2,
    cat_dim=4,
    context=context,
  )


def _batch(rng, b=3, t=5, length=4):
  return {
    "utt_ids": jnp.asarray(rng.integers(1, 50, (b, t, length)), jnp.int32),
    "resp_ids": jnp.asarray(rng.integers(1, 50, (b, t, length)), jnp.int32),
    "utt_mask": jnp.ones((b, t, length), bool),
    "resp_mask": jnp.ones((b, t, length), bool),
    "cat": jnp.zeros((b, t, len(features.CATEGORICAL)), jnp.int32),
    "num": jnp.asarray(rng.normal(size=(b, t, len(features.NUMERIC))), jnp.float32),
    "audio": jnp.asarray(rng.normal(size=(b, t, features.AUDIO_SIZE)), jnp.float32),
    "turn_mask": jnp.asarray([[1, 1, 1, 1, 0]] * b, bool),
  }


@pytest.mark.parametrize("context", [True, False])
def test_context_flows_between_turns_only_in_the_context_model(context):
  net = _model(context)
  params = jax.jit(net.init)(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  batch = _batch(rng)
  out = jax.jit(net.apply)(params, batch)
  assert out["segment"].shape == (3, 5, 3) and out["tags"].shape == (3, 5, 4, len(features.TAGS))
  assert out["values"].shape == (3, 5, 4, 10)
  other = dict(batch, num=batch["num"].at[:, 2].add(5.0))  # change turn 2 only
  out2 = jax.jit(net.apply)(params, other)
  changed = np.abs(np.asarray(out2["segment"] - out["segment"])).max(axis=-1)  # [B, T]
  assert changed[:, 2].min() > 0
  if context:
    assert changed[:, [0, 1, 3]].min() > 0
  else:
    np.testing.assert_allclose(changed[:, [0, 1, 3]], 0.0, atol=1e-6)


def test_swap_responses_swaps_only_valid_turns_from_the_next_dialogue():
  rng = np.random.default_rng(1)
  batch = _batch(rng, b=4)
  out = losses.swap_responses(batch, jax.random.PRNGKey(3), rate=0.5)
  swap = np.asarray(out["y_swap"]).astype(bool)
  assert 0 < swap.sum() < np.asarray(batch["turn_mask"]).sum()
  assert not swap[:, 4].any()  # padding never swaps
  rolled = np.roll(np.asarray(batch["resp_ids"]), 1, axis=0)
  np.testing.assert_array_equal(np.asarray(out["resp_ids"])[swap], rolled[swap])
  np.testing.assert_array_equal(np.asarray(out["resp_ids"])[~swap], np.asarray(batch["resp_ids"])[~swap])
  np.testing.assert_array_equal(out["utt_ids"], batch["utt_ids"])


def test_masked_cross_entropy_ignores_masked_positions():
  logits = jnp.asarray([[[2.0, 0.0], [0.0, 9.0]]])
  y = jnp.asarray([[0, 0]])
  full = losses.masked_cross_entropy(logits, y, jnp.asarray([[True, True]]))
  first = losses.masked_cross_entropy(logits, y, jnp.asarray([[True, False]]))
  assert float(first) == pytest.approx(np.log1p(np.exp(-2.0)), rel=1e-5)
  assert float(full) > float(first)
  assert float(losses.masked_cross_entropy(logits, y, jnp.zeros((1, 2), bool))) == 0.0
  with pytest.raises(ValueError, match="unknown heads"):
    losses.make_loss(lambda p, b: {}, {"nope": 1.0})


def test_label_scores_are_perfect_on_the_truth_and_lower_for_an_annotator(dataset):
  ds, _ = dataset
  mask = ds.inputs["turn_mask"]
  lengths = features.token_masks(ds.inputs)["utt_mask"].sum(-1)
  perfect = labels.label_scores(ds.labels, ds.labels, mask, lengths)
  for k, v in perfect.items():
    if k != "failure_f1" or np.any(ds.labels["success"][mask] == 0):
      assert v == pytest.approx(1.0), k
  noisy = annotators.annotate(ds.labels, mask, annotators.Noise(), seed=0)
  scores = labels.label_scores(noisy, ds.labels, mask, lengths)
  assert scores["segment_accuracy"] < 1 and scores["intent_accuracy"] < 1 and scores["slot_f1"] < 1
  assert scores["segment_accuracy"] > 0.8


def test_model_labels_average_success_over_the_goal():
  goal = np.array([[0, 0, 1, -1]])
  mask = np.array([[True, True, True, False]])
  probs = {
    "segment": np.zeros((1, 4, 3)),
    "intent": np.zeros((1, 4, 5)),
    "tags": np.zeros((1, 4, 2, 3)),
    "values": np.zeros((1, 4, 2, 3)),
    "success": np.array([[[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.5, 0.5]]]),
  }
  out = labels.model_labels(probs, goal, mask)
  np.testing.assert_array_equal(out["success"], [[0, 0, 1, -1]])  # goal 0: mean p = 0.45
  np.testing.assert_allclose(out["success_confidence"][0, :3], [0.55, 0.55, 0.7])
