"""Online query rewriting (task `online`): retrieval + ranking, a global and a personal layer, simulated A/B.

The keynote's online rewriter, learnt from customers' own reformulations:

1. **Mining** (training split, observations only): a request that met
   friction -> the last request of its reformulation session when that one
   met none (`sessions.reformulation_sessions`, `pairs_source="gap"`); or,
   as an upper bound, the simulator's true rephrase pairs with truly
   successful targets (`"truth"`).  The **global index** holds the distinct
   frictionless request texts of all users (count, success rate, NLU domain
   and slots); the **personal index** each user's own (use times).
2. **Retrieval** (`selflearn.retrieval`): a dual encoder over hashed
   character n-grams trained on the mined pairs with the DPR loss (in-batch
   and hard negatives), exact top-k search.
3. **Ranking** (`selflearn.ranker`): a listwise MLP over fuzzy / phonetic /
   metadata features, trained on the mined pairs (the mined target) and on
   frictionless requests (pass through); it rewrites when the best
   candidate beats pass-through by a threshold tuned on the validation split.
4. **Layers**: the global layer ranks global candidates; the personal layer
   merges the user's own candidates with them (a second ranker) when the
   user has at least `min_personal_history` earlier successful requests
   (else it falls back to the global decision); a personal override of the
   global decision passes the **guard** (it must beat the global choice by
   a margin, stay in the query's intent family, keep its entities, and a
   user's dominant item needs a near-verbatim match: the keynote's "We Don't
   Talk about Bruno" user asking for "bruno mars").
5. **Simulated A/B** on the test split: every request turn (the same turns in
   every arm) is decided by each arm; a rewrite is judged by
   `interpret.rewrite_succeeds`, a pass-through by `interpret.original_succeeds`.
   Defect rates, paired differences with 95% bootstrap CIs over dialogues,
   relative reductions next to the keynote's -13% (global) and a further
   -4% (personal), win / loss counts and trigger rates.

Caveat: replaying logged turns ignores that a fixed request would not have
been followed by the user's rephrase; each logged turn counts once.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import pathlib
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from rapidfuzz import fuzz, process

from common import app
from selflearn import evaluation, interpret, ranker, retrieval, sessions, text_features
from selflearn import training as train_lib

KEYNOTE = {"global_relative_change": -0.13, "personal_further_relative_change": -0.04}
PAIRS_SOURCES = ("gap", "truth")
TEXT_ENCODERS = ("none", "random", "minilm")


# --- config ---------------------------------------------------------------------------------


def _pos_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field, before anything compiles."""
  from selflearn.configs import online as online_config  # pylint: disable=g-import-not-at-top

  app.check(config, "task", lambda v: v == "online", "must be 'online'")
  app.check_known_fields(config, online_config.get_config())
  app.check(config, "pairs_source", lambda v: v in PAIRS_SOURCES, f"must be one of {PAIRS_SOURCES}")
  app.check(config, "rephrase_gap", lambda v: v > 0, "must be > 0 seconds")
  app.check(config, "min_personal_history", lambda v: isinstance(v, int) and v >= 0, "must be an integer >= 0")
  r = "retrieval"
  for field in ("num_buckets", "max_ngrams", "embed_dim", "hidden_dim", "out_dim", "k", "chunk"):
    app.check(config, f"{r}.{field}", _pos_int, "must be an integer >= 1")
  app.check(config, f"{r}.num_buckets", lambda v: v >= 2, "must be >= 2")
  app.check(config, f"{r}.scale", lambda v: v > 0, "must be > 0")
  app.check(config, f"{r}.text_encoder", lambda v: v in TEXT_ENCODERS, f"must be one of {TEXT_ENCODERS}")
  for field in ("batch_size", "num_epochs"):
    app.check(config, f"ranker.{field}", _pos_int, "must be an integer >= 1")
  app.check(config, "ranker.hidden_dim", lambda v: isinstance(v, int) and v >= 0, "must be an integer >= 0")
  app.check(config, "ranker.passthrough_ratio", lambda v: v >= 0, "must be >= 0")
  app.check(config, "ranker.thresholds", lambda v: len(v) >= 1 and all(float(x) == x for x in v), "must be numbers")
  app.check(config, "guard.margin", lambda v: v >= 0, "must be >= 0")
  app.check(config, "guard.min_entity", lambda v: 0 <= v <= 1, "must be in [0, 1]")
  app.check(config, "guard.dominant_share", lambda v: 0 < v <= 1, "must be in (0, 1]")
  app.check(config, "guard.dominant_ratio", lambda v: 0 <= v <= 100, "must be in [0, 100]")
  app.check(config, "ab.num_bootstrap", _pos_int, "must be an integer >= 1")
  train_lib.validate_common(config, batch_unit="pairs")


