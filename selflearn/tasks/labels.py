"""The `labels` task: pretrain and train the label-generation model, score it next to simulated annotators.

`run` pretrains (`workdir/<variant>_pretrain`, response swaps) and trains
(`workdir/<variant>`) the context model and, optionally, the no-context
baseline (`understanding.labels`) on the training split's labels (one
simulated annotator's pass by default), then scores the test split against
the truth and a three-annotator majority (`sim.annotators`).
"""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections

from selflearn import training
from selflearn.signals import features
from selflearn.sim import annotators
from selflearn.tasks import base, encoded
from selflearn.understanding import dataset, labels, losses

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
  preds["single_annotator"] = panel["single"]
  results = {
    "task": "labels",
    "test_dialogues": int(mask.shape[0]),
    "test_turns": int(mask.sum()),
    "train_labels": config.train_labels,
    "turn_encoder": config.turn_encoder,
    "pretrain_epochs": config.pretrain.num_epochs,
    "annotator_noise": {k: config.annotator[k] for k in ("segment", "success", "intent", "slot")},
    "vs_truth": {k: labels.label_scores(p, truth, mask, lengths) for k, p in preds.items()},
    "vs_majority": {k: labels.label_scores(p, panel["majority"], mask, lengths) for k, p in preds.items()},
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
    f" {results['pretrain_epochs']} epochs of response-swap pretraining.",
    "",
    "| system | reference | " + " | ".join(c for _, c in _COLUMNS) + " |",
    "|---|---|" + "---|" * len(_COLUMNS),
  ]
  for ref in ("vs_majority", "vs_truth"):
    for s in ("model", "baseline", "single_annotator"):  # a fixed order: JSON sorts keys
      if s not in results[ref]:
        continue
      m = results[ref][s]
      lines.append(f"| {s} | {ref[3:]} | " + " | ".join(f"{m[k]:.3f}" for k, _ in _COLUMNS) + " |")
  lines += ["", "Goal success on the goals the model is confident about:", ""]
  lines += ["| reference | threshold | accuracy | coverage |", "|---|---|---|---|"]
  for ref in ("truth", "majority"):
    c = results["confident_success"][ref]
    lines.append(f"| {ref} | {c['threshold']} | {c['accuracy']:.3f} | {c['coverage']:.1%} |")
  return "\n".join(lines) + "\n"
