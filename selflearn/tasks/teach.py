"""The `teach` task: teaching turns -> extractor -> preference stores -> effect on the test split's defects.

After Ping et al., "Interactive Teaching for Conversational AI"
(arXiv:2012.00958) and the Amazon blog "New Alexa features: Interactive
teaching by customers".  Every user of the training dialogues teaches in the
training period (`sim.teaching`); the extractor (`teaching.extractor`,
trained on an annotated corpus with some paraphrase frames held out) and
the rule baseline (`teaching.rules`) turn those turns into preference
stores; on the test split's logged requests the defect rate without a store
(the logged outcome) is compared with the defect rate with it
(`evaluation.replay.preference_effect`: a turn whose interpretation the
user's preferences change is re-judged), with paired-bootstrap 95% CIs over
dialogues, for the learned store, the rule store, oracle extraction (the
true entries of the same teaching turns) and full knowledge (every user's
true habits).
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np

from common import app
from selflearn import training
from selflearn.data import splits
from selflearn.evaluation import recurrence, replay
from selflearn.signals import features
from selflearn.sim import teaching as sim_teaching
from selflearn.tasks import base
from selflearn.teaching import extraction, extractor, preferences, turns
from selflearn.teaching import rules as rules_lib


def _reference_config():
  from selflearn.configs import teach  # pylint: disable=g-import-not-at-top

  return teach.get_config()


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field (before anything compiles)."""
  app.check(config, "task", lambda v: v == "teach", "must be 'teach' for selflearn/configs/teach.py")
  app.check_known_fields(config, _reference_config())
  pos = base.positive_int
  for field in ("teach.train_turns", "teach.val_turns", "teach.turns_per_user", "teach.max_words"):
    app.check(config, field, pos, "must be an integer >= 1")
  app.check(config, "teach.max_words", lambda v: v >= 8, "must be >= 8 (the longest frames have 12 words)")
  app.check(config, "teach.distractor_rate", lambda v: 0 <= v < 1, "must be in [0, 1)")
  for field in ("teach.asr_noise", "teach.systematic_noise"):
    app.check(config, field, lambda v: 0 <= v <= 1, "must be in [0, 1]")
  app.check(config, "teach.vocab_size", lambda v: isinstance(v, int) and v >= 10, "must be an integer >= 10")
  for field in ("model.dim", "model.num_heads", "model.num_layers"):
    app.check(config, field, pos, "must be an integer >= 1")
  app.check(config, "model.dim", lambda v: v % config.model.num_heads == 0, "must be a multiple of model.num_heads")
  app.check(config, "model.dropout_rate", lambda v: 0 <= v < 1, "must be in [0, 1)")
  app.check(config, "extract.threshold", lambda v: 0 <= v <= 1, "must be in [0, 1]")
  app.check(config, "extract.fuzzy_cutoff", lambda v: 0 < v <= 100, "must be in (0, 100] (rapidfuzz ratio)")
  app.check(config, "eval.bootstrap", pos, "must be an integer >= 1")
  base.validate_common(config, batch_unit="turns")
  app.check(
    config, "batch_size", lambda v: v <= config.teach.train_turns, "must be <= teach.train_turns (the training corpus)"
  )


