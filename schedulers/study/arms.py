"""The arms of the GreedyLR study: optimizer × learning-rate method, in optax form.

An `Arm` turns a (possibly traced) base learning rate and a static step budget
into an optax transform, so the study can vmap a learning-rate grid and seeds
inside one jit.  Rows are the base optimizers SGD, SGD+momentum and AdamW;
every row gets the count-driven schedules, reduce_on_plateau, GreedyLR
per-step and per-eval, and the methods that exist for it:

* schedule-free: SGD and AdamW rows (it replaces momentum by its own
  interpolation, so the SGD+momentum row would duplicate the SGD one);
* hypergradient descent: SGD-HD (one global rate) on the SGD rows, Adam-HD
  per group (per leaf) and per parameter on the AdamW row;
* stochastic line search: SGD row only (Armijo needs the raw gradient as the
  step direction).

Hyperparameters other than the learning rate are fixed at their published
defaults (or documented choices) for every task: only the learning rate is
tuned, on the same grid for every arm of a row.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

import schedulers
from schedulers import baselines, hypergradient, line_search, state_utils

OPTIMIZERS = ("sgd", "momentum", "adamw")
GREEDY_ARMS = ("greedy_step", "greedy_eval")
SCHEDULE_ARMS = baselines.SCHEDULE_KINDS

# GreedyLR per step on the training loss: the paper's defaults (arXiv
# 2512.14527 §4.1: F=0.95, patience 10, smoothing window 50, floor 10% of the
# initial rate, threshold 1e-6 abs).
GREEDY_STEP = dict(factor=0.95, patience=10, threshold=1e-6, smooth=True, window_size=50, min_scale=0.1, max_scale=10.0)
# GreedyLR per evaluation on the validation loss (Hugging Face Trainer
# integration; its README examples use patience 2 and factor 0.9-0.95).
GREEDY_EVAL = dict(factor=0.9, patience=2, threshold=1e-6, smooth=False, min_scale=0.1, max_scale=10.0)
# Hypergradient rates beta: Baydin et al.'s runs use 1e-3 (SGD) and 1e-7
# (Adam, per group).  The per-parameter variant sums no dot product over a
# tensor, so its hypergradient is ~1e2-1e4 times smaller per entry; 1e-5 gives
# a comparable relative change of the rate per step (our choice, no published
# value for this variant).
SGD_HD_BETA = 1e-3
ADAM_HD_GROUP_BETA = 1e-7
ADAM_HD_PARAM_BETA = 1e-5
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4


@dataclasses.dataclass(frozen=True)
class Arm:
  """One learning-rate method on one base optimizer.

  Attributes:
    name: method name, e.g. 'cosine', 'greedy_step', 'sls'.
    optimizer: base optimizer row, one of `OPTIMIZERS`.
    make: `make(lr, total_steps, steps_per_epoch) -> transform`; `lr` may be
      traced.
    lr_fn: `lr_fn(opt_state, lr, total_steps) -> effective learning rate`
      (scalar, for the learning-rate traces).
    controller: for per-eval arms, the transform `schedulers.observe` steps
      with the validation loss after each evaluation; None otherwise.
  """

  name: str
  optimizer: str
  make: Callable[[Any, int, int], optax.GradientTransformationExtraArgs]
  lr_fn: Callable[[Any, Any, int], jax.Array]
  controller: optax.GradientTransformationExtraArgs | None = None

  @property
  def is_greedy(self) -> bool:
    return self.name in GREEDY_ARMS

  @property
  def label(self) -> str:
    return f"{self.optimizer}/{self.name}"


def _base(optimizer: str, lr):
  return baselines.make_base_optimizer(optimizer, lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def _schedule_arm(optimizer: str, kind: str) -> Arm:
  def make(lr, total_steps, steps_per_epoch):
    del steps_per_epoch
    return _base(optimizer, baselines.make_schedule(kind, lr, total_steps))

  def lr_fn(opt_state, lr, total_steps):
    count = state_utils.find_state(opt_state, optax.ScaleByScheduleState).count
    return baselines.make_schedule(kind, lr, total_steps)(count)

  return Arm(kind, optimizer, make, lr_fn)


def _scale_lr_fn(opt_state, lr, total_steps):
  del total_steps
  return lr * state_utils.find_state(opt_state, optax.contrib.ReduceLROnPlateauState).scale


def _greedy_lr_fn(opt_state, lr, total_steps):
  del total_steps
  return lr * schedulers.greedy_scale(opt_state)


def _plateau_arm(optimizer: str) -> Arm:
  def make(lr, total_steps, steps_per_epoch):
    del steps_per_epoch
    return baselines.reduce_on_plateau(_base(optimizer, lr), total_steps=total_steps)

  return Arm("plateau", optimizer, make, _scale_lr_fn)


def _greedy_step_arm(optimizer: str) -> Arm:
  def make(lr, total_steps, steps_per_epoch):
    del total_steps, steps_per_epoch
    return optax.chain(_base(optimizer, lr), schedulers.greedy_lr(**GREEDY_STEP))

  return Arm("greedy_step", optimizer, make, _greedy_lr_fn)


def _greedy_eval_arm(optimizer: str) -> Arm:
  controller = schedulers.greedy_lr(**GREEDY_EVAL)

  def make(lr, total_steps, steps_per_epoch):
    del total_steps, steps_per_epoch
    return optax.chain(_base(optimizer, lr), schedulers.on_eval(controller))

  return Arm("greedy_eval", optimizer, make, _greedy_lr_fn, controller=controller)


def _schedule_free_arm(optimizer: str) -> Arm:
  def make(lr, total_steps, steps_per_epoch):
    del steps_per_epoch
    return baselines.make_schedule_free(optimizer, lr, total_steps, weight_decay=WEIGHT_DECAY)

  def lr_fn(opt_state, lr, total_steps):
    warmup = max(1, total_steps * 5 // 100)
    count = state_utils.find_state(opt_state, optax.contrib.ScheduleFreeState).step_count
    return lr * jnp.minimum(count / warmup, 1.0)

  return Arm("schedule_free", optimizer, make, lr_fn)


def _hd_lr_fn(opt_state, lr, total_steps):
  del lr, total_steps
  state = state_utils.find_state(opt_state, (hypergradient.SGDHDState, hypergradient.AdamHDState))
  leaves = jax.tree.leaves(state.learning_rate)
  return jnp.mean(jnp.stack([jnp.mean(x) for x in leaves]))


def _sgd_hd_arm(optimizer: str) -> Arm:
  momentum = MOMENTUM if optimizer == "momentum" else 0.0

  def make(lr, total_steps, steps_per_epoch):
    del total_steps, steps_per_epoch
    return hypergradient.sgd_hd(lr, hypergrad_lr=SGD_HD_BETA, momentum=momentum)

  return Arm("sgd_hd", optimizer, make, _hd_lr_fn)


def _adam_hd_arm(per: str) -> Arm:
  beta = ADAM_HD_GROUP_BETA if per == "group" else ADAM_HD_PARAM_BETA

  def make(lr, total_steps, steps_per_epoch):
    del total_steps, steps_per_epoch
    return hypergradient.adam_hd(lr, hypergrad_lr=beta, weight_decay=WEIGHT_DECAY, per=per)

  name = "adam_hd_group" if per == "group" else "adam_hd_param"
  return Arm(name, "adamw", make, _hd_lr_fn)


def _sls_arm() -> Arm:
  def make(lr, total_steps, steps_per_epoch):
    del total_steps
    return line_search.sls_sgd(init_step_size=lr, n_batches_per_epoch=steps_per_epoch)

  def lr_fn(opt_state, lr, total_steps):
    del lr, total_steps
    return state_utils.find_state(opt_state, line_search.SLSState).step_size

  return Arm("sls", "sgd", make, lr_fn)


def make_arms(optimizer: str) -> list[Arm]:
  """Every arm of one base-optimizer row: baselines first, then GreedyLR."""
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
  arms = [_schedule_arm(optimizer, kind) for kind in SCHEDULE_ARMS]
  arms.append(_plateau_arm(optimizer))
  if optimizer in ("sgd", "adamw"):
    arms.append(_schedule_free_arm(optimizer))
  if optimizer in ("sgd", "momentum"):
    arms.append(_sgd_hd_arm(optimizer))
  else:
    arms += [_adam_hd_arm("group"), _adam_hd_arm("parameter")]
  if optimizer == "sgd":
    arms.append(_sls_arm())
  arms += [_greedy_step_arm(optimizer), _greedy_eval_arm(optimizer)]
  return arms


def arm_names(optimizer: str) -> list[str]:
  return [arm.name for arm in make_arms(optimizer)]
