"""Trajectories in R2R-lite: expert demonstrations, policy rollouts and their conversion to loss inputs.

A trajectory is stored compactly as its env states (`envs.NavState`, [T + 1] scalars each) and actions [T];
`to_trajectory` rebuilds observations and action masks from the house tables when a batch is used, so a
replay buffer of thousands of episodes costs kilobytes and rewards are never stored.  All functions are
unbatched (vmap them) and pure.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

from nlirl import envs
from nlirl import losses as losses_lib
from nlirl import networks as networks_lib


class Record(NamedTuple):
  """A stored trajectory (unbatched; a buffer adds a leading axis).

  Attributes:
    states: `envs.NavState` with leaves [T + 1] (before every step, then the final state).
    actions: int32 [T].
    tokens: int32 [L] the goal the trajectory was commanded with (expert: its instruction).
    relabel: int32 [L] a goal drawn from the generator for this trajectory (hindsight label).
  """

  states: envs.NavState
  actions: jax.Array
  tokens: jax.Array
  relabel: jax.Array


def episode(episodes: envs.Episodes, index: jax.Array) -> envs.Episodes:
  """Episode `index` of a batched `Episodes` (all leaves indexed)."""
  return jax.tree.map(lambda x: x[index], episodes)


def rollout(
  houses: envs.Houses,
  ep: envs.Episodes,
  act: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
  key: jax.Array,
  *,
  horizon: int,
) -> tuple[envs.NavState, jax.Array]:
  """Runs `act(obs, mask, key) -> action` for `horizon` steps from `reset` (lax.scan).

  Returns:
    (states with leaves [horizon + 1], actions int32 [horizon]).
  """
  state, obs = envs.reset(houses, ep, horizon=horizon)

  def body(carry, key):
    state, obs = carry
    action = act(obs, envs.action_mask(houses, state), key).astype(jnp.int32)
    new_state, new_obs, _, _ = envs.step(houses, state, action)
    return (new_state, new_obs), (state, action)

  (final, _), (states, actions) = jax.lax.scan(body, (state, obs), jax.random.split(key, horizon))
  states = jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]]), states, final)
  return states, actions


def expert_rollout(houses: envs.Houses, ep: envs.Episodes, *, horizon: int) -> tuple[envs.NavState, jax.Array]:
  """The shortest-path demonstration of `ep` (moves along the expert path, STOP at the goal, absorbing)."""
  state, _ = envs.reset(houses, ep, horizon=horizon)

  def body(state, _):
    action = envs.expert_action(houses, state)
    new_state, _, _, _ = envs.step(houses, state, action)
    return new_state, (state, action)

  final, (states, actions) = jax.lax.scan(body, state, None, length=horizon)
  states = jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]]), states, final)
  return states, actions


def policy_actor(policy: Any, params: Any, tokens: jax.Array, *, greedy: bool) -> Callable:
  """`act(obs, mask, key)` of pi(a | s, G) for the goal `tokens`: a sample, or the argmax when `greedy`."""

  encoded = networks_lib.encode_goal(policy, params, tokens)

  def act(obs, mask, key):
    logits = networks_lib.score_with(policy, params, encoded, obs)
    log_pi = networks_lib.masked_log_softmax(logits, mask)
    return jnp.argmax(log_pi) if greedy else jax.random.categorical(key, log_pi)

  return act


def to_trajectory(houses: envs.Houses, states: envs.NavState, actions: jax.Array, tokens: jax.Array):
  """Observations, masks, terminal and active flags of a stored trajectory: a `losses.Trajectory`."""
  chex.assert_rank(actions, 1)
  obs = jax.vmap(envs.observe, (None, 0))(houses, states)
  masks = jax.vmap(envs.action_mask, (None, 0))(houses, states)
  terminal = states.t >= states.horizon
  active = ~states.stopped[:-1] & ~terminal[:-1]
  return losses_lib.Trajectory(obs=obs, masks=masks, actions=actions, tokens=tokens, terminal=terminal, active=active)


def final_state(states: envs.NavState) -> envs.NavState:
  """The last state of a trajectory's states [T + 1] (for the metrics)."""
  return jax.tree.map(lambda x: x[-1], states)
