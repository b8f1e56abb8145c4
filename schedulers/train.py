"""Digits MLP trained with an optax optimizer + GreedyLR: the library entry point.

`train_and_evaluate(config, workdir)` trains, evaluates, checkpoints, resumes
from the latest checkpoint in `workdir`, writes `metrics.jsonl`,
`final_metrics.json`, TensorBoard events and PNG plots, and returns the final
metrics.  The config stops here: everything below takes explicit arguments.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from common import app, checkpoint, sharding, trainer
from common import data as data_lib
from common import metrics as metrics_lib
from schedulers import data as datasets
from schedulers import losses, networks, optimizers
from schedulers.configs import default as default_config

DEFAULT_CONFIG = default_config.__file__
# May differ when a workdir is resumed: a longer budget, checkpoint cadence.
RESUMABLE_FIELDS = ("num_epochs", "checkpoint_every", "keep_checkpoints")
OPTIMIZERS = ("adamw", "sgd", "momentum")  # the digits binary's subset of the shared factory's


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field."""
  app.check_known_fields(config, default_config.get_config())
  positive_int = lambda v: isinstance(v, int) and v >= 1
  app.check(config, "batch_size", positive_int, "must be an integer >= 1")
  devices = jax.device_count()
  app.check(
    config,
    "batch_size",
    lambda v: v % devices == 0,
    f"must split evenly over the {devices} devices of the data-parallel mesh",
  )
  app.check(config, "num_epochs", positive_int, "must be an integer >= 1")
  app.check(config, "eval_every", positive_int, "must be an integer >= 1")
  app.check(config, "checkpoint_every", positive_int, "must be an integer >= 1")
  app.check(config, "keep_checkpoints", positive_int, "must be an integer >= 1")
  app.check(config, "model.hidden_sizes", lambda v: all(int(h) >= 1 for h in v), "must be positive widths")
  app.check(config, "optimizer.name", lambda v: v in OPTIMIZERS, f"must be one of {OPTIMIZERS}")
  app.check(config, "optimizer.learning_rate", lambda v: v > 0, "must be > 0")
  app.check(config, "optimizer.weight_decay", lambda v: v >= 0, "must be >= 0")
  app.check(config, "optimizer.momentum", lambda v: 0 <= v < 1, "must be in [0, 1)")
  app.check(config, "greedy_mode", lambda v: v in optimizers.GREEDY_MODES, f"must be one of {optimizers.GREEDY_MODES}")
  app.check(
    config, "nonfinite", lambda v: v in trainer.NONFINITE_POLICIES, f"must be one of {trainer.NONFINITE_POLICIES}"
  )
  frac = lambda v: 0 < v < 0.5
  app.check(config, "data.val_fraction", frac, "must be in (0, 0.5)")
  app.check(config, "data.test_fraction", frac, "must be in (0, 0.5)")
  optimizers.check_greedy_config(config, "greedy")


def _host_floats(metrics) -> dict[str, float]:
  return {k: float(v) for k, v in metrics.items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains on digits, resuming from `workdir`; returns the final metrics."""
  workdir = pathlib.Path(workdir)
  train_split, val_split, test_split = datasets.load_digits(
    val_fraction=config.data.val_fraction,
    test_fraction=config.data.test_fraction,
    seed=config.data.split_seed,
  )
  mesh = trainer.default_mesh()
  per_epoch = data_lib.steps_per_epoch(train_split, config.batch_size)

  network = networks.make_classifier(
    input_size=train_split["x"].shape[1], hidden_sizes=tuple(config.model.hidden_sizes), num_classes=10
  )
  train_loss, evaluate = losses.make_losses(network)
  built = optimizers.make_optimizer(
    name=config.optimizer.name,
    learning_rate=config.optimizer.learning_rate,
    objective="supervised",
    weight_decay=config.optimizer.weight_decay,
    momentum=config.optimizer.momentum,
    greedy_mode=config.greedy_mode,
    greedy=dict(config.greedy),
  )
  optimizer = built.tx

  def lr_metrics(state):
    return {"lr": built.learning_rate(state.opt_state)}

  init_key, data_key, run_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
  state = jax.jit(lambda: trainer.TrainState.create(params=network.init(init_key), optimizer=optimizer, rng=run_key))()
  step_fn = trainer.make_train_step(train_loss, optimizer, metrics_fn=lr_metrics)

  num_train = data_lib.num_examples(train_split)

  def prepare(data, state):  # one shuffle per epoch, keyed by the epoch index
    return data, data_lib.epoch_permutation(data_key, state.step // per_epoch, num_train)

  def batch_fn(epoch_data, step):
    data, permutation = epoch_data
    return data_lib.batch_from_permutation(data, permutation, step, config.batch_size)

  epoch_fn = trainer.make_epoch(step_fn, batch_fn, per_epoch, prepare=prepare, mesh=mesh)
  train_data = jax.tree.map(jnp.asarray, train_split)
  val_data = jax.tree.map(jnp.asarray, val_split)
  test_data = jax.tree.map(jnp.asarray, test_split)
  if mesh is not None:
    state, train_data, val_data, test_data = sharding.replicate((state, train_data, val_data, test_data), mesh)

  eval_fn = jax.jit(lambda state: evaluate(state.params, val_data))
  on_eval = None
  if config.greedy_mode == "per_eval":
    on_eval = jax.jit(lambda state, m: state.replace(opt_state=built.observe(state.opt_state, m["loss"])))

  total_steps = per_epoch * config.num_epochs
  with checkpoint.Checkpointer(
    workdir / "checkpoints",
    save_every=per_epoch * config.checkpoint_every,
    keep=config.keep_checkpoints,
  ) as ckpt:
    restored, restored_step = ckpt.restore_latest(state)
    if restored is not None:
      state = restored
      if jax.process_index() == 0:
        print(f"resuming from the checkpoint at step {restored_step} of {total_steps}", flush=True)
    with metrics_lib.MetricWriter(
      workdir, total_steps=total_steps, resume_step=restored_step, progress_lines=10
    ) as writer:
      state, _ = trainer.train_loop(
        state,
        epoch_fn=epoch_fn,
        data=train_data,
        steps_per_epoch=per_epoch,
        num_epochs=config.num_epochs,
        eval_every=config.eval_every,
        nonfinite=config.nonfinite,
        hooks=trainer.LoopHooks(eval_fn=eval_fn, on_eval=on_eval, checkpointer=ckpt, writer=writer),
      )

  final = {
    "step": int(state.step),
    "nonfinite_count": int(state.nonfinite_count),
    "lr": float(lr_metrics(state)["lr"]),
  }
  final.update({f"val_{k}": v for k, v in _host_floats(eval_fn(state)).items()})
  test_metrics = jax.jit(functools.partial(evaluate, split=test_data))(state.params)
  final.update({f"test_{k}": v for k, v in _host_floats(test_metrics).items()})
  if jax.process_index() == 0:
    (workdir / "final_metrics.json").write_text(json.dumps(final, indent=2, sort_keys=True))
    metrics_lib.plot_metrics(workdir, loss_label="cross-entropy (nats)")
    print(
      f"outputs in {workdir}: metrics.jsonl, final_metrics.json, tensorboard/,"
      f" plots/, checkpoints/, config.json | test loss {final['test_loss']:.4f},"
      f" test accuracy {final['test_accuracy']:.4f}",
      flush=True,
    )
  return final
