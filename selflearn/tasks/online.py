"""The `online` task: mine, train and A/B-test the online rewriter (global and personal layers).

The keynote's online rewriter, learnt from customers' own reformulations
(`rewriting.online`): pairs mined from the training split
(`mining`, `pairs_source`), the global and personal indexes (`index`), a
dual encoder trained DPR-style (`retrieval`, `train`), listwise rankers
(`ranker`), and the two layers with their guard (`layers`).  Thresholds are
chosen on the validation split's traffic from observable agreement with the
users' own corrections (`signals.proxy`; `ranker.tune_on="judge"`: by the
judge, as the earlier runs did); the **simulated A/B** runs on the
test split: every request turn (the same turns in every arm) is decided by
each arm, a rewrite is judged by the judge (`evaluation.replay.outcomes`),
with defect rates, paired differences with 95% bootstrap CIs over
dialogues, relative reductions next to the keynote's -13% (global) and a
further -4% (personal), win / loss counts and trigger rates.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from common import app
from selflearn.data import splits
from selflearn.evaluation import recurrence, replay
from selflearn.rewriting.online import index, layers, mining, ranker, train
from selflearn.rewriting.online import rewriter as online_rewriter
from selflearn.rewriting.rephrase import crossfit
from selflearn.signals import proxy, sessions, text_features
from selflearn.sim import judge
from selflearn.tasks import base

KEYNOTE = {"global_relative_change": -0.13, "personal_further_relative_change": -0.04}


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field, before anything compiles."""
  from selflearn.configs import online as online_config  # pylint: disable=g-import-not-at-top

  app.check(config, "task", lambda v: v == "online", "must be 'online'")
  app.check_known_fields(config, online_config.get_config())
  app.check(config, "pairs_source", lambda v: v in mining.PAIRS_SOURCES, f"must be one of {mining.PAIRS_SOURCES}")
  app.check(config, "rephrase_gap", lambda v: v > 0, "must be > 0 seconds")
  app.check(config, "compare_detector", lambda v: isinstance(v, bool), "must be True or False")
  app.check(config, "detector.folds", lambda v: base.positive_int(v) and v >= 2, "must be an integer >= 2")
  app.check(config, "detector.num_epochs", base.positive_int, "must be an integer >= 1")
  app.check(config, "detector.variant", lambda v: v in ("", "smoke"), "must be '' or 'smoke'")
  app.check(config, "min_personal_history", lambda v: isinstance(v, int) and v >= 0, "must be an integer >= 0")
  r = "retrieval"
  for field in ("num_buckets", "max_ngrams", "embed_dim", "hidden_dim", "out_dim", "k", "chunk"):
    app.check(config, f"{r}.{field}", base.positive_int, "must be an integer >= 1")
  app.check(config, f"{r}.num_buckets", lambda v: v >= 2, "must be >= 2")
  app.check(config, f"{r}.scale", lambda v: v > 0, "must be > 0")
  app.check(
    config,
    f"{r}.text_encoder",
    lambda v: v in text_features.TEXT_ENCODERS,
    f"must be one of {text_features.TEXT_ENCODERS}",
  )
  for field in ("batch_size", "num_epochs"):
    app.check(config, f"ranker.{field}", base.positive_int, "must be an integer >= 1")
  app.check(config, "ranker.hidden_dim", lambda v: isinstance(v, int) and v >= 0, "must be an integer >= 0")
  app.check(config, "ranker.passthrough_ratio", lambda v: v >= 0, "must be >= 0")
  app.check(config, "ranker.thresholds", lambda v: len(v) >= 1 and all(float(x) == x for x in v), "must be numbers")
  app.check(config, "ranker.tune_on", lambda v: v in ("observable", "judge"), "must be 'observable' or 'judge'")
  app.check(config, "guard.margin", lambda v: v >= 0, "must be >= 0")
  app.check(config, "guard.min_entity", lambda v: 0 <= v <= 1, "must be in [0, 1]")
  app.check(config, "guard.dominant_share", lambda v: 0 < v <= 1, "must be in (0, 1]")
  app.check(config, "guard.dominant_ratio", lambda v: 0 <= v <= 100, "must be in [0, 100]")
  app.check(config, "ab.num_bootstrap", base.positive_int, "must be an integer >= 1")
  base.validate_common(config, batch_unit="pairs")


