"""Tests of mql.trainer: one jitted iteration, exact counters, acting histories, NaN skip, learning."""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mql import envs, networks, replay
from mql import trainer as trainer_lib
from schedulers import state_utils
from schedulers.greedy_lr import GreedyLRState

E, H = 4, 10  # env slots; history window (< the 20-step point-robot episodes)


@functools.cache  # one compiled trainer per configuration, shared by the tests
def _setup(use_context, num_envs=E, hidden=(32, 32), **settings):
  tasks = envs.sample_tasks("point-robot", 0, num_train=8, num_test=4)
  env = envs.make("point-robot", task_set=tasks, split="train", batch_size=num_envs)
  eval_env = envs.make("point-robot", task_set=tasks, split="test")
  nets = networks.make_networks(2, 2, hidden_sizes=hidden, context_size=8, history_length=H, use_context=use_context)
  defaults = dict(batch_size=32, start_steps=12, steps_per_iteration=5, update_ratio=0.75, replay_size=400)
  defaults.update(settings)
  trainer = trainer_lib.make_trainer(env, nets, trainer_lib.TD3Settings(**defaults), eval_env=eval_env)
  return trainer, nets


# The context variant compiles the GRU for actor, critic and both targets (~40 s): slow tier; the smoke
# binary test covers it in the default tier.
@pytest.mark.parametrize("use_context", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_iteration_shapes_finite_and_counters(use_context):
  trainer, nets = _setup(use_context)
  state = trainer.init(jax.random.key(0))
  assert state.history.shape == (E, H, nets.history_feature_size)
  state, metrics = trainer.iteration(state)
  # start_steps (= update_after) 12: updates start once 12 transitions are in, after the 3rd vmapped step.
  assert int(state.env_steps) == 5 * E
  assert int(state.updates) == 3 * 3
  assert int(state.actor_updates) == 9 // 2
  state, metrics = trainer.iteration(state)
  assert int(state.env_steps) == 10 * E
  assert int(state.updates) == 8 * 3
  assert int(state.actor_updates) == 24 // 2
  assert int(metrics["updates"]) == 24 and int(metrics["actor_updates"]) == 12
  assert int(state.critic_nonfinite) == 0 and int(state.actor_nonfinite) == 0
  assert int(state.replay.total) == 10
  assert 0 < float(metrics["actor_learning_rate"]) and 0 < float(metrics["critic_learning_rate"])
  for name in ("critic_loss", "actor_loss", "q1", "target_q"):
    assert metrics[name].shape == () and np.isfinite(metrics[name]), name
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))
  returns = trainer.evaluate(state, jax.random.key(1), 2)
  assert returns.shape == (4,) and np.all(np.isfinite(returns))
  # Params moved, targets followed softly.
  init = trainer.init(jax.random.key(0))
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), state.params, init.params))
  assert max(float(x) for x in moved) > 0


@pytest.mark.opt
def test_rolling_history_equals_replay_gather():
  trainer, nets = _setup(True)  # random actions for 12 env steps (3 vmapped steps), then the actor
  state = trainer.init(jax.random.key(3))
  seen = []
  for _ in range(26):  # crosses the 20-step episode boundary
    seen.append((np.asarray(state.history), np.asarray(state.history_mask)))
    state = trainer.act_step(state)
  slots = jnp.arange(E, dtype=jnp.int32)
  for t, (hist, mask) in enumerate(seen):
    got = replay.gather(state.replay, slots, jnp.full((E,), t, jnp.int32), H)
    np.testing.assert_array_equal(np.asarray(got.history_mask), mask, err_msg=f"t={t}")
    np.testing.assert_array_equal(np.asarray(got.history), hist, err_msg=f"t={t}")
  assert not seen[20][1].any() and seen[19][1].all() and seen[3][1].sum() == 3 * E


def test_nonfinite_critic_update_is_skipped_and_counted():
  trainer, _ = _setup(False)
  state = trainer.init(jax.random.key(0))
  bad = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), state.target_params.critic)
  state = state._replace(target_params=state.target_params._replace(critic=bad))
  critic0, opt0 = state.params.critic, state.critic_opt_state
  state, metrics = trainer.iteration(state)
  assert int(state.updates) == 9 and int(state.critic_nonfinite) == 9
  assert int(state.actor_updates) == 4 and int(state.actor_nonfinite) == 0
  for a, b in zip(jax.tree.leaves((critic0, opt0)), jax.tree.leaves((state.params.critic, state.critic_opt_state))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))


