"""`run(train_fn)`: the shared entry point of every absl training binary.

A method's `main.py` is a few lines::

  from common import app
  from schedulers import train

  if __name__ == "__main__":
    app.run(train.train_and_evaluate, validate=train.validate_config,
            default_config=train.DEFAULT_CONFIG, resumable=train.RESUMABLE_FIELDS)

`run` defines the shared flags (`--config` through ml_collections
`config_flags`, as `module:variant`, e.g. `mql.configs.default:smoke`, or
`path.py:variant`; `--workdir`; multi-host
`--coordinator_address/--num_processes/--process_id` or `--distributed`;
every `--jax_*` flag), then, before anything compiles or is written:

1. loads the config file itself, so a missing file, a syntax error or an
   unknown variant is one line naming the file and line;
2. joins the multi-host job (`jax.distributed.initialize`) when asked, so
   validation sees the global device count;
3. validates the config (`validate(config)` raising `ConfigError`);
4. checks that the workdir can be written, and that a workdir holding an
   earlier run was run with the same config: the workdir's `config.json` is
   the run's identity.  Only the binary's `resumable` fields (more steps,
   checkpoint cadence, ...) may differ; such a change is appended to
   `<workdir>/config_history.jsonl`;
5. creates the workdir and writes `config.json` (process 0 only), with the
   run's `provenance` (versions of Python, jax, jaxlib, flax, optax, brax,
   orbax and this package, and its git commit); the same block is added to
   the `results.json` the binary wrote, when it returns.

Then it calls `train_fn(config, workdir)`.  Bad input exits with status 2 and
one message naming the flag or config field, the config file and the line;
a rejected run leaves no workdir behind.  A `ConfigError` raised by `train_fn`
itself (a check that needs the loaded data, before anything compiles) is
reported the same way, and a fresh run's workdir is removed again.  A checkpoint that does not match the
state (`common.checkpoint.CheckpointRestoreError`) also exits 2 with one line.

Output: a binary prints its own progress and summary lines, and warnings;
library INFO logs (orbax, JAX) are hidden unless `--verbosity=0` (or `-v 0`)
is given.  `--help` lists the config's variants and every field with its
default and meaning.  `run_tool(main)` is the same runner for binaries that
take no config (benchmarks).
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import functools
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import traceback
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import ml_collections
from absl import app as absl_app
from absl import flags, logging
from ml_collections import config_flags

from common import checkpoint

EXIT_BAD_INPUT = 2
CONFIG_FILE = "config.json"
CONFIG_HISTORY_FILE = "config_history.jsonl"
RESULTS_FILE = "results.json"
PROVENANCE_KEY = "provenance"  # in config.json and results.json; never a config field
# Distributions whose versions a run records (import name differs for some).
PROVENANCE_PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "brax", "orbax-checkpoint", "jax-research-monorepo")
_HELP_FLAGS = ("-h", "-help", "--help", "--helpshort", "-?")


@dataclasses.dataclass
class ConfigError(ValueError):
  """An invalid config value: `field` is the dotted path, e.g. 'optim.factor'."""

  field: str
  message: str

  def __str__(self) -> str:
    return f"config.{self.field}: {self.message}"


def check(config: ml_collections.ConfigDict, field: str, ok: Callable[[Any], bool], requirement: str) -> None:
  """Raises `ConfigError` unless `ok(config.<field>)`; `requirement` says why."""
  value = _get(config, field)
  try:
    good = bool(ok(value))
  except (TypeError, ValueError):
    good = False
  if not good:
    raise ConfigError(field, f"got {value!r}; {requirement}.")


def check_known_fields(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` for the first field of `config` absent from `reference`.

  Catches misspelt fields in hand-written config files, which a locked
  ConfigDict cannot (it only rejects unknown command-line overrides).
  """
  for field in _fields(config):
    try:
      _get(reference, field)
    except (KeyError, AttributeError):
      raise ConfigError(field, "unknown field (not in the default config).") from None


def _fields(config: Any, prefix: str = "") -> Iterable[str]:
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, (ml_collections.ConfigDict, dict)) and value:
      yield from _fields(value, name + ".")
    else:
      yield name


def _get(config: Any, field: str) -> Any:
  value = config
  for part in field.split("."):
    value = value[part]
  return value


