"""schedulers.learned.agent: chunked PPO training resumes exactly, metrics included."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common import metrics as metrics_lib
from common import ppo
from schedulers.learned import agent


def _bandit() -> ppo.Env:
  """3 actions; the rewarded one is argmax of the observation; 2-step episodes."""

  def reset(key):
    obs = jax.random.uniform(key, (3,))
    return (obs, jnp.zeros((), jnp.int32), key), obs

  def step(state, action):
    obs, t, key = state
    reward = (action == jnp.argmax(obs)).astype(jnp.float32)
    key, sub = jax.random.split(key)
    new_obs = jax.random.uniform(sub, (3,))
    return (new_obs, t + 1, key), new_obs, reward, t + 1 >= 2

  return ppo.Env(reset=reset, step=step, observation_size=3, num_actions=3)


CONFIG = ppo.PPOConfig(num_envs=4, unroll_length=4, num_minibatches=2, update_epochs=2, hidden_sizes=(16,))


def _train(workdir, num_iterations):
  return agent.train_agent(
    _bandit(),
    ppo_config=CONFIG,
    optimizer=optax.adam(3e-3),
    num_iterations=num_iterations,
    iterations_per_chunk=2,
    seed=0,
    workdir=workdir,
    log=lambda _: None,
  )


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
@pytest.mark.opt
def test_resumed_training_equals_one_run(tmp_path):
  _, full = _train(tmp_path / "full", 6)
  _train(tmp_path / "split", 2)
  _, resumed = _train(tmp_path / "split", 6)  # a re-run continues from iteration 2
  assert int(resumed.iteration) == 6
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.params), jax.device_get(full.params))
  rows_full = metrics_lib.read_metrics(tmp_path / "full")
  rows_split = metrics_lib.read_metrics(tmp_path / "split")
  assert [r["step"] for r in rows_split] == [2, 4, 6]
  assert rows_split == rows_full
  assert "agent/episode_return" in rows_full[0] and "agent/policy_loss" in rows_full[0]


def test_iterations_must_fill_whole_chunks(tmp_path):
  with pytest.raises(ValueError, match="multiple of iterations_per_chunk"):
    _train(tmp_path, 3)
