"""Tests for the baseline arms: hypergradient, line search, schedules, others.

* `schedulers.hypergradient`: SGD-HD / Adam-HD against plain NumPy
  references written from the paper's equations (float64, many minibatch
  steps), hand-built two-step cases, and exact reduction to optax.sgd /
  optax.adam / optax.adamw when the hypergradient rate is 0.
* `schedulers.line_search`: Armijo condition on the same batch, the
  γ^(1/n) growth rule, hand-computed backtracking / failure / skip cases, the
  forward-pass counter against a host-side count, convergence vs. plain SGD.
* `schedulers.baselines`: schedule values against hand-computed numbers,
  traced learning rates under vmap, schedule-free evaluation params.
* Validation errors, and every factory under jit + vmap(lr) + lax.scan with
  `value` / `grad` / `value_fn` extra args.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from schedulers import baselines
from schedulers.hypergradient import AdamHDState, SGDHDState, adam_hd, sgd_hd
from schedulers.line_search import sls_forward_passes, sls_sgd


@pytest.fixture
def x64():
  """Runs a test with float64 enabled; restores the previous setting."""
  previous = bool(jax.config.jax_enable_x64)
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", previous)


# ----------------------------------------------------------------------------
# A small logistic-regression problem with minibatches (NumPy and JAX sides).

_N, _D, _BATCH = 64, 5, 16


def _logistic_data(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(_N, _D))
  w_true = rng.normal(size=_D)
  y = (x @ w_true + 0.5 * rng.normal(size=_N) > 0).astype(np.float64)
  return x, y


def _batches(x, y, steps):
  idx = np.stack([(np.arange(_BATCH) + t * _BATCH) % _N for t in range(steps)])
  return x[idx], y[idx]


def _np_grad(w, xb, yb):
  z = xb @ w["w"] + w["b"]
  r = 1.0 / (1.0 + np.exp(-z)) - yb
  return {"w": xb.T @ r / len(yb), "b": np.mean(r)}


def _jax_loss(p, xb, yb):
  z = xb @ p["w"] + p["b"]
  return jnp.mean(jax.nn.softplus(z) - yb * z)


def _w0(dtype=np.float64):
  return {"w": np.linspace(-0.5, 0.5, _D).astype(dtype), "b": np.asarray(0.1, dtype)}


def _run_jax(tx, xs, ys, dtype):
  """Runs `tx` over the minibatches in jit + scan; stacked params and states."""
  params = jax.tree.map(lambda a: jnp.asarray(a, dtype), _w0())

  def body(carry, batch):
    p, s = carry
    xb, yb = batch
    value, grad = jax.value_and_grad(_jax_loss)(p, xb, yb)
    updates, s = tx.update(
      grad,
      s,
      p,
      value=value,
      grad=grad,
      value_fn=lambda q: _jax_loss(q, xb, yb),
    )
    p = optax.apply_updates(p, updates)
    return (p, s), (p, s)

  run = jax.jit(lambda p, s, x, y: jax.lax.scan(body, (p, s), (x, y))[1])
  batches = (jnp.asarray(xs, dtype), jnp.asarray(ys, dtype))
  return jax.device_get(run(params, tx.init(params), *batches))


# ----------------------------------------------------------------------------
# NumPy references from the paper's equations.


def _np_sgd_hd(xs, ys, lr, beta, momentum=0.0, nesterov=False):
  """SGD-HD (Baydin et al. 2018): α += β <g_t, d_{t-1}>; w -= α d_t."""
  w = _w0()
  alpha = lr
  d_prev = {k: np.zeros_like(v) for k, v in w.items()}
  buf = {k: np.zeros_like(v) for k, v in w.items()}
  ws, alphas = [], []
  for xb, yb in zip(xs, ys):
    g = _np_grad(w, xb, yb)
    alpha = alpha + beta * sum(np.sum(g[k] * d_prev[k]) for k in w)
    if momentum:
      buf = {k: momentum * buf[k] + g[k] for k in w}
      d = {k: g[k] + momentum * buf[k] for k in w} if nesterov else buf
    else:
      d = g
    w = {k: w[k] - alpha * d[k] for k in w}
    d_prev = d
    ws.append(w)
    alphas.append(alpha)
  return ws, np.asarray(alphas)


def _np_adam_hd(xs, ys, lr, beta, per, b1=0.9, b2=0.999, eps=1e-8, wd=0.0):
  """Adam-HD: α += β <g_t, m̂_{t-1}/(√v̂_{t-1}+eps) + λw> (leaf or entry)."""
  w = _w0()
  if per == "group":
    alpha = {k: lr for k in w}
  else:
    alpha = {k: np.full(np.shape(v), lr) for k, v in w.items()}
  m = {k: np.zeros_like(v) for k, v in w.items()}
  v = {k: np.zeros_like(val) for k, val in w.items()}
  d_prev = {k: np.zeros_like(val) for k, val in w.items()}
  ws, alphas = [], []
  for t, (xb, yb) in enumerate(zip(xs, ys), start=1):
    g = _np_grad(w, xb, yb)
    for k in w:
      prod = g[k] * d_prev[k]
      alpha[k] = alpha[k] + beta * (np.sum(prod) if per == "group" else prod)
    m = {k: b1 * m[k] + (1 - b1) * g[k] for k in w}
    v = {k: b2 * v[k] + (1 - b2) * g[k] ** 2 for k in w}
    d = {}
    for k in w:
      m_hat = m[k] / (1 - b1**t)
      v_hat = v[k] / (1 - b2**t)
      d[k] = m_hat / (np.sqrt(v_hat) + eps) + wd * w[k]
    w = {k: w[k] - alpha[k] * d[k] for k in w}
    d_prev = d
    ws.append(w)
    alphas.append({k: np.copy(a) for k, a in alpha.items()})
  return ws, alphas


def _assert_params_close(jax_params, np_ws, rtol=1e-5, atol=1e-9):
  for k in ("w", "b"):
    expected = np.stack([w[k] for w in np_ws])
    np.testing.assert_allclose(jax_params[k], expected, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------
# Hypergradient descent.

_STEPS = 150


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.5, True)])
def test_sgd_hd_matches_numpy_reference(x64, momentum, nesterov):
  x, y = _logistic_data()
  xs, ys = _batches(x, y, _STEPS)
  lr, beta = 0.05, 0.02
  tx = sgd_hd(lr, hypergrad_lr=beta, momentum=momentum, nesterov=nesterov)
  params, states = _run_jax(tx, xs, ys, jnp.float64)
  assert isinstance(states, SGDHDState)
  assert states.learning_rate.dtype == np.float64
  ws, alphas = _np_sgd_hd(xs, ys, lr, beta, momentum, nesterov)
  np.testing.assert_allclose(states.learning_rate, alphas, rtol=1e-5)
  _assert_params_close(params, ws)
  # The test is not vacuous: α moved well away from its initial value.
  assert np.max(np.abs(alphas - lr)) > 0.1 * lr
  np.testing.assert_array_equal(states.count, np.arange(1, _STEPS + 1))


@pytest.mark.parametrize("per", ["group", "parameter"])
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_adam_hd_matches_numpy_reference(x64, per, wd):
  x, y = _logistic_data(1)
  xs, ys = _batches(x, y, _STEPS)
  lr = 0.02
  beta = 1e-2 if per == "group" else 3e-2
  tx = adam_hd(lr, hypergrad_lr=beta, weight_decay=wd, per=per)
  params, states = _run_jax(tx, xs, ys, jnp.float64)
  assert isinstance(states, AdamHDState)
  ws, alphas = _np_adam_hd(xs, ys, lr, beta, per, wd=wd)
  for k in ("w", "b"):
    expected = np.stack([a[k] for a in alphas])
    got = states.learning_rate[k]
    if per == "group":
      assert got.shape == (_STEPS,)  # one scalar per leaf
    else:
      assert got.shape == (_STEPS,) + np.shape(_w0()[k])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert np.max(np.abs(expected - lr)) > 0.1 * lr  # α really moved
  _assert_params_close(params, ws)


def _feed(tx, grads_seq, params=None):
  params = jnp.zeros(2) if params is None else params
  state = tx.init(params)
  for g in grads_seq:
    _, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
  return state


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_sgd_hd_learning_rate_follows_gradient_alignment(momentum):
  g1 = np.array([1.0, 2.0])
  tx = sgd_hd(0.1, hypergrad_lr=0.01, momentum=momentum)
  first = _feed(tx, [g1])
  assert float(first.learning_rate) == pytest.approx(0.1)  # d_0 = 0: h = 0
  aligned = _feed(tx, [g1, g1])
  opposed = _feed(tx, [g1, -g1])
  # h_2 = <g_2, d_1> with d_1 = g_1 (the momentum buffer also equals g_1).
  assert float(aligned.learning_rate) == pytest.approx(0.1 + 0.01 * 5, rel=1e-6)
  assert float(opposed.learning_rate) == pytest.approx(0.1 - 0.01 * 5, rel=1e-6)


@pytest.mark.parametrize("per", ["group", "parameter"])
def test_adam_hd_learning_rate_follows_gradient_alignment(per):
  g1 = np.array([1.0, 2.0])
  tx = adam_hd(0.1, hypergrad_lr=0.01, per=per)
  aligned = _feed(tx, [g1, g1]).learning_rate
  opposed = _feed(tx, [g1, -g1]).learning_rate
  # u_1 = m̂_1 / (sqrt(v̂_1) + eps) = g_1 / (|g_1| + eps) ≈ (1, 1).
  expected_h = np.array(3.0) if per == "group" else g1
  np.testing.assert_allclose(aligned, 0.1 + 0.01 * expected_h, rtol=1e-5)
  np.testing.assert_allclose(opposed, 0.1 - 0.01 * expected_h, rtol=1e-5)
  assert np.all(aligned > 0.1) and np.all(opposed < 0.1)


def _trajectory(tx, steps=60):
  x, y = _logistic_data(2)
  xs, ys = _batches(x, y, steps)
  params, _ = _run_jax(optax.with_extra_args_support(tx), xs, ys, jnp.float32)
  return params


@pytest.mark.parametrize(
  "ours, theirs",
  [
    (lambda: sgd_hd(0.1, 0.0), lambda: optax.sgd(0.1)),
    (lambda: sgd_hd(0.1, 0.0, momentum=0.9), lambda: optax.sgd(0.1, momentum=0.9)),
    (lambda: sgd_hd(0.1, 0.0, momentum=0.9, nesterov=True), lambda: optax.sgd(0.1, momentum=0.9, nesterov=True)),
    (lambda: adam_hd(0.01, 0.0), lambda: optax.adam(0.01)),
    (
      lambda: adam_hd(0.01, 0.0, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1),
      lambda: optax.adamw(0.01, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1),
    ),
    (lambda: adam_hd(0.01, 0.0, weight_decay=0.1, per="parameter"), lambda: optax.adamw(0.01, weight_decay=0.1)),
  ],
)
def test_zero_hypergrad_lr_is_plain_optimizer(ours, theirs):
  got = _trajectory(ours())
  want = _trajectory(theirs())
  # The same maths as two different XLA programs: equal up to float32 rounding, since how a
  # compiler fuses them (and contracts multiply-adds) may differ by a few ulps per step.
  for k in ("w", "b"):
    np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# Stochastic line search.


def _quadratic(w):
  return 0.5 * jnp.sum(w**2)


@functools.partial(jax.jit, static_argnums=0)
def _sls_step(tx, state, w):
  value, grad = jax.value_and_grad(_quadratic)(w)
  updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=_quadratic)
  return optax.apply_updates(w, updates), state


def test_sls_hand_computed_backtracking():
  # f = ½‖w‖², u = g = w: Armijo f(w - ηw) <= f(w) - 0.1 η ‖w‖²  <=>  η <= 1.8.
  tx = sls_sgd(init_step_size=10.0, eta_max=10.0)
  w = jnp.array([1.0, -2.0, 3.0])
  new_w, state = _sls_step(tx, tx.init(w), w)
  eta = 10.0 * 0.9**17  # 10 * 0.9^16 = 1.853 > 1.8 >= 10 * 0.9^17 = 1.668
  assert int(state.num_forward_passes) == 18
  assert int(state.num_failed_searches) == 0
  assert float(state.learning_rate) == pytest.approx(eta, rel=1e-5)
  assert float(state.step_size) == pytest.approx(eta, rel=1e-5)
  np.testing.assert_allclose(new_w, (1 - eta) * w, rtol=1e-5)


def test_sls_failed_search_takes_tiny_step_and_keeps_shrunk_eta():
  tx = sls_sgd(init_step_size=10.0, eta_max=10.0, max_backtracking_steps=5)
  w = jnp.array([1.0, -2.0, 3.0])
  new_w, state = _sls_step(tx, tx.init(w), w)
  # Tries 10, 9, 8.1, 7.29, 6.561: all > 1.8, so the search fails.
  assert int(state.num_forward_passes) == 5
  assert int(state.num_failed_searches) == 1
  assert float(state.learning_rate) == pytest.approx(1e-6)
  assert float(state.step_size) == pytest.approx(10.0 * 0.9**5, rel=1e-6)
  np.testing.assert_allclose(new_w, (1 - 1e-6) * w, rtol=1e-7)
  # The next search restarts from the shrunk η (times γ^(1/n)) and, with η
  # <= 1.8 first reached 12 tries later, fails again within 5 tries.
  _, state = _sls_step(tx, state, new_w)
  assert int(state.num_failed_searches) == 2
  assert int(state.num_forward_passes) == 10
  assert float(state.step_size) == pytest.approx(10.0 * 0.9**10 * 2 ** (1 / 500), rel=1e-5)


def test_sls_skips_search_for_zero_gradient():
  tx = sls_sgd(init_step_size=0.5, gamma=2.0, n_batches_per_epoch=10)
  w = jnp.zeros(3)
  new_w, state = _sls_step(tx, tx.init(w), w)
  assert int(state.num_forward_passes) == 0
  assert float(state.learning_rate) == 0.0
  assert float(state.step_size) == pytest.approx(0.5 * 2**0.1, rel=1e-6)
  np.testing.assert_array_equal(new_w, w)


def test_sls_step_size_grows_by_gamma_per_epoch_up_to_eta_max():
  # Every η <= 1.8 is accepted at once on this quadratic: pure growth rule.
  tx = sls_sgd(init_step_size=0.01, gamma=2.0, n_batches_per_epoch=4, eta_max=0.05)
  w = jnp.array([1.0, -2.0])
  state = tx.init(w)
  eta, steps = 0.01, []
  for k in range(1, 13):
    w, state = _sls_step(tx, state, w)
    eta = min(eta * 2**0.25, 0.05)
    steps.append(eta)
    assert float(state.step_size) == pytest.approx(eta, rel=1e-5)
    assert float(state.learning_rate) == pytest.approx(eta, rel=1e-5)
    assert int(state.num_forward_passes) == k
  assert steps[-1] == 0.05 and steps[7] < 0.05  # the cap was reached


def _least_squares(seed=0, n=256, d=10):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)) * np.linspace(0.3, 3.0, d)
  w_star = rng.normal(size=d)
  return jnp.asarray(x, jnp.float32), jnp.asarray(x @ w_star, jnp.float32)


def _ls_loss(w, xb, yb):
  return 0.5 * jnp.mean((xb @ w - yb) ** 2)


def _train_ls(tx, steps, batch=32, seed=0, value_fn_wrapper=None):
  x, y = _least_squares(seed)
  n = x.shape[0]
  idx = np.stack([(np.arange(batch) + t * batch) % n for t in range(steps)])
  xs, ys = x[idx], y[idx]
  wrap = value_fn_wrapper or (lambda f: f)

  def body(carry, batch_xy):
    w, s = carry
    xb, yb = batch_xy
    value, grad = jax.value_and_grad(_ls_loss)(w, xb, yb)
    updates, s = tx.update(grad, s, w, value=value, grad=grad, value_fn=wrap(lambda q: _ls_loss(q, xb, yb)))
    new_w = optax.apply_updates(w, updates)
    after = _ls_loss(new_w, xb, yb)
    gnorm2 = jnp.sum(grad**2)
    return (new_w, s), (value, after, gnorm2, s)

  w0 = jnp.zeros(x.shape[1], jnp.float32)
  (w, state), trace = jax.jit(lambda w0, s0: jax.lax.scan(body, (w0, s0), (xs, ys)))(w0, tx.init(w0))
  return w, state, jax.device_get(trace), float(_ls_loss(w, x, y))


def test_sls_accepted_steps_satisfy_armijo_on_the_same_batch():
  c = 0.1
  tx = sls_sgd(init_step_size=1.0, c=c, n_batches_per_epoch=8)
  _, state, (before, after, gnorm2, states), _ = _train_ls(tx, 80)
  failed = np.diff(np.concatenate([[0], states.num_failed_searches])) > 0
  accepted = (~failed) & (states.learning_rate > 0)
  assert accepted.sum() >= 75
  lr = states.learning_rate
  slack = before - c * lr * gnorm2 - after
  assert np.all(slack[accepted] >= -1e-6 * np.abs(before[accepted]))
  # Backtracking did happen (more evaluations than steps).
  assert int(state.num_forward_passes) > 80


def test_sls_forward_pass_counter_matches_host_count():
  calls = []

  def counted(f):
    def g(w):
      jax.debug.callback(lambda: calls.append(1))
      return f(w)

    return g

  tx = optax.chain(optax.identity(), sls_sgd(init_step_size=5.0, n_batches_per_epoch=4))
  _, state, (_, _, _, states), _ = _train_ls(tx, 40, value_fn_wrapper=counted)
  jax.effects_barrier()
  per_step = np.asarray(sls_forward_passes(states))
  assert per_step.shape == (40,)
  assert int(sls_forward_passes(state)) == len(calls) == per_step[-1]
  assert per_step[-1] > 40  # the large initial step forced backtracking
  assert int(sls_forward_passes(optax.sgd(0.1).init(jnp.zeros(2)))) == 0


def test_sls_converges_faster_than_badly_tuned_sgd():
  steps = 150
  _, _, _, sls_loss = _train_ls(sls_sgd(n_batches_per_epoch=8), steps)
  _, _, _, sgd_loss = _train_ls(optax.with_extra_args_support(optax.sgd(1e-3)), steps)
  x, y = _least_squares(0)
  start = float(_ls_loss(jnp.zeros(x.shape[1]), x, y))
  assert sls_loss < 1e-2 * start
  assert sls_loss < 0.1 * sgd_loss


# ----------------------------------------------------------------------------
# Schedules.

_T = 1000
_COUNTS = (0, 50, 500, 750, 1000)  # 0, 5%, 50%, 75%, 100%
_c = lambda frac: 0.5 * (1 + math.cos(math.pi * frac))
_EXPECTED = {
  "constant": [1.0, 1.0, 1.0, 1.0, 1.0],
  "step": [1.0, 1.0, 0.1, 0.01, 0.01],
  "linear": [1.0, 0.95, 0.5, 0.25, 0.0],
  "cosine": [1.0, _c(0.05), 0.5, _c(0.75), 0.0],
  # 50 warmup steps from 0, then cosine over the remaining 950.
  "cosine_warmup": [0.0, 1.0, _c(450 / 950), _c(700 / 950), 0.0],
  "polynomial": [1.0, 0.95**2, 0.25, 0.0625, 0.0],
  "exponential": [1.0, 0.01**0.05, 0.1, 0.01**0.75, 0.01],
}


def test_schedule_kinds_are_all_tested():
  assert set(_EXPECTED) == set(baselines.SCHEDULE_KINDS)


@pytest.mark.parametrize("kind", sorted(_EXPECTED))
def test_schedule_values(kind):
  lr = 0.3
  sched = baselines.make_schedule(kind, lr, _T)
  got = [float(sched(c)) for c in _COUNTS]
  np.testing.assert_allclose(got, lr * np.array(_EXPECTED[kind]), rtol=1e-5, atol=1e-7)
  # Past the budget the final value is kept; jit and int32 counts work.
  jitted = jax.jit(sched)
  assert float(jitted(jnp.int32(5 * _T))) == pytest.approx(lr * _EXPECTED[kind][-1], abs=1e-7)


def test_schedule_step_boundaries_and_warmup_ramp():
  sched = baselines.make_schedule("step", 1.0, 10)
  np.testing.assert_allclose([float(sched(c)) for c in (4, 5, 6, 7, 8)], [1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)
  warm = baselines.make_schedule("cosine_warmup", 2.0, 1000)
  np.testing.assert_allclose([float(warm(c)) for c in (0, 10, 25, 49)], [0.0, 0.4, 1.0, 1.96], rtol=1e-6)


@pytest.mark.parametrize("kind", baselines.SCHEDULE_KINDS)
def test_schedule_traced_lr_under_vmap(kind):
  lrs = jnp.array([1e-3, 1e-2, 0.1, 1.0])
  counts = jnp.arange(0, _T + 1, 50)
  values = jax.jit(jax.vmap(lambda lr: jax.vmap(baselines.make_schedule(kind, lr, _T))(counts)))(lrs)
  base = jax.vmap(baselines.make_schedule(kind, 1.0, _T))(counts)
  # float32 rounding is relative to the peak rate, not to a decayed value near 0 (jax 0.10's XLA rounds the
  # last decayed values differently from jax 0.9's), so compare in units of each row's rate.
  np.testing.assert_allclose(values / lrs[:, None], np.broadcast_to(base, values.shape), rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------
# Schedule-free and reduce-on-plateau.


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_schedule_free_eval_params_match_optax(name):
  tx = optax.chain(optax.clip_by_global_norm(10.0), baselines.make_schedule_free(name, 0.05, total_steps=40))
  x, y = _logistic_data(3)
  xs, ys = _batches(x, y, 12)
  params_seq, states = _run_jax(tx, xs, ys, jnp.float32)
  params = jax.tree.map(lambda a: a[-1], params_seq)
  state = jax.tree.map(lambda a: a[-1], states)
  got = baselines.schedule_free_eval_params(state, params)
  want = optax.contrib.schedule_free_eval_params(state[1], params)
  for k in ("w", "b"):
    np.testing.assert_array_equal(got[k], want[k])
    assert not np.allclose(got[k], params[k])  # x differs from y
  # No schedule-free state: identity.
  plain = optax.sgd(0.1)
  plain_state = plain.init(params)
  assert baselines.schedule_free_eval_params(plain_state, params) is params


def test_schedule_free_sgd_equals_optax_with_five_percent_warmup():
  ours = baselines.make_schedule_free("sgd", 0.05, total_steps=200)
  theirs = optax.contrib.schedule_free_sgd(0.05, warmup_steps=10)
  x, y = _logistic_data(4)
  xs, ys = _batches(x, y, 15)
  got, _ = _run_jax(ours, xs, ys, jnp.float32)
  want, _ = _run_jax(theirs, xs, ys, jnp.float32)
  for k in ("w", "b"):
    np.testing.assert_array_equal(got[k], want[k])


def _projected_sf_run(tx, target, steps, project):
  """Trainer-style loop on f(y) = 0.5 ||y - target||^2: y <- P(y + u)."""
  y = jnp.abs(target) * 0.5
  state = tx.init(y)
  for _ in range(steps):
    updates, state = tx.update(y - target, state, y)
    y = project(y + updates)
  return y, state


def test_project_schedule_free_matches_numpy_projected_reference():
  target = jnp.array([1.0, -2.0, 0.5, -0.1, 3.0])
  lr, b1, steps = 0.3, 0.9, 25
  relu = lambda t: jax.tree.map(lambda a: jnp.maximum(a, 0.0), t)
  tx = baselines.project_schedule_free(optax.contrib.schedule_free_sgd(lr, b1=b1), relu)
  y, state = _projected_sf_run(tx, target, steps, relu)
  x = baselines.schedule_free_eval_params(state, y)
  # Reference: z <- P(z - lr g(y)); x <- x + (z - x) / (t + 1) (constant lr:
  # equal weights); y <- b1 x + (1 - b1) z.
  t_np = np.asarray(target, np.float64)
  z_ref = x_ref = y_ref = np.abs(t_np) * 0.5
  for t in range(steps):
    z_ref = np.maximum(z_ref - lr * (y_ref - t_np), 0.0)
    x_ref = x_ref + (z_ref - x_ref) / (t + 1)
    y_ref = b1 * x_ref + (1 - b1) * z_ref
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(optax.tree.get(state, "z"), z_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(x, x_ref, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(x) >= 0)
  optimum = np.maximum(t_np, 0.0)
  assert np.max(np.abs(x - optimum)) < 0.2
  # Without the wrapper, projecting y alone lets z run off (negative) and
  # x = (y - (1 - b1) z) / b1 away from the constrained optimum.
  y_bad, state_bad = _projected_sf_run(optax.contrib.schedule_free_sgd(lr, b1=b1), target, steps, relu)
  assert np.min(optax.tree.get(state_bad, "z")) < -1.0
  assert np.max(np.abs(baselines.schedule_free_eval_params(state_bad, y_bad) - optimum)) > 1.0


def test_project_schedule_free_is_identity_without_schedule_free_or_projection():
  target = jnp.array([1.0, -2.0, 0.5])
  ident = lambda t: t
  for inner in (optax.contrib.schedule_free_adamw(0.1, warmup_steps=3), optax.adamw(0.1)):
    got, got_state = _projected_sf_run(baselines.project_schedule_free(inner, ident), target, 7, ident)
    want, want_state = _projected_sf_run(inner, target, 7, ident)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got_state, want_state)
  relu = lambda t: jnp.maximum(t, 0.0)
  tx = baselines.project_schedule_free(optax.adamw(0.1), relu)  # no schedule-free state
  got, _ = _projected_sf_run(tx, target, 7, relu)
  want, _ = _projected_sf_run(optax.adamw(0.1), target, 7, relu)
  np.testing.assert_array_equal(got, want)


def test_reduce_on_plateau_defaults_and_reduction():
  tx = baselines.reduce_on_plateau(baselines.make_base_optimizer("sgd", 1.0), total_steps=500)
  rop = tx.init(jnp.zeros(2))[1]
  assert isinstance(rop, optax.contrib.ReduceLROnPlateauState)
  params, grads = jnp.zeros(2), jnp.ones(2)

  def body(s, v):
    u, s = tx.update(grads, s, params, value=v)
    return s, u

  # A constant loss never improves: after the first decision, 10 plateau
  # decisions of 5 losses each halve the scale.
  values = jnp.ones(5 * 12)
  _, updates = jax.jit(lambda s: jax.lax.scan(body, s, values))(tx.init(params))
  scales = -np.asarray(updates)[:, 0]
  np.testing.assert_allclose(scales[: 5 * 11 - 1], 1.0)
  np.testing.assert_allclose(scales[5 * 11 - 1 :], 0.5)


# ----------------------------------------------------------------------------
# Validation.


@pytest.mark.parametrize(
  "make, match",
  [
    (lambda: sgd_hd(-0.1), "learning_rate"),
    (lambda: sgd_hd(float("nan")), "learning_rate"),
    (lambda: sgd_hd(optax.constant_schedule(0.1)), "schedule"),
    (lambda: sgd_hd(jnp.ones(2)), "scalar"),
    (lambda: sgd_hd(0.1, hypergrad_lr=-1e-3), "hypergrad_lr"),
    (lambda: sgd_hd(0.1, momentum=1.0), "momentum"),
    (lambda: sgd_hd(0.1, nesterov=True), "nesterov"),
    (lambda: adam_hd(0.1, per="layer"), "per"),
    (lambda: adam_hd(-1.0), "learning_rate"),
    (lambda: adam_hd(0.1, hypergrad_lr=-1.0), "hypergrad_lr"),
    (lambda: adam_hd(0.1, b1=1.0), "b1"),
    (lambda: adam_hd(0.1, b2=-0.1), "b2"),
    (lambda: adam_hd(0.1, eps=-1.0), "eps"),
    (lambda: adam_hd(0.1, weight_decay=-0.1), "weight_decay"),
    (lambda: sls_sgd(init_step_size=0.0), "init_step_size"),
    (lambda: sls_sgd(c=1.0), "c must"),
    (lambda: sls_sgd(beta_b=1.0), "beta_b"),
    (lambda: sls_sgd(gamma=0.5), "gamma"),
    (lambda: sls_sgd(n_batches_per_epoch=0), "n_batches_per_epoch"),
    (lambda: sls_sgd(eta_max=0.0), "eta_max"),
    (lambda: sls_sgd(max_backtracking_steps=0), "max_backtracking_steps"),
    (lambda: sls_sgd(max_backtracking_steps=2.5), "max_backtracking_steps"),
    (lambda: sls_sgd(failure_step_size=-1.0), "failure_step_size"),
    (lambda: baselines.make_schedule("sgdr", 0.1, 100), "kind"),
    (lambda: baselines.make_schedule("cosine", 0.1, 0), "total_steps"),
    (lambda: baselines.make_schedule("cosine", 0.1, 100.0), "total_steps"),
    (lambda: baselines.make_schedule("cosine", -0.1, 100), "learning_rate"),
    (lambda: baselines.make_base_optimizer("adam", 0.1), "name"),
    (lambda: baselines.make_base_optimizer("sgd", -0.1), "learning_rate"),
    (lambda: baselines.make_base_optimizer("momentum", 0.1, momentum=1.0), "momentum"),
    (lambda: baselines.make_base_optimizer("adamw", 0.1, weight_decay=-1.0), "weight_decay"),
    (lambda: baselines.reduce_on_plateau(optax.sgd(0.1)), "total_steps"),
    (lambda: baselines.reduce_on_plateau(optax.sgd(0.1), total_steps=100, factor=1.0), "factor"),
    (lambda: baselines.reduce_on_plateau(optax.sgd(0.1), total_steps=100, min_scale=2.0), "min_scale"),
    (lambda: baselines.make_schedule_free("adam", 0.1), "name"),
    (lambda: baselines.make_schedule_free("sgd", 0.1, b1=0.0), "b1"),
    (lambda: baselines.make_schedule_free("sgd", 0.1, 100, warmup_percent=101), "warmup_percent"),
  ],
)
def test_invalid_hyperparameters_raise(make, match):
  with pytest.raises(ValueError, match=match):
    make()


def test_traced_hyperparameters_are_not_validated():
  # A negative traced lr is not checked (it cannot be): no error at trace time.
  @jax.jit
  def f(lr):
    tx = sgd_hd(lr, hypergrad_lr=lr)
    return tx.init(jnp.zeros(2)).learning_rate

  assert float(f(-1.0)) == -1.0


# ----------------------------------------------------------------------------
# Every factory under jit + vmap(lr) + scan, with the trainer's extra args.

_TOTAL = 6
_FACTORIES = {
  "sgd_hd": lambda lr: sgd_hd(lr, 1e-3),
  "sgd_hd_nesterov": lambda lr: sgd_hd(lr, 1e-3, momentum=0.9, nesterov=True),
  "adam_hd_group": lambda lr: adam_hd(lr, 1e-6),
  "adam_hd_parameter": lambda lr: adam_hd(lr, 1e-6, weight_decay=1e-2, per="parameter"),
  "sls": lambda lr: sls_sgd(init_step_size=lr, n_batches_per_epoch=3),
  "plateau": lambda lr: baselines.reduce_on_plateau(baselines.make_base_optimizer("adamw", lr), total_steps=_TOTAL),
  "schedule_free_sgd": lambda lr: baselines.make_schedule_free("sgd", lr, _TOTAL),
  "schedule_free_adamw": lambda lr: baselines.make_schedule_free("adamw", lr, _TOTAL),
  **{
    f"{name}_{kind}": (
      lambda lr, name=name, kind=kind: baselines.make_base_optimizer(name, baselines.make_schedule(kind, lr, _TOTAL))
    )
    for name, kind in [("sgd", "exponential"), ("momentum", "step"), ("adamw", "cosine_warmup")]
  },
  "adamw_scalar": lambda lr: baselines.make_base_optimizer("adamw", lr),
}


@pytest.mark.parametrize("name", sorted(_FACTORIES))
def test_factories_under_jit_vmap_scan_with_extra_args(name):
  x, y = _least_squares(5, n=64, d=4)
  lrs = jnp.array([1e-3, 1e-2, 3e-2, 1e-1])

  def run(lr):
    tx = optax.with_extra_args_support(_FACTORIES[name](lr))
    w0 = jnp.zeros(4)

    def body(carry, i):
      w, s = carry
      xb = jax.lax.dynamic_slice_in_dim(x, 16 * (i % 4), 16)
      yb = jax.lax.dynamic_slice_in_dim(y, 16 * (i % 4), 16)
      value, grad = jax.value_and_grad(_ls_loss)(w, xb, yb)
      updates, s = tx.update(grad, s, w, value=value, grad=grad, value_fn=lambda q: _ls_loss(q, xb, yb))
      return (optax.apply_updates(w, updates), s), value

    (w, s), values = jax.lax.scan(body, (w0, tx.init(w0)), jnp.arange(_TOTAL))
    return w, values, sls_forward_passes(s)

  w, values, passes = jax.jit(jax.vmap(run))(lrs)
  assert w.shape == (4, 4) and values.shape == (4, _TOTAL)
  assert np.all(np.isfinite(w)) and np.all(np.isfinite(values))
  # Distinct learning rates give distinct runs (the traced lr is used).
  assert len({tuple(np.round(np.asarray(r), 7)) for r in w}) == 4
  assert np.all(np.asarray(passes) >= (_TOTAL if name == "sls" else 0))
