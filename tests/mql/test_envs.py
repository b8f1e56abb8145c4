"""Tests for mql/envs: every family under jit + vmap, per-slot tasks, resampling resets, rewards vs NumPy.

Compiling Brax envs dominates: each family compiles one program (reset of 5
slots + a 7-step scan of the batched env), shared by all of its tests through
a module cache (25-70 s per Brax family on 2 CPU cores: tracing and compiling
MJX's step and, twice, its reset, at the start and inside the auto-reset).
The default tier runs point-robot and cheetah-vel; the other Brax families,
walker-params' physics test included, are marked `slow`.
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mql import envs
from mql.envs import brax_tasks
from mql.envs.point_robot import PointRobot
from mql.envs.wrappers import TaskEpisodeWrapper, VmapTaskWrapper

EPISODE_LENGTH = 3
NUM_STEPS = 7  # auto-resets after steps 3 and 6 (indices 2 and 5)
# Slots 0 and 2: same key and task (control); slot 1: same key, another task;
# slots 0-2 pinned to their task; slots 3 and 4 resample from the whole split.
SLOT_KEYS = (0, 0, 0, 1, 2)
SLOT_TASK_IDS = (0, 1, 0, 2, 3)
PINNED = np.array([True, True, True, False, False])
FAST = ("point-robot", "cheetah-vel")
FAMILY_PARAMS = [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in envs.FAMILIES]


# ---------------------------------------------------------------------------
# One compiled rollout per family, shared by the tests.
# ---------------------------------------------------------------------------


@functools.cache
def _rollout(name):
  env = envs.make(name, task_seed=0, episode_length=EPISODE_LENGTH, batch_size=len(SLOT_KEYS))
  slot = env.env
  num_tasks = slot.num_tasks
  task_ids = np.array(SLOT_TASK_IDS) % num_tasks
  actions = np.asarray(jax.random.uniform(jax.random.PRNGKey(7), (NUM_STEPS, env.action_size), minval=-1, maxval=1))

  def run(keys, task_ids, actions):
    state = jax.vmap(lambda k, i: slot.reset_with_task_id(k, i))(keys, task_ids)
    state = env.with_task_mask(state, jnp.where(jnp.asarray(PINNED)[:, None], state.info["task_mask"], True))

    def body(state, action):
      state = env.step(state, jnp.broadcast_to(action, (len(SLOT_KEYS), env.action_size)))
      return state, _record(state)

    _, trajectory = jax.lax.scan(body, state, actions)
    return _record(state), trajectory

  keys = jax.vmap(jax.random.PRNGKey)(jnp.array(SLOT_KEYS))
  first, trajectory = jax.jit(run)(keys, task_ids, actions)
  first, trajectory = jax.tree.map(np.asarray, (first, trajectory))
  return env, task_ids, actions, first, trajectory


def _record(state):
  out = {
    "obs": state.obs,
    "reward": state.reward,
    "done": state.done,
    "info": {k: state.info[k] for k in ("task", "task_id", "steps", "truncation", "final_obs", "task_mask")},
  }
  if state.pipeline_state is not None:
    out["x_pos"], out["x_rot"] = state.pipeline_state.x.pos, state.pipeline_state.x.rot
  return out


def _stack(first, trajectory, key):
  """(NUM_STEPS + 1, slots, ...): the reset state, then the state after each step (`info` keys too)."""
  if key not in first:
    first, trajectory = first["info"], trajectory["info"]
  return np.concatenate([first[key][None], trajectory[key]])


# ---------------------------------------------------------------------------
# NumPy references.
# ---------------------------------------------------------------------------


def _np_rotate(v, q):
  w, u = q[..., :1], q[..., 1:]
  return v + 2 * w * np.cross(u, v) + 2 * np.cross(u, np.cross(u, v))


def _np_humanoid_com(env, x_pos, x_rot):
  inertia = env.unwrapped.sys.link.inertia
  mass = np.asarray(inertia.mass, np.float64)
  pos = x_pos + _np_rotate(np.asarray(inertia.transform.pos, np.float64), x_rot)
  return np.einsum("l,...lk->...k", mass, pos) / mass.sum()


def _np_reward(name, env, task, before, after, action):
  """The family's reward of one step from the states before and after it (float64)."""
  action = np.clip(action.astype(np.float64), -1, 1)
  sq = np.sum(action**2)
  if name == "point-robot":
    return -np.linalg.norm(before["obs"] + 0.1 * action - task)
  dt = float(env.unwrapped.dt)
  torso0, torso1 = before["x_pos"][0].astype(np.float64), after["x_pos"][0].astype(np.float64)
  if name == "cheetah-vel":
    return -abs((torso1[0] - torso0[0]) / dt - task[0]) - 0.05 * sq
  if name == "cheetah-dir":
    return task[0] * (torso1[0] - torso0[0]) / dt - 0.05 * sq
  if name == "ant-dir":
    velocity = (torso1[:2] - torso0[:2]) / dt
    return velocity @ [np.cos(task[0]), np.sin(task[0])] + 1.0 - 0.5 * sq
  if name == "ant-goal":
    return -np.abs(torso1[:2] - task).sum() - 0.1 * sq
  if name == "humanoid-dir":
    ctrl_range = np.asarray(env.unwrapped.sys.actuator.ctrl_range, np.float64)
    ctrl = (action + 1) * (ctrl_range[:, 1] - ctrl_range[:, 0]) / 2 + ctrl_range[:, 0]
    com0 = _np_humanoid_com(env, before["x_pos"], before["x_rot"])
    com1 = _np_humanoid_com(env, after["x_pos"], after["x_rot"])
    velocity = (com1[:2] - com0[:2]) / dt
    return 1.25 * velocity @ [np.cos(task[0]), np.sin(task[0])] + 5.0 - 0.1 * np.sum(ctrl**2)
  if name == "walker-params":
    return (torso1[0] - torso0[0]) / dt + 1.0 - 1e-3 * sq
  raise AssertionError(name)


