"""The online rewriter as a `Rewriter`: retrieval + listwise rankers, the global and personal layers, the guard.

A request is embedded by the trained dual encoder (`retrieval`), gets its
candidate lists from the global index and its user's slice of the personal
index (`index.candidate_lists`), is scored by the two rankers (`ranker`)
and decided by `layers` (global threshold; the personal layer with its
fallback on thin history and the over-personalisation guard).  The answer
is the personal layer's decision: `source="personal"` when a personal
candidate won, else `"global"`; the score is the chosen candidate's ranker
logit minus pass-through's (the quantity the threshold was tuned on).

Saved as `rewriter.json` (version, kind, the config fields it reads, the
thresholds, `now`), `index.json` (the global index and the personal
histories) and `params/` (the encoder's and both rankers' parameters,
through `common.checkpoint`); the index vectors are recomputed by the
encoder on load.  Updates without recompiling the search: `add_rewrites`
/ `remove_rewrites` change the global index inside its bucketed capacity
(`retrieval.add_rows`, `remove_rows`); `add_history` adds a user's (new
or existing) successful requests to the personal slices.  `backend`:
the global index's search, exact in JAX (default) or faiss
(`faiss_flat` exact, `faiss_hnsw` / `faiss_ivf` approximate; saved in the
manifest, `load(dir, backend=...)` overrides it).
"""

from __future__ import annotations

import bisect
import json
import os
import pathlib
from typing import Any, Optional, Sequence

import jax
import ml_collections
import numpy as np

from common import checkpoint
from selflearn.data import contract
from selflearn.rewriting import api
from selflearn.rewriting.online import index, layers, ranker, retrieval
from selflearn.signals import text_features

INDEX = "index.json"
PARAMS = "params"
CONFIG_FIELDS = ("seed", "rephrase_gap", "min_personal_history", "retrieval", "ranker", "guard")


def _subconfig(config) -> ml_collections.ConfigDict:
  d = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  return ml_collections.ConfigDict({k: d[k] for k in CONFIG_FIELDS})


def _networks(config, text_dim: int):
  r = config.retrieval
  encoder = retrieval.make_encoder(
    num_buckets=r.num_buckets, max_ngrams=r.max_ngrams, text_dim=text_dim,
    embed_dim=r.embed_dim, hidden_dim=r.hidden_dim, out_dim=r.out_dim,
  )  # fmt: skip
  m = 1 + 2 * r.k
  rank = ranker.make_ranker(hidden_dim=config.ranker.hidden_dim, max_candidates=m)
  return encoder, rank


def _embedder(kind: str):
  if kind == "none":
    return lambda texts: None
  return lambda texts: text_features.embed_texts(kind, list(texts))


