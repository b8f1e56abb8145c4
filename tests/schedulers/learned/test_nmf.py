"""Tests of stochastic NMF and its stability bound (`schedulers.learned.nmf`).

Maths against autodiff and NumPy references (gradients, the Hessian bound),
exact unbiasedness and variance by enumerating every minibatch of a tiny
problem, power iteration against `np.linalg.norm(., 2)`, an empirical check of
the bound on random instances (0.5 η_max lowers the expected loss, 32 η_max
blows it up) and vmapped training against a loop.
"""

import functools
import itertools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from schedulers.learned import nmf


def tiny_point(seed, m=5, n=7, r=2, shift=0.0):
  """A random problem and a random (not stationary) point, some entries at 0."""
  rng = np.random.default_rng(seed)
  v = rng.random((m, n)).astype(np.float32)
  w = np.maximum(rng.normal(0.5, 0.5, (m, r)), 0.0).astype(np.float32) + shift
  h = np.maximum(rng.normal(0.5, 0.5, (r, n)), 0.0).astype(np.float32) + shift
  return nmf.NMFProblem(v=jnp.asarray(v)), nmf.Factors(w=jnp.asarray(w), h=jnp.asarray(h))


def numpy_gradient(v, w, h, cols=None):
  """Reference ∇ of ½‖V_B − W H_B‖² / (m |B|) in float64 (B = all columns by default)."""
  v, w, h = (np.asarray(x, np.float64) for x in (v, w, h))
  cols = np.arange(v.shape[1]) if cols is None else np.asarray(cols)
  r = w @ h[:, cols] - v[:, cols]
  scale = 1.0 / r.size
  g_h = np.zeros_like(h)
  g_h[:, cols] = scale * w.T @ r
  return scale * r @ h[:, cols].T, g_h


