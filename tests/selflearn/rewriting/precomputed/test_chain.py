"""The absorbing Markov chain of precomputed rewriting: states, counts and the rewrite table."""

import functools
import types

import numpy as np
import pytest

from selflearn.rewriting.precomputed import chain, table
from selflearn.rewriting.rephrase import detector
from selflearn.signals import sessions
from selflearn.sim import judge


def _turn(k, text, t, *, status="ok", barge=False, intent="play_song", domain="music", slots=None):
  return {
    "turn_id": k,
    "timestamp": float(t),
    "utterance_duration": 1.0,
    "asr": {"text": text},
    "nlu": {"intent": intent, "domain": domain, "slots": slots or {}},
    "result": {"status": status},
    "response": {"duration": 2.0},
    "signals": {"barge_in": barge, "barge_in_time": 0.5 if barge else None},
    "truth": {},
  }


def _dialogue(i, turns):
  return {"dialogue_id": f"d{i}", "user_id": "u0", "turns": turns, "truth": {"rephrase_pairs": []}}


def test_chain_from_hand_made_sessions():
  dialogues = [
    # "play wonder" barged in, rephrased 2 s later as "play thunder", which worked: one session, success.
    _dialogue(0, [_turn(0, "Play  Wonder", 0, barge=True), _turn(1, "play thunder", 4.5)]),
    # "play wonder" alone, no match and no follow-up: a single request absorbed into failure.
    _dialogue(1, [_turn(0, "play wonder", 0, status="no_match")]),
    # "play thunder" alone, no friction ("thank you" is not a request): success.
    _dialogue(2, [_turn(0, "play thunder", 0), _turn(1, "thank you", 60, intent="feedback_positive")]),
  ]
  c = chain.build_chain(dialogues, states="text", pairs_source="gap", rephrase_gap=15.0, stop_gap=8.0)
  assert c.keys == ["play thunder", "play wonder"] and c.num_sessions == 1
  w, t = c.index["play wonder"], c.index["play thunder"]
  assert c.Q[w, t] == pytest.approx(0.5) and c.Q[t, w] == 0
  np.testing.assert_allclose(c.R[w], [0, 0.5])
  np.testing.assert_allclose(c.B[[t, w], 0], [1.0, 0.5])
  assert list(c.support) == [2, 2] and c.surface[w] == "play wonder"
  rows = table.rewrite_table(
    c, max_source_success=0.6, min_source_support=1, min_support=1, min_gain=0.2, min_visits=0.0
  )
  assert [(r["source"], r["rewrite"]) for r in rows] == [("play wonder", "play thunder")]
  rows = table.rewrite_table(
    c, max_source_success=0.6, min_source_support=1, min_support=3, min_gain=0.2, min_visits=0.0
  )
  assert rows == []


def test_interpretation_states_need_an_interpret_function():
  assert chain.state_key("Play  Wonder", "text") == "play wonder"
  with pytest.raises(ValueError, match="interpret"):
    chain.state_key("play wonder", "interpretation")
  reading = types.SimpleNamespace(intent="play_song", values={"song": "wonder"})
  assert chain.state_key("play wonder", "interpretation", lambda text: reading) == "interp:play_song|song=wonder"
  assert chain.state_key("zzz", "interpretation", lambda text: None) == "text:zzz"


def test_chains_from_simulated_traffic_cover_every_request(dialogues, sim_world):
  interpret = functools.partial(judge.resolve, sim_world)  # as the amc runner does
  requests = sum(sessions.is_request(t) for d in dialogues for t in d["turns"])
  for pairs_source in chain.PAIRS_SOURCES:
    c = chain.build_chain(
      dialogues,
      states="interpretation",
      pairs_source=pairs_source,
      rephrase_gap=15.0,
      stop_gap=8.0,
      interpret=interpret,
      pairs=detector.heuristic_pairs(dialogues) if pairs_source == "detector" else None,
    )
    assert c.support.sum() == requests
    np.testing.assert_allclose(c.B.sum(1), 1.0, atol=1e-9)
    assert any(k.startswith("interp:") for k in c.keys) and any(k.startswith("text:") for k in c.keys)


def test_similarity_guard_keeps_intent_family_and_entity_type():
  song, title = {"song": "x"}, {"title": "x"}
  dialogues = [
    # "play wonder" (a song) fails and is followed by a successful request for a movie title, or by a song.
    _dialogue(0, [_turn(0, "play wonder", 0, barge=True, slots=song), _turn(1, "play thunder", 4.5, slots=title)]),
    _dialogue(1, [_turn(0, "play wonder", 0, barge=True, slots=song), _turn(1, "play thunder", 4.5, slots=title)]),
    _dialogue(2, [_turn(0, "play wonder", 0, barge=True, slots=song), _turn(1, "play wander", 4.5, slots=song)]),
    _dialogue(3, [_turn(0, "turn on the fan", 0, barge=True, domain="smart_home"), _turn(1, "play wonders", 4.5)]),
    _dialogue(4, [_turn(0, "turn on the fan", 0, barge=True, domain="smart_home"), _turn(1, "play wonders", 4.5)]),
  ]
  # Alone, both sources fail as often as their sessions succeed (success absorption 0.5).
  dialogues += [_dialogue(5 + k, [_turn(0, "play wonder", 0, status="no_match", slots=song)]) for k in range(3)]
  dialogues += [
    _dialogue(8 + k, [_turn(0, "turn on the fan", 0, status="no_match", domain="smart_home")]) for k in range(2)
  ]
  c = chain.build_chain(dialogues, states="text", pairs_source="gap", rephrase_gap=15.0, stop_gap=8.0)
  w, t, a = (c.index[k] for k in ("play wonder", "play thunder", "play wander"))
  fan, wonders = c.index["turn on the fan"], c.index["play wonders"]
  assert table.similarity(c, w, t) == -1.0  # a song rewritten as a title: another entity type
  assert table.similarity(c, fan, wonders) == -1.0  # smart home rewritten as music: another intent family
  assert 0.8 < table.similarity(c, w, a) < 1.0  # rapidfuzz ratio of "play wonder" / "play wander"
  common = dict(max_source_success=0.6, min_source_support=1, min_support=1, min_gain=0.0, min_visits=0.0)
  off = {r["source"]: r["rewrite"] for r in table.rewrite_table(c, **common)}
  assert off == {"play wonder": "play thunder", "turn on the fan": "play wonders"}  # the most supported success
  on = {r["source"]: r["rewrite"] for r in table.rewrite_table(c, **common, min_similarity=0.0)}
  assert on == {"play wonder": "play wander"}
  assert table.rewrite_table(c, **common, min_similarity=0.95) == []
