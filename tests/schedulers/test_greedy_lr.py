"""Tests for schedulers.greedy_lr and schedulers.per_eval.

The main check runs `schedulers.greedy_lr` and the independent plain-Python
reference (`greedy_lr_reference.GreedyLRReference`, written from the Hugging
Face GreedyLR semantics) side by side and requires identical trajectories.

Compilation dominates the runtime, so most tests go through one cached,
jitted runner per static configuration (`smooth`, `window_size`, `mode`,
`threshold_mode`, dtype) that takes every numeric hyperparameter as a traced
array and vmaps over a fixed-size batch of padded value sequences.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import schedulers


def _load_reference():
  """Imports greedy_lr_reference whatever the import mode and sys.path."""
  try:
    from tests.schedulers import greedy_lr_reference  # pylint: disable=g-import-not-at-top

    return greedy_lr_reference
  except ImportError:
    path = pathlib.Path(__file__).with_name("greedy_lr_reference.py")
    name = "tests.schedulers.greedy_lr_reference"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


Reference = _load_reference().GreedyLRReference

_ULPS = 1e-13  # relative tolerance for "a few float64 ulps"
_FIELDS_INT = ("num_good", "num_bad", "cooldown_count", "warmup_count", "reset_count", "acc_count")
_HP_FLOAT = ("factor", "threshold", "min_scale", "max_scale", "eps")
_HP_INT = ("patience", "cooldown", "warmup", "reset_start", "accumulation_size")
_STATIC = ("smooth", "window_size", "mode", "threshold_mode")
_DEFAULTS = {name: p.default for name, p in inspect.signature(schedulers.greedy_lr).parameters.items()}


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
# Runners.


@functools.lru_cache(maxsize=None)
def _compiled(static_items, dtype_name, x64_enabled):
  """jit(vmap(run)) for one static configuration; hyperparameters traced."""
  del dtype_name, x64_enabled  # cache key only
  static = dict(static_items)

  def run(hp, values):
    tx = schedulers.greedy_lr(**hp, **static)
    params = jnp.zeros((), values.dtype)
    grads = jnp.ones((), values.dtype)

    def body(state, v):
      updates, state = tx.update(grads, state, params, value=v)
      return state, (state, updates)

    return jax.lax.scan(body, tx.init(params), values)[1]

  return jax.jit(jax.vmap(run))


def _split(hp):
  hp = dict(hp)
  static = {k: hp.pop(k) for k in _STATIC if k in hp}
  return hp, static


def _case_slice(x, *, i, n):
  return x[i, :n]


def _run_many(cases, dtype=jnp.float32, **static):
  """Runs [(hp, values), ...] (same static config); per-case (states, updates).

  Cases are padded to a fixed batch and length (float64: 48 x 120, float32:
  8 x 64) so that each static configuration compiles once.
  """
  batch, length = (48, 120) if dtype == jnp.float64 else (8, 64)
  assert len(cases) <= batch, len(cases)
  static = {k: static.get(k, _DEFAULTS[k]) for k in _STATIC}
  hps = [dict({k: _DEFAULTS[k] for k in _HP_FLOAT + _HP_INT}, **hp) for hp, _ in cases]
  hps += [hps[0]] * (batch - len(hps))
  values = np.zeros((batch, length))
  for i, (_, v) in enumerate(cases):
    assert len(v) <= length, len(v)
    values[i, : len(v)] = v
  stacked = {k: jnp.asarray([h[k] for h in hps], dtype if k in _HP_FLOAT else jnp.int32) for k in _HP_FLOAT + _HP_INT}
  fn = _compiled(tuple(static.items()), jnp.dtype(dtype).name, bool(jax.config.jax_enable_x64))
  states, updates = jax.device_get(fn(stacked, jnp.asarray(values, dtype)))
  return [
    jax.tree.map(functools.partial(_case_slice, i=i, n=len(v)), (states, updates)) for i, (_, v) in enumerate(cases)
  ]


def _run_one(values, dtype=jnp.float32, **hp):
  hp, static = _split(hp)
  return _run_many([(hp, list(values))], dtype, **static)[0]


def _scan_concrete(tx, values, dtype):
  """Runs a concretely-configured `tx` over `values` under one jit."""
  params = jnp.zeros((2,), dtype)
  grads = jnp.ones((2,), dtype)

  def body(state, v):
    updates, state = tx.update(grads, state, params, value=v)
    return state, (state, updates)

  values = jnp.asarray(np.asarray(values, np.float64), dtype)
  out = jax.jit(lambda s, vs: jax.lax.scan(body, s, vs)[1])(tx.init(params), values)
  return jax.device_get(out)


# ----------------------------------------------------------------------------
# Comparison with the reference.


def _ref_trajectory(ref, values):
  snaps = []
  for v in values:
    ref.step(v)
    snaps.append(ref.snapshot() | {"window_count": len(ref.window)})
  return snaps


def _assert_matches_reference(hp, static, values, states, best_rtol=0.0, scale_rtol=0.0, best_atol=None):
  """Compares one trajectory (stacked states) with the reference, per call.

  `scale_rtol` is 0 (bit-exact) for traced hyperparameters.  With a concrete
  Python `factor`, XLA rewrites `scale / factor` as `scale * (1 / factor)`
  (off by up to 1 ulp per increase), hence a tiny tolerance on that path.
  `best_rtol` (and `best_atol`, default `best_rtol`) is for smoothing: the
  window sum may be rounded differently.
  """
  best_atol = best_rtol if best_atol is None else best_atol
  snaps = _ref_trajectory(Reference(**hp, **static), values)
  got_scales = [float(s) for s in states.scale]
  for t, snap in enumerate(snaps):
    checks = [
      ("scale", snap["scale"], float(states.scale[t]), scale_rtol),
      ("best_value", snap["best_value"], float(states.best_value[t]), best_rtol),
    ]
    checks += [(f, snap[f], int(getattr(states, f)[t]), None) for f in _FIELDS_INT]
    if static.get("smooth", False):
      checks.append(("window_count", snap["window_count"], int(states.window_count[t]), None))
    for field, want, have, rtol in checks:
      if rtol is None or math.isinf(want) or math.isinf(have):
        ok = want == have
      else:
        atol = best_atol if field == "best_value" else 0.0
        ok = want == have or abs(want - have) <= rtol * abs(want) + atol
      if not ok:
        seq = ", ".join(repr(float(v)) for v in values[: t + 1])
        raise AssertionError(
          f"{field} differs at call {t}: reference {want!r}, greedy_lr"
          f" {have!r}\n  hyperparameters: {hp | static}\n"
          f"  values[:{t + 1}] = [{seq}]\n"
          f"  reference scales = {[s['scale'] for s in snaps[: t + 1]]}\n"
          f"  greedy_lr scales = {got_scales[: t + 1]}"
        )


def test_reference_has_the_same_hyperparameters_and_defaults():
  ours = inspect.signature(schedulers.greedy_lr).parameters
  ref = inspect.signature(Reference).parameters
  assert list(ours) == list(ref)
  for name in ours:
    assert ours[name].default == ref[name].default, name
    assert ours[name].kind == ref[name].kind, name


# ----------------------------------------------------------------------------
# Reference vs transform: scripted sequences.

_SCRIPTED = [
  (dict(factor=0.9, patience=3), [10, 11, 12, 13, 14, 15, 16, 17, 18]),
  (dict(factor=0.9, patience=3), [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, -1]),
  (dict(factor=0.9, patience=0), [5, 4, 4, 4, 3, 6, 2, 2, 1]),
  (dict(factor=0.5, patience=1, cooldown=2, warmup=1), [9, 8, 7, 6, 6, 6, 6, 6, 7, 5, 4, 3, 2, 2, 2, 2]),
  (
    dict(factor=0.5, patience=0, min_scale=0.25, max_scale=2.0, reset_start=2),
    [1, 2, 3, 4, 5, 6, 7, 0.5, 0.4, 0.3, 0.2, 0.1, 1, 1, 1, 1, 1],
  ),
  (
    dict(factor=0.9, patience=2, smooth=True, window_size=3, threshold_mode="rel"),
    [10, 8, 6, 4, 4, 4, 4, 9, 9, 9, 1, 1],
  ),
  (
    dict(factor=0.9, patience=1, threshold=0.1, threshold_mode="rel"),
    [10, 9.5, 9.2, 8.9, -1, -1.05, -1.2, -1.2, -1.2, -5],
  ),
  (dict(factor=0.8, patience=1, mode="max", threshold=0.5), [1, 2, 3, 3.2, 3.4, 3.6, 5, 1, 1, 1]),
  (dict(factor=0.9, patience=1, accumulation_size=3), [3, 2, 1, 1, 1, 1, 0, 0, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5]),
  (dict(factor=0.9, patience=1), [1, math.nan, math.inf, -math.inf, 0.5, math.nan, 0.2, 0.1]),
  (
    dict(factor=0.9, patience=1, smooth=True, window_size=2, accumulation_size=2),
    [4, 4, math.nan, 1, 3, 3, 2, 2, 2, math.inf, 1, 1, 0, 0],
  ),
  (dict(factor=0.5, patience=0, eps=0.3), [1, 2, 3, 4, 0.5, 0.4, 0.3]),
  (dict(factor=0.5, patience=0, min_scale=1.0, max_scale=1.0, reset_start=1), [3, 4, 5, 2, 1, 6, 7]),
]


@pytest.mark.opt
def test_scripted_sequences_match_reference(x64):
  """Traced hyperparameters, float64: bit-exact agreement."""
  by_static = {}
  for hp, values in _SCRIPTED:
    hp, static = _split(hp)
    key = tuple(sorted(static.items()))
    by_static.setdefault(key, []).append((hp, values))
  for key, cases in by_static.items():
    static = dict(key)
    for (hp, values), (states, updates) in zip(cases, _run_many(cases, jnp.float64, **static)):
      assert states.scale.dtype == np.float64
      _assert_matches_reference(hp, static, values, states, best_rtol=1e-12 if static.get("smooth") else 0)
      # Updates are the incoming updates (ones) times the new scale.
      np.testing.assert_array_equal(updates, states.scale)


@pytest.mark.parametrize("index", [3, 5, 10])
def test_scripted_sequences_concrete_hyperparameters(x64, index):
  """The concrete (Python float) hyperparameter path under jit."""
  hp, values = _SCRIPTED[index]
  hp, static = _split(hp)
  states, updates = _scan_concrete(schedulers.greedy_lr(**hp, **static), values, jnp.float64)
  _assert_matches_reference(
    hp, static, values, states, scale_rtol=_ULPS, best_rtol=1e-12 if static.get("smooth") else 0
  )
  np.testing.assert_array_equal(updates, np.stack([states.scale] * 2, -1))


def test_reset_restarts_cooldown_like_hugging_face(x64):
  """In HF, `_reduce_lr` may reset, and *then* `cooldown_counter = cooldown`.

  So a decrease that triggers a reset is followed by `cooldown` refractory
  calls, exactly like any other decrease.
  """
  hp = dict(factor=0.5, patience=0, cooldown=2, min_scale=0.5, reset_start=1)
  values = [1.0, 2.0, 3.0, 4.0, 5.0, 0.5, 0.4, 0.3]
  # call 0: new best -> increase to 2; call 1: bad -> 1 (cooldown 2);
  # calls 2, 3: cooldown; call 4: bad -> 0.5 = floor -> reset (scale 1), then
  # cooldown = 2; calls 5, 6: cooldown (no change); call 7: new best -> 2.
  expected = [2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]
  assert Reference(**hp).run(values) == expected
  states, _ = _run_one(values, jnp.float64, **hp)
  assert list(states.scale) == expected, f"values {values}: expected scales {expected}, got {list(states.scale)}"
  np.testing.assert_array_equal(states.cooldown_count, [0, 2, 1, 0, 2, 1, 0, 0])


# ----------------------------------------------------------------------------
# Reference vs transform: random sequences.


def _random_sequence(rng, length, kind=None):
  kind = rng.integers(6) if kind is None else kind
  t = np.arange(length, dtype=np.float64)
  if kind == 0:  # random walk, may go negative
    x = rng.normal(0.0, 1.0) + np.cumsum(rng.normal(0.0, 0.3, length))
  elif kind == 1:  # noisy decaying curve
    x = (
      rng.uniform(0.5, 5.0) * np.exp(-t / rng.uniform(10, 100))
      + rng.uniform(-1, 1)
      + rng.normal(0, rng.uniform(0, 0.2), length)
    )
  elif kind == 2:  # plateaus of small dyadic levels (exact ties)
    levels = rng.integers(-8, 9, size=length // 4 + 1) / 4.0
    x = np.repeat(levels, 4)[:length]
  elif kind == 3:  # negative values, slowly decreasing with noise
    x = -1.0 - 0.05 * t + rng.normal(0, 0.5, length)
  elif kind == 4:  # steady improvement, then stagnation (dyadic: exact sums)
    k = rng.integers(5, length)
    x = np.concatenate([10.0 - 0.125 * t[:k], np.full(length - k, 10.0 - 0.125 * k)])
  else:  # small integers (many ties; thresholds matter)
    x = rng.integers(-3, 4, length).astype(np.float64)
  if rng.uniform() < 0.5:  # NaN/Inf injections
    mask = rng.uniform(size=length) < 0.06
    x = np.where(mask, rng.choice([np.nan, np.inf, -np.inf], length), x)
  return x


def _random_hp(rng, threshold_mode):
  threshold = rng.choice([0.0, 1e-6, 1e-2, 0.1]) if threshold_mode == "abs" else rng.choice([0.0, 1e-3, 0.05, 0.1])
  return dict(
    factor=float(rng.choice([0.5, 0.7, 0.9, 0.95, rng.uniform(0.3, 0.99)])),
    patience=int(rng.integers(0, 6)),
    threshold=float(threshold),
    cooldown=int(rng.integers(0, 4)),
    warmup=int(rng.integers(0, 4)),
    min_scale=float(rng.choice([0.1, 0.5, 0.8, 1.0])),
    max_scale=float(rng.choice([1.0, 1.5, 2.0, 10.0])),
    reset_start=int(rng.choice([0, 1, 2, 3, 500])),
    accumulation_size=int(rng.integers(1, 4)),
    eps=float(rng.choice([1e-8, 1e-8, 0.0, 0.2])),
  )


_RANDOM_STATICS = [
  dict(smooth=False, mode="min", threshold_mode="abs"),
  dict(smooth=False, mode="min", threshold_mode="rel"),
  dict(smooth=False, mode="max", threshold_mode="abs"),
  dict(smooth=False, mode="max", threshold_mode="rel"),
  dict(smooth=True, window_size=2, mode="min", threshold_mode="abs"),
  dict(smooth=True, window_size=2, mode="max", threshold_mode="rel"),
  dict(smooth=True, window_size=3, mode="min", threshold_mode="rel"),
  dict(smooth=True, window_size=3, mode="max", threshold_mode="abs"),
]


def _static_id(s):
  smooth = f"smooth{s['window_size']}" if s["smooth"] else "nosmooth"
  return f"{smooth}-{s['mode']}-{s['threshold_mode']}"


def _random_cases(seed, static, batch=48, length=120):
  """Random (hyperparameters, values) pairs for one static configuration.

  Smoothing sums the window in an unspecified order, so its result may differ
  from the reference's by an ulp.  Tie-prone sequences (plateaus, integers)
  are therefore not combined with smoothing *and* an accumulation size that
  makes inexact (non-dyadic) chunk means; everything else is.
  """
  rng = np.random.default_rng(seed)
  cases = []
  for i in range(batch):
    kind = i % 6
    seq = _random_sequence(rng, length, kind)
    if static["mode"] == "max" and i % 2 == 0:
      seq = -seq
    hp = _random_hp(rng, static["threshold_mode"])
    if static.get("smooth") and kind in (2, 4, 5):
      hp["accumulation_size"] = min(hp["accumulation_size"], 2)
    cases.append((hp, list(seq)))
  return cases


@pytest.mark.opt
@pytest.mark.parametrize("static", _RANDOM_STATICS, ids=_static_id)
def test_random_sequences_match_reference(x64, static):
  cases = _random_cases(1000 + _RANDOM_STATICS.index(static), static)
  results = _run_many(cases, jnp.float64, **static)
  errors = []
  for (hp, values), (states, _) in zip(cases, results):
    assert states.scale.dtype == np.float64
    try:
      _assert_matches_reference(hp, static, values, states, best_rtol=1e-12 if static["smooth"] else 0.0)
    except AssertionError as e:
      errors.append(str(e))
  assert not errors, f"{len(errors)}/{len(cases)} random trajectories differ; first:\n{errors[0]}"
  all_scales = np.concatenate([s.scale for s, _ in results])
  assert np.any(all_scales > 1.0) and np.any(all_scales < 1.0)


def test_random_cases_exercise_all_paths():
  """Guards the random test's coverage: resets, refractory periods, bounds."""
  counts = dict(resets=0, cooldown=0, warmup=0, pending=0, at_max=0, at_min=0)
  for static in _RANDOM_STATICS:
    for hp, values in _random_cases(1000 + _RANDOM_STATICS.index(static), static):
      ref = Reference(**hp, **static)
      for v in values:
        ref.step(v)
        counts["cooldown"] += ref.cooldown_counter > 0
        counts["warmup"] += ref.warmup_counter > 0
        counts["pending"] += len(ref.acc_values) > 0
        counts["at_max"] += ref.scale == hp["max_scale"] > 1.0
        counts["at_min"] += ref.scale == hp["min_scale"] < 1.0
      counts["resets"] += ref.num_resets
  assert all(c > 50 for c in counts.values()), counts


