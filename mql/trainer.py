"""Meta-Q-Learning's meta-training core: multi-task TD3 with (or without) GRU contexts.

The training loop of the official MQL code (amazon-science/meta-q-learning,
`main.py` and `algs/MQL/mql.py`, notes §1.4-§1.5) in the brax.training /
purejaxrl style: pure step functions, `lax.scan` inside one `jax.jit`, env
slots vmapped (`mql.envs.VmapTaskWrapper`), every counter and key in the
`TrainState`.  `use_context=True` networks give MQL's context TD3,
`use_context=False` the multi-task TD3 baseline; the trainer is the same.

One `Trainer.iteration` is `steps_per_iteration` vmapped env steps, each
followed by `updates_per_env_step` TD3 updates on uniform batches of the shared
replay (`mql.replay`), so many that the updates per transition are
`update_ratio_early` until `update_ratio_switch` transitions were collected and
`update_ratio` afterwards (the original's update-to-data ratio; a fractional
ratio x E is spread exactly over consecutive steps, see
`updates_per_env_step`).  The count is a function of `env_steps`, so it is
traced (a `lax.fori_loop` with a traced trip count: no update is computed
and thrown away) and a resumed run continues identically:

* acting: `clip(actor(s, h) + N(0, exploration_noise²), ±1)`, and uniform
  random actions in [-1, 1] while `env_steps < start_steps` (the original's
  `burn_in`; `env_steps` counts transitions of all slots);
* updates run only once `env_steps >= update_after` (default `start_steps`:
  the original trains after its random cold start); before that the loop
  runs zero updates;
* every update trains the critic; every `policy_delay`-th (update counts
  1, ..., so after N updates exactly `N // policy_delay` actor updates) also
  trains the actor and Polyak-averages both targets (τ).  The actor step
  sits in a `lax.cond`, so the delayed steps skip its forward and backward
  pass (rejax's TD3 computes it every step and masks it with `jnp.where`,
  which costs about 1.3x here); the targets are selected with `jnp.where`.
  The original counts
  from 0 (`it % policy_freq == 0`), so it updates the actor at its first
  iteration; the difference is one actor step per run;
* NaN/Inf: an update whose loss, gradients or new parameters are not finite
  leaves that network's parameters and optimizer state unchanged and is
  counted (`critic_nonfinite`, `actor_nonfinite`), as `common.trainer` does.

Acting histories.  The state keeps, per slot, the rolling window
`history [E, H, A + 1 + S]` with `history_mask [E, H]` the actor sees: after
the step `(s_t, a_t, r_t)` the window shifts left by one and appends
`history_features(a_t, r_t, s_t)` with mask True; when the step ends the
episode (the auto-reset started a new one) the window is cleared (zeros, mask
False).  This is exactly the history `mql.replay.gather` rebuilds for the same
transition: its `history[k]` is step `t - H + k` of t's episode, valid iff
`H - k <= step_t`, zeros where invalid; the window after `step_t` steps of an
episode holds those steps with the last `min(step_t, H)` entries valid.  So
the actor is trained (and its target bootstrapped) on the same contexts it
acted with (`tests/mql/test_train.py` checks equality on steps crossing an
episode boundary).

Optimizers.  Both come from `schedulers.make_optimizer` (`make_optimizers`:
Adam at 3e-4 with GreedyLR per step by default, `greedy_mode='none'` the
constant-rate switch).  Each network's GreedyLR watches that network's own
loss, passed as `value=`: the critic's the TD loss `mean((Q1 - y)² + (Q2 -
y)²)`, the actor's `-mean Q1(s, π(s, h))`.  Each is the objective its
gradient step lowers, the only signal that says whether that step size is
working; the other network's loss would couple the two schedules (e.g. the
actor's rate would react to critic fitting).  The actor's loss also moves
when the critic changes (its target is not stationary), so its decisions are
noisier; GreedyLR's smoothing window absorbs part of that.  The actor's
optimizer sees `value=` only on actor updates (its state is untouched on the
others).

`greedy_mode='per_eval'` watches the agent's progress instead: after each
iteration in which training episodes finished (and updates have started),
both optimizers' GreedyLR take one decision on the negative mean return of
those episodes, a signal that falls as the agent improves (the losses above
rise as the values grow, so per step GreedyLR tends to sit at its floor).

Example::

  env = envs.make("point-robot", task_set=tasks, batch_size=8)
  nets = networks.make_networks(2, 2, context_size=20, history_length=10)
  trainer = train.make_trainer(env, nets, train.TD3Settings(start_steps=1000))
  state = trainer.init(jax.random.key(0))
  for _ in range(100):
    state, metrics = trainer.iteration(state)
  returns = trainer.evaluate(state, jax.random.key(1), num_episodes=2)  # [num_tasks]
"""