# ---------------------------------------------------------------------------
# Every family under jit + vmap.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_family_steps_with_right_shapes_and_finite_values(name):
  env, _, _, first, trajectory = _rollout(name)
  slots, spec = len(SLOT_KEYS), envs.FAMILIES[name]
  assert first["obs"].shape == (slots, env.observation_size)
  assert trajectory["obs"].shape == (NUM_STEPS, slots, env.observation_size)
  assert trajectory["reward"].shape == trajectory["done"].shape == (NUM_STEPS, slots)
  assert trajectory["info"]["task"].shape == (NUM_STEPS, slots, spec.task_size)
  assert trajectory["info"]["task_id"].dtype == np.int32
  for leaf in jax.tree.leaves((first, trajectory)):
    if np.issubdtype(leaf.dtype, np.floating):
      assert np.isfinite(leaf).all()
  assert env.tasks.shape == (spec.num_train, spec.task_size)
  assert env.unwrapped.action_size == env.action_size


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_each_slot_holds_its_task_and_pinned_slots_keep_it(name):
  env, task_ids, _, first, trajectory = _rollout(name)
  tasks = np.asarray(env.tasks)
  task_id = _stack(first, trajectory, "task_id")
  task = _stack(first, trajectory, "task")
  np.testing.assert_array_equal(first["info"]["task_id"], task_ids)
  np.testing.assert_array_equal(task, tasks[task_id])  # the task always matches its id
  np.testing.assert_array_equal(task_id[:, PINNED], np.broadcast_to(task_ids[PINNED], task_id[:, PINNED].shape))


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_time_limit_truncates_and_restarts(name):
  _, _, _, first, trajectory = _rollout(name)
  info, done = trajectory["info"], trajectory["done"]
  terminated = (done > 0) & (info["truncation"] == 0)
  assert np.all(info["truncation"] <= done)  # truncation only on done steps
  if envs.FAMILIES[name].name in ("point-robot", "cheetah-vel", "cheetah-dir", "ant-goal"):
    assert not terminated.any()  # families without termination
  # No slot runs past the limit; after a done step the next episode starts at 0.
  steps = _stack(first, trajectory, "steps")
  assert steps.max() < EPISODE_LENGTH
  np.testing.assert_array_equal(steps[1:][done > 0], 0)
  ended_by_time = (done > 0) & ~terminated
  np.testing.assert_array_equal(info["truncation"][ended_by_time], 1.0)
  # final_obs is the obs the step produced: equal to obs except on done steps.
  not_done = done == 0
  np.testing.assert_array_equal(info["final_obs"][not_done], trajectory["obs"][not_done])


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_reward_matches_numpy(name):
  env, _, actions, first, trajectory = _rollout(name)
  states = [first] + [jax.tree.map(lambda x, t=t: x[t], trajectory) for t in range(NUM_STEPS)]
  checked = 0
  for t in range(NUM_STEPS):
    for s in range(len(SLOT_KEYS)):
      if trajectory["done"][t, s]:
        continue  # after a done step the state is the next episode's first
      before = {k: v[s] for k, v in states[t].items() if k != "info"}
      after = {k: v[s] for k, v in states[t + 1].items() if k != "info"}
      task = states[t]["info"]["task"][s].astype(np.float64)
      expected = _np_reward(name, env, task, before, after, actions[t])
      np.testing.assert_allclose(trajectory["reward"][t, s], expected, rtol=1e-4, atol=1e-4)
      checked += 1
  assert checked >= NUM_STEPS


