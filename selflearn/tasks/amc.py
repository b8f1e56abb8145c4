"""The `amc` task: the precomputed rewrite table from the training split, judged on the test split.

Ponnusamy, Roshan Ghias, Guo, Sarikaya, "Feedback-Based Self-Learning in
Large-Scale Conversational AI Agents", AAAI-20 (IAAI), arXiv:1911.02557:

1. the chain (`rewriting.precomputed.chain`) from the training split's
   reformulation sessions (`pairs_source`: time gaps, the cross-fitted
   rephrase detector's pairs, `rewriting.rephrase.crossfit`, or the true
   pairs), its states the recognised texts or their interpretations (the
   judge's `resolve`, user-independent);
2. the rewrite table under the guardrails (`rewriting.precomputed.table`),
   including the similarity guard (the rewrite keeps the source's observed
   intent family and slot types, and its text is at least `min_similarity`
   similar);
3. evaluation on the TEST split (`evaluation.replay.evaluate_rewrites`):
   every request turn whose text is a source gets the rewrite; win if the
   rewrite serves the goal and the original did not, loss if the original
   did and the rewrite does not, tie otherwise (both served / both failed,
   reported apart); precision@1 of the applied rewrites (read as what the
   user meant; equal to the true utterance); the (sessions, states)
   variants of `compare_sources`, and the applied guardrails without the
   similarity guard.  The guardrail sweep (support, gain, visits,
   similarity) is judged on the VALIDATION split, and with
   `tune_on="validation"` (the default) its best setting (most net wins) is
   the one applied: the test split is read once per variant.

Runs on the closed and the open world (`data.preset`): the judge reads the
world the simulator generated from the config.

Nothing is fitted; the run is a deterministic function of the config.
"""

from __future__ import annotations

import functools
import itertools
import json
import pathlib
from typing import Any, Mapping

import ml_collections
import numpy as np

from common import app
from selflearn.data import splits
from selflearn.evaluation import recurrence, replay
from selflearn.rewriting.precomputed import chain, table
from selflearn.rewriting.precomputed import rewriter as table_rewriter
from selflearn.rewriting.rephrase import crossfit
from selflearn.sim import judge
from selflearn.tasks import base

