"""Propensity-score adaptation maths of Meta-Q-Learning: classifier, β weights, ESS.

MQL (Fakoor, Chaudhari, Soatto and Smola, "Meta-Q-Learning", ICLR 2020,
arXiv:1910.00125) adapts to a new task by reusing the meta-training replay
buffer, reweighting each transition by how much it looks like the new task.
A logistic classifier separates context features of the new task from those of
the meta-training tasks; its odds are the importance weights β, and the
normalised effective sample size of β sets the strength of the proximal term
that keeps the adapted parameters near the meta-trained ones.

This module is the maths only, on one task's (unbatched) data, chex-checked,
jittable and vmappable, so the adaptation of all test tasks runs as one
`jit(vmap(...))`:

* `fit(x_new, x_old, *, C)` -> `(w, b)`: the minimiser of scikit-learn's
  L2-regularised logistic objective (`LogisticRegression(C=C)`, intercept
  unpenalised) with the new task as the positive class, so that
  `P(new | x) = sigmoid(x·w + b)`; optional masks (or sample weights) let
  vmapped tasks have different numbers of rows;
* `objective`, `log_odds`, `probability`: the objective that `fit` minimises
  and the fitted classifier;
* `beta_weights(logits, *, beta_clip)`: β = P(new | x) / P(old | x), clipped
  from above at e^beta_clip and zeroed below 0.1, as the official code does;
* `normalized_beta`: the official code's optional min-max rescaling of β
  (`--use_normalized_beta`, off in every released configuration);
* `effective_sample_size(beta)` and `proximal_coefficient(beta, *, default)`:
  the normalised ESS (Σβ)² / (Σβ² + 1e-7) / n and the proximal coefficient
  1 − ESS, with the official code's fallback.

Sign convention: the official code (amazon-science/meta-q-learning,
`algs/MQL/mql.py`) labels the new task −1 and the meta-training tasks +1, so
its decision function is f = −log_odds here.  `beta_weights` takes this
module's `log_odds` and reproduces the original's exp(−max(f, −beta_clip)).

Example (30 test tasks at once, each with its own number of valid rows)::

  fit_all = jax.jit(jax.vmap(functools.partial(propensity.fit, C=1.0)))
  w, b = fit_all(x_new, x_old, new_mask=new_mask, old_mask=old_mask)  # [30, D], [30]
  beta = jax.vmap(lambda w, b, x: propensity.beta_weights(propensity.log_odds(w, b, x), beta_clip=1.0))(
    w, b, replay_features
  )
  prox = jax.vmap(functools.partial(propensity.proximal_coefficient, default=0.1))(beta)
"""

from __future__ import annotations

import numbers

import chex
import jax
import jax.numpy as jnp

# The official code's guard against 0/0 (`self.r_eps = np.float32(1e-7)`).
ESS_EPS = 1e-7
# The official code zeroes β below this value "for numerical stability".
BETA_ZERO_BELOW = 0.1


def _weights(mask: chex.Array | None, n: int, dtype) -> chex.Array:
  """Per-row weights from an optional bool mask or nonnegative weight vector."""
  if mask is None:
    return jnp.ones((n,), dtype)
  chex.assert_shape(mask, (n,))
  return jnp.asarray(mask).astype(dtype)


def _design(x_new, x_old, new_mask, old_mask):
  """Stacks both classes: features with a ones column, labels (new +1, old −1) and row weights.

  Masked-out rows are zeroed, so padding may hold anything (NaN included)
  without reaching the solve.
  """
  chex.assert_rank([x_new, x_old], 2)
  chex.assert_axis_dimension(x_old, 1, x_new.shape[1])
  dtype = jnp.result_type(x_new, x_old, jnp.float32)
  n_new, n_old = x_new.shape[0], x_old.shape[0]
  m = jnp.concatenate([_weights(new_mask, n_new, dtype), _weights(old_mask, n_old, dtype)])
  x = jnp.concatenate([x_new, x_old]).astype(dtype)
  x = jnp.where(m[:, None] > 0, x, 0)
  xa = jnp.concatenate([x, jnp.ones((n_new + n_old, 1), dtype)], axis=1)
  sign = jnp.concatenate([jnp.ones((n_new,), dtype), -jnp.ones((n_old,), dtype)])
  return xa, sign, m


