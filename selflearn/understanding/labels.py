"""The label-generation model: synthetic labels (goals, success, intent, slots, values) from dialogue logs.

Following the keynote's description (and the closest papers: RoBERTaIQ,
Gupta et al. 2021; joint goal segmentation and success, Wang et al., COLING
2022; contrastive satisfaction pretraining, Kachuee et al., NAACL 2021), the
model (`networks.DialogueModel`) encodes each turn (utterance, response,
categorical and numerical features, optional audio features) and runs a
dialogue-level Transformer over the turns.  Training has two stages:

1. **self-supervised pretraining** (`workdir/<variant>_pretrain`): responses
   swapped in from other dialogues are synthetic defects; a turn head
   predicts swapped vs original (`losses.swap_responses`);
2. **multi-task supervised training** (`workdir/<variant>`), from the
   pretrained weights: goal segmentation (B/I/O per turn), goal success (per
   turn, averaged over the goal's turns), intent, slot tagging (BIO per
   recognised word) and slot values (the canonical entity per slot word).

The baseline is the same recipe without dialogue context (each turn
encoded alone), as the keynote's non-contextual RoBERTa baseline.  Metrics
on the test split are computed against the truth and against a
three-annotator majority, next to a simulated single-pass annotator, as the
keynote does (`annotators`).
"""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections
import numpy as np

from selflearn import annotators, evaluation, features, losses, networks
from selflearn import training as train_lib

TASKS = ("segment", "success", "intent", "tags", "values")


def heads(num_values: int) -> tuple:
  t, k = networks.TURN, networks.TOKEN
  return (
    ("segment", len(features.SEGMENTS), t),
    ("success", 2, t),
    ("intent", len(features.INTENTS), t),
    ("tags", len(features.TAGS), k),
    ("values", num_values, k),
    ("swap", 2, t),
  )


def model_labels(probs: dict[str, np.ndarray], goal: np.ndarray, turn_mask: np.ndarray) -> dict[str, np.ndarray]:
  """Argmax label arrays from head probabilities; goal success is the mean over the goal's turns."""
  out = {k: np.argmax(probs[k], -1).astype(np.int32) for k in ("segment", "intent", "tags", "values")}
  p = probs["success"][..., 1]
  success = np.full(goal.shape, -1, np.int32)
  confidence = np.zeros(goal.shape, np.float32)
  for i in range(goal.shape[0]):
    for g in np.unique(goal[i][(goal[i] >= 0) & turn_mask[i]]):
      sel = (goal[i] == g) & turn_mask[i]
      m = float(p[i][sel].mean())
      success[i][sel] = int(m > 0.5)
      confidence[i][sel] = max(m, 1 - m)
  out["success"], out["success_confidence"], out["goal"] = success, confidence, goal
  return out


