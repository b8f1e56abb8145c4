"""Config of `python -m selflearn.main` for online query rewriting (retrieval + ranking, global / personal A/B).

Variants: `--config=selflearn/configs/online.py:<variant>`, see `VARIANTS`.
"""

import ml_collections

from selflearn.configs import base

VARIANTS = {
  "": "the full run: 6000 simulated dialogues, encoder + two rankers, plus the pairs_source=truth upper bound",
  "smoke": "a tiny run for tests (seconds): 120 dialogues, small models, no upper bound",
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = base.common_config("online")
  config.batch_size = 64  # mined pairs per encoder step (in-batch negatives: the batch is the softmax)
  config.num_epochs = 30  # encoder epochs (may grow on resume)
  config.pairs_source = "gap"  # gap (reformulation sessions) | detector (cross-fitted detector) | truth (upper bound)
  config.upper_bound = True  # also run the whole pipeline on pairs_source=truth (results["upper_bound"])
  config.compare_detector = True  # also run it on pairs_source=detector (results["detector"])
  config.rephrase_gap = 15.0  # seconds: a follow-up request this soon after friction continues the session
  config.min_personal_history = 5  # earlier successful requests a user needs before the personal layer acts

  config.detector = ml_collections.ConfigDict()  # pairs_source="detector": the cross-fitted rephrase detector
  config.detector.folds = 2  # folds of the training split (each labelled by a detector trained on the others)
  config.detector.variant = ""  # the selflearn/configs/rephrase.py variant the detectors train with ("" | smoke)
  config.detector.num_epochs = 4  # epochs of each fold's detector
  config.retrieval = ml_collections.ConfigDict()
  config.retrieval.num_buckets = 1 << 15  # hashed character 3-gram / word buckets (0: padding)
  config.retrieval.max_ngrams = 64  # n-grams kept per text
  config.retrieval.embed_dim = 64  # n-gram embedding size
  config.retrieval.hidden_dim = 128  # tower MLP width
  config.retrieval.out_dim = 64  # output (index) dimension, L2 normalised
  config.retrieval.scale = 20.0  # inverse temperature of the DPR softmax over cosines
  config.retrieval.hard_negatives = True  # add one spelling-close index text per pair (shared by the batch, as in DPR)
  config.retrieval.text_encoder = "none"  # none | random | minilm: frozen common.text embedding added to the tower
  config.retrieval.k = 10  # candidates retrieved per layer
  config.retrieval.chunk = 8192  # index rows per search step

  config.ranker = ml_collections.ConfigDict()
  config.ranker.hidden_dim = 32  # MLP width (0: linear)
  config.ranker.batch_size = 128  # candidate lists per step
  config.ranker.num_epochs = 30  # ranker epochs
  config.ranker.passthrough_ratio = 2.0  # frictionless requests (label: no rewrite) per mined pair
  config.ranker.thresholds = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # logit margins tried on val
  config.ranker.tune_on = "observable"  # observable (agreement with users' corrections, signals.proxy) | judge

  config.guard = ml_collections.ConfigDict()
  config.guard.margin = 0.5  # a personal override must beat the global decision's logit by this much
  config.guard.min_entity = 0.6  # ... keep the query's entities (ranker.entity_similarity) at least this well
  config.guard.dominant_share = 0.25  # a candidate with this share of the user's history is "dominant" ...
  config.guard.dominant_ratio = 80  # ... and may only replace a query this close (rapidfuzz ratio, 0-100)

  config.ab = ml_collections.ConfigDict()
  config.ab.num_bootstrap = 1000  # paired bootstrap resamples of the test dialogues
  config.ab.seed = 0  # bootstrap seed
  if arg == "smoke":
    base.smoke_data(config)
    config.detector.variant = "smoke"
    config.detector.num_epochs = 2
    config.batch_size = 16
    config.num_epochs = 2
    config.upper_bound = False
    config.compare_detector = False
    config.min_personal_history = 2
    config.retrieval.num_buckets = 1 << 10
    config.retrieval.embed_dim = 16
    config.retrieval.hidden_dim = 16
    config.retrieval.out_dim = 16
    config.retrieval.k = 4
    config.ranker.hidden_dim = 8
    config.ranker.batch_size = 16
    config.ranker.num_epochs = 2
    config.ab.num_bootstrap = 100
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}.")
  return config
