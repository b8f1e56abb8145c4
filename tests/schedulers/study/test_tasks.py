"""Tests of the scheduler-study tasks (`schedulers.study.tasks`).

Smoke-size tasks keep the file fast; the full sizes are only built (cheap)
to check budgets and split shapes. Checks that can fail: shapes, finite
losses, Adam progress, exact NMF recovery, the Markov entropy rate against a
Monte-Carlo estimate, projection, determinism, and that MNIST-1D is generated
without touching the network or the global random state.
"""

import functools
import math
import socket
import urllib.request

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common import data as data_lib
from schedulers import networks
from schedulers.study import tasks


@functools.cache
def smoke_task(name: str, seed: int = 0) -> tasks.Task:
  return tasks.make_task(name, size="smoke", seed=seed)


@functools.cache
def probe(task: tasks.Task):
  """One compiled function per task: init, a batch and every loss at init."""

  @jax.jit
  def evaluate(init_key, data_key):
    params = task.init(init_key)
    batch = tasks.get_batch(task, data_key, jnp.int32(3))
    reference = data_lib.epoch_batch(task.train, data_key, jnp.int32(3), task.batch_size)
    extra = task.eval_metrics(params, task.val) if task.eval_metrics is not None else {}
    values = {
      "batch_loss": task.loss(params, batch),
      "val_metric": task.eval_loss(params, task.val),
      "test_metric": task.eval_loss(params, task.test),
      "val_loss": task.loss(params, task.val),
    }
    return params, batch, reference, values, extra

  return evaluate


def assert_trees_equal(a, b):
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  assert ta == tb
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def trees_differ(a, b) -> bool:
  return any(
    x.shape != y.shape or not np.array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )


# ---------------------------------------------------------------------------
# Every task.
# ---------------------------------------------------------------------------


def test_task_names_match_registry():
  assert tasks.TASK_NAMES == (
    "digits_mlp",
    "mnist1d_cnn",
    "char_lm",
    "nmf_synthetic",
    "nmf_digits",
    "logreg_breast_cancer",
  )


def test_bad_name_or_size_raises():
  with pytest.raises(ValueError, match="unknown task"):
    tasks.make_task("mnist")
  with pytest.raises(ValueError, match="size"):
    tasks.make_task("digits_mlp", size="tiny")


@pytest.mark.parametrize("name", tasks.TASK_NAMES)
def test_smoke_task_builds_with_consistent_shapes(name):
  task = smoke_task(name)
  assert task.name == name and task.description and task.metric
  assert task.num_steps % task.eval_every == 0
  assert task.num_steps <= 10
  for split in (task.train, task.val, task.test):
    data_lib.num_examples(split)  # Raises if leading sizes disagree.
    for leaf in jax.tree.leaves(split):
      assert isinstance(leaf, jax.Array)
      assert leaf.dtype in (jnp.float32, jnp.int32), leaf.dtype
  assert jax.tree.structure(task.train) == jax.tree.structure(task.val)
  assert jax.tree.structure(task.train) == jax.tree.structure(task.test)

  params, batch, reference, values, extra = probe(task)(jax.random.key(0), jax.random.key(1))
  for leaf in jax.tree.leaves(params):
    assert leaf.dtype == jnp.float32
  assert_trees_equal(batch, reference)
  assert data_lib.num_examples(batch) == task.batch_size
  for value in values.values():
    assert value.shape == () and np.isfinite(value) and value > 0
  for value in extra.values():
    assert np.isfinite(value)
  assert (task.project is not None) == name.startswith("nmf_")


@pytest.mark.parametrize("name", ["digits_mlp", "nmf_synthetic"])
def test_precomputed_permutations_give_the_epoch_batch_batches(name):
  task = smoke_task(name)
  key = jax.random.key(7)
  per_epoch = data_lib.steps_per_epoch(task.train, task.batch_size)
  num_steps = 3 * per_epoch + 2  # Crosses epoch boundaries.
  perms = tasks.epoch_permutations(task, key, num_steps)
  assert perms.shape == (4, data_lib.num_examples(task.train))

  @jax.jit
  def both(step):
    return tasks.get_batch(task, key, step), tasks.batch_from_permutations(task, perms, step)

  for step in range(num_steps):
    slow, fast = both(jnp.int32(step))
    assert_trees_equal(slow, fast)