class OnlineRewriter(api.Rewriter):
  """The trained online rewriter (see the module docstring)."""

  kind = "online"

  def __init__(self, *, config, params: dict, thresholds: tuple[float, float], gi: index.GlobalIndex,
               pi: index.PersonalIndex, text_dim: int = 0, now: Optional[float] = None, emb_fn=None,
               backend: str = "jax"):  # fmt: skip
    self.config = _subconfig(config)
    self.params = params  # {"encoder", "ranker_global", "ranker_personal"}
    self.thresholds = (float(thresholds[0]), float(thresholds[1]))
    self.text_dim = int(text_dim)
    self.encoder, self.ranker_net = _networks(self.config, self.text_dim)
    all_times = [t for ts in pi.all_times.values() for t in ts]
    self.now = float(now) if now is not None else (max(all_times) + 1.0 if all_times else 0.0)
    emb_fn = emb_fn or _embedder(self.config.retrieval.text_encoder)
    self.backend = backend
    self.ret = index.Retriever(self.encoder, params["encoder"], self.config, gi, pi, emb_fn)
    self.ret.build(bucketed=True, backend=backend)

  # --- serving ---------------------------------------------------------------------

  def _query(self, r: api.Request) -> ranker.Query:
    c = r.context
    t = c.get("timestamp")
    return ranker.Query(
      text=" ".join(r.utterance.split()),
      asr_confidence=float(c.get("asr_confidence") or 0.0),
      nlu_confidence=float(c.get("nlu_confidence") or 0.0),
      er_score=float(c.get("er_score") or 0.0),
      status=str(c.get("status") or ""),
      domain=str(c.get("domain") or ""),
      slots=dict(c.get("slots") or {}),
      user_id=r.user_id,
      time=self.now if t is None else contract.parse_timestamp(t),
    )

  def _logits(self, net_params, queries, lists) -> np.ndarray:
    feats, mask = ranker.feature_lists(queries, lists, 1 + 2 * self.config.retrieval.k)
    return ranker.score_lists(self.ranker_net, net_params, feats, mask)

  def rewrite(self, requests: Sequence[Any]) -> list[Optional[api.Rewrite]]:
    reqs = api.requests_of(requests)
    keep = [n for n, r in enumerate(reqs) if r.utterance.strip()]
    out: list[Optional[api.Rewrite]] = [None] * len(reqs)
    if not keep:
      return out
    queries = [self._query(reqs[n]) for n in keep]
    g_lists = index.candidate_lists(self.ret, queries, personal=False)
    p_lists = index.candidate_lists(self.ret, queries, personal=True)
    g_log = self._logits(self.params["ranker_global"], queries, g_lists)
    p_log = self._logits(self.params["ranker_personal"], queries, p_lists)
    g_texts = layers.decide_global(g_lists, g_log, self.thresholds[0])
    history = [self.ret.pi.history(q.user_id, q.time) for q in queries]
    dec = layers.decide_personal(queries, p_lists, p_log, self.thresholds[1], g_texts, history, self.config)
    for m, n in enumerate(keep):
      text = dec.texts[m]
      if text is None or text == queries[m].text:
        continue
      personal = dec.source[m] == "personal"
      lists, log = (p_lists, p_log) if personal else (g_lists, g_log)
      j = next(j for j, c in enumerate(lists[m]) if c.text == text)
      out[n] = api.Rewrite(text, float(log[m, j] - log[m, 0]), "personal" if personal else "global")
    return out

  # --- updates without recompiling the search ------------------------------------------

  def add_rewrites(self, texts: Sequence[str], *, domain: str = "", count: int = 1) -> None:
    """Adds rewrite targets to the global index (within its capacity: no recompilation)."""
    gi = self.ret.gi
    new = [t for t in dict.fromkeys(" ".join(s.split()) for s in texts) if t and t not in gi.row]
    if not new:
      return
    for t in new:
      gi.row[t] = len(gi.texts)
      gi.texts.append(t)
      gi.domain.append(domain)
      gi.slots.append({})
    gi.count = np.concatenate([gi.count, np.full(len(new), count, np.int64)])
    gi.uses = np.concatenate([gi.uses, np.full(len(new), count, np.int64)])
    self.ret.g_index = retrieval.add_rows(self.ret.g_index, self.ret.embed(new))

  def remove_rewrites(self, texts: Sequence[str]) -> None:
    """Masks rewrite targets out of the global index (never retrieved again; the slots stay)."""
    rows = [self.ret.gi.row[t] for t in texts if t in self.ret.gi.row]
    self.ret.g_index = retrieval.remove_rows(self.ret.g_index, rows)

  def add_history(self, user_id: str, texts: Sequence[str], times: Sequence[float], *, domain: str = "") -> None:
    """Adds a user's successful requests (a new user or more history) to the personal index's slices."""
    pi = self.ret.pi
    per = pi.times.setdefault(user_id, {})
    for text, t in zip(texts, times):
      text = " ".join(text.split())
      bisect.insort(per.setdefault(text, []), float(t))
      pi.meta.setdefault(text, (domain, {}))
    pi.all_times[user_id] = sorted(x for v in per.values() for x in v)
    pi.rows[:] = [(u, s) for u, s in pi.rows if u != user_id] + [(user_id, s) for s in sorted(per)]
    pi.rows.sort()
    self.ret.p_index = index.PersonalSlices.build(pi.rows, self.ret.embed([s for _, s in pi.rows]))

  # --- persistence ---------------------------------------------------------------------

  def _index_json(self) -> dict:
    gi, pi = self.ret.gi, self.ret.pi
    live = np.asarray(self.ret.g_index.valid)[: len(gi.texts)]
    return {
      "global": {
        "texts": gi.texts, "count": gi.count.tolist(), "uses": gi.uses.tolist(), "domain": gi.domain,
        "slots": gi.slots, "live": live.tolist(),
      },
      "personal": {"times": pi.times, "meta": {k: list(v) for k, v in pi.meta.items()}},
    }  # fmt: skip

  def save(self, directory: str | os.PathLike) -> pathlib.Path:
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint.Checkpointer(directory / PARAMS, keep=1)
    ckpt.save(0, self.params, force=True)
    ckpt.wait_until_finished()
    ckpt.close()
    api.write_json(directory / INDEX, self._index_json())
    self._write_manifest(
      directory, config=self.config.to_dict(), thresholds=list(self.thresholds), text_dim=self.text_dim,
      now=self.now, index=INDEX, params=PARAMS, backend=self.backend,
    )  # fmt: skip
    return directory

  def export_table(self, path: str | os.PathLike) -> pathlib.Path:
    """The global index's rewrite targets with their counts (the online rewriter has no fixed table)."""
    gi = self.ret.gi
    live = np.asarray(self.ret.g_index.valid)[: len(gi.texts)]
    rows = [
      {"text": t, "successes": int(gi.count[r]), "uses": int(gi.uses[r]), "domain": gi.domain[r]}
      for r, t in enumerate(gi.texts)
      if live[r]
    ]
    return api.write_json(pathlib.Path(path), rows)

  @classmethod
  def _load(cls, directory: pathlib.Path, manifest: dict, **kw) -> "OnlineRewriter":
    config = ml_collections.ConfigDict(manifest["config"])
    data = json.loads((directory / manifest["index"]).read_text())
    g = data["global"]
    gi = index.GlobalIndex(
      texts=list(g["texts"]), count=np.asarray(g["count"], np.int64), uses=np.asarray(g["uses"], np.int64),
      domain=list(g["domain"]), slots=[dict(s) for s in g["slots"]], row={t: r for r, t in enumerate(g["texts"])},
    )  # fmt: skip
    times = {u: {t: list(v) for t, v in per.items()} for u, per in data["personal"]["times"].items()}
    meta = {k: (v[0], dict(v[1])) for k, v in data["personal"]["meta"].items()}
    all_times = {u: sorted(x for v in per.values() for x in v) for u, per in times.items()}
    pi = index.PersonalIndex(times, all_times, meta, [(u, s) for u in sorted(times) for s in sorted(times[u])])
    encoder, rank = _networks(config, manifest["text_dim"])
    key = jax.random.PRNGKey(0)
    target = {"encoder": encoder.init(key), "ranker_global": rank.init(key), "ranker_personal": rank.init(key)}
    ckpt = checkpoint.Checkpointer(directory / manifest["params"], keep=1)
    params, step = ckpt.restore_latest(target)
    ckpt.close()
    if step is None:
      raise ValueError(f"{directory / manifest['params']}: no saved parameters")
    backend = kw.get("backend", manifest.get("backend", "jax"))
    out = cls(config=config, params=params, thresholds=tuple(manifest["thresholds"]), gi=gi, pi=pi,
              text_dim=manifest["text_dim"], now=manifest["now"], backend=backend)  # fmt: skip
    dead = [r for r, ok in enumerate(g.get("live", [])) if not ok]
    if dead:
      out.ret.g_index = retrieval.remove_rows(out.ret.g_index, dead)
    return out
