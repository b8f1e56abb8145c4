"""nlirl.networks: shapes, padding invariance, encode/score split, generator sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlirl import envs, networks

L = 24


@pytest.fixture(scope="module")
def nets():
  return networks.make_networks(vocab_size=envs.Vocabulary().size, max_tokens=L, embed_dim=8, hidden=16, latent=4)


def _tokens(n=7):
  return jnp.zeros((L,), jnp.int32).at[:n].set(jnp.arange(5, 5 + n))


def _obs(key, t=11):
  return jax.random.uniform(key, (t, envs.OBS_SIZE))


@pytest.mark.parametrize("encoder", networks.ENCODERS)
def test_scorer_shapes_and_encode_score_split(encoder):
  nets = networks.make_networks(vocab_size=envs.Vocabulary().size, max_tokens=L, encoder=encoder, hidden=16)
  key = jax.random.PRNGKey(0)
  params = nets.policy.init(key)
  obs = _obs(key)
  logits = nets.policy.apply(params, _tokens(), obs)
  assert logits.shape == (11, envs.NUM_ACTIONS)
  encoded = networks.encode_goal(nets.policy, params, _tokens())
  np.testing.assert_allclose(networks.score_with(nets.policy, params, encoded, obs), logits, rtol=1e-5, atol=1e-6)
  q = nets.critic.apply(nets.critic.init(key), _tokens(), obs)
  assert q.shape == (11, 2, envs.NUM_ACTIONS)
  assert not np.allclose(q[:, 0], q[:, 1])  # twin heads are independent


def test_policy_depends_on_the_goal(nets):
  key = jax.random.PRNGKey(1)
  params = nets.policy.init(key)
  obs = _obs(key)
  a = nets.policy.apply(params, _tokens(7), obs)
  b = nets.policy.apply(params, _tokens(7).at[2].set(40), obs)
  assert not np.allclose(a, b)


def test_reward_shaping_form(nets):
  key = jax.random.PRNGKey(2)
  params = nets.reward.init(key)
  obs = _obs(key)
  actions = jnp.arange(10, dtype=jnp.int32) % envs.NUM_ACTIONS
  terminal = jnp.zeros((11,), bool).at[-1].set(True)
  f, g, h = nets.reward.apply(params, _tokens(), obs, actions, terminal)
  assert f.shape == g.shape == (10,) and h.shape == (11,)
  assert h[-1] == 0.0  # terminal potential is zero
  np.testing.assert_allclose(f, g + 0.95 * h[1:] - h[:-1], rtol=1e-5, atol=1e-6)
  unshaped = networks.make_networks(vocab_size=envs.Vocabulary().size, max_tokens=L, hidden=16, shaping=False)
  p2 = unshaped.reward.init(key)
  f2, g2, h2 = unshaped.reward.apply(p2, _tokens(), obs, actions, terminal)
  np.testing.assert_array_equal(f2, g2)
  np.testing.assert_array_equal(h2, 0.0)


def test_masked_log_softmax_puts_no_mass_on_invalid_actions():
  logits = jnp.array([3.0, 1.0, 0.0, 5.0])
  mask = jnp.array([True, False, True, False])
  p = jnp.exp(networks.masked_log_softmax(logits, mask))
  np.testing.assert_allclose(p, [np.exp(3) / (np.exp(3) + 1), 0, 1 / (np.exp(3) + 1), 0], rtol=1e-6)


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
def test_generator_samples_are_well_formed_and_vary_with_the_key(nets):
  key = jax.random.PRNGKey(3)
  params = nets.generator.init(key)
  obs = _obs(key, 10)
  actions = jnp.zeros((10,), jnp.int32)
  mask = jnp.ones((10,), bool)
  sample = jax.jit(lambda k: networks.sample_goal(nets.generator, params, obs, actions, mask, k))
  a, b = np.asarray(sample(jax.random.PRNGKey(4))), np.asarray(sample(jax.random.PRNGKey(5)))
  vocab = envs.Vocabulary()
  assert a.shape == (L,) and a.dtype == np.int32
  assert not np.array_equal(a, b)
  for toks in (a, b):
    assert vocab.bos_id not in toks and vocab.unk_id not in toks
    eos = np.flatnonzero(toks == vocab.eos_id)
    if eos.size:  # after EOS only PAD
      assert (toks[eos[0] + 1 :] == vocab.pad_id).all()
      assert (toks[: eos[0]] != vocab.pad_id).all()


def test_generator_decoder_attends_over_the_active_steps(nets):
  """With the summary and z fixed, a decoder step's logits move with one active step's state, not a masked one's."""
  key = jax.random.PRNGKey(6)
  params = nets.generator.init(key)
  obs, actions = _obs(key, 10), jnp.zeros((10,), jnp.int32)
  mask = jnp.arange(10) < 6
  code = nets.generator.encode_trajectory(params, obs, actions, mask)
  c = code.summary.shape[0]
  assert code.summary.shape == (c,) and code.memory.shape == (10, c) and code.mask.shape == (10,)
  z = jnp.zeros((nets.generator.latent,))
  h = nets.generator.initial_state(params, z, code)
  step = jax.jit(lambda c: nets.generator.decode_step(params, h, jnp.asarray(5), z, c)[0])
  base = np.asarray(step(code))
  active = code._replace(memory=code.memory.at[2].add(3.0))
  masked = code._replace(memory=code.memory.at[8].add(3.0))
  assert np.abs(np.asarray(step(active)) - base).max() > 1e-4
  np.testing.assert_allclose(np.asarray(step(masked)), base, rtol=0, atol=1e-6)


def test_recurrent_follower_steps_equal_the_trajectory_call_and_are_causal():
  nets = networks.make_networks(
    vocab_size=envs.Vocabulary().size, max_tokens=L, embed_dim=8, hidden=16, latent=4, policy="recurrent"
  )
  assert nets.policy.recurrent
  key = jax.random.PRNGKey(4)
  params = nets.policy.init(key)
  obs = _obs(key)
  logits = nets.policy.apply(params, _tokens(), obs)
  assert logits.shape == (11, envs.NUM_ACTIONS)
  carry, steps = nets.policy.start(params, _tokens()), []
  for t in range(obs.shape[0]):
    step_logits, carry = nets.policy.step(params, carry, obs[t])
    steps.append(step_logits)
  np.testing.assert_allclose(np.stack(steps), logits, rtol=1e-5, atol=1e-5)
  changed = nets.policy.apply(params, _tokens(), obs.at[5].set(0.5))
  np.testing.assert_allclose(changed[:5], logits[:5], rtol=1e-6, atol=1e-6)  # the past only
  assert not np.allclose(changed[6:], logits[6:])  # a memory: a past observation changes later steps
  other_goal = nets.policy.apply(params, _tokens(7).at[2].set(40), obs)
  assert not np.allclose(other_goal, logits)


def test_markov_policy_steps_ignore_the_past(nets):
  key = jax.random.PRNGKey(5)
  params = nets.policy.init(key)
  obs = _obs(key)
  logits = nets.policy.apply(params, _tokens(), obs)
  carry = nets.policy.start(params, _tokens())
  for t in range(obs.shape[0]):
    step_logits, carry = nets.policy.step(params, carry, obs[t])
    np.testing.assert_allclose(step_logits, logits[t], rtol=1e-5, atol=1e-6)
  assert not nets.policy.recurrent


def test_unknown_policy_kind_is_refused():
  with pytest.raises(ValueError, match="policy must be one of"):
    networks.make_networks(vocab_size=envs.Vocabulary().size, max_tokens=L, policy="lstm")
