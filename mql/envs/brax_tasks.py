"""Brax locomotion task families of PEARL/MQL with the task in `state.info['task']`.

Each class subclasses the Brax v0.14.2 environment it modifies and adds
`reset_with_task(rng, task)`: the task parameter (a float32 vector of
`task_size`) is stored in `state.info['task']` and read back by `step`, so one
compiled program serves every task and a vmapped batch of slots can hold a
different task per slot.  `reset(rng)` draws a task from the family's prior,
for drop-in use where Brax expects `Env.reset(rng)`.

Rewards follow PEARL's env code (`katerakelly/oyster` `rlkit/envs/*`, copied
verbatim by MQL) where Brax can compute the term; actions are clipped to
[-1, 1] first, as PEARL's `NormalizedBoxEnv` does.  Differences that Brax
imposes (documented in `mql/envs/__init__.py`): no contact-force cost terms
and no contact forces in the observations, and Brax's observation layouts.

* `CheetahVel`  task (v_goal,):  `-|v_x - v_goal| - 0.05 ||a||^2`, no termination.
* `CheetahDir`  task (d,), d in {-1, +1}:  `d v_x - 0.05 ||a||^2`.
* `AntDir`      task (angle,), angle in {0, pi}:  `v_xy . (cos, sin) + 1 - 0.5 ||a||^2`,
  terminates when the torso height leaves [0.2, 1.0] or the state is non-finite.
* `AntGoal`     task (g_x, g_y):  `-|x - g_x| - |y - g_y| - 0.1 ||a||^2`; no
  healthy bonus, no termination; the observation keeps the torso x, y (29-d).
* `HumanoidDir` task (angle,):  `1.25 v_com,xy . (cos, sin) + 5 - 0.1 ||ctrl||^2`,
  terminates when the torso height leaves [1, 2].
* `WalkerParams` task: multipliers of body masses, inertia diagonals, dof
  damping and geom friction (see `walker_param_shapes`), applied by replacing
  those `sys` fields per slot on every reset and step (Brax's own
  domain-randomisation mechanism, but with the parameters carried in the
  state, so a slot's dynamics change when its task does).  Reward and
  termination are Brax's Walker2d (`v_x + 1 - 1e-3 ||a||^2`; healthy height in
  (0.8, 2), angle in (-1, 1)), which match rand_param_envs'.
"""

import contextlib
import functools
import logging

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from brax.envs.ant import Ant
from brax.envs.base import State
from brax.envs.half_cheetah import Halfcheetah
from brax.envs.humanoid import Humanoid
from brax.envs.walker2d import Walker2d
from brax.io import mjcf
from etils import epath

# rand_param_envs' `log_scale_limit` and bases (`RandomEnv.sample_tasks`).
WALKER_LOG_SCALE_LIMIT = 3.0
WALKER_SCALE_BASE = 1.5  # mass, inertia, friction
WALKER_DAMPING_BASE = 1.3
# rand_param_envs' walker runs frame_skip 4 at timestep 0.004 (dt = 0.016);
# Brax's walker2d.xml has timestep 0.002, so 8 frames give the same dt.
WALKER_N_FRAMES = 8


@contextlib.contextmanager
def _mujoco_warnings_logged():
  """Routes MuJoCo compiler warnings to logging instead of MUJOCO_LOG.TXT in the working directory.

  Brax's half_cheetah.xml uses the deprecated `settotalmass` attribute, which
  MuJoCo 4 reports on every load.
  """
  previous = mujoco.get_mju_user_warning()
  mujoco.set_mju_user_warning(lambda message: logging.getLogger(__name__).debug("MuJoCo: %s", message))
  try:
    yield
  finally:
    mujoco.set_mju_user_warning(previous)


def _clip_action(action: jax.Array) -> jax.Array:
  return jnp.clip(action, -1.0, 1.0)


def _task_state(state: State, task: jax.Array) -> State:
  return state.replace(info={**state.info, "task": jnp.asarray(task, jnp.float32)})


class _ClassProperty:
  """A read-only attribute computed from the class (lazily: the walker's needs its model)."""

  def __init__(self, fget):
    self._fget = fget

  def __get__(self, obj, cls):
    return self._fget(cls)


