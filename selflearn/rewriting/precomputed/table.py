"""The precomputed rewrite table: one rewrite per failing source state, under guardrails.

Sources are states with success absorption below `max_source_success`
(`candidate_sources`); a source's rewrite is the reachable state with the
highest success absorption under the guardrails of `amc.select_rewrites`
(support, gain, expected visits, and optionally the same observed NLU domain
family and the similarity guard, `similarity`); an interpretation state is sent
as its most frequent surface text.
`table_lookup` turns the table into a recognised text -> rewrite function.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import scipy.sparse as sp
from rapidfuzz import fuzz

from selflearn.rewriting.precomputed import amc
from selflearn.rewriting.precomputed import chain as chain_lib


def rewrite_table(chain: chain_lib.Chain, *, max_source_success: float, min_source_support: int, min_support: int,
                  min_gain: float, min_visits: float, visit_rows: Optional[sp.spmatrix] = None,
                  same_family: bool = False, min_similarity: Optional[float] = None) -> list:  # fmt: skip
  """The rewrite table (one row per source with a rewrite), sorted by source.

  `same_family`: a rewrite must stay in the source's observed NLU domain family
  (the paper's same-domain guardrail; it stops sessions that chained two goals
  from pointing a request at an unrelated one).  `min_similarity` (None: off):
  the similarity guard, `similarity(chain, s, j) >= min_similarity`.
  """
  fam = np.array(chain.family)
  checks = []
  if same_family:
    checks.append(lambda s, cand: fam[cand] == fam[s])
  if min_similarity is not None:
    checks.append(lambda s, cand: similarities(chain, s, cand) >= min_similarity)
  allowed = (lambda s, cand: np.logical_and.reduce([c(s, cand) for c in checks])) if checks else None
  sources = candidate_sources(chain, max_source_success=max_source_success, min_source_support=min_source_support)
  chosen = amc.select_rewrites(
    chain.B, chain.support, sources, Q=chain.Q, success=chain_lib.SUCCESS, min_support=min_support, min_gain=min_gain,
    min_visits=min_visits, visit_rows=visit_rows, allowed=allowed,
  )  # fmt: skip
  rows = []
  position = {s: k for k, s in enumerate(sources)}
  for s, j in sorted(chosen.items()):
    row = {
      "source": chain.keys[s],
      "source_text": chain.surface[s],
      "rewrite": chain.surface[j],
      "rewrite_state": chain.keys[j],
      "source_success": float(chain.B[s, chain_lib.SUCCESS]),
      "rewrite_success": float(chain.B[j, chain_lib.SUCCESS]),
      "source_support": int(chain.support[s]),
      "rewrite_support": int(chain.support[j]),
    }
    if visit_rows is not None:
      row["visits"] = float(visit_rows[position[s], j])
    rows.append(row)
  return rows


def similarity(chain: chain_lib.Chain, s: int, j: int) -> float:
  """The similarity guard's score of rewriting state `s` as state `j`: -1, or in [0, 1].

  -1 (never passes the guard) unless the rewrite keeps the source's intent family and entity types, as
  the log observes them (each state's most frequent NLU domain family and set
  of NLU slot names; a source with no slot observed constrains no type);
  otherwise the normalised edit similarity of their surface
  texts (rapidfuzz `ratio` / 100).
  """
  if chain.family[s] != chain.family[j] or (chain.slot_types[s] and chain.slot_types[s] != chain.slot_types[j]):
    return -1.0
  return fuzz.ratio(chain.surface[s], chain.surface[j]) / 100.0


def similarities(chain: chain_lib.Chain, sources: np.ndarray, candidates: np.ndarray) -> np.ndarray:
  """`similarity` pair by pair (cached on the chain: a guardrail sweep asks for the same pairs again)."""
  cache = chain.__dict__.setdefault("_similarity", {})
  out = np.empty(len(sources))
  for n, (s, j) in enumerate(zip(sources.tolist(), candidates.tolist())):
    v = cache.get((s, j))
    if v is None:
      v = cache[s, j] = similarity(chain, s, j)
    out[n] = v
  return out


def candidate_sources(chain: chain_lib.Chain, *, max_source_success: float, min_source_support: int) -> list[int]:
  """States that may get a rewrite: success absorption below `max_source_success`, support >= `min_source_support`."""
  ok = (chain.B[:, chain_lib.SUCCESS] < max_source_success) & (chain.support >= min_source_support)
  return [int(i) for i in np.flatnonzero(ok)]


def source_visits(chain: chain_lib.Chain, *, max_source_success: float, min_source_support: int) -> sp.csr_matrix:
  """Expected visits N[s, :] from each candidate source (the `min_visits` guardrail's rows)."""
  sources = candidate_sources(chain, max_source_success=max_source_success, min_source_support=min_source_support)
  return amc.visits(chain.Q, sources)


def table_lookup(
  rows: Sequence[Mapping], states: str, interpret: Optional[chain_lib.Interpret] = None
) -> Callable[[str], Optional[str]]:
  """The table as a function: recognised text -> its rewrite, or None when its state is not a source."""
  by_source = {r["source"]: r["rewrite"] for r in rows}
  return lambda text: by_source.get(chain_lib.state_key(text, states, interpret))
