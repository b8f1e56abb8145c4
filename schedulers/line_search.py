"""Stochastic line search (SLS, Armijo) SGD as an optax transform.

Vaswani, Mishkin, Laradji, Schmidt, Gidel, Lacoste-Julien, "Painless
Stochastic Gradient: Interpolation, Line-Search, and Convergence Rates",
NeurIPS 2019 (arXiv 1905.09997) pick every SGD step size by backtracking on
the *same minibatch* the gradient came from. Per step, with f the minibatch
loss, g its gradient at w and η the step size carried over from the last
step (η starts at `init_step_size`)::

  η ← min(η · γ^(1/n_batches_per_epoch), η_max)         (reset_option 1)
  while f(w - η g) > f(w) - c η ‖g‖²:  η ← β_b η         (at most M tries)
  w ← w - η g

This is `Sls` of the reference code (IssamLaradji/sls, `sls/sls.py`,
`sls/utils.py`), including its edge cases:

* ‖g‖ < 1e-8: no search and no step; η keeps its reset value.
* failure (no accepted η within `max_backtracking_steps` evaluations): a tiny
  step of `failure_step_size` (reference: 1e-6) is taken, and the carried η is
  the last tried one times β_b (η₀ β_b^M, as the reference's loop leaves it),
  so the next search restarts from a small value.

Each tried η costs one forward pass `value_fn(w - η g)`; their cumulative
count is `state.num_forward_passes` (read it anywhere in a chain with
`sls_forward_passes`). A step therefore costs one gradient plus
`num_forward_passes` increments of extra forward passes, to be charged in a
fair budget comparison.

Unlike `optax.scale_by_backtracking_linesearch` (which this resembles:
slope_rtol=c, decrease_factor=β_b, increase_factor=γ^(1/n)) this is a complete
optimizer (no `optax.sgd(1.)` in front), starts from `init_step_size` (optax
hard-codes 1.0), matches the reference failure/skip behaviour and counts
evaluations cumulatively.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from schedulers import _validation

__all__ = [
  "SLSState",
  "sls_forward_passes",
  "sls_sgd",
]

# Reference (`sls/sls.py`): the search is skipped below this gradient norm.
_MIN_GRAD_NORM = 1e-8


class SLSState(NamedTuple):
  """State of `sls_sgd`: fixed-shape arrays only (jit, scan, vmap, orbax)."""

  step_size: jax.Array  # η carried to the next search (reference step_size)
  learning_rate: jax.Array  # step applied by the last update (0 when skipped)
  num_forward_passes: jax.Array  # int32, cumulative value_fn evaluations
  num_failed_searches: jax.Array  # int32, cumulative searches without success
  count: jax.Array  # int32, number of updates so far


def _value_fn_kwargs(value_fn: Callable[..., Any], extra_args: dict[str, Any]):
  """The extra args `value_fn` accepts by name (optax's linesearch convention).

  `optax.chain` hands every extra arg to every member, so those `value_fn`
  does not take (e.g. `value`, `grad`) are dropped rather than rejected.
  """
  try:
    parameters = inspect.signature(value_fn).parameters.values()
  except (TypeError, ValueError):
    return {}
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
    return dict(extra_args)
  names = {
    p.name for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
  }
  return {k: v for k, v in extra_args.items() if k in names}


def sls_sgd(
  init_step_size: jax.typing.ArrayLike = 1.0,
  c: jax.typing.ArrayLike = 0.1,
  beta_b: jax.typing.ArrayLike = 0.9,
  gamma: jax.typing.ArrayLike = 2.0,
  n_batches_per_epoch: jax.typing.ArrayLike = 500,
  eta_max: jax.typing.ArrayLike = 10.0,
  max_backtracking_steps: int = 100,
  *,
  failure_step_size: jax.typing.ArrayLike = 1e-6,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD with a stochastic Armijo line search (SLS, reset_option 1).

  For incoming updates u (the minibatch gradient, or any descent direction)
  and slope s = <u, grad> (= ‖g‖² for plain SGD)::

    η₀ = min(η_{t-1} γ^(1/n), η_max)
    η = η₀ β_b^k for the first k in [0, M) with
        value_fn(w - η u) <= value - c η s                  (Armijo, same batch)
    update = -η u            (k found)
           = -failure_step_size u, and η_t = η₀ β_b^M   (no k found)
           = 0, and η_t = η₀                             (‖u‖ < 1e-8)

  Args:
    init_step_size: initial η (> 0; may be a traced array, e.g. a vmapped
      learning-rate grid).
    c: Armijo constant in [0, 1) (reference 0.1).
    beta_b: backtracking factor in (0, 1).
    gamma: per-epoch growth factor >= 1 of the step size guess; each step
      multiplies η by γ^(1/n_batches_per_epoch).
    n_batches_per_epoch: minibatches per epoch (> 0).
    eta_max: cap on the guess η₀ (> 0).
    max_backtracking_steps: M, the most evaluations of `value_fn` per step
      (Python int >= 1; reference 100).
    failure_step_size: step taken when the search fails (reference 1e-6).

  Returns:
    A `GradientTransformationExtraArgs` whose `update(updates, state, params,
    *, value, value_fn, grad=None, **extra_args)` needs `value` = f(params) on
    the minibatch and `value_fn(params, **kw)` evaluating the same minibatch
    loss; `grad` (default: `updates`) enters the slope; the extra args that
    `value_fn` accepts by name are forwarded to it. State `SLSState`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from schedulers.line_search import sls_sgd
    >>> loss = lambda w: jnp.sum(w ** 2)
    >>> tx = sls_sgd(init_step_size=1.0)
    >>> w = jnp.array([1.0, -2.0])
    >>> state = tx.init(w)
    >>> v, g = jax.value_and_grad(loss)(w)
    >>> u, state = tx.update(g, state, w, value=v, grad=g, value_fn=loss)
    >>> int(state.num_forward_passes)  # tries η = 1.0014, 0.9012, 0.8111
    3
    >>> round(float(state.learning_rate), 4)
    0.8111

  References:
    Vaswani et al., "Painless Stochastic Gradient: Interpolation, Line-Search,
    and Convergence Rates", NeurIPS 2019, arXiv 1905.09997, Algorithm 1-2;
    code: github.com/IssamLaradji/sls `sls/sls.py`, `sls/utils.py`.
  """
  _validation.check("sls_sgd", "init_step_size", init_step_size, lambda e: e > 0, "> 0")
  _validation.check("sls_sgd", "c", c, lambda x: (x >= 0) & (x < 1), "in [0, 1)")
  _validation.check("sls_sgd", "beta_b", beta_b, lambda b: (b > 0) & (b < 1), "in (0, 1)")
  _validation.check("sls_sgd", "gamma", gamma, lambda g: g >= 1, ">= 1")
  _validation.check("sls_sgd", "n_batches_per_epoch", n_batches_per_epoch, lambda n: n > 0, "> 0")
  _validation.check("sls_sgd", "eta_max", eta_max, lambda e: e > 0, "> 0")
  _validation.check("sls_sgd", "failure_step_size", failure_step_size, lambda e: e >= 0, ">= 0")
  if (
    isinstance(max_backtracking_steps, (bool, np.bool_))
    or not isinstance(max_backtracking_steps, (int, np.integer))
    or max_backtracking_steps < 1
  ):
    raise ValueError(f"sls_sgd: max_backtracking_steps must be a Python int >= 1, got {max_backtracking_steps!r}.")

  def init_fn(params) -> SLSState:
    if not jax.tree.leaves(params):
      dtype = jnp.float32
    else:
      highest = optax.tree.dtype(params, "highest")
      dtype = jnp.promote_types(highest, jnp.float32)
    zero = jnp.zeros((), jnp.int32)
    return SLSState(
      step_size=jnp.asarray(init_step_size, dtype),
      learning_rate=jnp.zeros((), dtype),
      num_forward_passes=zero,
      num_failed_searches=zero,
      count=zero,
    )

  def update_fn(
    updates,
    state: SLSState,
    params=None,
    *,
    value: jax.typing.ArrayLike,
    value_fn: Callable[..., jax.typing.ArrayLike],
    grad: optax.Updates | None = None,
    **extra_args,
  ):
    if params is None:
      raise ValueError("sls_sgd: update() needs params (the search evaluates value_fn at params - η updates).")
    fn_kwargs = _value_fn_kwargs(value_fn, extra_args)
    dtype = state.step_size.dtype
    grad = updates if grad is None else grad
    leaves_u = [u.astype(dtype) for u in jax.tree.leaves(updates)]
    leaves_g = [g.astype(dtype) for g in jax.tree.leaves(grad)]
    zero = jnp.zeros((), dtype)
    norm_sq = sum((jnp.sum(u * u) for u in leaves_u), zero)
    slope = sum((jnp.sum(u * g) for u, g in zip(leaves_u, leaves_g)), zero)
    value = jnp.asarray(value, dtype)
    search = jnp.sqrt(norm_sq) >= _MIN_GRAD_NORM

    eta0 = jnp.minimum(state.step_size * jnp.power(gamma, 1.0 / n_batches_per_epoch), eta_max).astype(dtype)

    def try_step(eta):
      candidate = jax.tree.map(
        lambda p, u: (p - eta.astype(p.dtype) * u).astype(p.dtype),
        params,
        updates,
      )
      return jnp.asarray(value_fn(candidate, **fn_kwargs), dtype)

    def cond_fn(carry):
      _, num_evals, found = carry
      return search & ~found & (num_evals < max_backtracking_steps)

    def body_fn(carry):
      eta, num_evals, _ = carry
      # Written as in the reference: loss_next - (loss - η c ‖g‖²) <= 0.
      # A NaN loss_next compares False, so it backtracks.
      found = try_step(eta) - (value - eta * c * slope) <= 0
      eta = jnp.where(found, eta, eta * beta_b).astype(dtype)
      return eta, num_evals + 1, found

    eta, num_evals, found = jax.lax.while_loop(cond_fn, body_fn, (eta0, jnp.zeros((), jnp.int32), jnp.array(False)))
    failed = search & ~found
    step = jnp.where(found, eta, jnp.where(failed, jnp.asarray(failure_step_size, dtype), 0)).astype(dtype)
    new_updates = jax.tree.map(lambda u: (-step).astype(u.dtype) * u, updates)
    new_state = SLSState(
      step_size=eta,
      learning_rate=step,
      num_forward_passes=state.num_forward_passes + num_evals,
      num_failed_searches=(state.num_failed_searches + failed.astype(jnp.int32)),
      count=optax.safe_increment(state.count),
    )
    return new_updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def sls_forward_passes(opt_state: Any) -> jax.Array:
  """Cumulative line-search forward passes of every `SLSState` in `opt_state`.

  Finds the `SLSState`(s) anywhere inside a (chained, named, injected) optimizer
  state and sums their `num_forward_passes`; 0 (int32) when there is none, so a
  budget accounting can call it on every arm.

  Args:
    opt_state: any optax state pytree.

  Returns:
    An int32 array (scalar, or batched like the state under vmap).
  """
  is_sls = lambda x: isinstance(x, SLSState)
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=is_sls) if is_sls(s)]
  total = jnp.zeros((), jnp.int32)
  for s in found:
    total = total + s.num_forward_passes
  return total