import dataclasses
import fractions
import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from common import sharding
from mql import losses as mql_losses
from mql import networks as mql_networks
from mql import replay
from mql.envs.wrappers import TaskEpisodeWrapper, VmapTaskWrapper
from schedulers import optimizers

PyTree = Any


GREEDY_SIGNALS = ("loss", "relative_td")
UPDATE_METRICS = ("critic_loss", "actor_loss", "q1", "target_q")  # per-update metrics of `make_td3_update`


@dataclasses.dataclass(frozen=True)
class TD3Settings:
  """TD3 meta-training settings; defaults are the original's (`main.py` argparse).

  Attributes:
    batch_size: TD3 batch (`--batch_size` 256).
    discount: γ (`--gamma` 0.99).
    tau: Polyak rate of both targets (`--ptau` 0.005).
    policy_noise: target smoothing std (`--policy_noise` 0.3).
    noise_clip: target smoothing clip (`--noise_clip` 0.5).
    policy_delay: critic updates per actor + target update (`--policy_freq` 2).
    exploration_noise: Gaussian acting noise std (`--expl_noise` 0.2).
    start_steps: env steps (all slots) with uniform random actions
      (`--burn_in` 1e4).
    update_after: env steps before the first update; None: `start_steps`.
    steps_per_iteration: vmapped env steps per `iteration` (one compiled scan).
    update_ratio: TD3 updates per env transition once `update_ratio_switch`
      transitions were collected (the original: `num_train_steps /
      (num_tasks_sample x episode length)`, 0.2-2.5 per family).  With E
      slots one vmapped step is E transitions (`updates_per_env_step`).
    update_ratio_early: updates per transition before the switch (the
      original: one update per collected step of one episode,
      `1 / num_tasks_sample`); None: `update_ratio`.
    update_ratio_switch: transitions collected (all slots) at which the
      ratio switches (the original's `min_buffer_size` 1e5, its replay's
      length, which does not wrap before then).
    replay_size: total replay capacity (`--replay_size` 1e6), split evenly
      over the env slots.
    snapshot_size: per-task snapshot (`--snapshot_size` 2000); raised to E
      if smaller (one add may index E steps under one task).
    greedy_signal: the `value=` a per-step GreedyLR sees: `'loss'` (each
      network its own loss) or `'relative_td'` (both networks the critic's
      relative TD error `td_loss / (2 mean(y²))`, free of the value scale
      that grows as the agent improves).
  """

  batch_size: int = 256
  discount: float = 0.99
  tau: float = 0.005
  policy_noise: float = 0.3
  noise_clip: float = 0.5
  policy_delay: int = 2
  exploration_noise: float = 0.2
  start_steps: int = 10_000
  update_after: Optional[int] = None
  steps_per_iteration: int = 100
  update_ratio: float = 1.0
  update_ratio_early: Optional[float] = None
  update_ratio_switch: int = 100_000
  replay_size: int = 1_000_000
  snapshot_size: int = 2000
  greedy_signal: str = "loss"

  def __post_init__(self):
    if self.greedy_signal not in GREEDY_SIGNALS:
      raise ValueError(f"greedy_signal must be one of {GREEDY_SIGNALS}, got {self.greedy_signal!r}.")
    for name in ("batch_size", "policy_delay", "steps_per_iteration", "replay_size"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    for name in ("update_ratio", "update_ratio_early"):
      _update_fraction(name, getattr(self, name), allow_none=name == "update_ratio_early")
    for name in ("start_steps", "snapshot_size", "update_ratio_switch"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}.")
    if self.update_after is not None and (not isinstance(self.update_after, int) or self.update_after < 0):
      raise ValueError(f"update_after must be a non-negative int or None, got {self.update_after!r}.")
    for name in ("discount", "tau"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}.")
    for name in ("policy_noise", "noise_clip", "exploration_noise"):
      if not getattr(self, name) >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}.")

  @property
  def first_update_step(self) -> int:
    return self.start_steps if self.update_after is None else self.update_after

  @property
  def early_ratio(self) -> float:
    return self.update_ratio if self.update_ratio_early is None else self.update_ratio_early


