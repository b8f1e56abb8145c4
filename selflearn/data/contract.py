"""The minimal per-turn log contract: what a team's own assistant logs need to hold, read from JSONL or Parquet.

One JSON object (or Parquet row) per turn:

| field | required | type |
|---|---|---|
| `session_id` | yes | string (or integer): the turns of one session, kept together in the file |
| `user_id` | yes | string (or integer) |
| `timestamp` | yes | epoch seconds (number >= 0) or an ISO-8601 string (no zone: UTC) |
| `utterance` | yes | non-empty string: what the recogniser heard |
| `intent`, `domain` | no | string: the NLU's reading, any names |
| `slots` | no | object, slot name -> recognised span (Parquet: a map or struct column; null spans dropped) |
| `response` | no | string: what the assistant said |
| `asr_confidence` | no | number in [0, 1] |
| `device_type` | no | string, any names |
| `barge_in` | no | boolean: the user interrupted the response |
| `feedback` | no | +1 / -1: the user's explicit feedback on this turn |
| `audio_features` | no | list of numbers, one width for the whole log (the first row that has it sets it) |

Null counts as absent; any other field is kept (`extra`) and ignored.

`iter_turns(path)` streams and validates the rows (Parquet through
`pyarrow.parquet.ParquetFile.iter_batches`); a bad row raises
`logs.LogFormatError("<file>:<row>: <field>: <message>")` or, with
`skip_invalid=True`, is skipped and counted in `logs.LoadStats`.
`iter_sessions(path)` groups the rows into sessions (a session's rows must
be contiguous; they are ordered by timestamp) and `to_dialogue(rows)` turns
one session into the observed dialogue record the rewriting code reads
(`selflearn.signals.sessions`, `selflearn.rewriting`): the same field names
as the simulator's records (`schema.DIALOGUE`) for the observed parts, no
`truth`, neutral values for what the contract does not hold (no durations:
gaps are measured between the turns' timestamps).  `scan(path)` is the
validation pass: counts and the learned vocabularies (`vocab.Vocabulary`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
from typing import Any, Iterator, Optional

from selflearn.data import logs, schema
from selflearn.data import vocab as vocab_lib

REQUIRED = ("session_id", "user_id", "timestamp", "utterance")
OPTIONAL = (
  "intent",
  "domain",
  "slots",
  "response",
  "asr_confidence",
  "device_type",
  "barge_in",
  "feedback",
  "audio_features",
)
FIELDS = REQUIRED + OPTIONAL
PARQUET_SUFFIXES = (".parquet", ".pq")
# The vocabularies `scan` learns: field -> minimum count (rarer values fall into the unknown bucket).
VOCAB_FIELDS = ("intent", "domain", "device_type", "slot")


class _Invalid(ValueError):
  pass


def _type_name(v: Any) -> str:
  return "null" if v is None else type(v).__name__


def _id(row: dict, field: str) -> str:
  v = row.get(field)
  if v is None:
    raise _Invalid(f"{field}: missing field")
  if isinstance(v, bool) or not isinstance(v, (str, int)):
    raise _Invalid(f"{field}: expected a string or an integer, got {_type_name(v)} {v!r}")
  s = str(v)
  if not s.strip():
    raise _Invalid(f"{field}: empty")
  return s


def parse_timestamp(v: Any) -> float:
  """Epoch seconds of a contract timestamp (number, ISO-8601 string, or a datetime from Parquet)."""
  if isinstance(v, datetime.datetime):
    dt = v
  elif isinstance(v, str):
    try:
      dt = datetime.datetime.fromisoformat(v.strip())
    except ValueError:
      raise _Invalid(f"timestamp: {v!r} is neither epoch seconds nor ISO-8601") from None
  elif isinstance(v, (int, float)) and not isinstance(v, bool):
    if not math.isfinite(v) or v < 0:
      raise _Invalid(f"timestamp: {v!r} is not a finite number >= 0 (epoch seconds)")
    return float(v)
  else:
    raise _Invalid(f"timestamp: expected epoch seconds or an ISO-8601 string, got {_type_name(v)} {v!r}")
  if dt.tzinfo is None:
    dt = dt.replace(tzinfo=datetime.timezone.utc)
  return dt.timestamp()


def _opt_str(row: dict, field: str) -> Optional[str]:
  v = row.get(field)
  if v is not None and not isinstance(v, str):
    raise _Invalid(f"{field}: expected a string, got {_type_name(v)} {v!r}")
  return v


def _number(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_turn(row: Any, audio_width: Optional[int] = None) -> dict:
  """The normalised turn of one contract row; raises ValueError ('field: message').

  `audio_width`: the width every `audio_features` must have (None: any).
  """
  if not isinstance(row, dict):
    raise _Invalid(f"expected a JSON object per line, got {_type_name(row)}")
  turn = {"session_id": _id(row, "session_id"), "user_id": _id(row, "user_id")}
  if row.get("timestamp") is None:
    raise _Invalid("timestamp: missing field")
  turn["timestamp"] = parse_timestamp(row["timestamp"])
  utt = row.get("utterance")
  if utt is None:
    raise _Invalid("utterance: missing field")
  if not isinstance(utt, str):
    raise _Invalid(f"utterance: expected a string, got {_type_name(utt)} {utt!r}")
  if not utt.strip():
    raise _Invalid("utterance: empty")
  turn["utterance"] = " ".join(utt.split())
  for field in ("intent", "domain", "response", "device_type"):
    turn[field] = _opt_str(row, field)
  slots = row.get("slots")
  if isinstance(slots, list) and all(isinstance(kv, (tuple, list)) and len(kv) == 2 for kv in slots):
    slots = dict(slots)  # a Parquet map column reads as (key, value) pairs
  if isinstance(slots, dict):
    slots = {k: v for k, v in slots.items() if v is not None}  # a Parquet struct column holds every slot
  if slots is not None:
    if not isinstance(slots, dict):
      raise _Invalid(f"slots: expected an object (slot -> span), got {_type_name(slots)}")
    for k, v in slots.items():
      if not isinstance(v, str):
        raise _Invalid(f"slots.{k}: expected a string, got {_type_name(v)} {v!r}")
  turn["slots"] = dict(slots or {})
  conf = row.get("asr_confidence")
  if conf is not None and (not _number(conf) or not 0.0 <= conf <= 1.0):
    raise _Invalid(f"asr_confidence: {conf!r} is not a number in [0, 1]")
  turn["asr_confidence"] = None if conf is None else float(conf)
  barge = row.get("barge_in")
  if barge is not None and not isinstance(barge, bool):
    raise _Invalid(f"barge_in: expected a boolean, got {_type_name(barge)} {barge!r}")
  turn["barge_in"] = bool(barge)
  fb = row.get("feedback")
  if fb is not None and (isinstance(fb, bool) or fb not in (1, -1)):
    raise _Invalid(f"feedback: {fb!r} is not +1 or -1")
  turn["feedback"] = None if fb is None else int(fb)
  audio = row.get("audio_features")
  if audio is not None:
    if not isinstance(audio, list) or not all(_number(x) for x in audio):
      raise _Invalid("audio_features: expected a list of finite numbers")
    if audio_width is not None and len(audio) != audio_width:
      raise _Invalid(f"audio_features: {len(audio)} values, but this log's audio features have {audio_width}")
    audio = [float(x) for x in audio]
  turn["audio_features"] = audio
  turn["extra"] = {k: v for k, v in row.items() if k not in FIELDS and v is not None}
  return turn


def is_parquet(path: str | os.PathLike) -> bool:
  return pathlib.Path(path).suffix.lower() in PARQUET_SUFFIXES


def _raw_rows(path: str | os.PathLike) -> Iterator[tuple[int, Any, Optional[str]]]:
  """(1-based row, decoded object or None, decode error or None), streaming."""
  if is_parquet(path):
    try:
      import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ValueError(f"{path}: reading Parquet needs pyarrow (pip install 'jax-research-monorepo[logs]')") from None
    try:
      f = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own ArrowInvalid / OSError  # noqa: BLE001
      raise ValueError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    n = 0
    for batch in f.iter_batches(batch_size=4096):
      for row in batch.to_pylist():
        n += 1
        yield n, row, None
    return
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        yield lineno, None, "empty line"
        continue
      try:
        yield lineno, json.loads(line), None
      except json.JSONDecodeError as e:
        yield lineno, None, f"not JSON: {e.msg} (column {e.colno})"


def iter_turns(
  path: str | os.PathLike, *, skip_invalid: bool = False, stats: Optional[logs.LoadStats] = None
) -> Iterator[tuple[int, dict]]:
  """(row, normalised turn) of every valid row, streaming, in file order (see the module docstring)."""
  stats = logs.LoadStats() if stats is None else stats
  width = None
  for n, obj, error in _raw_rows(path):
    stats.rows += 1
    if error is None:
      try:
        turn = validate_turn(obj, width)
      except ValueError as e:
        error = str(e)
      else:
        if turn["audio_features"] is not None and width is None:
          width = len(turn["audio_features"])
        yield n, turn
        continue
    err = logs.LogFormatError(path, n, error)
    if not skip_invalid:
      raise err
    stats.record(err)


def iter_sessions(
  path: str | os.PathLike, *, skip_invalid: bool = False, stats: Optional[logs.LoadStats] = None
) -> Iterator[list[dict]]:
  """The valid turns of each session (contiguous in the file), ordered by timestamp (stable)."""
  stats = logs.LoadStats() if stats is None else stats
  seen: dict[str, int] = {}  # session id -> its first row (ids only: constant memory per session)
  current: list[dict] = []
  for n, turn in iter_turns(path, skip_invalid=skip_invalid, stats=stats):
    sid = turn["session_id"]
    error = None
    if current and sid == current[0]["session_id"]:
      if turn["user_id"] != current[0]["user_id"]:
        error = f"user_id: {turn['user_id']!r}, but session {sid!r} belongs to {current[0]['user_id']!r}"
    elif sid in seen:
      error = (
        f"session_id: {sid!r} already ended (its rows started at row {seen[sid]}); a session's rows must be"
        " contiguous in the log"
      )
    if error is not None:
      err = logs.LogFormatError(path, n, error)
      if not skip_invalid:
        raise err
      stats.record(err)
      continue
    if current and sid != current[0]["session_id"]:
      yield sorted(current, key=lambda t: t["timestamp"])
      current = []
    if not current:
      seen[sid] = n
    current.append(turn)
  if current:
    yield sorted(current, key=lambda t: t["timestamp"])


def to_dialogue(turns: list[dict]) -> dict:
  """One session as the observed dialogue record of the rewriting code (no `truth`; see the module docstring)."""
  first = turns[0]
  out_turns = []
  for i, t in enumerate(turns):
    out_turns.append(
      {
        "turn_id": i,
        "timestamp": t["timestamp"],
        "utterance_duration": 0.0,
        "asr": {"text": t["utterance"], "confidence": t["asr_confidence"] or 0.0, "nbest": []},
        "nlu": {
          "domain": t["domain"] or "",
          "intent": t["intent"] or "",
          "confidence": 0.0,
          "slots": dict(t["slots"]),
          "nbest": [],
        },
        "er": {"resolved": {}, "score": 0.0},
        "result": {"status": ""},
        "response": {"text": t["response"] or "", "duration": 0.0},
        "signals": {"barge_in": t["barge_in"], "barge_in_time": None},
        "feedback": t["feedback"],
        "audio": t["audio_features"],
        "device_type": t["device_type"] or "",
        "extra": t["extra"],
      }
    )
  return {
    "dialogue_id": first["session_id"],
    "user_id": first["user_id"],
    "device": {"type": first["device_type"] or ""},
    "start_time": first["timestamp"],
    "turns": out_turns,
  }


@dataclasses.dataclass
class Scan:
  """What a validation pass over a contract log saw."""

  stats: logs.LoadStats
  sessions: int
  turns: int
  users: int
  audio_width: Optional[int]
  vocabularies: dict  # field -> vocab.Vocabulary

  def report(self) -> dict:
    return {
      "format": "contract",
      "rows": self.stats.rows,
      "skipped": self.stats.skipped,
      "skipped_first_errors": self.stats.errors[:3],
      "sessions": self.sessions,
      "turns": self.turns,
      "users": self.users,
      "audio_width": self.audio_width,
      "vocabularies": {k: v.report() for k, v in self.vocabularies.items()},
    }


def scan(path: str | os.PathLike, *, skip_invalid: bool = False, min_count: int = 1) -> Scan:
  """Validates every row and session of a contract log; counts and learns its vocabularies."""
  stats = logs.LoadStats()
  counters: dict[str, dict[str, int]] = {f: {} for f in VOCAB_FIELDS}
  missing = dict.fromkeys(VOCAB_FIELDS, 0)
  users: set[str] = set()
  sessions = turns = 0
  width = None
  for session in iter_sessions(path, skip_invalid=skip_invalid, stats=stats):
    sessions += 1
    users.add(session[0]["user_id"])
    for t in session:
      turns += 1
      if t["audio_features"] is not None:
        width = len(t["audio_features"])
      for f in ("intent", "domain", "device_type"):
        if t[f] is None:
          missing[f] += 1
        else:
          counters[f][t[f]] = counters[f].get(t[f], 0) + 1
      for s in t["slots"]:
        counters["slot"][s] = counters["slot"].get(s, 0) + 1
  vocabularies = {
    f: vocab_lib.Vocabulary.learn(f, counters[f], min_count=min_count, missing=missing[f]) for f in VOCAB_FIELDS
  }
  return Scan(stats, sessions, turns, len(users), width, vocabularies)


def detect(path: str | os.PathLike) -> str:
  """'contract' (one turn per row) or 'dialogues' (the simulator's records, one dialogue per row).

  A JSONL file that opens with a simulated log's header is 'dialogues'.
  A Parquet file, or a JSONL file whose first row has `session_id` or
  `utterance` (and no `turns`), is a contract log; an empty JSONL file too
  (reported as empty).
  """
  if is_parquet(path):
    return "contract"
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        try:
          obj = json.loads(line)
        except json.JSONDecodeError:
          return "dialogues"  # the dialogue reader names the bad line
        if schema.is_header(obj):
          return "dialogues"  # a simulated log's header line
        turn_row = isinstance(obj, dict) and "turns" not in obj and ("session_id" in obj or "utterance" in obj)
        return "contract" if turn_row else "dialogues"  # anything else: the dialogue reader names what is wrong
  return "contract"
