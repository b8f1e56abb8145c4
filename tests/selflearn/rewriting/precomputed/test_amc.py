"""The absorbing-chain maths (`selflearn.amc`): absorption against NumPy / SciPy solves, errors, rewrite selection."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import selflearn.amc
from selflearn.benchmarks import absorption as bench_absorption
from selflearn.rewriting.precomputed import amc

# Grinstead & Snell, Introduction to Probability, §11.2, Example 11.13 (drunkard's walk on 0..4, absorbing 0 and 4).
DRUNK_Q = np.array([[0, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0]])
DRUNK_R = np.array([[0.5, 0], [0, 0], [0, 0.5]])
DRUNK_N = np.array([[1.5, 1, 0.5], [1, 2, 1], [0.5, 1, 1.5]])
DRUNK_B = np.array([[0.75, 0.25], [0.5, 0.5], [0.25, 0.75]])


def _random_chain(n, m, density, seed, leak=0.0):
  rng = np.random.default_rng(seed)
  P = rng.random((n, n + m)) * (rng.random((n, n + m)) < density)
  P[:, n:] += 0.01 + rng.random((n, m)) * 0.05
  P /= P.sum(1, keepdims=True)
  P *= 1 - leak  # leak > 0: mass to an unlisted absorbing state
  return P[:, :n], P[:, n:]


FORMATS = {"dense": np.asarray, "csr": sp.csr_matrix, "csc": sp.csc_matrix, "coo": sp.coo_matrix, "lil": sp.lil_matrix}


@pytest.mark.parametrize("n, m, density", [(1, 2, 1.0), (7, 2, 0.5), (60, 3, 0.1), (250, 2, 0.02), (400, 1, 0.3)])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("method", ["auto", "direct"])
def test_matches_a_dense_numpy_solve(n, m, density, fmt, method):
  Q, R = _random_chain(n, m, density, seed=n)
  want = np.linalg.solve(np.eye(n) - Q, R)
  got = amc.absorption_probabilities(FORMATS[fmt](Q), FORMATS[fmt](R), method=method)
  assert got.shape == (n, m) and isinstance(got, np.ndarray)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
  np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-9)  # R covers all absorbing mass


def test_substochastic_rows_match_too():
  Q, R = _random_chain(80, 2, 0.2, seed=5, leak=0.1)
  got = amc.absorption_probabilities(sp.csr_matrix(Q), R)
  np.testing.assert_allclose(got, np.linalg.solve(np.eye(80) - Q, R), atol=1e-9)
  assert np.all(got.sum(1) < 1)


def test_drunkards_walk():
  np.testing.assert_allclose(amc.absorption_probabilities(DRUNK_Q, DRUNK_R), DRUNK_B, atol=1e-10)
  np.testing.assert_allclose(amc.absorption_probabilities(DRUNK_Q, DRUNK_R, method="direct"), DRUNK_B, atol=1e-14)
  np.testing.assert_allclose(amc.expected_steps(DRUNK_Q), [3, 4, 3], atol=1e-8)
  np.testing.assert_allclose(amc.visits(DRUNK_Q, [0, 2]).toarray(), DRUNK_N[[0, 2]], atol=1e-8)


def test_a_long_walk_without_direct_absorption_uses_the_steps_bound():
  """Interior rows of Q sum to 1 (q = 1): the error bound comes from iterating t = N 1."""
  n = 40
  Q = sp.diags([np.full(n - 1, 0.5), np.full(n - 1, 0.5)], [-1, 1]).tolil()
  R = np.zeros((n, 2))
  R[0, 0] = R[-1, 1] = 0.5
  got = amc.absorption_probabilities(Q, R, method="iterative", max_iter=200_000)
  np.testing.assert_allclose(got[:, 1], np.arange(1, n + 1) / (n + 1), atol=1e-10)  # gambler's ruin
  np.testing.assert_allclose(amc.expected_steps(Q), np.linalg.solve(np.eye(n) - Q.toarray(), np.ones(n)), rtol=1e-9)


def test_non_convergence_raises_instead_of_returning_nan():
  n = 40
  Q = sp.diags([np.full(n - 1, 0.5), np.full(n - 1, 0.5)], [-1, 1])
  R = np.zeros((n, 1))
  R[0, 0] = R[-1, 0] = 0.5
  with pytest.raises(ValueError, match="did not converge"):
    amc.absorption_probabilities(Q, R, method="iterative", max_iter=50)
  got = amc.absorption_probabilities(Q, R, max_iter=50)  # auto falls back to the direct solve
  np.testing.assert_allclose(got, 1.0, atol=1e-10)


def test_a_state_that_cannot_reach_absorption_is_an_error():
  Q = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0.5], [0, 0, 0, 0]])
  R = np.array([[0, 0], [0, 0], [0.5, 0], [0.2, 0.8]])
  with pytest.raises(ValueError, match=r"2 of 4 transient states cannot reach any absorbing state.*\[0, 1\]"):
    amc.absorption_probabilities(sp.csr_matrix(Q), R)
  with pytest.raises(ValueError, match="cannot reach"):  # a dead end (an all-zero row)
    amc.absorption_probabilities(np.zeros((2, 2)), np.array([[1.0, 0.0], [0.0, 0.0]]))
  with pytest.raises(ValueError, match="cannot reach"):
    amc.expected_steps(np.array([[0, 1.0], [1.0, 0]]))


@pytest.mark.parametrize(
  "Q, R, match",
  [
    (np.zeros((2, 3)), np.zeros((2, 1)), "Q must be square"),
    (np.zeros((2, 2)), np.zeros((3, 1)), "one row per transient state"),
    (np.zeros((2, 2)), np.zeros((2, 0)), "at least one absorbing column"),
    (np.zeros(4), np.zeros((4, 1)), "2-D"),
    (np.array([[0.5, -0.1], [0, 0.5]]), np.full((2, 1), 0.5), "negative"),
    (np.array([[0.5, 0.4], [0, 0.5]]), np.full((2, 1), 0.5), "sum to more than 1"),
    (np.array([[np.nan, 0], [0, 0.5]]), np.full((2, 1), 0.5), "non-finite"),
  ],
)
def test_bad_inputs_raise_value_errors(Q, R, match):
  with pytest.raises(ValueError, match=match):
    amc.absorption_probabilities(Q, R)


def test_converges_on_a_large_rewrite_shaped_chain_like_spsolve():
  Q, R = bench_absorption.rewrite_chain(3000, seed=1)
  want = spla.spsolve(sp.csc_matrix(sp.identity(3000) - Q), R)
  got = amc.absorption_probabilities(Q, R, tol=1e-10)
  assert np.max(np.abs(got - want)) <= 1e-10
  np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-9)


def test_transition_matrices_normalise_and_smooth():
  C = sp.csr_matrix(np.array([[0, 2, 0], [0, 0, 0], [0, 0, 0]]))
  A = np.array([[0, 2], [3, 1], [0, 0]])
  Q, R = amc.transition_matrices(C, A)
  np.testing.assert_allclose(Q.toarray(), [[0, 0.5, 0], [0, 0, 0], [0, 0, 0]])
  np.testing.assert_allclose(R, [[0, 0.5], [0.75, 0.25], [0, 0]])
  with pytest.raises(ValueError, match="cannot reach"):  # state 2 was never observed
    amc.absorption_probabilities(Q, R)
  Q1, R1 = amc.transition_matrices(C, A, alpha=1.0)
  np.testing.assert_allclose(Q1.toarray()[0], [0, 3 / 7, 0])  # only the observed edge is smoothed
  np.testing.assert_allclose(R1, [[1 / 7, 3 / 7], [4 / 6, 2 / 6], [0.5, 0.5]])
  with pytest.raises(ValueError, match="alpha"):
    amc.transition_matrices(C, A, alpha=-1)


def _selection_chain():
  # 0 (failing source) -> 1 (well supported, success 0.8) and -> 2 (rare, success 1.0); 2 -> 4 (success 0.95);
  # 3: success 1.0, unreachable from 0.
  Q = np.zeros((5, 5))
  Q[0, 1], Q[0, 2], Q[2, 4] = 0.5, 0.02, 0.5
  R = np.array([[0.0, 0.48], [0.8, 0.2], [0.5, 0.0], [1.0, 0.0], [0.95, 0.05]])
  B = amc.absorption_probabilities(Q, R)
  return Q, B


def test_select_rewrites_guardrails():
  Q, B = _selection_chain()
  assert B[2, 0] == pytest.approx(0.975)
  support = np.array([10, 50, 2, 100, 40])
  pick = lambda **kw: amc.select_rewrites(B, support, [0], Q=Q, **kw)
  assert pick() == {0: 2}  # the highest success among reachable states (3 is higher but unreachable)
  assert pick(min_support=5) == {0: 4}  # 2 is too rare; 4 is reached through it
  assert pick(min_support=45) == {0: 1}
  assert pick(min_support=200) == {}
  gain = B[1, 0] - B[0, 0]
  assert pick(min_support=45, min_gain=gain + 1e-6) == {}
  assert pick(min_visits=0.1) == {0: 1}  # N[0, 2] = 0.02: 2 and 4 are hardly visited from 0
  np.testing.assert_allclose(amc.visits(Q, [0]).toarray()[0], np.linalg.inv(np.eye(5) - Q)[0], atol=1e-8)
  assert amc.select_rewrites(B, support, [1], Q=Q) == {}  # nothing reachable from 1


def test_select_rewrites_breaks_ties_by_support_then_index():
  Q = np.zeros((4, 4))
  Q[0, 1:] = 0.2
  R = np.array([[0.0, 0.4], [1.0, 0], [1.0, 0], [1.0, 0]])
  B = amc.absorption_probabilities(Q, R)
  assert amc.select_rewrites(B, np.array([1, 5, 9, 9]), [0], Q=Q) == {0: 2}


def test_select_rewrites_allowed_mask_is_an_extra_guardrail():
  # 0 -> 1 -> 2, 0 -> 2: state 2 succeeds best but is masked out for source 0.
  Q = sp.csr_matrix(np.array([[0.0, 0.4, 0.4], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]]))
  R = np.array([[0.0, 0.2], [0.4, 0.1], [0.9, 0.1]])
  B = amc.absorption_probabilities(Q, R)
  support = np.array([5, 5, 5])
  assert amc.select_rewrites(B, support, [0], Q=Q, success=0) == {0: 2}
  masked = amc.select_rewrites(B, support, [0], Q=Q, success=0, allowed=lambda s, cand: cand != 2)
  assert masked == {0: 1}


def test_the_published_name_reexports_the_solver():
  assert selflearn.amc.absorption_probabilities is amc.absorption_probabilities
  assert set(selflearn.amc.__all__) <= set(dir(amc))
