"""Config of `python -m selflearn.main` for teachable preferences (`selflearn.teaching`).

Variants: `--config=selflearn/configs/teach.py:<variant>`, see `VARIANTS`.
"""

import ml_collections

from selflearn.configs import base

VARIANTS = {
  "": "the full run: 6000 simulated dialogues (200 users), 6000 annotated teaching turns (a few minutes on 2 cores)",
  "smoke": "a tiny run for tests (seconds): 120 dialogues, 20 users, a small extractor, 4 epochs",
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = base.common_config("teach")
  config.batch_size = 64  # annotated teaching turns per step
  config.num_epochs = 8  # extractor epochs (may grow on resume)

  config.teach = ml_collections.ConfigDict()
  config.teach.train_turns = 6000  # annotated turns the extractor trains on (random entries, held-out frames excluded)
  config.teach.val_turns = 600  # annotated validation turns (eval loss, GreedyLR per_eval)
  config.teach.turns_per_user = 8  # turns each user of the training dialogues says in the training period
  config.teach.distractor_rate = 0.4  # share of those turns that teach nothing (requests, chit-chat)
  config.teach.asr_noise = 0.06  # per-word probability of a random phonetic-neighbour substitution (half: drops)
  config.teach.systematic_noise = 0.5  # multiplies the world's shared ASR confusion rates
  config.teach.max_words = 16  # words per utterance kept
  config.teach.vocab_size = 2000  # word vocabulary (training corpus)

  config.model = ml_collections.ConfigDict()
  config.model.dim = 64  # word Transformer width
  config.model.num_layers = 2  # Transformer blocks
  config.model.num_heads = 4  # attention heads
  config.model.dropout_rate = 0.1  # dropout (training only)

  config.extract = ml_collections.ConfigDict()
  config.extract.threshold = 0.5  # minimum probability of the predicted teaching kind
  config.extract.fuzzy_cutoff = 75.0  # rapidfuzz ratio needed to map a span to a catalogue entity

  config.eval = ml_collections.ConfigDict()
  config.eval.bootstrap = 1000  # paired bootstrap resamples of the test dialogues
  config.eval.seed = 0  # bootstrap seed

  if arg == "smoke":
    base.smoke_data(config)
    config.batch_size = 32
    config.num_epochs = 4
    config.teach.train_turns = 400
    config.teach.val_turns = 64
    config.model.dim = 16
    config.model.num_layers = 1
    config.model.num_heads = 2
    config.eval.bootstrap = 100
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}.")
  return config