def test_random_sequences_concrete_hyperparameters_match_reference(x64):
  """A few random cases through the concrete hyperparameter path."""
  for k, static in enumerate(_RANDOM_STATICS[:2] + _RANDOM_STATICS[6:7]):
    hp, values = _random_cases(77 + k, static, batch=1, length=100)[0]
    states, _ = _scan_concrete(schedulers.greedy_lr(**hp, **static), values, jnp.float64)
    _assert_matches_reference(
      hp, static, values, states, scale_rtol=_ULPS, best_rtol=1e-12 if static["smooth"] else 0.0
    )


@pytest.mark.parametrize("mode", ["min", "max"])
def test_float32_matches_reference_away_from_ties(mode):
  """float32 state; values on a 1/8 grid, threshold half a grid step.

  Decisions are then far from ties, so counters must match exactly and the
  scale up to float32 rounding.
  """
  rng = np.random.default_rng(3 if mode == "min" else 4)
  cases = []
  for _ in range(8):
    hp = dict(
      factor=float(rng.choice([0.5, 0.8, 0.9])),
      patience=int(rng.integers(0, 4)),
      threshold=0.0625,
      cooldown=int(rng.integers(0, 3)),
      warmup=int(rng.integers(0, 3)),
      min_scale=0.3,
      max_scale=3.0,
      reset_start=int(rng.choice([1, 2, 500])),
      accumulation_size=1,
    )
    seq = np.cumsum(rng.integers(-4, 5, 64) / 8.0) + rng.integers(-24, 24) / 8
    cases.append((hp, list(seq)))
  for (hp, values), (states, updates) in zip(cases, _run_many(cases, jnp.float32, mode=mode)):
    assert states.scale.dtype == np.float32 and updates.dtype == np.float32
    snaps = _ref_trajectory(Reference(**hp, mode=mode), values)
    msg = f"hp={hp} mode={mode} values={values}"
    np.testing.assert_allclose(states.scale, [s["scale"] for s in snaps], rtol=1e-5, err_msg=msg)
    for f in _FIELDS_INT:
      np.testing.assert_array_equal(getattr(states, f), [s[f] for s in snaps], err_msg=f"{f}: {msg}")


