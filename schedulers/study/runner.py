"""Runs the GreedyLR study: one compiled, vmapped program per (task, arm).

A run is a pure function of `(lr, seed)`: the seed alone fixes the parameter
initialisation and the data order (paired across arms), an outer `lax.scan`
over evaluation intervals wraps an inner `lax.scan` of `common.trainer` steps,
and each interval ends with validation and test losses (at the schedule-free
evaluation point where there is one) and, for per-eval arms, one
`schedulers.observe` of the validation loss.  `run_pairs` vmaps a flat batch
of (lr, seed) pairs inside one jit, padded to a fixed size so the tuning and
the evaluation phases of an arm share one compilation.

`run_cell` does the protocol for one arm: every grid learning rate on the
tuning seeds, the rate with the lowest mean final validation loss, then the
evaluation seeds at that rate (`run_evaluation`).  Cells are saved one file each, atomically;
`run_study` skips cells already on disk, so a killed study resumes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import schedulers
from common import data as data_lib
from common import trainer
from schedulers import baselines, line_search
from schedulers.study import arms as arms_lib
from schedulers.study import tasks as tasks_lib


@dataclasses.dataclass(frozen=True)
class Protocol:
  """The tuning/evaluation protocol shared by every arm of a study."""

  lr_grids: dict[str, tuple[float, ...]]  # per base optimizer, same for every arm
  tuning_seeds: tuple[int, ...]
  eval_seeds: tuple[int, ...]
  batch: int  # (lr, seed) pairs per compiled call

  def __post_init__(self):
    for name, grid in self.lr_grids.items():
      if not grid or any(lr <= 0 for lr in grid):
        raise ValueError(f"lr_grids[{name!r}] must be non-empty and positive, got {grid}.")
    if set(self.tuning_seeds) & set(self.eval_seeds):
      raise ValueError("tuning_seeds and eval_seeds must be disjoint.")
    if len(self.eval_seeds) < 2:
      raise ValueError("need at least 2 eval_seeds for paired statistics.")


def make_init_and_step(task: tasks_lib.Task, arm: arms_lib.Arm):
  """The pieces of a run: `init(lr, seed) -> (state, permutations)` and
  `train_step(lr, state, permutations) -> (state, metrics)`.

  The seed alone fixes the initial parameters and the data order, so arms
  are paired.  `permutations` holds every epoch's example order.
  """
  per_epoch = data_lib.steps_per_epoch(task.train, task.batch_size)

  def loss_fn(params, batch, rng):
    del rng
    return task.loss(params, batch), {}

  def make_optimizer(lr):
    optimizer = arm.make(lr, task.num_steps, per_epoch)
    if task.grad_clip is not None:  # the task's, the same for every arm
      optimizer = optax.chain(optax.clip_by_global_norm(task.grad_clip), optimizer)
    if task.project is not None:  # keeps schedule-free's z feasible too
      optimizer = baselines.project_schedule_free(optimizer, task.project)
    return optimizer

  def init(lr, seed):
    init_key, data_key, step_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    state = trainer.TrainState.create(params=task.init(init_key), optimizer=make_optimizer(lr), rng=step_key)
    return state, tasks_lib.epoch_permutations(task, data_key)

  def train_step(lr, state, permutations):
    optimizer = make_optimizer(lr)
    step = trainer.make_train_step(loss_fn, optimizer, project=task.project)
    return step(state, tasks_lib.batch_from_permutations(task, permutations, state.step))

  return init, train_step


def make_run(task: tasks_lib.Task, arm: arms_lib.Arm) -> Callable[[jax.Array, jax.Array], dict]:
  """`run(lr, seed) -> curves`, each curve with one entry per evaluation.

  Curves: `val`, `test` (held-out metric), `train` (mean minibatch loss of
  the interval), `lr` (effective rate at the interval's end),
  `forward_passes` (cumulative extra line-search evaluations) and
  `nonfinite` (cumulative skipped NaN/Inf updates).
  """
  init, train_step = make_init_and_step(task, arm)
  num_evals = task.num_steps // task.eval_every

  def run(lr, seed):
    state, permutations = init(lr, seed)

    def interval(state, _):
      state, metrics = jax.lax.scan(lambda s, _: train_step(lr, s, permutations), state, None, length=task.eval_every)
      eval_params = baselines.schedule_free_eval_params(state.opt_state, state.params)
      val = task.eval_loss(eval_params, task.val)
      test = task.eval_loss(eval_params, task.test)
      if arm.controller is not None:
        state = state.replace(opt_state=schedulers.observe(state.opt_state, arm.controller, value=val))
      curves = {
        "val": val,
        "test": test,
        "train": jnp.mean(metrics["loss"]),
        "lr": arm.lr_fn(state.opt_state, lr, task.num_steps).astype(jnp.float32),
        "forward_passes": line_search.sls_forward_passes(state.opt_state),
        "nonfinite": state.nonfinite_count,
      }
      return state, curves

    _, curves = jax.lax.scan(interval, state, None, length=num_evals)
    return curves

  return run


def make_run_pairs(task: tasks_lib.Task, arm: arms_lib.Arm):
  """`jit(vmap(run))` over flat (lr, seed) arrays."""
  return jax.jit(jax.vmap(make_run(task, arm)))


def run_pairs(compiled, lrs: Sequence[float], seeds: Sequence[int], batch: int) -> dict[str, np.ndarray]:
  """Runs every (lr, seed) pair in chunks of `batch`; returns host arrays [pairs, evals]."""
  lrs = np.asarray(lrs, np.float32)
  seeds = np.asarray(seeds, np.int32)
  out = []
  for start in range(0, len(lrs), batch):
    chunk_lr, chunk_seed = lrs[start : start + batch], seeds[start : start + batch]
    pad = batch - len(chunk_lr)
    if pad:
      chunk_lr = np.concatenate([chunk_lr, np.repeat(chunk_lr[-1:], pad)])
      chunk_seed = np.concatenate([chunk_seed, np.repeat(chunk_seed[-1:], pad)])
    curves = jax.device_get(compiled(jnp.asarray(chunk_lr), jnp.asarray(chunk_seed)))
    out.append({k: np.asarray(v)[: batch - pad] for k, v in curves.items()})
  return {k: np.concatenate([o[k] for o in out]) for k in out[0]}


def run_evaluation(compiled, lr: float, eval_seeds: Sequence[int], batch: int) -> dict[str, np.ndarray]:
  """The evaluation phase of a cell: every eval seed at the chosen rate.

  Also what `schedulers.study.curves` re-runs to regenerate a committed
  record's curves, so both go through the same padding and chunking.
  """
  return run_pairs(compiled, [lr] * len(eval_seeds), eval_seeds, batch)


def _finite_or_inf(x: np.ndarray) -> np.ndarray:
  return np.where(np.isfinite(x), x, np.inf)


def run_cell(task: tasks_lib.Task, arm: arms_lib.Arm, protocol: Protocol) -> dict[str, Any]:
  """Tunes the learning rate on the tuning seeds, then runs the eval seeds."""
  grid = protocol.lr_grids[arm.optimizer]
  compiled = make_run_pairs(task, arm)
  t0 = time.perf_counter()
  tune_lrs = [lr for lr in grid for _ in protocol.tuning_seeds]
  tune_seeds = [s for _ in grid for s in protocol.tuning_seeds]
  tuning = run_pairs(compiled, tune_lrs, tune_seeds, protocol.batch)
  final_val = _finite_or_inf(tuning["val"][:, -1]).reshape(len(grid), len(protocol.tuning_seeds))
  mean_val = final_val.mean(axis=1)
  best = int(np.argmin(mean_val))
  t1 = time.perf_counter()
  chosen = grid[best]
  evaluation = run_evaluation(compiled, chosen, protocol.eval_seeds, protocol.batch)
  t2 = time.perf_counter()
  return {
    "task": task.name,
    "optimizer": arm.optimizer,
    "arm": arm.name,
    "metric": task.metric,
    "num_steps": task.num_steps,
    "eval_steps": [task.eval_every * (i + 1) for i in range(task.num_steps // task.eval_every)],
    "lr_grid": list(grid),
    "tuning_seeds": list(protocol.tuning_seeds),
    "tuning_final_val": final_val.tolist(),
    "chosen_lr": chosen,
    "chosen_at_grid_edge": best in (0, len(grid) - 1),
    "eval_seeds": list(protocol.eval_seeds),
    "curves": {k: v.tolist() for k, v in evaluation.items()},
    "seconds": {"tuning": t1 - t0, "evaluation": t2 - t1},
  }


def cell_path(workdir: pathlib.Path, task: str, optimizer: str, arm: str) -> pathlib.Path:
  return workdir / "cells" / task / optimizer / f"{arm}.json"


def _write_atomic(path: pathlib.Path, payload: dict) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f".tmp.{os.getpid()}")
  tmp.write_text(json.dumps(payload, allow_nan=True))
  os.replace(tmp, path)


def run_study(
  *,
  task_names: Sequence[str],
  optimizers: Sequence[str],
  arm_names: Sequence[str] | None,
  protocol: Protocol,
  size: str,
  workdir: str | os.PathLike,
  log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
  """Runs every missing cell and returns all cell records (old and new)."""
  workdir = pathlib.Path(workdir)
  records = []
  for task_name in task_names:
    task = None
    for optimizer in optimizers:
      for arm in arms_lib.make_arms(optimizer):
        if arm_names is not None and arm.name not in arm_names:
          continue
        path = cell_path(workdir, task_name, optimizer, arm.name)
        if path.exists():
          records.append(json.loads(path.read_text()))
          continue
        if task is None:
          task = tasks_lib.make_task(task_name, size=size)
        record = run_cell(task, arm, protocol)
        _write_atomic(path, record)
        records.append(record)
        secs = record["seconds"]
        log(
          f"{task_name:>22} {arm.label:<24} lr={record['chosen_lr']:<9.3g}"
          f" test={np.mean(np.asarray(record['curves']['test'])[:, -1]):.4f}"
          f" ({secs['tuning'] + secs['evaluation']:.1f}s)"
        )
  return records
