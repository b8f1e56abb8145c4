"""LangGoalIRL networks: instruction encoder, policy, twin critics, reward and the variational goal generator.

Every network is a `common.encoders.Network` (`init(key) -> params`, `apply(params, ...)`) over **one**
trajectory: the instruction `tokens [L]` is encoded once and broadcast over the leading axes of `obs`
(`[OBS_SIZE]` or `[T, OBS_SIZE]`), so a trajectory of T steps pays for a single instruction encoding.  Batches
are `jax.vmap`ped by the caller.

* `GoalScorer` (policy logits, each critic's Q-values, the reward's g): the instruction encoder (masked GRU or
  pre-LN Transformer from `common.encoders`) gives token states; a query built from the observation attends
  over them (dot-product attention with a padding mask); every action is scored from its own features (the
  neighbour slot's block of the observation, or a STOP feature) together with the state and the attended
  instruction, as Speaker-Follower's `EltwiseProdScoring` scores candidate directions.  Output `[..., A]`.
* `RewardNet`: f(s, a, s', G) = g(s, a, G) + gamma (1 - terminal') h(s', G) - h(s, G) (AIRL's disentangled
  shaping, `shaping=True`) or f = g (`shaping=False`).  g and h share one instruction encoding.
* `GoalGenerator`: q(G | tau), a conditional VAE "speaker".  A GRU encodes the trajectory's steps
  (observation + one-hot action, absorbing steps masked); the posterior q(z | G, tau) encodes the instruction
  too; the decoder is an autoregressive GRU over tokens conditioned on [z, trajectory code] that attends over
  the trajectory's per-step states at every token (`TrajectoryCode`).  Sampling draws
  z ~ N(0, I), so the same trajectory gets different phrasings (paraphrases) and an unlabelled trajectory gets
  a goal that describes it (relabelling).  The ELBO (with the KL weight annealed by the caller and word
  dropout on the decoder inputs) is in `nlirl.losses`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from common import encoders
from nlirl import envs

NODE_INPUT = envs.navigation.NODE_FEATURES + 2  # current node's features, stopped flag, t / horizon
SLOT_FEATURES = envs.navigation.SLOT_FEATURES
NUM_ACTIONS = envs.NUM_ACTIONS
ENCODERS = ("gru", "transformer")


class InstructionEncoder(nn.Module):
  """Token ids [L] -> (token states [L, H], mask [L] bool, summary [H]); PAD (id 0) is masked out.

  Attributes:
    kind: 'gru' (masked GRU over embedded tokens; summary = final state) or 'transformer' (pre-LN, summary =
      mean of valid outputs).
    vocab_size: vocabulary size.
    embed_dim: token embedding size (GRU only; the transformer embeds to `hidden`).
    hidden: state size H.
    num_layers, num_heads: transformer only.
  """

  kind: str
  vocab_size: int
  embed_dim: int
  hidden: int
  num_layers: int = 1
  num_heads: int = 2

  @nn.compact
  def __call__(self, tokens: jax.Array):
    chex.assert_rank(tokens, 1)
    mask = tokens != envs.Vocabulary().pad_id
    if self.kind == "gru":
      x = nn.Embed(self.vocab_size, self.embed_dim, name="embed")(tokens)
      final, states = encoders.GRUEncoder(self.hidden, name="gru")(x, mask, return_all_states=True)
      return states, mask, final
    if self.kind == "transformer":
      states, pooled = encoders.TransformerEncoder(
        model_dim=self.hidden,
        num_layers=self.num_layers,
        num_heads=self.num_heads,
        mlp_dim=2 * self.hidden,
        vocab_size=self.vocab_size,
        name="transformer",
      )(tokens, mask)
      return states, mask, pooled
    raise ValueError(f"unknown instruction encoder {self.kind!r}; valid: {ENCODERS}")


def split_observation(obs: jax.Array) -> tuple[jax.Array, jax.Array]:
  """obs [..., OBS_SIZE] -> (node part [..., NODE_INPUT], slots [..., MAX_DEGREE, SLOT_FEATURES])."""
  chex.assert_axis_dimension(obs, -1, envs.OBS_SIZE)
  node = obs[..., :NODE_INPUT]
  slots = obs[..., NODE_INPUT:].reshape(obs.shape[:-1] + (envs.MAX_DEGREE, SLOT_FEATURES))
  return node, slots


def action_features(obs: jax.Array) -> jax.Array:
  """[..., NUM_ACTIONS, SLOT_FEATURES + 1]: each neighbour slot's block, then STOP (zeros + a STOP flag)."""
  _, slots = split_observation(obs)
  slots = jnp.concatenate([slots, jnp.zeros(slots.shape[:-1] + (1,), slots.dtype)], axis=-1)
  stop = jnp.zeros(slots.shape[:-2] + (1, SLOT_FEATURES + 1), slots.dtype).at[..., -1].set(1.0)
  return jnp.concatenate([slots, stop], axis=-2)


