"""Losses of the dialogue model: masked multi-task cross-entropy and the response-swap pretext task.

Batches are dicts holding the model inputs (`features`) and labels under
`y_<name>`.  Every head's loss is a cross-entropy averaged over its valid
positions (`HEAD_MASKS`); the total is the weighted sum.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

# head -> (label key, validity mask of a batch)
HEAD_MASKS: Mapping[str, tuple[str, Callable[[dict], jax.Array]]] = {
  "segment": ("y_segment", lambda b: b["turn_mask"]),
  "success": ("y_success", lambda b: b["turn_mask"] & (b["y_success"] >= 0)),
  "intent": ("y_intent", lambda b: b["turn_mask"]),
  "fpi": ("y_fpi", lambda b: b["turn_mask"]),
  "tags": ("y_tags", lambda b: b["utt_mask"]),
  "values": ("y_values", lambda b: b["utt_mask"] & (b["y_tags"] > 0)),
  "swap": ("y_swap", lambda b: b["swap_mask"]),
}


def masked_cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy over the positions where `mask` is true (0 if none)."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
  w = mask.astype(ce.dtype)
  return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)


def swap_responses(batch: dict, key: jax.Array, rate: float = 0.5) -> dict:
  """The keynote's synthetic defects: responses swapped in from another dialogue.

  Each valid turn's response (its token ids and, if present, its frozen
  embedding) is replaced, with probability `rate`, by the response of the
  same turn position in the next dialogue of the batch (a roll), when that
  turn exists.  Adds `y_swap` (1 = swapped) and `swap_mask`.
  """
  partner_valid = jnp.roll(batch["turn_mask"], 1, axis=0)
  swap = batch["turn_mask"] & partner_valid & (jax.random.uniform(key, batch["turn_mask"].shape) < rate)
  out = dict(batch)
  for name in ("resp_ids", "resp_mask", "resp_emb"):
    if name in batch:
      x = batch[name]
      s = swap.reshape(swap.shape + (1,) * (x.ndim - swap.ndim))
      out[name] = jnp.where(s, jnp.roll(x, 1, axis=0), x)
  out["y_swap"] = swap.astype(jnp.int32)
  out["swap_mask"] = batch["turn_mask"] & partner_valid
  return out


def make_loss(apply: Callable, weights: Mapping[str, float], *, swap_rate: float | None = None, train: bool = True):
  """`loss_fn(params, batch, rng) -> (loss, metrics)` for `common.trainer.make_train_step`.

  Args:
    apply: the model's `apply(params, batch, deterministic=, rngs=) -> {head: logits}`.
    weights: head -> loss weight (heads not listed are ignored).
    swap_rate: if set, the batch first gets `swap_responses` (pretraining).
    train: dropout on (keyed by `rng`); False for validation losses.
  """
  unknown = set(weights) - set(HEAD_MASKS)
  if unknown:
    raise ValueError(f"unknown heads {sorted(unknown)}; known: {sorted(HEAD_MASKS)}")

  def loss_fn(params, batch, rng):
    swap_key, dropout_key = jax.random.split(rng)
    if swap_rate is not None:
      batch = swap_responses(batch, swap_key, swap_rate)
    logits = apply(params, batch, deterministic=not train, rngs={"dropout": dropout_key})
    total, metrics = 0.0, {}
    for head, w in weights.items():
      key, mask_fn = HEAD_MASKS[head]
      loss = masked_cross_entropy(logits[head], batch[key], mask_fn(batch))
      metrics[f"loss_{head}"] = loss
      total = total + w * loss
    return total, metrics

  return loss_fn