_MAX_DENOMINATOR = 10_000


def _update_fraction(name: str, ratio: Any, allow_none: bool = False) -> Optional[fractions.Fraction]:
  """`ratio` as an exact fraction p / q (q <= 10^4); ValueError naming `name` unless it is one > 0."""
  if ratio is None and allow_none:
    return None
  if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 0:
    raise ValueError(f"{name} must be a finite number > 0 (updates per env transition), got {ratio!r}.")
  frac = fractions.Fraction(ratio).limit_denominator(_MAX_DENOMINATOR)
  if abs(float(frac) - ratio) > 1e-9 * ratio:
    raise ValueError(f"{name} must be a fraction with denominator <= {_MAX_DENOMINATOR}, got {ratio!r}.")
  return frac


def updates_per_env_step(settings: TD3Settings, num_envs: int, env_steps: jax.Array) -> jax.Array:
  """TD3 updates after the vmapped env step that starts at `env_steps` transitions (jit-friendly).

  With r the ratio in effect (`update_ratio_early` while the step ends below
  `update_ratio_switch` transitions, `update_ratio` from there) and k =
  `env_steps // num_envs` the step's index, the count is
  `floor(r E (k + 1)) - floor(r E k)`: r x E when that is an integer, else
  floor or ceil of it, so any q consecutive steps (r = p / q) run exactly
  p x E updates.  Integer arithmetic on `k mod q` (no overflow, no float
  rounding).  Before `first_update_step` the trainer runs none of them.
  """
  k = jnp.asarray(env_steps, jnp.int32) // num_envs

  def count(frac: fractions.Fraction) -> jax.Array:
    p, q = frac.numerator * num_envs, frac.denominator
    j = k % q
    return (p * (j + 1)) // q - (p * j) // q

  late = count(_update_fraction("update_ratio", settings.update_ratio))
  early = count(_update_fraction("update_ratio_early", settings.early_ratio))
  switched = jnp.asarray(env_steps, jnp.int32) + num_envs >= settings.update_ratio_switch
  return jnp.where(switched, late, early).astype(jnp.int32)


class TrainState(NamedTuple):
  """Everything the meta-training loop carries; a pytree of arrays.

  Attributes:
    params: `MQLParams` (actor, critic).
    target_params: their TD3 targets.
    actor_opt_state, critic_opt_state: optimizer states.
    env_state: the vmapped env state (`[E, ...]` leaves).
    replay: `mql.replay.MQLReplayState`.
    history: `[E, H, A + 1 + S]` each slot's acting history (module docstring).
    history_mask: `[E, H]` bool.
    rng: PRNG key.
    env_steps: int32 transitions collected (all slots).
    updates: int32 TD3 updates run (critic steps, skipped ones included).
    actor_updates: int32 actor + target updates run (= updates // policy_delay).
    critic_nonfinite, actor_nonfinite: int32 updates skipped for NaN/Inf.
    episode_return: `[E]` return of each slot's current episode so far.
    last_return: `[E]` return of each slot's last finished episode (0 before one).
    episodes: int32 episodes finished (all slots).
  """

  params: mql_networks.MQLParams
  target_params: mql_networks.MQLParams
  actor_opt_state: PyTree
  critic_opt_state: PyTree
  env_state: PyTree
  replay: replay.MQLReplayState
  history: jax.Array
  history_mask: jax.Array
  rng: jax.Array
  env_steps: jax.Array
  updates: jax.Array
  actor_updates: jax.Array
  critic_nonfinite: jax.Array
  actor_nonfinite: jax.Array
  episode_return: jax.Array
  last_return: jax.Array
  episodes: jax.Array


