"""Learned SGD learning-rate schedules for a digits MLP: train a PPO agent, export it, compare it.

`train_and_evaluate(config, workdir)`:

1. trains a PPO agent in `dnn_env` (resumable, `agent.train_agent`);
2. exports its actor as a `policy.Policy` (`workdir/policy`, orbax weights +
   JSON spec), the object `schedulers.learned_schedule` deploys;
3. scores, on `eval.num_seeds` held-out runs (keys disjoint from training's;
   every method sees the same init and data order of run i), the deployed
   transform against count-driven schedules (constant, step, exponential,
   cosine at the env's base rate), GreedyLR (per step, the repository's
   default block) and an equally expensive grid search: as many whole
   training runs as the agent consumed (episodes of PPO training), spread
   over base rate x schedule shape, scored on the validation split, best
   config re-run on the held-out runs;
4. writes `results.json`, `results.md` (paired geometric-mean ratios of the
   test loss with confidence intervals, `compare`) and schedule / loss plots.

Evaluation is deterministic: re-running a finished workdir re-evaluates to
the same numbers.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import app, ppo
from schedulers import optimizers
from schedulers.greedy_lr import greedy_lr
from schedulers.learned import agent, compare, dnn_env, transform
from schedulers.learned import policy as policy_lib
from schedulers.learned.configs import dnn as default_config

DEFAULT_CONFIG = default_config.__file__
RESUMABLE_FIELDS = ("num_iterations", "iterations_per_chunk", "keep_checkpoints")
FAMILIES = ("constant", "step", "exponential", "cosine")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field."""
  app.check_known_fields(config, default_config.get_config())
  positive_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1
  for field in ("num_iterations", "iterations_per_chunk", "keep_checkpoints", "eval.num_seeds"):
    app.check(config, field, positive_int, "must be an integer >= 1")
  app.check(config, "eval.num_seeds", lambda v: v >= 2, "must be >= 2 (paired intervals)")
  app.check(
    config,
    "num_iterations",
    lambda v: v % config.iterations_per_chunk == 0,
    f"must be a multiple of iterations_per_chunk ({config.iterations_per_chunk})",
  )
  app.check(config, "eval.grid_multipliers", lambda v: len(v) >= 1 and all(m > 0 for m in v), "must be positive")
  app.check(
    config, "eval.grid_families", lambda v: len(v) >= 1 and all(f in FAMILIES for f in v), f"must be among {FAMILIES}"
  )
  app.check(config, "eval.step_every", lambda v: 0 < v <= 1, "must be in (0, 1]")
  app.check(config, "eval.exponential_final", lambda v: 0 < v <= 1, "must be in (0, 1]")
  app.check(config, "eval.confidence", lambda v: 0 < v < 1, "must be in (0, 1)")
  for name in config.ppo:
    try:
      ppo.PPOConfig(**{name: config.ppo[name]})
    except (ValueError, TypeError) as e:
      raise app.ConfigError(f"ppo.{name}", str(e)) from None
  try:
    ppo.PPOConfig(**dict(config.ppo))
  except ValueError as e:
    raise app.ConfigError("ppo.num_minibatches", str(e)) from None
  for name in config.env:
    try:
      dnn_env.validate_task_args(**{**_env_kwargs(default_config.get_config()), name: config.env[name]})
    except (ValueError, TypeError) as e:
      raise app.ConfigError(f"env.{name}", str(e).removeprefix("make_dnn_env: ")) from None
  try:
    dnn_env.validate_task_args(**_env_kwargs(config))
  except ValueError as e:
    raise app.ConfigError("env.initial_lr", str(e).removeprefix("make_dnn_env: ")) from None
  optimizers.check_optimizer_config(config, "agent_optimizer")


def _env_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  env = config.env.to_dict()
  for name in ("hidden_sizes", "multipliers", "lr_bounds"):
    env[name] = tuple(env[name])
  return env


def _schedule_tail(family: jax.Array, multiplier: jax.Array, total_steps: int, step_every: float, final: float):
  """`scale_by_schedule` for one (shape, base-rate multiplier); traced arrays, so grids vmap.

  Not `baselines.make_schedule`: that picks its shape by a Python string (one
  program per shape) and its step decay is the study's fixed x0.1 at 1/2 and
  3/4 of the budget; here the shape is a traced index (the whole grid is one
  vmapped program) and step decay / exponential end are config fields.
  """

  def scale(count):
    frac = jnp.minimum(count / total_steps, 1.0)
    shapes = jnp.stack(
      [
        jnp.ones_like(frac),
        0.5 ** jnp.floor(frac / step_every),
        final**frac,
        0.5 * (1.0 + jnp.cos(jnp.pi * frac)),
      ]
    )
    return multiplier * shapes[family]

  return optax.scale_by_schedule(scale)


