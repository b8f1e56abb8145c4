"""The NMF learned-schedule binary: train a PPO agent, evaluate it against baselines on identical runs.

`train_and_evaluate(config, workdir)`:

1. trains (or resumes, from its last chunk) the agent with `agent.train_agent`
   on `nmf_env` episodes, fresh synthetic problems drawn from PRNGKey(seed);
2. evaluates the deterministic policy (argmax action) on held-out episodes:
   synthetic problems drawn from PRNGKey(eval.seed) (a root other than
   training's), and `nmf.digits_problem()` with held-out inits and minibatch
   streams (the agent never trains on digits);
3. runs every baseline on the identical runs: episode i of every method starts
   from `nmf_env.env_reset(env_config, key_i)` (the same problem, init, power
   vectors and minibatch key) and takes the same K SGD steps, each at
   min(rate, clip_c · η_max) at its point, exactly as the env clips;
4. writes `results.json`, `results.md` (paired comparisons from `compare`) and
   `plots/*.png` into the workdir.

Baselines (η_0 = f · η_max(0), the bound at the initial point):
`constant_init` (f = env.init_lr_fraction, untuned: the env's 'keep' policy
with lr_cap = inf), `constant`, `step`, `exponential`, `cosine` and
`greedy_lr` (GreedyLR per step on the minibatch loss, scaling η_0) with f
tuned on the grid `eval.lr_fractions` by the geometric-mean final loss of
`eval.num_tuning_seeds` tuning episodes of the same task (root
PRNGKey(eval.tuning_seed)), and `bound` (clip_c · η_max(t), the clip itself).
All baseline runs of a task, tuning and evaluation, run vmapped in one
compiled program (a branch-free switch over the schedule kind), the policy's
in another.

Re-running on a finished workdir: results.json records the config it was
computed from; when that equals the current config the evaluation is skipped
and the stored metrics are returned (evaluation is deterministic, so it would
reproduce them bitwise).  A larger `num_iterations` resumes training and
re-evaluates.  The config stops here: everything below takes explicit arguments.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import app, ppo
from common import metrics as metrics_lib
from schedulers import optimizers
from schedulers.greedy_lr import greedy_lr
from schedulers.learned import agent as agent_lib
from schedulers.learned import compare, nmf, nmf_env, nmf_report
from schedulers.learned.configs import nmf as nmf_config

DEFAULT_CONFIG = nmf_config.__file__
# May differ when a workdir is resumed: a longer training budget, checkpoints kept.
RESUMABLE_FIELDS = ("num_iterations", "keep_checkpoints")
RESULTS_FILE = "results.json"
REPORT_FILE = "results.md"
PLOTS_DIR = "plots"
POLICY = nmf_report.POLICY
TASKS = nmf_report.TASKS
DIGITS_IMAGES = 1797  # images in scikit-learn's digits

# Schedule kinds of the baseline runner (index = kind id).
KINDS = ("constant", "step", "exponential", "cosine", "bound", "greedy_lr")
# Baselines: name -> kind; the tuned ones choose f = η_0 / η_max(0) on the grid.
BASELINES = {
  "constant_init": "constant",
  "constant": "constant",
  "step": "step",
  "exponential": "exponential",
  "cosine": "cosine",
  "bound": "bound",
  "greedy_lr": "greedy_lr",
}
TUNED = ("constant", "step", "exponential", "cosine", "greedy_lr")


# ---------------------------------------------------------------------------
# Config: validation and the settings objects it stops at.
# ---------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _finite_positive(v: Any) -> bool:
  return math.isfinite(v) and v > 0


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field."""
  app.check_known_fields(config, nmf_config.get_config())
  positive_int = lambda v: _is_int(v) and v >= 1
  app.check(config, "seed", _is_int, "must be an integer")
  for field in (
    "env.m",
    "env.n",
    "env.rank",
    "env.batch_size",
    "env.steps_per_decision",
    "env.num_decisions",
    "env.power_init_iters",
    "env.power_iters",
  ):
    app.check(config, field, positive_int, "must be an integer >= 1")
  app.check(config, "env.batch_size", lambda v: v <= config.env.n, f"must be at most env.n = {config.env.n}")
  app.check(config, "env.noise", lambda v: math.isfinite(v) and v >= 0, "must be finite and >= 0")
  app.check(
    config,
    "env.multipliers",
    lambda v: len(v) >= 2 and all(_finite_positive(x) for x in v),
    "must be at least 2 positive finite rate factors (the actions)",
  )
  app.check(config, "env.clip_c", _finite_positive, "must be finite and > 0")
  app.check(config, "env.init_lr_fraction", _finite_positive, "must be finite and > 0")
  app.check(config, "env.lr_cap", lambda v: v > 0, "must be > 0 (inf: no clamp at decisions)")
  try:
    ppo_config(config)
  except ValueError as e:
    message = str(e)
    names = re.findall(r"PPOConfig\.(\w+)", message)
    field = names[0] if names and names[0] in config.ppo else "num_minibatches"
    raise app.ConfigError(f"ppo.{field}", re.sub(r"^PPOConfig[.:]\s*", "", message) + ".") from None
  optimizers.check_optimizer_config(config, "optimizer")
  app.check(config, "iterations_per_chunk", positive_int, "must be an integer >= 1")
  app.check(
    config,
    "num_iterations",
    lambda v: positive_int(v) and v % config.iterations_per_chunk == 0,
    f"must be a positive multiple of iterations_per_chunk = {config.iterations_per_chunk}",
  )
  app.check(config, "keep_checkpoints", positive_int, "must be an integer >= 1")
  app.check(config, "eval.seed", lambda v: _is_int(v) and v != config.seed, "must be an integer other than seed")
  app.check(
    config,
    "eval.tuning_seed",
    lambda v: _is_int(v) and v not in (config.seed, config.eval.seed),
    "must be an integer other than seed and eval.seed",
  )
  app.check(config, "eval.num_seeds", lambda v: _is_int(v) and v >= 2, "must be an integer >= 2 (paired statistics)")
  app.check(config, "eval.num_tuning_seeds", positive_int, "must be an integer >= 1")
  app.check(
    config,
    "eval.lr_fractions",
    lambda v: len(v) >= 1 and all(_finite_positive(x) for x in v),
    "must be a non-empty tuple of positive fractions of eta_max(0)",
  )
  app.check(config, "eval.confidence", lambda v: 0 < v < 1, "must be in (0, 1)")
  app.check(config, "eval.tie_rtol", lambda v: math.isfinite(v) and v >= 0, "must be finite and >= 0")
  app.check(
    config,
    "eval.digits_num_images",
    lambda v: v is None or (_is_int(v) and 2 <= v <= DIGITS_IMAGES),
    f"must be None (all) or an integer in [2, {DIGITS_IMAGES}]",
  )
  app.check(config, "eval.digits_rank", positive_int, "must be an integer >= 1")
  images = config.eval.digits_num_images or DIGITS_IMAGES
  app.check(
    config,
    "eval.digits_batch_size",
    lambda v: positive_int(v) and v <= images,
    f"must be an integer in [1, {images}] (the digits images used)",
  )
  app.check(config, "baselines.step_every", lambda v: 0 < v <= 1, "must be a fraction of the run in (0, 1]")
  app.check(config, "baselines.step_factor", lambda v: 0 < v <= 1, "must be in (0, 1]")
  app.check(config, "baselines.exponential_final", _finite_positive, "must be finite and > 0")
  app.check(config, "baselines.cosine_final", lambda v: math.isfinite(v) and v >= 0, "must be finite and >= 0")
  optimizers.check_greedy_config(config, "baselines.greedy")


