"""Functional replay buffers: uniform ring, multi-task, and sequence sampling.

A buffer is a `ReplayState` pytree: the stored transition pytree with a leading
capacity axis on every leaf, plus the write head and fill counters.  Every
field keeps its own dtype and trailing shape (int32 token ids stay int32, bool
stays bool, bf16 stays bf16); nothing is flattened into a single float array.
All functions are pure, jit-safe and vmap-safe; only shapes and the capacity
are static.

Ring layout: items are written at `insert_pos` and the head advances modulo
`capacity`.  The oldest stored item sits at `(insert_pos - size) % capacity`,
so logical index `j` in `[0, size)` (0 = oldest, size - 1 = newest) lives at
physical slot `(insert_pos - size + j) % capacity`.  Until the ring is full,
the stored items occupy exactly the physical slots `[0, size)`.

Typical use::

  state = replay.init({'obs': jnp.zeros(3), 'done': False}, capacity=10_000)
  state = replay.add(state, batch)          # leaves of batch: [B, ...]
  sample = replay.sample(state, key, 256)   # leaves: [256, ...]

A multi-task buffer is the same `ReplayState` with one extra leading task axis
on every leaf and on the counters (`init_multitask`).  Adding one batch per task
in a single call is `jax.vmap(add)(state, batches)`.
"""

from collections.abc import Mapping
from typing import Any, Callable, Union

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
DoneField = Union[str, Callable[[PyTree], jax.Array]]

_WEIGHTINGS = ("uniform", "proportional")


@flax.struct.dataclass
class ReplayState:
  """Replay buffer state.

  Attributes:
    data: transition pytree; every leaf is `[capacity, ...]` (single buffer) or
      `[num_tasks, capacity, ...]` (multi-task buffer).
    insert_pos: int32 slot the next item is written to; shape `[]` or
      `[num_tasks]`.
    size: int32 number of stored items, at most `capacity`; shape `[]` or
      `[num_tasks]`.
    capacity: static number of slots (per task).
  """

  data: PyTree
  insert_pos: jax.Array
  size: jax.Array
  capacity: int = flax.struct.field(pytree_node=False)


# ----------------------------------------------------------------------------
# Validation helpers (all run at trace time on static shapes).


