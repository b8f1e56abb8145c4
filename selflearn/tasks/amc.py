"""Precomputed query rewriting with an absorbing Markov chain (task `amc`).

Ponnusamy, Roshan Ghias, Guo, Sarikaya, "Feedback-Based Self-Learning in
Large-Scale Conversational AI Agents", AAAI-20 (IAAI), arXiv:1911.02557:

1. chain: from the TRAIN split, reformulation sessions pooled across users
   (`sessions.reformulation_sessions`; `pairs_source`: the observable
   time-gap heuristic, or the simulator's true rephrase pairs as an upper
   bound).  States are normalised recognised utterances (`states="text"`)
   or their deterministic interpretations (`"interpretation"`,
   `interpret.resolve` of the text; unparsable texts stay text states).
   Consecutive requests of a session add a transition; its last request is
   absorbed into success or failure (`Session.success`); a request outside
   every session is absorbed by its own friction (`sessions.friction`), so
   B reflects all traffic;
2. B = (I - Q)^-1 R (`amc.absorption_probabilities`); sources: states with
   success absorption below `max_source_success`; rewrite: the reachable
   state with the highest success absorption under the guardrails
   (`amc.select_rewrites`); an interpretation state is sent as its most
   frequent surface text;
3. evaluation on the TEST split: every request turn whose text is a source
   gets the rewrite; win if the rewrite serves the goal and the original did
   not (`interpret.rewrite_succeeds` / `original_succeeds`), loss if the
   original did and the rewrite does not, tie otherwise.

Nothing is fitted; the run is a deterministic function of the config.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
from typing import Any, Callable, Mapping, Optional, Sequence

import ml_collections
import numpy as np
import scipy.sparse as sp

from common import app
from selflearn import amc, interpret, sessions
from selflearn import training as train_lib

STATES = ("text", "interpretation")
PAIRS_SOURCES = ("gap", "truth")
SUCCESS, FAILURE = 0, 1
KINDS = ("global", "personal", "user_asr", "none")
PAPER = {"win_loss": 11.8, "defect_reduction": 0.30, "keynote_win_loss": 8.5}


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field, before anything is simulated or read."""
  from selflearn.configs import amc as amc_config  # pylint: disable=g-import-not-at-top

  app.check(config, "task", lambda v: v == "amc", "must be 'amc' (this config drives selflearn.precomputed)")
  app.check_known_fields(config, amc_config.get_config())
  app.check(config, "states", lambda v: v in STATES, f"must be one of {STATES}")
  app.check(config, "pairs_source", lambda v: v in PAIRS_SOURCES, f"must be one of {PAIRS_SOURCES}")
  for field in ("rephrase_gap", "stop_gap"):
    app.check(config, field, lambda v: _number(v) and v > 0, "must be a number > 0 (seconds)")
  app.check(config, "alpha", lambda v: _number(v) and v >= 0, "must be a number >= 0")
  app.check(config, "max_source_success", lambda v: _number(v) and 0 < v <= 1, "must be in (0, 1]")
  for field in ("min_source_support", "min_support", "bootstrap"):
    app.check(config, field, _count, "must be an integer >= 1")
  app.check(config, "min_gain", lambda v: _number(v) and 0 <= v < 1, "must be in [0, 1)")
  app.check(config, "min_visits", lambda v: _number(v) and v >= 0, "must be a number >= 0")
  app.check(config, "same_family", lambda v: isinstance(v, bool), "must be True or False")
  app.check(config, "tol", lambda v: _number(v) and 0 < v < 1e-3, "must be in (0, 1e-3)")
  app.check(config, "sweep.min_support", lambda v: len(v) >= 1 and all(_count(x) for x in v), "must list integers >= 1")
  app.check(
    config, "sweep.min_gain", lambda v: len(v) >= 1 and all(_number(x) and 0 <= x < 1 for x in v), "must list [0, 1)"
  )
  app.check(
    config, "sweep.min_visits", lambda v: len(v) >= 1 and all(_number(x) and x >= 0 for x in v), "must list >= 0"
  )
  train_lib.validate_common(config, batch_unit="none")


def _number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _count(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool) and v >= 1


