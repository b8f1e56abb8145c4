"""GreedyLR with a flax.nnx optimizer: same results as plain optax.

`nnx.Optimizer.opt_state` has `nnx.Variable` (`OptArray`) leaves, not arrays;
`greedy_scale`, `observe` and `find_state` must take it as is.  Each test
trains a small `nnx.Linear` and the same model as a plain parameter dict with
plain optax, and requires equal scales (and parameters).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import schedulers
from schedulers import state_utils

LR = 1e-2
# Validation values of the per-eval runs: better, worse, worse, best, ...
VAL_LOSSES = (1.0, 0.5, 0.8, 0.9, 0.4, 0.45, 0.3)


def _data():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 3)), jnp.float32)
  y = x @ jnp.asarray([[1.0], [-2.0], [0.5]])
  return x, y


def _nnx_run(tx):
  model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
  params = {"kernel": jnp.asarray(model.kernel[...]), "bias": jnp.asarray(model.bias[...])}
  return model, nnx.Optimizer(model, tx, wrt=nnx.Param), params


def _nnx_step(model, optimizer, x, y, **value):
  def loss_fn(m):
    return jnp.mean((m(x) - y) ** 2)

  loss, grads = nnx.value_and_grad(loss_fn)(model)
  if value.pop("use_loss", False):
    value = {"value": loss}
  optimizer.update(model, grads, **value)
  return loss


def _optax_step(tx, params, opt_state, x, y, use_loss=False):
  def loss_fn(p):
    return jnp.mean((x @ p["kernel"] + p["bias"] - y) ** 2)

  loss, grads = jax.value_and_grad(loss_fn)(params)
  extra = {"value": loss} if use_loss else {}
  updates, opt_state = tx.update(grads, opt_state, params, **extra)
  return optax.apply_updates(params, updates), opt_state, loss


def _assert_params_match(model, params):
  np.testing.assert_allclose(np.asarray(model.kernel[...]), params["kernel"], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(np.asarray(model.bias[...]), params["bias"], rtol=1e-5, atol=1e-7)


def test_per_step_scale_is_an_array_and_matches_plain_optax():
  tx = optax.chain(optax.adamw(LR), schedulers.greedy_lr(patience=1))
  model, optimizer, params = _nnx_run(tx)
  opt_state = tx.init(params)
  x, y = _data()
  nnx_step = nnx.jit(lambda m, o: _nnx_step(m, o, x, y, use_loss=True))
  optax_step = jax.jit(lambda p, s: _optax_step(tx, p, s, x, y, use_loss=True))

  scale = schedulers.greedy_scale(optimizer.opt_state)
  assert isinstance(scale, jax.Array) and float(scale) == 1.0
  scales, ref_scales = [], []
  for _ in range(12):
    nnx_step(model, optimizer)
    params, opt_state, _ = optax_step(params, opt_state)
    scale = schedulers.greedy_scale(optimizer.opt_state)
    assert isinstance(scale, jax.Array) and scale.shape == ()
    scales.append(float(scale))
    ref_scales.append(float(schedulers.greedy_scale(opt_state)))
  np.testing.assert_allclose(scales, ref_scales, rtol=1e-6)
  assert len(set(scales)) > 1  # the scale did move
  _assert_params_match(model, params)
  state = state_utils.find_state(optimizer.opt_state, schedulers.GreedyLRState)
  assert all(isinstance(v, jax.Array) for v in state)


@pytest.mark.parametrize("jit_observe", [False, True])
def test_per_eval_observe_assigns_back_and_matches_plain_optax(jit_observe):
  greedy = schedulers.greedy_lr(patience=0)
  tx = optax.chain(optax.adamw(LR), schedulers.on_eval(greedy))
  model, optimizer, params = _nnx_run(tx)
  opt_state = tx.init(params)
  x, y = _data()
  nnx_step = nnx.jit(lambda m, o: _nnx_step(m, o, x, y))
  optax_step = jax.jit(lambda p, s: _optax_step(tx, p, s, x, y))

  def evaluate(opt, value):  # the documented form
    opt.opt_state = schedulers.observe(opt.opt_state, greedy, value=value)

  if jit_observe:
    evaluate = nnx.jit(evaluate)

  scales, ref_scales = [], []
  for val_loss in VAL_LOSSES:
    for _ in range(2):
      nnx_step(model, optimizer)
      params, opt_state, _ = optax_step(params, opt_state)
    evaluate(optimizer, jnp.float32(val_loss))
    opt_state = schedulers.observe(opt_state, greedy, value=val_loss)
    scale = schedulers.greedy_scale(optimizer.opt_state)
    assert isinstance(scale, jax.Array)
    scales.append(float(scale))
    ref_scales.append(float(schedulers.greedy_scale(opt_state)))
  np.testing.assert_allclose(scales, ref_scales, rtol=1e-6)
  assert len(set(scales)) > 2
  # Training after the last evaluation applies the stepped scale.
  nnx_step(model, optimizer)
  params, opt_state, _ = optax_step(params, opt_state)
  _assert_params_match(model, params)
  # The state is still an nnx optimizer state (Variables, not bare arrays).
  assert all(
    isinstance(v, nnx.Variable)
    for v in jax.tree.leaves(optimizer.opt_state, is_leaf=lambda v: isinstance(v, nnx.Variable))
  )


def test_observe_does_not_mutate_the_given_nnx_state():
  greedy = schedulers.greedy_lr(patience=0)
  tx = optax.chain(optax.sgd(LR), schedulers.on_eval(greedy))
  _, optimizer, _ = _nnx_run(tx)
  old = optimizer.opt_state
  new = schedulers.observe(old, greedy, value=1.0)
  assert float(schedulers.greedy_scale(old)) == 1.0
  assert float(schedulers.greedy_scale(new)) == pytest.approx(1 / 0.95)
  assert jax.tree.structure(nnx.pure(new)) == jax.tree.structure(nnx.pure(old))
  # Plain (already pure) states are still returned as plain arrays.
  pure = schedulers.observe(nnx.pure(old), greedy, value=1.0)
  assert all(isinstance(v, jax.Array) for v in jax.tree.leaves(pure))
