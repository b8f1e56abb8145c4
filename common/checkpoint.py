"""Step checkpoints of JAX pytrees: retention, verification, fallback.

This is the only module in the repository that imports orbax: everything else
saves and restores train states through `Checkpointer`, so an orbax upgrade
touches one file.  It wraps orbax's V0 `CheckpointManager` and adds what a
research training loop needs on top of it:

* `save_every` / `keep` map to orbax's `FixedIntervalPolicy` / `LatestN`
  policies (not the deprecated `save_interval_steps` / `max_to_keep`).
* Restores go into the *target's* tree structure, dtypes and shardings, so
  `flax.struct.dataclass` train states, optax NamedTuple states, int32
  counters and uint32 (or typed) PRNG keys round-trip bit-exactly.
* Each step also stores a small JSON item with a CRC32 per leaf.  Orbax does
  not checksum array payloads (a flipped byte in a zstd chunk restores as a
  silently wrong value), so `restore_latest` verifies the restored leaves and
  treats a mismatch like any other unreadable checkpoint.
* `restore_latest` falls back from a corrupt newest step to the previous one,
  with a warning naming the bad step, and moves the bad step directories aside
  into `<directory>/corrupt/` so that the resumed run can save those steps
  again (orbax refuses to save a step at or below an existing one).

Saves are asynchronous (orbax default): `save` returns once the arrays are
copied off the device, and the files are written in the background into
`<step>.orbax-checkpoint-tmp*` directories that are renamed to `<step>` only
when complete.  A killed process therefore never leaves an incomplete step that
is listed or restored; leftover temporary directories are removed the next time
a `Checkpointer` opens the directory.  Layout of one step::

  <directory>/<step>/state/...   # the pytree (orbax StandardSave, OCDBT)
  <directory>/<step>/meta/...    # {"step", "checksum", "checksums"} (JsonSave)
"""

from __future__ import annotations

import numbers
import os
import pathlib
import time
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

__all__ = ["Checkpointer", "CheckpointRestoreError", "CheckpointMismatchError"]

PyTree = Any

_STATE = "state"
_META = "meta"
_CORRUPT_DIR = "corrupt"
_CHECKSUM_ALGORITHM = "crc32"


class CheckpointRestoreError(RuntimeError):
  """Raised when checkpoints exist but none of them can be restored."""


class CheckpointMismatchError(CheckpointRestoreError):
  """The newest checkpoint holds a different tree than the restore target.

  E.g. a checkpoint written by other code or another model size: its leaves'
  names, shapes or dtypes differ from the target's.  Not treated as
  corruption (older steps of the same run would not match either), so no
  fallback is tried.
  """


_MAX_LISTED = 5