def _loss(theta, xa, sign, m, C):
  """½‖w‖² + C Σ m_i softplus(−s_i z_i), z = [x, 1]·θ, θ = [w, b], s = ±1 the labels.

  softplus(−s·z) rather than softplus(z) − y·z: the latter cancels
  catastrophically for confidently classified rows, which large C produces.
  """
  z = xa @ theta
  return 0.5 * jnp.sum(theta[:-1] ** 2) + C * jnp.sum(m * jax.nn.softplus(-sign * z))


def objective(
  w: chex.Array,
  b: chex.Array,
  x_new: chex.Array,
  x_old: chex.Array,
  *,
  C: chex.Numeric,
  new_mask: chex.Array | None = None,
  old_mask: chex.Array | None = None,
) -> chex.Array:
  """scikit-learn's binary L2 logistic objective, the one `fit` minimises.

  ½‖w‖² + C Σ_i m_i log(1 + exp(−s_i (x_i·w + b))) with s_i = +1 for rows of
  `x_new` and −1 for rows of `x_old`; the intercept b is not penalised (the
  lbfgs/newton-cg convention of `sklearn.linear_model.LogisticRegression`).
  scikit-learn divides this by Σ m_i, which changes its tolerance, not the
  minimiser.

  Args:
    w: `[D]` weights.
    b: scalar intercept.
    x_new: `[N_new, D]` features of the new task (the positive class).
    x_old: `[N_old, D]` features of the meta-training tasks.
    C: inverse regularisation strength (> 0; smaller is stronger).
    new_mask: optional `[N_new]` bool mask or nonnegative sample weights.
    old_mask: optional `[N_old]` bool mask or nonnegative sample weights.

  Returns:
    The scalar objective.
  """
  xa, sign, m = _design(x_new, x_old, new_mask, old_mask)
  chex.assert_shape(w, (xa.shape[1] - 1,))
  chex.assert_rank(b, 0)
  theta = jnp.concatenate([w, jnp.asarray(b)[None]]).astype(xa.dtype)
  return _loss(theta, xa, sign, m, C)


