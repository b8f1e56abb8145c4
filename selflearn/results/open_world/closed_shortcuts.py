"""The metadata-only trees of label generation and rephrase detection on the closed world, 3 simulator seeds.

  cd selflearn/results/open_world && PYTHONPATH=../../.. python closed_shortcuts.py closed_shortcuts.json

The closed world's dialogue models were run once (seed 0, README "Results"); their runs predate the trees, so
this script fits only the trees, on the same data blocks as the tasks' closed-world runs (6,000 dialogues,
200 users, split by dialogue index, max_turns 12, max_tokens 12, a simulated annotator's training labels
with the runs' annotator seeds), and scores them as the runners do.
"""

import json
import pathlib
import sys
import tempfile

import numpy as np

from selflearn.configs import base as config_base
from selflearn.configs import labels as labels_config
from selflearn.configs import rephrase as rephrase_config
from selflearn.data import truth as truth_lib
from selflearn.rewriting.rephrase import detector, examples, scores
from selflearn.rewriting.rephrase import shortcut as pair_shortcut
from selflearn.signals import features
from selflearn.sim import annotators
from selflearn.tasks import base, encoded
from selflearn.tasks import labels as labels_task
from selflearn.understanding import dataset, fpi, shortcut


def main():
  out = {}
  for seed in (0, 1, 2):
    cfg = labels_config.get_config()
    config_base.closed_world(cfg)
    cfg.data.sim_seed = seed
    cfg.data.log_path = ""
    with tempfile.TemporaryDirectory() as tmp:
      work = pathlib.Path(tmp)
      dialogues = base.load_dialogues(cfg, work)
      vocab = features.Vocab.build([], max_size=10)
      values = features.value_vocab(dialogues.train)
      splits = (dialogues.train, dialogues.val, dialogues.test)
      parts = [features.encode(r, vocab, values, max_turns=12, max_tokens=12) for r in splits]
      data = dataset.Data(*parts, vocab, values, "", 0, [], 0)
      mask = data.test.inputs["turn_mask"]
      truth = data.test.labels
      lengths = np.full(mask.shape, 12)
      panel = annotators.panel(truth, mask, encoded.annotator_noise(cfg), cfg.annotator_seed + 100)
      pred = labels_task._shortcut_labels(cfg, data, truth["goal"], mask)
      y_fpi = encoded.training_labels(cfg, data.train)["fpi"]
      fpi_pred = shortcut.fit_predict(data.train.inputs, y_fpi, data.test.inputs, seed=cfg.seed)
      r = {
        "labels_tree_vs_truth": labels_task._scores("metadata_gbt", pred, truth, mask, lengths),
        "labels_tree_vs_majority": labels_task._scores("metadata_gbt", pred, panel["majority"], mask, lengths),
        "fpi_tree_macro_f1_annotator_labels": fpi.scores(truth["fpi"][mask], fpi_pred)["macro_f1"],
      }
      rc = rephrase_config.get_config()
      layout = detector.layout_of(rc)
      pv = examples.build_vocab(dialogues.train, rc.data.vocab_size)
      train_ex = examples.build_examples(dialogues.train, pv, layout, labels=False)
      test_ex = examples.build_examples(dialogues.test, pv, layout, labels=False)
      pairs = pair_shortcut.fit_predict(dialogues.train, train_ex, dialogues.test, test_ex)
      true = [truth_lib.true_pairs(d) for d in dialogues.test]
      r["rephrase_tree_pairs"] = scores.pair_scores(true, pairs)
      r["rephrase_gap_heuristic_pairs"] = scores.pair_scores(true, detector.heuristic_pairs(dialogues.test))
      r["recurrence"] = base.recurrence_of(dialogues)
      out[f"closed_s{seed}"] = r
  pathlib.Path(sys.argv[1]).write_text(json.dumps(out, indent=2, sort_keys=True, default=float))


if __name__ == "__main__":
  main()
