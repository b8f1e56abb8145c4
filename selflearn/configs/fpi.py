"""Config of `python -m selflearn.main` for failure-point isolation.

Variants: `--config=selflearn/configs/fpi.py:<variant>`, see `VARIANTS`.
"""

import ml_collections

from selflearn.configs import base

VARIANTS = {
  "": "the full run: 4000 simulated dialogues, context model + no-context baseline (a few minutes on 2 cores)",
  "smoke": "a tiny run for tests (seconds): small random common.text encoder, no baseline",
  "minilm": "the full run with frozen all-MiniLM-L6-v2 turn embeddings added",
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = base.base_config("fpi")
  config.baseline = True
  if arg == "smoke":
    base.smoke(config)
    config.baseline = False
  elif arg == "minilm":
    config.turn_encoder = "minilm"
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}.")
  return config
