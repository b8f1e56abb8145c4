"""MQL's test-time adaptation, vmapped over every test task in one program.

The official code (`main.py` `evaluate_policy`, `algs/MQL/mql.py` `adapt`)
adapts the test tasks one after another, each with a scikit-learn fit and a
Python TD3 loop.  Here one task's whole adaptation is a pure function
(`adapt_task`) and `Adapter.adapt_all` vmaps it over the test tasks under one
`jax.jit`; the meta-trained state (parameters, targets, replay) is shared by
all tasks (`in_axes=None`) and is never modified, so "restoring the networks
after evaluation" is free: adaptation returns numbers, not a new state.

For one test task, in the original's order:

1. **Collect**: one episode on the task with the deterministic meta policy
   (no exploration noise); its transitions, with the acting histories, are
   the new task's data D_new.
2. **Propensity classifier** (`mql.propensity.fit`): positives are D_new's
   rows, negatives `num_train_tasks × (T // num_train_tasks + 2)` draws from
   the train tasks' snapshots (`mql.replay.sample_task`: the original's
   per-task `task_bsize`); features are the meta actor's GRU context of each
   row's history, with the observation first when `observation_features`
   (the original's `--enable_beta_obs_cxt`, on for ant-goal, humanoid-dir,
   walker-params).  Fitted with the exact scikit-learn objective at `C`.
3. **Fresh optimizers** (`schedulers.make_optimizer`, constant rate by
   default).  The original re-creates Adam at PyTorch's default 1e-3 whatever
   `--lr` is, 1-3.3x the rates it meta-trains at.  Here the rate is by
   default tied to meta-training's: `rate_multiplier` (≤ 3) × the effective
   rate each network's optimizer ended at (base × GreedyLR scale, read from
   the checkpoint; `learning_rate_mode='meta'`), since GreedyLR can leave
   meta-training at its floor, where 1e-3 would be 10-33x the trained-at
   rate; `learning_rate_mode='fixed'` is the original's explicit rate.
4. **Stage 1**: `stage1_iterations` ordinary TD3 updates on D_new, batches of
   T rows drawn with replacement (the original's batch = the buffer size),
   with the proximal term (`stage1_prox`, on by default; the original has
   none, and measured on point-robot checkpoints its stage 1 is where the
   return is lost).  `stage1_iterations=0` is the stage-2-only variant.
5. **Stage 2**: `stage2_iterations` β-weighted TD3 updates on the meta
   replay, batches of `stage2_batch_size` (the original's `sample_mult ×
   batch_size`), with the proximal term `λ‖θ − θ_meta‖²` (no ½, as the
   original).  β = exp(min(logit, beta_clip)), zeroed below 0.1; by default
   the logits come from the frozen meta actor's GRU features (the ones the
   classifier was fitted on; `beta_features='current'` recomputes them from
   the actor being adapted, as the original) and β is self-normalised per
   minibatch (`beta_normalize`); `beta='uniform'` is the control with β = 1.
   λ (`prox`): `'fixed'` (default) the constant `prox_coef` 0.1, what the
   released configurations run (none passes `--use_ess_clipping`); `'ess'`
   1 − ESS of the minibatch's β (`mql.propensity.proximal_coefficient`);
   `'td_scaled'` `prox_coef` × the meta critic's TD loss on D_new (the
   penalty follows the family's loss scale); `'none'` no proximal term.
6. **Evaluate**: `num_eval_episodes` episodes (K, default 5) with the meta
   policy, the policy after stage 1 and the adapted policy, each episode
   with a fresh history, all three on the same K reset keys (the same
   episodes, so before and after are paired).

Reported per task (`Adapter.adapt_all`): `before` / `after1` / `after`
`[K]` episode returns, the classifier's training accuracy and majority rate,
the adaptation rates, ‖θ − θ_meta‖ after each stage (actor and critic) and
the stage-2 weight diagnostics.  `make_classifier_check` scores the
classifier on held-out train tasks (to choose `C` without the test tasks).
"""

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from mql import losses as mql_losses
from mql import networks as mql_networks
from mql import propensity, replay
from mql import trainer as trainer_lib
from mql.envs.wrappers import TaskEpisodeWrapper
from schedulers import optimizers

