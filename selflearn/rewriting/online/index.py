"""The indexes of online rewriting and the candidates they give a request.

The **global index** holds the distinct frictionless request texts of all
users (count, success rate, NLU domain and slots); the **personal index**
each user's own (use times: only uses before a query count).  A `Retriever`
embeds both with the trained dual encoder (`retrieval`) and
`candidate_lists` gives each query its list: pass-through first, then the
global top-k (and, for the personal layer, the user's own top-k), as
`ranker.Candidate`s with their metadata.  `retrieval_recall` is the
encoder's recall@k on held-out pairs next to an untrained encoder and
rapidfuzz.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any, Mapping, Optional, Sequence

import ml_collections
import numpy as np
from rapidfuzz import fuzz, process

from selflearn.rewriting.online import mining, ranker, retrieval
from selflearn.signals import sessions


@dataclasses.dataclass
class GlobalIndex:
  """Distinct frictionless request texts across users (most frequent first) and their metadata."""

  texts: list[str]
  count: np.ndarray  # frictionless requests with the text
  uses: np.ndarray  # requests with the text
  domain: list[str]
  slots: list[dict]
  row: dict[str, int]


@dataclasses.dataclass
class PersonalIndex:
  """Per user: text -> sorted times of the user's frictionless requests with it, plus NLU metadata."""

  times: dict[str, dict[str, list[float]]]
  all_times: dict[str, list[float]]
  meta: dict[str, tuple[str, dict]]  # text -> (domain, slots) as first seen on success
  rows: list[tuple[str, str]]  # (user, text): the rows of the personal retrieval index

  def history(self, user: str, t: float) -> int:
    """The user's frictionless requests before time `t`."""
    return bisect.bisect_left(self.all_times.get(user, []), t)

  def uses(self, user: str, text: str, t: float) -> tuple[int, float]:
    """(uses before `t`, days since the last one)."""
    times = self.times.get(user, {}).get(text, [])
    n = bisect.bisect_left(times, t)
    return n, ((t - times[n - 1]) / 86400.0 if n else 0.0)


def build_indexes(dialogues: Sequence[Mapping], *, rephrase_gap: float = 15.0) -> tuple[GlobalIndex, PersonalIndex]:
  """The global and personal indexes of `dialogues` (observations only)."""
  count: dict[str, int] = {}
  uses: dict[str, int] = {}
  meta: dict[str, tuple[str, dict]] = {}
  times: dict[str, dict[str, list[float]]] = {}
  for d in dialogues:
    ok = set(mining.successful_requests(d, rephrase_gap=rephrase_gap))
    for i, t in enumerate(d["turns"]):
      if not sessions.is_request(t):
        continue
      text = t["asr"]["text"]
      uses[text] = uses.get(text, 0) + 1
      if i in ok:
        count[text] = count.get(text, 0) + 1
        meta.setdefault(text, (t["nlu"]["domain"], dict(t["nlu"]["slots"])))
        times.setdefault(d["user_id"], {}).setdefault(text, []).append(float(t["timestamp"]))
  texts = sorted(count, key=lambda s: (-count[s], s))
  gi = GlobalIndex(
    texts=texts,
    count=np.asarray([count[s] for s in texts], np.int64),
    uses=np.asarray([uses[s] for s in texts], np.int64),
    domain=[meta[s][0] for s in texts],
    slots=[meta[s][1] for s in texts],
    row={s: r for r, s in enumerate(texts)},
  )
  for per in times.values():
    for v in per.values():
      v.sort()
  all_times = {u: sorted(x for v in per.values() for x in v) for u, per in times.items()}
  rows = [(u, s) for u in sorted(times) for s in sorted(times[u])]
  return gi, PersonalIndex(times, all_times, meta, rows)


