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
  env.pop("XLA_FLAGS", None)
  cmd = [sys.executable, "-m", "mql.benchmark", *args]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


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
  assert len(re.findall(r"[0-9.]+x brax SAC \| profile:", proc.stdout)) == 2  # without and with context
  assert re.search(r"one vmapped program: +[0-9.]+ s = [0-9.]+x \(goal >= 10x\)", proc.stdout)
