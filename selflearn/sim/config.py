"""The simulator's knobs (`SimConfig`) and its named presets.

`preset(name, **overrides)` gives the config of a named world:

* `open_world` (the default `SimConfig()`): generated catalogues with a head
  and a long tail, Zipf user activity, accent groups and personal names,
  class-independent confidences of stated strength, friction after successes,
  an ASR update on day 60 (`selflearn.sim.openworld`);
* `tail_heavy`: the open world with most requests in the tail;
* `closed_world`: the original world (19 intents over ~20-item catalogues,
  uniform user activity, class-specific confidences); the logs of every
  result published before the open world are this preset's, bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

WORLDS = ("open", "closed")


@dataclasses.dataclass(frozen=True)
class SimConfig:
  """Simulation knobs (all error rates scale with `error_scale`).

  Attributes:
    world: "open" (`selflearn.sim.openworld`) or "closed" (the original world).
    seed: world and dialogue seed.
    num_users: simulated customers.
    max_goals: goals per dialogue (1 + Poisson(0.8), capped).
    max_turns: turns per dialogue (later goals are dropped).
    false_wake_rate: probability that a goal is preceded by a false wake.
    error_scale: multiplies every injected error probability.
    systematic_fraction: share of confusable entity words with a shared ASR confusion.

  Open world only:
    catalogue_size: songs in the catalogue (artists, titles, items, stations scale with it).
    head_fraction: share of each catalogue's entities in the popular head (at least one).
    zipf_exponent: popularity law within the head.
    tail_share: probability that a request's entity comes from the tail (uniform).
    new_entity_share: share of entities released after day 0 (uniform over the days).
    num_days: days the log spans.
    activity_exponent: Zipf law of dialogues per user (user 0 the most active).
    num_accents: accent groups (group 0 has no confusions of its own).
    accent_fraction: share of carrier and entity words an accent group confuses.
    personal_repeat: probability that a user asks for one of their own favourite entities.
    alias_resolve: probability that the resolver knows a personal device name or contact nickname.
    signal_auc: ROC AUC of any one confidence (ASR, NLU, ER, wake) alone at telling a defective
      turn from a correct one; the same for every failing component.
    success_barge_in_rate: barge-in probability on a successful response.
    success_stop_rate: "stop" after a success.
    success_negative_rate: negative feedback after a success.
    failure_silence_rate: silent abandonment after a failed request (other reactions share the rest).
    drift_day: day of the ASR model update.
    drift_share: share of the shared confusions the update fixes (as many new ones appear).
  """

  world: str = "open"
  seed: int = 0
  num_users: int = 2000
  max_goals: int = 4
  max_turns: int = 12
  false_wake_rate: float = 0.05
  error_scale: float = 1.0
  systematic_fraction: float = 0.15
  catalogue_size: int = 3000
  head_fraction: float = 0.1
  zipf_exponent: float = 1.0
  tail_share: float = 0.4
  new_entity_share: float = 0.2
  num_days: int = 90
  activity_exponent: float = 1.0
  num_accents: int = 4
  accent_fraction: float = 0.1
  personal_repeat: float = 0.3
  alias_resolve: float = 0.3
  signal_auc: float = 0.65
  success_barge_in_rate: float = 0.1
  success_stop_rate: float = 0.08
  success_negative_rate: float = 0.03
  failure_silence_rate: float = 0.35
  drift_day: int = 60
  drift_share: float = 0.5

  def __post_init__(self):
    if self.world not in WORLDS:
      raise ValueError(f"world must be one of {WORLDS}, got {self.world!r}.")
    if self.num_users < 1:
      raise ValueError(f"num_users must be >= 1, got {self.num_users}.")
    if self.max_goals < 1 or self.max_turns < 2:
      raise ValueError(f"need max_goals >= 1 and max_turns >= 2, got {self.max_goals}, {self.max_turns}.")
    if not 0 <= self.error_scale <= 3:
      raise ValueError(f"error_scale must be in [0, 3], got {self.error_scale}.")
    for name in (
      "false_wake_rate",
      "systematic_fraction",
      "tail_share",
      "head_fraction",
      "new_entity_share",
      "accent_fraction",
      "personal_repeat",
      "alias_resolve",
      "success_barge_in_rate",
      "success_stop_rate",
      "success_negative_rate",
      "failure_silence_rate",
      "drift_share",
    ):
      if not 0 <= getattr(self, name) <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")
    if self.success_stop_rate + self.success_negative_rate > 1:
      raise ValueError("success_stop_rate + success_negative_rate must be <= 1.")
    if not 0.5 <= self.signal_auc < 1:
      raise ValueError(f"signal_auc must be in [0.5, 1), got {self.signal_auc}.")
    for name in ("catalogue_size", "num_days", "num_accents"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
    if self.catalogue_size < 20:
      raise ValueError(f"catalogue_size must be >= 20, got {self.catalogue_size}.")
    if self.num_days < 2 or not 0 <= self.drift_day <= self.num_days:
      raise ValueError(f"drift_day must be in [0, num_days] (num_days >= 2), got {self.drift_day}, {self.num_days}.")
    if self.zipf_exponent < 0 or self.activity_exponent < 0:
      raise ValueError("zipf_exponent and activity_exponent must be >= 0.")


PRESETS = {
  "open_world": {},
  "tail_heavy": {"tail_share": 0.8, "zipf_exponent": 0.8},
  "closed_world": {"world": "closed", "num_users": 100, "systematic_fraction": 0.5},
}


def preset(name: str, **overrides) -> SimConfig:
  """The `SimConfig` of preset `name` (`PRESETS`) with `overrides` applied."""
  if name not in PRESETS:
    raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}.")
  return SimConfig(**{**PRESETS[name], **overrides})


def signal_shift(auc: float) -> float:
  """The logit shift that gives a unit-variance normal confidence ROC AUC `auc` alone: sqrt(2) * Phi^-1(auc)."""
  return math.sqrt(2.0) * statistics.NormalDist().inv_cdf(auc) if auc > 0.5 else 0.0
