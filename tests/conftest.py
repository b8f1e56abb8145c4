"""Test-session defaults, set before JAX is imported anywhere.

* CPU only, so results do not depend on an accelerator being present.
* `JAX_DISABLE_MOST_OPTIMIZATIONS`: XLA compile time dominates these small
  tests (the Flax examples' tests do the same); subprocesses inherit it.
  A value already in the environment wins: `make test-opt` exports 0 and
  runs the `opt`-marked parity and kill/resume tests on fully optimised
  programs.
* `--xla_cpu_use_fusion_emitters=false` with optimisations off (see below).
* A persistent compilation cache private to this test session (a fresh
  temporary directory, removed at exit; a JAX_COMPILATION_CACHE_DIR already
  in the environment wins): the
  xdist workers and the binaries the tests start inherit it, so a program
  compiled once (a smoke run, then its resume, or the same network in several
  tests) is not compiled again.  Nothing survives the session, so a test can
  never pass on an executable from an older checkout.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

# With optimisations off, XLA's CPU fusion emitters (an MLIR pipeline per fusion)
# are most of the compile time; the older elemental emitters compile the same
# programs 1.6-2.7x faster.  Tests that set XLA_FLAGS for a subprocess start from
# TESTS_XLA_FLAGS.  `make test-opt` keeps XLA's defaults.
if os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] == "1":
  os.environ.setdefault("TESTS_XLA_FLAGS", "--xla_cpu_use_fusion_emitters=false")
else:
  os.environ.setdefault("TESTS_XLA_FLAGS", "")
if "PYTEST_XDIST_WORKER" not in os.environ:
  os.environ["XLA_FLAGS"] = f"{os.environ['TESTS_XLA_FLAGS']} {os.environ.get('XLA_FLAGS', '')}".strip()

if "JAX_COMPILATION_CACHE_DIR" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
  _cache_dir = tempfile.mkdtemp(prefix="jax-test-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
  atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
