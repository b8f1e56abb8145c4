"""The deterministic judge of rewrites (`selflearn.sim.judge`)."""

import pytest

from selflearn.data import truth
from selflearn.sim import judge
from selflearn.sim import world as world_lib


@pytest.fixture(scope="module")
def w():
  return world_lib.make_world(0, 10)


def test_parse_reads_templates_with_catalogue_spans_and_dropped_function_words():
  assert judge.parse("play the audiobook frozen") == (("play_audiobook", (("title", "frozen"),)),)
  assert ("play_song", (("song", "dancing queen"), ("artist", "abba"))) in judge.parse("put on dancing queen by abba")
  assert judge.parse("add milk to list") == judge.parse("add milk to the list")  # a dropped "the"
  assert judge.parse("play the hobbit")  # a title with a function word of its own
  assert judge.parse("play dun") == ()  # not a catalogue value
  assert judge.parse("make me a sandwich") == (("out_of_scope", ()),)


def test_resolve_is_context_blind_like_the_simulated_nlu(w):
  # A bare title is a video, "what is the temperature" the weather: the simulator's routing errors.
  assert judge.resolve(w, "play frozen").intent == "play_video"
  assert judge.resolve(w, "play the audiobook frozen").intent == "play_audiobook"
  assert judge.resolve(w, "what is the temperature").intent == "get_temperature"
  assert judge.resolve(w, "what is the oven temperature").intent == "oven_temperature"
  assert judge.resolve(w, "play frozzen") is None


def test_resolve_uses_popularity_then_preferences_for_ambiguous_entities(w):
  assert judge.resolve(w, "play hello").values == {"song": "hello by adele"}
  assert judge.resolve(w, "play hello by lionel richie").values == {
    "song": "hello by lionel richie",
    "artist": "lionel richie",
  }
  prefs = {"song": {"hello": "lionel richie"}, "city": {"portland": "maine"}}
  assert judge.resolve(w, "play hello", preferences=prefs).values["song"] == "hello by lionel richie"
  assert judge.resolve(w, "weather in portland").values == {"city": "portland oregon"}
  assert judge.resolve(w, "weather in portland", preferences=prefs).values == {"city": "portland maine"}
  assert judge.resolve(w, "weather in portland maine").values == {"city": "portland maine"}
  # A preference naming no version of the title is ignored, not trusted.
  assert judge.resolve(w, "play hello", preferences={"song": {"hello": "abba"}}).values["song"] == "hello by adele"
  # A recording that does not exist serves nothing.
  assert judge.resolve(w, "play hello by abba").values == {}


def test_serves_needs_the_intent_named_values_and_core_slots():
  goal = {"intent": "turn_on", "values": {"device": "lamp", "room": "bedroom"}}
  ok = judge.Interpretation("turn_on", {"device": "lamp"})
  assert judge.serves(ok, goal)  # the room is optional in "turn on the lamp"
  assert not judge.serves(judge.Interpretation("turn_on", {"device": "lamp", "room": "garage"}), goal)
  assert not judge.serves(judge.Interpretation("turn_on", {}), goal)  # no device
  assert not judge.serves(judge.Interpretation("turn_off", {"device": "lamp"}), goal)
  assert not judge.serves(None, goal)
  song_goal = {"intent": "play_song", "values": {"song": "hello by lionel richie", "artist": "lionel richie"}}
  assert judge.serves(judge.Interpretation("play_song", {"song": "hello by lionel richie"}), song_goal)
  assert not judge.serves(judge.Interpretation("play_song", {"song": "hello by adele"}), song_goal)


def test_the_simulators_own_rewrites_mostly_succeed_and_correct_turns_are_judged_correct(dialogues, sim_world):
  """On simulated traffic: the judge agrees with the simulator where the simulator's NLU is deterministic."""
  fixed = kept = total_rw = total_ok = 0
  for d in dialogues:
    for i, t in enumerate(d["turns"]):
      tr = t["truth"]
      if tr["attempt"] is None:
        continue
      if tr["rewrite_kind"] in ("personal", "user_asr"):
        total_rw += 1
        fixed += judge.rewrite_succeeds(sim_world, d, i, tr["rewrite"])
      if not tr["defect"] and tr["utterance"] == t["asr"]["text"] and tr["domain"] not in ("video", "books"):
        total_ok += 1
        kept += judge.rewrite_succeeds(sim_world, d, i, t["asr"]["text"])
  assert total_rw > 30 and fixed / total_rw > 0.9
  # Clean, correctly served requests (context-aware title/oven routing aside) are judged served.
  assert total_ok > 300 and kept / total_ok > 0.97


def test_rewrite_cannot_fix_a_back_end_failure(dialogues, sim_world):
  d, i = next((d, i) for d in dialogues for i, t in enumerate(d["turns"]) if t["truth"]["failure_point"] == "result")
  assert not judge.rewrite_succeeds(sim_world, d, i, d["turns"][i]["truth"]["utterance"])
  assert not truth.original_succeeds(d, i)