def _leaf_name(path: tuple[Any, ...]) -> str:
  """Orbax's name of a leaf: its path keys joined by dots."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):  # DictKey/FlattenedIndexKey, GetAttrKey, SequenceKey
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return ".".join(parts)


def _mismatches(target: PyTree, stored: Any) -> list[str]:
  """Differences between `target` and a step's stored tree metadata.

  Leaves are named as orbax names them (`opt_state.0.mu.dense.kernel`), so
  the message points at the leaf a user can find in their state.
  """
  want = {_leaf_name(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(target)}
  have = {m.name: m for m in jax.tree.leaves(stored) if hasattr(m, "name")}
  problems = []
  for name, leaf in want.items():
    if name not in have:
      problems.append(f"leaf {name} is not in the checkpoint")
      continue
    meta = have[name]
    if hasattr(leaf, "dtype") and _is_prng_key(leaf):  # stored as its key data
      leaf = jax.eval_shape(jax.random.key_data, leaf)
    shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
    stored_shape = getattr(meta, "shape", None)
    if shape is not None and stored_shape is not None and tuple(shape) != tuple(stored_shape):
      problems.append(
        f"leaf {name}: the checkpoint has shape {tuple(stored_shape)}, the state being restored {tuple(shape)}"
      )
    stored_dtype = getattr(meta, "dtype", None)
    if dtype is not None and stored_dtype is not None and str(dtype) != str(stored_dtype):
      problems.append(f"leaf {name}: the checkpoint has dtype {stored_dtype}, the state being restored {dtype}")
  problems += [f"leaf {name} of the checkpoint is not in the state being restored" for name in have if name not in want]
  return problems


def _is_prng_key(x: Any) -> bool:
  return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _is_empty(x: Any) -> bool:
  """A zero-size array leaf (e.g. MJX's `act` of a model without activations)."""
  shape = getattr(x, "shape", None)
  return shape is not None and hasattr(x, "dtype") and int(np.prod(shape)) == 0


def _without_empty(tree: PyTree) -> PyTree:
  """`tree` with zero-size leaves replaced by None: orbax cannot save them, and they hold no data."""
  return jax.tree.map(lambda x: None if _is_empty(x) else x, tree)


def _with_empty(target: PyTree, restored: PyTree) -> PyTree:
  """Puts `target`'s zero-size leaves back (as zeros of its shape, dtype and sharding) into `restored`."""

  def fill(t, r):
    if not _is_empty(t):
      return r
    if _is_prng_key(t):
      return jax.random.wrap_key_data(jnp.zeros(jax.eval_shape(jax.random.key_data, t).shape, jnp.uint32))
    zeros = np.zeros(t.shape, t.dtype)
    sharding = getattr(t, "sharding", None)
    return jax.device_put(zeros, sharding) if isinstance(t, (jax.Array, jax.ShapeDtypeStruct)) and sharding else zeros

  return jax.tree.map(fill, target, restored, is_leaf=lambda x: x is None)


def _to_abstract(x: Any) -> Any:
  """Abstract restore target for one leaf (keeps shape, dtype, sharding).

  `jax.Array` leaves become `jax.ShapeDtypeStruct`s carrying their sharding; a
  `ShapeDtypeStruct` without a sharding is placed on the default device (orbax
  would otherwise restore it as a host numpy array).  Other leaves (numpy
  arrays, Python scalars) are passed through: orbax restores them as their own
  type.
  """
  if isinstance(x, jax.Array):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
  if isinstance(x, jax.ShapeDtypeStruct) and x.sharding is None:
    return jax.ShapeDtypeStruct(
      x.shape,
      x.dtype,
      sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]),
    )
  return x


def _checksums(tree: PyTree) -> dict[str, str | None]:
  """CRC32 of every leaf's bytes, keyed by `jax.tree_util.keystr` path.

  Arrays sharded over hosts get `None` and are not verified; arrays
  replicated over hosts are checksummed from the local copy.  Device arrays are fetched in one `jax.device_get` call.
  """
  paths_leaves = jax.tree_util.tree_leaves_with_path(tree)
  keys = [jax.tree_util.keystr(path) for path, _ in paths_leaves]
  leaves = []
  for _, leaf in paths_leaves:
    if isinstance(leaf, jax.Array):
      if not leaf.is_fully_addressable:
        # Replicated over hosts: every process holds the whole value.
        leaf = leaf.addressable_data(0) if leaf.is_fully_replicated else None
      if leaf is not None and _is_prng_key(leaf):
        leaf = jax.random.key_data(leaf)
    leaves.append(leaf)
  leaves = jax.device_get(leaves)
  out = {}
  for key, leaf in zip(keys, leaves):
    if isinstance(leaf, (np.ndarray, np.generic)):
      data = np.ascontiguousarray(leaf).reshape(-1).view(np.uint8)
      out[key] = f"{zlib.crc32(data):08x}"
    elif isinstance(leaf, (bool, int, float, str)):
      out[key] = f"{zlib.crc32(repr(leaf).encode()):08x}"
    else:
      out[key] = None
  return out


def _verify(restored: PyTree, meta: Any, step: int) -> None:
  """Raises ValueError when `meta` does not match `restored` at `step`."""
  if not isinstance(meta, dict) or meta.get("step") != step:
    raise ValueError(f"metadata of step {step} is missing or inconsistent")
  if meta.get("checksum") != _CHECKSUM_ALGORITHM:
    raise ValueError(f"unknown checksum algorithm {meta.get('checksum')!r}")
  saved = meta.get("checksums") or {}
  for key, value in _checksums(restored).items():
    expected = saved.get(key)
    if value is not None and expected is not None and value != expected:
      raise ValueError(f"checksum mismatch for leaf {key} (saved {expected}, read {value})")


