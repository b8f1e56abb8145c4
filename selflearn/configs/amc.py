"""Config of `python -m selflearn.main` for precomputed (absorbing-Markov-chain) query rewriting.

Variants: `--config=selflearn/configs/amc.py:<variant>`, see `VARIANTS`.  The
training fields of `base.common_config` (optimizer, batch_size, epochs) are
unused: the chain is counted, not fitted.
"""

import ml_collections

from selflearn.configs import base

VARIANTS = {
  "": "the full run: 12000 simulated dialogues, chain from the training split, rewrites judged on the test split",
  "smoke": "a tiny run for tests (seconds): 120 dialogues, small sweep and bootstrap",
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = base.common_config("amc")
  config.data.num_dialogues = 12000  # ~8 s of simulation; 8,400 training dialogues feed the chain

  config.states = "text"  # text (normalised recognised utterance) | interpretation (the judge's resolve of the text)
  config.pairs_source = "gap"  # gap (time-gap sessions) | detector (cross-fitted rephrase detector) | truth
  config.compare_sources = ("gap", "detector", "truth")  # pairs sources of the variants table (test split)
  config.rephrase_gap = 15.0  # s: a request within this of a request with friction continues its session
  config.stop_gap = 8.0  # s: "stop" / negative feedback within this marks friction
  config.alpha = 0.0  # add-alpha smoothing of the observed edges and both absorbing columns
  config.max_source_success = 0.5  # sources: states whose success absorption B[s, S] is below this
  config.min_source_support = 2  # sources: observed at least this many times in training traffic
  config.min_support = 3  # guardrail: the rewrite state was observed at least this many times
  config.min_gain = 0.2  # guardrail: B[rewrite, S] - B[source, S] >= this
  config.min_visits = 0.05  # guardrail: expected visits N[source, rewrite] >= this (0: reachability only)
  config.same_family = True  # guardrail: the rewrite stays in the source's observed NLU domain family
  config.min_similarity = 0.0  # similarity guard: same observed intent family, slot types; text ratio >= this; <0 off
  config.tol = 1e-10  # max-abs error bound of the absorption solve (amc.absorption_probabilities)
  config.bootstrap = 1000  # bootstrap resamples of test dialogues for the win/loss CI
  config.detector = ml_collections.ConfigDict()  # pairs_source="detector": the cross-fitted rephrase detector
  config.detector.folds = 2  # folds of the training split (each labelled by a detector trained on the others)
  config.detector.variant = ""  # the selflearn/configs/rephrase.py variant the detectors train with ("" | smoke)
  config.detector.num_epochs = 4  # epochs of each fold's detector
  config.tune_on = "validation"  # validation: apply the sweep's best guardrails on the validation split | none
  config.sweep = ml_collections.ConfigDict()
  config.sweep.min_support = [1, 3, 10]  # guardrail grid (judged on validation): min_support values
  config.sweep.min_gain = [0.0, 0.2, 0.4]  # guardrail grid: min_gain values
  config.sweep.min_visits = [0.0, 0.05, 0.2]  # guardrail grid: min_visits values
  config.sweep.min_similarity = [0.0, 0.5, 0.7, 0.85]  # similarity guard grid (judged on validation)
  if arg == "smoke":
    base.smoke_data(config)
    config.detector.variant = "smoke"
    config.detector.num_epochs = 2
    config.compare_sources = ("gap", "truth")  # the detector's two trainings are the slow test's
    config.min_source_support = 1
    config.min_support = 1
    config.bootstrap = 50
    config.sweep.min_support = [1, 2]
    config.sweep.min_gain = [0.0, 0.2]
    config.sweep.min_visits = [0.0, 0.05]
    config.sweep.min_similarity = [0.0, 0.7]
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}.")
  return config
