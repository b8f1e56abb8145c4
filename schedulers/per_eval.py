"""Stepping a loss-driven transform once per evaluation, on validation loss.

The per-step form (`optax.chain(adamw, greedy_lr())` + `value=train_loss`)
decides on every optimizer step.  The per-eval form (the Hugging Face Trainer
integration of GreedyLR) decides only after each evaluation, on the
validation loss.  As in optax's reduce_on_plateau example, the controller
state is updated out of band; here it lives inside the optimizer state (so
checkpoints carry it) wrapped in `PerEvalState`, and the chained transform
only applies its current scale::

  controller = schedulers.greedy_lr(patience=2)
  tx = optax.chain(optax.adamw(1e-3), schedulers.on_eval(controller))
  ...                                   # train steps: tx.update(grads, s, p)
  opt_state = schedulers.observe(opt_state, controller, value=val_loss)
  lr = 1e-3 * schedulers.greedy_scale(opt_state)   # for logging

Both functions also take a flax.nnx optimizer's state as is (its leaves are
`nnx.Variable`s): `greedy_scale(opt.opt_state)` returns an array, and
`opt.opt_state = observe(opt.opt_state, controller, value=val_loss)` stores
the stepped state (also inside `nnx.jit`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

from schedulers import state_utils
from schedulers.greedy_lr import GreedyLRState


class PerEvalState(NamedTuple):
  """Marks a controller state that is stepped by `observe`, not by `update`."""

  controller: Any


def on_eval(
  controller: optax.GradientTransformationExtraArgs,
) -> optax.GradientTransformationExtraArgs:
  """Applies `controller`'s current scale to updates without stepping it.

  Args:
    controller: a loss-driven transform whose state has a `scale` field,
      e.g. `greedy_lr(...)` or `optax.contrib.reduce_on_plateau(...)`.

  Returns:
    A transform whose `update` ignores `value` and multiplies updates by the
    scale; step the controller with `observe` after each evaluation.
  """

  def init_fn(params):
    return PerEvalState(controller.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    scale = state.controller.scale
    updates = jax.tree.map(lambda u: scale.astype(u.dtype) * u, updates)
    return updates, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _is_per_eval(x) -> bool:
  return isinstance(x, PerEvalState)


def observe(opt_state, controller, *, value) -> Any:
  """Steps every `PerEvalState` inside `opt_state` with one evaluation value.

  Pure and jit-safe; `controller` must be the transform given to `on_eval`.
  A flax.nnx state (`nnx.Optimizer.opt_state`, leaves `nnx.Variable`s) is
  not mutated: the result holds new Variables of the same types, to assign
  back with `opt.opt_state = observe(opt.opt_state, controller, value=v)`.
  """

  def step(node):
    if not _is_per_eval(node):
      return node
    _, new = controller.update(None, node.controller, None, value=value)
    return PerEvalState(new)

  arrays = state_utils.unwrap(opt_state)
  new_state = jax.tree.map(step, arrays, is_leaf=_is_per_eval)
  return state_utils.rewrap(opt_state, new_state)


def greedy_scale(opt_state) -> jax.Array:
  """Returns the current scale of the (first) GreedyLR state in `opt_state`.

  Works for per-step (`greedy_lr` in a chain) and per-eval (`on_eval`) use;
  multiply by the base learning rate to log the effective rate.  A flax.nnx
  `opt.opt_state` is accepted as is; the result is always an array.

  Raises:
    ValueError: when `opt_state` holds no `GreedyLRState`.
  """
  return state_utils.find_state(opt_state, GreedyLRState).scale