def _positive_int(name: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  if value < 1:
    raise ValueError(f"{name} must be >= 1, got {value}")
  return int(value)


class Checkpointer:
  """Saves a pytree every `save_every` steps and keeps the newest `keep`.

  Example::

    state = init_state()
    with Checkpointer(workdir / "checkpoints", save_every=100) as ckpt:
      restored, last = ckpt.restore_latest(state)  # (None, None) if fresh
      if restored is not None:
        state = restored
      for step in range(1 if last is None else last + 1, num_steps + 1):
        state = train_step(state)
        ckpt.save(step, state)
      ckpt.save(num_steps, state, force=True)  # no-op if already saved

  Use one `Checkpointer` per directory at a time: opening one removes
  unfinished temporary step directories, including those of another live
  instance.  Not thread-safe.  Multi-host use is untested: every process must
  call the same methods; only process 0 moves corrupt steps aside.
  """

  def __init__(
    self,
    directory: str | os.PathLike[str],
    *,
    save_every: int = 1,
    keep: int = 3,
  ):
    """Opens (creating if needed) a checkpoint directory.

    Args:
      directory: root directory of the step directories; made absolute.
      save_every: `save(step, ...)` writes when `step % save_every == 0`.
      keep: number of newest checkpoints retained; older ones are deleted.

    Raises:
      ValueError: if `save_every < 1` or `keep < 1`.
    """
    self._save_every = _positive_int("save_every", save_every)
    self._keep = _positive_int("keep", keep)
    self._directory = pathlib.Path(os.path.abspath(os.path.expanduser(os.fspath(directory))))
    options = ocp.CheckpointManagerOptions(
      save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(self._save_every),
      preservation_policy=ocp.checkpoint_managers.LatestN(self._keep),
      cleanup_tmp_directories=True,
      create=True,
    )
    # Handlers registered up front so a fresh manager can read a step's
    # metadata (the compatibility check) before anything is restored.
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    for item, handler, save_args, restore_args in (
      (_STATE, ocp.StandardCheckpointHandler, ocp.args.StandardSave, ocp.args.StandardRestore),
      (_META, ocp.JsonCheckpointHandler, ocp.args.JsonSave, ocp.args.JsonRestore),
    ):
      registry.add(item, save_args, handler())
      registry.add(item, restore_args, handler())
    self._manager = ocp.CheckpointManager(self._directory, options=options, handler_registry=registry)
    self._closed = False

  @property
  def directory(self) -> pathlib.Path:
    """Absolute root directory of the checkpoints."""
    return self._directory

  @property
  def save_every(self) -> int:
    return self._save_every

  @property
  def keep(self) -> int:
    return self._keep

  def save(self, step: int, state: PyTree, *, force: bool = False) -> bool:
    """Saves `state` as `step` if `step % save_every == 0` or `force`.

    Returns once the arrays are copied to host; files are written in the
    background (see `wait_until_finished`).  A step that is already saved is
    never overwritten: the call returns False.  Without `force`, a step not
    newer than the latest checkpoint is also skipped (orbax's rule).

    Args:
      step: non-negative training step; names the checkpoint.
      state: pytree of arrays / scalars to save.
      force: save regardless of `save_every`.

    Returns:
      Whether a checkpoint was written for `step`.
    """
    self._check_open()
    step = int(step)
    if step < 0:
      raise ValueError(f"step must be >= 0, got {step}")
    if step in self._manager.all_steps():
      return False
    if not force and not self._manager.should_save(step):
      return False
    state = _without_empty(state)
    meta = {
      "step": step,
      "checksum": _CHECKSUM_ALGORITHM,
      "checksums": _checksums(state),
    }
    return bool(
      self._manager.save(
        step,
        args=ocp.args.Composite(
          **{
            _STATE: ocp.args.StandardSave(state),
            _META: ocp.args.JsonSave(meta),
          }
        ),
        force=force,
      )
    )

  def restore_latest(self, target: PyTree) -> tuple[PyTree | None, int | None]:
    """Restores the newest readable checkpoint into `target`'s structure.

    Waits for pending saves first.  A checkpoint that fails to load or whose
    checksums do not match is skipped with a warning naming its step, and the
    next older one is tried.  When one succeeds, the skipped (newer) step
    directories are moved into `<directory>/corrupt/` so that they are not
    picked again and their steps can be saved anew.

    Args:
      target: pytree with the structure of the saved state; leaves may be
        concrete arrays or `jax.ShapeDtypeStruct`s (with or without sharding).
        Results get the target's tree types (dataclasses, NamedTuples), dtypes
        and shardings.

    Returns:
      `(state, step)`, or `(None, None)` when there is no checkpoint.

    Raises:
      CheckpointMismatchError: if the newest checkpoint's leaves (names,
        shapes, dtypes) differ from `target`'s; raised before any array is
        read, naming up to five differing leaves.
      CheckpointRestoreError: if checkpoints exist but none can be restored
        (e.g. all corrupt).
    """
    self._check_open()
    self._manager.wait_until_finished()
    self._manager.reload()
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      return None, None
    abstract = jax.tree.map(_to_abstract, _without_empty(target))
    failed: list[tuple[int, Exception]] = []
    for step in steps:
      self._check_compatible(target, step)
      try:
        restored = self._manager.restore(
          step,
          args=ocp.args.Composite(
            **{
              _STATE: ocp.args.StandardRestore(abstract),
              _META: ocp.args.JsonRestore(),
            }
          ),
        )
        state = restored[_STATE]
        _verify(state, restored[_META], step)
        state = _with_empty(target, state)
      except Exception as e:  # pylint: disable=broad-exception-caught
        logging.warning(
          "Checkpoint at step %d in %s cannot be restored (%s: %s); %s",
          step,
          self._directory,
          type(e).__name__,
          str(e).splitlines()[0][:500] if str(e) else "",
          "falling back to an earlier checkpoint." if step != steps[-1] else "no earlier checkpoint left.",
        )
        failed.append((step, e))
        continue
      if failed:
        self._quarantine([s for s, _ in failed])
      return state, step
    newest_step, newest_error = failed[0]
    raise CheckpointRestoreError(
      f"None of the {len(steps)} checkpoints in {self._directory} (steps "
      f"{sorted(steps)}) could be restored; the newest, step {newest_step}, "
      f"failed with {type(newest_error).__name__}: {newest_error}"
    ) from newest_error

  def _check_compatible(self, target: PyTree, step: int) -> None:
    """Raises `CheckpointMismatchError` if `step` stores a different tree.

    Unreadable metadata is left to the restore (and its corrupt-step
    fallback).
    """
    try:
      stored = self._manager.item_metadata(step)[_STATE]
      stored = getattr(stored, "tree", stored)
    except Exception:  # pylint: disable=broad-exception-caught
      return
    if stored is None:
      return
    problems = _mismatches(_without_empty(target), stored)
    if problems:
      more = len(problems) - _MAX_LISTED
      listed = "; ".join(problems[:_MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")
      raise CheckpointMismatchError(
        f"the checkpoint at step {step} in {self._directory} does not match the state"
        f" being restored: {listed}. It was written by other code or another config;"
        " use a fresh directory."
      )

  def _quarantine(self, steps: list[int]) -> None:
    """Moves unreadable step directories to `<directory>/corrupt/`.

    Best effort: a failure is logged, not raised, since the restore itself
    succeeded.
    """
    if jax.process_index() == 0:
      stamp = time.strftime("%Y%m%d-%H%M%S")
      for step in steps:
        src = self._directory / str(step)
        try:
          if not src.exists():
            continue
          corrupt = self._directory / _CORRUPT_DIR
          corrupt.mkdir(exist_ok=True)
          dst = corrupt / f"{step}.{stamp}"
          n = 1
          while dst.exists():
            dst = corrupt / f"{step}.{stamp}.{n}"
            n += 1
          os.replace(src, dst)
          logging.warning("Moved corrupt checkpoint %s to %s.", src, dst)
        except OSError as e:
          logging.warning("Could not move corrupt checkpoint %s aside: %s", src, e)
    self._manager.reload()

  def latest_step(self) -> int | None:
    """Newest saved step (including one still being written), or None."""
    self._check_open()
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Sorted retained steps (including one still being written)."""
    self._check_open()
    return sorted(int(s) for s in self._manager.all_steps())

  def wait_until_finished(self) -> None:
    """Blocks until background saves are written; re-raises their errors."""
    self._check_open()
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases resources.  Idempotent."""
    if not self._closed:
      self._closed = True
      self._manager.close()

  def _check_open(self) -> None:
    if self._closed:
      raise RuntimeError(f"Checkpointer for {self._directory} is closed")

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def __repr__(self) -> str:
    return f"Checkpointer({str(self._directory)!r}, save_every={self._save_every}, keep={self._keep})"