# ----------------------------------------------------------------------------
# Standard scenarios (modelled on Hugging Face's GreedyLR tests): factor 0.9,
# patience 3, scale instead of lr 0.1.

_HF = dict(factor=0.9, patience=3, min_scale=0.01, max_scale=100.0)


def _run(values, **kwargs):
  states, updates = _run_one(values, jnp.float32, **(_HF | kwargs))
  np.testing.assert_array_equal(updates, states.scale)
  return np.asarray(states.scale, np.float64), states


def test_one_good_then_four_worse_decreases_once():
  scales, states = _run([10.0, 11.0, 12.0, 13.0, 14.0])
  np.testing.assert_allclose(scales, [1, 1, 1, 1, 0.9], rtol=1e-6)
  assert int(states.cooldown_count[-1]) == 0 and int(states.num_bad[-1]) == 0
  assert float(states.best_value[-1]) == 10.0


def test_four_successive_improvements_increase_once():
  scales, states = _run([10.0, 9.0, 8.0, 7.0])
  np.testing.assert_allclose(scales, [1, 1, 1, 1 / 0.9], rtol=1e-6)
  assert int(states.num_good[-1]) == 0
  assert float(states.best_value[-1]) == 7.0
  scales, _ = _run([10.0, 9.0, 8.0])  # three are not enough
  np.testing.assert_array_equal(scales, [1, 1, 1])


