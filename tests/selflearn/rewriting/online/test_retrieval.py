"""The dual encoder's DPR loss, n-gram features and the exact top-k search, against NumPy references."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import log_softmax

from selflearn.rewriting.online import retrieval

ROOT = pathlib.Path(__file__).resolve().parents[4]


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _dpr_reference(q, c, scale, tid=None, h=None, hid=None):
  ctx = c if h is None else np.concatenate([c, h])
  s = scale * q @ ctx.T
  if tid is not None:
    ids = tid if h is None else np.concatenate([tid, hid])
    for i in range(len(q)):
      for j in range(len(ctx)):
        if j != i and ids[j] == tid[i]:
          s[i, j] = -np.inf
  return -np.mean([log_softmax(s[i])[i] for i in range(len(q))])


@pytest.mark.parametrize("hard", [False, True])
def test_dpr_loss_matches_a_numpy_log_softmax_over_in_batch_scores(hard):
  rng = np.random.default_rng(0)
  q, c, h = (_unit(rng.standard_normal((6, 8))).astype(np.float32) for _ in range(3))
  tid = np.asarray([0, 1, 2, 1, 4, 5], np.int32)  # queries 1 and 3 share a positive: not each other's negative
  hid = np.asarray([7, 2, 8, 9, 10, 11], np.int32)  # hard negative 1 is query 2's positive text: masked for it
  kw = dict(hard=jnp.asarray(h), hard_ids=jnp.asarray(hid)) if hard else {}
  loss, metrics = retrieval.dpr_loss(jnp.asarray(q), jnp.asarray(c), scale=5.0, target_ids=jnp.asarray(tid), **kw)
  ref = _dpr_reference(q, c, 5.0, tid, h if hard else None, hid if hard else None)
  np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
  assert 0 <= float(metrics["accuracy"]) <= 1
  plain, _ = retrieval.dpr_loss(jnp.asarray(q), jnp.asarray(c), scale=5.0)
  np.testing.assert_allclose(float(plain), _dpr_reference(q, c, 5.0), rtol=1e-5)
  assert float(plain) > float(loss) - 1e-6 if not hard else True  # masking removes negatives: loss cannot grow


def test_ngrams_share_the_phonetic_error_and_featurize_pads_and_truncates():
  a, b = set(retrieval.ngrams("play dun")), set(retrieval.ngrams("play dune"))
  assert {" du", "dun", "lay"} <= a & b and "w:dun" in a and "w:dune" in b
  ids = retrieval.featurize(["play dun", "play dune", ""], num_buckets=64, max_ngrams=8)
  assert ids.shape == (3, 8) and ids.dtype == np.int32
  assert (ids[:2] > 0).all() and (ids[:2] < 64).all()  # truncated to 8, every id a real bucket
  assert (ids[2, 2:] == 0).all()  # an empty text: its " " 2-char pad gives no 3-gram beyond the pad
  again = retrieval.featurize(["play dun"], num_buckets=64, max_ngrams=8)
  np.testing.assert_array_equal(ids[:1], again)


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
def test_encoder_outputs_unit_vectors_and_the_loss_trains():
  net = retrieval.make_encoder(num_buckets=256, max_ngrams=16, embed_dim=8, hidden_dim=16, out_dim=8)
  params = net.init(jax.random.PRNGKey(0))
  src = ["play dun", "play imagined dragons", "add coffey to my list", "call shivon"]
  dst = ["play dune", "play imagine dragons", "add coffee to my list", "call siobhan"]
  q = jnp.asarray(retrieval.featurize(src, num_buckets=256, max_ngrams=16))
  c = jnp.asarray(retrieval.featurize(dst, num_buckets=256, max_ngrams=16))
  out = net.apply(params, q)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(out), axis=-1), 1.0, rtol=1e-5)
  loss_fn = retrieval.make_loss(net, scale=10.0, use_hard=False)
  batch = {"q_ids": q, "c_ids": c, "c_tid": jnp.arange(4)}
  tx = optax.adam(1e-2)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt):
    g = jax.grad(lambda p: loss_fn(p, batch, None)[0])(params)
    updates, opt = tx.update(g, opt)
    return optax.apply_updates(params, updates), opt

  first = float(loss_fn(params, batch, None)[0])
  for _ in range(40):
    params, opt = step(params, opt)
  assert float(loss_fn(params, batch, None)[0]) < 0.5 * first


def _brute(x, q, k, groups=None, qgroups=None):
  s = np.concatenate([q @ x.T, np.full((len(q), max(0, k - len(x))), -np.inf)], 1)  # fewer rows than k
  if groups is not None:
    s = np.where(groups[None, :] == qgroups[:, None], s, -np.inf)
  rows = np.argsort(-s, axis=1, kind="stable")[:, :k]
  top = np.take_along_axis(s, rows, 1)
  return top, np.where(np.isfinite(top), rows, -1)


@pytest.mark.parametrize("n, chunk, k", [(1000, 128, 10), (1000, 1000, 10), (257, 256, 5), (300, 4, 10), (7, 8, 10)])
def test_search_matches_numpy_brute_force(n, chunk, k):
  """Chunk boundaries (n not a multiple), k > chunk, and fewer rows than k (-inf / -1 slots)."""
  rng = np.random.default_rng(n + chunk)
  x = _unit(rng.standard_normal((n, 16))).astype(np.float32)
  q = _unit(rng.standard_normal((37, 16))).astype(np.float32)
  s, rows = retrieval.search(retrieval.build_index(x, chunk=chunk), q, k, query_chunk=16)
  ref_s, ref_rows = _brute(x, q, k)
  np.testing.assert_array_equal(rows, ref_rows)
  np.testing.assert_allclose(s, ref_s, atol=1e-5)


def test_grouped_search_only_returns_rows_of_the_query_group():
  rng = np.random.default_rng(1)
  x = _unit(rng.standard_normal((500, 8))).astype(np.float32)
  q = _unit(rng.standard_normal((20, 8))).astype(np.float32)
  groups = rng.integers(0, 6, 500)
  groups[groups == 5] = 4  # group 5 has no rows: its queries get nothing
  qg = np.arange(20) % 6
  s, rows = retrieval.search(retrieval.build_index(x, groups=groups, chunk=64), q, 10, query_groups=qg)
  ref_s, ref_rows = _brute(x, q, 10, groups, qg)
  np.testing.assert_array_equal(rows, ref_rows)
  assert (rows[qg == 5] == -1).all()
  with pytest.raises(ValueError, match="query_groups"):
    retrieval.search(retrieval.build_index(x, groups=groups), q, 3)


def test_recall_at_k_counts_hits_within_the_first_k():
  rows = np.asarray([[3, 1, 2], [0, 4, 5], [7, 8, 9]])
  assert retrieval.recall_at_k(rows, np.asarray([1, 0, -1]), ks=(1, 2, 3)) == {
    "recall@1": 1 / 3,
    "recall@2": 2 / 3,
    "recall@3": 2 / 3,
  }


_SHARDED = """
import numpy as np, jax
from selflearn.rewriting.online import retrieval
assert jax.device_count() == 2
rng = np.random.default_rng(0)
x = rng.standard_normal((1001, 16)).astype(np.float32); q = rng.standard_normal((9, 16)).astype(np.float32)
g = rng.integers(0, 3, 1001); qg = np.arange(9) % 3
mesh = retrieval.rows_mesh()
for groups, qgroups in ((None, None), (g, qg)):
  index = retrieval.build_index(x, groups=groups, chunk=100, mesh=mesh)
  assert len(index.vectors.sharding.device_set) == 2
  s, rows = retrieval.search(index, q, 12, query_groups=qgroups)
  sc = q @ x.T if groups is None else np.where(g[None] == qg[:, None], q @ x.T, -np.inf)
  np.testing.assert_array_equal(rows, np.argsort(-sc, 1, kind="stable")[:, :12])
print("ok")
"""


def test_search_sharded_over_two_devices_matches_brute_force():
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=os.environ.get("TESTS_XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2",
  )
  proc = subprocess.run(
    [sys.executable, "-c", _SHARDED], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


def test_benchmark_runs_small_and_the_sides_agree():
  from selflearn.benchmarks import retrieval as bench_retrieval

  r = bench_retrieval.run(n=3000, d=16, k=10, num_queries=64, repeats=1, chunk=1000, query_chunk=32)
  assert r["ours_qps"] > 0 and r["numpy_qps"] > 0 and r["vs_numpy"] == r["ours_qps"] / r["numpy_qps"]
  recalls = [v for key, v in r.items() if key.startswith("recall_")]
  assert recalls and all(v == 1.0 for v in recalls)
