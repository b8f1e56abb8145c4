"""The `fpi` task: train the failure-point classifier and compare it with simulated annotators.

`run` trains the model (`understanding.fpi`; one `training.fit` stage,
`workdir/fpi`; optionally a no-context baseline, `workdir/fpi_baseline`) on
the training split's labels (`train_labels`: a simulated annotator pass by
default, or the truth) and the metadata-only shortcut baseline
(`understanding.shortcut`, on the same labels), then scores the test split against the truth and
against a three-annotator majority, next to a simulated single human
annotator (`sim.annotators`).
"""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections
import numpy as np

from selflearn import training
from selflearn.evaluation import recurrence
from selflearn.sim import annotators
from selflearn.tasks import base, encoded
from selflearn.understanding import dataset, fpi, losses, shortcut

validate_config = encoded.validate_config
load_data = encoded.load_data


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, data: dataset.Data) -> dict[str, Any]:
  """Trains (resuming) and evaluates the FPI model; writes results.json / results.md."""
  train = dataset.model_batch(data.train, encoded.training_labels(config, data.train))
  val_labels = encoded.training_labels(config, data.val, offset=1)
  val = dataset.model_batch(data.val, val_labels)
  test = dataset.model_batch(data.test)
  mask = data.test.inputs["turn_mask"]
  y_true = data.test.labels["fpi"][mask]
  panel = annotators.panel(data.test.labels, mask, encoded.annotator_noise(config), config.annotator_seed + 100)
  y_major = panel["majority"]["fpi"][mask]
  y_human = panel["single"]["fpi"][mask]
  systems = {}
  variants = [("model", True)] + ([("baseline", False)] if config.baseline else [])
  for name, context in variants:
    net = dataset.make_network(config, data, fpi.HEADS, context=context)
    loss = losses.make_loss(net.apply, {"fpi": 1.0})
    eval_loss = losses.make_loss(net.apply, {"fpi": 1.0}, train=False)
    stage = "fpi" if context else "fpi_baseline"
    params, _ = training.fit(
      workdir / stage, network=net, loss_fn=loss, train=train, val=val, config=config,
      num_epochs=config.num_epochs, seed=config.seed, eval_loss_fn=eval_loss,
    )  # fmt: skip
    probs = dataset.predict(net, params, test)["fpi"]
    systems[name] = np.argmax(probs, -1)[mask]
  train_fpi = encoded.training_labels(config, data.train)["fpi"]
  systems["metadata_gbt"] = shortcut.fit_predict(data.train.inputs, train_fpi, data.test.inputs, seed=config.seed)
  systems["human"] = y_human
  results = {
    "task": "fpi",
    "preset": config.data.preset,
    "recurrence": data.recurrence,
    "test_turns": int(mask.sum()),
    "test_class_counts": {c: int(np.sum(y_true == i)) for i, c in enumerate(fpi.CLASSES)},
    "train_labels": config.train_labels,
    "annotator_fpi_accuracy": dict(config.annotator.fpi_accuracy),
    "vs_truth": {k: fpi.scores(y_true, v) for k, v in systems.items()},
    "vs_majority": {k: fpi.scores(y_major, v) for k, v in systems.items() if k != "human"},
    "keynote": fpi.KEYNOTE,
  }
  results["vs_majority"]["human"] = fpi.scores(y_major, y_human)
  results["share_of_human"] = fpi.share_of_human(results["vs_truth"]["model"], results["vs_truth"]["human"])
  base.write_results(workdir, results, render(results))
  model = results["vs_truth"]["model"]
  share = results["share_of_human"]
  print(
    f"outputs in {workdir}: results.json, results.md, fpi/ (checkpoints, metrics.jsonl), data/ |"
    f" FPI test accuracy {model['accuracy']:.3f}, macro-F1 {model['macro_f1']:.3f};"
    f" {share['macro_f1']:.1%} of the simulated human's macro-F1 (keynote: >92%)",
    flush=True,
  )
  return {"accuracy": model["accuracy"], "macro_f1": model["macro_f1"], "share_of_human_macro_f1": share["macro_f1"]}


def render(results: dict) -> str:
  """The Markdown tables of a results dict."""
  systems = [s for s in ("model", "baseline", "metadata_gbt", "human") if s in results["vs_truth"]]  # JSON sorts keys
  lines = [
    "# Failure-point isolation: test split",
    "",
    f"{results['test_turns']} test turns; classes: "
    + ", ".join(f"{c} {results['test_class_counts'][c]}" for c in fpi.CLASSES)
    + f". Trained on: {results['train_labels']} labels."
    + (
      "  `metadata_gbt`: a gradient-boosted tree on one turn's metadata (no text, no context; the shortcut baseline)."
      if "metadata_gbt" in results["vs_truth"]
      else ""
    ),
    "",
    *recurrence.world_lines(results),
    "| system | reference | accuracy | macro-F1 | " + " | ".join(f"F1 {c}" for c in fpi.CLASSES) + " |",
    "|---|---|---|---|" + "---|" * len(fpi.CLASSES),
  ]
  for ref in ("vs_truth", "vs_majority"):
    for s in systems:
      m = results[ref][s]
      cells = " | ".join(f"{m['per_class'][c]['f1']:.3f}" for c in fpi.CLASSES)
      lines.append(f"| {s} | {ref[3:]} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | {cells} |")
  share = results["share_of_human"]
  lines += [
    "",
    "Share of the simulated human annotator (model / human, both against the truth):",
    "",
    "| metric | share | keynote |",
    "|---|---|---|",
    f"| accuracy | {share['accuracy']:.1%} | |",
    f"| macro-F1 | {share['macro_f1']:.1%} | > 92% (92.2% in the FPI paper) |",
  ]
  for c in fpi.CLASSES:
    keynote = {"result": "model > human", "correct": "model > human"}.get(
      c, "90-95%" if c in ("asr", "nlu", "entity") else ""
    )
    lines.append(f"| F1 {c} | {share['per_class_f1'][c]:.1%} | {keynote} |")
  lines += ["", "Per-class recall (per-class accuracy):", "", "| system | " + " | ".join(fpi.CLASSES) + " |"]
  lines.append("|---|" + "---|" * len(fpi.CLASSES))
  for s in systems:
    m = results["vs_truth"][s]
    lines.append(f"| {s} | " + " | ".join(f"{m['per_class'][c]['recall']:.3f}" for c in fpi.CLASSES) + " |")
  return "\n".join(lines) + "\n"