def env_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """`nmf_env.make_nmf_config` keyword arguments of the training episodes."""
  env = config.env
  return dict(
    m=env.m,
    n=env.n,
    rank=env.rank,
    noise=float(env.noise),
    batch_size=env.batch_size,
    steps_per_decision=env.steps_per_decision,
    num_decisions=env.num_decisions,
    multipliers=tuple(float(x) for x in env.multipliers),
    clip_c=float(env.clip_c),
    init_lr_fraction=float(env.init_lr_fraction),
    lr_cap=float(env.lr_cap),
    power_init_iters=env.power_init_iters,
    power_iters=env.power_iters,
  )


def digits_env_config(config: ml_collections.ConfigDict) -> nmf_env.NMFEnvConfig:
  """The training env settings on the fixed digits problem (its own rank and batch size)."""
  settings = env_settings(config)
  settings.update(rank=config.eval.digits_rank, batch_size=config.eval.digits_batch_size)
  return nmf_env.make_nmf_config(**settings, problem=nmf.digits_problem(config.eval.digits_num_images))


def ppo_config(config: ml_collections.ConfigDict) -> ppo.PPOConfig:
  """`common.ppo.PPOConfig` from `config.ppo` (raises ValueError for bad values)."""
  p = config.ppo
  return ppo.PPOConfig(
    num_envs=p.num_envs,
    unroll_length=p.unroll_length,
    num_minibatches=p.num_minibatches,
    update_epochs=p.update_epochs,
    discount=p.discount,
    gae_lambda=p.gae_lambda,
    clip_eps=p.clip_eps,
    entropy_coef=p.entropy_coef,
    value_coef=p.value_coef,
    normalize_advantages=p.normalize_advantages,
    hidden_sizes=tuple(p.hidden_sizes),
    activation=p.activation,
    value_clip_eps=p.value_clip_eps,
  )