# --- mining and indexes ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pair:
  """A mined (friction request -> successful reformulation) pair."""

  dialogue: int
  source: int
  target: int
  source_text: str
  target_text: str


def mine_pairs(dialogues: Sequence[Mapping], *, source: str = "gap", rephrase_gap: float = 15.0) -> list[Pair]:
  """(request that met friction -> the session's last request) for every successful session.

  `source="gap"` uses the observable sessions; `"truth"` chains the
  simulator's true rephrase pairs and keeps a session only when its last
  request truly succeeded.  Pairs with identical texts are dropped.
  """
  out = []
  for di, d in enumerate(dialogues):
    turns = d["turns"]
    if source == "truth":
      links = [(p["source_turn"], p["target_turn"]) for p in d["truth"]["rephrase_pairs"]]
      found = sessions.reformulation_sessions(d, pairs=links, rephrase_gap=rephrase_gap)
      found = [s for s in found if interpret.original_succeeds(d, s.turns[-1])]
    else:
      found = [s for s in sessions.reformulation_sessions(d, rephrase_gap=rephrase_gap) if s.success]
    for s in found:
      last = s.turns[-1]
      target = turns[last]["asr"]["text"]
      for i in s.turns[:-1]:
        if turns[i]["asr"]["text"] != target:
          out.append(Pair(di, i, last, turns[i]["asr"]["text"], target))
  return out


def successful_requests(dialogue: Mapping, *, rephrase_gap: float = 15.0) -> list[int]:
  """Request turns that met no observable friction."""
  return [
    i
    for i, t in enumerate(dialogue["turns"])
    if sessions.is_request(t) and not sessions.friction(dialogue, i, rephrase_gap=rephrase_gap)
  ]


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
    ok = set(successful_requests(d, rephrase_gap=rephrase_gap))
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


def _user_int(user: str) -> int:
  return int(user.lstrip("u"))


# --- candidates ----------------------------------------------------------------------------------


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
  p_index: Optional[retrieval.Index] = None

  def embed(self, texts: Sequence[str]) -> np.ndarray:
    r = self.config.retrieval
    ids = retrieval.featurize(texts, num_buckets=r.num_buckets, max_ngrams=r.max_ngrams)
    return retrieval.encode(self.network, self.params, ids, self.emb_fn(texts))

  def build(self) -> "Retriever":
    mesh = retrieval.rows_mesh()
    chunk = self.config.retrieval.chunk
    self.g_index = retrieval.build_index(self.embed(self.gi.texts), chunk=chunk, mesh=mesh)
    groups = np.asarray([_user_int(u) for u, _ in self.pi.rows], np.int32)
    self.p_index = retrieval.build_index(
      self.embed([s for _, s in self.pi.rows]), groups=groups, chunk=chunk, mesh=mesh
    )
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
    groups = np.asarray([_user_int(q.user_id) for q in queries], np.int32)
    p_scores, p_rows = retrieval.search(ret.p_index, q_emb, 2 * k + 1, query_groups=groups)
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


# --- the guard against over-personalisation ------------------------------------------------


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


# --- the A/B ---------------------------------------------------------------------------------------


def request_turns(dialogues: Sequence[Mapping]) -> list[tuple[int, int]]:
  """(dialogue, turn) of every request turn serving a goal: the A/B's traffic."""
  return [
    (di, i)
    for di, d in enumerate(dialogues)
    for i, t in enumerate(d["turns"])
    if t["truth"]["goal_id"] is not None and t["truth"]["attempt"] is not None and sessions.is_request(t)
  ]