PROX_MODES = ("fixed", "ess", "td_scaled", "none")
RATE_MODES = ("meta", "fixed")
BETA_MODES = ("propensity", "uniform")
BETA_FEATURES = ("meta", "current")
MAX_RATE_MULTIPLIER = 3.0  # the original adapts at 1-3.3x its meta-training rate


@dataclasses.dataclass(frozen=True)
class AdaptationSettings:
  """Adaptation settings; defaults are the original's (`main.py`, `run_script.py` for cheetah-vel).

  Attributes:
    learning_rate: Adam rate of both networks under `learning_rate_mode='fixed'`
      (the original silently uses PyTorch's default 1e-3, 1-3.3x its
      meta-training rates).
    learning_rate_mode: `'meta'` (default): each network adapts at
      `rate_multiplier` x the effective rate its meta-training optimizer ended
      at (base rate x GreedyLR scale, read from the checkpoint), so adaptation
      steps stay on the scale the networks were trained at; `'fixed'`:
      `learning_rate`.
    rate_multiplier: the multiplier of `'meta'`, in (0, 3].
    greedy_mode: GreedyLR mode of the adaptation optimizers (`none`,
      `per_step`); the repository's rule for TD objectives decides per
      evaluation on return, and adaptation has no evaluation inside its
      updates, so its rate is constant by default.
    greedy: `schedulers.greedy_lr` arguments of those optimizers (the
      config's `optimizer.greedy` block); None: the rule's for TD objectives.
    stage1_iterations: TD3 updates on the new task's episode (`--snap_iter_nums`;
      0: the stage-2-only variant).
    stage2_iterations: β-weighted updates on the meta replay (`--main_snap_iter_nums`).
    stage2_batch_size: their batch (`--sample_mult × --batch_size`, 5 × 256).
    stage1_prox: the proximal term in stage 1 too (the original has none
      there, and its stage 1 is where the return is lost).
    beta: `'propensity'` (β from the classifier) or `'uniform'` (β = 1: the
      control that removes the reweighting).
    beta_features: `'meta'` (default): β from the frozen meta actor's GRU
      features, the ones the classifier was fitted on; `'current'`: from the
      actor being adapted (the original, which drifts away from the fit).
    beta_normalize: divide β by its minibatch mean (self-normalised
      importance weights; the loss keeps its scale whatever the prior odds).
    beta_clip: upper clip of log β (`--beta_clip`).
    C: the classifier's inverse L2 strength (`--lam_csc`).
    prox: λ of the proximal term `λ‖θ − θ_meta‖²`: `'fixed'` (default,
      `prox_coef`: what every released configuration runs, since none passes
      `--use_ess_clipping`), `'ess'` (1 − ESS of the minibatch's β, falling
      back to `prox_coef`), `'td_scaled'` (`prox_coef` × the meta critic's TD
      loss on the new episode: the penalty follows the family's loss scale)
      or `'none'`.
    prox_coef: the fixed λ, the ESS fallback and the td_scaled factor (`--prox_coef` 0.1).
    observation_features: classifier features `[s, context]` instead of the
      context alone (`--enable_beta_obs_cxt`).
    num_eval_episodes: K evaluation episodes before, after stage 1 and after
      adaptation, on the same K reset keys (the same episodes).
  """

  learning_rate: float = 1e-3
  learning_rate_mode: str = "meta"
  rate_multiplier: float = 1.0
  greedy_mode: str = "none"
  greedy: Optional[Mapping[str, Any]] = None
  stage1_iterations: int = 10
  stage2_iterations: int = 100
  stage2_batch_size: int = 1280
  stage1_prox: bool = True
  beta: str = "propensity"
  beta_features: str = "meta"
  beta_normalize: bool = True
  beta_clip: float = 1.0
  C: float = 0.1
  prox: str = "fixed"
  prox_coef: float = 0.1
  observation_features: bool = False
  num_eval_episodes: int = 5

  def __post_init__(self):
    for name in ("stage1_iterations", "stage2_iterations"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}.")
    if not isinstance(self.stage2_batch_size, int) or self.stage2_batch_size < 1:
      raise ValueError(f"stage2_batch_size must be a positive int, got {self.stage2_batch_size!r}.")
    if not isinstance(self.num_eval_episodes, int) or self.num_eval_episodes < 2:
      raise ValueError(f"num_eval_episodes must be an int >= 2, got {self.num_eval_episodes!r}.")
    if self.greedy_mode not in ("none", "per_step"):
      raise ValueError(
        f"greedy_mode must be 'none' or 'per_step' (no evaluation inside adaptation), got {self.greedy_mode!r}."
      )
    for name, valid in (
      ("prox", PROX_MODES),
      ("learning_rate_mode", RATE_MODES),
      ("beta", BETA_MODES),
      ("beta_features", BETA_FEATURES),
    ):
      if getattr(self, name) not in valid:
        raise ValueError(f"{name} must be one of {valid}, got {getattr(self, name)!r}.")
    if not 0 < self.rate_multiplier <= MAX_RATE_MULTIPLIER:
      raise ValueError(f"rate_multiplier must be in (0, {MAX_RATE_MULTIPLIER}], got {self.rate_multiplier!r}.")
    for name in ("stage1_prox", "beta_normalize"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}.")
    for name in ("learning_rate", "C", "beta_clip"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}.")
    if not self.prox_coef >= 0:
      raise ValueError(f"prox_coef must be >= 0, got {self.prox_coef!r}.")


