"""Config of `python -m selflearn.main` for the label-generation model.

Variants: `--config=selflearn/configs/labels.py:<variant>`, see `VARIANTS`.
"""

import ml_collections

from selflearn.configs import base

VARIANTS = {
  "": "the full run: 4000 simulated dialogues, pretraining + multi-task, context model and turn baseline",
  "smoke": "a tiny run for tests (seconds): small random common.text encoder, no baseline",
  "minilm": "the full run with frozen all-MiniLM-L6-v2 turn embeddings added",
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = base.base_config("labels")
  config.baseline = True  # the keynote's baseline: a turn model without dialogue context
  config.pretrain = ml_collections.ConfigDict()
  config.pretrain.num_epochs = 3  # response-swap contrastive pretraining epochs (0: none)
  config.pretrain.swap_rate = 0.5  # share of turns whose response is swapped in from another dialogue
  config.loss_weights = ml_collections.ConfigDict(
    {"segment": 1.0, "success": 1.0, "intent": 1.0, "tags": 1.0, "values": 1.0}
  )  # multi-task loss weights
  config.confident_threshold = 0.9  # goal-success confidence of the high-precision operating point
  if arg == "smoke":
    base.smoke(config)
    config.pretrain.num_epochs = 1
    config.baseline = False  # the no-context path is covered by tests/selflearn/test_labels.py
  elif arg == "minilm":
    config.turn_encoder = "minilm"
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}.")
  return config