def _check_positive(name: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{name} must be a Python int, got {value!r}.")
  if value <= 0:
    raise ValueError(f"{name} must be positive, got {value}.")
  return int(value)


def _leaf_spec(x: Any) -> jax.ShapeDtypeStruct:
  if isinstance(x, jax.ShapeDtypeStruct):
    return x
  x = jnp.asarray(x)
  return jax.ShapeDtypeStruct(x.shape, x.dtype)


def _check_single(state: ReplayState, fn: str) -> None:
  if jnp.ndim(state.size) != 0:
    raise ValueError(
      f"{fn} expects a single buffer, but counters have shape "
      f"{jnp.shape(state.size)}; for multi-task buffers use add_task / "
      "sample_task / sample_mixed, or jax.vmap over the task axis."
    )


def _check_multi(state: ReplayState, fn: str) -> None:
  if jnp.ndim(state.size) != 1:
    raise ValueError(
      f"{fn} expects a multi-task buffer (counters of shape [num_tasks]), "
      f"got counters of shape {jnp.shape(state.size)}; see init_multitask."
    )


def _check_batch(data: PyTree, batch: PyTree, num_lead: int) -> int:
  """Checks `batch` against stored `data`; returns the static batch size."""
  data_def, batch_def = jax.tree.structure(data), jax.tree.structure(batch)
  if data_def != batch_def:
    raise ValueError(f"Batch structure {batch_def} does not match the buffer structure {data_def}.")
  paths_and_leaves = jax.tree_util.tree_flatten_with_path(data)[0]
  sizes = set()
  for (path, buf), new in zip(paths_and_leaves, jax.tree.leaves(batch)):
    name = jax.tree_util.keystr(path) or "<root>"
    item_shape = buf.shape[num_lead:]
    new_shape, new_dtype = jnp.shape(new), jnp.result_type(new)
    if new_shape[1:] != item_shape or not new_shape:
      raise ValueError(
        f"Field {name}: expected shape [B, *{item_shape}] (a leading batch "
        f"axis followed by the item shape), got {new_shape}."
      )
    if not np.can_cast(new_dtype, buf.dtype, casting="same_kind"):
      raise ValueError(
        f"Field {name}: cannot store dtype {new_dtype} in a {buf.dtype} "
        "buffer without changing its kind (e.g. float into int ids)."
      )
    sizes.add(new_shape[0])
  if len(sizes) != 1:
    raise ValueError(f"Batch leaves disagree on the batch size: {sorted(sizes)}.")
  return sizes.pop()


def _check_task_id(task_id: Any, num_tasks: int) -> jax.Array:
  """Range-checks concrete task ids; traced ids are documented as unchecked."""
  if not isinstance(task_id, jax.core.Tracer):
    tid = np.asarray(task_id)
    if tid.shape or not np.issubdtype(tid.dtype, np.integer):
      raise ValueError(f"task_id must be an integer scalar, got {task_id!r}.")
    if not 0 <= int(tid) < num_tasks:
      raise ValueError(f"task_id {int(tid)} out of range [0, {num_tasks}).")
  return jnp.asarray(task_id, jnp.int32)


def _cast(new: jax.Array, buf: jax.Array) -> jax.Array:
  return jnp.asarray(new).astype(buf.dtype)


# ----------------------------------------------------------------------------
# Uniform circular buffer.


def init(example_transition: PyTree, capacity: int) -> ReplayState:
  """Creates an empty buffer of `capacity` transitions shaped like the example.

  Args:
    example_transition: one transition (no batch axis); leaves may be arrays,
      scalars or `jax.ShapeDtypeStruct`. Only shapes and dtypes are used.
    capacity: number of slots (static Python int).

  Returns:
    A zero-filled `ReplayState` with `size == insert_pos == 0`.
  """
  capacity = _check_positive("capacity", capacity)
  specs = jax.tree.map(_leaf_spec, example_transition)
  data = jax.tree.map(lambda s: jnp.zeros((capacity,) + tuple(s.shape), s.dtype), specs)
  zero = jnp.zeros((), jnp.int32)
  return ReplayState(data=data, insert_pos=zero, size=zero, capacity=capacity)


def add(state: ReplayState, batch: PyTree) -> ReplayState:
  """Writes a batch at the head, overwriting the oldest items when full.

  Args:
    state: a single (not multi-task) buffer.
    batch: transition pytree with a leading batch axis of static size
      `1 <= B <= capacity` on every leaf (use `x[None]` for one transition).

  Returns:
    The updated state; batch item `i` lands at `(insert_pos + i) % capacity`.

  Raises:
    ValueError: on structure / shape / dtype-kind mismatch or `B > capacity`.
  """
  _check_single(state, "add")
  b = _check_batch(state.data, batch, num_lead=1)
  if not 1 <= b <= state.capacity:
    raise ValueError(
      f"Batch size {b} must be in [1, capacity={state.capacity}]; a larger batch would overwrite its own items."
    )
  idx = (state.insert_pos + jnp.arange(b, dtype=jnp.int32)) % state.capacity
  data = jax.tree.map(lambda buf, new: buf.at[idx].set(_cast(new, buf), unique_indices=True), state.data, batch)
  return state.replace(
    data=data, insert_pos=(state.insert_pos + b) % state.capacity, size=jnp.minimum(state.size + b, state.capacity)
  )


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> PyTree:
  """Samples `batch_size` stored transitions uniformly, with replacement.

  Only written slots are drawn once `size > 0`. On an empty buffer every
  draw returns slot 0, i.e. the zeros from `init`; guard with `state.size > 0`.

  Returns:
    Transition pytree with leaves `[batch_size, ...]`.
  """
  _check_single(state, "sample")
  batch_size = _check_positive("batch_size", batch_size)
  idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1), dtype=jnp.int32)
  return jax.tree.map(lambda x: x[idx], state.data)