class Episode(NamedTuple):
  """One deterministic episode: its return and its transitions with acting histories.

  Attributes:
    total: scalar undiscounted return.
    transitions: `mql.losses.Transition` with leaves `[T, ...]` (T = the env's
      episode length), histories as `mql.replay.gather` builds them.
    valid: `[T]` bool, False after a termination.
  """

  total: jax.Array
  transitions: mql_losses.Transition
  valid: jax.Array


class Adapter(NamedTuple):
  """Jitted entry points of `make_adapter`.

  Attributes:
    adapt_all: `adapt_all(state, key) -> dict` of `[num_test_tasks, ...]`
      arrays: `before`, `after1` (after stage 1), `after` `[N, K]` returns on
      the same K episodes, and diagnostics (`classifier_accuracy`,
      `classifier_majority_rate`, `actor_learning_rate`, `critic_learning_rate`,
      `beta_mean`, `beta_zero_fraction`, `ess`, `prox_coef`, `meta_td_loss`,
      `actor_distance_stage1`, `critic_distance_stage1`, `actor_distance`,
      `critic_distance` (‖θ − θ_meta‖), `stage1_critic_loss`,
      `stage2_critic_loss`); one program, vmapped over tasks.
    adapt_one: `adapt_one(state, key, task_id) -> dict` of one task's values
      (the same function, unvmapped; the Python-loop reference of the benchmark).
  """

  adapt_all: Callable[..., dict]
  adapt_one: Callable[..., dict]