def test_cooldown_blocks_second_decrease_for_three_calls():
  values = [10.0] + [11.0] * 12
  no_cd, _ = _run(values)
  cd, states = _run(values, cooldown=3)
  # Without cooldown: decreases at calls 4, 8, 12.
  np.testing.assert_allclose(no_cd[[3, 4, 7, 8, 11, 12]], [1, 0.9, 0.9, 0.81, 0.81, 0.729], rtol=1e-6)
  # With cooldown 3: calls 5-7 are refractory, then 4 bad calls (8-11).
  np.testing.assert_allclose(cd[4:12], [0.9] * 7 + [0.81], rtol=1e-6)
  np.testing.assert_array_equal(states.cooldown_count[4:9], [3, 2, 1, 0, 0])
  np.testing.assert_array_equal(states.num_bad[4:9], [0, 0, 0, 0, 1])


def test_warmup_blocks_second_increase_for_three_calls():
  values = [100.0 - i for i in range(12)]
  no_wu, _ = _run(values)
  wu, states = _run(values, warmup=3)
  g = 1 / 0.9
  np.testing.assert_allclose(no_wu[[3, 7, 11]], [g, g**2, g**3], rtol=1e-6)
  np.testing.assert_allclose(wu[3:11], [g] * 7 + [g**2], rtol=1e-6)
  np.testing.assert_array_equal(states.warmup_count[3:8], [3, 2, 1, 0, 0])
  # best is not updated during warmup.
  assert float(states.best_value[6]) == 97.0
  assert float(states.best_value[7]) == 93.0