# ---------------------------------------------------------------------------
# Resets really resample (Brax's AutoResetWrapper would fail these).
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["point-robot", "cheetah-vel"])
def test_reset_resamples_task_and_initial_state_per_slot(name):
  env, task_ids, _, first, trajectory = _rollout(name)
  done = trajectory["done"] > 0
  resampled = ~PINNED
  assert done[:, resampled].sum() >= 4
  new_ids = trajectory["info"]["task_id"][:, resampled][done[:, resampled]]
  # Brax's AutoResetWrapper keeps info (hence the task) across resets.
  assert np.any(new_ids != np.repeat(task_ids[resampled][None], NUM_STEPS, 0)[done[:, resampled]])
  assert len(set(new_ids.tolist())) >= 3
  # The mask that drives the draws stays what the slot was given.
  np.testing.assert_array_equal(trajectory["info"]["task_mask"][:, resampled], True)
  if name == "cheetah-vel":
    # Fresh initial noise at every reset (Brax restores the first state it cached).
    reset_obs = trajectory["obs"][done]
    first_obs = np.broadcast_to(first["obs"][None], trajectory["obs"].shape)[done]
    assert np.all(np.abs(reset_obs - first_obs).max(axis=-1) > 1e-3)
    # ...even for a pinned slot, whose task stays.
    assert np.abs(trajectory["obs"][2, 0] - first["obs"][0]).max() > 1e-3


def test_same_key_and_task_give_identical_slots_point_robot_and_cheetah():
  for name in ("point-robot", "cheetah-vel"):
    _, _, _, first, trajectory = _rollout(name)
    np.testing.assert_array_equal(trajectory["obs"][:, 0], trajectory["obs"][:, 2])


