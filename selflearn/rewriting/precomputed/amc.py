"""Absorbing Markov chains: absorption probabilities, expected steps, rewrite selection.

A chain in canonical form has transient states (Q: transient -> transient,
n x n) and absorbing ones (R: transient -> absorbing, n x m).  The
fundamental matrix N = (I - Q)^-1 counts expected visits before absorption;
B = N R holds the absorption probabilities and t = N 1 the expected steps
(Grinstead & Snell, Introduction to Probability, §11.2).  Precomputed query
rewriting (Ponnusamy et al., AAAI-20) uses two absorbing states, success and
failure, over reformulation sessions pooled across users.

Solver (chosen by `selflearn.benchmarks.absorption`): B is never formed by
inversion.  Every transient state must reach absorption (checked first, by
graph reachability), so the spectral radius of Q is below 1 and the
fixed-point iteration X <- R + Q X converges.  The default solve is
BiCGSTAB (scipy) per absorbing column as a starting point, then that
iteration as a certificate: with d = X_{k+1} - X_k the error of X_{k+1} is
(N - I) d, so max|B - X_{k+1}| <= (||N||_inf - 1) max|d|, a guaranteed bound
(not a residual heuristic); the iteration continues until it is <= tol (one
step when BiCGSTAB did its job).  ||N||_inf <= 1 / (1 - q) when every row of
Q sums to at most q < 1; otherwise it is bounded from the iterates of
t <- 1 + Q t (`_norm_bound`).  When the rows of [Q R] sum to 1, the last
column is 1 minus the others (half the work for success / failure).  On the
100k-state rewrite-shaped chain of the benchmark: ours 0.19 s, plain
per-column BiCGSTAB 0.31 s, the Jacobi iteration alone 0.48 s (a JAX
`segment_sum` version of it 0.40 s before compilation, needing float64
globally, hence scipy), SuperLU (`spsolve` / `splu`) did not finish in
minutes (fill-in from the long-range edges; even 30k states took 94 s).  The
direct solve remains for small chains that mix too slowly for the iteration
(`method="auto"` falls back to it).  Components are not split out for B:
the iteration is row-local, so block structure costs nothing.  Expected
visits N[s, :] (`visits`) and the rewrite choice (`select_rewrites`) are
sparse: a source's row only holds states of its weakly connected component
(`scipy.sparse.csgraph.connected_components`), iterated as sparse matrices,
and the choice is one vectorised pass over those entries.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import scipy.sparse.linalg as spla

ROW_SUM_TOL = 1e-9  # rows of [Q R] may sum to 1 + this (rounding of normalised counts)
METHODS = ("auto", "iterative", "direct")


def _csr(x, name: str) -> sp.csr_matrix:
  """`x` (scipy.sparse of any format, or array-like) as a float64 CSR matrix without explicit zeros."""
  if sp.issparse(x):
    m = sp.csr_matrix(x, dtype=np.float64, copy=True)
  else:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
      raise ValueError(f"{name} must be a 2-D matrix, got shape {a.shape}")
    m = sp.csr_matrix(a)
  if m.ndim != 2:
    raise ValueError(f"{name} must be a 2-D matrix, got shape {m.shape}")
  m.sum_duplicates()
  m.eliminate_zeros()
  return m


def _dense(x, name: str) -> np.ndarray:
  a = x.toarray() if sp.issparse(x) else np.asarray(x, dtype=np.float64)
  a = np.asarray(a, dtype=np.float64)
  if a.ndim != 2:
    raise ValueError(f"{name} must be a 2-D matrix, got shape {a.shape}")
  return a


def _check_nonnegative(data: np.ndarray, name: str) -> None:
  if not np.all(np.isfinite(data)):
    raise ValueError(f"{name} has non-finite entries")
  if data.size and data.min() < 0:
    raise ValueError(f"{name} has negative entries (min {data.min():.3g}); transition probabilities are >= 0")


def validate_chain(Q, R) -> tuple[sp.csr_matrix, np.ndarray]:
  """(Q as CSR, R dense) after the shape, sign and row-sum checks; raises ValueError saying what is wrong."""
  Q = _csr(Q, "Q")
  R = _dense(R, "R")
  n = Q.shape[0]
  if Q.shape[1] != n:
    raise ValueError(f"Q must be square (transient -> transient), got shape {Q.shape}")
  if R.shape[0] != n:
    raise ValueError(f"R must have one row per transient state: Q is {Q.shape}, R is {R.shape}")
  if R.shape[1] < 1:
    raise ValueError(f"R must have at least one absorbing column, got shape {R.shape}")
  _check_nonnegative(Q.data, "Q")
  _check_nonnegative(R, "R")
  rows = np.asarray(Q.sum(axis=1)).ravel() + R.sum(axis=1)
  bad = np.flatnonzero(rows > 1 + ROW_SUM_TOL)
  if bad.size:
    raise ValueError(
      f"{bad.size} rows of [Q R] sum to more than 1 (e.g. row {bad[0]}: {rows[bad[0]]:.6g}); rows must be"
      " (sub-)stochastic"
    )
  return Q, R


def cannot_absorb(Q: sp.csr_matrix, exits: np.ndarray) -> np.ndarray:
  """Indices of transient states from which no state in `exits` (boolean, n) is reachable through Q.

  A breadth-first search from a virtual node linked to every exit, over the
  reversed graph of Q (an edge j -> i wherever Q[i, j] > 0).
  """
  n = Q.shape[0]
  rev = Q.T.tocsr()
  pattern = sp.csr_matrix((np.ones(rev.nnz), rev.indices, rev.indptr), shape=(n, n))
  hub = sp.csr_matrix((np.ones(int(exits.sum())), (np.zeros(int(exits.sum()), int), np.flatnonzero(exits))), (1, n))
  graph = sp.vstack([sp.hstack([pattern, sp.csr_matrix((n, 1))]), sp.hstack([hub, sp.csr_matrix((1, 1))])]).tocsr()
  reached = np.zeros(n + 1, bool)
  reached[csgraph.breadth_first_order(graph, n, directed=True, return_predecessors=False)] = True
  return np.flatnonzero(~reached[:n])


def _raise_unreachable(stuck: np.ndarray, n: int, what: str) -> None:
  shown = ", ".join(str(int(i)) for i in stuck[:5]) + (", ..." if stuck.size > 5 else "")
  raise ValueError(
    f"{stuck.size} of {n} transient states cannot reach any absorbing state ({what}), e.g. states [{shown}];"
    " their absorption probabilities are undefined (I - Q is singular on them)"
  )


def _norm_bound(Q: sp.csr_matrix, max_iter: int) -> tuple[float, int]:
  """An upper bound on ||N||_inf = max expected steps, and the iterations it took.

  q = max row sum of Q < 1 gives 1 / (1 - q).  Else iterate T <- 1 + Q T from
  T = 1: T_k increases to t = N 1, d = T_{k+1} - T_k = Q^{k+1} 1 and
  t - T_{k+1} = (N - I) d, so ||N|| <= (||T_{k+1}|| - ||d||) / (1 - ||d||)
  once ||d|| < 1 (we wait for 1e-3: a bound within about 0.1%).
  """
  q = float(np.asarray(Q.sum(axis=1)).max()) if Q.shape[0] else 0.0
  if q < 1 - 1e-6:
    return 1.0 / (1.0 - q), 0
  T = np.ones(Q.shape[0])
  for k in range(1, max_iter + 1):
    T_next = Q @ T + 1.0
    d = float(np.max(np.abs(T_next - T)))
    T = T_next
    if d < 1e-3:
      return (float(T.max()) - d) / (1.0 - d), k
  return float("inf"), max_iter


def _iterate(M: sp.csr_matrix, rhs: np.ndarray, n_bound: float, tol: float, max_iter: int, column_l1: bool, X0=None):
  """X <- rhs + M X from X0 (default rhs) until (n_bound - 1) * ||d|| <= tol; (X, iterations, bound) or (None, ...).

  ||d|| is the max-abs change (column_l1=False) or the largest column 1-norm
  of the change (column_l1=True, for the transposed system, whose error in
  each column's 1-norm is bounded by ||N||_inf = ||N^T||_1 times it).
  """
  X = rhs.copy() if X0 is None else X0
  factor = max(n_bound - 1.0, 0.0)
  bound = float("inf")
  for k in range(1, max_iter + 1):
    X_next = M @ X
    X_next += rhs
    diff = np.abs(X_next - X)
    d = float(diff.sum(axis=0).max() if column_l1 else diff.max()) if diff.size else 0.0
    X = X_next
    bound = factor * d
    if not np.isfinite(bound):
      return None, k, bound
    if bound <= tol:
      return X, k, bound
  return None, max_iter, bound


def _direct(A: sp.spmatrix, rhs: np.ndarray, M: sp.csr_matrix, tol: float) -> np.ndarray:
  """SuperLU solve of A X = rhs (A = I - M or its transpose), checked on the residual."""
  X = spla.splu(sp.csc_matrix(A)).solve(np.asfortranarray(rhs))
  X = np.asarray(X).reshape(rhs.shape)
  residual = float(np.max(np.abs(rhs + M @ X - X))) if X.size else 0.0
  if not np.all(np.isfinite(X)) or residual > max(tol, 1e-8):
    raise ValueError(f"the direct sparse solve failed (residual {residual:.3g}); the chain is ill-conditioned")
  return X


def _krylov(M: sp.csr_matrix, rhs: np.ndarray, atol: float) -> Optional[np.ndarray]:
  """A starting point for the certified iteration: BiCGSTAB on (I - M) x = rhs per column, or None if it fails."""
  if not np.isfinite(atol) or atol <= 0:
    return None
  A = sp.identity(M.shape[0], format="csr") - M
  cols = []
  for c in range(rhs.shape[1]):
    x, info = spla.bicgstab(A, rhs[:, c], x0=rhs[:, c].copy(), rtol=0.0, atol=atol, maxiter=1000)
    if info != 0 or not np.all(np.isfinite(x)):
      return None
    cols.append(x)
  return np.stack(cols, axis=1)


def _solve(M, rhs, n_bound, *, tol, max_iter, method, direct_max, column_l1=False) -> np.ndarray:
  n = M.shape[0]
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  if method != "direct":
    X0 = None if column_l1 else _krylov(M, rhs, atol=tol / (2 * n_bound))
    X, k, bound = _iterate(M, rhs, n_bound, tol, max_iter, column_l1, X0)
    if X is not None:
      return X
    if method == "iterative" or n > direct_max:
      raise ValueError(
        f"the absorption iteration did not converge: error bound {bound:.3g} > tol {tol:.3g} after {k} iterations"
        " (Q's spectral radius is close to 1: absorption is slow); raise max_iter or use method='direct'"
      )
  return _direct(sp.identity(n, format="csr") - M, rhs, M, tol)


def absorption_probabilities(
  Q,
  R,
  *,
  tol: float = 1e-10,
  max_iter: int = 20_000,
  method: str = "auto",
  direct_max: int = 20_000,
) -> np.ndarray:
  """B = (I - Q)^-1 R (dense, n x m): the probability that a walk from each transient state ends in each absorbing one.

  Q (n x n) and R (n x m): scipy.sparse (any format) or dense, non-negative,
  rows of [Q R] summing to at most 1.  Every transient state must reach a
  state with absorbing mass (R row > 0); otherwise ValueError naming how
  many cannot and a few of them (checked before solving).

  method: "iterative" (the bounded fixed-point iteration of the module
  docstring: max|B - result| <= tol, guaranteed), "direct" (SuperLU,
  residual-checked; small chains only: fill-in explodes on large ones) or
  "auto" (iterative; direct when it has not converged in `max_iter` steps
  and n <= `direct_max`).  Never returns NaN: a failed solve raises.
  """
  Q, R = validate_chain(Q, R)
  n = Q.shape[0]
  if n == 0:
    return np.zeros((0, R.shape[1]))
  stuck = cannot_absorb(Q, R.sum(axis=1) > 0)
  if stuck.size:
    _raise_unreachable(stuck, n, "no path to a row of R with mass > 0")
  n_bound, _ = _norm_bound(Q, max_iter) if method != "direct" else (1.0, 0)
  m = R.shape[1]
  deficit = float(np.max(np.abs(1.0 - np.asarray(Q.sum(axis=1)).ravel() - R.sum(axis=1))))
  if m >= 2 and method != "direct" and deficit * n_bound <= tol / 2:
    # Rows of [Q R] sum to 1, so rows of B do (up to n_bound * deficit): solve m - 1 columns, complement the last.
    part = _solve(Q, R[:, :-1], n_bound, tol=tol / (2 * (m - 1)), max_iter=max_iter, method=method,
                  direct_max=direct_max)  # fmt: skip
    return np.concatenate([part, 1.0 - part.sum(axis=1, keepdims=True)], axis=1)
  return _solve(Q, R, n_bound, tol=tol, max_iter=max_iter, method=method, direct_max=direct_max)


def expected_steps(Q, *, tol: float = 1e-8, max_iter: int = 20_000, method: str = "auto", direct_max: int = 20_000):
  """t = N 1: expected transient states visited (start included) before absorption; max|t - result| <= tol.

  The absorbing mass of a row is 1 - its Q row sum; every state must reach a
  row with some.
  """
  Q = _csr(Q, "Q")
  n = Q.shape[0]
  if Q.shape[1] != n:
    raise ValueError(f"Q must be square (transient -> transient), got shape {Q.shape}")
  _check_nonnegative(Q.data, "Q")
  rows = np.asarray(Q.sum(axis=1)).ravel()
  if np.any(rows > 1 + ROW_SUM_TOL):
    raise ValueError("rows of Q sum to more than 1")
  stuck = cannot_absorb(Q, rows < 1 - ROW_SUM_TOL)
  if stuck.size:
    _raise_unreachable(stuck, n, "no path to a row of Q summing to less than 1")
  ones = np.ones((n, 1))
  n_bound, _ = _norm_bound(Q, max_iter) if method != "direct" else (1.0, 0)
  return _solve(Q, ones, n_bound, tol=tol, max_iter=max_iter, method=method, direct_max=direct_max)[:, 0]


def visits(
  Q, sources: Sequence[int], *, tol: float = 1e-8, max_iter: int = 20_000, chunk: int = 256,
  max_entries: int = 4_000_000,
) -> sp.csr_matrix:  # fmt: skip
  """Rows `sources` of N = (I - Q)^-1 (sparse, len(sources) x n): expected visits to each state from each source.

  Solves (I - Q)^T X = E (E: the sources' indicator columns) with the same
  certified iteration on Q^T, in sparse matrices: a column only ever holds
  states of its source's weakly connected component
  (`scipy.sparse.csgraph.connected_components`), so no n x k dense block is
  formed.  Sources are taken in component order, as many at a time as keep
  the sum of their components' sizes under `max_entries` (a giant component
  goes one or a few sources at a time); each row's error is at most tol in
  the 1-norm, and entries below tol are dropped.  `chunk` is unused (kept
  for callers of the dense version).  Q must be a chain whose states all
  reach absorption (callers check it with `absorption_probabilities` first).
  """
  del chunk
  Q = _csr(Q, "Q")
  n = Q.shape[0]
  sources = np.asarray(sources, dtype=np.int64)
  if sources.size == 0:
    return sp.csr_matrix((0, n))
  _, labels = csgraph.connected_components(Q, directed=True, connection="weak")
  comp_size = np.bincount(labels)
  size = comp_size[labels[sources]]
  order = np.argsort(labels[sources], kind="stable")
  by_comp = np.argsort(labels, kind="stable")  # states grouped by component
  comp_start = np.concatenate([[0], np.cumsum(comp_size)])
  local = np.full(n, -1, np.int64)
  parts, rows_of = [], []
  start = 0
  cum = np.cumsum(size[order])
  while start < order.size:
    base = cum[start - 1] if start else 0
    stop = max(start + 1, int(np.searchsorted(cum, base + max_entries, side="right")))
    block = order[start:stop]
    m = block.size
    # The block's components only: the system, its norm bound and every sparse operation are that size, not n.
    comps = np.unique(labels[sources[block]])
    members = np.concatenate([by_comp[comp_start[c] : comp_start[c + 1]] for c in comps])
    local[members] = np.arange(members.size)
    Qb = Q[members][:, members].tocsr()
    n_bound, _ = _norm_bound(Qb, max_iter)
    E = sp.csr_matrix((np.ones(m), (local[sources[block]], np.arange(m))), shape=(members.size, m))
    X = _sparse_iterate(Qb.T.tocsr(), E, n_bound, tol, max_iter)
    X.data[np.abs(X.data) < tol] = 0.0
    X.eliminate_zeros()
    Xt = X.T.tocsr()
    parts.append(sp.csr_matrix((Xt.data, members[Xt.indices], Xt.indptr), shape=(m, n)))
    rows_of.append(block)
    local[members] = -1
    start = stop
  out = sp.vstack(parts).tocsr()
  inverse = np.empty(sources.size, np.int64)
  inverse[np.concatenate(rows_of)] = np.arange(sources.size)
  out = out[inverse]
  out.sort_indices()
  return out


def _sparse_iterate(M: sp.csr_matrix, E: sp.csr_matrix, n_bound: float, tol: float, max_iter: int) -> sp.csr_matrix:
  """X <- E + M X (sparse) until the column-1-norm certificate (n_bound - 1) * max_col ||d||_1 <= tol."""
  X = E.copy()
  factor = max(n_bound - 1.0, 0.0)
  bound = float("inf")
  for _ in range(max_iter):
    X_next = (M @ X + E).tocsr()
    diff = abs(X_next - X)
    d = float(diff.sum(axis=0).max()) if diff.nnz else 0.0
    X = X_next
    bound = factor * d
    if not np.isfinite(bound):
      break
    if bound <= tol:
      return X
  raise ValueError(
    f"the visits iteration did not converge: error bound {bound:.3g} > tol {tol:.3g} after {max_iter} iterations"
    " (Q's spectral radius is close to 1: absorption is slow); raise max_iter"
  )


def transition_matrices(counts, absorbing_counts, *, alpha: float = 0.0) -> tuple[sp.csr_matrix, np.ndarray]:
  """(Q, R) from transition counts: C (n x n, transient -> transient) and A (n x m, transient -> absorbing).

  P_ij = C_ij / sum_k (C_ik + A_ik), with add-`alpha` smoothing on the
  observed transient edges and on every absorbing column (so the matrix stays
  sparse and a state observed only once is pulled towards an even split).  A
  state with no count at all (and alpha = 0) keeps an empty row:
  `absorption_probabilities` then reports it.
  """
  if alpha < 0:
    raise ValueError(f"alpha must be >= 0, got {alpha}")
  C = _csr(counts, "counts")
  A = _dense(absorbing_counts, "absorbing_counts")
  if C.shape[0] != C.shape[1] or A.shape[0] != C.shape[0]:
    raise ValueError(f"counts must be n x n and absorbing_counts n x m, got {C.shape} and {A.shape}")
  _check_nonnegative(C.data, "counts")
  _check_nonnegative(A, "absorbing_counts")
  C.data += alpha
  A = A + alpha
  total = np.asarray(C.sum(axis=1)).ravel() + A.sum(axis=1)
  inv = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
  return sp.csr_matrix(sp.diags(inv) @ C), A * inv[:, None]


def select_rewrites(
  B: np.ndarray,
  support: np.ndarray,
  sources: Sequence[int],
  *,
  Q,
  success: int = 0,
  min_support: int = 1,
  min_gain: float = 0.0,
  min_visits: float = 0.0,
  visit_rows: Optional[sp.spmatrix] = None,
  allowed: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None,
) -> dict[int, int]:
  """For each failing source s, the state j != s reachable from s through Q with the highest B[j, success].

  Guardrails: support[j] >= min_support, B[j, S] - B[s, S] >= min_gain (and
  > 0) and, when min_visits > 0, N[s, j] >= min_visits (j is actually visited
  from s; `visit_rows` may pass `visits(Q, sources)`, one row per source).
  Ties go to the larger support, then the smaller index.  Sources without a
  qualifying state are left out.  `allowed(s, candidates)` -> bool mask is
  an extra guardrail (e.g. same domain family); it is called with arrays of
  equal length (sources and candidates, pair by pair).  Success values
  equal to 8 decimals count as tied (so that the choice does not depend on
  solver round-off).  Returns {source: rewrite}.

  With min_visits > 0 the candidates are the entries of the sparse visit
  rows (N[s, j] > 0 implies j is reachable), all sources at once, no graph
  search; with min_visits = 0 (reachability only) each source's reachable
  set is searched inside its weakly connected component.
  """
  Q = _csr(Q, "Q")
  B = np.asarray(B, dtype=np.float64)
  support = np.asarray(support)
  sources = [int(s) for s in sources]
  if not sources:
    return {}
  src_arr = np.asarray(sources, np.int64)
  if min_visits > 0:
    if visit_rows is None:
      visit_rows = visits(Q, sources)
    V = sp.csr_matrix(visit_rows)
    k_of = np.repeat(np.arange(len(sources)), np.diff(V.indptr))
    j = V.indices.astype(np.int64)
    keep = V.data >= min_visits
    k_of, j = k_of[keep], j[keep]
  else:
    k_of, j = _reachable_pairs(Q, src_arr)
  s_of = src_arr[k_of]
  not_self = j != s_of
  k_of, j, s_of = k_of[not_self], j[not_self], s_of[not_self]
  gain = B[j, success] - B[s_of, success]
  ok = (support[j] >= min_support) & (gain >= min_gain) & (gain > 0)
  if allowed is not None and ok.any():
    ok[ok] = np.asarray(allowed(s_of[ok], j[ok]), dtype=bool)
  k_of, j = k_of[ok], j[ok]
  if not j.size:
    return {}
  order = np.lexsort((j, -support[j], -np.round(B[j, success], 8), k_of))  # equal within the solve's tol
  k_sorted, j_sorted = k_of[order], j[order]
  first = np.flatnonzero(np.r_[True, k_sorted[1:] != k_sorted[:-1]])
  return {sources[int(k)]: int(jj) for k, jj in zip(k_sorted[first], j_sorted[first])}


def _reachable_pairs(Q: sp.csr_matrix, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(source position, state) for every state reachable from each source (itself included), per component."""
  _, labels = csgraph.connected_components(Q, directed=True, connection="weak")
  order = np.argsort(labels, kind="stable")
  starts = np.searchsorted(labels[order], np.arange(labels.max() + 2))
  ks, js = [], []
  by_label: dict[int, sp.csr_matrix] = {}
  for k, s in enumerate(sources):
    lab = int(labels[s])
    members = order[starts[lab] : starts[lab + 1]]
    sub = by_label.get(lab)
    if sub is None:
      sub = by_label[lab] = Q[members][:, members].tocsr()
    local = int(np.searchsorted(members, s))  # members are sorted (a stable sort by label)
    reach = members[csgraph.breadth_first_order(sub, local, directed=True, return_predecessors=False)]
    ks.append(np.full(reach.size, k, np.int64))
    js.append(reach.astype(np.int64))
  return np.concatenate(ks), np.concatenate(js)
