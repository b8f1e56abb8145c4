"""Benchmarks of nlirl, each against a named peer in the same run.

  python -m nlirl.benchmark [--envs=1,64,1024,4096] [--repeats=3] [--sections=env,train] [--out=DIR]

* env: R2R-lite env steps per second with N parallel envs (vmapped `envs.step` inside one jitted
  `lax.scan` over the horizon, uniformly random valid actions drawn in the scan) against the plain-Python
  reference env (`envs.ReferenceEnv`) stepping the same episodes with the same actions; the ratio is printed
  (the target: >= 1000x at 4096 envs) and plotted (`--out`/env_steps.png).  The Python peer is timed on
  min(N, 256) episodes and reported per step (its cost is linear in N).
* train: training iterations per second of LangGoalIRL, its ablations and each baseline on the
  `<variant>_smoke` configs with `--train_envs` rollouts and batches (median of `--repeats` compiled chunks
  after one warm-up chunk), and each one's ratio to AIRL (LangGoalIRL without the generator, the peer).

Times are medians of `--repeats` calls after a warm-up (compile) call.
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from common import app, sharding
from nlirl import envs, train
from nlirl.configs import default as default_config

_ENVS = flags.DEFINE_list("envs", ["1", "64", "1024", "4096"], "Parallel env counts.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per measurement (median).")
SECTIONS = ("env", "train")
_SECTIONS = flags.DEFINE_list("sections", list(SECTIONS), "Which benchmarks to run.")
_OUT = flags.DEFINE_string("out", "runs/nlirl_benchmark", "Where benchmark.json and the PNG go.")
_TRAIN_ENVS = flags.DEFINE_integer("train_envs", 32, "Rollouts (and batch sizes) per iteration in 'train'.")
_VARIANTS = flags.DEFINE_list(
  "variants",
  ["smoke", "no_relabel_smoke", "no_paraphrase_smoke", "no_mismatch_smoke", "bc_smoke", "gail_smoke", "airl_smoke"],
  "Train variants.",
)


def _median(fn, repeats):
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def env_section(counts, repeats):
  houses, episodes = envs.load_arrays("train")
  split = envs.load_split("train")
  horizon = envs.HORIZON
  rows = []
  for n in counts:
    idx = jnp.arange(n) % episodes.house.shape[0]
    eps = jax.tree.map(lambda x, idx=idx: x[idx], episodes)

    @jax.jit
    def run(key, eps=eps):
      states, _ = jax.vmap(envs.reset, (None, 0))(houses, eps)

      def body(carry, key):
        states = carry
        masks = jax.vmap(envs.action_mask, (None, 0))(houses, states)
        actions = jax.random.categorical(key, jnp.where(masks, 0.0, -1e9))
        states, obs, reward, done = jax.vmap(envs.step, (None, 0, 0))(houses, states, actions)
        return states, (actions, obs.sum())

      return jax.lax.scan(body, states, jax.random.split(key, horizon))

    seconds = _median(lambda run=run: run(jax.random.PRNGKey(0)), repeats)
    jax_sps = n * horizon / seconds
    # The Python peer: the same episodes and actions, stepped one env at a time.
    _, (actions, _) = run(jax.random.PRNGKey(0))
    actions = np.asarray(actions)  # [T, n]
    m = min(n, 256)
    reference = envs.ReferenceEnv(split.houses, horizon=horizon)  # built outside the timed loop
    index = np.asarray(idx)
    t0 = time.perf_counter()
    for i in range(m):
      reference.reset(split.episodes[int(index[i])])
      for t in range(horizon):
        reference.step(int(actions[t, i]))
    py_sps = m * horizon / (time.perf_counter() - t0)
    rows.append({"envs": n, "jax_steps_per_s": jax_sps, "python_steps_per_s": py_sps, "ratio": jax_sps / py_sps})
    print(
      f"env: {n:5d} envs  jax {jax_sps:12.0f} steps/s  python {py_sps:9.0f} steps/s  ratio {jax_sps / py_sps:8.1f}x"
    )
  return rows


def train_section(variants, n, repeats):
  mesh = sharding.data_mesh()
  rows = []
  for variant in variants:
    config = default_config.get_config(variant)
    for field in ("num_envs", "disc.batch_size", "sac.batch_size", "gen.batch_size", "bc.batch_size"):
      block, name = (config, field) if "." not in field else (config[field.split(".")[0]], field.split(".")[1])
      block[name] = n
    program = train.build_program(config, mesh)
    data = train.train_data(config)
    state = train.init_state(program, config, mesh)
    length = config.iterations_per_chunk
    holder = {"state": state}

    def call(program=program, data=data, length=length, holder=holder):
      holder["state"], m = program.chunk(holder["state"], data, length)
      return holder["state"].iteration

    seconds = _median(call, repeats)
    rows.append({"variant": variant, "algorithm": config.algorithm, "iterations_per_s": length / seconds, "envs": n})
    print(f"train: {variant:18s} ({config.algorithm:11s}) {length / seconds:7.2f} iterations/s ({n} rollouts each)")
  peer = next((r for r in rows if r["algorithm"] == "airl"), None)
  if peer:  # LangGoalIRL is AIRL plus the generator: the ratio is the generator's cost
    for r in rows:
      r["ratio_to_airl"] = r["iterations_per_s"] / peer["iterations_per_s"]
      print(f"train: {r['variant']:18s} {r['ratio_to_airl']:6.2f}x airl ({peer['variant']})")
  return rows


def _plot(path, rows):
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6, 4))
  x = [r["envs"] for r in rows]
  ax.loglog(x, [r["jax_steps_per_s"] for r in rows], "o-", label="JAX (vmap + scan, one jit)")
  ax.loglog(x, [r["python_steps_per_s"] for r in rows], "s-", label="plain-Python reference")
  for r in rows:
    ax.annotate(f"{r['ratio']:.0f}x", (r["envs"], r["jax_steps_per_s"]), textcoords="offset points", xytext=(4, 6))
  ax.set_xlabel("parallel envs")
  ax.set_ylabel("env steps per second")
  ax.set_title(f"R2R-lite env throughput on {jax.devices()[0].platform} ({jax.device_count()} device(s))")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _check_flags() -> None:
  """Bad flag values exit 2 with one line naming the flag, before anything compiles."""
  unknown = [s for s in _SECTIONS.value if s not in SECTIONS]
  if unknown:
    app.fail(f"--sections: unknown {unknown}; valid: {', '.join(SECTIONS)}")
  if not all(n.isdigit() and int(n) > 0 for n in _ENVS.value):
    app.fail(f"--envs: expected positive integers, got {_ENVS.value}")
  if _REPEATS.value < 1 or _TRAIN_ENVS.value < 1:
    app.fail(f"--repeats and --train_envs must be >= 1 (got {_REPEATS.value}, {_TRAIN_ENVS.value})")
  for variant in _VARIANTS.value:
    try:
      default_config.get_config(variant)
    except ValueError as e:
      app.fail(f"--variants: {e}")


def main(argv):
  del argv
  _check_flags()
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  results = {"platform": jax.devices()[0].platform, "devices": jax.device_count()}
  path = out / "benchmark.json"
  if path.is_file():  # keep the sections not run this time, if measured on the same devices
    earlier = json.loads(path.read_text())
    if all(earlier.get(k) == v for k, v in results.items()):
      results = {**earlier, **results}
  if "env" in _SECTIONS.value:
    results["env"] = env_section([int(n) for n in _ENVS.value], _REPEATS.value)
    _plot(out / "env_steps.png", results["env"])
  if "train" in _SECTIONS.value:
    results["train"] = train_section(_VARIANTS.value, _TRAIN_ENVS.value, _REPEATS.value)
  path.write_text(json.dumps(results, indent=1) + "\n")
  print(f"outputs in {out}: benchmark.json" + (", env_steps.png" if "env" in results else ""))


if __name__ == "__main__":
  app.run_tool(main)
