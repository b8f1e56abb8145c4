"""Benchmarks of the schedulers package, each against a named peer in the same run.

  python -m schedulers.benchmark [--steps=1000] [--repeats=5] [--seeds=8] [--sections=overhead,vmap,arms]

* overhead: per-step time on the digits MLP (64-256-256-10, batch 64) of
  adamw alone (the peer), adamw + greedy_lr and adamw +
  optax.contrib.reduce_on_plateau and the shipped learned_schedule policy;
  goal greedy_lr <= 1.03x adamw.
* vmap: `--seeds` training runs of a study task vmapped inside one jit,
  against (a) a Python loop calling the same compiled single-seed run once
  per seed and (b) a Python loop over seeds and steps calling a jitted train
  step; goal >= 5x.  Reported for a tiny linear model, NMF and the digits
  MLP.
* nmf: `--nmf_problems` stochastic NMF problems (`schedulers.learned.nmf`,
  projected SGD under the clipped stability bound) trained in one vmapped jit
  against a Python loop of the same compiled single-problem run, at a small
  size (64x48, rank 5) and at the study's size (synthetic NMF, 100x80, rank
  8); goal >= 20x at the small size.
* arms: per-step cost of every study arm (all three optimizer rows) relative
  to constant-LR AdamW (the peer) on the study's digits task.

Times are the median of `--repeats` timed calls after one warm-up (compile)
call; every call runs `--steps` steps inside one `lax.scan`.
"""

from __future__ import annotations

import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags

import schedulers
from common import app, trainer
from common import data as data_lib
from schedulers import data as datasets
from schedulers import losses, networks
from schedulers.learned import nmf
from schedulers.learned import policy as policy_lib
from schedulers.study import arms as arms_lib
from schedulers.study import runner as study_runner
from schedulers.study import tasks as tasks_lib

_STEPS = flags.DEFINE_integer("steps", 1000, "Steps per timed call.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per measurement (median).")
_SEEDS = flags.DEFINE_integer("seeds", 8, "Seeds in the vmap benchmark.")
_SECTIONS = flags.DEFINE_list("sections", ["overhead", "vmap", "arms", "nmf"], "Which benchmarks to run.")
_NMF_PROBLEMS = flags.DEFINE_integer("nmf_problems", 256, "NMF problems in the nmf benchmark.")
_NMF_STEPS = flags.DEFINE_integer("nmf_steps", 200, "Projected SGD steps per NMF problem in the nmf benchmark.")


# Tasks from overhead-bound (tiny linear model) to compute-bound (MLP).
VMAP_TASKS = ("logreg_breast_cancer", "nmf_synthetic", "digits_mlp")


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
  jax.block_until_ready(fn())  # compile + warm up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def _digits_epoch(optimizer: optax.GradientTransformation, steps: int):
  train, _, _ = datasets.load_digits()
  data = jax.tree.map(jnp.asarray, train)
  network = networks.make_classifier(64, (256, 256), 10)
  loss_fn, _ = losses.make_losses(network)
  key = jax.random.PRNGKey(0)
  state = trainer.TrainState.create(params=network.init(key), optimizer=optimizer, rng=key)
  step = trainer.make_train_step(loss_fn, optimizer)
  n = data_lib.num_examples(data)
  perm = data_lib.epoch_permutation(key, 0, n)  # the order is irrelevant to timing
  batch_fn = lambda d, s: data_lib.batch_from_permutation(d, perm, s, 64)
  epoch = trainer.make_epoch(step, batch_fn, steps, donate=False)
  return lambda: epoch(state, data)[1]["loss"]


def _shipped_policy():
  """The trained DNN schedule policy shipped with the package."""
  return policy_lib.shipped_policy()


def bench_overhead(steps: int, repeats: int) -> None:
  peer = "adamw"
  candidates = {
    "adamw": optax.adamw(1e-3),
    "adamw + greedy_lr": optax.chain(optax.adamw(1e-3), schedulers.greedy_lr()),
    "adamw + greedy_lr(smooth)": optax.chain(optax.adamw(1e-3), schedulers.greedy_lr(smooth=True)),
    "adamw + reduce_on_plateau": optax.chain(optax.adamw(1e-3), optax.contrib.reduce_on_plateau()),
    "adamw + learned_schedule": optax.chain(optax.adamw(1e-3), schedulers.learned_schedule(_shipped_policy())),
  }
  # Interleave rounds so slow drift of the machine hits every candidate alike.
  fns = {name: _digits_epoch(opt, steps) for name, opt in candidates.items()}
  rounds = {name: [] for name in fns}
  for _ in range(3):
    for name, fn in fns.items():
      rounds[name].append(_median_seconds(fn, repeats))
  per_step = {name: min(ts) / steps for name, ts in rounds.items()}
  print(f"\n[overhead] digits MLP 64-256-256-10, batch 64, {steps} steps per call (peer: {peer})")
  for name, t in per_step.items():
    print(f"  {name:<28} {t * 1e6:9.1f} us/step   {t / per_step[peer]:.3f}x {peer}")


