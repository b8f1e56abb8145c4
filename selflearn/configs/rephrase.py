"""Config of `python -m selflearn.main` for contextual rephrase detection (`selflearn.rewriting.rephrase`).

Variants: `--config=selflearn/configs/rephrase.py:<variant>`, see `VARIANTS`.
"""

import ml_collections

from selflearn.configs import base

VARIANTS = {
  "": "the full run: 6000 simulated dialogues, span model + pairwise baseline (a few minutes on 2 cores)",
  "smoke": "a tiny run for tests (seconds): tiny span model, no pairwise baseline, no text encoder",
  "minilm": "the full run with frozen all-MiniLM-L6-v2 turn embeddings added",
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = base.common_config("rephrase")
  config.text_encoder = "none"  # none | random | minilm: frozen common.text sentence embedding added per turn
  config.max_gap = 45.0  # time-gap threshold: candidates start within this many seconds of the source's end
  config.max_candidates = 3  # following turns kept as candidates (the first ones within max_gap)
  config.max_span = 12  # longest span decoded, in tokens (L_max + 1); data.max_tokens words per turn
  config.threshold = 0.0  # predict a rephrase iff best span score - null span score > threshold
  config.baseline = True  # also train the pairwise classifier ([CLS] source [SEP] candidate, no context)
  config.baseline_signals = False  # give the pairwise classifier the gap and signal tokens too (ablation)
  config.model = ml_collections.ConfigDict()
  config.model.dim = 64  # Transformer width
  config.model.num_layers = 2  # Transformer blocks
  config.model.num_heads = 4  # attention heads
  config.model.dropout_rate = 0.1  # dropout in the Transformer (training only)
  config.batch_size = 64  # examples (sources, or pairs for the baseline) per step
  config.num_epochs = 4  # epochs of each model (may grow on resume)
  if arg == "smoke":
    base.smoke_data(config)
    config.baseline = False  # each training stage costs ~10 s of compilation; the slow test covers the baseline
    config.max_span = 8
    config.model.dim = 16
    config.model.num_layers = 1
    config.model.num_heads = 2
    config.batch_size = 16
    config.num_epochs = 2
  elif arg == "minilm":
    config.text_encoder = "minilm"
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}.")
  return config
