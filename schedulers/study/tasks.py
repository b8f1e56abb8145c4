"""Benchmark tasks of the scheduler study, as pure functions over device arrays.

Each `Task` bundles an `init(key)`, a minibatch training `loss`, a held-out
`eval_loss`, an optional `project`ion, and device-resident train/val/test
splits, so that a whole training run (and a vmap over seeds and learning
rates) is one jitted function. Nothing is downloaded: data ship inside installed wheels
(scikit-learn digits and breast_cancer) or are generated locally (MNIST-1D,
the Markov-chain corpus, the synthetic NMF matrix).

Minibatches are shuffled without replacement per epoch, a pure function of
the step counter: `get_batch(task, data_key, step)` is the self-contained
definition (`common.data.epoch_batch`), but it re-sorts the epoch's
permutation at every step, which dominates the run time of the larger
training sets.  The study draws every permutation once per run
(`epoch_permutations`) and slices it (`batch_from_permutations`), which gives
bit-identical batches (tested).

Tasks (`TASK_NAMES`) and full budgets (batch x steps, 20 evaluations each):

* `digits_mlp` (T1): 8x8 digits, MLP 64-128-128-10 (26,122 params),
  cross-entropy; 64 x 1,500.
* `mnist1d_cnn` (T2): MNIST-1D (generated), 3-layer strided 1-D CNN (9,450
  params), cross-entropy; 64 x 1,500.
* `char_lm` (T3): causal transformer LM (70,168 params, context 32) on an
  order-2 Markov source of known entropy rate (`CHAR_LM_ENTROPY_RATE_BITS`),
  bits per char; 8 x 1,500.
* `nmf_synthetic`, `nmf_digits` (T4): stochastic NMF by minibatches of rows,
  relative error on held-out entries; 30 x 2,000 and 64 x 2,000.
* `logreg_breast_cancer` (T5): linear logistic regression (31 params, convex
  control); 32 x 1,000.

Budgets are sized for a 2-core CPU: one jitted run (Adam, excluding compile)
takes <= ~1 s for T1, T2, T4, T5 and ~7-8 s for T3 (T2 and `nmf_digits`
need `epoch_permutations` for that; with per-step `epoch_batch` they take
~4 s and ~3 s).

`size='smoke'` shrinks data and step budgets (same model architectures) so
that a study smoke test takes seconds per task.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn import datasets as sk_datasets
from sklearn import model_selection

from common import data as data_lib
from schedulers import data as datasets
from schedulers import networks

Params = Any
Batch = Any
Split = Any

TASK_NAMES = (
  "digits_mlp",
  "mnist1d_cnn",
  "char_lm",
  "nmf_synthetic",
  "nmf_digits",
  "logreg_breast_cancer",
)
SIZES = ("full", "smoke")


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
  """A training problem as pure functions over device-resident splits.

  `eq=False` keeps identity hashing (the fields hold arrays), so a `Task` can
  be closed over or passed as a static argument to `jax.jit`.

  Attributes:
    name: Task name (one of `TASK_NAMES`).
    description: Human summary: data, model, budget, reference values.
    init: `key -> params`; the study derives init keys from the seed only, so
      paired arms share the initialisation.
    loss: `(params, batch) -> scalar` mean minibatch training loss.
    eval_loss: `(params, split) -> scalar` held-out metric on a whole split
      (lower is better).
    project: Applied to the params after every update (NMF non-negativity),
      or None.
    train: Training split: a pytree with a leading example axis, so that
      `epoch_batch` over it yields a batch for `loss`.
    val: Validation split (model selection, per-eval schedulers).
    test: Test split (final reporting).
    batch_size: Examples per minibatch.
    num_steps: Full step budget (one gradient evaluation per step).
    eval_every: Steps between validation evaluations; divides `num_steps`.
    metric: Human name of `eval_loss`.
    eval_metrics: Optional `(params, split) -> dict` of secondary metrics
      (accuracy, training objective), for reports only.
    grad_clip: Global-norm gradient clipping applied before every arm's
      optimizer (the same for all arms), or None.
  """

  name: str
  description: str
  init: Callable[[jax.Array], Params]
  loss: Callable[[Params, Batch], jax.Array]
  eval_loss: Callable[[Params, Split], jax.Array]
  project: Callable[[Params], Params] | None
  train: Split
  val: Split
  test: Split
  batch_size: int
  num_steps: int
  eval_every: int
  metric: str
  eval_metrics: Callable[[Params, Split], dict[str, jax.Array]] | None = None
  grad_clip: float | None = None

  def __post_init__(self):
    if self.num_steps < 1 or self.eval_every < 1 or self.num_steps % self.eval_every:
      raise ValueError(f"{self.name}: eval_every={self.eval_every} must divide num_steps={self.num_steps}.")
    # Raises unless 1 <= batch_size <= number of training examples.
    data_lib.steps_per_epoch(self.train, self.batch_size)


def get_batch(task: Task, data_key: jax.Array, step: jax.Array) -> Batch:
  """The training minibatch of `step`: `epoch_batch` over `task.train`."""
  return data_lib.epoch_batch(task.train, data_key, step, task.batch_size)


def epoch_permutations(task: Task, data_key: jax.Array, num_steps: int | None = None) -> jax.Array:
  """`[num_epochs, n]` int32: every permutation `get_batch` draws in a run.

  `epoch_batch` re-draws (sorts) its epoch's permutation at every step, which
  on a 2-core CPU costs ~0.3 ms per step at n = 1,024, 1.4 ms at n = 1,797
  and 1.9 ms at n = 3,200: more than the model itself for most tasks here.
  Drawing each permutation once per run, with `batch_from_permutations`,
  gives identical batches.
  """
  n = data_lib.num_examples(task.train)
  per_epoch = data_lib.steps_per_epoch(task.train, task.batch_size)
  num_epochs = -(-(task.num_steps if num_steps is None else num_steps) // per_epoch)
  return data_lib.epoch_permutations(data_key, n, num_epochs)


def batch_from_permutations(task: Task, permutations: jax.Array, step: jax.Array) -> Batch:
  """`get_batch(task, data_key, step)` from `epoch_permutations(task, data_key)`."""
  per_epoch = data_lib.steps_per_epoch(task.train, task.batch_size)
  return data_lib.batch_from_permutation(task.train, permutations[step // per_epoch], step, task.batch_size)


class Budget(NamedTuple):
  """Minibatch size, step budget and evaluation period of a task."""

  batch_size: int
  num_steps: int
  eval_every: int


def _check_size(size: str) -> None:
  if size not in SIZES:
    raise ValueError(f"size must be one of {SIZES}, got {size!r}.")


def _to_device(split: dict[str, np.ndarray]) -> dict[str, jax.Array]:
  """Moves a dict of numpy arrays to device as float32/int32."""
  out = {}
  for k, v in split.items():
    v = np.asarray(v)
    dtype = jnp.int32 if np.issubdtype(v.dtype, np.integer) else jnp.float32
    out[k] = jnp.asarray(v, dtype)
  return out


def _head(split: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
  """The first `n` examples of a split (smoke subsets)."""
  return {k: v[:n] for k, v in split.items()}


# ---------------------------------------------------------------------------
# Classification (T1, T2, T5).
# ---------------------------------------------------------------------------


def _classification_task(
  *,
  name: str,
  description: str,
  network,
  splits,
  budget: Budget,
  binary: bool = False,
) -> Task:
  """A classifier task: mean cross-entropy on `{'x', 'y'}` batches.

  With `binary`, the network emits one logit per example (sigmoid BCE).
  """
  train, val, test = (_to_device(s) for s in splits)

  def scores(params, batch):
    logits = network.apply(params, batch["x"])
    if binary:
      logits = logits[..., 0]
      labels = batch["y"].astype(jnp.float32)
      ce = optax.sigmoid_binary_cross_entropy(logits, labels)
      correct = (logits > 0) == (batch["y"] > 0)
    else:
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
      correct = jnp.argmax(logits, axis=-1) == batch["y"]
    return jnp.mean(ce), jnp.mean(correct.astype(jnp.float32))

  def loss(params, batch):
    return scores(params, batch)[0]

  def eval_metrics(params, split):
    ce, accuracy = scores(params, split)
    return {"cross_entropy": ce, "accuracy": accuracy}

  return Task(
    name=name,
    description=description,
    init=network.init,
    loss=loss,
    eval_loss=loss,
    project=None,
    train=train,
    val=val,
    test=test,
    batch_size=budget.batch_size,
    num_steps=budget.num_steps,
    eval_every=budget.eval_every,
    metric="held-out cross-entropy (nats)",
    eval_metrics=eval_metrics,
  )


def _digits_mlp(size: str, seed: int) -> Task:
  """T1: scikit-learn digits, stratified 60/20/20, MLP 64-128-128-10."""
  splits = datasets.load_digits(seed=seed)
  if size == "smoke":
    splits = (_head(splits[0], 128), _head(splits[1], 64), _head(splits[2], 64))
    budget = Budget(batch_size=16, num_steps=8, eval_every=4)
  else:
    budget = Budget(batch_size=64, num_steps=1500, eval_every=75)
  return _classification_task(
    name="digits_mlp",
    description=(
      "scikit-learn digits (1,797 8x8 images, pixels/16), stratified 60/20/20 "
      f"split (seed {seed}); ReLU MLP 64-128-128-10; softmax cross-entropy; "
      f"batch {budget.batch_size}, {budget.num_steps} steps."
    ),
    network=networks.make_classifier(64, (128, 128), 10),
    splits=splits,
    budget=budget,
  )


MNIST1D_NUM_VAL = 800


@functools.cache
def _mnist1d_arrays(num_samples: int) -> tuple[np.ndarray, ...]:
  """Generates MNIST-1D locally (no network) and caches it per process.

  `mnist1d.data.make_dataset` builds the set from templates with numpy and
  scipy only (its `get_dataset(download=True)` would fetch from GitHub and
  is never called). It seeds the global `random`/`np.random` generators, so
  their states are saved and restored around the call. With the default
  5,000 samples this is the standard set (seed 42, 4,000 train / 1,000 test,
  length 40). The returned arrays are read-only.
  """
  from mnist1d import data as mnist1d_data  # Slow import (matplotlib).

  args = mnist1d_data.get_dataset_args()
  args.num_samples = num_samples
  py_state, np_state = random.getstate(), np.random.get_state()
  try:
    ds = mnist1d_data.make_dataset(args)
  finally:
    random.setstate(py_state)
    np.random.set_state(np_state)
  arrays = (
    ds["x"].astype(np.float32),
    ds["y"].astype(np.int32),
    ds["x_test"].astype(np.float32),
    ds["y_test"].astype(np.int32),
  )
  for a in arrays:
    a.setflags(write=False)
  return arrays


def _mnist1d_cnn(size: str, seed: int) -> Task:
  """T2: MNIST-1D (generated), 3 strided conv layers, softmax cross-entropy."""
  if size == "smoke":
    x, y, x_test, y_test = _mnist1d_arrays(500)
    num_val, budget = 100, Budget(batch_size=16, num_steps=8, eval_every=4)
  else:
    x, y, x_test, y_test = _mnist1d_arrays(5000)
    num_val, budget = MNIST1D_NUM_VAL, Budget(batch_size=64, num_steps=1500, eval_every=75)
  # Deterministic stratified validation carve from the training set.
  x_train, x_val, y_train, y_val = model_selection.train_test_split(
    x, y, test_size=num_val, stratify=y, random_state=seed
  )
  splits = ({"x": x_train, "y": y_train}, {"x": x_val, "y": y_val}, {"x": x_test, "y": y_test})
  length = x.shape[1]
  return _classification_task(
    name="mnist1d_cnn",
    description=(
      f"MNIST-1D generated locally (mnist1d.make_dataset, {len(y) + len(y_test)} samples, "
      f"length {length}); {len(y_train)} train / {len(y_val)} val (stratified carve, "
      f"seed {seed}) / {len(y_test)} test; 1-D CNN conv(16,32,32; k5, s2)+ReLU -> "
      f"dense 10; batch {budget.batch_size}, {budget.num_steps} steps."
    ),
    network=networks.make_conv1d_classifier(length, 10),
    splits=splits,
    budget=budget,
  )


def _logreg_breast_cancer(size: str, seed: int) -> Task:
  """T5: breast_cancer, standardized (train statistics), linear logistic model."""
  bc = sk_datasets.load_breast_cancer()
  x = bc.data.astype(np.float64)
  y = bc.target.astype(np.int32)
  train, val, test = datasets.stratified_split(x, y, val_fraction=0.2, test_fraction=0.2, seed=seed)
  mean = train["x"].mean(axis=0)
  std = train["x"].std(axis=0) + 1e-8
  splits = [{"x": ((s["x"] - mean) / std).astype(np.float32), "y": s["y"]} for s in (train, val, test)]
  if size == "smoke":
    splits = [_head(splits[0], 96), _head(splits[1], 48), _head(splits[2], 48)]
    budget = Budget(batch_size=16, num_steps=8, eval_every=4)
  else:
    budget = Budget(batch_size=32, num_steps=1000, eval_every=50)
  return _classification_task(
    name="logreg_breast_cancer",
    description=(
      "scikit-learn breast_cancer (569 x 30), stratified 60/20/20 split "
      f"(seed {seed}), features standardized with train statistics; linear "
      "model, mean binary cross-entropy (convex, unregularized); "
      f"batch {budget.batch_size}, {budget.num_steps} steps."
    ),
    network=networks.make_classifier(x.shape[1], (), 1),
    splits=splits,
    budget=budget,
    binary=True,
  )


# ---------------------------------------------------------------------------
# Character-level LM on an order-2 Markov corpus (T3).
# ---------------------------------------------------------------------------

CHAR_LM_VOCAB_SIZE = 24
# Standard for transformer LMs: without it plain SGD at the tuned rate (1.0)
# blew up on 2 of 5 evaluation seeds in the first steps.
CHAR_LM_GRAD_CLIP = 1.0
CHAR_LM_CHAIN_SEED = 20240601
# Exact values for the fixed chain of `char_lm_chain()` (bits per char);
# `tests/schedulers/test_tasks.py` checks them against the computation.
CHAR_LM_ENTROPY_RATE_BITS = 1.5480658  # H(X_t | X_{t-2}, X_{t-1}).
CHAR_LM_BIGRAM_ENTROPY_BITS = 2.2725789  # H(X_t | X_{t-1}).
CHAR_LM_UNIGRAM_ENTROPY_BITS = 4.4055016  # H(X_t).


class MarkovChain(NamedTuple):
  """A stationary order-2 Markov source and its exact entropies (bits).

  Attributes:
    probs: `[V, V, V]` float64, `probs[a, b, c] = P(x_t=c | x_{t-2}=a,
      x_{t-1}=b)`.
    pair_probs: `[V, V]` stationary distribution of `(x_{t-1}, x_t)`.
    entropy_rate: `H(x_t | x_{t-2}, x_{t-1})` under stationarity.
    bigram_entropy: `H(x_t | x_{t-1})` (the best order-1 predictor).
    unigram_entropy: `H(x_t)` (the best context-free predictor).
  """

  probs: np.ndarray
  pair_probs: np.ndarray
  entropy_rate: float
  bigram_entropy: float
  unigram_entropy: float


def _entropy_bits(p: np.ndarray, axis: int = -1) -> np.ndarray:
  """Shannon entropy in bits along `axis` (0 log 0 = 0)."""
  logp = np.log2(np.where(p > 0, p, 1.0))
  return -np.sum(p * logp, axis=axis)


def markov_chain_stats(probs: np.ndarray) -> MarkovChain:
  """Exact stationary distribution and entropies of an order-2 chain.

  The pair chain `(a, b) -> (b, c)` has a unique stationary law when every
  transition probability is positive; it is found by power iteration.
  """
  v = probs.shape[0]
  pair = np.full((v, v), 1.0 / v**2)
  for _ in range(10_000):
    new = np.einsum("ab,abc->bc", pair, probs)
    if np.max(np.abs(new - pair)) < 1e-15:
      pair = new
      break
    pair = new
  else:
    raise ValueError("order-2 chain did not mix; is it irreducible and aperiodic?")
  pair = pair / pair.sum()
  entropy_rate = float(np.sum(pair * _entropy_bits(probs)))
  marginal = pair.sum(axis=0)  # Law of x_{t-1} (= law of x_t).
  next_given_prev = np.einsum("ab,abc->bc", pair, probs) / marginal[:, None]
  bigram = float(np.sum(marginal * _entropy_bits(next_given_prev)))
  unigram = float(_entropy_bits(marginal))
  return MarkovChain(probs, pair, entropy_rate, bigram, unigram)


def make_markov_chain(
  seed: int,
  vocab_size: int = CHAR_LM_VOCAB_SIZE,
  num_successors: int = 6,
  concentration: float = 0.3,
  floor: float = 0.01,
) -> np.ndarray:
  """A random sparse order-2 transition tensor `P[a, b, c]`.

  The successor set (size `num_successors`) depends on the previous symbol
  `b` only, the weights over it on the pair `(a, b)` (Dirichlet with
  `concentration`). So an order-1 model already beats the unigram baseline,
  and reaching the entropy rate needs attention to the token two back. A
  uniform `floor` mass makes the chain irreducible and aperiodic.
  """
  rng = np.random.default_rng(seed)
  successors = np.stack([rng.choice(vocab_size, num_successors, replace=False) for _ in range(vocab_size)])
  weights = rng.dirichlet(np.full(num_successors, concentration), size=(vocab_size, vocab_size))
  probs = np.zeros((vocab_size,) * 3)
  a, b = np.meshgrid(np.arange(vocab_size), np.arange(vocab_size), indexing="ij")
  probs[a[..., None], b[..., None], successors[b]] = weights
  return (1.0 - floor) * probs + floor / vocab_size


@functools.cache
def char_lm_chain() -> MarkovChain:
  """The fixed source of the `char_lm` corpus (cached; arrays read-only)."""
  chain = markov_chain_stats(make_markov_chain(CHAR_LM_CHAIN_SEED))
  chain.probs.setflags(write=False)
  chain.pair_probs.setflags(write=False)
  return chain


def sample_markov_windows(chain: MarkovChain, num_windows: int, length: int, rng: np.random.Generator) -> np.ndarray:
  """`[num_windows, length]` int32 independent stationary chain segments.

  Each window starts from the stationary pair law, so every window is a
  stretch of the stationary stream; windows are independent of each other.
  """
  v = chain.probs.shape[0]
  pair_cdf = np.cumsum(chain.pair_probs.ravel())
  first = np.minimum(np.searchsorted(pair_cdf, rng.random(num_windows) * pair_cdf[-1]), v * v - 1)
  tokens = np.empty((num_windows, length), np.int32)
  tokens[:, 0], tokens[:, 1] = np.divmod(first, v)
  cdf = np.cumsum(chain.probs, axis=-1)
  for t in range(2, length):
    rows = cdf[tokens[:, t - 2], tokens[:, t - 1]]
    u = rng.random(num_windows)[:, None] * rows[:, -1:]
    tokens[:, t] = np.minimum(np.sum(rows <= u, axis=-1), v - 1)
  return tokens


def make_char_lm_task(
  *,
  seed: int,
  context: int,
  num_windows: tuple[int, int, int],
  budget: Budget,
  model_dim: int,
  num_layers: int,
  num_heads: int,
  mlp_dim: int,
) -> Task:
  """A causal transformer LM on windows of the `char_lm_chain()` source.

  Examples are independent stationary windows of `context + 1` tokens
  (`num_windows` train/val/test, seeded by `seed`); the loss is the mean
  next-token cross-entropy (nats) and `eval_loss` is in bits per char.
  """
  chain = char_lm_chain()
  train, val, test = (
    _to_device({"tokens": sample_markov_windows(chain, n, context + 1, np.random.default_rng([seed, i]))})
    for i, n in enumerate(num_windows)
  )
  network = networks.make_causal_lm(
    CHAR_LM_VOCAB_SIZE,
    model_dim=model_dim,
    num_layers=num_layers,
    num_heads=num_heads,
    mlp_dim=mlp_dim,
  )

  def window_ce(params, tokens):
    """Summed next-token cross-entropy (nats) of each window."""
    logits = network.apply(params, tokens[..., :-1])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[..., 1:])
    return jnp.sum(ce, axis=-1)

  def loss(params, batch):
    return jnp.mean(window_ce(params, batch["tokens"])) / context

  def eval_loss(params, split):
    # Chunked over windows to bound activation memory under vmap.
    per_window = jax.lax.map(lambda t: window_ce(params, t), split["tokens"], batch_size=128)
    return jnp.mean(per_window) / context / math.log(2.0)

  # Position 0 of a window sees one token only, so the best possible window
  # average is slightly above the entropy rate.
  floor = (chain.bigram_entropy + (context - 1) * chain.entropy_rate) / context
  return Task(
    name="char_lm",
    description=(
      f"Causal transformer LM ({num_layers} layers, d={model_dim}, {num_heads} heads, "
      f"MLP {mlp_dim}) on a random sparse order-2 Markov source over "
      f"{CHAR_LM_VOCAB_SIZE} symbols (chain seed {CHAR_LM_CHAIN_SEED}); independent "
      f"stationary windows of {context + 1} tokens ({num_windows[0]}/{num_windows[1]}/"
      f"{num_windows[2]} train/val/test, seed {seed}). Exact entropies (bits/char): "
      f"rate {chain.entropy_rate:.4f}, best window average {floor:.4f}, order-1 "
      f"{chain.bigram_entropy:.4f}, unigram {chain.unigram_entropy:.4f}; batch "
      f"{budget.batch_size}, {budget.num_steps} steps; gradients clipped to global "
      f"norm {CHAR_LM_GRAD_CLIP} for every arm."
    ),
    init=network.init,
    loss=loss,
    eval_loss=eval_loss,
    project=None,
    train=train,
    val=val,
    test=test,
    batch_size=budget.batch_size,
    num_steps=budget.num_steps,
    eval_every=budget.eval_every,
    metric="held-out bits per char",
    grad_clip=CHAR_LM_GRAD_CLIP,
  )


def _char_lm(size: str, seed: int) -> Task:
  """T3: causal transformer LM, bits per char on independent chain windows."""
  # Sized for ~8 s per run on a 2-core CPU (see the module docstring).
  model = dict(model_dim=64, num_layers=2, num_heads=4, mlp_dim=128)
  if size == "smoke":
    return make_char_lm_task(
      seed=seed,
      context=16,
      num_windows=(64, 16, 16),
      budget=Budget(batch_size=8, num_steps=4, eval_every=2),
      **model,
    )
  return make_char_lm_task(
    seed=seed,
    context=32,
    num_windows=(1536, 256, 1024),
    budget=Budget(batch_size=8, num_steps=1500, eval_every=75),
    **model,
  )


# ---------------------------------------------------------------------------
# Stochastic NMF (T4).
# ---------------------------------------------------------------------------


def nmf_relative_error(params: Params, split: Split) -> jax.Array:
  """`||M * (V - W H)||_F / ||M * V||_F` over the split's rows and mask `M`."""
  recon = params["W"][split["row"]] @ params["H"]
  mask = split["mask"]
  num = jnp.sum(mask * jnp.square(split["v"] - recon))
  den = jnp.sum(mask * jnp.square(split["v"]))
  return jnp.sqrt(num / den)


