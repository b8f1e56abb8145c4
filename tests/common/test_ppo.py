"""Tests for common/ppo.py: RL maths vs NumPy, checks, learning on tiny envs, determinism, checkpoint/resume."""

import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

from common import ppo
from common.checkpoint import Checkpointer

# ---------------------------------------------------------------------------
# NumPy references.
# ---------------------------------------------------------------------------


def _np_gae(rewards, values, dones, bootstrap_value, discount, gae_lambda):
  T = len(rewards)
  advantages = np.zeros(T, np.float64)
  next_advantage, next_value = 0.0, float(bootstrap_value)
  for t in reversed(range(T)):
    not_done = 1.0 - float(dones[t])
    delta = rewards[t] + discount * not_done * next_value - values[t]
    next_advantage = delta + discount * gae_lambda * not_done * next_advantage
    advantages[t] = next_advantage
    next_value = values[t]
  return advantages, advantages + values


def _np_surrogate(log_prob, old_log_prob, advantages, clip_eps):
  ratio = np.exp(log_prob.astype(np.float64) - old_log_prob)
  return -np.mean(np.minimum(ratio * advantages, np.clip(ratio, 1 - clip_eps, 1 + clip_eps) * advantages))


def _np_value_loss(values, returns, old_values=None, clip_eps=None):
  squared = (values.astype(np.float64) - returns) ** 2
  if clip_eps is None:
    return 0.5 * np.mean(squared)
  clipped = old_values + np.clip(values - old_values, -clip_eps, clip_eps)
  return 0.5 * np.mean(np.maximum(squared, (clipped - returns) ** 2))


def _f32(rng, shape, scale=1.0):
  return (scale * rng.standard_normal(shape)).astype(np.float32)


