"""Point-robot 2-D navigation in pure JAX: the fast family for CPU runs.

PEARL's point robot (Rakelly et al., 2019, "Efficient Off-Policy
Meta-Reinforcement Learning via Probabilistic Context Variables",
arXiv:1903.08254; `katerakelly/oyster` `rlkit/envs/point_robot.py`) with the
half-circle goals of its `sparse-point-robot` variant and the dense reward:

* state and observation: the 2-D position, starting at the origin;
* action: `a` in [-1, 1]^2, rescaled as PEARL's `NormalizedBoxEnv` does onto
  the env's box [-0.1, 0.1]^2, so a step moves by `0.1 * clip(a, -1, 1)`;
* reward: `-||p_{t+1} - goal||` (dense, after the move); no termination;
* task: the goal, on the upper half of the unit circle.  Task sets place
  `num_train + num_test` goals at evenly spaced angles in [0, pi] and shuffle
  them with the task key (PEARL: `linspace` + `np.random.shuffle` under seed
  1337), so train and test goals interleave.

No physics engine is involved: a step is a handful of flops, so whole MQL runs
fit in minutes on CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env, State

MAX_STEP = 0.1  # PEARL's action box is [-0.1, 0.1]^2 before NormalizedBoxEnv.
GOAL_RADIUS = 1.0


class PointRobot(Env):
  """2-D point robot whose task (`state.info['task']`, shape (2,)) is its goal."""

  task_size = 2

  def __init__(self, max_step: float = MAX_STEP):
    self._max_step = float(max_step)

  @staticmethod
  def sample_task(key: jax.Array) -> jax.Array:
    """One goal from the task prior (uniform angle on the upper half circle)."""
    angle = jax.random.uniform(key, (), minval=0.0, maxval=jnp.pi)
    return GOAL_RADIUS * jnp.stack([jnp.cos(angle), jnp.sin(angle)])

  @staticmethod
  def sample_tasks(key: jax.Array, num_train: int, num_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Evenly spaced half-circle goals, shuffled by `key`, split train/test."""
    angles = np.linspace(0.0, np.pi, num_train + num_test)
    angles = angles[np.asarray(jax.random.permutation(key, num_train + num_test))]
    goals = (GOAL_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)).astype(np.float32)
    return goals[:num_train], goals[num_train:]

  def reset(self, rng: jax.Array) -> State:
    """Resets to the origin with a goal drawn from the task prior."""
    return self.reset_with_task(rng, self.sample_task(rng))

  def reset_with_task(self, rng: jax.Array, task: jax.Array) -> State:
    """Resets to the origin for the given goal (`rng` is unused: the start is fixed)."""
    del rng
    task = jnp.asarray(task, jnp.float32)
    position = jnp.zeros(2, jnp.float32)
    zero = jnp.zeros((), jnp.float32)
    metrics = {"distance": jnp.linalg.norm(position - task)}
    return State(pipeline_state=None, obs=position, reward=zero, done=zero, metrics=metrics, info={"task": task})

  def step(self, state: State, action: jax.Array) -> State:
    """Moves by `max_step * clip(action, -1, 1)`; reward is minus the distance to the goal."""
    position = state.obs + self._max_step * jnp.clip(action, -1.0, 1.0)
    distance = jnp.sqrt(jnp.sum(jnp.square(position - state.info["task"])))
    return state.replace(obs=position, reward=-distance, metrics={**state.metrics, "distance": distance})

  @property
  def observation_size(self) -> int:
    return 2

  @property
  def action_size(self) -> int:
    return 2

  @property
  def backend(self) -> str:
    return "jax"
