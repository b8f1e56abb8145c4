"""The MQL benchmark binary: every section runs and prints its ratio against the peer."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from mql.configs import default as default_config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _bench(*args, timeout=900):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "")  # the test session's compile flags, nothing of the caller's
  cmd = [sys.executable, "-m", "mql.benchmark", *args]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
def test_replay_section_compares_every_family_with_the_original_layout():
  proc = _bench("--sections=replay")
  assert proc.returncode == 0, proc.stderr[-3000:]
  ratios = dict(re.findall(r"^(\S+)\s+S=.*= ([0-9.]+)x \(goal <= 0.1x\)$", proc.stdout, re.M))
  assert set(ratios) == set(default_config.FAMILY_NAMES)
  assert all(0 < float(r) <= 0.1 for r in ratios.values()), ratios


def test_unknown_section_exits_2_naming_the_flag():
  proc = _bench("--sections=replay,speed")
  assert proc.returncode == 2
  assert "--sections" in proc.stderr and "speed" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow  # compiles brax's SAC, both TD3 variants and the adaptation programs (several minutes)
def test_throughput_and_adaptation_sections_print_ratios():
  proc = _bench(
    "--sections=throughput,adaptation",
    "--num_envs=4",
    "--steps_per_iteration=2",
    "--repeats=1",
    "--test_tasks=2",
    timeout=1800,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  if "brax SAC (peer):      skipped: " in proc.stdout:  # a jax this brax's SAC does not run on
    assert len(re.findall(r"n/a brax SAC \| profile:", proc.stdout)) == 2
  else:
    assert len(re.findall(r"[0-9.]+x brax SAC \| profile:", proc.stdout)) == 2  # without and with context
  assert re.search(r"one vmapped program: +[0-9.]+ s = [0-9.]+x \(goal >= 10x\)", proc.stdout)


def test_brax_sac_peer_is_skipped_with_one_line_where_jax_lacks_device_put_replicated():
  code = (
    "import jax\n"
    "get = vars(jax).get('__getattr__')\n"
    "def hide(name):\n"
    "  if name == 'device_put_replicated' or get is None:\n"
    "    raise AttributeError(name)\n"
    "  return get(name)\n"
    "jax.__getattr__ = hide  # as in jax >= 0.10\n"
    "from mql import benchmark\n"
    "print(benchmark.brax_sac_unsupported())\n"
  )
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert re.fullmatch(r"brax \S+'s SAC calls jax.device_put_replicated, which jax \S+ no longer has\n", proc.stdout)