@dataclasses.dataclass
class PersonalSlices:
  """The personal rows' vectors grouped by user: a query scores only its own user's slice (no scan over all users).

  `spans[user] = (start, end)` rows of `vectors`; a user's rows are
  contiguous (`PersonalIndex.rows` is sorted by user), so a lookup costs
  the user's own rows whatever the number of users.
  """

  vectors: np.ndarray  # [rows, D] float32
  spans: dict[str, tuple[int, int]]

  @classmethod
  def build(cls, rows: Sequence[tuple[str, str]], vectors: np.ndarray) -> "PersonalSlices":
    spans: dict[str, tuple[int, int]] = {}
    for r, (user, _) in enumerate(rows):
      a, _ = spans.get(user, (r, r))
      if user in spans and spans[user][1] != r:
        raise ValueError(f"personal rows of user {user!r} are not contiguous")
      spans[user] = (a, r + 1)
    return cls(np.asarray(vectors, np.float32), spans)

  def search(self, queries: np.ndarray, users: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the top-k rows of its user's slice by inner product (-inf / -1 beyond the user's rows)."""
    scores = np.full((len(users), k), -np.inf, np.float32)
    rows = np.full((len(users), k), -1, np.int32)
    for n, user in enumerate(users):
      a, b = self.spans.get(user, (0, 0))
      if b <= a:
        continue
      s = self.vectors[a:b] @ np.asarray(queries[n], np.float32)
      order = np.argsort(-s, kind="stable")[:k]
      scores[n, : order.size] = s[order]
      rows[n, : order.size] = a + order
    return scores, rows


@dataclasses.dataclass
class Retriever:
  """The trained encoder with its global and personal search indexes."""

  network: Any
  params: Any
  config: ml_collections.ConfigDict
  gi: GlobalIndex
  pi: PersonalIndex
  emb_fn: Any  # texts -> frozen sentence embeddings or None
  g_index: Optional[retrieval.Index] = None
  p_index: Optional[PersonalSlices] = None

  def embed(self, texts: Sequence[str]) -> np.ndarray:
    r = self.config.retrieval
    ids = retrieval.featurize(texts, num_buckets=r.num_buckets, max_ngrams=r.max_ngrams)
    return retrieval.encode(self.network, self.params, ids, self.emb_fn(texts))

  def build(self, *, bucketed: bool = False, backend: str = "jax") -> "Retriever":
    """Embeds the global index and the personal rows (per-user slices).

    `backend`: "jax" (exact search, `retrieval.Index`) or "faiss_flat" /
    "faiss_hnsw" / "faiss_ivf" (`retrieval.build_faiss_index`).
    """
    mesh = retrieval.rows_mesh()
    chunk = self.config.retrieval.chunk
    vectors = self.embed(self.gi.texts)
    if backend == "jax":
      self.g_index = retrieval.build_index(vectors, chunk=chunk, mesh=mesh, bucketed=bucketed)
    elif backend.startswith("faiss_") and backend[6:] in retrieval.FAISS_KINDS:
      self.g_index = retrieval.build_faiss_index(vectors, kind=backend[6:])
    else:
      raise ValueError(f"backend must be jax or faiss_<{'|'.join(retrieval.FAISS_KINDS)}>, got {backend!r}")
    self.p_index = PersonalSlices.build(self.pi.rows, self.embed([s for _, s in self.pi.rows]))
    return self


def _global_candidate(gi: GlobalIndex, text: str, **kw) -> ranker.Candidate:
  row = gi.row.get(text)
  if row is None:
    return ranker.Candidate(text=text, **kw)
  meta = dict(
    global_count=int(gi.count[row]), global_uses=int(gi.uses[row]), domain=gi.domain[row], slots=gi.slots[row]
  )
  meta.update(kw)
  return ranker.Candidate(text=text, in_global=True, **meta)


def _with_personal(c: ranker.Candidate, pi: PersonalIndex, q: ranker.Query) -> ranker.Candidate:
  n, days = pi.uses(q.user_id, c.text, q.time)
  if not n:
    return dataclasses.replace(c, personal_total=pi.history(q.user_id, q.time))
  domain, slots = pi.meta[c.text]
  return dataclasses.replace(
    c,
    in_personal=True,
    personal_count=n,
    personal_total=pi.history(q.user_id, q.time),
    personal_days=days,
    domain=c.domain or domain,
    slots=c.slots or slots,
  )


def candidate_lists(ret: Retriever, queries: Sequence[ranker.Query], *, personal: bool) -> list[list[ranker.Candidate]]:
  """Per query: pass-through first, then the global top-k (and, with `personal`, the user's own top-k)."""
  k = ret.config.retrieval.k
  if not queries:
    return []
  q_emb = ret.embed([q.text for q in queries])
  g_scores, g_rows = retrieval.search(ret.g_index, q_emb, min(k + 1, max(len(ret.gi.texts), 1)))
  if personal and ret.pi.rows:
    p_scores, p_rows = ret.p_index.search(q_emb, [q.user_id for q in queries], 2 * k + 1)
  out = []
  for n, q in enumerate(queries):
    source = _global_candidate(ret.gi, q.text, score=1.0, rank=0, is_source=True, domain=q.domain, slots=dict(q.slots))
    cands = [source]
    seen = {q.text: 0}
    for s, row in zip(g_scores[n], g_rows[n]):
      if row >= 0 and ret.gi.texts[row] not in seen and len(cands) <= k:
        seen[ret.gi.texts[row]] = len(cands)
        cands.append(_global_candidate(ret.gi, ret.gi.texts[row], score=float(s), rank=len(cands) - 1))
    if personal:
      cands = [_with_personal(c, ret.pi, q) for c in cands]
      added = 0
      for s, row in zip(p_scores[n], p_rows[n]):
        if row < 0 or added >= k:
          continue
        text = ret.pi.rows[row][1]
        c = _with_personal(ranker.Candidate(text=text), ret.pi, q)
        if not c.in_personal:  # only uses before the query count
          continue
        if text in seen:
          j = seen[text]
          if not cands[j].is_source:
            cands[j] = dataclasses.replace(cands[j], score=max(cands[j].score, float(s)))
          continue
        seen[text] = len(cands)
        g = _global_candidate(ret.gi, text, score=float(s), rank=added)
        cands.append(_with_personal(g, ret.pi, q))
        added += 1
    out.append(cands)
  return out


def fuzzy_topk(
  queries: Sequence[str], choices: Sequence[str], k: int, *, block_rows: int = 512, block_cols: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
  """(scores [n, k] int32, columns [n, k] int64): each query's `k` best rapidfuzz ratios over `choices`.

  Best first, ties to the lower column (the order of a stable argsort of the
  whole row); `k` is capped at `len(choices)`.  Tiled: one `process.cdist`
  block of `block_rows` x `block_cols` at a time, merged into a running
  top-k per row with `np.argpartition`, so memory is O(block_rows x
  block_cols + n x k), never queries x choices.
  """
  n, m = len(queries), len(choices)
  k = min(k, m)
  scores, cols = np.full((n, k), -1, np.int32), np.full((n, k), -1, np.int64)
  if not n or not k:
    return scores, cols
  for r0 in range(0, n, block_rows):
    rows = queries[r0 : r0 + block_rows]
    best = None  # [rows, <= k] keys (100 - score) * m + column: smaller is better, unique per row
    for c0 in range(0, m, block_cols):
      block = process.cdist(rows, choices[c0 : c0 + block_cols], scorer=fuzz.ratio, dtype=np.int32)
      key = (100 - block).astype(np.int64) * m + np.arange(c0, c0 + block.shape[1], dtype=np.int64)
      del block
      if best is not None:
        key = np.concatenate([best, key], axis=1)
      if key.shape[1] > k:
        key = np.take_along_axis(key, np.argpartition(key, k - 1, axis=1)[:, :k], axis=1)
      best = key
    best.sort(axis=1)
    scores[r0 : r0 + len(rows)] = 100 - best // m
    cols[r0 : r0 + len(rows)] = best % m
  return scores, cols


def hard_negatives(
  positives: Sequence[str],
  sources: Sequence[str],
  choices: Sequence[str],
  *,
  block_rows: int = 512,
  block_cols: int = 4096,
) -> list[str]:
  """Per pair, the choice closest in spelling (rapidfuzz ratio) to its positive that is neither it nor the source.

  Ties go to the earlier choice; `choices[0]` when every choice is excluded.
  From a running top-3 per pair (`fuzzy_topk`): at most the positive and the
  source can be excluded when the choices are distinct; a pair whose top 3
  are all excluded (repeated choices) is scored against every choice alone.
  """
  if not choices:
    raise ValueError("hard_negatives: no choices")
  _, top = fuzzy_topk(positives, choices, 3, block_rows=block_rows, block_cols=block_cols)
  out = []
  for pos, src, row in zip(positives, sources, top):
    pick = next((choices[j] for j in row if choices[j] not in (pos, src)), None)
    if pick is None and len(choices) > len(row):  # only with repeated choices: this one row in full
      _, order = fuzzy_topk([pos], choices, len(choices), block_rows=1, block_cols=block_cols)
      pick = next((choices[j] for j in order[0] if choices[j] not in (pos, src)), None)
    out.append(choices[0] if pick is None else pick)
  return out


def retrieval_recall(ret: Retriever, pairs: Sequence[mining.Pair], k: int, params=None) -> dict[str, Any]:
  """Recall@k of held-out pairs whose target is in the global index: encoder, untrained encoder, rapidfuzz."""
  covered = [p for p in pairs if p.target_text in ret.gi.row]
  out: dict[str, Any] = {"pairs": len(pairs), "target_in_index": len(covered)}
  if not covered:
    return out
  targets = np.asarray([ret.gi.row[p.target_text] for p in covered])
  queries = [p.source_text for p in covered]
  _, rows = retrieval.search(ret.g_index, ret.embed(queries), k)
  out["encoder"] = retrieval.recall_at_k(rows, targets)
  if params is not None:
    untrained = dataclasses.replace(ret, params=params)
    index = retrieval.build_index(untrained.embed(ret.gi.texts), chunk=ret.config.retrieval.chunk)
    _, rows = retrieval.search(index, untrained.embed(queries), k)
    out["untrained_encoder"] = retrieval.recall_at_k(rows, targets)
  _, rows = fuzzy_topk(queries, ret.gi.texts, k)  # tiled running top-k, never a queries x index matrix
  out["rapidfuzz_ratio"] = retrieval.recall_at_k(rows, targets)
  return out
