"""The package dependency rules of WORKSPACE.md, checked on the source.

common imports no method package and not schedulers; schedulers imports only
common (among our packages); methods never import each other; orbax is
imported only by common/checkpoint.py.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
OURS = ("common", "schedulers", "mql", "nlirl", "selflearn")
ALLOWED = {
    "common": {"common"},
    "schedulers": {"common", "schedulers"},
    "mql": {"common", "schedulers", "mql"},
    "nlirl": {"common", "schedulers", "nlirl"},
    "selflearn": {"common", "schedulers", "selflearn"},
}


def imported_modules(path: pathlib.Path):
  tree = ast.parse(path.read_text(), filename=str(path))
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      yield node.lineno, node.module


def python_files(package: str):
  return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", OURS)
def test_package_imports_follow_the_rules(package):
  files = python_files(package)
  assert files, f"{package} has no Python files"
  violations = []
  for path in files:
    for lineno, module in imported_modules(path):
      top = module.split(".")[0]
      if top in OURS and top not in ALLOWED[package]:
        violations.append(f"{path.relative_to(ROOT)}:{lineno} imports {module}")
  assert not violations, "\n".join(violations)


def test_only_common_checkpoint_imports_orbax():
  offenders = []
  for package in OURS:
    for path in python_files(package):
      if path.relative_to(ROOT).as_posix() == "common/checkpoint.py":
        continue
      for lineno, module in imported_modules(path):
        if module.split(".")[0] == "orbax":
          offenders.append(f"{path.relative_to(ROOT)}:{lineno}")
  assert not offenders, offenders


def test_checker_detects_a_violation(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("import os\nfrom mql import train\n")
  assert list(imported_modules(bad)) == [(1, "os"), (2, "mql")]


@pytest.mark.parametrize("package", OURS)
def test_packages_import(package):
  __import__(package)
