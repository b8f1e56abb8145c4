"""Tests for common.replay against a plain-Python reference ring buffer.

XLA compiles dominate the run time, so the tests share a few capacities and
batch sizes, call jitted entry points, and inspect results as numpy arrays.
"""

import collections
import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import replay

CAP = 7  # shared capacity (per task) so compiled programs are reused
N = 2048  # shared sample size

# Jitted entry points: one compile per shape instead of many eager op compiles.
init = jax.jit(replay.init, static_argnums=1)
init_multitask = jax.jit(replay.init_multitask, static_argnums=(1, 2))
add = jax.jit(replay.add)
sample = jax.jit(replay.sample, static_argnums=2)
add_task = jax.jit(replay.add_task)  # the task id is traced
sample_task = jax.jit(replay.sample_task, static_argnums=3)
sample_mixed = jax.jit(replay.sample_mixed, static_argnums=(2, 3))
sample_sequences = jax.jit(replay.sample_sequences, static_argnums=(2, 3, 4))
to_np = jax.device_get

# ----------------------------------------------------------------------------
# Plain-Python reference.


class RefRing:
  """List-backed ring buffer; items are dicts of numpy values."""

  def __init__(self, capacity):
    self.capacity = capacity
    self.slots = [None] * capacity
    self.pos = 0
    self.size = 0
    self.items = collections.deque(maxlen=capacity)  # oldest ... newest

  def add(self, items):
    for item in items:
      self.slots[self.pos] = item
      self.pos = (self.pos + 1) % self.capacity
      self.size = min(self.size + 1, self.capacity)
      self.items.append(item)

  def ids(self):
    return {int(it["id"]) for it in self.items}

  def slot_ids(self):
    return np.array([0 if s is None else s["id"] for s in self.slots])

  def window(self, last_slot, seq_len, done_key="done"):
    """Walks the ring backwards from `last_slot`; returns (slots, mask)."""
    oldest = (self.pos - self.size) % self.capacity
    slots, mask = [None] * seq_len, [False] * seq_len
    slot = last_slot
    slots[-1], mask[-1] = slot, True
    for k in range(seq_len - 2, -1, -1):
      if slot == oldest:  # stepping back would wrap onto the newest item
        break
      slot = (slot - 1) % self.capacity
      if self.slots[slot][done_key]:  # the previous episode ended here
        break
      slots[k], mask[k] = slot, True
    return slots, mask


_counter = [0]


def make_items(n, done_at=()):
  """n transitions with globally unique ids >= 1 (0 marks padding/empty)."""
  items = []
  for _ in range(n):
    _counter[0] += 1
    i = _counter[0]
    items.append(
      {
        "id": np.int32(i),
        "obs": np.array([i, -i], np.float32) / 7.0,
        "done": bool(i in done_at),
        "tok": np.array([i, i + 1, i + 2], np.int32),
        "h": np.array([i % 5], jnp.bfloat16),
      }
    )
  return items


def stack(items):
  return {k: jnp.asarray(np.stack([it[k] for it in items])) for k in items[0]}


EXAMPLE = {
  "id": jnp.int32(0),
  "obs": jnp.zeros(2, jnp.float32),
  "done": jnp.bool_(False),
  "tok": jnp.zeros(3, jnp.int32),
  "h": jnp.zeros(1, jnp.bfloat16),
}

# ----------------------------------------------------------------------------
# Uniform buffer.


def test_init_shapes_dtypes_and_spec_inputs():
  state = init(EXAMPLE, CAP)
  assert state.capacity == CAP
  assert state.data["id"].shape == (CAP,)
  assert state.data["tok"].shape == (CAP, 3)
  for k, v in EXAMPLE.items():
    assert state.data[k].dtype == v.dtype, k
  assert int(state.size) == 0 and int(state.insert_pos) == 0
  specs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), EXAMPLE)
  shapes = lambda s: jax.tree.map(lambda x: (x.shape, x.dtype), s.data)
  assert shapes(jax.eval_shape(lambda: replay.init(specs, CAP))) == shapes(state)


def test_add_matches_reference_with_wraparound():
  state, ref = init(EXAMPLE, CAP), RefRing(CAP)
  for b in [3, 5, 7, 3, 5, 5, 3]:  # includes B == capacity
    items = make_items(b)
    state, _ = to_np(add(state, stack(items))), ref.add(items)
    assert int(state.size) == ref.size
    assert int(state.insert_pos) == ref.pos
    np.testing.assert_array_equal(state.data["id"], ref.slot_ids())
  for s, item in enumerate(ref.slots):
    np.testing.assert_array_equal(state.data["tok"][s], item["tok"])
    np.testing.assert_allclose(state.data["obs"][s], item["obs"])
    assert bool(state.data["done"][s]) == item["done"]


