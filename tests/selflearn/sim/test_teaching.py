"""Simulated teaching turns: the users' true habits, the grammar and its noise, the annotated corpus."""

import numpy as np

from selflearn.configs import teach as teach_config
from selflearn.language import ontology
from selflearn.sim import teaching as sim_teaching
from selflearn.sim import world as world_lib
from selflearn.teaching import extraction, extractor, preferences


def _clean_cfg(**kw):
  cfg = teach_config.get_config().teach
  cfg.asr_noise, cfg.systematic_noise = 0.0, 0.0
  cfg.update(kw)
  return cfg


def _truth_decode(turn, world):
  k = extractor.KIND_NAMES.index(turn.truth[0]) if turn.truth else 0
  tags = [extractor.TAG_NAMES.index(t) for t in turn.tags]
  entry, conf = extraction.decode(turn.words, np.eye(4)[k], tags, threshold=0.5, cutoff=75, neighbours=world.neighbours)
  return entry, conf


def test_teaching_turns_state_the_users_true_habits(sim_world, dialogues):
  turns = sim_teaching.teaching_turns(sim_world, dialogues, _clean_cfg(turns_per_user=10), seed=0)
  users = {d["user_id"] for d in dialogues}
  assert {t.user_id for t in turns} == users and len(turns) == 10 * len(users)
  dialogue_ids = {d["dialogue_id"]: d["user_id"] for d in dialogues}
  kinds = set()
  for t in turns:
    assert dialogue_ids[t.dialogue_id] == t.user_id and len(t.words) == len(t.tags)
    user = world_lib.user_of(sim_world, t.user_id)
    if t.truth is None:
      assert set(t.tags) == {"O"}
      continue
    kind, key, value = t.truth
    kinds.add(kind)
    if kind == "song":
      assert user.song_artist[key] == value
    elif kind == "city":
      assert user.city_state.get(key, ontology.CITIES[key][0]) == value
    else:  # an affinity never contradicts what the user means by an ambiguous title
      assert all(user.song_artist[title] == key for title in preferences.AMBIGUOUS_BY_ARTIST[key])
    preferences.Entry(*t.truth).validate()
    # noise-free: the tagged spans spell the entry
    assert _truth_decode(t, sim_world)[0] == t.truth, t.text
  assert kinds == {"song", "city", "artist"}
  share = np.mean([t.truth is None for t in turns])
  assert 0.25 < share < 0.55  # distractor_rate 0.4
  assert any(t.held_out for t in turns) and any(t.frame == "request" for t in turns)
  again = sim_teaching.teaching_turns(sim_world, dialogues, _clean_cfg(turns_per_user=10), seed=0)
  assert again == turns  # seeded


def test_examples_of_the_grammar_and_its_noise(sim_world):
  words, tags = sim_teaching._render("by {city} i mean {city} {state}", {"city": "portland", "state": "maine"})
  assert " ".join(words) == "by portland i mean portland maine"
  assert tags == ["O", "B-KEY", "O", "O", "B-KEY", "B-VAL"]
  words, tags = sim_teaching._render(
    "when i say {title} i mean the one by {artist}", {"title": "hello", "artist": "lionel richie"}
  )
  assert tags[3] == "B-KEY" and tags[-2:] == ["B-VAL", "I-VAL"]
  rng = np.random.default_rng(0)
  noisy = [sim_teaching.add_noise(sim_world, rng, words, tags, asr_noise=0.5, systematic=1.0) for _ in range(50)]
  assert any(w != words for w, _ in noisy) and all(len(w) == len(t) for w, t in noisy)
  changed = {x for w, _ in noisy for x in w} - set(words)
  neighbours = {n for w in words for n in sim_world.neighbours.get(w, ())}
  confusions = {sim_world.asr_confusions[w][0] for w in words if w in sim_world.asr_confusions}
  assert changed <= neighbours | confusions  # substitutions are phonetic neighbours / shared confusions


def test_the_training_corpus_excludes_held_out_frames(sim_world):
  cfg = teach_config.get_config().teach
  corpus = sim_teaching.corpus(sim_world, 600, cfg, seed=0)
  assert not any(t.held_out for t in corpus)
  held = {f for fs in sim_teaching.FRAMES.values() for f, h in fs if h}
  assert not {t.frame for t in corpus} & held
  for t in corpus:
    if t.truth:
      preferences.Entry(*t.truth).validate()
