"""Tests of mql.replay: histories against a NumPy walk over episodes, samplers, snapshots, bytes."""

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mql import replay
from mql.envs import FAMILIES

E, S, A, H, C, T, K = 3, 2, 2, 4, 16, 3, 8  # envs, obs, act, history, capacity per env, tasks, snapshot
F = A + 1 + S


def _simulate(num_adds, seed=0, num_envs=E, num_tasks=T, max_len=7):
  """Random episodes per slot (some terminated, some truncated); observation[0] encodes (slot, time).

  Returns the per-add `Step`s and, per (slot, time), the reference transition
  built by walking the slot's episodes step by step.
  """
  rng = np.random.default_rng(seed)
  steps, ref = [], {}
  hist = [[] for _ in range(num_envs)]  # (a, r, s) of the current episode before t
  ep_len = rng.integers(1, max_len + 1, num_envs)
  ep_step = np.zeros(num_envs, np.int32)
  task = rng.integers(0, num_tasks, num_envs)
  terminates = rng.random(num_envs) < 0.5
  for time in range(num_adds):
    obs = rng.standard_normal((num_envs, S)).astype(np.float32)
    obs[:, 0] = 1000 * np.arange(num_envs) + time
    act = rng.standard_normal((num_envs, A)).astype(np.float32)
    rew = rng.standard_normal(num_envs).astype(np.float32)
    nxt = rng.standard_normal((num_envs, S)).astype(np.float32)
    last = ep_step + 1 >= ep_len
    disc = np.where(last & terminates, 0.0, 1.0).astype(np.float32)
    steps.append(
      replay.Step(
        observation=obs,
        action=act,
        reward=rew,
        discount=disc,
        next_observation=nxt,
        step=ep_step.copy(),
        task_id=task.astype(np.int32).copy(),
      )
    )
    for i in range(num_envs):
      feats = np.concatenate([act[i], rew[i : i + 1], obs[i]])
      past = hist[i][-H:]
      h = np.zeros((H, F), np.float32)
      m = np.zeros(H, bool)
      if past:
        h[H - len(past) :] = past
        m[H - len(past) :] = True
      nh = np.concatenate([h[1:], feats[None]])
      nm = np.concatenate([m[1:], [True]])
      ref[i, time] = dict(
        observation=obs[i],
        action=act[i],
        reward=rew[i],
        discount=disc[i],
        next_observation=nxt[i],
        history=h,
        history_mask=m,
        next_history=nh,
        next_history_mask=nm,
        task=int(task[i]),
        step=int(ep_step[i]),
      )
      hist[i].append(feats)
      if last[i]:  # auto-reset: a new episode, maybe a new task
        hist[i] = []
        ep_step[i] = 0
        ep_len[i] = rng.integers(1, max_len + 1)
        task[i] = rng.integers(0, num_tasks)
        terminates[i] = rng.random() < 0.5
      else:
        ep_step[i] += 1
  return steps, ref


def _fill(steps, capacity=C, num_tasks=T, snapshot=K):
  num_envs = steps[0].observation.shape[0]
  state = replay.init(num_envs, capacity, S, A, num_tasks, snapshot)
  add = jax.jit(replay.add)
  for s in steps:
    state = add(state, s)
  return state


def _decode(observation):
  code = np.asarray(observation)[:, 0].astype(int)
  return code // 1000, code % 1000


def _assert_matches(got, ref, slots, times):
  for name in replay.Transition._fields:
    want = np.stack([ref[i, t][name] for i, t in zip(slots, times)])
    np.testing.assert_allclose(np.asarray(getattr(got, name)), want, err_msg=name, rtol=1e-6)


@pytest.fixture(scope="module")
def wrapped():
  """40 adds into 16-row rings: wrapped more than twice."""
  steps, ref = _simulate(40)
  return _fill(steps), ref


