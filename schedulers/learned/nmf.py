"""Stochastic NMF with a noise-aware learning-rate stability bound.

A reconstruction [ours] of the setting of "Efficient Learning rate schedules
for Stochastic Non-negative Matrix Factorization via Reinforcement Learning"
(Tiny Papers @ ICLR 2023, OpenReview AAu_WuIiwi). Only the paper's abstract is
available: the bound, its derivation and every number below are ours, not the
paper's.

Problem and loss. V ∈ R₊^{m×n}, W ∈ R₊^{m×r}, H ∈ R₊^{r×n}, R = WH − V,

  f(W, H) = ½ ‖V − WH‖²_F / (m n),   ∇_W f = R Hᵀ / (m n),   ∇_H f = Wᵀ R / (m n)

(half the mean squared residual: f and the rates are comparable across sizes).

Stochastic gradient (columns). A minibatch is b distinct columns B, uniform
without replacement; f_B = ½ ‖V_B − W H_B‖²_F / (m b), E f_B = f, and g̃ = ∇f_B
is unbiased: ∇_W f_B is the sample mean of the per-column terms r_j h_jᵀ / m,
and ∇_H f_B is nonzero only on the columns B, where it is (n/b) times the full
gradient's column (probability b/n). A step updates all of W and H's columns B
(stochastic dictionary learning when columns are samples, as in
`digits_problem`). The step is projected SGD, x⁺ = P(x − η g̃), P = max(0, ·),
x = (W, H).

Curvature. Along D = (dW, dH), f(W + t dW, H + t dH) = ½ ‖R + t (dW H + W dH)
+ t² dW dH‖²_F / (m n), so the Hessian quadratic form is

  ∇²f[D, D] = (‖dW H + W dH‖²_F + 2 ⟨R, dW dH⟩) / (m n).

For ‖dW‖²_F + ‖dH‖²_F = 1: ‖dW H + W dH‖_F ≤ ‖dW‖_F ‖H‖₂ + ‖W‖₂ ‖dH‖_F ≤
(‖W‖₂² + ‖H‖₂²)^½ (Cauchy–Schwarz) and |⟨R, dW dH⟩| ≤ ‖R‖₂ ‖dW dH‖_* ≤
‖R‖₂ ‖dW‖_F ‖dH‖_F ≤ ½ ‖R‖₂ (Hölder, then AM–GM). Hence

  ‖∇²f(W, H)‖₂ ≤ L = (‖W‖₂² + ‖H‖₂² + ‖R‖₂) / (m n) ≤ (‖W‖₂² + ‖H‖₂² + ‖R‖_F) / (m n).

We use ‖R‖_F = sqrt(2 m n f), which comes from the loss value, so L needs only
the params and the loss; ‖W‖₂, ‖H‖₂ come from power iterations (warm-started,
a Rayleigh quotient: a lower estimate, see `power_iteration`). L is not loose
by much: D = (dW, 0) gives ∇²f[D, D] = ‖dW H‖²_F / (m n), so ‖∇²f‖₂ ≥
max(‖W‖₂², ‖H‖₂²) / (m n); measured on 48×64 rank-6 problems, the true
‖∇²f‖₂ is 0.65–0.7 L at the initialisation, 0.75 L after 50 steps and 0.9 L
after 500.

L is local. It bounds the Hessian at (W, H). On the Frobenius ball of radius ρ
around (W, H), ‖W'‖₂² + ‖H'‖₂² ≤ (a + ρ)² with a = (‖W‖₂² + ‖H‖₂²)^½ and
‖R'‖_F ≤ ‖R‖_F + a ρ + ρ²/2, so

  sup_ball ‖∇²f‖₂ ≤ L + (3 a ρ + 3 ρ² / 2) / (m n).

The descent lemma below needs this for the step's own length ρ = ‖x⁺ − x‖ ≤
η ‖g̃‖: the bound is a statement about steps short relative to the factors'
scale a. Measured: at `init_factors`' scale the RMS step at η_max is ~45% of a
(the ball constant is ≈ 1.4 L), so the very first steps are covered only to
first order; after ~50 steps the RMS step is 1.5–3% of a (≤ 1.07 L). f is
quartic: the curvature along a step grows like ρ², so rates far above η_max do
not just oscillate, they blow up (one step at 32 η_max multiplies the expected
loss by ~10³ at initialisation; the factors then overflow and project to 0).

Expected descent. Write g̃ = ∇f + ξ, E ξ = 0, E ‖ξ‖² = σ². If L bounds the
curvature on [x, x − η g̃],

  E f(x − η g̃) ≤ f(x) − η ‖∇f‖² + (L η² / 2) (‖∇f‖² + σ²),

which is ≤ f(x) iff η ≤ (2/L) ‖∇f‖² / (‖∇f‖² + σ²) (σ = 0 gives 2/L; the
guaranteed decrease is largest at half of it). Projection: from ⟨x − η g̃ − x⁺,
x − x⁺⟩ ≤ 0 and non-expansiveness of P (compare with x̄ = P(x − η ∇f)),

  E f(x⁺) ≤ f(x) − (1/η − L/2) E ‖x⁺ − x‖² + η σ²,

which is the same bound while no coordinate is clipped (E ‖x⁺ − x‖² =
η² (‖∇f‖² + σ²)), and weaker when some are. We therefore apply the formula on
the free set F = {x > 0} ∪ {∇f < 0} (coordinates at 0 pushed outwards stay
put): ‖∇f‖² → ‖∇_F f‖², the projected gradient (0 exactly at KKT points, so
η_max → 0 at constrained stationary points, as the unconstrained bound does at
∇f = 0), and σ² → Σ_{i∈F} Var g̃_i. This extension is a heuristic, checked
empirically in the tests. The final bound is

  η_max(t) = (2 / L_t) · ‖∇_F f_t‖² / (‖∇_F f_t‖² + σ²_F,t),
  L_t = (‖W_t‖₂² + ‖H_t‖₂² + sqrt(2 m n f_t)) / (m n),

and `clip_lr(η, η_max, c) = min(η, c η_max)` with c < 1 keeps a margin.

Noise. The per-coordinate variance of g̃ is closed-form (`gradient_noise`,
O(m n r), exact): with r_j = W h_j − v_j,

  Var ∇_W f_B = (n − b) / (b (n − 1)) · ((R∘R)(H∘H)ᵀ / (n m²) − (∇_W f)²),
  Var ∇_H f_B = ((n − b) / b) · (∇_H f)².

The H term dominates: at n/b = 8 the signal fraction ‖∇f‖² / (‖∇f‖² + σ²) is
≈ 0.25 at initialisation, so η_max ≈ 0.5/L there. `minibatch_noise` is an
unbiased estimate from the minibatch alone ((1 − b/n) s²/b, s² the sample
variance of the b per-column W terms; (1 − b/n) (∇_H f_B)² for H): what a
training loop that never sees all of V could hand to an optimizer, with
`bound_stats`.

Measured (48×64 rank-6 problems, noise 0.1, b = 8, 3 seeds; the first two
numbers are asserted by the tests). One step at 0.5 η_max lowers the expected
loss (over 1024 minibatches) by 4–6% at initialisation and by 0.015–1.1% after
200 steps; one step at 32 η_max raises it ~10³-fold at initialisation and by
14–660% after 200 steps; a constant 32 η_max(0) multiplies the loss by
~500–1400 in its first step and overflows to inf within 30 steps.
In between, the expected loss first rises between 2 and 4 η_max (4 of 6
points; between 4 and 8 on the other two): the slack is L over-estimating the
curvature (above) and L σ² over-estimating tr(∇²f Cov ξ) for noise that is not
aligned with the top curvature. As a schedule c η_max is conservative: over
1000 steps c = 2 reached the lowest loss (≈ 0.005, the noise floor), c = 0.9 a
loss ≈ 8× higher (0.02–0.05) and c ≥ 4 stalls or diverges, while constant rates
of 0.5–1 η_max(0), which run at 1.5–3.5 η_max(t) late in training, end near the
noise floor too. Guaranteeing expected descent at every step is a short-horizon
criterion; the bound is a stability guard, not a tuned rate.

Code. Pure functions on NamedTuples of arrays (`NMFProblem`, `Factors`,
`PowerState`); `train` runs K steps in one `lax.scan`, jit it and vmap it over
a leading problem axis. `bound_stats` computes the bound from what an
optimizer sees (params, loss, gradient, noise estimate); `exact_bound_stats`
feeds it the exact full-batch quantities (used by `train` and `nmf_env`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

__all__ = [
  "BoundStats",
  "Factors",
  "NMFProblem",
  "PowerState",
  "Schedule",
  "TrainResult",
  "bound_fraction",
  "bound_stats",
  "clip_lr",
  "constant",
  "cosine",
  "digits_problem",
  "exact_bound_stats",
  "exponential",
  "gradient",
  "gradient_noise",
  "init_factors",
  "init_power",
  "learning_rate_bound",
  "lipschitz_bound",
  "loss",
  "make_problem",
  "minibatch_gradient",
  "minibatch_loss",
  "minibatch_noise",
  "power_iteration",
  "project",
  "projected_gradient",
  "run_steps",
  "sample_columns",
  "sgd_step",
  "stability_bound",
  "step_decay",
  "train",
]

_TINY = 1e-30  # guards divisions and logs in float32


class NMFProblem(NamedTuple):
  """A nonnegative data matrix to factorise; vmap over a leading problem axis."""

  v: jax.Array  # [m, n], nonnegative


class Factors(NamedTuple):
  """NMF factors (also the type of their gradients and gradient variances)."""

  w: jax.Array  # [m, r]
  h: jax.Array  # [r, n]


class PowerState(NamedTuple):
  """Warm-start vectors of the power iterations for ‖W‖₂ and ‖H‖₂."""

  w: jax.Array  # [r], unit: top right-singular vector estimate of W
  h: jax.Array  # [r], unit: top left-singular vector estimate of H


class BoundStats(NamedTuple):
  """The stability bound at one point and the quantities it is made of."""

  eta_max: jax.Array  # scalar: (2/L) · s / (s + σ²)
  lipschitz: jax.Array  # scalar: L = (‖W‖₂² + ‖H‖₂² + ‖R‖_F) / (m n)
  grad_sq: jax.Array  # scalar: s = ‖∇_F f‖², the projected (free-set) gradient
  noise_sq: jax.Array  # scalar: σ² = Σ_F Var(g̃), minibatch-gradient variance on the free set
  loss: jax.Array  # scalar: the loss value the bound was computed from
  power: PowerState  # advanced power-iteration vectors (warm start for the next call)


class TrainResult(NamedTuple):
  """Curves of one `train` run (a leading problem axis when vmapped)."""

  loss: jax.Array  # [K + 1]: full loss before each step and after the last
  lr: jax.Array  # [K]: the learning rate each step used
  eta_max: jax.Array  # [K]: the stability bound at each step
  factors: Factors  # after the last step


# A learning-rate rule: (step, eta_max at the current point) -> learning rate.
Schedule = Callable[[jax.Array, jax.Array], jax.Array]


# ---------------------------------------------------------------------------
# Problems and initialisation.
# ---------------------------------------------------------------------------


def make_problem(key: jax.Array, m: int, n: int, rank: int, noise: float) -> NMFProblem:
  """V = W* H* + |ε|, normalised to mean 1: a planted rank-`rank` NMF problem.

  Planted factors have Exponential(1) entries masked by Bernoulli(½) (sparse
  parts, as in `schedulers.study.tasks.nmf_synthetic_factors`); ε ~ N(0, s²) with
  s = noise · RMS(W* H*). Dividing V by its mean makes learning rates and
  losses comparable across draws (the bound and the features are scale-free
  anyway).

  Args:
    key: PRNG key.
    m: rows of V.
    n: columns of V (the minibatch samples columns).
    rank: planted rank.
    noise: noise level relative to the RMS of the clean product, >= 0.

  Returns:
    The problem, V of shape [m, n], float32, nonnegative, mean 1.
  """
  kw, kh, kmw, kmh, ke = jax.random.split(key, 5)
  w = jax.random.exponential(kw, (m, rank)) * jax.random.bernoulli(kmw, 0.5, (m, rank))
  h = jax.random.exponential(kh, (rank, n)) * jax.random.bernoulli(kmh, 0.5, (rank, n))
  clean = w @ h
  scale = noise * jnp.sqrt(jnp.mean(jnp.square(clean)))
  v = clean + jnp.abs(scale * jax.random.normal(ke, (m, n)))
  v = v / jnp.maximum(jnp.mean(v), _TINY)
  return NMFProblem(v=v.astype(jnp.float32))


def digits_problem(num_images: int | None = None) -> NMFProblem:
  """The scikit-learn digits as V = pixels × images (64 × 1797), pixels / 16.

  Columns are images, so a minibatch of columns is a minibatch of images (W is
  a dictionary of 64-pixel parts, H the per-image codes). The data ships with
  scikit-learn (no download).

  Args:
    num_images: keep the first `num_images` images (all 1797 if None).

  Returns:
    The problem, V of shape [64, num_images], float32 in [0, 1].
  """
  from sklearn import datasets as sk_datasets  # local: scikit-learn is slow to import

  x = sk_datasets.load_digits().data[:num_images] / 16.0
  return NMFProblem(v=jnp.asarray(x.T, jnp.float32))


def init_factors(key: jax.Array, problem: NMFProblem, rank: int, *, scale: float = 1.0) -> Factors:
  """W, H with i.i.d. U(0, a) entries, a = scale · sqrt(mean(V) / rank).

  Why this scale: (i) W and H get the same entry scale (balanced), which for a
  given product keeps ‖W‖₂² + ‖H‖₂², the curvature part of the bound, near its
  minimum (f is invariant under W → WD, H → D⁻¹H, L is not); (ii) E[(WH)ᵢⱼ] =
  r (a/2)² = mean(V)/4, so the initial product sits below V: the initial
  residual is at most of the order of ‖V‖ and L₀ = O((m + n) mean(V)/4 +
  ‖V‖₂) instead of being dominated by an overshooting product; (iii) all
  entries start positive: no active constraints (the free set is everything),
  and away from the saddle at W = H = 0, where every gradient vanishes.

  Args:
    key: PRNG key.
    problem: the problem (only V's shape and mean are used).
    rank: factorisation rank r.
    scale: multiplier of the entry scale a.

  Returns:
    `Factors(w [m, r], h [r, n])`, float32.
  """
  m, n = problem.v.shape
  a = scale * jnp.sqrt(jnp.mean(problem.v) / rank)
  kw, kh = jax.random.split(key)
  return Factors(
    w=a * jax.random.uniform(kw, (m, rank), jnp.float32),
    h=a * jax.random.uniform(kh, (rank, n), jnp.float32),
  )


# ---------------------------------------------------------------------------
# Loss, gradients and minibatches.
# ---------------------------------------------------------------------------


def _check(problem: NMFProblem, factors: Factors) -> None:
  chex.assert_rank([problem.v, factors.w, factors.h], 2)
  m, n = problem.v.shape
  chex.assert_shape(factors.w, (m, None))
  chex.assert_shape(factors.h, (factors.w.shape[1], n))


def loss(problem: NMFProblem, factors: Factors) -> jax.Array:
  """f(W, H) = ½ ‖V − WH‖²_F / (m n): half the mean squared residual."""
  _check(problem, factors)
  return 0.5 * jnp.mean(jnp.square(factors.w @ factors.h - problem.v))


def gradient(problem: NMFProblem, factors: Factors) -> Factors:
  """∇f: (R Hᵀ, Wᵀ R) / (m n) with R = WH − V."""
  return _residual_and_gradient(problem, factors)[1]


def _residual_and_gradient(problem: NMFProblem, factors: Factors) -> tuple[jax.Array, Factors]:
  _check(problem, factors)
  scale = 1.0 / problem.v.size
  r = factors.w @ factors.h - problem.v
  return r, Factors(w=scale * (r @ factors.h.T), h=scale * (factors.w.T @ r))


def sample_columns(key: jax.Array, n: int, batch_size: int) -> jax.Array:
  """`batch_size` distinct column indices, uniformly without replacement."""
  return jax.random.choice(key, n, (batch_size,), replace=False)


def minibatch_loss(problem: NMFProblem, factors: Factors, cols: jax.Array) -> jax.Array:
  """f_B = ½ ‖V_B − W H_B‖²_F / (m b) over the columns B: E_B f_B = f."""
  _check(problem, factors)
  chex.assert_rank(cols, 1)
  r_b = factors.w @ factors.h[:, cols] - problem.v[:, cols]
  return 0.5 * jnp.mean(jnp.square(r_b))


def _minibatch_parts(problem, factors, cols):
  """(R_B, ∇_W f_B, the H-gradient's columns B) of the minibatch loss."""
  _check(problem, factors)
  chex.assert_rank(cols, 1)
  h_b = factors.h[:, cols]
  r_b = factors.w @ h_b - problem.v[:, cols]
  scale = 1.0 / r_b.size
  return r_b, scale * (r_b @ h_b.T), scale * (factors.w.T @ r_b)


def minibatch_gradient(problem: NMFProblem, factors: Factors, cols: jax.Array) -> Factors:
  """∇f_B, dense: W's full gradient estimate, H's gradient nonzero on columns B.

  An unbiased estimate of ∇f: ∇_W f_B averages per-column terms r_j h_jᵀ/m of
  a uniform sample; column j of ∇_H f_B is Wᵀ r_j / (m b) with probability b/n
  and 0 otherwise, which has mean Wᵀ r_j / (m n) = column j of ∇_H f.
  """
  _, g_w, g_hb = _minibatch_parts(problem, factors, cols)
  return Factors(w=g_w, h=jnp.zeros_like(factors.h).at[:, cols].add(g_hb))


def project(factors: Factors) -> Factors:
  """Projection onto the nonnegative orthant, max(0, ·)."""
  return jax.tree.map(lambda x: jnp.maximum(x, 0.0), factors)


def projected_gradient(factors: Factors, grad: Factors) -> Factors:
  """∇_F f: the gradient on the free set F = {x > 0} ∪ {∇f < 0}, 0 elsewhere.

  The limit of the gradient mapping (x − max(0, x − ε∇f)) / ε as ε → 0: the
  coordinates at 0 pushed outwards do not move under a projected step. It is 0
  exactly at the KKT points of the constrained problem.
  """
  return jax.tree.map(lambda x, g: jnp.where((x > 0) | (g < 0), g, 0.0), factors, grad)


def sgd_step(problem: NMFProblem, factors: Factors, cols: jax.Array, lr: jax.Array) -> Factors:
  """One projected SGD step max(0, x − lr ∇f_B(x)); only H's columns B change."""
  _, g_w, g_hb = _minibatch_parts(problem, factors, cols)
  w = jnp.maximum(factors.w - lr * g_w, 0.0)
  h_b = jnp.maximum(factors.h[:, cols] - lr * g_hb, 0.0)
  return Factors(w=w, h=factors.h.at[:, cols].set(h_b))


# ---------------------------------------------------------------------------
# Gradient noise.
# ---------------------------------------------------------------------------


def _noise_from(problem: NMFProblem, factors: Factors, r: jax.Array, g: Factors, batch_size: int) -> Factors:
  """`gradient_noise` from the residual R and the gradient ∇f (computed once)."""
  m, n = problem.v.shape
  b = batch_size
  second = (jnp.square(r) @ jnp.square(factors.h).T) / (n * m * m)
  fpc = (n - b) / (b * max(n - 1, 1))
  var_w = fpc * jnp.maximum(second - jnp.square(g.w), 0.0)
  var_h = ((n - b) / b) * jnp.square(g.h)
  return Factors(w=var_w, h=var_h)


def gradient_noise(problem: NMFProblem, factors: Factors, batch_size: int) -> Factors:
  """Exact per-coordinate variance of the minibatch gradient ∇f_B at (W, H).

  With b columns drawn without replacement from n and r_j = W h_j − v_j:

  * W: ∇_W f_B is the mean of the sample {y_j = r_j h_jᵀ / m}, so
    Var = (n − b) / (b (n − 1)) · (mean_j y_j² − (∇_W f)²) (finite-population
    correction; mean_j y_j² = (R∘R)(H∘H)ᵀ / (n m²)), clamped at 0 against
    float32 cancellation when all columns agree.
  * H: column j is (n/b) ∇_{h_j} f with probability b/n, else 0, so
    Var = (n − b)/b · (∇_H f)², exactly.

  Args:
    problem: the problem.
    factors: the point.
    batch_size: b, columns per minibatch (1 <= b <= n), a Python int.

  Returns:
    Per-coordinate variances, shaped like the factors; their sum is σ² =
    E‖∇f_B − ∇f‖².
  """
  r, g = _residual_and_gradient(problem, factors)
  return _noise_from(problem, factors, r, g, batch_size)


def minibatch_noise(problem: NMFProblem, factors: Factors, cols: jax.Array) -> Factors:
  """Unbiased per-coordinate estimate of `gradient_noise` from the minibatch B alone.

  What a training loop that only sees the minibatch can compute (and hand to an
  optimizer): W from the sample variance s² of the per-column terms y_j, j ∈ B
  (Var ≈ (1 − b/n) s² / b, unbiased without replacement); H from the gradient
  itself, (1 − b/n) (∇_H f_B)² (its mean is (n − b)/b (∇_H f)²). Needs b >= 2.
  """
  r_b, g_w, g_hb = _minibatch_parts(problem, factors, cols)
  m, n = problem.v.shape
  b = cols.shape[0]
  h_b = factors.h[:, cols]
  second = (jnp.square(r_b) @ jnp.square(h_b).T) / (b * m * m)  # mean_{j∈B} y_j²
  s2 = (b / max(b - 1, 1)) * jnp.maximum(second - jnp.square(g_w), 0.0)
  var_w = (1.0 - b / n) * s2 / b
  var_h = jnp.zeros_like(factors.h).at[:, cols].add((1.0 - b / n) * jnp.square(g_hb))
  return Factors(w=var_w, h=var_h)


# ---------------------------------------------------------------------------
# Spectral norms and the bound.
# ---------------------------------------------------------------------------


def power_iteration(a: jax.Array, v: jax.Array, num_iters: int) -> tuple[jax.Array, jax.Array]:
  """`num_iters` power iterations on AᵀA from v: (‖A v‖², v) with v unit.

  ‖A v‖² is a Rayleigh quotient, so it never exceeds ‖A‖₂² and converges to it
  from below (at the rate (σ₂/σ₁)^{2k}; nonnegative factors have a dominant
  positive singular pair, so a few warm-started iterations suffice).

  Args:
    a: [p, q] matrix.
    v: [q] start vector (need not be normalised; warm start with the last v).
    num_iters: a Python int >= 0.

  Returns:
    (estimate of ‖A‖₂², the unit iterate).
  """
  chex.assert_rank([a, v], [2, 1])
  chex.assert_equal_shape_suffix([a, v], 1)

  def normalise(x):
    return x / jnp.maximum(jnp.linalg.norm(x), _TINY)

  v = normalise(v)
  for _ in range(num_iters):
    v = normalise(a.T @ (a @ v))
  return jnp.sum(jnp.square(a @ v)), v


def init_power(factors: Factors, num_iters: int = 20) -> PowerState:
  """Cold-start power iterations (from the all-ones vector) for W and H."""
  ones = jnp.ones((factors.w.shape[1],), factors.w.dtype)
  _, vw = power_iteration(factors.w, ones, num_iters)
  _, vh = power_iteration(factors.h.T, ones, num_iters)
  return PowerState(w=vw, h=vh)


def lipschitz_bound(spec_w_sq: jax.Array, spec_h_sq: jax.Array, resid_norm: jax.Array, num_entries: int) -> jax.Array:
  """L = (‖W‖₂² + ‖H‖₂² + ‖WH − V‖) / (m n): bounds ‖∇²f(W, H)‖₂ (module docstring)."""
  return (spec_w_sq + spec_h_sq + resid_norm) / num_entries


def learning_rate_bound(lipschitz: jax.Array, grad_sq: jax.Array, noise_sq: jax.Array) -> jax.Array:
  """η_max = (2/L) · s / (s + σ²): the largest rate at which the descent lemma guarantees E f(x⁺) <= f(x)."""
  frac = grad_sq / jnp.maximum(grad_sq + noise_sq, _TINY)
  return 2.0 * frac / jnp.maximum(lipschitz, _TINY)


def bound_stats(
  factors: Factors,
  loss_value: jax.Array,
  grad: Factors,
  noise: Factors,
  power: PowerState,
  *,
  num_iters: int = 2,
) -> BoundStats:
  """The bound from what an optimizer sees: params, loss value, gradient, noise.

  ‖W‖₂, ‖H‖₂ come from warm-started power iterations on the params;
  ‖WH − V‖₂ <= ‖WH − V‖_F = sqrt(2 m n f) from the loss value (m, n from the
  params' shapes); the gradient and noise are restricted to the free set of
  `projected_gradient`.

  Args:
    factors: the point (W, H).
    loss_value: f(W, H) (the full loss; an estimate makes the bound an estimate).
    grad: ∇f(W, H).
    noise: per-coordinate variances of the stochastic gradient (`gradient_noise`
      exactly, or `minibatch_noise`).
    power: warm-start vectors.
    num_iters: power iterations per call.

  Returns:
    `BoundStats` (with the advanced power vectors).
  """
  chex.assert_rank([factors.w, factors.h, loss_value], [2, 2, 0])
  m, n = factors.w.shape[0], factors.h.shape[1]
  spec_w, vw = power_iteration(factors.w, power.w, num_iters)
  spec_h, vh = power_iteration(factors.h.T, power.h, num_iters)
  resid = jnp.sqrt(2.0 * m * n * jnp.maximum(loss_value, 0.0))
  lip = lipschitz_bound(spec_w, spec_h, resid, m * n)
  free = jax.tree.map(lambda x, g: (x > 0) | (g < 0), factors, grad)
  grad_sq = sum(jnp.sum(jnp.where(f, jnp.square(g), 0.0)) for f, g in zip(free, grad))
  noise_sq = sum(jnp.sum(jnp.where(f, s, 0.0)) for f, s in zip(free, noise))
  return BoundStats(
    eta_max=learning_rate_bound(lip, grad_sq, noise_sq),
    lipschitz=lip,
    grad_sq=grad_sq,
    noise_sq=noise_sq,
    loss=loss_value,
    power=PowerState(w=vw, h=vh),
  )


def exact_bound_stats(
  problem: NMFProblem, factors: Factors, power: PowerState, *, batch_size: int, num_iters: int = 2
) -> BoundStats:
  """`bound_stats` with the exact full loss, gradient and minibatch-gradient variance."""
  r, g = _residual_and_gradient(problem, factors)
  noise = _noise_from(problem, factors, r, g, batch_size)
  return bound_stats(factors, 0.5 * jnp.mean(jnp.square(r)), g, noise, power, num_iters=num_iters)


def stability_bound(problem: NMFProblem, factors: Factors, *, batch_size: int, num_iters: int = 20) -> jax.Array:
  """η_max at (W, H) for minibatches of `batch_size` columns (cold power iterations)."""
  power = PowerState(w=jnp.ones((factors.w.shape[1],)), h=jnp.ones((factors.w.shape[1],)))
  return exact_bound_stats(problem, factors, power, batch_size=batch_size, num_iters=num_iters).eta_max


def clip_lr(eta: jax.Array, eta_max: jax.Array, c: float | jax.Array) -> jax.Array:
  """min(η, c · η_max): the clipped learning rate (c < 1 keeps a safety margin)."""
  return jnp.minimum(eta, c * eta_max)


# ---------------------------------------------------------------------------
# Schedules and training.
# ---------------------------------------------------------------------------


def constant(lr) -> Schedule:
  """η_t = lr."""
  return lambda step, eta_max: jnp.asarray(lr, jnp.float32)


def step_decay(lr, *, every: int, factor: float = 0.5) -> Schedule:
  """η_t = lr · factor^⌊t / every⌋."""
  return lambda step, eta_max: lr * jnp.power(factor, (step // every).astype(jnp.float32))


def exponential(lr, *, rate: float) -> Schedule:
  """η_t = lr · rate^t."""
  return lambda step, eta_max: lr * jnp.power(rate, step.astype(jnp.float32))


def cosine(lr, *, num_steps: int, final_fraction: float = 0.0) -> Schedule:
  """η_t = lr · (final + (1 − final) · ½ (1 + cos(π t / T))), held at T."""

  def schedule(step, eta_max):
    t = jnp.minimum(step.astype(jnp.float32), num_steps) / num_steps
    return lr * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + jnp.cos(jnp.pi * t)))

  return schedule


def bound_fraction(c) -> Schedule:
  """η_t = c · η_max(t): the (clipped) bound itself as a schedule."""
  return lambda step, eta_max: c * eta_max


def run_steps(
  problem: NMFProblem,
  factors: Factors,
  power: PowerState,
  key: jax.Array,
  lr_fn: Callable[[jax.Array, jax.Array], jax.Array],
  *,
  start_step: jax.Array | int,
  num_steps: int,
  batch_size: int,
  power_iters: int,
) -> tuple[tuple[Factors, PowerState, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]:
  """`num_steps` projected SGD steps in one `lax.scan` (shared by `train` and the env).

  Each step computes the exact bound at the current point, asks
  `lr_fn(step, eta_max)` for the rate, draws a minibatch with a fresh subkey and
  steps. Returns the final `(factors, power, key)` and per-step `(loss before
  the step, lr, eta_max)`.
  """
  n = problem.v.shape[1]

  def body(carry, step):
    factors, power, key = carry
    key, sub = jax.random.split(key)
    stats = exact_bound_stats(problem, factors, power, batch_size=batch_size, num_iters=power_iters)
    lr = lr_fn(step, stats.eta_max)
    factors = sgd_step(problem, factors, sample_columns(sub, n, batch_size), lr)
    return (factors, stats.power, key), (stats.loss, lr, stats.eta_max)

  steps = start_step + jnp.arange(num_steps, dtype=jnp.int32)
  return jax.lax.scan(body, (factors, power, key), steps)


def train(
  problem: NMFProblem,
  factors: Factors,
  schedule: Schedule,
  *,
  key: jax.Array,
  num_steps: int,
  batch_size: int,
  clip_c: float | None = None,
  power_init_iters: int = 20,
  power_iters: int = 2,
) -> TrainResult:
  """Projected SGD for `num_steps` steps under `schedule`, in one `lax.scan`.

  Pure and jittable; `jax.vmap` it over a leading problem axis (problem,
  factors, key) to train many problems in one program. Every step also
  evaluates the full loss, gradient and bound (O(m n r), n/b times a minibatch
  step): the price of exact loss curves and of the exact bound.

  Args:
    problem: the problem.
    factors: initial factors.
    schedule: (step, eta_max) -> learning rate (`constant`, `step_decay`,
      `exponential`, `cosine`, `bound_fraction`, or any such rule).
    key: PRNG key for the minibatches (one subkey per step).
    num_steps: K, a Python int.
    batch_size: columns per minibatch, a Python int.
    clip_c: if given, every rate is clipped to `clip_c · eta_max`.
    power_init_iters: cold power iterations before the first step.
    power_iters: warm power iterations per step.

  Returns:
    `TrainResult` with the full-loss curve (K + 1), rates and bounds (K).
  """
  lr_fn = schedule if clip_c is None else (lambda step, eta_max: clip_lr(schedule(step, eta_max), eta_max, clip_c))
  power = init_power(factors, power_init_iters)
  (factors, _, _), (losses, lrs, bounds) = run_steps(
    problem,
    factors,
    power,
    key,
    lr_fn,
    start_step=0,
    num_steps=num_steps,
    batch_size=batch_size,
    power_iters=power_iters,
  )
  final = loss(problem, factors)
  return TrainResult(loss=jnp.append(losses, final), lr=lrs, eta_max=bounds, factors=factors)