def bench_vmap(steps: int, repeats: int, seeds: int) -> None:
  print(
    f"\n[vmap] {seeds} seeds of adamw + greedy_lr, {steps} steps each, vmapped in one jit,"
    " against two peers: (a) a Python loop calling the compiled single-seed run"
    " (scan inside jit) once per seed; (b) a Python loop over seeds and steps"
    " calling a jitted train step (cleanrl style)"
  )
  for name in VMAP_TASKS:
    t_vmap, t_runs, t_steps = _time_vmap_task(name, steps, repeats, seeds)
    print(
      f"  {name:<22} vmapped {t_vmap:7.3f} s | (a) {t_runs:7.3f} s, {t_runs / t_vmap:5.2f}x"
      f" | (b) {t_steps:7.3f} s, {t_steps / t_vmap:6.2f}x   (goal >= 5x)"
    )


def _time_vmap_task(name: str, steps: int, repeats: int, seeds: int) -> tuple[float, float, float]:
  """Seconds of (vmapped seeds, loop of compiled runs, per-step loop) on one task."""
  task = _with_steps(tasks_lib.make_task(name), steps)
  arm = next(a for a in arms_lib.make_arms("adamw") if a.name == "greedy_step")
  run = study_runner.make_run(task, arm)
  single = jax.jit(run)
  batched = jax.jit(jax.vmap(run))
  init, train_step = study_runner.make_init_and_step(task, arm)
  init, train_step = jax.jit(init), jax.jit(train_step)
  lr = jnp.float32(1e-3)
  lrs = jnp.full((seeds,), lr)
  seed_ids = jnp.arange(seeds)

  def loop_runs():
    return [single(lrs[i], seed_ids[i])["val"] for i in range(seeds)]

  def loop_steps():
    out = []
    for i in range(seeds):
      state, perms = init(lr, seed_ids[i])
      for _ in range(task.num_steps):
        state, _ = train_step(lr, state, perms)
      out.append(state.params)
    return out

  t_vmap = _median_seconds(lambda: batched(lrs, seed_ids)["val"], repeats)
  return t_vmap, _median_seconds(loop_runs, repeats), _median_seconds(loop_steps, 1)


def _with_steps(task: tasks_lib.Task, steps: int) -> tasks_lib.Task:
  import dataclasses

  steps = max(task.eval_every, steps - steps % task.eval_every)
  return dataclasses.replace(task, num_steps=steps)


def bench_arms(steps: int, repeats: int) -> None:
  task = _with_steps(tasks_lib.make_task("digits_mlp"), steps)
  grids = {"sgd": 0.1, "momentum": 0.03, "adamw": 1e-3}
  results = {}
  for optimizer in arms_lib.OPTIMIZERS:
    for arm in arms_lib.make_arms(optimizer):
      run = functools.partial(jax.jit(study_runner.make_run(task, arm)), jnp.float32(grids[optimizer]), jnp.int32(0))
      results[arm.label] = _median_seconds(run, repeats) / task.num_steps
  peer = "adamw/constant"
  print(
    f"\n[arms] study digits task, {task.num_steps} steps incl. {task.num_steps // task.eval_every}"
    f" evaluations (peer: {peer})"
  )
  for label, t in results.items():
    print(f"  {label:<26} {t * 1e6:9.1f} us/step   {t / results[peer]:.3f}x {peer}")


NMF_SIZES = (("small 64x48 rank 5", 64, 48, 5), ("study 100x80 rank 8", 100, 80, 8))


def bench_nmf(steps: int, repeats: int, problems: int) -> None:
  print(
    f"\n[nmf] {problems} stochastic NMF problems x {steps} projected SGD steps at 0.9 eta_max, vmapped in"
    " one jit, against (a) a Python loop calling the compiled single-problem run once per problem"
  )
  for label, m, n, rank in NMF_SIZES:
    t_vmap, t_loop = _time_nmf(m, n, rank, steps, repeats, problems)
    print(
      f"  {label:<22} vmapped {t_vmap:7.3f} s | (a) {t_loop:7.3f} s, {t_loop / t_vmap:6.2f}x"
      f"{'   (goal >= 20x)' if m == 64 else ''}"
    )


def _time_nmf(m: int, n: int, rank: int, steps: int, repeats: int, problems: int) -> tuple[float, float]:
  """Seconds of (all problems vmapped, a loop of the compiled single-problem run)."""

  def one(key):
    k_problem, k_init, k_steps = jax.random.split(key, 3)
    problem = nmf.make_problem(k_problem, m, n, rank, 0.1)
    factors = nmf.init_factors(k_init, problem, rank)
    return nmf.train(problem, factors, nmf.bound_fraction(0.9), key=k_steps, num_steps=steps, batch_size=8).loss[-1]

  keys = jax.random.split(jax.random.PRNGKey(0), problems)
  batched, single = jax.jit(jax.vmap(one)), jax.jit(one)
  t_vmap = _median_seconds(lambda: batched(keys), repeats)
  return t_vmap, _median_seconds(lambda: [single(k) for k in keys], max(1, repeats // 2))


def main(argv):
  del argv
  print(f"devices: {jax.devices()}")
  if "overhead" in _SECTIONS.value:
    bench_overhead(_STEPS.value, _REPEATS.value)
  if "vmap" in _SECTIONS.value:
    bench_vmap(_STEPS.value, _REPEATS.value, _SEEDS.value)
  if "arms" in _SECTIONS.value:
    bench_arms(_STEPS.value, _REPEATS.value)
  if "nmf" in _SECTIONS.value:
    bench_nmf(_NMF_STEPS.value, _REPEATS.value, _NMF_PROBLEMS.value)


if __name__ == "__main__":
  app.run_tool(main)
