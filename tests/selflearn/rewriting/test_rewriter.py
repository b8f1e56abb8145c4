"""The Rewriter API: save / load in a fresh process gives the same answers; index updates without recompiling."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from selflearn.configs import online as online_config
from selflearn.data import splits
from selflearn.rewriting import api
from selflearn.rewriting.online import index, ranker, retrieval
from selflearn.rewriting.online import rewriter as online_rewriter
from selflearn.rewriting.precomputed import rewriter as table_rewriter

ROOT = pathlib.Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "selflearn" / "fixtures" / "handwritten_log.jsonl"
REQUESTS = [
  {"utterance": "play tailor swift", "user_id": "alice"},
  {"utterance": "order a flat why", "user_id": "nobody", "context": {"domain": "Cafe"}},
  {"utterance": "open the garage door", "user_id": "bob", "timestamp": "2026-01-03T00:00:00Z"},
  {"utterance": "set the thermo stat to seventy", "user_id": "carol", "asr_confidence": 0.4},
  {"utterance": "   ", "user_id": "dave"},
]


def _cli(model, requests, tmp_path):
  src, out = tmp_path / "requests.jsonl", tmp_path / "answers.jsonl"
  src.write_text("".join(json.dumps(r) + "\n" for r in requests))
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "")  # the test session's compile flags, nothing of the caller's
  cmd = [sys.executable, "-m", "selflearn.rewrite", f"--model={model}", f"--in={src}", f"--out={out}"]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  return proc, out


def _as_json(answers):
  return [None if a is None else a.to_json() for a in answers]


def _online(tmp_path):
  config = online_config.get_config("smoke")
  config.guard.margin = 0.0
  d = splits.read_contract_split(FIXTURE, val_fraction=0.1, test_fraction=0.2)
  gi, pi = index.build_indexes(d.train, rephrase_gap=config.rephrase_gap)
  encoder, rank = online_rewriter._networks(online_rewriter._subconfig(config), 0)  # pylint: disable=protected-access
  key = jax.random.PRNGKey(3)
  params = {"encoder": encoder.init(key), "ranker_global": rank.init(key), "ranker_personal": rank.init(key + 1)}
  # Untrained parameters, low thresholds: the layers rewrite, so the comparison covers real decisions.
  return online_rewriter.OnlineRewriter(config=config, params=params, thresholds=(-5.0, -5.0), gi=gi, pi=pi)


@pytest.fixture(scope="module")
def online_rw(tmp_path_factory):
  return _online(tmp_path_factory.mktemp("online"))


def test_online_rewriter_reloaded_in_process_answers_identically(online_rw, tmp_path):
  rw = online_rw  # shared with the update test: either order, the round trip must hold
  before = _as_json(rw.rewrite(REQUESTS))
  rw.save(tmp_path / "model")
  loaded = api.load(tmp_path / "model")
  assert isinstance(loaded, online_rewriter.OnlineRewriter) and loaded.now == rw.now
  assert _as_json(loaded.rewrite(REQUESTS)) == before


@pytest.mark.slow  # a fresh process: imports and compiles from scratch (about 25 s of CPU)
def test_online_rewriter_reloaded_in_a_fresh_process_answers_identically(tmp_path):
  rw = _online(tmp_path)
  before = _as_json(rw.rewrite(REQUESTS))
  assert any(a is not None for a in before) and before[-1] is None
  assert {a["source"] for a in before if a} <= {"global", "personal"}
  rw.save(tmp_path / "model")
  assert json.loads((tmp_path / "model" / "rewriter.json").read_text())["version"] == api.VERSION
  proc, out = _cli(tmp_path / "model", REQUESTS, tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  after = [json.loads(line) for line in out.read_text().splitlines()]
  assert [None if a["rewrite"] is None else {k: a[k] for k in ("rewrite", "score", "source")} for a in after] == before
  assert _as_json(api.load(tmp_path / "model").rewrite(REQUESTS)) == before


def test_table_rewriter_round_trip(tmp_path):
  rows = [{"source": "play tailor swift", "source_text": "play tailor swift", "rewrite": "play taylor swift",
           "rewrite_success": 0.9, "source_success": 0.2}]  # fmt: skip
  rw = table_rewriter.TableRewriter(rows)
  before = rw.rewrite([("Play  Tailor swift", "u"), ("play taylor swift", "u")])
  assert before == [api.Rewrite("play taylor swift", 0.9, "table"), None]
  rw.save(tmp_path / "t")
  assert api.Rewriter.load(tmp_path / "t").rewrite([("Play  Tailor swift", "u"), ("play taylor swift", "u")]) == before
  rw.export_table(tmp_path / "table.json")
  assert json.loads((tmp_path / "table.json").read_text()) == rows


def test_load_refuses_what_it_cannot_read(tmp_path):
  with pytest.raises(ValueError, match="not a saved rewriter"):
    api.load(tmp_path)
  (tmp_path / "rewriter.json").write_text(json.dumps({"version": 99, "kind": "amc_table"}))
  with pytest.raises(ValueError, match="version 99"):
    api.load(tmp_path)


def test_index_updates_do_not_recompile_the_search(online_rw):
  rw = online_rw
  q = rw.ret.embed(["order an espresso tonic"])
  before = retrieval._search._cache_size()  # pylint: disable=protected-access
  rw.rewrite(REQUESTS[:1])
  compiled = retrieval._search._cache_size()  # pylint: disable=protected-access
  capacity = rw.ret.g_index.capacity
  assert rw.ret.g_index.size < capacity, "the bucketed index leaves room"
  k = rw.config.retrieval.k + 1  # what candidate_lists asks for (k is a compile-time constant)
  rw.add_rewrites(["order an espresso tonic"])
  assert "order an espresso tonic" in rw.ret.gi.row
  _, rows = retrieval.search(rw.ret.g_index, q, k)
  assert rw.ret.gi.texts[rows[0, 0]] == "order an espresso tonic"
  rw.remove_rewrites(["order an espresso tonic"])
  _, rows = retrieval.search(rw.ret.g_index, q, k)
  assert "order an espresso tonic" not in [rw.ret.gi.texts[r] for r in rows[0] if r >= 0]
  rw.rewrite(REQUESTS[:1])
  assert rw.ret.g_index.capacity == capacity
  assert retrieval._search._cache_size() == compiled >= before  # pylint: disable=protected-access
  # A new user: their history is their own slice of the personal index.
  rw.add_history("zoe", ["play taylor swift", "order a flat white"], [1.0, 2.0])
  a, b = rw.ret.p_index.spans["zoe"]
  assert b - a == 2 and rw.ret.pi.history("zoe", 10.0) == 2
  lists = index.candidate_lists(rw.ret, [ranker.Query("play tailor swift", 0, 0, 0, "", "", {}, "zoe", 10.0)],
                                personal=True)  # fmt: skip
  assert any(c.in_personal for c in lists[0])


def test_index_grows_past_its_capacity():
  idx = retrieval.build_index(np.eye(3, 4, dtype=np.float32), bucketed=True)
  assert idx.capacity == 4
  idx = retrieval.add_rows(idx, np.eye(4, dtype=np.float32)[[3, 3]])
  assert idx.size == 5 and idx.capacity == 8
  s, rows = retrieval.search(idx, np.eye(4, dtype=np.float32)[[3]], 3)
  assert sorted(rows[0, :2].tolist()) == [3, 4] and rows[0, 2] in (0, 1, 2)


def test_per_user_slices_match_the_grouped_scan():
  rng = np.random.default_rng(0)
  users = sorted(rng.choice([f"user{i}" for i in range(30)], 400).tolist())
  rows = [(u, f"text {n}") for n, u in enumerate(users)]
  vecs = rng.standard_normal((len(rows), 8)).astype(np.float32)
  slices = index.PersonalSlices.build(rows, vecs)
  queries = rng.standard_normal((50, 8)).astype(np.float32)
  q_users = rng.choice(sorted(set(users)) + ["nobody"], 50).tolist()
  ids = {u: n for n, u in enumerate(sorted(set(users)) + ["nobody"])}
  grouped = retrieval.build_index(vecs, groups=np.asarray([ids[u] for u, _ in rows]), chunk=64)
  s_ref, r_ref = retrieval.search(grouped, queries, 9, query_groups=np.asarray([ids[u] for u in q_users]))
  s, r = slices.search(queries, q_users, 9)
  np.testing.assert_array_equal(r, r_ref)
  np.testing.assert_allclose(s, s_ref, atol=1e-6)  # float32 sums in another order (XLA vs NumPy)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_faiss_backend_behind_the_same_search(kind):
  pytest.importorskip("faiss")
  rng = np.random.default_rng(1)
  x = rng.standard_normal((500, 16)).astype(np.float32)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  q = x[:20] + 0.05 * rng.standard_normal((20, 16)).astype(np.float32)
  _, exact = retrieval.search(retrieval.build_index(x, chunk=128), q, 10)
  idx = retrieval.build_faiss_index(x, kind=kind, nlist=8, nprobe=8)
  _, rows = retrieval.search(idx, q, 10)
  recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact)])
  assert recall == 1.0 if kind != "hnsw" else recall >= 0.9  # IVF probing every list is exact
  idx = retrieval.remove_rows(idx, [0])
  idx = retrieval.add_rows(idx, x[:1])
  _, rows = retrieval.search(idx, q[:1], 3)
  assert rows[0, 0] == 500 and 0 not in rows[0]


def test_online_rewriter_with_the_faiss_backend_answers_like_exact_search(online_rw, tmp_path):
  pytest.importorskip("faiss")
  online_rw.save(tmp_path / "m")
  exact = api.load(tmp_path / "m").rewrite(REQUESTS)
  flat = api.load(tmp_path / "m", backend="faiss_flat").rewrite(REQUESTS)
  key = lambda a: None if a is None else (a.text, a.source)
  assert [key(a) for a in flat] == [key(a) for a in exact]  # scores: float32 sums in another order
  np.testing.assert_allclose([a.score for a in flat if a], [a.score for a in exact if a], atol=1e-4)
