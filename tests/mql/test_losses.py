"""Tests of mql.losses: the unbatched TD3 maths, the batched losses, weights and the proximal term."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from mql import losses, networks

S, A, C, H, B = 3, 2, 4, 3, 8
F = A + 1 + S


def _f32(rng, shape, scale=1.0):
  return (scale * rng.standard_normal(shape)).astype(np.float32)


class UnbatchedTest(chex.TestCase, parameterized.TestCase):
  """The rlax-style pieces against NumPy references, with and without jit."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_td3_target(self):
    rng = np.random.default_rng(0)
    reward, q1, q2 = _f32(rng, 16), _f32(rng, 16), _f32(rng, 16)
    discount = (0.99 * (rng.random(16) < 0.7)).astype(np.float32)  # some terminal transitions
    want = reward + discount * np.minimum(q1, q2)
    fn = self.variant(losses.td3_target)
    for i in range(3):
      got = fn(reward[i], discount[i], q1[i], q2[i])
      chex.assert_shape(got, ())
      np.testing.assert_allclose(got, want[i], rtol=1e-6)
    np.testing.assert_allclose(self.variant(jax.vmap(losses.td3_target))(reward, discount, q1, q2), want, rtol=1e-6)
    # A terminal transition bootstraps nothing.
    np.testing.assert_allclose(fn(np.float32(2.0), np.float32(0.0), np.float32(50.0), np.float32(60.0)), 2.0)

  def test_td3_target_stops_gradients(self):
    args = (jnp.float32(1.0), jnp.float32(0.9), jnp.float32(2.0), jnp.float32(3.0))
    np.testing.assert_array_equal(jax.grad(losses.td3_target, argnums=(2, 3))(*args), (0.0, 0.0))
    grads = jax.grad(functools.partial(losses.td3_target, stop_target_gradients=False), argnums=(2, 3))(*args)
    np.testing.assert_allclose(grads, (0.9, 0.0))  # only the smaller critic

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((0.0,), (0.9,), (-0.95,))
  def test_target_policy_smoothing_is_clipped(self, center):
    key = jax.random.key(1)
    action = np.full((256,), center, np.float32)
    fn = self.variant(functools.partial(losses.target_policy_smoothing, noise=10.0, noise_clip=0.5))
    got = np.asarray(fn(action, key))
    eps = 10.0 * np.asarray(jax.random.normal(key, (256,)))
    np.testing.assert_allclose(got, np.clip(center + np.clip(eps, -0.5, 0.5), -1.0, 1.0), rtol=1e-6, atol=1e-6)
    assert np.all(np.abs(got - center) <= 0.5 + 1e-6) and np.all(np.abs(got) <= 1.0)
    # Huge noise: almost all samples sit on the noise clip or the action bound.
    low, high = max(center - 0.5, -1.0), min(center + 0.5, 1.0)
    assert np.mean(np.isclose(got, low) | np.isclose(got, high)) > 0.9

  @chex.variants(with_jit=True, without_jit=True)
  def test_target_policy_smoothing_statistics(self):
    action = np.zeros((20_000,), np.float32)
    got = np.asarray(
      self.variant(functools.partial(losses.target_policy_smoothing, noise=0.3, noise_clip=0.5))(
        action, jax.random.key(2)
      )
    )
    # N(0, 0.3²) clipped at ±0.5: P(|eps| >= 0.5) = 2 (1 - Phi(5/3)) = 0.0956.
    np.testing.assert_allclose(np.mean(np.abs(got) >= 0.5 - 1e-7), 0.0956, atol=0.01)
    np.testing.assert_allclose(np.mean(got), 0.0, atol=0.01)
    # No noise: the action itself.
    identity = self.variant(functools.partial(losses.target_policy_smoothing, noise=0.0, noise_clip=0.5))
    a = np.linspace(-1, 1, 7).astype(np.float32)
    np.testing.assert_array_equal(identity(a, jax.random.key(3)), a)

  @chex.variants(with_jit=True, without_jit=True)
  def test_soft_update(self):
    rng = np.random.default_rng(4)
    target = {"w": _f32(rng, (3, 2)), "b": _f32(rng, 2)}
    online = {"w": _f32(rng, (3, 2)), "b": _f32(rng, 2)}
    got = self.variant(losses.soft_update)(target, online)
    for name in target:
      np.testing.assert_allclose(got[name], 0.005 * online[name] + 0.995 * target[name], rtol=1e-6, atol=1e-7)
    for tau, want in ((0.0, target), (1.0, online)):
      got = self.variant(losses.soft_update)(target, online, tau)
      chex.assert_trees_all_close(got, want, rtol=1e-6)

  def test_rank_checks(self):
    with pytest.raises(AssertionError):
      losses.td3_target(*(np.zeros(2, np.float32),) * 4)
    with pytest.raises(AssertionError):
      losses.td3_target(np.float32(0), np.float32(0), np.float32(0), np.int32(0))
    with pytest.raises(AssertionError):
      losses.target_policy_smoothing(np.zeros((4, A), np.float32), jax.random.key(0), noise=0.3, noise_clip=0.5)
    with pytest.raises(ValueError, match="tau"):
      losses.soft_update({"w": np.zeros(2)}, {"w": np.zeros(2)}, 1.5)
    with pytest.raises(AssertionError):
      losses.soft_update({"w": np.zeros(2)}, {"w": np.zeros(3)})