# --- the chain -------------------------------------------------------------------------


def normalise(text: str) -> str:
  return " ".join(text.lower().split())


def state_key(world, text: str, states: str) -> str:
  """The chain state of a recognised text: the text itself, or its (user-independent) interpretation."""
  text = normalise(text)
  if states == "text":
    return text
  it = interpret.resolve(world, text)
  if it is None:
    return "text:" + text
  return "interp:" + it.intent + "|" + ";".join(f"{k}={v}" for k, v in sorted(it.values.items()))


def episodes(dialogue: Mapping, *, pairs_source: str, rephrase_gap: float, stop_gap: float) -> list:
  """(request turn indices, success) of each session and of each request outside every session."""
  pairs = None
  if pairs_source == "truth":
    pairs = [(p["source_turn"], p["target_turn"]) for p in dialogue["truth"]["rephrase_pairs"]]
  found = sessions.reformulation_sessions(dialogue, pairs=pairs, rephrase_gap=rephrase_gap, stop_gap=stop_gap)
  out = [(list(s.turns), s.success) for s in found]
  inside = {i for s in found for i in s.turns}
  for i, t in enumerate(dialogue["turns"]):
    if sessions.is_request(t) and i not in inside:
      out.append(([i], not sessions.friction(dialogue, i, rephrase_gap=rephrase_gap, stop_gap=stop_gap)))
  return out


@dataclasses.dataclass
class Chain:
  """The counted chain: state keys, (Q, R), B, each state's support and most frequent surface text."""

  keys: list
  index: dict
  Q: sp.csr_matrix
  R: np.ndarray
  B: np.ndarray
  support: np.ndarray
  surface: list
  num_sessions: int
  num_transitions: int
  family: list  # each state's most frequent observed NLU domain family (`domain_family`)


def build_chain(dialogues: Sequence[Mapping], world, *, states: str, pairs_source: str, rephrase_gap: float,
                stop_gap: float, alpha: float = 0.0, tol: float = 1e-10) -> Chain:  # fmt: skip
  """Counts transitions and absorptions over the dialogues' episodes (pooled across users) and solves B."""
  edges: collections.Counter = collections.Counter()
  absorb: collections.Counter = collections.Counter()
  texts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  families: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  num_sessions = 0
  for d in dialogues:
    for turns, success in episodes(d, pairs_source=pairs_source, rephrase_gap=rephrase_gap, stop_gap=stop_gap):
      keys = []
      for i in turns:
        text = normalise(d["turns"][i]["asr"]["text"])
        keys.append(state_key(world, text, states))
        texts[keys[-1]][text] += 1
        families[keys[-1]][domain_family(d["turns"][i]["nlu"]["domain"])] += 1
      for a, b in zip(keys, keys[1:]):
        edges[a, b] += 1
      absorb[keys[-1], SUCCESS if success else FAILURE] += 1
      num_sessions += len(turns) > 1
  keys = sorted(texts)
  index = {k: i for i, k in enumerate(keys)}
  n = len(keys)
  pairs = sorted(edges)
  counts = sp.csr_matrix(
    ([edges[p] for p in pairs], ([index[a] for a, _ in pairs], [index[b] for _, b in pairs])), shape=(n, n)
  )
  A = np.zeros((n, 2))
  for (k, col), c in absorb.items():
    A[index[k], col] = c
  Q, R = amc.transition_matrices(counts, A, alpha=alpha)
  B = amc.absorption_probabilities(Q, R, tol=tol)
  support = np.array([sum(texts[k].values()) for k in keys])
  surface = [min(texts[k].items(), key=lambda kv: (-kv[1], kv[0]))[0] for k in keys]
  family = [min(families[k].items(), key=lambda kv: (-kv[1], kv[0]))[0] for k in keys]
  return Chain(keys, index, Q, R, B, support, surface, num_sessions, int(sum(edges.values())), family)


# Domain families of the same-family guardrail: media requests misrouted between music, video and
# books, and temperature questions between the weather and the oven, stay rewritable.
FAMILIES = {"music": "media", "video": "media", "books": "media", "weather": "temperature", "appliance": "temperature"}


