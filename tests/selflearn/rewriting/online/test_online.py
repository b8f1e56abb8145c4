"""Online rewriting: mining, indexes, ranker features, the personal layer (fallback, guard), thresholds."""

import copy

import numpy as np
import pytest
from rapidfuzz import fuzz

from selflearn.configs import online as online_config
from selflearn.data import truth as truth_lib
from selflearn.language import phonetics
from selflearn.rewriting.online import index, layers, mining, ranker
from selflearn.signals import sessions


def _query(text, slots=None, domain="music", **kw):
  base = dict(asr_confidence=0.9, nlu_confidence=0.8, er_score=0.7, status="ok", user_id="u1", time=100.0)
  base.update(kw)
  return ranker.Query(text=text, domain=domain, slots=slots or {}, **base)


# --- mining and indexes ---------------------------------------------------------------------


def test_gap_pairs_come_from_successful_sessions_and_ignore_the_truth(dialogues):
  pairs = mining.mine_pairs(dialogues)
  assert len(pairs) > 50
  for p in pairs[:200]:
    d = dialogues[p.dialogue]
    assert sessions.friction(d, p.source) and p.source < p.target
    assert d["turns"][p.target]["asr"]["text"] == p.target_text != p.source_text
  blind = copy.deepcopy(dialogues[:150])
  for d in blind:
    d["truth"]["rephrase_pairs"] = []
    for t in d["turns"]:
      t["truth"]["defect"] = not t["truth"]["defect"]
  assert mining.mine_pairs(blind) == mining.mine_pairs(dialogues[:150])
  truth = mining.mine_pairs(dialogues, source="truth")
  assert truth and all(truth_lib.original_succeeds(dialogues[p.dialogue], p.target) for p in truth)


def test_indexes_count_frictionless_requests_and_history_is_before_the_query(dialogues):
  gi, pi = index.build_indexes(dialogues[:200])
  counts = {}
  for d in dialogues[:200]:
    for i in mining.successful_requests(d):
      counts[d["turns"][i]["asr"]["text"]] = counts.get(d["turns"][i]["asr"]["text"], 0) + 1
  assert dict(zip(gi.texts, gi.count.tolist())) == counts
  assert list(gi.count) == sorted(gi.count, reverse=True) and (gi.uses >= gi.count).all()
  user, per = next(iter(pi.times.items()))
  text, times = next(iter(per.items()))
  assert pi.uses(user, text, times[0]) == (0, 0.0)  # not counting the use at the query time itself
  n, days = pi.uses(user, text, times[-1] + 86400.0)
  assert n == len(times) and days == pytest.approx(1.0)
  assert pi.history(user, float("inf")) == sum(len(v) for v in per.values())


# --- ranker features and model --------------------------------------------------------------


def test_features_match_rapidfuzz_and_phonetics_directly():
  q = _query("play dun", slots={"title": "dun"}, domain="video", status="no_match")
  c = ranker.Candidate(text="play the audiobook dune", score=0.8, rank=2, in_global=True, global_count=9,
                       global_uses=12, domain="books", slots={"title": "dune"})  # fmt: skip
  row = dict(zip(ranker.FEATURES, ranker.features(q, c)))
  assert row["ratio"] == pytest.approx(fuzz.ratio(q.text, c.text) / 100)
  assert row["token_set_ratio"] == pytest.approx(fuzz.token_set_ratio(q.text, c.text) / 100)
  assert row["partial_ratio"] == pytest.approx(fuzz.partial_ratio(q.text, c.text) / 100)
  prons = phonetics.pronunciations()
  pq = prons["play"] + prons["dun"]
  assert "audiobook" not in prons  # spelt out letter by letter
  pc = prons["play"] + prons["the"] + tuple("audiobook") + prons["dune"]
  assert row["phonetic"] == pytest.approx(1 - phonetics.edit_distance(pq, pc) / max(len(pq), len(pc)), abs=1e-6)
  assert row["global_log_count"] == pytest.approx(np.log1p(9)) and row["global_success_rate"] == pytest.approx(0.75)
  assert row["same_domain"] == 0 and row["same_family"] == 1 and row["status_no_match"] == 1
  a, b = prons["dun"], prons["dune"]
  sound = 1 - phonetics.edit_distance(a, b) / max(len(a), len(b))
  assert row["entity_similarity"] == pytest.approx(max(fuzz.ratio("dun", "dune") / 100, sound))
  assert row["score"] == pytest.approx(0.8) and row["rank"] == pytest.approx(0.2)
  assert ranker.phonetic_similarity("dune", "dune") == 1.0 and ranker.phonetic_similarity("dun", "jazz") < 0.5