def test_smoothing_window_three_decides_on_mean():
  _, states = _run([10.0, 8.0, 6.0, 4.0], smooth=True, window_size=3)
  # Means: 10, 9, 8, (8 + 6 + 4) / 3 = 6.
  np.testing.assert_allclose(states.best_value, [10, 9, 8, 6], rtol=1e-6)
  np.testing.assert_array_equal(states.window_count, [1, 2, 3, 3])


def test_smoothing_window_is_updated_during_cooldown():
  # patience 0, cooldown 2: call 0 increases (first best), call 1 decreases,
  # calls 2-3 are refractory but still enter the window; call 4 decides on
  # mean(20, 0, 0) = 6.67 < best 10: a new best.
  values = [10.0, 20.0, 20.0, 0.0, 0.0]
  _, states = _run(values, patience=0, cooldown=2, smooth=True, window_size=3)
  np.testing.assert_array_equal(states.window_count, [1, 2, 3, 3, 3])
  np.testing.assert_array_equal(states.cooldown_count, [0, 2, 1, 0, 0])
  np.testing.assert_allclose(states.best_value, [10, 10, 10, 10, 20 / 3], rtol=1e-6)


def test_rel_threshold_requires_relative_improvement():
  _, states = _run([10.0, 9.5], threshold=0.1, threshold_mode="rel")
  assert float(states.best_value[-1]) == 10.0 and int(states.num_bad[-1]) == 1
  _, states = _run([10.0, 8.9], threshold=0.1, threshold_mode="rel")
  assert float(states.best_value[-1]) == pytest.approx(8.9)
  assert int(states.num_good[-1]) == 2


def test_abs_threshold():
  _, states = _run([10.0, 9.5, 9.4], threshold=0.55)
  np.testing.assert_array_equal(states.num_bad, [0, 1, 0])
  np.testing.assert_allclose(states.best_value, [10, 10, 9.4], rtol=1e-6)


def test_max_scale_bound():
  scales, _ = _run([100.0 - i for i in range(30)], patience=0, max_scale=1.2)
  assert scales.max() == pytest.approx(1.2, rel=1e-6)
  assert np.all(scales <= 1.2 * (1 + 1e-6))
  np.testing.assert_allclose(scales[:3], [1 / 0.9, 1.2, 1.2], rtol=1e-6)


def test_min_scale_bound():
  # patience 0: the first value is a new best and increases immediately.
  scales, _ = _run([1.0] + [2.0] * 30, patience=0, min_scale=0.85)
  assert scales.min() == pytest.approx(0.85, rel=1e-6)
  assert np.all(scales >= 0.85 * (1 - 1e-6))
  np.testing.assert_allclose(scales[:5], [1 / 0.9, 1, 0.9, 0.85, 0.85], rtol=1e-6)


def test_reset_at_floor_after_reset_start_hits():
  # 0: increase; 1: 1.0; 2: 0.9; 3: 0.85 (floor hit 1); 4: hit 2; 5: hit 3
  # -> reset_start exhausted -> reset to scale 1, best +inf; 6: 2.0 is then
  # a new best -> increase.
  scales, states = _run([1.0] + [2.0] * 6, patience=0, min_scale=0.85, reset_start=3)
  np.testing.assert_allclose(scales, [1 / 0.9, 1, 0.9, 0.85, 0.85, 1.0, 1 / 0.9], rtol=1e-6)
  np.testing.assert_array_equal(states.reset_count, [3, 3, 3, 2, 1, 3, 3])
  assert np.isposinf(states.best_value[5])
  assert float(states.best_value[6]) == 2.0


def test_increase_restarts_reset_countdown():
  # reset_start 2: the floor hits at calls 3 and 5 are separated by an
  # increase (call 4), so only the hit at call 6 resets.
  values = [1.0, 2.0, 2.0, 2.0, 0.5, 3.0, 3.0, 3.0]
  scales, states = _run(values, patience=0, min_scale=0.85, reset_start=2)
  np.testing.assert_array_equal(states.reset_count, [2, 2, 2, 1, 2, 1, 2, 2])
  np.testing.assert_allclose(scales, [1 / 0.9, 1, 0.9, 0.85, 0.85 / 0.9, 0.85, 1.0, 1 / 0.9], rtol=1e-6)


def test_mode_max_flips_directions():
  scales, _ = _run([10.0, 11.0, 12.0, 13.0], mode="max")
  np.testing.assert_allclose(scales[-1], 1 / 0.9, rtol=1e-6)
  scales, states = _run([10.0, 9.0, 8.0, 7.0, 6.0], mode="max")
  np.testing.assert_allclose(scales[-1], 0.9, rtol=1e-6)
  assert float(states.best_value[-1]) == 10.0
  st = schedulers.greedy_lr(mode="max").init(jnp.zeros(2))
  assert np.isneginf(st.best_value)
  st = schedulers.greedy_lr().init(jnp.zeros(2))
  assert np.isposinf(st.best_value)


