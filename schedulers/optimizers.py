"""The one optimizer factory of the repository: a base optimizer + GreedyLR.

Every trainer builds its optimizer here and names the **objective class** of
the network it trains; the class picks GreedyLR's mode and settings from
`RULE` (measured: `schedulers/README.md`, "GreedyLR in reinforcement
learning"), so no trainer silently gets GreedyLR per step on a TD or
adversarial loss::

  opt = schedulers.make_optimizer(name="adamw", learning_rate=1e-3, objective="supervised")
  state = opt.tx.init(params)
  updates, state = opt.tx.update(grads, state, params, value=loss)  # per step on the loss
  opt.learning_rate(state)                    # base rate x the current GreedyLR scale

  # an RL objective: one decision per evaluation on a progress signal
  opt = schedulers.make_optimizer(name="adam", learning_rate=3e-4, objective="td")
  state = opt.observe(state, -mean_episode_return)

Binaries keep the same fields in their configs with `optimizer_config()` and
build from them with `from_config(config.optimizer)`;
`check_optimizer_config(config, "optimizer")` validates them before anything
compiles (raising `common.app.ConfigError` naming the field).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from common import app
from schedulers import per_eval, state_utils
from schedulers.greedy_lr import greedy_lr
from schedulers.learned import transform

BASE_OPTIMIZERS = ("adamw", "adam", "sgd", "momentum")
GREEDY_MODES = ("per_step", "per_eval", "none")

# GreedyLR's settings for a loss on fixed data: the study's (HF-default) ones, smoothed.
LOSS_GREEDY = {
  "factor": 0.95,
  "patience": 10,
  "threshold": 1e-6,
  "threshold_mode": "abs",
  "min_scale": 0.1,
  "max_scale": 10.0,
  "smooth": True,
  "window_size": 50,
}
# ... for a progress signal of a non-stationary objective (-return, -success): never above the
# rate the original method tuned, a floor of 0.3 of it, slow to act, a 1% relative threshold.
PROGRESS_GREEDY = {
  "factor": 0.95,
  "patience": 20,
  "threshold": 0.01,
  "threshold_mode": "rel",
  "min_scale": 0.3,
  "max_scale": 1.0,
  "smooth": True,
  "window_size": 20,
}


class Rule(NamedTuple):
  """GreedyLR's default for one objective class: its mode, settings, and the signal it watches."""

  greedy_mode: str
  greedy: Mapping[str, Any]
  signal: str


# The repository's rule (objective class -> GreedyLR default), with the measurements behind
# each row in schedulers/README.md, "GreedyLR in reinforcement learning".
RULE = {
  "supervised": Rule("per_step", LOSS_GREEDY, "the training loss, every step (value=)"),
  "td": Rule("per_eval", PROGRESS_GREEDY, "-mean return of the training episodes, once per iteration"),
  "adversarial": Rule("per_eval", PROGRESS_GREEDY, "-success of the training rollouts, once per iteration"),
  "policy_gradient": Rule("per_eval", PROGRESS_GREEDY, "-mean return of the training episodes, once per iteration"),
  "dual": Rule("none", LOSS_GREEDY, "none: a Lagrange multiplier's loss is linear, it has no plateau"),
}
OBJECTIVES = tuple(RULE)


class Optimizer(NamedTuple):
  """A built optimizer: the transform and what logging / per-eval need."""

  tx: optax.GradientTransformationExtraArgs
  base_learning_rate: float
  greedy_mode: str
  controller: optax.GradientTransformationExtraArgs | None  # the GreedyLR, if any
  learned: bool = False  # a learned_schedule(policy) scales the base rate instead

  def learning_rate(self, opt_state: Any) -> jax.Array:
    """The effective learning rate: base rate x GreedyLR's (or the learned schedule's) current scale."""
    if self.learned:
      return self.base_learning_rate * state_utils.find_state(opt_state, transform.LearnedScheduleState).scale
    if self.controller is None:
      return jnp.asarray(self.base_learning_rate, jnp.float32)
    return self.base_learning_rate * per_eval.greedy_scale(opt_state)

  def observe(self, opt_state: Any, value: jax.Array) -> Any:
    """Steps a per-eval GreedyLR on `value`; other modes return the state unchanged."""
    if self.greedy_mode != "per_eval":
      return opt_state
    return per_eval.observe(opt_state, self.controller, value=value)


