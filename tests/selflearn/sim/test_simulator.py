"""The dialogue simulator: determinism, ground-truth consistency, shared patterns, streaming."""

import collections
import inspect
import json
import subprocess
import sys
import tracemalloc

import pytest

from selflearn.data import logs, schema
from selflearn.sim import simulator
from selflearn.sim import world as world_lib


def test_same_seed_same_logs_other_seed_other_logs(sim_config, sim_world, dialogues):
  again = list(simulator.generate(sim_config, 50, world=sim_world))
  assert [schema.dumps(d) for d in again] == [schema.dumps(d) for d in dialogues[:50]]
  # Dialogue i depends only on (config, i): a slice regenerates on its own.
  tail = list(simulator.generate(sim_config, 5, start=100, world=sim_world))
  assert [schema.dumps(d) for d in tail] == [schema.dumps(d) for d in dialogues[100:105]]
  other = list(simulator.generate(simulator.preset("closed_world", seed=4, num_users=40), 50))
  assert [schema.dumps(d) for d in other] != [schema.dumps(d) for d in dialogues[:50]]


def test_every_record_is_valid(dialogues):
  for d in dialogues:
    schema.validate(json.loads(schema.dumps(d)))


def test_failure_point_is_the_first_irrecoverable_stage(dialogues):
  order = ["wake", "asr", "nlu", "entity", "result"]
  seen = collections.Counter()
  for d in dialogues:
    for t in d["turns"]:
      tr = t["truth"]
      fp = tr["failure_point"]
      seen[fp] += 1
      irrecoverable = [s for s in order if tr["stage_errors"][s] and not tr["recovered"][s]]
      expected = {"wake": "false_wake"}.get(irrecoverable[0], irrecoverable[0]) if irrecoverable else "correct"
      assert fp == expected
      if fp != "correct":  # an irrecoverable error always reaches the outcome
        assert tr["stage_errors"]["result"]
      for s in order[: order.index({"false_wake": "wake"}.get(fp, fp))] if fp != "correct" else order:
        assert not tr["stage_errors"][s] or tr["recovered"][s]
      if tr["recovered"]["asr"]:  # a recovered ASR error really changed the words
        assert t["asr"]["text"] != tr["utterance"]
      if not tr["stage_errors"]["asr"] and tr["segment"] != "O":
        assert t["asr"]["text"] == tr["utterance"]
  assert all(seen[fp] > 0 for fp in schema.FAILURE_POINTS), seen


def test_recovered_asr_errors_exist_and_are_not_defects(dialogues):
  recovered = [t for d in dialogues for t in d["turns"] if t["truth"]["recovered"]["asr"]]
  assert recovered
  assert any(t["truth"]["failure_point"] == "correct" for t in recovered)


def test_goal_success_and_segments_match_the_turns(dialogues):
  for d in dialogues:
    turns = d["turns"]
    for g in d["truth"]["goals"]:
      segs = [turns[i]["truth"]["segment"] for i in g["turn_ids"]]
      assert segs[0] == "B" and all(s == "I" for s in segs[1:])
      requests = [turns[i] for i in g["turn_ids"] if turns[i]["truth"]["attempt"] is not None]
      last = requests[-1]["truth"]
      assert g["success"] == (last["failure_point"] == "correct" and g["intent"] != "out_of_scope")
      assert g["failure_point"] == last["failure_point"]
    for t in turns:
      assert (t["truth"]["segment"] == "O") == (t["truth"]["failure_point"] == "false_wake")


def test_rephrase_pairs_point_at_real_turns_of_the_same_goal(dialogues):
  n = 0
  for d in dialogues:
    turns = d["turns"]
    for p in d["truth"]["rephrase_pairs"]:
      n += 1
      src, tgt = turns[p["source_turn"]], turns[p["target_turn"]]
      assert src["truth"]["goal_id"] == tgt["truth"]["goal_id"] is not None
      assert src["truth"]["defect"] or src["truth"]["intent"] == "out_of_scope"  # users rephrase failures
      assert tgt["truth"]["rephrase_of"] == p["source_turn"] and tgt["truth"]["rephrase_kind"] == p["kind"]
      assert 0 < p["gap"] < 120 and tgt["timestamp"] > src["timestamp"]
      if p["kind"] == "repeat":
        assert tgt["truth"]["utterance"] == src["truth"]["utterance"]
    # Every turn marked as a rephrase is in the pair list.
    marked = {t["turn_id"] for t in turns if t["truth"]["rephrase_of"] is not None}
    assert marked == {p["target_turn"] for p in d["truth"]["rephrase_pairs"]}
  assert n > 100


