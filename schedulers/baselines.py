"""Baseline learning-rate schedules and optimizers for the GreedyLR study.

Factories only (the study module composes the arms); every one accepts a
possibly *traced* learning rate `lr`, so a learning-rate grid and seeds can be
vmapped inside one jit, and a static (Python int) total step budget:

* `make_schedule(kind, lr, total_steps)`: count-driven schedules, written as
  small closures (optax's `warmup_cosine_decay_schedule` compares
  `peak_value == 0.0` in Python, which fails on a tracer; the others would be
  traceable but are written here once, uniformly, as `lr * shape(t)`).
* `make_base_optimizer(name, lr_or_schedule)`: 'sgd', 'momentum', 'adamw'.
* `reduce_on_plateau(base_optimizer, ...)`: `optax.contrib.reduce_on_plateau`
  chained after the base optimizer, with defaults for per-step training loss.
* `make_schedule_free(name, lr, total_steps)` and
  `schedule_free_eval_params(opt_state, params)`: schedule-free SGD / AdamW;
  `project_schedule_free(tx, project)` for constrained problems (NMF).

Every returned transform is a `GradientTransformationExtraArgs`, so a trainer
can always call `update(grads, state, params, value=..., grad=...,
value_fn=...)`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from optax import contrib as optax_contrib

from schedulers import _validation

__all__ = [
  "OPTIMIZER_NAMES",
  "SCHEDULE_KINDS",
  "make_base_optimizer",
  "make_schedule",
  "make_schedule_free",
  "project_schedule_free",
  "reduce_on_plateau",
  "schedule_free_eval_params",
]

SCHEDULE_KINDS = (
  "constant",
  "step",
  "linear",
  "cosine",
  "cosine_warmup",
  "polynomial",
  "exponential",
)
OPTIMIZER_NAMES = ("sgd", "momentum", "adamw")

# Fractions of the budget, in integer arithmetic (no float rounding surprises).
_STEP_BOUNDARIES_PERCENT = (50, 75)  # 'step': ×0.1 at each
_STEP_FACTOR = 0.1
_WARMUP_PERCENT = 5  # 'cosine_warmup' and schedule-free warmup
_EXPONENTIAL_FINAL = 0.01  # 'exponential' reaches 1% at total_steps
_POLYNOMIAL_POWER = 2.0
# reduce_on_plateau: aim for this many decisions over a run.
_PLATEAU_DECISIONS = 100


def _warmup_steps(total_steps: int) -> int:
  """5% of the budget, at least one step."""
  return max(1, (_WARMUP_PERCENT * total_steps) // 100)


def make_schedule(kind: str, learning_rate: jax.typing.ArrayLike, total_steps: int) -> optax.Schedule:
  r"""A count-driven learning-rate schedule over a budget of `total_steps`.

  With T = total_steps, t = min(count, T) and lr the base rate:

  * 'constant': lr.
  * 'step': lr × 0.1^(#boundaries reached); boundaries ⌊T/2⌋ and ⌊3T/4⌋,
    inclusive (like `optax.piecewise_constant_schedule`).
  * 'linear': lr (1 - t/T), to 0.
  * 'cosine': lr · ½(1 + cos(π t/T)), to 0.
  * 'cosine_warmup': W = max(1, ⌊0.05 T⌋); lr t/W for t < W (from 0), then
    lr · ½(1 + cos(π (t-W)/(T-W))) to 0.
  * 'polynomial': lr (1 - t/T)², to 0.
  * 'exponential': lr · 0.01^(t/T), 1% of lr at T.

  Counts past T keep the value at T. The value is `lr * shape(t)` with `shape`
  independent of lr, so it is linear in lr and traceable in it.

  Args:
    kind: one of `SCHEDULE_KINDS`.
    learning_rate: base (peak) learning rate, a scalar >= 0; may be traced.
    total_steps: the step budget, a Python int >= 1.

  Returns:
    An `optax.Schedule` (count -> learning rate).
  """
  prefix = "make_schedule"
  if kind not in SCHEDULE_KINDS:
    raise ValueError(f"{prefix}: kind must be one of {SCHEDULE_KINDS}, got {kind!r}.")
  _validation.check_learning_rate(prefix, learning_rate)
  _validation.check_int(prefix, "total_steps", total_steps, 1)
  total = float(total_steps)
  b1, b2 = ((p * total_steps) // 100 for p in _STEP_BOUNDARIES_PERCENT)
  warmup = _warmup_steps(total_steps)
  decay = float(max(total_steps - warmup, 1))

  def shape(t):
    if kind == "constant":
      return jnp.ones_like(t)
    if kind == "step":
      return jnp.where(t >= b2, _STEP_FACTOR**2, jnp.where(t >= b1, _STEP_FACTOR, 1.0)).astype(t.dtype)
    if kind == "linear":
      return 1.0 - t / total
    if kind == "cosine":
      return 0.5 * (1.0 + jnp.cos(jnp.pi * t / total))
    if kind == "cosine_warmup":
      frac = jnp.maximum(t - warmup, 0) / decay
      cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
      return jnp.where(t < warmup, t / warmup, cosine)
    if kind == "polynomial":
      return (1.0 - t / total) ** _POLYNOMIAL_POWER
    # exponential
    return jnp.power(_EXPONENTIAL_FINAL, t / total).astype(t.dtype)

  def schedule(count):
    t = jnp.minimum(jnp.asarray(count).astype(jnp.result_type(float)), total)
    return learning_rate * shape(t)

  return schedule


def make_base_optimizer(
  name: str,
  learning_rate_or_schedule: optax.ScalarOrSchedule,
  *,
  momentum: jax.typing.ArrayLike = 0.9,
  weight_decay: jax.typing.ArrayLike = 1e-4,
) -> optax.GradientTransformationExtraArgs:
  """A base optimizer of the study: 'sgd', 'momentum' or 'adamw'.

  * 'sgd': `optax.sgd(lr)`.
  * 'momentum': `optax.sgd(lr, momentum)`, PyTorch-style heavy ball
    (`b = μ b + g; w -= lr b`), as in the GreedyLR paper's SGD runs and
    `sgd_hd(momentum=...)`.
  * 'adamw': `optax.adamw(lr, weight_decay=weight_decay)` (decoupled, times
    lr; optax's default b1, b2, eps), as in `adam_hd(weight_decay=...)`.

  `weight_decay` applies to 'adamw' only: the SGD rows have none, like the
  hypergradient and line-search SGD arms they are compared with.

  Args:
    name: one of `OPTIMIZER_NAMES`.
    learning_rate_or_schedule: scalar (may be traced) or `optax.Schedule`.
    momentum: heavy-ball momentum in [0, 1) for 'momentum'.
    weight_decay: decoupled weight decay >= 0 for 'adamw'.

  Returns:
    A `GradientTransformationExtraArgs` (an `optax.chain`).
  """
  prefix = "make_base_optimizer"
  if name not in OPTIMIZER_NAMES:
    raise ValueError(f"{prefix}: name must be one of {OPTIMIZER_NAMES}, got {name!r}.")
  if not callable(learning_rate_or_schedule):
    _validation.check_learning_rate(prefix, learning_rate_or_schedule)
  _validation.check(prefix, "momentum", momentum, lambda m: (m >= 0) & (m < 1), "in [0, 1)")
  _validation.check(prefix, "weight_decay", weight_decay, lambda w: w >= 0, ">= 0")
  if name == "sgd":
    return optax.sgd(learning_rate_or_schedule)
  if name == "momentum":
    return optax.sgd(learning_rate_or_schedule, momentum=momentum)
  return optax.adamw(learning_rate_or_schedule, weight_decay=weight_decay)


def reduce_on_plateau(
  base_optimizer: optax.GradientTransformation,
  *,
  total_steps: int | None = None,
  factor: float = 0.5,
  patience: jax.typing.ArrayLike = 10,
  rtol: float = 1e-4,
  atol: float = 0.0,
  cooldown: jax.typing.ArrayLike = 0,
  accumulation_size: int | None = None,
  min_scale: jax.typing.ArrayLike = 0.01,
) -> optax.GradientTransformationExtraArgs:
  """`base_optimizer` followed by `optax.contrib.reduce_on_plateau`.

  Step it with `update(grads, state, params, value=minibatch_loss)`; the
  current multiplier is the `scale` of its `ReduceLROnPlateauState`
  (`schedulers.state_utils.find_state`).

  Defaults, chosen for the per-step *training* loss of our 2k-6k step runs:

  * `accumulation_size = max(1, total_steps // 100)`: each decision is on the
    mean of that many minibatch losses (noise down by its square root), and a
    run has about 100 decisions whatever its length.
  * `patience = 10` decisions: a reduction needs ~10% of the run without a
    relative improvement of `rtol = 1e-4` (optax's default) on those means.
  * `factor = 0.5`: gentler than optax's 0.1 and closer to GreedyLR's moves,
    so it can fire several times in a run.
  * `min_scale = 0.01`: the rate never falls below 1% of the base rate (about
    7 halvings), matching the floor of the 'exponential' schedule.

  The losses are positive (cross-entropy, MSE), so optax's relative threshold
  `(1 - rtol) * best` is correct here (it is not for negative values, optax
  issue #1767).

  Args:
    base_optimizer: any optax transformation (e.g. `make_base_optimizer`).
    total_steps: the step budget; sets the default `accumulation_size`.
    factor: multiplier in (0, 1) at each reduction (Python float).
    patience: decisions without improvement before a reduction (fires at ==).
    rtol: relative improvement threshold (Python float).
    atol: absolute improvement threshold (Python float).
    cooldown: decisions ignored after a reduction.
    accumulation_size: losses averaged per decision; default from
      `total_steps` (one of the two is required).
    min_scale: lower bound on the multiplier.

  Returns:
    A `GradientTransformationExtraArgs`; its update needs `value=`.
  """
  prefix = "reduce_on_plateau"
  if accumulation_size is None:
    if total_steps is None:
      raise ValueError(f"{prefix}: pass total_steps (to derive accumulation_size) or accumulation_size.")
    _validation.check_int(prefix, "total_steps", total_steps, 1)
    accumulation_size = max(1, total_steps // _PLATEAU_DECISIONS)
  _validation.check(prefix, "factor", factor, lambda f: (f > 0) & (f < 1), "in (0, 1)")
  _validation.check(prefix, "patience", patience, lambda p: p >= 1, ">= 1")
  _validation.check(prefix, "rtol", rtol, lambda r: (r >= 0) & (r <= 1), "in [0, 1]")
  _validation.check(prefix, "atol", atol, lambda a: a >= 0, ">= 0")
  _validation.check(prefix, "cooldown", cooldown, lambda c: c >= 0, ">= 0")
  _validation.check(prefix, "accumulation_size", accumulation_size, lambda a: a >= 1, ">= 1")
  _validation.check(prefix, "min_scale", min_scale, lambda m: (m >= 0) & (m <= 1), "in [0, 1]")
  return optax.chain(
    base_optimizer,
    optax_contrib.reduce_on_plateau(
      factor=factor,
      patience=patience,
      rtol=rtol,
      atol=atol,
      cooldown=cooldown,
      accumulation_size=accumulation_size,
      min_scale=min_scale,
    ),
  )


def make_schedule_free(
  name: str,
  learning_rate: jax.typing.ArrayLike,
  total_steps: int | None = None,
  *,
  warmup_percent: int = _WARMUP_PERCENT,
  b1: jax.typing.ArrayLike = 0.9,
  b2: jax.typing.ArrayLike = 0.999,
  eps: jax.typing.ArrayLike = 1e-8,
  weight_decay: jax.typing.ArrayLike = 1e-4,
) -> optax.GradientTransformationExtraArgs:
  """Schedule-free SGD or AdamW (Defazio et al. 2024) over optax.contrib.

  * 'sgd' / 'momentum': `optax.contrib.schedule_free_sgd(lr, warmup, b1)`;
    schedule-free replaces momentum by its y/z interpolation (b1), so both
    rows get the same transform; no weight decay, like the SGD baselines.
  * 'adamw': `optax.contrib.schedule_free_adamw(lr, warmup, b1, b2, eps,
    weight_decay)`.

  The warmup is linear from 0 over `max(1, total_steps * percent // 100)`
  steps (5% by default, the same as 'cosine_warmup'; the schedule-free
  authors recommend warmup); none when `total_steps` is None or the percent
  is 0. Evaluate at `schedule_free_eval_params(state, params)`.

  Args:
    name: 'sgd', 'momentum' or 'adamw'.
    learning_rate: peak learning rate, scalar >= 0; may be traced.
    total_steps: step budget (Python int), for the warmup length.
    warmup_percent: warmup length in percent of total_steps.
    b1: interpolation parameter in (0, 1) (> 0 required by optax).
    b2: AdamW second-moment decay.
    eps: AdamW epsilon.
    weight_decay: AdamW decoupled weight decay >= 0.

  Returns:
    A `GradientTransformationExtraArgs` with a `ScheduleFreeState`.
  """
  prefix = "make_schedule_free"
  if name not in OPTIMIZER_NAMES:
    raise ValueError(f"{prefix}: name must be one of {OPTIMIZER_NAMES}, got {name!r}.")
  _validation.check_learning_rate(prefix, learning_rate)
  _validation.check(prefix, "b1", b1, lambda b: (b > 0) & (b < 1), "in (0, 1)")
  _validation.check(prefix, "b2", b2, lambda b: (b >= 0) & (b < 1), "in [0, 1)")
  _validation.check(prefix, "eps", eps, lambda e: e >= 0, ">= 0")
  _validation.check(prefix, "weight_decay", weight_decay, lambda w: w >= 0, ">= 0")
  _validation.check_int(prefix, "warmup_percent", warmup_percent, 0)
  if warmup_percent > 100:
    raise ValueError(f"{prefix}: warmup_percent must be <= 100, got {warmup_percent!r}.")
  warmup_steps = None
  if total_steps is not None:
    _validation.check_int(prefix, "total_steps", total_steps, 1)
    if warmup_percent > 0:
      warmup_steps = max(1, (warmup_percent * total_steps) // 100)
  if name in ("sgd", "momentum"):
    return optax_contrib.schedule_free_sgd(learning_rate, warmup_steps=warmup_steps, b1=b1)
  return optax_contrib.schedule_free_adamw(
    learning_rate,
    warmup_steps=warmup_steps,
    b1=b1,
    b2=b2,
    eps=eps,
    weight_decay=weight_decay,
  )


def schedule_free_eval_params(opt_state: Any, params: optax.Params) -> optax.Params:
  """Evaluation params x of the `ScheduleFreeState` inside `opt_state`.

  Finds the schedule-free state anywhere in a (chained, named, injected)
  optimizer state and returns `optax.contrib.schedule_free_eval_params` of it:
  x = (y - (1 - b1) z) / b1. Returns `params` unchanged when there is none,
  so an evaluation loop can call it on every arm.

  Args:
    opt_state: any optax state pytree.
    params: the current (y) params.

  Returns:
    The params to evaluate.

  Raises:
    ValueError: if `opt_state` holds more than one `ScheduleFreeState`.
  """
  found = _schedule_free_states(opt_state)
  if not found:
    return params
  if len(found) > 1:
    raise ValueError(
      f"schedule_free_eval_params: opt_state holds {len(found)} ScheduleFreeStates; expected at most one."
    )
  return optax_contrib.schedule_free_eval_params(found[0], params)


def _schedule_free_states(opt_state: Any) -> list[Any]:
  is_sf = lambda x: isinstance(x, optax_contrib.ScheduleFreeState)
  return [s for s in jax.tree.leaves(opt_state, is_leaf=is_sf) if is_sf(s)]


def project_schedule_free(
  optimizer: optax.GradientTransformation,
  project: Callable[[optax.Params], optax.Params],
) -> optax.GradientTransformationExtraArgs:
  """Projected schedule-free: keeps z, x and y in a convex set.

  Schedule-free stores z and recomputes x = (y - (1 - b1) z) / b1 from the
  params y.  A trainer that projects only y (e.g. NMF non-negativity) leaves
  z unconstrained and corrupts x (by up to (1 - b1) / b1 of z's violation),
  so the evaluated params drift out of the set.  This wrapper projects z
  after every update and shifts y to match: with c the step's averaging
  weight, x' = (1 - c) x + c P(z) and y' = b1 x' + (1 - b1) P(z), i.e.
  y' = y + (b1 c + 1 - b1) (P(z) - z).  For a convex set and a feasible
  start, x (an average of projected z's) and y stay feasible.  Transforms
  without a `ScheduleFreeState` pass through unchanged, so it can wrap every
  arm of a constrained task.

  Args:
    optimizer: any transform; at most one `ScheduleFreeState` in its state.
    project: Euclidean projection onto a convex set, applied leaf-wise.

  Returns:
    A `GradientTransformationExtraArgs` with the same state as `optimizer`.
  """
  optimizer = optax.with_extra_args_support(optimizer)

  def update_fn(updates, state, params=None, **extra_args):
    new_updates, new_state = optimizer.update(updates, state, params, **extra_args)
    old, new = _schedule_free_states(state), _schedule_free_states(new_state)
    if not new:  # static: no schedule-free state anywhere
      return new_updates, new_state
    if params is None:
      raise ValueError("project_schedule_free: params are required.")
    old, new = old[0], new[0]
    weight = new.weight_sum - old.weight_sum
    c = jnp.where(new.weight_sum > 0, weight / jnp.where(new.weight_sum > 0, new.weight_sum, 1.0), 0.0)
    z_proj = project(new.z)
    gain = new.b1 * c + 1.0 - new.b1
    new_updates = jax.tree.map(lambda u, zp, z: (u + gain * (zp - z)).astype(u.dtype), new_updates, z_proj, new.z)
    is_sf = lambda x: isinstance(x, optax_contrib.ScheduleFreeState)
    new_state = jax.tree.map(lambda node: node._replace(z=z_proj) if is_sf(node) else node, new_state, is_leaf=is_sf)
    return new_updates, new_state

  return optax.GradientTransformationExtraArgs(optimizer.init, update_fn)