def outcomes(world, dialogues, turns, texts: Sequence[Optional[str]]) -> np.ndarray:
  """Whether each turn served its goal under the arm's decision (None / the source text: pass through)."""
  out = np.zeros(len(turns), bool)
  for n, ((di, i), text) in enumerate(zip(turns, texts)):
    d = dialogues[di]
    if text is None or text == d["turns"][i]["asr"]["text"]:
      out[n] = interpret.original_succeeds(d, i)
    else:
      out[n] = interpret.rewrite_succeeds(world, d, i, text)
  return out


def paired_bootstrap(
  dialogue_of: np.ndarray, defect_a: np.ndarray, defect_b: np.ndarray, *, num: int, seed: int
) -> dict[str, float]:
  """Rates of arms a and b, b - a and (b - a) / a with 95% percentile CIs, resampling dialogues."""
  dialogues, inverse = np.unique(dialogue_of, return_inverse=True)
  (rate_a, rate_b), resampled = evaluation.bootstrap_rates(
    inverse, [defect_a, defect_b], num_groups=len(dialogues), samples=num, seed=seed
  )
  ra, rb = resampled[:, 0], resampled[:, 1]
  diff, rel = rb - ra, (rb - ra) / np.where(ra > 0, ra, np.nan)
  return {
    "rate_a": float(rate_a),
    "rate_b": float(rate_b),
    "diff": float(rate_b - rate_a),
    "diff_ci": [float(np.nanpercentile(diff, 2.5)), float(np.nanpercentile(diff, 97.5))],
    "relative": float((rate_b - rate_a) / rate_a) if rate_a else float("nan"),
    "relative_ci": [float(np.nanpercentile(rel, 2.5)), float(np.nanpercentile(rel, 97.5))],
    "wins": int(np.sum(defect_a & ~defect_b)),
    "losses": int(np.sum(~defect_a & defect_b)),
  }


def ab_report(
  dialogue_of: np.ndarray,
  success: Mapping[str, np.ndarray],
  triggered: Mapping[str, np.ndarray],
  *,
  num: int,
  seed: int,
) -> dict[str, Any]:
  """Per-arm defect and trigger rates and the paired comparisons of consecutive arms."""
  defect = {a: ~s for a, s in success.items()}
  arms = {
    a: {
      "defect_rate": float(defect[a].mean()) if len(defect[a]) else float("nan"),
      "defects": int(defect[a].sum()),
      "trigger_rate": float(triggered[a].mean()) if len(triggered[a]) else float("nan"),
    }
    for a in success
  }
  pairs = [("none", "global"), ("global", "personal"), ("none", "personal"), ("none", "oracle")]
  comps = {
    f"{a}_vs_{b}": paired_bootstrap(dialogue_of, defect[a], defect[b], num=num, seed=seed)
    for a, b in pairs
    if a in defect and b in defect
  }
  return {"turns": int(len(dialogue_of)), "dialogues": int(len(np.unique(dialogue_of))), "arms": arms, **comps}


# --- training -----------------------------------------------------------------------------------------------