def run_episode(
  env: TaskEpisodeWrapper,
  networks: mql_networks.MQLNetworks,
  actor_params,
  key: jax.Array,
  task_id: jax.Array,
) -> Episode:
  """Plays one episode of `env.tasks[task_id]` with the deterministic actor, a fresh history."""
  h, feature_size = networks.history_length, networks.history_feature_size
  env_state = env.reset_with_task_id(key, task_id)

  def body(carry, _):
    env_state, history, mask, alive = carry
    action = networks.actor.apply(actor_params, env_state.obs, history, mask)
    next_state = env.step_no_reset(env_state, action)
    reward = jnp.asarray(next_state.reward, jnp.float32)
    truncation = jnp.asarray(next_state.info["truncation"], jnp.float32)
    terminal = jnp.asarray(next_state.done, jnp.float32) * (1.0 - truncation)
    next_history, next_mask = trainer_lib.roll_history(
      history[None], mask[None], action[None], reward[None], env_state.obs[None], jnp.zeros((1,), bool)
    )
    transition = mql_losses.Transition(
      observation=env_state.obs,
      action=action,
      reward=reward,
      discount=1.0 - terminal,
      next_observation=next_state.info["final_obs"],
      history=history,
      history_mask=mask,
      next_history=next_history[0],
      next_history_mask=next_mask[0],
    )
    still = alive & ~(next_state.done > 0)
    return (next_state, next_history[0], next_mask[0], still), (transition, alive)

  carry = (env_state, jnp.zeros((h, feature_size), jnp.float32), jnp.zeros((h,), bool), jnp.asarray(True))
  _, (transitions, valid) = jax.lax.scan(body, carry, None, length=env.episode_length)
  total = jnp.sum(jnp.where(valid, transitions.reward, 0.0))
  return Episode(total=total, transitions=transitions, valid=valid)


def classifier_features(
  networks: mql_networks.MQLNetworks, actor_params, batch: mql_losses.Transition, observation_features: bool
) -> jax.Array:
  """The propensity features of each row: the actor GRU's context of its history (and s first).

  Without contexts (the multi-task TD3 baseline) the observation is the feature.
  """
  if not networks.use_context:
    return batch.observation
  context = networks.actor_context.apply(actor_params["context"], batch.history, batch.history_mask)
  if observation_features:
    return jnp.concatenate([batch.observation, context.astype(batch.observation.dtype)], axis=-1)
  return context


class RateState(NamedTuple):
  """`scale_by_rate`'s state: the rate (a traced scalar, set after `init`)."""

  rate: jax.Array


def scale_by_rate() -> optax.GradientTransformationExtraArgs:
  """Multiplies the updates by a rate held in the state.

  Adam's update is linear in its rate, so `chain(adam(1), scale_by_rate())`
  with the state's rate set to r is `adam(r)`, and r can be a traced value:
  the effective rate read from a meta-training checkpoint.
  """

  def init(params):
    del params
    return RateState(rate=jnp.ones((), jnp.float32))

  def update(updates, state, params=None, **extra_args):
    del params, extra_args
    return jax.tree.map(lambda u: (u * state.rate).astype(u.dtype), updates), state

  return optax.GradientTransformationExtraArgs(init, update)


def adaptation_rates(settings: AdaptationSettings, state: trainer_lib.TrainState, meta_optimizers) -> tuple:
  """(actor, critic) adaptation rates: fixed, or the multiplier × meta-training's final effective rates."""
  if settings.learning_rate_mode == "fixed":
    rate = jnp.asarray(settings.learning_rate, jnp.float32)
    return rate, rate
  if meta_optimizers is None:
    raise ValueError("learning_rate_mode='meta' needs the meta-training optimizers (meta_optimizers=).")
  actor_opt, critic_opt = meta_optimizers
  return (
    settings.rate_multiplier * actor_opt.learning_rate(state.actor_opt_state),
    settings.rate_multiplier * critic_opt.learning_rate(state.critic_opt_state),
  )


def make_adaptation_optimizer(settings: AdaptationSettings) -> optax.GradientTransformationExtraArgs:
  """Adam at rate 1 (+ GreedyLR per `greedy_mode`) then `scale_by_rate`: the rate is set in the state.

  `init_with_rate(tx, params, rate)` gives the state for an adaptation at `rate`.
  """
  return optax.chain(
    optimizers.make_optimizer(
      name="adam", learning_rate=1.0, objective="td", greedy_mode=settings.greedy_mode, greedy=settings.greedy
    ).tx,
    scale_by_rate(),
  )


