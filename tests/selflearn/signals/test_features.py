"""Model inputs from observations, labels from the truth; BIO spans."""

import copy

import numpy as np
import pytest

from selflearn.signals import features


@pytest.fixture(scope="module")
def dataset(dialogues):
  vocab = features.Vocab.build(t[k]["text"] for d in dialogues for t in d["turns"] for k in ("asr", "response"))
  return features.encode(dialogues[:64], vocab, features.value_vocab(dialogues), max_turns=8, max_tokens=8), vocab


def test_encode_puts_truth_only_in_labels(dataset, dialogues):
  ds, vocab = dataset
  d = dialogues[0]
  n = min(len(d["turns"]), 8)
  assert ds.inputs["turn_mask"][0].sum() == n
  first = d["turns"][0]
  assert (
    list(ds.inputs["utt_ids"][0, 0][: len(first["asr"]["text"].split()[:8])])
    == vocab.ids(first["asr"]["text"].split(), 8)[: len(first["asr"]["text"].split()[:8])]
  )
  assert ds.labels["fpi"][0, 0] == features.FAILURE_POINTS.index(first["truth"]["failure_point"])
  assert ds.inputs["num"].shape[-1] == len(features.NUMERIC) and np.isfinite(ds.inputs["num"]).all()
  # No truth field leaks into the inputs: changing the truth leaves them unchanged.
  changed = copy.deepcopy(dialogues[:64])
  for dd in changed:
    for t in dd["turns"]:
      t["truth"]["failure_point"] = "correct"
      t["truth"]["utterance"] = "x"
  again = features.encode(changed, vocab, features.value_vocab(dialogues), max_turns=8, max_tokens=8)
  for k in ds.inputs:
    np.testing.assert_array_equal(again.inputs[k], ds.inputs[k])


def test_spans_follow_conlleval():
  assert features.spans(["B-a", "I-a", "I-b", "O", "I-a"]) == {("a", 0, 2), ("b", 2, 3), ("a", 4, 5)}