@dataclasses.dataclass(frozen=True)
class BaselineSettings:
  """Shape parameters of the baseline schedules (the initial rate is per run)."""

  step_every: float = 0.25  # step decay every this fraction of the run
  step_factor: float = 0.5
  exponential_final: float = 0.01  # final / initial rate
  cosine_final: float = 0.0  # final / initial rate
  greedy: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # schedulers.greedy_lr arguments

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "BaselineSettings":
    b = config.baselines
    return cls(
      step_every=float(b.step_every),
      step_factor=float(b.step_factor),
      exponential_final=float(b.exponential_final),
      cosine_final=float(b.cosine_final),
      greedy=dict(b.greedy),
    )


# ---------------------------------------------------------------------------
# Identical runs: the policy through the env, the baselines through one scan.
# ---------------------------------------------------------------------------


class Runs(NamedTuple):
  """Curves of vmapped NMF runs (leading axis: runs)."""

  loss: jax.Array  # [R, K + 1] full loss before each SGD step and after the last
  lr: jax.Array  # [R, K] the rate each step used (after the clip)
  eta_max: jax.Array  # [R, K] the stability bound at each step


def run_policy(
  env_config: nmf_env.NMFEnvConfig, act: Callable[[jax.Array], jax.Array], keys: jax.Array
) -> tuple[Runs, jax.Array]:
  """One episode per key through the env under `act(obs) -> action`, vmapped in one jit.

  Args:
    env_config: the environment (`nmf_env.make_nmf_config`).
    act: observation [6] -> int32 action; pure (e.g. the argmax of the policy logits).
    keys: [R] episode keys (`env_reset` splits each into problem, init and minibatch keys).

  Returns:
    The `Runs` and the actions, [R, num_decisions].
  """

  def episode(key):
    state, obs = nmf_env.env_reset(env_config, key)

    def decide(carry, _):
      state, obs = carry
      action = jnp.asarray(act(obs), jnp.int32)
      state, obs, _, _, trace = nmf_env.env_step_with_trace(env_config, state, action)
      return (state, obs), (trace, action)

    (state, _), (trace, actions) = jax.lax.scan(decide, (state, obs), None, length=env_config.num_decisions)
    runs = Runs(
      loss=jnp.append(trace.loss.reshape(-1), state.loss),
      lr=trace.lr.reshape(-1),
      eta_max=trace.eta_max.reshape(-1),
    )
    return runs, actions

  return jax.jit(jax.vmap(episode))(keys)