def _observed_request_turns(split) -> list[tuple[int, int]]:
  """(dialogue, turn) of every request turn, as the log observes them (no truth: a log to the minimal contract)."""
  return [(di, i) for di, d in enumerate(split) for i, t in enumerate(d["turns"]) if sessions.is_request(t)]


def proxy_outcomes(split, turns, texts, pairs, *, rephrase_gap: float) -> np.ndarray:
  """Observable stand-in for the judge on a log without truth.

  A turn that is a mined pair's source is served when the decision is the
  session's successful reformulation; a frictionless request when it is left
  alone; any other turn counts as failing whatever the decision (it does
  not move a threshold comparison).
  """
  target = {(p.dialogue, p.source): p.target_text for p in pairs}
  ok = {(di, i) for di, d in enumerate(split) for i in mining.successful_requests(d, rephrase_gap=rephrase_gap)}
  out = np.zeros(len(turns), bool)
  for n, ((di, i), x) in enumerate(zip(turns, texts)):
    text = split[di]["turns"][i]["asr"]["text"]
    if (di, i) in target:
      out[n] = x == target[di, i]
    elif (di, i) in ok:
      out[n] = x is None or x == text
  return out


def pipeline(
  config, workdir: pathlib.Path, dialogues: splits.Dialogues, world, *, pairs_source: str, prefix: str, detected=None
):
  """Mines, trains (resuming), saves the rewriter and A/B-tests it (judged; on a log without truth: proxies).

  `detected` (pairs_source="detector"): `crossfit.detected_pairs`' output (cross-fitted pairs per split).
  """
  gap = config.rephrase_gap
  judged = dialogues.has_truth
  found = detected["pairs"] if detected is not None else {"train": None, "val": None}
  train_pairs = mining.mine_pairs(dialogues.train, source=pairs_source, rephrase_gap=gap, detected=found["train"])
  val_pairs = mining.mine_pairs(dialogues.val, source=pairs_source, rephrase_gap=gap, detected=found["val"])
  test_pairs = mining.mine_pairs(dialogues.test, source="gap", rephrase_gap=gap)
  if len(train_pairs) < 2:  # a clear exit 2, not a traceback from an empty index or batch
    raise app.ConfigError(
      "data.log_path" if config.data.log_path else "data.num_dialogues",
      f"only {len(train_pairs)} reformulation pairs (pairs_source={pairs_source!r}) mined from the"
      f" {len(dialogues.train)} training sessions (friction followed by a successful request within"
      " rephrase_gap); the online rewriter needs at least 2: use a larger log",
    )
  gi, pi = index.build_indexes(dialogues.train, rephrase_gap=gap)
  emb_fn, text_dim = train.text_embedder(config, workdir)
  network, params = train.train_encoder(
    config, workdir / f"{prefix}encoder", train_pairs, val_pairs, gi, emb_fn, text_dim=text_dim
  )
  ret = index.Retriever(network, params, config, gi, pi, emb_fn).build()
  untrained = jax.jit(network.init)(jax.random.PRNGKey(config.seed + 7))
  recall = index.retrieval_recall(ret, test_pairs, config.retrieval.k, params=untrained)
  if judged:
    mined_ok = [
      judge.rewrite_succeeds(world, dialogues.train[p.dialogue], p.source, p.target_text) for p in train_pairs
    ]
  else:
    mined_ok = []

  rk = config.ranker
  stages = {}
  for name, personal, off in (("global", False, 1), ("personal", True, 2)):
    tr = train.ranker_examples(
      ret, dialogues.train, train_pairs, personal=personal, ratio=rk.passthrough_ratio, seed=config.seed + off
    )
    va = train.ranker_examples(
      ret, dialogues.val, val_pairs, personal=personal, ratio=rk.passthrough_ratio, seed=config.seed + off + 10
    )
    net, p = train.train_ranker(config, workdir / f"{prefix}ranker_{name}", tr, va, seed=config.seed + off)
    stages[name] = (net, p, len(tr[1]), len(va[1]))

  request_turns = replay.request_turns if judged else _observed_request_turns

  def arm_inputs(split):
    turns = request_turns(split)
    queries = [ranker.Query.of_turn(split[di], i) for di, i in turns]
    g_lists = index.candidate_lists(ret, queries, personal=False)
    p_lists = index.candidate_lists(ret, queries, personal=True)
    g_logits = train.logits(stages["global"][0], stages["global"][1], queries, g_lists, config)
    p_logits = train.logits(stages["personal"][0], stages["personal"][1], queries, p_lists, config)
    history = [pi.history(q.user_id, q.time) for q in queries]
    return turns, queries, g_lists, p_lists, g_logits, p_logits, history

  # Thresholds chosen on the validation split's traffic: from observable agreement with the users' own
  # corrections (`signals.proxy`: the default, and the only choice on a log without truth), or
  # (`ranker.tune_on="judge"`, the earlier runs) by the judge.
  v_turns, v_q, v_gl, v_pl, v_glog, v_plog, v_hist = arm_inputs(dialogues.val)
  if judged and rk.tune_on == "judge":
    judge_val = lambda texts: replay.outcomes(world, dialogues.val, v_turns, texts)
    pick = functools.partial(layers.tune_threshold, judge=judge_val)
  else:
    observe = lambda texts: proxy.agree_disturb(dialogues.val, v_turns, texts, rephrase_gap=gap)
    pick = functools.partial(proxy.select_threshold, score=observe)
  th_g, val_g = pick(rk.thresholds, lambda th: layers.decide_global(v_gl, v_glog, th))
  v_gtexts = layers.decide_global(v_gl, v_glog, th_g)
  th_p, val_p = pick(
    rk.thresholds, lambda th: layers.decide_personal(v_q, v_pl, v_plog, th, v_gtexts, v_hist, config).texts
  )
  rewriter_params = {"encoder": params, "ranker_global": stages["global"][1], "ranker_personal": stages["personal"][1]}
  rw = online_rewriter.OnlineRewriter(
    config=config, params=rewriter_params, thresholds=(th_g, th_p), gi=gi, pi=pi, text_dim=text_dim, emb_fn=emb_fn
  )
  if jax.process_index() == 0:
    rw.save(workdir / f"{prefix}rewriter")

  # The A/B on the test split.
  turns, queries, g_lists, p_lists, g_logits, p_logits, history = arm_inputs(dialogues.test)
  g_texts = layers.decide_global(g_lists, g_logits, th_g)
  p_dec = layers.decide_personal(queries, p_lists, p_logits, th_p, g_texts, history, config)
  texts = {"none": [None] * len(turns), "global": g_texts, "personal": p_dec.texts}
  if judged:
    oracle = []
    for di, i in turns:
      truth = dialogues.test[di]["turns"][i]["truth"]
      oracle.append(truth["rewrite"] if truth["defect"] and truth["rewrite"] else None)
    texts["oracle"] = oracle
    success = {a: replay.outcomes(world, dialogues.test, turns, t) for a, t in texts.items()}
  else:
    success = {a: proxy_outcomes(dialogues.test, turns, t, test_pairs, rephrase_gap=gap) for a, t in texts.items()}
  triggered = {
    a: np.asarray([x is not None and x != queries[n].text for n, x in enumerate(t)], bool) for a, t in texts.items()
  }
  dialogue_of = np.asarray([di for di, _ in turns], np.int64)
  ab = replay.ab_report(dialogue_of, success, triggered, num=config.ab.num_bootstrap, seed=config.ab.seed)
  ab["judge"] = "simulator" if judged else "observable proxy (mined reformulations; no truth in the log)"
  kinds: dict[str, int] = {}
  for s in p_dec.source:
    kinds[s] = kinds.get(s, 0) + 1
  ab["personal_layer"] = {
    "decision_sources": dict(sorted(kinds.items())),
    "thin_history_turns": int(sum(1 for h in history if h < config.min_personal_history)),
    "changed_vs_global": int(sum(a != b for a, b in zip(p_dec.texts, g_texts))),
  }
  out_detector = {k: detected[k] for k in ("scores", "folds", "variant")} if detected is not None else None
  return {
    "pairs_source": pairs_source,
    "detector": out_detector,
    "mining": {
      "train_pairs": len(train_pairs),
      "val_pairs": len(val_pairs),
      "test_pairs": len(test_pairs),
      "train_pair_target_serves_goal": float(np.mean(mined_ok)) if mined_ok else float("nan"),
      "global_index": len(gi.texts),
      "personal_index_rows": len(pi.rows),
      "users_with_history": len(pi.all_times),
    },
    "retrieval": recall,
    "ranker": {name: {"train_lists": stages[name][2], "val_lists": stages[name][3]} for name in stages}
    | {
      "threshold_global": th_g if np.isfinite(th_g) else "off",  # off: every threshold lost on validation
      "threshold_personal": th_p if np.isfinite(th_p) else "off",
      "tune_on": rk.tune_on,
      "val_by_threshold": {"global": val_g, "personal": val_p},
    },
    "ab": ab,
  }


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, dialogues: splits.Dialogues) -> dict[str, Any]:
  """Trains (resuming) and A/B-tests the online rewriter; writes results.json / results.md."""
  world = base.world_of(config) if dialogues.has_truth else None
  detected = None
  if config.pairs_source == "detector" or config.compare_detector:
    detected = crossfit.detected_pairs(config, workdir, dialogues)
  main = pipeline(config, workdir, dialogues, world, pairs_source=config.pairs_source, prefix="",
                  detected=detected if config.pairs_source == "detector" else None)  # fmt: skip
  results = {
    "task": "online",
    "data": {"train": len(dialogues.train), "val": len(dialogues.val), "test": len(dialogues.test)},
    "log": dialogues.report or {"format": "simulated"},
    "preset": config.data.preset,
    "recurrence": base.recurrence_of(dialogues) if dialogues.has_truth else None,
    "main": main,
    "keynote": KEYNOTE,
  }
  if config.compare_detector and config.pairs_source != "detector":
    results["detector"] = pipeline(
      config, workdir, dialogues, world, pairs_source="detector", prefix="detector_", detected=detected
    )
  if config.upper_bound and config.pairs_source != "truth":
    results["upper_bound"] = pipeline(config, workdir, dialogues, world, pairs_source="truth", prefix="truth_")
  results = json.loads(json.dumps(results))  # what results.json holds (tuples -> lists), also returned
  base.write_results(workdir, results, render(results))
  ab = main["ab"]
  g, p = ab["none_vs_global"], ab["global_vs_personal"]
  what = "defect rate" if dialogues.has_truth else "proxy failure rate (no truth in the log: mined reformulations)"
  print(
    f"outputs in {workdir}: results.json, results.md, rewriter/, encoder/, ranker_*/, data/ |"
    f" {what} none {g['rate_a']:.4f} -> global {g['rate_b']:.4f} ({g['relative']:+.1%}; keynote -13%)"
    f" -> + personal {p['rate_b']:.4f} ({p['relative']:+.1%}; keynote a further -4%)",
    flush=True,
  )
  return {
    "defect_rate_none": g["rate_a"],
    "defect_rate_global": g["rate_b"],
    "defect_rate_personal": p["rate_b"],
    "global_relative_change": g["relative"],
    "personal_further_relative_change": p["relative"],
  }