def fit(
  x_new: chex.Array,
  x_old: chex.Array,
  *,
  C: chex.Numeric,
  new_mask: chex.Array | None = None,
  old_mask: chex.Array | None = None,
  num_iters: int = 50,
  num_halvings: int = 30,
) -> tuple[chex.Array, chex.Array]:
  """Fits the propensity classifier P(new | x) = sigmoid(x·w + b).

  The result is the minimiser of `objective`, i.e. what
  `sklearn.linear_model.LogisticRegression(C=C).fit(x, y)` finds with y = 1 on
  the rows of `x_new` and 0 on those of `x_old` (the official code calls it
  with `solver='lbfgs', max_iter=2000` and labels the new task −1, which only
  flips the sign of `(w, b)`).

  Solver: damped Newton from w = 0, b = the log prior odds.  The problem is
  small (hundreds of rows; D = context size, plus the observation size under
  the original's `--enable_beta_obs_cxt`) and strongly convex, so the exact
  Hessian (one [D+1, D+1] Cholesky solve per step) converges quadratically in
  5–20 steps, where L-BFGS needs hundreds of steps and scalar line searches
  whose Wolfe tests stall at float32 round-off.  Each step's line search is
  branch-free: it evaluates the objective at the steps 1, ½, ¼, …
  (`num_halvings` of them) at once, which is cheap because the logits are
  linear in the step, and takes the largest step that satisfies Armijo's
  condition up to the objective's float32 round-off (so near the optimum the
  full Newton step is taken); with none, the step is 0.  This damping keeps
  nearly separable data (large C: a large but finite minimiser) from
  overshooting.  The loop is a `lax.while_loop` that stops after a full step
  whose predicted decrease is below round-off, or after `num_iters` steps;
  under `vmap` all tasks run until the slowest has stopped (finished ones are
  frozen), so vmapped fits equal per-task fits.  The loss is evaluated as
  softplus(−s·z) and its derivatives as σ(±z) products, which stay accurate
  for confidently classified rows.  A diagonal jitter of 1e-6 × the mean
  Hessian diagonal keeps the Cholesky factor finite; it changes the step, never
  the minimiser.

  Measured against `LogisticRegression(C=C, tol=1e-14)` (float64), the
  probabilities agree within 1e-6 at unit-scale features, C from 1e-2 to 1e8,
  1 against 600 rows, and separable data (‖w‖ up to ~1300); features of scale
  100 give 6e-6.  scikit-learn's own default `tol=1e-4` (what the original
  runs) stops up to ~4e-3 away from the minimiser on the same data.

  Args:
    x_new: `[N_new, D]` features of the new task (the positive class).
    x_old: `[N_old, D]` features of the meta-training tasks (the negative class).
    C: inverse L2 regularisation strength, as scikit-learn's `C` (> 0; the
      official code's `--lam_csc`); may be traced.
    new_mask: optional `[N_new]` bool mask (False rows are ignored, as if
      dropped) or nonnegative sample weights (scikit-learn's `sample_weight`).
    old_mask: optional `[N_old]` mask or weights for `x_old`.
    num_iters: the most Newton steps (static); at most 22 were needed in the
      cases above.
    num_halvings: line-search candidates 2^0 … 2^-(num_halvings-1) (static).

  Returns:
    `(w, b)`: `[D]` weights and a scalar intercept, in the features' float
    dtype (float32 unless x64 is enabled).
  """
  if isinstance(C, numbers.Real) and not C > 0:
    raise ValueError(f"C must be positive, got {C}.")
  if not isinstance(num_iters, int) or num_iters < 1:
    raise ValueError(f"num_iters must be a positive int, got {num_iters!r}.")
  if not isinstance(num_halvings, int) or num_halvings < 1:
    raise ValueError(f"num_halvings must be a positive int, got {num_halvings!r}.")
  xa, sign, m = _design(x_new, x_old, new_mask, old_mask)
  theta, _ = _newton(xa, sign, m, C, num_iters, num_halvings)
  return theta[:-1], theta[-1]