def test_sample_covers_exactly_stored_items_uniformly():
  state, ref = init(EXAMPLE, CAP), RefRing(CAP)
  items = make_items(3)
  state, _ = add(state, stack(items)), ref.add(items)
  ids = to_np(sample(state, jax.random.key(0), N))["id"]
  assert set(ids.tolist()) == ref.ids()  # never the 4 unwritten slots
  for _ in range(3):  # wrap around: 3 + 3 * 5 > 7
    items = make_items(5)
    state, _ = add(state, stack(items)), ref.add(items)
  batch = to_np(sample(state, jax.random.key(1), N))
  assert set(batch["id"].tolist()) == ref.ids()
  counts = collections.Counter(batch["id"].tolist())
  assert all(0.75 * N / CAP < c < 1.25 * N / CAP for c in counts.values())
  # All fields of a draw come from the same transition.
  np.testing.assert_array_equal(batch["tok"][:, 1], batch["id"] + 1)
  np.testing.assert_array_equal(batch["h"][:, 0].astype(np.float32), batch["id"] % 5)


def test_sample_empty_returns_zeros():
  out = to_np(sample(init(EXAMPLE, CAP), jax.random.key(0), N))
  assert out["id"].shape == (N,)
  for leaf in jax.tree.leaves(out):
    assert not np.any(leaf.astype(np.float32))


def test_dtypes_preserved_and_kind_safe_casts():
  items = make_items(5, done_at={_counter[0] + 2, _counter[0] + 4})
  state = add(init(EXAMPLE, CAP), stack(items))
  out = sample(state, jax.random.key(3), N)
  for k, v in EXAMPLE.items():
    assert out[k].dtype == v.dtype, k
  out = to_np(out)
  done_ids = {int(it["id"]) for it in items if it["done"]}
  assert len(done_ids) == 2
  np.testing.assert_array_equal(out["done"], np.isin(out["id"], list(done_ids)))
  # int -> float32 is allowed (cast to the buffer dtype) ...
  batch = stack(make_items(3))
  batch["obs"] = jnp.ones((3, 2), jnp.int32)
  state = add(state, batch)
  assert state.data["obs"].dtype == jnp.float32
  # ... but float into int token ids or into bool flags is not.
  with pytest.raises(ValueError, match="tok"):
    replay.add(state, dict(batch, tok=jnp.ones((3, 3), jnp.float32)))
  with pytest.raises(ValueError, match="done"):
    replay.add(state, dict(batch, done=jnp.ones((3,), jnp.float32)))


class Tr(NamedTuple):
  x: jax.Array
  ids: jax.Array


def test_namedtuple_transitions_and_vmap_over_buffers():
  example = Tr(x=jnp.zeros(2), ids=jnp.int32(0))
  single = init(example, CAP)
  states = jax.tree.map(lambda x: np.stack([x] * 3), to_np(single))
  batches = Tr(
    x=np.arange(3 * 5 * 2, dtype=np.float32).reshape(3, 5, 2), ids=np.arange(15, dtype=np.int32).reshape(3, 5) + 1
  )
  add_v = jax.jit(jax.vmap(replay.add))
  states = to_np(add_v(add_v(states, batches), batches))  # 10 items, cap 7
  for n in range(3):
    b = jax.tree.map(operator.itemgetter(n), batches)
    one = to_np(add(add(single, b), b))
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(operator.itemgetter(n), states), one)
  assert states.size.tolist() == [CAP] * 3
  assert states.insert_pos.tolist() == [3] * 3
  keys = jax.random.split(jax.random.key(0), 3)
  sample_v = jax.jit(jax.vmap(replay.sample, in_axes=(0, 0, None)), static_argnums=2)
  out = sample_v(states, keys, N)
  assert out.ids.shape == (3, N) and out.ids.dtype == jnp.int32
  out = to_np(out)
  for n in range(3):
    assert set(out.ids[n].tolist()) == set(batches.ids[n].tolist())


def test_add_errors():
  state = init(EXAMPLE, CAP)
  with pytest.raises(ValueError, match="Batch size 8"):
    replay.add(state, stack(make_items(8)))
  with pytest.raises(ValueError, match="structure"):
    bad = stack(make_items(2))
    del bad["h"]
    replay.add(state, bad)
  with pytest.raises(ValueError, match="leading batch"):
    replay.add(state, {k: jnp.asarray(v) for k, v in make_items(1)[0].items()})
  with pytest.raises(ValueError, match="disagree"):
    bad = stack(make_items(2))
    bad["id"] = bad["id"][:1]
    replay.add(state, bad)
  with pytest.raises(ValueError, match="capacity"):
    replay.init(EXAMPLE, 0)
  with pytest.raises(ValueError, match="batch_size"):
    replay.sample(state, jax.random.key(0), 0)
  with pytest.raises(ValueError, match="single buffer"):
    replay.add(replay.init_multitask(EXAMPLE, 2, 4), stack(make_items(1)))


