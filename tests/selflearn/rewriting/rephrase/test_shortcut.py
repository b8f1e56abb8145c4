"""The metadata-only shortcut of rephrase detection: reads no words, and finds the pairs metadata gives away."""

import copy

from selflearn.data import truth as truth_lib
from selflearn.rewriting.rephrase import examples, scores, shortcut

LAYOUT = examples.Layout(max_words=8, max_candidates=3, max_gap=45.0)


def test_pair_features_read_no_words_and_the_tree_finds_pairs(dialogues):
  train, test = dialogues[:400], dialogues[400:]
  vocab = examples.build_vocab(train, 2000)
  train_ex, test_ex = (examples.build_examples(d, vocab, LAYOUT, labels=False) for d in (train, test))
  x, owner, slot = shortcut.pair_features(test, test_ex)
  assert x.shape[0] == owner.shape[0] == slot.shape[0] == int((test_ex.cand_turns >= 0).sum())
  blind = copy.deepcopy(test)
  for d in blind:
    for t in d["turns"]:
      t["asr"]["text"] = "la la la"
      t.pop("truth", None)
  assert (shortcut.pair_features(blind, test_ex)[0] == x).all()
  pred = shortcut.fit_predict(train, train_ex, test, test_ex)
  truth = [truth_lib.true_pairs(d) for d in test]
  f1 = scores.pair_scores(truth, pred)["f1"]
  assert 0.3 < f1 <= 1.0  # the closed world's metadata (gap, failed status, barge-in) gives many pairs away
