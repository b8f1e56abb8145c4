"""Benchmarks of the MQL package, each against a named peer in the same run.

  python -m mql.benchmark [--sections=throughput,replay,adaptation] [--family=point-robot] [--num_envs=16]

* throughput: meta-training env steps and gradient updates per second of
  `mql.trainer` against brax.training's SAC (`brax.training.agents.sac`) on
  the same env (the family's bare task env, tasks drawn at reset), with the
  same number of envs, batch size, updates per env step and 300-300 networks.
  Our multi-task TD3 without context (goal >= 1.0x) and MQL's TD3 with GRU
  contexts (ratio, plus a profile: acting step vs updates, and the critic /
  actor gradient of one batch with and without contexts).  Brax reports its
  own `training/sps` (training epochs only, evaluation excluded); ours is the
  median of timed iterations after a warm-up (compile) call.  SAC updates the
  actor and temperature at every step, TD3 the actor every `policy_delay`-th:
  the same update ratio is not the same work, which the ratio includes.
  brax 0.14's SAC needs `jax.device_put_replicated` (removed in jax 0.10):
  with a newer jax the peer is skipped with one line saying so, and ours is
  timed alone.
* replay: bytes per stored transition of `mql.replay` (1e6 steps over 128
  envs, the family's snapshot, H and sizes) against the original code's
  layout, which stores both padded histories in every row (goal <= 0.1x).
* adaptation: adapting every test task in one vmapped program
  (`Adapter.adapt_all`) against a Python loop over the tasks calling the
  same compiled single-task program (`Adapter.adapt_one`) (goal >= 10x).
"""

from __future__ import annotations

import functools
import importlib.metadata
import statistics
import time
import warnings

import jax
from absl import flags

from common import app
from mql import adaptation, envs, networks, replay, trainer
from mql.configs import default as default_config

_SECTIONS = flags.DEFINE_list("sections", ["throughput", "replay", "adaptation"], "Which benchmarks to run.")
_FAMILY = flags.DEFINE_string("family", "point-robot", "Task family of the throughput and adaptation sections.")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 16, "Vmapped envs (both learners).")
_BATCH = flags.DEFINE_integer("batch_size", 256, "TD3 / SAC batch.")
_UPDATES = flags.DEFINE_integer("updates_per_step", 4, "Gradient updates per vmapped env step (both learners).")
_STEPS = flags.DEFINE_integer("steps_per_iteration", 20, "Vmapped env steps per timed call.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per measurement (median).")
_TEST_TASKS = flags.DEFINE_integer("test_tasks", 10, "Test tasks adapted in the adaptation section.")


