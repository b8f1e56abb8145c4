"""Functional supervised-training loop: TrainState, train step, epoch, host loop.

* `TrainState` is a `flax.struct` pytree (params, optimizer state, step, rng
  and a count of skipped non-finite updates); checkpoints carry all of it.
* `make_train_step(loss_fn, optimizer)` builds a pure step that hands the
  loss to the optimizer as `value=` (plus `grad=` and `value_fn=` for line
  searches), so loss-driven transforms such as `schedulers.greedy_lr` work in
  any `optax.chain`.  A NaN/Inf loss, gradient or new parameter leaves params
  and optimizer state untouched and is counted.
* `make_epoch(step, batch_fn, steps)` is `jit(scan(step))` with the state
  donated; batches come from a pure `batch_fn(data, step)`.
* `train_loop` is the thin host loop: epochs, evaluation hook, non-finite
  policy, metrics and checkpoints.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from common import sharding

Params = Any
Batch = Any
Metrics = Mapping[str, jax.Array]
# loss_fn(params, batch, rng) -> (scalar loss, dict of scalar metrics)
LossFn = Callable[[Params, Batch, jax.Array], tuple[jax.Array, Metrics]]

NONFINITE_POLICIES = ("skip", "stop")


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs; a pytree of arrays."""

  step: jax.Array  # int32 scalar: steps taken, skipped ones included
  params: Params
  opt_state: optax.OptState
  rng: jax.Array  # raw uint32 PRNG key (jax.random.PRNGKey layout)
  nonfinite_count: jax.Array  # int32 scalar: updates skipped for NaN/Inf

  @classmethod
  def create(cls, *, params: Params, optimizer: optax.GradientTransformation, rng: jax.Array) -> "TrainState":
    state = cls(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=optimizer.init(params),
      rng=rng,
      nonfinite_count=jnp.zeros((), jnp.int32),
    )
    # Optimizer inits may share one buffer between fields; donation needs
    # every leaf to own its buffer.
    return jax.tree.map(jnp.copy, state)


def _all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def make_train_step(
  loss_fn: LossFn,
  optimizer: optax.GradientTransformation,
  *,
  metrics_fn: Callable[[TrainState], Metrics] | None = None,
  project: Callable[[Params], Params] | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """Returns `step(state, batch) -> (state, metrics)`, pure and jit-safe.

  Args:
    loss_fn: `loss_fn(params, batch, rng) -> (loss, aux_metrics)`.
    optimizer: any optax transform; extra args it does not use are ignored.
    metrics_fn: optional extra metrics of the new state (e.g. the current
      learning rate), merged into the step metrics.
    project: optional projection applied to the params after every update
      (projected gradient methods, e.g. non-negativity).
  """
  optimizer = optax.with_extra_args_support(optimizer)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state: TrainState, batch: Batch):
    rng, step_rng = jax.random.split(state.rng)
    (loss, aux), grads = grad_fn(state.params, batch, step_rng)

    def value_fn(params):
      return loss_fn(params, batch, step_rng)[0]

    updates, opt_state = optimizer.update(
      grads, state.opt_state, state.params, value=loss, grad=grads, value_fn=value_fn
    )
    params = optax.apply_updates(state.params, updates)
    if project is not None:
      params = project(params)
    finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(params)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = state.replace(
      step=state.step + 1,
      params=keep(params, state.params),
      opt_state=keep(opt_state, state.opt_state),
      rng=rng,
      nonfinite_count=state.nonfinite_count + (~finite).astype(jnp.int32),
    )
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}
    if metrics_fn is not None:
      metrics.update(metrics_fn(new_state))
    return new_state, metrics

  return step


def make_epoch(
  step_fn: Callable[[TrainState, Batch], tuple[TrainState, Metrics]],
  batch_fn: Callable[[Any, jax.Array], Batch],
  num_steps: int,
  *,
  prepare: Callable[[Any, TrainState], Any] | None = None,
  mesh: jax.sharding.Mesh | None = None,
  donate: bool = True,
) -> Callable[[TrainState, Any], tuple[TrainState, Metrics]]:
  """`epoch(state, data) -> (state, metrics stacked over steps)`: jit(scan(step)).

  `batch_fn(epoch_data, step)` builds the minibatch for the global step
  counter, so the data order survives checkpoint/resume; `epoch_data` is
  `prepare(data, state)` (once per call, e.g. the epoch's shuffling
  permutation) or `data` itself.  With a multi-device `mesh` (see
  `default_mesh`) every batch is sharded along its leading axis over the
  `data` axis; place the state and data with `sharding.replicate`.  The state
  is donated.
  """
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}.")

  def epoch(state: TrainState, data: Any):
    epoch_data = data if prepare is None else prepare(data, state)

    def body(state, _):
      batch = sharding.constrain_batch(batch_fn(epoch_data, state.step), mesh)
      return step_fn(state, batch)

    return jax.lax.scan(body, state, None, length=num_steps)

  return jax.jit(epoch, donate_argnums=(0,) if donate else ())


