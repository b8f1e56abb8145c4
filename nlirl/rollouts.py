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
  act: Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[jax.Array, Any]],
  key: jax.Array,
  *,
  horizon: int,
  carry: Any = (),
) -> tuple[envs.NavState, jax.Array]:
  """Runs `act(carry, obs, mask, key) -> (action, carry)` for `horizon` steps from `reset` (lax.scan).

  `carry` is the actor's memory at the first step (a recurrent policy's state; `()` for a Markov one).

  Returns:
    (states with leaves [horizon + 1], actions int32 [horizon]).
  """
  state, obs = envs.reset(houses, ep, horizon=horizon)

  def body(loop, key):
    state, obs, memory = loop
    action, memory = act(memory, obs, envs.action_mask(houses, state), key)
    action = action.astype(jnp.int32)
    new_state, new_obs, _, _ = envs.step(houses, state, action)
    return (new_state, new_obs, memory), (state, action)

  (final, _, _), (states, actions) = jax.lax.scan(body, (state, obs, carry), jax.random.split(key, horizon))
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


def policy_actor(
  policy: networks_lib.PolicyNetwork, params: Any, tokens: jax.Array, *, greedy: bool
) -> tuple[Callable, Any]:
  """(act, carry) of pi(a | s, G) for the goal `tokens`, for `rollout`: a sample, or the argmax when `greedy`.

  The instruction is encoded once (in `carry`); a recurrent policy also carries its state there.
  """

  def act(carry, obs, mask, key):
    logits, carry = policy.step(params, carry, obs)
    log_pi = networks_lib.masked_log_softmax(logits, mask)
    action = jnp.argmax(log_pi) if greedy else jax.random.categorical(key, log_pi)
    return action, carry

  return act, policy.start(params, tokens)


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