def _stage_config(config, batch_size: int, n: int) -> ml_collections.ConfigDict:
  """The config a `fit` stage sees: `batch_size` clamped to the examples (a multiple of the devices)."""
  c = ml_collections.ConfigDict(config.to_dict())
  devices = jax.device_count()
  c.batch_size = max(devices, (min(batch_size, n) // devices) * devices)
  return c


def _pair_arrays(pairs: Sequence[Pair], gi: GlobalIndex, config, emb_fn) -> dict[str, np.ndarray]:
  """Encoder training arrays: query / positive / hard-negative n-gram ids, text ids (and embeddings)."""
  r = config.retrieval
  feat = lambda texts: retrieval.featurize(texts, num_buckets=r.num_buckets, max_ngrams=r.max_ngrams)
  q_texts = [p.source_text for p in pairs]
  c_texts = [p.target_text for p in pairs]
  vocab = {s: n for n, s in enumerate(sorted(set(c_texts) | set(gi.texts)))}
  # Hard negative: the index text closest in spelling to the positive (rapidfuzz ratio), not the source or itself.
  choices = gi.texts
  h_texts = []
  if choices:
    sims = process.cdist(c_texts, choices, scorer=fuzz.ratio, dtype=np.int32)
    for n, p in enumerate(pairs):
      order = np.argsort(-sims[n], kind="stable")
      h_texts.append(next((choices[j] for j in order if choices[j] not in (p.target_text, p.source_text)), choices[0]))
  else:
    h_texts = list(q_texts)
  vocab.update({s: len(vocab) + n for n, s in enumerate(sorted(set(h_texts) - set(vocab)))})
  out = {
    "q_ids": feat(q_texts),
    "c_ids": feat(c_texts),
    "h_ids": feat(h_texts),
    "c_tid": np.asarray([vocab[s] for s in c_texts], np.int32),
    "h_tid": np.asarray([vocab[s] for s in h_texts], np.int32),
  }
  if r.text_encoder != "none":
    out["q_emb"], out["c_emb"], out["h_emb"] = emb_fn(q_texts), emb_fn(c_texts), emb_fn(h_texts)
  return out


def train_encoder(config, stage_dir, train_pairs, val_pairs, gi, emb_fn, *, text_dim: int):
  r = config.retrieval
  network = retrieval.make_encoder(
    num_buckets=r.num_buckets, max_ngrams=r.max_ngrams, text_dim=text_dim,
    embed_dim=r.embed_dim, hidden_dim=r.hidden_dim, out_dim=r.out_dim,
  )  # fmt: skip
  if len(train_pairs) < 2:
    raise ValueError(f"only {len(train_pairs)} mined training pairs: simulate more dialogues (data.num_dialogues)")
  train = _pair_arrays(train_pairs, gi, config, emb_fn)
  val = _pair_arrays(val_pairs if len(val_pairs) >= 2 else train_pairs[:64], gi, config, emb_fn)
  loss = retrieval.make_loss(network, scale=r.scale, use_hard=r.hard_negatives)
  params, _ = train_lib.fit(
    stage_dir, network=network, loss_fn=loss,
    train={k: jnp.asarray(v) for k, v in train.items()}, val={k: jnp.asarray(v) for k, v in val.items()},
    config=_stage_config(config, config.batch_size, len(train_pairs)), num_epochs=config.num_epochs, seed=config.seed,
  )  # fmt: skip
  return network, params


def ranker_examples(ret: Retriever, dialogues, pairs: Sequence[Pair], *, personal: bool, ratio: float, seed: int):
  """Listwise examples: mined pairs (label: the target's position) and frictionless requests (label 0)."""
  queries, labels = [], []
  pos_q = [ranker.Query.of_turn(dialogues[p.dialogue], p.source) for p in pairs]
  rng = np.random.default_rng(seed)
  ok = [(di, i) for di, d in enumerate(dialogues) for i in successful_requests(d, rephrase_gap=ret.config.rephrase_gap)]
  take = min(len(ok), int(round(ratio * len(pairs))))
  chosen = sorted(rng.choice(len(ok), size=take, replace=False).tolist()) if take else []
  neg_q = [ranker.Query.of_turn(dialogues[ok[j][0]], ok[j][1]) for j in chosen]
  lists = candidate_lists(ret, pos_q + neg_q, personal=personal)
  for n, q in enumerate(pos_q):
    where = next((j for j, c in enumerate(lists[n]) if c.text == pairs[n].target_text), None)
    if where is not None:
      queries.append((q, lists[n]))
      labels.append(where)
  for n, q in enumerate(neg_q):
    queries.append((q, lists[len(pos_q) + n]))
    labels.append(0)
  return queries, np.asarray(labels, np.int32)


def _max_candidates(config) -> int:
  return 1 + 2 * config.retrieval.k


def train_ranker(config, stage_dir, train_ex, val_ex, *, seed: int):
  (tq, tl), (vq, vl) = train_ex, val_ex
  if not len(vl):
    vq, vl = tq[:64], tl[:64]
  m = _max_candidates(config)
  tf, tm = ranker.feature_lists([q for q, _ in tq], [c for _, c in tq], m)
  vf, vm = ranker.feature_lists([q for q, _ in vq], [c for _, c in vq], m)
  network = ranker.make_ranker(hidden_dim=config.ranker.hidden_dim, max_candidates=m)
  train = {"feats": jnp.asarray(tf), "mask": jnp.asarray(tm), "label": jnp.asarray(tl)}
  val = {"feats": jnp.asarray(vf), "mask": jnp.asarray(vm), "label": jnp.asarray(vl)}
  params, _ = train_lib.fit(
    stage_dir, network=network, loss_fn=ranker.make_loss(network), train=train, val=val,
    config=_stage_config(config, config.ranker.batch_size, len(tl)), num_epochs=config.ranker.num_epochs, seed=seed,
  )  # fmt: skip
  return network, params


def _logits(network, params, queries, lists, config) -> np.ndarray:
  feats, mask = ranker.feature_lists(queries, lists, _max_candidates(config))
  return ranker.score_lists(network, params, feats, mask)


def tune_threshold(thresholds, decide, judge) -> tuple[float, dict[str, float]]:
  """The threshold with the fewest validation defects (ties: the highest, i.e. the most conservative)."""
  rates = {}
  for th in sorted(float(t) for t in thresholds):
    rates[th] = float(1.0 - judge(decide(th)).mean())
  best = min(rates.values())
  return max(t for t, v in rates.items() if v == best), {f"{t:g}": v for t, v in rates.items()}


# --- the task ------------------------------------------------------------------------------------------------


def _emb_fn(config, workdir):
  kind = config.retrieval.text_encoder
  if kind == "none":
    return (lambda texts: None), 0
  cache = workdir / "data"
  fn = lambda texts: text_features.embed_texts(kind, list(texts), cache_dir=cache)
  return fn, int(fn(["play"]).shape[-1])


def _recall_rows(ret: Retriever, pairs: Sequence[Pair], k: int, params=None) -> dict[str, Any]:
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
  sims = process.cdist(queries, ret.gi.texts, scorer=fuzz.ratio, dtype=np.int32)
  rows = np.argsort(-sims, axis=1, kind="stable")[:, :k]
  out["rapidfuzz_ratio"] = retrieval.recall_at_k(rows, targets)
  return out


def pipeline(config, workdir: pathlib.Path, dialogues: train_lib.Dialogues, world, *, pairs_source: str, prefix: str):
  """Mines, trains (resuming) and A/B-tests one rewriter; returns its results block."""
  gap = config.rephrase_gap
  train_pairs = mine_pairs(dialogues.train, source=pairs_source, rephrase_gap=gap)
  val_pairs = mine_pairs(dialogues.val, source=pairs_source, rephrase_gap=gap)
  test_pairs = mine_pairs(dialogues.test, source="gap", rephrase_gap=gap)
  gi, pi = build_indexes(dialogues.train, rephrase_gap=gap)
  emb_fn, text_dim = _emb_fn(config, workdir)
  network, params = train_encoder(
    config, workdir / f"{prefix}encoder", train_pairs, val_pairs, gi, emb_fn, text_dim=text_dim
  )
  ret = Retriever(network, params, config, gi, pi, emb_fn).build()
  untrained = jax.jit(network.init)(jax.random.PRNGKey(config.seed + 7))
  recall = _recall_rows(ret, test_pairs, config.retrieval.k, params=untrained)
  mined_ok = [
    interpret.rewrite_succeeds(world, dialogues.train[p.dialogue], p.source, p.target_text) for p in train_pairs
  ]

  rk = config.ranker
  stages = {}
  for name, personal, off in (("global", False, 1), ("personal", True, 2)):
    tr = ranker_examples(
      ret, dialogues.train, train_pairs, personal=personal, ratio=rk.passthrough_ratio, seed=config.seed + off
    )
    va = ranker_examples(
      ret, dialogues.val, val_pairs, personal=personal, ratio=rk.passthrough_ratio, seed=config.seed + off + 10
    )
    net, p = train_ranker(config, workdir / f"{prefix}ranker_{name}", tr, va, seed=config.seed + off)
    stages[name] = (net, p, len(tr[1]), len(va[1]))

  def arm_inputs(split):
    turns = request_turns(split)
    queries = [ranker.Query.of_turn(split[di], i) for di, i in turns]
    g_lists = candidate_lists(ret, queries, personal=False)
    p_lists = candidate_lists(ret, queries, personal=True)
    g_logits = _logits(stages["global"][0], stages["global"][1], queries, g_lists, config)
    p_logits = _logits(stages["personal"][0], stages["personal"][1], queries, p_lists, config)
    history = [pi.history(q.user_id, q.time) for q in queries]
    return turns, queries, g_lists, p_lists, g_logits, p_logits, history

  # Thresholds tuned on the validation split's traffic.
  v_turns, v_q, v_gl, v_pl, v_glog, v_plog, v_hist = arm_inputs(dialogues.val)
  judge_val = lambda texts: outcomes(world, dialogues.val, v_turns, texts)
  th_g, val_g = tune_threshold(rk.thresholds, lambda th: decide_global(v_gl, v_glog, th), judge_val)
  v_gtexts = decide_global(v_gl, v_glog, th_g)
  th_p, val_p = tune_threshold(
    rk.thresholds,
    lambda th: decide_personal(v_q, v_pl, v_plog, th, v_gtexts, v_hist, config).texts,
    judge_val,
  )

  # The A/B on the test split.
  turns, queries, g_lists, p_lists, g_logits, p_logits, history = arm_inputs(dialogues.test)
  g_texts = decide_global(g_lists, g_logits, th_g)
  p_dec = decide_personal(queries, p_lists, p_logits, th_p, g_texts, history, config)
  oracle = []
  for di, i in turns:
    truth = dialogues.test[di]["turns"][i]["truth"]
    oracle.append(truth["rewrite"] if truth["defect"] and truth["rewrite"] else None)
  texts = {"none": [None] * len(turns), "global": g_texts, "personal": p_dec.texts, "oracle": oracle}
  success = {a: outcomes(world, dialogues.test, turns, t) for a, t in texts.items()}
  triggered = {
    a: np.asarray([x is not None and x != queries[n].text for n, x in enumerate(t)], bool) for a, t in texts.items()
  }
  dialogue_of = np.asarray([di for di, _ in turns], np.int64)
  ab = ab_report(dialogue_of, success, triggered, num=config.ab.num_bootstrap, seed=config.ab.seed)
  kinds: dict[str, int] = {}
  for s in p_dec.source:
    kinds[s] = kinds.get(s, 0) + 1
  ab["personal_layer"] = {
    "decision_sources": dict(sorted(kinds.items())),
    "thin_history_turns": int(sum(1 for h in history if h < config.min_personal_history)),
    "changed_vs_global": int(sum(a != b for a, b in zip(p_dec.texts, g_texts))),
  }
  return {
    "pairs_source": pairs_source,
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
      "threshold_global": th_g,
      "threshold_personal": th_p,
      "val_defect_by_threshold": {"global": val_g, "personal": val_p},
    },
    "ab": ab,
  }


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, dialogues: train_lib.Dialogues) -> dict[str, Any]:
  """Trains (resuming) and A/B-tests the online rewriter; writes results.json / results.md."""
  world = train_lib.world_of(config)
  main = pipeline(config, workdir, dialogues, world, pairs_source=config.pairs_source, prefix="")
  results = {
    "task": "online",
    "data": {"train": len(dialogues.train), "val": len(dialogues.val), "test": len(dialogues.test)},
    "main": main,
    "keynote": KEYNOTE,
  }
  if config.upper_bound and config.pairs_source != "truth":
    results["upper_bound"] = pipeline(config, workdir, dialogues, world, pairs_source="truth", prefix="truth_")
  results = json.loads(json.dumps(results))  # what results.json holds (tuples -> lists), also returned
  train_lib.write_results(workdir, results, render(results))
  ab = main["ab"]
  g, p = ab["none_vs_global"], ab["global_vs_personal"]
  print(
    f"outputs in {workdir}: results.json, results.md, encoder/, ranker_*/, data/ |"
    f" defect rate none {g['rate_a']:.4f} -> global {g['rate_b']:.4f} ({g['relative']:+.1%}; keynote -13%)"
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
  blocks = [("main", results["main"])] + ([("upper_bound", results["upper_bound"])] if "upper_bound" in results else [])
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
      f" ({m['users_with_history']} users).  Thresholds: global {block['ranker']['threshold_global']:g},"
      f" personal {block['ranker']['threshold_personal']:g}.",
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
    src = ab["personal_layer"]["decision_sources"]
    lines += ["", "Personal layer decisions: " + ", ".join(f"{k} {v}" for k, v in src.items()) + "."]
  return "\n".join(lines) + "\n"
