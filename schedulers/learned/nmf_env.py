"""A learning-rate-control environment on stochastic NMF, for `common.ppo`.

One episode is one projected-SGD training run (`nmf`) on a freshly sampled
problem (or a fixed one, e.g. `nmf.digits_problem()`), from a fresh
`nmf.init_factors`. The initial rate is `init_lr_fraction · η_max(0)` (the
"LR initialisation" half of the stability story); each decision

1. multiplies the current rate by `multipliers[action]` and clamps it to
   `lr_cap · clip_c · η_max` at the current point (`lr_cap = inf` keeps the raw
   product, so the action 'keep' is then exactly a constant clipped schedule);
2. runs `steps_per_decision` SGD steps in one `lax.scan`, each at
   `min(lr, clip_c · η_max(step))` (the "clipping" half: no step ever exceeds
   `clip_c` times the bound at its own point);
3. returns the observation `features(...)`, the reward −Δ log f (full loss
   f between decision points; the episode's return is log(f_0 / f_T), so
   maximising it minimises the final log loss) and done after
   `num_decisions` decisions.

Observation (float32 [6], every entry a guarded, clipped log or a fraction):
[log f/f_0, log f/f_prev, log ‖∇_F f‖/‖∇_F f_0‖, log η/η_max, log η_max/η_max(0),
t/T]. `features` computes it from scalars only (loss history, projected
gradient norm, rate, bound, step count), and the bound is a function of the
params, the loss value, the gradient and a gradient-noise estimate
(`nmf.bound_stats`), so an optax transform that sees those computes the
identical observation. The environment feeds the exact full-batch values
(`nmf.exact_bound_stats`); a transform that sees only minibatches would feed
estimates (e.g. `nmf.minibatch_noise`, smoothed losses) and then sees a
noisier version of the same observation.

Note (measured; see `nmf` for the bound's slack): with `clip_c = 0.9` every
policy trains inside a conservative region (the expected loss first rises only
at 2–4 η_max, and c η_max with c ≈ 2 trains best). On the default settings
(16 episodes) the best fixed policy tried is "always ×2", i.e. riding the clip
(return 3.09 ± 0.08, final loss 0.044; 'keep' 2.48, decaying at the end
2.7–2.9, "always ×0.8" 1.13); with `clip_c = 2` the same policy returns 4.29
(loss 0.017). So at `clip_c = 0.9` the clipped bound itself is hard to beat,
and `clip_c` (a parameter) decides how much room an agent has.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from common import ppo
from schedulers.learned import nmf

__all__ = [
  "NMFEnvConfig",
  "NMFEnvState",
  "OBSERVATION_SIZE",
  "StepTrace",
  "env_reset",
  "env_step",
  "env_step_with_trace",
  "features",
  "make_nmf_config",
  "make_nmf_env",
]

OBSERVATION_SIZE = 6
_LOG_CLIP = 30.0  # every log-feature lies in [-30, 30]
_TINY = 1e-30


@dataclasses.dataclass(frozen=True)
class NMFEnvConfig:
  """Static settings of the environment (Python values, closed over)."""

  m: int
  n: int
  rank: int
  noise: float
  batch_size: int
  steps_per_decision: int
  num_decisions: int
  multipliers: tuple[float, ...]
  clip_c: float
  init_lr_fraction: float
  lr_cap: float
  power_init_iters: int
  power_iters: int
  problem: nmf.NMFProblem | None  # a fixed problem, else one `make_problem` per episode


class NMFEnvState(NamedTuple):
  """Unbatched environment state: arrays only (PPO vmaps it)."""

  problem: nmf.NMFProblem
  factors: nmf.Factors
  power: nmf.PowerState  # power-iteration vectors at the current point (not yet advanced)
  key: jax.Array  # minibatch stream of this episode
  lr: jax.Array  # current rate (before the next action's multiplier)
  loss: jax.Array  # full loss at the current point
  grad_norm: jax.Array  # ‖∇_F f‖ at the current point
  eta_max: jax.Array  # the bound at the current point
  loss_0: jax.Array
  grad_norm_0: jax.Array
  eta_max_0: jax.Array
  t: jax.Array  # int32, decisions taken


class StepTrace(NamedTuple):
  """Per-SGD-step record of one decision (for tests and diagnostics)."""

  loss: jax.Array  # [steps_per_decision], before each step
  lr: jax.Array  # [steps_per_decision], the rate each step used
  eta_max: jax.Array  # [steps_per_decision], the bound at each step


def _safe_log_ratio(x: jax.Array, y: jax.Array) -> jax.Array:
  """log(x / y) for nonnegative x, y, finite and in [-30, 30] (0/0, inf, NaN guarded)."""
  x = jnp.nan_to_num(jnp.asarray(x, jnp.float32), nan=0.0, posinf=jnp.finfo(jnp.float32).max)
  y = jnp.nan_to_num(jnp.asarray(y, jnp.float32), nan=0.0, posinf=jnp.finfo(jnp.float32).max)
  value = jnp.log(jnp.maximum(x, _TINY)) - jnp.log(jnp.maximum(y, _TINY))
  return jnp.clip(value, -_LOG_CLIP, _LOG_CLIP)


def features(
  *,
  loss: jax.Array,
  loss_0: jax.Array,
  loss_prev: jax.Array,
  grad_norm: jax.Array,
  grad_norm_0: jax.Array,
  lr: jax.Array,
  eta_max: jax.Array,
  eta_max_0: jax.Array,
  step: jax.Array,
  num_steps: int,
) -> jax.Array:
  """The observation, from scalars an optimizer can track.

  Args:
    loss: loss at the current point; `loss_0` at the start; `loss_prev` at the
      previous decision (equal to `loss` at the start).
    grad_norm: projected-gradient norm ‖∇_F f‖ now; `grad_norm_0` at the start.
    lr: the current learning rate.
    eta_max: the stability bound now; `eta_max_0` at the start.
    step: decisions (or optimizer steps) taken.
    num_steps: the budget in the same unit (the fraction is what is observed).

  Returns:
    float32 [6]: [log f/f_0, log f/f_prev, log g/g_0, log η/η_max,
    log η_max/η_max_0, step/num_steps], each log guarded and clipped to
    [-30, 30].
  """
  fraction = jnp.clip(jnp.asarray(step, jnp.float32) / num_steps, 0.0, 1.0)
  return jnp.stack(
    [
      _safe_log_ratio(loss, loss_0),
      _safe_log_ratio(loss, loss_prev),
      _safe_log_ratio(grad_norm, grad_norm_0),
      _safe_log_ratio(lr, eta_max),
      _safe_log_ratio(eta_max, eta_max_0),
      fraction,
    ]
  ).astype(jnp.float32)


def _point_stats(config: NMFEnvConfig, problem, factors, power) -> nmf.BoundStats:
  """The exact bound at a point, without advancing the stored power vectors."""
  return nmf.exact_bound_stats(problem, factors, power, batch_size=config.batch_size, num_iters=config.power_iters)


def env_reset(config: NMFEnvConfig, key: jax.Array) -> tuple[NMFEnvState, jax.Array]:
  """Samples a problem (unless fixed) and an init; the rate starts at `init_lr_fraction · η_max(0)`.

  The key is split into (problem, init, minibatch stream) keys, in that order.
  """
  k_problem, k_init, k_run = jax.random.split(key, 3)
  if config.problem is None:
    problem = nmf.make_problem(k_problem, config.m, config.n, config.rank, config.noise)
  else:
    problem = config.problem
  factors = nmf.init_factors(k_init, problem, config.rank)
  power = nmf.init_power(factors, config.power_init_iters)
  stats = _point_stats(config, problem, factors, power)
  grad_norm = jnp.sqrt(stats.grad_sq)
  state = NMFEnvState(
    problem=problem,
    factors=factors,
    power=power,
    key=k_run,
    lr=config.init_lr_fraction * stats.eta_max,
    loss=stats.loss,
    grad_norm=grad_norm,
    eta_max=stats.eta_max,
    loss_0=stats.loss,
    grad_norm_0=grad_norm,
    eta_max_0=stats.eta_max,
    t=jnp.zeros((), jnp.int32),
  )
  return state, _observe(config, state, loss_prev=stats.loss)


def _observe(config: NMFEnvConfig, state: NMFEnvState, *, loss_prev: jax.Array) -> jax.Array:
  return features(
    loss=state.loss,
    loss_0=state.loss_0,
    loss_prev=loss_prev,
    grad_norm=state.grad_norm,
    grad_norm_0=state.grad_norm_0,
    lr=state.lr,
    eta_max=state.eta_max,
    eta_max_0=state.eta_max_0,
    step=state.t,
    num_steps=config.num_decisions,
  )


def env_step_with_trace(
  config: NMFEnvConfig, state: NMFEnvState, action: jax.Array
) -> tuple[NMFEnvState, jax.Array, jax.Array, jax.Array, StepTrace]:
  """One decision; also returns the per-SGD-step trace (`env_step` drops it)."""
  multipliers = jnp.asarray(config.multipliers, jnp.float32)
  lr = state.lr * multipliers[action]
  if math.isfinite(config.lr_cap):  # inf: keep the raw product (and no inf * 0 at η_max = 0)
    lr = jnp.minimum(lr, config.lr_cap * config.clip_c * state.eta_max)
  lr_fn = lambda step, eta_max: nmf.clip_lr(lr, eta_max, config.clip_c)
  (factors, power, key), (losses, lrs, bounds) = nmf.run_steps(
    state.problem,
    state.factors,
    state.power,
    state.key,
    lr_fn,
    start_step=state.t * config.steps_per_decision,
    num_steps=config.steps_per_decision,
    batch_size=config.batch_size,
    power_iters=config.power_iters,
  )
  stats = _point_stats(config, state.problem, factors, power)
  t = state.t + 1
  new_state = state._replace(
    factors=factors,
    power=power,
    key=key,
    lr=lr,
    loss=stats.loss,
    grad_norm=jnp.sqrt(stats.grad_sq),
    eta_max=stats.eta_max,
    t=t,
  )
  obs = _observe(config, new_state, loss_prev=state.loss)
  reward = _safe_log_ratio(state.loss, stats.loss)
  done = t >= config.num_decisions
  return new_state, obs, reward, done, StepTrace(loss=losses, lr=lrs, eta_max=bounds)


def env_step(
  config: NMFEnvConfig, state: NMFEnvState, action: jax.Array
) -> tuple[NMFEnvState, jax.Array, jax.Array, jax.Array]:
  """One decision: `(state, obs, reward, done)` (the `common.ppo.Env` step)."""
  state, obs, reward, done, _ = env_step_with_trace(config, state, action)
  return state, obs, reward, done


def make_nmf_config(
  *,
  m: int = 64,
  n: int = 64,
  rank: int = 8,
  noise: float = 0.1,
  batch_size: int = 8,
  steps_per_decision: int = 10,
  num_decisions: int = 50,
  multipliers: tuple[float, ...] = (0.5, 0.8, 1.0, 1.25, 2.0),
  clip_c: float = 0.9,
  init_lr_fraction: float = 0.5,
  lr_cap: float = 1.0,
  power_init_iters: int = 20,
  power_iters: int = 2,
  problem: nmf.NMFProblem | None = None,
) -> NMFEnvConfig:
  """Validated static settings of `make_nmf_env` (same arguments).

  Args:
    m: rows of the sampled problems (ignored with `problem`).
    n: columns of the sampled problems (ignored with `problem`).
    rank: factorisation rank (also the planted rank of sampled problems).
    noise: relative noise of sampled problems (`nmf.make_problem`).
    batch_size: columns per minibatch.
    steps_per_decision: SGD steps between two decisions.
    num_decisions: decisions per episode (done after the last).
    multipliers: the action set: rate multipliers (positive).
    clip_c: every SGD step uses at most `clip_c · η_max` at its point.
    init_lr_fraction: the initial rate, as a fraction of η_max(0).
    lr_cap: after each action the rate is clamped to `lr_cap · clip_c · η_max`
      at the decision point (1: the state's rate is always one a step can use;
      inf: the raw product, so 'keep' is exactly a constant clipped schedule).
    power_init_iters: cold power iterations at reset.
    power_iters: warm power iterations per SGD step.
    problem: a fixed problem for every episode (e.g. `nmf.digits_problem()`);
      episodes then differ only in the init and the minibatches.

  Returns:
    The `NMFEnvConfig` (for `env_reset`, `env_step`, `env_step_with_trace`).

  Raises:
    ValueError: for invalid settings.
  """
  if problem is not None:
    m, n = problem.v.shape
  for name, value in (
    ("m", m),
    ("n", n),
    ("rank", rank),
    ("steps_per_decision", steps_per_decision),
    ("num_decisions", num_decisions),
    ("power_init_iters", power_init_iters),
    ("power_iters", power_iters),
  ):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"make_nmf_env: {name} must be an int >= 1, got {value!r}.")
  if not isinstance(batch_size, int) or not 1 <= batch_size <= n:
    raise ValueError(f"make_nmf_env: batch_size must be an int in [1, n={n}], got {batch_size!r}.")
  multipliers = tuple(float(x) for x in multipliers)
  if not multipliers or not all(math.isfinite(x) and x > 0 for x in multipliers):
    raise ValueError(f"make_nmf_env: multipliers must be positive and finite, got {multipliers!r}.")
  for name, value in (("clip_c", clip_c), ("init_lr_fraction", init_lr_fraction), ("lr_cap", lr_cap)):
    if not value > 0:
      raise ValueError(f"make_nmf_env: {name} must be > 0, got {value!r}.")
  if not noise >= 0:
    raise ValueError(f"make_nmf_env: noise must be >= 0, got {noise!r}.")
  return NMFEnvConfig(
    m=m,
    n=n,
    rank=rank,
    noise=float(noise),
    batch_size=batch_size,
    steps_per_decision=steps_per_decision,
    num_decisions=num_decisions,
    multipliers=multipliers,
    clip_c=float(clip_c),
    init_lr_fraction=float(init_lr_fraction),
    lr_cap=float(lr_cap),
    power_init_iters=power_init_iters,
    power_iters=power_iters,
    problem=problem,
  )


def make_nmf_env(**settings) -> ppo.Env:
  """The NMF learning-rate environment as a `common.ppo.Env`.

  The arguments are those of `make_nmf_config` (which documents them); the
  defaults are a fresh 64×64 rank-8 problem (noise 0.1) per episode,
  minibatches of 8 columns, 50 decisions of 10 SGD steps, rate multipliers
  (0.5, 0.8, 1.0, 1.25, 2.0) and every step clipped to 0.9 η_max.

  Returns:
    `Env(reset, step, observation_size=6, num_actions=len(multipliers))`.

  Raises:
    ValueError: for invalid settings.
  """
  config = make_nmf_config(**settings)
  return ppo.Env(
    reset=lambda key: env_reset(config, key),
    step=lambda state, action: env_step(config, state, action),
    observation_size=OBSERVATION_SIZE,
    num_actions=len(config.multipliers),
  )