def test_conv1d_patches_match_flax_conv():
  x = jax.random.normal(jax.random.key(0), (3, 40, 4))
  for length, kernel_size, stride in [(40, 5, 2), (7, 4, 3)]:
    conv = nn.Conv(6, (kernel_size,), strides=(stride,), padding="SAME")
    params = conv.init(jax.random.key(1), x[:, :length])
    kernel = params["params"]["kernel"]
    expected = conv.apply(params, x[:, :length])
    patches = networks.conv1d_patches(x[:, :length], kernel_size, stride)
    got = patches @ kernel.reshape(-1, kernel.shape[-1]) + params["params"]["bias"]
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize(
  "name, lr",
  [
    ("digits_mlp", 1e-2),
    ("mnist1d_cnn", 1e-2),
    ("char_lm", 3e-3),
    ("nmf_synthetic", 3e-2),
    ("nmf_digits", 3e-2),
    ("logreg_breast_cancer", 3e-2),
  ],
)
def test_adam_steps_reduce_training_loss(name, lr):
  task = smoke_task(name)
  batch = tasks.get_batch(task, jax.random.key(1), jnp.int32(0))
  opt = optax.adam(lr)

  @jax.jit
  def train(key):
    params = task.init(key)

    def step(carry, _):
      params, state = carry
      loss, grads = jax.value_and_grad(task.loss)(params, batch)
      updates, state = opt.update(grads, state, params)
      params = optax.apply_updates(params, updates)
      if task.project is not None:
        params = task.project(params)
      return (params, state), loss

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=15)
    return params, losses[0], task.loss(params, batch)

  params, before, after = train(jax.random.key(0))
  assert np.isfinite(after)
  assert after < 0.9 * before, (before, after)
  if task.project is not None:
    assert all(bool(jnp.all(x >= 0)) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("name", tasks.TASK_NAMES)
def test_same_seed_same_data_and_init_other_seed_other_data(name):
  a = smoke_task(name)
  b = tasks.make_task(name, size="smoke", seed=0)
  assert_trees_equal((a.train, a.val, a.test), (b.train, b.val, b.test))
  # init is a pure function of the key; b's is only traced (no compile).
  init_3 = probe(a)(jax.random.key(3), jax.random.key(0))[0]
  assert_trees_equal(init_3, probe(a)(jax.random.key(3), jax.random.key(0))[0])
  assert trees_differ(init_3, probe(a)(jax.random.key(4), jax.random.key(0))[0])
  assert jax.tree.map(jnp.shape, init_3) == jax.tree.map(lambda s: s.shape, jax.eval_shape(b.init, jax.random.key(3)))
  c = smoke_task(name, 1)
  assert trees_differ((a.train, a.val, a.test), (c.train, c.val, c.test))


def test_full_budgets_and_shapes():
  expected = {
    # name: (batch_size, leading sizes of train/val/test)
    "digits_mlp": (64, (1077, 360, 360)),
    "char_lm": (None, None),
    "nmf_synthetic": (30, (300, 300, 300)),
    "nmf_digits": (None, (1797, 1797, 1797)),
    "logreg_breast_cancer": (32, (341, 114, 114)),
  }
  for name, (batch_size, sizes) in expected.items():
    task = tasks.make_task(name)
    assert task.num_steps // task.eval_every == 20, name
    if batch_size is not None:
      assert task.batch_size == batch_size, name
    if sizes is not None:
      got = tuple(data_lib.num_examples(s) for s in (task.train, task.val, task.test))
      assert got == sizes, (name, got)
  lm = tasks.make_task("char_lm")
  assert lm.train["tokens"].shape[1] >= 33
  assert int(lm.train["tokens"].max()) < tasks.CHAR_LM_VOCAB_SIZE


def test_full_mnist1d_is_the_standard_generated_set():
  task = tasks.make_task("mnist1d_cnn")
  sizes = tuple(data_lib.num_examples(s) for s in (task.train, task.val, task.test))
  assert sizes == (4000 - tasks.MNIST1D_NUM_VAL, tasks.MNIST1D_NUM_VAL, 1000)
  assert task.train["x"].shape[1] == 40
  assert task.num_steps // task.eval_every == 20
  assert np.abs(np.bincount(np.asarray(task.val["y"])) - 80).max() <= 3  # Stratified.
  params = jax.eval_shape(task.init, jax.random.key(0))
  assert 5_000 <= networks.num_params(params) <= 10_000


# ---------------------------------------------------------------------------
# MNIST-1D is generated offline, without global side effects.
# ---------------------------------------------------------------------------


def test_mnist1d_generation_never_touches_the_network(monkeypatch, tmp_path):
  attempts = []

  def refuse(*args, **kwargs):
    attempts.append(args)
    raise OSError("network access in a test")

  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)
  monkeypatch.setattr(urllib.request, "urlopen", refuse)
  requests = pytest.importorskip("requests")
  monkeypatch.setattr(requests, "get", refuse)
  monkeypatch.setattr(requests.Session, "request", refuse)
  monkeypatch.chdir(tmp_path)  # mnist1d's download path would pickle here.
  tasks._mnist1d_arrays.cache_clear()
  np_state, np_random = np.random.get_state(), np.random.random(3)
  np.random.set_state(np_state)

  task = tasks.make_task("mnist1d_cnn", size="smoke")

  assert not attempts
  assert not list(tmp_path.iterdir())
  # make_dataset seeds the global numpy generator; make_task restores it.
  np.testing.assert_array_equal(np.random.random(3), np_random)
  assert data_lib.num_examples(task.train) == 300


