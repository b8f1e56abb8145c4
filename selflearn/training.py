"""One resumable training stage, shared by every selflearn model.

`fit(stage_dir, network=, loss_fn=, train=, val=, config=, num_epochs=,
seed=)` trains a `common.encoders.Network` on device-array batches:
`common.trainer` (jit(scan) epochs, NaN/Inf skip, eval hook), the optimizer
from `schedulers.optimizers` (GreedyLR per step by default), batches sharded
over the `data` mesh (`common.sharding`), a checkpoint per
`checkpoint_every` epochs (`common.checkpoint`), metrics in
`<stage>/metrics.jsonl`.  A killed run re-run on the same workdir resumes
the stage from its latest checkpoint and ends identically (the data order is
a function of the step).

The stage reads these config fields: `optimizer`, `batch_size`,
`eval_every`, `checkpoint_every`, `keep_checkpoints`, `nonfinite`
(`configs/base.py`).
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import jax
import ml_collections
from jax.flatten_util import ravel_pytree

from common import checkpoint, sharding, trainer
from common import data as data_lib
from common import metrics as metrics_lib
from schedulers import optimizers


def fit(
  stage_dir: pathlib.Path,
  *,
  network,
  loss_fn: Callable,
  train: dict,
  val: dict,
  config: ml_collections.ConfigDict,
  num_epochs: int,
  seed: int,
  init_params: Any = None,
  eval_loss_fn: Callable | None = None,
) -> tuple[Any, trainer.TrainState]:
  """Trains (or resumes, or returns the finished) stage in `stage_dir`.

  The parameters are trained as one flat vector (`ravel_pytree`): XLA on
  CPU compiles the optimizer update, NaN guard and GreedyLR of the model's
  ~70 leaves about 3x slower than of a single vector, and compilation
  dominates short runs.  The arithmetic is the same (adamw and clipping are
  element-wise or global-norm).

  `eval_loss_fn` (default `loss_fn`) gives the validation loss of the eval
  hook (e.g. without dropout).

  Returns:
    `(params, state)`: the final parameter pytree and the flat `TrainState`.
  """
  built = optimizers.from_config(config.optimizer)
  init_key, data_key, run_key = jax.random.split(jax.random.PRNGKey(seed), 3)
  params = jax.jit(network.init)(init_key) if init_params is None else init_params
  flat, unravel = ravel_pytree(params)
  flat_loss = lambda f, batch, rng: loss_fn(unravel(f), batch, rng)
  state = jax.jit(lambda f: trainer.TrainState.create(params=f, optimizer=built.tx, rng=run_key))(flat)
  step_fn = trainer.make_train_step(flat_loss, built.tx, metrics_fn=lambda s: {"lr": built.learning_rate(s.opt_state)})
  per_epoch = data_lib.steps_per_epoch(train, config.batch_size)
  num_train = data_lib.num_examples(train)

  def prepare(data, state):
    return data, data_lib.epoch_permutation(data_key, state.step // per_epoch, num_train)

  def batch_fn(epoch_data, step):
    data, permutation = epoch_data
    return data_lib.batch_from_permutation(data, permutation, step, config.batch_size)

  mesh = trainer.default_mesh()
  epoch_fn = trainer.make_epoch(step_fn, batch_fn, per_epoch, prepare=prepare, mesh=mesh)
  eval_key = jax.random.PRNGKey(seed + 1)
  if mesh is not None:
    state, train, val = sharding.replicate((state, train, val), mesh)

  def evaluate(state, val):
    loss, metrics = (eval_loss_fn or loss_fn)(unravel(state.params), val, eval_key)
    return {"loss": loss, **metrics}

  evaluate = jax.jit(evaluate)  # the split is an argument, not a folded constant
  eval_fn = lambda state: evaluate(state, val)
  on_eval = None
  if config.optimizer.greedy_mode == "per_eval":
    on_eval = jax.jit(lambda s, m: s.replace(opt_state=built.observe(s.opt_state, m["loss"])))
  total = per_epoch * num_epochs
  with checkpoint.Checkpointer(
    stage_dir / "checkpoints", save_every=per_epoch * config.checkpoint_every, keep=config.keep_checkpoints
  ) as ckpt:
    restored, restored_step = ckpt.restore_latest(state)
    if restored is not None:
      state = restored
      if jax.process_index() == 0:
        print(f"{stage_dir.name}: resuming from the checkpoint at step {restored_step} of {total}", flush=True)
    with metrics_lib.MetricWriter(stage_dir, total_steps=total, resume_step=restored_step, progress_lines=5) as w:
      state, _ = trainer.train_loop(
        state,
        epoch_fn=epoch_fn,
        data=train,
        steps_per_epoch=per_epoch,
        num_epochs=num_epochs,
        eval_every=config.eval_every,
        nonfinite=config.nonfinite,
        hooks=trainer.LoopHooks(eval_fn=eval_fn, on_eval=on_eval, checkpointer=ckpt, writer=w),
      )
  if jax.process_index() == 0:
    print(f"{stage_dir.name}: done at step {int(state.step)} ({stage_dir})", flush=True)
  return unravel(state.params), state