def make_baseline_runner(
  env_config: nmf_env.NMFEnvConfig, settings: BaselineSettings
) -> Callable[[jax.Array, jax.Array, jax.Array], Runs]:
  """A jitted `(kinds [R], fractions [R], keys [R]) -> Runs`: run r is schedule KINDS[kinds[r]]
  at η_0 = fractions[r] · η_max(0) on episode keys[r], vmapped over r.

  Each run replays `nmf.run_steps` as the env does (one key split per step,
  the exact bound at the current point, then a minibatch step) from
  `env_reset(env_config, key)`, so it is the identical run the policy gets;
  only the rate differs: the schedule's, clipped to clip_c · η_max at every
  step.  GreedyLR decides, before each step, on the minibatch loss of the
  batch that step uses (as `greedy_lr` in an optax chain per step).  The kind
  is a branch-free switch, so every baseline shares one compiled program.
  """
  num_steps = env_config.steps_per_decision * env_config.num_decisions
  batch_size = env_config.batch_size
  every = max(1, round(settings.step_every * num_steps))
  decay = settings.exponential_final ** (1.0 / num_steps)
  greedy = greedy_lr(**dict(settings.greedy))

  def one(kind, fraction, key):
    start, _ = nmf_env.env_reset(env_config, key)
    problem = start.problem
    n = problem.v.shape[1]
    base = fraction * start.eta_max_0
    schedules = (
      nmf.constant(base),
      nmf.step_decay(base, every=every, factor=settings.step_factor),
      nmf.exponential(base, rate=decay),
      nmf.cosine(base, num_steps=num_steps, final_fraction=settings.cosine_final),
      nmf.bound_fraction(env_config.clip_c),
    )

    def body(carry, step):
      factors, power, key, greedy_state = carry
      key, sub = jax.random.split(key)
      stats = nmf.exact_bound_stats(problem, factors, power, batch_size=batch_size, num_iters=env_config.power_iters)
      cols = nmf.sample_columns(sub, n, batch_size)
      _, greedy_state = greedy.update(jnp.zeros(()), greedy_state, value=nmf.minibatch_loss(problem, factors, cols))
      rates = [schedule(step, stats.eta_max) for schedule in schedules] + [base * greedy_state.scale]
      lr = nmf.clip_lr(jnp.stack(rates)[kind], stats.eta_max, env_config.clip_c)
      factors = nmf.sgd_step(problem, factors, cols, lr)
      return (factors, stats.power, key, greedy_state), (stats.loss, lr, stats.eta_max)

    carry = (start.factors, start.power, start.key, greedy.init(jnp.zeros(())))
    (factors, power, _, _), (losses, lrs, bounds) = jax.lax.scan(body, carry, jnp.arange(num_steps, dtype=jnp.int32))
    # The final loss as the env computes it.
    final = nmf.exact_bound_stats(problem, factors, power, batch_size=batch_size, num_iters=env_config.power_iters)
    return Runs(loss=jnp.append(losses, final.loss), lr=lrs, eta_max=bounds)

  batched = jax.jit(jax.vmap(one))
  return lambda kinds, fractions, keys: batched(
    jnp.asarray(kinds, jnp.int32), jnp.asarray(fractions, jnp.float32), keys
  )


def run_baselines(
  env_config: nmf_env.NMFEnvConfig,
  settings: BaselineSettings,
  kinds: Sequence[int] | jax.Array,
  fractions: Sequence[float] | jax.Array,
  keys: jax.Array,
) -> Runs:
  """`make_baseline_runner(env_config, settings)(kinds, fractions, keys)` (one compile per call)."""
  return make_baseline_runner(env_config, settings)(kinds, fractions, keys)


def _tile_keys(keys: jax.Array, reps: int) -> jax.Array:
  return jnp.tile(keys, (reps,) + (1,) * (keys.ndim - 1))


def _pad(kinds: np.ndarray, fractions: np.ndarray, keys: jax.Array, size: int):
  """Pads a run list to `size` runs (copies of the first run; their results are dropped)."""
  extra = size - kinds.shape[0]
  return (
    np.concatenate([kinds, np.repeat(kinds[:1], extra)]),
    np.concatenate([fractions, np.repeat(fractions[:1], extra)]),
    jnp.concatenate([keys, _tile_keys(keys[:1], extra)]),
  )


def _log_score(final_losses: np.ndarray) -> float:
  """Mean log final loss (lower is better); +inf if any run diverged."""
  x = np.asarray(final_losses, np.float64)
  if not np.all(np.isfinite(x) & (x > 0)):
    return math.inf
  return float(np.mean(np.log(x)))


