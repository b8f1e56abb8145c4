"""Learning-rate control of SGD on a digits MLP as a pure-JAX RL environment.

The environment of the ICLR 2023 Tiny Paper "Learned LR Schedules for DNN
Training Using RL" (Subramanian, Ganapathiraman, El Gamal): a PPO agent sets
the learning rate of SGD while a small network trains, and is rewarded for
new lows of the validation loss. Here the network is a ReLU MLP on
scikit-learn's digits (`schedulers.data.load_digits`, the fixed 60/20/20
split), the optimizer SGD with heavy-ball momentum
(`optax.inject_hyperparams(optax.sgd)`, so the rate lives in the optimizer
state), and one episode is one training run.

* `reset(key)` draws a fresh parameter init and data order from `key`, runs
  the first `steps_per_decision` SGD steps at `initial_lr` (so the first
  observation summarises real training) and returns the state and observation.
* `step(state, action)` multiplies the learning rate by
  `multipliers[action]`, clips it to `lr_bounds`, runs `steps_per_decision`
  minibatch SGD steps (one `lax.scan`; batches by `common.data`'s
  step-indexed shuffling), then scores the full validation split. The episode
  ends after `num_decisions` steps; a run is `(num_decisions + 1) *
  steps_per_decision` SGD steps.
* The optimizer is `optax.chain(optax.sgd(initial_lr, momentum),
  transform.scale_by_controller(spec))` and the agent's actions go through
  `transform.decide`: the observation is `transform.features` (float32 [7]:
  log mean training loss of the interval, its log ratio to the best earlier
  interval, budget left, log lr / initial_lr, and log interval-mean norms of
  the update direction: global, largest and smallest layer), i.e. exactly
  what `schedulers.learned_schedule(policy)` computes in any trainer. The
  paper observes the validation loss; an optax transform is handed only the
  training loss (`value=`), so the observation uses that, and the
  validation loss drives the reward.
* Reward, the paper's form: `r_t = gamma * (best_{t-1} - val_t) + lambda *
  (num_decisions - t) / num_decisions`, then `best_t = min(best_{t-1},
  val_t)`, `best_0` the validation loss after the first interval. The
  gamma term pays only for new lows (and charges for being above the best);
  summed over a run that keeps improving it telescopes to
  `val_0 - val_T`. The lambda term depends only on `t`: for these
  fixed-length episodes it adds the same constant to every policy's return
  (it shifts values, never the optimal policy), so it is 0 by default; it
  would matter only with early termination, where it rewards surviving.

Divergence stays finite and local: an SGD step whose loss, gradients or new
parameters are not finite is skipped (as in `common.trainer`) and counted;
validation and test losses are clamped to `[_MIN_LOSS, loss_cap]` (NaN ->
`loss_cap`), a skipped step leaves the controller's interval record as it
was (as a trainer that skips the update would), so a run pushed to a huge rate gets rewards near
`-gamma * loss_cap` and finite observations, and NaN never reaches the
parameters, the optimizer state or later decisions. A network that blew up
finitely (on digits, rates of a few units already kill the ReLU layer) may
still not recover when the rate comes down: that is the cost the agent must
learn to avoid, not a numerical fault.

`make_dnn_task` also returns `run_schedule(key, lrs)`, which trains the same
run under a given per-decision learning-rate sequence (constant, step decay,
cosine, a grid point), through the very function `step` uses: baselines, grid
search and a trained policy are scored on identical runs (same key, same
init and data order).

Example::

  task = dnn_env.make_dnn_task()
  env = task.env                                  # a common.ppo.Env
  state, obs = jax.jit(env.reset)(jax.random.key(0))
  state, obs, reward, done = jax.jit(env.step)(state, jnp.int32(2))
  lrs = 0.05 * jnp.ones(task.num_decisions + 1)
  val_losses, test_loss = jax.jit(task.run_schedule)(jax.random.key(0), lrs)
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from common import data as data_lib
from common import ppo
from schedulers import _validation, losses, networks
from schedulers import data as digits_data
from schedulers.learned import transform

_PREFIX = "make_dnn_env"
_NUM_FEATURES = 64  # 8x8 digits
_NUM_CLASSES = 10
_MIN_LOSS = 1e-6  # floor of clamped losses (keeps their logs finite)


class DNNEnvState(NamedTuple):
  """One training run between decisions (a pytree of arrays).

  Attributes:
    params: the MLP's Flax variables.
    opt_state: `inject_hyperparams(sgd)` state; `hyperparams["learning_rate"]`
      is the current rate.
    data_key: PRNG key of the run's data order (epoch e uses `fold_in(data_key, e)`).
    step: int32 SGD steps done.
    decision: int32 decisions done (env steps of the episode).
    val_loss: float32 clamped validation loss after the last decision.
    best_val: float32 lowest `val_loss` of the run so far (reset's included).
    nonfinite_updates: int32 SGD steps skipped for non-finite values.
  """

  params: Any
  opt_state: Any
  data_key: jax.Array
  step: jax.Array
  decision: jax.Array
  val_loss: jax.Array
  best_val: jax.Array
  nonfinite_updates: jax.Array


class RunRecord(NamedTuple):
  """One whole training run (`DNNTask.run_tail`).

  Attributes:
    val_losses: float32 [num_decisions + 1] clamped validation loss after each interval.
    test_loss: float32 clamped test loss of the final params.
    lrs: float32 [(num_decisions + 1) * steps_per_decision] effective rate of each step.
    nonfinite_updates: int32 skipped steps.
  """

  val_losses: jax.Array
  test_loss: jax.Array
  lrs: jax.Array
  nonfinite_updates: jax.Array


class DNNTask(NamedTuple):
  """The environment and the schedule evaluators of one configuration.

  Attributes:
    env: the `common.ppo.Env` (`reset`, `step`, `observation_size`, `num_actions`).
    run_schedule: `run_schedule(key, lrs [num_decisions + 1]) -> (val_losses
      [num_decisions + 1], test_loss)`: the run `env.reset(key)` starts,
      trained with rate `lrs[i]` during interval i (interval 0 is the one
      `reset` runs; rates used as given, not clipped), and the clamped test
      loss of its final params.
    run_tail: `run_tail(key, tail) -> RunRecord`: the same run trained by
      `sgd(initial_lr, momentum) -> tail` (e.g. `learned_schedule(policy)`,
      `greedy_lr()`, `optax.scale_by_schedule(...)`); the tail is handed
      `value=` the minibatch loss. jit it with the tail closed over.
    test_loss: `test_loss(state) -> scalar`: clamped test-split loss of a
      state's params (score a policy's finished episode with it).
    learning_rate: `learning_rate(state) -> scalar`: the state's current rate.
    multipliers: the rate factor of each action.
    num_decisions: episode length.
    initial_lr: the rate at reset.
    controller: the `transform.ControllerSpec` (with `policy.from_ppo`, what
      turns a trained actor into a deployable `learned_schedule`).
    batch_size: SGD minibatch size.
    momentum: heavy-ball momentum of the SGD.
    hidden_sizes: the MLP's hidden layer sizes.
    split_seed: seed of the digits split.
  """

  env: ppo.Env
  run_schedule: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
  run_tail: Callable[[jax.Array, optax.GradientTransformationExtraArgs], RunRecord]
  test_loss: Callable[[DNNEnvState], jax.Array]
  learning_rate: Callable[[DNNEnvState], jax.Array]
  multipliers: tuple[float, ...]
  num_decisions: int
  initial_lr: float
  controller: transform.ControllerSpec
  batch_size: int
  momentum: float
  hidden_sizes: tuple[int, ...]
  split_seed: int


def _clamp_loss(loss: jax.Array, loss_cap: float) -> jax.Array:
  """A finite loss in `[_MIN_LOSS, loss_cap]`; NaN counts as `loss_cap`."""
  return jnp.where(jnp.isnan(loss), loss_cap, jnp.clip(loss, _MIN_LOSS, loss_cap)).astype(jnp.float32)


def _all_finite(tree: Any) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _validate(
  hidden_sizes, batch_size, steps_per_decision, num_decisions, initial_lr, multipliers, lr_bounds, momentum, loss_cap
):
  for size in hidden_sizes:
    _validation.check_int(_PREFIX, "hidden_sizes entry", size, 1)
  _validation.check_int(_PREFIX, "batch_size", batch_size, 1)
  _validation.check_int(_PREFIX, "steps_per_decision", steps_per_decision, 1)
  _validation.check_int(_PREFIX, "num_decisions", num_decisions, 1)
  if len(multipliers) < 2:
    raise ValueError(f"{_PREFIX}: multipliers needs at least 2 actions, got {multipliers!r}.")
  _validation.check(_PREFIX, "multipliers", multipliers, lambda a: a > 0, "> 0")
  if len(lr_bounds) != 2:
    raise ValueError(f"{_PREFIX}: lr_bounds must be (low, high), got {lr_bounds!r}.")
  low, high = lr_bounds
  _validation.check(_PREFIX, "lr_bounds", lr_bounds, lambda a: (a[0] > 0) & (a[0] <= a[1]), "0 < low <= high")
  _validation.check(_PREFIX, "initial_lr", initial_lr, lambda a: (a >= low) & (a <= high), f"in [{low}, {high}]")
  _validation.check(_PREFIX, "momentum", momentum, lambda a: (a >= 0) & (a < 1), "in [0, 1)")
  _validation.check(_PREFIX, "loss_cap", loss_cap, lambda a: a > 1, "> 1")


def validate_task_args(**kwargs: Any) -> None:
  """Raises ValueError for arguments `make_dnn_task` would refuse (without loading data).

  Takes `make_dnn_task`'s keyword arguments (unknown names raise TypeError).
  """
  args = inspect.signature(make_dnn_task).bind(**kwargs)
  args.apply_defaults()
  a = args.arguments
  _validate(
    tuple(a["hidden_sizes"]),
    a["batch_size"],
    a["steps_per_decision"],
    a["num_decisions"],
    a["initial_lr"],
    tuple(float(m) for m in a["multipliers"]),
    a["lr_bounds"],
    a["momentum"],
    a["loss_cap"],
  )


def make_dnn_task(
  *,
  hidden_sizes: tuple[int, ...] = (64,),
  batch_size: int = 64,
  steps_per_decision: int = 25,
  num_decisions: int = 20,
  initial_lr: float = 0.01,
  multipliers: tuple[float, ...] = (0.5, 0.8, 1.0, 1.25, 2.0),
  lr_bounds: tuple[float, float] = (1e-4, 1.0),
  momentum: float = 0.9,
  reward_gamma: float = 1.0,
  reward_lambda: float = 0.0,
  loss_cap: float = 10.0,
  split_seed: int = 0,
) -> DNNTask:
  """Builds the learning-rate control environment and its schedule evaluators.

  The digits split is built here, once, outside jit; its arrays are
  constants of every compiled function.

  Args:
    hidden_sizes: hidden layer sizes of the ReLU MLP (64 -> ... -> 10).
    batch_size: SGD minibatch size (the train split has 1,077 examples).
    steps_per_decision: SGD steps between two decisions (an "epoch" of the paper).
    num_decisions: decisions per episode (training run).
    initial_lr: learning rate at reset; must lie in `lr_bounds`.
    multipliers: rate factor of each discrete action (include 1.0 for "keep").
    lr_bounds: `(low, high)` the rate is clipped to after every action.
    momentum: heavy-ball momentum of SGD.
    reward_gamma: weight of the improvement term `best_{t-1} - val_t`.
    reward_lambda: weight of the remaining-budget term (a policy-independent
      per-step constant for these fixed-length episodes).
    loss_cap: validation/test losses are clamped to this (NaN too): the
      worst per-step reward of a diverged run is about `-reward_gamma * loss_cap`.
    split_seed: seed of the stratified 60/20/20 split.

  Returns:
    A `DNNTask`; `DNNTask.env` is the `common.ppo.Env`.

  Raises:
    ValueError: for invalid sizes, bounds or multipliers.
  """
  hidden_sizes = tuple(hidden_sizes)
  multipliers = tuple(float(m) for m in multipliers)
  _validate(
    hidden_sizes, batch_size, steps_per_decision, num_decisions, initial_lr, multipliers, lr_bounds, momentum, loss_cap
  )
  train_np, val_np, test_np = digits_data.load_digits(seed=split_seed)
  train, val, test_split = (jax.tree.map(jnp.asarray, s) for s in (train_np, val_np, test_np))
  n_train = data_lib.num_examples(train)
  per_epoch = data_lib.steps_per_epoch(train, batch_size)
  # Epochs one decision can touch (its first step need not start an epoch).
  epochs_per_decision = (steps_per_decision - 1) // per_epoch + 2
  observation_size = transform.OBSERVATION_SIZE

  network = networks.make_classifier(_NUM_FEATURES, hidden_sizes, _NUM_CLASSES)
  train_loss, evaluate = losses.make_losses(network)
  grad_fn = jax.value_and_grad(lambda p, b: train_loss(p, b, None)[0])
  low, high = (float(b) for b in lr_bounds)
  controller = transform.ControllerSpec(
    multipliers=multipliers,
    decision_interval=steps_per_decision,
    num_decisions=num_decisions,
    scale_bounds=(low / initial_lr, high / initial_lr),
    loss_cap=loss_cap,
  )
  base = optax.sgd(initial_lr, momentum=momentum)
  env_tail = transform.scale_by_controller(controller)

  def learning_rate(state: DNNEnvState) -> jax.Array:
    return initial_lr * state.opt_state[-1].scale

  def with_scale(opt_state, scale) -> Any:
    return (*opt_state[:-1], opt_state[-1]._replace(scale=jnp.asarray(scale, jnp.float32)))

  def val_loss_of(params) -> jax.Array:
    return _clamp_loss(evaluate(params, val)["loss"], loss_cap)

  def test_loss(state: DNNEnvState) -> jax.Array:
    return _clamp_loss(evaluate(state.params, test_split)["loss"], loss_cap)

  def run_interval(tail, params, opt_state, data_key, step, nonfinite):
    """`steps_per_decision` steps of `base -> tail`; opt_state is `(base_state, tail_state)`.

    Also returns the effective rate of each step, `initial_lr * ‖tail(u)‖ / ‖u‖`.
    """
    first_epoch = step // per_epoch
    permutations = jax.vmap(lambda e: data_lib.epoch_permutation(data_key, first_epoch + e, n_train))(
      jnp.arange(epochs_per_decision)
    )

    def sgd_step(carry, _):
      params, opt_state, step, nonfinite = carry
      permutation = permutations[step // per_epoch - first_epoch]
      batch = data_lib.batch_from_permutation(train, permutation, step, batch_size)
      loss, grads = grad_fn(params, batch)
      direction, base_state = base.update(grads, opt_state[0], params)
      updates, tail_state = tail.update(direction, opt_state[1], params, value=loss)
      new_opt_state = (base_state, tail_state)
      new_params = optax.apply_updates(params, updates)
      ratio = optax.tree.norm(updates) / jnp.maximum(optax.tree.norm(direction), 1e-30)
      finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(new_params)
      keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
      carry = (keep(new_params, params), keep(new_opt_state, opt_state), step + 1, nonfinite + (~finite))
      return carry, (initial_lr * ratio).astype(jnp.float32)

    init = (params, opt_state, step, nonfinite)
    (params, opt_state, step, nonfinite), lrs = jax.lax.scan(sgd_step, init, None, length=steps_per_decision)
    return params, opt_state, step, nonfinite.astype(jnp.int32), lrs

  def init_opt_state(tail, params):
    return (base.init(params), tail.init(params))

  def observation(state: DNNEnvState) -> jax.Array:
    obs = transform.features(controller, state.opt_state[-1])
    chex.assert_shape(obs, (observation_size,))
    return obs

  def start(key: jax.Array, scale: jax.Array) -> DNNEnvState:
    """A fresh run, through its first interval at `scale` x initial_lr."""
    init_key, data_key = jax.random.split(key)
    params = network.init(init_key)
    opt_state = with_scale(init_opt_state(env_tail, params), scale)
    zero = jnp.zeros((), jnp.int32)
    params, opt_state, step, nonfinite, _ = run_interval(env_tail, params, opt_state, data_key, zero, zero)
    val_loss = val_loss_of(params)
    return DNNEnvState(
      params=params,
      opt_state=opt_state,
      data_key=data_key,
      step=step,
      decision=zero,
      val_loss=val_loss,
      best_val=val_loss,
      nonfinite_updates=nonfinite,
    )

  def reset(key: jax.Array) -> tuple[DNNEnvState, jax.Array]:
    state = start(key, jnp.ones((), jnp.float32))
    return state, observation(state)

  def advance(state: DNNEnvState, opt_state) -> tuple[DNNEnvState, jax.Array, jax.Array, jax.Array]:
    """Runs one interval from `opt_state` (the decision already applied): obs, reward, done."""
    params, opt_state, step, nonfinite, _ = run_interval(
      env_tail, state.params, opt_state, state.data_key, state.step, state.nonfinite_updates
    )
    val_loss = val_loss_of(params)
    decision = state.decision + 1
    budget_left = (num_decisions - decision) / num_decisions
    reward = (reward_gamma * (state.best_val - val_loss) + reward_lambda * budget_left).astype(jnp.float32)
    new_state = DNNEnvState(
      params=params,
      opt_state=opt_state,
      data_key=state.data_key,
      step=step,
      decision=decision,
      val_loss=val_loss,
      best_val=jnp.minimum(state.best_val, val_loss),
      nonfinite_updates=nonfinite,
    )
    return new_state, observation(new_state), reward, decision >= num_decisions

  def step(state: DNNEnvState, action: jax.Array):
    chex.assert_shape(action, ())
    decided = transform.decide(controller, state.opt_state[-1], action)
    return advance(state, (*state.opt_state[:-1], decided))

  def run_schedule(key: jax.Array, lrs: jax.Array) -> tuple[jax.Array, jax.Array]:
    chex.assert_shape(lrs, (num_decisions + 1,))
    scales = jnp.asarray(lrs, jnp.float32) / initial_lr
    state = start(key, scales[0])

    def body(state, scale):
      decided = transform.decide(controller, state.opt_state[-1], jnp.int32(0))
      state, _, _, _ = advance(state, (*state.opt_state[:-1], decided._replace(scale=scale)))
      return state, state.val_loss

    first_val = state.val_loss
    state, val_losses = jax.lax.scan(body, state, scales[1:])
    return jnp.concatenate([first_val[None], val_losses]), test_loss(state)

  def run_tail(key: jax.Array, tail: optax.GradientTransformationExtraArgs) -> RunRecord:
    """The run `reset(key)` starts, trained by `sgd(initial_lr, momentum) -> tail` (tail gets `value=loss`)."""
    tail = optax.with_extra_args_support(tail)
    init_key, data_key = jax.random.split(key)
    params = network.init(init_key)
    zero = jnp.zeros((), jnp.int32)

    def interval(carry, _):
      params, opt_state, step, nonfinite = carry
      params, opt_state, step, nonfinite, lrs = run_interval(tail, params, opt_state, data_key, step, nonfinite)
      return (params, opt_state, step, nonfinite), (val_loss_of(params), lrs)

    init = (params, init_opt_state(tail, params), zero, zero)
    (params, _, _, nonfinite), (val_losses, lrs) = jax.lax.scan(interval, init, None, length=num_decisions + 1)
    test = _clamp_loss(evaluate(params, test_split)["loss"], loss_cap)
    return RunRecord(val_losses=val_losses, test_loss=test, lrs=lrs.reshape(-1), nonfinite_updates=nonfinite)

  env = ppo.Env(reset=reset, step=step, observation_size=observation_size, num_actions=len(multipliers))
  return DNNTask(
    env=env,
    run_schedule=run_schedule,
    run_tail=run_tail,
    test_loss=test_loss,
    learning_rate=learning_rate,
    multipliers=multipliers,
    num_decisions=num_decisions,
    initial_lr=float(initial_lr),
    controller=controller,
    batch_size=batch_size,
    momentum=float(momentum),
    hidden_sizes=hidden_sizes,
    split_seed=split_seed,
  )


def make_dnn_env(**kwargs) -> ppo.Env:
  """The `common.ppo.Env` of `make_dnn_task(**kwargs)` (same keyword arguments)."""
  return make_dnn_task(**kwargs).env
