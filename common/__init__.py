"""Shared, method-agnostic toolkit: replay, encoders, trainer, checkpoints, metrics, app runner.

`common` imports none of the method packages (a test enforces it).  Import the
submodules directly, e.g. `from common import trainer`.
"""

import importlib.util as _util

# Import name -> distribution of the 'train' extra: one clear error when it is not installed.
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
    f"common needs the 'train' extra (missing: {', '.join(_MISSING)}): pip install 'jax-research-monorepo[train]'"
  )
del _util, _MISSING
