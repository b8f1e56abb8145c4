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
3. **Fresh optimizers**: the original re-creates Adam with PyTorch's default
   rate 1e-3 whatever `--lr` is; here `learning_rate` is an explicit setting
   (default 1e-3) and the optimizers come from `schedulers.make_optimizer`
   (GreedyLR per step by default, as everywhere in the repository).
4. **Stage 1**: `stage1_iterations` ordinary TD3 updates on D_new, batches of
   T rows drawn with replacement (the original's batch = the buffer size).
5. **Stage 2**: `stage2_iterations` β-weighted TD3 updates on the meta
   replay, batches of `stage2_batch_size` (the original's `sample_mult ×
   batch_size`), with the proximal term `λ‖θ − θ_meta‖²` (no ½, as the
   original).  β = exp(min(logit, beta_clip)), zeroed below 0.1, with the
   logits recomputed from the *current* actor GRU each step (the classifier
   is fixed), as the original.  λ: `prox='ess'` (default) 1 − ESS of the
   minibatch's β (`mql.propensity.proximal_coefficient`, falling back to
   `prox_coef`); `'fixed'` the constant `prox_coef` (what the released
   configurations run, since none passes `--use_ess_clipping`); `'none'` no
   proximal term (the ablation).
6. **Evaluate**: `num_eval_episodes` episodes with the adapted deterministic
   policy, each with a fresh history, and as many with the meta policy.

Reported per task (`Adapter.adapt_all`): `before` / `after` `[K]` episode
returns (meta and adapted policy).  MQL's protocol is the mean over the K
episodes; PEARL's "last of three trajectories" counts the collection episode
as the first, so it is episode index 1 (the third trajectory) of `after`
(and of `before` for the unadapted policy).
"""

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp

from mql import losses as mql_losses
from mql import networks as mql_networks
from mql import propensity, replay
from mql import trainer as trainer_lib
from mql.envs.wrappers import TaskEpisodeWrapper
from schedulers import optimizers

PROX_MODES = ("ess", "fixed", "none")


@dataclasses.dataclass(frozen=True)
class AdaptationSettings:
  """Adaptation settings; defaults are the original's (`main.py`, `run_script.py` for cheetah-vel).

  Attributes:
    learning_rate: Adam rate of both networks during adaptation (the original
      silently uses PyTorch's default 1e-3).
    greedy_mode: GreedyLR mode of the adaptation optimizers (`none`,
      `per_step`); the repository's rule for TD objectives decides per
      evaluation on return, and adaptation has no evaluation inside its
      updates, so its rate is constant by default.
    greedy: `schedulers.greedy_lr` arguments of those optimizers (the
      config's `optimizer.greedy` block); None: the rule's for TD objectives.
    stage1_iterations: TD3 updates on the new task's episode (`--snap_iter_nums`).
    stage2_iterations: β-weighted updates on the meta replay (`--main_snap_iter_nums`).
    stage2_batch_size: their batch (`--sample_mult × --batch_size`, 5 × 256).
    beta_clip: upper clip of log β (`--beta_clip`).
    C: the classifier's inverse L2 strength (`--lam_csc`).
    prox: `'ess'` (λ = 1 − ESS, default), `'fixed'` (λ = `prox_coef`) or `'none'`.
    prox_coef: the fixed λ and the ESS fallback (`--prox_coef` 0.1).
    observation_features: classifier features `[s, context]` instead of the
      context alone (`--enable_beta_obs_cxt`).
    num_eval_episodes: K ≥ 2 evaluation episodes before and after.
  """

  learning_rate: float = 1e-3
  greedy_mode: str = "none"
  greedy: Optional[Mapping[str, Any]] = None
  stage1_iterations: int = 10
  stage2_iterations: int = 100
  stage2_batch_size: int = 1280
  beta_clip: float = 1.0
  C: float = 0.1
  prox: str = "ess"
  prox_coef: float = 0.1
  observation_features: bool = False
  num_eval_episodes: int = 3

  def __post_init__(self):
    for name in ("stage1_iterations", "stage2_iterations"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}.")
    if not isinstance(self.stage2_batch_size, int) or self.stage2_batch_size < 1:
      raise ValueError(f"stage2_batch_size must be a positive int, got {self.stage2_batch_size!r}.")
    if not isinstance(self.num_eval_episodes, int) or self.num_eval_episodes < 2:
      raise ValueError(f"num_eval_episodes must be an int >= 2 (PEARL's protocol), got {self.num_eval_episodes!r}.")
    if self.greedy_mode not in ("none", "per_step"):
      raise ValueError(
        f"greedy_mode must be 'none' or 'per_step' (no evaluation inside adaptation), got {self.greedy_mode!r}."
      )
    if self.prox not in PROX_MODES:
      raise ValueError(f"prox must be one of {PROX_MODES}, got {self.prox!r}.")
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
      arrays: `before`, `after` `[N, K]` returns, and diagnostics
      (`classifier_accuracy`, `beta_mean`, `ess`, `prox_coef`, `stage1_critic_loss`,
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


def make_adapter(
  eval_env: TaskEpisodeWrapper,
  networks: mql_networks.MQLNetworks,
  td3: trainer_lib.TD3Settings,
  settings: AdaptationSettings,
  *,
  num_train_tasks: int,
) -> Adapter:
  """Builds the adaptation program over the test tasks of `eval_env`.

  Args:
    eval_env: `mql.envs.make(..., split='test')` (unvmapped): its tasks are the
      ones adapted to.
    networks: the meta-trained networks' definition.
    td3: the meta-training TD3 settings (γ, τ, smoothing noise, policy delay).
    settings: `AdaptationSettings`.
    num_train_tasks: train tasks in the meta replay (the classifier's negatives).

  Returns:
    `Adapter(adapt_all, adapt_one)`, both jitted; they take the meta-training
    `mql.trainer.TrainState`.
  """
  if not isinstance(eval_env, TaskEpisodeWrapper):
    raise TypeError(f"eval_env must be an unvmapped mql.envs env, got {type(eval_env).__name__}")
  h, t = networks.history_length, eval_env.episode_length
  per_task = t // num_train_tasks + 2  # the original's task_bsize
  td3_losses = mql_losses.make_losses(
    networks, discount=td3.discount, policy_noise=td3.policy_noise, noise_clip=td3.noise_clip
  )
  make = lambda: (
    optimizers.make_optimizer(
      name="adam",
      learning_rate=settings.learning_rate,
      objective="td",
      greedy_mode=settings.greedy_mode,
      greedy=settings.greedy,
    ).tx
  )
  actor_opt, critic_opt = make(), make()
  update = trainer_lib.make_td3_update(td3_losses, actor_opt, critic_opt, policy_delay=td3.policy_delay, tau=td3.tau)
  features = lambda actor, batch: classifier_features(networks, actor, batch, settings.observation_features)
  k = settings.num_eval_episodes

  def evaluate(actor_params, key, task_id):
    keys = jax.random.split(key, k)
    return jax.vmap(lambda kk: run_episode(eval_env, networks, actor_params, kk, task_id).total)(keys)

  def adapt_task(state: trainer_lib.TrainState, key: jax.Array, task_id: jax.Array) -> dict:
    collect_key, neg_key, s1_key, s2_key, eval_key = jax.random.split(key, 5)
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
    accuracy = (correct_new + correct_old) / jnp.maximum(jnp.sum(valid) + jnp.sum(old_valid), 1)

    zero = jnp.zeros((), jnp.int32)
    learner = trainer_lib.LearnerState(
      params=meta,
      target_params=state.target_params,
      actor_opt_state=actor_opt.init(meta.actor),
      critic_opt_state=critic_opt.init(meta.critic),
      updates=zero,
      actor_updates=zero,
      critic_nonfinite=zero,
      actor_nonfinite=zero,
    )

    # Stage 1: plain TD3 on the new task's episode (rows drawn with replacement).
    n_valid = jnp.maximum(jnp.sum(valid), 1)

    def stage1(learner, key):
      draw_key, td3_key = jax.random.split(key)
      rows = jax.random.randint(draw_key, (t,), 0, n_valid)  # valid rows come first
      batch = jax.tree.map(lambda x: x[rows], new)
      return update(learner, batch, td3_key, jnp.asarray(True))

    learner, m1 = jax.lax.scan(stage1, learner, jax.random.split(s1_key, settings.stage1_iterations))

    # Stage 2: β-weighted TD3 on the meta replay with the proximal term.
    reference = None if settings.prox == "none" else meta

    def stage2(learner, key):
      draw_key, td3_key = jax.random.split(key)
      batch = replay.sample(state.replay, draw_key, settings.stage2_batch_size, h)
      logits = propensity.log_odds(w, b, jax.lax.stop_gradient(features(learner.params.actor, batch)))
      beta = propensity.beta_weights(logits, beta_clip=settings.beta_clip)
      if settings.prox == "ess":
        coef = propensity.proximal_coefficient(beta, default=settings.prox_coef)
      else:
        coef = jnp.asarray(settings.prox_coef if settings.prox == "fixed" else 0.0, jnp.float32)
      learner, metrics = update(
        learner, batch, td3_key, jnp.asarray(True), weights=beta, reference_params=reference, prox_coef=coef
      )
      ess = propensity.effective_sample_size(beta)
      return learner, {**metrics, "beta_mean": jnp.mean(beta), "ess": ess, "prox_coef": coef}

    learner, m2 = jax.lax.scan(stage2, learner, jax.random.split(s2_key, settings.stage2_iterations))

    before_key, after_key = jax.random.split(eval_key)
    nan = jnp.asarray(jnp.nan, jnp.float32)
    return {
      "before": evaluate(meta.actor, before_key, task_id),
      "after": evaluate(learner.params.actor, after_key, task_id),
      "collect_return": episode.total,
      "classifier_accuracy": accuracy,
      "beta_mean": jnp.mean(m2["beta_mean"]) if settings.stage2_iterations else nan,
      "ess": jnp.mean(m2["ess"]) if settings.stage2_iterations else nan,
      "prox_coef": jnp.mean(m2["prox_coef"]) if settings.stage2_iterations else nan,
      "stage1_critic_loss": jnp.nanmean(m1["critic_loss"]) if settings.stage1_iterations else nan,
      "stage2_critic_loss": jnp.nanmean(m2["critic_loss"]) if settings.stage2_iterations else nan,
      "nonfinite_updates": learner.critic_nonfinite + learner.actor_nonfinite,
    }

  def adapt_all(state: trainer_lib.TrainState, key: jax.Array) -> dict:
    ids = jnp.arange(eval_env.num_tasks, dtype=jnp.int32)
    keys = jax.random.split(key, eval_env.num_tasks)
    return jax.vmap(adapt_task, in_axes=(None, 0, 0))(state, keys, ids)

  return Adapter(adapt_all=jax.jit(adapt_all), adapt_one=jax.jit(adapt_task))


def summarize(results: dict) -> dict:
  """Scalar summaries of `adapt_all`'s output: both protocols, before and after, and the gain."""
  before, after = results["before"], results["after"]
  return {
    "return_before_mql": float(jnp.mean(before)),
    "return_after_mql": float(jnp.mean(after)),
    "return_before_pearl": float(jnp.mean(before[:, 1])),
    "return_after_pearl": float(jnp.mean(after[:, 1])),
    "adaptation_gain_mql": float(jnp.mean(after) - jnp.mean(before)),
    "classifier_accuracy": float(jnp.mean(results["classifier_accuracy"])),
    "beta_mean": float(jnp.nanmean(results["beta_mean"])),
    "ess": float(jnp.nanmean(results["ess"])),
  }
