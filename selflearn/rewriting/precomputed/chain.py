"""The absorbing Markov chain of precomputed query rewriting, counted from reformulation sessions.

Ponnusamy, Roshan Ghias, Guo, Sarikaya, "Feedback-Based Self-Learning in
Large-Scale Conversational AI Agents", AAAI-20 (IAAI), arXiv:1911.02557.
From the training split, reformulation sessions pooled across users
(`sessions.reformulation_sessions`; `pairs_source`: the observable time-gap
heuristic, the rephrase detector's predicted pairs (`"detector"`, given per
dialogue by the caller, cross-fitted: `rewriting.rephrase.crossfit`), or the
true rephrase pairs as an upper bound).  States are
normalised recognised utterances (`states="text"`) or their interpretations
(`"interpretation"`: an `interpret` function, text -> reading, given by the
caller; unparsable texts stay text states).  Consecutive requests of a
session add a transition; its last request is absorbed into success or
failure (`Session.success`); a request outside every session is absorbed by
its own friction (`sessions.friction`), so B reflects all traffic.
`build_chain` solves B = (I - Q)^-1 R with `amc.absorption_probabilities`;
`table` picks the rewrites.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from selflearn.data import truth as truth_lib
from selflearn.rewriting.precomputed import amc
from selflearn.signals import sessions

STATES = ("text", "interpretation")
PAIRS_SOURCES = ("gap", "truth", "detector")
SUCCESS, FAILURE = 0, 1
# text -> a reading with `intent` and `values` (e.g. the judge's `resolve`), or None when nothing parses.
Interpret = Callable[[str], Optional[object]]


def normalise(text: str) -> str:
  return " ".join(text.lower().split())


def state_key(text: str, states: str, interpret: Optional[Interpret] = None) -> str:
  """The chain state of a recognised text: the text itself, or its (user-independent) interpretation."""
  text = normalise(text)
  if states == "text":
    return text
  if interpret is None:
    raise ValueError('states="interpretation" needs an `interpret` function (text -> reading or None)')
  it = interpret(text)
  if it is None:
    return "text:" + text
  return "interp:" + it.intent + "|" + ";".join(f"{k}={v}" for k, v in sorted(it.values.items()))


def episodes(dialogue: Mapping, *, pairs_source: str, rephrase_gap: float, stop_gap: float, pairs=None) -> list:
  """(request turn indices, success) of each session and of each request outside every session.

  `pairs`: the dialogue's detected (source, target) pairs, for `pairs_source="detector"`.
  """
  if pairs_source == "detector":
    if pairs is None:
      raise ValueError('pairs_source="detector" needs the detected pairs of each dialogue (`pairs`)')
  else:
    pairs = truth_lib.rephrase_links(dialogue) if pairs_source == "truth" else None
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
  slot_types: list = dataclasses.field(default_factory=list)  # each state's most frequent observed NLU slot names


def build_chain(dialogues: Sequence[Mapping], *, states: str, pairs_source: str, rephrase_gap: float, stop_gap: float,
                alpha: float = 0.0, tol: float = 1e-10, interpret: Optional[Interpret] = None,
                pairs: Optional[Sequence] = None) -> Chain:  # fmt: skip
  """Counts transitions and absorptions over the dialogues' episodes (pooled across users) and solves B.

  `interpret` (text -> reading with `intent` and `values`, or None) gives
  the states of `states="interpretation"`; `pairs` (per dialogue, the
  detected (source, target) pairs) the sessions of `pairs_source="detector"`.
  """
  if pairs is not None and len(pairs) != len(dialogues):
    raise ValueError(f"pairs: {len(pairs)} lists for {len(dialogues)} dialogues")
  edges: collections.Counter = collections.Counter()
  absorb: collections.Counter = collections.Counter()
  texts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  families: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  slot_types: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  num_sessions = 0
  for di, d in enumerate(dialogues):
    found = pairs[di] if pairs is not None else None
    for turns, success in episodes(
      d, pairs_source=pairs_source, rephrase_gap=rephrase_gap, stop_gap=stop_gap, pairs=found
    ):
      keys = []
      for i in turns:
        text = normalise(d["turns"][i]["asr"]["text"])
        keys.append(state_key(text, states, interpret))
        texts[keys[-1]][text] += 1
        families[keys[-1]][domain_family(d["turns"][i]["nlu"]["domain"])] += 1
        slot_types[keys[-1]][",".join(sorted(d["turns"][i]["nlu"].get("slots") or {}))] += 1
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
  slots = [min(slot_types[k].items(), key=lambda kv: (-kv[1], kv[0]))[0] for k in keys]
  return Chain(keys, index, Q, R, B, support, surface, num_sessions, int(sum(edges.values())), family, slots)


# Domain families of the same-family guardrail: media requests misrouted between music, video and
# books, and temperature questions between the weather and the oven, stay rewritable.
FAMILIES = {"music": "media", "video": "media", "books": "media", "weather": "temperature", "appliance": "temperature"}


def domain_family(domain: str) -> str:
  """The guardrail's family of an NLU domain (observed, not the truth)."""
  return FAMILIES.get(domain, domain)
