"""Tiled rapidfuzz top-k and hard-negative mining: exactly the dense computation, without the dense matrix."""

import numpy as np
import pytest
from rapidfuzz import fuzz, process

from selflearn.rewriting.online import index


def _texts(rng, n, alphabet="ab c", max_len=6):
  """Short strings over a tiny alphabet: many equal scores, so the tie order is tested too."""
  return ["".join(rng.choice(list(alphabet), size=rng.integers(1, max_len + 1))) for _ in range(n)]


def _dense(queries, choices):
  return process.cdist(queries, choices, scorer=fuzz.ratio, dtype=np.int32)


@pytest.mark.parametrize("k, block_rows, block_cols", [(1, 7, 5), (3, 4, 1), (10, 64, 64), (40, 5, 11), (57, 3, 9)])
def test_fuzzy_topk_equals_a_stable_sort_of_the_dense_matrix(k, block_rows, block_cols):
  rng = np.random.default_rng(k)
  queries, choices = _texts(rng, 23), _texts(rng, 41)
  sims = _dense(queries, choices)
  ref = np.argsort(-sims, axis=1, kind="stable")[:, : min(k, len(choices))]
  scores, cols = index.fuzzy_topk(queries, choices, k, block_rows=block_rows, block_cols=block_cols)
  np.testing.assert_array_equal(cols, ref)
  np.testing.assert_array_equal(scores, np.take_along_axis(sims, ref, 1))
  assert len(set(map(tuple, sims.tolist()))) > 1 and (sims == sims.max(1, keepdims=True)).sum(1).max() > 1  # ties


def _dense_hard_negatives(positives, sources, choices):
  """The former mining: a full row of ratios per pair, stable-sorted, the first choice that is not excluded."""
  out = []
  for p, s, row in zip(positives, sources, _dense(positives, choices)):
    order = np.argsort(-row, kind="stable")
    out.append(next((choices[j] for j in order if choices[j] not in (p, s)), choices[0]))
  return out


@pytest.mark.parametrize("repeated", [False, True])
def test_hard_negatives_equal_the_dense_mining(repeated):
  rng = np.random.default_rng(7)
  choices = list(dict.fromkeys(_texts(rng, 80, max_len=5)))
  positives = [choices[i] for i in rng.integers(0, len(choices), 30)] + _texts(rng, 10)
  sources = [choices[i] for i in rng.integers(0, len(choices), 40)]
  if repeated:  # the positive and the source three times each at the front: the top 3 are all excluded
    choices = [positives[0], sources[0]] * 3 + choices
    _, top = index.fuzzy_topk(positives[:1], choices, 3)
    assert all(choices[j] in (positives[0], sources[0]) for j in top[0])  # the fallback path runs
  got = index.hard_negatives(positives, sources, choices, block_rows=6, block_cols=7)
  assert got == _dense_hard_negatives(positives, sources, choices)
  assert all(h not in (p, s) for h, p, s in zip(got, positives, sources))
  assert index.hard_negatives(["ab"], ["ab"], ["ab", "ab"]) == ["ab"]  # every choice excluded: the first one
