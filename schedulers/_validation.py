"""Hyperparameter checks shared by the transform factories of `schedulers`.

Factories validate only *concrete* values: a traced hyperparameter (a vmapped
sweep, a learned schedule) passes through unchecked, as in optax.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
  """False for JAX tracers (values only known at run time)."""
  return not isinstance(x, jax.core.Tracer)


def check(prefix: str, name: str, value: Any, ok: Callable[[np.ndarray], Any], requirement: str) -> None:
  """Raises ValueError when a concrete `value` is non-finite or fails `ok`."""
  if is_concrete(value):
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or not np.all(ok(arr)):
      raise ValueError(f"{prefix}: {name} must be {requirement}, got {value!r}.")


def check_int(prefix: str, name: str, value: Any, minimum: int) -> None:
  """Raises ValueError unless `value` is a Python/NumPy int >= `minimum`."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{prefix}: {name} must be a Python int >= {minimum}, got {value!r}.")


def check_learning_rate(prefix: str, learning_rate: Any) -> None:
  """A scalar learning rate >= 0 (concrete values only)."""
  if jnp.ndim(learning_rate) != 0:
    raise ValueError(f"{prefix}: learning_rate must be a scalar, got shape {jnp.shape(learning_rate)}.")
  check(prefix, "learning_rate", learning_rate, lambda a: a >= 0, ">= 0")
