"""The `labels` task: pretrain and train the label-generation model, score it next to simulated annotators.

`run` pretrains (`workdir/<variant>_pretrain`, response swaps) and trains
(`workdir/<variant>`) the context model and, optionally, the no-context
baseline (`understanding.labels`) on the training split's labels (one
simulated annotator's pass by default), then scores the test split against
the truth and a three-annotator majority (`sim.annotators`).  Next to them,
the metadata-only shortcut (`understanding.shortcut`: a gradient-boosted
tree per turn-level label, goal segment, goal success and intent, trained on
the same labels; it predicts no slots, so its slot and value cells are
empty).
"""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections
import numpy as np

from selflearn import training
from selflearn.evaluation import recurrence
from selflearn.signals import features
from selflearn.sim import annotators
from selflearn.tasks import base, encoded
from selflearn.understanding import dataset, labels, losses, shortcut

validate_config = encoded.validate_config
load_data = encoded.load_data


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, data: dataset.Data) -> dict[str, Any]:
  """Pretrains, trains (resuming) and evaluates the context model and the turn baseline."""
  train = dataset.model_batch(data.train, encoded.training_labels(config, data.train))
  val = dataset.model_batch(data.val, encoded.training_labels(config, data.val, offset=1))
  test = dataset.model_batch(data.test)
  mask = data.test.inputs["turn_mask"]
  lengths = features.token_masks(data.test.inputs)["utt_mask"].sum(-1)
  truth = data.test.labels
  panel = annotators.panel(truth, mask, encoded.annotator_noise(config), config.annotator_seed + 100)
  weights = {k: float(config.loss_weights[k]) for k in labels.TASKS}
  head_list = labels.heads(len(data.values))
  preds = {}
  variants = [("model", True)] + ([("baseline", False)] if config.baseline else [])
  for name, context in variants:
    net = dataset.make_network(config, data, head_list, context=context)
    params = None
    if config.pretrain.num_epochs:
      params, _ = training.fit(
        workdir / f"{name}_pretrain", network=net,
        loss_fn=losses.make_loss(net.apply, {"swap": 1.0}, swap_rate=config.pretrain.swap_rate),
        eval_loss_fn=losses.make_loss(net.apply, {"swap": 1.0}, swap_rate=config.pretrain.swap_rate, train=False),
        train=train, val=val, config=config, num_epochs=config.pretrain.num_epochs, seed=config.seed,
      )  # fmt: skip
    params, _ = training.fit(
      workdir / name, network=net, loss_fn=losses.make_loss(net.apply, weights), train=train, val=val,
      config=config, num_epochs=config.num_epochs, seed=config.seed + 7, init_params=params,
      eval_loss_fn=losses.make_loss(net.apply, weights, train=False),
    )  # fmt: skip
    probs = dataset.predict(net, params, test)
    preds[name] = labels.model_labels(probs, truth["goal"], mask)
  preds["metadata_gbt"] = _shortcut_labels(config, data, truth["goal"], mask)
  preds["single_annotator"] = panel["single"]
  results = {
    "task": "labels",
    "preset": config.data.preset,
    "recurrence": data.recurrence,
    "test_dialogues": int(mask.shape[0]),
    "test_turns": int(mask.sum()),
    "train_labels": config.train_labels,
    "turn_encoder": config.turn_encoder,
    "pretrain_epochs": config.pretrain.num_epochs,
    "annotator_noise": {k: config.annotator[k] for k in ("segment", "success", "intent", "slot")},
    "vs_truth": {k: _scores(k, p, truth, mask, lengths) for k, p in preds.items()},
    "vs_majority": {k: _scores(k, p, panel["majority"], mask, lengths) for k, p in preds.items()},
    "confident_success": {
      ref: labels.confident_success(preds["model"], r, mask, config.confident_threshold)
      for ref, r in (("truth", truth), ("majority", panel["majority"]))
    },
  }
  base.write_results(workdir, results, render(results))
  m, h = results["vs_majority"]["model"], results["vs_majority"]["single_annotator"]
  print(
    f"outputs in {workdir}: results.json, results.md, model*/ baseline*/ (checkpoints, metrics.jsonl), data/ |"
    f" vs the 3-annotator majority: goal success accuracy {m['success_accuracy']:.3f} (single annotator"
    f" {h['success_accuracy']:.3f}), segmentation accuracy {m['segment_accuracy']:.3f} ({h['segment_accuracy']:.3f}),"
    f" intent {m['intent_accuracy']:.3f}, slot F1 {m['slot_f1']:.3f}",
    flush=True,
  )
  return {f"majority_{k}": v for k, v in m.items()}


