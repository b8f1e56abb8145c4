"""A learned learning-rate schedule as an optax transform: `learned_schedule(policy)`.

Chained after any base optimizer, like GreedyLR::

  policy = schedulers.learned.policy.load_policy("runs/dnn/policy")  # or .shipped_policy()
  tx = optax.chain(optax.sgd(0.01, momentum=0.9), schedulers.learned_schedule(policy))
  updates, opt_state = tx.update(grads, opt_state, params, value=loss)

The transform multiplies the base optimizer's updates by a scale (1 at the
start). Every `decision_interval` steps it summarises the interval from what
it saw, asks the policy network for an action (argmax: deployment is
deterministic) and multiplies the scale by `multipliers[action]`, clipped to
`scale_bounds`. After `num_decisions` decisions the scale is held.

Observation (float32 [7]), computed by `features` from the state alone:

  [log v̄_t, log(v̄_t / best_{t-1}), budget left (N - t)/N, log scale,
   log ū_global, log ū_max, log ū_min]

v̄_t is the mean of the finite `value`s (the training loss) over the interval,
clamped to [1e-6, loss_cap] (no finite value: loss_cap); best_{t-1} the
lowest earlier interval mean (v̄_t itself at the first decision); ū the
interval means of the update norms entering the transform: global, and the
largest and smallest per-layer norm (a layer = the leaves sharing a parent in
the update tree, e.g. a Flax Dense's kernel and bias), so the same policy
runs on any architecture. Logs are clipped to [-30, 30].

The environment the policy is trained in (`dnn_env`) runs its optimizer
through `scale_by_controller` and applies the agent's actions with `decide`:
the observations a trained policy sees in training and in deployment are the
same function of the same quantities (a test checks whole runs bitwise).
The environment's reward uses the validation loss (the DNN paper's form);
the observation uses only what an optimizer is handed (`value=`).

Branch-free under jit (decisions are `jnp.where`s); the state is a NamedTuple
of arrays, so orbax checkpoints carry it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
  "OBSERVATION_SIZE",
  "ControllerSpec",
  "LearnedScheduleState",
  "decide",
  "features",
  "learned_schedule",
  "scale_by_controller",
]

OBSERVATION_SIZE = 7
_LOG_CLIP = 30.0
_MIN_LOSS = 1e-6
_MIN_NORM = 1e-12


@dataclasses.dataclass(frozen=True)
class ControllerSpec:
  """Static settings shared by the environment and the deployed transform.

  Attributes:
    multipliers: the scale factor of each discrete action.
    decision_interval: optimizer steps between two decisions.
    num_decisions: decisions of a run (the budget; the scale is held after).
    scale_bounds: `(low, high)` the scale is clipped to after every decision.
    loss_cap: interval-mean losses are clamped to `[1e-6, loss_cap]`.
  """

  multipliers: tuple[float, ...]
  decision_interval: int
  num_decisions: int
  scale_bounds: tuple[float, float]
  loss_cap: float = 10.0

  def __post_init__(self):
    multipliers = tuple(float(m) for m in self.multipliers)
    if len(multipliers) < 2 or not all(math.isfinite(m) and m > 0 for m in multipliers):
      raise ValueError(f"ControllerSpec: multipliers must be >= 2 positive finite numbers, got {self.multipliers!r}.")
    for name in ("decision_interval", "num_decisions"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"ControllerSpec: {name} must be an int >= 1, got {value!r}.")
    low, high = (float(b) for b in self.scale_bounds)
    if not 0 < low <= 1 <= high:
      raise ValueError(f"ControllerSpec: scale_bounds must satisfy 0 < low <= 1 <= high, got {self.scale_bounds!r}.")
    if not self.loss_cap > _MIN_LOSS:
      raise ValueError(f"ControllerSpec: loss_cap must be > {_MIN_LOSS}, got {self.loss_cap!r}.")
    object.__setattr__(self, "multipliers", multipliers)
    object.__setattr__(self, "scale_bounds", (low, high))
    object.__setattr__(self, "loss_cap", float(self.loss_cap))


class LearnedScheduleState(NamedTuple):
  """State of `scale_by_controller` / `learned_schedule` (arrays only).

  Attributes:
    scale: float32 multiplier of the base updates now in force.
    count: int32 steps taken.
    decisions: int32 decisions taken.
    value_sum: float32 sum of the finite values seen in the current interval.
    value_count: int32 how many there were.
    norm_sum: float32 [3] sums of the (global, max-layer, min-layer) update
      norms over the current interval.
    best: float32 lowest interval-mean loss of the earlier intervals (+inf at first).
  """

  scale: jax.Array
  count: jax.Array
  decisions: jax.Array
  value_sum: jax.Array
  value_count: jax.Array
  norm_sum: jax.Array
  best: jax.Array


def _layer_groups(tree: Any) -> list[list[int]]:
  """Leaf indices grouped by parent path (a layer); a bare array is one group."""
  paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
  groups: dict[tuple, list[int]] = {}
  for index, path in enumerate(paths):
    groups.setdefault(tuple(path[:-1]) if len(path) > 1 else tuple(path), []).append(index)
  return list(groups.values())


def update_norms(updates: Any) -> jax.Array:
  """float32 [3]: global norm and the largest and smallest per-layer norm."""
  leaves = [jnp.asarray(x, jnp.float32) for x in jax.tree.leaves(updates)]
  if not leaves:
    return jnp.zeros((3,), jnp.float32)
  squares = [jnp.sum(jnp.square(x)) for x in leaves]
  layer_sq = jnp.stack([sum(squares[i] for i in group) for group in _layer_groups(updates)])
  layer = jnp.sqrt(layer_sq)
  return jnp.stack([jnp.sqrt(jnp.sum(layer_sq)), jnp.max(layer), jnp.min(layer)])


def init_state() -> LearnedScheduleState:
  zero_i = jnp.zeros((), jnp.int32)
  return LearnedScheduleState(
    scale=jnp.ones((), jnp.float32),
    count=zero_i,
    decisions=zero_i,
    value_sum=jnp.zeros((), jnp.float32),
    value_count=zero_i,
    norm_sum=jnp.zeros((3,), jnp.float32),
    best=jnp.full((), jnp.inf, jnp.float32),
  )


def accumulate(state: LearnedScheduleState, updates: Any, value: jax.Array) -> LearnedScheduleState:
  """Counts one step: adds its (finite) value and its update norms to the interval."""
  value = jnp.asarray(value, jnp.float32)
  finite = jnp.isfinite(value)
  norms = update_norms(updates)
  norms = jnp.where(jnp.isfinite(norms), norms, jnp.finfo(jnp.float32).max / 8)
  return state._replace(
    count=state.count + 1,
    value_sum=state.value_sum + jnp.where(finite, value, 0.0),
    value_count=state.value_count + finite.astype(jnp.int32),
    norm_sum=state.norm_sum + norms,
  )


def _interval_mean(spec: ControllerSpec, state: LearnedScheduleState) -> jax.Array:
  mean = state.value_sum / jnp.maximum(state.value_count, 1).astype(jnp.float32)
  mean = jnp.where(state.value_count > 0, mean, spec.loss_cap)
  return jnp.clip(jnp.nan_to_num(mean, nan=spec.loss_cap), _MIN_LOSS, spec.loss_cap)


def _log(x: jax.Array, floor: float) -> jax.Array:
  return jnp.clip(jnp.log(jnp.maximum(x, floor)), -_LOG_CLIP, _LOG_CLIP)


def features(spec: ControllerSpec, state: LearnedScheduleState) -> jax.Array:
  """The observation at the end of an interval (see the module docstring)."""
  mean = _interval_mean(spec, state)
  best_prev = jnp.where(jnp.isfinite(state.best), state.best, mean)
  norms = state.norm_sum / spec.decision_interval
  budget_left = jnp.clip((spec.num_decisions - state.decisions) / spec.num_decisions, 0.0, 1.0)
  obs = jnp.concatenate(
    [
      jnp.stack(
        [
          _log(mean, _MIN_LOSS),
          jnp.clip(jnp.log(mean) - jnp.log(best_prev), -_LOG_CLIP, _LOG_CLIP),
          budget_left.astype(jnp.float32),
          _log(state.scale, _MIN_NORM),
        ]
      ),
      _log(norms, _MIN_NORM),
    ]
  )
  return obs.astype(jnp.float32)


def decide(spec: ControllerSpec, state: LearnedScheduleState, action: jax.Array) -> LearnedScheduleState:
  """Applies action `action`: new scale, best updated, a fresh interval."""
  multipliers = jnp.asarray(spec.multipliers, jnp.float32)
  low, high = spec.scale_bounds
  mean = _interval_mean(spec, state)
  return state._replace(
    scale=jnp.clip(state.scale * multipliers[action], low, high).astype(jnp.float32),
    decisions=state.decisions + 1,
    value_sum=jnp.zeros((), jnp.float32),
    value_count=jnp.zeros((), jnp.int32),
    norm_sum=jnp.zeros((3,), jnp.float32),
    best=jnp.minimum(jnp.where(jnp.isfinite(state.best), state.best, mean), mean),
  )


def _scale(updates: Any, scale: jax.Array) -> Any:
  return jax.tree.map(lambda u: scale.astype(u.dtype) * u, updates)


def scale_by_controller(spec: ControllerSpec) -> optax.GradientTransformationExtraArgs:
  """Scales updates by the state's scale and records the interval; never decides.

  The environment's half of `learned_schedule`: whoever drives it (an RL
  agent) calls `features` and `decide` at interval ends.
  """
  del spec  # the state layout does not depend on it; kept for symmetry with learned_schedule

  def init_fn(params):
    del params
    return init_state()

  def update_fn(updates, state, params=None, *, value, **extra_args):
    del params, extra_args
    return _scale(updates, state.scale), accumulate(state, updates, value)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def make_decision_fn(
  spec: ControllerSpec, policy_apply: Callable[[jax.Array], jax.Array]
) -> Callable[[LearnedScheduleState], LearnedScheduleState]:
  """`state -> state`: at an interval end within the budget, decides by argmax of `policy_apply(obs)`."""

  def maybe_decide(state: LearnedScheduleState) -> LearnedScheduleState:
    at_end = (state.count % spec.decision_interval == 0) & (state.decisions < spec.num_decisions)
    action = jnp.argmax(policy_apply(features(spec, state)), axis=-1).astype(jnp.int32)
    decided = decide(spec, state, action)
    return jax.tree.map(lambda d, s: jnp.where(at_end, d, s), decided, state)

  return maybe_decide


def learned_schedule(policy, *, num_decisions: int | None = None) -> optax.GradientTransformationExtraArgs:
  """A trained schedule policy as an optax transform (chain it after a base optimizer).

  Args:
    policy: a `schedulers.learned.policy.Policy` (e.g. from `load_policy`).
    num_decisions: override the policy's budget (decisions of the run this
      transform will see); None keeps the one it was trained with.

  Returns:
    A `GradientTransformationExtraArgs`; `update(updates, state, params,
    value=loss)` needs the step's loss. The state is `LearnedScheduleState`;
    `state.scale` times the base rate is the effective learning rate.
  """
  spec = policy.spec.controller
  if num_decisions is not None:
    spec = dataclasses.replace(spec, num_decisions=num_decisions)
  maybe_decide = make_decision_fn(spec, policy.logits)

  def init_fn(params):
    del params
    return init_state()

  def update_fn(updates, state, params=None, *, value, **extra_args):
    del params, extra_args
    scaled = _scale(updates, state.scale)
    return scaled, maybe_decide(accumulate(state, updates, value))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
