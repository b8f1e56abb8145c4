"""R2R-lite: a procedurally generated, pure-JAX stand-in for Room-to-Room vision-and-language navigation.

Houses are navigation graphs (rooms with types, viewpoints in metres, doors, coloured landmark objects), expert
paths are 4-7 edge shortest paths, and each path has three distinct template instructions.  Everything is
generated from a seed; nothing is downloaded (Matterport3D-derived data may not be vendored).

* `houses`: the generator (`House`, `generate_house`, ROOM_TYPES / OBJECT_TYPES / COLORS).
* `instructions`: the grammar (`generate_instructions`) and `Vocabulary` (encode / decode with padding).
* `splits`: `load_split(name, *, seed=0)` for `train`, `val_seen`, `val_unseen` and `test` (NumPy).
* `navigation`: the JAX env: `house_arrays` / `episode_arrays` / `load_arrays`, `reset`, `step`, `observe`,
  `action_mask`, `expert_action`, `rollout`, and the metrics `success`, `oracle_success`, `navigation_error`,
  `spl` (`metrics` for all).
* `reference`: `ReferenceEnv`, the same env in plain Python, and `dijkstra`.

Example::

  import jax
  from nlirl import envs

  split = envs.load_split("train")                    # houses + episodes (NumPy)
  houses, episodes = envs.load_arrays("train")         # padded JAX tables
  state, obs = jax.vmap(envs.reset, in_axes=(None, 0))(houses, episodes)
  state, obs, reward, done = jax.jit(jax.vmap(envs.step, in_axes=(None, 0, 0)))(houses, state, actions)
  envs.metrics(houses, state)  # success, oracle_success, navigation_error, spl, path_length
"""

from nlirl.envs.houses import COLORS, OBJECT_TYPES, ROOM_TYPES, House, generate_house
from nlirl.envs.instructions import Vocabulary, generate_instructions, tokenize
from nlirl.envs.navigation import (
  HORIZON,
  MAX_DEGREE,
  MAX_NODES,
  NUM_ACTIONS,
  OBS_SIZE,
  STOP,
  SUCCESS_RADIUS_M,
  Episodes,
  Houses,
  NavState,
  action_mask,
  episode_arrays,
  expert_action,
  house_arrays,
  load_arrays,
  metrics,
  navigation_error,
  observe,
  oracle_success,
  reset,
  rollout,
  spl,
  step,
  success,
)
from nlirl.envs.reference import ReferenceEnv, dijkstra
from nlirl.envs.splits import SPLITS, Episode, Split, load_split

__all__ = [
  "COLORS",
  "HORIZON",
  "MAX_DEGREE",
  "MAX_NODES",
  "NUM_ACTIONS",
  "OBJECT_TYPES",
  "OBS_SIZE",
  "ROOM_TYPES",
  "SPLITS",
  "STOP",
  "SUCCESS_RADIUS_M",
  "Episode",
  "Episodes",
  "House",
  "Houses",
  "NavState",
  "ReferenceEnv",
  "Split",
  "Vocabulary",
  "action_mask",
  "dijkstra",
  "episode_arrays",
  "expert_action",
  "generate_house",
  "generate_instructions",
  "house_arrays",
  "load_arrays",
  "load_split",
  "metrics",
  "navigation_error",
  "observe",
  "oracle_success",
  "reset",
  "rollout",
  "spl",
  "step",
  "success",
  "tokenize",
]