_NO_SLOTS = ("slot_f1", "value_accuracy")  # the metadata tree predicts no slots


def _shortcut_labels(config, data: dataset.Data, goal, mask) -> dict:
  """The metadata tree's label arrays: segment, success (averaged over the goal's turns), intent."""
  y = encoded.training_labels(config, data.train)
  sizes = {"segment": len(features.SEGMENTS), "success": 2, "intent": len(features.INTENTS)}
  probs = {
    k: shortcut.fit_predict_proba(data.train.inputs, y[k], data.test.inputs, n, seed=config.seed)
    for k, n in sizes.items()
  }
  shape = data.test.labels["tags"].shape
  probs["tags"] = probs["values"] = np.zeros((*shape, 1), np.float32)
  return labels.model_labels(probs, goal, mask)


def _scores(name: str, pred: dict, ref: dict, mask, lengths) -> dict:
  out = labels.label_scores(pred, ref, mask, lengths)
  if name == "metadata_gbt":
    out.update({k: None for k in _NO_SLOTS})
  return out


_COLUMNS = (
  ("segment_accuracy", "seg. acc"),
  ("segment_macro_f1", "seg. macro-F1"),
  ("success_accuracy", "success acc"),
  ("success_f1", "success F1"),
  ("failure_f1", "failure F1"),
  ("intent_accuracy", "intent acc"),
  ("slot_f1", "slot F1"),
  ("value_accuracy", "value acc"),
)


def render(results: dict) -> str:
  """The Markdown tables of a results dict."""
  lines = [
    "# Label generation: test split",
    "",
    f"{results['test_dialogues']} test dialogues, {results['test_turns']} turns. Trained on"
    f" {results['train_labels']} labels; turn encoder {results['turn_encoder']};"
    f" {results['pretrain_epochs']} epochs of response-swap pretraining."
    + (
      "  `metadata_gbt`: a gradient-boosted tree per turn-level label on one turn's metadata (no text, no context;"
      " the shortcut baseline; no slots)."
      if "metadata_gbt" in results["vs_truth"]
      else ""
    ),
    "",
    *recurrence.world_lines(results),
    "| system | reference | " + " | ".join(c for _, c in _COLUMNS) + " |",
    "|---|---|" + "---|" * len(_COLUMNS),
  ]
  for ref in ("vs_majority", "vs_truth"):
    for s in ("model", "baseline", "metadata_gbt", "single_annotator"):  # a fixed order: JSON sorts keys
      if s not in results[ref]:
        continue
      m = results[ref][s]
      cells = ["—" if m[k] is None else f"{m[k]:.3f}" for k, _ in _COLUMNS]
      lines.append(f"| {s} | {ref[3:]} | " + " | ".join(cells) + " |")
  lines += ["", "Goal success on the goals the model is confident about:", ""]
  lines += ["| reference | threshold | accuracy | coverage |", "|---|---|---|---|"]
  for ref in ("truth", "majority"):
    c = results["confident_success"][ref]
    lines.append(f"| {ref} | {c['threshold']} | {c['accuracy']:.3f} | {c['coverage']:.1%} |")
  return "\n".join(lines) + "\n"
