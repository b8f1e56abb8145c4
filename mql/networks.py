"""TD3 actor and twin critics with GRU task contexts, as in Meta-Q-Learning.

The networks of the official MQL code (amazon-science/meta-q-learning,
`models/networks.py`, sizes from `main.py` / `run_script.py`), as
`common.encoders.Network` `(init, apply)` pairs:

* actor: `[obs, ctx_actor] -> 300 -> ReLU -> 300 -> ReLU -> A -> tanh`
  (`max_action = 1`: the task envs' actions live in [-1, 1]);
* critic: two independent Q heads, each `[obs, action, ctx_critic] -> 300 ->
  ReLU -> 300 -> ReLU -> 1` (held as one stacked, vmapped parameter set, as in
  rejax's TD3, so both heads run as one batched matmul);
* context: a one-layer GRU over a history window `[H, A + 1 + S]` of
  `(a, r, s)` steps (the original's input order, see `history_features`),
  started from zeros; its final hidden state is the context. The actor and the
  critic each own one (so do their target copies), and each is trained only
  through its own network's loss. Both Q heads share the critic's GRU.

Histories are masked (`common.encoders.GRUEncoder`): a step with mask 0
leaves the GRU state unchanged, so a padded window gives exactly the context
of the sequence without its padding, and a fully padded window gives the zero
initial state. The original instead zero-pads and feeds the zeros through the
GRU; an all-ones mask over a zero-filled window reproduces that
(`common.replay.sample_sequences` zero-fills the steps it masks).

Initialisation is PyTorch's default, as in the original: Linear weights and
biases `U(±1/sqrt(fan_in))`, every GRU weight and bias `U(±1/sqrt(hidden))`
(Flax's `GRUCell` folds PyTorch's redundant `b_hr`/`b_hz` into `b_ir`/`b_iz`,
so those two are one uniform draw instead of the sum of two).

With `use_context=False` the same networks without contexts are built (the
multi-task TD3 baseline): the actor sees `obs`, the critic `[obs, action]`,
and `history`/`mask` are ignored.

Example::

  nets = networks.make_networks(20, 6, context_size=15, history_length=20)
  params = networks.init_params(nets, jax.random.key(0))
  action = nets.actor.apply(params.actor, obs, history, mask)        # [B, 6] in [-1, 1]
  q1, q2 = nets.critic.apply(params.critic, obs, action, history, mask)  # [B], [B]
  ctx = nets.actor_context.apply(params.actor["context"], history, mask)  # [B, 15]
"""

from typing import Any, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from common import encoders

Params = Any


class MQLNetworks(NamedTuple):
  """The MQL networks and their sizes.

  Attributes:
    actor: `init(key) -> {"context": gru, "policy": mlp}` (no `"context"`
      without contexts); `apply(params, observation [..., S], history
      [..., T, A + 1 + S] = None, mask [..., T] = None) -> action [..., A]`
      in [-1, 1].
    critic: `init(key) -> {"context": gru, "q": twin mlp}`; `apply(params,
      observation [..., S], action [..., A], history = None, mask = None) ->
      (q1 [...], q2 [...])`.
    actor_context: the actor's GRU (`None` without contexts):
      `apply(actor_params["context"], history, mask) -> [..., context_size]`,
      e.g. the propensity classifier's features.
    critic_context: the critic's GRU (`None` without contexts), on
      `critic_params["context"]`.
    observation_size: S.
    action_size: A.
    context_size: GRU hidden size (0 without contexts).
    history_length: the training history window H (apply accepts any window
      length, e.g. the original's longer evaluation histories).
    use_context: whether the networks take histories.
  """

  actor: encoders.Network
  critic: encoders.Network
  actor_context: Optional[encoders.Network]
  critic_context: Optional[encoders.Network]
  observation_size: int
  action_size: int
  context_size: int
  history_length: int
  use_context: bool

  @property
  def history_feature_size(self) -> int:
    """Per-step history feature size A + 1 + S."""
    return self.action_size + 1 + self.observation_size


