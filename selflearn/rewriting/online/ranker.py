"""The ranking layer of online rewriting: candidate features and a listwise scoring model.

Each request (the query) comes with a list of candidates: the pass-through
option (the query itself: "no rewrite") first, then the retrieved rewrites
of the global and / or personal index.  `features(query, candidate)` is one
row of `FEATURES`:

* retrieval: the encoder's cosine and rank;
* string match: rapidfuzz `fuzz.ratio`, `token_set_ratio`, `partial_ratio`
  (scaled to [0, 1]);
* sound: 1 - the CMU phoneme edit distance between the two texts'
  pronunciations over the longer length (`phonetic_similarity`; a word
  missing from CMUdict is spelt out letter by letter);
* shape: character-length and word-count deltas;
* candidate metadata: in the global / personal layer, the global success
  count (log) and success rate, the user's use count (log), share of their
  history and days since the last use, whether it is the query itself; the
  NLU domain agreement (same domain, same family) and the similarity of
  the two requests' entities (`entity_similarity`);
* the query's own observable metadata: ASR and NLU confidence, ER score,
  result status, so the model learns *when* to rewrite.

`make_ranker` is an MLP over a row (a `Network`; `hidden_dim=0` gives a
linear model) and `make_loss` its listwise softmax cross-entropy: the label
is the position of the mined rewrite, or 0 (pass through) for a request that
met no friction.  Rewriting happens when the best candidate's logit beats
the pass-through's by a threshold tuned on validation traffic (`layers`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from rapidfuzz import fuzz

from common import encoders
from selflearn.data import schema
from selflearn.language import ontology, phonetics

# NLU domains that one request can legitimately move between when rewritten.
FAMILIES = {"music": "media", "video": "media", "books": "media", "smart_home": "home", "appliance": "home"}
FEATURES = (
  "score",
  "rank",
  "ratio",
  "token_set_ratio",
  "partial_ratio",
  "phonetic",
  "len_delta",
  "token_delta",
  "is_source",
  "in_global",
  "in_personal",
  "global_log_count",
  "global_success_rate",
  "personal_log_count",
  "personal_share",
  "personal_log_days",
  "same_domain",
  "same_family",
  "entity_similarity",
  "asr_confidence",
  "nlu_confidence",
  "er_score",
) + tuple(f"status_{s}" for s in schema.STATUSES)


@dataclasses.dataclass(frozen=True)
class Query:
  """What the log observes of a request when it is to be rewritten."""

  text: str
  asr_confidence: float
  nlu_confidence: float
  er_score: float
  status: str
  domain: str
  slots: Mapping[str, str]
  user_id: str = ""
  time: float = 0.0

  @classmethod
  def of_turn(cls, dialogue: Mapping, i: int) -> "Query":
    t = dialogue["turns"][i]
    return cls(
      text=t["asr"]["text"],
      asr_confidence=float(t["asr"]["confidence"]),
      nlu_confidence=float(t["nlu"]["confidence"]),
      er_score=float(t["er"]["score"]),
      status=t["result"]["status"],
      domain=t["nlu"]["domain"],
      slots=dict(t["nlu"]["slots"]),
      user_id=dialogue["user_id"],
      time=float(t["timestamp"]),
    )


@dataclasses.dataclass(frozen=True)
class Candidate:
  """A rewrite candidate with its retrieval result and index metadata (0 where a layer lacks it)."""

  text: str
  score: float = 0.0
  rank: int = 0  # 0 = best of its layer
  is_source: bool = False
  in_global: bool = False
  in_personal: bool = False
  global_count: int = 0  # successful requests with this text (all users)
  global_uses: int = 0  # requests with this text
  personal_count: int = 0  # this user's successful requests with it (before the query)
  personal_total: int = 0  # this user's successful requests (before the query)
  personal_days: float = 0.0  # days since the user's last use
  domain: str = ""
  slots: Mapping[str, str] = dataclasses.field(default_factory=dict)


@functools.lru_cache(maxsize=1 << 16)
def phones(text: str) -> tuple[str, ...]:
  """The text's CMU phonemes (stress removed), word by word; unknown words letter by letter."""
  prons = phonetics.pronunciations()
  out: list[str] = []
  for w in text.lower().split():
    out.extend(prons.get(w, tuple(w)))
  return tuple(out)


@functools.lru_cache(maxsize=1 << 18)
def phonetic_similarity(a: str, b: str) -> float:
  """1 - phoneme edit distance / the longer pronunciation (1: same sound)."""
  pa, pb = phones(a), phones(b)
  longest = max(len(pa), len(pb))
  return 1.0 - phonetics.edit_distance(pa, pb) / longest if longest else 1.0


def family(domain: str) -> str:
  return FAMILIES.get(domain, domain)


def _content(text: str) -> str:
  return " ".join(w for w in text.lower().split() if w not in ontology.FUNCTION_WORDS)


@functools.lru_cache(maxsize=1 << 16)
def _entity_sim(a: str, b: str) -> float:
  return max(fuzz.ratio(a, b) / 100.0, phonetic_similarity(a, b))


