"""Tests for common.checkpoint: round-trips, retention, cadence, corruption."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from common import checkpoint
from common.checkpoint import Checkpointer, CheckpointRestoreError

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
# One shared transformation: the static `tx` field is part of the treedef.
_TX = optax.adamw(1e-2)


@struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  key: jax.Array
  tx: optax.GradientTransformation = struct.field(pytree_node=False)


def _make_state(seed: int = 0) -> TrainState:
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  params = {
    "encoder": {
      "w": jax.random.normal(k1, (8, 16)),
      "b": jnp.zeros((16,), jnp.float32),
    },
    "head": {"w": jax.random.normal(k2, (16, 2)).astype(jnp.bfloat16)},
  }
  return TrainState(
    step=jnp.asarray(0, jnp.int32),
    params=params,
    opt_state=_TX.init(params),
    key=jax.random.PRNGKey(seed + 1),
    tx=_TX,
  )


@jax.jit
def _train_step(state: TrainState) -> TrainState:
  key, sub = jax.random.split(state.key)
  x = jax.random.normal(sub, (4, 8))

  def loss_fn(params):
    h = jnp.tanh(x @ params["encoder"]["w"] + params["encoder"]["b"])
    return jnp.mean((h @ params["head"]["w"].astype(jnp.float32)) ** 2)

  grads = jax.grad(loss_fn)(state.params)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  return state.replace(
    step=state.step + 1,
    params=optax.apply_updates(state.params, updates),
    opt_state=opt_state,
    key=key,
  )


def _assert_identical(actual: Any, expected: Any) -> None:
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert type(a) is type(e), (type(a), type(e))
    assert a.dtype == e.dtype
    if isinstance(e, jax.Array):
      assert a.sharding == e.sharding
    np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def _run(state: TrainState, n: int) -> TrainState:
  for _ in range(n):
    state = _train_step(state)
  return state


def test_round_trip_train_state(tmp_path):
  state = _run(_make_state(), 3)  # non-trivial mu/nu and counters
  assert state.key.dtype == jnp.uint32
  assert state.opt_state[0].count.dtype == jnp.int32
  with Checkpointer(tmp_path / "ckpt") as ckpt:
    assert ckpt.save(3, state)
    # Restore right after an async save, in the same process.
    restored, step = ckpt.restore_latest(_make_state(seed=7))
  assert step == 3
  _assert_identical(restored, state)
  assert isinstance(restored, TrainState)
  assert isinstance(restored.opt_state[0], optax.ScaleByAdamState)
  assert restored.tx is _TX  # static fields come from the target


def test_restore_into_abstract_target(tmp_path):
  state = _run(_make_state(), 2)
  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
    state,
  )
  no_sharding = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(2, state)
    restored, step = ckpt.restore_latest(abstract)
    _assert_identical(restored, state)
    restored, _ = ckpt.restore_latest(no_sharding)  # default device
    _assert_identical(restored, state)
  assert step == 2


def test_typed_prng_key_and_host_leaves(tmp_path):
  tree = {"key": jax.random.key(3), "host": np.arange(5), "n": 7, "none": None}
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(0, tree)
    restored, _ = ckpt.restore_latest(tree)
  assert jax.dtypes.issubdtype(restored["key"].dtype, jax.dtypes.prng_key)
  np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(tree["key"]))
  assert isinstance(restored["host"], np.ndarray)
  np.testing.assert_array_equal(restored["host"], tree["host"])
  assert restored["n"] == 7 and restored["none"] is None


@pytest.mark.opt
def test_resume_continues_with_identical_values(tmp_path):
  reference = _run(_make_state(), 6)
  with Checkpointer(tmp_path, save_every=2) as ckpt:
    state = _make_state()
    for _ in range(5):
      state = _train_step(state)
      ckpt.save(int(state.step), state)
    assert ckpt.all_steps() == [2, 4]
  # A fresh process would start from a freshly initialised (different) state.
  with Checkpointer(tmp_path, save_every=2) as ckpt:
    state, step = ckpt.restore_latest(_make_state(seed=42))
  assert step == 4 and int(state.step) == 4
  _assert_identical(_run(state, 2), reference)


def test_buffers_may_be_donated_right_after_save(tmp_path):
  state = {"w": jax.random.normal(jax.random.PRNGKey(0), (256, 256))}
  expected = np.asarray(state["w"])
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state)
    state["w"].delete()  # what a donating jitted train step does
    restored, _ = ckpt.restore_latest({"w": jax.ShapeDtypeStruct((256, 256), jnp.float32)})
  np.testing.assert_array_equal(np.asarray(restored["w"]), expected)


def test_keep_retains_newest_k(tmp_path):
  state = {"x": jnp.arange(3)}
  with Checkpointer(tmp_path, keep=2) as ckpt:
    for step in range(5):
      assert ckpt.save(step, {"x": state["x"] + step})
    assert ckpt.all_steps() == [3, 4]
  assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == [
    "3",
    "4",
  ]
  with Checkpointer(tmp_path, keep=2) as ckpt:
    assert ckpt.all_steps() == [3, 4]
    assert ckpt.latest_step() == 4
    restored, _ = ckpt.restore_latest(state)
  np.testing.assert_array_equal(restored["x"], np.arange(3) + 4)


def test_save_every_and_force(tmp_path):
  state = {"x": jnp.ones(2)}
  with Checkpointer(tmp_path, save_every=3, keep=10) as ckpt:
    saved = [s for s in range(8) if ckpt.save(s, state)]
    assert saved == [0, 3, 6]
    assert ckpt.save(7, state, force=True)
    assert not ckpt.save(7, state, force=True)  # never overwrites
    assert not ckpt.save(6, state)
    assert ckpt.all_steps() == [0, 3, 6, 7]
    assert ckpt.latest_step() == 7


def test_no_checkpoint(tmp_path):
  with Checkpointer(tmp_path / "new") as ckpt:
    assert ckpt.latest_step() is None
    assert ckpt.all_steps() == []
    assert ckpt.restore_latest({"x": jnp.ones(2)}) == (None, None)
  assert (tmp_path / "new").is_dir()


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"save_every": 0}, "save_every"),
    ({"save_every": -2}, "save_every"),
    ({"save_every": 1.5}, "save_every"),
    ({"keep": 0}, "keep"),
    ({"keep": True}, "keep"),
  ],
)
def test_invalid_arguments(tmp_path, kwargs, match):
  with pytest.raises(ValueError, match=match):
    Checkpointer(tmp_path, **kwargs)


def test_directory_made_absolute_and_closed_usage(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  ckpt = Checkpointer("rel/ckpt")
  assert ckpt.directory == tmp_path / "rel" / "ckpt"
  assert ckpt.directory.is_absolute()
  ckpt.close()
  ckpt.close()  # idempotent
  with pytest.raises(RuntimeError, match="closed"):
    ckpt.save(0, {"x": jnp.ones(1)})


def _files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in step_dir.rglob("*") if p.is_file())


def _truncate_all(step_dir):
  for f in _files(step_dir):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _garble_all(step_dir):
  for f in _files(step_dir):
    f.write_bytes(bytes(b ^ 0xA5 for b in f.read_bytes()))


def _remove_array_data(step_dir):
  for f in _files(step_dir / "state"):
    if f.parent.name == "d":
      f.unlink()


def _flip_one_data_byte(step_dir):
  # Orbax does not checksum payloads: this is caught by our CRC32s.
  f = max(_files(step_dir / "state" / "ocdbt.process_0" / "d"), key=lambda p: p.stat().st_size)
  data = bytearray(f.read_bytes())
  data[len(data) // 2] ^= 0x01
  f.write_bytes(bytes(data))


def _wrong_checksum(step_dir):
  f = step_dir / "meta" / "metadata"
  meta = json.loads(f.read_text())
  key = next(iter(meta["checksums"]))
  meta["checksums"][key] = "00000000"
  f.write_text(json.dumps(meta))


def _remove_state_item(step_dir):
  for f in _files(step_dir / "state"):
    f.unlink()


@pytest.mark.parametrize(
  "corrupt",
  [
    _truncate_all,
    _garble_all,
    _remove_array_data,
    _flip_one_data_byte,
    _wrong_checksum,
    _remove_state_item,
  ],
)
def test_corrupt_latest_falls_back_with_warning(tmp_path, caplog, corrupt):
  rng = np.random.default_rng(0)
  states = {
    s: {"w": jnp.asarray(rng.normal(size=(64, 64)), jnp.float32), "step": jnp.asarray(s, jnp.int32)} for s in (1, 2, 3)
  }
  with Checkpointer(tmp_path) as ckpt:
    for s, st in states.items():
      ckpt.save(s, st)
  corrupt(tmp_path / "3")
  caplog.set_level(logging.WARNING)
  with Checkpointer(tmp_path) as ckpt:
    restored, step = ckpt.restore_latest(states[1])
    assert step == 2
    _assert_identical(restored, states[2])
    assert any(r.levelno == logging.WARNING and "step 3" in r.getMessage() for r in caplog.records), [
      r.getMessage() for r in caplog.records
    ]
    # The bad step is moved aside, so the resumed run can save it again.
    assert ckpt.all_steps() == [1, 2]
    assert [p.name.split(".")[0] for p in (tmp_path / "corrupt").iterdir()] == ["3"]
    assert ckpt.save(3, states[3])
    restored, step = ckpt.restore_latest(states[1])
  assert step == 3
  _assert_identical(restored, states[3])


def test_all_corrupt_raises(tmp_path):
  state = {"w": jnp.arange(4.0)}
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state)
    ckpt.save(2, state)
  _truncate_all(tmp_path / "1")
  _truncate_all(tmp_path / "2")
  with Checkpointer(tmp_path) as ckpt:
    with pytest.raises(CheckpointRestoreError, match="step 2"):
      ckpt.restore_latest(state)
  # Nothing is moved aside when nothing could be restored.
  assert (tmp_path / "1").is_dir() and (tmp_path / "2").is_dir()


def test_structure_mismatch_raises(tmp_path):
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(0, {"a": jnp.ones(2)})
    with pytest.raises(CheckpointRestoreError):
      ckpt.restore_latest({"a": jnp.ones(3)})


def test_killed_process_leaves_no_incomplete_latest(tmp_path):
  script = textwrap.dedent(
    """
      import os, sys
      import jax.numpy as jnp
      from common.checkpoint import Checkpointer
      ckpt = Checkpointer(sys.argv[1])
      ckpt.save(1, {"w": jnp.zeros((1_000_000,))})
      ckpt.wait_until_finished()
      ckpt.save(2, {"w": jnp.ones((1_000_000,))})  # async: still writing
      os._exit(0)  # simulate a kill: no finalisation, no cleanup
      """
  )
  env = dict(os.environ, PYTHONPATH=str(_REPO_ROOT), JAX_PLATFORMS="cpu")
  subprocess.run(
    [sys.executable, "-c", script, str(tmp_path)],
    check=True,
    env=env,
    timeout=120,
    capture_output=True,
  )
  left_tmp = [p.name for p in tmp_path.iterdir() if "tmp" in p.name]
  with Checkpointer(tmp_path) as ckpt:
    target = {"w": jnp.zeros((1_000_000,))}
    restored, step = ckpt.restore_latest(target)
    # Whatever is picked as latest must be complete and correct; an interrupted
    # step only exists as a temporary directory and is never listed.
    assert step in (1, 2)
    assert float(restored["w"][0]) == float(step - 1)
    if left_tmp:
      assert step == 1 and ckpt.all_steps() == [1]
    # The interrupted step can be saved again.
    if step == 1:
      assert ckpt.save(2, {"w": jnp.ones((1_000_000,))})
      restored, step = ckpt.restore_latest(target)
      assert step == 2 and float(restored["w"][0]) == 1.0


def test_incompatible_checkpoint_names_the_leaf_and_both_shapes(tmp_path):
  with Checkpointer(tmp_path, save_every=1) as ckpt:
    ckpt.save(1, {"w": jnp.zeros((256,)), "b": jnp.zeros((), jnp.int32)})
    ckpt.save(2, {"w": jnp.zeros((256,)), "b": jnp.zeros((), jnp.int32)})
  with Checkpointer(tmp_path) as ckpt:
    with pytest.raises(checkpoint.CheckpointMismatchError) as err:
      ckpt.restore_latest({"w": jnp.zeros((128,)), "b": jnp.zeros((), jnp.int32), "extra": jnp.zeros(())})
    message = str(err.value)
    assert "leaf w: the checkpoint has shape (256,), the state being restored (128,)" in message
    assert "leaf extra is not in the checkpoint" in message
    assert "step 2" in message
    assert ckpt.all_steps() == [1, 2]  # not mistaken for corruption: nothing moved aside
    assert not (tmp_path / "corrupt").exists()
    state, step = ckpt.restore_latest({"w": jnp.ones((256,)), "b": jnp.ones((), jnp.int32)})
    assert step == 2 and float(state["w"].sum()) == 0.0


def test_zero_size_leaves_round_trip(tmp_path):
  """MJX states hold zero-size arrays (e.g. `act` without actuator activations); orbax cannot write them."""
  state = {"w": jnp.arange(3.0), "empty": jnp.zeros((4, 0), jnp.float32), "nested": {"e": np.zeros((0,), np.int32)}}
  with checkpoint.Checkpointer(tmp_path / "ckpt") as ckpt:
    assert ckpt.save(1, state, force=True)
    restored, step = ckpt.restore_latest(state)
  assert step == 1
  np.testing.assert_array_equal(restored["w"], state["w"])
  assert restored["empty"].shape == (4, 0) and restored["empty"].dtype == jnp.float32
  assert restored["nested"]["e"].shape == (0,) and restored["nested"]["e"].dtype == np.int32
