"""Tests of the learning-rate control environment on the digits MLP.

One small task (a first interval and 8 decisions x 5 SGD steps, 16 steps per
epoch, so decisions straddle epochs) and two compiled functions serve every test: a vmapped
16-env rollout under jit and `run_schedule`. The task's actions include a
x1e8 rate jump with `lr_bounds[1]=1e38`, so overflowing updates (the
non-finite guard) are reached as well as a merely diverged network.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common import data as data_lib
from common import ppo
from schedulers import data as digits_data
from schedulers import losses, networks
from schedulers.learned import dnn_env, transform

NUM_ENVS = 16
NUM_DECISIONS = 8
STEPS = 5
MULTIPLIERS = (0.5, 0.8, 1.0, 1.25, 2.0, 1e8)
KEEP, HALVE, DOUBLE, BLOW_UP = 2, 0, 4, 5
INITIAL_LR = 0.5
LR_BOUNDS = (0.05, 1e38)
GAMMA, LAMBDA = 0.7, 0.3


@pytest.fixture(scope="module")
def task():
  return dnn_env.make_dnn_task(
    steps_per_decision=STEPS,
    num_decisions=NUM_DECISIONS,
    initial_lr=INITIAL_LR,
    multipliers=MULTIPLIERS,
    lr_bounds=LR_BOUNDS,
    reward_gamma=GAMMA,
    reward_lambda=LAMBDA,
  )


def _rollout(task, keys, actions):
  """Vmapped episode: reset, then `actions[t]` ([T, B]) at step t."""
  state, obs = jax.vmap(task.env.reset)(keys)

  def body(state, action):
    state, obs, reward, done = jax.vmap(task.env.step)(state, action)
    per_step = {
      "obs": obs,
      "reward": reward,
      "done": done,
      "val_loss": state.val_loss,
      "lr": jax.vmap(task.learning_rate)(state),
      "nonfinite": state.nonfinite_updates,
    }
    return state, per_step

  first = {"obs": obs, "val_loss": state.val_loss, "lr": jax.vmap(task.learning_rate)(state)}
  final, steps = jax.lax.scan(body, state, actions)
  return first, final, steps, jax.vmap(task.test_loss)(final)


@pytest.fixture(scope="module")
def rollout(task):
  return jax.jit(functools.partial(_rollout, task))


@pytest.fixture(scope="module")
def run_schedule(task):
  return jax.jit(task.run_schedule)


@pytest.fixture(scope="module")
def keys():
  return jax.random.split(jax.random.key(0), NUM_ENVS)


def _finite(tree) -> bool:
  return all(bool(np.all(np.isfinite(x))) for x in jax.tree.leaves(tree))


def test_env_contract_shapes_and_dtypes(task):
  env = task.env
  assert isinstance(env, ppo.Env)
  assert env.num_actions == len(MULTIPLIERS)
  assert env.observation_size == transform.OBSERVATION_SIZE == 7
  state, obs = jax.jit(env.reset)(jax.random.key(1))
  assert obs.shape == (env.observation_size,) and obs.dtype == jnp.float32
  np.testing.assert_allclose(obs[1:4], [0.0, 1.0, 0.0])  # no regression yet, full budget, initial rate
  assert int(state.step) == STEPS and int(state.decision) == 0  # reset ran the first interval
  state, obs, reward, done = jax.jit(env.step)(state, jnp.int32(DOUBLE))
  assert obs.shape == (env.observation_size,) and obs.dtype == jnp.float32
  assert reward.shape == () and reward.dtype == jnp.float32
  assert done.shape == () and done.dtype == jnp.bool_
  assert int(state.step) == 2 * STEPS and int(state.decision) == 1
  np.testing.assert_allclose(task.learning_rate(state), 2 * INITIAL_LR)
  assert not bool(done)


def test_reset_observation_summarises_the_first_interval(task):
  """Reset's observation: mean minibatch loss and update-direction norms of the first STEPS plain SGD steps."""
  key = jax.random.key(2)
  _, obs = jax.jit(task.env.reset)(key)
  init_key, data_key = jax.random.split(key)
  network = networks.make_classifier(64, (64,), 10)
  params = network.init(init_key)
  train, _, _ = digits_data.load_digits(seed=0)
  train = jax.tree.map(jnp.asarray, train)
  perm = data_lib.epoch_permutation(data_key, 0, train["x"].shape[0])
  train_loss, _ = losses.make_losses(network)
  sgd = optax.sgd(INITIAL_LR, momentum=0.9)
  opt_state = sgd.init(params)
  values, norms = [], []
  for step in range(STEPS):
    batch = data_lib.batch_from_permutation(train, perm, jnp.int32(step), 64)
    value, grads = jax.value_and_grad(lambda p, b: train_loss(p, b, None)[0])(params, batch)
    updates, opt_state = sgd.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    layers = [
      np.linalg.norm(np.concatenate([np.ravel(updates["params"][n]["kernel"]), updates["params"][n]["bias"]]))
      for n in ("hidden_0", "hidden_1")
    ]
    values.append(float(value))
    norms.append([np.sqrt(np.sum(np.square(layers))), max(layers), min(layers)])
  np.testing.assert_allclose(obs[0], np.log(np.mean(values)), rtol=1e-5)
  np.testing.assert_allclose(obs[4:], np.log(np.mean(norms, axis=0)), rtol=1e-4)