def init_with_rate(tx: optax.GradientTransformationExtraArgs, params, rate) -> tuple:
  """`tx.init(params)` with `scale_by_rate`'s rate (the chain's last state) set to `rate`."""
  return (*tx.init(params)[:-1], RateState(rate=jnp.asarray(rate, jnp.float32)))


def _norm(params, reference) -> jax.Array:
  return jnp.sqrt(mql_losses.squared_distance(params, reference))


def make_adapter(
  eval_env: TaskEpisodeWrapper,
  networks: mql_networks.MQLNetworks,
  td3: trainer_lib.TD3Settings,
  settings: AdaptationSettings,
  *,
  num_train_tasks: int,
  meta_optimizers: Optional[tuple[optimizers.Optimizer, optimizers.Optimizer]] = None,
) -> Adapter:
  """Builds the adaptation program over the test tasks of `eval_env`.

  Args:
    eval_env: `mql.envs.make(..., split='test')` (unvmapped): its tasks are the
      ones adapted to.
    networks: the meta-trained networks' definition.
    td3: the meta-training TD3 settings (γ, τ, smoothing noise, policy delay).
    settings: `AdaptationSettings`.
    num_train_tasks: train tasks in the meta replay (the classifier's negatives).
    meta_optimizers: the meta-training (actor, critic) `schedulers.optimizers.Optimizer`s,
      whose final effective rates `learning_rate_mode='meta'` reads.

  Returns:
    `Adapter(adapt_all, adapt_one)`, both jitted; they take the meta-training
    `mql.trainer.TrainState`.
  """
  if not isinstance(eval_env, TaskEpisodeWrapper):
    raise TypeError(f"eval_env must be an unvmapped mql.envs env, got {type(eval_env).__name__}")
  if settings.learning_rate_mode == "meta" and meta_optimizers is None:
    raise ValueError("learning_rate_mode='meta' needs the meta-training optimizers (meta_optimizers=).")
  h, t = networks.history_length, eval_env.episode_length
  per_task = t // num_train_tasks + 2  # the original's task_bsize
  td3_losses = mql_losses.make_losses(
    networks, discount=td3.discount, policy_noise=td3.policy_noise, noise_clip=td3.noise_clip
  )
  actor_opt, critic_opt = make_adaptation_optimizer(settings), make_adaptation_optimizer(settings)
  update = trainer_lib.make_td3_update(td3_losses, actor_opt, critic_opt, policy_delay=td3.policy_delay, tau=td3.tau)
  features = lambda actor, batch: classifier_features(networks, actor, batch, settings.observation_features)
  k = settings.num_eval_episodes
  use_prox = settings.prox != "none"

  def evaluate(actor_params, key, task_id):
    """`[P, K]` returns of P stacked actors on the same K episodes (one program for all P)."""
    keys = jax.random.split(key, k)
    one = lambda params, kk: run_episode(eval_env, networks, params, kk, task_id).total
    return jax.vmap(lambda params: jax.vmap(lambda kk: one(params, kk))(keys))(actor_params)

  def weights_of(meta_actor, learner, batch, w, b):
    if settings.beta == "uniform":
      return jnp.ones((batch.reward.shape[0],), jnp.float32)
    actor = meta_actor if settings.beta_features == "meta" else learner.params.actor
    logits = propensity.log_odds(w, b, jax.lax.stop_gradient(features(actor, batch)))
    beta = propensity.beta_weights(logits, beta_clip=settings.beta_clip)
    if settings.beta_normalize:
      mean = jnp.mean(beta)
      beta = jnp.where(mean > 0, beta / jnp.where(mean > 0, mean, 1.0), beta)
    return beta

  def adapt_task(state: trainer_lib.TrainState, key: jax.Array, task_id: jax.Array) -> dict:
    collect_key, neg_key, s1_key, s2_key, eval_key, td_key = jax.random.split(key, 6)
    meta = state.params
    episode = run_episode(eval_env, networks, meta.actor, collect_key, task_id)
    new, valid = episode.transitions, episode.valid

    # Propensity classifier: D_new against the train tasks' snapshots.
    train_ids = jnp.arange(num_train_tasks, dtype=jnp.int32)
    old = jax.vmap(lambda kk, tid: replay.sample_task(state.replay, kk, tid, per_task, h))(
      jax.random.split(neg_key, num_train_tasks), train_ids
    )
    old = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), old)
    stored = jax.vmap(lambda tid: replay.num_task_transitions(state.replay, tid, h))(train_ids) > 0
    old_valid = jnp.repeat(stored, per_task)  # a task with no data yet gives zero rows: drop them
    x_new, x_old = features(meta.actor, new), features(meta.actor, old)
    w, b = propensity.fit(x_new, x_old, C=settings.C, new_mask=valid, old_mask=old_valid)
    correct_new = jnp.sum(jnp.where(valid, propensity.log_odds(w, b, x_new) > 0, False))
    correct_old = jnp.sum(jnp.where(old_valid, propensity.log_odds(w, b, x_old) <= 0, False))
    n_new, n_old = jnp.sum(valid), jnp.sum(old_valid)
    accuracy = (correct_new + correct_old) / jnp.maximum(n_new + n_old, 1)
    majority = jnp.maximum(n_new, n_old) / jnp.maximum(n_new + n_old, 1)

    actor_rate, critic_rate = adaptation_rates(settings, state, meta_optimizers)
    zero = jnp.zeros((), jnp.int32)
    learner = trainer_lib.LearnerState(
      params=meta,
      target_params=state.target_params,
      actor_opt_state=init_with_rate(actor_opt, meta.actor, actor_rate),
      critic_opt_state=init_with_rate(critic_opt, meta.critic, critic_rate),
      updates=zero,
      actor_updates=zero,
      critic_nonfinite=zero,
      actor_nonfinite=zero,
    )

    # λ of the proximal term.  td_scaled: prox_coef × the meta critic's TD loss on the new episode.
    new_weights = valid.astype(jnp.float32) / jnp.maximum(jnp.mean(valid.astype(jnp.float32)), 1e-6)
    meta_td, _ = td3_losses.critic_loss(meta, state.target_params, new, td_key, weights=new_weights)
    if settings.prox == "td_scaled":
      base_coef = settings.prox_coef * jax.lax.stop_gradient(meta_td)
    else:
      base_coef = jnp.asarray(settings.prox_coef if use_prox else 0.0, jnp.float32)
    reference = meta if use_prox else None

    # Stage 1: TD3 on the new task's episode (rows drawn with replacement), with the proximal term.
    n_valid = jnp.maximum(jnp.sum(valid), 1)
    stage1_reference = reference if settings.stage1_prox else None

    def stage1(learner, key):
      draw_key, td3_key = jax.random.split(key)
      rows = jax.random.randint(draw_key, (t,), 0, n_valid)  # valid rows come first
      batch = jax.tree.map(lambda x: x[rows], new)
      return update(learner, batch, td3_key, jnp.asarray(True), reference_params=stage1_reference, prox_coef=base_coef)

    learner, m1 = jax.lax.scan(stage1, learner, jax.random.split(s1_key, settings.stage1_iterations))
    stage1_params = learner.params

    # Stage 2: β-weighted TD3 on the meta replay with the proximal term.
    def stage2(learner, key):
      draw_key, td3_key = jax.random.split(key)
      batch = replay.sample(state.replay, draw_key, settings.stage2_batch_size, h)
      beta = weights_of(meta.actor, learner, batch, w, b)
      if settings.prox == "ess":
        coef = propensity.proximal_coefficient(beta, default=settings.prox_coef)
      else:
        coef = base_coef
      learner, metrics = update(
        learner, batch, td3_key, jnp.asarray(True), weights=beta, reference_params=reference, prox_coef=coef
      )
      ess = propensity.effective_sample_size(beta)
      zeroed = jnp.mean(beta == 0)
      return learner, {**metrics, "beta_mean": jnp.mean(beta), "ess": ess, "prox_coef": coef, "beta_zero": zeroed}

    learner, m2 = jax.lax.scan(stage2, learner, jax.random.split(s2_key, settings.stage2_iterations))

    nan = jnp.asarray(jnp.nan, jnp.float32)
    s2 = lambda name: jnp.mean(m2[name]) if settings.stage2_iterations else nan
    actors = jax.tree.map(lambda *x: jnp.stack(x), meta.actor, stage1_params.actor, learner.params.actor)
    before, after1, after = evaluate(actors, eval_key, task_id)
    return {
      "before": before,
      "after1": after1,
      "after": after,
      "collect_return": episode.total,
      "classifier_accuracy": accuracy,
      "classifier_majority_rate": majority,
      "actor_learning_rate": actor_rate,
      "critic_learning_rate": critic_rate,
      "meta_td_loss": meta_td,
      "beta_mean": s2("beta_mean"),
      "beta_zero_fraction": s2("beta_zero"),
      "ess": s2("ess"),
      "prox_coef": s2("prox_coef") if settings.stage2_iterations else base_coef,
      "actor_distance_stage1": _norm(stage1_params.actor, meta.actor),
      "critic_distance_stage1": _norm(stage1_params.critic, meta.critic),
      "actor_distance": _norm(learner.params.actor, meta.actor),
      "critic_distance": _norm(learner.params.critic, meta.critic),
      "stage1_critic_loss": jnp.nanmean(m1["critic_loss"]) if settings.stage1_iterations else nan,
      "stage2_critic_loss": jnp.nanmean(m2["critic_loss"]) if settings.stage2_iterations else nan,
      "nonfinite_updates": learner.critic_nonfinite + learner.actor_nonfinite,
    }

  def adapt_all(state: trainer_lib.TrainState, key: jax.Array) -> dict:
    ids = jnp.arange(eval_env.num_tasks, dtype=jnp.int32)
    keys = jax.random.split(key, eval_env.num_tasks)
    return jax.vmap(adapt_task, in_axes=(None, 0, 0))(state, keys, ids)

  return Adapter(adapt_all=jax.jit(adapt_all), adapt_one=jax.jit(adapt_task))


