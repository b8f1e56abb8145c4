"""Device-resident datasets and step-indexed minibatches.

A minibatch is a pure function of `(dataset, data_key, step)`: epoch `e` uses
the permutation drawn from `fold_in(data_key, e)`.  The data order therefore
depends only on the step counter stored in the train state, so a run resumed
from a checkpoint sees exactly the batches an uninterrupted run would, and
seeds can be vmapped.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def num_examples(dataset: Any) -> int:
  """Leading-axis size shared by every leaf of `dataset`."""
  sizes = {leaf.shape[0] for leaf in jax.tree.leaves(dataset)}
  if len(sizes) != 1:
    raise ValueError(f"dataset leaves disagree on their leading size: {sorted(sizes)}")
  return sizes.pop()


def steps_per_epoch(dataset: Any, batch_size: int) -> int:
  """Full batches per pass over `dataset` (the remainder is dropped)."""
  n = num_examples(dataset)
  if not 1 <= batch_size <= n:
    raise ValueError(f"batch_size={batch_size} must be in [1, {n}] (the dataset size).")
  return n // batch_size


def epoch_permutation(data_key: jax.Array, epoch: jax.Array, n: int) -> jax.Array:
  """The example order of `epoch`: a permutation of `range(n)`."""
  return jax.random.permutation(jax.random.fold_in(data_key, epoch), n)


def epoch_permutations(data_key: jax.Array, n: int, num_epochs: int) -> jax.Array:
  """`[num_epochs, n]`: every epoch's order at once (draw once per run).

  Drawing a permutation sorts `n` keys; doing it once per epoch (or run)
  rather than once per step matters when the model is small.
  """
  return jax.vmap(lambda e: epoch_permutation(data_key, e, n))(jnp.arange(num_epochs))


def batch_from_permutation(dataset: Any, permutation: jax.Array, step: jax.Array, batch_size: int) -> Any:
  """The minibatch of global `step` given its epoch's `permutation`."""
  per_epoch = permutation.shape[0] // batch_size
  idx = jax.lax.dynamic_slice_in_dim(permutation, (step % per_epoch) * batch_size, batch_size)
  return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), dataset)


def epoch_batch(dataset: Any, data_key: jax.Array, step: jax.Array, batch_size: int) -> Any:
  """The minibatch for global `step`: shuffling without replacement per epoch.

  Self-contained but re-draws the epoch's permutation at every call; hot
  loops should draw it once (`epoch_permutation(s)`) and use
  `batch_from_permutation`, which gives identical batches.
  """
  n = num_examples(dataset)
  epoch = step // (n // batch_size)
  return batch_from_permutation(dataset, epoch_permutation(data_key, epoch, n), step, batch_size)