def _newton(xa, sign, m, C, num_iters, num_halvings):
  """Damped Newton on `_loss`; returns θ = [w, b] and the number of steps taken."""
  dtype = xa.dtype
  C = jnp.asarray(C, dtype)
  d1 = xa.shape[1]
  penalty = jnp.ones((d1,), dtype).at[-1].set(0)
  steps = 0.5 ** jnp.arange(num_halvings, dtype=dtype)
  eps = jnp.finfo(dtype).eps

  n_pos, n_neg = jnp.sum(jnp.where(sign > 0, m, 0)), jnp.sum(jnp.where(sign < 0, m, 0))
  theta0 = jnp.zeros((d1,), dtype).at[-1].set(jnp.log((n_pos + 0.5) / (n_neg + 0.5)))

  def newton_step(carry):
    i, theta, _ = carry
    z = xa @ theta
    # p − y = −s·σ(−s·z) and p(1 − p) = σ(z)σ(−z), without cancellation.
    residual = -sign * jax.nn.sigmoid(-sign * z)
    curvature = jax.nn.sigmoid(z) * jax.nn.sigmoid(-z)
    grad = penalty * theta + C * (xa.T @ (m * residual))
    hess = jnp.diag(penalty) + C * (xa.T * (m * curvature)) @ xa
    jitter = 1e-6 * jnp.mean(jnp.diag(hess)) + 1e-12
    chol = jnp.linalg.cholesky(hess + jitter * jnp.eye(d1, dtype=dtype))
    direction = -jax.scipy.linalg.cho_solve((chol, True), grad)
    direction = jnp.where(jnp.all(jnp.isfinite(direction)), direction, -grad / jnp.max(jnp.diag(hess)))
    # The objective along the ray at every candidate step at once: z(t) = z + t·dz.
    dz = xa @ direction
    zt = z[None, :] + steps[:, None] * dz[None, :]
    data_t = jnp.sum(m * jax.nn.softplus(-sign * zt), axis=1)
    w, dw = theta[:-1], direction[:-1]
    reg_t = 0.5 * jnp.sum(w**2) + steps * jnp.dot(w, dw) + 0.5 * steps**2 * jnp.sum(dw**2)
    phi_t = reg_t + C * data_t
    phi_0 = 0.5 * jnp.sum(w**2) + C * jnp.sum(m * jax.nn.softplus(-sign * z))
    slope = jnp.dot(grad, direction)  # −λ², λ the Newton decrement
    roundoff = 16 * eps * (jnp.abs(phi_0) + 1)
    accept = jnp.isfinite(phi_t) & (phi_t <= phi_0 + 1e-4 * steps * slope + roundoff)
    step = jnp.where(jnp.any(accept), steps[jnp.argmax(accept)], 0)
    # A full step whose predicted decrease λ²/2 is below the objective's round-off
    # lands at working precision (quadratic convergence): stop after it.
    done = (step == 1) & (-slope <= roundoff)
    return i + 1, theta + step * direction, done

  def keep_going(carry):
    i, _, done = carry
    return (i < num_iters) & ~done

  iterations, theta, _ = jax.lax.while_loop(keep_going, newton_step, (jnp.asarray(0), theta0, jnp.asarray(False)))
  return theta, iterations


def log_odds(w: chex.Array, b: chex.Array, x: chex.Array) -> chex.Array:
  """log P(new | x) / P(old | x) = x·w + b, for one `[D]` row or `[N, D]` rows.

  This is minus the official code's `f_prop` (its decision function with the
  new task labelled −1).
  """
  chex.assert_rank(w, 1)
  chex.assert_rank(b, 0)
  chex.assert_rank(x, {1, 2})
  chex.assert_axis_dimension(x, -1, w.shape[0])
  return x @ w + b


def probability(w: chex.Array, b: chex.Array, x: chex.Array) -> chex.Array:
  """P(new | x) = sigmoid(x·w + b), for one `[D]` row or `[N, D]` rows.

  Equals scikit-learn's `predict_proba(x)[:, 1]` with the new task labelled 1
  (the official code's `predict_proba(x)[:, 0]`, new task labelled −1).
  """
  return jax.nn.sigmoid(log_odds(w, b, x))


def beta_weights(
  logits: chex.Array,
  *,
  beta_clip: chex.Numeric,
  zero_below: chex.Numeric = BETA_ZERO_BELOW,
) -> chex.Array:
  """Importance weights β = P(new | x) / P(old | x), clipped as the official code.

  The official `get_propensity` computes f = its decision function (= −logits),
  clamps f ≥ −beta_clip, takes β = exp(−f) and sets β < 0.1 to 0, so
  β ∈ {0} ∪ [0.1, e^beta_clip]: weights are capped (e^1 ≈ 2.72 with the
  default `--beta_clip 1`) to bound the variance of the weighted loss, and
  transitions that look nothing like the new task are dropped.  There is no
  correction for the class priors (the numbers of rows of each class).

  Args:
    logits: `log_odds` of the replay rows, any shape (usually `[B]`).
    beta_clip: upper clip of the log-weight (> 0 in the released configs).
    zero_below: weights below this become 0 (the original's 0.1).

  Returns:
    β, the shape of `logits`.
  """
  beta = jnp.exp(jnp.minimum(logits, beta_clip))
  return jnp.where(beta < zero_below, jnp.zeros_like(beta), beta)