def make_optimizer(
  *,
  name: str,
  learning_rate: float,
  objective: str,
  weight_decay: float = 0.0,
  momentum: float = 0.9,
  max_grad_norm: float | None = None,
  greedy_mode: str | None = None,
  greedy: Mapping[str, Any] | None = None,
  schedule_policy: Any | None = None,
) -> Optimizer:
  """Builds `[clip] -> base optimizer -> [GreedyLR | learned schedule]`.

  Args:
    name: 'adamw', 'adam', 'sgd' or 'momentum' (SGD with heavy-ball momentum).
    learning_rate: base rate; GreedyLR scales it.
    objective: the objective class of the trained network, one of `OBJECTIVES`
      ('supervised', 'td', 'adversarial', 'policy_gradient', 'dual'); it
      picks the defaults of `greedy_mode` and `greedy` from `RULE`.
    weight_decay: decoupled weight decay (adamw only).
    momentum: momentum coefficient ('momentum' only).
    max_grad_norm: global-norm gradient clipping before the optimizer; None: none.
    greedy_mode: 'per_step' (GreedyLR on the training loss, passed as
      `value=`), 'per_eval' (stepped by `Optimizer.observe` on a validation
      loss or a progress signal) or 'none'; None: the rule's mode for `objective`.
    greedy: `schedulers.greedy_lr` arguments, over the rule's settings for `objective`.
    schedule_policy: a trained `schedulers.learned.policy.Policy`; its
      `learned_schedule` (stepped on `value=`, the training loss) replaces
      GreedyLR, so `greedy_mode` must then be 'none'.

  Raises:
    ValueError: for an unknown name or mode, or a bad hyperparameter.
  """
  if name not in BASE_OPTIMIZERS:
    raise ValueError(f"optimizer name must be one of {BASE_OPTIMIZERS}, got {name!r}.")
  if objective not in RULE:
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}.")
  rule = RULE[objective]
  greedy_mode = rule.greedy_mode if greedy_mode is None else greedy_mode
  if greedy_mode not in GREEDY_MODES:
    raise ValueError(f"greedy_mode must be one of {GREEDY_MODES}, got {greedy_mode!r}.")
  if not learning_rate > 0:
    raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}.")
  if not weight_decay >= 0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}.")
  if not 0 <= momentum < 1:
    raise ValueError(f"momentum must be in [0, 1), got {momentum!r}.")
  if max_grad_norm is not None and not max_grad_norm > 0:
    raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm!r}.")
  if name == "adamw":
    base = optax.adamw(learning_rate, weight_decay=weight_decay)
  elif name == "adam":
    base = optax.adam(learning_rate)
  elif name == "momentum":
    base = optax.sgd(learning_rate, momentum=momentum)
  else:
    base = optax.sgd(learning_rate)
  if schedule_policy is not None and greedy_mode != "none":
    raise ValueError(f"schedule_policy replaces GreedyLR: pass greedy_mode='none', got {greedy_mode!r}.")
  parts = [] if max_grad_norm is None else [optax.clip_by_global_norm(max_grad_norm)]
  parts.append(base)
  controller = None
  if greedy_mode != "none":
    controller = greedy_lr(**{**rule.greedy, **dict(greedy or {})})
    parts.append(controller if greedy_mode == "per_step" else per_eval.on_eval(controller))
  if schedule_policy is not None:
    parts.append(transform.learned_schedule(schedule_policy))
  return Optimizer(
    tx=optax.with_extra_args_support(optax.chain(*parts)),
    base_learning_rate=float(learning_rate),
    greedy_mode=greedy_mode,
    controller=controller,
    learned=schedule_policy is not None,
  )


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