@pytest.mark.slow
def test_walker_params_change_the_physics():
  env, _, _, first, trajectory = _rollout("walker-params")
  tasks = np.asarray(env.tasks)
  assert not np.allclose(tasks[0], tasks[1])
  # Slots 0 and 2: same key, same task, same actions -> the same trajectory.
  np.testing.assert_array_equal(first["obs"][0], first["obs"][2])
  np.testing.assert_allclose(trajectory["x_pos"][:, 0], trajectory["x_pos"][:, 2], atol=1e-6)
  # Slot 1: same key and actions, other parameters -> another trajectory.
  np.testing.assert_array_equal(first["info"]["final_obs"][0], first["info"]["final_obs"][1])
  gap = np.abs(trajectory["x_pos"][:2, 0] - trajectory["x_pos"][:2, 1]).max()
  assert gap > 1e-3, gap
  # Each task's parameters reach the Brax system.
  unwrapped = env.unwrapped
  sys = unwrapped.task_system(jnp.asarray(tasks[1]))
  parts = brax_tasks.split_walker_task(tasks[1])
  base = unwrapped._base_sys
  np.testing.assert_allclose(sys.link.inertia.mass, base.link.inertia.mass * parts["mass"], rtol=1e-6)
  np.testing.assert_allclose(sys.body_mass[1:], base.body_mass[1:] * parts["mass"], rtol=1e-6)
  np.testing.assert_allclose(sys.dof_damping, base.dof_damping * parts["damping"], rtol=1e-6)
  np.testing.assert_allclose(sys.geom_friction, base.geom_friction * parts["friction"], rtol=1e-6)
  np.testing.assert_allclose(
    np.diagonal(sys.link.inertia.i, axis1=1, axis2=2), base.body_inertia[1:] * parts["inertia"], rtol=1e-6
  )


def test_walker_task_distribution():
  task_set = envs.sample_tasks("walker-params", 0, 200, 0)
  parts = brax_tasks.split_walker_task(task_set.train)
  for name, base in (("mass", 1.5), ("inertia", 1.5), ("friction", 1.5), ("damping", 1.3)):
    exponent = np.log(parts[name]) / np.log(base)
    assert exponent.min() >= -3 - 1e-4 and exponent.max() <= 3 + 1e-4
    assert abs(exponent.mean()) < 0.2 and abs(exponent.std() - np.sqrt(3)) < 0.1  # U(-3, 3)


# ---------------------------------------------------------------------------
# Wrapper semantics on the point robot (fast to compile).
# ---------------------------------------------------------------------------


class _TerminatingPoint(PointRobot):
  """Terminates once x > 0.25 (after three steps of action +1)."""

  def step(self, state, action):
    state = super().step(state, action)
    return state.replace(done=(state.obs[0] > 0.25).astype(jnp.float32))


@pytest.mark.parametrize(("episode_length", "truncation"), [(5, 0.0), (3, 0.0), (2, 1.0)])
def test_termination_and_truncation_are_separate(episode_length, truncation):
  env = TaskEpisodeWrapper(_TerminatingPoint(), np.array([[1.0, 0.0]], np.float32), episode_length)
  state = env.reset_with_task_id(jax.random.PRNGKey(0), 0)
  step = jax.jit(env.step)
  action = jnp.array([1.0, 0.0])
  end = min(episode_length, 3)
  for t in range(1, end + 1):
    state = step(state, action)
    assert float(state.done) == (1.0 if t == end else 0.0)
  assert float(state.info["truncation"]) == truncation
  np.testing.assert_allclose(state.info["final_obs"], [0.1 * end, 0.0], rtol=1e-6)
  np.testing.assert_array_equal(state.obs, [0.0, 0.0])  # next episode started
  assert int(state.info["steps"]) == 0