# ---------------------------------------------------------------------------
# Batched losses.
# ---------------------------------------------------------------------------


def _batch(seed=0, context=True):
  rng = np.random.default_rng(seed)
  history = _f32(rng, (B, H, F))
  # Left padding of several lengths, as at episode starts.
  mask = np.arange(H)[None, :] >= (np.arange(B) % H)[:, None]
  kwargs = {}
  if context:
    kwargs = dict(
      history=np.where(mask[..., None], history, 0.0),
      history_mask=mask,
      next_history=np.concatenate([history[:, 1:], _f32(rng, (B, 1, F))], 1),
      next_history_mask=np.roll(mask, -1, axis=1) | (np.arange(H) == H - 1),
    )
  return losses.Transition(
    observation=_f32(rng, (B, S)),
    action=rng.uniform(-1, 1, (B, A)).astype(np.float32),
    reward=_f32(rng, B),
    discount=(rng.random(B) < 0.75).astype(np.float32),
    next_observation=_f32(rng, (B, S)),
    **kwargs,
  )


class Setup:
  """Small networks, one batch, and one compiled program for both losses and their gradients.

  `grads` always takes weights and a reference (prox_coef 0 turns the proximal term off), so every
  test reuses one compilation; the defaults (no weights, no reference) are checked against NumPy in
  `test_critic_loss_against_numpy_reference`.
  """

  def __init__(self, use_context=True):
    self.nets = networks.make_networks(
      S, A, hidden_sizes=(16, 16), context_size=C, history_length=H, use_context=use_context
    )
    self.params = networks.init_params(self.nets, jax.random.key(0))
    self.target = networks.init_params(self.nets, jax.random.key(1))
    self.losses = losses.make_losses(self.nets)
    self.batch = _batch(context=use_context)
    critic_grad = jax.value_and_grad(self.losses.critic_loss, has_aux=True)
    actor_grad = jax.value_and_grad(self.losses.actor_loss, has_aux=True)

    @jax.jit
    def grads(params, target, batch, key, weights, reference, prox_coef):
      kwargs = dict(weights=weights, reference_params=reference, prox_coef=prox_coef)
      return critic_grad(params, target, batch, key, **kwargs), actor_grad(params, batch, **kwargs)

    self._grads = grads

  def grads(self, params=None, batch=None, key=None, *, weights=None, reference=None, prox_coef=0.0):
    """`((critic_loss, metrics), critic_grads), ((actor_loss, metrics), actor_grads)`."""
    params = self.params if params is None else params
    return self._grads(
      params,
      self.target,
      self.batch if batch is None else batch,
      jax.random.key(0) if key is None else key,
      np.ones(B, np.float32) if weights is None else weights,
      params if reference is None else reference,
      np.float32(prox_coef),
    )


@pytest.fixture(scope="module")
def setup():
  return Setup()


def _sgd(tree, grads, lr):
  return jax.tree.map(lambda p, g: p - lr * g, tree, grads)


