"""Judged replays of held-out requests: a rewrite function's win/loss, A/B arms, a preference store."""

import copy

import numpy as np
import pytest
import scipy.stats

from selflearn.data import truth
from selflearn.evaluation import replay
from selflearn.language import ontology
from selflearn.signals import sessions
from selflearn.sim import judge
from selflearn.sim import teaching as sim_teaching
from selflearn.teaching import preferences

# --- a rewrite function ---------------------------------------------------------------------------------


def _cases(dialogues, world):
  """A (dialogue, turn) the simulator's rewrite fixes, one that worked as it was, one failing at the back end."""
  fixable = ok = backend = None
  for d in dialogues:
    for i, t in enumerate(d["turns"]):
      tr = t["truth"]
      if fixable is None and tr["rewrite"] and judge.rewrite_succeeds(world, d, i, tr["rewrite"]):
        fixable = (d, i)
      if ok is None and truth.original_succeeds(d, i) and sessions.is_request(t):
        ok = (d, i)
      if backend is None and tr["failure_point"] == "result" and sessions.is_request(t):
        backend = (d, i)
  return fixable, ok, backend


def _isolate(case, k):
  """A copy of the case's dialogue where only the chosen turn carries a recognisable text."""
  d, i = case
  d = copy.deepcopy(d)
  for j, t in enumerate(d["turns"]):
    t["asr"]["text"] = f"case {k}" if j == i else "unrelated"
  return d


def test_win_loss_accounting(dialogues, sim_world):
  fixable, ok, backend = _cases(dialogues, sim_world)
  assert not truth.original_succeeds(*fixable)
  fix_text = fixable[0]["turns"][fixable[1]]["truth"]["rewrite"]
  ok_text = ok[0]["turns"][ok[1]]["truth"]["utterance"]
  assert replay.judge_rewrite(sim_world, *fixable, fix_text) == "win"
  assert replay.judge_rewrite(sim_world, *ok, "zzz qqq") == "loss"
  assert replay.judge_rewrite(sim_world, *ok, ok_text) == "tie"  # both succeed
  assert replay.judge_rewrite(sim_world, *backend, "zzz qqq") == "tie"  # both fail
  logs = [_isolate(fixable, 0), _isolate(ok, 1), _isolate(backend, 2), _isolate(fixable, 3)]
  table = {"case 0": fix_text, "case 1": "zzz qqq", "case 2": "zzz qqq"}  # case 3 is not triggered
  ev = replay.evaluate_rewrites(sim_world, logs, table.get, bootstrap_samples=20, seed=0)
  assert (ev["triggered"], ev["wins"], ev["losses"], ev["ties"], ev["win_loss"]) == (3, 1, 1, 1, 1.0)
  assert ev["defect_rate_triggered_before"] == pytest.approx(2 / 3)
  assert ev["defect_rate_triggered_after"] == pytest.approx(2 / 3)
  assert ev["labelled_triggered"] == 1 and ev["precision_at_1_exact"] == 1.0
  kind = fixable[0]["turns"][fixable[1]]["truth"]["rewrite_kind"]
  assert ev["by_kind"][kind]["win"] == 1
  before = ev["defect_rate_before"] * ev["requests"]
  assert ev["defect_rate_after"] * ev["requests"] == pytest.approx(before - 1 + 1)


# --- A/B arms -------------------------------------------------------------------------------------------


def test_outcomes_judge_rewrites_and_pass_throughs(dialogues, sim_world):
  turns, fixes = [], []
  for di, d in enumerate(dialogues):
    for i, t in enumerate(d["turns"]):
      tr = t["truth"]
      if tr["defect"] and tr["rewrite"] and judge.rewrite_succeeds(sim_world, d, i, tr["rewrite"]):
        turns.append((di, i))
        fixes.append(tr["rewrite"])
  turns, fixes = turns[:20], fixes[:20]
  assert len(turns) == 20
  assert not replay.outcomes(sim_world, dialogues, turns, [None] * 20).any()
  assert replay.outcomes(sim_world, dialogues, turns, fixes).all()
  same = [dialogues[di]["turns"][i]["asr"]["text"] for di, i in turns]  # "rewriting" to itself = pass through
  assert not replay.outcomes(sim_world, dialogues, turns, same).any()


