"""Meta-Q-Learning (TD3 with a GRU context, multi-task Brax training, propensity-score adaptation).

Task families (`envs`), the TD3 + GRU-context agent (`networks`, `losses`,
`replay`, `trainer`), propensity adaptation (`propensity`, `adaptation`), the
`mql.main` binary, `report` and `benchmark`; see `mql/README.md`.  It may
import `common` and `schedulers`, never another method package.
"""

import importlib.util as _util

# Import name -> distribution of the 'mql' extra: one clear error when it is not installed.
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
    ("brax", "brax"),
    ("mujoco", "mujoco"),
  )
  if _util.find_spec(module) is None
]
if _MISSING:
  raise ImportError(
    f"mql needs the 'mql' extra (missing: {', '.join(_MISSING)}): pip install 'jax-research-monorepo[mql]'"
  )
del _util, _MISSING