def _entry_row(t: turns.TeachingTurn, learned, rules) -> dict:
  return {"user": t.user_id, "text": t.text, "truth": t.truth, "learned": learned, "rules": rules, "frame": t.frame}


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, dialogues: splits.Dialogues) -> dict[str, Any]:
  """Teaching turns -> extractor (trained, resuming) -> stores -> defect rates on the test split; writes results."""
  start = time.time()
  world = base.world_of(config)
  tc = config.teach
  train_corpus = sim_teaching.corpus(world, tc.train_turns, tc, config.seed)
  val_corpus = sim_teaching.corpus(world, tc.val_turns, tc, config.seed + 1)
  deploy = sim_teaching.teaching_turns(world, dialogues.train, tc, config.data.sim_seed)
  vocab = features.Vocab.build((t.text for t in train_corpus), max_size=tc.vocab_size)
  train = {k: jnp.asarray(v) for k, v in extractor.encode(train_corpus, vocab, tc.max_words).items()}
  val = {k: jnp.asarray(v) for k, v in extractor.encode(val_corpus, vocab, tc.max_words).items()}
  m = config.model
  net = extractor.make_extractor(
    vocab_size=vocab.size, max_words=tc.max_words, dim=m.dim, num_layers=m.num_layers, num_heads=m.num_heads,
    dropout_rate=m.dropout_rate,
  )  # fmt: skip
  params, _ = training.fit(
    workdir / "extractor", network=net, loss_fn=extractor.make_loss(net.apply, train=True), train=train, val=val,
    config=config, num_epochs=config.num_epochs, seed=config.seed,
    eval_loss_fn=extractor.make_loss(net.apply, train=False),
  )  # fmt: skip
  out = extractor.predict(net, params, extractor.encode(deploy, vocab, tc.max_words))
  ex, nb = config.extract, world.neighbours
  decoded = [
    extraction.decode(
      t.words, out["kind"][i], out["tags"][i], threshold=ex.threshold, cutoff=ex.fuzzy_cutoff, neighbours=nb
    )
    for i, t in enumerate(deploy)
  ]
  learned = [e for e, _ in decoded]
  rules = [rules_lib.rule_parse(t.text, cutoff=ex.fuzzy_cutoff, neighbours=nb) for t in deploy]
  truth = [t.truth for t in deploy]
  scores = {}
  for name, pred in (("learned", learned), ("rules", rules)):
    scores[name] = {
      "all": extraction.extraction_scores(truth, pred),
      "seen_frames": extraction.extraction_scores(*_subset(truth, pred, [not t.held_out for t in deploy])),
      "held_out_frames": extraction.extraction_scores(*_subset(truth, pred, [t.held_out for t in deploy])),
    }
  users = sorted({d["user_id"] for d in dialogues.train})
  stores = {
    "learned": turns.build_store(deploy, learned, [c for _, c in decoded]),
    "rules": turns.build_store(deploy, rules),
    "oracle_extraction": turns.build_store(deploy, truth),
    "full_knowledge": sim_teaching.oracle_store(world, users),
  }
  path = workdir / "preferences.json"
  stores["learned"].save(path)
  reloaded = preferences.PreferenceStore.load(path)
  effects = {k: replay.preference_effect(world, dialogues.test, s, samples=config.eval.bootstrap, seed=config.eval.seed)
             for k, s in stores.items()}  # fmt: skip
  again = replay.preference_effect(world, dialogues.test, reloaded, samples=1, seed=config.eval.seed)
  same = reloaded == stores["learned"] and bool(np.array_equal(again["decisions"], effects["learned"]["decisions"]))
  if not same:
    raise RuntimeError(f"the preference store reloaded from {path} decides differently from the one saved")
  for e in effects.values():
    e.pop("decisions")
  results = {
    "task": "teach",
    "users": len(users),
    "teaching_turns": len(deploy),
    "teaching_turns_that_teach": sum(t is not None for t in truth),
    "train_corpus": len(train_corpus),
    "vocab_size": vocab.size,
    "test_dialogues": len(dialogues.test),
    "preset": config.data.preset,
    "recurrence": base.recurrence_of(dialogues),
    "extraction": scores,
    "defects": effects,
    "store_entries": {k: len(s) for k, s in stores.items()},
    "restart": {"path": "preferences.json", "schema_version": preferences.SCHEMA_VERSION, "same_decisions": same},
    "examples": [_entry_row(t, learned[i], rules[i]) for i, t in enumerate(deploy[:12])],
  }
  base.write_results(workdir, results, render(results))
  le, lx = effects["learned"]["overall"], scores["learned"]["all"]
  print(
    f"outputs in {workdir}: results.json, results.md, preferences.json, extractor/ |"
    f" extraction P {lx['precision']:.3f} R {lx['recall']:.3f} EM {lx['exact_match']:.3f};"
    f" defect rate {le['defect_rate_without']:.4f} -> {le['defect_rate_with']:.4f}"
    f" ({le['relative_reduction']:.1%} relative) in {time.time() - start:.0f} s",
    flush=True,
  )
  return {
    "extraction_f1": lx["f1"],
    "exact_match": lx["exact_match"],
    "defect_rate_without": le["defect_rate_without"],
    "defect_rate_with": le["defect_rate_with"],
    "relative_reduction": le["relative_reduction"],
  }


def _subset(truth, pred, keep):
  return [t for t, k in zip(truth, keep) if k], [p for p, k in zip(pred, keep) if k]


def render(results: dict) -> str:
  """The Markdown tables of a results dict."""
  lines = [
    "# Teachable preferences: extraction and effect on defects",
    "",
    f"{results['users']} users taught in the training period: {results['teaching_turns']} turns, "
    f"{results['teaching_turns_that_teach']} of them teaching (the rest distractors). Extractor trained on "
    f"{results['train_corpus']} annotated turns (held-out frames excluded).",
    "",
    *(
      [f"World: {results['preset']}. " + recurrence.markdown(results["recurrence"]), ""]
      if "recurrence" in results
      else []
    ),
    "| extractor | turns | precision | recall | F1 | exact match | detection F1 |",
    "|---|---|---|---|---|---|---|",
  ]
  for name in ("learned", "rules"):
    for part in ("all", "seen_frames", "held_out_frames"):
      s = results["extraction"][name][part]
      lines.append(
        f"| {name} ({part.replace('_', ' ')}) | {s['turns']} | {s['precision']:.3f} | {s['recall']:.3f} | "
        f"{s['f1']:.3f} | {s['exact_match']:.3f} | {s['detection_f1']:.3f} |"
      )
  lines += [
    "",
    f"Test split: {results['test_dialogues']} dialogues. Defect rate of the logged requests without the store and "
    "with it (95% paired-bootstrap CIs over dialogues):",
    "",
    "| store | entries | defect rate without | with | relative reduction | affected turns | defect rate on affected "
    "(without -> with) | fixed | broken |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for name, e in results["defects"].items():
    o, a = e["overall"], e["affected"]
    aff = (
      f"{a['defect_rate_without']:.3f} -> {a['defect_rate_with']:.3f} [{a['ci_with'][0]:.3f}, {a['ci_with'][1]:.3f}]"
      if a["turns"]
      else "—"
    )
    lines.append(
      f"| {name} | {e['entries']} | {o['defect_rate_without']:.4f} | {o['defect_rate_with']:.4f} "
      f"[{o['ci_with'][0]:.4f}, {o['ci_with'][1]:.4f}] | {o['relative_reduction']:.1%} "
      f"[{o['ci_relative_reduction'][0]:.1%}, {o['ci_relative_reduction'][1]:.1%}] | {a['turns']} | {aff} | "
      f"{e['fixed']} | {e['broken']} |"
    )
  r = results["restart"]
  lines += [
    "",
    f"Restart: the learned store saved to {r['path']} (schema version {r['schema_version']}) and reloaded"
    f" makes the same decisions: {r['same_decisions']}.",
  ]
  return "\n".join(lines) + "\n"
