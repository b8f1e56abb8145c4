"""Task-set episodes: time limit, per-slot task in the state, auto-reset that resamples.

`TaskEpisodeWrapper` turns a task env (`reset_with_task(rng, task)`, task in
`state.info['task']`) into a Brax `Env` over a fixed array of tasks (one
`TaskSet` split).  It works on one env slot and is meant to be vmapped;
`VmapTaskWrapper` does that and adds a batch-level shortcut.

State `info` of a slot:

* `task` (task_size,) float32 and `task_id` () int32: the slot's current task;
* `task_mask` (num_tasks,) bool: the tasks the slot draws from when an episode
  ends (all of them after `reset`; only its own after `reset_with_task_id`
  unless `resample=True`; change it with `with_task_mask`);
* `rng`: the slot's key for future resets (initial noise and task draw);
* `steps` () int32: steps taken in the current episode;
* `truncation` () float32: 1 on a step that ended the episode by the time limit
  without terminating (bootstrap through it), else 0;
* `final_obs`: the observation the last step produced, before any auto-reset
  (the true next observation of the transition; equal to `obs` unless `done`).

On `done` the slot starts a new episode at once: a fresh initial state (new
noise from the slot's key) for a task drawn uniformly from its `task_mask`.
The returned state then has the new episode's `obs`, `task` and `task_id`,
and the finished step's `reward`, `done`, `metrics`, `truncation` and
`final_obs`.  Brax's `AutoResetWrapper` instead restores the first state it
cached at `reset`, with the same noise and, since `info` survives, the same
task forever; that wrapper must not be used here.
"""

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State, Wrapper


def _select(done: jax.Array, on_done, otherwise):
  """`on_done` where `done`, leaf by leaf; `done` has the leaves' leading batch shape."""

  def where(x, y):
    mask = jnp.reshape(done > 0, done.shape + (1,) * (jnp.ndim(x) - done.ndim))
    return jnp.where(mask, x, y)

  return jax.tree.map(where, on_done, otherwise)


class TaskEpisodeWrapper(Wrapper):
  """One env slot over a task array: time limit, task bookkeeping, resampling auto-reset.

  Attributes:
    tasks: (num_tasks, task_size) float32 task parameters the slot draws from.
    episode_length: steps after which an episode is truncated.
  """

  def __init__(self, env: Env, tasks: jax.Array, episode_length: int):
    super().__init__(env)
    tasks = jnp.asarray(tasks, jnp.float32)
    if tasks.ndim != 2 or tasks.shape[0] < 1:
      raise ValueError(f"tasks must be a non-empty (num_tasks, task_size) array, got shape {tasks.shape}")
    if int(episode_length) < 1:
      raise ValueError(f"episode_length must be >= 1, got {episode_length}")
    self.tasks = tasks
    self.episode_length = int(episode_length)

  @property
  def num_tasks(self) -> int:
    return int(self.tasks.shape[0])

  def reset(self, rng: jax.Array) -> State:
    """Starts an episode on a task drawn uniformly from all tasks (and so does every later reset)."""
    return self.reset_with_task_mask(rng, jnp.ones(self.num_tasks, bool))

  def reset_with_task_mask(self, rng: jax.Array, task_mask: jax.Array) -> State:
    """Starts an episode on a task drawn uniformly from `task_mask` (bool, non-empty)."""
    rng, task_key = jax.random.split(rng)
    return self._start(rng, _draw(task_key, task_mask), task_mask)

  def reset_with_task_id(self, rng: jax.Array, task_id: jax.Array, resample: bool = False) -> State:
    """Starts an episode on `tasks[task_id]`.

    Args:
      rng: key of the slot (initial noise now and at later resets).
      task_id: index into `tasks`; may be traced, so `jax.vmap(env.reset_with_task_id)(keys, ids)`
        gives each slot its own task.
      resample: if False the slot keeps this task at every auto-reset; if True
        later episodes draw uniformly from all tasks.
    """
    task_id = jnp.asarray(task_id, jnp.int32)
    task_mask = jnp.ones(self.num_tasks, bool) if resample else jnp.arange(self.num_tasks) == task_id
    return self._start(rng, task_id, task_mask)

  def with_task_mask(self, state: State, task_mask: jax.Array) -> State:
    """The tasks the slot draws from at its next resets (the current episode is unchanged)."""
    return state.replace(info={**state.info, "task_mask": jnp.asarray(task_mask, bool)})

  def step(self, state: State, action: jax.Array) -> State:
    """Steps the slot; on `done` it starts a fresh episode (see the module docstring)."""
    state = self.step_no_reset(state, action)
    return jax.lax.cond(state.done > 0, self.restart, lambda s: s, state)

  def step_no_reset(self, state: State, action: jax.Array) -> State:
    """One env step with the time limit applied and no auto-reset."""
    state = self.env.step(state.replace(done=jnp.zeros_like(state.done)), action)
    steps = state.info["steps"] + 1
    terminated = jnp.asarray(state.done, jnp.float32)
    timed_out = (steps >= self.episode_length).astype(jnp.float32)
    info = {
      **state.info,
      "steps": steps,
      "truncation": timed_out * (1.0 - terminated),
      "final_obs": state.obs,
    }
    return state.replace(done=jnp.maximum(terminated, timed_out), info=info)

  def restart(self, state: State) -> State:
    """A fresh episode for the slot (task from its mask), keeping the last step's outcome."""
    rng, task_key = jax.random.split(state.info["rng"])
    task_mask = state.info["task_mask"]
    fresh = self._start(rng, _draw(task_key, task_mask), task_mask)
    info = {**fresh.info, "truncation": state.info["truncation"], "final_obs": state.info["final_obs"]}
    return fresh.replace(reward=state.reward, done=state.done, metrics=state.metrics, info=info)

  def _start(self, rng: jax.Array, task_id: jax.Array, task_mask: jax.Array) -> State:
    next_rng, reset_key = jax.random.split(rng)
    task_id = jnp.asarray(task_id, jnp.int32)
    state = self.env.reset_with_task(reset_key, self.tasks[task_id])
    info = {
      **state.info,
      "task_id": task_id,
      "task_mask": jnp.asarray(task_mask, bool),
      "rng": next_rng,
      "steps": jnp.zeros((), jnp.int32),
      "truncation": jnp.zeros((), jnp.float32),
      "final_obs": state.obs,
    }
    done, reward = jnp.asarray(state.done, jnp.float32), jnp.asarray(state.reward, jnp.float32)
    return state.replace(done=done, reward=reward, info=info)


