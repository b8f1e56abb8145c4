"""The minimal per-turn log contract: validation messages, JSONL and Parquet alike, sessions, vocabularies."""

import datetime
import json
import pathlib

import pytest

from selflearn.data import contract, logs, splits, vocab

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "handwritten_log.jsonl"


def _write(path, rows):
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
  return path


def _row(**kw):
  r = {"session_id": "s1", "user_id": "u", "timestamp": 10, "utterance": "hello there"}
  r.update(kw)
  return r


@pytest.mark.parametrize(
  "row, message",
  [
    ({"session_id": "s1", "user_id": "u", "timestamp": 1}, "utterance: missing field"),
    (_row(timestamp="yesterday"), "timestamp: 'yesterday' is neither epoch seconds nor ISO-8601"),
    (_row(timestamp=-5), "timestamp: -5 is not a finite number >= 0"),
    (_row(feedback=2), "feedback: 2 is not +1 or -1"),
    (_row(asr_confidence=1.5), "asr_confidence: 1.5 is not a number in [0, 1]"),
    (_row(barge_in="yes"), "barge_in: expected a boolean"),
    (_row(slots={"a": 3}), "slots.a: expected a string"),
    (_row(user_id=True), "user_id: expected a string or an integer"),
  ],
)
def test_a_bad_row_names_file_row_and_field(tmp_path, row, message):
  path = _write(tmp_path / "log.jsonl", [_row(), row])
  with pytest.raises(logs.LogFormatError) as e:
    list(contract.iter_turns(path))
  assert str(e.value).startswith(f"{path}:2: ") and message in str(e.value)


def test_extra_fields_are_kept_and_iso_equals_epoch(tmp_path):
  path = _write(
    tmp_path / "log.jsonl",
    [_row(timestamp="2026-01-01T00:00:00Z", locale="en-GB"), _row(timestamp=1767225600.0)],
  )
  (_, a), (_, b) = list(contract.iter_turns(path))
  assert a["timestamp"] == b["timestamp"] == 1767225600.0
  assert a["extra"] == {"locale": "en-GB"} and b["extra"] == {}


def test_audio_width_comes_from_the_data_and_is_checked_on_every_row(tmp_path):
  rows = [_row(audio_features=[0.1, 0.2, 0.3]), _row(), _row(audio_features=[0.1, 0.2])]
  path = _write(tmp_path / "log.jsonl", rows)
  with pytest.raises(logs.LogFormatError, match=r":3: audio_features: 2 values, but this log's audio features have 3"):
    list(contract.iter_turns(path))
  stats = logs.LoadStats()
  assert len(list(contract.iter_turns(path, skip_invalid=True, stats=stats))) == 2
  assert (stats.rows, stats.skipped) == (3, 1)


def test_a_session_must_be_contiguous_and_of_one_user(tmp_path):
  path = _write(tmp_path / "a.jsonl", [_row(), _row(session_id="s2"), _row()])
  with pytest.raises(logs.LogFormatError, match=r"a.jsonl:3: session_id: 's1' already ended"):
    list(contract.iter_sessions(path))
  path = _write(tmp_path / "b.jsonl", [_row(), _row(user_id="v")])
  with pytest.raises(logs.LogFormatError, match=r"b.jsonl:2: user_id: 'v', but session 's1' belongs to 'u'"):
    list(contract.iter_sessions(path))


def test_turns_of_a_session_are_ordered_by_time(tmp_path):
  path = _write(tmp_path / "log.jsonl", [_row(timestamp=20, utterance="b"), _row(timestamp=10, utterance="a")])
  (session,) = list(contract.iter_sessions(path))
  assert [t["utterance"] for t in session] == ["a", "b"]


def test_parquet_reads_like_jsonl(tmp_path):
  pa = pytest.importorskip("pyarrow")
  pq = pytest.importorskip("pyarrow.parquet")
  rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
  for r in rows:  # Parquet columns have one type: native timestamps here
    ts = r["timestamp"]
    r["timestamp"] = (
      datetime.datetime.fromisoformat(ts)
      if isinstance(ts, str)
      else datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    )
  s, f = pa.string(), pa.float64()
  schema = pa.schema(
    [("session_id", s), ("user_id", s), ("timestamp", pa.timestamp("us", tz="UTC")), ("utterance", s),
     ("intent", s), ("domain", s), ("slots", pa.map_(s, s)), ("response", s), ("asr_confidence", f),
     ("device_type", s), ("barge_in", pa.bool_()), ("feedback", pa.int8()), ("audio_features", pa.list_(f)),
     ("locale", s)]
  )  # fmt: skip
  path = tmp_path / "log.parquet"
  table = pa.Table.from_pylist(rows, schema=schema)
  pq.write_table(table, path)
  assert [t for _, t in contract.iter_turns(path)] == [t for _, t in contract.iter_turns(FIXTURE)]
  bad = pa.Table.from_pylist([{**rows[0], "feedback": 1}, {**rows[1], "feedback": 3}], schema=schema)
  pq.write_table(bad, path)
  with pytest.raises(logs.LogFormatError, match=r"log.parquet:2: feedback: 3 is not \+1 or -1"):
    list(contract.iter_turns(path))


def test_scan_learns_vocabularies_with_an_unknown_bucket():
  scan = contract.scan(FIXTURE, min_count=4)
  intents = scan.vocabularies["intent"]
  assert scan.sessions == 42 and scan.users == 7 and scan.audio_width == 3
  assert intents.values[0] in ("PlayTrack", "OrderCoffee", "SetThermostat") and intents.id("play_song") == 0
  assert all(c >= 4 for c in intents.counts) and intents.rare_values >= 1  # the rare intents: in the bucket
  assert set(scan.vocabularies["device_type"].values) == {"car", "watch", "fridge"}
  report = scan.report()
  assert report["vocabularies"]["intent"]["unknown_bucket"]["count"] == intents.rare_count


def test_vocabulary_never_maps_unknown_to_a_real_value():
  v = vocab.Vocabulary.learn("intent", {"a": 5, "b": 2, "c": 1}, min_count=2)
  assert v.values == ("a", "b") and v.id("a") == 1 and v.id("c") == 0 and v.id("zzz") == 0
  assert (v.rare_values, v.rare_count) == (1, 1)
  assert vocab.Vocabulary.from_json(v.to_json()) == v


def test_contract_split_gives_observed_dialogues_without_truth():
  d = splits.read_contract_split(FIXTURE, val_fraction=0.1, test_fraction=0.2)
  assert not d.has_truth and len(d.train) + len(d.val) + len(d.test) == 42
  t = d.train[2]["turns"][0]
  assert "truth" not in t and "truth" not in d.train[2] and t["asr"]["text"] == t["asr"]["text"].strip()
  assert contract.detect(FIXTURE) == "contract"
