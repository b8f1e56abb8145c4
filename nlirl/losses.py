"""LangGoalIRL losses: the language-conditioned AIRL discriminator, discrete SAC, behaviour cloning, the ELBO.

Maths on one unbatched trajectory (rlax style, chex-checked); `make_losses` closes over the networks and the
static hyperparameters and returns batched losses (`jax.vmap` over trajectories), brax.training style.

Discriminator (AIRL, Fu et al. 2018, with the goal G added)::

  D(s, a, G) = exp f(s, a, G) / (exp f(s, a, G) + pi(a | s, G)),   logit D = f(s, a, G) - log pi(a | s, G)

with log pi evaluated under the *current* policy and `stop_gradient` (recomputed for every batch, expert and
relabelled tuples included: a stale log pi is a known off-policy AIRL bug).  Positives are labelled 1,
negatives 0, binary cross-entropy, plus a zero-centred gradient penalty on observations interpolated between
positives and negatives.  `kind='gail'` drops the -log pi term (logit = f = g, no shaping).

Policy reward, recomputed from the current discriminator whenever SAC samples a batch (never stored):

* 'airl', `airl_reward='logit'` (default): r = f(s, a, s', G) - log pi(a | s, G), the discriminator's
  log-odds log D - log(1 - D): AIRL's reward (Fu et al. 2018; the `imitation` library's AIRL reward too),
  log pi of the current policy under `stop_gradient`; SAC's entropy bonus comes on top.
* 'airl', `airl_reward='f'`: r = f, leaving the -log pi to SAC's -alpha log pi.  Exact only at alpha = 1;
  at the small alphas the temperature tuning settles on (~0.1) every step that has a choice pays
  ~(1 - alpha) log pi < 0 while absorbing steps (one action, log pi = 0) do not, so the policy learns to
  STOP at once (measured on R2R-lite: greedy SR 0, P(STOP) 0.6 at t = 0).  Kept for that comparison.
* 'gail': r = -log(1 - D) = softplus(f).

Both are clipped to [-max_reward, max_reward].  Fixed horizon: every trajectory has T steps; after STOP the
state is absorbing (only STOP is valid, log pi = 0), its transitions are kept, and only the last transition
(t + 1 == horizon) does not bootstrap.  In the discriminator's loss, `absorbing='every_step'` counts every
absorbing step of a trajectory (so an expert that stops early contributes T - len(path) - 1 absorbing
positives against the rollouts' absorbing negatives, and the absorbing reward it learns is negative:
stopping is penalised); `absorbing='once'` counts one absorbing sample per trajectory that stopped, as
Discriminator-Actor-Critic (Kostrikov et al., ICLR 2019, arXiv:1809.02925) does.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

from nlirl import envs
from nlirl import networks as networks_lib

DISCRIMINATORS = ("airl", "gail")
AIRL_REWARDS = ("logit", "f")
ABSORBING = ("every_step", "once")  # absorbing steps in the discriminator's loss (module docstring)


class Trajectory(NamedTuple):
  """One trajectory with its goal (leaves gain a leading batch axis when batched).

  Attributes:
    obs: float32 [T + 1, OBS_SIZE].
    masks: bool [T + 1, NUM_ACTIONS] valid actions.
    actions: int32 [T].
    tokens: int32 [L] the goal instruction paired with this trajectory.
    terminal: bool [T + 1] end of the fixed horizon (potential h = 0, no bootstrap).
    active: bool [T] steps taken before STOP (STOP itself included); absorbing steps are False.
  """

  obs: jax.Array
  masks: jax.Array
  actions: jax.Array
  tokens: jax.Array
  terminal: jax.Array
  active: jax.Array


def _check(traj: Trajectory) -> int:
  steps = traj.actions.shape[0]
  chex.assert_shape(
    [traj.obs, traj.masks, traj.actions, traj.terminal, traj.active],
    [(steps + 1, envs.OBS_SIZE), (steps + 1, envs.NUM_ACTIONS), (steps,), (steps + 1,), (steps,)],
  )
  chex.assert_rank(traj.tokens, 1)
  return steps


def airl_logit(f: jax.Array, log_pi: jax.Array) -> jax.Array:
  """AIRL's discriminator logit log D - log(1 - D) = f - log pi (elementwise)."""
  chex.assert_equal_shape([f, log_pi])
  return f - log_pi


def taken_log_prob(log_probs: jax.Array, actions: jax.Array) -> jax.Array:
  """log pi(a_t | s_t) [T] from log_probs [T, A] and actions [T]."""
  chex.assert_rank([log_probs, actions], [2, 1])
  return jnp.take_along_axis(log_probs, actions[:, None], axis=-1)[:, 0]