def test_gather_equals_numpy_walk_across_episodes_and_wrap(wrapped):
  state, ref = wrapped
  first = 40 - C + H  # the H oldest rows are not sampled once wrapped
  slots, times = np.meshgrid(np.arange(E), np.arange(first, 40), indexing="ij")
  slots, times = slots.ravel(), times.ravel()
  got = jax.jit(replay.gather, static_argnums=3)(state, jnp.asarray(slots), jnp.asarray(times), H)
  chex.assert_shape([got.history, got.next_history], (len(slots), H, F))
  _assert_matches(got, ref, slots, times)
  # The walk covered episode starts (all masked), full windows and partial ones.
  starts = np.array([ref[i, t]["step"] == 0 for i, t in zip(slots, times)])
  assert starts.any() and (~starts).any()
  assert not np.asarray(got.history_mask)[starts].any()
  assert np.asarray(got.history_mask).all(1).any()
  np.testing.assert_array_equal(np.asarray(got.history)[starts], 0.0)
  # next_history is history shifted by one with step t's [a, r, s] appended.
  np.testing.assert_array_equal(got.next_history[:, :-1], got.history[:, 1:])
  np.testing.assert_array_equal(got.next_history_mask[:, :-1], got.history_mask[:, 1:])
  step_t = np.concatenate([got.action, got.reward[:, None], got.observation], 1)
  np.testing.assert_array_equal(got.next_history[:, -1], step_t)
  assert np.asarray(got.next_history_mask[:, -1]).all()


def test_gather_before_wrap_and_partial_ring():
  steps, ref = _simulate(9, seed=1)
  state = _fill(steps)
  slots, times = np.repeat(np.arange(E), 9), np.tile(np.arange(9), E)
  _assert_matches(replay.gather(state, jnp.asarray(slots), jnp.asarray(times), H), ref, slots, times)


def test_sample_under_jit_and_vmap(wrapped):
  state, ref = wrapped
  sample = jax.jit(replay.sample, static_argnums=(2, 3))
  got = sample(state, jax.random.key(0), 512, H)
  slots, times = _decode(got.observation)
  _assert_matches(got, ref, slots, times)
  # Only stored rows, never the H oldest of a wrapped ring; all slots and rows reached.
  assert times.min() >= 40 - C + H and times.max() == 39
  assert set(slots) == set(range(E)) and len(set(times)) == C - H
  slot_idx, time_idx = replay.sample_indices(state, jax.random.key(0), 512, H)
  np.testing.assert_array_equal(slot_idx, slots)
  np.testing.assert_array_equal(time_idx, times)
  # vmap over keys: each row equals the unbatched draw.
  keys = jax.random.split(jax.random.key(1), 3)
  batched = jax.jit(jax.vmap(lambda k: replay.sample(state, k, 16, H)))(keys)
  chex.assert_shape(batched.history, (3, 16, H, F))
  for j in range(3):
    chex.assert_trees_all_close(jax.tree.map(lambda x, j=j: x[j], batched), replay.sample(state, keys[j], 16, H))


def _task_rows(ref, task, total, first):
  rows = [(t, i) for (i, t), r in ref.items() if r["task"] == task and first <= t < total]
  return sorted(rows)  # add order: time, then slot


def test_sample_task_returns_only_that_task_from_its_snapshot(wrapped):
  state, ref = wrapped
  first = 40 - C + H
  fn = jax.jit(replay.sample_task, static_argnums=(3, 4))
  for task in range(T):
    newest = _task_rows(ref, task, 40, 0)[-K:]  # the snapshot: the task's last K steps
    expected = {r for r in newest if r[0] >= first}
    got = fn(state, jax.random.key(task), task, 256, H)
    assert int(replay.num_task_transitions(state, task, H)) == len(expected)
    if not expected:  # the whole snapshot was overwritten in the shared storage
      assert not np.asarray(got.observation).any() and not np.asarray(got.next_history_mask).any()
      continue
    slots, times = _decode(got.observation)
    assert {(t, i) for i, t in zip(slots, times)} == expected
    _assert_matches(got, ref, slots, times)
  # vmap over traced task ids.
  out = jax.jit(jax.vmap(lambda k, i: replay.sample_task(state, k, i, 32, H)))(
    jax.random.split(jax.random.key(9), T), jnp.arange(T)
  )
  for task in range(T):
    if int(replay.num_task_transitions(state, task, H)) == 0:
      continue
    slots, times = _decode(out.observation[task])
    assert all(ref[i, t]["task"] == task for i, t in zip(slots, times))


def test_sample_task_empty_task_gives_zeros():
  steps, _ = _simulate(5, num_tasks=1)
  state = _fill(steps, num_tasks=2)  # task 1 never ran
  got = replay.sample_task(state, jax.random.key(0), 1, 8, H)
  for leaf in jax.tree.leaves(got):
    assert not np.asarray(leaf).any()
  assert int(replay.num_task_transitions(state, 1, H)) == 0