class Trainer(NamedTuple):
  """The jitted entry points of `make_trainer`.

  Attributes:
    init: `init(key) -> TrainState`.
    iteration: `iteration(state) -> (state, metrics)`: `steps_per_iteration`
      env steps with their updates (one compiled `lax.scan`); metrics are
      scalars (means over the iteration; `*_loss` over the updates that ran,
      NaN if none), the counters, `updates_per_transition` (updates run /
      transitions collected in this iteration) and each optimizer's current
      learning rate (base rate x GreedyLR scale).
    evaluate: `evaluate(state, key, num_episodes) -> [num_tasks]` mean
      undiscounted return per task of the evaluation env, deterministic actor,
      one full episode each (`num_episodes` static).
    act_step: `act_step(state) -> state`: one vmapped env step (acting,
      replay add, history roll) without updates, for inspection and tests.
    place: `place(state) -> state`: lays a state (e.g. a restored one) out on
      the mesh: per-slot leaves (envs, histories, the replay's storage)
      sharded along `data`, the rest replicated; the identity without a mesh.
  """

  init: Callable[[jax.Array], TrainState]
  iteration: Callable[[TrainState], tuple[TrainState, dict]]
  evaluate: Callable[..., jax.Array]
  act_step: Callable[[TrainState], TrainState]
  place: Callable[[TrainState], TrainState]


def make_optimizers(
  learning_rate: float = 3e-4, greedy_mode: str | None = None, **kwargs: Any
) -> tuple[optimizers.Optimizer, optimizers.Optimizer]:
  """Actor and critic optimizers: Adam (`--lr` 3e-4) + GreedyLR as the rule says for TD objectives."""
  make = lambda: optimizers.make_optimizer(
    name="adam", learning_rate=learning_rate, objective="td", greedy_mode=greedy_mode, **kwargs
  )
  return make(), make()