def test_critic_loss_against_numpy_reference(setup):
  nets, params, target, batch = setup.nets, setup.params, setup.target, setup.batch
  # noise_clip=0 turns the target smoothing off, so the target is computable from the networks alone.
  plain = jax.jit(losses.make_losses(nets, discount=0.9, noise_clip=0.0).critic_loss)
  loss, metrics = plain(params, target, batch, jax.random.key(5))
  next_action = nets.actor.apply(target.actor, batch.next_observation, batch.next_history, batch.next_history_mask)
  nq1, nq2 = nets.critic.apply(
    target.critic, batch.next_observation, next_action, batch.next_history, batch.next_history_mask
  )
  y = batch.reward + 0.9 * batch.discount * np.minimum(nq1, nq2)
  q1, q2 = nets.critic.apply(params.critic, batch.observation, batch.action, batch.history, batch.history_mask)
  want = np.mean((np.asarray(q1) - y) ** 2 + (np.asarray(q2) - y) ** 2)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(metrics["target_q"], np.mean(y), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["q1"], np.mean(q1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["td_loss"], loss)
  assert float(metrics["critic_prox"]) == 0.0
  # Terminal everywhere: the target is the reward (a truncation, discount 1, would bootstrap).
  _, metrics = plain(params, target, batch._replace(discount=np.zeros(B, np.float32)), jax.random.key(5))
  np.testing.assert_allclose(metrics["target_q"], np.mean(batch.reward), rtol=1e-5)
  # The scale-free signal: the TD loss over twice the mean squared target (here the reward).
  np.testing.assert_allclose(
    metrics["relative_td"], metrics["td_loss"] / (2 * np.mean(np.square(batch.reward)) + 1e-8), rtol=1e-5
  )
  # The default-argument path agrees with explicit unit weights and no proximal term.
  ((explicit, _), _), _ = setup.grads()
  default, _ = jax.jit(setup.losses.critic_loss)(params, target, batch, jax.random.key(0))
  np.testing.assert_allclose(default, explicit, rtol=1e-6)


def test_losses_finite_and_sgd_reduces_them(setup):
  ((loss0, metrics), grads), ((aloss0, ametrics), agrads) = setup.grads()
  assert np.isfinite(loss0) and all(np.isfinite(v) for v in metrics.values())
  assert set(metrics) == {"critic_loss", "td_loss", "q1", "q2", "target_q", "relative_td", "critic_prox"}
  # Only the critic (with its GRU) gets a critic gradient.
  assert all(np.all(g == 0) for g in jax.tree.leaves(grads.actor))
  assert any(np.any(g != 0) for g in jax.tree.leaves(grads.critic["context"]))
  assert np.isfinite(aloss0) and set(ametrics) == {"actor_loss", "policy_q", "actor_prox"}
  np.testing.assert_allclose(ametrics["policy_q"], -aloss0, rtol=1e-6)
  # The critic is held fixed by the actor loss; the actor's GRU is trained through it.
  assert all(np.all(g == 0) for g in jax.tree.leaves(agrads.critic))
  assert any(np.any(g != 0) for g in jax.tree.leaves(agrads.actor["context"]))
  # Fixed targets and key make the critic loss a regression, and a fixed critic makes the actor
  # loss a function of the actor: a few SGD steps on each reduce them.
  params = setup.params
  for _ in range(10):
    ((loss, _), grads), ((aloss, _), agrads) = setup.grads(params)
    params = networks.MQLParams(actor=params.actor, critic=_sgd(params.critic, grads.critic, 0.05))
  assert float(loss) < 0.7 * float(loss0)
  params = setup.params
  for _ in range(10):
    _, ((aloss, _), agrads) = setup.grads(params)
    params = networks.MQLParams(actor=_sgd(params.actor, agrads.actor, 0.05), critic=params.critic)
  assert float(aloss) < float(aloss0)


def test_weights_scale_the_losses(setup):
  ((loss, _), _), ((aloss, _), _) = setup.grads()
  ((loss3, _), _), ((aloss3, _), _) = setup.grads(weights=np.full(B, 3.0, np.float32))
  np.testing.assert_allclose(loss3, 3 * loss, rtol=1e-5)
  np.testing.assert_allclose(aloss3, 3 * aloss, rtol=1e-5)
  # Zero weights drop transitions: the mean of per-transition weighted losses (over B, as the original).
  per_row = np.array([setup.grads(weights=np.eye(B, dtype=np.float32)[i])[0][0][0] for i in range(B)])
  np.testing.assert_allclose(np.sum(per_row), loss, rtol=1e-5)
  w = np.linspace(0.0, 2.0, B).astype(np.float32)
  np.testing.assert_allclose(setup.grads(weights=w)[0][0][0], np.dot(w, per_row), rtol=1e-5)


def test_proximal_term(setup):
  params = setup.params
  (critic_base, actor_base) = setup.grads()
  # At theta = theta_ref: nothing changes.
  critic_at, actor_at = setup.grads(reference=params, prox_coef=0.3)
  chex.assert_trees_all_close((critic_at, actor_at), (critic_base, actor_base), rtol=1e-5, atol=1e-7)
  # Away from it: loss + c ||theta - theta_ref||^2 and gradient + 2 c (theta - theta_ref), on the trained part only.
  rng = np.random.default_rng(9)
  reference = jax.tree.map(lambda x: x + 0.1 * rng.standard_normal(x.shape).astype(np.float32), params)
  for name, base, prox in zip(
    ("critic", "actor"), (critic_base, actor_base), setup.grads(reference=reference, prox_coef=0.3)
  ):
    (base_loss, _), base_grads = base
    (prox_loss, metrics), prox_grads = prox
    diff = jax.tree.map(
      lambda p, r: np.asarray(p, np.float64) - np.asarray(r, np.float64),
      getattr(params, name),
      getattr(reference, name),
    )
    distance = sum(np.sum(d**2) for d in jax.tree.leaves(diff))
    np.testing.assert_allclose(metrics[f"{name}_prox"], distance, rtol=1e-5)
    np.testing.assert_allclose(prox_loss, base_loss + 0.3 * distance, rtol=1e-5)
    got = jax.tree.map(
      lambda g, g0: np.asarray(g) - np.asarray(g0), getattr(prox_grads, name), getattr(base_grads, name)
    )
    chex.assert_trees_all_close(got, jax.tree.map(lambda d: 2 * 0.3 * d, diff), rtol=1e-4, atol=1e-6)
    other = "actor" if name == "critic" else "critic"
    chex.assert_trees_all_close(getattr(prox_grads, other), getattr(base_grads, other), rtol=1e-6, atol=1e-8)


def test_histories_feed_the_right_networks(setup):
  batch = setup.batch
  ((_, base), _), _ = setup.grads()
  # next_history feeds the targets only, history the online critic only.
  ((_, moved), _), _ = setup.grads(batch=batch._replace(next_history=batch.next_history + 1.0))
  assert moved["target_q"] != base["target_q"] and moved["q1"] == base["q1"]
  ((_, moved), _), _ = setup.grads(batch=batch._replace(history=batch.history + 1.0))
  assert moved["target_q"] == base["target_q"] and moved["q1"] != base["q1"]


def test_no_context_losses():
  setup = Setup(use_context=False)
  ((loss, _), grads), ((aloss, _), agrads) = setup.grads()
  assert np.isfinite(loss) and np.isfinite(aloss)
  assert any(np.any(g != 0) for g in jax.tree.leaves(grads.critic))
  assert any(np.any(g != 0) for g in jax.tree.leaves(agrads.actor))


def test_errors(setup):
  nets, params, batch = setup.nets, setup.params, setup.batch
  with pytest.raises(ValueError, match="history"):
    setup.losses.actor_loss(params, batch._replace(history=None))
  with pytest.raises(AssertionError):
    setup.losses.actor_loss(params, batch, weights=np.ones(B + 1, np.float32))
  with pytest.raises(AssertionError):
    setup.losses.critic_loss(params, params, batch._replace(reward=np.zeros((B, 1), np.float32)), jax.random.key(0))
  for kwargs in ({"discount": 1.5}, {"policy_noise": -0.1}, {"noise_clip": -1.0}):
    with pytest.raises(ValueError):
      losses.make_losses(nets, **kwargs)
