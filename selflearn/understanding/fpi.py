"""Failure-point isolation: which pipeline stage caused a defective turn.

A turn-level classifier over {false wake, ASR, NLU, entity, result, correct}
(`features.FAILURE_POINTS`): the dialogue model (`networks`) with one
6-way head, whose inputs are the extended dialogue context (previous and
next turns through the dialogue Transformer: rephrases, barge-ins, "stop"),
the per-stage confidences (wake score, ASR confidence and n-best margin, NLU
confidence and margin, ER score, result status) and the decision traces
(NLU domain and intents, unresolved slots, the response).  The closest
published system is FPI (Khaziev et al., NAACL 2022 Industry Track): request
and context embedded by pretrained transformers plus a "mixing encoder" over
the per-module metadata.

`run` trains it (one `train.fit` stage, `workdir/fpi`; optionally a
no-context baseline, `workdir/fpi_baseline`) on the training split's labels
(`train_labels`: a simulated annotator pass by default, or the truth), then
scores the test split against the truth and against a three-annotator
majority, next to a simulated single human annotator (`annotators`):
accuracy, per-class recall ("per-class accuracy") and F1, macro-F1, and the
model's share of human performance.
"""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections
import numpy as np

from selflearn import annotators, evaluation, features, losses, networks
from selflearn import training as train_lib

CLASSES = features.FAILURE_POINTS
HEADS = (("fpi", len(CLASSES), networks.TURN),)
KEYNOTE = {"share_of_human": 0.922}  # FPI paper (NAACL 2022 Industry): 92.2% of human performance


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
  """Accuracy, macro-F1 and per-class precision / recall / F1 / support over the 6 classes."""
  labels = list(range(len(CLASSES)))
  pc = evaluation.per_class(y_true, y_pred, labels)
  return {
    "accuracy": evaluation.accuracy(y_true, y_pred),
    "macro_f1": evaluation.macro_f1(y_true, y_pred, labels),
    "per_class": {
      c: {k: float(pc[k][i]) if k != "support" else int(pc[k][i]) for k in pc} for i, c in enumerate(CLASSES)
    },
  }


def _ratio(a: float, b: float) -> float:
  return float(a / b) if b else float("nan")


def share_of_human(model: dict, human: dict) -> dict[str, Any]:
  """Model metric / human metric: accuracy, macro-F1, each class's F1 and recall."""
  return {
    "accuracy": _ratio(model["accuracy"], human["accuracy"]),
    "macro_f1": _ratio(model["macro_f1"], human["macro_f1"]),
    "per_class_f1": {c: _ratio(model["per_class"][c]["f1"], human["per_class"][c]["f1"]) for c in CLASSES},
    "per_class_recall": {c: _ratio(model["per_class"][c]["recall"], human["per_class"][c]["recall"]) for c in CLASSES},
  }


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, data: train_lib.Data) -> dict[str, Any]:
  """Trains (resuming) and evaluates the FPI model; writes results.json / results.md."""
  train = train_lib.model_batch(data.train, train_lib.training_labels(config, data.train))
  val_labels = train_lib.training_labels(config, data.val, offset=1)
  val = train_lib.model_batch(data.val, val_labels)
  test = train_lib.model_batch(data.test)
  mask = data.test.inputs["turn_mask"]
  y_true = data.test.labels["fpi"][mask]
  panel = annotators.panel(data.test.labels, mask, train_lib.annotator_noise(config), config.annotator_seed + 100)
  y_major = panel["majority"]["fpi"][mask]
  y_human = panel["single"]["fpi"][mask]
  systems = {}
  variants = [("model", True)] + ([("baseline", False)] if config.baseline else [])
  for name, context in variants:
    net = train_lib.make_network(config, data, HEADS, context=context)
    loss = losses.make_loss(net.apply, {"fpi": 1.0})
    eval_loss = losses.make_loss(net.apply, {"fpi": 1.0}, train=False)
    stage = "fpi" if context else "fpi_baseline"
    params, _ = train_lib.fit(
      workdir / stage, network=net, loss_fn=loss, train=train, val=val, config=config,
      num_epochs=config.num_epochs, seed=config.seed, eval_loss_fn=eval_loss,
    )  # fmt: skip
    probs = train_lib.predict(net, params, test)["fpi"]
    systems[name] = np.argmax(probs, -1)[mask]
  systems["human"] = y_human
  results = {
    "task": "fpi",
    "test_turns": int(mask.sum()),
    "test_class_counts": {c: int(np.sum(y_true == i)) for i, c in enumerate(CLASSES)},
    "train_labels": config.train_labels,
    "annotator_fpi_accuracy": dict(config.annotator.fpi_accuracy),
    "vs_truth": {k: scores(y_true, v) for k, v in systems.items()},
    "vs_majority": {k: scores(y_major, v) for k, v in systems.items() if k != "human"},
    "keynote": KEYNOTE,
  }
  results["vs_majority"]["human"] = scores(y_major, y_human)
  results["share_of_human"] = share_of_human(results["vs_truth"]["model"], results["vs_truth"]["human"])
  train_lib.write_results(workdir, results, render(results))
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
  systems = [s for s in ("model", "baseline", "human") if s in results["vs_truth"]]  # JSON sorts keys
  lines = [
    "# Failure-point isolation: test split",
    "",
    f"{results['test_turns']} test turns; classes: "
    + ", ".join(f"{c} {results['test_class_counts'][c]}" for c in CLASSES)
    + f". Trained on: {results['train_labels']} labels.",
    "",
    "| system | reference | accuracy | macro-F1 | " + " | ".join(f"F1 {c}" for c in CLASSES) + " |",
    "|---|---|---|---|" + "---|" * len(CLASSES),
  ]
  for ref in ("vs_truth", "vs_majority"):
    for s in systems:
      m = results[ref][s]
      cells = " | ".join(f"{m['per_class'][c]['f1']:.3f}" for c in CLASSES)
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
  for c in CLASSES:
    keynote = {"result": "model > human", "correct": "model > human"}.get(
      c, "90-95%" if c in ("asr", "nlu", "entity") else ""
    )
    lines.append(f"| F1 {c} | {share['per_class_f1'][c]:.1%} | {keynote} |")
  lines += ["", "Per-class recall (per-class accuracy):", "", "| system | " + " | ".join(CLASSES) + " |"]
  lines.append("|---|" + "---|" * len(CLASSES))
  for s in systems:
    m = results["vs_truth"][s]
    lines.append(f"| {s} | " + " | ".join(f"{m['per_class'][c]['recall']:.3f}" for c in CLASSES) + " |")
  return "\n".join(lines) + "\n"