class _TaskMixin:
  """`reset(rng)` from the prior, `reset_with_task`, and a trace-free observation size."""

  task_size: int

  def __init__(self, *args, **kwargs):
    with _mujoco_warnings_logged():
      super().__init__(*args, **kwargs)

  def reset(self, rng: jax.Array) -> State:
    """Resets with a task drawn from the family's prior (for plain `Env` use)."""
    rng, task_key = jax.random.split(rng)
    return self.reset_with_task(rng, self.sample_task(task_key))

  def reset_with_task(self, rng: jax.Array, task: jax.Array) -> State:
    """Resets the physics (fresh initial noise from `rng`) for the given task.

    The metrics start as zeros with the keys `step` writes, so reset and
    stepped states have one pytree structure (a `lax.scan` carry).
    """
    state = self._reset_physics(rng, task)
    return state.replace(metrics={k: jnp.zeros(v.shape, v.dtype) for k, v in self._metric_spec.items()})

  def _reset_physics(self, rng: jax.Array, task: jax.Array) -> State:
    return _task_state(super().reset(rng), task)

  @functools.cached_property
  def _metric_spec(self) -> dict:
    def first_step(rng):
      state = self._reset_physics(rng, jnp.ones(self.task_size, jnp.float32)).replace(metrics={})
      return self.step(state, jnp.zeros(self.action_size, jnp.float32)).metrics

    return jax.eval_shape(first_step, jax.random.PRNGKey(0))

  @functools.cached_property
  def _observation_size(self) -> int:
    state = jax.eval_shape(self._reset_physics, jax.random.PRNGKey(0), jnp.ones(self.task_size, jnp.float32))
    return int(state.obs.shape[-1])

  @property
  def observation_size(self) -> int:
    return self._observation_size


