"""The learned extractor of teachable preferences: a word Transformer with an utterance head and BIO tags.

`make_extractor` is a word-level pre-LN Transformer
(`common.encoders.TransformerEncoder`) with a per-utterance head (does not
teach / song / city / artist, `KIND_NAMES`) and a per-word BIO head (key,
value, `TAG_NAMES`), trained through `training.fit` (Adam(W) + GreedyLR by
default) on `encode`d teaching turns; `predict` gives kind probabilities
and tag ids, which `extraction.decode` turns into a catalogue entry.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from common import encoders
from selflearn.signals import features
from selflearn.teaching import turns as turns_lib

KIND_NAMES = ("none", "song", "city", "artist")
TAG_NAMES = ("O", "B-KEY", "I-KEY", "B-VAL", "I-VAL")


def encode(turns: Sequence[turns_lib.TeachingTurn], vocab: features.Vocab, max_words: int) -> dict[str, np.ndarray]:
  """Token ids, masks and labels (`y_kind`, `y_tags`) of `turns`, padded / truncated to `max_words`."""
  ids = np.array([vocab.ids(list(t.words), max_words) for t in turns], np.int32).reshape(len(turns), max_words)
  mask = ids != features.PAD
  tags = np.zeros_like(ids)
  for i, t in enumerate(turns):
    row = [TAG_NAMES.index(x) for x in t.tags[:max_words]]
    tags[i, : len(row)] = row
  kind = np.array([KIND_NAMES.index(t.truth[0]) if t.truth else 0 for t in turns], np.int32)
  return {"ids": ids, "mask": mask, "y_kind": kind, "y_tags": tags}


class Extractor(nn.Module):
  """Word Transformer; per-utterance kind logits `[B, 4]` and per-word BIO logits `[B, L, 5]`."""

  vocab_size: int
  dim: int = 64
  num_layers: int = 2
  num_heads: int = 4
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, ids: jax.Array, mask: jax.Array, *, deterministic: bool = True) -> dict[str, jax.Array]:
    tokens, pooled = encoders.TransformerEncoder(
      model_dim=self.dim,
      num_layers=self.num_layers,
      num_heads=self.num_heads,
      mlp_dim=2 * self.dim,
      vocab_size=self.vocab_size,
      dropout_rate=self.dropout_rate,
      name="encoder",
    )(ids, mask, deterministic=deterministic)
    first = tokens[..., 0, :]  # the first word: position-aware summary next to the mean
    kind = nn.Dense(len(KIND_NAMES), name="kind")(nn.gelu(nn.Dense(self.dim, name="kind_hidden")(
      jnp.concatenate([pooled, first], -1))))  # fmt: skip
    return {"kind": kind, "tags": nn.Dense(len(TAG_NAMES), name="tags")(tokens)}


def make_extractor(*, vocab_size: int, max_words: int, dim: int, num_layers: int, num_heads: int, dropout_rate: float):
  """`Network(init, apply)`: `apply(params, batch, deterministic=, rngs=) -> {"kind", "tags"}` logits."""
  module = Extractor(vocab_size, dim, num_layers, num_heads, dropout_rate)

  def init(key):
    return module.init(key, jnp.ones((1, max_words), jnp.int32), jnp.ones((1, max_words), bool))

  def apply(params, batch, **kw):
    return module.apply(params, batch["ids"], batch["mask"], **kw)

  return encoders.Network(init=init, apply=apply)


def make_loss(apply, *, train: bool):
  """`loss_fn(params, batch, rng) -> (loss, metrics)`: kind cross-entropy + BIO cross-entropy over words."""

  def loss_fn(params, batch, rng):
    out = apply(params, batch, deterministic=not train, rngs={"dropout": rng})
    chex_shape = out["tags"].shape[:-1] == batch["ids"].shape
    assert chex_shape, (out["tags"].shape, batch["ids"].shape)
    kind = optax.softmax_cross_entropy_with_integer_labels(out["kind"], batch["y_kind"]).mean()
    ce = optax.softmax_cross_entropy_with_integer_labels(out["tags"], batch["y_tags"])
    w = batch["mask"].astype(ce.dtype)
    tags = jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)
    return kind + tags, {"loss_kind": kind, "loss_tags": tags}

  return loss_fn


def predict(network, params, batch: Mapping[str, np.ndarray], *, chunk: int = 512) -> dict[str, np.ndarray]:
  """Kind probabilities `[N, 4]` and BIO tag ids `[N, L]` in fixed-size chunks (one compilation)."""
  n = int(batch["ids"].shape[0])
  fn = jax.jit(lambda p, b: network.apply(p, b))
  size = min(chunk, max(n, 1))
  kinds, tags = [], []
  for start in range(0, n, size):
    idx = np.minimum(np.arange(start, start + size), n - 1)
    out = fn(params, {"ids": jnp.asarray(batch["ids"][idx]), "mask": jnp.asarray(batch["mask"][idx])})
    keep = min(size, n - start)
    kinds.append(np.asarray(jax.nn.softmax(out["kind"], -1))[:keep])
    tags.append(np.asarray(jnp.argmax(out["tags"], -1))[:keep])
  return {"kind": np.concatenate(kinds), "tags": np.concatenate(tags)}
