"""Friction and reformulation sessions from observations only (`selflearn.signals.sessions`)."""

import copy

from selflearn.signals import sessions


def test_sessions_read_no_truth_and_find_most_true_rephrases(dialogues):
  tp = fp = fn = 0
  for d in dialogues[:300]:
    scrambled = copy.deepcopy(d)
    scrambled["truth"] = {"goals": [], "rephrase_pairs": []}
    for t in scrambled["turns"]:
      t["truth"] = {}
    got = sessions.reformulation_sessions(d)
    assert sessions.reformulation_sessions(scrambled) == got
    pred = {(a, b) for s in got for a, b in zip(s.turns[:-1], s.turns[1:])}
    true = {(p["source_turn"], p["target_turn"]) for p in d["truth"]["rephrase_pairs"]}
    tp, fp, fn = tp + len(pred & true), fp + len(pred - true), fn + len(true - pred)
  assert tp / (tp + fn) > 0.9  # the gap heuristic finds nearly every true rephrase ...
  assert 0.4 < tp / (tp + fp) < 0.95  # ... and some follow-ups that are new goals


def test_sessions_from_given_pairs_chain_them_and_end_in_the_outcome(dialogues):
  d = next(d for d in dialogues if any(len(g["turn_ids"]) >= 3 for g in d["truth"]["goals"]))
  pairs = [(p["source_turn"], p["target_turn"]) for p in d["truth"]["rephrase_pairs"]]
  got = sessions.reformulation_sessions(d, pairs=pairs)
  assert got and all(len(s.turns) >= 2 for s in got)
  flat = [t for s in got for t in s.turns]
  assert len(flat) == len(set(flat))
  for s in got:
    last = d["turns"][s.turns[-1]]
    if last["signals"]["barge_in"] or last["result"]["status"] in ("error", "no_match"):
      assert not s.success
