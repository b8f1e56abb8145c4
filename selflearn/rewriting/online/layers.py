"""The global and personal layers of online rewriting: decisions, fallback and the over-personalisation guard.

The global layer rewrites when the ranker's best global candidate beats
pass-through by a threshold (`decide_global`).  The personal layer merges
the user's own candidates with the global ones (a second ranker) when the
user has at least `min_personal_history` earlier successful requests (else
it falls back to the global decision); a personal override of the global
decision passes the **guard** (it must beat the global choice by a margin,
stay in the query's intent family, keep its entities, and a user's dominant
item needs a near-verbatim match: the keynote's "We Don't Talk about Bruno"
user asking for "bruno mars").  `tune_threshold` picks a layer's threshold
on validation traffic with a caller-given judge.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import ml_collections
import numpy as np
from rapidfuzz import fuzz

from selflearn.rewriting.online import ranker


def guard(
  query: ranker.Query, cand: ranker.Candidate, margin: float, config: ml_collections.ConfigDict
) -> Optional[str]:
  """None when a personal override `cand` of the global decision may stand, else the reason it may not.

  `margin`: the override's ranker logit minus that of the global decision in
  the merged list.
  """
  g = config.guard
  if margin < g.margin:
    return "margin"
  if cand.domain and ranker.family(cand.domain) != ranker.family(query.domain):
    return "intent_family"
  if ranker.entity_similarity(query.slots, query.text, cand.slots, cand.text) < g.min_entity:
    return "entity"
  share = cand.personal_count / cand.personal_total if cand.personal_total else 0.0
  if share >= g.dominant_share and fuzz.ratio(query.text, cand.text) < g.dominant_ratio:
    return "dominant_item"
  return None


@dataclasses.dataclass
class Decisions:
  """Per query: the text sent (None: pass through), and the personal layer's accounting."""

  texts: list[Optional[str]]
  source: list[str]  # "none" | "global" | "personal" | "fallback" | "guard:<reason>"


def decide_global(lists, logits: np.ndarray, threshold: float) -> list[Optional[str]]:
  pos = ranker.choose(logits, threshold)
  return [None if p == 0 else lists[n][p].text for n, p in enumerate(pos)]


def decide_personal(
  queries: Sequence[ranker.Query],
  lists: Sequence[Sequence[ranker.Candidate]],
  logits: np.ndarray,
  threshold: float,
  global_texts: Sequence[Optional[str]],
  history: Sequence[int],
  config: ml_collections.ConfigDict,
) -> Decisions:
  """The personal layer: merged ranking, fallback on thin history, guarded overrides of the global decision."""
  pos = ranker.choose(logits, threshold)
  texts, source = [], []
  for n, q in enumerate(queries):
    g_text = global_texts[n]
    if history[n] < config.min_personal_history:
      texts.append(g_text)
      source.append("fallback")
      continue
    p = int(pos[n])
    p_text = None if p == 0 else lists[n][p].text
    if p_text == g_text or p == 0:
      texts.append(p_text)
      source.append("personal" if p_text != g_text else ("global" if g_text else "none"))
      continue
    g_pos = next((j for j, c in enumerate(lists[n]) if c.text == (g_text or q.text)), 0)
    reason = guard(q, lists[n][p], float(logits[n, p] - logits[n, g_pos]), config)
    if reason is None:
      texts.append(p_text)
      source.append("personal")
    else:
      texts.append(g_text)
      source.append(f"guard:{reason}")
  return Decisions(texts, source)


def tune_threshold(thresholds, decide, judge) -> tuple[float, dict[str, float]]:
  """The threshold with the fewest validation defects (ties: the highest, i.e. the most conservative)."""
  rates = {}
  for th in sorted(float(t) for t in thresholds):
    rates[th] = float(1.0 - judge(decide(th)).mean())
  best = min(rates.values())
  return max(t for t, v in rates.items() if v == best), {f"{t:g}": v for t, v in rates.items()}
