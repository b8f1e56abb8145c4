"""`train_and_evaluate(config, workdir)`: the `mql.main` binary's library.

1. Draws the task set from `config.task_seed` (independent of the run seed)
   and saves it to `workdir/tasks.json`; the checkpoints carry it too, and a
   resumed run checks that it has not changed.
2. Meta-trains (`mql.trainer`): `num_iterations` compiled iterations of
   vmapped env steps and TD3 updates, logged every `log_every` iterations to
   `metrics.jsonl` / TensorBoard (return vs env steps, losses, learning
   rates), checkpointed (the whole `TrainState`: networks, optimizers, envs,
   replay, counters, keys) every `checkpoint_every` iterations.
3. Every `eval_every` iterations and at the end, adapts to every test task
   at once (`mql.adaptation`, one vmapped program) and logs the returns
   before adaptation, after its stage 1 and after it (the same K episodes).
4. Writes `results.json` (per-task returns of the final evaluation and the
   summaries) and PNG plots: learning curve, losses and rates, adaptation.

A killed run resumes from its last checkpoint and ends identically, metrics
included (lines after the checkpoint are dropped and recomputed).  With more
than one device the env slots and replay are sharded over `common.sharding`'s
data mesh and the TD3 batches split along it; parameters are replicated.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from common import app, checkpoint, sharding
from common import metrics as metrics_lib
from mql import adaptation, envs, networks, trainer
from mql.configs import default as default_config
from schedulers import optimizers

DEFAULT_CONFIG = default_config.__file__
# Fields that leave the compiled programs alone.
_SCHEDULE_FIELDS = ("num_iterations", "eval_every", "log_every", "checkpoint_every", "keep_checkpoints", "nonfinite")
# Adaptation is a pure function of a meta-training checkpoint, so its settings
# may change on resume (recorded in config_history.jsonl; results.json is the
# last evaluation's, with the config.json of that run); this also lets
# workdirs written before a new adaptation field was added resume.
RESUMABLE_FIELDS = _SCHEDULE_FIELDS + ("adaptation",)
NONFINITE_POLICIES = ("skip", "stop")


class NonFiniteError(RuntimeError):
  """Raised under `nonfinite='stop'` when an update had a NaN/Inf loss, gradient or parameter."""


def _positive_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field (nothing is compiled)."""
  app.check_known_fields(config, default_config.get_config(f"{config.family}-smoke" if _known(config) else None))
  app.check(config, "family", lambda v: v in envs.FAMILIES, f"must be one of {', '.join(envs.FAMILIES)}")
  for field in ("num_train_tasks", "num_test_tasks", "episode_length", "num_envs", "num_iterations"):
    app.check(config, field, _positive_int, "must be an integer >= 1")
  for field in ("eval_every", "log_every", "checkpoint_every", "keep_checkpoints"):
    app.check(config, field, _positive_int, "must be an integer >= 1")
  app.check(config, "network.history_length", _positive_int, "must be an integer >= 1 (H, the context window)")
  app.check(config, "network.context_size", _positive_int, "must be an integer >= 1")
  app.check(
    config, "network.hidden_sizes", lambda v: len(v) >= 1 and all(_positive_int(h) for h in v), "must be positive ints"
  )
  app.check(config, "nonfinite", lambda v: v in NONFINITE_POLICIES, f"must be one of {NONFINITE_POLICIES}")
  app.check(config, "num_train_tasks", lambda v: v <= 32767, "must be <= 32767 (task ids are stored as int16)")
  optimizers.check_optimizer_config(config, "optimizer")
  devices = jax.device_count()
  for field in ("num_envs", "td3.batch_size", "adaptation.stage2_batch_size"):
    app.check(config, field, lambda v: v % devices == 0, f"must be divisible by the device count ({devices})")
  try:
    settings = _td3_settings(config)
  except ValueError as e:
    raise app.ConfigError(f"td3.{str(e).split(' ')[0]}", str(e)) from None
  try:
    _adaptation_settings(config)
  except ValueError as e:
    raise app.ConfigError(f"adaptation.{str(e).split(' ')[0]}", str(e)) from None
  per_slot = settings.replay_size // config.num_envs
  app.check(
    config,
    "td3.replay_size",
    lambda v: per_slot > config.network.history_length,
    f"leaves {per_slot} steps per env slot (replay_size // num_envs), need more than network.history_length",
  )
  app.check(
    config,
    "td3.snapshot_size",
    lambda v: v <= per_slot * config.num_envs,
    "must not exceed the replay capacity",
  )
  family = envs.FAMILIES[config.family]
  if family.env_class.__name__ in ("CheetahDir", "AntDir"):
    app.check(config, "num_train_tasks", lambda v: v <= 2, f"{config.family} has 2 tasks (directions); got more")
    app.check(config, "num_test_tasks", lambda v: v <= 2, f"{config.family} has 2 tasks (directions); got more")


