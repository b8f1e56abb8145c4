"""common.trainer and common.data: step maths, extra args, NaN guard, epochs, loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import schedulers
from common import data as data_lib
from common import trainer


def _linreg_problem(n=32, d=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  w_true = rng.normal(size=(d,)).astype(np.float32)
  y = (x @ w_true + 0.1 * rng.normal(size=n)).astype(np.float32)
  return {"x": jnp.asarray(x), "y": jnp.asarray(y)}


def mse_loss(params, batch, rng):
  del rng
  pred = batch["x"] @ params["w"] + params["b"]
  return jnp.mean((pred - batch["y"]) ** 2), {"mean_pred": jnp.mean(pred)}


def _state(optimizer, d=3):
  params = {"w": jnp.zeros((d,)), "b": jnp.zeros(())}
  return trainer.TrainState.create(params=params, optimizer=optimizer, rng=jax.random.PRNGKey(0))


def test_sgd_step_matches_numpy():
  batch = _linreg_problem()
  state = _state(optax.sgd(0.1))
  state = state.replace(params={"w": jnp.array([0.5, -0.2, 0.1]), "b": jnp.array(0.3)})
  new_state, metrics = jax.jit(trainer.make_train_step(mse_loss, optax.sgd(0.1)))(state, batch)
  x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
  w, b = np.array([0.5, -0.2, 0.1]), 0.3
  r = x @ w + b - y
  np.testing.assert_allclose(metrics["loss"], np.mean(r**2), rtol=1e-5)
  np.testing.assert_allclose(new_state.params["w"], w - 0.1 * 2 * x.T @ r / len(y), rtol=1e-5)
  np.testing.assert_allclose(new_state.params["b"], b - 0.1 * 2 * np.mean(r), rtol=1e-5)
  assert int(new_state.step) == 1 and int(new_state.nonfinite_count) == 0
  assert not np.array_equal(new_state.rng, state.rng)


def test_loss_reaches_greedy_lr_as_value():
  batch = _linreg_problem()
  optimizer = optax.chain(optax.sgd(0.01), schedulers.greedy_lr(patience=0))
  step = jax.jit(trainer.make_train_step(mse_loss, optimizer))
  state = _state(optimizer)
  state, _ = step(state, batch)  # the first value is always a new best
  np.testing.assert_allclose(schedulers.greedy_scale(state.opt_state), 1 / 0.95, rtol=1e-6)


def test_linesearch_gets_grad_and_value_fn():
  batch = _linreg_problem()
  optimizer = optax.chain(optax.sgd(1.0), optax.scale_by_backtracking_linesearch(max_backtracking_steps=15))
  step = jax.jit(trainer.make_train_step(mse_loss, optimizer))
  state = _state(optimizer)
  losses = []
  for _ in range(5):
    state, m = step(state, batch)
    losses.append(float(m["loss"]))
  assert losses[-1] < 0.5 * losses[0]


def test_nonfinite_update_is_skipped_and_counted():
  batch = _linreg_problem()
  optimizer = optax.chain(optax.adam(0.1), schedulers.greedy_lr())
  step = jax.jit(trainer.make_train_step(mse_loss, optimizer))
  state, _ = step(_state(optimizer), batch)
  bad = dict(batch, y=batch["y"].at[0].set(jnp.nan))
  new_state, metrics = step(state, bad)
  assert not np.isfinite(metrics["loss"])
  assert int(new_state.nonfinite_count) == 1 and int(new_state.step) == 2
  for a, b in zip(
    jax.tree.leaves((state.params, state.opt_state)), jax.tree.leaves((new_state.params, new_state.opt_state))
  ):
    np.testing.assert_array_equal(a, b)
  recovered, _ = step(new_state, batch)  # training continues afterwards
  assert int(recovered.nonfinite_count) == 1
  assert np.all(np.isfinite(recovered.params["w"]))


def test_epoch_scan_equals_python_loop():
  data = _linreg_problem(n=40)
  key = jax.random.PRNGKey(3)
  optimizer = optax.adam(0.05)
  step = trainer.make_train_step(mse_loss, optimizer)
  batch_fn = lambda d, s: data_lib.epoch_batch(d, key, s, 8)
  epoch = trainer.make_epoch(step, batch_fn, num_steps=5, donate=False)
  scanned, metrics = epoch(_state(optimizer), data)
  looped = _state(optimizer)
  losses = []
  for _ in range(5):
    looped, m = jax.jit(step)(looped, batch_fn(data, looped.step))
    losses.append(m["loss"])
  np.testing.assert_allclose(metrics["loss"], np.stack(losses), rtol=1e-6)
  np.testing.assert_allclose(scanned.params["w"], looped.params["w"], rtol=1e-6)


def test_epoch_batch_is_a_permutation_per_epoch():
  data = {"i": jnp.arange(12)}
  key = jax.random.PRNGKey(0)
  epoch0 = np.concatenate([data_lib.epoch_batch(data, key, s, 4)["i"] for s in range(3)])
  epoch1 = np.concatenate([data_lib.epoch_batch(data, key, s, 4)["i"] for s in range(3, 6)])
  assert sorted(epoch0) == list(range(12)) and sorted(epoch1) == list(range(12))
  assert not np.array_equal(epoch0, epoch1)
  with pytest.raises(ValueError, match="batch_size"):
    data_lib.steps_per_epoch(data, 13)


def _loop_setup(poison_step):
  data = _linreg_problem(n=16)

  def loss(params, batch, rng):
    value, aux = mse_loss(params, batch, rng)
    return value, aux

  def batch_fn(d, s):
    b = data_lib.epoch_batch(d, jax.random.PRNGKey(0), s, 8)
    return dict(b, y=jnp.where(s == poison_step, jnp.nan, b["y"]))

  optimizer = optax.sgd(0.05)
  epoch = trainer.make_epoch(trainer.make_train_step(loss, optimizer), batch_fn, num_steps=2)
  return _state(optimizer), epoch, data


def test_train_loop_stop_policy_raises_with_message():
  state, epoch, data = _loop_setup(poison_step=3)
  with pytest.raises(trainer.NonFiniteError, match="nonfinite='skip'"):
    trainer.train_loop(state, epoch_fn=epoch, data=data, steps_per_epoch=2, num_epochs=4, nonfinite="stop")


def test_train_loop_skip_policy_runs_to_the_end_and_evaluates():
  state, epoch, data = _loop_setup(poison_step=3)
  evals = []

  def eval_fn(s):
    evals.append(int(s.step))
    return {"loss": mse_loss(s.params, data, None)[0]}

  def on_eval(s, m):
    return s.replace(rng=s.rng + 0)

  final, history = trainer.train_loop(
    state,
    epoch_fn=epoch,
    data=data,
    steps_per_epoch=2,
    num_epochs=4,
    eval_every=3,
    hooks=trainer.LoopHooks(eval_fn=eval_fn, on_eval=on_eval),
  )
  assert int(final.step) == 8 and int(final.nonfinite_count) == 1
  assert evals == [6, 8]  # every 3rd epoch and after the last
  assert [row["epoch"] for row in history] == [1, 2, 3, 4]
  assert history[-1]["train/nonfinite_count"] == 1
  assert "eval/loss" in history[2] and "eval/loss" not in history[1]
  with pytest.raises(ValueError, match="nonfinite"):
    trainer.train_loop(state, epoch_fn=epoch, data=data, steps_per_epoch=2, num_epochs=1, nonfinite="ignore")