def roll_history(
  history: jax.Array, mask: jax.Array, action: jax.Array, reward: jax.Array, observation: jax.Array, reset: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Appends step `(a_t, r_t, s_t)` to each slot's window; clears slots whose episode ended.

  Args:
    history: `[E, H, A + 1 + S]`.
    mask: `[E, H]` bool.
    action: `[E, A]` a_t as applied (and stored).
    reward: `[E]` r_t.
    observation: `[E, S]` s_t (the observation the action was taken in).
    reset: `[E]` whether the step ended the episode (`done` of the new state).

  Returns:
    The window and mask of s_{t+1} (`replay.gather`'s `next_history`, or an
    empty window at a new episode's first step).
  """
  feat = mql_networks.history_features(action, reward, observation).astype(history.dtype)
  history = jnp.concatenate([history[:, 1:], feat[:, None]], axis=1)
  mask = jnp.concatenate([mask[:, 1:], jnp.ones_like(mask[:, :1])], axis=1)
  reset = jnp.asarray(reset) > 0
  history = jnp.where(reset[:, None, None], jnp.zeros((), history.dtype), history)
  mask = jnp.where(reset[:, None], False, mask)
  return history, mask


def _all_finite(tree: PyTree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _select(pred: jax.Array, new: PyTree, old: PyTree) -> PyTree:
  return jax.tree.map(lambda n, o: jnp.where(pred, n, o), new, old)


def _base_env(env) -> TaskEpisodeWrapper:
  if isinstance(env, VmapTaskWrapper):
    return env.env
  if isinstance(env, TaskEpisodeWrapper):
    return env
  raise TypeError(f"expected an mql.envs env (VmapTaskWrapper or TaskEpisodeWrapper), got {type(env).__name__}")


class LearnerState(NamedTuple):
  """The TD3 learner's part of the state: what `make_td3_update` reads and writes."""

  params: mql_networks.MQLParams
  target_params: mql_networks.MQLParams
  actor_opt_state: PyTree
  critic_opt_state: PyTree
  updates: jax.Array
  actor_updates: jax.Array
  critic_nonfinite: jax.Array
  actor_nonfinite: jax.Array


def _learner(state: TrainState) -> LearnerState:
  return LearnerState(**{name: getattr(state, name) for name in LearnerState._fields})


def make_td3_update(
  td3: mql_losses.Losses,
  actor_opt: optax.GradientTransformationExtraArgs,
  critic_opt: optax.GradientTransformationExtraArgs,
  *,
  policy_delay: int,
  tau: float,
  greedy_signal: str = "loss",
) -> Callable[..., tuple[LearnerState, dict]]:
  """One TD3 update (critic; every `policy_delay`-th also actor and targets), NaN-guarded.

  Shared by meta-training (`make_trainer`) and adaptation (`mql.adaptation`).

  Returns:
    `update(learner, batch, key, active, *, weights=None, reference_params=None,
    prox_coef=0.0) -> (learner, metrics)`.  `active` False computes and
    discards the update (no counter moves); `weights` are per-row β and
    `reference_params` the proximal anchor (`mql.losses.make_losses`).  An
    update whose loss, gradients or new parameters are not finite leaves that
    network and its optimizer state unchanged and is counted.
  """
  critic_grad = jax.value_and_grad(td3.critic_loss, has_aux=True)
  actor_grad = jax.value_and_grad(td3.actor_loss, has_aux=True)

  def update(learner, batch, key, active, *, weights=None, reference_params=None, prox_coef=0.0):
    extra = dict(weights=weights, reference_params=reference_params, prox_coef=prox_coef)
    params, target = learner.params, learner.target_params

    (critic_loss, critic_metrics), grads = critic_grad(params, target, batch, key, **extra)
    relative = critic_metrics["relative_td"] if greedy_signal == "relative_td" else None
    updates, critic_opt_state = critic_opt.update(
      grads.critic, learner.critic_opt_state, params.critic, value=critic_loss if relative is None else relative
    )
    critic = optax.apply_updates(params.critic, updates)
    critic_finite = jnp.isfinite(critic_loss) & _all_finite(grads.critic) & _all_finite(critic)
    apply_critic = active & critic_finite
    params = params._replace(critic=_select(apply_critic, critic, params.critic))
    critic_opt_state = _select(apply_critic, critic_opt_state, learner.critic_opt_state)

    count = learner.updates + jnp.asarray(active).astype(jnp.int32)
    actor_step = active & (count % policy_delay == 0)

    def actor_update(params):
      (actor_loss, _), grads = actor_grad(params, batch, **extra)
      updates, opt_state = actor_opt.update(
        grads.actor, learner.actor_opt_state, params.actor, value=actor_loss if relative is None else relative
      )
      actor = optax.apply_updates(params.actor, updates)
      finite = jnp.isfinite(actor_loss) & _all_finite(grads.actor) & _all_finite(actor)
      return (
        _select(finite, actor, params.actor),
        _select(finite, opt_state, learner.actor_opt_state),
        actor_loss,
        finite,
      )

    def no_actor_update(params):
      return params.actor, learner.actor_opt_state, jnp.asarray(jnp.nan, jnp.float32), jnp.asarray(True)

    # `lax.cond` skips the actor's forward/backward on the delayed steps (a
    # select under vmap, e.g. in `mql.adaptation`, where both run).
    actor, actor_opt_state, actor_loss, actor_finite = jax.lax.cond(actor_step, actor_update, no_actor_update, params)
    params = params._replace(actor=actor)
    target = _select(actor_step, mql_losses.soft_update(target, params, tau), target)

    nan = jnp.asarray(jnp.nan, jnp.float32)
    metrics = {
      "critic_loss": jnp.where(active, critic_loss, nan),
      "q1": jnp.where(active, critic_metrics["q1"], nan),
      "target_q": jnp.where(active, critic_metrics["target_q"], nan),
      "actor_loss": jnp.where(actor_step, actor_loss, nan),
    }
    learner = LearnerState(
      params=params,
      target_params=target,
      actor_opt_state=actor_opt_state,
      critic_opt_state=critic_opt_state,
      updates=count,
      actor_updates=learner.actor_updates + actor_step.astype(jnp.int32),
      critic_nonfinite=learner.critic_nonfinite + (active & ~critic_finite).astype(jnp.int32),
      actor_nonfinite=learner.actor_nonfinite + (actor_step & ~actor_finite).astype(jnp.int32),
    )
    return learner, metrics

  return update


def state_sharding(state: TrainState, mesh: jax.sharding.Mesh) -> TrainState:
  """Shardings of a `TrainState` on `mesh`: per-slot leaves along `data`, everything else replicated."""
  slots, whole = sharding.batch_sharded(mesh), sharding.replicated(mesh)
  spec = jax.tree.map(lambda _: whole, state)
  per_slot = lambda tree: jax.tree.map(lambda _: slots, tree)
  return spec._replace(
    env_state=per_slot(state.env_state),
    replay=spec.replay.replace(steps=per_slot(state.replay.steps)),
    history=slots,
    history_mask=slots,
    episode_return=slots,
    last_return=slots,
  )


def make_trainer(
  env: VmapTaskWrapper,
  networks: mql_networks.MQLNetworks,
  settings: TD3Settings = TD3Settings(),
  actor_optimizer: Optional[optimizers.Optimizer] = None,
  critic_optimizer: Optional[optimizers.Optimizer] = None,
  *,
  eval_env=None,
  mesh: Optional[jax.sharding.Mesh] = None,
) -> Trainer:
  """Builds the meta-training loop (see the module docstring).

  Args:
    env: `mql.envs.make(..., batch_size=E)` over the train tasks.
    networks: `mql.networks.make_networks(...)`, with or without contexts.
    settings: `TD3Settings`.
    actor_optimizer, critic_optimizer: `schedulers.make_optimizer` results;
      None: `make_optimizers()` (Adam 3e-4, GreedyLR per step).
    eval_env: env whose tasks `evaluate` runs (e.g. the test split); default
      the train env's tasks.
    mesh: `common.sharding.data_mesh()` to shard env slots, replay storage
      and TD3 batches over its devices (`num_envs` and `batch_size` must be
      divisible by its size); None or one device: unsharded.

  Returns:
    `Trainer(init, iteration, evaluate, act_step)`, all jitted.
  """
  if not isinstance(env, VmapTaskWrapper):
    raise TypeError(f"env must be a VmapTaskWrapper (mql.envs.make(..., batch_size=E)), got {type(env).__name__}")
  base = _base_env(env)
  num_envs, num_tasks = env.batch_size, base.num_tasks
  obs_size, act_size, h = networks.observation_size, networks.action_size, networks.history_length
  if base.observation_size != obs_size or base.action_size != act_size:
    raise ValueError(
      f"env has observation/action sizes {base.observation_size}/{base.action_size}, "
      f"the networks {obs_size}/{act_size}."
    )
  capacity = settings.replay_size // num_envs
  if mesh is not None and mesh.size > 1:
    for name, value in (("num_envs", num_envs), ("batch_size", settings.batch_size)):
      if value % mesh.size:
        raise ValueError(f"{name} {value} is not divisible by the mesh's {mesh.size} devices.")
  if capacity <= h:
    raise ValueError(f"replay_size {settings.replay_size} leaves {capacity} steps per env slot, need > H = {h}.")
  snapshot = max(settings.snapshot_size, num_envs)
  default_actor, default_critic = make_optimizers()
  actor_optimizer = actor_optimizer or default_actor
  critic_optimizer = critic_optimizer or default_critic
  actor_opt, critic_opt = actor_optimizer.tx, critic_optimizer.tx
  evaluation = _base_env(eval_env) if eval_env is not None else base
  td3 = mql_losses.make_losses(
    networks, discount=settings.discount, policy_noise=settings.policy_noise, noise_clip=settings.noise_clip
  )
  feature_size = networks.history_feature_size
  first_update = settings.first_update_step

  def init(key: jax.Array) -> TrainState:
    param_key, env_key, rng = jax.random.split(key, 3)
    params = mql_networks.init_params(networks, param_key)
    state = TrainState(
      params=params,
      target_params=params,
      actor_opt_state=actor_opt.init(params.actor),
      critic_opt_state=critic_opt.init(params.critic),
      env_state=env.reset(env_key),
      replay=replay.init(num_envs, capacity, obs_size, act_size, num_tasks, snapshot),
      history=jnp.zeros((num_envs, h, feature_size), jnp.float32),
      history_mask=jnp.zeros((num_envs, h), bool),
      rng=rng,
      env_steps=jnp.zeros((), jnp.int32),
      updates=jnp.zeros((), jnp.int32),
      actor_updates=jnp.zeros((), jnp.int32),
      critic_nonfinite=jnp.zeros((), jnp.int32),
      actor_nonfinite=jnp.zeros((), jnp.int32),
      episode_return=jnp.zeros((num_envs,), jnp.float32),
      last_return=jnp.zeros((num_envs,), jnp.float32),
      episodes=jnp.zeros((), jnp.int32),
    )
    return jax.tree.map(jnp.copy, state)  # own buffers (targets start as copies)

  def act_step(state: TrainState) -> tuple[TrainState, dict]:
    rng, noise_key, random_key = jax.random.split(state.rng, 3)
    env_state = state.env_state
    policy = networks.actor.apply(state.params.actor, env_state.obs, state.history, state.history_mask)
    noise = settings.exploration_noise * jax.random.normal(noise_key, policy.shape, policy.dtype)
    explore = jnp.clip(policy + noise, -1.0, 1.0)
    uniform = jax.random.uniform(random_key, policy.shape, policy.dtype, -1.0, 1.0)
    action = jnp.where(state.env_steps < settings.start_steps, uniform, explore)
    next_env_state = env.step(env_state, action)
    step = replay.step_from_env(env_state, action, next_env_state)
    done = next_env_state.done > 0
    history, mask = roll_history(state.history, state.history_mask, action, step.reward, step.observation, done)
    episode_return = state.episode_return + step.reward
    finished = jnp.sum(done.astype(jnp.int32))
    metrics = {
      "finished_return_sum": jnp.sum(jnp.where(done, episode_return, 0.0)),
      "finished_episodes": finished,
    }
    state = state._replace(
      env_state=next_env_state,
      replay=replay.add(state.replay, step),
      history=history,
      history_mask=mask,
      rng=rng,
      env_steps=state.env_steps + num_envs,
      episode_return=jnp.where(done, 0.0, episode_return),
      last_return=jnp.where(done, episode_return, state.last_return),
      episodes=state.episodes + finished,
    )
    return state, metrics

  td3_update = make_td3_update(
    td3,
    actor_opt,
    critic_opt,
    policy_delay=settings.policy_delay,
    tau=settings.tau,
    greedy_signal=settings.greedy_signal,
  )

  def update(_, carry: tuple[TrainState, dict]) -> tuple[TrainState, dict]:
    state, sums = carry
    rng, batch_key, critic_key = jax.random.split(state.rng, 3)
    batch = sharding.constrain_batch(replay.sample(state.replay, batch_key, settings.batch_size, h), mesh)
    learner, metrics = td3_update(_learner(state), batch, critic_key, jnp.asarray(True))
    # Running (sum, count) of each metric's finite values (the actor's loss is NaN on delayed steps).
    sums = {
      k: (sums[k][0] + jnp.where(jnp.isfinite(v), v, 0.0), sums[k][1] + jnp.isfinite(v).astype(jnp.int32))
      for k, v in metrics.items()
    }
    return state._replace(rng=rng, **learner._asdict()), sums

  def env_step(state: TrainState, _) -> tuple[TrainState, dict]:
    num_updates = updates_per_env_step(settings, num_envs, state.env_steps)
    state, act_metrics = act_step(state)
    num_updates = jnp.where(state.env_steps >= first_update, num_updates, 0)
    zero = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
    sums = {k: zero for k in UPDATE_METRICS}
    state, sums = jax.lax.fori_loop(0, num_updates, update, (state, sums))
    return state, {**act_metrics, "update_sums": sums}

  def sum_mean(sums):
    total, count = jnp.sum(sums[0]), jnp.sum(sums[1])
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)

  def observe_return(state: TrainState, episode_return: jax.Array) -> TrainState:
    """Per-eval GreedyLR: one decision per iteration that finished episodes, on −(their mean return).

    `Optimizer.observe` leaves other modes' states unchanged, so this is the identity for them.
    """
    ok = jnp.isfinite(episode_return) & (state.env_steps > first_update)
    value = -jnp.where(ok, episode_return, 0.0)
    actor_state = _select(ok, actor_optimizer.observe(state.actor_opt_state, value), state.actor_opt_state)
    critic_state = _select(ok, critic_optimizer.observe(state.critic_opt_state, value), state.critic_opt_state)
    return state._replace(actor_opt_state=actor_state, critic_opt_state=critic_state)

  def iteration(state: TrainState) -> tuple[TrainState, dict]:
    updates_before = state.updates
    state, m = jax.lax.scan(env_step, state, None, length=settings.steps_per_iteration)
    finished = jnp.sum(m["finished_episodes"])
    episode_return = jnp.where(finished > 0, jnp.sum(m["finished_return_sum"]) / jnp.maximum(finished, 1), jnp.nan)
    state = observe_return(state, episode_return)
    metrics = {
      **{k: sum_mean(m["update_sums"][k]) for k in UPDATE_METRICS},
      "updates_per_transition": (state.updates - updates_before) / (settings.steps_per_iteration * num_envs),
      "episode_return": episode_return,
      "finished_episodes": finished,
      "env_steps": state.env_steps,
      "updates": state.updates,
      "actor_updates": state.actor_updates,
      "critic_nonfinite": state.critic_nonfinite,
      "actor_nonfinite": state.actor_nonfinite,
      "actor_learning_rate": actor_optimizer.learning_rate(state.actor_opt_state),
      "critic_learning_rate": critic_optimizer.learning_rate(state.critic_opt_state),
    }
    return state, metrics

  def evaluate(state: TrainState, key: jax.Array, num_episodes: int = 1) -> jax.Array:
    n_tasks = evaluation.num_tasks
    ids = jnp.repeat(jnp.arange(n_tasks, dtype=jnp.int32), num_episodes)
    keys = jax.random.split(key, ids.shape[0])
    env_state = jax.vmap(evaluation.reset_with_task_id)(keys, ids)
    n = ids.shape[0]
    carry = (
      env_state,
      jnp.zeros((n, h, feature_size), jnp.float32),
      jnp.zeros((n, h), bool),
      jnp.zeros((n,), jnp.float32),
      jnp.ones((n,), bool),
    )

    def body(carry, _):
      env_state, history, mask, total, alive = carry
      action = networks.actor.apply(state.params.actor, env_state.obs, history, mask)
      next_state = jax.vmap(evaluation.step_no_reset)(env_state, action)
      reward = jnp.asarray(next_state.reward, jnp.float32)
      total = total + jnp.where(alive, reward, 0.0)
      history, mask = roll_history(history, mask, action, reward, env_state.obs, jnp.zeros((n,), bool))
      alive = alive & ~(next_state.done > 0)
      return (next_state, history, mask, total, alive), None

    (_, _, _, total, _), _ = jax.lax.scan(body, carry, None, length=evaluation.episode_length)
    return total.reshape(n_tasks, num_episodes).mean(axis=1)

  def act_only(state: TrainState) -> TrainState:
    return act_step(state)[0]

  def place(state: TrainState) -> TrainState:
    if mesh is None or mesh.size == 1:
      return state
    return jax.device_put(state, state_sharding(state, mesh))

  return Trainer(
    place=place,
    init=lambda key: place(jax.jit(init)(key)),
    iteration=jax.jit(iteration),
    evaluate=jax.jit(evaluate, static_argnums=2),
    act_step=jax.jit(act_only),
  )
