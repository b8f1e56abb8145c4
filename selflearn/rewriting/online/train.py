"""Training the online rewriter's learned stages: the dual encoder on mined pairs, the listwise rankers.

`train_encoder` fits the retrieval tower (`retrieval`, the DPR loss with
in-batch and one shared hard negative per pair: the index text closest in
spelling to the positive) on mined pairs; `ranker_examples` builds listwise
examples (mined pairs, labelled with the target's position, and
frictionless requests, labelled pass-through) and `train_ranker` fits a
ranker on them.  Both are `training.fit` stages (resumable).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from selflearn import training
from selflearn.rewriting.online import index, mining, ranker, retrieval
from selflearn.signals import text_features


def text_embedder(config, workdir):
  """(texts -> frozen sentence embeddings or None, their size) for `retrieval.text_encoder`."""
  kind = config.retrieval.text_encoder
  if kind == "none":
    return (lambda texts: None), 0
  cache = workdir / "data"
  fn = lambda texts: text_features.embed_texts(kind, list(texts), cache_dir=cache)
  return fn, int(fn(["play"]).shape[-1])


def _stage_config(config, batch_size: int, n: int) -> ml_collections.ConfigDict:
  """The config a `fit` stage sees: `batch_size` clamped to the examples (a multiple of the devices)."""
  c = ml_collections.ConfigDict(config.to_dict())
  devices = jax.device_count()
  c.batch_size = max(devices, (min(batch_size, n) // devices) * devices)
  return c


def _pair_arrays(pairs: Sequence[mining.Pair], gi: index.GlobalIndex, config, emb_fn) -> dict[str, np.ndarray]:
  """Encoder training arrays: query / positive / hard-negative n-gram ids, text ids (and embeddings)."""
  r = config.retrieval
  feat = lambda texts: retrieval.featurize(texts, num_buckets=r.num_buckets, max_ngrams=r.max_ngrams)
  q_texts = [p.source_text for p in pairs]
  c_texts = [p.target_text for p in pairs]
  vocab = {s: n for n, s in enumerate(sorted(set(c_texts) | set(gi.texts)))}
  # Hard negative: the index text closest in spelling to the positive (rapidfuzz ratio), not the source or itself;
  # a tiled running top-k, never a dense pairs x index matrix.
  h_texts = index.hard_negatives(c_texts, q_texts, gi.texts) if gi.texts else list(q_texts)
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
  params, _ = training.fit(
    stage_dir, network=network, loss_fn=loss,
    train={k: jnp.asarray(v) for k, v in train.items()}, val={k: jnp.asarray(v) for k, v in val.items()},
    config=_stage_config(config, config.batch_size, len(train_pairs)), num_epochs=config.num_epochs, seed=config.seed,
  )  # fmt: skip
  return network, params


def ranker_examples(
  ret: index.Retriever, dialogues, pairs: Sequence[mining.Pair], *, personal: bool, ratio: float, seed: int
):
  """Listwise examples: mined pairs (label: the target's position) and frictionless requests (label 0)."""
  queries, labels = [], []
  pos_q = [ranker.Query.of_turn(dialogues[p.dialogue], p.source) for p in pairs]
  rng = np.random.default_rng(seed)
  ok = [
    (di, i)
    for di, d in enumerate(dialogues)
    for i in mining.successful_requests(d, rephrase_gap=ret.config.rephrase_gap)
  ]
  take = min(len(ok), int(round(ratio * len(pairs))))
  chosen = sorted(rng.choice(len(ok), size=take, replace=False).tolist()) if take else []
  neg_q = [ranker.Query.of_turn(dialogues[ok[j][0]], ok[j][1]) for j in chosen]
  lists = index.candidate_lists(ret, pos_q + neg_q, personal=personal)
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
  params, _ = training.fit(
    stage_dir, network=network, loss_fn=ranker.make_loss(network), train=train, val=val,
    config=_stage_config(config, config.ranker.batch_size, len(tl)), num_epochs=config.ranker.num_epochs, seed=seed,
  )  # fmt: skip
  return network, params


def logits(network, params, queries, lists, config) -> np.ndarray:
  """The ranker's logits of candidate lists (-inf on padding)."""
  feats, mask = ranker.feature_lists(queries, lists, _max_candidates(config))
  return ranker.score_lists(network, params, feats, mask)
