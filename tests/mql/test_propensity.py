"""Tests for mql/propensity.py: scikit-learn agreement, vmap and masks, β and ESS against NumPy references."""

import functools

import chex
import jax
import numpy as np
import pytest
from absl.testing import parameterized
from sklearn.linear_model import LogisticRegression

from mql import propensity

# ---------------------------------------------------------------------------
# Data and NumPy references.
# ---------------------------------------------------------------------------


def _gaussian_classes(seed, n_new, n_old, dim, separation, scale=1.0):
  """Two Gaussian clouds whose means are `2 * separation` apart."""
  rng = np.random.default_rng(seed)
  mean = rng.standard_normal(dim) * separation / np.sqrt(dim)
  x_new = (rng.standard_normal((n_new, dim)) + mean) * scale
  x_old = (rng.standard_normal((n_old, dim)) - mean) * scale
  return x_new.astype(np.float32), x_old.astype(np.float32)


def _separable_classes(seed, n_new, n_old, dim, margin):
  """Uniform points on either side of a random hyperplane, at least `margin` from it."""
  rng = np.random.default_rng(seed)
  normal = rng.standard_normal(dim)
  normal /= np.linalg.norm(normal)
  x = rng.uniform(-1, 1, (20 * (n_new + n_old), dim))
  side = x @ normal
  x_new, x_old = x[side > margin][:n_new], x[side < -margin][:n_old]
  assert len(x_new) == n_new and len(x_old) == n_old
  return x_new.astype(np.float32), x_old.astype(np.float32)


def _sklearn(x_new, x_old, C, **kwargs):
  """A converged scikit-learn fit (float64) with the new task labelled 1."""
  x = np.concatenate([x_new, x_old]).astype(np.float64)
  y = np.r_[np.ones(len(x_new)), np.zeros(len(x_old))]
  kwargs = {"tol": 1e-12, "max_iter": 100_000, **kwargs}
  return LogisticRegression(C=C, **kwargs).fit(x, y), x


def _np_objective(w, b, x_new, x_old, C):
  """½‖w‖² + C Σ log(1 + exp(−s z)), in float64."""
  w, b = np.asarray(w, np.float64), float(b)
  z_new, z_old = x_new.astype(np.float64) @ w + b, x_old.astype(np.float64) @ w + b
  return 0.5 * w @ w + C * (np.logaddexp(0, -z_new).sum() + np.logaddexp(0, z_old).sum())


def _np_original_beta(f, beta_clip):
  """The official `get_propensity` on its decision function f (new task labelled −1)."""
  f = np.maximum(f, -beta_clip)
  beta = np.exp(-f)
  beta[beta < 0.1] = 0
  return beta


def _np_original_prox(beta, prox_coef_init):
  """The official `update_prox_w_ess_factor` with `beta` given."""
  ess = (np.sum(beta) ** 2) / (np.sum(beta**2) + np.float32(1e-7)) / beta.shape[0]
  coef = 1.0 - np.float32(ess)
  if np.isnan(coef) or np.isinf(coef) or coef <= np.float32(1e-7):
    return prox_coef_init
  return coef


_fit = jax.jit(propensity.fit, static_argnames=("num_iters", "num_halvings"))

PAD_ROWS, PAD_DIM = 600, 16


def _padded(x, rows=PAD_ROWS):
  """`x` in the top-left corner of a NaN `[rows, PAD_DIM]` array (zero features beyond its width), and its mask."""
  out = np.full((rows, PAD_DIM), np.nan, np.float32)
  out[: len(x)] = 0
  out[: len(x), : x.shape[1]] = x
  return out, np.arange(rows) < len(x)


@jax.jit
def _newton_iterations(x_new, x_old, new_mask, old_mask, C):
  xa, sign, m = propensity._design(x_new, x_old, new_mask, old_mask)
  return propensity._newton(xa, sign, m, C, 50, 30)[1]


# ---------------------------------------------------------------------------
# The classifier against scikit-learn.
# ---------------------------------------------------------------------------

