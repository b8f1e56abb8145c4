"""The task families, their defaults, and `make` / `sample_tasks`."""

import dataclasses
import types
from collections.abc import Mapping

import jax

from mql.envs import brax_tasks, point_robot
from mql.envs.task_sets import TaskSet, task_key
from mql.envs.wrappers import TaskEpisodeWrapper, VmapTaskWrapper

# Chosen on this CPU (see the package docstring for the measurements).
DEFAULT_BACKEND = "mjx"


@dataclasses.dataclass(frozen=True)
class Family:
  """A task family and the defaults of the original code.

  Attributes:
    name: the family name.
    env_class: the task env (`reset_with_task`, `sample_task`, `sample_tasks`).
    num_train, num_test: task counts (MQL `configs/pearl_envs.json`; PEARL's
      for point-robot).
    episode_length: steps per episode (MQL/PEARL `max_path_length`).
    history_length: context length hint (MQL `run_script.py --history_length`).
    context_size: GRU hidden size hint (MQL `run_script.py --hiddens_conext`).
      MQL has no point-robot: its two hints (10, 20) are ours.
    num_evals: evaluation episodes per test task (MQL `pearl_envs.json`;
      2 for point-robot, ours).
    brax: whether the family runs on Brax physics (takes `backend=`).
    description: one line.
  """

  name: str
  env_class: type
  num_train: int
  num_test: int
  episode_length: int
  history_length: int
  context_size: int
  num_evals: int
  brax: bool
  description: str

  @property
  def task_size(self) -> int:
    return int(self.env_class.task_size)


def _families(*families: Family) -> Mapping[str, Family]:
  return types.MappingProxyType({f.name: f for f in families})


FAMILIES: Mapping[str, Family] = _families(
  Family(
    name="cheetah-vel",
    env_class=brax_tasks.CheetahVel,
    num_train=100,
    num_test=30,
    episode_length=200,
    history_length=20,
    context_size=15,
    num_evals=2,
    brax=True,
    description="half-cheetah, goal velocity ~ U[0, 3]: -|v - v_goal| - 0.05 ||a||^2",
  ),
  Family(
    name="cheetah-dir",
    env_class=brax_tasks.CheetahDir,
    num_train=2,
    num_test=2,
    episode_length=200,
    history_length=20,
    context_size=20,
    num_evals=4,
    brax=True,
    description="half-cheetah, direction in {-1, +1}: d v - 0.05 ||a||^2",
  ),
  Family(
    name="ant-dir",
    env_class=brax_tasks.AntDir,
    num_train=2,
    num_test=2,
    episode_length=200,
    history_length=25,
    context_size=30,
    num_evals=4,
    brax=True,
    description="ant, direction angle in {0, pi}: projected torso velocity + 1 - 0.5 ||a||^2, terminates",
  ),
  Family(
    name="ant-goal",
    env_class=brax_tasks.AntGoal,
    num_train=150,
    num_test=30,
    episode_length=200,
    history_length=40,
    context_size=40,
    num_evals=2,
    brax=True,
    description="ant, goal uniform on a radius-3 disc: -L1 distance - 0.1 ||a||^2, no termination",
  ),
  Family(
    name="humanoid-dir",
    env_class=brax_tasks.HumanoidDir,
    num_train=100,
    num_test=30,
    episode_length=200,
    history_length=15,
    context_size=20,
    num_evals=2,
    brax=True,
    description="humanoid, direction ~ U[0, 2 pi): 1.25 projected COM velocity + 5 - 0.1 ||ctrl||^2, terminates",
  ),
  Family(
    name="walker-params",
    env_class=brax_tasks.WalkerParams,
    num_train=40,
    num_test=10,
    episode_length=200,
    history_length=10,
    context_size=30,
    num_evals=2,
    brax=True,
    description="walker2d, mass/inertia/friction x 1.5^U(-3,3), damping x 1.3^U(-3,3): v + 1 - 1e-3 ||a||^2",
  ),
  Family(
    name="point-robot",
    env_class=point_robot.PointRobot,
    num_train=80,
    num_test=20,
    episode_length=20,
    history_length=10,
    context_size=20,
    num_evals=2,
    brax=False,
    description="2-D point, goal on the unit upper half circle: -distance (pure JAX)",
  ),
)


