"""The trained rephrase detector: the span model, its decisions, the pairwise baseline.

The span model (`networks`, a word-level pre-LN Transformer, optionally with
frozen `common.text` sentence embeddings per turn) over `examples` predicts
a rephrase iff its best span beats the null span by more than `threshold`;
the target is the candidate holding the span.  Baselines: a pairwise
classifier ([CLS] source [SEP] candidate, no other context; the best
candidate with p > 0.5, `train_pairwise`) and the observable time-gap
heuristic of `sessions.reformulation_sessions` (`heuristic_pairs`).

Public API: `train_detector(config, workdir, dialogues) -> Detector` and
`predict_pairs(detector, dialogues)` (per dialogue, the (source, target)
pairs, for `sessions.reformulation_sessions(dialogue, pairs=...)`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import app
from selflearn import training
from selflearn.data import splits
from selflearn.rewriting.rephrase import examples
from selflearn.rewriting.rephrase import networks as nets
from selflearn.signals import features, sessions


@dataclasses.dataclass(frozen=True)
class Detector:
  """A trained span model and what it needs to encode and decode new dialogues."""

  network: Any
  params: Any
  vocab: features.Vocab
  layout: examples.Layout
  max_span: int
  threshold: float
  text_encoder: str
  cache_dir: pathlib.Path | None = None


def layout_of(config: ml_collections.ConfigDict) -> examples.Layout:
  return examples.Layout(config.data.max_tokens, config.max_candidates, float(config.max_gap))


def make_network(config: ml_collections.ConfigDict, vocab: features.Vocab, head: str, text_dim: int):
  layout, m = layout_of(config), config.model
  return nets.make_model(
    seq_len=layout.seq_len if head == "span" else layout.pair_len,
    num_segments=layout.max_candidates + 1 if head == "span" else 2,
    vocab_size=examples.vocab_size(vocab), head=head, dim=m.dim, num_layers=m.num_layers, num_heads=m.num_heads,
    text_dim=text_dim, dropout_rate=m.dropout_rate,
  )  # fmt: skip


def _fit(config, stage_dir, network, head, train, val):
  params, _ = training.fit(
    stage_dir, network=network, loss_fn=nets.make_loss(network.apply, head), train=train, val=val, config=config,
    num_epochs=config.num_epochs, seed=config.seed, eval_loss_fn=nets.make_loss(network.apply, head, train=False),
  )  # fmt: skip
  return params


def _check_size(config, n: int, what: str) -> None:
  app.check(config, "batch_size", lambda v: v <= n, f"must be <= the {n} training {what}")


def train_detector(config: ml_collections.ConfigDict, workdir: pathlib.Path, dialogues: splits.Dialogues):
  """Fits (or resumes) the span model in `workdir/rephrase` on the training split; returns a `Detector`."""
  layout, cache = layout_of(config), workdir / "data"
  vocab = examples.build_vocab(dialogues.train, config.data.vocab_size)
  train, val = (examples.build_examples(d, vocab, layout) for d in (dialogues.train, dialogues.val))
  _check_size(config, train.size, "examples")
  text_dim = [examples.add_embeddings(x, config.text_encoder, layout.max_candidates + 1, cache) for x in (train, val)][
    0
  ]
  network = make_network(config, vocab, "span", text_dim)
  batch = lambda x: {k: jnp.asarray(v) for k, v in {**x.inputs, **x.labels}.items()}
  params = _fit(config, workdir / "rephrase", network, "span", batch(train), batch(val))
  return Detector(network, params, vocab, layout, config.max_span, float(config.threshold), config.text_encoder, cache)


def _apply_chunks(fn, params, inputs: dict, chunk: int = 512):
  """`fn(params, batch)` over `inputs` in fixed-size chunks (one compilation); NumPy outputs."""
  n = next(iter(inputs.values())).shape[0]
  size, outs = max(min(chunk, n), 1), []
  for start in range(0, n, size):
    idx = np.minimum(np.arange(start, start + size), n - 1)  # pad the last chunk by repetition
    out = fn(params, {k: v[idx] for k, v in inputs.items()})
    keep = min(size, n - start)
    outs.append(jax.tree.map(lambda x, keep=keep: np.asarray(x)[:keep], out))
  return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def span_decisions(detector: Detector, ex: examples.Examples) -> dict[str, np.ndarray]:
  """Per example: the best span `i`, `j`, its `margin` over the null span, and the predicted `target` (-1: none)."""

  def fn(params, b):
    start, end = detector.network.apply(params, b)
    return nets.decode_spans(start, end, b["span_ok"], b["segment"], detector.max_span)

  i, j, margin = _apply_chunks(jax.jit(fn), detector.params, ex.inputs) if ex.size else (np.zeros(0, int),) * 3
  hit = margin > detector.threshold
  seg = ex.inputs["segment"][np.arange(ex.size), i] if ex.size else np.zeros(0, int)
  target = np.where(hit, ex.cand_turns[np.arange(ex.size), np.maximum(seg - 1, 0)], -1)
  return {"i": np.where(hit, i, 0), "j": np.where(hit, j, 0), "margin": margin, "target": target}


def group_pairs(ex: examples.Examples, target: np.ndarray, num_dialogues: int) -> list[list[tuple[int, int]]]:
  """Per dialogue, the (source, target) pairs of the examples whose target is a turn (>= 0)."""
  out: list[list[tuple[int, int]]] = [[] for _ in range(num_dialogues)]
  for d, s, t in zip(ex.dialogue, ex.source, target):
    if t >= 0:
      out[int(d)].append((int(s), int(t)))
  return out


def predict_pairs(detector: Detector, dialogues: Sequence[dict]) -> list[list[tuple[int, int]]]:
  """Per dialogue, the detected (source_turn, target_turn) rephrase pairs, sources in order.

  Reads observations only (no `truth`), so it runs on production-style logs;
  feed each list to `sessions.reformulation_sessions(dialogue, pairs=...)`.
  """
  ex = examples.build_examples(dialogues, detector.vocab, detector.layout, labels=False)
  examples.add_embeddings(ex, detector.text_encoder, detector.layout.max_candidates + 1, detector.cache_dir)
  return group_pairs(ex, span_decisions(detector, ex)["target"], len(dialogues))


def heuristic_pairs(dialogues: Sequence[dict]) -> list[list[tuple[int, int]]]:
  """The observable time-gap heuristic's pairs (consecutive requests of `sessions.reformulation_sessions`)."""
  return [[p for s in sessions.reformulation_sessions(d) for p in zip(s.turns, s.turns[1:])] for d in dialogues]