# (name, data, generator args, C).  Every case is padded to one [600, 16] shape
# with masks, as vmapped tasks are, so the cases share one compiled solve.
SKLEARN_CASES = [
  ("balanced_overlapping", "gauss", (0, 200, 400, 16, 1.0), 1.0),
  ("strong_regularisation", "gauss", (1, 200, 400, 16, 1.0), 0.01),
  ("weak_regularisation", "gauss", (2, 200, 400, 16, 2.0), 100.0),
  ("few_new_rows", "gauss", (3, 20, 600, 16, 2.0), 1.0),
  ("few_old_rows", "gauss", (4, 600, 20, 8, 1.0), 10.0),
  ("obs_scale_features", "gauss", (5, 200, 400, 12, 1.0, 10.0), 1.0),
  ("separable_large_C", "separable", (6, 300, 300, 8, 0.01), 1e3),
  ("separable_huge_C", "separable", (7, 300, 300, 8, 0.01), 1e5),
]


class FitTest(parameterized.TestCase):
  """`fit` finds scikit-learn's minimiser."""

  @parameterized.named_parameters(*[(name, kind, args, C) for name, kind, args, C in SKLEARN_CASES])
  def test_probabilities_match_sklearn(self, kind, args, C):
    x_new, x_old = (_gaussian_classes if kind == "gauss" else _separable_classes)(*args)
    model, x = _sklearn(x_new, x_old, C)
    (pad_new, new_mask), (pad_old, old_mask) = _padded(x_new), _padded(x_old)
    w, b = _fit(pad_new, pad_old, C=C, new_mask=new_mask, old_mask=old_mask)
    chex.assert_shape([w, b], [(PAD_DIM,), ()])
    dim = x_new.shape[1]
    np.testing.assert_array_equal(w[dim:], 0)  # all-zero features get zero weight
    w = w[:dim]
    want = model.predict_proba(x)[:, 1]
    got = np.asarray(propensity.probability(w, b, x.astype(np.float32)))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    # The objective is at least as low as scikit-learn's (up to float32 parameters).
    ours = _np_objective(w, b, x_new, x_old, C)
    theirs = _np_objective(model.coef_[0], model.intercept_[0], x_new, x_old, C)
    self.assertLessEqual(ours, theirs * (1 + 1e-5) + 1e-6)
    # The stopping rule, not the iteration cap, ended the solve.
    self.assertLess(int(_newton_iterations(pad_new, pad_old, new_mask, old_mask, C)), 50)

  def test_original_settings_and_labels(self):
    """The original's call (±1 labels, lbfgs, max_iter=2000, default tol) and its β pipeline."""
    x_new, x_old = _gaussian_classes(8, 200, 400, 16, 1.0)
    x = np.concatenate([x_new, x_old])
    y = np.r_[-np.ones(len(x_new)), np.ones(len(x_old))]
    original = LogisticRegression(solver="lbfgs", max_iter=2000, C=1.0).fit(x, y)
    w, b = _fit(x_new, x_old, C=1.0)
    # Same classifier up to scikit-learn's looser default tolerance.
    np.testing.assert_allclose(propensity.probability(w, b, x), original.predict_proba(x)[:, 0], atol=5e-3)
    np.testing.assert_allclose(propensity.log_odds(w, b, x), -original.decision_function(x), atol=5e-2)
    # The original's β from its own decision function, and ours from ours, both converged.
    converged = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(x, y)
    replay = _gaussian_classes(9, 1, 256, 16, 1.0)[1]
    want = _np_original_beta(converged.decision_function(replay), beta_clip=1.0)
    got = propensity.beta_weights(propensity.log_odds(w, b, replay), beta_clip=1.0)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)

  def test_sample_weights_match_sklearn(self):
    x_new, x_old = _gaussian_classes(10, 50, 80, 6, 1.0)
    rng = np.random.default_rng(10)
    sw_new, sw_old = rng.uniform(0, 3, 50).astype(np.float32), rng.uniform(0, 3, 80).astype(np.float32)
    x = np.concatenate([x_new, x_old]).astype(np.float64)
    y = np.r_[np.ones(50), np.zeros(80)]
    model = LogisticRegression(C=2.0, tol=1e-12, max_iter=100_000).fit(x, y, sample_weight=np.r_[sw_new, sw_old])
    w, b = _fit(x_new, x_old, C=2.0, new_mask=sw_new, old_mask=sw_old)
    got = propensity.probability(w, b, x.astype(np.float32))
    np.testing.assert_allclose(got, model.predict_proba(x)[:, 1], atol=1e-4)

  def test_masks_equal_dropping_rows(self):
    x_new, x_old = _gaussian_classes(11, 30, 50, 6, 1.0)  # the shapes of test_vmapped_fit_equals_per_task_fits
    rng = np.random.default_rng(11)
    new_mask, old_mask = rng.random(30) < 0.6, rng.random(50) < 0.4
    padded_new, padded_old = x_new.copy(), x_old.copy()
    padded_new[~new_mask] = np.nan  # padding never reaches the solve
    padded_old[~old_mask] = 1e30
    w, b = _fit(padded_new, padded_old, C=1.0, new_mask=new_mask, old_mask=old_mask)
    w_drop, b_drop = _fit(x_new[new_mask], x_old[old_mask], C=1.0)
    np.testing.assert_allclose(w, w_drop, atol=1e-5)
    np.testing.assert_allclose(b, b_drop, atol=1e-5)

  def test_vmapped_fit_equals_per_task_fits(self):
    """All test tasks in one jit(vmap): different data, valid counts and C per task."""
    tasks, n_new, n_old, dim = 4, 30, 50, 6
    data = [_gaussian_classes(20 + t, n_new, n_old, dim, 0.5 + t) for t in range(tasks)]
    x_new, x_old = np.stack([d[0] for d in data]), np.stack([d[1] for d in data])
    rng = np.random.default_rng(12)
    new_counts, old_counts = rng.integers(5, n_new + 1, tasks), rng.integers(5, n_old + 1, tasks)
    new_mask = np.arange(n_new)[None] < new_counts[:, None]
    old_mask = np.arange(n_old)[None] < old_counts[:, None]
    Cs = np.array([0.1, 1.0, 10.0, 1e3], np.float32)
    batched = jax.jit(jax.vmap(lambda a, c, ma, mc, C: propensity.fit(a, c, C=C, new_mask=ma, old_mask=mc)))
    w, b = batched(x_new, x_old, new_mask, old_mask, Cs)
    chex.assert_shape([w, b], [(tasks, dim), (tasks,)])
    for t in range(tasks):  # masks are dropped rows (test_masks_equal_dropping_rows): one compiled solve
      w_t, b_t = _fit(x_new[t], x_old[t], C=float(Cs[t]), new_mask=new_mask[t], old_mask=old_mask[t])
      p, p_t = propensity.probability(w[t], b[t], x_old[t]), propensity.probability(w_t, b_t, x_old[t])
      np.testing.assert_allclose(p, p_t, atol=1e-5)
      np.testing.assert_allclose(w[t], w_t, rtol=1e-4, atol=1e-4)

  def test_gradient_vanishes_at_the_solution(self):
    x_new, x_old = _gaussian_classes(13, 200, 400, 16, 1.0)  # the shape of test_original_settings_and_labels
    w, b = _fit(x_new, x_old, C=3.0)
    value_and_grad = jax.jit(jax.value_and_grad(functools.partial(propensity.objective, C=3.0), argnums=(0, 1)))
    value, (grad_w, grad_b) = value_and_grad(w, b, x_new, x_old)
    np.testing.assert_allclose(grad_w, 0, atol=2e-4)
    np.testing.assert_allclose(grad_b, 0, atol=2e-4)
    np.testing.assert_allclose(value, _np_objective(w, b, x_new, x_old, 3.0), rtol=1e-5)

  def test_degenerate_data_stays_finite(self):
    x_new, x_old = _gaussian_classes(14, 30, 50, 6, 1.0)
    w, b = _fit(x_new, x_old, C=1.0, new_mask=np.ones(30, bool), old_mask=np.zeros(50, bool))
    self.assertTrue(np.all(np.isfinite(w)) and np.isfinite(b) and float(b) > 5)  # P(new) → 1
    w, b = _fit(x_new, x_old, C=1.0, new_mask=np.zeros(30, bool), old_mask=np.zeros(50, bool))
    np.testing.assert_array_equal(w, 0)
    np.testing.assert_array_equal(b, 0)

  def test_argument_errors(self):
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="C must be positive"):
      propensity.fit(x, x, C=0.0)
    with pytest.raises(ValueError, match="num_iters"):
      propensity.fit(x, x, C=1.0, num_iters=0)
    with pytest.raises(AssertionError):
      propensity.fit(x, np.zeros((4, 2), np.float32), C=1.0)
    with pytest.raises(AssertionError):
      propensity.fit(x[0], x, C=1.0)
    with pytest.raises(AssertionError):
      propensity.fit(x, x, C=1.0, new_mask=np.ones(3, bool))
    with pytest.raises(AssertionError):
      propensity.log_odds(np.zeros(3), np.float32(0), np.zeros((4, 2)))
    with pytest.raises(AssertionError):
      propensity.log_odds(np.zeros(3), np.zeros(1), np.zeros((4, 3)))