class MathsTest(chex.TestCase, parameterized.TestCase):
  """The unbatched RL maths against the NumPy references, with and without jit."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((0.99, 0.95), (0.9, 0.0), (1.0, 1.0))
  def test_gae(self, discount, gae_lambda):
    rng = np.random.default_rng(0)
    T = 11
    rewards, values = _f32(rng, T), _f32(rng, T)
    dones = rng.random(T) < 0.3
    dones[-1] = False
    bootstrap = np.float32(0.7)
    fn = self.variant(functools.partial(ppo.gae, discount=discount, gae_lambda=gae_lambda))
    advantages, returns = fn(rewards, values, dones, bootstrap)
    want_adv, want_ret = _np_gae(rewards, values, dones, bootstrap, discount, gae_lambda)
    chex.assert_shape([advantages, returns], (T,))
    np.testing.assert_allclose(advantages, want_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(returns, want_ret, rtol=1e-5, atol=1e-5)
    # Float dones give the same result as bool dones.
    advantages_f, _ = fn(rewards, values, dones.astype(np.float32), bootstrap)
    np.testing.assert_allclose(advantages_f, advantages, rtol=1e-6, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_gae_does_not_bootstrap_across_done(self):
    fn = self.variant(functools.partial(ppo.gae, discount=0.5, gae_lambda=1.0))
    rewards = np.array([0.0, 1.0, 0.0, 0.0], np.float32)
    values = np.array([0.0, 0.0, 100.0, 0.0], np.float32)
    dones = np.array([False, True, False, True])
    _, returns = fn(rewards, values, dones, np.float32(1000.0))
    # Episode 1 ends after step 1: neither the next episode's values nor the bootstrap leak in.
    np.testing.assert_allclose(returns, [0.5, 1.0, 0.0, 0.0], atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_clipped_surrogate_loss(self):
    rng = np.random.default_rng(1)
    B = 64
    log_prob, old_log_prob = _f32(rng, B, 0.3) - 1.0, _f32(rng, B, 0.3) - 1.0
    advantages = _f32(rng, B)
    for clip_eps in (0.1, 0.2, 10.0):
      got = self.variant(ppo.clipped_surrogate_loss)(log_prob, old_log_prob, advantages, clip_eps)
      chex.assert_shape(got, ())
      np.testing.assert_allclose(got, _np_surrogate(log_prob, old_log_prob, advantages, clip_eps), rtol=1e-5)
    # A huge radius never clips: the plain importance-weighted objective.
    ratio = np.exp(log_prob.astype(np.float64) - old_log_prob)
    np.testing.assert_allclose(got, -np.mean(ratio * advantages), rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_value_loss(self):
    rng = np.random.default_rng(2)
    values, returns, old_values = _f32(rng, 32), _f32(rng, 32), _f32(rng, 32)
    plain = self.variant(ppo.value_loss)(values, returns)
    np.testing.assert_allclose(plain, _np_value_loss(values, returns), rtol=1e-5)
    clipped = self.variant(functools.partial(ppo.value_loss, clip_eps=0.2))(values, returns, old_values=old_values)
    np.testing.assert_allclose(clipped, _np_value_loss(values, returns, old_values, 0.2), rtol=1e-5)
    self.assertGreaterEqual(float(clipped), float(plain))

  def test_surrogate_gradient_vanishes_outside_clip_region(self):
    # Positive advantage, ratio already above 1 + eps: no incentive to push further.
    grad = jax.grad(ppo.clipped_surrogate_loss)(jnp.array([0.5]), jnp.array([0.0]), jnp.array([1.0]), 0.2)
    np.testing.assert_array_equal(grad, [0.0])
    grad = jax.grad(ppo.clipped_surrogate_loss)(jnp.array([0.1]), jnp.array([0.0]), jnp.array([1.0]), 0.2)
    self.assertLess(float(grad[0]), 0.0)


def test_maths_shape_and_rank_errors():
  v = np.zeros(5, np.float32)
  gae = functools.partial(ppo.gae, discount=0.9, gae_lambda=0.9)
  with pytest.raises(AssertionError):
    gae(np.zeros((5, 2), np.float32), np.zeros((5, 2), np.float32), np.zeros((5, 2), bool), np.float32(0))
  with pytest.raises(AssertionError):
    gae(v, np.zeros(4, np.float32), np.zeros(5, bool), np.float32(0))
  with pytest.raises(AssertionError):
    gae(v, v, np.zeros(5, bool), np.zeros(1, np.float32))
  with pytest.raises(AssertionError):
    gae(np.zeros(5, np.int32), v, np.zeros(5, bool), np.float32(0))
  with pytest.raises(AssertionError):
    ppo.clipped_surrogate_loss(v, np.zeros(4, np.float32), v, 0.2)
  with pytest.raises(AssertionError):
    ppo.clipped_surrogate_loss(np.zeros((5, 1), np.float32), np.zeros((5, 1), np.float32), np.zeros((5, 1)), 0.2)
  with pytest.raises(AssertionError):
    ppo.value_loss(v, np.zeros(6, np.float32))
  with pytest.raises(ValueError, match="old_values"):
    ppo.value_loss(v, v, clip_eps=0.2)


# ---------------------------------------------------------------------------
# Config and construction errors.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(num_envs=3, unroll_length=5, num_minibatches=2), "not divisible by num_minibatches"),
    (dict(num_envs=0), "num_envs must be >= 1"),
    (dict(unroll_length=2.0), "unroll_length must be an integer"),
    (dict(update_epochs=True), "update_epochs must be an integer"),
    (dict(discount=1.5), r"discount must be in \[0.0, 1.0\]"),
    (dict(gae_lambda=-0.1), "gae_lambda"),
    (dict(clip_eps=0.0), r"clip_eps must be in \(0.0"),
    (dict(entropy_coef=float("nan")), "entropy_coef"),
    (dict(value_coef=-1.0), "value_coef"),
    (dict(value_clip_eps=0.0), "value_clip_eps"),
    (dict(normalize_advantages=1), "normalize_advantages must be a bool"),
    (dict(hidden_sizes=(32, 0)), "hidden_sizes entry must be >= 1"),
    (dict(hidden_sizes=64), "hidden_sizes must be a sequence"),
    (dict(activation="gelu"), "activation must be one of"),
  ],
)
def test_config_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    ppo.PPOConfig(**kwargs)


def test_config_properties():
  config = ppo.PPOConfig(num_envs=4, unroll_length=6, num_minibatches=3, hidden_sizes=[8, 8])
  assert config.batch_size == 24 and config.minibatch_size == 8
  assert config.hidden_sizes == (8, 8)  # lists are normalised to (hashable) tuples


def test_make_ppo_errors():
  env = _bandit_env()
  tx = optax.adam(1e-3)
  with pytest.raises(ValueError, match="num_actions must be >= 2"):
    ppo.make_ppo(env._replace(num_actions=1), ppo.PPOConfig(), tx)
  with pytest.raises(ValueError, match="observation_size must be an integer"):
    ppo.make_ppo(env._replace(observation_size=0), ppo.PPOConfig(), tx)
  with pytest.raises(ValueError, match="config must be a PPOConfig"):
    ppo.make_ppo(env, dict(num_envs=4), tx)


# ---------------------------------------------------------------------------
# Tiny environments.
# ---------------------------------------------------------------------------


class _BanditState(NamedTuple):
  key: jax.Array
  obs: jax.Array
  t: jax.Array
  length: jax.Array


def _bandit_env(num_actions=3, max_length=4):
  """Contextual bandit: obs ~ N(0, I), reward 1 for action argmax(obs); episodes of 1..max_length steps."""

  def reset(key):
    key, length_key, obs_key = jax.random.split(key, 3)
    obs = jax.random.normal(obs_key, (num_actions,))
    length = jax.random.randint(length_key, (), 1, max_length + 1)
    return _BanditState(key, obs, jnp.zeros((), jnp.int32), length), obs

  def step(state, action):
    reward = (action == jnp.argmax(state.obs)).astype(jnp.float32)
    key, obs_key = jax.random.split(state.key)
    obs = jax.random.normal(obs_key, (num_actions,))
    t = state.t + 1
    return _BanditState(key, obs, t, state.length), obs, reward, t >= state.length

  return ppo.Env(reset=reset, step=step, observation_size=num_actions, num_actions=num_actions)


class _ChainState(NamedTuple):
  cue: jax.Array
  phase: jax.Array
  correct: jax.Array


def _chain_obs(cue, phase, correct):
  cue_part = jax.nn.one_hot(cue, 3) * (phase == 0)
  return jnp.concatenate([cue_part, jnp.stack([phase, correct]).astype(jnp.float32)])


def _chain_env():
  """Delayed reward: step 0 shows a cue in {0, 1, 2}; step 1 pays 1 iff the step-0 action matched it.

  The step-1 observation hides the cue and shows only whether the earlier action was right, so
  credit reaches the step-0 action only through the bootstrapped value of the step-1 state.
  """

  def reset(key):
    cue = jax.random.randint(key, (), 0, 3)
    state = _ChainState(cue, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
    return state, _chain_obs(state.cue, state.phase, state.correct)

  def step(state, action):
    first = state.phase == 0
    correct = jnp.where(first, (action == state.cue).astype(jnp.int32), state.correct)
    reward = jnp.where(first, 0.0, state.correct.astype(jnp.float32))
    next_state = _ChainState(state.cue, jnp.ones((), jnp.int32), correct)
    return next_state, _chain_obs(next_state.cue, next_state.phase, correct), reward, ~first

  return ppo.Env(reset=reset, step=step, observation_size=5, num_actions=3)


def _optimizer(learning_rate):
  return optax.chain(optax.clip_by_global_norm(0.5), optax.adam(learning_rate))


def _make_chunk(agent, length):
  return jax.jit(lambda s: jax.lax.scan(lambda s, _: agent.iteration(s), s, None, length=length))


def _leaves(tree):
  """Host copies of every leaf (typed keys as their key data), for bitwise comparisons."""
  as_data = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
  return [np.asarray(x) for x in jax.tree.leaves(jax.tree.map(as_data, tree))]


# ---------------------------------------------------------------------------
# The agent.
# ---------------------------------------------------------------------------

_BANDIT_CONFIG = ppo.PPOConfig(
  num_envs=16,
  unroll_length=8,
  num_minibatches=2,
  update_epochs=4,
  discount=0.9,
  gae_lambda=0.9,
  entropy_coef=0.003,
  hidden_sizes=(32, 32),
)
_BANDIT_CHUNK = 5


@pytest.fixture(scope="module")
def bandit():
  """A bandit agent and its jitted chunk of iterations, compiled once for the module."""
  agent = ppo.make_ppo(_bandit_env(), _BANDIT_CONFIG, _optimizer(3e-3))
  return agent, jax.jit(agent.init), _make_chunk(agent, _BANDIT_CHUNK)


def _bandit_accuracy(agent, params, seed=123, n=2000):
  obs = np.random.default_rng(seed).standard_normal((n, 3)).astype(np.float32)
  action = jax.jit(agent.act, static_argnames="deterministic")(params, obs, jax.random.key(0), deterministic=True)
  return float(np.mean(np.asarray(action) == obs.argmax(-1)))


def test_init_state_and_api(bandit):
  agent, init, _ = bandit
  state = init(jax.random.key(0))
  config = _BANDIT_CONFIG
  chex.assert_shape(state.obs, (config.num_envs, 3))
  chex.assert_shape([state.episode_return, state.episode_length], (config.num_envs,))
  chex.assert_shape(state.env_state.length, (config.num_envs,))
  for counter in (state.iteration, state.episodes, state.nonfinite_updates, state.last_episode_count):
    assert counter.dtype == jnp.int32 and counter.shape == ()
  obs = np.asarray(state.obs)
  batched = agent.policy_logits(state.params, obs)
  chex.assert_shape(batched, (config.num_envs, 3))
  np.testing.assert_allclose(agent.policy_logits(state.params, obs[0]), batched[0], rtol=1e-5, atol=1e-7)
  chex.assert_shape(agent.value(state.params, obs), (config.num_envs,))
  greedy = agent.act(state.params, obs, jax.random.key(1), deterministic=True)
  assert greedy.dtype == jnp.int32
  np.testing.assert_array_equal(greedy, np.argmax(batched, -1))
  sampled = agent.act(state.params, obs, jax.random.key(1))
  np.testing.assert_array_equal(sampled, jax.random.categorical(jax.random.key(1), batched, axis=-1))
  assert agent.act(state.params, obs[0], jax.random.key(1)).shape == ()
  # The policy starts near uniform (small output layer).
  assert float(jnp.max(jnp.abs(batched))) < 0.1
  with pytest.raises(ValueError, match=r"obs must be \[..., 3\]"):
    agent.policy_logits(state.params, obs[:, :2])


def test_bandit_learns_and_is_deterministic(bandit):
  agent, init, chunk = bandit
  state = init(jax.random.key(0))
  assert abs(_bandit_accuracy(agent, state.params) - 1 / 3) < 0.25
  history = []
  for _ in range(40 // _BANDIT_CHUNK):
    state, metrics = chunk(state)
    history.append(metrics)
  metrics = jax.tree.map(lambda *x: np.concatenate(x), *history)
  assert int(state.iteration) == 40
  # A random policy earns ~1/3 per step; the trained greedy policy is right > 90% of the time.
  assert 0.2 < metrics["mean_reward"][0] < 0.47
  accuracy = _bandit_accuracy(agent, state.params)
  assert accuracy > 0.9, accuracy
  assert metrics["mean_reward"][-5:].mean() > 0.8
  # Episode statistics: count-weighted, finite, consistent with the state; lengths are 1..4 steps.
  assert np.all(metrics["num_episodes"] > 0) and int(state.episodes) == int(metrics["num_episodes"].sum())
  assert np.all(np.isfinite(metrics["mean_episode_return"]))
  assert np.all((metrics["mean_episode_length"] >= 1) & (metrics["mean_episode_length"] <= 4))
  np.testing.assert_allclose(state.last_episode_return, metrics["mean_episode_return"][-1])
  for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
    assert metrics[name].shape == (40,) and np.all(np.isfinite(metrics[name])), name
  assert np.all(metrics["approx_kl"] >= 0) and np.all((metrics["clip_fraction"] >= 0) & (metrics["clip_fraction"] <= 1))
  assert metrics["entropy"][-1] < metrics["entropy"][0] <= np.log(3) + 1e-5
  assert int(state.nonfinite_updates) == 0

  # Same key: bitwise the same state; another key: other params.
  again = init(jax.random.key(0))
  for _ in range(2):
    again, _ = chunk(again)
  reference = init(jax.random.key(0))
  for _ in range(2):
    reference, _ = chunk(reference)
  for a, b in zip(_leaves(again), _leaves(reference)):
    np.testing.assert_array_equal(a, b)
  other, _ = chunk(init(jax.random.key(1)))
  assert not np.array_equal(_leaves(other.params)[0], _leaves(reference.params)[0])


@pytest.mark.opt
def test_checkpoint_resume_is_exact(bandit, tmp_path):
  agent, init, chunk = bandit
  state0 = init(jax.random.key(7))
  straight, _ = chunk(chunk(state0)[0])

  first, _ = chunk(state0)
  with Checkpointer(tmp_path / "ckpt") as checkpointer:
    assert checkpointer.save(int(first.iteration), first, force=True)
    checkpointer.wait_until_finished()
  with Checkpointer(tmp_path / "ckpt") as checkpointer:
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), init(jax.random.key(99)))
    restored, step = checkpointer.restore_latest(target)
  assert step == _BANDIT_CHUNK and isinstance(restored, ppo.PPOState)
  assert jax.dtypes.issubdtype(restored.rng.dtype, jax.dtypes.prng_key)
  resumed, _ = chunk(restored)
  assert int(resumed.iteration) == 2 * _BANDIT_CHUNK
  for a, b in zip(_leaves(resumed), _leaves(straight)):
    np.testing.assert_array_equal(a, b)


def test_raw_uint32_key_state():
  """A raw `PRNGKey` works too (and stays raw in the state)."""
  config = ppo.PPOConfig(num_envs=2, unroll_length=3, num_minibatches=1, update_epochs=1, hidden_sizes=(4,))
  agent = ppo.make_ppo(_bandit_env(), config, optax.sgd(0.1))
  state, metrics = jax.jit(agent.iteration)(jax.jit(agent.init)(jax.random.PRNGKey(0)))
  assert state.rng.dtype == jnp.uint32 and int(state.iteration) == 1
  assert np.isfinite(float(metrics["policy_loss"]))


def test_nonfinite_updates_are_skipped_and_counted():
  def update(updates, opt_state, params=None):
    return jax.tree.map(lambda u: jnp.full_like(u, jnp.nan), updates), opt_state

  nan_tx = optax.GradientTransformation(lambda params: optax.EmptyState(), update)
  config = ppo.PPOConfig(num_envs=2, unroll_length=4, num_minibatches=2, update_epochs=3, hidden_sizes=(4,))
  agent = ppo.make_ppo(_bandit_env(), config, nan_tx)
  state = jax.jit(agent.init)(jax.random.key(0))
  new_state, metrics = jax.jit(agent.iteration)(state)
  assert int(new_state.nonfinite_updates) == 6 and int(metrics["nonfinite_updates"]) == 6
  for a, b in zip(_leaves(new_state.params), _leaves(state.params)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
def test_delayed_reward_chain_learns_through_bootstrapping():
  config = ppo.PPOConfig(
    num_envs=16,
    unroll_length=7,  # odd: unrolls end mid-episode, so the bootstrap value is used
    num_minibatches=2,
    update_epochs=4,
    discount=0.9,
    gae_lambda=0.5,
    entropy_coef=0.003,
    hidden_sizes=(32, 32),
  )
  agent = ppo.make_ppo(_chain_env(), config, _optimizer(3e-3))
  chunk = _make_chunk(agent, 25)
  state, metrics = chunk(jax.jit(agent.init)(jax.random.key(0)))
  cues = jnp.arange(3)
  first_obs = jax.vmap(lambda c: _chain_obs(c, jnp.int32(0), jnp.int32(0)))(cues)
  greedy = agent.act(state.params, first_obs, jax.random.key(0), deterministic=True)
  np.testing.assert_array_equal(greedy, cues)
  # Every episode is 2 steps, reward only at the second.
  np.testing.assert_allclose(metrics["mean_episode_length"], 2.0)
  # A random policy is right 1/3 of the time.
  assert metrics["mean_episode_return"][0] < 0.55 and metrics["mean_episode_return"][-5:].mean() > 0.9
  # Critic: V(step 1) is the pending reward, with nothing bootstrapped across the episode's end
  # (that would add discount * V(next start) ~ 0.8); V(start) ~ discount * P(right).
  second_obs = jnp.stack([_chain_obs(0, jnp.int32(1), jnp.int32(c)) for c in (0, 1)])
  v_wrong, v_right = np.asarray(agent.value(state.params, second_obs))
  assert abs(v_right - 1.0) < 0.15 and abs(v_wrong) < 0.3, (v_wrong, v_right)
  v_start = np.asarray(agent.value(state.params, first_obs))
  assert np.all((v_start > 0.6) & (v_start < 1.0)), v_start


class _ObservedState(NamedTuple):
  calls: jax.Array
  last: jax.Array


def test_observe_gets_minus_the_mean_return_of_finished_episodes():
  """`observe` (a per-eval learning-rate controller's step) runs only after iterations in which episodes ended."""
  tx = optax.GradientTransformation(
    lambda params: _ObservedState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)),
    lambda updates, state, params=None: (updates, state),
  )
  observe = lambda state, value: _ObservedState(state.calls + 1, value)
  config = ppo.PPOConfig(num_envs=2, unroll_length=1, num_minibatches=1, update_epochs=1, hidden_sizes=(4,))
  rate = lambda state: 0.5 + state.last  # the logged rate reads the state after observe
  agent = ppo.make_ppo(_chain_env(), config, tx, observe=observe, learning_rate=rate)
  step = jax.jit(agent.iteration)
  state, metrics = step(jax.jit(agent.init)(jax.random.key(0)))  # every episode's first step: none ends
  assert int(metrics["num_episodes"]) == 0 and int(state.opt_state.calls) == 0
  assert float(metrics["learning_rate"]) == 0.5
  state, metrics = step(state)  # the second step ends both
  assert int(metrics["num_episodes"]) == 2 and int(state.opt_state.calls) == 1
  assert float(state.opt_state.last) == pytest.approx(-float(metrics["mean_episode_return"]))
  assert float(metrics["learning_rate"]) == pytest.approx(0.5 - float(metrics["mean_episode_return"]))
