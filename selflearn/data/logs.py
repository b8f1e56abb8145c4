"""Reading and writing dialogue logs: streaming, validating, nothing dropped silently.

`iter_logs(path, skip_invalid=False, stats=LoadStats())` streams and
validates every row (`selflearn.data.schema.validate`); the first invalid
row raises `LogFormatError("<file>:<line>: <field>: <message>")`; with
`skip_invalid=True` it is skipped and counted (`stats.skipped`, the first 20
messages in `stats.errors`).  A simulated log's first line may be its
header (`schema.HEADER`): `iter_logs` validates and skips it (it is not a
row), `read_header(path)` returns it (None for a log without one).
`write_logs(path, dialogues, header=...)` streams records to disk one line
each (constant memory at any count), after the header line if given.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Iterable, Iterator

from selflearn.data import schema


class LogFormatError(ValueError):
  """A log row that is not a valid record: `path:line: field: message`."""

  def __init__(self, path: str, line: int, message: str):
    self.path, self.line, self.message = str(path), int(line), message
    super().__init__(f"{path}:{line}: {message}")


@dataclasses.dataclass
class LoadStats:
  """What a load saw: rows read, rows skipped as invalid, the first few errors."""

  rows: int = 0
  skipped: int = 0
  errors: list = dataclasses.field(default_factory=list)  # up to `max_errors` LogFormatError messages
  skipped_lines: list = dataclasses.field(default_factory=list)  # the line (row) of every skipped row

  def record(self, error: LogFormatError, max_errors: int = 20) -> None:
    self.skipped += 1
    self.skipped_lines.append(error.line)
    if len(self.errors) < max_errors:
      self.errors.append(str(error))


def iter_logs(
  path: str | os.PathLike[str], *, skip_invalid: bool = False, stats: LoadStats | None = None
) -> Iterator[dict]:
  """Yields the valid dialogues of a JSONL log, streaming, in file order.

  Args:
    path: the log file.
    skip_invalid: skip (and count in `stats`) invalid rows instead of raising.
    stats: filled in as rows are read.

  Raises:
    LogFormatError: for the first invalid row (unless `skip_invalid`),
      naming the file, the 1-based line and the field.
    FileNotFoundError: if `path` does not exist.
  """
  stats = LoadStats() if stats is None else stats
  width = None  # the audio-feature width of the log's first valid turn: every turn must have it
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        error = LogFormatError(path, lineno, "empty line")
      else:
        try:
          d = json.loads(line)
          if schema.is_header(d):
            if lineno != 1:
              raise ValueError("log_header: a header must be the file's first line")
            schema.validate_header(d)
            continue
          schema.validate(d)
          for k, t in enumerate(d["turns"]):
            width = len(t["audio"]) if width is None else width
            if len(t["audio"]) != width:
              raise ValueError(
                f"turns[{k}].audio: {len(t['audio'])} values, but this log's audio features have {width}"
              )
        except json.JSONDecodeError as e:
          error = LogFormatError(path, lineno, f"not JSON: {e.msg} (column {e.colno})")
        except ValueError as e:
          error = LogFormatError(path, lineno, str(e))
        else:
          stats.rows += 1
          yield d
          continue
      if not skip_invalid:
        raise error
      stats.rows += 1
      stats.record(error)


def read_header(path: str | os.PathLike[str]) -> dict | None:
  """The header block of a log's first line (`schema.HEADER`), or None when the log has none.

  Raises:
    LogFormatError: the first line is a header that is not valid (`path:1: log_header...`).
  """
  with open(path, encoding="utf-8") as f:
    line = f.readline()
  try:
    obj = json.loads(line)
  except json.JSONDecodeError:
    return None  # not a header (the row reader names what is wrong with it)
  if not schema.is_header(obj):
    return None
  try:
    return schema.validate_header(obj)
  except ValueError as e:
    raise LogFormatError(path, 1, str(e)) from None


def load_logs(path: str | os.PathLike[str], *, skip_invalid: bool = False) -> tuple[list[dict], LoadStats]:
  """All valid dialogues of a log and the `LoadStats` (see `iter_logs`)."""
  stats = LoadStats()
  return list(iter_logs(path, skip_invalid=skip_invalid, stats=stats)), stats


def write_logs(
  path: str,
  dialogues: Iterable[dict],
  *,
  total: int | None = None,
  progress: bool | None = None,
  header: dict | None = None,
) -> int:
  """Streams `dialogues` to a JSONL file, one line each, after `header` (`schema.make_header`); returns the count.

  Progress: a tqdm bar when stderr is a terminal (or `progress=True`), else
  about ten one-line reports on stdout when `total` is known.
  """
  use_bar = sys.stderr.isatty() if progress is None else progress
  bar = None
  if use_bar:
    from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top

    bar = tqdm(total=total, unit="dialogue", desc="simulate")
  every = max(1, (total or 0) // 10)
  count = 0
  started = None  # from the first dialogue on: the world is built lazily before it
  with open(path, "w", encoding="utf-8") as f:
    if header is not None:
      schema.validate_header(header)
      f.write(schema.dumps(header) + "\n")
    for d in dialogues:
      started = time.monotonic() if started is None else started
      f.write(schema.dumps(d) + "\n")
      count += 1
      if bar is not None:
        bar.update(1)
      elif total and progress is not False and count % every == 0:
        rate = (count - 1) / max(time.monotonic() - started, 1e-9)
        print(f"simulate: {count}/{total} dialogues ({rate:.0f}/s)", flush=True)
  if bar is not None:
    bar.close()
  return count
