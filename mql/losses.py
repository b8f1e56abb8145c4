"""TD3 losses of Meta-Q-Learning, with the adaptation stage's weights and proximal term.

TD3 (Fujimoto, van Hoof and Meger, 2018, "Addressing Function Approximation
Error in Actor-Critic Methods", arXiv:1802.09477) as the official MQL code
runs it (amazon-science/meta-q-learning, `algs/MQL/mql.py`, `train_TD3` and
`do_training`; defaults from `main.py`):

* target action `clip(actor_target(s', h') + clip(N(0, 0.3²), ±0.5), ±1)`;
* target `y = r + γ (1 − terminal) min(Q1', Q2')(s', a', h')`, γ = 0.99;
  time-limit truncation is not terminal (`done_bool = 0` at the time limit);
* critic loss `mean((Q1 − y)² + (Q2 − y)²)`; actor loss `−mean Q1(s, π(s, h), h)`;
* Polyak targets with τ = 0.005 (`soft_update`).

Here `h` is the (s, a, r) history before the transition and `h'` the one
after it (`Transition.history`, `Transition.next_history`).

MQL's adaptation reuses the same losses with per-transition importance weights
β (`mql.propensity.beta_weights`), `mean(β · per-transition loss)`, plus the
proximal term `prox_coef · Σ ‖θ − θ_meta‖²` (squared L2 over every parameter
tensor of the network being trained, its context GRU included, with no ½
factor; `--prox_coef 0.1`), as `do_training` does.

RL maths on unbatched inputs (rlax style, rank-checked with chex):
`td3_target(reward, discount, next_q1, next_q2)` and
`target_policy_smoothing(action, noise_key, *, noise, noise_clip)`.
`make_losses(networks, ...)` returns brax.training-style closures over a
batch of transitions, each returning `(loss, metrics)`.

Both losses take the full `MQLParams`. The critic loss depends only on
`params.critic`, the actor loss only on `params.actor` (the critic is held
fixed), so apply `grads.critic` / `grads.actor` respectively::

  losses = make_losses(nets)
  (loss, metrics), grads = jax.value_and_grad(losses.critic_loss, has_aux=True)(params, target, batch, key)
  updates, critic_opt_state = critic_opt.update(grads.critic, critic_opt_state, params.critic)
  params = params._replace(critic=optax.apply_updates(params.critic, updates))
  ...  # every policy_delay (2) steps: the actor loss, then soft_update of both targets
"""

from typing import Any, Callable, NamedTuple, Optional, Union

import chex
import jax
import jax.numpy as jnp

from mql.networks import MQLNetworks, MQLParams

Numeric = Union[float, jax.Array]
PyTree = Any


class Transition(NamedTuple):
  """A batch of transitions with their histories (leading axis B).

  Attributes:
    observation: `[B, S]` s_t.
    action: `[B, A]` a_t.
    reward: `[B]` r_t.
    discount: `[B]` termination mask `1 − terminal`: 0 only when the episode
      really terminated at t + 1; a time-limit truncation keeps 1 (the
      original's `done_bool`), so `next_observation` must be the true
      s_{t+1}, never an auto-reset observation.
    next_observation: `[B, S]` s_{t+1}.
    history: `[B, T, A + 1 + S]` the history the actor saw at t
      (`networks.history_features` order), or None without contexts.
    history_mask: `[B, T]` its validity mask (None: all valid).
    next_history: `[B, T, A + 1 + S]` the history at t + 1 (for the targets).
    next_history_mask: `[B, T]`.
  """

  observation: jax.Array
  action: jax.Array
  reward: jax.Array
  discount: jax.Array
  next_observation: jax.Array
  history: Optional[jax.Array] = None
  history_mask: Optional[jax.Array] = None
  next_history: Optional[jax.Array] = None
  next_history_mask: Optional[jax.Array] = None


class Losses(NamedTuple):
  """The TD3 loss closures of `make_losses`, each returning `(loss, metrics)`.

  Attributes:
    critic_loss: `critic_loss(params, target_params, batch, key, *,
      weights=None, reference_params=None, prox_coef=0.1)`.
    actor_loss: `actor_loss(params, batch, *, weights=None,
      reference_params=None, prox_coef=0.1)`.
  """

  critic_loss: Callable[..., tuple[jax.Array, dict]]
  actor_loss: Callable[..., tuple[jax.Array, dict]]


# ---------------------------------------------------------------------------
# RL maths on unbatched inputs.
# ---------------------------------------------------------------------------