PAPER = {"win_loss": 11.8, "defect_reduction": 0.30, "keynote_win_loss": 8.5}


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field, before anything is simulated or read."""
  from selflearn.configs import amc as amc_config  # pylint: disable=g-import-not-at-top

  app.check(config, "task", lambda v: v == "amc", "must be 'amc' (this config drives selflearn.tasks.amc)")
  app.check_known_fields(config, amc_config.get_config())
  app.check(config, "states", lambda v: v in chain.STATES, f"must be one of {chain.STATES}")
  app.check(config, "pairs_source", lambda v: v in chain.PAIRS_SOURCES, f"must be one of {chain.PAIRS_SOURCES}")
  app.check(
    config,
    "compare_sources",
    lambda v: all(x in chain.PAIRS_SOURCES for x in v),
    f"must list pairs sources of {chain.PAIRS_SOURCES}",
  )
  app.check(config, "detector.folds", lambda v: base.positive_int(v) and v >= 2, "must be an integer >= 2")
  app.check(config, "detector.num_epochs", base.positive_int, "must be an integer >= 1")
  app.check(config, "detector.variant", lambda v: v in ("", "smoke"), "must be '' or 'smoke'")
  for field in ("rephrase_gap", "stop_gap"):
    app.check(config, field, lambda v: base.finite_number(v) and v > 0, "must be a number > 0 (seconds)")
  app.check(config, "alpha", lambda v: base.finite_number(v) and v >= 0, "must be a number >= 0")
  app.check(config, "max_source_success", lambda v: base.finite_number(v) and 0 < v <= 1, "must be in (0, 1]")
  for field in ("min_source_support", "min_support", "bootstrap"):
    app.check(config, field, base.positive_int, "must be an integer >= 1")
  app.check(config, "min_gain", lambda v: base.finite_number(v) and 0 <= v < 1, "must be in [0, 1)")
  app.check(config, "min_visits", lambda v: base.finite_number(v) and v >= 0, "must be a number >= 0")
  app.check(config, "same_family", lambda v: isinstance(v, bool), "must be True or False")
  app.check(config, "min_similarity", lambda v: base.finite_number(v) and v <= 1, "must be a number <= 1 (< 0: off)")
  app.check(config, "tune_on", lambda v: v in ("validation", "none"), "must be 'validation' or 'none'")
  app.check(config, "tol", lambda v: base.finite_number(v) and 0 < v < 1e-3, "must be in (0, 1e-3)")
  app.check(
    config,
    "sweep.min_support",
    lambda v: len(v) >= 1 and all(base.positive_int(x) for x in v),
    "must list integers >= 1",
  )
  app.check(
    config,
    "sweep.min_gain",
    lambda v: len(v) >= 1 and all(base.finite_number(x) and 0 <= x < 1 for x in v),
    "must list [0, 1)",
  )
  app.check(
    config,
    "sweep.min_visits",
    lambda v: len(v) >= 1 and all(base.finite_number(x) and x >= 0 for x in v),
    "must list >= 0",
  )
  app.check(
    config,
    "sweep.min_similarity",
    lambda v: len(v) >= 1 and all(base.finite_number(x) and 0 <= x <= 1 for x in v),
    "must list [0, 1]",
  )
  base.validate_common(config, batch_unit="none")


def _guardrails(config, **override) -> dict:
  g = dict(
    max_source_success=config.max_source_success,
    min_source_support=config.min_source_support,
    min_support=config.min_support,
    min_gain=config.min_gain,
    min_visits=config.min_visits,
    same_family=config.same_family,
    min_similarity=config.min_similarity,
  )
  g.update(override)
  return g


def _table(ch, guards, visit_rows):
  """The rewrite table under `guards` (a `min_similarity` below 0 turns the similarity guard off)."""
  g = dict(guards)
  if g["min_similarity"] < 0:
    g["min_similarity"] = None
  return table.rewrite_table(ch, **g, visit_rows=visit_rows)


def _chain(config, dialogues, interpret, *, states, pairs_source, pairs=None):
  return chain.build_chain(
    dialogues, states=states, pairs_source=pairs_source, rephrase_gap=config.rephrase_gap, stop_gap=config.stop_gap,
    alpha=config.alpha, tol=config.tol, interpret=interpret, pairs=pairs,
  )  # fmt: skip


def _pair_sources(config, workdir, dialogues) -> tuple[dict, dict]:
  """({pairs source: the training split's detected pairs, or None}, the detector's report) for the variants.

  `detector`: cross-fitted (`rewriting.rephrase.crossfit`); trained once per run (resuming).
  """
  names = list(dict.fromkeys([config.pairs_source, *config.compare_sources]))
  names = [n for n in chain.PAIRS_SOURCES if n in names]
  out, report = {n: None for n in names}, {}
  if "detector" in names:
    found = crossfit.detected_pairs(config, workdir, dialogues)
    out["detector"] = found["pairs"]["train"]
    report = {k: found[k] for k in ("scores", "folds", "variant")}
  return out, report


def _visits(c, config):
  return table.source_visits(
    c, max_source_success=config.max_source_success, min_source_support=config.min_source_support
  )


def _summary(ev: Mapping) -> dict:
  keys = ("triggered", "wins", "losses", "ties", "ties_both_served", "ties_both_failed", "win_loss", "trigger_rate",
          "defect_reduction_triggered", "defect_reduction", "precision_at_1", "precision_at_1_true_text",
          "precision_at_1_same_reading")  # fmt: skip
  return {k: ev[k] for k in keys}


def _chain_summary(config, ch, rows) -> dict:
  sources = table.candidate_sources(
    ch, max_source_success=config.max_source_success, min_source_support=config.min_source_support
  )
  return {"num_states": len(ch.keys), "num_edges": int(ch.Q.nnz), "num_sessions": ch.num_sessions,
          "num_transitions": ch.num_transitions, "num_sources": len(sources), "rules": len(rows)}  # fmt: skip


def run_unjudged(config, workdir: pathlib.Path, dialogues: splits.Dialogues) -> dict[str, Any]:
  """A log without truth (the minimal contract): the chain and table from every session, no judged replay.

  Friction comes from the observable signals (barge-in, negative feedback,
  a quick follow-up request) and sessions from the time gaps; there is no
  simulator to judge a rewrite, so the output is the table (`rewrites.json`,
  `rewriter/`) and the chain's counts, with the log's learned vocabularies.
  """
  dialogues_used = dialogues.train + dialogues.val + dialogues.test
  ch = _chain(config, dialogues_used, None, states="text", pairs_source="gap")
  rows = _table(ch, _guardrails(config), _visits(ch, config))
  results = _jsonable({
    "task": "amc",
    "judged": False,
    "states": "text",
    "pairs_source": "gap",
    "guardrails": _guardrails(config),
    "log": dialogues.report,
    "chain_dialogues": len(dialogues_used),
    "chain": _chain_summary(config, ch, rows),
  })  # fmt: skip
  (workdir / "rewrites.json").write_text(json.dumps(rows, indent=2, sort_keys=True))
  table_rewriter.TableRewriter(rows, states="text").save(workdir / "rewriter")
  lines = [
    "# Precomputed rewriting (absorbing Markov chain) on a log without ground truth",
    "",
    f"{results['chain_dialogues']} sessions (the whole log) -> {results['chain']['num_states']} states,"
    f" {results['chain']['num_edges']} edges, {results['chain']['num_sessions']} reformulation sessions,"
    f" {results['chain']['rules']} rewrites.  Not judged: the log holds no truth and there is no simulator.",
    "",
    "| vocabulary | values kept | unknown bucket (values / rows) | rows without it |",
    "|---|---|---|---|",
  ]
  for name, v in results["log"]["vocabularies"].items():
    u = v["unknown_bucket"]
    lines.append(f"| {name} | {v['known_values']} | {u['values']} / {u['count']} | {v['missing']} |")
  base.write_results(workdir, results, "\n".join(lines) + "\n")
  print(
    f"outputs in {workdir}: results.json, results.md, rewrites.json, rewriter/ | {len(rows)} rewrites from"
    f" {results['chain_dialogues']} sessions ({dialogues.report['turns']} turns, {dialogues.report['users']} users,"
    f" {dialogues.report['skipped']} rows skipped); intents {_vocab_line(dialogues.report, 'intent')};"
    f" devices {_vocab_line(dialogues.report, 'device_type')}; not judged (no truth in the log)",
    flush=True,
  )
  return {"rules": len(rows), "states": len(ch.keys)}


def _vocab_line(report, name) -> str:
  v = report["vocabularies"][name]
  return f"{v['known_values']} learned (+{v['unknown_bucket']['values']} in <unk>, {v['missing']} rows without)"


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, dialogues: splits.Dialogues) -> dict[str, Any]:
  """Builds the chain and rewrite table from the training split, judges it on the test split, writes results."""
  if not dialogues.has_truth:
    return run_unjudged(config, workdir, dialogues)
  world = base.world_of(config)
  interpret = functools.partial(judge.resolve, world)  # the user-independent reading of a text
  train, test = dialogues.train, dialogues.test
  pair_sources, detector_report = _pair_sources(config, workdir, dialogues)
  ch = _chain(config, train, interpret, states=config.states, pairs_source=config.pairs_source,
              pairs=pair_sources[config.pairs_source])  # fmt: skip
  visit_rows = _visits(ch, config)
  # Guardrails: every sweep combination (support, gain, visits, similarity guard) is judged on the VALIDATION
  # split; with `tune_on="validation"` the one with the most net wins (wins - losses; then fewer losses, then
  # fewer rules) is applied, and the test split is read once, with it.
  sweep = []
  for ms, mg, mv, sim in itertools.product(
    config.sweep.min_support, config.sweep.min_gain, config.sweep.min_visits, config.sweep.min_similarity
  ):
    g = _guardrails(config, min_support=ms, min_gain=mg, min_visits=mv, min_similarity=sim)
    t = _table(ch, g, visit_rows)
    ev = replay.evaluate_rewrites(world, dialogues.val, table.table_lookup(t, config.states, interpret))
    sweep.append({"min_support": ms, "min_gain": mg, "min_visits": mv, "min_similarity": sim, "rules": len(t),
                  **_summary(ev)})  # fmt: skip
  chosen = {}
  if config.tune_on == "validation" and sweep:
    best = max(sweep, key=lambda r: (r["wins"] - r["losses"], -r["losses"], -r["rules"]))
    chosen = {k: best[k] for k in ("min_support", "min_gain", "min_visits", "min_similarity")}
  guards = _guardrails(config, **chosen)
  rows = _table(ch, guards, visit_rows)
  headline = replay.evaluate_rewrites(world, test, table.table_lookup(rows, config.states, interpret),
                                      bootstrap_samples=config.bootstrap, seed=config.seed)  # fmt: skip
  # The similarity guard's ablation: the applied guardrails without it, on validation and test.
  unguarded = dict(guards, min_similarity=-1.0)
  ablation = {}
  for split_name, split in (("val", dialogues.val), ("test", test)):
    t = _table(ch, unguarded, visit_rows)
    ablation[split_name] = {"rules": len(t), **_summary(replay.evaluate_rewrites(
      world, split, table.table_lookup(t, config.states, interpret)))}  # fmt: skip
  variants = []
  for pairs_source in pair_sources:
    for states in chain.STATES:
      if (pairs_source, states) == (config.pairs_source, config.states):
        c, t, ev = ch, rows, headline
      else:
        c = _chain(config, train, interpret, states=states, pairs_source=pairs_source,
                   pairs=pair_sources[pairs_source])  # fmt: skip
        t = _table(c, guards, _visits(c, config))
        ev = replay.evaluate_rewrites(world, test, table.table_lookup(t, states, interpret),
                                      bootstrap_samples=config.bootstrap, seed=config.seed)  # fmt: skip
      variants.append({"pairs_source": pairs_source, "states": states, "num_states": len(c.keys), "rules": len(t),
                       "win_loss_ci95": ev["win_loss_ci95"], **_summary(ev)})  # fmt: skip
  results = {
    "task": "amc",
    "states": config.states,
    "pairs_source": config.pairs_source,
    "guardrails": guards,
    "tune_on": config.tune_on,
    "val_dialogues": len(dialogues.val),
    "train_dialogues": len(train),
    "test_dialogues": len(test),
    "chain": {
      "num_states": len(ch.keys),
      "num_edges": int(ch.Q.nnz),
      "num_sessions": ch.num_sessions,
      "num_transitions": ch.num_transitions,
      "num_sources": len(
        table.candidate_sources(
          ch, max_source_success=config.max_source_success, min_source_support=config.min_source_support
        )
      ),  # fmt: skip
      "rules": len(rows),
    },
    "preset": config.data.preset,
    "recurrence": base.recurrence_of(dialogues),
    "test": headline,
    "similarity_ablation": ablation,
    "detector": detector_report,
    "sweep": sweep,
    "variants": variants,
    "paper": PAPER,
  }
  results = _jsonable(results)
  (workdir / "rewrites.json").write_text(json.dumps(rows, indent=2, sort_keys=True))
  if config.states == "text":
    table_rewriter.TableRewriter(rows, states="text").save(workdir / "rewriter")
  base.write_results(workdir, results, render(results))
  print(
    f"outputs in {workdir}: results.json, results.md, rewrites.json | {len(rows)} rewrites;"
    f" test win/loss {_fmt(headline['win_loss'])} ({headline['wins']}:{headline['losses']}),"
    f" trigger rate {headline['trigger_rate']:.2%}, defect reduction on triggered traffic"
    f" {headline['defect_reduction_triggered']:.1%} (paper: win/loss 11.8, > 30%)",
    flush=True,
  )
  return {
    "win_loss": results["test"]["win_loss"],
    "trigger_rate": headline["trigger_rate"],
    "defect_reduction_triggered": results["test"]["defect_reduction_triggered"],
    "defect_reduction": results["test"]["defect_reduction"],
    "rules": len(rows),
  }


def _jsonable(x):
  """Non-finite floats as None (strict JSON); results.md prints them as n/a or inf from the counts."""
  if isinstance(x, dict):
    return {k: _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, float) and not np.isfinite(x):
    return None
  return x


def _fmt(x, spec=".2f") -> str:
  return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def render(results: Mapping) -> str:
  """The Markdown tables of a results dict."""
  h, c = results["test"], results["chain"]
  ci = h.get("win_loss_ci95") or [None, None]
  lines = [
    "# Precomputed rewriting (absorbing Markov chain): test split",
    "",
    f"States: {results['states']}; sessions: {results['pairs_source']}; {results['train_dialogues']} training /"
    f" {results['test_dialogues']} test dialogues. Chain: {c['num_states']} states, {c['num_edges']} edges,"
    f" {c['num_sessions']} sessions, {c['num_sources']} sources below the success threshold, {c['rules']} rewrites.",
    "",
    *(
      [f"World: {results['preset']}. " + recurrence.markdown(results["recurrence"]), ""]
      if "recurrence" in results
      else []
    ),
    "| metric | ours | paper / keynote |",
    "|---|---|---|",
    f"| win/loss (95% CI) | {_fmt(h['win_loss'])} ({h['wins']}:{h['losses']}; {_fmt(ci[0])}-{_fmt(ci[1])})"
    " | 11.8 (AAAI-20); 8.5:1 (keynote) |",
    f"| defect reduction, triggered turns | {_fmt(h['defect_reduction_triggered'], '.1%')}"
    f" ({_fmt(h['defect_rate_triggered_before'], '.1%')} -> {_fmt(h['defect_rate_triggered_after'], '.1%')})"
    " | > 30% |",
    f"| defect reduction, all requests | {_fmt(h['defect_reduction'], '.1%')}"
    f" ({_fmt(h['defect_rate_before'], '.1%')} -> {_fmt(h['defect_rate_after'], '.1%')}) | |",
    f"| trigger rate | {_fmt(h['trigger_rate'], '.2%')} ({h['triggered']} of {h['requests']}) | |",
    f"| wins / losses / ties (both served; both failed) | {h['wins']} / {h['losses']} / {h['ties']}"
    f" ({h['ties_both_served']}; {h['ties_both_failed']}) | |",
    f"| precision@1 of applied rewrites: read as what the user meant / the true utterance |"
    f" {_fmt(h['precision_at_1'], '.3f')} / {_fmt(h['precision_at_1_true_text'], '.3f')} (of {h['triggered']}) | |",
    f"| precision@1 vs the simulator's rewrite: exact / same reading | {_fmt(h['precision_at_1_exact'], '.3f')} /"
    f" {_fmt(h['precision_at_1_same_reading'], '.3f')} (of {h['labelled_triggered']}) | |",
    "",
    "By the simulator's rewrite kind of the triggered turn (none: no fixable defect):",
    "",
    "| kind | wins | losses | ties |",
    "|---|---|---|---|",
  ]
  for k in replay.REWRITE_KINDS:
    b = h["by_kind"][k]
    lines.append(f"| {k} | {b['win']} | {b['loss']} | {b['tie']} |")
  lines += [
    "",
    f"Guardrail sweep on the VALIDATION split ({results['val_dialogues']} dialogues; tuning: {results['tune_on']};"
    f" applied: min_support {results['guardrails']['min_support']}, min_gain {results['guardrails']['min_gain']},"
    f" min_visits {results['guardrails']['min_visits']}, min_similarity {results['guardrails']['min_similarity']}):",
    "",
    "| min_support | min_gain | min_visits | min_similarity | rules | triggered | wins | losses | ties | win/loss"
    " | precision@1 | defect red. (trig.) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in results["sweep"]:
    lines.append(
      f"| {r['min_support']} | {r['min_gain']} | {r['min_visits']} | {r.get('min_similarity', 'off')} | {r['rules']} |"
      f" {r['triggered']} | {r['wins']} | {r['losses']} | {r['ties']} | {_fmt(r['win_loss'])} |"
      f" {_fmt(r.get('precision_at_1'), '.3f')} | {_fmt(r['defect_reduction_triggered'], '.1%')} |"
    )
  if results.get("similarity_ablation"):
    lines += [
      "",
      "The similarity guard's ablation (the applied guardrails without it):",
      "",
      "| split | similarity guard | rules | triggered | wins | losses | ties (served; failed) | precision@1 |",
      "|---|---|---|---|---|---|---|---|",
    ]
    for split_name, a in results["similarity_ablation"].items():
      lines.append(
        f"| {split_name} | off | {a['rules']} | {a['triggered']} | {a['wins']} | {a['losses']} |"
        f" {a['ties']} ({a['ties_both_served']}; {a['ties_both_failed']}) | {_fmt(a['precision_at_1'], '.3f')} |"
      )
  if results.get("detector"):
    det = results["detector"]
    lines += [
      "",
      f"Rephrase pairs feeding the chain, against the true pairs (detector: the span model, {det['folds']}-fold"
      " cross-fitted on the training split; validation and test labelled by fold 0's detector):",
      "",
      "| split | detector P | detector R | detector F1 | gap heuristic P | R | F1 |",
      "|---|---|---|---|---|---|---|",
    ]
    for split_name, q in det["scores"].items():
      d, g = q["detector"], q["gap"]
      lines.append(
        f"| {split_name} | {d['precision']:.3f} | {d['recall']:.3f} | {d['f1']:.3f} | {g['precision']:.3f} |"
        f" {g['recall']:.3f} | {g['f1']:.3f} |"
      )
  lines += [
    "",
    "Sessions and states (the applied guardrails; test split):",
    "",
    "| sessions | states | chain states | rules | triggered | win/loss (95% CI) | ties | precision@1 |"
    " defect red. (trig.) | overall |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in results["variants"]:
    vci = r["win_loss_ci95"] or [None, None]
    lines.append(
      f"| {r['pairs_source']} | {r['states']} | {r['num_states']} | {r['rules']} | {r['triggered']} |"
      f" {_fmt(r['win_loss'])} ({r['wins']}:{r['losses']}; {_fmt(vci[0])}-{_fmt(vci[1])}) | {r['ties']} |"
      f" {_fmt(r.get('precision_at_1'), '.3f')} |"
      f" {_fmt(r['defect_reduction_triggered'], '.1%')} | {_fmt(r['defect_reduction'], '.1%')} |"
    )
  return "\n".join(lines) + "\n"
