"""The `rephrase` task: train the contextual rephrase detector and its baselines, score them on the test split.

Scored against the simulator's true pairs: pair and detection precision /
recall / F1, pair recall per rephrase kind, span exact match
(`rewriting.rephrase.scores`), for the span model, the pairwise classifier
and the time-gap heuristic (`rewriting.rephrase.detector`), and the
metadata-only shortcut (`rewriting.rephrase.shortcut`: a gradient-boosted
tree that reads no words).
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import ml_collections
import numpy as np

from common import app
from selflearn.data import schema, splits
from selflearn.data import truth as truth_lib
from selflearn.evaluation import recurrence
from selflearn.rewriting.rephrase import detector, examples, scores, shortcut
from selflearn.signals import text_features
from selflearn.tasks import base

KEYNOTE = "ContReph significantly outperforms pairwise rephrase detection (EMNLP 2021 abstract; no figure retrieved)"


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field, before anything compiles."""
  from selflearn.configs import rephrase as rephrase_config  # pylint: disable=g-import-not-at-top

  app.check(config, "task", lambda v: v == "rephrase", "must be 'rephrase'")
  app.check_known_fields(config, rephrase_config.get_config())
  app.check(
    config, "text_encoder", lambda v: v in text_features.TEXT_ENCODERS, f"must be one of {text_features.TEXT_ENCODERS}"
  )
  num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
  app.check(config, "max_gap", lambda v: num(v) and v > 0, "must be a number of seconds > 0")
  app.check(config, "max_candidates", base.positive_int, "must be an integer >= 1")
  app.check(config, "max_span", base.positive_int, "must be an integer >= 1 (tokens)")
  app.check(config, "threshold", num, "must be a finite number (span score minus null score)")
  for field in ("baseline", "baseline_signals"):
    app.check(config, field, lambda v: isinstance(v, bool), "must be True or False")
  for field in ("model.dim", "model.num_layers", "model.num_heads"):
    app.check(config, field, base.positive_int, "must be an integer >= 1")
  app.check(config, "model.dim", lambda v: v % config.model.num_heads == 0, "must be a multiple of model.num_heads")
  app.check(config, "model.dropout_rate", lambda v: num(v) and 0 <= v < 1, "must be in [0, 1)")
  train_count = base.validate_common(config, batch_unit="examples")
  app.check(config, "batch_size", lambda v: v <= train_count, f"must be <= the {train_count} training dialogues")


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, dialogues: splits.Dialogues) -> dict[str, Any]:
  """Trains (resuming) the span model and the pairwise baseline; scores all three systems on the test split."""
  test = dialogues.test
  truth = [truth_lib.true_pairs(d) for d in test]
  det = detector.train_detector(config, workdir, dialogues)
  ex = examples.build_examples(test, det.vocab, det.layout)
  examples.add_embeddings(ex, config.text_encoder, det.layout.max_candidates + 1, det.cache_dir)
  dec = detector.span_decisions(det, ex)
  systems = {"span": detector.group_pairs(ex, dec["target"], len(test))}
  if config.baseline:
    systems["pairwise"] = detector.train_pairwise(config, workdir, dialogues, det, ex)
  systems["gap_heuristic"] = detector.heuristic_pairs(test)
  train_ex = examples.build_examples(dialogues.train, det.vocab, det.layout, labels=False)
  systems["metadata_gbt"] = shortcut.fit_predict(dialogues.train, train_ex, test, ex, seed=config.seed)
  in_window = sum(int(np.any(c == truth[d].get(int(s), -2))) for d, s, c in zip(ex.dialogue, ex.source, ex.cand_turns))
  results = {
    "task": "rephrase",
    "preset": config.data.preset,
    "recurrence": base.recurrence_of(dialogues),
    "test_dialogues": len(test),
    "test_requests": ex.size,
    "test_true_pairs": sum(len(t) for t in truth),
    "true_pairs_in_window": in_window,
    "settings": {k: config[k] for k in ("text_encoder", "max_gap", "max_candidates", "max_span", "threshold")},
    "systems": {k: scores.system_scores(test, truth, v) for k, v in systems.items()},
    "span_exact_match": scores.span_exact_match(dec["i"], dec["j"], ex.labels["y_start"], ex.labels["y_end"]),
    "keynote": KEYNOTE,
  }
  base.write_results(workdir, results, render(results))
  s = results["systems"]
  line = ", ".join(f"{k} {v['pairs']['f1']:.3f}" for k, v in s.items())
  print(f"outputs in {workdir}: results.json, results.md, rephrase/, data/ | test pair F1: {line}", flush=True)
  out = {f"{k}_pair_f1": v["pairs"]["f1"] for k, v in s.items()}
  return {
    **out,
    "span_pair_precision": s["span"]["pairs"]["precision"],
    "span_pair_recall": s["span"]["pairs"]["recall"],
  }


ROWS = (
  ("span", "span model (ContReph-style)"),
  ("pairwise", "pairwise classifier"),
  ("gap_heuristic", "time-gap heuristic"),
  ("metadata_gbt", "metadata-only tree (shortcut)"),
)


def render(results: dict) -> str:
  """The Markdown tables of a results dict."""
  s = results["settings"]
  lines = [
    "# Contextual rephrase detection: test split",
    "",
    f"{results['test_dialogues']} test dialogues, {results['test_requests']} request turns (sources),"
    f" {results['test_true_pairs']} true rephrase pairs ({results['true_pairs_in_window']} inside the candidate window:"
    f" max_gap {s['max_gap']} s, max_candidates {s['max_candidates']}). Text encoder: {s['text_encoder']}.",
    "",
    *recurrence.world_lines(results),
    "| system | pair P | pair R | pair F1 | detection P | detection R | detection F1 |",
    "|---|---|---|---|---|---|---|",
  ]
  for key, name in ROWS:
    if key in results["systems"]:
      p, d = results["systems"][key]["pairs"], results["systems"][key]["detection"]
      cells = [p["precision"], p["recall"], p["f1"], d["precision"], d["recall"], d["f1"]]
      lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
  em = results["span_exact_match"]
  lines += [
    "",
    f"Span exact match (span model): {em['all']:.3f} of all sources, {em['positive']:.3f} of true rephrases.",
  ]
  lines += [
    "",
    "Pair recall by rephrase kind:",
    "",
    "| system | " + " | ".join(schema.REPHRASE_KINDS) + " |",
    "|---|" + "---|" * len(schema.REPHRASE_KINDS),
  ]
  for key, name in ROWS:
    if key in results["systems"]:
      r = results["systems"][key]["recall_by_kind"]
      lines.append(f"| {name} | " + " | ".join(f"{r.get(k, math.nan):.3f}" for k in schema.REPHRASE_KINDS) + " |")
  lines += ["", f"Paper: {results['keynote']}."]
  return "\n".join(lines) + "\n"