def make_classifier_check(
  train_env: TaskEpisodeWrapper,
  networks: mql_networks.MQLNetworks,
  settings: AdaptationSettings,
  *,
  num_train_tasks: int,
) -> Callable[..., dict]:
  """The propensity classifier on held-out train tasks, for choosing `C` without the test tasks.

  For a train task j held out as if it were new: the classifier is fitted as
  in adaptation (j's deterministic episode against the snapshots of the
  other train tasks) and scored on rows it has not seen, at the same class
  ratio: j's own replay rows (collected with exploration noise, so a
  classifier that separates behaviour rather than task calls them old)
  against fresh draws of the other tasks.  Stage 2 needs exactly this: high
  β on the replay rows of the task being adapted to.

  Returns:
    jitted `check(state, key, task_ids [M], Cs [c]) -> dict` of `[M, c]`
    arrays: `accuracy`, `majority_rate` (the held-out rows' majority class
    share: a classifier that predicts it scores this), `auc` (the chance that
    one of j's rows gets a larger logit than one of the others': a ranking
    score, free of the 0.5 threshold), `beta_own` /
    `beta_other` (mean clipped β, unnormalised, on j's rows / the others').
  """
  h, t = networks.history_length, train_env.episode_length
  per_task = t // num_train_tasks + 2
  features = lambda actor, batch: classifier_features(networks, actor, batch, settings.observation_features)

  def others(state, key, j):
    ids = jnp.arange(num_train_tasks, dtype=jnp.int32)
    rows = jax.vmap(lambda kk, tid: replay.sample_task(state.replay, kk, tid, per_task, h))(
      jax.random.split(key, num_train_tasks), ids
    )
    rows = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), rows)
    stored = jax.vmap(lambda tid: replay.num_task_transitions(state.replay, tid, h))(ids) > 0
    return rows, jnp.repeat(stored & (ids != j), per_task)

  def check_one(state, key, j, C):
    episode_key, old_key, own_key, other_key = jax.random.split(key, 4)
    actor = state.params.actor
    episode = run_episode(train_env, networks, actor, episode_key, j)
    old, old_mask = others(state, old_key, j)
    w, b = propensity.fit(
      features(actor, episode.transitions), features(actor, old), C=C, new_mask=episode.valid, old_mask=old_mask
    )
    own = replay.sample_task(state.replay, own_key, j, t, h)
    own_mask = jnp.broadcast_to(replay.num_task_transitions(state.replay, j, h) > 0, (t,))
    other, other_mask = others(state, other_key, j)
    own_logits, other_logits = (
      propensity.log_odds(w, b, features(actor, own)),
      propensity.log_odds(w, b, features(actor, other)),
    )
    n_own, n_other = jnp.sum(own_mask), jnp.sum(other_mask)
    correct = jnp.sum(own_mask & (own_logits > 0)) + jnp.sum(other_mask & (other_logits <= 0))
    total = jnp.maximum(n_own + n_other, 1)
    beta = lambda z: propensity.beta_weights(z, beta_clip=settings.beta_clip)
    masked_mean = lambda x, m: jnp.sum(jnp.where(m, x, 0)) / jnp.maximum(jnp.sum(m), 1)
    # AUC: the chance that one of j's rows scores above one of the others' (ties count half).
    pairs = own_mask[:, None] & other_mask[None, :]
    above = jnp.where(own_logits[:, None] > other_logits[None, :], 1.0, 0.0)
    above = above + jnp.where(own_logits[:, None] == other_logits[None, :], 0.5, 0.0)
    return {
      "accuracy": correct / total,
      "majority_rate": jnp.maximum(n_own, n_other) / total,
      "auc": jnp.sum(jnp.where(pairs, above, 0.0)) / jnp.maximum(jnp.sum(pairs), 1),
      "beta_own": masked_mean(beta(own_logits), own_mask),
      "beta_other": masked_mean(beta(other_logits), other_mask),
    }

  def check(state, key, task_ids, Cs):
    keys = jax.random.split(key, task_ids.shape[0])
    per_c = jax.vmap(check_one, in_axes=(None, None, None, 0))  # the same rows for every C
    return jax.vmap(per_c, in_axes=(None, 0, 0, None))(state, keys, task_ids, Cs)

  return jax.jit(check)