def _goals(lbl: dict, turn_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(dialogue, turn) of each goal's first turn."""
  goal = lbl["goal"]
  first = np.zeros_like(turn_mask)
  for i in range(goal.shape[0]):
    for g in np.unique(goal[i][(goal[i] >= 0) & turn_mask[i]]):
      first[i, np.argmax(goal[i] == g)] = True
  return np.nonzero(first)


def _tag_names(ids: np.ndarray) -> list[str]:
  return [features.TAGS[int(x)] for x in ids]


def label_scores(pred: dict, ref: dict, turn_mask: np.ndarray, lengths: np.ndarray) -> dict[str, float]:
  """Every task's metrics of `pred` against `ref` (label dicts of `features` shape)."""
  m = turn_mask
  gi, gj = _goals(ref, m)
  ps, rs = pred["success"][gi, gj], ref["success"][gi, gj]
  true_tags, pred_tags, v_ok, v_n = [], [], 0, 0
  for i, j in zip(*np.nonzero(m)):
    n = int(lengths[i, j])
    rt, pt = _tag_names(ref["tags"][i, j, :n]), _tag_names(pred["tags"][i, j, :n])
    true_tags.append(rt)
    pred_tags.append(pt)
    for _, start, _ in features.spans(rt):
      v_n += 1
      v_ok += int(pred["values"][i, j, start] == ref["values"][i, j, start])
  span = evaluation.span_f1(true_tags, pred_tags)
  return {
    "segment_accuracy": evaluation.accuracy(ref["segment"][m], pred["segment"][m]),
    "segment_macro_f1": evaluation.macro_f1(ref["segment"][m], pred["segment"][m], [0, 1, 2]),
    "success_accuracy": evaluation.accuracy(rs, ps),
    "success_f1": evaluation.binary_f1(rs, ps, positive=1),
    "failure_f1": evaluation.binary_f1(rs, ps, positive=0),
    "intent_accuracy": evaluation.accuracy(ref["intent"][m], pred["intent"][m]),
    "intent_macro_f1": evaluation.macro_f1(ref["intent"][m], pred["intent"][m]),
    "slot_f1": span["f1"],
    "value_accuracy": v_ok / v_n if v_n else float("nan"),
  }


def confident_success(pred: dict, ref: dict, turn_mask: np.ndarray, threshold: float) -> dict[str, float]:
  """Goal-success accuracy on the goals the model is at least `threshold` sure of, and their share."""
  gi, gj = _goals(ref, turn_mask)
  conf = pred["success_confidence"][gi, gj]
  keep = conf >= threshold
  acc = evaluation.accuracy(ref["success"][gi, gj][keep], pred["success"][gi, gj][keep]) if keep.any() else np.nan
  return {"threshold": threshold, "accuracy": float(acc), "coverage": float(keep.mean()) if keep.size else np.nan}


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, data: train_lib.Data) -> dict[str, Any]:
  """Pretrains, trains (resuming) and evaluates the context model and the turn baseline."""
  train = train_lib.model_batch(data.train, train_lib.training_labels(config, data.train))
  val = train_lib.model_batch(data.val, train_lib.training_labels(config, data.val, offset=1))
  test = train_lib.model_batch(data.test)
  mask = data.test.inputs["turn_mask"]
  lengths = features.token_masks(data.test.inputs)["utt_mask"].sum(-1)
  truth = data.test.labels
  panel = annotators.panel(truth, mask, train_lib.annotator_noise(config), config.annotator_seed + 100)
  weights = {k: float(config.loss_weights[k]) for k in TASKS}
  head_list = heads(len(data.values))
  preds = {}
  variants = [("model", True)] + ([("baseline", False)] if config.baseline else [])
  for name, context in variants:
    net = train_lib.make_network(config, data, head_list, context=context)
    params = None
    if config.pretrain.num_epochs:
      params, _ = train_lib.fit(
        workdir / f"{name}_pretrain", network=net,
        loss_fn=losses.make_loss(net.apply, {"swap": 1.0}, swap_rate=config.pretrain.swap_rate),
        eval_loss_fn=losses.make_loss(net.apply, {"swap": 1.0}, swap_rate=config.pretrain.swap_rate, train=False),
        train=train, val=val, config=config, num_epochs=config.pretrain.num_epochs, seed=config.seed,
      )  # fmt: skip
    params, _ = train_lib.fit(
      workdir / name, network=net, loss_fn=losses.make_loss(net.apply, weights), train=train, val=val,
      config=config, num_epochs=config.num_epochs, seed=config.seed + 7, init_params=params,
      eval_loss_fn=losses.make_loss(net.apply, weights, train=False),
    )  # fmt: skip
    probs = train_lib.predict(net, params, test)
    preds[name] = model_labels(probs, truth["goal"], mask)
  preds["single_annotator"] = panel["single"]
  results = {
    "task": "labels",
    "test_dialogues": int(mask.shape[0]),
    "test_turns": int(mask.sum()),
    "train_labels": config.train_labels,
    "turn_encoder": config.turn_encoder,
    "pretrain_epochs": config.pretrain.num_epochs,
    "annotator_noise": {k: config.annotator[k] for k in ("segment", "success", "intent", "slot")},
    "vs_truth": {k: label_scores(p, truth, mask, lengths) for k, p in preds.items()},
    "vs_majority": {k: label_scores(p, panel["majority"], mask, lengths) for k, p in preds.items()},
    "confident_success": {
      ref: confident_success(preds["model"], r, mask, config.confident_threshold)
      for ref, r in (("truth", truth), ("majority", panel["majority"]))
    },
  }
  train_lib.write_results(workdir, results, render(results))
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