# ----------------------------------------------------------------------------
# Multi-task buffer.


def test_multitask_isolation_matches_per_task_references():
  num_tasks = 3
  state = init_multitask(EXAMPLE, num_tasks, CAP)
  assert state.data["tok"].shape == (num_tasks, CAP, 3)
  assert state.size.shape == (num_tasks,) and state.capacity == CAP
  refs = [RefRing(CAP) for _ in range(num_tasks)]
  for task, b in [(0, 3), (2, 5), (0, 5), (2, 3), (0, 5), (2, 3)]:
    items = make_items(b)
    state = add_task(state, stack(items), jnp.int32(task))
    refs[task].add(items)
  np_state = to_np(state)
  for t, ref in enumerate(refs):
    assert int(np_state.size[t]) == ref.size
    assert int(np_state.insert_pos[t]) == ref.pos
    np.testing.assert_array_equal(np_state.data["id"][t], ref.slot_ids())
  for t in range(num_tasks):
    ids = to_np(sample_task(state, jax.random.key(t), t, N))["id"]
    assert set(ids.tolist()) == (refs[t].ids() or {0})  # empty task: zeros
  # vmap(add) over the task axis == add_task per task.
  batches = stack(make_items(num_tasks * 3))
  batches = jax.tree.map(lambda x: x.reshape((num_tasks, 3) + x.shape[1:]), batches)
  via_vmap = jax.jit(jax.vmap(replay.add))(state, batches)
  via_loop = state
  for t in range(num_tasks):
    via_loop = add_task(via_loop, jax.tree.map(operator.itemgetter(t), batches), t)
  jax.tree.map(np.testing.assert_array_equal, to_np(via_vmap), to_np(via_loop))


def _mixed_setup():
  state = init_multitask(EXAMPLE, 3, CAP)
  task_ids = {}
  for task, n in [(0, 3), (2, 5), (2, 5)]:  # sizes 3, 0, 7
    items = make_items(n)
    state = add_task(state, stack(items), task)
    task_ids.setdefault(task, set()).update(int(it["id"]) for it in items)
  task_ids[2] = set(sorted(task_ids[2])[-CAP:])  # oldest 3 overwritten
  return state, task_ids


@pytest.mark.parametrize(
  "weighting, expected",
  [
    ("uniform", [1 / 2, 0.0, 1 / 2]),
    ("proportional", [3 / 10, 0.0, 7 / 10]),
  ],
)
def test_sample_mixed_rule(weighting, expected):
  state, task_ids = _mixed_setup()
  out, tids = sample_mixed(state, jax.random.key(0), N, weighting)
  assert tids.shape == (N,) and tids.dtype == jnp.int32
  out, tids = to_np((out, tids))
  freq = np.bincount(tids, minlength=3) / N
  np.testing.assert_allclose(freq, expected, atol=0.04)
  assert freq[1] == 0.0
  for i, t in zip(out["id"].tolist(), tids.tolist()):
    assert i in task_ids[t]
  assert set(out["id"].tolist()) == task_ids[0] | task_ids[2]


def test_sample_mixed_all_empty_and_errors():
  state = init_multitask(EXAMPLE, 3, CAP)
  out, tids = to_np(sample_mixed(state, jax.random.key(0), N, "uniform"))
  assert set(tids.tolist()) == {0, 1, 2}
  assert not np.any(out["id"])
  with pytest.raises(ValueError, match="weighting"):
    replay.sample_mixed(state, jax.random.key(0), 3, weighting="softmax")
  with pytest.raises(ValueError, match="out of range"):
    replay.add_task(state, stack(make_items(1)), 3)
  with pytest.raises(ValueError, match="out of range"):
    replay.sample_task(state, jax.random.key(0), -1, 2)
  with pytest.raises(ValueError, match="Batch size"):
    replay.add_task(state, stack(make_items(CAP + 1)), 0)
  with pytest.raises(ValueError, match="multi-task"):
    replay.add_task(replay.init(EXAMPLE, 4), stack(make_items(1)), 0)
  with pytest.raises(ValueError, match="multi-task"):
    replay.sample_mixed(replay.init(EXAMPLE, 4), jax.random.key(0), 2)


# ----------------------------------------------------------------------------
# Sequence sampling.