def locate_field(config_arg: str, field: str, argv: Iterable[str] = ()) -> str:
  """Where `field` was set: a `--config.<field>` flag, or `file:line`."""
  for arg in argv:
    if arg.startswith(f"--config.{field}="):
      return f"flag {arg}"
  path = pathlib.Path(config_arg.split(":", 1)[0])
  leaf = field.split(".")[-1]
  try:
    lines = path.read_text().splitlines()
  except OSError:
    return str(path)
  full = re.compile(rf"\b{re.escape(field)}\s*=(?!=)")
  short = re.compile(rf"(^|[\s.(,]){re.escape(leaf)}\s*=(?!=)")
  for pattern in (full, short):
    for i, line in enumerate(lines, 1):
      if pattern.search(line):
        return f"{path}:{i}"
  return str(path)


def fail(message: str) -> None:
  """Bad input: one line `error: <message>` on stderr and exit 2 (for tools' own flag checks too)."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(EXIT_BAD_INPUT)


_fail = fail


# --- config files -------------------------------------------------------------


def _config_arg(argv: Sequence[str]) -> str | None:
  """The value of `--config` in `argv` (`--config=X` or `--config X`)."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _config_as_file(argv: list[str]) -> None:
  """Rewrites the `--config` value of `argv` in place to the file form (see `config_file`)."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      argv[i] = "--config=" + config_file(arg.split("=", 1)[1])
    elif arg == "--config" and i + 1 < len(argv):
      argv[i + 1] = config_file(argv[i + 1])


def _load_module(path: pathlib.Path, config_arg: str) -> Any:
  """Imports a config file; a syntax or import error exits 2 naming file:line."""
  try:
    source = path.read_text()
  except OSError as e:
    _fail(f"--config={config_arg}: cannot read {path} ({e.strerror or e}).")
  try:
    compile(source, str(path), "exec")
  except SyntaxError as e:
    _fail(f"--config={config_arg}: {path}:{e.lineno}: syntax error: {e.msg}.")
  spec = importlib.util.spec_from_file_location(f"_config_{abs(hash(str(path)))}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-exception-caught
    _fail(f"--config={config_arg}: {_where(e, path)}: {type(e).__name__}: {e}")
  if not callable(getattr(module, "get_config", None)):
    _fail(f"--config={config_arg}: {path} defines no get_config(arg) function.")
  return module


def _where(error: BaseException, path: pathlib.Path) -> str:
  """`path:line` of the innermost traceback frame in `path` (else `path`)."""
  line = None
  for frame in traceback.extract_tb(error.__traceback__):
    if pathlib.Path(frame.filename).resolve() == path.resolve():
      line = frame.lineno
  return f"{path}:{line}" if line else str(path)


_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def config_file(config_arg: str) -> str:
  """`module[:variant]` -> `path/to/module.py[:variant]`; a file path is returned as given.

  A config is named by its module (`mql.configs.default:smoke`, found on
  `sys.path`, so installed packages need no file paths) or by a file path
  (`mql/configs/default.py:smoke`, any file).  An existing file wins; exits 2
  when neither exists.
  """
  name, sep, variant = config_arg.partition(":")
  if pathlib.Path(name).is_file() or not _MODULE_NAME.fullmatch(name):
    return config_arg
  try:
    spec = importlib.util.find_spec(name)
  except (ImportError, ValueError) as e:  # a missing parent package, or its extra missing
    _fail(f"--config={config_arg}: no such config file, and module {name} cannot be found ({e}).")
  if spec is None or not spec.origin or not spec.origin.endswith(".py"):
    _fail(f"--config={config_arg}: no such config file or module {name}.")
  return f"{spec.origin}{sep}{variant}"


def config_module_name(path: str | os.PathLike[str]) -> str | None:
  """The dotted module name of a config file on `sys.path` (None if it is not importable as one)."""
  path = pathlib.Path(path).resolve()
  for entry in sys.path:
    root = pathlib.Path(entry or os.getcwd()).resolve()
    try:
      parts = path.with_suffix("").relative_to(root).parts
    except ValueError:
      continue
    packages = [root.joinpath(*parts[:i]) for i in range(1, len(parts))]
    if parts and all((d / "__init__.py").is_file() for d in packages) and all(p.isidentifier() for p in parts):
      return ".".join(parts)
  return None


def _display(config_arg: str) -> str:
  """`config_arg` in module form when its file is an importable module."""
  path, sep, variant = config_arg.partition(":")
  name = config_module_name(path) if pathlib.Path(path).is_file() else None
  return f"{name}{sep}{variant}" if name else config_arg


def load_config(config_arg: str) -> tuple[Any, ml_collections.ConfigDict]:
  """Loads `module[:variant]` or `path.py[:variant]` as ml_collections does; exits 2 on any error.

  Returns:
    The config module and `get_config(variant)` (or `get_config()`).
  """
  path_text, _, variant = config_file(config_arg).partition(":")
  path = pathlib.Path(path_text)
  if not path.is_file():
    _fail(f"--config={config_arg}: no such config file {path}.")
  module = _load_module(path, config_arg)
  try:
    config = module.get_config(variant) if variant else module.get_config()
  except Exception as e:  # pylint: disable=broad-exception-caught
    variants = getattr(module, "VARIANTS", None)
    known = f" Variants: {', '.join(v or '(default)' for v in variants)}." if variants else ""
    _fail(f"--config={config_arg}: {_where(e, path)}: {e}{known}")
  if not isinstance(config, ml_collections.ConfigDict):
    _fail(f"--config={config_arg}: {path}: get_config returned {type(config).__name__}, not a ConfigDict.")
  return module, config


def _field_comment(lines: list[str], lineno: int) -> str:
  """The trailing `# comment` of a line, else the comment block just above it."""
  line = lines[lineno - 1]
  if "#" in line:
    return line.split("#", 1)[1].strip()
  above = []
  i = lineno - 2
  while i >= 0 and lines[i].strip().startswith("#"):
    above.insert(0, lines[i].strip().lstrip("#").strip())
    i -= 1
  return " ".join(above)


def describe_config(config_arg: str, resumable: Sequence[str] = ()) -> str:
  """`--help` text of a config: its variants, then every field with default and meaning."""
  module, config = load_config(config_arg)
  config_arg = config_file(config_arg)
  path = pathlib.Path(config_arg.partition(":")[0])
  lines = path.read_text().splitlines()
  name = _display(str(path))
  out = [f"Config {_display(config_arg)} ({path}; set fields with --config.<field>=<value>)."]
  variants = getattr(module, "VARIANTS", None)
  if variants:
    out.append(f"\nVariants (--config={name}:<variant>):")
    width = max(len(v or "(default)") for v in variants)
    out += [f"  {(v or '(default)'):<{width}}  {text}" for v, text in variants.items()]
  elif module.__doc__:
    out.append("\n" + module.__doc__.strip())
  out.append("\nFields (default = value; meaning):")
  rows = []
  for field in _fields(config):
    where = locate_field(config_arg, field)
    lineno = int(where.rsplit(":", 1)[1]) if where.rsplit(":", 1)[-1].isdigit() else None
    meaning = _field_comment(lines, lineno) if lineno else ""
    rows.append((f"{field} = {_get(config, field)!r}", meaning))
  width = min(max(len(r[0]) for r in rows), 44) if rows else 0
  out += [f"  {left:<{width}}  {meaning}".rstrip() for left, meaning in rows]
  if resumable:
    out.append(f"\nFields that may change when a workdir is resumed: {', '.join(resumable)}.")
  return "\n".join(out)


# --- flags ----------------------------------------------------------------------


_DID_YOU_MEAN = re.compile(r'Did you mean "([^"]+)"')


def unknown_field_message(error: BaseException, overrides: Sequence[str]) -> str:
  """One line for ml_collections' unknown-field error (a KeyError/AttributeError whose text spans lines)."""
  text = str(error.args[0]) if error.args else str(error)
  while len(text) > 1 and text[0] == text[-1] and text[0] in "'\"" and "\\" in text:  # a repr of the message
    try:
      text = str(ast.literal_eval(text))
    except (ValueError, SyntaxError):
      break
  first = text.splitlines()[0].strip() if text.strip() else "?"
  name = first.strip("'\"")
  # The override that reaches the unknown name, shown with its dotted path.
  where = next((o.split("=", 1)[0] for o in overrides if re.search(rf"[.]{re.escape(name)}([.=]|$)", o)), None)
  where = where or (overrides[0].split("=", 1)[0] if overrides else None)
  message = f"unknown config field {name!r}"
  if where:
    message += f" in {where}"
  suggestion = _DID_YOU_MEAN.search(text)
  if suggestion:
    message += f" (did you mean {suggestion.group(1)!r}?)"
  return message


