"""`make_optimizer`'s config block for the binaries: `optimizer_config`, `from_config`, their validation.

Binaries keep the factory's fields in their configs with
`optimizer_config(objective=...)` and build from them with
`from_config(config.optimizer)`; `check_optimizer_config(config, "optimizer")`
validates them before anything compiles (raising `common.app.ConfigError`
naming the field).  This part needs the `train` extra (ml_collections and
`common`); `schedulers.optimizers` re-exports these names and imports this
module on first use, so the optimizer factory itself needs neither.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from common import app
from schedulers.greedy_lr import greedy_lr
from schedulers.optimizers import BASE_OPTIMIZERS, GREEDY_MODES, OBJECTIVES, RULE, Optimizer, make_optimizer

__all__ = ["check_greedy_config", "check_optimizer_config", "from_config", "optimizer_config"]


def optimizer_config(
  *,
  objective: str,
  name: str = "adamw",
  learning_rate: float = 1e-3,
  greedy_mode: str | None = None,
  **overrides: Any,
) -> ml_collections.ConfigDict:
  """The standard `config.optimizer` block of a binary: GreedyLR as `RULE[objective]` says."""
  if objective not in RULE:
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")
  rule = RULE[objective]
  config = ml_collections.ConfigDict()
  config.name = name  # adamw | adam | sgd | momentum
  config.learning_rate = learning_rate  # base rate; GreedyLR scales it
  config.objective = objective  # supervised | td | adversarial | policy_gradient | dual: picks GreedyLR's defaults
  config.weight_decay = 1e-4 if name == "adamw" else 0.0  # adamw only
  config.momentum = 0.9  # momentum only
  config.max_grad_norm = ml_collections.config_dict.placeholder(float)  # global-norm clipping; None: off
  config.greedy_mode = rule.greedy_mode if greedy_mode is None else greedy_mode  # per_step | per_eval | none
  config.greedy = ml_collections.ConfigDict(dict(rule.greedy))  # schedulers.greedy_lr arguments
  for key, value in overrides.items():
    config[key] = value
  return config


def from_config(config: ml_collections.ConfigDict) -> Optimizer:
  """`make_optimizer` from an `optimizer_config()` block."""
  return make_optimizer(
    name=config.name,
    learning_rate=config.learning_rate,
    objective=config.objective,
    weight_decay=config.weight_decay,
    momentum=config.momentum,
    max_grad_norm=config.max_grad_norm,
    greedy_mode=config.greedy_mode,
    greedy=dict(config.greedy),
  )


def check_optimizer_config(config: ml_collections.ConfigDict, field: str) -> None:
  """Raises `common.app.ConfigError` naming the first bad field of `config.<field>`."""
  app.check(config, f"{field}.name", lambda v: v in BASE_OPTIMIZERS, f"must be one of {BASE_OPTIMIZERS}")
  app.check(config, f"{field}.learning_rate", lambda v: v > 0, "must be > 0")
  app.check(config, f"{field}.objective", lambda v: v in RULE, f"must be one of {OBJECTIVES}")
  app.check(config, f"{field}.weight_decay", lambda v: v >= 0, "must be >= 0")
  app.check(config, f"{field}.momentum", lambda v: 0 <= v < 1, "must be in [0, 1)")
  app.check(config, f"{field}.max_grad_norm", lambda v: v is None or v > 0, "must be > 0, or None for no clipping")
  app.check(config, f"{field}.greedy_mode", lambda v: v in GREEDY_MODES, f"must be one of {GREEDY_MODES}")
  check_greedy_config(config, f"{field}.greedy")


def check_greedy_config(config: ml_collections.ConfigDict, field: str) -> None:
  """Raises `common.app.ConfigError` for the first bad `greedy_lr` argument in `config.<field>`."""
  block = config
  for part in field.split("."):
    block = block[part]
  for key in block:
    try:
      greedy_lr(**{key: block[key]})
    except (ValueError, TypeError) as e:
      raise app.ConfigError(f"{field}.{key}", str(e).removeprefix("greedy_lr: ")) from None