def get_family(name: str) -> Family:
  """The `Family` called `name`; an unknown name is a ValueError listing the valid ones."""
  if name not in FAMILIES:
    raise ValueError(f"unknown task family {name!r}; valid families: {', '.join(FAMILIES)}")
  return FAMILIES[name]


def sample_tasks(
  family: str, key: int | jax.Array, num_train: int | None = None, num_test: int | None = None
) -> TaskSet:
  """Draws a family's train and test tasks from a task key (or int task seed).

  Args:
    family: a key of `FAMILIES`.
    key: the task seed (int) or PRNG key; keep it separate from the run seed.
    num_train, num_test: counts; default to the family's (MQL's) counts.

  Returns:
    The `TaskSet` (records `task_seed` when `key` is an int).
  """
  spec = get_family(family)
  num_train = spec.num_train if num_train is None else int(num_train)
  num_test = spec.num_test if num_test is None else int(num_test)
  if num_train < 1 or num_test < 0:
    raise ValueError(f"need num_train >= 1 and num_test >= 0, got {num_train} and {num_test}")
  key, seed = task_key(key)
  train, test = spec.env_class.sample_tasks(key, num_train, num_test)
  return TaskSet(family=family, train=train, test=test, task_seed=seed)


def make_task_env(name: str, backend: str | None = None, **kwargs):
  """The bare task env of a family (`reset_with_task(rng, task)`; no task set, no time limit)."""
  spec = get_family(name)
  if not spec.brax:
    if backend is not None:
      raise ValueError(f"{name} is pure JAX and takes no backend (got {backend!r})")
    return spec.env_class(**kwargs)
  return spec.env_class(backend=DEFAULT_BACKEND if backend is None else backend, **kwargs)


def make(
  name: str,
  *,
  task_set: TaskSet | None = None,
  task_seed: int = 0,
  split: str = "train",
  episode_length: int | None = None,
  batch_size: int | None = None,
  backend: str | None = None,
  **env_kwargs,
):
  """A family's env over one split of its task set, with time limit and resampling auto-reset.

  Args:
    name: a key of `FAMILIES` (unknown names raise a ValueError listing them).
    task_set: the run's tasks; default `sample_tasks(name, task_seed)`.
    task_seed: seed of the default task set (independent of the run seed).
    split: 'train' or 'test'.
    episode_length: default the family's (200; 20 for point-robot).
    batch_size: if given, a `VmapTaskWrapper` of that many slots; otherwise
      one slot (`TaskEpisodeWrapper`) to vmap yourself.
    backend: Brax physics backend (default `DEFAULT_BACKEND`); not for point-robot.
    **env_kwargs: passed to the env class (e.g. `n_frames`).

  Returns:
    A Brax `Env` whose states carry `info['task']`, `info['task_id']`,
    `info['truncation']` etc. (see `mql.envs.wrappers`), with attributes
    `family`, `task_set`, `split` and `tasks`.
  """
  spec = get_family(name)
  if task_set is None:
    task_set = sample_tasks(name, task_seed)
  if task_set.family != name:
    raise ValueError(f"task set is for family {task_set.family!r}, not {name!r}")
  if task_set.task_size != spec.task_size:
    raise ValueError(f"{name} tasks have size {spec.task_size}, the task set has {task_set.task_size}")
  tasks = task_set.split(split)
  if tasks.shape[0] == 0:
    raise ValueError(f"the {split} split of the {name} task set is empty")
  env = TaskEpisodeWrapper(
    make_task_env(name, backend=backend, **env_kwargs),
    tasks,
    spec.episode_length if episode_length is None else episode_length,
  )
  if batch_size is not None:
    env = VmapTaskWrapper(env, batch_size)
  env.family, env.task_set, env.split = name, task_set, split
  return env