def test_negative_values_rel_threshold_still_reduce():
  """optax #1767: `best * (1 - threshold)` never plateaus below zero."""
  scales, states = _run([-10.0] * 5, threshold=0.1, threshold_mode="rel")
  np.testing.assert_allclose(scales, [1, 1, 1, 1, 0.9], rtol=1e-6)
  assert float(states.best_value[-1]) == -10.0
  # A too small relative improvement below zero is not an improvement ...
  _, states = _run([-10.0, -10.5], threshold=0.1, threshold_mode="rel")
  assert int(states.num_bad[-1]) == 1
  # ... a large one is.
  scales, _ = _run([-1.0, -2.0, -3.0, -4.0], threshold=0.1, threshold_mode="rel")
  np.testing.assert_allclose(scales[-1], 1 / 0.9, rtol=1e-6)
  # Max mode: a constant positive value plateaus ...
  scales, _ = _run([10.0] * 5, threshold=0.1, threshold_mode="rel", mode="max")
  np.testing.assert_allclose(scales[-1], 0.9, rtol=1e-6)
  # ... and so does a constant negative one.
  scales, _ = _run([-10.0] * 5, threshold=0.1, threshold_mode="rel", mode="max")
  np.testing.assert_allclose(scales[-1], 0.9, rtol=1e-6)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_non_finite_values_count_as_bad(mode):
  for bad in (math.nan, math.inf, -math.inf):
    values = [10.0] + [bad] * 8
    scales, states = _run(values, mode=mode)
    assert np.all(np.isfinite(scales)), (mode, bad)
    np.testing.assert_array_equal(states.best_value, 10.0)
    np.testing.assert_allclose(scales, [1, 1, 1, 1, 0.9, 0.9, 0.9, 0.9, 0.81], rtol=1e-6, err_msg=f"{mode} {bad}")
    np.testing.assert_array_equal(states.num_good, [1] + [0] * 8)


def test_non_finite_values_stay_out_of_smoothing_window():
  _, states = _run([10.0, math.nan, math.inf, 8.0], smooth=True, window_size=3)
  np.testing.assert_array_equal(states.window_count, [1, 1, 1, 2])
  assert float(states.best_value[-1]) == 9.0
  assert np.all(np.isfinite(states.window))


def test_non_finite_in_accumulated_chunk_is_bad():
  values = [1.0, 1.0, 0.5, math.nan, 0.1, 0.1]
  _, states = _run(values, patience=0, accumulation_size=2)
  # Chunk 1 = 1.0 (new best, increase); chunk 2 has a NaN (bad, decrease);
  # chunk 3 = 0.1 (new best, increase).
  np.testing.assert_allclose(states.scale, [1, 1 / 0.9, 1 / 0.9, 1, 1, 1 / 0.9], rtol=1e-6)
  np.testing.assert_array_equal(states.acc_count, [1, 0, 1, 0, 1, 0])
  np.testing.assert_array_equal(states.num_bad, [0, 0, 0, 0, 0, 0])
  assert np.all(np.isfinite(states.acc_value))


def test_accumulation_averages_before_deciding():
  # Chunks of 3: mean(3, 2, 1) = 2, then mean(4, 0, 0.5) = 1.5 -> better.
  _, states = _run([3.0, 2.0, 1.0, 4.0, 0.0, 0.5], accumulation_size=3)
  np.testing.assert_allclose(states.best_value, [np.inf] * 2 + [2.0] * 3 + [1.5])
  np.testing.assert_array_equal(states.num_good, [0, 0, 1, 1, 1, 2])
  np.testing.assert_array_equal(states.acc_count, [1, 2, 0, 1, 2, 0])


# ----------------------------------------------------------------------------
# Validation.


@pytest.mark.parametrize(
  "kwargs,name",
  [
    (dict(factor=1.0), "factor"),
    (dict(factor=1.5), "factor"),
    (dict(factor=0.0), "factor"),
    (dict(factor=-0.5), "factor"),
    (dict(patience=-1), "patience"),
    (dict(mode="maximum"), r"\bmode"),
    (dict(threshold_mode="relative"), "threshold_mode"),
    (dict(window_size=0), "window_size"),
    (dict(min_scale=1.5), "min_scale"),
    (dict(min_scale=0.0), "min_scale"),
    (dict(max_scale=0.5), "max_scale"),
    (dict(threshold=-1.0), r"\bthreshold\b"),
    (dict(cooldown=-1), "cooldown"),
    (dict(warmup=-2), "warmup"),
    (dict(accumulation_size=0), "accumulation_size"),
    (dict(reset_start=-1), "reset_start"),
  ],
)
def test_invalid_hyperparameters_raise(kwargs, name):
  with pytest.raises(ValueError, match=name):
    schedulers.greedy_lr(**kwargs)


def test_non_scalar_value_raises():
  tx = schedulers.greedy_lr()
  params = jnp.zeros(2)
  with pytest.raises(ValueError, match="scalar"):
    jax.eval_shape(lambda: tx.update(params, tx.init(params), params, value=jnp.ones(2)))


def test_traced_hyperparameters_are_not_validated():
  def run(f, p, m):
    tx = schedulers.greedy_lr(factor=f, patience=p, min_scale=m)
    params = jnp.zeros(2)
    return tx.update(params, tx.init(params), params, value=1.0)[1].scale

  out = jax.eval_shape(
    jax.vmap(run), jnp.asarray([1.5, -0.5, 0.9]), jnp.asarray([-1, 2, 3]), jnp.asarray([2.0, 0.1, 0.1])
  )
  assert out.shape == (3,)


# ----------------------------------------------------------------------------
# vmap over hyperparameters inside one jit.

_VMAP_VALUES = np.concatenate(
  [
    np.linspace(5.0, 1.0, 20),
    np.full(15, 1.0),
    np.linspace(1.0, 0.2, 10),
    np.full(25, 0.3),
    np.linspace(0.3, 0.01, 10),
  ]
)
_VMAP_HP = dict(min_scale=0.05, max_scale=20.0, reset_start=3)