def test_recent_is_the_newest_data_of_the_task(wrapped):
  state, ref = wrapped
  fn = jax.jit(replay.recent, static_argnums=(2, 3))
  for task in range(T):
    rows = _task_rows(ref, task, 40, 40 - C + H)
    got, valid = fn(state, task, 5, H)
    want = rows[-5:]
    n = len(want)
    np.testing.assert_array_equal(valid, [False] * (5 - n) + [True] * n)
    slots, times = _decode(got.observation[5 - n :])
    assert [(t, i) for i, t in zip(slots, times)] == want
    if n:
      _assert_matches(jax.tree.map(lambda x, n=n: x[5 - n :], got), ref, slots, times)
    assert not np.asarray(got.observation[: 5 - n]).any()
  # Fewer stored than asked: invalid rows first.
  steps, ref = _simulate(2, seed=2, num_tasks=1)
  got, valid = replay.recent(_fill(steps, num_tasks=1), 0, K, H)
  np.testing.assert_array_equal(valid, np.arange(K) >= K - 2 * E)
  slots, times = _decode(got.observation[K - 2 * E :])
  assert list(times) == [0, 0, 0, 1, 1, 1] and list(slots) == [0, 1, 2] * 2
  # A third add overflows the 8-entry snapshot: its oldest pointer goes.
  steps, ref = _simulate(3, seed=2, num_tasks=1)
  got, valid = replay.recent(_fill(steps, num_tasks=1), 0, K, H)
  assert valid.all()
  slots, times = _decode(got.observation)
  assert list(times) == [0, 0, 1, 1, 1, 2, 2, 2] and list(slots) == [1, 2] + [0, 1, 2] * 2


def test_add_ignores_out_of_range_tasks_in_snapshots():
  steps, _ = _simulate(4, num_tasks=1)
  steps = [s._replace(task_id=np.array([0, 5, -1], np.int32)) for s in steps]
  state = _fill(steps, num_tasks=1)
  np.testing.assert_array_equal(state.task_index.size, [4])
  np.testing.assert_array_equal(state.task_index.data["slot"][0, :4], 0)


def test_step_from_env_uses_pre_step_task_and_true_next_obs():
  def env_state(obs, done, truncation, steps, task, final_obs, reward):
    info = dict(truncation=jnp.asarray(truncation), steps=jnp.asarray(steps), task_id=jnp.asarray(task))
    info["final_obs"] = jnp.asarray(final_obs)
    return types.SimpleNamespace(obs=jnp.asarray(obs), done=jnp.asarray(done), reward=jnp.asarray(reward), info=info)

  before = env_state(np.zeros((3, S)), [0.0] * 3, [0.0] * 3, [4, 199, 7], [1, 2, 0], np.zeros((3, S)), [0.0] * 3)
  # Slot 0 continues, slot 1 hits the time limit, slot 2 terminates; 1 and 2 auto-reset to task 0.
  final = np.arange(3 * S, dtype=np.float32).reshape(3, S)
  after = env_state(np.ones((3, S)), [0.0, 1.0, 1.0], [0.0, 1.0, 0.0], [5, 0, 0], [1, 0, 0], final, [0.5, 1.0, 2.0])
  step = replay.step_from_env(before, jnp.ones((3, A)), after)
  np.testing.assert_array_equal(step.discount, [1.0, 1.0, 0.0])
  np.testing.assert_array_equal(step.task_id, [1, 2, 0])
  np.testing.assert_array_equal(step.step, [4, 199, 7])
  np.testing.assert_array_equal(step.next_observation, final)
  replay.add(replay.init(3, C, S, A, T, K), step)  # the shapes and dtypes add expects


def test_validation():
  with pytest.raises(ValueError, match="snapshot_size"):
    replay.init(8, C, S, A, T, 4)
  state = replay.init(E, C, S, A, T, K)
  with pytest.raises(ValueError, match="history_length"):
    replay.sample(state, jax.random.key(0), 4, C)
  with pytest.raises(ValueError, match="exceeds snapshot_size"):
    replay.recent(state, 0, K + 1, H)
  bad = replay.Step(*[np.zeros((E + 1,) + x.shape[2:], x.dtype) for x in state.steps.data])
  with pytest.raises(AssertionError):
    replay.add(state, bad)


# Observation / action sizes of the families (mql.envs docstring table) and the original's S where it differs.
_SIZES = {
  "cheetah-vel": (17, 6),
  "cheetah-dir": (17, 6),
  "ant-dir": (27, 8),
  "ant-goal": (29, 8),
  "humanoid-dir": (244, 17),
  "walker-params": (17, 6),
  "point-robot": (2, 2),
}


