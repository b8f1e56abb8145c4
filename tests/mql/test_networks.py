"""Tests of mql.networks: shapes, action bounds, context masking, no-context baseline, init."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mql import networks

S, A, C, H = 5, 2, 4, 6
F = A + 1 + S
B = 3


def _jitted(nets):
  """The same networks with jitted applies (one compile per input signature, not one per op)."""
  jit = lambda network: dataclasses.replace(network, apply=jax.jit(network.apply)) if network is not None else None
  return nets._replace(
    actor=jit(nets.actor),
    critic=jit(nets.critic),
    actor_context=jit(nets.actor_context),
    critic_context=jit(nets.critic_context),
  )


def _make(**kwargs):
  nets = networks.make_networks(S, A, **{"hidden_sizes": (16, 16), "context_size": C, "history_length": H, **kwargs})
  return _jitted(nets), networks.init_params(nets, jax.random.key(0))


@pytest.fixture(scope="module")
def small():
  return _make()


def _inputs(seed=0, batch=(B,)):
  rng = np.random.default_rng(seed)
  obs = rng.standard_normal(batch + (S,)).astype(np.float32)
  action = rng.uniform(-1, 1, batch + (A,)).astype(np.float32)
  history = rng.standard_normal(batch + (H, F)).astype(np.float32)
  return obs, action, history


def test_default_sizes():
  nets = networks.make_networks(S, A, context_size=C, history_length=H)
  params = jax.eval_shape(functools.partial(networks.init_params, nets), jax.random.key(1))
  actor, critic = params.actor["policy"]["params"], params.critic["q"]["params"]
  # The original's 300-300 actor on [obs, ctx] and twin 300-300 Q heads on [obs, action, ctx].
  assert [actor[f"hidden_{i}"]["kernel"].shape for i in range(3)] == [(S + C, 300), (300, 300), (300, A)]
  assert [critic[f"hidden_{i}"]["kernel"].shape for i in range(3)] == [(2, S + A + C, 300), (2, 300, 300), (2, 300, 1)]
  for part in params:
    assert part["context"]["params"]["gru"]["cell"]["ir"]["kernel"].shape == (F, C)
  assert nets.history_feature_size == F and nets.history_length == H and nets.context_size == C
  obs, action, history = _inputs()
  out = jax.eval_shape(nets.actor.apply, params.actor, obs, history, np.ones((B, H), bool))
  q1, q2 = jax.eval_shape(nets.critic.apply, params.critic, obs, action, history)
  assert out.shape == (B, A) and q1.shape == (B,) and q2.shape == (B,)


def test_shapes(small):
  nets, params = small
  obs, action, history = _inputs()
  mask = np.ones((B, H), bool)
  out = nets.actor.apply(params.actor, obs, history, mask)
  q1, q2 = nets.critic.apply(params.critic, obs, action, history, mask)
  assert out.shape == (B, A) and q1.shape == (B,) and q2.shape == (B,)
  # The twin heads are independent.
  assert not np.allclose(q1, q2)
  assert nets.actor_context.apply(params.actor["context"], history, mask).shape == (B, C)
  # Unbatched inputs and a mask-free call (all valid) work too.
  single = nets.actor.apply(params.actor, obs[0], history[0])
  np.testing.assert_allclose(single, out[0], rtol=1e-5, atol=1e-6)
  q1_single, _ = nets.critic.apply(params.critic, obs[0], action[0], history[0])
  assert q1_single.shape == ()
  np.testing.assert_allclose(q1_single, q1[0], rtol=1e-5, atol=1e-6)
  # Any window length (e.g. the original's longer evaluation histories).
  assert nets.actor.apply(params.actor, obs, np.zeros((B, 2 * H, F), np.float32)).shape == (B, A)


def test_actor_output_in_unit_box(small):
  nets, params = small
  obs, _, history = _inputs(1)
  out = nets.actor.apply(params.actor, 1e4 * obs, 1e3 * history)
  assert np.all(np.abs(np.asarray(out)) <= 1.0)
  assert np.any(np.abs(np.asarray(out)) > 0.99)  # saturates rather than being squashed elsewhere


def test_fully_masked_history_gives_zero_context(small):
  nets, params = small
  obs, action, history = _inputs(2)
  none = np.zeros((B, H), bool)
  ctx = nets.critic_context.apply(params.critic["context"], history, none)
  np.testing.assert_array_equal(ctx, np.zeros((B, C)))
  # The actor then equals its MLP on [obs, 0].
  want = jnp.tanh(
    networks._torch_mlp(S + C, (16, 16), A).apply(params.actor["policy"], obs, np.zeros((B, C), np.float32))
  )
  np.testing.assert_allclose(nets.actor.apply(params.actor, obs, history, none), want, rtol=1e-6, atol=1e-6)
  # And it ignores whatever the padded window holds.
  q = nets.critic.apply(params.critic, obs, action, history, none)
  q_other = nets.critic.apply(params.critic, obs, action, 100.0 * history + 3.0, none)
  np.testing.assert_allclose(q, q_other, rtol=1e-6, atol=1e-6)


def test_padding_does_not_leak(small):
  nets, params = small
  obs, action, history = _inputs(3)
  # Left padding of different lengths per row, as in a replay window at an episode start.
  mask = np.arange(H)[None, :] >= np.array([[0], [2], [5]])
  junk = np.where(mask[..., None], history, 1e3)
  for apply in (
    lambda h: nets.actor.apply(params.actor, obs, h, mask),
    lambda h: nets.critic.apply(params.critic, obs, action, h, mask),
  ):
    np.testing.assert_allclose(apply(history), apply(junk), rtol=1e-6, atol=1e-6)
  # A padded window encodes like the window without its padding.
  ctx = nets.actor_context.apply(params.actor["context"], history, mask)
  trimmed = nets.actor_context.apply(params.actor["context"], history[2, 5:])
  np.testing.assert_allclose(ctx[2], trimmed, rtol=1e-5, atol=1e-6)
  # The mask does matter.
  assert not np.allclose(ctx[1], nets.actor_context.apply(params.actor["context"], history[1]))


def test_actor_and_critic_contexts_are_separate(small):
  nets, params = small
  obs, action, history = _inputs(4)
  actor_ctx = nets.actor_context.apply(params.actor["context"], history)
  critic_ctx = nets.critic_context.apply(params.critic["context"], history)
  assert not np.allclose(actor_ctx, critic_ctx)
  # Each network's output moves with its own GRU.
  bumped = jax.tree.map(lambda x: x + 0.1, params.critic["context"])
  critic2 = {**params.critic, "context": bumped}
  assert not np.allclose(
    nets.critic.apply(params.critic, obs, action, history)[0], nets.critic.apply(critic2, obs, action, history)[0]
  )
  actor2 = {**params.actor, "context": jax.tree.map(lambda x: x + 0.1, params.actor["context"])}
  assert not np.allclose(nets.actor.apply(params.actor, obs, history), nets.actor.apply(actor2, obs, history))


def test_history_features_order():
  rng = np.random.default_rng(5)
  a, r, s = rng.standard_normal((H, A)), rng.standard_normal(H), rng.standard_normal((H, S))
  got = networks.history_features(a, r, s)
  np.testing.assert_allclose(got, np.concatenate([a, r[:, None], s], -1), rtol=1e-6)
  assert networks.history_features(a[None], r[None], s[None]).shape == (1, H, F)
  with pytest.raises(ValueError, match="share"):
    networks.history_features(a, r[:-1], s)


def test_no_context_variant():
  nets, params = _make(use_context=False)
  assert set(params.actor) == {"policy"} and set(params.critic) == {"q"}
  assert nets.actor_context is None and nets.critic_context is None and nets.context_size == 0
  assert params.actor["policy"]["params"]["hidden_0"]["kernel"].shape == (S, 16)
  assert params.critic["q"]["params"]["hidden_0"]["kernel"].shape == (2, S + A, 16)
  obs, action, history = _inputs(6)
  out = nets.actor.apply(params.actor, obs)
  assert out.shape == (B, A) and np.all(np.abs(np.asarray(out)) <= 1.0)
  q1, q2 = nets.critic.apply(params.critic, obs, action)
  assert q1.shape == q2.shape == (B,)
  # Histories are ignored.
  np.testing.assert_array_equal(nets.actor.apply(params.actor, obs, history), out)


def test_pytorch_default_initialisation(small):
  _, params = small
  for tree in (params.actor["policy"]["params"], params.critic["q"]["params"]):
    for layer in tree.values():
      bound = 1.0 / np.sqrt(layer["kernel"].shape[-2])
      for x in (layer["kernel"], layer["bias"]):
        x = np.asarray(x)
        assert np.max(np.abs(x)) <= bound
        # Uniform on the whole interval, not a narrower one (std of U(±b) is b/√3).
        if x.size >= 100:
          np.testing.assert_allclose(np.std(x), bound / np.sqrt(3), rtol=0.3)
  for leaf in jax.tree.leaves(params.actor["context"]):
    assert np.max(np.abs(np.asarray(leaf))) <= 1.0 / np.sqrt(C)


def test_errors(small):
  nets, params = small
  obs, action, history = _inputs(7)
  with pytest.raises(ValueError, match="observation"):
    nets.actor.apply(params.actor, obs[:, :-1], history)
  with pytest.raises(ValueError, match="pass history"):
    nets.actor.apply(params.actor, obs)
  with pytest.raises(ValueError, match="history must be"):
    nets.actor.apply(params.actor, obs, history[..., :-1])
  with pytest.raises(ValueError, match="batch shape"):
    nets.critic.apply(params.critic, obs, action, history[:2])
  with pytest.raises(ValueError, match="action"):
    nets.critic.apply(params.critic, obs, action[:, :1], history)
  with pytest.raises(ValueError, match="mask shape"):
    nets.actor.apply(params.actor, obs, history, np.ones((B, H + 1), bool))
  for kwargs in ({"context_size": 0}, {"history_length": 0}, {"hidden_sizes": ()}, {"hidden_sizes": (16, 0)}):
    with pytest.raises(ValueError):
      networks.make_networks(S, A, **{"context_size": C, "history_length": H, **kwargs})
  with pytest.raises(ValueError, match="action_size"):
    networks.make_networks(S, 0, context_size=C, history_length=H)


def test_one_pass_over_h_plus_1_steps_gives_the_t_context_but_not_the_t_plus_1_one(small):
  """Why the t and t + 1 windows cannot share one GRU pass.

  `mql.replay.gather` cuts h_t and h_{t+1} from one [H + 1] window (steps t − H … t).  A pass over
  the H + 1 steps gives h_t's context after its first H steps, but its final state is not
  h_{t+1}'s context: that GRU starts from zero at step t − H + 1, the long pass from the state
  after step t − H.  They agree only when step t − H is masked (fewer than H steps before t).
  """
  _, params = small
  encoder = networks.make_networks(S, A, hidden_sizes=(16, 16), context_size=C, history_length=H).critic_context
  gru = params.critic["context"]
  rng = np.random.default_rng(11)
  feats = rng.standard_normal((2, H + 1, F)).astype(np.float32)
  steps = np.array([H + 3, H - 2])  # step index of t: row 0 has step t − H, row 1 does not
  mask = (H - np.arange(H + 1))[None] <= steps[:, None]
  final, states = encoder.apply(gru, feats, mask, return_all_states=True)
  ctx_t = encoder.apply(gru, feats[:, :H], mask[:, :H])
  ctx_next = encoder.apply(gru, feats[:, 1:], mask[:, 1:])
  np.testing.assert_allclose(states[:, H - 1], ctx_t, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(final[1], ctx_next[1], rtol=1e-5, atol=1e-6)
  assert not np.allclose(final[0], ctx_next[0], rtol=1e-3, atol=1e-4)