def test_rewrites_fix_the_shared_error_patterns(dialogues, sim_world):
  users_per_pattern = collections.defaultdict(set)
  for d in dialogues:
    for t in d["turns"]:
      tr = t["truth"]
      if tr["defect"]:
        if tr["failure_point"] in ("false_wake", "result"):
          assert tr["rewrite"] is None
      else:
        assert tr["rewrite"] is None
      pattern = tr["error_pattern"]
      if pattern is None:
        continue
      assert tr["rewrite_kind"] == "global" and tr["failure_point"] == "asr"
      # The shared table says `meant` is heard as `heard`, for every user.
      assert sim_world.asr_confusions[pattern["meant"]][0] == pattern["heard"]
      assert pattern["heard"] in t["asr"]["text"].split()
      assert tr["rewrite"] == tr["utterance"] and pattern["meant"] in tr["rewrite"].split()
      users_per_pattern[(pattern["heard"], pattern["meant"])].add(d["user_id"])
  assert users_per_pattern
  assert max(len(u) for u in users_per_pattern.values()) >= 3  # shared across users


def test_personal_rewrites_follow_the_users_habit(dialogues, sim_world):
  users = {u.user_id: u for u in sim_world.users}
  n = 0
  for d in dialogues:
    user = users[d["user_id"]]
    for t in d["turns"]:
      tr = t["truth"]
      if tr["rewrite_kind"] != "personal":
        continue
      n += 1
      assert tr["failure_point"] == "entity"
      if tr["intent"] == "get_weather":
        city = tr["slots"]["city"]
        assert tr["rewrite"].endswith(f"{city} {user.city_state[city]}")
      elif tr["intent"] == "play_song":
        song = tr["slots"]["song"]
        assert tr["rewrite"].endswith(f"{song} by {user.song_artist[song]}")
  assert n > 10


def test_tags_align_with_the_recognised_words(dialogues):
  for d in dialogues:
    for t in d["turns"]:
      tags = t["truth"]["tags"]
      words = t["asr"]["text"].split()
      assert len(tags) == len(words)
      for slot in t["truth"]["slots"]:
        assert f"B-{slot}" in tags or slot in t["truth"]["values"]


def test_world_is_deterministic_and_confusions_are_cmudict_neighbours():
  a, b = world_lib.make_world(5, 10), world_lib.make_world(5, 10)
  assert a == b
  assert a.asr_confusions != world_lib.make_world(6, 10).asr_confusions
  for meant, (heard, p) in a.asr_confusions.items():
    assert heard in a.neighbours[meant] and 0 < p < 1


def test_generate_is_lazy_and_memory_does_not_grow_with_count(tmp_path, sim_config, sim_world):
  gen = simulator.generate(sim_config, 10**9, world=sim_world)  # a billion: must not be materialised
  assert inspect.isgenerator(gen)
  assert next(gen)["dialogue_id"].endswith("00000000")

  def peak(count):
    tracemalloc.start()
    logs.write_logs(str(tmp_path / f"{count}.jsonl"), simulator.generate(sim_config, count, world=sim_world))
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top

  small, large = peak(50), peak(500)
  assert large < 2 * small + 200_000, (small, large)
  assert sum(1 for _ in open(tmp_path / "500.jsonl")) == 500


def test_simulate_binary_writes_a_valid_log_and_rejects_bad_flags(tmp_path):
  out = tmp_path / "sub" / "logs.jsonl"
  cmd = [sys.executable, "-m", "selflearn.simulate", f"--out={out}", "--num_dialogues=30", "--validate"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert "wrote 30 dialogues" in proc.stdout and "validated 30 rows" in proc.stdout
  assert "simulate: 30/30 dialogues" in proc.stdout  # progress lines off a terminal
  rows, stats = logs.load_logs(out)
  assert len(rows) == 30 and stats.skipped == 0
  bad = subprocess.run(
    [sys.executable, "-m", "selflearn.simulate", f"--out={out}", "--error_scale=7"], capture_output=True, text=True
  )
  assert bad.returncode == 2 and "--error_scale" in bad.stderr


@pytest.mark.parametrize("field, value", [("num_users", 0), ("false_wake_rate", 2.0), ("max_turns", 1)])
def test_sim_config_rejects_bad_values(field, value):
  with pytest.raises(ValueError, match=field.split("_")[0]):
    simulator.SimConfig(**{field: value})