def test_vmapped_episode_under_jit(task, rollout, keys):
  actions = jax.random.randint(jax.random.key(3), (NUM_DECISIONS, NUM_ENVS), 0, DOUBLE + 1, jnp.int32)
  first, final, steps, test_loss = rollout(keys, actions)
  assert first["obs"].shape == (NUM_ENVS, task.env.observation_size)
  assert steps["obs"].shape == (NUM_DECISIONS, NUM_ENVS, task.env.observation_size)
  assert steps["reward"].shape == steps["done"].shape == (NUM_DECISIONS, NUM_ENVS)
  assert test_loss.shape == (NUM_ENVS,)
  last = np.arange(NUM_DECISIONS)[:, None] == NUM_DECISIONS - 1
  np.testing.assert_array_equal(steps["done"], np.broadcast_to(last, (NUM_DECISIONS, NUM_ENVS)))
  np.testing.assert_array_equal(final.step, (NUM_DECISIONS + 1) * STEPS)
  assert _finite(steps) and _finite(test_loss)
  # Each env drew its own init and data order.
  assert len(np.unique(np.asarray(first["val_loss"]))) == NUM_ENVS


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
def test_keep_episode_equals_constant_run_schedule(task, rollout, run_schedule, keys):
  """'Keep' replays the constant schedule (the same run, up to vmapped-vs-single float rounding)."""
  first, _, steps, test_loss = rollout(keys, jnp.full((NUM_DECISIONS, NUM_ENVS), KEEP, jnp.int32))
  constant = jnp.full(NUM_DECISIONS + 1, INITIAL_LR)
  for i in (0, 7):
    val_losses, schedule_test_loss = run_schedule(keys[i], constant)
    np.testing.assert_allclose(first["val_loss"][i], val_losses[0], rtol=1e-5)
    np.testing.assert_allclose(steps["val_loss"][:, i], val_losses[1:], rtol=1e-5)
    np.testing.assert_allclose(test_loss[i], schedule_test_loss, rtol=1e-5)
  # Same key, same run, bitwise; another key, another run.
  again, _ = run_schedule(keys[7], constant)
  other, _ = run_schedule(keys[1], constant)
  np.testing.assert_array_equal(again, val_losses)
  assert not np.allclose(other, again)
  # run_tail with a constant tail is the same run again.
  record = jax.jit(lambda k: task.run_tail(k, optax.identity()))(keys[7])
  np.testing.assert_allclose(record.val_losses, val_losses, rtol=1e-5)
  np.testing.assert_allclose(record.lrs, INITIAL_LR, rtol=1e-5)