def nmf_loss(params: Params, batch: Batch) -> jax.Array:
  """½ ‖M ⊙ (V_B − W_B H)‖²_F / |B|: the per-row objective, averaged over rows.

  The minibatch estimate of ½‖M ⊙ (V − WH)‖²_F / n_rows (the classic
  stochastic-NMF objective, summed over a row's observed entries), so SGD
  learning rates sit on the same scale as the other tasks'.  Only the W rows
  of the batch (and all of H) receive gradient.
  """
  recon = params["W"][batch["row"]] @ params["H"]
  sq = jnp.sum(batch["mask"] * jnp.square(batch["v"] - recon))
  return 0.5 * sq / batch["row"].shape[0]


def nmf_project(params: Params) -> Params:
  """Clips the factors to the nonnegative orthant."""
  return jax.tree.map(lambda x: jnp.maximum(x, 0.0), params)


def make_nmf_task(
  v: np.ndarray,
  rank: int,
  *,
  name: str,
  description: str,
  budget: Budget,
  seed: int,
  holdout_fraction: float = 0.1,
) -> Task:
  """Stochastic NMF of `v` with random held-out entries.

  A random `holdout_fraction` of the entries (seeded by `seed`) is held out
  and split in half into val and test masks; the rest is observed for
  training. Each split is `{'v': rows of V, 'mask': its entry mask, 'row':
  row ids}` over all rows, so `epoch_batch` on `train` draws a minibatch of
  rows. Init: W, H ~ U(0, sqrt(mean(V_train)/rank)).
  """
  v = np.asarray(v, np.float32)
  m, n = v.shape
  rng = np.random.default_rng([seed, 7])
  u = rng.random((m, n))
  val_mask = u < holdout_fraction / 2
  test_mask = (u >= holdout_fraction / 2) & (u < holdout_fraction)
  train_mask = ~(val_mask | test_mask)
  rows = np.arange(m, dtype=np.int32)
  train, val, test = (
    _to_device({"v": v, "mask": mask.astype(np.float32), "row": rows}) for mask in (train_mask, val_mask, test_mask)
  )
  scale = float(np.sqrt(v[train_mask].mean() / rank))

  def init(key):
    kw, kh = jax.random.split(key)
    return {
      "W": jax.random.uniform(kw, (m, rank), jnp.float32, 0.0, scale),
      "H": jax.random.uniform(kh, (rank, n), jnp.float32, 0.0, scale),
    }

  def eval_metrics(params, split):
    return {"relative_error": nmf_relative_error(params, split), "train_objective": nmf_loss(params, train)}

  return Task(
    name=name,
    description=description,
    init=init,
    loss=nmf_loss,
    eval_loss=nmf_relative_error,
    project=nmf_project,
    train=train,
    val=val,
    test=test,
    batch_size=budget.batch_size,
    num_steps=budget.num_steps,
    eval_every=budget.eval_every,
    metric="held-out relative error ||M(V-WH)||_F/||MV||_F",
    eval_metrics=eval_metrics,
  )