def _median_time(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _our_throughput(family: str, use_context: bool) -> dict:
  o = default_config.ORIGINAL[family]
  task_set = envs.sample_tasks(family, 0)
  env = envs.make(family, task_set=task_set, split="train", batch_size=_NUM_ENVS.value)
  base = env.env
  nets = networks.make_networks(
    base.observation_size,
    base.action_size,
    context_size=o["context_size"],
    history_length=o["history_length"],
    use_context=use_context,
  )
  settings = trainer.TD3Settings(
    batch_size=_BATCH.value,
    start_steps=0,
    steps_per_iteration=_STEPS.value,
    update_ratio=_UPDATES.value / _NUM_ENVS.value,  # the same count at every step
    replay_size=_NUM_ENVS.value * 2000,
  )
  meta = trainer.make_trainer(env, nets, settings)
  state = meta.init(jax.random.key(0))
  state, _ = meta.iteration(state)  # compile, and fill the replay a little
  holder = {"state": state}

  def call():
    holder["state"], m = meta.iteration(holder["state"])
    return m

  seconds = _median_time(call, _REPEATS.value)
  env_steps = _NUM_ENVS.value * _STEPS.value
  result = {"env_steps_per_s": env_steps / seconds, "updates_per_s": _STEPS.value * _UPDATES.value / seconds}

  # Profile: one acting step (policy + env + replay add) and one batch's gradients.
  state = holder["state"]
  act = _median_time(lambda: meta.act_step(state).env_steps, _REPEATS.value)
  td3 = trainer.mql_losses.make_losses(nets)
  batch = jax.jit(lambda s, k: replay.sample(s.replay, k, _BATCH.value, nets.history_length))(state, jax.random.key(1))
  critic = jax.jit(jax.grad(lambda p: td3.critic_loss(p, state.target_params, batch, jax.random.key(2))[0]))
  actor = jax.jit(jax.grad(lambda p: td3.actor_loss(p, batch)[0]))
  critic(state.params), actor(state.params)
  result["act_step_ms"] = 1e3 * act
  result["critic_grad_ms"] = 1e3 * _median_time(lambda: critic(state.params), _REPEATS.value)
  result["actor_grad_ms"] = 1e3 * _median_time(lambda: actor(state.params), _REPEATS.value)
  return result


def brax_sac_unsupported() -> str | None:
  """Why brax.training's SAC cannot run with the installed jax (None: it can).

  brax 0.14's training agents replicate their state with
  `jax.device_put_replicated`, which jax 0.10 removed; `brax.envs` (all the
  runtime uses) works with either.
  """
  with warnings.catch_warnings():  # jax 0.8-0.9: present, deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    if hasattr(jax, "device_put_replicated"):
      return None
  try:
    brax_version = importlib.metadata.version("brax")
  except importlib.metadata.PackageNotFoundError:
    brax_version = "?"
  return f"brax {brax_version}'s SAC calls jax.device_put_replicated, which jax {jax.__version__} no longer has"


def _brax_sac_throughput(family: str) -> dict:
  from brax.training.agents.sac import networks as sac_networks
  from brax.training.agents.sac import train as sac

  spec = envs.FAMILIES[family]
  env = envs.make_task_env(family)  # reset draws a task; brax wraps it for training
  seen = {}

  def progress(step, metrics):
    seen.update(metrics)
    seen["steps"] = step

  epoch_steps = _NUM_ENVS.value * _STEPS.value
  sac.train(
    environment=env,
    num_timesteps=epoch_steps * (2 + _REPEATS.value) + 2 * _BATCH.value,
    episode_length=spec.episode_length,
    num_envs=_NUM_ENVS.value,
    num_eval_envs=_NUM_ENVS.value,
    batch_size=_BATCH.value,
    grad_updates_per_step=_UPDATES.value,
    min_replay_size=2 * _BATCH.value,
    max_replay_size=_NUM_ENVS.value * 2000,
    num_evals=2 + _REPEATS.value,
    network_factory=functools.partial(sac_networks.make_sac_networks, hidden_layer_sizes=(300, 300)),
    progress_fn=progress,
  )
  sps = float(seen["training/sps"])
  return {"env_steps_per_s": sps, "updates_per_s": sps / _NUM_ENVS.value * _UPDATES.value}


def throughput() -> None:
  family = _FAMILY.value
  print(
    f"== throughput: {family}, {_NUM_ENVS.value} envs, batch {_BATCH.value}, "
    f"{_UPDATES.value} updates per vmapped step, 300-300 networks"
  )
  skipped = brax_sac_unsupported()
  if skipped:
    peer = None
    print(f"brax SAC (peer):      skipped: {skipped}")
  else:
    peer = _brax_sac_throughput(family)
    print(f"brax SAC (peer):      {peer['env_steps_per_s']:10.0f} env steps/s {peer['updates_per_s']:8.1f} updates/s")
  for label, use_context in (("TD3, no context", False), ("MQL TD3 + GRU", True)):
    ours = _our_throughput(family, use_context)
    ratio = "  n/a" if peer is None else f"{ours['env_steps_per_s'] / peer['env_steps_per_s']:5.2f}x"
    print(
      f"{label:20s}  {ours['env_steps_per_s']:10.0f} env steps/s {ours['updates_per_s']:8.1f} updates/s  "
      f"{ratio} brax SAC | profile: act step {ours['act_step_ms']:.2f} ms, critic grad "
      f"{ours['critic_grad_ms']:.2f} ms, actor grad {ours['actor_grad_ms']:.2f} ms"
    )


def replay_bytes() -> None:
  print("== replay: bytes per transition, 1e6 steps over 128 envs, against the original layout")
  for family in default_config.FAMILY_NAMES:
    o, spec = default_config.ORIGINAL[family], envs.FAMILIES[family]
    env = envs.make_task_env(family)
    obs, act = env.observation_size, env.action_size
    shape = jax.eval_shape(
      functools.partial(replay.init, 128, 1_000_000 // 128, obs, act, spec.num_train, o["snapshot"])
    )
    ours = replay.bytes_per_transition(shape)
    original = replay.original_bytes_per_transition(obs, act, o["history_length"])
    print(
      f"{family:14s} S={obs:3d} A={act:2d} H={o['history_length']:2d}: {ours:7.1f} B vs {original:6d} B = "
      f"{ours / original:.3f}x (goal <= 0.1x)"
    )


def adaptation_speed() -> None:
  family = _FAMILY.value
  config = default_config.get_config(family)
  config.num_test_tasks = _TEST_TASKS.value
  o = default_config.ORIGINAL[family]
  task_set = envs.sample_tasks(family, 0, num_test=_TEST_TASKS.value)
  env = envs.make(family, task_set=task_set, split="train", batch_size=_NUM_ENVS.value)
  eval_env = envs.make(family, task_set=task_set, split="test")
  base = env.env
  nets = networks.make_networks(
    base.observation_size, base.action_size, context_size=o["context_size"], history_length=o["history_length"]
  )
  settings = trainer.TD3Settings(start_steps=0, steps_per_iteration=_STEPS.value, replay_size=_NUM_ENVS.value * 2000)
  meta_optimizers = trainer.make_optimizers()
  meta = trainer.make_trainer(env, nets, settings, *meta_optimizers)
  state = meta.init(jax.random.key(0))
  for _ in range(3):
    state, _ = meta.iteration(state)
  adapter = adaptation.make_adapter(
    eval_env,
    nets,
    settings,
    adaptation.AdaptationSettings(**config.adaptation.to_dict()),
    num_train_tasks=task_set.train.shape[0],
    meta_optimizers=meta_optimizers,
  )
  key = jax.random.key(1)
  keys = jax.random.split(key, _TEST_TASKS.value)
  compile_all = _median_time(lambda: adapter.adapt_all(state, key), 1)  # first calls: compile + one run
  compile_one = _median_time(lambda: adapter.adapt_one(state, keys[0], 0), 1)
  print(f"first calls (compile + run): vmapped {compile_all:.1f} s, one task {compile_one:.1f} s", flush=True)
  vmapped = _median_time(lambda: adapter.adapt_all(state, key), _REPEATS.value)
  looped = _median_time(
    lambda: [adapter.adapt_one(state, keys[i], i) for i in range(_TEST_TASKS.value)], _REPEATS.value
  )
  a = config.adaptation
  print(
    f"== adaptation: {family}, {_TEST_TASKS.value} test tasks, stage 1 {a.stage1_iterations} + stage 2 "
    f"{a.stage2_iterations} updates (batch {a.stage2_batch_size}) each\n"
    f"Python loop over tasks (peer, same compiled per-task program): {looped:7.2f} s\n"
    f"one vmapped program:                                           {vmapped:7.2f} s = "
    f"{looped / vmapped:.2f}x (goal >= 10x)"
  )


SECTIONS = {"throughput": throughput, "replay": replay_bytes, "adaptation": adaptation_speed}


def main(argv) -> None:
  del argv
  unknown = [s for s in _SECTIONS.value if s not in SECTIONS]
  if unknown:
    app.fail(f"--sections: unknown {unknown}; valid: {', '.join(SECTIONS)}")
  if _FAMILY.value not in envs.FAMILIES:
    app.fail(f"--family: unknown {_FAMILY.value!r}; valid: {', '.join(envs.FAMILIES)}")
  print(f"devices: {jax.devices()}")
  for name in _SECTIONS.value:
    SECTIONS[name]()


if __name__ == "__main__":
  app.run_tool(main)