def evaluate_task(
  env_config: nmf_env.NMFEnvConfig,
  act: Callable[[jax.Array], jax.Array],
  *,
  eval_keys: jax.Array,
  tuning_keys: jax.Array,
  lr_fractions: Sequence[float],
  settings: BaselineSettings,
  confidence: float = 0.95,
  tie_rtol: float = 1e-3,
) -> tuple[dict[str, Any], dict[str, Runs], np.ndarray]:
  """Tunes the baselines on `tuning_keys`, then runs the policy and every baseline on `eval_keys`.

  Returns:
    (summary, runs by method, the policy's actions [S, num_decisions]):
    the summary has 'methods' (per method: 'kind', 'fraction' (η_0 /
    η_max(0); None for the policy and `bound`), 'tuned', 'final_losses'),
    'tuning' (kind -> {fraction: geometric-mean final loss on the tuning
    episodes}) and 'comparison' (`compare.compare` rows, the policy the
    reference).
  """
  grid = [float(f) for f in lr_fractions]
  num_tuning, num_seeds = tuning_keys.shape[0], eval_keys.shape[0]
  names = list(BASELINES)
  # Tuning and evaluation runs are padded to one size: one compiled program for both.
  size = max(len(TUNED) * len(grid) * num_tuning, len(names) * num_seeds)
  runner = make_baseline_runner(env_config, settings)

  tune_kinds = np.repeat([KINDS.index(BASELINES[name]) for name in TUNED], len(grid) * num_tuning)
  tune_fracs = np.tile(np.repeat(grid, num_tuning), len(TUNED))
  tune_keys = _tile_keys(tuning_keys, len(TUNED) * len(grid))
  tuned_finals = np.asarray(runner(*_pad(tune_kinds, tune_fracs, tune_keys, size)).loss[: tune_kinds.size, -1])
  tuned_finals = tuned_finals.reshape(len(TUNED), len(grid), num_tuning)
  tuning, chosen = {}, {}
  for i, name in enumerate(TUNED):
    scores = [_log_score(tuned_finals[i, j]) for j in range(len(grid))]
    chosen[name] = grid[int(np.argmin(scores))]  # the first of equal scores: the smaller rate
    tuning[name] = {f"{f:g}": math.exp(s) if math.isfinite(s) else None for f, s in zip(grid, scores)}

  fractions = {name: chosen.get(name, 1.0) for name in BASELINES}
  fractions["constant_init"] = env_config.init_lr_fraction
  kinds = np.repeat([KINDS.index(BASELINES[name]) for name in names], num_seeds)
  fracs = np.repeat([fractions[name] for name in names], num_seeds)
  baseline_runs = jax.device_get(runner(*_pad(kinds, fracs, _tile_keys(eval_keys, len(names)), size)))
  policy_runs, actions = jax.device_get(run_policy(env_config, act, eval_keys))

  runs = {POLICY: Runs(*(np.asarray(x) for x in policy_runs))}
  for i, name in enumerate(names):
    runs[name] = Runs(*(np.asarray(x)[i * num_seeds : (i + 1) * num_seeds] for x in baseline_runs))
  finals = {name: r.loss[:, -1].astype(np.float64) for name, r in runs.items()}
  methods = {POLICY: {"kind": "learned", "fraction": None, "tuned": False, "final_losses": finals[POLICY].tolist()}}
  for name in names:
    methods[name] = {
      "kind": BASELINES[name],
      "fraction": None if name == "bound" else fractions[name],
      "tuned": name in TUNED,
      "final_losses": finals[name].tolist(),
    }
  summary = {
    "methods": methods,
    "tuning": tuning,
    "comparison": compare.compare(finals, POLICY, confidence=confidence, tie_rtol=tie_rtol),
  }
  return summary, runs, np.asarray(actions)


def _at_clip(runs: Runs, clip_c: float) -> float:
  """Fraction of SGD steps whose rate is the clip clip_c · η_max (within float32 rounding)."""
  with np.errstate(invalid="ignore"):
    hit = runs.lr >= clip_c * runs.eta_max * (1.0 - 1e-5)
  return float(np.mean(hit))


# ---------------------------------------------------------------------------
# The binary's entry point.
# ---------------------------------------------------------------------------