def _scale_trajectory(factor, patience):
  tx = schedulers.greedy_lr(factor=factor, patience=patience, **_VMAP_HP)
  params = jnp.zeros(3)

  def body(state, v):
    _, state = tx.update(jnp.ones(3), state, params, value=v)
    return state, state.scale

  values = jnp.asarray(_VMAP_VALUES, jnp.float32)
  return jax.lax.scan(body, tx.init(params), values)[1]


_single_run = jax.jit(_scale_trajectory)  # traced factor and patience


def test_vmap_over_factor_matches_separate_runs():
  factors = np.linspace(0.5, 0.95, 16).astype(np.float32)
  traces = []

  def run(f):  # greedy_lr is built inside, from a traced factor
    traces.append(1)
    return _scale_trajectory(f, 2)

  batched = np.asarray(jax.jit(jax.vmap(run))(jnp.asarray(factors)))
  assert batched.shape == (16, len(_VMAP_VALUES)) and len(traces) == 1
  for i, f in enumerate(factors):
    single = _single_run(jnp.float32(f), jnp.int32(2))
    np.testing.assert_array_equal(batched[i], single, err_msg=f"factor={f}")
    ref = Reference(factor=float(f), patience=2, **_VMAP_HP).run(_VMAP_VALUES)
    np.testing.assert_allclose(batched[i], ref, rtol=1e-5, err_msg=f"factor={f}")
  # The concrete-factor path agrees too.
  concrete = jax.jit(lambda: _scale_trajectory(float(factors[3]), 2))()
  np.testing.assert_allclose(batched[3], concrete, rtol=1e-6)
  assert len({tuple(np.round(b, 5)) for b in batched}) == 16


def test_vmap_over_patience_matches_separate_runs():
  patiences = np.arange(16, dtype=np.int32) % 8
  batched = np.asarray(jax.jit(jax.vmap(lambda p: _scale_trajectory(0.8, p)))(jnp.asarray(patiences)))
  for i, p in enumerate(patiences):
    single = _single_run(jnp.float32(0.8), jnp.int32(p))
    # The batched run has a concrete factor: XLA turns `/ 0.8` into
    # `* 1.25` (1 ulp differences), hence the tolerance.
    np.testing.assert_allclose(batched[i], single, rtol=1e-6, err_msg=f"patience={p}")
    ref = Reference(factor=0.8, patience=int(p), **_VMAP_HP).run(_VMAP_VALUES)
    np.testing.assert_allclose(batched[i], ref, rtol=1e-5, err_msg=f"patience={p}")
  assert len({tuple(np.round(b, 5)) for b in batched[:8]}) == 8


# ----------------------------------------------------------------------------
# Per-eval mode.


def test_on_eval_update_does_not_step_controller():
  controller = schedulers.greedy_lr(patience=0)
  tx = optax.chain(optax.sgd(0.1), schedulers.on_eval(controller))
  params = {"w": jnp.ones(3), "b": jnp.zeros(())}
  grads = {"w": jnp.full(3, 2.0), "b": jnp.ones(())}
  state = tx.init(params)
  assert isinstance(state[1], schedulers.PerEvalState)
  before = state[1]
  update = jax.jit(tx.update)
  for _ in range(3):
    updates, state = update(grads, state, params)  # no value needed
  jax.tree.map(np.testing.assert_array_equal, state[1], before)
  np.testing.assert_allclose(updates["w"], -0.2 * np.ones(3), rtol=1e-6)
  # A `value` passed to update is ignored as well.
  _, state = jax.jit(functools.partial(tx.update, value=1.0))(grads, state, params)
  jax.tree.map(np.testing.assert_array_equal, state[1], before)


def test_observe_steps_like_per_step_transform(x64):
  hp = dict(factor=0.7, patience=1, cooldown=1, warmup=1, min_scale=0.2, reset_start=2, smooth=True, window_size=2)
  values = [
    5.0,
    4.0,
    3.0,
    3.0,
    3.5,
    3.6,
    3.7,
    3.8,
    2.0,
    1.0,
    0.5,
    0.4,
    0.4,
    0.4,
    0.4,
    0.4,
    0.4,
    0.4,
    0.4,
    0.4,
    0.4,
    0.4,
  ]
  controller = schedulers.greedy_lr(**hp)
  tx = optax.chain(optax.sgd(0.1), schedulers.on_eval(controller))
  params = {"w": jnp.ones(2, jnp.float64)}
  grads = {"w": jnp.ones(2, jnp.float64)}
  state = tx.init(params)
  observe = jax.jit(lambda s, v: schedulers.observe(s, controller, value=v))
  update = jax.jit(lambda s: tx.update(grads, s, params))
  scales = []
  for v in values:
    _, state = update(state)  # training steps in between do not matter
    state = observe(state, v)
    scales.append(float(schedulers.greedy_scale(state)))
    updates, state = update(state)
    np.testing.assert_allclose(updates["w"], -0.1 * scales[-1], rtol=1e-12)
  ref = Reference(**hp)
  assert scales == pytest.approx(ref.run(values), rel=_ULPS, abs=0)
  assert len(set(scales)) >= 3
  # The same as stepping the per-step transform on the same values.
  hp_num, static = _split(hp)
  per_step, _ = _run_one(values, jnp.float64, **hp_num, **static)
  assert scales == pytest.approx(list(per_step.scale), rel=_ULPS, abs=0)