class _DiscreteTasks:
  """Families with a fixed list of task values (train and test tasks are the same)."""

  task_values: tuple[float, ...]
  task_size = 1

  @classmethod
  def sample_task(cls, key: jax.Array) -> jax.Array:
    return jax.random.choice(key, jnp.asarray(cls.task_values, jnp.float32))[None]

  @classmethod
  def sample_tasks(cls, key: jax.Array, num_train: int, num_test: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed values, cycled to the requested counts (`key` unused, as in MQL)."""
    del key
    values = np.asarray(cls.task_values, np.float32)[:, None]
    return np.resize(values, (num_train, 1)), np.resize(values, (num_test, 1))


class _CheetahBase(_TaskMixin, Halfcheetah):
  """Half-cheetah with PEARL's 0.05 control cost; subclasses define the forward term."""

  def __init__(self, backend: str = "mjx", **kwargs):
    super().__init__(ctrl_cost_weight=0.05, backend=backend, **kwargs)

  def _forward_reward(self, x_velocity: jax.Array, task: jax.Array) -> jax.Array:
    raise NotImplementedError

  def step(self, state: State, action: jax.Array) -> State:
    action = _clip_action(action)
    pipeline_state0 = state.pipeline_state
    pipeline_state = self.pipeline_step(pipeline_state0, action)
    x_velocity = (pipeline_state.x.pos[0, 0] - pipeline_state0.x.pos[0, 0]) / self.dt
    forward_reward = self._forward_reward(x_velocity, state.info["task"])
    ctrl_cost = self._ctrl_cost_weight * jnp.sum(jnp.square(action))
    metrics = {
      "x_position": pipeline_state.x.pos[0, 0],
      "x_velocity": x_velocity,
      "reward_run": forward_reward,
      "reward_ctrl": -ctrl_cost,
    }
    return state.replace(
      pipeline_state=pipeline_state,
      obs=self._get_obs(pipeline_state),
      reward=forward_reward - ctrl_cost,
      metrics={**state.metrics, **metrics},  # keep keys wrappers add (brax's EvalWrapper: 'reward')
    )


class CheetahVel(_CheetahBase):
  """Half-cheetah tracking a goal velocity `task[0]` ~ U[0, 3] (PEARL's cheetah-vel)."""

  task_size = 1
  min_velocity, max_velocity = 0.0, 3.0

  @classmethod
  def sample_task(cls, key: jax.Array) -> jax.Array:
    return jax.random.uniform(key, (1,), minval=cls.min_velocity, maxval=cls.max_velocity)

  @classmethod
  def sample_tasks(cls, key: jax.Array, num_train: int, num_test: int) -> tuple[np.ndarray, np.ndarray]:
    """`num_train + num_test` i.i.d. goal velocities, the first ones for training."""
    tasks = np.asarray(jax.vmap(cls.sample_task)(jax.random.split(key, num_train + num_test)), np.float32)
    return tasks[:num_train], tasks[num_train:]

  def _forward_reward(self, x_velocity, task):
    return -jnp.abs(x_velocity - task[0])


class CheetahDir(_DiscreteTasks, _CheetahBase):
  """Half-cheetah running in direction `task[0]` in {-1, +1} (PEARL's cheetah-dir)."""

  task_values = (-1.0, 1.0)

  def _forward_reward(self, x_velocity, task):
    return task[0] * x_velocity


class _AntBase(_TaskMixin, Ant):
  """Ant whose step computes torso displacement; subclasses define the reward."""

  def _rewards(self, pipeline_state0, pipeline_state, task) -> tuple[jax.Array, jax.Array, dict]:
    raise NotImplementedError

  def step(self, state: State, action: jax.Array) -> State:
    action = _clip_action(action)
    pipeline_state0 = state.pipeline_state
    pipeline_state = self.pipeline_step(pipeline_state0, action)
    task_reward, done, metrics = self._rewards(pipeline_state0, pipeline_state, state.info["task"])
    ctrl_cost = self._ctrl_cost_weight * jnp.sum(jnp.square(action))
    metrics = {**metrics, "reward_ctrl": -ctrl_cost}
    return state.replace(
      pipeline_state=pipeline_state,
      obs=self._get_obs(pipeline_state),
      reward=task_reward - ctrl_cost,
      done=done,
      metrics={**state.metrics, **metrics},  # keep keys wrappers add (brax's EvalWrapper: 'reward')
    )


class AntDir(_DiscreteTasks, _AntBase):
  """Ant running along angle `task[0]` in {0, pi} (MQL's ant-dir, `forward_backward=True`)."""

  task_values = (0.0, float(np.pi))

  def __init__(self, backend: str = "mjx", **kwargs):
    super().__init__(
      ctrl_cost_weight=0.5,
      healthy_reward=1.0,
      terminate_when_unhealthy=True,
      healthy_z_range=(0.2, 1.0),
      backend=backend,
      **kwargs,
    )

  def _rewards(self, pipeline_state0, pipeline_state, task):
    velocity = (pipeline_state.x.pos[0] - pipeline_state0.x.pos[0]) / self.dt
    forward_reward = velocity[0] * jnp.cos(task[0]) + velocity[1] * jnp.sin(task[0])
    z = pipeline_state.x.pos[0, 2]
    min_z, max_z = self._healthy_z_range
    finite = jnp.isfinite(pipeline_state.q).all() & jnp.isfinite(pipeline_state.qd).all()
    healthy = (z >= min_z) & (z <= max_z) & finite
    done = 1.0 - healthy.astype(jnp.float32)
    metrics = {"reward_forward": forward_reward, "reward_survive": jnp.float32(self._healthy_reward)}
    return forward_reward + self._healthy_reward, done, metrics


class AntGoal(_AntBase):
  """Ant walking to goal `task` = (x, y), uniform on a radius-3 disc (PEARL's ant-goal)."""

  task_size = 2
  goal_radius = 3.0

  def __init__(self, backend: str = "mjx", **kwargs):
    super().__init__(
      ctrl_cost_weight=0.1,
      healthy_reward=0.0,
      terminate_when_unhealthy=False,
      exclude_current_positions_from_observation=False,
      backend=backend,
      **kwargs,
    )

  @classmethod
  def sample_task(cls, key: jax.Array) -> jax.Array:
    angle_key, radius_key = jax.random.split(key)
    angle = jax.random.uniform(angle_key, (), maxval=2 * jnp.pi)
    radius = cls.goal_radius * jnp.sqrt(jax.random.uniform(radius_key, ()))
    return radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)])

  @classmethod
  def sample_tasks(cls, key: jax.Array, num_train: int, num_test: int) -> tuple[np.ndarray, np.ndarray]:
    """`num_train + num_test` i.i.d. goals, the first ones for training."""
    tasks = np.asarray(jax.vmap(cls.sample_task)(jax.random.split(key, num_train + num_test)), np.float32)
    return tasks[:num_train], tasks[num_train:]

  def _rewards(self, pipeline_state0, pipeline_state, task):
    del pipeline_state0
    goal_reward = -jnp.sum(jnp.abs(pipeline_state.x.pos[0, :2] - task))
    position = pipeline_state.x.pos[0]
    metrics = {"reward_goal": goal_reward, "x_position": position[0], "y_position": position[1]}
    return goal_reward, jnp.zeros((), jnp.float32), metrics


