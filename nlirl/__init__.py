"""Inverse RL with natural-language goals: LangGoalIRL (language-conditioned AIRL + variational goal generator).

* `envs`: R2R-lite, the pure-JAX navigation benchmark (houses, instructions, splits, env, Python reference).
* `networks`, `losses`, `rollouts`: the method's (init, apply) networks, losses and trajectory handling.
* `train`, `main`, `configs/default.py`: the resumable binary (LangGoalIRL, BC, GAIL, AIRL, ablations, adaptation).
* `benchmark`, `report`: env / training throughput and the results table.

It may import `common` and `schedulers`, never another method package.  See `nlirl/README.md`.
"""

import importlib.util as _util

# Import name -> distribution of the 'nlirl' extra: one clear error when it is not installed.
_MISSING = [
  dist
  for module, dist in (
    ("flax", "flax"),
    ("orbax", "orbax-checkpoint"),
    ("absl", "absl-py"),
    ("ml_collections", "ml-collections"),
    ("tensorboardX", "tensorboardX"),
    ("matplotlib", "matplotlib"),
    ("tqdm", "tqdm"),
    ("scipy", "scipy"),
    ("sklearn", "scikit-learn"),
    ("mnist1d", "mnist1d"),
  )
  if _util.find_spec(module) is None
]
if _MISSING:
  raise ImportError(
    f"nlirl needs the 'nlirl' extra (missing: {', '.join(_MISSING)}): pip install 'jax-research-monorepo[nlirl]'"
  )
del _util, _MISSING
