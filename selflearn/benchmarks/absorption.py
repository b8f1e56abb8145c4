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
"""

from __future__ import annotations

import multiprocessing
import sys
import time

import numpy as np
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


if __name__ == "__main__":
  args = [int(a) for a in sys.argv[1:3]]
  run(*args)