def attend(query: jax.Array, keys: jax.Array, mask: jax.Array) -> jax.Array:
  """Masked dot-product attention of `query [..., H]` over `keys [L, H]`: the context [..., H]."""
  chex.assert_rank([keys, mask], [2, 1])
  scores = jnp.einsum("...h,lh->...l", query, keys) / jnp.sqrt(keys.shape[-1]).astype(keys.dtype)
  scores = jnp.where(mask, scores, -1e9)
  weights = jax.nn.softmax(scores, axis=-1)
  return jnp.einsum("...l,lh->...h", weights, keys)


class _StateGoal(nn.Module):
  """Encodes (obs, encoded instruction) into a joint state embedding [..., H]."""

  hidden: int

  @nn.compact
  def __call__(self, encoded, obs):
    goal_states, goal_mask, summary = encoded
    node, slots = split_observation(obs)
    flat = jnp.concatenate([node, slots.reshape(slots.shape[:-2] + (-1,))], axis=-1)
    state = nn.relu(nn.Dense(self.hidden, name="state")(flat))
    summary = jnp.broadcast_to(summary, state.shape[:-1] + summary.shape)
    query = nn.Dense(goal_states.shape[-1], name="query")(jnp.concatenate([state, summary], axis=-1))
    context = attend(query, goal_states, goal_mask)
    return nn.relu(nn.Dense(self.hidden, name="joint")(jnp.concatenate([state, context], axis=-1)))


class _ActionHead(nn.Module):
  """Scores every action from its features and the joint state: [..., NUM_ACTIONS]."""

  hidden: int

  @nn.compact
  def __call__(self, encoded, obs):
    joint = _StateGoal(self.hidden, name="state_goal")(encoded, obs)
    acts = nn.relu(nn.Dense(self.hidden, name="action")(action_features(obs)))  # [..., A, H]
    both = jnp.concatenate([acts, jnp.broadcast_to(joint[..., None, :], acts.shape)], axis=-1)
    hidden = nn.relu(nn.Dense(self.hidden, name="score_hidden")(both))
    return nn.Dense(1, name="score")(hidden)[..., 0]


class GoalScorer(nn.Module):
  """Scores every action: (tokens [L], obs [..., OBS_SIZE]) -> [..., NUM_ACTIONS] (logits or values).

  `encode(tokens)` and `score(encoded, obs)` split the call, so a rollout encodes its instruction once and
  scores every step with it (`apply(params, tokens, method=GoalScorer.encode)`).

  Attributes:
    encoder_kind, vocab_size, embed_dim, hidden, num_layers, num_heads: the instruction encoder.
    num_heads_out: independent output heads sharing the instruction encoding (2 for twin critics): output
      [..., heads, NUM_ACTIONS] when > 1.
  """

  encoder_kind: str
  vocab_size: int
  embed_dim: int
  hidden: int
  num_layers: int = 1
  num_heads: int = 2
  num_heads_out: int = 1

  def setup(self):
    self.goal = InstructionEncoder(
      self.encoder_kind, self.vocab_size, self.embed_dim, self.hidden, self.num_layers, self.num_heads
    )
    self.heads = [_ActionHead(self.hidden) for _ in range(self.num_heads_out)]

  def encode(self, tokens):
    return self.goal(tokens)

  def score(self, encoded, obs):
    outs = [head(encoded, obs) for head in self.heads]
    return outs[0] if self.num_heads_out == 1 else jnp.stack(outs, axis=-2)

  def __call__(self, tokens: jax.Array, obs: jax.Array) -> jax.Array:
    return self.score(self.encode(tokens), obs)


