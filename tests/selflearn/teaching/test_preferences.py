"""The preference store: validation, newest-wins, affinities, persistence (versions, malformed files, atomic write)."""

import json
import os

import pytest

from selflearn.sim import judge
from selflearn.teaching import preferences as prefs_lib
from selflearn.teaching.preferences import Entry, PreferenceError, PreferenceStore


def _store():
  store = PreferenceStore()
  store.add("u00001", Entry("song", "hello", "lionel richie", "s0-d3", 0, 100.0, 0.9))
  store.add("u00001", Entry("city", "portland", "maine", "s0-d3", 1, 101.0, 0.8))
  store.add("u00002", Entry("artist", "joni mitchell", "fan", "s0-d7", 0, 50.0, 0.99))
  return store


def test_round_trip_keeps_entries_and_decisions(tmp_path):
  store = _store()
  path = tmp_path / "prefs" / "preferences.json"
  store.save(path)
  data = json.loads(path.read_text())
  assert data["schema_version"] == prefs_lib.SCHEMA_VERSION == 2
  loaded = PreferenceStore.load(path)
  assert loaded == store and len(loaded) == 3
  for user in ("u00001", "u00002", "u00009"):
    assert loaded.for_user(user) == store.for_user(user)
  assert loaded.entries("u00001")[0] == Entry("song", "hello", "lionel richie", "s0-d3", 0, 100.0, 0.9)
  assert store.for_user("u00001") == {"song": {"hello": "lionel richie"}, "city": {"portland": "maine"}}


def test_newest_entry_wins_and_affinities_resolve_their_titles():
  store = PreferenceStore()
  assert store.add("u1", Entry("city", "springfield", "missouri", timestamp=10.0))
  assert not store.add("u1", Entry("city", "springfield", "massachusetts", timestamp=5.0))  # older: ignored
  assert store.for_user("u1")["city"] == {"springfield": "missouri"}
  assert store.add("u1", Entry("city", "springfield", "illinois", timestamp=20.0))
  assert store.for_user("u1")["city"] == {"springfield": "illinois"}
  # an affinity names the ambiguous titles its artist sings; newest of affinity / explicit entry decides
  store.add("u1", Entry("artist", "lionel richie", "fan", timestamp=30.0))
  store.add("u1", Entry("artist", "drake", "fan", timestamp=31.0))  # no ambiguous title: no song choice
  assert store.for_user("u1")["song"] == {"hello": "lionel richie"}
  store.add("u1", Entry("song", "hello", "adele", timestamp=40.0))
  assert store.for_user("u1")["song"] == {"hello": "adele"}
  store.add("u1", Entry("artist", "lionel richie", "fan", timestamp=50.0))  # re-taught: newest again
  assert store.for_user("u1")["song"] == {"hello": "lionel richie"}


def test_the_store_changes_what_the_judge_resolves(sim_world):
  store = PreferenceStore()
  store.add("u1", Entry("artist", "lionel richie", "fan"))
  store.add("u1", Entry("city", "portland", "maine"))
  p = store.for_user("u1")
  assert judge.resolve(sim_world, "play hello").values == {"song": "hello by adele"}
  assert judge.resolve(sim_world, "play hello", preferences=p).values == {"song": "hello by lionel richie"}
  assert judge.resolve(sim_world, "weather in portland", preferences=p).values == {"city": "portland maine"}
  assert judge.resolve(sim_world, "play yellow", preferences=p) == judge.resolve(sim_world, "play yellow")


@pytest.mark.parametrize(
  "entry, words",
  [
    (Entry("restaurant", "italian", "yes"), ["u1/restaurant/italian", "unknown kind 'restaurant'"]),
    (Entry("song", "hallo", "adele"), ["u1/song/hallo", "unknown key 'hallo'", "song title"]),
    (Entry("city", "gotham", "new jersey"), ["u1/city/gotham", "unknown key 'gotham'", "city"]),
    (Entry("artist", "the beatles", "fan"), ["u1/artist/the beatles", "unknown key", "artist"]),
    (Entry("song", "hello", "drake"), ["u1/song/hello", "value 'drake'", "adele, lionel richie"]),
    (Entry("city", "portland", "ohio"), ["u1/city/portland", "value 'ohio'", "oregon, maine"]),
    (Entry("artist", "adele", "hate"), ["u1/artist/adele", "value 'hate'"]),
    (Entry("city", "portland", "maine", confidence=1.5), ["u1/city/portland", "confidence"]),
    (Entry("city", "portland", "maine", timestamp=float("nan")), ["u1/city/portland", "timestamp"]),
    (Entry("city", "portland", "maine", turn="3"), ["u1/city/portland", "turn"]),
    (Entry("city", 7, "maine"), ["key must be a string"]),
  ],
)
def test_malformed_entries_are_rejected_naming_the_entry_and_why(entry, words):
  store = PreferenceStore()
  with pytest.raises(PreferenceError) as e:
    store.add("u1", entry)
  for w in words:
    assert w in str(e.value)
  assert len(store) == 0