def step_weights(active: jax.Array, absorbing: str) -> jax.Array:
  """float32 weights [..., T] of the steps in the discriminator's loss: every step, or the active steps and
  the first absorbing one (DAC's single absorbing sample; none if the trajectory never stopped)."""
  if absorbing not in ABSORBING:
    raise ValueError(f"absorbing must be one of {ABSORBING}, got {absorbing!r}")
  if absorbing == "every_step":
    return jnp.ones(active.shape, jnp.float32)
  idle = ~active
  first = idle & (jnp.cumsum(idle.astype(jnp.int32), axis=-1) == 1)
  return (active | first).astype(jnp.float32)


def sigmoid_cross_entropy(logits: jax.Array, label: float) -> jax.Array:
  """-[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], elementwise."""
  return -(label * jax.nn.log_sigmoid(logits) + (1.0 - label) * jax.nn.log_sigmoid(-logits))


def gaussian_kl(mean: jax.Array, log_std: jax.Array) -> jax.Array:
  """KL(N(mean, exp(log_std)^2) || N(0, I)), summed over the last axis."""
  chex.assert_equal_shape([mean, log_std])
  return 0.5 * jnp.sum(mean**2 + jnp.exp(2.0 * log_std) - 1.0 - 2.0 * log_std, axis=-1)


class Losses(NamedTuple):
  """Batched loss functions (leaves of `Trajectory` batches are [B, ...]); see `make_losses`."""

  policy_log_probs: Callable[..., jax.Array]
  discriminator_logits: Callable[..., jax.Array]
  reward: Callable[..., jax.Array]
  discriminator: Callable[..., tuple[jax.Array, dict]]
  critic: Callable[..., tuple[jax.Array, dict]]
  actor: Callable[..., tuple[jax.Array, dict]]
  temperature: Callable[..., jax.Array]
  behaviour_cloning: Callable[..., tuple[jax.Array, dict]]
  generator: Callable[..., tuple[jax.Array, dict]]