def default_mesh() -> jax.sharding.Mesh | None:
  """The data-parallel mesh over all devices, or None on a single device."""
  return sharding.data_mesh() if jax.device_count() > 1 else None


class NonFiniteError(FloatingPointError):
  """Raised by `train_loop` under the 'stop' policy."""


@dataclasses.dataclass(frozen=True)
class LoopHooks:
  """Optional host-side hooks of `train_loop`.

  Attributes:
    eval_fn: `eval_fn(state) -> metrics` (jit it yourself), run every
      `eval_every` epochs and after the last one.
    on_eval: `on_eval(state, eval_metrics) -> state`, e.g. stepping a
      per-eval learning-rate controller on the validation loss.
    checkpointer: object with `save(step, state, force=...)`
      (`common.checkpoint.Checkpointer`).
    writer: object with `write(step, metrics)` and `flush()`
      (`common.metrics.MetricWriter`); flushed before every checkpoint, so a
      resumed run's logs lose nothing the checkpoint covers.
  """

  eval_fn: Callable[[TrainState], Metrics] | None = None
  on_eval: Callable[[TrainState, Metrics], TrainState] | None = None
  checkpointer: Any = None
  writer: Any = None


def _host(metrics: Mapping[str, Any]) -> dict[str, float]:
  return {k: float(np.asarray(v)) for k, v in metrics.items()}


def train_loop(
  state: TrainState,
  *,
  epoch_fn: Callable[[TrainState, Any], tuple[TrainState, Metrics]],
  data: Any,
  steps_per_epoch: int,
  num_epochs: int,
  eval_every: int = 1,
  nonfinite: str = "skip",
  hooks: LoopHooks = LoopHooks(),
) -> tuple[TrainState, list[dict[str, float]]]:
  """Runs epochs from `state.step // steps_per_epoch` up to `num_epochs`.

  Each epoch: one compiled `epoch_fn` call, the non-finite policy ('skip'
  keeps going with the bad updates skipped; 'stop' raises `NonFiniteError`
  before anything is saved), the evaluation hook, one metrics row (means of
  the stacked step metrics, the last value of `*lr*`/`*scale*` keys) and a
  checkpoint.  Returns the final state and the rows written.
  """
  if nonfinite not in NONFINITE_POLICIES:
    raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}.")
  if eval_every < 1:
    raise ValueError(f"eval_every must be >= 1, got {eval_every}.")
  start_epoch = int(state.step) // steps_per_epoch
  history = []
  for epoch in range(start_epoch, num_epochs):
    skipped_before = int(state.nonfinite_count)
    state, step_metrics = epoch_fn(state, data)
    skipped = int(state.nonfinite_count) - skipped_before
    if skipped and nonfinite == "stop":
      raise NonFiniteError(
        f"{skipped} step(s) of epoch {epoch + 1} had a NaN/Inf loss, gradient or"
        f" parameter (last good step kept: {int(state.step) - skipped}). The"
        " state was not saved. Lower the learning rate, or set the config"
        " field nonfinite='skip' to skip such updates."
      )
    if skipped:
      logging.warning("epoch %d: skipped %d non-finite update(s).", epoch + 1, skipped)
    row = {"step": int(state.step), "epoch": epoch + 1}
    for k, v in step_metrics.items():
      v = np.asarray(v)
      last = "lr" in k or "scale" in k
      row["train/" + k] = float(v[-1] if last else np.nanmean(v) if np.isfinite(v).any() else np.nan)
    row["train/nonfinite_count"] = int(state.nonfinite_count)
    is_last = epoch + 1 == num_epochs
    if hooks.eval_fn is not None and ((epoch + 1) % eval_every == 0 or is_last):
      eval_metrics = hooks.eval_fn(state)
      if hooks.on_eval is not None:
        state = hooks.on_eval(state, eval_metrics)
      row.update({"eval/" + k: v for k, v in _host(eval_metrics).items()})
    history.append(row)
    if hooks.writer is not None:
      hooks.writer.write(row["step"], {k: v for k, v in row.items() if k != "step"})
    if hooks.checkpointer is not None:
      if hooks.writer is not None:  # what the checkpoint covers is logged
        hooks.writer.flush()
      hooks.checkpointer.save(int(state.step), state, force=is_last)
  return state, history
