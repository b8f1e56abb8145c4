"""The package dependency rules of WORKSPACE.md, checked on the source.

common imports no method package and not schedulers; schedulers imports only
common (among our packages); methods never import each other; orbax is
imported only by common/checkpoint.py; there are no import cycles.  Inside
selflearn, the core (what models and their inputs are made of) never
reaches the simulator (`selflearn.sim`), directly or through another
module: only task runners, the binaries and evaluation with the judge use it.
"""

import ast
import pathlib
import sys

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


def _lazy_reexports(tree: ast.Module) -> set[ast.AST]:
  """The nodes of a module-level `__getattr__` (PEP 562): it imports only once both modules are loaded."""
  hooks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"]
  return {node for hook in hooks for node in ast.walk(hook)}


def import_graph() -> dict[str, set[str]]:
  """Module -> our modules it imports (module-level and inside functions, not lazy re-exports)."""
  modules = {_module_name(p): p for package in OURS for p in python_files(package)}
  graph = {}
  for name, path in modules.items():
    edges = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    lazy = _lazy_reexports(tree)
    for node in ast.walk(tree):
      if node in lazy:
        continue
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


# --- selflearn's layers --------------------------------------------------------------------------------------

# Modules that may import the simulator (its world, annotators, judge): runners, binaries, judged evaluation.
SELFLEARN_SIM_USERS = (
  "selflearn.sim",
  "selflearn.tasks",
  "selflearn.train",
  "selflearn.main",
  "selflearn.simulate",
  "selflearn.evaluation.replay",
  "selflearn.results",  # scripts that regenerate committed results from simulated logs
)
# The core: data, signals, models, rewriting, teaching and what they share; never the simulator.
SELFLEARN_CORE = (
  "selflearn",
  "selflearn.language",
  "selflearn.data",
  "selflearn.signals",
  "selflearn.understanding",
  "selflearn.rewriting",
  "selflearn.teaching",
  "selflearn.training",
  "selflearn.amc",
  "selflearn.evaluation",
  "selflearn.evaluation.metrics",
  "selflearn.evaluation.bootstrap",
  "selflearn.evaluation.winloss",
  "selflearn.evaluation.recurrence",
  "selflearn.evaluation.seeds",
  "selflearn.configs",
  "selflearn.benchmark",
  "selflearn.benchmarks",
  "selflearn.rewrite",
)


def _under(name: str, prefixes, *, exact=("selflearn", "selflearn.evaluation")) -> bool:
  """`name` is one of `prefixes` or inside one (the bare packages in `exact` match only themselves)."""
  return any(name == p or (p not in exact and name.startswith(p + ".")) for p in prefixes)


def _with_parents(graph: dict[str, set[str]], name: str) -> set[str]:
  """What importing `name` runs: its own imports and those of the packages above it."""
  parts = name.split(".")
  out = set(graph.get(name, ()))
  for k in range(1, len(parts)):
    out |= graph.get(".".join(parts[:k]), set())
  return out


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
  """Every module that importing `start` imports (transitively, parent packages included) -> who imports it."""
  seen, todo = {}, [start]
  while todo:
    node = todo.pop()
    for nxt in sorted(_with_parents(graph, node)):
      if nxt not in seen and nxt != start:
        seen[nxt] = node
        todo.append(nxt)
  return seen


def _selflearn_modules(graph):
  return sorted(m for m in graph if m == "selflearn" or m.startswith("selflearn."))


def test_every_selflearn_module_is_core_or_a_simulator_user():
  loose = [m for m in _selflearn_modules(import_graph()) if not _under(m, SELFLEARN_CORE + SELFLEARN_SIM_USERS)]
  assert not loose, f"classify these modules in tests/test_import_rules.py: {loose}"


def test_only_runners_binaries_and_judged_evaluation_import_the_simulator():
  graph = import_graph()
  offenders = [
    f"{m} imports {t}"
    for m in _selflearn_modules(graph)
    for t in sorted(graph[m])
    if _under(t, ("selflearn.sim",)) and not _under(m, SELFLEARN_SIM_USERS)
  ]
  assert not offenders, "\n".join(offenders)


def test_selflearn_core_never_reaches_the_simulator():
  graph = import_graph()
  leaks = []
  for m in _selflearn_modules(graph):
    if _under(m, SELFLEARN_SIM_USERS):
      continue
    via = reachable(graph, m)
    for target in sorted(t for t in via if _under(t, ("selflearn.sim",))):
      path, node = [target], target
      while node != m and node in via:
        node = via[node]
        path.append(node)
      leaks.append(" <- ".join(path))
  assert not leaks, "core modules reach the simulator:\n" + "\n".join(leaks)


def test_reachability_follows_imports_and_parent_packages():
  graph = {"p.core": {"p.mid"}, "p.mid": {"p.sim.world"}, "p.sim": set(), "p.sim.world": set(), "p": set()}
  assert set(reachable(graph, "p.core")) == {"p.mid", "p.sim.world"}
  graph["p"] = {"p.sim.world"}  # a package __init__ that imports the simulator taints everything under it
  assert "p.sim.world" in reachable({"p.x": set(), **graph}, "p.x")


# The core install (jax, optax, chex, numpy) gives these modules; they may
# import the training stack only inside functions (e.g. a legacy file format).
SCHEDULERS_LIBRARY = (
  "schedulers/__init__.py",
  "schedulers/_validation.py",
  "schedulers/greedy_lr.py",
  "schedulers/per_eval.py",
  "schedulers/state_utils.py",
  "schedulers/baselines.py",
  "schedulers/hypergradient.py",
  "schedulers/line_search.py",
  "schedulers/optimizers.py",
  "schedulers/learned/__init__.py",
  "schedulers/learned/transform.py",
  "schedulers/learned/policy.py",
)
CORE = {"jax", "optax", "chex", "numpy", "schedulers"}


def _module_level_imports(path: pathlib.Path):
  """(line, module) of the imports that run when the module is imported (not those inside functions)."""
  pending = list(ast.parse(path.read_text(), filename=str(path)).body)
  while pending:
    node = pending.pop()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
      continue
    if isinstance(node, ast.Import):
      yield from ((node.lineno, alias.name) for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      yield node.lineno, node.module
    else:
      pending.extend(ast.iter_child_nodes(node))


def test_schedulers_library_imports_only_the_core_at_module_level():
  offenders = []
  for name in SCHEDULERS_LIBRARY:
    for lineno, module in _module_level_imports(ROOT / name):
      top = module.split(".")[0]
      if top not in CORE and top not in sys.stdlib_module_names and top != "__future__":
        offenders.append(f"{name}:{lineno} imports {module}")
  assert not offenders, "\n".join(offenders)
