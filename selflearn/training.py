"""What the selflearn tasks share: data, config validation, networks, resumable training stages.

`selflearn.train.train_and_evaluate(config, workdir)` (called by `selflearn.main`):

1. gets the logs: simulates `data.num_dialogues` dialogues into
   `workdir/data/logs.jsonl` (once; reused on resume), or reads
   `data.log_path` through the validating loader;
2. splits them by dialogue (train / validation / test), builds the word
   vocabulary on the training split and encodes all splits (`features`),
   plus frozen sentence embeddings when `turn_encoder` is a pretrained
   encoder (`text_features`, cached in `workdir/data`);
3. runs the task (`config.task`): `selflearn.fpi.run` or
   `selflearn.labels.run`, whose training stages go through `fit`.

`fit` is one resumable stage: `common.trainer` (jit(scan) epochs, NaN/Inf
skip, eval hook), the optimizer from `schedulers.optimizers` (GreedyLR per
step by default), batches sharded over the `data` mesh
(`common.sharding`), a checkpoint per `checkpoint_every` epochs
(`common.checkpoint`), metrics in `<stage>/metrics.jsonl`.  A killed run
re-run on the same workdir resumes each stage from its latest checkpoint
and ends identically (the data order is a function of the step).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.flatten_util import ravel_pytree

from common import app, checkpoint, sharding, trainer
from common import data as data_lib
from common import metrics as metrics_lib
from schedulers import optimizers
from selflearn import annotators, features, networks, schema, simulator, text_features
from selflearn import world as world_lib

TASKS = ("fpi", "labels")
TRAIN_LABELS = ("truth", "annotator")
# May differ when a workdir is resumed: a longer budget, checkpoint cadence.
RESUMABLE_FIELDS = ("num_epochs", "checkpoint_every", "keep_checkpoints", "eval_every")
DEFAULT_CONFIG = str(pathlib.Path(__file__).parent / "configs" / "fpi.py")


def _reference_config(task: str) -> ml_collections.ConfigDict:
  if task == "fpi":
    from selflearn.configs import fpi as module  # pylint: disable=g-import-not-at-top
  else:
    from selflearn.configs import labels as module  # pylint: disable=g-import-not-at-top
  return module.get_config()


def _pos(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def validate_common(config: ml_collections.ConfigDict, *, batch_unit: str = "dialogues") -> int:
  """Checks the fields every task has (`configs.base.common_config`); returns the training-split size.

  Raises `common.app.ConfigError` naming the first bad field, or ValueError
  naming a bad log row (`data.log_path` is read and validated here, before
  anything compiles).
  """
  for field in ("batch_size", "num_epochs", "eval_every", "checkpoint_every", "keep_checkpoints"):
    app.check(config, field, _pos, "must be an integer >= 1")
  devices = jax.device_count()
  app.check(config, "batch_size", lambda v: v % devices == 0, f"must split evenly over the {devices} devices")
  app.check(
    config, "nonfinite", lambda v: v in trainer.NONFINITE_POLICIES, f"must be one of {trainer.NONFINITE_POLICIES}"
  )
  for field in ("data.max_turns", "data.max_tokens"):
    app.check(config, field, _pos, "must be an integer >= 1")
  app.check(config, "data.max_turns", lambda v: v >= 2, "must be >= 2")
  app.check(config, "data.vocab_size", lambda v: isinstance(v, int) and v >= 10, "must be an integer >= 10")
  app.check(config, "data.val_fraction", lambda v: 0 < v < 0.5, "must be in (0, 0.5)")
  app.check(config, "data.test_fraction", lambda v: 0 < v < 0.5, "must be in (0, 0.5)")
  optimizers.check_optimizer_config(config, "optimizer")
  if config.data.log_path:
    path = pathlib.Path(config.data.log_path)
    if not path.is_file():
      raise app.ConfigError("data.log_path", f"no such file {path}")
    stats = schema.LoadStats()
    try:
      for _ in schema.iter_logs(path, skip_invalid=config.data.skip_invalid, stats=stats):
        pass
    except schema.LogFormatError as e:
      raise ValueError(f"bad log row {e} (set data.skip_invalid=True to skip and count such rows)") from None
    count = stats.rows - stats.skipped
  else:
    app.check(config, "data.num_dialogues", _pos, "must be an integer >= 1")
    try:
      _sim_config(config)
    except ValueError as e:
      raise app.ConfigError(f"data.{str(e).split(' ', 1)[0]}", str(e)) from None
    count = config.data.num_dialogues
  train_count = count - int(count * config.data.val_fraction) - int(count * config.data.test_fraction)
  if batch_unit == "dialogues":
    app.check(
      config,
      "batch_size",
      lambda v: v <= train_count and int(count * config.data.test_fraction) >= 1,
      f"must be <= the {train_count} training dialogues (and the test split non-empty)",
    )
  else:
    app.check(config, "data.test_fraction", lambda v: int(count * v) >= 1, f"leaves no test dialogue of the {count}")
  return train_count


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Validates an `fpi` / `labels` config: the common fields, then the dialogue model's and annotators'."""
  app.check(config, "task", lambda v: v in TASKS, f"must be one of {TASKS}")
  app.check_known_fields(config, _reference_config(config.task))
  app.check(
    config, "turn_encoder", lambda v: v in text_features.TURN_ENCODERS, f"must be one of {text_features.TURN_ENCODERS}"
  )
  app.check(config, "train_labels", lambda v: v in TRAIN_LABELS, f"must be one of {TRAIN_LABELS}")
  for field in ("model.token_dim", "model.model_dim", "model.num_heads"):
    app.check(config, field, _pos, "must be an integer >= 1")
  for field in ("model.token_layers", "model.num_layers"):
    app.check(config, field, lambda v: isinstance(v, int) and v >= 1, "must be an integer >= 1")
  for field in ("model.token_dim", "model.model_dim"):
    app.check(config, field, lambda v: v % config.model.num_heads == 0, "must be a multiple of model.num_heads")
  app.check(config, "model.dropout_rate", lambda v: 0 <= v < 1, "must be in [0, 1)")
  try:
    annotator_noise(config)
  except ValueError as e:
    name = str(e).split(" ", 1)[0]
    raise app.ConfigError(f"annotator.{name}" if name in config.annotator else "annotator", str(e)) from None
  validate_common(config)


