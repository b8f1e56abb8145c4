"""Proximal Policy Optimisation for pure-JAX environments with discrete actions.

PPO with the clipped surrogate objective (Schulman et al., 2017, "Proximal
Policy Optimization Algorithms", arXiv:1707.06347) and generalised advantage
estimation (Schulman et al., 2016, "High-Dimensional Continuous Control Using
Generalized Advantage Estimation", arXiv:1506.02438), in the functional style
of purejaxrl and brax.training: separate actor and critic MLPs
(`common.encoders.make_mlp`), a state pytree that holds everything (params,
optimizer state, batched env state, RNG, counters, episode statistics) and
pure functions over it.

RL maths on unbatched inputs (rank-checked with chex):

* `gae(rewards, values, dones, bootstrap_value, *, discount, gae_lambda)`
  over one `[T]` trajectory;
* `clipped_surrogate_loss(log_prob, old_log_prob, advantages, clip_eps)`;
* `value_loss(values, returns, *, old_values=None, clip_eps=None)`.

The environment contract (`Env`) is a pure, unbatched env: `reset(key) ->
(env_state, obs)` and `step(env_state, action) -> (env_state, obs, reward,
done)`. PPO vmaps it over `num_envs` copies and resets a copy (with a fresh key
from the PPO state) right after a step that returns `done`. `done` is treated
as termination: the value of the next state is never bootstrapped across it.
An env with a time limit that should be bootstrapped (truncation) must put the
remaining time in the observation instead.

`make_ppo(env, config, optimizer)` returns a `PPO` of pure functions. The
optimizer is built by the caller (include gradient clipping there); it receives
the minibatch loss as `value=` (plus `grad=` and `value_fn=`), so loss-driven
transforms such as GreedyLR work, and plain optax transforms ignore them.
Updates with a non-finite loss, gradient or result are skipped and counted in
`PPOState.nonfinite_updates`.

`iteration(state)` is one PPO iteration (rollout, GAE, `update_epochs` x
`num_minibatches` minibatch updates); it is pure, so chunks of iterations
between checkpoints run as one compiled scan, and the state (typed or raw PRNG
keys included) checkpoints with `common.checkpoint.Checkpointer`.

Example::

  import jax, optax
  from common import ppo
  from common.checkpoint import Checkpointer

  env = ppo.Env(reset=reset, step=step, observation_size=6, num_actions=3)
  config = ppo.PPOConfig(num_envs=16, unroll_length=32, num_minibatches=4)
  agent = ppo.make_ppo(env, config, optax.chain(optax.clip_by_global_norm(0.5), optax.adam(3e-4)))

  @jax.jit
  def chunk(state):  # 10 iterations in one compiled scan; metrics stacked [10]
    return jax.lax.scan(lambda s, _: agent.iteration(s), state, None, length=10)

  state = jax.jit(agent.init)(jax.random.key(0))
  with Checkpointer(workdir / "checkpoints") as checkpointer:
    restored, _ = checkpointer.restore_latest(state)  # resume exactly if a checkpoint exists
    state = state if restored is None else restored
    while int(state.iteration) < 1000:
      state, metrics = chunk(state)
      print(int(state.iteration), float(metrics["mean_episode_return"][-1]))
      checkpointer.save(int(state.iteration), state)
  action = agent.act(state.params, obs, key, deterministic=True)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from common import encoders


class Env(NamedTuple):
  """A pure, unbatched environment; PPO vmaps it over its `num_envs` copies.

  Attributes:
    reset: `reset(key) -> (env_state, obs)`; obs is float32 [observation_size].
    step: `step(env_state, action) -> (env_state, obs, reward, done)`; action
      is an int32 scalar in [0, num_actions), reward a float32 scalar, done a
      bool scalar.  Randomness inside an episode comes from a key the env
      keeps in its own state.  After `done`, the caller resets the env.
    observation_size: length of obs.
    num_actions: number of discrete actions.
  """

  reset: Callable[[jax.Array], tuple[Any, jax.Array]]
  step: Callable[[Any, jax.Array], tuple[Any, jax.Array, jax.Array, jax.Array]]
  observation_size: int
  num_actions: int


# ---------------------------------------------------------------------------
# RL maths on unbatched inputs.
# ---------------------------------------------------------------------------


def gae(
  rewards: jax.Array,
  values: jax.Array,
  dones: jax.Array,
  bootstrap_value: jax.Array,
  *,
  discount: float,
  gae_lambda: float,
) -> tuple[jax.Array, jax.Array]:
  """Generalised advantage estimates and value targets of one trajectory.

  `A_t = d_t + discount * gae_lambda * (1 - done_t) * A_{t+1}` with
  `d_t = r_t + discount * (1 - done_t) * V_{t+1} - V_t`, `V_T = bootstrap_value`.

  Args:
    rewards: `[T]` reward of each step.
    values: `[T]` value estimate of the state each step was taken in.
    dones: `[T]` whether the episode ended after step t (bool or 0/1); the
      next value is not bootstrapped across it (the next state belongs to a
      new episode).
    bootstrap_value: scalar value of the state after the last step.
    discount: discount factor gamma.
    gae_lambda: GAE lambda (0: one-step TD, 1: Monte Carlo returns).

  Returns:
    `(advantages [T], returns [T])` with `returns = advantages + values`.
  """
  chex.assert_rank([rewards, values, dones, bootstrap_value], [1, 1, 1, 0])
  chex.assert_equal_shape([rewards, values, dones])
  chex.assert_type([rewards, values, bootstrap_value], float)
  not_done = 1.0 - dones.astype(rewards.dtype)
  next_values = jnp.concatenate([values[1:], bootstrap_value[None]])
  deltas = rewards + discount * not_done * next_values - values

  def backward(next_advantage, xs):
    delta, nd = xs
    advantage = delta + discount * gae_lambda * nd * next_advantage
    return advantage, advantage

  _, advantages = jax.lax.scan(
    backward, jnp.zeros_like(bootstrap_value, rewards.dtype), (deltas, not_done), reverse=True
  )
  return advantages, advantages + values


def clipped_surrogate_loss(
  log_prob: jax.Array,
  old_log_prob: jax.Array,
  advantages: jax.Array,
  clip_eps: float,
) -> jax.Array:
  """PPO's clipped surrogate objective, negated (a loss to minimise).

  `-mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A))` with
  `ratio = exp(log_prob - old_log_prob)` (eq. 7 of the paper).

  Args:
    log_prob: `[B]` log-probabilities of the taken actions under the policy
      being optimised.
    old_log_prob: `[B]` those under the policy that collected the data.
    advantages: `[B]` advantage estimates (treated as constants).
    clip_eps: clipping radius epsilon of the ratio.

  Returns:
    Scalar loss.
  """
  chex.assert_rank([log_prob, old_log_prob, advantages], 1)
  chex.assert_equal_shape([log_prob, old_log_prob, advantages])
  ratio = jnp.exp(log_prob - old_log_prob)
  unclipped = ratio * advantages
  clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
  return -jnp.mean(jnp.minimum(unclipped, clipped))


def value_loss(
  values: jax.Array,
  returns: jax.Array,
  *,
  old_values: jax.Array | None = None,
  clip_eps: float | None = None,
) -> jax.Array:
  """Half mean squared error of the values, optionally clipped.

  Unclipped: `0.5 * mean((V - R)^2)`. With `clip_eps` (and `old_values`, the
  values at collection time), the pessimistic clipped form of the PPO
  reference implementation: `0.5 * mean(max((V - R)^2, (V_clip - R)^2))`
  with `V_clip = old + clip(V - old, -eps, eps)`. Clipping is off by default
  (in `PPOConfig` too): Andrychowicz et al. (2021, "What Matters in On-Policy
  Reinforcement Learning?", arXiv:2006.05990) found it does not help.

  Args:
    values: `[B]` value predictions.
    returns: `[B]` value targets (treated as constants).
    old_values: `[B]` predictions at collection time; needed with `clip_eps`.
    clip_eps: clipping radius, or None for the plain squared error.

  Returns:
    Scalar loss.
  """
  chex.assert_rank([values, returns], 1)
  chex.assert_equal_shape([values, returns])
  squared = jnp.square(values - returns)
  if clip_eps is None:
    return 0.5 * jnp.mean(squared)
  if old_values is None:
    raise ValueError("value_loss: clip_eps needs old_values")
  chex.assert_equal_shape([values, old_values])
  clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
  return 0.5 * jnp.mean(jnp.maximum(squared, jnp.square(clipped - returns)))


# ---------------------------------------------------------------------------
# Config, params and state.
# ---------------------------------------------------------------------------

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


def _check_int(name: str, value: Any, minimum: int = 1) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"PPOConfig.{name} must be an integer >= {minimum}, got {value!r}")
  if value < minimum:
    raise ValueError(f"PPOConfig.{name} must be >= {minimum}, got {value}")


def _check_float(name: str, value: Any, low: float, high: float = float("inf"), *, open_low: bool = False) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    raise ValueError(f"PPOConfig.{name} must be a number, got {value!r}")
  if not np.isfinite(value) or value > high or value < low or (open_low and value == low):
    bracket = "(" if open_low else "["
    raise ValueError(f"PPOConfig.{name} must be in {bracket}{low}, {high}], got {value}")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """PPO hyperparameters (static; validated on construction).

  Attributes:
    num_envs: parallel (vmapped) env copies.
    unroll_length: env steps per copy and iteration (batch = num_envs * unroll_length).
    num_minibatches: minibatches per epoch; must divide the batch.
    update_epochs: passes over the batch per iteration, each freshly shuffled.
    discount: discount factor gamma in [0, 1].
    gae_lambda: GAE lambda in [0, 1].
    clip_eps: ratio clipping radius (> 0).
    entropy_coef: weight of the entropy bonus (>= 0).
    value_coef: weight of the value loss (>= 0); the value loss is 0.5 * MSE.
    normalize_advantages: standardise advantages within each minibatch.
    hidden_sizes: hidden layer sizes of both the actor and the critic MLP.
    activation: hidden nonlinearity, "tanh" or "relu".
    value_clip_eps: clip radius of the value loss, or None (default) for none.
  """

  num_envs: int = 8
  unroll_length: int = 32
  num_minibatches: int = 4
  update_epochs: int = 4
  discount: float = 0.99
  gae_lambda: float = 0.95
  clip_eps: float = 0.2
  entropy_coef: float = 0.01
  value_coef: float = 0.5
  normalize_advantages: bool = True
  hidden_sizes: tuple[int, ...] = (64, 64)
  activation: str = "tanh"
  value_clip_eps: float | None = None

  def __post_init__(self):
    for name in ("num_envs", "unroll_length", "num_minibatches", "update_epochs"):
      _check_int(name, getattr(self, name))
    batch = self.num_envs * self.unroll_length
    if batch % self.num_minibatches:
      raise ValueError(
        f"PPOConfig: num_envs * unroll_length = {self.num_envs} * {self.unroll_length} = {batch} is not "
        f"divisible by num_minibatches = {self.num_minibatches}"
      )
    _check_float("discount", self.discount, 0.0, 1.0)
    _check_float("gae_lambda", self.gae_lambda, 0.0, 1.0)
    _check_float("clip_eps", self.clip_eps, 0.0, open_low=True)
    _check_float("entropy_coef", self.entropy_coef, 0.0)
    _check_float("value_coef", self.value_coef, 0.0)
    if self.value_clip_eps is not None:
      _check_float("value_clip_eps", self.value_clip_eps, 0.0, open_low=True)
    if not isinstance(self.normalize_advantages, (bool, np.bool_)):
      raise ValueError(f"PPOConfig.normalize_advantages must be a bool, got {self.normalize_advantages!r}")
    if isinstance(self.hidden_sizes, (str, bytes)) or not hasattr(self.hidden_sizes, "__iter__"):
      raise ValueError(f"PPOConfig.hidden_sizes must be a sequence of integers >= 1, got {self.hidden_sizes!r}")
    hidden_sizes = tuple(self.hidden_sizes)
    for size in hidden_sizes:
      _check_int("hidden_sizes entry", size)
    object.__setattr__(self, "hidden_sizes", tuple(int(s) for s in hidden_sizes))
    if self.activation not in _ACTIVATIONS:
      raise ValueError(f"PPOConfig.activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")

  @property
  def batch_size(self) -> int:
    """Transitions per iteration: num_envs * unroll_length."""
    return self.num_envs * self.unroll_length

  @property
  def minibatch_size(self) -> int:
    """Transitions per minibatch update."""
    return self.batch_size // self.num_minibatches


class PPOParams(NamedTuple):
  """Actor and critic variables (Flax variable dicts)."""

  policy: Any
  value: Any


class PPOState(NamedTuple):
  """Everything PPO carries between iterations (a pytree of arrays).

  Attributes:
    params: actor and critic variables.
    opt_state: the caller's optimizer state over `params`.
    env_state: batched env state (leading axis num_envs).
    obs: `[num_envs, observation_size]` current observations.
    episode_return: `[num_envs]` return so far of each running episode.
    episode_length: `[num_envs]` int32 steps so far of each running episode.
    rng: PRNG key (typed or raw, as given to `init`) for actions, resets and shuffling.
    iteration: int32 number of completed iterations.
    episodes: int32 number of completed episodes.
    nonfinite_updates: int32 number of skipped (non-finite) minibatch updates.
    last_episode_return: mean return of the episodes completed in the last iteration (0 if none).
    last_episode_length: their mean length (0 if none).
    last_episode_count: int32 how many episodes completed in the last iteration.
  """

  params: PPOParams
  opt_state: Any
  env_state: Any
  obs: jax.Array
  episode_return: jax.Array
  episode_length: jax.Array
  rng: jax.Array
  iteration: jax.Array
  episodes: jax.Array
  nonfinite_updates: jax.Array
  last_episode_return: jax.Array
  last_episode_length: jax.Array
  last_episode_count: jax.Array


class PPO(NamedTuple):
  """Pure functions of one PPO agent (see `make_ppo`).

  Attributes:
    init: `init(key) -> PPOState`.
    iteration: `iteration(state) -> (state, metrics)`; one rollout and update. Scalar metrics:
      `loss`, `policy_loss`, `value_loss`, `entropy`, `approx_kl`, `clip_fraction` (means over
      the iteration's minibatch updates), `mean_reward` (per step), `mean_episode_return`,
      `mean_episode_length`, `num_episodes` (of the episodes that ended in this iteration; means
      are 0 when none did), `mean_value` and `nonfinite_updates` (skipped updates).
    policy_logits: `policy_logits(params, obs) -> logits` for `[obs_size]` or `[..., obs_size]` obs.
    act: `act(params, obs, key, deterministic=False) -> int32 action(s)`.
    value: `value(params, obs) -> value estimate(s)` (the critic).
    networks: the actor and critic `encoders.Network`s.
  """

  init: Callable[[jax.Array], PPOState]
  iteration: Callable[[PPOState], tuple[PPOState, dict[str, jax.Array]]]
  policy_logits: Callable[[PPOParams, jax.Array], jax.Array]
  act: Callable[..., jax.Array]
  value: Callable[[PPOParams, jax.Array], jax.Array]
  networks: tuple[encoders.Network, encoders.Network]


class _Transition(NamedTuple):
  """One step of the rollout (leading axes [T, num_envs] once stacked)."""

  obs: jax.Array
  action: jax.Array
  log_prob: jax.Array
  value: jax.Array
  reward: jax.Array
  done: jax.Array


class _Batch(NamedTuple):
  """A flat batch of transitions for the update (leading axis B)."""

  obs: jax.Array
  action: jax.Array
  log_prob: jax.Array
  value: jax.Array
  advantage: jax.Array
  target: jax.Array


# ---------------------------------------------------------------------------
# Networks and losses.
# ---------------------------------------------------------------------------


def _make_network(input_size: int, hidden_sizes: tuple[int, ...], output_size: int, activation, output_gain: float):
  """MLP with orthogonal(sqrt 2) hidden kernels and an orthogonal(output_gain) output kernel.

  The usual PPO initialisation (Andrychowicz et al., 2021): small policy
  outputs start the policy near uniform.
  """
  hidden_gain = float(np.sqrt(2.0))
  mlp = encoders.make_mlp(
    input_size,
    hidden_sizes,
    output_size,
    activation=activation,
    kernel_init=nn.initializers.orthogonal(hidden_gain),
  )
  last = f"hidden_{len(hidden_sizes)}"

  def init(key):
    variables = mlp.init(key)
    # orthogonal(g) = g * Q: rescaling the output kernel gives orthogonal(output_gain).
    kernel = variables["params"][last]["kernel"]
    scaled = {**variables["params"][last], "kernel": kernel * (output_gain / hidden_gain)}
    return {**variables, "params": {**variables["params"], last: scaled}}

  return encoders.Network(init=init, apply=mlp.apply)


def _categorical_log_probs(logits: jax.Array) -> jax.Array:
  return jax.nn.log_softmax(logits, axis=-1)


def _make_loss(policy_net: encoders.Network, value_net: encoders.Network, config: PPOConfig):
  """Returns `loss_fn(params, batch) -> (loss, metrics)` for one minibatch."""

  def loss_fn(params: PPOParams, batch: _Batch):
    log_probs = _categorical_log_probs(policy_net.apply(params.policy, batch.obs))
    log_prob = jnp.take_along_axis(log_probs, batch.action[:, None], axis=-1)[:, 0]
    entropy = -jnp.mean(jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1))
    advantage = batch.advantage
    if config.normalize_advantages:
      advantage = (advantage - jnp.mean(advantage)) / (jnp.std(advantage) + 1e-8)
    policy_loss = clipped_surrogate_loss(log_prob, batch.log_prob, advantage, config.clip_eps)
    values = value_net.apply(params.value, batch.obs)[:, 0]
    v_loss = value_loss(values, batch.target, old_values=batch.value, clip_eps=config.value_clip_eps)
    loss = policy_loss + config.value_coef * v_loss - config.entropy_coef * entropy
    log_ratio = log_prob - batch.log_prob
    ratio = jnp.exp(log_ratio)
    metrics = {
      "loss": loss,
      "policy_loss": policy_loss,
      "value_loss": v_loss,
      "entropy": entropy,
      # The low-variance, non-negative KL(old || new) estimator (Schulman's "k3").
      "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
      "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > config.clip_eps).astype(jnp.float32)),
    }
    return loss, metrics

  return loss_fn


def _all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


# ---------------------------------------------------------------------------
# The agent.
# ---------------------------------------------------------------------------


def _check_env(env: Env) -> None:
  for name in ("observation_size", "num_actions"):
    value = getattr(env, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"Env.{name} must be an integer >= 1, got {value!r}")
  if env.num_actions < 2:
    raise ValueError(f"Env.num_actions must be >= 2 for a policy to choose, got {env.num_actions}")
  if not callable(env.reset) or not callable(env.step):
    raise ValueError("Env.reset and Env.step must be callables")


def make_ppo(
  env: Env,
  config: PPOConfig,
  optimizer: optax.GradientTransformation,
  observe: Callable[[Any, jax.Array], Any] | None = None,
  learning_rate: Callable[[Any], jax.Array] | None = None,
) -> PPO:
  """Builds the pure functions of a PPO agent for `env`.

  Args:
    env: the unbatched environment (vmapped here over `config.num_envs`).
    config: hyperparameters.
    optimizer: optax transform over `PPOParams`, built by the caller
      (gradient clipping included); it gets `value=`, `grad=` and `value_fn=`
      of each minibatch loss as extra arguments, which plain transforms ignore.
    observe: optional `observe(opt_state, value) -> opt_state`, called after
      every iteration in which episodes ended with `value` = minus their mean
      return (a progress signal for a per-evaluation learning-rate
      controller such as `schedulers.Optimizer.observe`); None: not called.
    learning_rate: optional `learning_rate(opt_state) -> scalar`, the
      effective rate after the iteration (e.g.
      `schedulers.Optimizer.learning_rate`), logged as the `learning_rate`
      metric so a per-evaluation controller's decisions are visible.

  Returns:
    A `PPO`.

  Raises:
    ValueError: for a malformed env or config.
  """
  _check_env(env)
  if not isinstance(config, PPOConfig):
    raise ValueError(f"config must be a PPOConfig, got {type(config).__name__}")
  obs_size, num_actions = int(env.observation_size), int(env.num_actions)
  num_envs, unroll_length = config.num_envs, config.unroll_length
  activation = _ACTIVATIONS[config.activation]
  policy_net = _make_network(obs_size, config.hidden_sizes, num_actions, activation, output_gain=0.01)
  value_net = _make_network(obs_size, config.hidden_sizes, 1, activation, output_gain=1.0)
  optimizer = optax.with_extra_args_support(optimizer)
  loss_fn = _make_loss(policy_net, value_net, config)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  batched_reset = jax.vmap(env.reset)
  batched_step = jax.vmap(env.step)

  def check_obs(obs):
    if obs.ndim < 1 or obs.shape[-1] != obs_size:
      raise ValueError(f"obs must be [..., {obs_size}], got shape {obs.shape}")

  def policy_logits(params: PPOParams, obs: jax.Array) -> jax.Array:
    obs = jnp.asarray(obs)
    check_obs(obs)
    return policy_net.apply(params.policy, obs)

  def value(params: PPOParams, obs: jax.Array) -> jax.Array:
    obs = jnp.asarray(obs)
    check_obs(obs)
    return value_net.apply(params.value, obs)[..., 0]

  def act(params: PPOParams, obs: jax.Array, key: jax.Array, deterministic: bool | jax.Array = False) -> jax.Array:
    logits = policy_logits(params, obs)
    greedy = jnp.argmax(logits, axis=-1)
    sample = jax.random.categorical(key, logits, axis=-1)
    return jnp.where(deterministic, greedy, sample).astype(jnp.int32)

  def init(key: jax.Array) -> PPOState:
    policy_key, value_key, env_key, rng = jax.random.split(key, 4)
    params = PPOParams(policy=policy_net.init(policy_key), value=value_net.init(value_key))
    env_state, obs = batched_reset(jax.random.split(env_key, num_envs))
    chex.assert_shape(obs, (num_envs, obs_size))
    zero_i = jnp.zeros((), jnp.int32)
    return PPOState(
      params=params,
      opt_state=optimizer.init(params),
      env_state=env_state,
      obs=obs.astype(jnp.float32),
      episode_return=jnp.zeros((num_envs,), jnp.float32),
      episode_length=jnp.zeros((num_envs,), jnp.int32),
      rng=rng,
      iteration=zero_i,
      episodes=zero_i,
      nonfinite_updates=zero_i,
      last_episode_return=jnp.zeros((), jnp.float32),
      last_episode_length=jnp.zeros((), jnp.float32),
      last_episode_count=zero_i,
    )

  def env_step(carry, key):
    """One vmapped env step with auto-reset; collects the transition."""
    params, env_state, obs, ep_return, ep_length, done_return, done_length, done_count = carry
    action_key, reset_key = jax.random.split(key)
    logits = policy_net.apply(params.policy, obs)
    action = jax.random.categorical(action_key, logits, axis=-1).astype(jnp.int32)
    log_prob = jnp.take_along_axis(_categorical_log_probs(logits), action[:, None], axis=-1)[:, 0]
    value_estimate = value_net.apply(params.value, obs)[:, 0]
    next_env_state, next_obs, reward, done = batched_step(env_state, action)
    chex.assert_shape([reward, done], (num_envs,))
    chex.assert_shape(next_obs, (num_envs, obs_size))
    reward = reward.astype(jnp.float32)
    done = done.astype(jnp.bool_)
    reset_env_state, reset_obs = batched_reset(jax.random.split(reset_key, num_envs))

    def select(reset_leaf, leaf):
      mask = jnp.reshape(done, done.shape + (1,) * (leaf.ndim - 1))
      return jnp.where(mask, reset_leaf, leaf)

    next_env_state = jax.tree.map(select, reset_env_state, next_env_state)
    next_obs = select(reset_obs, next_obs).astype(jnp.float32)
    ep_return = ep_return + reward
    ep_length = ep_length + 1
    done_return = done_return + jnp.sum(jnp.where(done, ep_return, 0.0))
    done_length = done_length + jnp.sum(jnp.where(done, ep_length, 0))
    done_count = done_count + jnp.sum(done.astype(jnp.int32))
    ep_return = jnp.where(done, 0.0, ep_return)
    ep_length = jnp.where(done, 0, ep_length)
    transition = _Transition(obs, action, log_prob, value_estimate, reward, done)
    carry = (params, next_env_state, next_obs, ep_return, ep_length, done_return, done_length, done_count)
    return carry, transition

  def minibatch_update(carry, batch: _Batch):
    params, opt_state, nonfinite = carry
    (loss, metrics), grads = grad_fn(params, batch)
    updates, new_opt_state = optimizer.update(
      grads, opt_state, params, value=loss, grad=grads, value_fn=lambda p: loss_fn(p, batch)[0]
    )
    new_params = optax.apply_updates(params, updates)
    finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(new_params)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    carry = (keep(new_params, params), keep(new_opt_state, opt_state), nonfinite + (~finite).astype(jnp.int32))
    return carry, metrics

  def epoch(carry, key, batch: _Batch):
    permutation = jax.random.permutation(key, config.batch_size)
    shuffled = jax.tree.map(
      lambda x: jnp.reshape(x[permutation], (config.num_minibatches, config.minibatch_size) + x.shape[1:]), batch
    )
    return jax.lax.scan(minibatch_update, carry, shuffled)

  def iteration(state: PPOState) -> tuple[PPOState, dict[str, jax.Array]]:
    rng, rollout_key, update_key = jax.random.split(state.rng, 3)
    zero_f, zero_i = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
    carry = (
      state.params,
      state.env_state,
      state.obs,
      state.episode_return,
      state.episode_length,
      zero_f,
      zero_i,
      zero_i,
    )
    carry, traj = jax.lax.scan(env_step, carry, jax.random.split(rollout_key, unroll_length))
    _, env_state, obs, ep_return, ep_length, done_return, done_length, done_count = carry
    bootstrap = value_net.apply(state.params.value, obs)[:, 0]
    advantages, targets = jax.vmap(
      lambda r, v, d, b: gae(r, v, d, b, discount=config.discount, gae_lambda=config.gae_lambda),
      in_axes=(1, 1, 1, 0),
      out_axes=1,
    )(traj.reward, traj.value, traj.done, bootstrap)
    flat = lambda x: jnp.reshape(x, (config.batch_size,) + x.shape[2:])
    batch = _Batch(
      obs=flat(traj.obs),
      action=flat(traj.action),
      log_prob=flat(traj.log_prob),
      value=flat(traj.value),
      advantage=flat(advantages),
      target=flat(targets),
    )
    (params, opt_state, nonfinite), update_metrics = jax.lax.scan(
      lambda c, k: epoch(c, k, batch),
      (state.params, state.opt_state, state.nonfinite_updates),
      jax.random.split(update_key, config.update_epochs),
    )
    denominator = jnp.maximum(done_count, 1).astype(jnp.float32)
    mean_return = done_return / denominator
    mean_length = done_length.astype(jnp.float32) / denominator
    if observe is not None:
      observed = observe(opt_state, -mean_return)
      opt_state = jax.tree.map(lambda new, old: jnp.where(done_count > 0, new, old), observed, opt_state)
    new_state = PPOState(
      params=params,
      opt_state=opt_state,
      env_state=env_state,
      obs=obs,
      episode_return=ep_return,
      episode_length=ep_length,
      rng=rng,
      iteration=state.iteration + 1,
      episodes=state.episodes + done_count,
      nonfinite_updates=nonfinite,
      last_episode_return=mean_return,
      last_episode_length=mean_length,
      last_episode_count=done_count,
    )
    metrics = {name: jnp.mean(values) for name, values in update_metrics.items()}
    metrics.update(
      mean_reward=jnp.mean(traj.reward),
      mean_episode_return=mean_return,
      mean_episode_length=mean_length,
      num_episodes=done_count,
      mean_value=jnp.mean(traj.value),
      nonfinite_updates=nonfinite - state.nonfinite_updates,
    )
    if learning_rate is not None:
      metrics["learning_rate"] = jnp.asarray(learning_rate(opt_state), jnp.float32)
    return new_state, metrics

  return PPO(
    init=init,
    iteration=iteration,
    policy_logits=policy_logits,
    act=act,
    value=value,
    networks=(policy_net, value_net),
  )