def td3_target(
  reward: jax.Array,
  discount: jax.Array,
  next_q1: jax.Array,
  next_q2: jax.Array,
  *,
  stop_target_gradients: bool = True,
) -> jax.Array:
  """Clipped double-Q target `reward + discount · min(next_q1, next_q2)`.

  Args:
    reward: `[]` r_t.
    discount: `[]` γ times the termination mask (0 at a true termination; a
      time-limit truncation is not one).
    next_q1: `[]` first target critic at (s_{t+1}, smoothed target action).
    next_q2: `[]` second target critic there.
    stop_target_gradients: stop gradients through the target (as the
      original's `.detach()`).

  Returns:
    `[]` the target.
  """
  chex.assert_rank([reward, discount, next_q1, next_q2], 0)
  chex.assert_type([reward, discount, next_q1, next_q2], float)
  target = reward + discount * jnp.minimum(next_q1, next_q2)
  return jax.lax.stop_gradient(target) if stop_target_gradients else target


def target_policy_smoothing(
  action: jax.Array, noise_key: jax.Array, *, noise: Numeric, noise_clip: Numeric
) -> jax.Array:
  """TD3's target action: `clip(action + clip(noise · N(0, I), ±noise_clip), ±1)`.

  Args:
    action: `[A]` target actor's action in [-1, 1].
    noise_key: PRNG key.
    noise: Gaussian noise std (the original's `--policy_noise`, 0.3).
    noise_clip: noise clip radius (`--noise_clip`, 0.5).

  Returns:
    `[A]` the smoothed action in [-1, 1].
  """
  chex.assert_rank(action, 1)
  chex.assert_type(action, float)
  eps = jax.random.normal(noise_key, action.shape, action.dtype) * noise
  eps = jnp.clip(eps, -noise_clip, noise_clip)
  return jnp.clip(action + eps, -1.0, 1.0)


def squared_distance(params: PyTree, reference_params: PyTree) -> jax.Array:
  """`Σ_leaves ‖θ − θ_ref‖²` (no ½), gradients stopped through `reference_params`."""
  chex.assert_trees_all_equal_shapes(params, reference_params)
  terms = jax.tree.map(
    lambda p, r: jnp.sum(jnp.square(p - jax.lax.stop_gradient(r)).astype(jnp.float32)), params, reference_params
  )
  return sum(jax.tree.leaves(terms), jnp.zeros((), jnp.float32))


def soft_update(target: PyTree, online: PyTree, tau: Numeric = 0.005) -> PyTree:
  """Polyak averaging `τ · online + (1 − τ) · target` (the original's `--ptau`, 0.005)."""
  _check_unit("tau", tau)
  chex.assert_trees_all_equal_shapes(target, online)
  return jax.tree.map(lambda t, o: (tau * o + (1.0 - tau) * t).astype(t.dtype), target, online)


# ---------------------------------------------------------------------------
# Batched losses.
# ---------------------------------------------------------------------------


def _check_unit(name: str, value: Any) -> None:
  """Range-checks a concrete hyperparameter in [0, 1] (traced values pass)."""
  if isinstance(value, jax.core.Tracer):
    return
  if not 0.0 <= float(value) <= 1.0:
    raise ValueError(f"{name} must be in [0, 1], got {value!r}.")


def _check_nonnegative(name: str, value: Any) -> None:
  if isinstance(value, jax.core.Tracer):
    return
  if not float(value) >= 0.0:
    raise ValueError(f"{name} must be >= 0, got {value!r}.")


def _check_batch(networks: MQLNetworks, batch: Transition) -> int:
  obs = batch.observation
  chex.assert_rank(obs, 2)
  size = obs.shape[0]
  chex.assert_shape([obs, batch.next_observation], (size, networks.observation_size))
  chex.assert_shape(batch.action, (size, networks.action_size))
  chex.assert_shape([batch.reward, batch.discount], (size,))
  if networks.use_context:
    if batch.history is None or batch.next_history is None:
      raise ValueError("These networks use contexts: the batch needs history and next_history.")
    chex.assert_rank([batch.history, batch.next_history], 3)
    chex.assert_axis_dimension(batch.history, 0, size)
    chex.assert_axis_dimension(batch.next_history, 0, size)
  return size


def _weights(weights: Optional[jax.Array], size: int, dtype) -> jax.Array:
  if weights is None:
    return jnp.ones((size,), dtype)
  chex.assert_shape(weights, (size,))
  return jax.lax.stop_gradient(jnp.asarray(weights, dtype))