def _known(config) -> bool:
  return isinstance(config.get("family"), str) and config.family in default_config.ORIGINAL


def _td3_settings(config) -> trainer.TD3Settings:
  return trainer.TD3Settings(**config.td3.to_dict())


def _adaptation_settings(config) -> adaptation.AdaptationSettings:
  return adaptation.AdaptationSettings(**config.adaptation.to_dict(), greedy=config.optimizer.greedy.to_dict())


_BUILT: dict[str, tuple] = {}


def build(config: ml_collections.ConfigDict, mesh=None):
  """The run's task set, networks, trainer and adapter.

  Cached per process on the fields they depend on (everything but the
  resumable fields and the seed), so repeated runs in one process (resumes,
  sweeps over seeds, tests) reuse the compiled programs.
  """
  fields = {k: v for k, v in config.to_dict().items() if k not in _SCHEDULE_FIELDS and k != "seed"}
  key = json.dumps(fields, sort_keys=True, default=str) + f"|{None if mesh is None else mesh.size}"
  if key not in _BUILT:
    _BUILT[key] = _build(config, mesh)
  return _BUILT[key]


def _build(config: ml_collections.ConfigDict, mesh):
  task_set = envs.sample_tasks(config.family, config.task_seed, config.num_train_tasks, config.num_test_tasks)
  env = envs.make(
    config.family, task_set=task_set, split="train", batch_size=config.num_envs, episode_length=config.episode_length
  )
  eval_env = envs.make(config.family, task_set=task_set, split="test", episode_length=config.episode_length)
  base = env.env
  nets = networks.make_networks(
    base.observation_size,
    base.action_size,
    hidden_sizes=tuple(config.network.hidden_sizes),
    context_size=config.network.context_size,
    history_length=config.network.history_length,
    use_context=config.use_context,
  )
  settings = _td3_settings(config)
  actor_opt, critic_opt = optimizers.from_config(config.optimizer), optimizers.from_config(config.optimizer)
  meta = trainer.make_trainer(env, nets, settings, actor_opt, critic_opt, eval_env=eval_env, mesh=mesh)
  adapter = adaptation.make_adapter(
    eval_env,
    nets,
    settings,
    _adaptation_settings(config),
    num_train_tasks=config.num_train_tasks,
    meta_optimizers=(actor_opt, critic_opt),
  )
  return task_set, nets, meta, adapter