def test_paired_change_and_the_ab_report_on_a_hand_made_case():
  # 4 dialogues, 10 turns: arm a has 5 defects, arm b fixes 3 of them and breaks 1 other turn.
  dialogue_of = np.asarray([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
  a = np.asarray([1, 1, 0, 1, 0, 1, 0, 0, 1, 0], bool)
  b = np.asarray([0, 0, 0, 1, 1, 0, 0, 0, 1, 0], bool)
  r = replay.paired_change(dialogue_of, a, b, num=500, seed=0)
  assert r["rate_a"] == 0.5 and r["rate_b"] == pytest.approx(0.3)
  assert r["diff"] == pytest.approx(-0.2) and r["relative"] == pytest.approx(-0.4)
  assert (r["wins"], r["losses"]) == (3, 1)
  assert r["diff_ci"][0] <= r["diff"] <= r["diff_ci"][1] and r["relative_ci"][0] <= r["relative"] <= r["relative_ci"][1]
  assert r == replay.paired_change(dialogue_of, a, b, num=500, seed=0)  # seeded
  same = replay.paired_change(dialogue_of, a, a, num=50, seed=1)
  assert same["diff"] == 0 and same["diff_ci"] == [0.0, 0.0] and (same["wins"], same["losses"]) == (0, 0)
  report = replay.ab_report(dialogue_of, {"none": ~a, "global": ~b}, {"none": a & False, "global": a}, num=50, seed=0)
  assert report["arms"]["global"]["defects"] == 3 and report["arms"]["global"]["trigger_rate"] == 0.5
  assert report["turns"] == 10 and report["dialogues"] == 4 and "none_vs_global" in report


# --- a preference store ---------------------------------------------------------------------------------


def _entity_defect(world, dialogues):
  """A logged ambiguous-entity defect (a bare title or city the resolver got wrong for this user)."""
  for d in dialogues:
    for i, t in enumerate(d["turns"]):
      tr = t["truth"]
      if tr["failure_point"] == "entity" and tr["rewrite_kind"] == "personal" and t["asr"]["text"] == tr["utterance"]:
        return d, i
  raise AssertionError("no personal entity defect in the fixture")


def test_a_true_preference_fixes_the_ambiguous_turn_and_leaves_the_others(sim_world, dialogues):
  d, i = _entity_defect(sim_world, dialogues)
  uid = d["user_id"]
  assert not truth.original_succeeds(d, i)
  store = sim_teaching.oracle_store(sim_world, [uid])
  mine = [x for x in dialogues if x["user_id"] == uid]
  o = replay.preference_outcomes(sim_world, mine, store)
  turn_pos = int(np.flatnonzero((o["dialogue"] == mine.index(d)) & (o["turn"] == i))[0])
  assert o["affected"][turn_pos] and o["with"][turn_pos] and not o["logged"][turn_pos]
  assert np.array_equal(o["with"][~o["affected"]], o["logged"][~o["affected"]])
  # a store that only states the global defaults changes nothing
  default = preferences.PreferenceStore()
  for title, artists in sim_world.song_popularity.items():
    default.add(uid, preferences.Entry("song", title, artists[0]))
  for city, states in ontology.CITIES.items():
    default.add(uid, preferences.Entry("city", city, states[0]))
  none = replay.preference_outcomes(sim_world, mine, default)
  assert not none["affected"].any() and np.array_equal(none["with"], none["logged"])
  effect = replay.preference_effect(sim_world, mine, store, samples=50, seed=0)
  assert effect["fixed"] >= 1 and effect["overall"]["defect_rate_with"] < effect["overall"]["defect_rate_without"]


def test_paired_reduction_matches_scipy():
  rng = np.random.default_rng(1)
  groups = np.repeat(np.arange(300), rng.integers(1, 6, size=300))
  base = rng.random(groups.size) < 0.3
  new = base & (rng.random(groups.size) < 0.8)
  out = replay.paired_reduction(groups, base, new, 300, samples=4000, seed=0)
  n = np.bincount(groups, minlength=300)
  b, w = np.bincount(groups, weights=base, minlength=300), np.bincount(groups, weights=new, minlength=300)
  assert out["defect_rate_without"] == pytest.approx(base.mean()) and out["defect_rate_with"] == pytest.approx(
    new.mean()
  )
  ref = scipy.stats.bootstrap(
    (n, b, w), lambda n, b, w: (b.sum() - w.sum()) / n.sum(), paired=True, vectorized=False, n_resamples=4000,
    method="percentile", random_state=0,
  ).confidence_interval  # fmt: skip
  assert out["ci_reduction"] == pytest.approx([ref.low, ref.high], abs=0.004)
  assert out["ci_reduction"][0] < out["reduction"] < out["ci_reduction"][1]


def test_ties_are_split_and_precision_at_1_counts_rewrites_that_mean_the_goal(dialogues, sim_world):
  fixable, ok, _ = _cases(dialogues, sim_world)
  # A back-end failure whose true text reads as its goal: rewriting it is right, and still ties (both fail).
  backend = next(
    (d, i)
    for d in dialogues
    for i, t in enumerate(d["turns"])
    if t["truth"]["failure_point"] == "result"
    and sessions.is_request(t)
    and judge.means_goal(sim_world, d, i, t["truth"]["utterance"])
  )
  text = lambda case, field: case[0]["turns"][case[1]]["truth"][field]
  assert not judge.rewrite_succeeds(sim_world, *backend, text(backend, "utterance"))
  logs = [_isolate(c, k) for k, c in enumerate((fixable, ok, ok, backend, backend))]
  table = {
    "case 0": text(fixable, "rewrite"),  # win, meant
    "case 1": "zzz qqq",  # loss
    "case 2": text(ok, "utterance"),  # tie (both served), meant, the true text
    "case 3": text(backend, "utterance"),  # tie (both failed), meant, the true text
    "case 4": "zzz qqq",  # tie (both failed)
  }
  ev = replay.evaluate_rewrites(sim_world, logs, table.get)
  assert (ev["wins"], ev["losses"], ev["ties"], ev["ties_both_served"], ev["ties_both_failed"]) == (1, 1, 3, 1, 2)
  assert ev["precision_at_1"] == pytest.approx(3 / 5)
  exact_fix = text(fixable, "rewrite") == text(fixable, "utterance")
  assert ev["precision_at_1_true_text"] == pytest.approx((2 + exact_fix) / 5)
