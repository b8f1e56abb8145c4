"""nlirl.regimes: nested few-demonstration subsets and phrasings held out of the training instructions."""

import numpy as np
import pytest

from nlirl import envs, regimes, scripted, train
from nlirl.configs import default as default_config
from nlirl.envs import instructions as grammar


def test_few_demonstration_subsets_are_nested_deterministic_and_sized():
  n = len(envs.load_split("train").episodes)
  assert n == 3050
  subsets = [regimes.subset(n, k, 0) for k in (100, 300, 1000)]
  assert [len(s) for s in subsets] == [100, 300, 1000]
  for small, large in zip(subsets, subsets[1:]):
    assert set(small) <= set(large)
  np.testing.assert_array_equal(regimes.subset(n, 300, 0), subsets[1])
  np.testing.assert_array_equal(regimes.subset(n, 0, 0), np.arange(n))
  np.testing.assert_array_equal(regimes.subset(n, 5000, 0), np.arange(n))


def test_training_data_of_the_few_demonstration_regime():
  config = default_config.get_config("bc_smoke")
  sizes = {}
  for k in (100, 300):
    config.data.max_train_episodes = k
    _, episodes, tokens = train._split_arrays("train", 0, k, 96, train._world_sets(config))
    sizes[k] = (int(episodes.house.shape[0]), tokens.shape[:2])
    np.testing.assert_array_equal(
      np.asarray(episodes.start), np.asarray(envs.load_arrays("train")[1].start)[regimes.subset(3050, k, 0)]
    )
  assert sizes == {100: (100, (100, 3)), 300: (300, (300, 3))}


@pytest.mark.parametrize("family", grammar.FAMILIES)
def test_a_held_out_family_never_reaches_training(family):
  train_split = regimes.hold_out(envs.load_split("train"), family)
  kept = [f for f in grammar.FAMILIES if f != family]
  for ep in train_split.episodes:
    assert [scripted.parse(t).family for t in ep.instructions] == kept
  for ep in envs.load_split("val_seen").episodes[:50]:  # evaluation keeps every family
    assert [scripted.parse(t).family for t in ep.instructions] == list(grammar.FAMILIES)
  config = default_config.get_config("bc_smoke")
  config.data.held_out_phrasing = family
  train.validate_config(config)
  assert train.train_data(config).tokens.shape[1] == 2


def _contains(tokens: list[str], phrase: list[str]) -> bool:
  return any(tokens[i : i + len(phrase)] == phrase for i in range(len(tokens) - len(phrase) + 1))


def test_held_out_synonyms_appear_only_in_evaluation_and_keep_the_meaning():
  original = envs.load_split("train")
  rewritten = regimes.hold_out(original, "synonyms")
  phrases = [grammar.tokenize(p) for p in regimes.held_out_phrases("synonyms")]
  changed = 0
  for before, after in zip(original.episodes, rewritten.episodes):
    for a, b in zip(before.instructions, after.instructions):
      tokens = grammar.tokenize(b)
      assert not any(_contains(tokens, p) for p in phrases), b
      assert scripted.parse(a) == scripted.parse(b)  # the same plan: only the wording changed
      changed += a != b
  assert changed > 1000
  evaluation_tokens = [
    grammar.tokenize(t)
    for s in ("val_seen", "val_unseen")
    for ep in envs.load_split(s).episodes
    for t in ep.instructions
  ]
  for p in phrases:  # every held-out phrase is met in evaluation
    assert any(_contains(t, p) for t in evaluation_tokens), p
  config = default_config.get_config("bc_smoke")
  config.data.held_out_phrasing = "synonyms"
  vocab = envs.Vocabulary()
  texts = [vocab.decode(t) for t in np.asarray(train.train_data(config).tokens).reshape(-1, 96)]
  assert not any(_contains(grammar.tokenize(t), p) for t in texts for p in phrases)