def test_sequences_match_ring_walk_with_wraparound():
  seq_len = 4
  state, ref = init(EXAMPLE, CAP), RefRing(CAP)
  start = _counter[0]
  # Episodes of lengths 3, 1, 6, 2, 5, 1, 1, 7, ...; several passes of the ring.
  ends = {start + e for e in (3, 4, 10, 12, 17, 18, 19, 26, 30)}
  any_masked = False
  for step, b in enumerate([3, 5, 3, 5, 5, 3, 5, 3]):
    items = make_items(b, done_at=ends)
    state, _ = add(state, stack(items)), ref.add(items)
    seqs, mask = to_np(sample_sequences(state, jax.random.key(step), N, seq_len, "done"))
    slot_of = {int(it["id"]): s for s, it in enumerate(ref.slots) if it}
    assert mask.shape == (N, seq_len) and seqs["tok"].shape == (N, seq_len, 3)
    assert seqs["h"].dtype == jnp.bfloat16
    assert set(seqs["id"][:, -1].tolist()) == ref.ids()  # all ends reachable
    exp_ids, exp_mask = [], []
    for last in seqs["id"][:, -1].tolist():
      slots, row_mask = ref.window(slot_of[last], seq_len)
      exp_ids.append([0 if s is None else ref.slots[s]["id"] for s in slots])
      exp_mask.append(row_mask)
    np.testing.assert_array_equal(mask, np.array(exp_mask))
    np.testing.assert_array_equal(seqs["id"], np.array(exp_ids))
    assert mask[:, -1].all()
    off = ~mask  # masked steps are zero-filled in every field
    assert not np.any(seqs["tok"][off]) and not np.any(seqs["done"][off])
    any_masked |= bool(off.any())
  assert ref.size == CAP and any_masked


class Step(NamedTuple):
  obs: jax.Array
  terminal: jax.Array  # float done flag


def test_sequences_before_full_and_custom_done_field():
  state = init(Step(jnp.zeros(()), jnp.zeros(())), CAP)
  state = add(state, Step(np.arange(1.0, 6.0, dtype=np.float32), np.array([0.0, 0.0, 1.0, 0.0, 0.0], np.float32)))
  seqs, mask = to_np(sample_sequences(state, jax.random.key(0), 256, 3, "terminal"))
  expected = {  # last obs -> (window obs, mask); an episode ends at obs 3.
    1.0: ([0, 0, 1], [0, 0, 1]),
    2.0: ([0, 1, 2], [0, 1, 1]),
    3.0: ([1, 2, 3], [1, 1, 1]),
    4.0: ([0, 0, 4], [0, 0, 1]),
    5.0: ([0, 4, 5], [0, 1, 1]),
  }
  assert set(seqs.obs[:, -1].tolist()) == set(expected)
  np.testing.assert_array_equal(seqs.obs, [expected[last][0] for last in seqs.obs[:, -1]])
  np.testing.assert_array_equal(mask, np.array([expected[last][1] for last in seqs.obs[:, -1]], bool))
  callable_seqs, callable_mask = to_np(sample_sequences(state, jax.random.key(0), 256, 3, lambda t: t.terminal))
  np.testing.assert_array_equal(callable_seqs.obs, seqs.obs)
  np.testing.assert_array_equal(callable_mask, mask)


def test_sequences_empty_vmap_and_errors():
  state = init(EXAMPLE, CAP)
  seqs, mask = to_np(sample_sequences(state, jax.random.key(0), N, 4, "done"))
  assert not np.any(mask) and not np.any(seqs["id"])
  multi = init_multitask(EXAMPLE, 3, CAP)
  start = _counter[0]
  items = make_items(5, done_at={start + 2, start + 4})  # episodes of length 2
  multi = add_task(multi, stack(items), 1)
  keys = jax.random.split(jax.random.key(0), 3)
  seqs_v = jax.jit(jax.vmap(replay.sample_sequences, in_axes=(0, 0, None, None)), static_argnums=(2, 3))
  seqs, mask = to_np(seqs_v(multi, keys, N, 4))
  assert mask.shape == (3, N, 4) and seqs["tok"].shape == (3, N, 4, 3)
  assert not np.any(mask[0]) and not np.any(mask[2])
  assert np.all(mask[1, :, -1]) and mask[1].sum(-1).max() == 2
  with pytest.raises(ValueError, match="seq_len"):
    replay.sample_sequences(state, jax.random.key(0), 4, CAP + 1)
  with pytest.raises(ValueError, match="done field"):
    replay.sample_sequences(state, jax.random.key(0), 4, 3, done_field="term")
  with pytest.raises(ValueError, match="scalar"):
    replay.sample_sequences(state, jax.random.key(0), 4, 3, done_field="tok")
  with pytest.raises(ValueError, match="single buffer"):
    replay.sample_sequences(multi, jax.random.key(0), 4, 3)