SUMMARY_FIELDS = (
  "classifier_accuracy",
  "classifier_majority_rate",
  "beta_mean",
  "beta_zero_fraction",
  "ess",
  "prox_coef",
  "actor_learning_rate",
  "critic_learning_rate",
  "actor_distance_stage1",
  "critic_distance_stage1",
  "actor_distance",
  "critic_distance",
)


def summarize(results: dict) -> dict:
  """Scalar summaries of `adapt_all`'s output: returns before, after stage 1 and after, the gains, diagnostics.

  Returns are MQL's protocol: the mean over the K evaluation episodes (the
  same K episodes for every policy).  Older runs reported a "PEARL protocol"
  (the third trajectory); with a history that restarts every episode it was
  one more episode of the same protocol, not PEARL's accumulated context,
  and is no longer reported.
  """
  before, after1, after = (jnp.mean(results[name]) for name in ("before", "after1", "after"))
  out = {
    "return_before_mql": float(before),
    "return_after1_mql": float(after1),
    "return_after_mql": float(after),
    "adaptation_gain_mql": float(after - before),
    "stage1_gain_mql": float(after1 - before),
  }
  for name in SUMMARY_FIELDS:
    out[name] = float(jnp.nanmean(jnp.asarray(results[name], jnp.float32)))
  return out
