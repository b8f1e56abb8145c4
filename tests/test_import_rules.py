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


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
  """Module -> our modules it imports (module-level and inside functions)."""
  modules = {_module_name(p): p for package in OURS for p in python_files(package)}
  graph = {}
  for name, path in modules.items():
    edges = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
      targets = []
      if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        # `from pkg import mod` imports the module pkg.mod when there is one.
        targets = [
          f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names
        ]
      edges |= {t for t in targets if t in modules and t != name}
    graph[name] = edges
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle of `graph` (as a path that returns to its start), or None."""
  state = {}

  def visit(node, stack):
    state[node] = "open"
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt) :] + [nxt]
      if nxt not in state:
        cycle = visit(nxt, stack + [nxt])
        if cycle:
          return cycle
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node, [node])
      if cycle:
        return cycle
  return None


def test_no_import_cycles():
  cycle = find_cycle(import_graph())
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_one():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None