# ----------------------------------------------------------------------------
# Multi-task buffer: the same state with a leading task axis.


def init_multitask(example_transition: PyTree, num_tasks: int, capacity_per_task: int) -> ReplayState:
  """Creates `num_tasks` independent empty rings of `capacity_per_task` each.

  Leaves are `[num_tasks, capacity_per_task, ...]`, counters `[num_tasks]`.
  """
  num_tasks = _check_positive("num_tasks", num_tasks)
  single = init(example_transition, capacity_per_task)
  return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_tasks,) + x.shape), single)


def add_task(state: ReplayState, batch: PyTree, task_id: jax.Array) -> ReplayState:
  """Adds a batch to the ring of task `task_id` only (same rules as `add`).

  `task_id` may be traced. Concrete ids are range-checked; a traced id outside
  `[0, num_tasks)` leaves the buffer unchanged (JAX drops out-of-bounds
  scatters). To add one batch to every task at once, use `jax.vmap(add)`.
  """
  _check_multi(state, "add_task")
  tid = _check_task_id(task_id, state.size.shape[0])
  b = _check_batch(state.data, batch, num_lead=2)
  if not 1 <= b <= state.capacity:
    raise ValueError(f"Batch size {b} must be in [1, capacity_per_task={state.capacity}].")
  pos = state.insert_pos[tid]
  idx = (pos + jnp.arange(b, dtype=jnp.int32)) % state.capacity
  data = jax.tree.map(lambda buf, new: buf.at[tid, idx].set(_cast(new, buf), mode="drop"), state.data, batch)
  return state.replace(
    data=data,
    insert_pos=state.insert_pos.at[tid].set((pos + b) % state.capacity, mode="drop"),
    size=state.size.at[tid].set(jnp.minimum(state.size[tid] + b, state.capacity), mode="drop"),
  )


def _gather_tasks(state: ReplayState, key: jax.Array, task_ids: jax.Array) -> PyTree:
  """Draws one item uniformly from each listed task's stored items."""
  maxval = jnp.maximum(state.size[task_ids], 1)
  idx = jax.random.randint(key, task_ids.shape, 0, maxval, dtype=jnp.int32)
  return jax.tree.map(lambda x: x[task_ids, idx], state.data)


def sample_task(state: ReplayState, key: jax.Array, task_id: jax.Array, batch_size: int) -> PyTree:
  """Samples uniformly (with replacement) from one task's stored items.

  Same empty-buffer behaviour as `sample`: an empty task yields its slot 0.
  A traced `task_id` outside `[0, num_tasks)` is clamped by JAX's gather.

  Returns:
    Transition pytree with leaves `[batch_size, ...]`.
  """
  _check_multi(state, "sample_task")
  tid = _check_task_id(task_id, state.size.shape[0])
  batch_size = _check_positive("batch_size", batch_size)
  return _gather_tasks(state, key, jnp.full((batch_size,), tid, jnp.int32))


def sample_mixed(
  state: ReplayState, key: jax.Array, batch_size: int, weighting: str = "uniform"
) -> tuple[PyTree, jax.Array]:
  """Samples across tasks: first a task per draw, then an item in that task.

  Mixing rule (each draw independent, with replacement):
    * `'uniform'` (default): the task is uniform over tasks holding data, so
      every non-empty task contributes equally however full it is.
    * `'proportional'`: task probability is proportional to its size, i.e.
      uniform over all stored transitions of all tasks.
  The item is then uniform over that task's stored items. Empty tasks are
  never drawn unless all are empty; then tasks are uniform and slot 0 (zeros)
  is returned.

  Returns:
    `(transitions, task_ids)`: leaves `[batch_size, ...]`; int32 `[batch_size]`.
  """
  _check_multi(state, "sample_mixed")
  batch_size = _check_positive("batch_size", batch_size)
  if weighting not in _WEIGHTINGS:
    raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {weighting!r}.")
  task_key, item_key = jax.random.split(key)
  size = state.size.astype(jnp.float32)
  weights = size if weighting == "proportional" else (size > 0).astype(jnp.float32)
  weights = jnp.where(jnp.any(state.size > 0), weights, 1.0)
  logits = jnp.where(weights > 0, jnp.log(weights), -jnp.inf)
  task_ids = jax.random.categorical(task_key, logits, shape=(batch_size,)).astype(jnp.int32)
  return _gather_tasks(state, item_key, task_ids), task_ids