def annotator_noise(config: ml_collections.ConfigDict) -> annotators.Noise:
  a = config.annotator
  return annotators.Noise(
    segment=a.segment, success=a.success, intent=a.intent, slot=a.slot, fpi_accuracy=dict(a.fpi_accuracy)
  )


def _sim_config(config: ml_collections.ConfigDict) -> simulator.SimConfig:
  d = config.data
  return simulator.SimConfig(seed=d.sim_seed, num_users=d.num_users, error_scale=d.error_scale, max_turns=d.max_turns)


# --- data ---------------------------------------------------------------------------


@dataclasses.dataclass
class Data:
  """Encoded splits plus what describes them."""

  train: features.Dataset
  val: features.Dataset
  test: features.Dataset
  vocab: features.Vocab
  values: tuple[str, ...]
  log_path: pathlib.Path
  skipped: int
  skipped_errors: list
  text_dim: int


@dataclasses.dataclass
class Dialogues:
  """The raw log rows of one run, split by dialogue (train / validation / test), plus their source."""

  train: list
  val: list
  test: list
  log_path: pathlib.Path
  skipped: int
  skipped_errors: list


def world_of(config: ml_collections.ConfigDict):
  """The simulated world the logs come from (`data.sim_seed`, `data.num_users`)."""
  return world_lib.make_world(config.data.sim_seed, config.data.num_users)