def _task_keys(seed: int, task_index: int, num: int) -> jax.Array:
  return jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), task_index), num)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) the agent, evaluates it on identical runs; returns the final metrics."""
  workdir = pathlib.Path(workdir)
  resolved = json.loads(config.to_json_best_effort())
  writer = jax.process_index() == 0
  log = print if writer else (lambda *args, **kwargs: None)
  results_path = workdir / RESULTS_FILE
  if results_path.is_file():
    stored = json.loads(results_path.read_text())
    if stored.get("config") == nmf_report.jsonable(resolved):
      log(f"{results_path} is up to date (computed from this config): nothing to do", flush=True)
      return stored["metrics"]

  env = nmf_env.make_nmf_env(**env_settings(config))
  t0 = time.time()
  agent_opt = optimizers.from_config(config.optimizer)
  agent, state = agent_lib.train_agent(
    env,
    ppo_config=ppo_config(config),
    optimizer=agent_opt.tx,
    observe=agent_opt.observe,
    learning_rate=agent_opt.learning_rate,
    num_iterations=config.num_iterations,
    iterations_per_chunk=config.iterations_per_chunk,
    seed=config.seed,
    workdir=workdir,
    keep_checkpoints=config.keep_checkpoints,
    log=log,
  )
  train_s = time.time() - t0
  params = state.params
  act = lambda obs: jnp.argmax(agent.policy_logits(params, obs), axis=-1).astype(jnp.int32)

  t0 = time.time()
  settings = BaselineSettings.from_config(config)
  env_configs = {"synthetic": nmf_env.make_nmf_config(**env_settings(config)), "digits": digits_env_config(config)}
  e = config.env
  digits = env_configs["digits"]
  titles = {"synthetic": "Synthetic held-out problems", "digits": "Digits NMF"}
  descriptions = {
    "synthetic": f"{config.eval.num_seeds} fresh {e.m}×{e.n} rank-{e.rank} problems (noise {e.noise:g}), each with"
    f" its own init and minibatch stream; minibatches of {e.batch_size} columns.",
    "digits": f"`nmf.digits_problem()`: V = pixels × images ({digits.m}×{digits.n}, pixels / 16), rank"
    f" {digits.rank}, minibatches of {digits.batch_size} images; {config.eval.num_seeds} held-out inits and"
    " minibatch streams (the agent was trained on synthetic problems only).",
  }
  tasks, runs_by_task = {}, {}
  for index, (name, env_config) in enumerate(env_configs.items()):
    log(f"evaluating on {name}: tuning {len(TUNED)} baselines, then {len(BASELINES) + 1} methods", flush=True)
    summary, runs, actions = evaluate_task(
      env_config,
      act,
      eval_keys=_task_keys(config.eval.seed, index, config.eval.num_seeds),
      tuning_keys=_task_keys(config.eval.tuning_seed, index, config.eval.num_tuning_seeds),
      lr_fractions=tuple(config.eval.lr_fractions),
      settings=settings,
      confidence=config.eval.confidence,
      tie_rtol=config.eval.tie_rtol,
    )
    spd = env_config.steps_per_decision
    for method, r in runs.items():
      summary["methods"][method]["at_clip"] = _at_clip(r, env_config.clip_c)
      summary["methods"][method]["geomean_loss_at_decisions"] = nmf_report.geomean_curve(r.loss)[::spd].tolist()
    counts = np.bincount(actions.reshape(-1), minlength=len(env_config.multipliers))
    tasks[name] = {
      "title": titles[name],
      "description": descriptions[name],
      "num_seeds": int(config.eval.num_seeds),
      "num_steps": int(env_config.steps_per_decision * env_config.num_decisions),
      **summary,
      "policy_action_counts": counts.tolist(),
      "policy_actions_seed0": actions[0].tolist(),
    }
    runs_by_task[name] = runs
  eval_s = time.time() - t0

  metrics = {"trained_iterations": int(state.iteration), "training_episodes": int(state.episodes)}
  for name, task in tasks.items():
    for row in task["comparison"]:
      if row["reference"]:
        metrics[f"{name}/policy_geomean_final_loss"] = row["geomean"]
      else:
        metrics[f"{name}/ratio_{row['method']}"] = row["ratio"]
  results = nmf_report.jsonable(
    {
      "config": resolved,
      "trained_iterations": int(state.iteration),
      "training_episodes": int(state.episodes),
      "tasks": tasks,
      "metrics": metrics,
    }
  )
  if writer:
    plot_dir = workdir / PLOTS_DIR
    plot_dir.mkdir(parents=True, exist_ok=True)
    for name, runs in runs_by_task.items():
      nmf_report.plot_task(plot_dir, name, titles[name], runs, env_configs[name].clip_c)
    nmf_report.plot_agent(plot_dir, metrics_lib.read_metrics(workdir))
    nmf_report.write_atomic(workdir / REPORT_FILE, nmf_report.report(results))
    nmf_report.write_atomic(results_path, json.dumps(results, indent=1, sort_keys=True))  # last: marks a finished run
    summary = " | ".join(
      f"{name}: policy geo-mean final loss {nmf_report.fmt(metrics[f'{name}/policy_geomean_final_loss'])},"
      f" bound / policy {nmf_report.fmt(metrics[f'{name}/ratio_bound'], '.3g')}"
      for name in tasks
    )
    log(
      f"outputs in {workdir}: {RESULTS_FILE}, {REPORT_FILE}, {PLOTS_DIR}/, metrics.jsonl, checkpoints/, config.json"
      f" (training {train_s:.0f} s, evaluation {eval_s:.0f} s) | {summary}",
      flush=True,
    )
  return results["metrics"]
