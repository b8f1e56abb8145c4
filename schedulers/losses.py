"""Losses of the schedulers binary: closures over a network (brax `make_losses`)."""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import optax

from common import encoders


def make_losses(network: encoders.Network) -> tuple[Callable, Callable]:
  """Returns `(train_loss, evaluate)` for softmax classification.

  `train_loss(params, batch, rng) -> (mean cross-entropy, {'accuracy'})` is
  the `common.trainer` loss signature; `evaluate(params, split) -> {'loss',
  'accuracy'}` scores a whole split at once.
  """

  def _scores(params, batch):
    logits = network.apply(params, batch["x"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
    accuracy = jnp.argmax(logits, axis=-1) == batch["y"]
    return jnp.mean(loss), jnp.mean(accuracy)

  def train_loss(params, batch, rng):
    del rng
    loss, accuracy = _scores(params, batch)
    return loss, {"accuracy": accuracy}

  def evaluate(params, split):
    loss, accuracy = _scores(params, split)
    return {"loss": loss, "accuracy": accuracy}

  return train_loss, evaluate
