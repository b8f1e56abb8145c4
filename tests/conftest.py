"""Test-session defaults, set before JAX is imported anywhere.

* CPU only, so results do not depend on an accelerator being present.
* `JAX_DISABLE_MOST_OPTIMIZATIONS`: XLA compile time dominates these small
  tests (the Flax examples' tests do the same); subprocesses inherit it.
  A value already in the environment wins: `make test-opt` exports 0 and
  runs the `opt`-marked parity and kill/resume tests on fully optimised
  programs.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