def test_observe_leaves_per_step_states_alone():
  controller = schedulers.greedy_lr(patience=0)
  tx = optax.chain(optax.sgd(0.1), controller)
  state = tx.init(jnp.ones(2))
  new = schedulers.observe(state, controller, value=1.0)
  jax.tree.map(np.testing.assert_array_equal, new, state)


def test_greedy_scale_reads_per_step_and_per_eval_states():
  params = jnp.ones(2)
  per_step = optax.chain(optax.adam(1e-3), schedulers.greedy_lr(patience=0))
  state = per_step.init(params)
  assert float(schedulers.greedy_scale(state)) == 1.0
  _, state = jax.jit(functools.partial(per_step.update, value=1.0))(params, state, params)
  assert float(schedulers.greedy_scale(state)) == pytest.approx(1 / 0.95)

  controller = schedulers.greedy_lr(patience=0, factor=0.5)
  per_eval = optax.chain(optax.adam(1e-3), schedulers.on_eval(controller))
  state = per_eval.init(params)
  assert float(schedulers.greedy_scale(state)) == 1.0
  state = jax.jit(lambda s: schedulers.observe(s, controller, value=1.0))(state)
  assert float(schedulers.greedy_scale(state)) == 2.0

  with pytest.raises(ValueError, match="GreedyLRState"):
    schedulers.greedy_scale(optax.sgd(0.1).init(params))
  with pytest.raises(ValueError):
    schedulers.greedy_scale(())


# ----------------------------------------------------------------------------
# flax.nnx.


def test_nnx_optimizer_update_with_value():
  from flax import nnx  # pylint: disable=g-import-not-at-top

  class Model(nnx.Module):
    def __init__(self, rngs):
      self.linear = nnx.Linear(3, 1, rngs=rngs)

    def __call__(self, x):
      return self.linear(x)

  model = Model(nnx.Rngs(0))
  tx = optax.chain(optax.adamw(1e-2), schedulers.greedy_lr(patience=0))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 3)), jnp.float32)
  y = x @ jnp.asarray([[1.0], [-2.0], [0.5]])

  def loss_fn(m):
    return jnp.mean((m(x) - y) ** 2)

  @nnx.jit
  def train_step(model, optimizer, offset):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads, value=loss + offset)
    return loss

  def scale():
    return float(schedulers.greedy_scale(nnx.pure(optimizer.opt_state)))

  assert scale() == 1.0
  kernel0 = np.asarray(model.linear.kernel[...])
  loss0 = float(train_step(model, optimizer, 0.0))
  assert scale() == pytest.approx(1 / 0.95)  # the first value is a new best
  assert not np.allclose(np.asarray(model.linear.kernel[...]), kernel0)
  loss1 = train_step(model, optimizer, 100.0)  # value: worse than the best
  assert scale() == pytest.approx(1.0)
  losses = [float(train_step(model, optimizer, 0.0)) for _ in range(10)]
  assert losses[-1] < losses[0] < loss0
  expected = Reference(factor=0.95, patience=0).run([loss0, float(loss1 + np.float32(100.0))] + losses)  # what it saw
  assert scale() == pytest.approx(expected[-1], rel=1e-5)
  assert scale() > 1.0
  assert int(optimizer.step[...]) == 12


# ----------------------------------------------------------------------------
# orbax checkpoints (common.checkpoint.Checkpointer).


@pytest.mark.opt
def test_checkpoint_roundtrip_continues_identically(tmp_path):
  from common.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top

  tx = optax.chain(
    optax.adamw(1e-2),
    schedulers.greedy_lr(
      factor=0.8,
      patience=1,
      cooldown=1,
      warmup=1,
      smooth=True,
      window_size=3,
      min_scale=0.3,
      reset_start=2,
      accumulation_size=2,
    ),
  )
  params0 = {"w": jnp.asarray([1.0, -2.0, 0.5]), "b": jnp.zeros(())}
  rng = np.random.default_rng(0)
  values = np.abs(np.cumsum(rng.normal(0, 0.5, 60))) + 0.1

  @jax.jit
  def step(params, state, value):
    grads = jax.tree.map(lambda p: 2.0 * p + 0.1, params)
    updates, state = tx.update(grads, state, params, value=value)
    return optax.apply_updates(params, updates), state

  def continue_from(params, state, start):
    scales, states = [], []
    for v in values[start:]:
      params, state = step(params, state, v)
      scales.append(float(schedulers.greedy_scale(state)))
      states.append(state)
    return scales, params, states

  params, state = params0, tx.init(params0)
  mid = 31  # odd: a value is pending in the accumulator
  for v in values[:mid]:
    params, state = step(params, state, v)
  greedy = state[1]
  assert float(greedy.scale) != 1.0, "make the saved state non-trivial"
  assert int(greedy.acc_count) == 1 and int(greedy.window_count) > 0

  with Checkpointer(tmp_path / "ckpt", save_every=10, keep=2) as ckpt:
    assert ckpt.save(mid, (params, state), force=True)
    expected_scales, expected_params, expected_states = continue_from(params, state, mid)
    target = (params0, tx.init(params0))
    (r_params, r_state), r_step = ckpt.restore_latest(target)

  assert r_step == mid
  assert jax.tree.structure((r_params, r_state)) == jax.tree.structure(target)
  for got, want in zip(jax.tree.leaves((r_params, r_state)), jax.tree.leaves((params, state))):
    assert isinstance(got, jax.Array)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
  scales, final_params, states = continue_from(r_params, r_state, mid)
  assert scales == expected_scales
  assert len(set(scales)) > 1, "the continuation must change the scale"
  jax.tree.map(np.testing.assert_array_equal, final_params, expected_params)
  jax.tree.map(np.testing.assert_array_equal, states[-1], expected_states[-1])