def _ci(x) -> str:
  return f"[{x[0]:+.1%}, {x[1]:+.1%}]"


def render(results: dict) -> str:
  """The Markdown tables of a results dict."""
  lines = ["# Online query rewriting: simulated A/B on the test split", ""]
  if results.get("recurrence"):
    lines += [f"World: {results['preset']}. " + recurrence.markdown(results["recurrence"]), ""]
  judge_kind = results["main"]["ab"].get("judge", "simulator")
  if judge_kind != "simulator":
    lines += [f"Judge: {judge_kind}: defect rates below are proxy rates, not served goals.", ""]
  blocks = [("main", results["main"])] + [(k, results[k]) for k in ("detector", "upper_bound") if k in results]
  lines += [
    "| pairs | arm | defect rate | trigger rate | vs previous arm | relative | 95% CI (relative) | wins / losses"
    " | keynote |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for _, block in blocks:
    ab = block["ab"]
    prev = {"global": "none_vs_global", "personal": "global_vs_personal", "oracle": "none_vs_oracle"}
    keynote = {"global": "-13%", "personal": "a further -4%", "oracle": ""}
    for arm in ("none", "global", "personal", "oracle"):
      if arm not in ab["arms"]:
        continue
      a = ab["arms"][arm]
      if arm == "none":
        lines.append(f"| {block['pairs_source']} | none | {a['defect_rate']:.4f} | 0 | | | | | |")
        continue
      c = ab[prev[arm]]
      lines.append(
        f"| {block['pairs_source']} | {arm} | {a['defect_rate']:.4f} | {a['trigger_rate']:.3f} | {c['diff']:+.4f} |"
        f" {c['relative']:+.1%} | {_ci(c['relative_ci'])} | {c['wins']} / {c['losses']} | {keynote[arm]} |"
      )
  for name, block in blocks:
    m, r, ab = block["mining"], block["retrieval"], block["ab"]
    lines += [
      "",
      f"## {name} (pairs: {block['pairs_source']})",
      "",
      f"{ab['turns']} test request turns in {ab['dialogues']} dialogues.  Mined pairs: train {m['train_pairs']},"
      f" val {m['val_pairs']}; {m['train_pair_target_serves_goal']:.1%} of the training pairs' targets serve the"
      f" source's goal.  Global index {m['global_index']} texts; personal index {m['personal_index_rows']} rows"
      f" ({m['users_with_history']} users).  Thresholds (chosen on validation; off: no threshold tried"
      f" agreed more than it disturbed): global {block['ranker']['threshold_global']},"
      f" personal {block['ranker']['threshold_personal']}.",
      "",
      f"Retrieval on held-out (test, observable) pairs whose target is in the index ({r.get('target_in_index', 0)}"
      f" of {r['pairs']}):",
      "",
      "| retriever | recall@1 | recall@5 | recall@10 |",
      "|---|---|---|---|",
    ]
    for k in ("encoder", "untrained_encoder", "rapidfuzz_ratio"):
      if k in r:
        lines.append(f"| {k} | {r[k]['recall@1']:.3f} | {r[k]['recall@5']:.3f} | {r[k]['recall@10']:.3f} |")
    if block.get("detector"):
      q = block["detector"]["scores"]
      lines += [
        "",
        f"Detected pairs ({block['detector']['folds']}-fold cross-fitted span model) against the true pairs:"
        + "".join(
          f" {k} P {v['detector']['precision']:.3f} R {v['detector']['recall']:.3f} F1 {v['detector']['f1']:.3f}"
          f" (gap heuristic F1 {v['gap']['f1']:.3f});"
          for k, v in q.items()
        ),
      ]
    src = ab["personal_layer"]["decision_sources"]
    lines += ["", "Personal layer decisions: " + ", ".join(f"{k} {v}" for k, v in src.items()) + "."]
  return "\n".join(lines) + "\n"
