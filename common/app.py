"""`run(train_fn)`: the shared entry point of every absl training binary.

A method's `main.py` is a few lines::

  from common import app
  from schedulers import train

  if __name__ == "__main__":
    app.run(train.train_and_evaluate, validate=train.validate_config)

`run` defines the shared flags (`--config` through ml_collections
`config_flags`, as `path.py:variant`; `--workdir`; multi-host
`--coordinator_address/--num_processes/--process_id`; every `--jax_*` flag),
then, before anything compiles: checks that the workdir is writable,
validates the config, writes the resolved config to `<workdir>/config.json`,
calls `jax.distributed.initialize` when multi-host flags are given, logs the
device layout, and finally calls `train_fn(config, workdir)`.

Bad input exits with status 2 and one message naming the flag or config
field, the config file and the line that set it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import sys
from typing import Any, Callable, Iterable, Mapping

import jax
import ml_collections
from absl import app as absl_app
from absl import flags
from absl import logging
from ml_collections import config_flags

EXIT_BAD_INPUT = 2


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


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(EXIT_BAD_INPUT)


def _flags_parser(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    hint = f" (config overrides given: {' '.join(overrides)})" if overrides else ""
    if isinstance(e, (AttributeError, KeyError)):
      e = f"unknown config field {str(e).strip(chr(34))}{hint}"
    elif not isinstance(e, flags.Error):
      e = f"{type(e).__name__}: {e}{hint}"
    _fail(f"{e}\nRun with --helpfull to list the flags; config fields are set as --config.<field>=<value>.")


def _check_workdir(workdir: str) -> pathlib.Path:
  path = pathlib.Path(workdir).expanduser().absolute()
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".write_probe"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    _fail(f"--workdir={workdir}: not a writable directory ({e.strerror or e}).")
  return path


def _to_jsonable(config: ml_collections.ConfigDict) -> Mapping[str, Any]:
  return json.loads(config.to_json_best_effort())


def run(
    train_fn: Callable[[ml_collections.ConfigDict, str], Mapping[str, Any]],
    *,
    validate: Callable[[ml_collections.ConfigDict], None] | None = None,
) -> None:
  """Defines the shared flags and runs `train_fn(config, workdir)` under absl."""
  config_flags.DEFINE_config_file(
      "config", None, "Config file and variant, e.g. schedulers/configs/default.py:smoke.", lock_config=True
  )
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
  flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0.")
  flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
  flags.DEFINE_integer("process_id", None, "Multi-host: index of this process.")
  flags.mark_flags_as_required(["config", "workdir"])
  jax.config.config_with_absl()

  def main(argv: list[str]) -> None:
    if len(argv) > 1:
      _fail(f"unexpected positional arguments: {argv[1:]}")
    config_arg = flags.FLAGS["config"].config_filename
    try:
      config = flags.FLAGS.config
      list(config.keys())  # a config that failed to load raises here
    except (OSError, AttributeError, ValueError, TypeError) as e:
      path = pathlib.Path(config_arg.split(":", 1)[0])
      reason = "no such file" if not path.is_file() else str(e).splitlines()[0]
      _fail(f"--config={config_arg}: the config could not be loaded: {reason}.")
    workdir = _check_workdir(flags.FLAGS.workdir)
    if validate is not None:
      try:
        validate(config)
      except ConfigError as e:
        where = locate_field(config_arg, e.field, sys.argv)
        _fail(f"invalid config ({where}): {e}")
      except ValueError as e:
        _fail(f"invalid config ({config_arg}): {e}")
    if flags.FLAGS.coordinator_address:
      jax.distributed.initialize(
          coordinator_address=flags.FLAGS.coordinator_address,
          num_processes=flags.FLAGS.num_processes,
          process_id=flags.FLAGS.process_id,
      )
    logging.info(
        "process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices()
    )
    if jax.process_index() == 0:
      (workdir / "config.json").write_text(json.dumps(_to_jsonable(config), indent=2, sort_keys=True))
    try:
      metrics = train_fn(config, str(workdir))
    except FloatingPointError as e:  # e.g. trainer.NonFiniteError under nonfinite='stop'
      print(f"error: training stopped: {e}", file=sys.stderr)
      sys.exit(1)
    logging.info("final metrics: %s", metrics)

  absl_app.run(main, flags_parser=_flags_parser)