def make_losses(
  networks: MQLNetworks, *, discount: Numeric = 0.99, policy_noise: Numeric = 0.3, noise_clip: Numeric = 0.5
) -> Losses:
  """Makes the TD3 critic and actor losses over a batch of transitions.

  Args:
    networks: `mql.networks.make_networks(...)`.
    discount: γ (the original's `--gamma`, 0.99).
    policy_noise: target smoothing noise std (`--policy_noise`, 0.3; per
      family 0.2-0.4 in `run_script.py`).
    noise_clip: target smoothing clip (`--noise_clip`, 0.5).

  Returns:
    `Losses(critic_loss, actor_loss)`:

    * `critic_loss(params, target_params, batch, key, *, weights=None,
      reference_params=None, prox_coef=0.1)`: `mean(w · [(Q1 − y)² + (Q2 −
      y)²])` (+ `prox_coef · squared_distance(params.critic,
      reference_params.critic)` when `reference_params` is given), with `y`
      from `target_params` (actor and critic targets) at `next_*`; depends on
      `params.critic` only.
    * `actor_loss(params, batch, *, weights=None, reference_params=None,
      prox_coef=0.1)`: `−mean(w · Q1(s, π(s, h), h))` (+ the proximal term on
      `params.actor`); the critic `params.critic` is held fixed (zero
      gradient).

    `weights` `[B]` are per-transition importance weights (MQL's β, default
    1; gradients are not taken through them); `prox_coef` may be traced (e.g.
    `1 − ESS`). Metrics: `critic_loss`, `td_loss`, `q1`, `q2`, `target_q`, `relative_td`
    (`td_loss / (2 mean(w y²))`, scale-free),
    `critic_prox` (the unscaled squared distance, 0 without a reference) and
    `actor_loss`, `policy_q`, `actor_prox`.
  """
  _check_unit("discount", discount)
  _check_nonnegative("policy_noise", policy_noise)
  _check_nonnegative("noise_clip", noise_clip)
  actor, critic = networks.actor, networks.critic
  smooth = jax.vmap(lambda a, k: target_policy_smoothing(a, k, noise=policy_noise, noise_clip=noise_clip))

  def proximal(params, reference_params, prox_coef):
    if reference_params is None:
      return jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)
    distance = squared_distance(params, reference_params)
    return prox_coef * distance, distance

  def critic_loss(
    params: MQLParams,
    target_params: MQLParams,
    batch: Transition,
    key: jax.Array,
    *,
    weights: Optional[jax.Array] = None,
    reference_params: Optional[MQLParams] = None,
    prox_coef: Numeric = 0.1,
  ):
    size = _check_batch(networks, batch)
    w = _weights(weights, size, jnp.float32)
    next_action = actor.apply(target_params.actor, batch.next_observation, batch.next_history, batch.next_history_mask)
    next_action = smooth(next_action, jax.random.split(key, size))
    next_q1, next_q2 = critic.apply(
      target_params.critic, batch.next_observation, next_action, batch.next_history, batch.next_history_mask
    )
    gamma = jnp.asarray(discount, next_q1.dtype) * batch.discount.astype(next_q1.dtype)
    target = jax.vmap(td3_target)(batch.reward.astype(next_q1.dtype), gamma, next_q1, next_q2)
    q1, q2 = critic.apply(params.critic, batch.observation, batch.action, batch.history, batch.history_mask)
    td_loss = jnp.mean(w * (jnp.square(q1 - target) + jnp.square(q2 - target)))
    prox, distance = proximal(params.critic, None if reference_params is None else reference_params.critic, prox_coef)
    loss = td_loss + prox
    metrics = {
      "critic_loss": loss,
      "td_loss": td_loss,
      "q1": jnp.mean(q1),
      "q2": jnp.mean(q2),
      "target_q": jnp.mean(target),
      "relative_td": td_loss / (2.0 * jnp.mean(w * jnp.square(target)) + 1e-8),
      "critic_prox": distance,
    }
    return loss, metrics

  def actor_loss(
    params: MQLParams,
    batch: Transition,
    *,
    weights: Optional[jax.Array] = None,
    reference_params: Optional[MQLParams] = None,
    prox_coef: Numeric = 0.1,
  ):
    size = _check_batch(networks, batch)
    w = _weights(weights, size, jnp.float32)
    action = actor.apply(params.actor, batch.observation, batch.history, batch.history_mask)
    critic_params = jax.lax.stop_gradient(params.critic)
    q1, _ = critic.apply(critic_params, batch.observation, action, batch.history, batch.history_mask)
    policy_loss = -jnp.mean(w * q1)
    prox, distance = proximal(params.actor, None if reference_params is None else reference_params.actor, prox_coef)
    loss = policy_loss + prox
    metrics = {"actor_loss": loss, "policy_q": jnp.mean(q1), "actor_prox": distance}
    return loss, metrics

  return Losses(critic_loss=critic_loss, actor_loss=actor_loss)
