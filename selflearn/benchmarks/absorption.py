"""Benchmark: `amc.absorption_probabilities` on a 100k-state rewrite-shaped chain against scipy.sparse.linalg.

  python -m selflearn.benchmarks.absorption [n] [seed]

The chain (`rewrite_chain`): power-law (Pareto, exponent 2) out-degree
capped at 500, 90% of edges local (within 20 states, as reformulations of
one request cluster), 10% uniform long-range, every state absorbing 5-60% of
its mass into success / failure.  Peer: `scipy.sparse.linalg.spsolve` run in
a child process with a time limit (SuperLU's fill-in makes it fail to finish
on such chains), else `bicgstab` per absorbing column with an absolute
residual tolerance that gives the same guaranteed error as ours
(||B - x||_inf <= ||N||_inf ||r||_2 <= tol).  Both answers are compared.

`end_to_end(sizes)`: the whole precomputed-rewriting path on count chains
shaped like reformulation logs (`session_counts`: clusters of a request and
its variants, Pareto sizes 2-200, edges inside a cluster, 1% of edges to
another cluster; per state success / failure counts, the cluster's canonical
state mostly succeeding, its variants mostly failing): build (counts ->
Q, R), solve (B), select (sources, sparse expected visits, the guarded
choice).  Each size runs in a fresh child process, so its peak resident
memory is its own (`ru_maxrss`); the growth between sizes is the ratio of
times over the ratio of states (1.0: linear).
"""

from __future__ import annotations

import multiprocessing
import sys
import time

import numpy as np
import scipy.sparse
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from selflearn.rewriting.precomputed import amc


def rewrite_chain(n: int = 100_000, seed: int = 0, *, local: float = 0.9, width: int = 20, max_degree: int = 500):
  """(Q CSR, R dense n x 2) of a chain shaped like a rewrite graph (see the module docstring)."""
  rng = np.random.default_rng(seed)
  degree = np.minimum(np.floor(rng.pareto(1.0, n) + 1).astype(np.int64), max_degree)
  src = np.repeat(np.arange(n), degree)
  offset = rng.integers(1, width + 1, src.size) * rng.choice([-1, 1], src.size)
  dst = np.where(rng.random(src.size) < local, np.clip(src + offset, 0, n - 1), rng.integers(0, n, src.size))
  keep = dst != src
  C = sp.csr_matrix((rng.random(keep.sum()) + 0.1, (src[keep], dst[keep])), shape=(n, n))
  absorb = rng.uniform(0.05, 0.6, n)
  rows = np.asarray(C.sum(axis=1)).ravel()
  absorb = np.where(rows > 0, absorb, 1.0)
  Q = sp.csr_matrix(sp.diags(np.divide(1 - absorb, rows, out=np.zeros(n), where=rows > 0)) @ C)
  p = rng.random(n)
  return Q, np.stack([absorb * p, absorb * (1 - p)], axis=1)


def _spsolve_child(A, R, conn):
  start = time.perf_counter()
  B = spla.spsolve(A, R)
  conn.send((B, time.perf_counter() - start))


def _spsolve_limited(A, R, limit: float):
  """spsolve in a spawned child; (B, its solve seconds) or (None, limit) when it does not finish in `limit` s."""
  ctx = multiprocessing.get_context("spawn")
  parent, child = ctx.Pipe(duplex=False)
  proc = ctx.Process(target=_spsolve_child, args=(A, R, child), daemon=True)
  proc.start()
  got = parent.poll(limit)
  out, seconds = parent.recv() if got else (None, limit)
  proc.kill()
  proc.join()
  return (np.asarray(out).reshape(R.shape) if got else None), seconds


def _bicgstab(A, R, atol: float):
  cols = []
  for c in range(R.shape[1]):
    x, info = spla.bicgstab(A, R[:, c], rtol=0.0, atol=atol, maxiter=10_000)
    if info != 0:
      raise RuntimeError(f"bicgstab did not converge on column {c} (info {info})")
    cols.append(x)
  return np.stack(cols, axis=1)


def run(n: int = 100_000, seed: int = 0, *, tol: float = 1e-10, spsolve_limit: float = 60.0, repeats: int = 3) -> dict:
  """Times ours (median of `repeats`) and the scipy peer on one chain; prints and returns the figures."""
  Q, R = rewrite_chain(n, seed)
  A = sp.csc_matrix(sp.identity(n) - Q)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    ours = amc.absorption_probabilities(Q, R, tol=tol)
    times.append(time.perf_counter() - start)
  ours_s = float(np.median(times))
  peer, peer_s = _spsolve_limited(A, R, spsolve_limit)
  peer_name = "spsolve"
  if peer is None:
    q = float(np.asarray(Q.sum(axis=1)).max())
    peer_name = f"bicgstab (spsolve did not finish in {spsolve_limit:.0f} s)"
    start = time.perf_counter()
    peer = _bicgstab(A, R, atol=tol * (1 - q))
    peer_s = time.perf_counter() - start
  out = {
    "n": n,
    "nnz": int(Q.nnz),
    "mean_out_degree": Q.nnz / n,
    "max_out_degree": int(np.diff(Q.indptr).max()),
    "ours_s": ours_s,
    "peer": peer_name,
    "peer_s": float(peer_s),
    "speedup": float(peer_s / ours_s),
    "max_abs_diff": float(np.max(np.abs(ours - peer))),
    "tol": tol,
  }
  print(
    f"absorption, {n} states, {out['nnz']} edges: ours {ours_s:.3f} s, {peer_name} {peer_s:.3f} s,"
    f" speedup {out['speedup']:.1f}x (goal >= 1.0x), max |B_ours - B_peer| = {out['max_abs_diff']:.2e}",
    flush=True,
  )
  return out


