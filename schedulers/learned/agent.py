"""Training a learning-rate agent with PPO: resumable, logged, chunked under jit.

`train_agent` runs `common.ppo` iterations in compiled chunks of
`iterations_per_chunk` (one `lax.scan` each), logs the chunk means to
`metrics.jsonl` / TensorBoard under `agent/`, and checkpoints the whole PPO
state after every chunk, so a killed run resumes from its last chunk and
ends bitwise as an uninterrupted one.  The optimizer is built by the caller
with `schedulers.make_optimizer` (every optimizer of the repository is).
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import jax
import numpy as np
import optax

from common import checkpoint, ppo
from common import metrics as metrics_lib


def train_agent(
  env: ppo.Env,
  *,
  ppo_config: ppo.PPOConfig,
  optimizer: optax.GradientTransformation,
  num_iterations: int,
  iterations_per_chunk: int,
  seed: int,
  workdir: str | pathlib.Path,
  keep_checkpoints: int = 3,
  log: Callable[[str], None] = print,
  observe: Callable[[Any, jax.Array], Any] | None = None,
  learning_rate: Callable[[Any], jax.Array] | None = None,
) -> tuple[ppo.PPO, ppo.PPOState]:
  """Trains (or resumes) a PPO agent on `env`; returns the agent and final state.

  Args:
    env: the environment (`common.ppo.Env`).
    ppo_config: PPO hyperparameters.
    optimizer: the agent's optimizer (`schedulers.make_optimizer(...).tx`).
    num_iterations: total PPO iterations; a multiple of `iterations_per_chunk`.
    iterations_per_chunk: iterations per compiled call, between checkpoints.
    seed: fixes the agent's initialisation, environments and minibatches.
    workdir: run directory: `checkpoints/agent`, `metrics.jsonl`, `tensorboard/`.
    keep_checkpoints: newest checkpoints kept.
    log: where the resume line goes (process 0 prints).
    observe: the optimizer's per-eval step (`schedulers.Optimizer.observe`),
      given minus the mean return of each iteration's finished episodes.
    learning_rate: the optimizer's effective rate (`schedulers.Optimizer.learning_rate`),
      logged per iteration as `agent/learning_rate`.
  """
  if num_iterations % iterations_per_chunk:
    raise ValueError(
      f"num_iterations ({num_iterations}) must be a multiple of iterations_per_chunk ({iterations_per_chunk})."
    )
  workdir = pathlib.Path(workdir)
  agent = ppo.make_ppo(env, ppo_config, optimizer, observe=observe, learning_rate=learning_rate)
  state = jax.jit(agent.init)(jax.random.PRNGKey(seed))

  @jax.jit
  def chunk(state):
    return jax.lax.scan(lambda s, _: agent.iteration(s), state, None, length=iterations_per_chunk)

  with checkpoint.Checkpointer(workdir / "checkpoints" / "agent", keep=keep_checkpoints) as ckpt:
    restored, restored_step = ckpt.restore_latest(state)
    if restored is not None:
      state = restored
      if jax.process_index() == 0:
        log(f"resuming the agent from iteration {restored_step} of {num_iterations}")
    with metrics_lib.MetricWriter(
      workdir, total_steps=num_iterations, resume_step=restored_step, progress_lines=10
    ) as writer:
      while int(state.iteration) < num_iterations:
        state, metrics = chunk(state)
        iteration = int(state.iteration)
        metrics = jax.device_get(metrics)
        row = {f"agent/{k}": float(np.mean(v)) for k, v in metrics.items() if k != "mean_episode_return"}
        # Episodes end only in some iterations: weight the returns by their counts.
        counts = np.asarray(metrics["num_episodes"], np.float64)
        returns = np.asarray(metrics["mean_episode_return"], np.float64)
        row["agent/episode_return"] = float((returns * counts).sum() / max(counts.sum(), 1.0))
        writer.write(iteration, row)
        writer.flush()
        ckpt.save(iteration, state, force=True)
  return agent, state