class HumanoidDir(_TaskMixin, Humanoid):
  """Humanoid running along angle `task[0]` ~ U[0, 2 pi) (PEARL's humanoid-dir)."""

  task_size = 1

  def __init__(self, backend: str = "mjx", **kwargs):
    super().__init__(
      forward_reward_weight=1.25,
      ctrl_cost_weight=0.1,
      healthy_reward=5.0,
      terminate_when_unhealthy=True,
      healthy_z_range=(1.0, 2.0),
      backend=backend,
      **kwargs,
    )

  @classmethod
  def sample_task(cls, key: jax.Array) -> jax.Array:
    return jax.random.uniform(key, (1,), maxval=2 * jnp.pi)

  @classmethod
  def sample_tasks(cls, key: jax.Array, num_train: int, num_test: int) -> tuple[np.ndarray, np.ndarray]:
    """`num_train + num_test` i.i.d. directions, the first ones for training."""
    tasks = np.asarray(jax.vmap(cls.sample_task)(jax.random.split(key, num_train + num_test)), np.float32)
    return tasks[:num_train], tasks[num_train:]

  def step(self, state: State, action: jax.Array) -> State:
    action = _clip_action(action)
    action_min = self.sys.actuator.ctrl_range[:, 0]
    action_max = self.sys.actuator.ctrl_range[:, 1]
    ctrl = (action + 1) * (action_max - action_min) * 0.5 + action_min
    pipeline_state0 = state.pipeline_state
    pipeline_state = self.pipeline_step(pipeline_state0, ctrl)
    com_before = self._com(pipeline_state0)[0]
    com_after = self._com(pipeline_state)[0]
    velocity = (com_after - com_before) / self.dt
    angle = state.info["task"][0]
    forward_reward = self._forward_reward_weight * (velocity[0] * jnp.cos(angle) + velocity[1] * jnp.sin(angle))
    z = pipeline_state.x.pos[0, 2]
    min_z, max_z = self._healthy_z_range
    healthy = (z >= min_z) & (z <= max_z)
    ctrl_cost = self._ctrl_cost_weight * jnp.sum(jnp.square(ctrl))
    metrics = {
      "reward_linvel": forward_reward,
      "reward_quadctrl": -ctrl_cost,
      "reward_alive": jnp.float32(self._healthy_reward),
      "x_velocity": velocity[0],
      "y_velocity": velocity[1],
    }
    return state.replace(
      pipeline_state=pipeline_state,
      obs=self._get_obs(pipeline_state, ctrl),
      reward=forward_reward + self._healthy_reward - ctrl_cost,
      done=1.0 - healthy.astype(jnp.float32),
      metrics={**state.metrics, **metrics},  # keep keys wrappers add (brax's EvalWrapper: 'reward')
    )


@functools.lru_cache(maxsize=None)
def walker_param_shapes() -> dict[str, tuple[int, ...]]:
  """Shapes of the Walker2d parameters a walker-params task scales, in task-vector order.

  `mass` and `inertia` (three principal moments) per body except the world,
  `damping` per dof, `friction` (sliding, torsional, rolling) per geom.
  """
  with _mujoco_warnings_logged():
    sys = mjcf.load(epath.resource_path("brax") / "envs/assets/walker2d.xml")
  num_links = sys.link.inertia.mass.shape[0]
  return {
    "mass": (num_links,),
    "inertia": (num_links, 3),
    "damping": tuple(sys.dof.damping.shape),
    "friction": tuple(sys.geom_friction.shape),
  }