def normalized_beta(beta: chex.Array, p_new: chex.Array, mask: chex.Array | None = None) -> chex.Array:
  """The official code's optional rescaling of β (`--use_normalized_beta`).

  β is mapped linearly from [min β, max β] onto [min p, max p], p = P(new | x)
  of the same rows: (max p − min p)(β − min β) / (max β − min β + 1e-7) + min p.
  Off by default in the original (`main.py`) and in every released run.

  Args:
    beta: `[B]` weights from `beta_weights`.
    p_new: `[B]` classifier probabilities P(new | x) of the same rows.
    mask: optional `[B]` bool mask: the extrema are taken over valid rows.

  Returns:
    `[B]` rescaled weights.
  """
  chex.assert_rank(beta, 1)
  chex.assert_equal_shape([beta, p_new])
  valid = jnp.ones(beta.shape, bool) if mask is None else jnp.asarray(mask, bool)
  chex.assert_equal_shape([beta, valid])

  def extrema(v):
    return jnp.min(jnp.where(valid, v, jnp.inf)), jnp.max(jnp.where(valid, v, -jnp.inf))

  b_min, b_max = extrema(beta)
  p_min, p_max = extrema(p_new)
  return (p_max - p_min) * (beta - b_min) / (b_max - b_min + ESS_EPS) + p_min


def effective_sample_size(beta: chex.Array, mask: chex.Array | None = None) -> chex.Array:
  """Normalised effective sample size of importance weights, in [0, 1].

  ESS = (Σβ)² / (Σβ² + 1e-7) / n over the minibatch, as the official
  `update_prox_w_ess_factor` (n = number of rows): 1 when all weights are equal
  (the replay rows look like the new task as much as each other), near 1/n when
  one row dominates, 0 when all are 0.

  Args:
    beta: `[B]` nonnegative weights.
    mask: optional `[B]` bool mask; n and the sums count only valid rows.

  Returns:
    The scalar normalised ESS.
  """
  chex.assert_rank(beta, 1)
  if mask is None:
    m = jnp.ones_like(beta)
  else:
    chex.assert_equal_shape([beta, mask])
    m = jnp.asarray(mask).astype(beta.dtype)
  beta = jnp.where(m > 0, beta, 0)
  n = jnp.sum(m)
  return jnp.sum(beta) ** 2 / (jnp.sum(beta**2) + ESS_EPS) / n


def proximal_coefficient(
  beta: chex.Array,
  *,
  default: chex.Numeric,
  mask: chex.Array | None = None,
) -> chex.Array:
  """The proximal coefficient 1 − ESS, with the official code's fallback.

  The official `update_prox_w_ess_factor` sets `prox_coef = 1 − ESS` (a
  strong pull towards the meta-trained parameters when few replay rows
  resemble the new task) unless that value is NaN, infinite or ≤ 1e-7, in
  which case it restores the initial `--prox_coef` (`default` here).  Note that
  the fallback also fires when all weights are equal (ESS ≈ 1), so equal
  weights give `default`, not 0.  The original only calls this under
  `--use_ess_clipping`, which no released configuration passes (they use the
  fixed `--prox_coef 0.1`).

  Args:
    beta: `[B]` weights of the current minibatch (after `beta_weights`).
    default: the initial proximal coefficient, used by the fallback.
    mask: optional `[B]` bool mask of valid rows.

  Returns:
    The scalar coefficient.
  """
  coefficient = 1.0 - effective_sample_size(beta, mask)
  valid = jnp.isfinite(coefficient) & (coefficient > ESS_EPS)
  return jnp.where(valid, coefficient, jnp.asarray(default, coefficient.dtype))
