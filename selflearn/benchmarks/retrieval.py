"""Exact top-k retrieval throughput: our jitted chunked search vs NumPy and faiss-cpu `IndexFlatIP`.

  python -m selflearn.benchmarks.retrieval [n] [d] [k] [num_queries]

`run(n=100_000, d=384, k=10, num_queries=1024, seed=0)` builds one
L2-normalised random index and query set, times top-k queries per second
of `retrieval.search` (scan over row chunks: matmul + `jax.lax.top_k`),
NumPy (`q @ index.T` + `np.argpartition`, per block of queries) and, when
importable, faiss `IndexFlatIP` (the optional `bench` extra: `pip install
faiss-cpu`; skipped with a note otherwise), all on the same cores; each
side warms up once, then the best of `repeats` timed runs counts.  The
results must agree: recall@k of ours and of NumPy against faiss (or, without
faiss, ours against NumPy).  Goals: >= 0.5x faiss, >= 2x NumPy.

`run_scale(n=1_000_000, d=384)`: the same exact search at a million rows
next to faiss `IndexFlatIP` and the approximate backends of
`retrieval.build_faiss_index` (IVF at the full size; HNSW, whose build is
the slowest part on one core, on `hnsw_rows` of them), each with its build
time, queries per second and recall@10 against the exact answer.  The
vectors are random unit vectors: no cluster structure, the hard case for an
approximate index.  `personal_lookup(users=1_000_000)`: the personal
layer's lookup (`index.PersonalSlices`: each query scores its own user's
rows) at a million users, against the former grouped scan (every user's
rows under a mask, `retrieval.search` with `query_groups`).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from selflearn.rewriting.online import retrieval

GOALS = {"vs_faiss": 0.5, "vs_numpy": 2.0}


def _unit(x: np.ndarray) -> np.ndarray:
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _best(fn, repeats: int) -> float:
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def numpy_search(index: np.ndarray, queries: np.ndarray, k: int, block: int = 256) -> np.ndarray:
  """Top-k rows by inner product: a matmul per block of queries, `argpartition`, then a sort of the k."""
  out = np.zeros((len(queries), k), np.int64)
  for s in range(0, len(queries), block):
    scores = queries[s : s + block] @ index.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1)
    out[s : s + block] = np.take_along_axis(part, order, 1)
  return out


def _recall(rows: np.ndarray, ref: np.ndarray) -> float:
  return float(np.mean([len(set(a) & set(b)) / ref.shape[1] for a, b in zip(rows, ref)]))


def run(
  n: int = 100_000, d: int = 384, k: int = 10, num_queries: int = 1024, seed: int = 0, *, repeats: int = 3,
  chunk: int = 4096, query_chunk: int = 1024,
) -> dict:  # fmt: skip
  """Queries/s of ours, NumPy and faiss (when importable), their ratios and the agreement of the results."""
  import jax  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  x = _unit(rng.standard_normal((n, d), dtype=np.float32))
  q = _unit(rng.standard_normal((num_queries, d), dtype=np.float32))
  index = retrieval.build_index(x, chunk=chunk)
  ours_rows = None

  def ours():
    nonlocal ours_rows
    _, ours_rows = retrieval.search(index, q, k, query_chunk=query_chunk)

  out = {"n": n, "d": d, "k": k, "num_queries": num_queries, "backend": jax.default_backend(), "goals": GOALS}
  out["ours_qps"] = num_queries / _best(ours, repeats)
  np_rows = None

  def numpy_side():
    nonlocal np_rows
    np_rows = numpy_search(x, q, k)

  out["numpy_qps"] = num_queries / _best(numpy_side, repeats)
  out["vs_numpy"] = out["ours_qps"] / out["numpy_qps"]
  try:
    import faiss  # pylint: disable=g-import-not-at-top
  except ImportError:
    out["faiss"] = "not installed (pip install faiss-cpu, the `bench` extra): faiss comparison skipped"
    out["recall_ours_vs_numpy"] = _recall(ours_rows, np_rows)
    return out
  flat = faiss.IndexFlatIP(d)
  flat.add(x)
  f_rows = None

  def faiss_side():
    nonlocal f_rows
    _, f_rows = flat.search(q, k)

  out["faiss_qps"] = num_queries / _best(faiss_side, repeats)
  out["faiss_threads"] = int(faiss.omp_get_max_threads())
  out["vs_faiss"] = out["ours_qps"] / out["faiss_qps"]
  out["recall_ours_vs_faiss"] = _recall(ours_rows, f_rows)
  out["recall_numpy_vs_faiss"] = _recall(np_rows, f_rows)
  return out


def _timed(fn):
  start = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - start


def run_scale(
  n: int = 1_000_000, d: int = 384, k: int = 10, num_queries: int = 1024, seed: int = 0, *, hnsw_rows: int = 200_000,
  nprobe: int = 32, ef_search: int = 128,
) -> list[dict]:  # fmt: skip
  """Build seconds, queries/s and recall@k vs exact of ours (exact), faiss flat, IVF and HNSW; prints a table."""
  import gc  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  x = _unit(rng.standard_normal((n, d), dtype=np.float32))
  q = _unit(rng.standard_normal((num_queries, d), dtype=np.float32))
  rows = []
  index, build_s = _timed(lambda: retrieval.build_index(x, chunk=8192))
  retrieval.search(index, q, k)  # compile (the timed call reuses it)
  (_, exact), search_s = _timed(lambda index=index: retrieval.search(index, q, k))
  rows.append({"backend": "ours (JAX, exact)", "rows": n, "build_s": build_s, "qps": num_queries / search_s,
               "recall": 1.0})  # fmt: skip
  del index
  gc.collect()
  backends = [("faiss IndexFlatIP (exact)", "flat", n, {}),
              (f"faiss IVF (nlist {int(4 * np.sqrt(n))}, nprobe {nprobe})", "ivf", n, {"nprobe": nprobe}),
              (f"faiss HNSW (M 32, efSearch {ef_search})", "hnsw", hnsw_rows, {"ef_search": ef_search})]  # fmt: skip
  try:
    retrieval._faiss()  # pylint: disable=protected-access
  except ImportError as e:
    print(f"  {e}: faiss rows skipped")
    backends = []
  for name, kind, size, kw in backends:
    sub = x[:size]
    idx, build_s = _timed(lambda sub=sub, kind=kind, kw=kw: retrieval.build_faiss_index(sub, kind=kind, **kw))
    (_, got), search_s = _timed(lambda idx=idx: retrieval.search(idx, q, k))
    ref = exact if size == n else retrieval.search(retrieval.build_faiss_index(sub, kind="flat"), q, k)[1]
    rows.append({"backend": name, "rows": size, "build_s": build_s, "qps": num_queries / search_s,
                 "recall": _recall(got, ref)})  # fmt: skip
    del idx
    gc.collect()
  print(f"| backend | rows x {d} | build s | queries/s ({num_queries} queries, top-{k}) | recall@{k} vs exact |")
  print("|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['backend']} | {r['rows']:,} | {r['build_s']:.1f} | {r['qps']:,.0f} | {r['recall']:.3f} |", flush=True)
  return rows


def personal_lookup(users: int = 1_000_000, rows_per_user: float = 4.0, d: int = 64, k: int = 21,
                    num_queries: int = 1024, seed: int = 0) -> dict:  # fmt: skip
  """Per-user slices vs the grouped scan at `users` users; prints lookups per second of both."""
  from selflearn.rewriting.online import index as index_lib  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  per = rng.poisson(rows_per_user - 1, users) + 1
  n = int(per.sum())
  vectors = _unit(rng.standard_normal((n, d), dtype=np.float32))
  ends = np.cumsum(per)
  names = [f"u{i}" for i in range(users)]
  slices = index_lib.PersonalSlices(vectors, dict(zip(names, zip((ends - per).tolist(), ends.tolist()))))
  q = _unit(rng.standard_normal((num_queries, d), dtype=np.float32))
  who = rng.integers(0, users, num_queries)
  q_users = [names[i] for i in who]
  (s_rows), slice_s = _timed(lambda: slices.search(q, q_users, k)[1])
  grouped = retrieval.build_index(vectors, groups=np.repeat(np.arange(users, dtype=np.int32), per), chunk=8192)
  retrieval.search(grouped, q, k, query_groups=who)  # compile
  (_, g_rows), scan_s = _timed(lambda: retrieval.search(grouped, q, k, query_groups=who))
  out = {"users": users, "rows": n, "dim": d, "slices_qps": num_queries / slice_s, "scan_qps": num_queries / scan_s,
         "same_rows": bool(np.array_equal(s_rows, g_rows))}  # fmt: skip
  print(
    f"personal lookup, {users:,} users ({n:,} rows x {d}), top-{k}: per-user slices {out['slices_qps']:,.0f}"
    f" lookups/s, grouped scan of every user's rows {out['scan_qps']:,.1f} lookups/s"
    f" ({out['slices_qps'] / out['scan_qps']:,.0f}x); same rows: {out['same_rows']}",
    flush=True,
  )
  return out


def main(argv) -> None:
  args = [int(a) for a in argv[1:5]]
  r = run(*args)
  print(f"index {r['n']} x {r['d']}, top-{r['k']}, {r['num_queries']} queries, JAX backend {r['backend']}")
  print(f"  ours  {r['ours_qps']:10.0f} queries/s")
  print(f"  numpy {r['numpy_qps']:10.0f} queries/s   ours / numpy = {r['vs_numpy']:.2f}x (goal >= 2x)")
  if "faiss_qps" in r:
    print(f"  faiss {r['faiss_qps']:10.0f} queries/s   ours / faiss = {r['vs_faiss']:.2f}x (goal >= 0.5x)")
    print(f"  recall@{r['k']} vs faiss: ours {r['recall_ours_vs_faiss']:.4f}, numpy {r['recall_numpy_vs_faiss']:.4f}")
  else:
    print(f"  {r['faiss']}; recall@{r['k']} ours vs numpy {r['recall_ours_vs_numpy']:.4f}")


if __name__ == "__main__":
  main(sys.argv)