def walker_task_size() -> int:
  return sum(int(np.prod(shape)) for shape in walker_param_shapes().values())


def split_walker_task(task: jax.Array) -> dict[str, jax.Array]:
  """The task vector as named multiplier arrays (see `walker_param_shapes`)."""
  parts, offset = {}, 0
  for name, shape in walker_param_shapes().items():
    size = int(np.prod(shape))
    parts[name] = task[..., offset : offset + size].reshape(task.shape[:-1] + shape)
    offset += size
  return parts


class WalkerParams(_TaskMixin, Walker2d):
  """Walker2d whose masses, inertias, damping and friction are scaled per task (walker-rand-params)."""

  def __init__(self, backend: str = "mjx", n_frames: int = WALKER_N_FRAMES, **kwargs):
    super().__init__(backend=backend, n_frames=n_frames, **kwargs)
    self._base_sys = self.sys

  task_size = _ClassProperty(lambda cls: walker_task_size())

  @staticmethod
  def sample_task(key: jax.Array) -> jax.Array:
    """Multipliers base**U(-3, 3): base 1.5 for mass, inertia, friction; 1.3 for damping."""
    parts = []
    for name, shape in walker_param_shapes().items():
      key, sub = jax.random.split(key)
      base = WALKER_DAMPING_BASE if name == "damping" else WALKER_SCALE_BASE
      exponent = jax.random.uniform(sub, shape, minval=-WALKER_LOG_SCALE_LIMIT, maxval=WALKER_LOG_SCALE_LIMIT)
      parts.append(jnp.power(base, exponent).ravel())
    return jnp.concatenate(parts)

  @classmethod
  def sample_tasks(cls, key: jax.Array, num_train: int, num_test: int) -> tuple[np.ndarray, np.ndarray]:
    """`num_train + num_test` i.i.d. parameter sets, the first ones for training."""
    tasks = np.asarray(jax.vmap(cls.sample_task)(jax.random.split(key, num_train + num_test)), np.float32)
    return tasks[:num_train], tasks[num_train:]

  def task_system(self, task: jax.Array):
    """The Brax system with the task's multipliers applied.

    Both the generalized-backend fields (`link.inertia`, `dof.damping`) and
    the MuJoCo/mjx fields (`body_mass`, `body_inertia`, `dof_damping`) are
    scaled, so the task acts whichever backend steps it; friction lives in
    `geom_friction` for both (contacts come from `mjx.collision`).
    """
    p = split_walker_task(task)
    sys = self._base_sys
    inertia = sys.link.inertia
    return sys.tree_replace(
      {
        "link.inertia.mass": inertia.mass * p["mass"],
        "link.inertia.i": inertia.i * p["inertia"][:, None, :],
        "dof.damping": sys.dof.damping * p["damping"],
        "body_mass": sys.body_mass.at[1:].multiply(p["mass"]),
        "body_inertia": sys.body_inertia.at[1:].multiply(p["inertia"]),
        "dof_damping": sys.dof_damping * p["damping"],
        "geom_friction": sys.geom_friction * p["friction"],
      }
    )

  @contextlib.contextmanager
  def _system(self, task: jax.Array):
    self.sys = self.task_system(task)
    try:
      yield
    finally:
      self.sys = self._base_sys

  def _reset_physics(self, rng: jax.Array, task: jax.Array) -> State:
    task = jnp.asarray(task, jnp.float32)
    with self._system(task):
      state = Walker2d.reset(self, rng)
    return _task_state(state, task)

  def step(self, state: State, action: jax.Array) -> State:
    # Brax's step updates `state.metrics` in place: hand it a copy.
    state = state.replace(metrics=dict(state.metrics))
    with self._system(state.info["task"]):
      return Walker2d.step(self, state, _clip_action(action))


__all__ = [
  "AntDir",
  "AntGoal",
  "CheetahDir",
  "CheetahVel",
  "HumanoidDir",
  "WalkerParams",
  "split_walker_task",
  "walker_param_shapes",
  "walker_task_size",
]
