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
compiles (raising `common.app.ConfigError` naming the field).  Those three
(and `check_greedy_config`) live in `schedulers.optimizer_configs`, which
needs ml_collections and `common` (the `train` extra); this module loads it
on first use of one of their names, so the factory itself needs only jax and
optax.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

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


# The config-block helpers (ml_collections, common.app): loaded on first use.
_CONFIG_HELPERS = ("optimizer_config", "from_config", "check_optimizer_config", "check_greedy_config")


def __getattr__(name: str) -> Any:
  if name in _CONFIG_HELPERS:
    from schedulers import optimizer_configs  # pylint: disable=g-import-not-at-top

    return getattr(optimizer_configs, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted([*globals(), *_CONFIG_HELPERS])
