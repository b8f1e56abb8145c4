"""Conformance suite for loss-driven optax transforms in `schedulers`.

Modelled on optax's `optax/contrib/_common_test.py`.  Every entry of
`REGISTRY` is checked for: init + update under jit, unknown extra args being
ignored, `value` being required when the entry needs it, no recompilation on
the second jitted call, running inside `jax.lax.scan` and converging on a
parabola, on Rosenbrock and on a plain tree of mixed shapes, float32 /
bfloat16 update dtypes, array-only state leaves and a stable state tree.

To add a scheduler, append a `SchedulerEntry` to `REGISTRY`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import schedulers
from schedulers import baselines, hypergradient, line_search

try:  # optax's compile-log capture (private module; optional)
  from optax._src import test_utils as _optax_test_utils  # pylint: disable=g-import-not-at-top
except ImportError:  # pragma: no cover
  _optax_test_utils = None


class SchedulerEntry(NamedTuple):
  name: str
  factory: Callable[[], optax.GradientTransformationExtraArgs]
  needs_value: bool  # update(...) must be given `value=` (the monitored loss)
  line_search: bool = False  # update(...) also needs `grad=` and `value_fn=`
  # Where the method is evaluated (schedule-free: its x sequence, not y).
  eval_params: Callable = lambda state, params: params


_STEPS = 1500  # == _NUM_STEPS below; the budget count-driven schedules decay over


def _conformance_policy():
  """A fixed (seeded, untrained) schedule policy: decisions every 25 steps, scale kept in [0.5, 2]."""
  from common import encoders  # pylint: disable=g-import-not-at-top
  from schedulers.learned import policy as policy_lib  # pylint: disable=g-import-not-at-top
  from schedulers.learned import transform  # pylint: disable=g-import-not-at-top

  controller = transform.ControllerSpec(
    multipliers=(0.5, 0.8, 1.0, 1.25, 2.0), decision_interval=25, num_decisions=40, scale_bounds=(0.5, 2.0)
  )
  spec = policy_lib.PolicySpec((16,), "tanh", controller)
  network = encoders.make_mlp(transform.OBSERVATION_SIZE, (16,), len(controller.multipliers), activation=jnp.tanh)
  params = network.init(jax.random.PRNGKey(4))
  return policy_lib.Policy(jax.tree.map(lambda x: 3.0 * x, params), spec)


REGISTRY: list[SchedulerEntry] = [
  SchedulerEntry(
    "greedy_lr_after_sgd",
    lambda: optax.chain(optax.sgd(1e-3), schedulers.greedy_lr()),
    True,
  ),
  SchedulerEntry(
    "greedy_lr_after_sgd_smooth",
    lambda: optax.chain(optax.sgd(1e-3), schedulers.greedy_lr(smooth=True, window_size=5)),
    True,
  ),
  SchedulerEntry(
    "greedy_lr_after_adam",
    lambda: optax.chain(optax.adam(1e-2), schedulers.greedy_lr()),
    True,
  ),
  SchedulerEntry(
    "greedy_lr_after_adam_smooth",
    lambda: optax.chain(optax.adam(1e-2), schedulers.greedy_lr(smooth=True, window_size=5)),
    True,
  ),
  SchedulerEntry(
    "learned_schedule_after_momentum",
    lambda: optax.chain(optax.sgd(1e-3, momentum=0.9), schedulers.learned_schedule(_conformance_policy())),
    True,
  ),
  SchedulerEntry(
    "on_eval_greedy_lr",
    lambda: optax.chain(optax.adam(3e-2), schedulers.on_eval(schedulers.greedy_lr())),
    False,
  ),
  # Baselines of the study (schedulers/baselines.py, hypergradient.py,
  # line_search.py): same suite.
  *[
    SchedulerEntry(
      f"adamw_{kind}",
      lambda kind=kind: baselines.make_base_optimizer("adamw", baselines.make_schedule(kind, 1e-1, _STEPS)),
      False,
    )
    for kind in baselines.SCHEDULE_KINDS
  ],
  SchedulerEntry(
    "momentum_cosine_warmup",
    lambda: baselines.make_base_optimizer("momentum", baselines.make_schedule("cosine_warmup", 1e-3, _STEPS)),
    False,
  ),
  SchedulerEntry(
    "adamw_reduce_on_plateau",
    lambda: baselines.reduce_on_plateau(baselines.make_base_optimizer("adamw", 3e-2), total_steps=_STEPS),
    True,
  ),
  SchedulerEntry(
    "schedule_free_adamw",
    lambda: baselines.make_schedule_free("adamw", 1e-1, _STEPS),
    False,
    eval_params=baselines.schedule_free_eval_params,
  ),
  SchedulerEntry(
    "schedule_free_sgd",
    lambda: baselines.make_schedule_free("sgd", 1e-2, _STEPS),
    False,
    eval_params=baselines.schedule_free_eval_params,
  ),
  SchedulerEntry("sgd_hd", lambda: hypergradient.sgd_hd(1e-3, hypergrad_lr=1e-6), False),
  SchedulerEntry(
    "sgd_hd_momentum",
    lambda: hypergradient.sgd_hd(1e-3, hypergrad_lr=1e-6, momentum=0.9),
    False,
  ),
  SchedulerEntry(
    "adam_hd_group",
    lambda: hypergradient.adam_hd(3e-2, hypergrad_lr=1e-7, per="group"),
    False,
  ),
  SchedulerEntry(
    "adam_hd_parameter",
    lambda: hypergradient.adam_hd(3e-2, hypergrad_lr=1e-5, per="parameter"),
    False,
  ),
  SchedulerEntry(
    "sls_sgd",
    lambda: line_search.sls_sgd(init_step_size=1e-2, n_batches_per_epoch=100),
    True,
    line_search=True,
  ),
]

_ENTRIES = pytest.mark.parametrize("entry", REGISTRY, ids=lambda e: e.name)
_NUM_STEPS = 1500


# ----------------------------------------------------------------------------
# Targets (as in optax's contrib common tests).


def _parabola(dtype):
  init = jnp.array([-1.0, 10.0, 1.0], dtype)
  final = jnp.array([1.0, -1.0, 1.0], dtype)
  return init, final, lambda p: jnp.sum(jnp.square(p - final))


def _rosenbrock(dtype):
  init = jnp.array([0.0, 0.0], dtype)
  final = jnp.array([1.0, 1.0], dtype)
  return init, final, lambda p: jnp.square(1.0 - p[0]) + 100.0 * jnp.square(p[1] - p[0] ** 2)


def _mixed_tree(dtype):
  """A plain dict of mixed shapes (scalar, vector, matrix, 3-d)."""
  final = {
    "scalar": jnp.asarray(2.0, dtype),
    "vec": jnp.array([1.0, -1.0, 2.0], dtype),
    "mat": jnp.array([[1.0, 0.0], [-1.0, 1.0]], dtype),
    "cube": jnp.full((2, 1, 3), -0.5, dtype),
  }
  init = jax.tree.map(jnp.zeros_like, final)

  def obj(p):
    return sum(jnp.sum(jnp.square(a - b)) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(final)))

  return init, final, obj


def _update_kwargs(entry, value, obj_fn=None, grads=None):
  kwargs = {"value": value} if entry.needs_value else {}
  if entry.line_search:
    kwargs |= {"value_fn": obj_fn or (lambda p: value), "grad": grads}
  return kwargs


def _make_step(entry, tx, obj_fn, extra=None):
  def step(params, state):
    value, grads = jax.value_and_grad(obj_fn)(params)
    kwargs = _update_kwargs(entry, value, obj_fn, grads) | (extra or {})
    updates, state = tx.update(grads, state, params, **kwargs)
    return optax.apply_updates(params, updates), state, value

  return step


def test_registry_is_well_formed():
  names = [e.name for e in REGISTRY]
  assert len(names) == len(set(names))
  for e in REGISTRY:
    assert isinstance(e.needs_value, bool)
    assert isinstance(e.factory(), optax.GradientTransformationExtraArgs)


@_ENTRIES
def test_jit_extra_args_and_no_recompilation(entry):
  tx = entry.factory()
  params, _, obj_fn = _rosenbrock(jnp.float32)
  traces = []
  inner = _make_step(entry, tx, obj_fn, extra={"unexpected_extra_arg_nobody_expects": 1})

  @jax.jit
  def step(params, state):
    traces.append(None)  # Python side effect: runs once per trace
    return inner(params, state)

  state = jax.jit(tx.init)(params)
  params1, state1, _ = step(params, state)
  assert len(traces) == 1
  if _optax_test_utils is not None:
    with _optax_test_utils.log_compilations() as logs:
      params2, state2, _ = step(params1, state1)
    assert not logs, f"{entry.name}: recompiled on the second call"
  else:
    params2, state2, _ = step(params1, state1)
  assert len(traces) == 1, f"{entry.name}: retraced on the second call"
  # The state tree keeps its structure, shapes and dtypes across updates.
  for s in (state1, state2):
    assert jax.tree.structure(s) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(state)):
      assert a.shape == b.shape and a.dtype == b.dtype
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params2))
  assert not np.array_equal(params2, params)


@_ENTRIES
def test_value_requirement(entry):
  tx = entry.factory()
  params = jnp.ones(3)
  state = tx.init(params)
  ls = {"value_fn": lambda p: jnp.sum(p**2), "grad": params} if entry.line_search else {}
  update = lambda v=None: tx.update(  # noqa: E731
    params, state, params, **({} if v is None else {"value": v}), **ls
  )
  if entry.needs_value:
    with pytest.raises(TypeError):
      jax.eval_shape(update)
    jax.eval_shape(update, 1.0)
  else:
    jax.eval_shape(update)  # no value needed
    jax.eval_shape(update, 1.0)  # and a value is accepted (ignored)


@_ENTRIES
def test_state_leaves_are_arrays(entry):
  tx = entry.factory()
  params = {"a": jnp.ones((2, 3)), "b": jnp.zeros(())}
  state = tx.init(params)
  for leaf in jax.tree.leaves(state):
    assert isinstance(leaf, jax.Array), (entry.name, type(leaf), leaf)
  _, new_state = jax.eval_shape(
    lambda s: tx.update(
      params, s, params, **_update_kwargs(entry, 1.0, lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p)), params)
    ),
    state,
  )
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(state)):
    assert a.shape == b.shape and a.dtype == b.dtype, entry.name


@_ENTRIES
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_preserves_update_dtype(entry, dtype):
  tx = entry.factory()
  params = {"w": jnp.array([1.0, 2.0], dtype), "m": jnp.ones((2, 2), dtype)}
  fun = lambda p: sum(
    jnp.sum(x.astype(jnp.float32) ** 2)  # noqa: E731
    for x in jax.tree.leaves(p)
  )
  value, grads = jax.value_and_grad(fun)(params)
  state = tx.init(params)

  def update(g, s, p, v):
    return tx.update(g, s, p, **_update_kwargs(entry, v, fun, g))

  updates, new_state = jax.eval_shape(update, grads, state, params, value)
  for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
    assert u.dtype == p.dtype, (entry.name, u.dtype, p.dtype)
  for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(state)):
    assert a.shape == b.shape and a.dtype == b.dtype, entry.name


@_ENTRIES
def test_bfloat16_runs(entry):
  tx = entry.factory()
  params, _, obj_fn = _parabola(jnp.bfloat16)
  step = jax.jit(_make_step(entry, tx, lambda p: obj_fn(p).astype(jnp.float32)))
  state = tx.init(params)
  for _ in range(3):
    params, state, _ = step(params, state)
  assert params.dtype == jnp.bfloat16
  assert np.all(np.isfinite(np.asarray(params, np.float32)))


@_ENTRIES
def test_converges_inside_scan(entry):
  """Parabola, Rosenbrock and a mixed-shape tree, each in a lax.scan."""
  tx = entry.factory()
  targets = [t(jnp.float32) for t in (_parabola, _rosenbrock, _mixed_tree)]

  @jax.jit
  def run_all():
    out = []
    for init, _, obj_fn in targets:
      step = _make_step(entry, tx, obj_fn)

      def body(carry, _, step=step):
        params, state, value = step(*carry)
        return (params, state), value

      (params, state), losses = jax.lax.scan(body, (init, tx.init(init)), None, length=_NUM_STEPS)
      out.append((entry.eval_params(state, params), losses))
    return out

  results = jax.device_get(run_all())
  for (init, final, obj_fn), (params, losses), name, ratio in zip(
    targets, results, ("parabola", "rosenbrock", "mixed"), (1e-3, 0.2, 1e-3)
  ):
    first, last = float(obj_fn(init)), float(obj_fn(params))
    assert np.isfinite(last), (entry.name, name)
    assert last <= ratio * first, (entry.name, name, first, last)
    assert float(losses[0]) == pytest.approx(first)
    if name != "rosenbrock":
      jax.tree.map(lambda p, f: np.testing.assert_allclose(p, f, atol=5e-2), params, jax.device_get(final))