def make_losses(
  nets: networks_lib.Networks,
  *,
  gamma: float,
  discriminator: str = "airl",
  gradient_penalty: float = 1.0,
  max_reward: float = 10.0,
  airl_reward: str = "logit",
  target_entropy_scale: float = 0.5,
  word_dropout: float = 0.25,
  absorbing: str = "every_step",
) -> Losses:
  """Builds the LangGoalIRL losses.

  Args:
    nets: `networks.make_networks(...)` (its reward net carries the shaping choice).
    gamma: SAC discount.
    discriminator: 'airl' (logit f - log pi, reward f) or 'gail' (logit f, reward -log(1 - D)).
    gradient_penalty: weight of the zero-centred penalty |d logit / d obs|^2 on interpolated observations.
    max_reward: |reward| clip.
    airl_reward: 'logit' (r = f - log pi, AIRL's reward) or 'f' (r = f); 'airl' only (module docstring).
    target_entropy_scale: SAC target entropy per state = scale x log(number of valid actions).
    word_dropout: probability of replacing a decoder input token by UNK in the ELBO (against posterior
      collapse: the decoder must lean on z).
    absorbing: 'every_step' or 'once' (DAC): absorbing steps counted in the discriminator's loss.
  """
  if discriminator not in DISCRIMINATORS:
    raise ValueError(f"discriminator must be one of {DISCRIMINATORS}, got {discriminator!r}")
  if airl_reward not in AIRL_REWARDS:
    raise ValueError(f"airl_reward must be one of {AIRL_REWARDS}, got {airl_reward!r}")
  if absorbing not in ABSORBING:
    raise ValueError(f"absorbing must be one of {ABSORBING}, got {absorbing!r}")
  vocab = envs.Vocabulary()

  def log_probs_one(policy_params, traj: Trajectory) -> jax.Array:
    _check(traj)
    logits = nets.policy.apply(policy_params, traj.tokens, traj.obs)
    return networks_lib.masked_log_softmax(logits, traj.masks)  # [T + 1, A]

  def logits_one(reward_params, policy_params, traj: Trajectory) -> jax.Array:
    f, _, _ = nets.reward.apply(reward_params, traj.tokens, traj.obs, traj.actions, traj.terminal)
    if discriminator == "gail":
      return f
    log_pi = jax.lax.stop_gradient(taken_log_prob(log_probs_one(policy_params, traj)[:-1], traj.actions))
    return airl_logit(f, log_pi)

  def reward_one(reward_params, policy_params, traj: Trajectory) -> jax.Array:
    if discriminator == "airl" and airl_reward == "logit":
      r = logits_one(reward_params, policy_params, traj)  # f - log pi
    else:
      f, _, _ = nets.reward.apply(reward_params, traj.tokens, traj.obs, traj.actions, traj.terminal)
      r = jax.nn.softplus(f) if discriminator == "gail" else f
    return jnp.clip(jax.lax.stop_gradient(r), -max_reward, max_reward)

  def penalty_one(reward_params, policy_params, pos: Trajectory, neg: Trajectory, key) -> jax.Array:
    eps = jax.random.uniform(key)
    mixed = pos._replace(obs=eps * pos.obs + (1.0 - eps) * neg.obs)

    def total(obs):
      return jnp.sum(logits_one(reward_params, policy_params, mixed._replace(obs=obs)))

    grad = jax.grad(total)(mixed.obs)  # [T + 1, OBS]
    return jnp.mean(jnp.sum(grad**2, axis=-1))

  def discriminator_loss(reward_params, policy_params, positives, pos_weight, negatives, neg_weight, key):
    """Weighted BCE over the steps of every trajectory (`step_weights`); weights [B] switch groups on and off.

    Besides scalars, the metrics hold each row's fraction of correctly classified steps
    (`disc/row_correct_positive`, `disc/row_correct_negative`, [B]) for per-group accuracies.
    """
    pos_logits = jax.vmap(logits_one, (None, None, 0))(reward_params, policy_params, positives)  # [B, T]
    neg_logits = jax.vmap(logits_one, (None, None, 0))(reward_params, policy_params, negatives)
    chex.assert_equal_shape([pos_logits[:, 0], pos_weight])
    pos_w = pos_weight[:, None] * step_weights(positives.active, absorbing)
    neg_w = neg_weight[:, None] * step_weights(negatives.active, absorbing)
    pos_loss = jnp.sum(pos_w * sigmoid_cross_entropy(pos_logits, 1.0)) / jnp.maximum(pos_w.sum(), 1.0)
    neg_loss = jnp.sum(neg_w * sigmoid_cross_entropy(neg_logits, 0.0)) / jnp.maximum(neg_w.sum(), 1.0)
    keys = jax.random.split(key, pos_weight.shape[0])
    gp = jnp.mean(
      jax.vmap(penalty_one, (None, None, 0, 0, 0))(reward_params, policy_params, positives, negatives, keys)
    )
    loss = pos_loss + neg_loss + gradient_penalty * gp
    acc_pos = jnp.sum(pos_w * (pos_logits > 0)) / jnp.maximum(pos_w.sum(), 1.0)
    acc_neg = jnp.sum(neg_w * (neg_logits < 0)) / jnp.maximum(neg_w.sum(), 1.0)
    return loss, {
      "disc/loss": loss,
      "disc/gradient_penalty": gp,
      "disc/accuracy_positive": acc_pos,
      "disc/accuracy_negative": acc_neg,
      "disc/logit_positive": jnp.sum(pos_w * pos_logits) / jnp.maximum(pos_w.sum(), 1.0),
      "disc/logit_negative": jnp.sum(neg_w * neg_logits) / jnp.maximum(neg_w.sum(), 1.0),
      "disc/row_correct_positive": jnp.mean(pos_logits > 0, axis=1),
      "disc/row_correct_negative": jnp.mean(neg_logits < 0, axis=1),
    }

  def critic_one(critic_params, target_params, policy_params, log_alpha, traj: Trajectory, rewards):
    steps = _check(traj)
    chex.assert_shape(rewards, (steps,))
    alpha = jnp.exp(log_alpha)
    q = nets.critic.apply(critic_params, traj.tokens, traj.obs[:-1])  # [T, 2, A]
    q_taken = jnp.take_along_axis(q, traj.actions[:, None, None], axis=-1)[..., 0]  # [T, 2]
    log_pi = jax.lax.stop_gradient(log_probs_one(policy_params, traj))  # [T + 1, A]
    pi = jnp.exp(log_pi)
    q_next = nets.critic.apply(target_params, traj.tokens, traj.obs).min(axis=-2)  # [T + 1, A]
    value = jnp.sum(jnp.where(traj.masks, pi * (q_next - alpha * log_pi), 0.0), axis=-1)  # [T + 1]
    target = rewards + gamma * (1.0 - traj.terminal[1:].astype(rewards.dtype)) * value[1:]
    target = jax.lax.stop_gradient(target)
    return 0.5 * jnp.mean(jnp.sum((q_taken - target[:, None]) ** 2, axis=-1)), jnp.mean(q_taken)

  def critic_loss(critic_params, target_params, policy_params, log_alpha, batch, rewards):
    losses, q = jax.vmap(critic_one, (None, None, None, None, 0, 0))(
      critic_params, target_params, policy_params, log_alpha, batch, rewards
    )
    loss = jnp.mean(losses)
    return loss, {"sac/critic_loss": loss, "sac/q": jnp.mean(q), "sac/reward": jnp.mean(rewards)}

  def actor_one(policy_params, critic_params, log_alpha, traj: Trajectory):
    _check(traj)
    alpha = jax.lax.stop_gradient(jnp.exp(log_alpha))
    obs, masks = traj.obs[:-1], traj.masks[:-1]
    logits = nets.policy.apply(policy_params, traj.tokens, obs)
    log_pi = networks_lib.masked_log_softmax(logits, masks)
    pi = jnp.exp(log_pi)
    q = jax.lax.stop_gradient(nets.critic.apply(critic_params, traj.tokens, obs).min(axis=-2))
    per_state = jnp.sum(jnp.where(masks, pi * (alpha * log_pi - q), 0.0), axis=-1)  # [T]
    entropy = -jnp.sum(jnp.where(masks, pi * log_pi, 0.0), axis=-1)
    num_valid = masks.sum(axis=-1)
    choice = (num_valid > 1).astype(per_state.dtype)  # absorbing states have one action: nothing to learn
    target = target_entropy_scale * jnp.log(jnp.maximum(num_valid, 1).astype(per_state.dtype))
    return per_state, entropy, target, choice

  def actor_loss(policy_params, critic_params, log_alpha, batch):
    per_state, entropy, target, choice = jax.vmap(actor_one, (None, None, None, 0))(
      policy_params, critic_params, log_alpha, batch
    )
    n = jnp.maximum(choice.sum(), 1.0)
    loss = jnp.sum(per_state * choice) / n
    return loss, {
      "sac/actor_loss": loss,
      "sac/entropy": jnp.sum(entropy * choice) / n,
      "sac/target_entropy": jnp.sum(target * choice) / n,
    }

  def temperature_loss(log_alpha, entropy, target_entropy):
    """Automatic temperature: alpha falls while the entropy exceeds its target and rises below it."""
    chex.assert_rank([log_alpha, entropy, target_entropy], 0)
    return log_alpha * jax.lax.stop_gradient(entropy - target_entropy)

  def bc_one(policy_params, traj: Trajectory):
    log_pi = taken_log_prob(log_probs_one(policy_params, traj)[:-1], traj.actions)
    w = traj.active.astype(log_pi.dtype)
    return -jnp.sum(w * log_pi), jnp.sum(w)

  def behaviour_cloning(policy_params, batch):
    nll, count = jax.vmap(bc_one, (None, 0))(policy_params, batch)
    loss = jnp.sum(nll) / jnp.maximum(jnp.sum(count), 1.0)
    return loss, {"bc/loss": loss}

  def elbo_one(gen_params, traj: Trajectory, key, beta):
    _check(traj)
    g = nets.generator
    z_key, drop_key = jax.random.split(key)
    code = g.encode_trajectory(gen_params, traj.obs[:-1], traj.actions, traj.active)
    mean, log_std = g.posterior(gen_params, traj.tokens, code)
    z = mean + jnp.exp(log_std) * jax.random.normal(z_key, mean.shape)
    kl = gaussian_kl(mean, log_std)
    inputs = jnp.concatenate([jnp.full((1,), vocab.bos_id, jnp.int32), traj.tokens[:-1]])
    drop = jax.random.bernoulli(drop_key, word_dropout, inputs.shape) & (jnp.arange(inputs.shape[0]) > 0)
    inputs = jnp.where(drop & (inputs != vocab.pad_id), vocab.unk_id, inputs)

    def body(h, token):
      logits, h = g.decode_step(gen_params, h, token, z, code)
      return h, logits

    _, logits = jax.lax.scan(body, g.initial_state(gen_params, z, code), inputs)  # [L, V]
    token_mask = (traj.tokens != vocab.pad_id).astype(logits.dtype)
    nll = -jnp.sum(token_mask * jnp.take_along_axis(jax.nn.log_softmax(logits), traj.tokens[:, None], -1)[:, 0])
    return nll + beta * kl, nll, kl, token_mask.sum()

  def generator_loss(gen_params, batch, key, beta):
    keys = jax.random.split(key, batch.actions.shape[0])
    loss, nll, kl, tokens = jax.vmap(elbo_one, (None, 0, 0, None))(gen_params, batch, keys, beta)
    count = jnp.maximum(tokens.sum(), 1.0)
    total = jnp.sum(loss) / count
    return total, {"gen/loss": total, "gen/nll_per_token": nll.sum() / count, "gen/kl": jnp.mean(kl), "gen/beta": beta}

  return Losses(
    policy_log_probs=jax.vmap(log_probs_one, (None, 0)),
    discriminator_logits=jax.vmap(logits_one, (None, None, 0)),
    reward=jax.vmap(reward_one, (None, None, 0)),
    discriminator=discriminator_loss,
    critic=critic_loss,
    actor=actor_loss,
    temperature=temperature_loss,
    behaviour_cloning=behaviour_cloning,
    generator=generator_loss,
  )


def soft_update(target: Any, online: Any, tau: float) -> Any:
  """Polyak averaging: target <- (1 - tau) target + tau online."""
  return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)