def test_validation_loss_decreases_at_a_sensible_rate(task, run_schedule):
  key = jax.random.key(4)
  curve, test_loss = run_schedule(key, jnp.full(NUM_DECISIONS + 1, 0.05))
  curve = np.asarray(curve)
  assert np.all(np.diff(curve) < 0), curve
  assert curve[-1] < 0.3 * curve[0]
  assert float(test_loss) < 0.3 * curve[0]


def test_exploding_rate_stays_finite_and_punished(task, rollout, keys):
  """x2 per step diverges the network; x1e8 overflows the updates, which are skipped."""
  actions = np.full((NUM_DECISIONS, NUM_ENVS), DOUBLE, np.int32)
  actions[:, 8:] = BLOW_UP
  first, final, steps, test_loss = rollout(keys, jnp.asarray(actions))
  assert _finite(steps) and _finite(test_loss) and _finite(final.params) and _finite(final.opt_state)
  np.testing.assert_allclose(steps["lr"][-1, :8], INITIAL_LR * 2.0**NUM_DECISIONS, rtol=1e-6)
  np.testing.assert_allclose(steps["lr"][-1, 8:], LR_BOUNDS[1], rtol=1e-6)  # clipped at the upper bound
  np.testing.assert_array_equal(steps["nonfinite"][:, :8], 0)
  assert np.all(steps["nonfinite"][-1, 8:] > 0)
  # Diverged runs sit at the loss cap and keep getting large negative rewards.
  np.testing.assert_allclose(steps["val_loss"][-1], 10.0)
  assert np.all(steps["reward"][-1] < -5.0)
  obs = np.asarray(steps["obs"])
  assert np.all(np.abs(obs) <= 30.0)
  assert np.all(np.abs(obs[..., 3]) <= np.log(LR_BOUNDS[1] / INITIAL_LR) + 1e-3)


def test_rewards_and_observations_follow_the_formula(task, rollout, keys):
  actions = np.asarray(jax.random.randint(jax.random.key(5), (NUM_DECISIONS, NUM_ENVS), 0, DOUBLE + 1, jnp.int32))
  first, _, steps, _ = rollout(keys, jnp.asarray(actions))
  best = np.asarray(first["val_loss"], np.float64)
  best_train = np.asarray(first["obs"][:, 0], np.float64)  # log interval-mean training loss
  lr = np.full(NUM_ENVS, INITIAL_LR)
  for t in range(NUM_DECISIONS):
    val = np.asarray(steps["val_loss"][t], np.float64)
    budget_left = (NUM_DECISIONS - t - 1) / NUM_DECISIONS
    lr = np.clip(lr * np.asarray(MULTIPLIERS)[actions[t]], *LR_BOUNDS)
    np.testing.assert_allclose(steps["reward"][t], GAMMA * (best - val) + LAMBDA * budget_left, rtol=1e-5, atol=1e-6)
    obs = np.asarray(steps["obs"][t], np.float64)
    np.testing.assert_allclose(obs[:, 1], obs[:, 0] - best_train, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(obs[:, 2], budget_left, atol=1e-6)
    np.testing.assert_allclose(obs[:, 3], np.log(lr / INITIAL_LR), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(steps["lr"][t], lr, rtol=1e-6)
    best = np.minimum(best, val)
    best_train = np.minimum(best_train, obs[:, 0])


@pytest.mark.parametrize(
  "kwargs",
  [
    {"initial_lr": 2.0},
    {"lr_bounds": (0.0, 1.0)},
    {"lr_bounds": (1.0, 0.1), "initial_lr": 0.5},
    {"multipliers": (1.0,)},
    {"multipliers": (0.5, -1.0)},
    {"steps_per_decision": 0},
    {"batch_size": 5000},
    {"momentum": 1.0},
  ],
)
def test_invalid_arguments_raise(kwargs):
  with pytest.raises(ValueError):
    dnn_env.make_dnn_env(**kwargs)
