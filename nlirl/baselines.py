"""Floor and ceiling rows for the nlirl results tables: random walkers and a scripted instruction reader.

  python -m nlirl.baselines [--splits=val_seen,val_unseen] [--seeds=0,1,2] [--agents=...] [--max_paths=0]
                            [--out=nlirl/results/baselines]

Every agent (`nlirl.scripted`) acts on the observation only (the reader also on its instruction's tokens,
decoded to text) and is stepped by the JAX env on every (path, instruction) of each split, as a trained
policy is evaluated; the summaries (`evaluation.split_summary`) hold the same fields as a trained run's
`results.json`, shuffled instructions included:

* `random_walk`: a self-avoiding random walk of the whole horizon that never STOPs (the floor);
* `random_walk_stop`: the same walk, STOPping after 4-7 moves drawn uniformly (the expert paths' range);
* `reader`: the scripted reader without memory (a clause counter only);
* `reader_memory`: the reader with a memory of visited viewpoints (dead reckoning).

Random agents run once per `--seeds` entry (their CIs are over those seeds); the readers are deterministic and
run once.  An agent that ignores the instruction walks the same walks under shuffled instructions (its random
stream is keyed by seed, path and instruction slot), so its shuffled SR is its SR.  `--max_paths=N` evaluates
the same N paths per split as `data.max_eval_episodes=N` in training.  Writes `results.json` (one entry per
agent, in the format of a run's `results.json`, which `nlirl.report` adds to its tables) and `results.md`.
"""

from __future__ import annotations

import functools
import json
import pathlib
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from common import app
from nlirl import envs, evaluation, regimes, report, scripted
from nlirl.envs import splits as splits_lib

AGENTS = {  # name -> (table label, random, reads the instruction)
  "random_walk": ("random walk, never STOPs (floor)", True, False),
  "random_walk_stop": ("random walk, STOPs after 4-7 moves", True, False),
  "reader": ("scripted reader, no memory (ceiling)", False, True),
  "reader_memory": ("scripted reader, visited memory (ceiling)", False, True),
}


def _define_flags() -> None:
  """The program's flags, defined only when it runs as one: this module is also a library, and a
  module-level `--out` would clash with other tools' flags of that name in one process (e.g. a test run)."""
  global _SPLITS, _SEEDS, _AGENTS, _MAX_PATHS, _DATASET_SEED, _OUT
  _SPLITS = flags.DEFINE_list("splits", ["val_seen", "val_unseen"], "Splits to evaluate (every path x instruction).")
  _SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the random agents (the readers are deterministic).")
  _AGENTS = flags.DEFINE_list("agents", list(AGENTS), f"Agents, of {', '.join(AGENTS)}.")
  _MAX_PATHS = flags.DEFINE_integer("max_paths", 0, "Paths per split (0: all), the subset of data.max_eval_episodes.")
  _DATASET_SEED = flags.DEFINE_integer("dataset_seed", 0, "R2R-lite dataset seed (data.dataset_seed).")
  _OUT = flags.DEFINE_string("out", "nlirl/results/baselines", "Where results.json and results.md go.")


# --- stepping host-side agents in the JAX env ---------------------------------------------------------------


@functools.partial(jax.jit, static_argnames="horizon")
def _reset(houses, episodes, horizon):
  return jax.vmap(functools.partial(envs.reset, horizon=horizon), (None, 0))(houses, episodes)


@jax.jit
def _step(houses, states, actions):
  states, obs, _, _ = jax.vmap(envs.step, (None, 0, 0))(houses, states, actions)
  return states, obs


@jax.jit
def _status(houses, states):
  """(active, within SUCCESS_RADIUS_M of the goal) of each state."""
  active = ~states.stopped & (states.t < states.horizon)
  return active, jax.vmap(envs.navigation_error, (None, 0))(houses, states) < envs.SUCCESS_RADIUS_M


@jax.jit
def _metrics(houses, states):
  return jax.vmap(envs.metrics, (None, 0))(houses, states)


def run_agents(
  houses: envs.Houses,
  episodes: envs.Episodes,
  tokens,
  make_agent: Callable[[int, str], object],
  *,
  horizon: int = envs.HORIZON,
) -> dict[str, np.ndarray]:
  """Every (path, instruction) walked by its own agent `make_agent(k, text)` with an `act(obs) -> action`.

  Args:
    houses, episodes: the split's env tables (E paths).
    tokens: int [E, I, L] the instruction each path is commanded with.
    make_agent: builds the agent of flat index k = path * I + instruction, given its decoded instruction.
    horizon: episode length.

  Returns:
    `evaluation.METRIC_NAMES` and `evaluation.STOP_COUNTS` arrays [E * I], path-major.
  """
  tokens = np.asarray(tokens)
  e, i = tokens.shape[:2]
  idx = np.repeat(np.arange(e), i)
  flat = jax.tree.map(lambda x: jnp.asarray(x)[idx], episodes)
  vocab = envs.Vocabulary()
  agents = [make_agent(k, vocab.decode(t)) for k, t in enumerate(tokens.reshape(e * i, -1))]
  states, obs = _reset(houses, flat, horizon)
  counts = {k: np.zeros(e * i, np.int32) for k in evaluation.STOP_COUNTS}
  for _ in range(horizon):
    active, at_goal = (np.asarray(x) for x in _status(houses, states))
    obs = np.asarray(obs)
    actions = np.full(e * i, envs.STOP, np.int32)
    for k in np.flatnonzero(active):
      actions[k] = agents[k].act(obs[k])
    stops = active & (actions == envs.STOP)
    counts["steps_at_goal"] += active & at_goal
    counts["stops_at_goal"] += stops & at_goal
    counts["steps_away"] += active & ~at_goal
    counts["stops_away"] += stops & ~at_goal
    states, obs = _step(houses, states, jnp.asarray(actions))
  m = jax.device_get(_metrics(houses, states))
  return {**{k: np.asarray(m[k]) for k in evaluation.METRIC_NAMES}, **counts}