# ---------------------------------------------------------------------------
# Character LM source.
# ---------------------------------------------------------------------------


def test_char_lm_constants_match_the_exact_computation():
  chain = tasks.char_lm_chain()
  assert chain.entropy_rate == pytest.approx(tasks.CHAR_LM_ENTROPY_RATE_BITS, abs=1e-6)
  assert chain.bigram_entropy == pytest.approx(tasks.CHAR_LM_BIGRAM_ENTROPY_BITS, abs=1e-6)
  assert chain.unigram_entropy == pytest.approx(tasks.CHAR_LM_UNIGRAM_ENTROPY_BITS, abs=1e-6)
  # Order-2 context helps beyond order 1, which helps beyond unigram.
  assert chain.entropy_rate < chain.bigram_entropy - 0.5
  assert chain.bigram_entropy < chain.unigram_entropy - 1.0
  np.testing.assert_allclose(chain.probs.sum(-1), 1.0, rtol=1e-12)
  assert chain.probs.min() > 0


def test_markov_entropy_of_an_iid_source_is_its_entropy():
  q = np.array([0.5, 0.25, 0.125, 0.125])
  probs = np.broadcast_to(q, (4, 4, 4)).copy()
  chain = tasks.markov_chain_stats(probs)
  assert chain.entropy_rate == pytest.approx(1.75, abs=1e-12)
  assert chain.bigram_entropy == pytest.approx(1.75, abs=1e-12)
  assert chain.unigram_entropy == pytest.approx(1.75, abs=1e-12)
  np.testing.assert_allclose(chain.pair_probs, np.outer(q, q), atol=1e-12)


def test_char_lm_entropy_rate_matches_monte_carlo():
  chain = tasks.char_lm_chain()
  windows = tasks.sample_markov_windows(chain, 4000, 100, np.random.default_rng(123))
  a, b, c = windows[:, :-2], windows[:, 1:-1], windows[:, 2:]
  surprisal = -np.log2(chain.probs[a, b, c])
  # ~400k tokens; the standard error is about 0.003 bits.
  assert surprisal.mean() == pytest.approx(chain.entropy_rate, abs=0.015)
  # Windows start from the stationary pair law and stay there.
  for t in (0, 50, 98):
    counts = np.zeros_like(chain.pair_probs)
    np.add.at(counts, (windows[:, t], windows[:, t + 1]), 1.0)
    assert np.abs(counts / len(windows) - chain.pair_probs).max() < 0.01


