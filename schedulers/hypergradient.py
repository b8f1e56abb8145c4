"""Hypergradient descent (HD): SGD-HD and Adam-HD as optax transforms.

Baydin, Cornish, Martinez Rubio, Schmidt, Wood, "Online Learning Rate
Adaptation with Hypergradient Descent", ICLR 2018 (arXiv 1703.04782), adapt the
learning rate α online by gradient descent on the loss *with respect to α*.
If the last step was `w_t = w_{t-1} - α d_{t-1}` (d the descent direction the
optimizer moved along), then `∂f(w_t)/∂α = -<∇f(w_t), d_{t-1}>`, so one
hypergradient step with rate β is

  h_t = <g_t, d_{t-1}>,    α_t = α_{t-1} + β h_t,

and the parameter step of iteration t already uses the new α_t. α grows while
successive steps keep pointing the same way (the step was too short) and
shrinks when the new gradient opposes the last step (it overshot).

* `sgd_hd`: one global α for the whole pytree (the reference `SGDHD` refuses
  parameter groups), PyTorch-style (heavy-ball / Nesterov) momentum, identical
  to `optax.sgd(α, momentum, nesterov)` when `hypergrad_lr=0`.
* `adam_hd`: Adam (optax eps placement) with decoupled weight decay; one α per
  pytree leaf (`per='group'`) or one per parameter entry (`per='parameter'`);
  identical to `optax.adamw(α, b1, b2, eps, weight_decay)` when
  `hypergrad_lr=0`.

Both are plain gradient transformations (no loss needed); they are returned as
`GradientTransformationExtraArgs` that ignore any extra keyword arguments, so
they drop into a trainer that passes `value=`, `grad=`, `value_fn=`. Every
numeric hyperparameter, the initial learning rate included, may be a traced
JAX array (vmapped learning-rate grids); they are validated only when concrete.
The current learning rate(s) live in `state.learning_rate` for logging.

Note (faithful to the reference): α is not clipped, so a too-large β can drive
it negative (the run then diverges); that is part of the method's sensitivity.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from schedulers import _validation

__all__ = [
  "AdamHDState",
  "SGDHDState",
  "adam_hd",
  "sgd_hd",
]


class SGDHDState(NamedTuple):
  """State of `sgd_hd`: fixed-shape arrays only (jit, scan, vmap, orbax)."""

  learning_rate: jax.Array  # scalar α used by the last step (α_0 at init)
  prev_direction: optax.Updates  # d_{t-1}: the last step was -α_{t-1} d_{t-1}
  momentum_buffer: optax.Updates  # b_t = μ b_{t-1} + g_t; None without momentum
  count: jax.Array  # int32, number of updates so far


class AdamHDState(NamedTuple):
  """State of `adam_hd`: fixed-shape arrays only (jit, scan, vmap, orbax)."""

  learning_rate: optax.Updates  # α: a scalar per leaf ('group') or per entry
  prev_direction: optax.Updates  # d_{t-1} = u_{t-1} + λ w_{t-1} (see adam_hd)
  mu: optax.Updates  # first moment m_t (uncorrected)
  nu: optax.Updates  # second moment v_t (uncorrected)
  count: jax.Array  # int32, number of updates so far (t)


def _check_learning_rate(prefix: str, learning_rate) -> None:
  if callable(learning_rate):
    raise ValueError(
      f"{prefix}: learning_rate must be a scalar (the initial α, adapted by hypergradient descent), not a schedule."
    )
  _validation.check_learning_rate(prefix, learning_rate)


def _state_dtype(params) -> jnp.dtype:
  """Highest floating dtype among `params`, at least float32."""
  leaves = jax.tree.leaves(params)
  if not leaves:
    return jnp.dtype(jnp.float32)
  return jnp.promote_types(optax.tree.dtype(params, "highest"), jnp.float32)


def _is_zero(x) -> bool:
  """True when `x` is concretely zero (lets us skip work/state)."""
  return _validation.is_concrete(x) and bool(np.all(np.asarray(x) == 0))


def sgd_hd(
  learning_rate: jax.typing.ArrayLike,
  hypergrad_lr: jax.typing.ArrayLike = 1e-3,
  momentum: jax.typing.ArrayLike = 0.0,
  nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""SGD with hypergradient descent on one global learning rate (SGD-HD).

  With g_t the incoming gradient, d_{t-1} the previous descent direction
  (d_0 = 0) and μ the momentum::

    h_t = <g_t, d_{t-1}>                      (summed over all leaves)
    α_t = α_{t-1} + β h_t
    b_t = μ b_{t-1} + g_t                     (b_0 = 0; only if μ != 0)
    d_t = g_t                  if μ == 0
          b_t                  if μ != 0 and not nesterov
          g_t + μ b_t          if nesterov
    update_t = -α_t d_t

  This is `hypergrad/sgd_hd.py` of the reference (gbaydin/hypergradient-descent,
  `SGDHD`, dampening 0, no weight decay): `h = dot(grad, grad_prev)` with
  `grad_prev` the previous direction (the momentum buffer / Nesterov
  direction when momentum is on), `lr += hypergrad_lr * h`, then the step uses
  the new lr. Paper Algorithm "SGD-HD" / "SGDN-HD": since the last step was
  `w_t = w_{t-1} - α d_{t-1}`, `∂f(w_t)/∂α = -<g_t, d_{t-1}>`, and descending
  on α gives `α += β <g_t, d_{t-1}>`. The momentum convention is PyTorch's
  (`b = μ b + g; w -= α b`), the same as `optax.sgd(..., momentum=μ)`, so with
  `hypergrad_lr=0` this is exactly `optax.sgd(learning_rate, momentum,
  nesterov)`.

  Args:
    learning_rate: initial α_0 (scalar, >= 0; may be a traced array).
    hypergrad_lr: hypergradient rate β (>= 0). The paper uses 1e-3 for
      SGD/SGDN; the reference default is 1e-6.
    momentum: μ in [0, 1).
    nesterov: Nesterov momentum (requires μ > 0, as in the reference).

  Returns:
    A `GradientTransformationExtraArgs` (extra args are accepted and ignored)
    with state `SGDHDState`; `state.learning_rate` is the α used last.

  References:
    Baydin et al., "Online Learning Rate Adaptation with Hypergradient
    Descent", ICLR 2018, arXiv 1703.04782, §2-3; code:
    github.com/gbaydin/hypergradient-descent `hypergrad/sgd_hd.py`.
  """
  prefix = "sgd_hd"
  _check_learning_rate(prefix, learning_rate)
  _validation.check(prefix, "hypergrad_lr", hypergrad_lr, lambda b: b >= 0, ">= 0")
  _validation.check(prefix, "momentum", momentum, lambda m: (m >= 0) & (m < 1), "in [0, 1)")
  if not isinstance(nesterov, (bool, np.bool_)):
    raise ValueError(f"{prefix}: nesterov must be a bool, got {nesterov!r}.")
  if nesterov and _is_zero(momentum):
    raise ValueError(f"{prefix}: nesterov=True requires momentum > 0.")
  use_momentum = bool(nesterov) or not _is_zero(momentum)

  def init_fn(params) -> SGDHDState:
    dtype = _state_dtype(params)
    zeros = optax.tree.zeros_like(params)
    return SGDHDState(
      learning_rate=jnp.asarray(learning_rate, dtype),
      prev_direction=zeros,
      momentum_buffer=optax.tree.zeros_like(params) if use_momentum else None,
      count=jnp.zeros((), jnp.int32),
    )

  def update_fn(updates, state: SGDHDState, params=None, **extra_args):
    del params, extra_args
    dtype = state.learning_rate.dtype
    # Elementwise products and sums (not dot): exact f32 on every backend.
    h = sum(
      (
        jnp.sum(g.astype(dtype) * d.astype(dtype))
        for g, d in zip(jax.tree.leaves(updates), jax.tree.leaves(state.prev_direction))
      ),
      jnp.zeros((), dtype),
    )
    alpha = (state.learning_rate + hypergrad_lr * h).astype(dtype)
    if use_momentum:
      buffer = jax.tree.map(lambda g, b: g + momentum * b, updates, state.momentum_buffer)
      if nesterov:
        direction = jax.tree.map(lambda g, b: g + momentum * b, updates, buffer)
      else:
        direction = buffer
      buffer = optax.tree.cast_like(buffer, state.momentum_buffer)
    else:
      buffer, direction = None, updates
    new_updates = jax.tree.map(lambda d: jnp.asarray(-alpha, d.dtype) * d, direction)
    new_state = SGDHDState(
      learning_rate=alpha,
      prev_direction=optax.tree.cast_like(direction, state.prev_direction),
      momentum_buffer=buffer,
      count=optax.safe_increment(state.count),
    )
    return new_updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adam_hd(
  learning_rate: jax.typing.ArrayLike,
  hypergrad_lr: jax.typing.ArrayLike = 1e-8,
  b1: jax.typing.ArrayLike = 0.9,
  b2: jax.typing.ArrayLike = 0.999,
  eps: jax.typing.ArrayLike = 1e-8,
  weight_decay: jax.typing.ArrayLike = 0.0,
  per: str = "group",
) -> optax.GradientTransformationExtraArgs:
  r"""Adam(W) with hypergradient descent on the learning rate (Adam-HD).

  With g_t the incoming gradient, w_{t-1} the current params, λ the weight
  decay and t = 1, 2, ...::

    h_t = <g_t, d_{t-1}>_group  or  g_t ⊙ d_{t-1}  (per='parameter'); d_0 = 0
    α_t = α_{t-1} + β h_t
    m_t = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) g_t²
    u_t = m̂_t / (sqrt(v̂_t) + eps),    m̂_t = m_t/(1-b1^t), v̂_t = v_t/(1-b2^t)
    d_t = u_t + λ w_{t-1}
    update_t = -α_t ⊙ d_t

  With λ = 0, `h_t = <g_t, m̂_{t-1}/(sqrt(v̂_{t-1}) + eps)>` is the
  hypergradient of `hypergrad/adam_hd.py` (bias corrections of step t-1), and
  `α += β h` is the paper's Adam-HD rule. `per='group'` keeps one α per pytree
  leaf (the reference updates one α per parameter group, tensor by tensor; our
  group is a leaf); `per='parameter'` keeps an elementwise α tensor, as in
  jpeg729/pytorch_bits `Adam_HD_lr_per_param` (`lr -= lr_lr * g ⊙ (-u_{t-1})`).
  Per-group sums many products, so its useful β is smaller than per-parameter.

  Differences from the reference, and why:

  * eps is added to the bias-corrected root (optax's `scale_by_adam`), not to
    the raw `sqrt(v)` as in PyTorch; the hypergradient uses the very direction
    u_{t-1} that was applied, so it stays the exact derivative, and
    `hypergrad_lr=0` equals `optax.adam` / `optax.adamw` exactly.
  * Weight decay is decoupled (AdamW, multiplied by α) instead of the
    reference's L2 term added to the gradient, so the transform stands in for
    the AdamW row. The previous step moved along the full direction
    `d_{t-1} = u_{t-1} + λ w` (w: the params it was applied to), so the
    hypergradient uses that direction: `∂f/∂α = -<g_t, d_{t-1}>`.

  Args:
    learning_rate: initial α_0 (scalar, >= 0; may be a traced array).
    hypergrad_lr: hypergradient rate β (>= 0). Paper: 1e-7 (logreg, MLP),
      1e-8 (VGG); reference default 1e-8.
    b1: first-moment decay in [0, 1).
    b2: second-moment decay in [0, 1).
    eps: added to sqrt(v̂) (> 0 keeps the step finite).
    weight_decay: decoupled weight decay λ >= 0 (AdamW).
    per: 'group' (one α per leaf) or 'parameter' (elementwise α).

  Returns:
    A `GradientTransformationExtraArgs` (extra args are accepted and ignored)
    with state `AdamHDState`; `state.learning_rate` is a pytree like params
    with a scalar ('group') or a full-shape array ('parameter') per leaf.

  References:
    Baydin et al., "Online Learning Rate Adaptation with Hypergradient
    Descent", ICLR 2018, arXiv 1703.04782, Algorithm "Adam-HD"; code:
    github.com/gbaydin/hypergradient-descent `hypergrad/adam_hd.py`;
    jpeg729/pytorch_bits `optim/adam_hd.py` (per-parameter variant).
    Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
  """
  prefix = "adam_hd"
  if per not in ("group", "parameter"):
    raise ValueError(f"{prefix}: per must be 'group' or 'parameter', got {per!r}.")
  _check_learning_rate(prefix, learning_rate)
  _validation.check(prefix, "hypergrad_lr", hypergrad_lr, lambda b: b >= 0, ">= 0")
  _validation.check(prefix, "b1", b1, lambda b: (b >= 0) & (b < 1), "in [0, 1)")
  _validation.check(prefix, "b2", b2, lambda b: (b >= 0) & (b < 1), "in [0, 1)")
  _validation.check(prefix, "eps", eps, lambda e: e >= 0, ">= 0")
  _validation.check(prefix, "weight_decay", weight_decay, lambda w: w >= 0, ">= 0")
  decay = not _is_zero(weight_decay)

  def init_fn(params) -> AdamHDState:
    dtype = _state_dtype(params)
    if per == "group":
      alpha = jax.tree.map(lambda _: jnp.asarray(learning_rate, dtype), params)
    else:
      alpha = jax.tree.map(lambda p: jnp.full(jnp.shape(p), learning_rate, dtype), params)
    return AdamHDState(
      learning_rate=alpha,
      prev_direction=optax.tree.zeros_like(params),
      mu=optax.tree.zeros_like(params),
      nu=optax.tree.zeros_like(params),
      count=jnp.zeros((), jnp.int32),
    )

  def _new_alpha(alpha, g, d):
    prod = g.astype(alpha.dtype) * d.astype(alpha.dtype)
    h = jnp.sum(prod) if per == "group" else prod
    return (alpha + hypergrad_lr * h).astype(alpha.dtype)

  def update_fn(updates, state: AdamHDState, params=None, **extra_args):
    del extra_args
    if decay and params is None:
      raise ValueError(f"{prefix}: weight_decay > 0 needs params in update().")
    alpha = jax.tree.map(_new_alpha, state.learning_rate, updates, state.prev_direction)
    # Same operations, in the same order, as optax.scale_by_adam + adamw.
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count_inc = optax.safe_increment(state.count)
    mu_hat = optax.tree.bias_correction(mu, b1, count_inc)
    nu_hat = optax.tree.bias_correction(nu, b2, count_inc)
    direction = jax.tree.map(lambda m, v: m / (jnp.sqrt(v + 0.0) + eps), mu_hat, nu_hat)
    if decay:
      direction = jax.tree.map(lambda u, p: u + weight_decay * p, direction, params)
    new_updates = jax.tree.map(lambda a, d: (-a).astype(d.dtype) * d, alpha, direction)
    new_state = AdamHDState(
      learning_rate=alpha,
      prev_direction=optax.tree.cast_like(direction, state.prev_direction),
      mu=optax.tree.cast_like(mu, state.mu),
      nu=optax.tree.cast_like(nu, state.nu),
      count=count_inc,
    )
    return new_updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
