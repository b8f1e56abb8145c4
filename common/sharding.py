"""Data-parallel layout over a `jax.sharding.Mesh` of all devices.

One mesh axis, `data`: batches are split along their leading axis, params and
optimizer state are replicated.  Under `jax.jit` XLA's SPMD partitioner then
inserts the gradient all-reduce, so the same step function runs on 1 CPU, 8
emulated CPU devices or a TPU slice.  No `pmap`.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named `data` over `devices` (default: all global devices)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf of `tree` on all devices of `mesh`."""
  return jax.device_put(tree, replicated(mesh))


def constrain_batch(batch: Any, mesh: Mesh | None) -> Any:
  """Inside jit: asks XLA to shard `batch` along its leading axis.

  A no-op when `mesh` is None or has a single device, so single-device
  programs stay exactly as written.
  """
  if mesh is None or mesh.size == 1:
    return batch
  return jax.lax.with_sharding_constraint(batch, batch_sharded(mesh))
