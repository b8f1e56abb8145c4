"""Meta-Q-Learning replay: time-ordered steps, histories gathered at sample time.

The official MQL code (amazon-science/meta-q-learning, `algs/MQL/buffer.py`,
`misc/runner_multi_snapshot.py`) stores with every transition its padded
(a, r, s) history for t and for t + 1: 2 · H · (A + 1 + S) floats per row (39 KB
for ant-goal, 47 KB for humanoid at the original's observation sizes), 12–45×
the transition itself.  It keeps one shared buffer for TD3 and, per
train task, a FIFO "snapshot" of the task's last `snapshot_size` transitions
that the propensity classifier draws its meta-training class from.

Here the replay stores each env slot's steps in time order, once, and rebuilds
the histories by gathering from that storage when it samples:

Measured with `bytes_per_transition` at 1e6 steps over 128 envs and 2000-step
snapshots, against `original_bytes_per_transition` at the family's H: 0.022×
(ant-goal) to 0.086× (point-robot, S = A = 2); 0.035× for S=20, A=6, H=25.

* `steps`: one ring per env slot (`common.replay` multi-task layout, the task
  axis used as the slot axis), leaves `[num_envs, capacity_per_env, ...]`,
  written in lock step by `add` (one vmapped env step per call).  A row is a
  `Step`: s_t, a_t, r_t, discount (1 − terminal; a time-limit truncation keeps
  1), the true s_{t+1} (the env's `info['final_obs']`, never an auto-reset
  observation), the step's index in its episode and its task id.
* `task_index`: per task, a ring of pointers (add time, env slot) to its
  newest `snapshot_size` steps: the original's per-task snapshot buffers
  without copying any transition.

History rule (`networks.history_features` order):
`history[k]` for transition t is the step at `t − H + k` (k = 0 … H − 1) as
`[a, r, s]`, valid iff it belongs to t's episode, i.e. `H − k <= step_t`;
invalid steps are zero features with mask False (left padding), so t at an
episode start gets an all-masked history.  `next_history`, the history of
s_{t+1}, is the window shifted by one, ending with step t itself; it is built
from the same gather, so both are consistent by construction.  Unlike the
original there is no synthetic `(s_0, random a, 0)` first entry (which its
next-histories lacked anyway, §1.3 of the notes).

Ring wrap-around: once a slot's ring has been overwritten, its H oldest rows
are not sampled, so no window reaches into overwritten data; a window never
crosses an episode boundary because the mask comes from t's own step index.

All functions are pure and jit/vmap friendly; sizes (`batch_size`,
`history_length`, `n`) are static.  Typical use::

  state = replay.init(num_envs=128, capacity_per_env=1_000_000 // 128, observation_size=17, action_size=6,
                      num_tasks=100, snapshot_size=2000)
  next_env_state = env.step(env_state, action)
  state = replay.add(state, replay.step_from_env(env_state, action, next_env_state))
  batch = replay.sample(state, key, 256, history_length=20)           # mql.losses.Transition
  neg = replay.sample_task(state, key, task_id, 4, history_length=20)  # one task's snapshot
  pos, valid = replay.recent(state, task_id, 200, history_length=20)   # its newest 200 steps
"""

from typing import Any, NamedTuple

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from common import replay
from mql import networks
from mql.losses import Transition

PyTree = Any

# Step indices and task ids are stored as int16 (2 bytes a row each).
_INT16_MAX = int(np.iinfo(np.int16).max)