def _flags_parser(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    if isinstance(e, (AttributeError, KeyError)):
      message = unknown_field_message(e, overrides)
    elif isinstance(e, flags.Error):
      message = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
    else:
      message = f"{type(e).__name__}: {' '.join(str(e).split())}"
    _fail(f"{message}; run with --help to list the config fields (set as --config.<field>=<value>) and flags.")


def _quiet_libraries() -> None:
  """Library INFO logs (orbax, JAX backends) off unless --verbosity was given."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def _flag_lines(names: Iterable[str]) -> list[str]:
  out = []
  for name in names:
    flag = flags.FLAGS[name]
    default = "" if flag.default is None else f" (default: {flag.default})"
    out.append(f"  --{name}: {flag.help}{default}")
  return out


_SHARED_FLAGS = ("config", "workdir", "coordinator_address", "num_processes", "process_id", "distributed")


def _usage(default_config: str | None, resumable: Sequence[str], argv: Sequence[str]) -> str:
  program = _program_name()
  doc = (sys.modules["__main__"].__doc__ or "").strip()
  example = (_display(default_config).partition(":")[0] if default_config else None) or "MODULE"
  out = [f"usage: {program} --config={example}[:VARIANT] --workdir=DIR [--config.<field>=<value> ...] [flags]"]
  out.append("  (--config takes a config module, e.g. mql.configs.default:smoke, or a file, PATH.py[:VARIANT])")
  if doc:
    out += ["", doc]
  out += [
    "",
    "Flags:",
    *_flag_lines(_SHARED_FLAGS),
    "  --verbosity=0 (-v 0): also show library INFO logs (orbax, JAX); default: warnings only",
    "  --jax_<option>=<value>: any JAX config option, e.g. --jax_platforms=cpu",
    "  --helpfull: every flag of every library",
  ]
  config_arg = _config_arg(argv) or default_config
  if config_arg:
    out += ["", describe_config(config_arg, resumable)]
  return "\n".join(out)


def _program_name() -> str:
  spec = getattr(sys.modules["__main__"], "__spec__", None)
  if spec and spec.name:
    return f"python -m {spec.name.removesuffix('.__main__')}"
  return pathlib.Path(sys.argv[0]).name


# --- multi-host -----------------------------------------------------------------


def _init_distributed() -> None:
  """Joins the multi-host job named by the flags, before any JAX computation."""
  f = flags.FLAGS
  if f.coordinator_address:
    if f.num_processes is None or f.process_id is None:
      _fail("--coordinator_address needs --num_processes and --process_id.")
    if f.num_processes < 1:
      _fail(f"--num_processes={f.num_processes}: must be >= 1.")
    if not 0 <= f.process_id < f.num_processes:
      _fail(f"--process_id={f.process_id}: must be in [0, --num_processes={f.num_processes}).")
    kwargs = dict(coordinator_address=f.coordinator_address, num_processes=f.num_processes, process_id=f.process_id)
  elif f.num_processes is not None or f.process_id is not None:
    _fail("--num_processes/--process_id need --coordinator_address (or use --distributed on a cluster).")
  elif f.distributed:
    kwargs = {}  # SLURM, Open MPI, Cloud TPU: jax finds the arguments itself
  else:
    return
  try:
    jax.distributed.initialize(**kwargs)
  except Exception as e:  # pylint: disable=broad-exception-caught
    print(f"error: could not join the multi-host job: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)


# --- the workdir ----------------------------------------------------------------


def _check_workdir(workdir: str) -> pathlib.Path:
  """The absolute workdir, if it (or the ancestor it would be made in) is writable.

  Creates nothing: a rejected run must leave no directory behind.
  """
  path = pathlib.Path(workdir).expanduser().absolute()
  probe = path
  while not probe.exists():
    probe = probe.parent
  if not probe.is_dir():
    _fail(f"--workdir={workdir}: not a writable directory ({probe} is a file).")
  if not os.access(probe, os.W_OK | os.X_OK):
    _fail(f"--workdir={workdir}: not a writable directory ({probe} is not writable).")
  return path


def _discard_fresh_run(workdir: pathlib.Path, existed: bool) -> None:
  """Undoes a rejected fresh run: its workdir (made by this run) or the identity files it wrote there."""
  if not existed:
    shutil.rmtree(workdir, ignore_errors=True)
    return
  for name in (CONFIG_FILE, CONFIG_HISTORY_FILE):
    (workdir / name).unlink(missing_ok=True)


def _git_state(root: pathlib.Path) -> tuple[str | None, bool | None]:
  """(commit, uncommitted changes to tracked files) of the git checkout at `root`, else (None, None)."""
  if not (root / ".git").exists():
    return None, None
  try:
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20)
    status = subprocess.run(
      ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
      capture_output=True,
      text=True,
      timeout=20,
    )
  except (OSError, subprocess.SubprocessError):
    return None, None
  if head.returncode != 0:
    return None, None
  return head.stdout.strip(), (bool(status.stdout.strip()) if status.returncode == 0 else None)


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, Any]:
  """What produced a run: Python and package versions, and this source tree's git commit.

  `git_commit` / `git_dirty` (uncommitted changes to tracked files) are None
  for an installed package, which is not a git checkout.
  """
  versions = {}
  for dist in PROVENANCE_PACKAGES:
    try:
      versions[dist] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      versions[dist] = None
  commit, dirty = _git_state(pathlib.Path(__file__).resolve().parents[1])
  return {"python": platform.python_version(), "packages": versions, "git_commit": commit, "git_dirty": dirty}


def add_provenance(path: pathlib.Path, record: Mapping[str, Any]) -> bool:
  """Adds `"provenance": record` to the JSON object in `path`, keeping the file's own layout.

  A file without one, or that already has one (results an earlier run of the
  workdir wrote), is left as is.  Returns whether the file was changed.
  """
  try:
    text = path.read_text()
    data = json.loads(text)
  except (OSError, ValueError):
    return False
  body = text.rstrip()
  if not isinstance(data, dict) or PROVENANCE_KEY in data or not body.endswith("}"):
    return False
  inner = body[:-1].rstrip()
  indent = re.search(r"\n( +)\"", body)
  if indent:
    pad = indent.group(1)
    block = json.dumps(dict(record), indent=len(pad), sort_keys=True).replace("\n", "\n" + pad)
    new = f'{inner}{"," if data else ""}\n{pad}"{PROVENANCE_KEY}": {block}\n}}'
  else:
    new = f'{inner}{", " if data else ""}"{PROVENANCE_KEY}": {json.dumps(dict(record), sort_keys=True)}}}'
  new += text[len(body) :]
  if json.loads(new) != {**data, PROVENANCE_KEY: json.loads(json.dumps(dict(record)))}:
    new = json.dumps({**data, PROVENANCE_KEY: record}, indent=1) + "\n"
  tmp = path.with_name(f".{path.name}.{os.getpid()}")
  tmp.write_text(new)
  os.replace(tmp, path)
  return True


def _to_jsonable(config: ml_collections.ConfigDict) -> Mapping[str, Any]:
  return json.loads(config.to_json_best_effort())


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict) and tree:
    out = {}
    for key, value in tree.items():
      out.update(_flat(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: tree}


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
  """Dotted field -> (old, new) for every field whose JSON value differs."""
  a, b = _flat(dict(old)), _flat(dict(new))
  missing = "<absent>"
  return {
    k: (a.get(k, missing), b.get(k, missing)) for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)
  }


def _is_resumable(field: str, resumable: Sequence[str]) -> bool:
  return any(field == r or field.startswith(r + ".") for r in resumable)


def _check_identity(
  workdir: pathlib.Path, resolved: Mapping[str, Any], resumable: Sequence[str], flag_value: str
) -> dict[str, tuple[Any, Any]]:
  """Exits 2 if `workdir` holds a run with another config; returns the allowed changes."""
  recorded_path = workdir / CONFIG_FILE
  if not recorded_path.is_file():
    return {}
  try:
    recorded = json.loads(recorded_path.read_text())
  except (OSError, ValueError) as e:
    _fail(f"--workdir={flag_value}: {recorded_path} is unreadable ({e}); use a new --workdir.")
  recorded.pop(PROVENANCE_KEY, None)  # where it ran, not what: may change on resume
  changes = config_changes(recorded, resolved)
  fixed = {k: v for k, v in changes.items() if not _is_resumable(k, resumable)}
  if fixed:
    listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in fixed.items())
    may = f" Only {', '.join(resumable)} may change on resume." if resumable else ""
    _fail(
      f"--workdir={flag_value} holds a run with a different config ({recorded_path}): {listed}."
      f" A workdir's config is its run's identity: use a new --workdir, or restore these fields.{may}"
    )
  return changes


def _recorded_provenance(workdir: pathlib.Path) -> Any:
  try:
    return json.loads((workdir / CONFIG_FILE).read_text()).get(PROVENANCE_KEY)
  except (OSError, ValueError, AttributeError):
    return None


def _record_config(workdir: pathlib.Path, resolved: Mapping[str, Any], changes: Mapping[str, Any], fresh: bool) -> None:
  """Writes config.json (with the provenance) and appends the start or the resume changes to the history.

  A resume in another environment (versions, commit) is appended to the
  history too; config.json keeps the provenance of the run that wrote it.
  """
  now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  record = provenance()
  moved = not fresh and _recorded_provenance(workdir) != json.loads(json.dumps(record))
  workdir.mkdir(parents=True, exist_ok=True)
  if fresh:
    entry = {"time": now, "event": "start", "config": resolved, PROVENANCE_KEY: record}
  elif changes or moved:
    entry = {"time": now, "event": "resume"}
    if changes:
      entry["changed"] = {k: {"from": a, "to": b} for k, (a, b) in changes.items()}
    if moved:
      entry[PROVENANCE_KEY] = record
  else:
    entry = None
  if entry is not None:
    with open(workdir / CONFIG_HISTORY_FILE, "a", encoding="utf-8") as f:
      f.write(json.dumps(entry, sort_keys=True) + "\n")
  if fresh or changes:
    tmp = workdir / f".{CONFIG_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps({**resolved, PROVENANCE_KEY: record}, indent=2, sort_keys=True))
    os.replace(tmp, workdir / CONFIG_FILE)


# --- runners --------------------------------------------------------------------


def run(
  train_fn: Callable[[ml_collections.ConfigDict, str], Mapping[str, Any]],
  *,
  validate: Callable[[ml_collections.ConfigDict], None] | None = None,
  default_config: str | os.PathLike[str] | None = None,
  resumable: Sequence[str] = (),
) -> None:
  """Defines the shared flags and runs `train_fn(config, workdir)` under absl.

  Args:
    train_fn: `train_fn(config, workdir) -> final metrics`.
    validate: raises `ConfigError` (or ValueError) for a bad config; called
      after the multi-host job is joined, before anything is written.
    default_config: the binary's config file, described by `--help` when no
      `--config` is given.
    resumable: dotted config fields (or subtrees) that may differ when a
      workdir is resumed, e.g. `("num_epochs", "checkpoint_every")`; any other
      difference from the workdir's config.json exits 2.
  """
  resumable = tuple(resumable)
  default_config = None if default_config is None else _display(os.fspath(default_config))
  config_flags.DEFINE_config_file(
    "config",
    None,
    "Config module or file, and variant: e.g. schedulers.configs.default:smoke, schedulers/configs/default.py:smoke.",
    lock_config=True,
  )
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots; re-running resumes it.")
  flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0.")
  flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
  flags.DEFINE_integer("process_id", None, "Multi-host: index of this process, 0 .. num_processes - 1.")
  flags.DEFINE_bool("distributed", False, "Multi-host on SLURM / Open MPI / Cloud TPU: jax finds the job itself.")
  jax.config.config_with_absl()

  if any(arg in _HELP_FLAGS for arg in sys.argv[1:]):
    print(_usage(default_config, resumable, sys.argv[1:]))
    sys.exit(0)
  config_arg = _config_arg(sys.argv[1:])
  example = f" (e.g. --config={default_config}:smoke)" if default_config else ""
  if config_arg is None:
    _fail(f"--config is required{example}; run with --help to list the variants and fields.")
  if not any(a.startswith("--workdir=") or a == "--workdir" for a in sys.argv[1:]):
    _fail("--workdir is required: the directory for this run's checkpoints, metrics and plots.")
  load_config(config_arg)  # exits 2 with one line for a broken file or variant
  _config_as_file(sys.argv)  # ml_collections reads files: module form -> the module's file

  def main(argv: list[str]) -> None:
    _quiet_libraries()
    if len(argv) > 1:
      _fail(f"unexpected positional arguments: {argv[1:]}")
    config_arg = flags.FLAGS["config"].config_filename
    config = flags.FLAGS.config
    _init_distributed()
    if validate is not None:
      try:
        validate(config)
      except ConfigError as e:
        where = locate_field(config_arg, e.field, sys.argv)
        _fail(f"invalid config ({where}): {e}")
      except ValueError as e:
        _fail(f"invalid config ({config_arg}): {e}")
    workdir = _check_workdir(flags.FLAGS.workdir)
    resolved = _to_jsonable(config)
    fresh = not (workdir / CONFIG_FILE).is_file()
    existed = workdir.exists()
    changes = _check_identity(workdir, resolved, resumable, flags.FLAGS.workdir)
    if jax.process_index() == 0:
      _record_config(workdir, resolved, changes, fresh)
      if changes:
        print(
          f"resuming {workdir} with changed "
          + ", ".join(f"{k}={b!r}" for k, (_, b) in changes.items())
          + f" (recorded in {CONFIG_HISTORY_FILE})"
        )
    logging.info("process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices())
    try:
      metrics = train_fn(config, str(workdir))
    except ConfigError as e:  # a check that needs the data (e.g. batch_size <= the examples loaded)
      if fresh and jax.process_index() == 0:
        _discard_fresh_run(workdir, existed)
      _fail(f"invalid config ({locate_field(config_arg, e.field, sys.argv)}): {e}")
    except checkpoint.CheckpointRestoreError as e:
      _fail(f"cannot resume --workdir={flags.FLAGS.workdir}: {e}")
    except FloatingPointError as e:  # e.g. trainer.NonFiniteError under nonfinite='stop'
      print(f"error: training stopped: {e}", file=sys.stderr)
      sys.exit(1)
    if jax.process_index() == 0:
      add_provenance(workdir / RESULTS_FILE, provenance())
    logging.info("final metrics: %s", metrics)

  absl_app.run(main, flags_parser=_flags_parser)


def run_tool(main: Callable[[list[str]], None]) -> None:
  """Runs a binary that takes its own absl flags and no config (e.g. a benchmark).

  `--help` lists the binary's flags with defaults; an unknown flag (such as
  `--config.<field>`, which these binaries do not take) exits 2 with one line
  listing the flags it does take.  Library INFO logs are hidden as in `run`.
  """
  module = sys.modules["__main__"]
  # absl files the flags of the main module under sys.argv[0].
  own = [flag.name for flag in flags.FLAGS.flags_by_module_dict().get(sys.argv[0], [])]
  jax.config.config_with_absl()
  listing = "\n".join(_flag_lines(own)) or "  (none)"
  if any(arg in _HELP_FLAGS for arg in sys.argv[1:]):
    doc = (module.__doc__ or "").strip()
    print(
      f"usage: {_program_name()} [flags]\n\n{doc}\n\nFlags:\n{listing}\n"
      "  --verbosity=0 (-v 0): also show library INFO logs\n"
      "  --jax_<option>=<value>: any JAX config option"
      + ("" if "config" in own else "\nThis binary takes no --config.")
    )
    sys.exit(0)

  def parser(argv: list[str]) -> list[str]:
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      takes = ", ".join(f"--{n}" for n in own) or "no flags"
      no_config = "" if "config" in own else ", no --config"
      _fail(
        f"{str(e).splitlines()[0]}. {_program_name()} takes {takes} (and --jax_* options){no_config};"
        " run with --help for their meaning."
      )

  def wrapped(argv: list[str]) -> Any:
    _quiet_libraries()
    if len(argv) > 1:
      _fail(f"unexpected positional arguments: {argv[1:]}")
    return main(argv)  # absl exits with main's return value

  absl_app.run(wrapped, flags_parser=parser)