def entity_similarity(q_slots: Mapping[str, str], q_text: str, c_slots: Mapping[str, str], c_text: str) -> float:
  """How well the candidate keeps the query's entities, in [0, 1].

  Each slot the query's NLU recognised must reappear in the candidate's slot
  of the same name, spelt or sounding alike (max of rapidfuzz ratio and
  phonetic similarity); the minimum over the query's slots.  A query without
  recognised slots is compared by content words.
  """
  if q_slots:
    sims = [_entity_sim(v, c_slots[s]) if s in c_slots else 0.0 for s, v in sorted(q_slots.items())]
    return float(min(sims))
  return _entity_sim(_content(q_text), _content(c_text))


def features(query: Query, cand: Candidate) -> np.ndarray:
  """One `FEATURES` row for (query, candidate)."""
  q, c = query.text, cand.text
  lq, lc = max(len(q), 1), max(len(c), 1)
  row = [
    cand.score,
    cand.rank / 10.0,
    fuzz.ratio(q, c) / 100.0,
    fuzz.token_set_ratio(q, c) / 100.0,
    fuzz.partial_ratio(q, c) / 100.0,
    phonetic_similarity(q, c),
    (len(c) - len(q)) / max(lq, lc),
    (len(c.split()) - len(q.split())) / 4.0,
    float(cand.is_source),
    float(cand.in_global),
    float(cand.in_personal),
    np.log1p(cand.global_count),
    cand.global_count / cand.global_uses if cand.global_uses else 0.0,
    np.log1p(cand.personal_count),
    cand.personal_count / cand.personal_total if cand.personal_total else 0.0,
    np.log1p(cand.personal_days) if cand.in_personal else 0.0,
    float(bool(cand.domain) and cand.domain == query.domain),
    float(bool(cand.domain) and family(cand.domain) == family(query.domain)),
    entity_similarity(query.slots, q, cand.slots, c) if not cand.is_source else 1.0,
    query.asr_confidence,
    query.nlu_confidence,
    query.er_score,
  ] + [float(query.status == s) for s in schema.STATUSES]
  return np.asarray(row, np.float32)


def feature_lists(queries, lists, max_candidates: int) -> tuple[np.ndarray, np.ndarray]:
  """`[N, max_candidates, F]` features and `[N, max_candidates]` mask of candidate lists (truncated)."""
  n = len(queries)
  out = np.zeros((n, max_candidates, len(FEATURES)), np.float32)
  mask = np.zeros((n, max_candidates), bool)
  for r, (q, cands) in enumerate(zip(queries, lists)):
    for j, c in enumerate(cands[:max_candidates]):
      out[r, j] = features(q, c)
      mask[r, j] = True
  return out, mask


class MLP(nn.Module):
  """Per-candidate score: an MLP (or, with `hidden_dim=0`, a linear model) over the feature row."""

  hidden_dim: int = 32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.hidden_dim:
      x = nn.gelu(nn.Dense(self.hidden_dim)(x))
    return nn.Dense(1)(x)[..., 0]


def make_ranker(*, hidden_dim: int = 32, max_candidates: int = 21) -> encoders.Network:
  """`apply(params, feats [N, L, F]) -> [N, L]` logits."""
  module = MLP(hidden_dim)
  dummy = jnp.zeros((1, max_candidates, len(FEATURES)), jnp.float32)
  return encoders.Network(lambda key: module.init(key, dummy), lambda params, x: module.apply(params, x))


def listwise_loss(logits: jax.Array, mask: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Softmax cross-entropy over each list's valid candidates; and top-1 accuracy."""
  logits = jnp.where(mask, logits, -jnp.inf)
  logp = jax.nn.log_softmax(logits, -1)
  loss = -jnp.take_along_axis(logp, label[:, None], 1)[:, 0].mean()
  return loss, (jnp.argmax(logits, -1) == label).mean()


def make_loss(network: encoders.Network):
  def loss_fn(params, batch, rng):
    del rng
    loss, acc = listwise_loss(network.apply(params, batch["feats"]), batch["mask"], batch["label"])
    return loss, {"accuracy": acc}

  return loss_fn


def score_lists(network, params, feats: np.ndarray, mask: np.ndarray, *, chunk: int = 2048) -> np.ndarray:
  """Logits of every list (-inf on padding), in fixed-size chunks."""
  apply = jax.jit(network.apply)
  n = feats.shape[0]
  out = np.zeros(mask.shape, np.float32)
  for start in range(0, n, chunk):
    idx = np.minimum(np.arange(start, start + chunk), n - 1)
    part = np.asarray(apply(params, jnp.asarray(feats[idx])))
    keep = min(chunk, n - start)
    out[start : start + keep] = part[:keep]
  return np.where(mask, out, -np.inf)


def choose(logits: np.ndarray, threshold: float) -> np.ndarray:
  """Position chosen per list: the best candidate if it beats pass-through (position 0) by `threshold`, else 0."""
  rest = np.where(np.arange(logits.shape[1])[None, :] == 0, -np.inf, logits)
  best = np.argmax(rest, 1)
  margin = rest[np.arange(len(best)), best] - logits[:, 0]
  return np.where(np.isfinite(margin) & (margin > threshold), best, 0)