# ---------------------------------------------------------------------------
# Everything with and without jit.
# ---------------------------------------------------------------------------


class VariantsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_fit_and_classifier(self):
    x_new, x_old = _gaussian_classes(30, 25, 35, 3, 1.0)
    w, b = self.variant(functools.partial(propensity.fit, C=0.5))(x_new, x_old)
    model, x = _sklearn(x_new, x_old, 0.5)
    np.testing.assert_allclose(w, model.coef_[0], atol=1e-4)
    np.testing.assert_allclose(b, model.intercept_[0], atol=1e-4)
    logits = self.variant(propensity.log_odds)(w, b, x_old)
    chex.assert_shape(logits, (35,))
    np.testing.assert_allclose(logits, model.decision_function(x_old), atol=1e-4)
    p = self.variant(propensity.probability)(w, b, x_old[0])
    chex.assert_shape(p, ())
    np.testing.assert_allclose(p, model.predict_proba(x_old[:1])[0, 1], atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_beta_weights(self):
    logits = np.linspace(-4, 4, 81).astype(np.float32)
    for beta_clip in (1.0, 1.1, 2.0):
      got = self.variant(functools.partial(propensity.beta_weights, beta_clip=beta_clip))(logits)
      np.testing.assert_allclose(got, _np_original_beta(-logits, beta_clip), rtol=1e-6)
      self.assertAlmostEqual(float(np.max(got)), np.exp(beta_clip), places=5)
      self.assertTrue(np.all((got == 0) | (got >= 0.1)))
    np.testing.assert_array_equal(got[logits < np.log(0.1) - 1e-6], 0)  # zeroed below 0.1

  @chex.variants(with_jit=True, without_jit=True)
  def test_effective_sample_size(self):
    ess = self.variant(propensity.effective_sample_size)
    rng = np.random.default_rng(31)
    beta = rng.uniform(0, 3, 64).astype(np.float32)
    want = beta.sum() ** 2 / (np.sum(beta**2) + 1e-7) / 64
    np.testing.assert_allclose(ess(beta), want, rtol=1e-6)
    np.testing.assert_allclose(ess(np.full(64, 2.7, np.float32)), 1.0, rtol=1e-6)  # all equal
    np.testing.assert_allclose(ess(np.eye(64, dtype=np.float32)[3]), 1 / 64, rtol=1e-6)  # one row dominates
    np.testing.assert_array_equal(ess(np.zeros(64, np.float32)), 0)
    mask = rng.random(64) < 0.5
    padded = np.where(mask, beta, np.float32(1e6))
    np.testing.assert_allclose(self.variant(propensity.effective_sample_size)(padded, mask), ess(beta[mask]), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_proximal_coefficient(self):
    prox = self.variant(functools.partial(propensity.proximal_coefficient, default=0.1))
    rng = np.random.default_rng(32)
    for beta in (
      rng.uniform(0, 3, 128).astype(np.float32),
      _np_original_beta(rng.normal(0, 2, 128).astype(np.float32), 1.0).astype(np.float32),
      np.full(128, 1.5, np.float32),  # ESS = 1: the original falls back to its initial coefficient
      np.zeros(128, np.float32),  # ESS = 0: coefficient 1
      np.r_[np.float32(np.nan), np.ones(127, np.float32)],  # non-finite: fallback
    ):
      np.testing.assert_allclose(prox(beta), _np_original_prox(beta, 0.1), rtol=1e-5)
    np.testing.assert_allclose(prox(np.full(128, 1.5, np.float32)), 0.1)
    np.testing.assert_allclose(prox(np.zeros(128, np.float32)), 1.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_normalized_beta(self):
    rng = np.random.default_rng(33)
    beta = _np_original_beta(rng.normal(0, 2, 32), 1.0).astype(np.float32)
    p = rng.uniform(0.05, 0.9, 32).astype(np.float32)
    want = (p.max() - p.min()) * (beta - beta.min()) / (beta.max() - beta.min() + 1e-7) + p.min()
    np.testing.assert_allclose(self.variant(propensity.normalized_beta)(beta, p), want, rtol=1e-5, atol=1e-6)
    mask = np.arange(32) < 20
    got = self.variant(propensity.normalized_beta)(beta, p, mask)
    np.testing.assert_allclose(got[:20], propensity.normalized_beta(beta[:20], p[:20]), rtol=1e-6)


def test_weight_function_shape_errors():
  with pytest.raises(AssertionError):
    propensity.effective_sample_size(np.ones((4, 2), np.float32))
  with pytest.raises(AssertionError):
    propensity.effective_sample_size(np.ones(4, np.float32), np.ones(3, bool))
  with pytest.raises(AssertionError):
    propensity.normalized_beta(np.ones(4, np.float32), np.ones(5, np.float32))


def test_adaptation_pipeline_vmaps_over_tasks_in_one_jit():
  """fit → log_odds → β → proximal coefficient for several tasks in one compiled program."""
  tasks = 3
  data = [_gaussian_classes(40 + t, 30, 50, 6, 1.0 + t) for t in range(tasks)]
  x_new, x_old = np.stack([d[0] for d in data]), np.stack([d[1] for d in data])
  replay = np.stack([_gaussian_classes(50 + t, 1, 64, 6, 1.0)[1] for t in range(tasks)])

  @jax.jit
  @jax.vmap
  def adapt(x_new, x_old, replay):
    w, b = propensity.fit(x_new, x_old, C=1.0)
    beta = propensity.beta_weights(propensity.log_odds(w, b, replay), beta_clip=1.0)
    return beta, propensity.proximal_coefficient(beta, default=0.1)

  beta, prox = adapt(x_new, x_old, replay)
  chex.assert_shape([beta, prox], [(tasks, 64), (tasks,)])
  for t in range(tasks):  # all-True masks: the compiled solve of test_vmapped_fit_equals_per_task_fits
    w, b = _fit(x_new[t], x_old[t], C=1.0, new_mask=np.ones(30, bool), old_mask=np.ones(50, bool))
    want_beta = propensity.beta_weights(propensity.log_odds(w, b, replay[t]), beta_clip=1.0)
    np.testing.assert_allclose(beta[t], want_beta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prox[t], _np_original_prox(np.asarray(want_beta), 0.1), rtol=1e-4)
