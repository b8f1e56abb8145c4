"""Networks, losses and span decoding of contextual rephrase detection (`selflearn.rewriting.rephrase`).

`make_model(head="span" | "pair", ...)` returns a `common.encoders.Network`
(`init(key)`, `apply(params, batch, deterministic=, rngs=)`): word, segment
and (optionally) frozen per-turn sentence embeddings are summed and fed to a
pre-LN Transformer (`common.encoders.TransformerEncoder` over feature
vectors, which adds sinusoidal positions and masks padding).  Heads:

* `"span"` (ContReph; BERT's SQuAD head, Devlin et al. 2019 §4.2): start and
  end logits per position, `S·T_i` and `E·T_j`; position 0 ([CLS]) is the
  null span "no rephrase" (SQuAD 2.0);
* `"pair"` (the pairwise baseline): one binary logit from the [CLS] output.

`span_loss` is ½[CE(start) + CE(end)] over the allowed positions;
`decode_spans` finds the best span i <= j < i + max_span inside one
candidate and its margin over the null span.
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from common import encoders

NEG = -1e9  # the logit of a position a span may not use (finite: no NaN in the softmax)


class RephraseModel(nn.Module):
  """See the module docstring; `num_segments` = source + candidates."""

  vocab_size: int
  num_segments: int
  head: str = "span"
  dim: int = 64
  num_layers: int = 2
  num_heads: int = 4
  text_dim: int = 0
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, batch: dict, *, deterministic: bool = True):
    ids, segment = batch["ids"], batch["segment"]
    x = nn.Embed(self.vocab_size, self.dim, name="word")(ids) * self.dim**0.5
    x = x + nn.Embed(self.num_segments, self.dim, name="segment")(segment)
    if self.text_dim:  # a frozen sentence embedding per turn, added to each of its tokens
      turn = jnp.take_along_axis(batch["turn_emb"], segment[..., None], axis=-2)
      x = x + nn.Dense(self.dim, name="text_projection")(turn)
    h, _ = encoders.TransformerEncoder(
      model_dim=self.dim,
      num_layers=self.num_layers,
      num_heads=self.num_heads,
      mlp_dim=2 * self.dim,
      dropout_rate=self.dropout_rate,
      name="encoder",
    )(x, batch["mask"], deterministic=deterministic)
    if self.head == "span":
      logits = nn.Dense(2, name="span_head")(h)  # [B, S, 2]: S·T_i, E·T_j (+ biases, which softmax ignores)
      return logits[..., 0], logits[..., 1]
    return nn.Dense(1, name="pair_head")(h[..., 0, :])[..., 0]


def make_model(*, seq_len: int, num_segments: int, **kwargs) -> encoders.Network:
  """A `RephraseModel` as a `Network`; `kwargs` are its attributes."""
  module = RephraseModel(num_segments=num_segments, **kwargs)
  dummy = {
    "ids": jnp.zeros((1, seq_len), jnp.int32),
    "segment": jnp.zeros((1, seq_len), jnp.int32),
    "mask": jnp.ones((1, seq_len), bool),
  }
  if module.text_dim:
    dummy["turn_emb"] = jnp.zeros((1, num_segments, module.text_dim), jnp.float32)

  def init(key):
    return module.init(key, dummy)

  def apply(params, batch, **kw):
    return module.apply(params, batch, **kw)

  return encoders.Network(init=init, apply=apply)


def allowed(batch: dict) -> jax.Array:
  """`[B, S]`: where a span may start or end: [CLS] (the null span) and the candidates' words."""
  return batch["span_ok"].at[..., 0].set(True)


def span_loss(start: jax.Array, end: jax.Array, batch: dict) -> tuple[jax.Array, dict]:
  """½[CE(start) + CE(end)], softmax over the allowed positions, mean over examples."""
  chex.assert_equal_shape([start, end, batch["span_ok"]])
  ok = allowed(batch)
  ce_start = optax.softmax_cross_entropy_with_integer_labels(jnp.where(ok, start, NEG), batch["y_start"])
  ce_end = optax.softmax_cross_entropy_with_integer_labels(jnp.where(ok, end, NEG), batch["y_end"])
  ls, le = jnp.mean(ce_start), jnp.mean(ce_end)
  return 0.5 * (ls + le), {"loss_start": ls, "loss_end": le}


def pair_loss(logit: jax.Array, batch: dict) -> tuple[jax.Array, dict]:
  """Mean sigmoid cross-entropy of the pairwise "is a rephrase" logit."""
  loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logit, batch["y_pair"].astype(logit.dtype)))
  return loss, {"loss_pair": loss}


def make_loss(apply, head: str, *, train: bool = True):
  """`loss_fn(params, batch, rng) -> (loss, metrics)` of `head`; dropout keyed by `rng` when `train`."""

  def loss_fn(params, batch, rng):
    out = apply(params, batch, deterministic=not train, rngs={"dropout": rng})
    return span_loss(*out, batch) if head == "span" else pair_loss(out, batch)

  return loss_fn


def decode_spans(start: jax.Array, end: jax.Array, span_ok: jax.Array, segment: jax.Array, max_span: int):
  """The best non-null span of each example.

  Spans (i, j) have i <= j < i + `max_span`, both ends at allowed word
  positions (`span_ok`) of the same segment; score s(i, j) = start_i + end_j.

  Returns:
    `(i, j, margin)` `[B]`: the best span (0, 0 where none is allowed) and
    its score minus the null score start_0 + end_0 (-inf where none).
  """
  chex.assert_equal_shape([start, end, span_ok, segment])
  length = start.shape[-1]
  pos = jnp.arange(length)
  valid = (
    span_ok[..., :, None]
    & span_ok[..., None, :]
    & (segment[..., :, None] == segment[..., None, :])
    & (pos[None, :] >= pos[:, None])
    & (pos[None, :] < pos[:, None] + max_span)
  )
  scores = jnp.where(valid, start[..., :, None] + end[..., None, :], -jnp.inf)
  flat = scores.reshape(scores.shape[:-2] + (length * length,))
  best = jnp.argmax(flat, axis=-1)
  i, j = best // length, best % length
  margin = jnp.max(flat, axis=-1) - (start[..., 0] + end[..., 0])
  none = ~jnp.any(valid, axis=(-2, -1))
  return jnp.where(none, 0, i), jnp.where(none, 0, j), margin
