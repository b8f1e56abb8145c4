"""Dense retrieval of rewrite candidates: a dual encoder trained DPR-style and exact top-k search.

* `featurize(texts)`: each text as a bag of hashed ids: character 3-grams of
  the padded text (ASR errors are phonetic and local: "dun" vs "dune",
  "poet malone" vs "post malone") plus whole words, hashed with CRC32 into
  `num_buckets` (0 is padding).
* `make_encoder(...)`: a siamese tower (one set of weights for queries and
  candidates): mean of the bag's embeddings, optionally concatenated with a
  frozen `common.text` sentence embedding, an MLP with a linear skip, L2
  normalised.  A `common.encoders.Network` (`init(key)`, `apply(params, ids,
  emb)`), Flax Linen behind the functional boundary.
* `dpr_loss`: Karpukhin et al. (EMNLP 2020) in-batch negatives: query i's
  positive is candidate i, every other candidate of the batch (and every
  hard negative) is a negative; softmax over `scale * q . c` (the outputs are
  unit vectors, so a temperature is needed).  Candidates that are the same
  text as query i's positive are masked (not false negatives).
* `build_index` / `search`: exact top-k by inner product, a jitted scan over
  fixed-size row chunks (matmul + `jax.lax.top_k`, merged with the running
  best), optionally restricted to rows of the query's group (a per-user
  index); with several devices the rows are sharded over a `jax.sharding`
  mesh (`shard_map`: local top-k, all-gather, final top-k).
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from common import encoders

ROWS_AXIS = "rows"


# --- text features ---------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)
def _hash(token: str, num_buckets: int) -> int:
  return 1 + zlib.crc32(token.encode()) % (num_buckets - 1)


def ngrams(text: str, n: int = 3) -> list[str]:
  """Character n-grams of " text " plus the words ("w:" prefix), in order."""
  padded = f" {text.lower().strip()} "
  grams = [padded[i : i + n] for i in range(len(padded) - n + 1)]
  return grams + [f"w:{w}" for w in text.lower().split()]


def featurize(texts: Sequence[str], *, num_buckets: int, max_ngrams: int) -> np.ndarray:
  """`[len(texts), max_ngrams]` int32 hashed n-gram ids (0 = padding; longer bags are truncated)."""
  out = np.zeros((len(texts), max_ngrams), np.int32)
  for r, t in enumerate(texts):
    ids = [_hash(g, num_buckets) for g in ngrams(t)][:max_ngrams]
    out[r, : len(ids)] = ids
  return out


# --- the dual encoder -------------------------------------------------------------------


class Tower(nn.Module):
  """Bag of hashed n-grams (+ optional frozen sentence embedding) -> unit vector."""

  num_buckets: int
  embed_dim: int = 64
  hidden_dim: int = 128
  out_dim: int = 64

  @nn.compact
  def __call__(self, ids: jax.Array, emb: Optional[jax.Array] = None) -> jax.Array:
    mask = (ids > 0).astype(jnp.float32)[..., None]
    x = nn.Embed(self.num_buckets, self.embed_dim, embedding_init=nn.initializers.normal(0.1))(ids)
    bag = (x * mask).sum(-2) / jnp.maximum(mask.sum(-2), 1.0)
    if emb is not None:
      bag = jnp.concatenate([bag, nn.Dense(self.embed_dim)(emb)], -1)
    h = nn.gelu(nn.Dense(self.hidden_dim)(bag))
    out = nn.Dense(self.out_dim)(h) + nn.Dense(self.out_dim, use_bias=False)(bag)
    return out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-6)


def make_encoder(
  *, num_buckets: int, max_ngrams: int, text_dim: int = 0, embed_dim: int = 64, hidden_dim: int = 128, out_dim: int = 64
) -> encoders.Network:
  """The siamese tower as a `Network`: `apply(params, ids, emb=None) -> [N, out_dim]` unit vectors."""
  module = Tower(num_buckets, embed_dim, hidden_dim, out_dim)
  dummy_ids = jnp.ones((1, max_ngrams), jnp.int32)
  dummy_emb = jnp.zeros((1, text_dim), jnp.float32) if text_dim else None

  def init(key):
    return module.init(key, dummy_ids, dummy_emb)

  def apply(params, ids, emb=None):
    return module.apply(params, ids, emb)

  return encoders.Network(init, apply)


def dpr_loss(
  q: jax.Array,
  c: jax.Array,
  *,
  scale: float,
  target_ids: Optional[jax.Array] = None,
  hard: Optional[jax.Array] = None,
  hard_ids: Optional[jax.Array] = None,
) -> tuple[jax.Array, dict]:
  """In-batch-negative NLL (DPR): `-log softmax_j(scale q_i . c_j)[i]` averaged over the batch.

  Args:
    q: `[B, D]` query embeddings.
    c: `[B, D]` their positive candidates (row i is query i's positive).
    scale: Inverse temperature on the inner products.
    target_ids: `[B]` ids of the positive texts; a column whose text equals
      query i's positive (other than i itself) is left out of i's softmax.
    hard: `[H, D]` hard negatives, shared by the whole batch (as in DPR).
    hard_ids: `[H]` their text ids (masked like `target_ids`).

  Returns:
    `(loss, {"accuracy": in-batch top-1 accuracy})`.
  """
  b = q.shape[0]
  ctx = c if hard is None else jnp.concatenate([c, hard], 0)
  scores = scale * q @ ctx.T
  if target_ids is not None:
    ctx_ids = target_ids if hard is None else jnp.concatenate([target_ids, hard_ids], 0)
    same = (target_ids[:, None] == ctx_ids[None, :]) & (jnp.arange(ctx.shape[0])[None, :] != jnp.arange(b)[:, None])
    scores = jnp.where(same, -jnp.inf, scores)
  logp = jax.nn.log_softmax(scores, -1)
  diag = jnp.arange(b)
  loss = -logp[diag, diag].mean()
  accuracy = (jnp.argmax(scores, -1) == diag).mean()
  return loss, {"accuracy": accuracy}


def make_loss(network: encoders.Network, *, scale: float, use_hard: bool):
  """`loss_fn(params, batch, rng)` for `training.fit` over a batch of mined pairs."""

  def loss_fn(params, batch, rng):
    del rng
    q = network.apply(params, batch["q_ids"], batch.get("q_emb"))
    c = network.apply(params, batch["c_ids"], batch.get("c_emb"))
    hard = network.apply(params, batch["h_ids"], batch.get("h_emb")) if use_hard else None
    return dpr_loss(
      q, c, scale=scale, target_ids=batch["c_tid"], hard=hard, hard_ids=batch["h_tid"] if use_hard else None
    )

  return loss_fn


def encode(network, params, ids: np.ndarray, emb: Optional[np.ndarray] = None, *, chunk: int = 1024) -> np.ndarray:
  """Embeds featurized texts in fixed-size chunks (one compilation); `[N, out_dim]` float32."""
  n = ids.shape[0]
  apply = _jitted_apply(network)
  outs = []
  for start in range(0, max(n, 1), chunk):
    idx = np.minimum(np.arange(start, start + chunk), max(n - 1, 0))
    part = apply(params, jnp.asarray(ids[idx]), None if emb is None else jnp.asarray(emb[idx]))
    outs.append(np.asarray(part)[: max(0, min(chunk, n - start))])
  return np.concatenate(outs) if n else np.zeros((0, outs[0].shape[-1]), np.float32)


@functools.lru_cache(maxsize=8)
def _jitted_apply(network):
  return jax.jit(network.apply)


# --- exact top-k search ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Index:
  """Row vectors padded to a capacity (a multiple of `chunk`; device array), a live-row mask, optional groups.

  `size` rows have been written (live or removed); `valid` masks the live
  ones, so padding and removed rows never score.  The search compiles per
  capacity, not per size: `add_rows` / `remove_rows` within the capacity
  reuse the compiled search.
  """

  vectors: jax.Array  # [capacity, D]
  size: int
  chunk: int
  groups: Optional[jax.Array] = None  # [capacity] int32 (padding rows: -1)
  mesh: Optional[Mesh] = None
  valid: Optional[jax.Array] = None  # [capacity] bool: live rows

  @property
  def capacity(self) -> int:
    return int(self.vectors.shape[0])


def _put(x: np.ndarray, mesh: Optional[Mesh]) -> jax.Array:
  if mesh is not None and mesh.size > 1:
    return jax.device_put(x, NamedSharding(mesh, P(ROWS_AXIS)))
  return jnp.asarray(x)


def build_index(
  vectors: np.ndarray,
  *,
  groups: Optional[np.ndarray] = None,
  chunk: int = 8192,
  mesh: Optional[Mesh] = None,
  bucketed: bool = False,
) -> Index:
  """An `Index` over `[N, D]` vectors (`groups`: `[N]` ints, e.g. user ids, for a per-group search).

  With a `mesh` (1-D, axis `rows`) of more than one device the rows are
  sharded over it; the padded size is a multiple of `chunk * mesh.size`.
  `bucketed`: the capacity is the next power of two of N (at least one
  chunk), so that rows can be added without recompiling the search.
  """
  vectors = np.asarray(vectors, np.float32)
  n, d = vectors.shape
  shards = 1 if mesh is None else mesh.size
  want = 1 << max(0, (max(n, 1) - 1).bit_length()) if bucketed else max(n, 1)
  chunk = max(1, min(chunk, -(-want // shards)))
  rows = -(-want // (chunk * shards)) * chunk * shards
  padded = np.zeros((rows, d), np.float32)
  padded[:n] = vectors
  valid = np.zeros((rows,), bool)
  valid[:n] = True
  g = None
  if groups is not None:
    g = np.full((rows,), -1, np.int32)
    g[:n] = np.asarray(groups, np.int32)
  mesh = mesh if mesh is not None and mesh.size > 1 else None
  return Index(_put(padded, mesh), n, chunk, None if g is None else _put(g, mesh), mesh, _put(valid, mesh))


def add_rows(index: Index, vectors: np.ndarray, *, groups: Optional[np.ndarray] = None) -> Index:
  """`index` with `vectors` appended as rows `size, size + 1, ...`.

  Within the capacity the arrays keep their shape (no recompilation);
  beyond it the capacity doubles until it fits (one new compilation).
  """
  vectors = np.asarray(vectors, np.float32)
  m = vectors.shape[0]
  if isinstance(index, FaissIndex):
    if groups is not None:
      raise ValueError("the faiss backend has no groups (the personal index is per-user slices)")
    index.index.add_with_ids(np.ascontiguousarray(vectors), np.arange(index.size, index.size + m, dtype=np.int64))
    return dataclasses.replace(index, size=index.size + m, live=np.concatenate([index.live, np.ones(m, bool)]))
  if (groups is None) != (index.groups is None):
    raise ValueError("groups must be given exactly when the index is grouped")
  if index.size + m > index.capacity:
    old = np.asarray(index.vectors)[: index.size]
    old_valid = np.asarray(index.valid)[: index.size]
    old_g = None if index.groups is None else np.asarray(index.groups)[: index.size]
    cap = index.capacity
    while cap < index.size + m:
      cap *= 2
    grown = build_index(
      np.concatenate([old, np.zeros((cap - index.size, old.shape[1]), np.float32)]),
      groups=None if old_g is None else np.concatenate([old_g, np.full(cap - index.size, -1, np.int32)]),
      chunk=index.chunk, mesh=index.mesh,
    )  # fmt: skip
    valid = np.zeros(cap, bool)
    valid[: index.size] = old_valid
    index = dataclasses.replace(grown, size=index.size, valid=_put(valid, index.mesh))
  rows = jnp.arange(index.size, index.size + m)
  return dataclasses.replace(
    index,
    vectors=index.vectors.at[rows].set(jnp.asarray(vectors)),
    groups=None if groups is None else index.groups.at[rows].set(jnp.asarray(groups, jnp.int32)),
    valid=index.valid.at[rows].set(True),
    size=index.size + m,
  )


def remove_rows(index: Index, rows: Sequence[int]) -> Index:
  """`index` with `rows` masked out (their slots stay; the search never returns them)."""
  rows = np.asarray(rows, np.int64)
  if rows.size and (rows.min() < 0 or rows.max() >= index.size):
    raise ValueError(f"rows must be in [0, {index.size}), got {rows.min()}..{rows.max()}")
  if isinstance(index, FaissIndex):
    live = index.live.copy()
    live[rows] = False
    return dataclasses.replace(index, live=live)
  return dataclasses.replace(index, valid=index.valid.at[jnp.asarray(rows)].set(False))


# --- the optional faiss backend -----------------------------------------------------------------

FAISS_KINDS = ("flat", "hnsw", "ivf")


@dataclasses.dataclass
class FaissIndex:
  """The same interface over faiss-cpu (optional): exact `IndexFlatIP`, or approximate HNSW / IVF, in an `IndexIDMap`.

  Row ids are the row numbers; removed rows are masked on the host (`live`)
  and filtered from the results (HNSW cannot delete).
  """

  index: object
  size: int
  kind: str
  live: np.ndarray  # [size] bool

  @property
  def capacity(self) -> int:
    return self.size


def _faiss():
  try:
    import faiss  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError("the faiss backend needs faiss-cpu (pip install -e '.[faiss]')") from None
  return faiss


def build_faiss_index(
  vectors: np.ndarray, *, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 64, nlist: Optional[int] = None,
  nprobe: int = 16, train_size: int = 65536, seed: int = 0,
) -> FaissIndex:  # fmt: skip
  """A `FaissIndex` over `[N, D]` vectors (inner product): `kind` flat (exact), hnsw or ivf (approximate).

  IVF: `nlist` lists (default about 4 sqrt(N)) trained by k-means on at most
  `train_size` rows, `nprobe` lists searched per query.  HNSW: `hnsw_m`
  links per node, `ef_search` candidates per query.
  """
  if kind not in FAISS_KINDS:
    raise ValueError(f"kind must be one of {FAISS_KINDS}, got {kind!r}")
  faiss = _faiss()
  vectors = np.ascontiguousarray(vectors, np.float32)
  n, d = vectors.shape
  if kind == "flat":
    base = faiss.IndexFlatIP(d)
  elif kind == "hnsw":
    base = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    base.hnsw.efSearch = ef_search
  else:
    nlist = nlist or max(1, min(n, int(4 * np.sqrt(max(n, 1)))))
    base = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = vectors if n <= train_size else vectors[np.sort(rng.choice(n, train_size, replace=False))]
    base.train(sample)
    base.nprobe = nprobe
  index = faiss.IndexIDMap(base)
  if n:
    index.add_with_ids(vectors, np.arange(n, dtype=np.int64))
  return FaissIndex(index, n, kind, np.ones(n, bool))


def _faiss_search(index: FaissIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  dead = int(index.size - index.live.sum())
  kk = min(max(index.size, 1), k + dead)
  scores, ids = index.index.search(np.ascontiguousarray(queries, np.float32), kk)
  ok = ids >= 0
  ok[ok] = index.live[ids[ok]]
  out_s = np.full((len(queries), k), -np.inf, np.float32)
  out_i = np.full((len(queries), k), -1, np.int32)
  for r in range(len(queries)):
    keep = np.flatnonzero(ok[r])[:k]
    out_s[r, : keep.size] = scores[r, keep]
    out_i[r, : keep.size] = ids[r, keep]
  return out_s, out_i


def rows_mesh() -> Optional[Mesh]:
  """A 1-D `rows` mesh over all devices, or None on one device."""
  return Mesh(np.asarray(jax.devices()), (ROWS_AXIS,)) if jax.device_count() > 1 else None


def _local_topk(vectors, groups, valid, queries, qgroups, offset, *, k: int, chunk: int):
  """Top-k of `queries @ vectors.T` over the `valid` rows (global row = offset + local), scanning chunks."""
  num_chunks = vectors.shape[0] // chunk
  kc = min(k, chunk)
  blocks = vectors.reshape(num_chunks, chunk, -1)
  gblocks = None if groups is None else groups.reshape(num_chunks, chunk)
  vblocks = valid.reshape(num_chunks, chunk)
  starts = offset + jnp.arange(num_chunks, dtype=jnp.int32) * chunk
  nq = queries.shape[0]

  def body(carry, inp):
    best_s, best_i = carry
    block, start, live = inp[0], inp[1], inp[2]
    scores = queries @ block.T
    ok = live[None, :]
    if len(inp) == 4:
      ok = ok & (inp[3][None, :] == qgroups[:, None])
    scores = jnp.where(ok, scores, -jnp.inf)
    s, i = jax.lax.top_k(scores, kc)
    merged_s = jnp.concatenate([best_s, s], 1)
    merged_i = jnp.concatenate([best_i, start + i], 1)
    top_s, pos = jax.lax.top_k(merged_s, k)
    return (top_s, jnp.take_along_axis(merged_i, pos, 1)), None

  init = (jnp.full((nq, k), -jnp.inf, queries.dtype), jnp.full((nq, k), -1, jnp.int32))
  xs = (blocks, starts, vblocks) if gblocks is None else (blocks, starts, vblocks, gblocks)
  (s, i), _ = jax.lax.scan(body, init, xs)
  return s, jnp.where(jnp.isfinite(s), i, -1)


@functools.partial(jax.jit, static_argnames=("k", "chunk", "mesh"))
def _search(vectors, groups, valid, queries, qgroups, *, k: int, chunk: int, mesh: Optional[Mesh]):
  if mesh is None:
    return _local_topk(vectors, groups, valid, queries, qgroups, 0, k=k, chunk=chunk)
  per_shard = vectors.shape[0] // mesh.size

  def shard(v, g, ok, q, qg):
    offset = jax.lax.axis_index(ROWS_AXIS) * per_shard
    s, i = _local_topk(v, g, ok, q, qg, offset, k=k, chunk=chunk)
    s_all = jax.lax.all_gather(s, ROWS_AXIS, axis=1, tiled=True)
    i_all = jax.lax.all_gather(i, ROWS_AXIS, axis=1, tiled=True)
    top, pos = jax.lax.top_k(s_all, k)
    return top, jnp.take_along_axis(i_all, pos, 1)

  row_spec = P(ROWS_AXIS)
  if groups is None:
    fn = jax.shard_map(
      lambda v, ok, q, qg: shard(v, None, ok, q, qg),
      mesh=mesh,
      in_specs=(row_spec, row_spec, P(), P()),
      out_specs=(P(), P()),
      check_vma=False,
    )
    return fn(vectors, valid, queries, qgroups)
  fn = jax.shard_map(
    shard, mesh=mesh, in_specs=(row_spec, row_spec, row_spec, P(), P()), out_specs=(P(), P()), check_vma=False
  )
  return fn(vectors, groups, valid, queries, qgroups)


def search(
  index: Index, queries: np.ndarray, k: int, *, query_groups: Optional[np.ndarray] = None, query_chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
  """Exact top-k rows of `index` by inner product with each query.

  Queries go in fixed blocks of `query_chunk` (the last padded: one
  compilation).  With `query_groups` only rows of the same group count.

  Returns:
    `(scores [Q, k] float32, rows [Q, k] int32)`, best first; a query with
    fewer than k eligible rows gets -inf / -1 in the remaining slots.
  """
  queries = np.asarray(queries, np.float32)
  nq = queries.shape[0]
  if isinstance(index, FaissIndex):
    if query_groups is not None:
      raise ValueError("the faiss backend has no groups (the personal index is per-user slices)")
    return _faiss_search(index, queries, k)
  if index.groups is not None and query_groups is None:
    raise ValueError("a grouped index needs query_groups")
  block = max(1, min(query_chunk, nq))
  out_s, out_i = [], []
  for start in range(0, nq, block):
    idx = np.minimum(np.arange(start, start + block), nq - 1)
    qg = None if query_groups is None else jnp.asarray(np.asarray(query_groups, np.int32)[idx])
    s, i = _search(
      index.vectors, index.groups, index.valid, jnp.asarray(queries[idx]), qg,
      k=k, chunk=index.chunk, mesh=index.mesh,
    )  # fmt: skip
    keep = min(block, nq - start)
    out_s.append(np.asarray(s)[:keep])
    out_i.append(np.asarray(i)[:keep])
  if not out_s:
    return np.zeros((0, k), np.float32), np.zeros((0, k), np.int32)
  return np.concatenate(out_s), np.concatenate(out_i)


def recall_at_k(rows: np.ndarray, targets: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
  """Share of queries whose target row is among their first k retrieved rows (target -1: a miss)."""
  hits = (rows == np.asarray(targets)[:, None]) & (np.asarray(targets)[:, None] >= 0)
  return {f"recall@{k}": float(hits[:, :k].any(1).mean()) if len(rows) else float("nan") for k in ks}