def test_gradients_match_autodiff_and_numpy():
  problem, factors = tiny_point(0)
  g = nmf.gradient(problem, factors)
  auto = jax.grad(lambda f: nmf.loss(problem, f))(factors)
  ref_w, ref_h = numpy_gradient(problem.v, factors.w, factors.h)
  for ours, theirs, ref in zip(g, auto, (ref_w, ref_h)):
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
  cols = jnp.array([4, 1, 6])
  gb = nmf.minibatch_gradient(problem, factors, cols)
  auto_b = jax.grad(lambda f: nmf.minibatch_loss(problem, f, cols))(factors)
  ref_b = numpy_gradient(problem.v, factors.w, factors.h, cols)
  for ours, theirs, ref in zip(gb, auto_b, ref_b):
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
  # The loss itself, and the SGD step = projection of the dense minibatch step.
  v, w, h = (np.asarray(x, np.float64) for x in (problem.v, factors.w, factors.h))
  np.testing.assert_allclose(nmf.loss(problem, factors), 0.5 * np.mean((w @ h - v) ** 2), rtol=1e-6)
  stepped = nmf.sgd_step(problem, factors, cols, jnp.float32(0.7))
  np.testing.assert_allclose(stepped.w, np.maximum(w - 0.7 * ref_b[0], 0), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(stepped.h, np.maximum(h - 0.7 * ref_b[1], 0), rtol=1e-5, atol=1e-7)


def all_minibatches(n, b):
  return jnp.asarray(list(itertools.combinations(range(n), b)), jnp.int32)


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_minibatch_gradient_unbiased_and_its_variance_exact(batch_size):
  """Averaging over *every* b-subset of columns: E g̃ = ∇f, Var g̃ = gradient_noise, E minibatch_noise = it."""
  problem, factors = tiny_point(1)
  subsets = all_minibatches(7, batch_size)
  grads = jax.vmap(lambda c: nmf.minibatch_gradient(problem, factors, c))(subsets)
  full = nmf.gradient(problem, factors)
  noise = nmf.gradient_noise(problem, factors, batch_size)
  for g, f, s in zip(grads, full, noise):
    np.testing.assert_allclose(g.mean(0), f, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(g.var(0), s, rtol=2e-3, atol=1e-8)
  if batch_size >= 2:
    estimates = jax.vmap(lambda c: nmf.minibatch_noise(problem, factors, c))(subsets)
    for e, s in zip(estimates, noise):
      np.testing.assert_allclose(e.mean(0), s, rtol=2e-3, atol=1e-8)
  losses = jax.vmap(lambda c: nmf.minibatch_loss(problem, factors, c))(subsets)
  np.testing.assert_allclose(losses.mean(), nmf.loss(problem, factors), rtol=1e-5)


def test_sampled_minibatches_are_distinct_uniform_and_unbiased():
  problem, factors = tiny_point(2, n=12)
  keys = jax.random.split(jax.random.key(0), 4000)
  cols = jax.vmap(lambda k: nmf.sample_columns(k, 12, 4))(keys)
  assert cols.shape == (4000, 4) and cols.dtype == jnp.int32
  assert all(len(set(row)) == 4 for row in np.asarray(cols))
  counts = np.bincount(np.asarray(cols).ravel(), minlength=12) / 4000
  np.testing.assert_allclose(counts, 4 / 12, atol=0.03)
  grads = jax.vmap(lambda c: nmf.minibatch_gradient(problem, factors, c))(cols)
  noise = nmf.gradient_noise(problem, factors, 4)
  for g, f, s in zip(grads, nmf.gradient(problem, factors), noise):
    se = np.sqrt(np.asarray(s) / 4000)
    assert np.all(np.abs(np.asarray(g.mean(0) - f)) <= 5 * se + 1e-7)


def test_hessian_bound_holds_and_is_not_loose():
  """‖∇²f‖₂ ≤ (‖W‖₂² + ‖H‖₂² + ‖R‖₂)/(mn) ≤ lipschitz_bound(·, ‖R‖_F), at random points."""
  for seed in range(6):
    problem, factors = tiny_point(10 + seed, shift=0.3 * (seed % 2))
    flat, unravel = jax.flatten_util.ravel_pytree(factors)
    hess = jax.hessian(lambda x, p=problem, u=unravel: nmf.loss(p, u(x)))(flat)
    h_norm = np.max(np.abs(np.linalg.eigvalsh(np.asarray(hess, np.float64))))
    w, h, v = (np.asarray(x, np.float64) for x in (factors.w, factors.h, problem.v))
    sw, sh = np.linalg.norm(w, 2) ** 2, np.linalg.norm(h, 2) ** 2
    r = w @ h - v
    spectral = (sw + sh + np.linalg.norm(r, 2)) / v.size
    frob = nmf.lipschitz_bound(sw, sh, np.sqrt(2 * v.size * float(nmf.loss(problem, factors))), v.size)
    assert h_norm <= spectral * (1 + 1e-5) <= frob * (1 + 1e-5)
    assert h_norm >= max(sw, sh) / v.size * (1 - 1e-5)  # the lower bound from D = (dW, 0)


def test_power_iteration_matches_numpy():
  rng = np.random.default_rng(3)
  mats = rng.random((4, 30, 6)).astype(np.float32)
  true = np.linalg.norm(mats.astype(np.float64), 2, axis=(1, 2)) ** 2
  ones = jnp.ones((4, 6))
  cold = jax.vmap(lambda a, v: nmf.power_iteration(a, v, 30))
  est, vec = cold(jnp.asarray(mats), ones)
  np.testing.assert_allclose(est, true, rtol=1e-5)
  for k in (0, 1, 2, 5):  # a Rayleigh quotient: never above the truth
    est_k, _ = jax.vmap(lambda a, v, k=k: nmf.power_iteration(a, v, k))(jnp.asarray(mats), ones)
    assert np.all(np.asarray(est_k) <= true * (1 + 1e-5))
  # Warm start: after a small perturbation, 2 iterations from the last vector suffice.
  moved = mats * (1 + 0.05 * rng.standard_normal(mats.shape).astype(np.float32))
  true_moved = np.linalg.norm(moved.astype(np.float64), 2, axis=(1, 2)) ** 2
  warm, _ = jax.vmap(lambda a, v: nmf.power_iteration(a, v, 2))(jnp.asarray(moved), vec)
  np.testing.assert_allclose(warm, true_moved, rtol=1e-4)
  # init_power: both factors' vectors.
  problem, factors = tiny_point(4, m=20, n=30, r=3, shift=0.1)
  power = nmf.init_power(factors, 30)
  sq_w, _ = nmf.power_iteration(factors.w, power.w, 0)
  sq_h, _ = nmf.power_iteration(factors.h.T, power.h, 0)
  np.testing.assert_allclose(sq_w, np.linalg.norm(np.asarray(factors.w, np.float64), 2) ** 2, rtol=1e-5)
  np.testing.assert_allclose(sq_h, np.linalg.norm(np.asarray(factors.h, np.float64), 2) ** 2, rtol=1e-5)


def test_bound_formula_and_clip():
  problem, factors = tiny_point(5, m=12, n=16, r=3, shift=0.1)
  stats = nmf.exact_bound_stats(problem, factors, nmf.init_power(factors, 30), batch_size=4, num_iters=2)
  g = nmf.projected_gradient(factors, nmf.gradient(problem, factors))
  noise = nmf.gradient_noise(problem, factors, 4)
  free = [(np.asarray(x) > 0) | (np.asarray(gg) < 0) for x, gg in zip(factors, nmf.gradient(problem, factors))]
  grad_sq = sum(float(jnp.sum(x**2)) for x in g)
  noise_sq = sum(float(np.sum(np.asarray(s)[f])) for s, f in zip(noise, free))
  w, h = (np.asarray(x, np.float64) for x in factors)
  mn = problem.v.size
  lip = (np.linalg.norm(w, 2) ** 2 + np.linalg.norm(h, 2) ** 2 + np.sqrt(2 * mn * float(stats.loss))) / mn
  np.testing.assert_allclose(stats.grad_sq, grad_sq, rtol=1e-5)
  np.testing.assert_allclose(stats.noise_sq, noise_sq, rtol=1e-5)
  np.testing.assert_allclose(stats.lipschitz, lip, rtol=1e-4)
  np.testing.assert_allclose(stats.eta_max, 2 / lip * grad_sq / (grad_sq + noise_sq), rtol=1e-4)
  np.testing.assert_allclose(nmf.stability_bound(problem, factors, batch_size=4), stats.eta_max, rtol=1e-4)
  # Full batch: no noise, the bound is 2/L.
  full = nmf.stability_bound(problem, factors, batch_size=16)
  np.testing.assert_allclose(full, 2 / lip, rtol=1e-4)
  assert float(nmf.clip_lr(3.0, 2.0, 0.9)) == pytest.approx(1.8)
  assert float(nmf.clip_lr(1.0, 2.0, 0.9)) == 1.0


def test_problems_and_init():
  key = jax.random.key(0)
  problem = nmf.make_problem(key, 30, 40, 4, 0.1)
  assert problem.v.shape == (30, 40) and problem.v.dtype == jnp.float32
  assert float(problem.v.min()) >= 0 and float(problem.v.mean()) == pytest.approx(1.0, rel=1e-5)
  np.testing.assert_array_equal(problem.v, nmf.make_problem(key, 30, 40, 4, 0.1).v)
  factors = nmf.init_factors(jax.random.key(1), problem, 4)
  a = np.sqrt(float(problem.v.mean()) / 4)
  for x in factors:
    assert float(x.min()) >= 0 and float(x.max()) <= a
    assert float(x.mean()) == pytest.approx(a / 2, rel=0.1)
  digits = nmf.digits_problem()
  assert digits.v.shape == (64, 1797) and float(digits.v.min()) == 0.0 and float(digits.v.max()) == 1.0


SCHEDULE_CASES = [
  (nmf.constant(2.0), lambda t, e: 2.0),
  (nmf.step_decay(2.0, every=3, factor=0.5), lambda t, e: 2.0 * 0.5 ** (t // 3)),
  (nmf.exponential(2.0, rate=0.9), lambda t, e: 2.0 * 0.9**t),
  (
    nmf.cosine(2.0, num_steps=8, final_fraction=0.1),
    lambda t, e: 2.0 * (0.1 + 0.45 * (1 + np.cos(np.pi * min(t, 8) / 8))),
  ),
  (nmf.bound_fraction(0.7), lambda t, e: 0.7 * e),
]


@pytest.mark.parametrize("case", range(len(SCHEDULE_CASES)))
def test_schedules(case):
  schedule, reference = SCHEDULE_CASES[case]
  for t in (0, 1, 5, 9, 12):
    np.testing.assert_allclose(schedule(jnp.int32(t), jnp.float32(3.0)), reference(t, 3.0), rtol=1e-6)


# --- Empirical check of the bound on random instances. ------------------------

M, N, RANK, BATCH = 48, 64, 6, 8
NUM_DRAWS = 1024
MULTIPLES = (0.5, 32.0)


@functools.cache
def bound_check():
  """For 3 instances, at init and after 200 steps at 0.5 η_max: E f(x⁺)/f(x) − 1 at each multiple of η_max."""

  @jax.jit
  def run(key):
    kp, ki, kt, kd = jax.random.split(key, 4)
    problem = nmf.make_problem(kp, M, N, RANK, 0.1)
    start = nmf.init_factors(ki, problem, RANK)
    trained = nmf.train(problem, start, nmf.bound_fraction(0.5), key=kt, num_steps=200, batch_size=BATCH).factors
    draws = jax.vmap(lambda k: nmf.sample_columns(k, N, BATCH))(jax.random.split(kd, NUM_DRAWS))
    rows = []
    for factors in (start, trained):
      eta_max = nmf.stability_bound(problem, factors, batch_size=BATCH)
      f0 = nmf.loss(problem, factors)
      for mult in MULTIPLES:
        lr = mult * eta_max
        after = jax.vmap(lambda c, x=factors, lr=lr: nmf.loss(problem, nmf.sgd_step(problem, x, c, lr)))(draws)
        change = after / f0 - 1.0
        rows.append(jnp.stack([change.mean(), change.std() / np.sqrt(NUM_DRAWS)]))
    # Multi-step: a constant rate of 32 η_max(0) from the init.
    eta0 = nmf.stability_bound(problem, start, batch_size=BATCH)
    blown = nmf.train(problem, start, nmf.constant(32.0 * eta0), key=kt, num_steps=30, batch_size=BATCH).loss
    return jnp.stack(rows).reshape(2, len(MULTIPLES), 2), blown

  return [run(jax.random.key(seed)) for seed in range(3)]


def test_half_the_bound_lowers_the_expected_loss():
  for rows, _ in bound_check():
    for point in range(2):
      mean, se = np.asarray(rows[point, 0])
      assert mean + 3 * se < 0, (point, mean, se)


def test_far_above_the_bound_the_loss_blows_up():
  for rows, blown in bound_check():
    for point in range(2):
      mean, _ = np.asarray(rows[point, 1])
      assert mean > 0.1, (point, mean)  # one step at 32 η_max raises the expected loss by > 10%
    assert np.asarray(rows[0, 1, 0]) > 100  # at init: by > 100x
    blown = np.asarray(blown)
    assert not np.all(np.isfinite(blown)) or np.max(blown) > 1e6 * blown[0]
    assert np.nanmin(blown[10:]) >= blown[0]  # and never recovers (the factors overflow, then project to 0)


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
def test_train_vmapped_equals_a_loop_and_respects_the_clip():
  keys = jax.random.split(jax.random.key(7), 3)
  problems = jax.vmap(lambda k: nmf.make_problem(k, 16, 24, 3, 0.1))(keys)
  factors = jax.vmap(lambda k, p: nmf.init_factors(k, p, 3))(keys, problems)
  run_keys = jax.random.split(jax.random.key(8), 3)
  schedule = nmf.step_decay(20.0, every=10, factor=0.5)

  @jax.jit
  def one(problem, factors, key):
    return nmf.train(problem, factors, schedule, key=key, num_steps=40, batch_size=6, clip_c=0.9)

  batched = jax.jit(jax.vmap(one))(problems, factors, run_keys)
  assert batched.loss.shape == (3, 41) and batched.lr.shape == (3, 40) and batched.eta_max.shape == (3, 40)
  for i in range(3):
    take = functools.partial(lambda i, x: x[i], i)
    single = one(*jax.tree.map(take, (problems, factors, run_keys)))
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(jax.tree.map(take, batched))):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)
  assert np.all(np.asarray(batched.lr) <= 0.9 * np.asarray(batched.eta_max) * (1 + 1e-6))
  assert np.all(np.asarray(batched.loss[:, -1]) < np.asarray(batched.loss[:, 0]))
  # The loss curve is the full loss before each step and after the last.
  np.testing.assert_allclose(batched.loss[:, -1], jax.vmap(nmf.loss)(problems, batched.factors), rtol=1e-6)


def test_digits_trains():
  problem = nmf.digits_problem(200)
  factors = nmf.init_factors(jax.random.key(0), problem, 8)
  result = jax.jit(
    lambda p, f: nmf.train(p, f, nmf.bound_fraction(0.9), key=jax.random.key(1), num_steps=60, batch_size=20)
  )(problem, factors)
  loss = np.asarray(result.loss)
  assert np.all(np.isfinite(loss)) and loss[-1] < 0.5 * loss[0]