class _FollowerCell(nn.Module):
  """One step of the recurrent follower: ((h, context), obs) -> ((h', context'), logits [NUM_ACTIONS]).

  h' = GRU(h, [relu(W obs), context]) (input feeding: the previous step's attended instruction); the new
  context is attention from h' over the instruction's token states; every action is scored from its own
  features together with [h', context'] (Speaker-Follower's follower, with a GRU for the LSTM).
  """

  hidden: int

  @nn.compact
  def __call__(self, carry, obs, encoded):
    goal_states, goal_mask, _ = encoded
    h, context = carry
    node, slots = split_observation(obs)
    flat = jnp.concatenate([node, slots.reshape(slots.shape[:-2] + (-1,))], axis=-1)
    x = nn.relu(nn.Dense(self.hidden, name="obs")(flat))
    h, y = nn.GRUCell(self.hidden, name="gru")(h, jnp.concatenate([x, context], axis=-1))
    query = nn.Dense(goal_states.shape[-1], name="query")(jnp.concatenate([y, x], axis=-1))
    context = attend(query, goal_states, goal_mask)
    joint = nn.relu(nn.Dense(self.hidden, name="joint")(jnp.concatenate([y, context, x], axis=-1)))
    acts = nn.relu(nn.Dense(self.hidden, name="action")(action_features(obs)))  # [A, H]
    both = jnp.concatenate([acts, jnp.broadcast_to(joint[None, :], acts.shape)], axis=-1)
    logits = nn.Dense(1, name="score")(nn.relu(nn.Dense(self.hidden, name="score_hidden")(both)))[:, 0]
    return (h, context), logits


class RecurrentFollower(nn.Module):
  """A follower with memory: (tokens [L], obs [T, OBS_SIZE]) -> logits [T, NUM_ACTIONS].

  A GRU runs over the trajectory's observations (causal: the logits of step t depend on obs[: t + 1] only),
  attending over the instruction's token states at every step, so it can keep track of how much of the
  instruction it has followed and of the rooms it has seen (Speaker-Follower's follower: Fried et al.,
  "Speaker-Follower Models for Vision-and-Language Navigation", NeurIPS 2018, arXiv:1806.02724).  The
  initial state is a projection of the instruction summary.  Rollouts step it one observation at a time
  (`start` then `step`); on a whole trajectory `__call__` gives the same logits (teacher forcing).
  """

  encoder_kind: str
  vocab_size: int
  embed_dim: int
  hidden: int
  num_layers: int = 1
  num_heads: int = 2

  def setup(self):
    self.goal = InstructionEncoder(
      self.encoder_kind, self.vocab_size, self.embed_dim, self.hidden, self.num_layers, self.num_heads
    )
    self.init_h = nn.Dense(self.hidden)
    self.cell = nn.scan(
      _FollowerCell,
      variable_broadcast="params",
      split_rngs={"params": False},
      in_axes=(0, nn.broadcast),
      out_axes=0,
    )(self.hidden)

  def start(self, tokens):
    """(encoded instruction, initial carry) of one rollout."""
    encoded = self.goal(tokens)
    states, _, summary = encoded
    return encoded, (jnp.tanh(self.init_h(summary)), jnp.zeros(states.shape[-1:], states.dtype))

  def step(self, encoded, carry, obs):
    """One observation [OBS_SIZE] -> (logits [NUM_ACTIONS], carry)."""
    carry, logits = self.cell(carry, obs[None], encoded)
    return logits[0], carry

  def __call__(self, tokens, obs):
    chex.assert_rank(obs, 2)
    encoded, carry = self.start(tokens)
    _, logits = self.cell(carry, obs, encoded)
    return logits


class RewardNet(nn.Module):
  """AIRL reward: (tokens [L], obs [T + 1, OBS_SIZE], actions [T], terminal [T + 1]) -> (f [T], g [T], h [T + 1]).

  `terminal[t]` marks states whose potential is 0 (the end of the fixed horizon).  With `shaping=False`,
  f = g and h is 0.
  """

  encoder_kind: str
  vocab_size: int
  embed_dim: int
  hidden: int
  gamma: float
  shaping: bool = True
  num_layers: int = 1
  num_heads: int = 2

  @nn.compact
  def __call__(self, tokens, obs, actions, terminal):
    chex.assert_rank([tokens, obs, actions, terminal], [1, 2, 1, 1])
    steps = actions.shape[0]
    chex.assert_shape([obs, terminal], [(steps + 1, envs.OBS_SIZE), (steps + 1,)])
    g_all = GoalScorer(
      self.encoder_kind, self.vocab_size, self.embed_dim, self.hidden, self.num_layers, self.num_heads, name="g"
    )(tokens, obs[:-1])
    g = jnp.take_along_axis(g_all, actions[:, None], axis=-1)[:, 0]
    if not self.shaping:
      return g, g, jnp.zeros((steps + 1,), g.dtype)
    encoder = InstructionEncoder(
      self.encoder_kind, self.vocab_size, self.embed_dim, self.hidden, self.num_layers, self.num_heads, name="h_goal"
    )
    joint = _StateGoal(self.hidden, name="h_state_goal")(encoder(tokens), obs)
    h = nn.Dense(1, name="h")(joint)[:, 0] * (1.0 - terminal.astype(g.dtype))
    f = g + self.gamma * h[1:] - h[:-1]
    return f, g, h