def test_bad_user_id_is_rejected():
  with pytest.raises(PreferenceError, match="user id"):
    PreferenceStore().add("", Entry("city", "portland", "maine"))


def _write(tmp_path, data):
  path = tmp_path / "p.json"
  path.write_text(data if isinstance(data, str) else json.dumps(data))
  return path


def _row(**kw):
  row = {"kind": "song", "key": "hello", "value": "adele", "dialogue_id": "d", "turn": 0, "timestamp": 1.0}
  row["confidence"] = 1.0
  row.update(kw)
  return row


@pytest.mark.parametrize(
  "data, words",
  [
    ("{not json", ["not valid JSON"]),
    ({"users": {}}, ["no schema_version"]),
    ({"schema_version": 3, "users": {}}, ["unknown schema_version 3"]),
    ({"schema_version": 2, "users": []}, ["users must be an object"]),
    ({"schema_version": 2, "users": {}, "extra": 1}, ["unknown top-level fields ['extra']"]),
    ({"schema_version": 2, "users": {"u1": {}}}, ["users.u1: must be a list"]),
    ({"schema_version": 2, "users": {"u1": [_row(value="cher")]}}, ["users.u1[0]", "u1/song/hello", "value 'cher'"]),
    ({"schema_version": 2, "users": {"u1": [_row(), {"kind": "song"}]}}, ["users.u1[1]", "missing fields"]),
    ({"schema_version": 2, "users": {"u1": [_row(colour="red")]}}, ["users.u1[0]", "unknown ['colour']"]),
    ({"schema_version": 2, "users": {"u1": ["hello"]}}, ["users.u1[0]", "must be an object"]),
  ],
)
def test_malformed_files_name_the_file_and_the_entry(tmp_path, data, words):
  path = _write(tmp_path, data)
  with pytest.raises(PreferenceError) as e:
    PreferenceStore.load(path)
  assert str(path) in str(e.value)
  for w in words:
    assert w in str(e.value)


def test_missing_file_is_an_error_naming_it(tmp_path):
  with pytest.raises(PreferenceError, match="cannot read"):
    PreferenceStore.load(tmp_path / "nope.json")


def test_version_1_migrates_without_provenance(tmp_path):
  v1 = {"schema_version": 1, "users": {"u3": {"song": {"river": "leon bridges"}, "city": {"columbus": "georgia"}}}}
  store = PreferenceStore.load(_write(tmp_path, v1))
  assert store.for_user("u3") == {"song": {"river": "leon bridges"}, "city": {"columbus": "georgia"}}
  assert {e.turn for e in store.entries("u3")} == {-1}
  bad = {"schema_version": 1, "users": {"u3": {"song": {"river": "cher"}}}}
  with pytest.raises(PreferenceError, match="value 'cher'"):
    PreferenceStore.load(_write(tmp_path, bad))
  with pytest.raises(PreferenceError, match="schema_version 1"):
    PreferenceStore.load(_write(tmp_path, {"schema_version": 1, "users": {"u3": ["x"]}}))


def test_save_is_atomic_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / "preferences.json"
  _store().save(path)
  before = path.read_text()
  bigger = _store()
  bigger.add("u00005", Entry("city", "columbus", "georgia"))
  calls = []
  real_replace = os.replace
  monkeypatch.setattr(prefs_lib.os, "replace", lambda a, b: calls.append((a, b)) or real_replace(a, b))

  def broken_dump(obj, f, **kw):
    f.write('{"schema_version": 2, "us')  # half a file, then the disk fills up
    raise OSError("no space left on device")

  monkeypatch.setattr(prefs_lib.json, "dump", broken_dump)
  with pytest.raises(OSError):
    bigger.save(path)
  assert path.read_text() == before and not calls
  assert sorted(p.name for p in tmp_path.iterdir()) == ["preferences.json"]  # no temp file left
  monkeypatch.undo()
  monkeypatch.setattr(prefs_lib.os, "replace", lambda a, b: calls.append((a, b)) or real_replace(a, b))
  bigger.save(path)
  assert len(calls) == 1 and calls[0][1] == path and calls[0][0].parent == path.parent
  assert PreferenceStore.load(path) == bigger