def _draw(key: jax.Array, task_mask: jax.Array) -> jax.Array:
  """A uniform draw among the True entries of `task_mask`."""
  return jax.random.categorical(key, jnp.where(task_mask, 0.0, -jnp.inf)).astype(jnp.int32)


class VmapTaskWrapper(Wrapper):
  """`batch_size` slots of a `TaskEpisodeWrapper`, each with its own task and key.

  Same semantics as vmapping the slot wrapper, but the auto-reset runs (for
  all slots, selected per slot) only when some slot is done, which with
  synchronised time limits skips the reset work on most steps.
  """

  def __init__(self, env: TaskEpisodeWrapper, batch_size: int):
    if not isinstance(env, TaskEpisodeWrapper):
      raise TypeError(f"VmapTaskWrapper wraps a TaskEpisodeWrapper, got {type(env).__name__}")
    super().__init__(env)
    self.batch_size = int(batch_size)

  def reset(self, rng: jax.Array) -> State:
    """`batch_size` slots, each drawing its tasks uniformly from all tasks."""
    return jax.vmap(self.env.reset)(jax.random.split(rng, self.batch_size))

  def reset_with_task_id(self, rng: jax.Array, task_ids: jax.Array, resample: bool = False) -> State:
    """Slot i starts on `tasks[task_ids[i]]` (pinned there unless `resample`)."""
    task_ids = jnp.asarray(task_ids, jnp.int32)
    if task_ids.shape != (self.batch_size,):
      raise ValueError(f"task_ids must have shape ({self.batch_size},), got {task_ids.shape}")
    keys = jax.random.split(rng, self.batch_size)
    return jax.vmap(lambda k, i: self.env.reset_with_task_id(k, i, resample))(keys, task_ids)

  def reset_with_task_mask(self, rng: jax.Array, task_masks: jax.Array) -> State:
    """Slot i draws from `task_masks[i]` (bool, (batch_size, num_tasks))."""
    return jax.vmap(self.env.reset_with_task_mask)(jax.random.split(rng, self.batch_size), task_masks)

  def with_task_mask(self, state: State, task_masks: jax.Array) -> State:
    """Per-slot masks ((batch_size, num_tasks), or one (num_tasks,) mask for all)."""
    task_masks = jnp.broadcast_to(jnp.asarray(task_masks, bool), (self.batch_size, self.env.num_tasks))
    return jax.vmap(self.env.with_task_mask)(state, task_masks)

  def step(self, state: State, action: jax.Array) -> State:
    state = jax.vmap(self.env.step_no_reset)(state, action)

    def restart(state):
      return _select(state.done, jax.vmap(self.env.restart)(state), state)

    return jax.lax.cond(jnp.any(state.done > 0), restart, lambda s: s, state)
