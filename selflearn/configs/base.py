"""Fields shared by the selflearn binary's configs; not a config file itself.

`common_config(task)`: what every task has (task, seed, the log block, the
optimizer and training-loop fields); `base_config(task)` adds the dialogue
model and simulated-annotator blocks of `fpi.py` and `labels.py`.
"""

import ml_collections

from schedulers import optimizers


def common_config(task: str) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = task  # fpi | labels | rephrase | amc | online | teach (fixed by the config file)
  config.seed = 0  # model init, data order, pretraining swaps

  config.data = ml_collections.ConfigDict()
  config.data.log_path = ""  # a JSONL log to read; empty: simulate into <workdir>/data/logs.jsonl
  config.data.skip_invalid = False  # skip (and count) invalid log rows instead of failing on the first
  config.data.num_dialogues = 6000  # dialogues to simulate (when log_path is empty)
  config.data.preset = "open_world"  # selflearn.sim.config.PRESETS: open_world | tail_heavy | closed_world
  config.data.sim_seed = 0  # simulator seed
  config.data.num_users = 2000  # simulated customers (the closed world's published runs: 200)
  config.data.error_scale = 1.0  # multiplies the simulator's error rates
  config.data.split = "temporal"  # temporal (by start day: the days below) | dialogue (by log order: the fractions)
  config.data.val_fraction = 0.1  # last dialogues before the test split (split=dialogue)
  config.data.test_fraction = 0.2  # last dialogues of the log (split=dialogue)
  config.data.train_days = 60  # split=temporal: days [0, train_days) train
  config.data.val_days = 10  # split=temporal: the next val_days validation, the rest test
  config.data.max_turns = 12  # turns per dialogue kept (padding / truncation)
  config.data.max_tokens = 12  # words per text kept
  config.data.vocab_size = 4000  # word vocabulary of the token encoder (training split)

  config.optimizer = optimizers.optimizer_config(
    name="adamw", learning_rate=2e-3, objective="supervised", weight_decay=0.01
  )  # schedulers.make_optimizer block
  config.batch_size = 32  # dialogues per step
  config.num_epochs = 6  # supervised epochs (may grow on resume)
  config.eval_every = 1  # epochs between validation losses
  config.checkpoint_every = 1  # epochs between checkpoints
  config.keep_checkpoints = 2  # newest checkpoints kept per stage
  config.nonfinite = "skip"  # skip | stop on a NaN/Inf update

  return config


def base_config(task: str) -> ml_collections.ConfigDict:
  """`common_config` plus the dialogue model and annotator blocks (fpi, labels)."""
  config = common_config(task)
  config.turn_encoder = "tokens"  # tokens (in-package word Transformer) | random | minilm (+ frozen embeddings)
  config.model = ml_collections.ConfigDict()
  config.model.token_dim = 64  # word Transformer width
  config.model.token_layers = 1  # word Transformer blocks
  config.model.model_dim = 64  # dialogue Transformer width
  config.model.num_layers = 2  # dialogue Transformer blocks
  config.model.num_heads = 4  # attention heads of both
  config.model.cat_dim = 8  # categorical feature embedding size
  config.model.use_audio = True  # feed the summary audio features
  config.model.dropout_rate = 0.1  # dropout in both Transformers (training only)
  config.baseline = False  # also train the no-context baseline (each turn alone)

  config.train_labels = "annotator"  # annotator (one simulated single-pass annotator) | truth
  config.annotator_seed = 17  # seeds of the simulated annotators (training pass; test panel = seed + 100..103)
  config.annotator = ml_collections.ConfigDict()  # selflearn.sim.annotators.Noise
  config.annotator.segment = 0.08  # B/I swap (and O -> B) probability
  config.annotator.success = 0.1  # goal-success flip probability, per goal
  config.annotator.intent = 0.06  # intent replaced by a random other
  config.annotator.slot = 0.06  # a slot span missed; as often, its value changed
  config.annotator.fpi_accuracy = ml_collections.ConfigDict(
    {"false_wake": 0.95, "asr": 0.9, "nlu": 0.88, "entity": 0.86, "result": 0.75, "correct": 0.85}
  )  # per-class probability that a human labels the failure point right
  return config


def closed_world(config: ml_collections.ConfigDict) -> None:
  """The closed world's data block in place: the original world, 200 users, split by dialogue index."""
  config.data.preset = "closed_world"
  config.data.num_users = 200
  config.data.split = "dialogue"


def smoke_data(config: ml_collections.ConfigDict) -> None:
  """Shrinks the log block in place (every task's smoke variant; on the closed world, see below)."""
  # The smokes stay on the closed world: building an open world costs ~6 s more per run (its lexicon's
  # phonetic neighbours); tests/selflearn/tasks/test_open_world.py runs smokes on the open world (slow tier).
  closed_world(config)
  config.data.num_dialogues = 120
  config.data.num_users = 20
  config.data.max_turns = 8
  config.data.max_tokens = 8


def smoke(config: ml_collections.ConfigDict) -> None:
  """Shrinks a `base_config` in place to a seconds-long run."""
  smoke_data(config)
  config.turn_encoder = "random"
  config.model.token_dim = 16
  config.model.model_dim = 16
  config.model.num_layers = 1
  config.model.num_heads = 2
  config.model.cat_dim = 4
  config.batch_size = 16
  config.num_epochs = 2