def nmf_synthetic_factors(
  seed: int, shape: tuple[int, int] = (300, 200), rank: int = 10, noise: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(W*, H*, V)` with V = W* H* + |N(0, s^2)|, s = noise * RMS(W* H*).

  Factor entries are Exponential(1) masked by Bernoulli(0.5) (sparse parts),
  so low ranks fit poorly and rank `rank` reaches the noise floor.
  """
  rng = np.random.default_rng([seed, 11])
  m, n = shape
  sparse = lambda s: rng.exponential(size=s) * (rng.random(s) < 0.5)
  w, h = sparse((m, rank)), sparse((rank, n))
  clean = w @ h
  s = noise * np.sqrt(np.mean(clean**2))
  v = clean + np.abs(rng.normal(0.0, s, size=clean.shape))
  return w.astype(np.float32), h.astype(np.float32), v.astype(np.float32)


def _nmf_synthetic(size: str, seed: int) -> Task:
  """T4a: NMF of a noisy synthetic nonnegative rank-10 matrix."""
  if size == "smoke":
    shape, rank, budget = (48, 32), 4, Budget(batch_size=8, num_steps=8, eval_every=4)
  else:
    shape, rank, budget = (300, 200), 10, Budget(batch_size=30, num_steps=2000, eval_every=100)
  w, h, v = nmf_synthetic_factors(seed, shape, rank)
  task = make_nmf_task(v, rank, name="nmf_synthetic", description="", budget=budget, seed=seed)
  oracle = float(nmf_relative_error({"W": jnp.asarray(w), "H": jnp.asarray(h)}, task.test))
  description = (
    f"Stochastic NMF of V = W*H* + |noise| ({shape[0]}x{shape[1]}, rank {rank}, sparse "
    f"Exponential factors, noise 10% of RMS, seed {seed}); 5%/5% of entries held out "
    f"for val/test; minibatches of {budget.batch_size} rows, {budget.num_steps} steps. "
    f"True factors score {oracle:.4f} test relative error."
  )
  return dataclasses.replace(task, description=description)


def _nmf_digits(size: str, seed: int) -> Task:
  """T4b: NMF of the digits pixel matrix (1,797 x 64, pixels/16), rank 12."""
  v = (sk_datasets.load_digits().data / 16.0).astype(np.float32)
  if size == "smoke":
    v, budget = v[:96], Budget(batch_size=16, num_steps=8, eval_every=4)
  else:
    budget = Budget(batch_size=64, num_steps=2000, eval_every=100)
  rank = 12
  return make_nmf_task(
    v,
    rank,
    name="nmf_digits",
    description=(
      f"Stochastic NMF of the digits pixel matrix ({v.shape[0]}x{v.shape[1]}, pixels/16), "
      f"rank {rank}; 5%/5% of entries held out for val/test (seed {seed}); minibatches "
      f"of {budget.batch_size} rows, {budget.num_steps} steps."
    ),
    budget=budget,
    seed=seed,
  )


# ---------------------------------------------------------------------------
# Registry.
# ---------------------------------------------------------------------------

_BUILDERS = {
  "digits_mlp": _digits_mlp,
  "mnist1d_cnn": _mnist1d_cnn,
  "char_lm": _char_lm,
  "nmf_synthetic": _nmf_synthetic,
  "nmf_digits": _nmf_digits,
  "logreg_breast_cancer": _logreg_breast_cancer,
}
assert tuple(_BUILDERS) == TASK_NAMES


def make_task(name: str, *, size: str = "full", seed: int = 0) -> Task:
  """Builds task `name` (see `TASK_NAMES`); data splits depend on `seed` only.

  Args:
    name: One of `TASK_NAMES`.
    size: `'full'` (the study budget) or `'smoke'` (tiny data, a few steps).
    seed: Data seed (splits, held-out masks, generated corpora). Parameter
      initialisation is seeded separately through `task.init(key)`.

  Returns:
    The `Task`, with all splits on device.
  """
  if name not in _BUILDERS:
    raise ValueError(f"unknown task {name!r}; expected one of {TASK_NAMES}.")
  _check_size(size)
  return _BUILDERS[name](size, seed)