class Step(NamedTuple):
  """One env step of every slot (leading axis `num_envs`), as `add` stores it.

  Attributes:
    observation: `[E, S]` s_t, the observation the action was taken in.
    action: `[E, A]` a_t.
    reward: `[E]` r_t.
    discount: `[E]` 1 − terminal (0 only on a real termination; truncation 1).
    next_observation: `[E, S]` the true s_{t+1} (`info['final_obs']`).
    step: `[E]` int index of t in its episode (0 at the first step;
      `info['steps']` of the state before the step).  Stored as int16,
      saturating at 32767 (exact for every mask, since H < 32767).
    task_id: `[E]` int task of the episode (of the state before the step:
      the auto-reset replaces `info['task_id']` with the next episode's);
      stored as int16.
  """

  observation: jax.Array
  action: jax.Array
  reward: jax.Array
  discount: jax.Array
  next_observation: jax.Array
  step: jax.Array
  task_id: jax.Array


@flax.struct.dataclass
class MQLReplayState:
  """The replay: per-slot time-ordered steps plus per-task pointer rings.

  Attributes:
    steps: `common.replay.ReplayState` whose data is a `Step` with leaves
      `[num_envs, capacity_per_env, ...]`; counters `[num_envs]` (equal: slots
      are written in lock step).
    total: int32 number of `add` calls so far (the add time of the next row).
    task_index: `common.replay.ReplayState` with data `{'time', 'slot'}`, int32
      leaves `[num_tasks, snapshot_size]`: for each task its newest steps as
      (add time, env slot), oldest first in ring order; counters `[num_tasks]`.
  """

  steps: replay.ReplayState
  total: jax.Array
  task_index: replay.ReplayState

  @property
  def num_envs(self) -> int:
    return self.steps.size.shape[0]

  @property
  def num_tasks(self) -> int:
    return self.task_index.size.shape[0]


def init(
  num_envs: int,
  capacity_per_env: int,
  observation_size: int,
  action_size: int,
  num_tasks: int,
  snapshot_size: int,
  dtype: Any = jnp.float32,
) -> MQLReplayState:
  """Creates an empty replay.

  Args:
    num_envs: env slots E written by each `add` (static).
    capacity_per_env: steps kept per slot; the total capacity is
      `num_envs * capacity_per_env` (the original's `replay_size`).
    observation_size: S.
    action_size: A.
    num_tasks: number of train tasks (ids `[0, num_tasks)`).
    snapshot_size: steps each task's snapshot keeps (the original's
      `--snapshot_size`, 1000–4000); at least `num_envs`.
    dtype: float dtype of observations, actions, rewards and discounts.

  Returns:
    A zero-filled `MQLReplayState`.
  """
  for name, value in (("observation_size", observation_size), ("action_size", action_size)):
    replay._check_positive(name, value)
  replay._check_positive("snapshot_size", snapshot_size)
  if replay._check_positive("num_tasks", num_tasks) > _INT16_MAX:
    raise ValueError(f"num_tasks {num_tasks} exceeds {_INT16_MAX} (task ids are stored as int16).")
  if snapshot_size < num_envs:
    raise ValueError(
      f"snapshot_size {snapshot_size} must be >= num_envs {num_envs}: one add may index E steps under one task."
    )
  example = Step(
    observation=jax.ShapeDtypeStruct((observation_size,), dtype),
    action=jax.ShapeDtypeStruct((action_size,), dtype),
    reward=jax.ShapeDtypeStruct((), dtype),
    discount=jax.ShapeDtypeStruct((), dtype),
    next_observation=jax.ShapeDtypeStruct((observation_size,), dtype),
    step=jax.ShapeDtypeStruct((), jnp.int16),
    task_id=jax.ShapeDtypeStruct((), jnp.int16),
  )
  pointer = {"time": jax.ShapeDtypeStruct((), jnp.int32), "slot": jax.ShapeDtypeStruct((), jnp.int32)}
  return MQLReplayState(
    steps=replay.init_multitask(example, num_envs, capacity_per_env),
    total=jnp.zeros((), jnp.int32),
    task_index=replay.init_multitask(pointer, num_tasks, snapshot_size),
  )


