"""Test-session defaults, set before JAX is imported anywhere.

* CPU only, so results do not depend on an accelerator being present.
* `JAX_DISABLE_MOST_OPTIMIZATIONS`: XLA compile time dominates these small
  tests (the Flax examples' tests do the same); subprocesses inherit it.
  Export it as 0 to test fully optimised programs.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