def test_vmap_wrapper_equals_vmapped_slot_and_sets_masks():
  env = envs.make("point-robot", episode_length=2, batch_size=3)
  slot = env.env
  keys = jax.random.split(jax.random.PRNGKey(3), 3)
  state = jax.vmap(slot.reset)(keys)
  actions = jnp.full((3, 2), 0.5)
  batched_step, vmapped_step = jax.jit(env.step), jax.jit(jax.vmap(slot.step))
  batched, vmapped = state, state
  for _ in range(5):
    batched = batched_step(batched, actions)
    vmapped = vmapped_step(vmapped, actions)
  for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(vmapped)):
    np.testing.assert_array_equal(a, b)
  # Per-slot masks: slot i draws only task i from now on.
  masks = np.eye(3, slot.num_tasks, dtype=bool)
  state = env.with_task_mask(jax.jit(env.reset)(jax.random.PRNGKey(0)), masks)
  for _ in range(2):
    state = batched_step(state, actions)
  np.testing.assert_array_equal(state.info["task_id"], [0, 1, 2])
  state = jax.jit(env.reset_with_task_id)(jax.random.PRNGKey(1), jnp.array([5, 6, 7]))
  np.testing.assert_array_equal(state.info["task"], np.asarray(env.tasks)[[5, 6, 7]])
  with pytest.raises(ValueError, match="task_ids must have shape"):
    env.reset_with_task_id(jax.random.PRNGKey(1), jnp.array([5, 6]))


def test_point_robot_dynamics_match_pearl():
  env = PointRobot()
  state = env.reset_with_task(jax.random.PRNGKey(0), jnp.array([0.0, 1.0]))
  np.testing.assert_array_equal(state.obs, [0.0, 0.0])
  state = env.step(state, jnp.array([3.0, -0.5]))  # clipped to [1, -0.5] -> moves (0.1, -0.05)
  np.testing.assert_allclose(state.obs, [0.1, -0.05], rtol=1e-6)
  np.testing.assert_allclose(state.reward, -np.hypot(0.1, 1.05), rtol=1e-6)
  goals = envs.sample_tasks("point-robot", 0).train
  np.testing.assert_allclose(np.linalg.norm(goals, axis=1), 1.0, rtol=1e-6)
  assert goals[:, 1].min() >= -1e-6  # upper half circle


# ---------------------------------------------------------------------------
# Registry, task sets, JSON.
# ---------------------------------------------------------------------------


def test_unknown_family_lists_valid_names():
  for call in (lambda: envs.make("cheetah-velocity"), lambda: envs.sample_tasks("nope", 0)):
    with pytest.raises(ValueError) as error:
      call()
    for name in envs.FAMILIES:
      assert name in str(error.value)


def test_family_defaults_follow_the_original():
  expected = {  # (train, test, history, context) from MQL's pearl_envs.json / run_script.py
    "cheetah-vel": (100, 30, 20, 15),
    "cheetah-dir": (2, 2, 20, 20),
    "ant-dir": (2, 2, 25, 30),
    "ant-goal": (150, 30, 40, 40),
    "humanoid-dir": (100, 30, 15, 20),
    "walker-params": (40, 10, 10, 30),
  }
  for name, (train, test, history, context) in expected.items():
    spec = envs.FAMILIES[name]
    assert (spec.num_train, spec.num_test, spec.history_length, spec.context_size) == (train, test, history, context)
    assert spec.episode_length == 200
  assert set(envs.FAMILIES) == set(expected) | {"point-robot"}


def test_task_sets_follow_the_task_seed_only():
  for name in envs.FAMILIES:
    a, b = envs.sample_tasks(name, 11), envs.sample_tasks(name, 11)
    assert a.equals(b) and a.task_seed == 11
    assert a.train.shape == (envs.FAMILIES[name].num_train, envs.FAMILIES[name].task_size)
    if name in ("cheetah-dir", "ant-dir"):  # fixed two tasks, train == test (MQL)
      np.testing.assert_array_equal(a.train, a.test)
      assert a.equals(envs.sample_tasks(name, 12))
    else:
      assert not a.equals(envs.sample_tasks(name, 12))
  # The run seed (reset keys) picks tasks from the set; it never changes the set.
  env = envs.make("point-robot", task_seed=11, batch_size=4)
  np.testing.assert_array_equal(env.tasks, envs.sample_tasks("point-robot", 11).train)
  for run_seed in (0, 1):
    state = env.reset(jax.random.PRNGKey(run_seed))
    np.testing.assert_array_equal(state.info["task"], np.asarray(env.tasks)[state.info["task_id"]])


