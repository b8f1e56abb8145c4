"""Online rewriting: mining, indexes, ranker features, the personal layer (fallback, guard), A/B accounting, binary."""

import copy
import json
import os
import pathlib
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from rapidfuzz import fuzz

from common import app
from selflearn import interpret, online, phonetics, ranker, sessions
from selflearn.configs import online as online_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMOKE = "selflearn/configs/online.py:smoke"


def _query(text, slots=None, domain="music", **kw):
  base = dict(asr_confidence=0.9, nlu_confidence=0.8, er_score=0.7, status="ok", user_id="u1", time=100.0)
  base.update(kw)
  return ranker.Query(text=text, domain=domain, slots=slots or {}, **base)


# --- mining and indexes ---------------------------------------------------------------------


def test_gap_pairs_come_from_successful_sessions_and_ignore_the_truth(dialogues):
  pairs = online.mine_pairs(dialogues)
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
  assert online.mine_pairs(blind) == online.mine_pairs(dialogues[:150])
  truth = online.mine_pairs(dialogues, source="truth")
  assert truth and all(interpret.original_succeeds(dialogues[p.dialogue], p.target) for p in truth)


def test_indexes_count_frictionless_requests_and_history_is_before_the_query(dialogues):
  gi, pi = online.build_indexes(dialogues[:200])
  counts = {}
  for d in dialogues[:200]:
    for i in online.successful_requests(d):
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
  assert online.guard(BRUNO_MARS, BRUNO, margin=5.0, config=config) == "entity"
  # Even with the entity check off, the dominant item may not capture the query.
  assert online.guard(BRUNO_MARS, BRUNO, margin=5.0, config=_config(min_entity=0.0)) == "dominant_item"
  assert online.guard(BRUNO_MARS, BRUNO, margin=0.1, config=config) == "margin"
  hello = ranker.Candidate(text="play hello by lionel richie", in_personal=True, personal_count=3, personal_total=40,
                           domain="music", slots={"song": "hello", "artist": "lionel richie"})  # fmt: skip
  assert online.guard(_query("play hello", slots={"song": "hello"}), hello, margin=2.0, config=config) is None
  timer = ranker.Candidate(text="set a timer for ten minutes", in_personal=True, personal_count=2, personal_total=40,
                           domain="timers", slots={"duration": "ten minutes"})  # fmt: skip
  assert online.guard(_query("play tin minutes", slots={}), timer, margin=2.0, config=config) == "intent_family"


def _lists():
  source = ranker.Candidate(text=BRUNO_MARS.text, is_source=True, domain="music", slots=dict(BRUNO_MARS.slots))
  global_fix = ranker.Candidate(text="play bruno mars radio", in_global=True, domain="music")
  return [[source, global_fix, BRUNO]]


def test_personal_layer_keeps_the_global_decision_when_the_guard_blocks_or_history_is_thin():
  lists = _lists()
  logits = np.asarray([[0.0, 1.0, 6.0]], np.float32)  # the merged ranker prefers the dominant personal item
  config = _config()
  blocked = online.decide_personal([BRUNO_MARS], lists, logits, 0.0, [None], [40], config)
  assert blocked.texts == [None] and blocked.source == ["guard:entity"]
  thin = online.decide_personal([BRUNO_MARS], lists, logits, 0.0, ["play bruno mars radio"], [4], config)
  assert thin.texts == ["play bruno mars radio"] and thin.source == ["fallback"]
  # With the guard relaxed the override goes through (so the guard, not the ranker, is what blocked it).
  relaxed = _config(min_entity=0.0, dominant_share=1.0)
  through = online.decide_personal([BRUNO_MARS], lists, logits, 0.0, [None], [40], relaxed)
  assert through.texts == [BRUNO.text] and through.source == ["personal"]
  agree = online.decide_personal([BRUNO_MARS], lists, np.asarray([[0.0, 3.0, 1.0]]), 0.0, [lists[0][1].text], [40],
                                 config)  # fmt: skip
  assert agree.texts == [lists[0][1].text] and agree.source == ["global"]


# --- A/B accounting ---------------------------------------------------------------------------


def test_outcomes_judge_rewrites_and_pass_throughs(dialogues, sim_world):
  turns, fixes = [], []
  for di, d in enumerate(dialogues):
    for i, t in enumerate(d["turns"]):
      tr = t["truth"]
      if tr["defect"] and tr["rewrite"] and interpret.rewrite_succeeds(sim_world, d, i, tr["rewrite"]):
        turns.append((di, i))
        fixes.append(tr["rewrite"])
  turns, fixes = turns[:20], fixes[:20]
  assert len(turns) == 20
  assert not online.outcomes(sim_world, dialogues, turns, [None] * 20).any()
  assert online.outcomes(sim_world, dialogues, turns, fixes).all()
  same = [dialogues[di]["turns"][i]["asr"]["text"] for di, i in turns]  # "rewriting" to itself = pass through
  assert not online.outcomes(sim_world, dialogues, turns, same).any()