def _eval_row(results: dict) -> dict[str, float]:
  return {f"eval/{k}": v for k, v in adaptation.summarize(results).items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Meta-trains (or resumes), evaluates adaptation on the test tasks, writes results; returns the summary."""
  workdir = pathlib.Path(workdir)
  mesh = sharding.data_mesh() if jax.device_count() > 1 else None
  task_set, _, meta, adapter = build(config, mesh)
  lead = jax.process_index() == 0
  if lead:
    workdir.mkdir(parents=True, exist_ok=True)
  tasks_path = workdir / "tasks.json"
  if lead and not tasks_path.exists():
    task_set.save(tasks_path)

  state = meta.init(jax.random.key(config.seed))
  eval_key = jax.random.key(config.seed + 1_000_003)  # evaluations: fixed keys, independent of training's
  tasks = {"train": np.asarray(task_set.train), "test": np.asarray(task_set.test)}
  per_iteration = config.num_envs * config.td3.steps_per_iteration

  final = None
  with checkpoint.Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints) as ckpt:
    restored, restored_step = ckpt.restore_latest({"state": state, "tasks": tasks})
    if restored is not None:
      for split in ("train", "test"):
        if not np.array_equal(np.asarray(restored["tasks"][split]), tasks[split]):
          raise checkpoint.CheckpointRestoreError(f"the checkpoint's {split} tasks differ from this run's task set")
      state = restored["state"]
      if lead:
        print(f"resuming from iteration {restored_step} of {config.num_iterations}", flush=True)
    state = meta.place(state)
    iteration = int(state.env_steps) // per_iteration
    with metrics_lib.MetricWriter(
      workdir, total_steps=config.num_iterations, resume_step=restored_step, progress_lines=10
    ) as writer:
      window = []
      while iteration < config.num_iterations:
        state, m = meta.iteration(state)
        iteration += 1
        window.append(m)
        if iteration % config.log_every == 0 or iteration == config.num_iterations:
          writer.write(iteration, _mean_metrics(jax.device_get(window)))
          window = []
          if config.nonfinite == "stop" and int(state.critic_nonfinite) + int(state.actor_nonfinite) > 0:
            writer.flush()
            raise NonFiniteError(
              f"iteration {iteration}: {int(state.critic_nonfinite)} critic and {int(state.actor_nonfinite)} actor "
              "updates had NaN/Inf values (config.nonfinite='stop')"
            )
        if iteration % config.eval_every == 0 or iteration == config.num_iterations:
          results = jax.device_get(adapter.adapt_all(state, jax.random.fold_in(eval_key, iteration)))
          writer.write(iteration, _eval_row(results))
          final = (iteration, results)
        if iteration % config.checkpoint_every == 0 or iteration == config.num_iterations:
          writer.flush()
          ckpt.save(iteration, {"state": state, "tasks": tasks}, force=True)
    if final is None or final[0] != iteration:  # a finished run re-run: evaluate again (deterministic)
      final = (iteration, jax.device_get(adapter.adapt_all(state, jax.random.fold_in(eval_key, iteration))))

  summary = adaptation.summarize(final[1])
  summary.update(
    env_steps=int(state.env_steps),
    updates=int(state.updates),
    # Effective update-to-data ratio of the whole run, and of the part after the first update.
    updates_per_transition=int(state.updates) / max(int(state.env_steps), 1),
    updates_per_transition_after_start=int(state.updates)
    / max(int(state.env_steps) - _td3_settings(config).first_update_step, 1),
    critic_nonfinite=int(state.critic_nonfinite),
    actor_nonfinite=int(state.actor_nonfinite),
  )
  if lead:
    write_outputs(workdir, config, final[1], summary)
    print(
      f"outputs in {workdir}: results.json, metrics.jsonl, plots/, tensorboard/, checkpoints/, tasks.json | "
      f"{config.family}: test return before adaptation {summary['return_before_mql']:.2f}, "
      f"after {summary['return_after_mql']:.2f} (MQL protocol), env steps {summary['env_steps']}",
      flush=True,
    )
  return summary


def _mean_metrics(window: list[dict]) -> dict[str, float]:
  """Means over logged iterations; `episode_return` weighted by finished episodes; counters from the last."""
  last = window[-1]
  row = {}
  for key in last:
    values = np.asarray([w[key] for w in window], np.float64)
    if key in ("env_steps", "updates", "actor_updates", "critic_nonfinite", "actor_nonfinite"):
      row[key] = float(values[-1])
    elif key == "episode_return":
      counts = np.asarray([w["finished_episodes"] for w in window], np.float64)
      ok = np.isfinite(values) & (counts > 0)
      row[key] = float((values[ok] * counts[ok]).sum() / counts[ok].sum()) if ok.any() else float("nan")
    elif key == "finished_episodes":
      row[key] = float(values.sum())
    else:
      finite = values[np.isfinite(values)]
      row[key] = float(finite.mean()) if finite.size else float("nan")
  return row


def write_outputs(workdir: pathlib.Path, config, results: dict, summary: dict) -> None:
  """results.json (per-task returns, summary) and plots/ (curves and the adaptation scatter)."""
  per_task = {k: np.asarray(v).tolist() for k, v in results.items()}
  payload = {"family": config.family, "seed": config.seed, "use_context": config.use_context, "summary": summary}
  payload["per_task"] = per_task
  (workdir / "results.json").write_text(json.dumps(payload, indent=1, allow_nan=True) + "\n")
  plots = workdir / "plots"
  metrics_lib.plot_metrics(workdir, out_dir=plots, loss_label="TD3 loss")
  plot_learning_curve(metrics_lib.read_metrics(workdir), plots / "return.png", config.family)
  plot_adaptation(results, plots / "adaptation.png", config.family)


def plot_learning_curve(rows: list[dict], path: pathlib.Path, family: str) -> None:
  """Training episode return and evaluation returns (before/after adaptation) vs env steps."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  steps_of = {}
  train = [(r["env_steps"], r["episode_return"]) for r in rows if r.get("episode_return") is not None]
  for r in rows:
    if "env_steps" in r:
      steps_of[r["step"]] = r["env_steps"]
  fig, ax = plt.subplots(figsize=(6, 4))
  if train:
    ax.plot(*zip(*train), label="training episodes (exploration noise)", color="0.6")
  for key, label in (("eval/return_before_mql", "test tasks, before adaptation"), ("eval/return_after_mql", "after")):
    pts = [(steps_of.get(r["step"]), r[key]) for r in rows if key in r and r[key] is not None]
    pts = [p for p in pts if p[0] is not None]
    if pts:
      ax.plot(*zip(*pts), marker="o", label=label)
  ax.set_xlabel("env steps (all slots)")
  ax.set_ylabel("episode return")
  ax.set_title(f"MQL on {family}")
  ax.legend()
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_adaptation(results: dict, path: pathlib.Path, family: str) -> None:
  """Per test task: mean return after adaptation against before (points above the diagonal gained)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  before = np.asarray(results["before"]).mean(axis=1)
  after = np.asarray(results["after"]).mean(axis=1)
  fig, ax = plt.subplots(figsize=(4.5, 4.5))
  ax.scatter(before, after)
  lo, hi = float(min(before.min(), after.min())), float(max(before.max(), after.max()))
  ax.plot([lo, hi], [lo, hi], color="0.5", linestyle="--", label="no change")
  ax.set_xlabel("return before adaptation")
  ax.set_ylabel("return after adaptation")
  ax.set_title(f"{family}: {before.size} test tasks")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
