"""MQL task families: PEARL's meta-RL benchmarks on Brax plus a pure-JAX point robot.

`FAMILIES` maps each name to its `Family` (env class and the original code's
defaults); `make(name, ...)` builds a Brax-style env over one split of a
`TaskSet`; `sample_tasks(name, task_seed)` draws the task set from a task
seed that is independent of the run seed (save it with the run:
`TaskSet.save` / `TaskSet.load`, JSON).

| family | task parameter | obs / act | train / test | ends |
|---|---|---|---|---|
| cheetah-vel | goal velocity ~ U[0, 3] | 17 / 6 | 100 / 30 | time limit |
| cheetah-dir | direction in {-1, +1} | 17 / 6 | 2 / 2 (same) | time limit |
| ant-dir | angle in {0, pi} | 27 / 8 | 2 / 2 (same) | torso z outside [0.2, 1] |
| ant-goal | goal uniform on a radius-3 disc | 29 / 8 | 150 / 30 | time limit |
| humanoid-dir | angle ~ U[0, 2 pi) | 244 / 17 | 100 / 30 | torso z outside [1, 2] |
| walker-params | 61 multipliers (mass, inertia, damping, friction) | 17 / 6 | 40 / 10 | fall (z, angle) |
| point-robot | goal on the unit upper half circle | 2 / 2 | 80 / 20 | time limit |

Episodes are 200 steps (20 for point-robot, PEARL's `max_path_length` for
it).  Rewards, task distributions and family defaults (including the
context-length and GRU-size hints of MQL's `run_script.py`) are documented in
`brax_tasks`, `point_robot` and `families`.

Every state carries its slot's task: `info['task']` (float32 vector) and
`info['task_id']` (row of the split), plus `info['truncation']` (time limit,
distinct from termination `done`), `info['final_obs']` and the slot's reset
key and task mask.  On `done` a slot restarts at once from a fresh initial
state (new noise) for a task drawn from its own mask; Brax's
`AutoResetWrapper`, which restores one cached first state and leaves `info`
(hence the task) untouched, is not used (`wrappers`).

Example::

  import jax
  from mql import envs

  task_set = envs.sample_tasks("cheetah-vel", 0)  # task seed, not the run seed
  task_set.save(workdir / "tasks.json")
  env = envs.make("cheetah-vel", task_set=task_set, split="train", batch_size=128)
  state = jax.jit(env.reset)(jax.random.key(run_seed))  # each slot draws its tasks uniformly
  state = jax.jit(env.step)(state, actions)
  # One test task per slot, kept across resets:
  test_env = envs.make("cheetah-vel", task_set=task_set, split="test", batch_size=30)
  state = jax.jit(test_env.reset_with_task_id)(key, jnp.arange(30))

Backend: MJX (MuJoCo's JAX port, `backend='mjx'`), the one with MuJoCo's own
dynamics (the original code ran MuJoCo) and also the fastest on CPU for these
models apart from Brax's `spring`/`positional` approximations, which change
timesteps and actuator gears.  Measured on this machine (2 CPU cores shared
with a training job; JAX 0.9, mujoco-mjx 3.17, 128 vmapped envs, a jitted
`lax.scan` of random actions, best of 2-3 repeats; noisy to about 1.5x):

| Brax env (stock) | generalized | mjx | positional | spring |
|---|---|---|---|---|
| halfcheetah | 1,490 | 2,690 | 2,730 | 8,260 |
| walker2d (dt 0.008) | 7,120 | 6,870 | 12,300 | 36,400 |
| ant | 2,740 | 18,500 | 5,130 | 15,100 |
| humanoid | 1,610 | 4,950 | — | — |

(env-steps/s; humanoid positional/spring were not run.)  With this package's
wrappers (time limit, resampling auto-reset; 200-step episodes of random
actions, so the terminating families reset often) on MJX: point-robot
1,950,000; cheetah-vel 3,000; cheetah-dir 2,900; ant-dir 8,300; ant-goal
13,300; humanoid-dir 3,600; walker-params 2,600 (8 physics frames per step)
env-steps/s.  Compiling a family's reset + step takes 1-2 minutes.

Deviations from the original (PEARL's env code, which MQL copies):

* Brax's model files and MJX instead of gym's XMLs on MuJoCo 1.31/2.0; for
  ant and humanoid Brax configures MJX's Newton solver with 1 iteration and
  4 line-search steps.  walker-params runs 8 frames of Brax's 0.002 s
  timestep (Euler) for the original dt of 0.016 s (0.004 s RK4, frame skip 4).
* No contact-force terms: ant-dir/ant-goal lack `0.5e-3 sum clip(cfrc_ext)^2`,
  humanoid-dir lacks the impact cost, and observations hold no contact forces
  (ant-goal 29-d instead of 113, humanoid 244-d instead of 376); the
  half-cheetah observation lacks the torso COM (17-d instead of 20).
* walker-params scales the seven bodies' masses and inertias (the world body
  has no mass) and, as mujoco_py's `set_task`, does not recompute derived
  constants (`invweight`).
* Task sets come from the task seed (MQL drew them from the run seed).
  point-robot uses the dense reward with the half-circle goals and origin
  start of PEARL's `sparse-point-robot`.
"""

from mql.envs import _quiet  # noqa: F401  (first: mujoco's missing-warp notices off stdout)
from mql.envs.families import DEFAULT_BACKEND, FAMILIES, Family, get_family, make, make_task_env, sample_tasks
from mql.envs.task_sets import TaskSet
from mql.envs.wrappers import TaskEpisodeWrapper, VmapTaskWrapper

__all__ = [
  "DEFAULT_BACKEND",
  "FAMILIES",
  "Family",
  "TaskEpisodeWrapper",
  "TaskSet",
  "VmapTaskWrapper",
  "get_family",
  "make",
  "make_task_env",
  "sample_tasks",
]