def _greedy_block() -> dict[str, Any]:
  """The repository's default GreedyLR arguments (`optimizers.optimizer_config`)."""
  return dict(optimizers.optimizer_config(objective="supervised").greedy)


def _keys(seed: int, n: int) -> jax.Array:
  return jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(jnp.arange(n))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) the agent, exports the policy, evaluates it; returns the headline metrics."""
  workdir = pathlib.Path(workdir)
  task = dnn_env.make_dnn_task(**_env_kwargs(config))
  ppo_config = ppo.PPOConfig(**{**config.ppo.to_dict(), "hidden_sizes": tuple(config.ppo.hidden_sizes)})
  agent_opt = optimizers.from_config(config.agent_optimizer)
  _, state = agent.train_agent(
    task.env,
    ppo_config=ppo_config,
    optimizer=agent_opt.tx,
    observe=agent_opt.observe,
    learning_rate=agent_opt.learning_rate,
    num_iterations=config.num_iterations,
    iterations_per_chunk=config.iterations_per_chunk,
    seed=config.seed,
    workdir=workdir,
    keep_checkpoints=config.keep_checkpoints,
  )
  policy = policy_lib.from_ppo(
    jax.device_get(state.params.policy),
    hidden_sizes=ppo_config.hidden_sizes,
    activation=ppo_config.activation,
    controller=task.controller,
  )
  if jax.process_index() == 0:
    policy_lib.save_policy(workdir / "policy", policy)

  results = evaluate(config, task, policy)
  results["agent"] = {
    "iterations": int(state.iteration),
    "episodes": int(state.episodes),
    "last_episode_return": float(state.last_episode_return),
  }
  if jax.process_index() == 0:
    write_outputs(workdir, results)
    test = {row["method"]: row for row in results["rows"]}
    print(
      f"outputs in {workdir}: results.md, results.json, plots/, policy/, metrics.jsonl, checkpoints/ | "
      f"test loss learned {test['learned']['mean']:.4f}, grid search {test['grid_search']['mean']:.4f}, "
      f"constant {test['constant']['mean']:.4f}",
      flush=True,
    )
  return {f"test_loss/{row['method']}": row["mean"] for row in results["rows"]}


def evaluate(config: ml_collections.ConfigDict, task: dnn_env.DNNTask, policy: policy_lib.Policy) -> dict[str, Any]:
  """Every method on the same held-out runs; the grid search on its own runs, at the agent's cost."""
  ev = config.eval
  total_steps = (task.num_decisions + 1) * task.controller.decision_interval
  families = {name: i for i, name in enumerate(FAMILIES)}

  def scheduled_run(key, family, multiplier):
    tail = _schedule_tail(family, multiplier, total_steps, ev.step_every, ev.exponential_final)
    return task.run_tail(key, tail)

  # One compiled function for every count-driven schedule (baselines, grid, grid winner).
  scheduled = jax.jit(jax.vmap(scheduled_run))
  eval_keys = _keys(ev.seed, ev.num_seeds)
  n = ev.num_seeds

  def run_schedule(family: str, multiplier: float = 1.0):
    fams = jnp.full((n,), families[family], jnp.int32)
    return jax.device_get(scheduled(eval_keys, fams, jnp.full((n,), multiplier, jnp.float32)))

  records = {}
  for name, tail in (("learned", transform.learned_schedule(policy)), ("greedy_lr", greedy_lr(**_greedy_block()))):
    records[name] = jax.device_get(jax.jit(jax.vmap(lambda key, tail=tail: task.run_tail(key, tail)))(eval_keys))
  for family in FAMILIES:
    records[family] = run_schedule(family)

  # Grid search at the agent's cost: one whole run per PPO training episode.
  episodes = config.num_iterations * config.ppo.num_envs * config.ppo.unroll_length // task.num_decisions
  grid = [(f, m) for f in ev.grid_families for m in ev.grid_multipliers]
  grid_seeds = max(1, episodes // len(grid))
  grid_family = jnp.asarray([families[f] for f, _ in grid for _ in range(grid_seeds)], jnp.int32)
  grid_mult = jnp.asarray([m for _, m in grid for _ in range(grid_seeds)], jnp.float32)
  grid_keys = jnp.tile(_keys(ev.grid_seed, grid_seeds), (len(grid), 1))
  grid_records = scheduled(grid_keys, grid_family, grid_mult)
  grid_val = np.asarray(grid_records.val_losses[:, -1]).reshape(len(grid), grid_seeds)
  grid_mean = grid_val.mean(axis=1)
  best_family, best_mult = grid[int(np.argmin(grid_mean))]
  records["grid_search"] = run_schedule(best_family, best_mult)
  order = ("learned", *FAMILIES, "greedy_lr", "grid_search")
  records = {name: records[name] for name in order}

  test_losses = {name: np.asarray(r.test_loss, np.float64) for name, r in records.items()}
  rows = compare.compare(test_losses, "learned", confidence=ev.confidence)
  val_losses = {name: np.asarray(r.val_losses[:, -1], np.float64) for name, r in records.items()}
  val_rows = compare.compare(val_losses, "learned", confidence=ev.confidence)
  return {
    "rows": rows,
    "val_rows": val_rows,
    "confidence": ev.confidence,
    "num_seeds": ev.num_seeds,
    "grid": {
      "configs": [{"family": f, "multiplier": m, "mean_val_loss": float(v)} for (f, m), v in zip(grid, grid_mean)],
      "seeds_per_config": grid_seeds,
      "runs": grid_seeds * len(grid),
      "agent_episodes": episodes,
      "best": {"family": best_family, "multiplier": best_mult, "lr": best_mult * task.initial_lr},
    },
    "initial_lr": task.initial_lr,
    "steps_per_run": total_steps,
    "curves": {
      name: {
        "lr_seed0": np.asarray(r.lrs[0]).tolist(),
        "val_loss_mean": np.asarray(r.val_losses).mean(axis=0).tolist(),
        "nonfinite_updates": int(np.asarray(r.nonfinite_updates).sum()),
      }
      for name, r in records.items()
    },
  }


def report(results: dict[str, Any]) -> str:
  """results.md from the evaluation summary (also re-renders a committed results.json)."""
  level = int(round(100 * results["confidence"]))
  best = results["grid"]["best"]
  lines = [
    f"Test loss (cross-entropy) on {results['num_seeds']} held-out runs, paired (same init and data order);"
    f" ratio = geometric mean of method / learned, {level}% CI; wins/ties/losses of the learned schedule.",
    "",
    compare.markdown_table(results["rows"], confidence=results["confidence"]),
    "",
    f"Grid search: {results['grid']['runs']} runs ({results['grid']['seeds_per_config']} per config, as many as the"
    f" agent's {results['grid']['agent_episodes']} training episodes), best by validation loss: {best['family']}"
    f" at lr {best['lr']:.4g}. Base rate of every other method: {results['initial_lr']:.4g}.",
    "",
  ]
  return "\n".join(lines)


def write_outputs(workdir: pathlib.Path, results: dict[str, Any]) -> None:
  """`results.json`, `results.md` and `plots/{schedules,val_loss}.png`."""
  (workdir / "results.md").write_text(report(results))
  tmp = workdir / "results.json.tmp"
  tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
  tmp.replace(workdir / "results.json")
  plot(workdir / "plots", results)


def plot(directory: pathlib.Path, results: dict[str, Any]) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  directory.mkdir(parents=True, exist_ok=True)
  curves = results["curves"]
  fig, ax = plt.subplots(figsize=(7, 4))
  for name, curve in curves.items():
    ax.plot(curve["lr_seed0"], label=name, lw=2.0 if name == "learned" else 1.2)
  ax.set_yscale("log")
  ax.set_xlabel("SGD step")
  ax.set_ylabel("learning rate")
  ax.set_title("Learning-rate schedules on held-out run 0")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(directory / "schedules.png", dpi=120)
  plt.close(fig)
  fig, ax = plt.subplots(figsize=(7, 4))
  steps = results["steps_per_run"] // len(next(iter(curves.values()))["val_loss_mean"])
  for name, curve in curves.items():
    x = steps * (1 + np.arange(len(curve["val_loss_mean"])))
    ax.plot(x, curve["val_loss_mean"], label=name, lw=2.0 if name == "learned" else 1.2)
  ax.set_yscale("log")
  ax.set_xlabel("SGD step")
  ax.set_ylabel("validation loss (mean over held-out runs)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(directory / "val_loss.png", dpi=120)
  plt.close(fig)