def test_task_distributions():
  vel = envs.sample_tasks("cheetah-vel", 0, 1000, 0).train
  assert vel.min() >= 0 and vel.max() <= 3 and abs(vel.mean() - 1.5) < 0.1
  goals = envs.sample_tasks("ant-goal", 0, 2000, 0).train
  radius = np.linalg.norm(goals, axis=1)
  assert radius.max() <= 3 + 1e-5
  assert abs(np.mean(radius < 1.5) - 0.25) < 0.04  # uniform on the disc: P(r < R/2) = 1/4
  directions = envs.sample_tasks("humanoid-dir", 0, 1000, 0).train
  assert directions.min() >= 0 and directions.max() < 2 * np.pi
  np.testing.assert_array_equal(envs.sample_tasks("cheetah-dir", 0).train[:, 0], [-1, 1])
  np.testing.assert_allclose(envs.sample_tasks("ant-dir", 0).train[:, 0], [0, np.pi], rtol=1e-6)
  # Point-robot: evenly spaced angles over [0, pi], shuffled, split train/test.
  task_set = envs.sample_tasks("point-robot", 0)
  angles = np.sort(
    np.arctan2(
      np.concatenate([task_set.train, task_set.test])[:, 1],
      task_set.train.shape[0] * 0 + np.concatenate([task_set.train, task_set.test])[:, 0],
    )
  )
  np.testing.assert_allclose(angles, np.linspace(0, np.pi, 100), atol=1e-5)


def test_task_set_json_round_trip(tmp_path):
  for name in ("walker-params", "cheetah-vel", "point-robot"):
    task_set = envs.sample_tasks(name, 5)
    restored = envs.TaskSet.from_dict(json.loads(json.dumps(task_set.to_dict())))
    assert restored.equals(task_set) and restored.task_seed == 5 and restored.family == name
    path = tmp_path / f"{name}.json"
    task_set.save(path)
    loaded = envs.TaskSet.load(path)
    assert loaded.equals(task_set)
    assert loaded.train.dtype == np.float32
  env = envs.make("point-robot", task_set=envs.TaskSet.load(tmp_path / "point-robot.json"), split="test")
  np.testing.assert_array_equal(env.tasks, envs.sample_tasks("point-robot", 5).test)


def test_make_rejects_bad_arguments():
  with pytest.raises(ValueError, match="family 'cheetah-vel'"):
    envs.make("point-robot", task_set=envs.sample_tasks("cheetah-vel", 0))
  with pytest.raises(ValueError, match="unknown split"):
    envs.make("point-robot", split="validation")
  with pytest.raises(ValueError, match="no backend"):
    envs.make("point-robot", backend="mjx")
  with pytest.raises(ValueError, match="task sizes differ"):
    envs.TaskSet("point-robot", np.zeros((2, 2)), np.zeros((2, 3)))
  with pytest.raises(TypeError):
    VmapTaskWrapper(PointRobot(), 2)


@pytest.mark.parametrize("name", FAMILY_PARAMS)
def test_task_env_runs_under_brax_training_wrappers(name):
  """brax.training's wrappers add metric keys (EvalWrapper: 'reward'); a step must keep them.

  Traced only (`jax.eval_shape`): a mismatched carry fails at trace time, no compile needed.
  """
  from brax.envs.wrappers import training as brax_wrappers

  env = brax_wrappers.EvalWrapper(brax_wrappers.wrap(envs.make_task_env(name), episode_length=4))
  state = jax.eval_shape(env.reset, jax.random.split(jax.random.PRNGKey(0), 2))
  action = jax.ShapeDtypeStruct((2, env.action_size), jnp.float32)

  def unroll(state, action):
    return jax.lax.scan(lambda s, _: (env.step(s, action), None), state, None, length=2)[0]

  out = jax.eval_shape(unroll, state, action)
  assert set(out.metrics) == set(state.metrics) and "reward" in out.metrics
