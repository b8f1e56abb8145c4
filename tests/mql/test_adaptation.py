"""Tests of mql.adaptation: vmapped = per-task, no-op adaptation, classifier, proximal modes, episodes.

The tests that compile more than one adaptation program are `slow`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mql import adaptation, envs, networks, replay
from mql import trainer as trainer_lib

H, NUM_TRAIN, NUM_TEST = 5, 4, 3


@functools.cache
def _meta_state():
  """A briefly meta-trained point-robot state (every train task has replay data)."""
  tasks = envs.sample_tasks("point-robot", 0, num_train=NUM_TRAIN, num_test=NUM_TEST)
  env = envs.make("point-robot", task_set=tasks, split="train", batch_size=4)
  eval_env = envs.make("point-robot", task_set=tasks, split="test")
  nets = networks.make_networks(2, 2, hidden_sizes=(16, 16), context_size=6, history_length=H)
  settings = trainer_lib.TD3Settings(batch_size=16, start_steps=40, steps_per_iteration=20, replay_size=800)
  meta = trainer_lib.make_trainer(env, nets, settings, eval_env=eval_env)
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
    eval_env, nets, settings, adaptation.AdaptationSettings(**kwargs), num_train_tasks=NUM_TRAIN
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
    for name in ("before", "after", "classifier_accuracy", "stage2_critic_loss", "prox_coef"):
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
  busy = jax.device_get(_adapter().adapt_all(state, key))
  np.testing.assert_array_equal(busy["before"], idle["before"])
  assert not np.allclose(busy["after"], busy["before"])


@pytest.mark.slow  # compiles several adaptation programs
def test_proximal_modes():
  state = _meta_state()[0]
  key = jax.random.key(5)
  ess = jax.device_get(_adapter().adapt_all(state, key))
  fixed = jax.device_get(_adapter(prox="fixed", prox_coef=0.25).adapt_all(state, key))
  none = jax.device_get(_adapter(prox="none").adapt_all(state, key))
  np.testing.assert_allclose(fixed["prox_coef"], 0.25)
  np.testing.assert_allclose(none["prox_coef"], 0.0)
  # 1 - ESS of each minibatch (or the 0.1 fallback when the weights are all equal).
  assert np.all((ess["prox_coef"] >= 0) & (ess["prox_coef"] <= 1))
  np.testing.assert_allclose(ess["ess"] + ess["prox_coef"], 1.0, atol=0.1 + 1e-6)
  assert not np.allclose(none["stage2_critic_loss"], fixed["stage2_critic_loss"])


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
    (dict(C=0.0), "C"),
    (dict(stage2_batch_size=0), "stage2_batch_size"),
    (dict(stage1_iterations=-1), "stage1_iterations"),
  ],
)
def test_settings_validation(overrides, message):
  with pytest.raises(ValueError, match=message):
    adaptation.AdaptationSettings(**overrides)