class MQLParams(NamedTuple):
  """Actor and critic parameters (each with its own context GRU)."""

  actor: Params
  critic: Params


def history_features(actions: jax.Array, rewards: jax.Array, observations: jax.Array) -> jax.Array:
  """Concatenates history steps in the original's GRU input order `[a, r, s]`.

  The original pairs each step's action and reward with the observation the
  action was taken in (`s_t`, not `s_{t+1}`); that pairing is the caller's.

  Args:
    actions: `[..., T, A]`.
    rewards: `[..., T]`.
    observations: `[..., T, S]`.

  Returns:
    `[..., T, A + 1 + S]`.
  """
  actions, rewards, observations = jnp.asarray(actions), jnp.asarray(rewards), jnp.asarray(observations)
  if actions.shape[:-1] != rewards.shape or observations.shape[:-1] != rewards.shape:
    raise ValueError(
      f"actions {actions.shape}, rewards {rewards.shape} and observations {observations.shape} must share [..., T]."
    )
  dtype = jnp.result_type(actions, rewards, observations)
  return jnp.concatenate([actions.astype(dtype), rewards[..., None].astype(dtype), observations.astype(dtype)], -1)


def _symmetric_uniform(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _torch_mlp(input_size: int, hidden_sizes: Sequence[int], output_size: int) -> encoders.Network:
  """ReLU MLP with PyTorch's default `nn.Linear` initialisation."""
  # kaiming_uniform(a=sqrt(5)) is U(±1/sqrt(fan_in)) = variance_scaling(1/3, fan_in, uniform).
  mlp = encoders.make_mlp(
    input_size,
    hidden_sizes,
    output_size,
    activation=nn.relu,
    kernel_init=nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
  )

  def init(key):
    mlp_key, bias_key = jax.random.split(key)
    variables = mlp.init(mlp_key)
    layers = variables["params"]
    keys = jax.random.split(bias_key, len(layers))
    # The bias bound depends on the layer's fan-in, which Flax bias initializers do not see.
    new_layers = {}
    for k, (name, layer) in zip(keys, sorted(layers.items())):
      bound = 1.0 / np.sqrt(layer["kernel"].shape[0])
      new_layers[name] = {**layer, "bias": _symmetric_uniform(bound)(k, layer["bias"].shape, layer["bias"].dtype)}
    return {**variables, "params": new_layers}

  return encoders.Network(init=init, apply=mlp.apply)


def _torch_gru(input_size: int, hidden_size: int) -> encoders.Network:
  """Masked GRU encoder with PyTorch's default `nn.GRU` initialisation."""
  init = _symmetric_uniform(1.0 / np.sqrt(hidden_size))
  return encoders.make_gru_encoder(
    input_size, hidden_size, kernel_init=init, recurrent_kernel_init=init, bias_init=init
  )


def _check_last(name: str, x: jax.Array, size: int) -> None:
  if x.ndim < 1 or x.shape[-1] != size:
    raise ValueError(f"{name} must be [..., {size}], got shape {x.shape}.")


def make_networks(
  observation_size: int,
  action_size: int,
  *,
  hidden_sizes: Sequence[int] = (300, 300),
  context_size: int,
  history_length: int,
  use_context: bool = True,
) -> MQLNetworks:
  """Makes the MQL actor, twin critics and their context GRUs.

  Args:
    observation_size: S.
    action_size: A.
    hidden_sizes: hidden layers of the actor and of each Q head (the
      original's `--hidden_sizes 300 300`).
    context_size: GRU hidden size (the original's `--hiddens_conext`, per
      family in `run_script.py`: 15-40; `mql.envs.FAMILIES[...].context_size`).
    history_length: history window H (`--history_length`, per family 10-40;
      `mql.envs.FAMILIES[...].history_length`).
    use_context: False builds the context-free multi-task TD3 baseline.

  Returns:
    `MQLNetworks`.
  """
  for name, value in (("observation_size", observation_size), ("action_size", action_size)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be a positive int, got {value!r}.")
  hidden_sizes = tuple(hidden_sizes)
  if not hidden_sizes or any(
    isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden_sizes
  ):
    raise ValueError(f"hidden_sizes must be positive ints, got {hidden_sizes!r}.")
  for name, value in (("context_size", context_size), ("history_length", history_length)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be a positive int, got {value!r}.")
  obs_size, act_size = int(observation_size), int(action_size)
  feature_size = act_size + 1 + obs_size
  ctx_size = int(context_size) if use_context else 0

  policy = _torch_mlp(obs_size + ctx_size, hidden_sizes, act_size)
  q_head = _torch_mlp(obs_size + act_size + ctx_size, hidden_sizes, 1)
  actor_gru = _torch_gru(feature_size, ctx_size) if use_context else None
  critic_gru = _torch_gru(feature_size, ctx_size) if use_context else None

  def context(gru, params, history, mask, observation):
    if gru is None:
      return None
    if history is None:
      raise ValueError("These networks use contexts: pass history (and mask).")
    history = jnp.asarray(history)
    if history.ndim < 2 or history.shape[-1] != feature_size:
      raise ValueError(f"history must be [..., T, {feature_size}] (A + 1 + S), got shape {history.shape}.")
    if history.shape[:-2] != observation.shape[:-1]:
      raise ValueError(f"history batch shape {history.shape[:-2]} != observation batch shape {observation.shape[:-1]}.")
    return gru.apply(params["context"], history, mask)

  def actor_init(key):
    policy_key, context_key = jax.random.split(key)
    params = {"policy": policy.init(policy_key)}
    if use_context:
      params["context"] = actor_gru.init(context_key)
    return params

  def actor_apply(params, observation, history=None, mask=None):
    observation = jnp.asarray(observation)
    _check_last("observation", observation, obs_size)
    ctx = context(actor_gru, params, history, mask, observation)
    inputs = (observation,) if ctx is None else (observation, ctx.astype(observation.dtype))
    return jnp.tanh(policy.apply(params["policy"], *inputs))

  def critic_init(key):
    q_key, context_key = jax.random.split(key)
    params = {"q": jax.vmap(q_head.init)(jax.random.split(q_key, 2))}
    if use_context:
      params["context"] = critic_gru.init(context_key)
    return params

  def critic_apply(params, observation, action, history=None, mask=None):
    observation, action = jnp.asarray(observation), jnp.asarray(action)
    _check_last("observation", observation, obs_size)
    _check_last("action", action, act_size)
    if action.shape[:-1] != observation.shape[:-1]:
      raise ValueError(f"action batch shape {action.shape[:-1]} != observation batch shape {observation.shape[:-1]}.")
    ctx = context(critic_gru, params, history, mask, observation)
    inputs = (observation, action) if ctx is None else (observation, action, ctx.astype(observation.dtype))
    q = jax.vmap(q_head.apply, in_axes=(0,) + (None,) * len(inputs))(params["q"], *inputs)  # [2, ..., 1]
    return q[0, ..., 0], q[1, ..., 0]

  return MQLNetworks(
    actor=encoders.Network(init=actor_init, apply=actor_apply),
    critic=encoders.Network(init=critic_init, apply=critic_apply),
    actor_context=actor_gru,
    critic_context=critic_gru,
    observation_size=obs_size,
    action_size=act_size,
    context_size=ctx_size,
    history_length=int(history_length),
    use_context=bool(use_context),
  )


def init_params(networks: MQLNetworks, key: jax.Array) -> MQLParams:
  """Initialises actor and critic (the TD3 targets start as copies of these)."""
  actor_key, critic_key = jax.random.split(key)
  return MQLParams(actor=networks.actor.init(actor_key), critic=networks.critic.init(critic_key))