def domain_family(domain: str) -> str:
  """The guardrail's family of an NLU domain (observed, not the truth)."""
  return FAMILIES.get(domain, domain)


def rewrite_table(chain: Chain, *, max_source_success: float, min_source_support: int, min_support: int,
                  min_gain: float, min_visits: float, visit_rows: Optional[sp.spmatrix] = None,
                  same_family: bool = False) -> list:  # fmt: skip
  """The rewrite table (one row per source with a rewrite), sorted by source.

  `same_family`: a rewrite must stay in the source's observed NLU domain family
  (the paper's same-domain guardrail; it stops sessions that chained two goals
  from pointing a request at an unrelated one).
  """
  fam = np.array(chain.family)
  allowed = (lambda s, cand: fam[cand] == fam[s]) if same_family else None
  sources = candidate_sources(chain, max_source_success=max_source_success, min_source_support=min_source_support)
  chosen = amc.select_rewrites(
    chain.B, chain.support, sources, Q=chain.Q, success=SUCCESS, min_support=min_support, min_gain=min_gain,
    min_visits=min_visits, visit_rows=visit_rows, allowed=allowed,
  )  # fmt: skip
  rows = []
  for s, j in sorted(chosen.items()):
    row = {
      "source": chain.keys[s],
      "source_text": chain.surface[s],
      "rewrite": chain.surface[j],
      "rewrite_state": chain.keys[j],
      "source_success": float(chain.B[s, SUCCESS]),
      "rewrite_success": float(chain.B[j, SUCCESS]),
      "source_support": int(chain.support[s]),
      "rewrite_support": int(chain.support[j]),
    }
    if visit_rows is not None:
      row["visits"] = float(visit_rows[sources.index(s), j])
    rows.append(row)
  return rows


def candidate_sources(chain: Chain, *, max_source_success: float, min_source_support: int) -> list[int]:
  ok = (chain.B[:, SUCCESS] < max_source_success) & (chain.support >= min_source_support)
  return [int(i) for i in np.flatnonzero(ok)]


# --- evaluation ------------------------------------------------------------------------


def judge(world, dialogue: Mapping, i: int, rewrite: str) -> str:
  """win / loss / tie of sending `rewrite` instead of request `i`'s recognised text."""
  new = interpret.rewrite_succeeds(world, dialogue, i, rewrite)
  old = interpret.original_succeeds(dialogue, i)
  return "win" if new and not old else "loss" if old and not new else "tie"


def _ratio(wins, losses):
  return float(wins / losses) if losses else float("inf") if wins else float("nan")


def evaluate(world, dialogues: Sequence[Mapping], rewrite_of: Callable[[str], Optional[str]], *,
             bootstrap: int = 0, seed: int = 0) -> dict[str, Any]:  # fmt: skip
  """Win/loss accounting of a rewrite function (recognised text -> rewrite or None) on held-out dialogues."""
  per_dialogue = np.zeros((len(dialogues), 2), np.int64)  # wins, losses
  requests = defects = triggered = before = after = 0
  kinds = {k: collections.Counter() for k in KINDS}
  labelled = exact = same_reading = 0
  for di, d in enumerate(dialogues):
    user = interpret.user_of(world, d["user_id"])
    for i, t in enumerate(d["turns"]):
      if not sessions.is_request(t):
        continue
      requests += 1
      old = interpret.original_succeeds(d, i)
      defects += not old
      rewrite = rewrite_of(t["asr"]["text"])
      if rewrite is None:
        continue
      triggered += 1
      new = interpret.rewrite_succeeds(world, d, i, rewrite)
      before += not old
      after += not new
      outcome = "win" if new and not old else "loss" if old and not new else "tie"
      per_dialogue[di] += (outcome == "win", outcome == "loss")
      kind = t["truth"]["rewrite_kind"] or "none"
      kinds[kind][outcome] += 1
      truth = t["truth"]["rewrite"]
      if truth is not None:
        labelled += 1
        exact += normalise(rewrite) == normalise(truth)
        ours = interpret.resolve(world, rewrite, user=user)
        same_reading += ours is not None and ours == interpret.resolve(world, truth, user=user)
  wins, losses = (int(x) for x in per_dialogue.sum(0))
  out = {
    "requests": requests,
    "triggered": triggered,
    "trigger_rate": triggered / requests if requests else 0.0,
    "wins": wins,
    "losses": losses,
    "ties": triggered - wins - losses,
    "win_loss": _ratio(wins, losses),
    "defect_rate_triggered_before": before / triggered if triggered else float("nan"),
    "defect_rate_triggered_after": after / triggered if triggered else float("nan"),
    "defect_reduction_triggered": (before - after) / before if before else float("nan"),
    "defect_rate_before": defects / requests if requests else float("nan"),
    "defect_rate_after": (defects - wins + losses) / requests if requests else float("nan"),
    "defect_reduction": (wins - losses) / defects if defects else float("nan"),
    "labelled_triggered": labelled,
    "precision_at_1_exact": exact / labelled if labelled else float("nan"),
    "precision_at_1_same_reading": same_reading / labelled if labelled else float("nan"),
    "by_kind": {k: {o: int(kinds[k][o]) for o in ("win", "loss", "tie")} for k in KINDS},
  }
  if bootstrap:
    out["win_loss_ci95"] = bootstrap_ci(per_dialogue, bootstrap, seed)
  return out


