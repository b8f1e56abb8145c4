"""Teaching turns, the extractor's decoding, the rule baseline, the defect evaluation and the `teach` binary."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
from sklearn import metrics as skm

from common import app
from selflearn import interpret, preferences, teaching
from selflearn import world as world_lib
from selflearn.configs import teach as teach_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMOKE = "selflearn/configs/teach.py:smoke"


def _clean_cfg(**kw):
  cfg = teach_config.get_config().teach
  cfg.asr_noise, cfg.systematic_noise = 0.0, 0.0
  cfg.update(kw)
  return cfg


def _truth_decode(turn, world):
  k = teaching.KIND_NAMES.index(turn.truth[0]) if turn.truth else 0
  tags = [teaching.TAG_NAMES.index(t) for t in turn.tags]
  entry, conf = teaching.decode(turn.words, np.eye(4)[k], tags, threshold=0.5, cutoff=75, neighbours=world.neighbours)
  return entry, conf


def test_teaching_turns_state_the_users_true_habits(sim_world, dialogues):
  turns = teaching.teaching_turns(sim_world, dialogues, _clean_cfg(turns_per_user=10), seed=0)
  users = {d["user_id"] for d in dialogues}
  assert {t.user_id for t in turns} == users and len(turns) == 10 * len(users)
  dialogue_ids = {d["dialogue_id"]: d["user_id"] for d in dialogues}
  kinds = set()
  for t in turns:
    assert dialogue_ids[t.dialogue_id] == t.user_id and len(t.words) == len(t.tags)
    user = interpret.user_of(sim_world, t.user_id)
    if t.truth is None:
      assert set(t.tags) == {"O"}
      continue
    kind, key, value = t.truth
    kinds.add(kind)
    if kind == "song":
      assert user.song_artist[key] == value
    elif kind == "city":
      assert user.city_state.get(key, world_lib.CITIES[key][0]) == value
    else:  # an affinity never contradicts what the user means by an ambiguous title
      assert all(user.song_artist[title] == key for title in preferences.AMBIGUOUS_BY_ARTIST[key])
    preferences.Entry(*t.truth).validate()
    # noise-free: the tagged spans spell the entry
    assert _truth_decode(t, sim_world)[0] == t.truth, t.text
  assert kinds == {"song", "city", "artist"}
  share = np.mean([t.truth is None for t in turns])
  assert 0.25 < share < 0.55  # distractor_rate 0.4
  assert any(t.held_out for t in turns) and any(t.frame == "request" for t in turns)
  again = teaching.teaching_turns(sim_world, dialogues, _clean_cfg(turns_per_user=10), seed=0)
  assert again == turns  # seeded


def test_examples_of_the_grammar_and_its_noise(sim_world):
  words, tags = teaching._render("by {city} i mean {city} {state}", {"city": "portland", "state": "maine"})
  assert " ".join(words) == "by portland i mean portland maine"
  assert tags == ["O", "B-KEY", "O", "O", "B-KEY", "B-VAL"]
  words, tags = teaching._render(
    "when i say {title} i mean the one by {artist}", {"title": "hello", "artist": "lionel richie"}
  )
  assert tags[3] == "B-KEY" and tags[-2:] == ["B-VAL", "I-VAL"]
  rng = np.random.default_rng(0)
  noisy = [teaching.add_noise(sim_world, rng, words, tags, asr_noise=0.5, systematic=1.0) for _ in range(50)]
  assert any(w != words for w, _ in noisy) and all(len(w) == len(t) for w, t in noisy)
  changed = {x for w, _ in noisy for x in w} - set(words)
  neighbours = {n for w in words for n in sim_world.neighbours.get(w, ())}
  confusions = {sim_world.asr_confusions[w][0] for w in words if w in sim_world.asr_confusions}
  assert changed <= neighbours | confusions  # substitutions are phonetic neighbours / shared confusions


def test_the_training_corpus_excludes_held_out_frames(sim_world):
  cfg = teach_config.get_config().teach
  corpus = teaching.corpus(sim_world, 600, cfg, seed=0)
  assert not any(t.held_out for t in corpus)
  held = {f for fs in teaching.FRAMES.values() for f, h in fs if h}
  assert not {t.frame for t in corpus} & held
  for t in corpus:
    if t.truth:
      preferences.Entry(*t.truth).validate()


def test_spans_and_decoding():
  words = "by portland i mean portland maine".split()
  tags = ["O", "B-KEY", "O", "O", "B-KEY", "B-VAL"]
  assert teaching.spans(words, tags) == {"KEY": ["portland", "portland"], "VAL": ["maine"]}
  assert teaching.spans(["lionel", "richie", "x"], ["I-VAL", "I-VAL", "O"]) == {"KEY": [], "VAL": ["lionel richie"]}
  ids = [teaching.TAG_NAMES.index(t) for t in tags]
  city = np.array([0.1, 0.1, 0.7, 0.1])
  assert teaching.decode(words, city, ids, threshold=0.5, cutoff=75) == (("city", "portland", "maine"), 0.7)
  assert teaching.decode(words, city, ids, threshold=0.8, cutoff=75)[0] is None  # not confident enough
  assert teaching.decode(words, np.array([0.6, 0.1, 0.2, 0.1]), ids, threshold=0.5, cutoff=75)[0] is None
  # the right kind, no value span: nothing to store
  assert teaching.decode(words, city, [0, 1, 0, 0, 1, 0], threshold=0.5, cutoff=75)[0] is None


def test_normalisation_maps_noisy_spans_to_valid_catalogue_entries(sim_world):
  nb = sim_world.neighbours
  norm = lambda *a: teaching.normalise(*a, cutoff=75, neighbours=nb)
  assert norm("song", ["hello"], ["christine aguilera"]) is None  # she does not sing "hello"
  assert norm("song", ["beautiful"], ["christine aguilera"]) == ("song", "beautiful", "christina aguilera")
  assert norm("song", [nb["hello"][0]], ["adele"]) == ("song", "hello", "adele")  # a phonetic neighbour
  assert norm("city", ["portland", "portland"], ["maine"]) == ("city", "portland", "maine")
  assert norm("city", ["portland"], ["ohio"]) is None
  assert norm("artist", ["lionel ritchie"], []) == ("artist", "lionel richie", "fan")
  assert norm("artist", ["my mother"], []) is None
  assert norm("none", ["hello"], ["adele"]) is None


def test_rule_parser_baseline():
  parse = lambda text: teaching.rule_parse(text, cutoff=75)
  assert parse("when i say hello i mean the one by lionel richie") == ("song", "hello", "lionel richie")
  assert parse("by portland i mean portland maine") == ("city", "portland", "maine")
  assert parse("i live in springfield missouri") == ("city", "springfield", "missouri")
  assert parse("i'm a big lionel richie fan") == ("artist", "lionel richie", "fan")
  for text in ("play hello by adele", "when i say stop i mean it", "i'm a big fan of yours", "i love this song"):
    assert parse(text) is None, text
  assert parse("nobody beats adele for me") is None  # a held-out paraphrase the rules do not know


def test_extraction_scores_match_sklearn():
  truth = [("song", "hello", "adele"), None, ("city", "portland", "maine"), None, ("artist", "cher", "fan")]
  pred = [("song", "hello", "lionel richie"), ("city", "austin", "texas"), ("city", "portland", "maine"), None, None]
  s = teaching.extraction_scores(truth, pred)
  assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 3)
  assert s["exact_match"] == pytest.approx(2 / 5)
  yt, yp = [t is not None for t in truth], [p is not None for p in pred]
  p, r, f, _ = skm.precision_recall_fscore_support(yt, yp, average="binary")
  assert (s["detection_precision"], s["detection_recall"], s["detection_f1"]) == pytest.approx((p, r, f))


def test_paired_bootstrap_matches_scipy():
  rng = np.random.default_rng(1)
  groups = np.repeat(np.arange(300), rng.integers(1, 6, size=300))
  base = rng.random(groups.size) < 0.3
  new = base & (rng.random(groups.size) < 0.8)
  out = teaching.paired_bootstrap(groups, base, new, 300, samples=4000, seed=0)
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
  assert not interpret.original_succeeds(d, i)
  store = teaching.oracle_store(sim_world, [uid])
  mine = [x for x in dialogues if x["user_id"] == uid]
  o = teaching.turn_outcomes(sim_world, mine, store)
  turn_pos = int(np.flatnonzero((o["dialogue"] == mine.index(d)) & (o["turn"] == i))[0])
  assert o["affected"][turn_pos] and o["with"][turn_pos] and not o["logged"][turn_pos]
  assert np.array_equal(o["with"][~o["affected"]], o["logged"][~o["affected"]])
  # a store that only states the global defaults changes nothing
  default = preferences.PreferenceStore()
  for title, artists in sim_world.song_popularity.items():
    default.add(uid, preferences.Entry("song", title, artists[0]))
  for city, states in world_lib.CITIES.items():
    default.add(uid, preferences.Entry("city", city, states[0]))
  none = teaching.turn_outcomes(sim_world, mine, default)
  assert not none["affected"].any() and np.array_equal(none["with"], none["logged"])
  effect = teaching.defect_effect(sim_world, mine, store, samples=50, seed=0)
  assert effect["fixed"] >= 1 and effect["overall"]["defect_rate_with"] < effect["overall"]["defect_rate_without"]


def test_extractor_network_shapes_and_loss():
  net = teaching.make_extractor(vocab_size=30, max_words=9, dim=8, num_layers=1, num_heads=2, dropout_rate=0.0)
  import jax  # pylint: disable=g-import-not-at-top

  params = jax.jit(net.init)(jax.random.PRNGKey(0))
  batch = {"ids": np.ones((3, 9), np.int32), "mask": np.ones((3, 9), bool)}
  out = jax.jit(net.apply)(params, batch)
  assert out["kind"].shape == (3, 4) and out["tags"].shape == (3, 9, 5)
  batch.update(y_kind=np.array([0, 1, 2], np.int32), y_tags=np.zeros((3, 9), np.int32))
  loss, metrics = jax.jit(teaching.make_loss(net.apply, train=False))(params, batch, jax.random.PRNGKey(1))
  assert np.isfinite(loss) and set(metrics) == {"loss_kind", "loss_tags"}


@pytest.mark.parametrize(
  "field, value",
  [
    ("teach.distractor_rate", 1.0),
    ("teach.max_words", 4),
    ("model.dim", 15),
    ("extract.fuzzy_cutoff", 0.0),
    ("eval.bootstrap", 0),
    ("batch_size", 100000),
    ("optimizer.learning_rate", -1.0),
  ],
)
def test_validate_config_names_the_bad_field(field, value):
  config = teach_config.get_config("smoke")
  block, _, leaf = field.rpartition(".")
  (config[block] if block else config)[leaf] = value
  with pytest.raises(app.ConfigError) as e:
    teaching.validate_config(config)
  assert e.value.field == field


def test_unknown_field_is_named():
  config = teach_config.get_config("smoke")
  with config.unlocked():
    config.teach.colour = 1
  with pytest.raises(app.ConfigError) as e:
    teaching.validate_config(config)
  assert e.value.field == "teach.colour"


def _run(workdir, *overrides, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  cmd = [sys.executable, "-m", "selflearn.main", f"--config={SMOKE}", f"--workdir={workdir}", *overrides]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_smoke_binary_writes_results_and_a_rerun_resumes_identically(tmp_path):
  workdir = tmp_path / "teach"
  proc = _run(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"outputs in {workdir}" in proc.stdout
  results = json.loads((workdir / "results.json").read_text())
  assert set(results["defects"]) == {"learned", "rules", "oracle_extraction", "full_knowledge"}
  assert results["restart"]["same_decisions"] is True
  for e in results["defects"].values():
    assert 0 <= e["overall"]["defect_rate_with"] <= 1
  store = preferences.PreferenceStore.load(workdir / "preferences.json")
  assert len(store) == results["store_entries"]["learned"]
  assert "Teachable preferences" in (workdir / "results.md").read_text()
  before = (workdir / "results.json").read_text()
  again = _run(workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "extractor: resuming from the checkpoint" in again.stdout and "simulating" not in again.stdout
  assert (workdir / "results.json").read_text() == before


def test_bad_config_exits_2_naming_the_field_without_a_workdir(tmp_path):
  workdir = tmp_path / "run"
  proc = _run(workdir, "--config.teach.distractor_rate=1.5", timeout=120)
  assert proc.returncode == 2, proc.stderr
  assert "config.teach.distractor_rate" in proc.stderr and "Traceback" not in proc.stderr
  assert not workdir.exists()