class TrajectoryCode(NamedTuple):
  """The generator's encoding of one trajectory.

  Attributes:
    summary: [C] the trajectory GRU's final state (feeds the posterior and the decoder's initial state).
    memory: [T, C] its state after every step, which the decoder attends over (Speaker-Follower's speaker).
    mask: [T] bool, the steps that exist (active, before the episode ended).
  """

  summary: jax.Array
  memory: jax.Array
  mask: jax.Array


class GoalGenerator(nn.Module):
  """Variational goal generator q(G | tau): trajectory encoder, posterior, attentive autoregressive GRU decoder.

  Each decoder step attends over the trajectory's per-step states (dot-product attention from the decoder
  state), so the room and object words it emits can come from the step that shows them rather than from
  one summary vector; without it samples are fluent but name landmarks the path never passes.

  Methods (call through `apply(params, ..., method=...)`, see `GeneratorNetwork`):
    encode_trajectory(obs [T, OBS], actions [T], step_mask [T]) -> `TrajectoryCode`
    posterior(tokens [L], code) -> (mean [Z], log_std [Z])
    initial_state(z [Z], code) -> h [H]
    decode_step(h [H], token [], z [Z], code) -> (logits [V], h [H])
  """

  vocab_size: int
  embed_dim: int
  hidden: int
  latent: int
  trajectory_hidden: int

  def setup(self):
    self.step_in = nn.Dense(self.trajectory_hidden)
    self.trajectory_gru = encoders.GRUEncoder(self.trajectory_hidden)
    self.goal_embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.goal_gru = encoders.GRUEncoder(self.hidden)
    self.post = nn.Dense(2 * self.latent)
    self.init_dense = nn.Dense(self.hidden)
    self.decoder_embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.cell = nn.GRUCell(self.hidden)
    self.query = nn.Dense(self.trajectory_hidden, use_bias=False)
    self.combine = nn.Dense(self.hidden)
    self.out = nn.Dense(self.vocab_size)

  def encode_trajectory(self, obs, actions, step_mask):
    chex.assert_rank([obs, actions, step_mask], [2, 1, 1])
    x = jnp.concatenate([obs, jax.nn.one_hot(actions, NUM_ACTIONS, dtype=obs.dtype)], axis=-1)
    summary, memory = self.trajectory_gru(nn.relu(self.step_in(x)), step_mask, return_all_states=True)
    return TrajectoryCode(summary, memory, step_mask.astype(bool))

  def posterior(self, tokens, code: TrajectoryCode):
    mask = tokens != envs.Vocabulary().pad_id
    final = self.goal_gru(self.goal_embed(tokens), mask)
    stats = self.post(jnp.concatenate([final, code.summary], axis=-1))
    mean, log_std = jnp.split(stats, 2, axis=-1)
    return mean, jnp.clip(log_std, -5.0, 2.0)

  def initial_state(self, z, code: TrajectoryCode):
    return jnp.tanh(self.init_dense(jnp.concatenate([z, code.summary], axis=-1)))

  def decode_step(self, h, token, z, code: TrajectoryCode):
    x = jnp.concatenate([self.decoder_embed(token), z, code.summary], axis=-1)
    h, y = self.cell(h, x)
    context = attend(self.query(y), code.memory, code.mask)
    return self.out(nn.relu(self.combine(jnp.concatenate([y, context], axis=-1)))), h

  def init_all(self, obs, actions, step_mask, tokens):
    code = self.encode_trajectory(obs, actions, step_mask)
    mean, _ = self.posterior(tokens, code)
    h = self.initial_state(mean, code)
    return self.decode_step(h, tokens[0], mean, code)