def test_listwise_loss_matches_numpy_and_choose_applies_the_threshold():
  from scipy.special import log_softmax

  logits = np.asarray([[0.5, 2.0, 1.0], [1.0, 0.2, -3.0]], np.float32)
  mask = np.asarray([[True, True, False], [True, True, True]])
  label = np.asarray([1, 0])
  loss, acc = ranker.listwise_loss(logits, mask, label)
  ref = -(log_softmax([0.5, 2.0])[1] + log_softmax([1.0, 0.2, -3.0])[0]) / 2
  assert float(loss) == pytest.approx(ref, rel=1e-5) and float(acc) == 1.0
  masked = np.where(mask, logits, -np.inf)
  np.testing.assert_array_equal(ranker.choose(masked, 1.0), [1, 0])  # 2.0 - 0.5 > 1; 0.2 - 1.0 < 1
  np.testing.assert_array_equal(ranker.choose(masked, 2.0), [0, 0])
  np.testing.assert_array_equal(ranker.choose(masked, -1.0), [1, 1])


# --- the personal layer: fallback and the guard ----------------------------------------------


def _config(**guard):
  config = online_config.get_config()
  config.min_personal_history = 5
  config.guard.update(guard)
  return config


BRUNO = ranker.Candidate(text="play we dont talk about bruno", in_personal=True, personal_count=30,
                         personal_total=40, domain="music", slots={"song": "we dont talk about bruno"})  # fmt: skip
BRUNO_MARS = _query("play bruno mars", slots={"artist": "bruno mars"})


def test_guard_blocks_the_bruno_overpersonalisation_and_lets_a_real_fix_through():
  config = _config()
  assert layers.guard(BRUNO_MARS, BRUNO, margin=5.0, config=config) == "entity"
  # Even with the entity check off, the dominant item may not capture the query.
  assert layers.guard(BRUNO_MARS, BRUNO, margin=5.0, config=_config(min_entity=0.0)) == "dominant_item"
  assert layers.guard(BRUNO_MARS, BRUNO, margin=0.1, config=config) == "margin"
  hello = ranker.Candidate(text="play hello by lionel richie", in_personal=True, personal_count=3, personal_total=40,
                           domain="music", slots={"song": "hello", "artist": "lionel richie"})  # fmt: skip
  assert layers.guard(_query("play hello", slots={"song": "hello"}), hello, margin=2.0, config=config) is None
  timer = ranker.Candidate(text="set a timer for ten minutes", in_personal=True, personal_count=2, personal_total=40,
                           domain="timers", slots={"duration": "ten minutes"})  # fmt: skip
  assert layers.guard(_query("play tin minutes", slots={}), timer, margin=2.0, config=config) == "intent_family"


def _lists():
  source = ranker.Candidate(text=BRUNO_MARS.text, is_source=True, domain="music", slots=dict(BRUNO_MARS.slots))
  global_fix = ranker.Candidate(text="play bruno mars radio", in_global=True, domain="music")
  return [[source, global_fix, BRUNO]]


def test_personal_layer_keeps_the_global_decision_when_the_guard_blocks_or_history_is_thin():
  lists = _lists()
  logits = np.asarray([[0.0, 1.0, 6.0]], np.float32)  # the merged ranker prefers the dominant personal item
  config = _config()
  blocked = layers.decide_personal([BRUNO_MARS], lists, logits, 0.0, [None], [40], config)
  assert blocked.texts == [None] and blocked.source == ["guard:entity"]
  thin = layers.decide_personal([BRUNO_MARS], lists, logits, 0.0, ["play bruno mars radio"], [4], config)
  assert thin.texts == ["play bruno mars radio"] and thin.source == ["fallback"]
  # With the guard relaxed the override goes through (so the guard, not the ranker, is what blocked it).
  relaxed = _config(min_entity=0.0, dominant_share=1.0)
  through = layers.decide_personal([BRUNO_MARS], lists, logits, 0.0, [None], [40], relaxed)
  assert through.texts == [BRUNO.text] and through.source == ["personal"]
  agree = layers.decide_personal([BRUNO_MARS], lists, np.asarray([[0.0, 3.0, 1.0]]), 0.0, [lists[0][1].text], [40],
                                 config)  # fmt: skip
  assert agree.texts == [lists[0][1].text] and agree.source == ["global"]


def test_tune_threshold_picks_the_fewest_defects_and_the_highest_on_ties():
  judge = lambda texts: np.asarray(texts)
  decide = {-1.0: [True, False], 0.0: [True, True], 1.0: [True, True], 2.0: [False, False]}
  th, rates = layers.tune_threshold([2.0, 0.0, -1.0, 1.0], lambda t: decide[t], judge)
  assert th == 1.0 and rates["0"] == 0.0 and rates["2"] == 1.0
