"""GreedyLR as an optax transform: a learning-rate scale driven by the loss.

GreedyLR (Subramanian et al., PRML 2023; arXiv 2512.14527) raises the learning
rate while the monitored value keeps reaching new bests and lowers it when it
stops doing so.  This module ports the semantics of the GreedyLR merged into
Hugging Face transformers in 2026 (`transformers.optimization.GreedyLR`) to a
branch-free optax `GradientTransformationExtraArgs` that multiplies incoming
updates by `state.scale`, so it chains after any optimizer::

  tx = optax.chain(optax.adamw(1e-3), schedulers.greedy_lr())
  updates, opt_state = tx.update(grads, opt_state, params, value=loss)

One decision, on value `v` (after optional accumulation and smoothing):

* in cooldown (after a decrease) or warmup (after an increase), exclusively:
  count the refractory counter down and zero both streak counters; `best` is
  not compared or updated;
* otherwise `v` is *good* when it is a new best beyond `threshold`; good
  values extend the good streak and reset the bad one, and vice versa;
* a good streak longer than `patience` (strict `>`) divides the scale by
  `factor` (then warmup starts); otherwise a bad streak longer than
  `patience` multiplies it by `factor` (then cooldown starts);
* the scale is clipped to `[min_scale, max_scale]`; a change smaller than
  `eps` is not applied;
* every decrease that leaves the scale at its floor counts down
  `reset_start`; at zero the state resets (scale 1, best, counters, window;
  the decrease's cooldown still follows); any increase restarts that
  countdown.

Where we differ from the Hugging Face class, and why:

* Bounds are relative to the base learning rate (`min_scale`, `max_scale`)
  instead of absolute `min_lr`/`max_lr`: the transform only sees updates, and
  absolute defaults (HF's `min_lr=1e-3`) silently forbid any decrease when the
  base rate is below them.
* `threshold_mode='rel'` uses `best - threshold * |best|`, which is correct
  for negative values (HF and optax's reduce_on_plateau, optax issue #1767,
  use `best * (1 - threshold)`, which never detects a plateau below zero).
* A NaN/Inf value counts as "not better" and is kept out of the smoothing
  window (in HF it would poison the running sum for good); the scale stays
  finite whatever the values.
* `accumulation_size` averages that many values before each decision, like
  optax's reduce_on_plateau; with the default 1 every call decides.

Every numeric hyperparameter may be a JAX array, so a sweep can be vmapped
inside one jit (e.g. 16 `factor` values); they are validated only when
concrete.  `window_size`, `smooth`, `mode` and `threshold_mode` are static.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from schedulers import _validation

__all__ = [
  "GreedyLRState",
  "greedy_lr",
]


class GreedyLRState(NamedTuple):
  """State of `greedy_lr`: fixed-shape arrays only (jit, scan, vmap, orbax)."""

  scale: jax.Array  # multiplier on the base learning rate; 1.0 at init
  best_value: jax.Array  # best decided value since init/reset (mode's sense)
  num_good: jax.Array  # int32, consecutive new-best decisions
  num_bad: jax.Array  # int32, consecutive not-better decisions
  cooldown_count: jax.Array  # int32, refractory decisions left after a decrease
  warmup_count: jax.Array  # int32, refractory decisions left after an increase
  reset_count: jax.Array  # int32, floor hits left before a reset
  window: jax.Array  # (window_size,) ring buffer of recent values (smoothing)
  window_count: jax.Array  # int32, valid entries in `window`
  window_pos: jax.Array  # int32, next write position in `window`
  acc_count: jax.Array  # int32, values accumulated towards the next decision
  acc_value: jax.Array  # running mean of the accumulated values


def _validate(
  *,
  factor,
  patience,
  threshold,
  cooldown,
  warmup,
  min_scale,
  max_scale,
  window_size,
  reset_start,
  accumulation_size,
  eps,
  mode,
  threshold_mode,
) -> None:
  """Raises ValueError for concrete hyperparameters outside their domain."""
  if mode not in ("min", "max"):
    raise ValueError(f"greedy_lr: mode must be 'min' or 'max', got {mode!r}.")
  if threshold_mode not in ("abs", "rel"):
    raise ValueError(f"greedy_lr: threshold_mode must be 'abs' or 'rel', got {threshold_mode!r}.")
  if not isinstance(window_size, (int, np.integer)) or window_size < 1:
    raise ValueError(f"greedy_lr: window_size must be a Python int >= 1, got {window_size!r}.")

  check = functools.partial(_validation.check, "greedy_lr")
  check("factor", factor, lambda f: (f > 0) & (f < 1), "in (0, 1)")
  check("patience", patience, lambda p: p >= 0, ">= 0")
  check("threshold", threshold, lambda t: t >= 0, ">= 0")
  check("cooldown", cooldown, lambda c: c >= 0, ">= 0")
  check("warmup", warmup, lambda w: w >= 0, ">= 0")
  check("min_scale", min_scale, lambda m: m > 0, "> 0")
  check("max_scale", max_scale, lambda m: m > 0, "> 0")
  check("reset_start", reset_start, lambda r: r >= 0, ">= 0")
  check("accumulation_size", accumulation_size, lambda a: a >= 1, ">= 1")
  check("eps", eps, lambda e: e >= 0, ">= 0")
  if _validation.is_concrete(min_scale) and _validation.is_concrete(max_scale):
    if np.any(np.asarray(min_scale) > 1.0) or np.any(np.asarray(max_scale) < 1.0):
      raise ValueError(
        "greedy_lr: need min_scale <= 1 <= max_scale (the scale starts at 1),"
        f" got min_scale={min_scale!r}, max_scale={max_scale!r}."
      )
  for name, value in (
    ("patience", patience),
    ("cooldown", cooldown),
    ("warmup", warmup),
    ("reset_start", reset_start),
    ("accumulation_size", accumulation_size),
  ):
    if _validation.is_concrete(value) and not np.all(np.mod(np.asarray(value), 1) == 0):
      raise ValueError(f"greedy_lr: {name} must be an integer, got {value!r}.")


def greedy_lr(
  factor: jax.typing.ArrayLike = 0.95,
  patience: jax.typing.ArrayLike = 10,
  threshold: jax.typing.ArrayLike = 1e-6,
  threshold_mode: str = "abs",
  cooldown: jax.typing.ArrayLike = 0,
  warmup: jax.typing.ArrayLike = 0,
  min_scale: jax.typing.ArrayLike = 0.1,
  max_scale: jax.typing.ArrayLike = 10.0,
  smooth: bool = False,
  window_size: int = 50,
  mode: str = "min",
  reset_start: jax.typing.ArrayLike = 500,
  accumulation_size: jax.typing.ArrayLike = 1,
  *,
  eps: jax.typing.ArrayLike = 1e-8,
) -> optax.GradientTransformationExtraArgs:
  """GreedyLR: scales updates up on sustained improvement, down on stagnation.

  Args:
    factor: multiplicative step in (0, 1); decreases multiply by it, increases
      divide by it.
    patience: a streak must be strictly longer than this to act.
    threshold: minimum improvement over the best value to count as good.
    threshold_mode: 'abs' (`best - threshold`) or 'rel'
      (`best - threshold * |best|`, sign-correct).
    cooldown: decisions to ignore after a decrease.
    warmup: decisions to ignore after an increase.
    min_scale: lower bound on the scale, relative to the base learning rate.
    max_scale: upper bound on the scale, relative to the base learning rate.
    smooth: decide on the rolling mean of the last `window_size` values.
    window_size: smoothing window length (static).
    mode: 'min' (lower is better, e.g. a loss) or 'max' (e.g. a reward).
    reset_start: floor hits (decreases that leave the scale at `min_scale`)
      before the state resets to its initial values.
    accumulation_size: values averaged before each decision.
    eps: scale changes smaller than this are not applied.

  Returns:
    A `GradientTransformationExtraArgs` whose `update` needs the keyword-only
    `value` (the monitored scalar) and multiplies updates by the new scale.

  Examples:
    >>> import jax.numpy as jnp, optax, schedulers
    >>> tx = optax.chain(optax.sgd(0.1), schedulers.greedy_lr(patience=0))
    >>> params = {'w': jnp.ones(2)}
    >>> state = tx.init(params)
    >>> _, state = tx.update(params, state, params, value=1.0)
    >>> float(state[1].scale)  # a first new best already beats patience 0
    1.0526...

  References:
    Subramanian, Krishnamoorthy, Murthy, "Dynamic Learning Rate Scheduling
    based on Loss Changes Leads to Faster Convergence", arXiv 2512.14527.
  """
  _validate(
    factor=factor,
    patience=patience,
    threshold=threshold,
    cooldown=cooldown,
    warmup=warmup,
    min_scale=min_scale,
    max_scale=max_scale,
    window_size=window_size,
    reset_start=reset_start,
    accumulation_size=accumulation_size,
    eps=eps,
    mode=mode,
    threshold_mode=threshold_mode,
  )
  sign = 1.0 if mode == "min" else -1.0  # decisions below run on sign * value

  def _initial(dtype) -> GreedyLRState:
    zero = lambda: jnp.zeros((), jnp.int32)  # distinct buffers (donation-safe)
    return GreedyLRState(
      scale=jnp.ones((), dtype),
      best_value=jnp.asarray(sign * jnp.inf, dtype),
      num_good=zero(),
      num_bad=zero(),
      cooldown_count=zero(),
      warmup_count=zero(),
      reset_count=jnp.asarray(reset_start, jnp.int32),
      window=jnp.zeros((window_size,), dtype),
      window_count=zero(),
      window_pos=zero(),
      acc_count=zero(),
      acc_value=jnp.zeros((), dtype),
    )

  def init_fn(params) -> GreedyLRState:
    if params is None or not jax.tree.leaves(params):
      dtype = jnp.float32
    else:
      dtype = jnp.promote_types(optax.tree.dtype(params, "highest"), jnp.float32)
    return _initial(dtype)

  def _is_better(current, best):
    # Both in "minimise" orientation (already multiplied by `sign`).
    margin = threshold * jnp.abs(best) if threshold_mode == "rel" else threshold
    bound = jnp.where(jnp.isinf(best), best, best - margin)
    return jnp.isfinite(current) & (current < bound)

  def _decide(state: GreedyLRState, value: jax.Array) -> GreedyLRState:
    dtype = state.scale.dtype
    finite = jnp.isfinite(value)
    window, window_count, window_pos = (
      state.window,
      state.window_count,
      state.window_pos,
    )
    current = value
    if smooth:  # rolling mean, updated on every decision; non-finite skipped
      window = jnp.where(finite, window.at[window_pos].set(value), window)
      window_count = jnp.where(finite, jnp.minimum(window_count + 1, window_size), window_count)
      window_pos = jnp.where(finite, (window_pos + 1) % window_size, window_pos)
      valid = jnp.arange(window_size) < window_count
      mean = jnp.sum(jnp.where(valid, window, 0)) / jnp.maximum(window_count, 1)
      current = jnp.where(finite, mean.astype(dtype), value)

    in_cooldown = state.cooldown_count > 0
    in_warmup = jnp.logical_and(~in_cooldown, state.warmup_count > 0)
    refractory = in_cooldown | in_warmup

    oriented = sign * current
    better = _is_better(oriented, sign * state.best_value)
    best = jnp.where(better & ~refractory, current, state.best_value)
    num_good = jnp.where(better, state.num_good + 1, 0)
    num_bad = jnp.where(better, 0, state.num_bad + 1)
    increase = ~refractory & (num_good > patience)
    decrease = ~refractory & ~increase & (num_bad > patience)

    up = jnp.minimum(state.scale / factor, max_scale).astype(dtype)
    down = jnp.maximum(state.scale * factor, min_scale).astype(dtype)
    scale = jnp.where(increase & (up - state.scale > eps), up, state.scale)
    scale = jnp.where(decrease & (state.scale - down > eps), down, scale)

    num_good = jnp.where(refractory | increase, 0, num_good)
    num_bad = jnp.where(refractory | decrease, 0, num_bad)
    cooldown_count = jnp.where(
      in_cooldown,
      state.cooldown_count - 1,
      jnp.where(decrease, cooldown, state.cooldown_count),
    ).astype(jnp.int32)
    warmup_count = jnp.where(
      in_warmup,
      state.warmup_count - 1,
      jnp.where(increase, warmup, state.warmup_count),
    ).astype(jnp.int32)

    at_floor = decrease & (scale <= min_scale)
    reset_count = jnp.where(
      increase,
      reset_start,
      jnp.where(at_floor, state.reset_count - 1, state.reset_count),
    ).astype(jnp.int32)
    do_reset = at_floor & (reset_count <= 0)

    decided = state._replace(
      scale=scale.astype(dtype),
      best_value=best.astype(dtype),
      num_good=num_good.astype(jnp.int32),
      num_bad=num_bad.astype(jnp.int32),
      cooldown_count=cooldown_count,
      warmup_count=warmup_count,
      reset_count=reset_count,
      window=window,
      window_count=window_count.astype(jnp.int32),
      window_pos=window_pos.astype(jnp.int32),
    )
    # A reset only follows a decrease, whose cooldown still applies (HF sets
    # the cooldown counter after `_reduce_lr`, which may have reset).
    fresh = _initial(dtype)._replace(
      cooldown_count=jnp.asarray(cooldown, jnp.int32),
      acc_count=state.acc_count,
      acc_value=state.acc_value,
    )
    return jax.tree.map(lambda r, d: jnp.where(do_reset, r, d), fresh, decided)

  def update_fn(updates, state: GreedyLRState, params=None, *, value, **extra_args):
    del params, extra_args
    dtype = state.acc_value.dtype
    value = jnp.asarray(value, dtype)
    if value.ndim != 0:
      raise ValueError(f"greedy_lr: value must be a scalar, got shape {value.shape}.")
    acc_count = state.acc_count + 1
    acc_value = state.acc_value + (value - state.acc_value) / acc_count.astype(dtype)
    ready = acc_count >= accumulation_size
    decided = _decide(state, acc_value)
    new_state = jax.tree.map(lambda d, s: jnp.where(ready, d, s), decided, state)
    new_state = new_state._replace(
      acc_count=jnp.where(ready, 0, acc_count).astype(jnp.int32),
      acc_value=jnp.where(ready, 0.0, acc_value).astype(dtype),
    )
    scale = new_state.scale
    updates = jax.tree.map(lambda u: scale.astype(u.dtype) * u, updates)
    return updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