def test_paired_bootstrap_on_a_hand_made_case():
  # 4 dialogues, 10 turns: arm a has 5 defects, arm b fixes 3 of them and breaks 1 other turn.
  dialogue_of = np.asarray([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
  a = np.asarray([1, 1, 0, 1, 0, 1, 0, 0, 1, 0], bool)
  b = np.asarray([0, 0, 0, 1, 1, 0, 0, 0, 1, 0], bool)
  r = online.paired_bootstrap(dialogue_of, a, b, num=500, seed=0)
  assert r["rate_a"] == 0.5 and r["rate_b"] == pytest.approx(0.3)
  assert r["diff"] == pytest.approx(-0.2) and r["relative"] == pytest.approx(-0.4)
  assert (r["wins"], r["losses"]) == (3, 1)
  assert r["diff_ci"][0] <= r["diff"] <= r["diff_ci"][1] and r["relative_ci"][0] <= r["relative"] <= r["relative_ci"][1]
  assert r == online.paired_bootstrap(dialogue_of, a, b, num=500, seed=0)  # seeded
  same = online.paired_bootstrap(dialogue_of, a, a, num=50, seed=1)
  assert same["diff"] == 0 and same["diff_ci"] == [0.0, 0.0] and (same["wins"], same["losses"]) == (0, 0)
  report = online.ab_report(dialogue_of, {"none": ~a, "global": ~b}, {"none": a & False, "global": a}, num=50, seed=0)
  assert report["arms"]["global"]["defects"] == 3 and report["arms"]["global"]["trigger_rate"] == 0.5
  assert report["turns"] == 10 and report["dialogues"] == 4 and "none_vs_global" in report


def test_tune_threshold_picks_the_fewest_defects_and_the_highest_on_ties():
  judge = lambda texts: np.asarray(texts)
  decide = {-1.0: [True, False], 0.0: [True, True], 1.0: [True, True], 2.0: [False, False]}
  th, rates = online.tune_threshold([2.0, 0.0, -1.0, 1.0], lambda t: decide[t], judge)
  assert th == 1.0 and rates["0"] == 0.0 and rates["2"] == 1.0


# --- config and binary --------------------------------------------------------------------------


@pytest.mark.parametrize(
  "field, value",
  [
    ("pairs_source", "oracle"),
    ("retrieval.k", 0),
    ("retrieval.text_encoder", "bert"),
    ("ranker.hidden_dim", -1),
    ("guard.min_entity", 1.5),
    ("min_personal_history", -1),
    ("batch_size", 0),
  ],
)
def test_validate_config_names_the_bad_field(field, value):
  config = online_config.get_config("smoke")
  block, _, leaf = field.rpartition(".")
  (config[block] if block else config)[leaf] = value
  with pytest.raises(app.ConfigError) as e:
    online.validate_config(config)
  assert e.value.field == field


def test_unknown_field_is_named():
  config = online_config.get_config("smoke")
  with config.unlocked():
    config.guard.margn = 1.0
  with pytest.raises(app.ConfigError) as e:
    online.validate_config(config)
  assert e.value.field == "guard.margn"
  assert isinstance(online_config.get_config(""), ml_collections.ConfigDict) and set(online_config.VARIANTS) == {
    "",
    "smoke",
  }


def _run(workdir, *overrides, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  cmd = [sys.executable, "-m", "selflearn.main", f"--config={SMOKE}", f"--workdir={workdir}", *overrides]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_smoke_binary_writes_results_and_a_rerun_resumes_identically(tmp_path):
  workdir = tmp_path / "run"
  proc = _run(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"outputs in {workdir}" in proc.stdout
  results = json.loads((workdir / "results.json").read_text())
  ab = results["main"]["ab"]
  assert set(ab["arms"]) == {"none", "global", "personal", "oracle"} and ab["turns"] > 0
  for arm in ab["arms"].values():
    assert 0 <= arm["defect_rate"] <= 1 and 0 <= arm["trigger_rate"] <= 1
  assert "keynote" in results and "-13%" in (workdir / "results.md").read_text()
  for stage in ("encoder", "ranker_global", "ranker_personal"):
    assert any((workdir / stage / "checkpoints").iterdir())
  before = (workdir / "results.json").read_text()
  again = _run(workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "encoder: resuming from the checkpoint" in again.stdout and "simulating" not in again.stdout
  assert (workdir / "results.json").read_text() == before


def test_bad_config_exits_2_naming_the_field(tmp_path):
  workdir = tmp_path / "run"
  proc = _run(workdir, "--config.guard.min_entity=2.0", timeout=120)
  assert proc.returncode == 2, proc.stderr
  assert "config.guard.min_entity" in proc.stderr and not workdir.exists()