def test_greedy_none_switch_and_settings_validation():
  tasks = envs.sample_tasks("point-robot", 0, num_train=4, num_test=2)
  env = envs.make("point-robot", task_set=tasks, batch_size=2)
  nets = networks.make_networks(2, 2, hidden_sizes=(8,), context_size=4, history_length=3)
  assert trainer_lib.make_optimizers()[0].greedy_mode == "per_eval"  # the rule for TD objectives
  actor_opt, critic_opt = trainer_lib.make_optimizers(greedy_mode="none")
  assert actor_opt.controller is None and critic_opt.greedy_mode == "none"
  trainer = trainer_lib.make_trainer(
    env,
    nets,
    trainer_lib.TD3Settings(batch_size=8, start_steps=0, steps_per_iteration=2, update_ratio=0.5, replay_size=64),
    actor_opt,
    critic_opt,
  )
  state, metrics = trainer.iteration(trainer.init(jax.random.key(0)))
  assert np.isfinite(metrics["critic_loss"])
  assert float(metrics["critic_learning_rate"]) == pytest.approx(3e-4)
  with pytest.raises(ValueError, match="policy_delay"):
    trainer_lib.TD3Settings(policy_delay=0)
  with pytest.raises(ValueError, match="replay_size"):
    trainer_lib.make_trainer(env, nets, trainer_lib.TD3Settings(replay_size=4))


def test_per_eval_greedy_decides_once_per_iteration_on_the_negative_episode_return():
  """`greedy_mode='per_eval'`: no decision before an episode finishes, then one on −(mean return) per iteration."""
  tasks = envs.sample_tasks("point-robot", 0, num_train=4, num_test=2)
  env = envs.make("point-robot", task_set=tasks, batch_size=2, episode_length=10)
  nets = networks.make_networks(2, 2, hidden_sizes=(8,), context_size=4, history_length=3, use_context=False)
  # Over the TD rule's settings: act on every decision, any improvement counts, room to rise.
  greedy = dict(patience=0, smooth=False, threshold=0.0, max_scale=10.0)
  actor_opt, critic_opt = trainer_lib.make_optimizers(greedy_mode="per_eval", greedy=greedy)
  settings = trainer_lib.TD3Settings(
    batch_size=8, start_steps=0, steps_per_iteration=5, update_ratio=0.5, replay_size=64
  )
  trainer = trainer_lib.make_trainer(env, nets, settings, actor_opt, critic_opt)
  state = trainer.init(jax.random.key(0))
  state, metrics = trainer.iteration(state)  # 5 of 10 steps: no episode has finished
  assert int(metrics["finished_episodes"]) == 0 and np.isnan(metrics["episode_return"])
  assert float(metrics["actor_learning_rate"]) == pytest.approx(3e-4)  # 5 updates ran; the rate did not move
  returns = []
  for _ in range(4):  # every other iteration ends both slots' episodes
    state, metrics = trainer.iteration(state)
    if int(metrics["finished_episodes"]):
      returns.append(float(metrics["episode_return"]))
  assert len(returns) == 2
  for opt_state in (state.actor_opt_state, state.critic_opt_state):
    controller = state_utils.find_state(opt_state, GreedyLRState)
    assert float(controller.best_value) == pytest.approx(-max(returns), rel=1e-6)
  # The first decision is a new best: with patience 0 the scale rises by 1 / factor at once.
  assert float(metrics["critic_learning_rate"]) > 3e-4


@pytest.mark.slow
def test_short_run_improves_evaluation_return():
  """2,400 env steps (4 slots x 600) and 1,200 updates on two point-robot train tasks, MQL networks.

  Measured (2 busy CPU cores): mean train-task return -19.65 (random init)
  -> -15.8 in about 16 s after compiling; with 2 tasks the seeds 0, 1, 2 of
  both the context and the context-free networks end near -15.5 to -16.3.
  With 4-8 tasks this budget is not enough (returns stay near -19).
  """
  tasks = envs.sample_tasks("point-robot", 0, num_train=2, num_test=1)
  env = envs.make("point-robot", task_set=tasks, split="train", batch_size=4)
  nets = networks.make_networks(2, 2, hidden_sizes=(64, 64), context_size=8, history_length=H)
  actor_opt, critic_opt = trainer_lib.make_optimizers(learning_rate=1e-3)
  settings = trainer_lib.TD3Settings(
    batch_size=64, discount=0.9, start_steps=200, steps_per_iteration=100, update_ratio=0.5, replay_size=4000
  )
  trainer = trainer_lib.make_trainer(env, nets, settings, actor_opt, critic_opt)
  state = trainer.init(jax.random.key(0))
  key = jax.random.key(7)
  before = float(trainer.evaluate(state, key, 1).mean())
  start = time.time()
  for _ in range(6):
    state, metrics = trainer.iteration(state)
  after = float(trainer.evaluate(state, key, 1).mean())
  print(f"eval return {before:.2f} -> {after:.2f} in {time.time() - start:.1f}s")
  assert int(state.env_steps) == 2400 and int(state.updates) == 2 * (600 - 49)
  assert int(state.critic_nonfinite) == 0 and int(state.actor_nonfinite) == 0
  assert after > before + 2.0