def step_from_env(state: PyTree, action: jax.Array, next_state: PyTree) -> Step:
  """Builds the `Step` of one vmapped `mql.envs` step `next_state = env.step(state, action)`.

  `next_state.done` is termination or time limit and `info['truncation']` the
  time limit alone (`mql.envs.wrappers`), so the terminal flag is their
  difference; the task and step index come from `state`, since the auto-reset
  has already moved `next_state` to the next episode.
  """
  truncation = jnp.asarray(next_state.info["truncation"])
  terminal = jnp.asarray(next_state.done) * (1.0 - truncation)
  return Step(
    observation=state.obs,
    action=action,
    reward=next_state.reward,
    discount=1.0 - terminal,
    next_observation=next_state.info["final_obs"],
    step=state.info["steps"],
    task_id=state.info["task_id"],
  )


def add(state: MQLReplayState, step: Step) -> MQLReplayState:
  """Appends one step of every env slot and indexes it under its task.

  Args:
    state: the replay.
    step: a `Step` with leaves `[num_envs, ...]`.  A `task_id` outside
      `[0, num_tasks)` is stored but left out of every task's snapshot.

  Returns:
    The updated replay (the oldest step of each slot is overwritten when full;
    a task's oldest pointer when its snapshot is full).
  """
  num_envs, num_tasks = state.num_envs, state.num_tasks
  data = state.steps.data
  chex.assert_shape(
    [step.observation, step.action, step.next_observation],
    [(num_envs, data.observation.shape[-1]), (num_envs, data.action.shape[-1]), (num_envs, data.observation.shape[-1])],
  )
  chex.assert_shape([step.reward, step.discount, step.step, step.task_id], (num_envs,))
  chex.assert_type([step.step, step.task_id], int)
  stored = step._replace(step=jnp.clip(step.step, 0, _INT16_MAX))  # saturating: masks need min(step, H) only
  steps = jax.vmap(replay.add)(state.steps, jax.tree.map(lambda x: jnp.asarray(x)[:, None], stored))

  index = state.task_index
  task = jnp.asarray(step.task_id, jnp.int32)
  in_range = (task >= 0) & (task < num_tasks)
  one_hot = (task[:, None] == jnp.arange(num_tasks)[None]).astype(jnp.int32)  # [E, T]
  counts = one_hot.sum(0)
  rank = jnp.sum((jnp.cumsum(one_hot, 0) - one_hot) * one_hot, 1)  # earlier slots with the same task
  safe_task = jnp.where(in_range, task, 0)
  pos = (index.insert_pos[safe_task] + rank) % index.capacity
  row = jnp.where(in_range, task, num_tasks)  # out of bounds: dropped
  pointers = {"time": jnp.full((num_envs,), state.total, jnp.int32), "slot": jnp.arange(num_envs, dtype=jnp.int32)}
  index_data = jax.tree.map(lambda buf, new: buf.at[row, pos].set(new, mode="drop"), index.data, pointers)
  index = index.replace(
    data=index_data,
    insert_pos=(index.insert_pos + counts) % index.capacity,
    size=jnp.minimum(index.size + counts, index.capacity),
  )
  return state.replace(steps=steps, total=state.total + 1, task_index=index)


# ----------------------------------------------------------------------------
# Gathering transitions with their histories.


def _check_history_length(state: MQLReplayState, history_length: int) -> int:
  history_length = replay._check_positive("history_length", history_length)
  if history_length >= min(state.steps.capacity, _INT16_MAX):
    raise ValueError(f"history_length {history_length} must be < capacity_per_env {state.steps.capacity} and 32767.")
  return history_length


def _first_sampled_time(state: MQLReplayState, history_length: int) -> jax.Array:
  """Add time of the oldest sampled row: the H oldest rows are skipped once overwriting began."""
  size = state.steps.size[0]
  skip = jnp.where(state.total > state.steps.capacity, history_length, 0)
  return state.total - size + skip