@dataclasses.dataclass(frozen=True)
class GeneratorNetwork:
  """The goal generator behind a functional boundary: `init(key)`, and one apply function per method."""

  init: Callable[[jax.Array], Any]
  encode_trajectory: Callable[..., jax.Array]
  posterior: Callable[..., tuple[jax.Array, jax.Array]]
  initial_state: Callable[..., jax.Array]
  decode_step: Callable[..., tuple[jax.Array, jax.Array]]
  latent: int
  max_tokens: int


POLICIES = ("markov", "recurrent")


@dataclasses.dataclass(frozen=True)
class PolicyNetwork(encoders.Network):
  """The policy behind a functional boundary, for whole trajectories and for rollouts step by step.

  Attributes:
    init: key -> params.
    apply: (params, tokens [L], obs [T, OBS]) -> logits [T, A] (markov: also obs [..., OBS]).
    start: (params, tokens [L]) -> a rollout's carry (the encoded instruction, and the GRU state if recurrent).
    step: (params, carry, obs [OBS]) -> (logits [A], carry).
    recurrent: whether the logits of a step depend on the earlier observations.
  """

  start: Callable[..., Any] = None
  step: Callable[..., Any] = None
  recurrent: bool = False


def _policy_network(kind: str, common: dict, tokens, obs) -> PolicyNetwork:
  if kind == "markov":
    module = GoalScorer(**common)
    start = lambda p, tok: module.apply(p, tok, method=GoalScorer.encode)
    step = lambda p, enc, o: (module.apply(p, enc, o, method=GoalScorer.score), enc)
  elif kind == "recurrent":
    module = RecurrentFollower(**common)
    start = lambda p, tok: module.apply(p, tok, method=RecurrentFollower.start)

    def step(p, carry, o):
      encoded, state = carry
      logits, state = module.apply(p, encoded, state, o, method=RecurrentFollower.step)
      return logits, (encoded, state)
  else:
    raise ValueError(f"policy must be one of {POLICIES}, got {kind!r}")
  return PolicyNetwork(
    init=lambda key: module.init(key, tokens, obs),
    apply=module.apply,
    start=start,
    step=step,
    recurrent=kind == "recurrent",
  )


@dataclasses.dataclass(frozen=True)
class Networks:
  """All LangGoalIRL networks (each an `(init, apply)` pair; see the module docstring for shapes).

  Attributes:
    policy: `PolicyNetwork`: apply(params, tokens [L], obs [T, OBS]) -> logits [T, A] (unmasked), and
      start / step for rollouts.
    critic: apply(params, tokens, obs) -> Q [..., 2, A] (twin heads).
    reward: apply(params, tokens, obs [T + 1, OBS], actions [T], terminal [T + 1]) -> (f [T], g [T], h [T + 1]).
    generator: `GeneratorNetwork`.
  """

  policy: PolicyNetwork
  critic: encoders.Network
  reward: encoders.Network
  generator: GeneratorNetwork
  max_tokens: int


def _wrap(module: nn.Module, *dummy) -> encoders.Network:
  return encoders.Network(init=lambda key: module.init(key, *dummy), apply=module.apply)