# ----------------------------------------------------------------------------
# Sequence sampling for recurrent contexts.


def _get_done(transition: PyTree, done_field: DoneField) -> jax.Array:
  if callable(done_field):
    return done_field(transition)
  try:
    if isinstance(transition, Mapping):
      return transition[done_field]
    return getattr(transition, done_field)
  except (KeyError, AttributeError) as e:
    raise ValueError(
      f"Transitions have no done field {done_field!r}; pass done_field= a key/attribute name or a callable."
    ) from e


def sample_sequences(
  state: ReplayState, key: jax.Array, batch_size: int, seq_len: int, done_field: DoneField = "done"
) -> tuple[PyTree, jax.Array]:
  """Samples windows of `seq_len` consecutive steps ending at a random step.

  The last step `e` of each window is uniform over stored items (logical
  index, 0 = oldest); window step `k` is the item at logical
  `j = e - L + 1 + k`.
  Mask rule: step `k` is valid iff
    1. `j >= 0`: it is still stored, i.e. the window does not run past the
       oldest item (across the ring boundary to the newest one), and
    2. no item at logical `j, ..., e - 1` has `done` set: it belongs to the same
       episode as the last step (a `done` on the last step itself is allowed).
  The mask is thus a suffix of each row and the last step is always valid
  (when `size > 0`). Invalid steps are zero-filled (left padding), so episodes
  never leak into each other even if the mask is ignored. On an empty buffer
  all steps are zeros and the mask is all False. For a multi-task buffer,
  `jax.vmap` over the task axis (with one key per task).

  Args:
    state: a single buffer whose transitions contain a scalar done flag.
    key: PRNG key.
    batch_size: number of windows B.
    seq_len: window length L, in `[1, capacity]`.
    done_field: dict key or attribute name of the done flag (bool or float,
      nonzero = episode ended at that step), or a callable that maps the
      stored data pytree (leaves `[capacity, ...]`) to the `[capacity]` flags.

  Returns:
    `(seqs, mask)`: leaves `[B, L, ...]`; bool mask `[B, L]`.
  """
  _check_single(state, "sample_sequences")
  batch_size = _check_positive("batch_size", batch_size)
  seq_len = _check_positive("seq_len", seq_len)
  if seq_len > state.capacity:
    raise ValueError(f"seq_len {seq_len} exceeds capacity {state.capacity}.")
  done_buf = _get_done(state.data, done_field)
  if jnp.shape(done_buf) != (state.capacity,):
    raise ValueError(
      f"done field must be one scalar per transition, got buffer shape "
      f"{jnp.shape(done_buf)} for capacity {state.capacity}."
    )

  last = jax.random.randint(key, (batch_size, 1), 0, jnp.maximum(state.size, 1), dtype=jnp.int32)
  logical = last - (seq_len - 1) + jnp.arange(seq_len, dtype=jnp.int32)
  phys = (state.insert_pos - state.size + logical) % state.capacity  # [B, L]
  done = done_buf[phys] != 0
  # ended_after[k] = any(done[k:L-1]): an episode ends between step k and e.
  prior = done[:, :-1].astype(jnp.int32)
  ended_after = jnp.flip(jnp.cumsum(jnp.flip(prior, 1), axis=1), 1) > 0
  ended_after = jnp.pad(ended_after, ((0, 0), (0, 1)))
  mask = (logical >= 0) & ~ended_after & (state.size > 0)

  def gather(x):
    x = x[phys]
    m = mask.reshape(mask.shape + (1,) * (x.ndim - 2))
    return jnp.where(m, x, jnp.zeros((), x.dtype))

  return jax.tree.map(gather, state.data), mask