def load_dialogues(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> Dialogues:
  """Simulates (once, into `workdir/data/logs.jsonl`) or reads the logs and splits them by dialogue."""
  d = config.data
  data_dir = workdir / "data"
  if d.log_path:
    path = pathlib.Path(d.log_path)
  else:
    path = data_dir / "logs.jsonl"
    if not path.exists() and jax.process_index() == 0:
      data_dir.mkdir(parents=True, exist_ok=True)
      tmp = data_dir / f".logs.{os.getpid()}.jsonl"
      print(f"simulating {d.num_dialogues} dialogues into {path}", flush=True)
      simulator.write_logs(str(tmp), simulator.generate(_sim_config(config), d.num_dialogues), total=d.num_dialogues)
      os.replace(tmp, path)
  rows, stats = schema.load_logs(path, skip_invalid=d.skip_invalid)
  if stats.skipped:
    print(f"warning: skipped {stats.skipped} invalid rows of {path} (first: {stats.errors[0]})", flush=True)
  n = len(rows)
  n_val, n_test = int(n * d.val_fraction), int(n * d.test_fraction)
  cut = n - n_val - n_test
  return Dialogues(rows[:cut], rows[cut : n - n_test], rows[n - n_test :], path, stats.skipped, stats.errors)


def load_data(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> Data:
  """Simulates (once) or reads the logs, splits, encodes; see the module docstring."""
  d = config.data
  data_dir = workdir / "data"
  raw = load_dialogues(config, workdir)
  train_rows, val_rows, test_rows, path, stats = raw.train, raw.val, raw.test, raw.log_path, raw
  vocab = features.Vocab.build(
    (t[k]["text"] for r in train_rows for t in r["turns"] for k in ("asr", "response")), max_size=d.vocab_size
  )
  values = features.value_vocab(train_rows)
  enc = lambda r: features.encode(r, vocab, values, max_turns=d.max_turns, max_tokens=d.max_tokens)
  splits = [enc(train_rows), enc(val_rows), enc(test_rows)]
  text_dim = 0
  if config.turn_encoder != "tokens":
    for s in splits:
      for name, texts in (("utt_emb", s.utt_texts), ("resp_emb", s.resp_texts)):
        s.inputs[name] = text_features.dialogue_embeddings(config.turn_encoder, texts, d.max_turns, cache_dir=data_dir)
    text_dim = int(splits[0].inputs["utt_emb"].shape[-1])
  return Data(*splits, vocab, values, path, stats.skipped, stats.skipped_errors, text_dim)


def training_labels(config: ml_collections.ConfigDict, split: features.Dataset, *, offset: int = 0) -> dict:
  """The labels a model trains on: the truth, or one simulated annotator's pass (`train_labels`).

  `offset` gives each split its own annotator draw (seed `annotator_seed + offset`).
  """
  if config.train_labels == "truth":
    return split.labels
  noise = annotator_noise(config)
  return annotators.annotate(split.labels, split.inputs["turn_mask"], noise, config.annotator_seed + offset)


def model_batch(split: features.Dataset, labels: dict[str, np.ndarray] | None = None) -> dict[str, jax.Array]:
  """The device dict of a split: inputs, token masks and `y_<label>` arrays."""
  out = dict(split.inputs)
  out.update(features.token_masks(split.inputs))
  for k, v in (labels or split.labels).items():
    out[f"y_{k}"] = v
  return {k: jnp.asarray(v) for k, v in out.items()}


def make_network(config: ml_collections.ConfigDict, data: Data, heads, *, context: bool):
  m = config.model
  return networks.make_dialogue_model(
    turns=config.data.max_turns,
    tokens=config.data.max_tokens,
    vocab_size=data.vocab.size,
    cat_sizes=tuple(len(v) for v in features.CATEGORICAL.values()),
    num_numeric=len(features.NUMERIC),
    heads=tuple(heads),
    num_audio=features.AUDIO_SIZE if m.use_audio else 0,
    text_dim=data.text_dim,
    token_dim=m.token_dim,
    token_layers=m.token_layers,
    model_dim=m.model_dim,
    num_layers=m.num_layers,
    num_heads=m.num_heads,
    cat_dim=m.cat_dim,
    context=context,
    dropout_rate=m.dropout_rate,
  )


# --- one resumable training stage ----------------------------------------------------


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


def predict(network, params, batch: dict, *, chunk: int = 256) -> dict[str, np.ndarray]:
  """Softmax probabilities of every head over a split, in fixed-size chunks (one compilation)."""
  n = int(batch["turn_mask"].shape[0])
  keys = [k for k in batch if not k.startswith("y_")]
  apply = jax.jit(lambda p, b: jax.tree.map(lambda x: jax.nn.softmax(x, -1), network.apply(p, b)))
  size = min(chunk, n)
  outs = []
  for start in range(0, n, size):
    idx = np.minimum(np.arange(start, start + size), n - 1)  # pad the last chunk by repetition
    part = apply(params, {k: batch[k][idx] for k in keys})
    keep = min(size, n - start)
    outs.append({k: np.asarray(v)[:keep] for k, v in part.items()})
  return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def write_results(workdir: pathlib.Path, results: dict, markdown: str) -> None:
  if jax.process_index() != 0:
    return
  (workdir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
  (workdir / "results.md").write_text(markdown)