def make_networks(
  *,
  vocab_size: int,
  max_tokens: int,
  encoder: str = "gru",
  embed_dim: int = 32,
  hidden: int = 64,
  num_layers: int = 1,
  num_heads: int = 2,
  gamma: float = 0.95,
  shaping: bool = True,
  latent: int = 16,
  trajectory_hidden: int = 64,
  horizon: int = envs.HORIZON,
  generator_hidden: int | None = None,
  policy: str = "markov",
) -> Networks:
  """Builds the four networks.

  Args:
    vocab_size: instruction vocabulary size (`envs.Vocabulary().size`).
    max_tokens: padded instruction length L (the generator decodes this many tokens).
    encoder: 'gru' or 'transformer' instruction encoder (policy, critic and reward each have their own).
    embed_dim: token embedding size.
    hidden: hidden size of every network.
    num_layers, num_heads: transformer depth and heads.
    gamma: discount of the AIRL shaping term (the SAC discount).
    shaping: f = g + gamma h(s') - h(s) (True) or f = g.
    latent: generator latent size.
    trajectory_hidden: generator trajectory-encoder size.
    horizon: trajectory length T (dummy inputs only; params do not depend on it).
    generator_hidden: the generator decoder's hidden size (None: `hidden`); a speaker that names the right
      rooms needs more width than a policy that follows it.
    policy: 'markov' (`GoalScorer`: each step from its observation and the instruction) or 'recurrent'
      (`RecurrentFollower`: a GRU over the trajectory attending over the instruction).  The critic and the
      reward are Markov in both cases.
  """
  if encoder not in ENCODERS:
    raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
  tokens = jnp.zeros((max_tokens,), jnp.int32).at[0].set(4)
  obs = jnp.zeros((horizon + 1, envs.OBS_SIZE), jnp.float32)
  actions = jnp.zeros((horizon,), jnp.int32)
  terminal = jnp.zeros((horizon + 1,), bool)
  common = dict(encoder_kind=encoder, vocab_size=vocab_size, embed_dim=embed_dim, hidden=hidden)
  common.update(num_layers=num_layers, num_heads=num_heads)
  policy_net = _policy_network(policy, common, tokens, obs)
  critic = _wrap(GoalScorer(**common, num_heads_out=2), tokens, obs)
  reward = _wrap(RewardNet(**common, gamma=gamma, shaping=shaping), tokens, obs, actions, terminal)
  gen = GoalGenerator(vocab_size, embed_dim, generator_hidden or hidden, latent, trajectory_hidden)
  step_mask = jnp.ones((horizon,), bool)
  generator = GeneratorNetwork(
    init=lambda key: gen.init(key, obs[:-1], actions, step_mask, tokens, method=GoalGenerator.init_all),
    encode_trajectory=lambda p, *a: gen.apply(p, *a, method=GoalGenerator.encode_trajectory),
    posterior=lambda p, *a: gen.apply(p, *a, method=GoalGenerator.posterior),
    initial_state=lambda p, *a: gen.apply(p, *a, method=GoalGenerator.initial_state),
    decode_step=lambda p, *a: gen.apply(p, *a, method=GoalGenerator.decode_step),
    latent=latent,
    max_tokens=max_tokens,
  )
  return Networks(policy=policy_net, critic=critic, reward=reward, generator=generator, max_tokens=max_tokens)


def masked_log_softmax(logits: jax.Array, mask: jax.Array) -> jax.Array:
  """log pi over the valid actions (`mask` True); invalid actions get a large negative log-probability."""
  chex.assert_equal_shape([logits, mask])
  logits = jnp.where(mask, logits, -1e9)
  return jax.nn.log_softmax(logits, axis=-1)


def sample_goal(
  generator: GeneratorNetwork,
  params: Any,
  obs: jax.Array,
  actions: jax.Array,
  step_mask: jax.Array,
  key: jax.Array,
  *,
  temperature: float = 1.0,
) -> jax.Array:
  """Draws G ~ q(G | tau) for one trajectory: z ~ N(0, I), then tokens until EOS (then PAD); int32 [L].

  `temperature == 0` decodes greedily (argmax) from z = 0, the generator's most likely phrasing.
  """
  vocab = envs.Vocabulary()
  z_key, token_key = jax.random.split(key)
  code = generator.encode_trajectory(params, obs, actions, step_mask)
  z = jax.random.normal(z_key, (generator.latent,)) * (1.0 if temperature > 0 else 0.0)
  h = generator.initial_state(params, z, code)

  def body(carry, key):
    h, token, finished = carry
    logits, h = generator.decode_step(params, h, token, z, code)
    logits = logits.at[vocab.pad_id].set(-1e9).at[vocab.bos_id].set(-1e9).at[vocab.unk_id].set(-1e9)
    if temperature > 0:
      new = jax.random.categorical(key, logits / temperature)
    else:
      new = jnp.argmax(logits)
    out = jnp.where(finished, vocab.pad_id, new).astype(jnp.int32)
    return (h, out, finished | (out == vocab.eos_id)), out

  keys = jax.random.split(token_key, generator.max_tokens)
  init = (h, jnp.asarray(vocab.bos_id, jnp.int32), jnp.zeros((), bool))
  _, tokens = jax.lax.scan(body, init, keys)
  return tokens


def encode_goal(net: encoders.Network, params: Any, tokens: jax.Array):
  """The instruction encoding of a `GoalScorer` network (policy or critic), to reuse over many steps."""
  return net.apply(params, tokens, method=GoalScorer.encode)


def score_with(net: encoders.Network, params: Any, encoded, obs: jax.Array) -> jax.Array:
  """`GoalScorer` outputs for `obs` from an `encode_goal` encoding (equal to `net.apply(params, tokens, obs)`)."""
  return net.apply(params, encoded, obs, method=GoalScorer.score)
