"""pairs_source="detector": cross-fitting bookkeeping, and detected pairs feeding the AMC chain and online mining."""

import numpy as np
import pytest

from selflearn.data import splits
from selflearn.data import truth as truth_lib
from selflearn.rewriting.online import mining
from selflearn.rewriting.precomputed import chain
from selflearn.rewriting.rephrase import crossfit, detector


def _split(dialogues):
  return splits.Dialogues(
    train=dialogues[:300], val=dialogues[300:400], test=dialogues[400:], log_path="", skipped=0, skipped_errors=[]
  )


def test_no_dialogue_is_labelled_by_a_detector_that_trained_on_it(dialogues):
  data = _split(dialogues)
  trained_on = {}

  def fit(k, train):
    trained_on[k] = {d["dialogue_id"] for d in train}
    return k

  def predict(k, split):  # each "detector" labels a dialogue with its own fold id
    return [[(k, k + 1)] for _ in split]

  for folds in (2, 3):
    trained_on.clear()
    out = crossfit.cross_fit(data, fit, predict, folds=folds)
    assert len(out["train"]) == len(data.train) and len(out["test"]) == len(data.test)
    for i, d in enumerate(data.train):
      ((k, _),) = out["train"][i]
      assert k == crossfit.fold_of(i, folds) and d["dialogue_id"] not in trained_on[k]
    # Each detector trained on every other fold; validation and test are labelled by fold 0's.
    assert all(len(ids) == sum(crossfit.fold_of(i, folds) != k for i in range(300)) for k, ids in trained_on.items())
    held_out = {d["dialogue_id"] for d in data.val + data.test}
    assert not held_out & trained_on[0]
    assert {p for ps in out["val"] + out["test"] for p in ps} == {(0, 1)}
  with pytest.raises(ValueError, match="folds"):
    crossfit.cross_fit(data, fit, predict, folds=1)


def test_detected_pairs_drive_the_chain_and_mining_like_the_pairs_they_hold(dialogues):
  common = dict(states="text", rephrase_gap=15.0, stop_gap=8.0)
  # A detector that finds exactly the true pairs gives the truth's chain; one that finds the gap heuristic's
  # pairs gives the gap chain and the gap miner's pairs.
  truth_pairs = [truth_lib.rephrase_links(d) for d in dialogues]
  a = chain.build_chain(dialogues, pairs_source="detector", pairs=truth_pairs, **common)
  b = chain.build_chain(dialogues, pairs_source="truth", **common)
  assert a.keys == b.keys and (a.Q != b.Q).nnz == 0
  np.testing.assert_array_equal(a.R, b.R)
  heuristic = detector.heuristic_pairs(dialogues)
  c = chain.build_chain(dialogues, pairs_source="detector", pairs=heuristic, **common)
  g = chain.build_chain(dialogues, pairs_source="gap", **common)
  assert c.keys == g.keys and (c.Q != g.Q).nnz == 0 and c.num_sessions == g.num_sessions
  assert mining.mine_pairs(dialogues, source="detector", detected=heuristic) == mining.mine_pairs(dialogues)
  # No detected pair: no session, nothing mined.
  assert mining.mine_pairs(dialogues, source="detector", detected=[[] for _ in dialogues]) == []
  none = chain.build_chain(dialogues, pairs_source="detector", pairs=[[] for _ in dialogues], **common)
  assert none.num_sessions == 0
  with pytest.raises(ValueError, match="detected pairs"):
    chain.build_chain(dialogues, pairs_source="detector", **common)
  with pytest.raises(ValueError, match="detected"):
    mining.mine_pairs(dialogues, source="detector")
