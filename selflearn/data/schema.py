"""The dialogue-log format (JSONL, one dialogue per line) and its validation.

Version `SCHEMA_VERSION` = 2 (version-1 rows are still read).  A record is
what `selflearn.sim.simulator` writes; the field-by-field description is in
`selflearn/README.md` ("Log schema").  Fields outside `truth` are what a
production log would hold (observations: ASR/NLU/ER outputs, confidences,
responses, timestamps, barge-ins); `truth` blocks hold the simulator's ground
truth and must never be model inputs.  Version 2 adds two optional blocks: a
row (and each turn) may omit `truth` (a production log has none), and a row
may carry `annotations` (human labels, one entry per annotator pass).

A simulated log opens with one header line, `{"log_header": HEADER}`: the
schema version, the producer, the simulator seed, its whole config and a
hash of that config (`config_hash`), so a reader that needs the simulated
world (the judge) can check the log came from it (`validate_header`).  Real
logs have no header.

`validate(record)` checks a row structurally (`DIALOGUE`: required keys, no
unknown keys, types, ranges, enums) and semantically (`check_consistency`:
consecutive turn ids, non-decreasing timestamps, one BIO tag per recognised
word, goals and rephrase pairs pointing at real turns, the failure point
being the first irrecoverable stage error) and raises ValueError naming the
field.  Reading and writing files is `selflearn.data.logs`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Sequence

SCHEMA_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
STAGES = ("wake", "asr", "nlu", "entity", "result")
FAILURE_POINTS = ("false_wake", "asr", "nlu", "entity", "result", "correct")
SEGMENTS = ("B", "I", "O")
STATUSES = ("ok", "error", "no_match", "unsupported")
REPHRASE_KINDS = ("repeat", "clearer", "paraphrase", "fuller")
REWRITE_KINDS = ("global", "personal", "user_asr")
GOAL_ENDS = ("success", "abandon", "stop")
_POINT_OF_STAGE = dict(zip(STAGES, FAILURE_POINTS[:5]))


class _Invalid(ValueError):
  pass


# --- structural spec --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Opt:
  spec: Any  # the value may also be null


@dataclasses.dataclass(frozen=True)
class Omit:
  spec: Any  # the key may be absent (schema version 2's optional blocks)


@dataclasses.dataclass(frozen=True)
class Enum:
  values: Sequence[Any]


@dataclasses.dataclass(frozen=True)
class ListOf:
  spec: Any


@dataclasses.dataclass(frozen=True)
class MapOf:
  spec: Any  # string keys


@dataclasses.dataclass(frozen=True)
class Num:
  lo: float = -math.inf
  hi: float = math.inf


PROB = Num(0.0, 1.0)
STAGE_FLAGS = {s: bool for s in STAGES}

TURN = {
  "turn_id": int,
  "timestamp": Num(0.0),  # unix seconds, start of the user's speech
  "utterance_duration": Num(0.0),  # seconds
  "wake": {"score": PROB},  # wake-word detector confidence
  "asr": {"text": str, "confidence": PROB, "nbest": ListOf({"text": str, "confidence": PROB})},
  "nlu": {
    "domain": str,
    "intent": str,
    "confidence": PROB,
    "slots": MapOf(str),  # slot -> recognised span text
    "nbest": ListOf({"intent": str, "confidence": PROB}),
  },
  "er": {"resolved": MapOf(Opt(str)), "score": PROB},  # slot -> resolved entity (null: no match)
  "result": {"status": Enum(STATUSES)},
  "response": {"text": str, "duration": Num(0.0)},
  "signals": {"barge_in": bool, "barge_in_time": Opt(Num(0.0))},  # seconds into the response
  "audio": ListOf(float),  # 6 summary acoustic features
  "truth": Omit(
    {
      "utterance": str,  # what the user (or the TV) actually said
      "domain": str,
      "intent": str,
      "slots": MapOf(str),  # slot -> spoken span
      "values": MapOf(str),  # slot -> canonical entity meant
      "tags": ListOf(str),  # BIO slot tags, one per word of asr.text
      "goal_id": Opt(int),  # null for a false wake
      "segment": Enum(SEGMENTS),  # B: starts a goal, I: inside one, O: no goal
      "attempt": Opt(int),  # 0 for the first request of a goal, k for the k-th rephrase; null for stop/feedback
      "stage_errors": STAGE_FLAGS,
      "recovered": STAGE_FLAGS,  # an error a later stage undid
      "failure_point": Enum(FAILURE_POINTS),
      "defect": bool,
      "rephrase_of": Opt(int),  # the turn this request rephrases
      "rephrase_kind": Opt(Enum(REPHRASE_KINDS)),
      "rewrite": Opt(str),  # the query that would have succeeded
      "rewrite_kind": Opt(Enum(REWRITE_KINDS)),
      "error_pattern": Opt({"heard": str, "meant": str}),  # the shared ASR confusion behind a global rewrite
    }
  ),
}
GOAL = {
  "goal_id": int,
  "domain": str,
  "intent": str,
  "values": MapOf(str),
  "canonical": str,  # the explicit utterance of the goal
  "turn_ids": ListOf(int),
  "success": bool,
  "failure_point": Enum(FAILURE_POINTS),  # of the goal's last request
  "end": Enum(GOAL_ENDS),
}
# One annotator pass over a dialogue (schema version 2): every label may be missing (null).
ANNOTATION = {
  "annotator": str,  # who labelled (a person, a team, or "sim:<seed>" for a simulated annotator)
  "turns": ListOf(
    {
      "turn_id": int,
      "segment": Opt(Enum(SEGMENTS)),
      "intent": Opt(str),
      "failure_point": Opt(Enum(FAILURE_POINTS)),
      "defect": Opt(bool),
    }
  ),
  "goals": ListOf({"turn_ids": ListOf(int), "success": Opt(bool)}),
}
DIALOGUE = {
  "schema_version": Enum(SUPPORTED_VERSIONS),
  "dialogue_id": str,
  "user_id": str,
  "device": {
    "device_id": str,
    "type": Enum(("speaker", "screen")),
    "has_screen": bool,
    "room": str,
    "state": MapOf(str),
  },
  "context": {
    "time_of_day": Enum(("night", "morning", "afternoon", "evening")),
    "hour": int,
    "weekday": int,
    "location": str,
  },
  "start_time": Num(0.0),
  "turns": ListOf(TURN),
  "truth": Omit(
    {
      "goals": ListOf(GOAL),
      "rephrase_pairs": ListOf(
        {"source_turn": int, "target_turn": int, "kind": Enum(REPHRASE_KINDS), "gap": Num(0.0)}  # gap: seconds
      ),
    }
  ),
  "annotations": Omit(ListOf(ANNOTATION)),
}


# The header line of a simulated log: {"log_header": HEADER}.
HEADER = {
  "schema_version": Enum((SCHEMA_VERSION,)),
  "producer": str,  # "selflearn.sim"
  "sim_seed": int,
  "sim_config": MapOf(Opt(Any)),  # every SimConfig field
  "sim_config_hash": str,  # config_hash(sim_config)
}


def _type_name(v: Any) -> str:
  return "null" if v is None else type(v).__name__


def _check(value: Any, spec: Any, path: str) -> None:
  if isinstance(spec, Omit):
    _check(value, spec.spec, path)
  elif isinstance(spec, Opt):
    if value is not None:
      _check(value, spec.spec, path)
  elif spec is bool:
    if not isinstance(value, bool):
      raise _Invalid(f"{path}: expected a boolean, got {_type_name(value)} {value!r}")
  elif spec is int:
    if not isinstance(value, int) or isinstance(value, bool):
      raise _Invalid(f"{path}: expected an integer, got {_type_name(value)} {value!r}")
  elif spec is float or isinstance(spec, Num):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
      raise _Invalid(f"{path}: expected a finite number, got {_type_name(value)} {value!r}")
    if isinstance(spec, Num) and not spec.lo <= value <= spec.hi:
      raise _Invalid(f"{path}: {value!r} is outside [{spec.lo}, {spec.hi}]")
  elif spec is str:
    if not isinstance(value, str):
      raise _Invalid(f"{path}: expected a string, got {_type_name(value)} {value!r}")
  elif spec is Any:
    pass
  elif isinstance(spec, Enum):
    if value not in spec.values or isinstance(value, bool):
      raise _Invalid(f"{path}: {value!r} is not one of {list(spec.values)}")
  elif isinstance(spec, ListOf):
    if not isinstance(value, list):
      raise _Invalid(f"{path}: expected a list, got {_type_name(value)}")
    for i, v in enumerate(value):
      _check(v, spec.spec, f"{path}[{i}]")
  elif isinstance(spec, MapOf):
    if not isinstance(value, dict):
      raise _Invalid(f"{path}: expected an object, got {_type_name(value)}")
    for k, v in value.items():
      _check(v, spec.spec, f"{path}.{k}")
  elif isinstance(spec, dict):
    if not isinstance(value, dict):
      raise _Invalid(f"{path}: expected an object, got {_type_name(value)}")
    missing = [k for k in spec if k not in value and not isinstance(spec[k], Omit)]
    if missing:
      raise _Invalid(f"{path + '.' if path else ''}{missing[0]}: missing field")
    unknown = [k for k in value if k not in spec]
    if unknown:
      raise _Invalid(f"{path + '.' if path else ''}{unknown[0]}: unknown field (schema version {SCHEMA_VERSION})")
    for k, sub in spec.items():
      if k in value:
        _check(value[k], sub, f"{path}.{k}" if path else k)
  else:  # pragma: no cover - a bug in the spec itself
    raise TypeError(f"bad spec {spec!r} at {path}")


def first_failure(stage_errors: dict, recovered: dict) -> str:
  """The failure point: the first stage whose error was not recovered, else 'correct'."""
  for s in STAGES:
    if stage_errors[s] and not recovered[s]:
      return _POINT_OF_STAGE[s]
  return "correct"


def check_consistency(d: dict) -> None:
  """Raises `ValueError` naming the field of the first cross-reference that does not hold."""
  turns = d["turns"]
  if not turns:
    raise _Invalid("turns: a dialogue needs at least one turn")
  for i, t in enumerate(turns):
    p = f"turns[{i}]"
    if t["turn_id"] != i:
      raise _Invalid(f"{p}.turn_id: expected {i} (turn ids are consecutive from 0), got {t['turn_id']}")
    if i and t["timestamp"] < turns[i - 1]["timestamp"]:
      raise _Invalid(f"{p}.timestamp: earlier than the previous turn's")
    if "truth" not in t:
      continue
    tr = t["truth"]
    if len(tr["tags"]) != len(t["asr"]["text"].split()):
      raise _Invalid(f"{p}.truth.tags: {len(tr['tags'])} tags for {len(t['asr']['text'].split())} recognised words")
    fp = first_failure(tr["stage_errors"], tr["recovered"])
    if tr["failure_point"] != fp:
      raise _Invalid(
        f"{p}.truth.failure_point: {tr['failure_point']!r}, but the first irrecoverable stage gives {fp!r}"
      )
    if tr["defect"] != (fp != "correct"):
      raise _Invalid(f"{p}.truth.defect: must be failure_point != 'correct'")
    if (tr["segment"] == "O") != (tr["goal_id"] is None):
      raise _Invalid(f"{p}.truth.segment: 'O' exactly when goal_id is null")
    if tr["rephrase_of"] is not None and not 0 <= tr["rephrase_of"] < i:
      raise _Invalid(f"{p}.truth.rephrase_of: {tr['rephrase_of']} is not an earlier turn")
  for a, ann in enumerate(d.get("annotations", ())):
    for k, label in enumerate(ann["turns"]):
      if not 0 <= label["turn_id"] < len(turns):
        raise _Invalid(f"annotations[{a}].turns[{k}].turn_id: turn {label['turn_id']} does not exist")
    for k, goal in enumerate(ann["goals"]):
      if any(not 0 <= tid < len(turns) for tid in goal["turn_ids"]):
        raise _Invalid(f"annotations[{a}].goals[{k}].turn_ids: names a turn that does not exist")
  if "truth" not in d:
    return
  if any("truth" not in t for t in turns):
    raise _Invalid("turns: a row with a truth block needs one in every turn")
  goals = d["truth"]["goals"]
  for g, goal in enumerate(goals):
    if goal["goal_id"] != g:
      raise _Invalid(f"truth.goals[{g}].goal_id: expected {g}, got {goal['goal_id']}")
    for tid in goal["turn_ids"]:
      if not 0 <= tid < len(turns) or turns[tid]["truth"]["goal_id"] != g:
        raise _Invalid(f"truth.goals[{g}].turn_ids: turn {tid} does not exist or belongs to another goal")
  for i, t in enumerate(turns):
    gid = t["truth"]["goal_id"]
    if gid is not None and (gid >= len(goals) or i not in goals[gid]["turn_ids"]):
      raise _Invalid(f"turns[{i}].truth.goal_id: goal {gid} does not list this turn")
  for k, pair in enumerate(d["truth"]["rephrase_pairs"]):
    s, tgt = pair["source_turn"], pair["target_turn"]
    ok = 0 <= s < tgt < len(turns)
    if (
      not ok
      or turns[tgt]["truth"]["rephrase_of"] != s
      or turns[s]["truth"]["goal_id"] != turns[tgt]["truth"]["goal_id"]
    ):
      raise _Invalid(f"truth.rephrase_pairs[{k}]: ({s} -> {tgt}) is not a rephrase of an earlier turn of the same goal")


def validate(d: Any) -> None:
  """Raises `ValueError` ('field: message') unless `d` is a valid record (version 1 or 2)."""
  if not isinstance(d, dict):
    raise _Invalid(f"expected a JSON object per line, got {_type_name(d)}")
  if d.get("schema_version") not in (None, *SUPPORTED_VERSIONS):
    raise _Invalid(
      f"schema_version: {d['schema_version']!r} is not supported (this code reads {list(SUPPORTED_VERSIONS)})"
    )
  if d.get("schema_version") == 1 and ("truth" not in d or "annotations" in d):
    raise _Invalid("truth: required in schema version 1 (and annotations are version 2)")
  _check(d, DIALOGUE, "")
  check_consistency(d)


def config_hash(config: dict) -> str:
  """A short stable hash of a simulator config (its fields as sorted JSON): 'sha256:' + 16 hex digits."""
  text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
  return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def make_header(sim_config: dict, *, producer: str = "selflearn.sim") -> dict:
  """The header line of a simulated log (`HEADER`) for a simulator config given as a dict."""
  return {
    "log_header": {
      "schema_version": SCHEMA_VERSION,
      "producer": producer,
      "sim_seed": int(sim_config["seed"]),
      "sim_config": dict(sim_config),
      "sim_config_hash": config_hash(sim_config),
    }
  }


def is_header(obj: Any) -> bool:
  """Whether a decoded line is a log header (`{"log_header": ...}`)."""
  return isinstance(obj, dict) and "log_header" in obj


def validate_header(obj: Any) -> dict:
  """The header block of a header line; raises ValueError ('log_header.field: message')."""
  if set(obj) != {"log_header"}:
    raise _Invalid(f"log_header: a header line holds only log_header, got {sorted(obj)}")
  header = obj["log_header"]
  _check(header, HEADER, "log_header")
  if header["sim_config"].get("seed") != header["sim_seed"]:
    seed = header["sim_config"].get("seed")
    raise _Invalid(f"log_header.sim_seed: {header['sim_seed']}, but its sim_config has seed {seed!r}")
  if config_hash(header["sim_config"]) != header["sim_config_hash"]:
    raise _Invalid(f"log_header.sim_config_hash: {header['sim_config_hash']!r} is not the hash of its sim_config")
  return header


def dumps(d: dict) -> str:
  """One JSONL line (compact, keys in writing order)."""
  return json.dumps(d, separators=(",", ":"), allow_nan=False)