def train_pairwise(
  config, workdir, dialogues, detector: Detector, test_ex: examples.Examples
) -> list[list[tuple[int, int]]]:
  """Fits (resuming) the pairwise baseline in `workdir/rephrase_pairwise`; its test pairs."""
  layout, vocab, kind = detector.layout, detector.vocab, config.text_encoder
  batches = []
  for d in (dialogues.train, dialogues.val):
    ex = examples.build_examples(d, vocab, layout)
    text_dim = examples.add_embeddings(ex, kind, layout.max_candidates + 1, detector.cache_dir)
    inputs, _, _, y = examples.pair_examples(d, vocab, layout, ex, signals=config.baseline_signals)
    batches.append({**{k: jnp.asarray(v) for k, v in inputs.items()}, "y_pair": jnp.asarray(y)})
  _check_size(config, int(batches[0]["y_pair"].shape[0]), "pairs")
  network = make_network(config, vocab, "pair", text_dim)
  params = _fit(config, workdir / "rephrase_pairwise", network, "pair", *batches)
  inputs, owner, slot, _ = examples.pair_examples(
    dialogues.test, vocab, layout, test_ex, signals=config.baseline_signals
  )
  prob = _apply_chunks(jax.jit(lambda p, b: jax.nn.sigmoid(network.apply(p, b))), params, inputs)
  return group_pairs(test_ex, pairwise_targets(prob, owner, slot, test_ex.cand_turns), len(dialogues.test))


def pairwise_targets(prob: np.ndarray, owner: np.ndarray, slot: np.ndarray, cand_turns: np.ndarray) -> np.ndarray:
  """Per example, the candidate turn of highest probability if above 0.5, else -1."""
  best = np.full(cand_turns.shape, -np.inf)
  best[owner, slot] = prob
  c = np.argmax(best, axis=1)
  return np.where(best[np.arange(len(c)), c] > 0.5, cand_turns[np.arange(len(c)), c], -1)