def bootstrap_ci(per_dialogue: np.ndarray, resamples: int, seed: int) -> list:
  """95% percentile interval of sum(wins) / sum(losses) over dialogues resampled with replacement."""
  n = per_dialogue.shape[0]
  if n == 0:
    return [float("nan"), float("nan")]
  rng = np.random.default_rng([seed, 2022])
  idx = rng.integers(0, n, size=(resamples, n))
  wins, losses = per_dialogue[idx, 0].sum(1), per_dialogue[idx, 1].sum(1)
  ratios = np.where(losses > 0, wins / np.maximum(losses, 1), np.inf)
  lo, hi = np.percentile(ratios, 2.5, method="lower"), np.percentile(ratios, 97.5, method="higher")
  return [float(lo), float(hi)]


def table_lookup(world, rows: Sequence[Mapping], states: str) -> Callable[[str], Optional[str]]:
  by_source = {r["source"]: r["rewrite"] for r in rows}
  return lambda text: by_source.get(state_key(world, text, states))


# --- the task --------------------------------------------------------------------------


def _guardrails(config, **override) -> dict:
  g = dict(
    max_source_success=config.max_source_success,
    min_source_support=config.min_source_support,
    min_support=config.min_support,
    min_gain=config.min_gain,
    min_visits=config.min_visits,
    same_family=config.same_family,
  )
  g.update(override)
  return g


def _chain(config, dialogues, world, *, states, pairs_source):
  return build_chain(dialogues, world, states=states, pairs_source=pairs_source, rephrase_gap=config.rephrase_gap,
                     stop_gap=config.stop_gap, alpha=config.alpha, tol=config.tol)  # fmt: skip


def _visits(chain, config):
  sources = candidate_sources(
    chain, max_source_success=config.max_source_success, min_source_support=config.min_source_support
  )
  return amc.visits(chain.Q, sources)