def gather(state: MQLReplayState, slot: jax.Array, time: jax.Array, history_length: int) -> Transition:
  """The transitions of env `slot` added at `time` (`add` call index), with histories.

  Args:
    state: the replay.
    slot: int `[B]` env slots.
    time: int `[B]` add times; each must still be stored
      (`time >= total - size`), which every sampler here guarantees.
    history_length: H (static), smaller than `capacity_per_env`.

  Returns:
    `Transition` with leaves `[B, ...]`; histories `[B, H, A + 1 + S]` and
    masks `[B, H]` (see the module docstring).
  """
  history_length = _check_history_length(state, history_length)
  chex.assert_rank([slot, time], 1)
  chex.assert_equal_shape([slot, time])
  ring, h = state.steps, history_length
  size, head = ring.size[0], ring.insert_pos[0]
  logical = time - (state.total - size)  # 0 = oldest stored row
  back = h - jnp.arange(h + 1, dtype=jnp.int32)  # steps before t: H, ..., 1, 0
  window = logical[:, None] - back[None]  # [B, H + 1]
  phys = (head - size + window) % ring.capacity
  rows, now = slot[:, None], phys[:, -1]
  data = ring.data
  mask = (back[None] <= data.step[slot, now][:, None]) & (window >= 0)
  feats = networks.history_features(data.action[rows, phys], data.reward[rows, phys], data.observation[rows, phys])
  feats = jnp.where(mask[..., None], feats, jnp.zeros((), feats.dtype))
  return Transition(
    observation=data.observation[slot, now],
    action=data.action[slot, now],
    reward=data.reward[slot, now],
    discount=data.discount[slot, now],
    next_observation=data.next_observation[slot, now],
    history=feats[:, :h],
    history_mask=mask[:, :h],
    next_history=feats[:, 1:],
    next_history_mask=mask[:, 1:],
  )


def _zero_where(valid: jax.Array, transition: Transition) -> Transition:
  """Zeroes (masks False) the rows of `transition` where `valid` is False."""

  def zero(x):
    m = valid.reshape(valid.shape + (1,) * (x.ndim - 1))
    return jnp.where(m, x, jnp.zeros((), x.dtype))

  return jax.tree.map(zero, transition)


# ----------------------------------------------------------------------------
# Samplers.


def sample_indices(
  state: MQLReplayState, key: jax.Array, batch_size: int, history_length: int
) -> tuple[jax.Array, jax.Array]:
  """Draws `(slot, time)` uniformly over the sampled rows of all slots, with replacement.

  Every stored step is drawn with the same probability (the original's shared
  buffer), except the H oldest rows of each slot once the ring has wrapped.
  On an empty replay every draw is `(slot, 0)`; guard with `state.total > 0`.
  """
  batch_size = replay._check_positive("batch_size", batch_size)
  history_length = _check_history_length(state, history_length)
  slot_key, time_key = jax.random.split(key)
  slot = jax.random.randint(slot_key, (batch_size,), 0, state.num_envs, dtype=jnp.int32)
  first = _first_sampled_time(state, history_length)
  time = jax.random.randint(time_key, (batch_size,), first, jnp.maximum(state.total, first + 1), dtype=jnp.int32)
  return slot, time


def sample(state: MQLReplayState, key: jax.Array, batch_size: int, history_length: int) -> Transition:
  """Uniform transitions of all tasks with their histories (the TD3 batch).

  Returns:
    `Transition` with leaves `[batch_size, ...]` (`gather`).
  """
  slot, time = sample_indices(state, key, batch_size, history_length)
  return gather(state, slot, time, history_length)


def _task_entries(state: MQLReplayState, task_id: jax.Array, history_length: int):
  """A task's pointers oldest first, and how many of the newest are still sampled."""
  index = state.task_index
  tid = jnp.asarray(task_id, jnp.int32)
  size, head, k = index.size[tid], index.insert_pos[tid], index.capacity
  order = (head - size + jnp.arange(k, dtype=jnp.int32)) % k  # logical -> physical
  time, slot = index.data["time"][tid, order], index.data["slot"][tid, order]
  stored = (jnp.arange(k) < size) & (time >= _first_sampled_time(state, history_length))
  return time, slot, size, jnp.sum(stored).astype(jnp.int32)