def agent_factory(name: str, seed: int) -> Callable[[int, str], object]:
  """`make_agent(k, text)` of the agent `name` (one of AGENTS); random agents draw from (seed, k)."""
  if name in ("random_walk", "random_walk_stop"):
    low, high = splits_lib.PATH_EDGES

    def make(k, text):
      del text  # the walkers ignore the instruction
      rng = np.random.default_rng([seed, k])
      stop_after = int(rng.integers(low, high + 1)) if name == "random_walk_stop" else None
      return scripted.RandomWalker(rng, stop_after=stop_after)

    return make
  if name in ("reader", "reader_memory"):
    return lambda k, text: scripted.InstructionReader(text, memory=name == "reader_memory")
  raise ValueError(f"unknown agent {name!r}; valid: {', '.join(AGENTS)}")


def evaluate_agent(name: str, split: str, seeds, *, max_paths: int = 0, dataset_seed: int = 0) -> dict:
  """The `evaluation.split_summary` of agent `name` on `split`, with shuffled instructions."""
  label, random, reads = AGENTS[name]
  del label
  houses, episodes = envs.load_arrays(split, seed=dataset_seed)
  keep = regimes.subset(int(episodes.house.shape[0]), max_paths, dataset_seed)
  episodes = jax.tree.map(lambda x: x[keep], episodes)
  tokens = np.asarray(episodes.instructions)
  perm = evaluation.shuffled_order(np.asarray(episodes.house), np.asarray(episodes.goal))
  true, shuffled = [], []
  for seed in seeds if random else seeds[:1]:
    make = agent_factory(name, seed)
    true.append(run_agents(houses, episodes, tokens, make))
    shuffled.append(run_agents(houses, episodes, tokens[perm], make) if reads else true[-1])
  stack = lambda runs: {k: np.stack([r[k] for r in runs]) for k in runs[0]}
  return evaluation.split_summary(stack(true), stack(shuffled), num_instructions=tokens.shape[1])


# --- the binary -----------------------------------------------------------------------------------------------


def _check_flags() -> None:
  """Bad flag values exit 2 with one line naming the flag, before anything runs."""
  unknown = [s for s in _SPLITS.value if s not in envs.SPLITS]
  if unknown or not _SPLITS.value:
    app.fail(f"--splits: unknown {unknown or 'empty list'}; valid: {', '.join(envs.SPLITS)}")
  if not _SEEDS.value or not all(s.isdigit() for s in _SEEDS.value):
    app.fail(f"--seeds: expected non-negative integers, got {_SEEDS.value}")
  unknown = [a for a in _AGENTS.value if a not in AGENTS]
  if unknown or not _AGENTS.value:
    app.fail(f"--agents: unknown {unknown or 'empty list'}; valid: {', '.join(AGENTS)}")
  if _MAX_PATHS.value < 0:
    app.fail(f"--max_paths: must be >= 0 (0: all), got {_MAX_PATHS.value}")


def main(argv):
  del argv
  _check_flags()
  seeds = [int(s) for s in _SEEDS.value]
  rows = []
  for name in _AGENTS.value:
    label, random, _ = AGENTS[name]
    row = {"algorithm": name, "name": label, "num_seeds": len(seeds) if random else 1, "iterations": 0, "eval": {}}
    for split in _SPLITS.value:
      start = time.perf_counter()
      summary = evaluate_agent(name, split, seeds, max_paths=_MAX_PATHS.value, dataset_seed=_DATASET_SEED.value)
      row["eval"][split] = summary
      print(
        f"{name:16s} {split:10s} SR {100 * summary['success']['mean']:5.1f}  oracle SR "
        f"{100 * summary['oracle_success']['mean']:5.1f}  shuffled SR {100 * summary['sr_shuffled']['mean']:5.1f}  "
        + "  ".join(f"{f} {100 * summary[f'sr_{f}']['mean']:5.1f}" for f in evaluation.FAMILIES)
        + f"  ({time.perf_counter() - start:.0f} s)"
      )
    rows.append(row)
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  results = {
    "splits": list(_SPLITS.value),
    "seeds": seeds,
    "max_paths": _MAX_PATHS.value,
    "dataset_seed": _DATASET_SEED.value,
    "horizon": envs.HORIZON,
    "agents": rows,
  }
  (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
  (out / "results.md").write_text(report.table(rows) + "\n" + report.language_tables(rows))
  print(f"outputs in {out}: results.json, results.md")


if __name__ == "__main__":
  _define_flags()
  app.run_tool(main)
