"""Tests of mql.adaptation: vmapped = per-task, no-op adaptation, classifier, proximal modes, episodes.

The tests that compile more than one adaptation program are `slow`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mql import adaptation, envs, networks, replay
from mql import trainer as trainer_lib

H, NUM_TRAIN, NUM_TEST = 5, 4, 3
OPTIMIZERS = trainer_lib.make_optimizers()  # Adam 3e-4 + GreedyLR per step


@functools.cache
def _meta_state():
  """A briefly meta-trained point-robot state (every train task has replay data)."""
  tasks = envs.sample_tasks("point-robot", 0, num_train=NUM_TRAIN, num_test=NUM_TEST)
  env = envs.make("point-robot", task_set=tasks, split="train", batch_size=4)
  eval_env = envs.make("point-robot", task_set=tasks, split="test")
  nets = networks.make_networks(2, 2, hidden_sizes=(16, 16), context_size=6, history_length=H)
  settings = trainer_lib.TD3Settings(
    batch_size=16, start_steps=40, steps_per_iteration=20, update_ratio=0.25, replay_size=800
  )
  meta = trainer_lib.make_trainer(env, nets, settings, *OPTIMIZERS, eval_env=eval_env)
  state = meta.init(jax.random.key(0))
  for _ in range(3):
    state, _ = meta.iteration(state)
  return state, nets, eval_env, settings


@functools.cache
def _adapter(**overrides):
  _, nets, eval_env, settings = _meta_state()
  kwargs = dict(stage1_iterations=2, stage2_iterations=3, stage2_batch_size=32, num_eval_episodes=2)
  kwargs.update(overrides)
  return adaptation.make_adapter(
    eval_env,
    nets,
    settings,
    adaptation.AdaptationSettings(**kwargs),
    num_train_tasks=NUM_TRAIN,
    meta_optimizers=OPTIMIZERS,
  )


@pytest.mark.slow  # compiles the vmapped and the per-task programs
def test_vmapped_adaptation_equals_per_task_program():
  state = _meta_state()[0]
  adapter = _adapter()
  key = jax.random.key(3)
  everything = jax.device_get(adapter.adapt_all(state, key))
  assert everything["before"].shape == (NUM_TEST, 2) and everything["after"].shape == (NUM_TEST, 2)
  for task_id, task_key in enumerate(jax.random.split(key, NUM_TEST)):
    one = jax.device_get(adapter.adapt_one(state, task_key, task_id))
    for name in ("before", "after1", "after", "classifier_accuracy", "stage2_critic_loss", "actor_distance"):
      np.testing.assert_allclose(one[name], everything[name][task_id], rtol=2e-5, atol=1e-6, err_msg=name)
  assert np.all(np.isfinite(everything["after"]))
  assert np.all(everything["nonfinite_updates"] == 0)


@pytest.mark.slow  # compiles several adaptation programs
def test_no_updates_means_no_change_and_updates_change_the_policy():
  state = _meta_state()[0]
  key = jax.random.key(4)
  idle = jax.device_get(_adapter(stage1_iterations=0, stage2_iterations=0).adapt_all(state, key))
  # Point-robot episodes start at the origin: the same policy gives the same returns.
  np.testing.assert_array_equal(idle["after"], idle["before"])
  np.testing.assert_array_equal(idle["after1"], idle["before"])
  np.testing.assert_array_equal(idle["actor_distance"], 0.0)
  busy = jax.device_get(_adapter().adapt_all(state, key))
  np.testing.assert_array_equal(busy["before"], idle["before"])
  assert not np.allclose(busy["after"], busy["before"])
  assert not np.allclose(busy["after1"], busy["before"])
  assert np.all(busy["actor_distance_stage1"] > 0) and np.all(busy["critic_distance"] > 0)
  # Stage 2 only: stage 1 leaves the networks where they were.
  stage2_only = jax.device_get(_adapter(stage1_iterations=0).adapt_all(state, key))
  np.testing.assert_array_equal(stage2_only["after1"], stage2_only["before"])
  np.testing.assert_array_equal(stage2_only["critic_distance_stage1"], 0.0)
  assert np.all(stage2_only["critic_distance"] > 0)


@pytest.mark.slow  # compiles several adaptation programs
def test_proximal_modes():
  state = _meta_state()[0]
  key = jax.random.key(5)
  ess = jax.device_get(_adapter(prox="ess").adapt_all(state, key))
  fixed = jax.device_get(_adapter(prox="fixed", prox_coef=0.25).adapt_all(state, key))
  none = jax.device_get(_adapter(prox="none").adapt_all(state, key))
  scaled = jax.device_get(_adapter(prox="td_scaled", prox_coef=0.5).adapt_all(state, key))
  np.testing.assert_allclose(fixed["prox_coef"], 0.25)
  np.testing.assert_allclose(none["prox_coef"], 0.0)
  np.testing.assert_allclose(scaled["prox_coef"], 0.5 * scaled["meta_td_loss"], rtol=1e-5)
  # 1 - ESS of each minibatch (or the 0.1 fallback when the weights are all equal).
  assert np.all((ess["prox_coef"] >= 0) & (ess["prox_coef"] <= 1))
  np.testing.assert_allclose(ess["ess"] + ess["prox_coef"], 1.0, atol=0.1 + 1e-6)
  assert not np.allclose(none["stage2_critic_loss"], fixed["stage2_critic_loss"])


@pytest.mark.slow  # compiles several adaptation programs
def test_stage1_proximal_term_keeps_the_networks_near_the_meta_ones():
  state = _meta_state()[0]
  key = jax.random.key(7)
  free = jax.device_get(_adapter(stage1_iterations=6, stage1_prox=False, prox_coef=1e4).adapt_all(state, key))
  held = jax.device_get(_adapter(stage1_iterations=6, stage1_prox=True, prox_coef=1e4).adapt_all(state, key))
  assert np.all(held["critic_distance_stage1"] < free["critic_distance_stage1"])
  assert np.all(held["actor_distance_stage1"] < free["actor_distance_stage1"])


@pytest.mark.slow  # compiles several adaptation programs
def test_adaptation_rate_tied_to_meta_training_and_beta_modes():
  state = _meta_state()[0]
  key = jax.random.key(8)
  actor_rate = float(OPTIMIZERS[0].learning_rate(state.actor_opt_state))
  critic_rate = float(OPTIMIZERS[1].learning_rate(state.critic_opt_state))
  tied = jax.device_get(_adapter(rate_multiplier=2.0).adapt_all(state, key))
  np.testing.assert_allclose(tied["actor_learning_rate"], 2.0 * actor_rate, rtol=1e-6)
  np.testing.assert_allclose(tied["critic_learning_rate"], 2.0 * critic_rate, rtol=1e-6)
  # Self-normalised β has minibatch mean 1 (unless the classifier zeroes every row).
  normalised = tied["beta_mean"][tied["beta_zero_fraction"] < 1]
  np.testing.assert_allclose(normalised, 1.0, rtol=1e-5)
  fixed = jax.device_get(_adapter(learning_rate_mode="fixed", learning_rate=5e-4).adapt_all(state, key))
  np.testing.assert_allclose(fixed["actor_learning_rate"], 5e-4)
  uniform = jax.device_get(_adapter(beta="uniform").adapt_all(state, key))
  np.testing.assert_allclose(uniform["ess"], 1.0, rtol=1e-5)
  np.testing.assert_allclose(uniform["beta_mean"], 1.0)


def test_scale_by_rate_is_adam_at_that_rate():
  params = {"w": jnp.asarray([1.0, -2.0, 0.5])}
  grads = [{"w": jnp.asarray([0.3, -0.1, 2.0]) * (i + 1)} for i in range(3)]
  reference, scaled = optax.adam(3e-4), optax.chain(optax.adam(1.0), adaptation.scale_by_rate())
  ref_state = reference.init(params)
  state = adaptation.init_with_rate(scaled, params, 3e-4)
  p_ref, p = params, params
  for g in grads:
    u_ref, ref_state = reference.update(g, ref_state, p_ref)
    u, state = scaled.update(g, state, p)
    p_ref, p = optax.apply_updates(p_ref, u_ref), optax.apply_updates(p, u)
  np.testing.assert_allclose(p["w"], p_ref["w"], rtol=1e-6)
  # What the adapter builds: a fixed rate r is Adam at r (not r twice).
  settings = adaptation.AdaptationSettings(learning_rate_mode="fixed", learning_rate=3e-4)
  tx = adaptation.make_adaptation_optimizer(settings)
  rate, _ = adaptation.adaptation_rates(settings, None, None)
  state, p = adaptation.init_with_rate(tx, params, rate), params
  for g in grads:
    u, state = tx.update(g, state, p)
    p = optax.apply_updates(p, u)
  np.testing.assert_allclose(p["w"], p_ref["w"], rtol=1e-6)


@pytest.mark.slow  # compiles the held-out classifier check
def test_classifier_check_on_held_out_train_tasks():
  state, nets, eval_env, _ = _meta_state()
  tasks = envs.sample_tasks("point-robot", 0, num_train=NUM_TRAIN, num_test=NUM_TEST)
  train_env = envs.make("point-robot", task_set=tasks, split="train")
  check = adaptation.make_classifier_check(train_env, nets, adaptation.AdaptationSettings(), num_train_tasks=NUM_TRAIN)
  out = jax.device_get(check(state, jax.random.key(0), jnp.asarray([0, 2]), jnp.asarray([0.1, 10.0])))
  assert out["accuracy"].shape == (2, 2)
  # 20 rows of the held-out task against 3 other tasks x (20 // 4 + 2) rows.
  np.testing.assert_allclose(out["majority_rate"], 21 / 41, rtol=1e-6)
  assert np.all((out["accuracy"] >= 0) & (out["accuracy"] <= 1))
  assert np.all(out["beta_own"] >= 0) and np.all(out["beta_other"] >= 0)
  assert np.all((out["auc"] >= 0) & (out["auc"] <= 1))


@pytest.mark.slow  # compiles several adaptation programs
def test_classifier_features_and_separation():
  state, nets, _, _ = _meta_state()
  batch = replay.sample(state.replay, jax.random.key(0), 8, H)
  ctx = adaptation.classifier_features(nets, state.params.actor, batch, False)
  both = adaptation.classifier_features(nets, state.params.actor, batch, True)
  assert ctx.shape == (8, 6) and both.shape == (8, 2 + 6)
  np.testing.assert_array_equal(both[:, :2], batch.observation)
  np.testing.assert_allclose(both[:, 2:], ctx, rtol=1e-6)
  accuracy = jax.device_get(_adapter().adapt_all(state, jax.random.key(6))["classifier_accuracy"])
  assert np.all((accuracy >= 0) & (accuracy <= 1))
  # Observations in the features: the test task's own episode is told apart better than by chance.
  accuracy_obs = jax.device_get(_adapter(observation_features=True, C=100.0).adapt_all(state, jax.random.key(6)))
  assert np.mean(accuracy_obs["classifier_accuracy"]) > 0.6


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
def test_run_episode_histories_match_the_replay_rule():
  state, nets, eval_env, _ = _meta_state()
  ep = adaptation.run_episode(eval_env, nets, state.params.actor, jax.random.key(0), jnp.asarray(1))
  t = eval_env.episode_length
  assert ep.transitions.history.shape == (t, H, nets.history_feature_size)
  assert bool(jnp.all(ep.valid))  # point-robot episodes only end at the time limit
  mask = np.asarray(ep.transitions.history_mask)
  for step in range(t):  # the last min(step, H) entries are valid
    np.testing.assert_array_equal(mask[step], np.arange(H) >= H - min(step, H))
  # next_history of step t is the history of step t + 1.
  np.testing.assert_array_equal(ep.transitions.next_history[:-1], ep.transitions.history[1:])
  np.testing.assert_allclose(float(ep.total), float(jnp.sum(ep.transitions.reward)), rtol=1e-6)
  assert np.all(np.asarray(ep.transitions.discount) == 1.0)  # truncation is not terminal


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(num_eval_episodes=1), "num_eval_episodes"),
    (dict(prox="sometimes"), "prox"),
    (dict(rate_multiplier=4.0), "rate_multiplier"),
    (dict(learning_rate_mode="adaptive"), "learning_rate_mode"),
    (dict(beta="flat"), "beta"),
    (dict(beta_features="old"), "beta_features"),
    (dict(C=0.0), "C"),
    (dict(stage2_batch_size=0), "stage2_batch_size"),
    (dict(stage1_iterations=-1), "stage1_iterations"),
  ],
)
def test_settings_validation(overrides, message):
  with pytest.raises(ValueError, match=message):
    adaptation.AdaptationSettings(**overrides)