def num_task_transitions(state: MQLReplayState, task_id: jax.Array, history_length: int) -> jax.Array:
  """How many transitions `sample_task` / `recent` can return for `task_id` (int32)."""
  history_length = _check_history_length(state, history_length)
  return _task_entries(state, task_id, history_length)[3]


def sample_task(
  state: MQLReplayState, key: jax.Array, task_id: jax.Array, batch_size: int, history_length: int
) -> Transition:
  """Uniform draws, with replacement, from one task's snapshot (its newest `snapshot_size` steps).

  This is the original's `MultiTasksSnapshot.sample([task_id], ...)`, the
  propensity classifier's meta-training class.  Steps of the snapshot already
  overwritten in the shared storage are not drawn.  An empty task gives zeros
  (masks False); `task_id` may be traced (vmap over tasks).

  Returns:
    `Transition` with leaves `[batch_size, ...]`.
  """
  batch_size = replay._check_positive("batch_size", batch_size)
  history_length = _check_history_length(state, history_length)
  time, slot, size, count = _task_entries(state, task_id, history_length)
  u = jax.random.randint(key, (batch_size,), 0, jnp.maximum(count, 1), dtype=jnp.int32)
  entry = jnp.clip(size - count + u, 0, state.task_index.capacity - 1)
  out = gather(state, slot[entry], time[entry], history_length)
  return _zero_where(jnp.broadcast_to(count > 0, (batch_size,)), out)


def recent(state: MQLReplayState, task_id: jax.Array, n: int, history_length: int) -> tuple[Transition, jax.Array]:
  """The newest `n` transitions of a task, oldest first, with their histories.

  The context-building windows of the propensity classifier (its features are
  the actor GRU's output on `history`).  Rows the task does not have (fewer
  than `n` stored) are zeros with `valid` False, at the front.

  Args:
    state: the replay.
    task_id: int task (may be traced).
    n: static number of rows, at most `snapshot_size`.
    history_length: H.

  Returns:
    `(transitions, valid)`: leaves `[n, ...]`; bool `[n]`.
  """
  n = replay._check_positive("n", n)
  if n > state.task_index.capacity:
    raise ValueError(f"n {n} exceeds snapshot_size {state.task_index.capacity}.")
  history_length = _check_history_length(state, history_length)
  time, slot, size, count = _task_entries(state, task_id, history_length)
  entry = size - n + jnp.arange(n, dtype=jnp.int32)
  valid = entry >= size - count
  entry = jnp.clip(entry, 0, state.task_index.capacity - 1)
  return _zero_where(valid, gather(state, slot[entry], time[entry], history_length)), valid


# ----------------------------------------------------------------------------
# Memory accounting.


def _nbytes(tree: PyTree) -> int:
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def bytes_per_transition(state: MQLReplayState) -> float:
  """Bytes of the whole replay state (steps, task snapshots, counters) per stored step.

  Works on a `jax.eval_shape(init, ...)` result too, so full-size layouts can
  be measured without allocating them.
  """
  return _nbytes(state) / (state.num_envs * state.steps.capacity)


def original_bytes_per_transition(
  observation_size: int, action_size: int, history_length: int, itemsize: int = 4
) -> int:
  """Bytes of one row of the original layout (`algs/MQL/buffer.py`).

  A row holds `(s_t, s_{t+1}, a_t, r_t, done_bool)` and the padded history
  for t and for t + 1, `2 · H · (A + 1 + S)` floats, all `itemsize`-byte
  floats; the per-task snapshot copies (a second copy of recent rows) are not
  counted.
  """
  s, a, h = observation_size, action_size, history_length
  return itemsize * (2 * s + a + 2 + 2 * h * (a + 1 + s))