def test_char_lm_eval_is_bits_per_char_of_the_training_loss():
  task = smoke_task("char_lm")
  values = probe(task)(jax.random.key(0), jax.random.key(1))[3]
  nats, bits = values["val_loss"], values["val_metric"]
  assert float(bits) == pytest.approx(float(nats) / math.log(2.0), rel=1e-5)
  # An untrained model is near uniform over the vocabulary.
  assert abs(float(nats) - math.log(tasks.CHAR_LM_VOCAB_SIZE)) < 1.0


# ---------------------------------------------------------------------------
# NMF.
# ---------------------------------------------------------------------------


def _noiseless_nmf_task():
  w, h, _ = tasks.nmf_synthetic_factors(0, (60, 40), 5, noise=0.0)
  budget = tasks.Budget(batch_size=10, num_steps=20, eval_every=10)
  task = tasks.make_nmf_task(w @ h, 5, name="nmf_test", description="test", budget=budget, seed=0)
  return task, {"W": jnp.asarray(w), "H": jnp.asarray(h)}


def test_nmf_true_factors_of_a_noiseless_matrix_score_zero():
  task, truth = _noiseless_nmf_task()
  for split in (task.val, task.test):
    assert float(task.eval_loss(truth, split)) < 1e-5
  assert float(task.loss(truth, task.train)) < 1e-8
  assert float(task.eval_loss(task.init(jax.random.key(0)), task.test)) > 0.3
  perturbed = {"W": truth["W"] * 1.1, "H": truth["H"]}
  assert float(task.eval_loss(perturbed, task.test)) == pytest.approx(0.1, rel=1e-3)


def test_nmf_masks_partition_the_entries():
  task = tasks.make_task("nmf_synthetic")
  masks = [np.asarray(s["mask"]) for s in (task.train, task.val, task.test)]
  np.testing.assert_array_equal(sum(masks), 1.0)
  assert 0.08 < 1.0 - masks[0].mean() < 0.12
  assert masks[1].mean() == pytest.approx(masks[2].mean(), abs=0.01)
  assert masks[0].sum(axis=1).min() > 0  # Every row keeps observed entries.
  np.testing.assert_array_equal(np.asarray(task.train["row"]), np.arange(300))
  # The true factors reach about the noise level; an init does not.
  w, h, _ = tasks.nmf_synthetic_factors(0)
  truth = {"W": jnp.asarray(w), "H": jnp.asarray(h)}
  assert 0.05 < float(task.eval_loss(truth, task.test)) < 0.15
  assert float(task.eval_loss(task.init(jax.random.key(0)), task.test)) > 0.5


def test_nmf_gradient_reaches_only_the_batch_rows_and_h():
  task, truth = _noiseless_nmf_task()
  params = task.init(jax.random.key(0))
  batch = tasks.get_batch(task, jax.random.key(1), jnp.int32(0))
  grads = jax.grad(task.loss)(params, batch)
  rows = np.asarray(batch["row"])
  others = np.setdiff1d(np.arange(60), rows)
  assert np.all(np.asarray(grads["W"])[others] == 0)
  assert np.all(np.abs(np.asarray(grads["W"])[rows]).sum(axis=1) > 0)
  assert np.abs(np.asarray(grads["H"])).sum() > 0


def test_nmf_projection_clips_to_nonnegative():
  task = smoke_task("nmf_synthetic")
  params = {"W": jnp.array([[-1.0, 2.0]]), "H": jnp.array([[0.5], [-3.0]])}
  projected = task.project(params)
  np.testing.assert_array_equal(projected["W"], [[0.0, 2.0]])
  np.testing.assert_array_equal(projected["H"], [[0.5], [0.0]])
  init = task.init(jax.random.key(0))
  assert all(bool(jnp.all(x >= 0)) for x in jax.tree.leaves(init))