@pytest.mark.parametrize("family", sorted(_SIZES))
def test_bytes_ratio_meets_the_goal(family):
  s, a = _SIZES[family]
  fam = FAMILIES[family]
  # Full size (1e6 steps over 128 envs, a 2000-step snapshot per train task), measured without allocating.
  state = jax.eval_shape(lambda: replay.init(128, 1_000_000 // 128, s, a, fam.num_train, 2000))
  ours = replay.bytes_per_transition(state)
  original = replay.original_bytes_per_transition(s, a, fam.history_length)
  assert ours / original <= 0.1, (family, ours, original)


def test_bytes_typical_family_and_formula():
  assert replay.original_bytes_per_transition(20, 6, 25) == 4 * (2 * 20 + 6 + 2 + 2 * 25 * 27)
  state = replay.init(E, C, S, A, T, K)
  leaves = jax.tree.leaves(state)
  assert replay.bytes_per_transition(state) == sum(x.nbytes for x in leaves) / (E * C)
  big = jax.eval_shape(lambda: replay.init(128, 1_000_000 // 128, 20, 6, 100, 2000))
  ratio = replay.bytes_per_transition(big) / replay.original_bytes_per_transition(20, 6, 25)
  assert ratio <= 0.05, ratio


def test_point_robot_rollout_histories_match_a_walk_over_env_states():
  """`step_from_env` + `add` on a real vmapped env (time limit 5, so episodes auto-reset and the ring wraps)."""
  from mql import envs

  env = envs.make("point-robot", episode_length=5, batch_size=E)
  empty = replay.init(E, C, env.observation_size, env.action_size, FAMILIES["point-robot"].num_train, K)

  def body(carry, key):
    env_state, buf = carry
    action = jax.random.uniform(key, (E, env.action_size), minval=-1.0, maxval=1.0)
    nxt = env.step(env_state, action)
    step = replay.step_from_env(env_state, action, nxt)
    return (nxt, replay.add(buf, step)), step

  keys = jax.random.split(jax.random.key(3), 40)
  (_, buf), steps = jax.jit(lambda c: jax.lax.scan(body, c, keys))((env.reset(jax.random.key(4)), empty))
  steps = jax.tree.map(np.asarray, steps)
  np.testing.assert_array_equal(steps.discount, 1.0)  # the point robot only truncates
  np.testing.assert_array_equal(steps.step, np.tile(np.arange(40) % 5, (E, 1)).T)
  hist = [[] for _ in range(E)]
  slots, times, want_h, want_m = [], [], [], []
  for t in range(40):
    for i in range(E):
      past = hist[i][-H:]
      h, m = np.zeros((H, env.action_size + 1 + env.observation_size), np.float32), np.zeros(H, bool)
      if past:
        h[H - len(past) :], m[H - len(past) :] = past, True
      if t >= 40 - C + H:
        slots.append(i), times.append(t), want_h.append(h), want_m.append(m)
      hist[i].append(np.concatenate([steps.action[t, i], steps.reward[t, i : i + 1], steps.observation[t, i]]))
      if steps.step[t, i] == 4:
        hist[i] = []
      elif t < 39:  # inside an episode the next observation is the next row's observation
        np.testing.assert_allclose(steps.next_observation[t, i], steps.observation[t + 1, i])
  got = replay.gather(buf, jnp.asarray(slots), jnp.asarray(times), H)
  np.testing.assert_allclose(got.history, np.stack(want_h), rtol=1e-6)
  np.testing.assert_array_equal(got.history_mask, np.stack(want_m))


def test_replays_vmap_over_seeds():
  steps, ref = _simulate(20, seed=5)
  stacked = [jax.tree.map(lambda x: np.stack([x, x]), s) for s in steps]
  states = jax.vmap(lambda _: replay.init(E, C, S, A, T, K))(jnp.arange(2))
  add = jax.jit(jax.vmap(replay.add))
  for s in stacked:
    states = add(states, s)
  got = jax.jit(jax.vmap(lambda st, k: replay.sample(st, k, 8, H)))(states, jax.random.split(jax.random.key(0), 2))
  for j in range(2):
    slots, times = _decode(got.observation[j])
    _assert_matches(jax.tree.map(lambda x, j=j: x[j], got), ref, slots, times)


def test_long_episodes_saturate_the_int16_step_index():
  steps, _ = _simulate(H + 1, seed=6)
  steps = [s._replace(step=np.full(E, 40_000 + t, np.int32)) for t, s in enumerate(steps)]
  state = _fill(steps)
  assert state.steps.data.step.dtype == jnp.int16 and int(state.steps.data.step.max()) == 32767
  got = replay.gather(state, jnp.zeros(1, jnp.int32), jnp.full(1, H, jnp.int32), H)
  assert np.asarray(got.history_mask).all()