def _summary(ev: Mapping) -> dict:
  keys = ("triggered", "wins", "losses", "ties", "win_loss", "trigger_rate", "defect_reduction_triggered",
          "defect_reduction", "precision_at_1_same_reading")  # fmt: skip
  return {k: ev[k] for k in keys}


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, dialogues: train_lib.Dialogues) -> dict[str, Any]:
  """Builds the chain and rewrite table from the training split, judges it on the test split, writes results."""
  world = train_lib.world_of(config)
  train, test = dialogues.train, dialogues.test
  chain = _chain(config, train, world, states=config.states, pairs_source=config.pairs_source)
  visit_rows = _visits(chain, config)
  rows = rewrite_table(chain, **_guardrails(config), visit_rows=visit_rows)
  headline = evaluate(world, test, table_lookup(world, rows, config.states), bootstrap=config.bootstrap,
                      seed=config.seed)  # fmt: skip
  sweep = []
  for ms in config.sweep.min_support:
    for mg in config.sweep.min_gain:
      t = rewrite_table(chain, **_guardrails(config, min_support=ms, min_gain=mg), visit_rows=visit_rows)
      ev = evaluate(world, test, table_lookup(world, t, config.states))
      sweep.append(
        {"min_support": ms, "min_gain": mg, "min_visits": config.min_visits, "rules": len(t), **_summary(ev)}
      )
  for mv in config.sweep.min_visits:
    t = rewrite_table(chain, **_guardrails(config, min_visits=mv), visit_rows=visit_rows)
    ev = evaluate(world, test, table_lookup(world, t, config.states))
    sweep.append({"min_support": config.min_support, "min_gain": config.min_gain, "min_visits": mv, "rules": len(t),
                  **_summary(ev)})  # fmt: skip
  variants = []
  for pairs_source in PAIRS_SOURCES:
    for states in STATES:
      if (pairs_source, states) == (config.pairs_source, config.states):
        c, t, ev = chain, rows, headline
      else:
        c = _chain(config, train, world, states=states, pairs_source=pairs_source)
        t = rewrite_table(c, **_guardrails(config), visit_rows=_visits(c, config))
        ev = evaluate(world, test, table_lookup(world, t, states), bootstrap=config.bootstrap, seed=config.seed)
      variants.append({"pairs_source": pairs_source, "states": states, "num_states": len(c.keys), "rules": len(t),
                       "win_loss_ci95": ev["win_loss_ci95"], **_summary(ev)})  # fmt: skip
  results = {
    "task": "amc",
    "states": config.states,
    "pairs_source": config.pairs_source,
    "guardrails": _guardrails(config),
    "train_dialogues": len(train),
    "test_dialogues": len(test),
    "chain": {
      "num_states": len(chain.keys),
      "num_edges": int(chain.Q.nnz),
      "num_sessions": chain.num_sessions,
      "num_transitions": chain.num_transitions,
      "num_sources": len(
        candidate_sources(
          chain, max_source_success=config.max_source_success, min_source_support=config.min_source_support
        )
      ),  # fmt: skip
      "rules": len(rows),
    },
    "test": headline,
    "sweep": sweep,
    "variants": variants,
    "paper": PAPER,
  }
  results = _jsonable(results)
  (workdir / "rewrites.json").write_text(json.dumps(rows, indent=2, sort_keys=True))
  train_lib.write_results(workdir, results, render(results))
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
    f"| precision@1 vs the simulator's rewrite: exact / same reading | {_fmt(h['precision_at_1_exact'], '.3f')} /"
    f" {_fmt(h['precision_at_1_same_reading'], '.3f')} (of {h['labelled_triggered']}) | |",
    "",
    "By the simulator's rewrite kind of the triggered turn (none: no fixable defect):",
    "",
    "| kind | wins | losses | ties |",
    "|---|---|---|---|",
  ]
  for k in KINDS:
    b = h["by_kind"][k]
    lines.append(f"| {k} | {b['win']} | {b['loss']} | {b['tie']} |")
  lines += [
    "",
    "Guardrails (other settings as configured):",
    "",
    "| min_support | min_gain | min_visits | rules | triggered | wins | losses | win/loss | defect red. (trig.) |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in results["sweep"]:
    lines.append(
      f"| {r['min_support']} | {r['min_gain']} | {r['min_visits']} | {r['rules']} | {r['triggered']} | {r['wins']} |"
      f" {r['losses']} | {_fmt(r['win_loss'])} | {_fmt(r['defect_reduction_triggered'], '.1%')} |"
    )
  lines += [
    "",
    "Sessions and states (configured guardrails):",
    "",
    "| sessions | states | chain states | rules | triggered | win/loss (95% CI) | defect red. (trig.) | overall |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for r in results["variants"]:
    vci = r["win_loss_ci95"] or [None, None]
    lines.append(
      f"| {r['pairs_source']} | {r['states']} | {r['num_states']} | {r['rules']} | {r['triggered']} |"
      f" {_fmt(r['win_loss'])} ({r['wins']}:{r['losses']}; {_fmt(vci[0])}-{_fmt(vci[1])}) |"
      f" {_fmt(r['defect_reduction_triggered'], '.1%')} | {_fmt(r['defect_reduction'], '.1%')} |"
    )
  return "\n".join(lines) + "\n"
