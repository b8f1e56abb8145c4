"""Tests of the NMF learning-rate environment (`schedulers.learned.nmf_env`).

The `common.ppo.Env` contract (shapes, dtypes, jit + vmap over 64 envs), the
action 'keep' against `nmf.train` with a constant clipped schedule, returns
telescoping to log(f_0 / f_T), the clip at every SGD step, finiteness under
extreme action sequences, and `features` against a NumPy reference.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import ppo
from schedulers.learned import nmf, nmf_env

SMALL = dict(m=16, n=24, rank=3, noise=0.1, batch_size=6, steps_per_decision=5, num_decisions=6)
KEEP = 2  # index of the multiplier 1.0 in the default action set


def make(**overrides):
  kwargs = {**SMALL, **overrides}
  return nmf_env.make_nmf_env(**kwargs), nmf_env.make_nmf_config(**kwargs)


@functools.cache
def episode_fn(num_decisions: int, overrides: tuple):
  """One compiled episode per setting: (key, actions) -> states, obs, rewards, dones, traces."""
  _, config = make(num_decisions=num_decisions, **dict(overrides))

  @jax.jit
  def run(key, actions):
    state, obs0 = nmf_env.env_reset(config, key)

    def body(state, action):
      state, obs, reward, done, trace = nmf_env.env_step_with_trace(config, state, action)
      return state, (obs, reward, done, trace, state.lr, state.eta_max)

    final, outs = jax.lax.scan(body, state, actions)
    return state, obs0, final, outs

  return run


def episode(actions, seed=0, **overrides):
  run = episode_fn(len(actions), tuple(sorted(overrides.items())))
  return run(jax.random.key(seed), jnp.asarray(actions, jnp.int32))


def test_env_contract_shapes_and_dtypes():
  env, _ = make()
  assert isinstance(env, ppo.Env)
  assert env.observation_size == 6 and env.num_actions == 5
  state, obs = jax.jit(env.reset)(jax.random.key(0))
  assert obs.shape == (6,) and obs.dtype == jnp.float32
  np.testing.assert_allclose(obs, [0, 0, 0, np.log(0.5), 0, 0], atol=1e-6)
  state, obs, reward, done = jax.jit(env.step)(state, jnp.int32(KEEP))
  assert obs.shape == (6,) and obs.dtype == jnp.float32
  assert reward.shape == () and reward.dtype == jnp.float32
  assert done.shape == () and done.dtype == jnp.bool_
  assert state.t.dtype == jnp.int32 and int(state.t) == 1 and not bool(done)
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(state))


def test_vmapped_64_envs_under_jit():
  env, _ = make(num_decisions=3)
  num = 64

  @jax.jit
  def rollout(key):
    k_reset, k_act = jax.random.split(key)
    states, obs0 = jax.vmap(env.reset)(jax.random.split(k_reset, num))

    def body(states, k):
      actions = jax.random.randint(k, (num,), 0, env.num_actions)
      states, obs, reward, done = jax.vmap(env.step)(states, actions)
      return states, (obs, reward, done)

    states, outs = jax.lax.scan(body, states, jax.random.split(k_act, 3))
    return states, obs0, outs

  states, obs0, (obs, reward, done) = rollout(jax.random.key(1))
  assert obs0.shape == (num, 6) and obs.shape == (3, num, 6) and obs.dtype == jnp.float32
  assert reward.shape == (3, num) and done.shape == (3, num) and done.dtype == jnp.bool_
  assert bool(jnp.all(done[-1])) and not bool(jnp.any(done[:-1]))
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in (obs0, obs, reward))
  assert states.problem.v.shape == (num, 16, 24)
  # Every env sampled its own problem.
  assert float(jnp.std(states.loss_0)) > 0


@pytest.mark.parametrize("lr_cap, init_lr_fraction", [(float("inf"), 0.5), (1.0, 0.1)])
def test_keep_reproduces_a_constant_clipped_schedule(lr_cap, init_lr_fraction):
  """'keep' = nmf.train(constant(η_0), clip_c): exactly with lr_cap = inf; with 1 while the clamp never bites."""
  actions = (KEEP,) * 6
  start, _, final, (obs, rewards, dones, trace, lrs, bounds) = episode(
    actions, 0, lr_cap=lr_cap, init_lr_fraction=init_lr_fraction
  )
  k_problem, k_init, k_run = jax.random.split(jax.random.key(0), 3)
  problem = nmf.make_problem(k_problem, 16, 24, 3, 0.1)  # the key wiring (eager vs jit: ulps apart)
  np.testing.assert_allclose(start.problem.v, problem.v, rtol=1e-6)
  np.testing.assert_allclose(start.factors.w, nmf.init_factors(k_init, problem, 3).w, rtol=1e-6)
  problem, factors = start.problem, start.factors
  ref = jax.jit(lambda p, f, lr: nmf.train(p, f, nmf.constant(lr), key=k_run, num_steps=30, batch_size=6, clip_c=0.9))(
    problem, factors, start.lr
  )
  np.testing.assert_allclose(start.lr, init_lr_fraction * ref.eta_max[0], rtol=1e-6)
  if lr_cap == 1.0:  # the decision-time clamp to 0.9 η_max never bit on this instance
    assert np.all(np.asarray(lrs) == np.asarray(start.lr))
  else:  # the per-step clip was active, so the test covers it
    assert np.any(np.asarray(ref.lr) < np.asarray(start.lr))
  np.testing.assert_allclose(trace.lr.ravel(), ref.lr, rtol=1e-5)
  np.testing.assert_allclose(trace.eta_max.ravel(), ref.eta_max, rtol=1e-5)
  np.testing.assert_allclose(trace.loss.ravel(), ref.loss[:-1], rtol=1e-5)
  np.testing.assert_allclose(final.loss, ref.loss[-1], rtol=1e-5)
  for a, b in zip(final.factors, ref.factors):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_returns_telescope_to_the_log_loss_ratio():
  rng = np.random.default_rng(0)
  actions = tuple(int(a) for a in rng.integers(0, 5, 10))
  start, _, final, (obs, rewards, dones, trace, lrs, bounds) = episode(actions, 3)
  np.testing.assert_allclose(np.sum(rewards), np.log(start.loss_0 / final.loss), rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(dones, [False] * 9 + [True])
  # obs[0] is log f/f_0, obs[1] log f/f_prev = reward's negative, obs[5] the budget fraction.
  np.testing.assert_allclose(obs[-1, 0], np.log(final.loss / start.loss_0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(obs[:, 1], -rewards, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(obs[:, 5], np.arange(1, 11) / 10, rtol=1e-6)
  assert float(final.loss) < float(start.loss_0)


@pytest.mark.parametrize("lr_cap", [1.0, float("inf")])
def test_lr_never_exceeds_the_clipped_bound(lr_cap):
  rng = np.random.default_rng(1)
  actions = tuple(int(a) for a in rng.choice([3, 4, 4, 2, 0], 10))
  _, _, _, (obs, rewards, dones, trace, lrs, bounds) = episode(actions, 1, lr_cap=lr_cap)
  assert np.all(np.asarray(trace.lr) <= 0.9 * np.asarray(trace.eta_max) * (1 + 1e-6))
  if lr_cap == 1.0:  # the state's rate is one the next step can use
    assert np.all(np.asarray(lrs) <= 0.9 * np.asarray(trace.eta_max[:, 0]) * (1 + 1e-6))


@pytest.mark.parametrize(
  "actions, overrides",
  [
    ((4,) * 10, {}),  # always ×2
    ((0,) * 10, {}),  # always ×0.5
    ((1, 0) * 5, dict(multipliers=(1e-9, 1e9))),  # ×1e9, ×1e-9 alternating
    ((0,) * 10, dict(multipliers=(1e12,), lr_cap=float("inf"))),  # the raw rate overflows to inf
    ((0,) * 10, dict(multipliers=(1e-12,))),  # the rate underflows to 0
  ],
)
def test_extreme_action_sequences_stay_finite(actions, overrides):
  _, obs0, final, (obs, rewards, dones, trace, lrs, bounds) = episode(actions, 2, **overrides)
  for x in (obs0, obs, rewards, trace.loss, trace.eta_max, final.loss):
    assert np.all(np.isfinite(np.asarray(x)))
  assert np.all(np.abs(np.asarray(obs)) <= 30)
  assert np.all(np.asarray(trace.lr) <= 0.9 * np.asarray(trace.eta_max) * (1 + 1e-6))


def test_features_match_numpy_and_guard():
  kw = dict(loss=0.2, loss_0=1.0, loss_prev=0.25, grad_norm=0.1, grad_norm_0=0.4, lr=0.5, eta_max=2.0, eta_max_0=4.0)
  obs = nmf_env.features(**kw, step=jnp.int32(3), num_steps=12)
  ref = [np.log(0.2), np.log(0.2 / 0.25), np.log(0.25), np.log(0.25), np.log(0.5), 0.25]
  np.testing.assert_allclose(obs, ref, rtol=1e-6)
  assert obs.dtype == jnp.float32
  bad = nmf_env.features(
    loss=0.0,
    loss_0=jnp.inf,
    loss_prev=jnp.nan,
    grad_norm=0.0,
    grad_norm_0=0.0,
    lr=jnp.inf,
    eta_max=0.0,
    eta_max_0=1e-38,
    step=jnp.int32(20),
    num_steps=12,
  )
  assert np.all(np.isfinite(bad)) and np.all(np.abs(bad) <= 30) and float(bad[5]) == 1.0


def test_fixed_problem_digits():
  problem = nmf.digits_problem(120)
  env = nmf_env.make_nmf_env(rank=6, batch_size=12, steps_per_decision=4, num_decisions=3, problem=problem)
  reset, step = jax.jit(env.reset), jax.jit(env.step)
  state, obs = reset(jax.random.key(0))
  np.testing.assert_array_equal(state.problem.v, problem.v)
  total = 0.0
  for _ in range(3):
    state, obs, reward, done = step(state, jnp.int32(4))
    total += float(reward)
  assert bool(done) and np.isfinite(total) and total > 0


@pytest.mark.parametrize(
  "overrides",
  [
    dict(batch_size=25),
    dict(batch_size=0),
    dict(multipliers=()),
    dict(multipliers=(1.0, -2.0)),
    dict(clip_c=0.0),
    dict(num_decisions=0),
    dict(steps_per_decision=1.5),
    dict(noise=-1.0),
  ],
)
def test_invalid_settings_raise(overrides):
  with pytest.raises(ValueError, match="make_nmf_env"):
    nmf_env.make_nmf_env(**{**SMALL, **overrides})