def session_counts(n: int, seed: int = 0, *, cross: float = 0.01):
  """(C sparse n x n transition counts, A n x 2 success / failure counts) of a reformulation-shaped log."""
  rng = np.random.default_rng(seed)
  sizes = np.minimum(np.floor(rng.pareto(1.5, n) + 2).astype(np.int64), 200)
  sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n)) + 1]
  sizes[-1] -= int(sizes.sum() - n)
  sizes = sizes[sizes > 0]
  start = np.repeat(np.cumsum(sizes) - sizes, sizes)  # each state's cluster start; the canonical state is the first
  width = np.repeat(sizes, sizes)
  canonical = np.arange(n) == start
  deg = rng.integers(1, 4, n) * (width > 1)
  src = np.repeat(np.arange(n), deg)
  dst = np.where(
    rng.random(src.size) < 0.5, start[src], start[src] + rng.integers(0, np.maximum(width[src], 1))
  )  # half the reformulations reach the canonical form
  far = rng.random(src.size) < cross
  dst[far] = rng.integers(0, n, int(far.sum()))
  keep = dst != src
  C = sp.csr_matrix((rng.poisson(3.0, int(keep.sum())) + 1.0, (src[keep], dst[keep])), shape=(n, n))
  C.sum_duplicates()
  uses = rng.poisson(6.0, n) + 1
  p_success = np.where(canonical, rng.uniform(0.7, 0.98, n), rng.uniform(0.05, 0.6, n))
  succ = rng.binomial(uses, p_success)
  return C, np.stack([succ, uses - succ], axis=1).astype(np.float64)


def _end_to_end_child(n: int, seed: int, conn) -> None:
  import resource  # pylint: disable=g-import-not-at-top

  C, A = session_counts(n, seed)
  support = np.asarray(C.sum(axis=1)).ravel() + A.sum(axis=1)
  out = {"n": n, "edges": int(C.nnz)}
  t0 = time.perf_counter()
  Q, R = amc.transition_matrices(C, A)
  t1 = time.perf_counter()
  B = amc.absorption_probabilities(Q, R, tol=1e-10)
  t2 = time.perf_counter()
  sources = np.flatnonzero((B[:, 0] < 0.5) & (support >= 2))
  V = amc.visits(Q, sources)
  chosen = amc.select_rewrites(B, support, sources, Q=Q, min_support=3, min_gain=0.2, min_visits=0.05, visit_rows=V)
  t3 = time.perf_counter()
  _, labels = scipy.sparse.csgraph.connected_components(Q, directed=True, connection="weak")
  comp = np.bincount(labels)
  out.update(
    build_s=t1 - t0, solve_s=t2 - t1, select_s=t3 - t2, total_s=t3 - t0, sources=int(sources.size),
    visit_entries=int(V.nnz), rewrites=len(chosen), components=int(comp.size), largest_component=int(comp.max()),
    peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
  )  # fmt: skip
  conn.send(out)


def end_to_end(sizes=(100_000, 1_000_000), seed: int = 0) -> list[dict]:
  """Build, solve, select on `session_counts` chains of each size (fresh child each); prints the table and growth."""
  ctx = multiprocessing.get_context("spawn")
  rows = []
  for n in sizes:
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_end_to_end_child, args=(n, seed, child), daemon=True)
    proc.start()
    rows.append(parent.recv())
    proc.join()
  print("| states | edges | components (largest) | sources | visit entries | rewrites | build s | solve s | select s |"
        " total s | peak RSS MB |")  # fmt: skip
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(
      f"| {r['n']:,} | {r['edges']:,} | {r['components']:,} ({r['largest_component']:,}) | {r['sources']:,} |"
      f" {r['visit_entries']:,} | {r['rewrites']:,} | {r['build_s']:.2f} | {r['solve_s']:.2f} | {r['select_s']:.2f} |"
      f" {r['total_s']:.2f} | {r['peak_rss_mb']:.0f} |"
    )
  if len(rows) >= 2:
    a, b = rows[0], rows[-1]
    scale = b["n"] / a["n"]
    exponent = float(np.log(b["total_s"] / a["total_s"]) / np.log(scale))
    per_state = (b["peak_rss_mb"] - a["peak_rss_mb"]) * 2**20 / (b["n"] - a["n"])  # bytes per added state
    print(
      f"growth {a['n']:,} -> {b['n']:,} states: time x{b['total_s'] / a['total_s']:.1f} for x{scale:.0f} states"
      f" (exponent {exponent:.2f}; 1.00 = linear), peak RSS {per_state:.0f} bytes per added state; on paper at 10M"
      f" states: about {b['total_s'] * (1e7 / b['n']) ** exponent:.0f} s and"
      f" {(b['peak_rss_mb'] * 2**20 + per_state * (1e7 - b['n'])) / 2**30:.1f} GB",
      flush=True,
    )
  return rows


if __name__ == "__main__":
  args = [int(a) for a in sys.argv[1:3]]
  run(*args)
