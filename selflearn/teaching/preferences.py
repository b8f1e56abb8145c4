"""A per-user store of taught preferences: validated, versioned, persisted; applied by `sim.judge.resolve`.

What a customer teaches ("when i say hello i mean the one by lionel
richie", "i live in springfield missouri", "i'm a big adele fan") is kept
per account (the Amazon teaching blog: concepts belong to the customer, not
to the device) as entries `kind -> key -> value`:

| kind | key | value |
|---|---|---|
| `song` | a song title of the catalogue | one of the artists that sing it |
| `city` | a city of the catalogue | one of its states |
| `artist` | an artist of the catalogue | `"fan"` (an affinity) |

Every entry carries its provenance (dialogue id, turn, timestamp) and the
extractor's confidence, and is validated against the catalogues (`language.ontology`)
before it is stored (`PreferenceError` names the entry and the reason).
On a conflict (same user, kind and key) the newest entry wins.
`for_user(user_id)` gives the `Preferences` mapping: the song and
city entries, plus what an artist affinity implies for the ambiguous titles
that artist sings (a fan of lionel richie means his "hello"), newest first.

`save(path)` writes JSON with a schema version atomically (a temp file in
the same directory, then `os.replace`); `load(path)` raises
`PreferenceError` naming the file and the entry for a malformed file or an
unknown version, and migrates version 1 (bare `{user: {kind: {key: value}}}`
maps without provenance).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Iterable, Mapping

from selflearn.language import ontology

SCHEMA_VERSION = 2
KINDS = ("song", "city", "artist")
FAN = "fan"
_FIELDS = ("kind", "key", "value", "dialogue_id", "turn", "timestamp", "confidence")
# What a user has taught, as the judge applies it: {"song": {title: artist}, "city": {city: state}}.
Preferences = Mapping[str, Mapping[str, str]]


class PreferenceError(ValueError):
  """A malformed preference entry or store file; the message names the entry (and file) and why."""


def _song_artists() -> dict[str, tuple[str, ...]]:
  out: dict[str, list[str]] = {}
  for title, artist, _ in ontology.SONGS:
    out.setdefault(title, []).append(artist)
  return {t: tuple(a) for t, a in out.items()}


SONG_ARTISTS = _song_artists()
# artist -> the ambiguous titles (sung by several artists) this artist sings.
AMBIGUOUS_BY_ARTIST = {
  a: tuple(t for t, artists in SONG_ARTISTS.items() if len(artists) > 1 and a in artists) for a in ontology.ARTISTS
}


def valid_values(kind: str, key: str) -> tuple[str, ...]:
  """The values an entry `(kind, key)` may take; raises `PreferenceError` for an unknown kind or key."""
  if kind not in KINDS:
    raise PreferenceError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
  if kind == "song":
    if key not in SONG_ARTISTS:
      raise PreferenceError(f"unknown key {key!r}: not a song title of the catalogue")
    return SONG_ARTISTS[key]
  if kind == "city":
    if key not in ontology.CITIES:
      raise PreferenceError(f"unknown key {key!r}: not a city of the catalogue")
    return ontology.CITIES[key]
  if key not in ontology.ARTISTS:
    raise PreferenceError(f"unknown key {key!r}: not an artist of the catalogue")
  return (FAN,)


@dataclasses.dataclass(frozen=True)
class Entry:
  """One taught preference with its provenance."""

  kind: str
  key: str
  value: str
  dialogue_id: str = ""  # where it was taught
  turn: int = -1  # the teaching turn (-1: unknown)
  timestamp: float = 0.0  # unix seconds; the newest entry wins
  confidence: float = 1.0  # the extractor's probability that the turn teaches this

  def validate(self) -> None:
    """Raises `PreferenceError` saying which field is wrong and why."""
    for name in ("kind", "key", "value", "dialogue_id"):
      if not isinstance(getattr(self, name), str):
        raise PreferenceError(f"{name} must be a string, got {getattr(self, name)!r}")
    allowed = valid_values(self.kind, self.key)
    if self.value not in allowed:
      what = {"song": "an artist of", "city": "a state of", "artist": "an affinity for"}[self.kind]
      raise PreferenceError(f"value {self.value!r} is not {what} {self.key!r} (valid: {', '.join(allowed)})")
    if not isinstance(self.turn, int) or isinstance(self.turn, bool):
      raise PreferenceError(f"turn must be an integer, got {self.turn!r}")
    if not _number(self.timestamp) or self.timestamp < 0:
      raise PreferenceError(f"timestamp must be a finite number >= 0, got {self.timestamp!r}")
    if not _number(self.confidence) or not 0.0 <= self.confidence <= 1.0:
      raise PreferenceError(f"confidence must be in [0, 1], got {self.confidence!r}")


def _number(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _describe(user_id: str, entry: Entry | Mapping) -> str:
  get = (lambda k: getattr(entry, k, None)) if isinstance(entry, Entry) else entry.get
  return f"entry {user_id}/{get('kind')}/{get('key')}"


class PreferenceStore:
  """user id -> (kind, key) -> the newest valid `Entry`."""

  def __init__(self) -> None:
    self._users: dict[str, dict[tuple[str, str], Entry]] = {}

  def add(self, user_id: str, entry: Entry) -> bool:
    """Validates and stores `entry`; returns whether it is now the entry of its key (not older than the stored one)."""
    if not isinstance(user_id, str) or not user_id:
      raise PreferenceError(f"user id must be a non-empty string, got {user_id!r}")
    try:
      entry.validate()
    except PreferenceError as e:
      raise PreferenceError(f"{_describe(user_id, entry)}: {e}") from None
    entries = self._users.setdefault(user_id, {})
    old = entries.get((entry.kind, entry.key))
    if old is not None and old.timestamp > entry.timestamp:
      return False
    entries[(entry.kind, entry.key)] = entry
    return True

  def users(self) -> list[str]:
    return sorted(self._users)

  def entries(self, user_id: str) -> list[Entry]:
    """The user's entries, oldest first (ties by kind and key)."""
    return sorted(self._users.get(user_id, {}).values(), key=lambda e: (e.timestamp, e.kind, e.key))

  def __len__(self) -> int:
    return sum(len(v) for v in self._users.values())

  def __eq__(self, other: object) -> bool:
    return isinstance(other, PreferenceStore) and self._users == other._users

  def for_user(self, user_id: str) -> dict[str, dict[str, str]]:
    """The `Preferences` of `user_id`: song and city choices, artist affinities applied to their titles.

    Entries are applied oldest first, so the newest one decides a title that
    both an explicit song entry and an affinity (or two affinities) name.
    """
    prefs: dict[str, dict[str, str]] = {"song": {}, "city": {}}
    for e in self.entries(user_id):
      if e.kind == "artist":
        for title in AMBIGUOUS_BY_ARTIST[e.key]:
          prefs["song"][title] = e.key
      else:
        prefs[e.kind][e.key] = e.value
    return prefs

  # --- persistence -----------------------------------------------------------------

  def to_json(self) -> dict:
    return {
      "schema_version": SCHEMA_VERSION,
      "users": {u: [dataclasses.asdict(e) for e in self.entries(u)] for u in self.users()},
    }

  def save(self, path: str | os.PathLike) -> None:
    """Writes the store atomically: a temp file in the same directory, then `os.replace`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
      with open(tmp, "w", encoding="utf-8") as f:
        json.dump(self.to_json(), f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
    finally:
      if tmp.exists():
        tmp.unlink()

  @classmethod
  def from_json(cls, data: Any, source: str = "<json>") -> "PreferenceStore":
    """Parses a saved store (migrating version 1); raises `PreferenceError` naming `source` and the entry."""
    if not isinstance(data, dict) or "schema_version" not in data:
      raise PreferenceError(f"{source}: not a preference store (no schema_version)")
    version = data["schema_version"]
    if version == 1:
      data = _migrate_v1(data, source)
    elif version != SCHEMA_VERSION:
      raise PreferenceError(f"{source}: unknown schema_version {version!r} (this code reads 1 and {SCHEMA_VERSION})")
    extra = set(data) - {"schema_version", "users"}
    if extra:
      raise PreferenceError(f"{source}: unknown top-level fields {sorted(extra)}")
    users = data.get("users")
    if not isinstance(users, dict):
      raise PreferenceError(f"{source}: users must be an object of user id -> entries")
    store = cls()
    for user_id, rows in users.items():
      if not isinstance(rows, list):
        raise PreferenceError(f"{source}: users.{user_id}: must be a list of entries")
      for k, row in enumerate(rows):
        where = f"{source}: users.{user_id}[{k}]"
        if not isinstance(row, dict):
          raise PreferenceError(f"{where}: an entry must be an object, got {row!r}")
        missing = [f for f in _FIELDS if f not in row]
        unknown = sorted(set(row) - set(_FIELDS))
        if missing or unknown:
          raise PreferenceError(f"{where} ({_describe(user_id, row)}): missing fields {missing}, unknown {unknown}")
        try:
          store.add(user_id, Entry(**row))
        except PreferenceError as e:
          raise PreferenceError(f"{where}: {e}") from None
    return store

  @classmethod
  def load(cls, path: str | os.PathLike) -> "PreferenceStore":
    path = pathlib.Path(path)
    try:
      data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
      raise PreferenceError(f"{path}: cannot read the preference store ({e.strerror})") from None
    except ValueError as e:
      raise PreferenceError(f"{path}: not valid JSON ({e})") from None
    return cls.from_json(data, str(path))


def _migrate_v1(data: dict, source: str) -> dict:
  """Version 1: `{"schema_version": 1, "users": {user: {kind: {key: value}}}}`, no provenance."""
  users = data.get("users")
  if not isinstance(users, dict):
    raise PreferenceError(f"{source}: users must be an object (schema_version 1)")
  out = {}
  for user_id, kinds in users.items():
    if not isinstance(kinds, dict) or not all(isinstance(v, dict) for v in kinds.values()):
      raise PreferenceError(f"{source}: users.{user_id}: must map kind -> {{key: value}} (schema_version 1)")
    out[user_id] = [
      {"kind": kind, "key": key, "value": value, "dialogue_id": "", "turn": -1, "timestamp": 0.0, "confidence": 1.0}
      for kind, entries in sorted(kinds.items())
      for key, value in sorted(entries.items())
    ]
  return {"schema_version": SCHEMA_VERSION, "users": out}


def from_entries(items: Iterable[tuple[str, Entry]]) -> PreferenceStore:
  """A store of `(user_id, entry)` pairs (each validated; newest wins)."""
  store = PreferenceStore()
  for user_id, entry in items:
    store.add(user_id, entry)
  return store
