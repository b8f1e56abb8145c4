"""Contextual rephrase detection (ContReph; Wang et al., EMNLP 2021) as span prediction.

One example per request turn k (the source; `sessions.is_request`).  Its
candidates are the following turns that start within `max_gap` seconds of
the end of the source (`sessions.end_of`: the time-gap threshold), at most
`max_candidates`.  The input, from observations only:

  [CLS] source words  then per candidate  [SEP] <gap bucket> <signals> candidate words

with signals <barge_in> / <failed> (the source was barged in / got an error
or no match) and the candidate's NLU side intent (<stop>, <feedback_negative>,
<feedback_positive>).  Segment ids are 0 for the source and c + 1 for
candidate c; word ids come from a vocabulary of the training split.  The
target is the span over the true rephrase's words (`truth.rephrase_pairs`,
the only truth read), or the null span at [CLS] (SQuAD 2.0).

The span model (`rephrase_networks`, a word-level pre-LN Transformer,
optionally with frozen `common.text` sentence embeddings per turn) predicts
a rephrase iff its best span beats the null span by more than `threshold`;
the target is the candidate holding the span.  Baselines: a pairwise
classifier ([CLS] source [SEP] candidate, no other context; the best
candidate with p > 0.5) and the observable time-gap heuristic of
`sessions.reformulation_sessions`.  Scored on the test split against the
simulator's true pairs: pair and detection precision / recall / F1, span
exact match.

Public API: `train_detector(config, workdir, dialogues) -> Detector` and
`predict_pairs(detector, dialogues)` (per dialogue, the (source, target)
pairs, for `sessions.reformulation_sessions(dialogue, pairs=...)`).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import app
from selflearn import evaluation, features, sessions, text_features
from selflearn import rephrase_networks as nets
from selflearn import training as train_lib

TEXT_ENCODERS = ("none", "random", "minilm")
SIDE = ("stop", "feedback_negative", "feedback_positive")
SPECIALS = ("[CLS]", "[SEP]", "<barge_in>", "<failed>", *(f"<{s}>" for s in SIDE))
GAP_EDGES = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)  # seconds; bucket b: GAP_EDGES[b-1] <= gap < GAP_EDGES[b]
NUM_SIGNALS = 3  # at most: <barge_in>, <failed>, one side intent
KINDS = ("repeat", "clearer", "paraphrase", "fuller")
KEYNOTE = "ContReph significantly outperforms pairwise rephrase detection (EMNLP 2021 abstract; no figure retrieved)"


@dataclasses.dataclass(frozen=True)
class Layout:
  """Sizes of the padded inputs."""

  max_words: int  # words per turn kept
  max_candidates: int
  max_gap: float  # seconds from the end of the source

  @property
  def seq_len(self) -> int:
    return 1 + self.max_words + self.max_candidates * (2 + NUM_SIGNALS + self.max_words)

  @property
  def pair_len(self) -> int:
    return 3 + NUM_SIGNALS + 2 * self.max_words


def special_id(vocab: features.Vocab, name: str) -> int:
  return vocab.size + SPECIALS.index(name)


def gap_id(vocab: features.Vocab, gap: float) -> int:
  return vocab.size + len(SPECIALS) + int(np.searchsorted(GAP_EDGES, gap, side="right"))


def vocab_size(vocab: features.Vocab) -> int:
  """Words, specials and gap buckets."""
  return vocab.size + len(SPECIALS) + len(GAP_EDGES) + 1


def build_vocab(dialogues: Sequence[dict], max_size: int) -> features.Vocab:
  return features.Vocab.build((t["asr"]["text"] for d in dialogues for t in d["turns"]), max_size=max_size)


def candidates(dialogue: Mapping, k: int, *, max_gap: float, max_candidates: int) -> list[int]:
  """The turns after `k` starting within `max_gap` s of its end (`sessions.end_of`), at most `max_candidates`."""
  turns = dialogue["turns"]
  end = sessions.end_of(turns[k])
  out = [j for j in range(k + 1, len(turns)) if turns[j]["timestamp"] - end <= max_gap]
  return out[:max_candidates]


def true_pairs(dialogue: Mapping) -> dict[int, int]:
  """source turn -> its true rephrase (the simulator's `truth.rephrase_pairs`)."""
  return {p["source_turn"]: p["target_turn"] for p in dialogue["truth"]["rephrase_pairs"]}


def _signals(source: Mapping, cand: Mapping) -> list[str]:
  out = ["<barge_in>"] if source["signals"]["barge_in"] else []
  if source["result"]["status"] in ("error", "no_match"):
    out.append("<failed>")
  if cand["nlu"]["intent"] in SIDE:
    out.append(f"<{cand['nlu']['intent']}>")
  return out


@dataclasses.dataclass
class Examples:
  """Span examples of a list of dialogues: padded inputs, targets, and where each came from."""

  inputs: dict[str, np.ndarray]  # ids, segment, mask, span_ok [N, S]; turn_emb [N, C + 1, D] with embeddings
  labels: dict[str, np.ndarray]  # y_start, y_end [N] (0: the null span); empty without labels
  dialogue: np.ndarray  # [N] index into the dialogue list
  source: np.ndarray  # [N] source turn id
  cand_turns: np.ndarray  # [N, C] candidate turn ids, -1 padding
  words: np.ndarray  # [N, C, 2] first and last position of each candidate's words (-1: none)
  texts: list[list[str]]  # per example: source text, then candidate texts

  @property
  def size(self) -> int:
    return int(self.source.shape[0])


def build_examples(dialogues: Sequence[dict], vocab: features.Vocab, layout: Layout, *, labels: bool = True):
  """`Examples` of every request turn; inputs from observations, targets (if `labels`) from the true pairs."""
  W, C, S = layout.max_words, layout.max_candidates, layout.seq_len
  rows = [(i, k) for i, d in enumerate(dialogues) for k, t in enumerate(d["turns"]) if sessions.is_request(t)]
  n = len(rows)
  ids, segment = np.zeros((n, S), np.int32), np.zeros((n, S), np.int32)
  span_ok = np.zeros((n, S), bool)
  cand_turns, words = np.full((n, C), -1, np.int32), np.full((n, C, 2), -1, np.int32)
  texts = []
  for e, (i, k) in enumerate(rows):
    turns = dialogues[i]["turns"]
    src = turns[k]
    seq = [special_id(vocab, "[CLS]")] + [x for x in vocab.ids(features.words(src["asr"]["text"]), W) if x]
    seg = [0] * len(seq)
    texts.append([src["asr"]["text"]])
    for c, j in enumerate(candidates(dialogues[i], k, max_gap=layout.max_gap, max_candidates=C)):
      cand = turns[j]
      head = [special_id(vocab, "[SEP]"), gap_id(vocab, cand["timestamp"] - sessions.end_of(src))]
      head += [special_id(vocab, s) for s in _signals(src, cand)]
      body = [x for x in vocab.ids(features.words(cand["asr"]["text"]), W) if x]
      if body:
        words[e, c] = (len(seq) + len(head), len(seq) + len(head) + len(body) - 1)
      seq += head + body
      seg += [c + 1] * (len(head) + len(body))
      cand_turns[e, c] = j
      texts[-1].append(cand["asr"]["text"])
    ids[e, : len(seq)], segment[e, : len(seq)] = seq, seg
    for first, last in words[e]:
      if first >= 0:
        span_ok[e, first : last + 1] = True
  inputs = {"ids": ids, "segment": segment, "mask": ids != features.PAD, "span_ok": span_ok}
  ex = Examples(inputs, {}, np.array([r[0] for r in rows], np.int32), np.array([r[1] for r in rows], np.int32),
                cand_turns, words, texts)  # fmt: skip
  if labels:
    ex.labels = span_targets(dialogues, ex)
  return ex


def span_targets(dialogues: Sequence[dict], ex: Examples) -> dict[str, np.ndarray]:
  """`y_start`, `y_end`: the true rephrase's word span, or (0, 0) when it is not among the candidates."""
  y = np.zeros((ex.size, 2), np.int32)
  truth = [true_pairs(d) for d in dialogues]
  for e in range(ex.size):
    target = truth[ex.dialogue[e]].get(int(ex.source[e]))
    hit = np.flatnonzero(ex.cand_turns[e] == target) if target is not None else []
    if len(hit) and ex.words[e, hit[0], 0] >= 0:
      y[e] = ex.words[e, hit[0]]
  return {"y_start": y[:, 0], "y_end": y[:, 1]}


def pair_examples(dialogues: Sequence[dict], vocab: features.Vocab, layout: Layout, ex: Examples, *, signals: bool):
  """The pairwise baseline's inputs: [CLS] source [SEP] (<gap> <signals> if `signals`) candidate, per pair.

  Returns `(inputs, owner, slot, y_pair)`: `owner` / `slot` index `ex` and its candidate; `y_pair` from the truth.
  """
  W, P = layout.max_words, layout.pair_len
  owner, slot = np.nonzero(ex.cand_turns >= 0)
  ids, segment = np.zeros((len(owner), P), np.int32), np.zeros((len(owner), P), np.int32)
  y = np.zeros(len(owner), np.int32)
  truth = [true_pairs(d) for d in dialogues]
  for m, (e, c) in enumerate(zip(owner, slot)):
    turns = dialogues[ex.dialogue[e]]["turns"]
    src, cand = turns[ex.source[e]], turns[ex.cand_turns[e, c]]
    a = [special_id(vocab, "[CLS]")] + [x for x in vocab.ids(features.words(src["asr"]["text"]), W) if x]
    b = [special_id(vocab, "[SEP]")]
    if signals:
      b += [gap_id(vocab, cand["timestamp"] - sessions.end_of(src))] + [
        special_id(vocab, s) for s in _signals(src, cand)
      ]
    b += [x for x in vocab.ids(features.words(cand["asr"]["text"]), W) if x]
    ids[m, : len(a) + len(b)] = a + b
    segment[m, len(a) : len(a) + len(b)] = 1
    y[m] = truth[ex.dialogue[e]].get(int(ex.source[e])) == ex.cand_turns[e, c]
  inputs = {"ids": ids, "segment": segment, "mask": ids != features.PAD}
  if "turn_emb" in ex.inputs:
    inputs["turn_emb"] = np.stack([ex.inputs["turn_emb"][owner, 0], ex.inputs["turn_emb"][owner, slot + 1]], 1)
  return inputs, owner, slot, y


def add_embeddings(ex: Examples, kind: str, num_segments: int, cache_dir: pathlib.Path | None) -> int:
  """Adds frozen `common.text` embeddings of each example's turns (`turn_emb`); returns their size (0: none)."""
  if kind == "none":
    return 0
  flat = [t for texts in ex.texts for t in texts]
  emb = text_features.embed_texts(kind, flat, cache_dir=cache_dir)
  out = np.zeros((ex.size, num_segments, emb.shape[-1]), np.float32)
  k = 0
  for e, texts in enumerate(ex.texts):
    out[e, : len(texts)] = emb[k : k + len(texts)]
    k += len(texts)
  ex.inputs["turn_emb"] = out
  return int(emb.shape[-1])


# --- the trained detector ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Detector:
  """A trained span model and what it needs to encode and decode new dialogues."""

  network: Any
  params: Any
  vocab: features.Vocab
  layout: Layout
  max_span: int
  threshold: float
  text_encoder: str
  cache_dir: pathlib.Path | None = None


def layout_of(config: ml_collections.ConfigDict) -> Layout:
  return Layout(config.data.max_tokens, config.max_candidates, float(config.max_gap))


def make_network(config: ml_collections.ConfigDict, vocab: features.Vocab, head: str, text_dim: int):
  layout, m = layout_of(config), config.model
  return nets.make_model(
    seq_len=layout.seq_len if head == "span" else layout.pair_len,
    num_segments=layout.max_candidates + 1 if head == "span" else 2,
    vocab_size=vocab_size(vocab), head=head, dim=m.dim, num_layers=m.num_layers, num_heads=m.num_heads,
    text_dim=text_dim, dropout_rate=m.dropout_rate,
  )  # fmt: skip


def _fit(config, stage_dir, network, head, train, val):
  params, _ = train_lib.fit(
    stage_dir, network=network, loss_fn=nets.make_loss(network.apply, head), train=train, val=val, config=config,
    num_epochs=config.num_epochs, seed=config.seed, eval_loss_fn=nets.make_loss(network.apply, head, train=False),
  )  # fmt: skip
  return params


def _check_size(config, n: int, what: str) -> None:
  app.check(config, "batch_size", lambda v: v <= n, f"must be <= the {n} training {what}")


def train_detector(config: ml_collections.ConfigDict, workdir: pathlib.Path, dialogues: train_lib.Dialogues):
  """Fits (or resumes) the span model in `workdir/rephrase` on the training split; returns a `Detector`."""
  layout, cache = layout_of(config), workdir / "data"
  vocab = build_vocab(dialogues.train, config.data.vocab_size)
  train, val = (build_examples(d, vocab, layout) for d in (dialogues.train, dialogues.val))
  _check_size(config, train.size, "examples")
  text_dim = [add_embeddings(x, config.text_encoder, layout.max_candidates + 1, cache) for x in (train, val)][0]
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


def span_decisions(detector: Detector, ex: Examples) -> dict[str, np.ndarray]:
  """Per example: the best span `i`, `j`, its `margin` over the null span, and the predicted `target` (-1: none)."""

  def fn(params, b):
    start, end = detector.network.apply(params, b)
    return nets.decode_spans(start, end, b["span_ok"], b["segment"], detector.max_span)

  i, j, margin = _apply_chunks(jax.jit(fn), detector.params, ex.inputs) if ex.size else (np.zeros(0, int),) * 3
  hit = margin > detector.threshold
  seg = ex.inputs["segment"][np.arange(ex.size), i] if ex.size else np.zeros(0, int)
  target = np.where(hit, ex.cand_turns[np.arange(ex.size), np.maximum(seg - 1, 0)], -1)
  return {"i": np.where(hit, i, 0), "j": np.where(hit, j, 0), "margin": margin, "target": target}


def _group(ex: Examples, target: np.ndarray, num_dialogues: int) -> list[list[tuple[int, int]]]:
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
  ex = build_examples(dialogues, detector.vocab, detector.layout, labels=False)
  add_embeddings(ex, detector.text_encoder, detector.layout.max_candidates + 1, detector.cache_dir)
  return _group(ex, span_decisions(detector, ex)["target"], len(dialogues))


def heuristic_pairs(dialogues: Sequence[dict]) -> list[list[tuple[int, int]]]:
  """The observable time-gap heuristic's pairs (consecutive requests of `sessions.reformulation_sessions`)."""
  return [[p for s in sessions.reformulation_sessions(d) for p in zip(s.turns, s.turns[1:])] for d in dialogues]


# --- metrics -------------------------------------------------------------------------------


def _prf(tp: int, n_pred: int, n_true: int) -> dict[str, float]:
  p = tp / n_pred if n_pred else 0.0
  r = tp / n_true if n_true else 0.0
  return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def pair_scores(true: Sequence[Mapping[int, int]], pred: Sequence[Sequence[tuple[int, int]]]) -> dict[str, Any]:
  """Precision / recall / F1 of predicted (source, target) pairs against the true ones, summed over dialogues."""
  tp = sum(len(set(t.items()) & set(map(tuple, p))) for t, p in zip(true, pred, strict=True))
  n_pred, n_true = sum(len(set(map(tuple, p))) for p in pred), sum(len(t) for t in true)
  return {**_prf(tp, n_pred, n_true), "tp": tp, "predicted": n_pred, "true": n_true}


def detection_scores(dialogues, true, pred) -> dict[str, float]:
  """P/R/F1 of "request k has a rephrase", over the request turns (and any true or predicted source)."""
  y_true, y_pred = [], []
  for d, t, p in zip(dialogues, true, pred, strict=True):
    sources = {s for s, _ in p}
    universe = {k for k, turn in enumerate(d["turns"]) if sessions.is_request(turn)} | set(t) | sources
    y_true += [k in t for k in sorted(universe)]
    y_pred += [k in sources for k in sorted(universe)]
  pc = evaluation.per_class(np.array(y_true, int), np.array(y_pred, int), [1])
  return {k: float(pc[k][0]) for k in ("precision", "recall", "f1")}


def recall_by_kind(dialogues, pred) -> dict[str, float]:
  """Pair recall per rephrase kind (repeat, clearer, paraphrase, fuller)."""
  hits, counts = dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0)
  for d, p in zip(dialogues, pred, strict=True):
    found = set(map(tuple, p))
    for q in d["truth"]["rephrase_pairs"]:
      counts[q["kind"]] = counts.get(q["kind"], 0) + 1
      hits[q["kind"]] = hits.get(q["kind"], 0) + ((q["source_turn"], q["target_turn"]) in found)
  return {k: hits[k] / counts[k] if counts[k] else float("nan") for k in counts}


def span_exact_match(i, j, y_start, y_end) -> dict[str, float]:
  """Share of examples whose decoded span (null = (0, 0)) equals the target, overall and on true rephrases."""
  same, pos = (np.asarray(i) == y_start) & (np.asarray(j) == y_end), np.asarray(y_start) > 0
  return {
    "all": float(same.mean()) if same.size else math.nan,
    "positive": float(same[pos].mean()) if pos.any() else math.nan,
  }


def system_scores(dialogues, true, pred) -> dict[str, Any]:
  return {
    "pairs": pair_scores(true, pred),
    "detection": detection_scores(dialogues, true, pred),
    "recall_by_kind": recall_by_kind(dialogues, pred),
  }


# --- the task ------------------------------------------------------------------------------


def _is_int(v, low: int = 1) -> bool:
  return isinstance(v, int) and not isinstance(v, bool) and v >= low


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field, before anything compiles."""
  from selflearn.configs import rephrase as rephrase_config  # pylint: disable=g-import-not-at-top

  app.check(config, "task", lambda v: v == "rephrase", "must be 'rephrase'")
  app.check_known_fields(config, rephrase_config.get_config())
  app.check(config, "text_encoder", lambda v: v in TEXT_ENCODERS, f"must be one of {TEXT_ENCODERS}")
  num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
  app.check(config, "max_gap", lambda v: num(v) and v > 0, "must be a number of seconds > 0")
  app.check(config, "max_candidates", _is_int, "must be an integer >= 1")
  app.check(config, "max_span", _is_int, "must be an integer >= 1 (tokens)")
  app.check(config, "threshold", num, "must be a finite number (span score minus null score)")
  for field in ("baseline", "baseline_signals"):
    app.check(config, field, lambda v: isinstance(v, bool), "must be True or False")
  for field in ("model.dim", "model.num_layers", "model.num_heads"):
    app.check(config, field, _is_int, "must be an integer >= 1")
  app.check(config, "model.dim", lambda v: v % config.model.num_heads == 0, "must be a multiple of model.num_heads")
  app.check(config, "model.dropout_rate", lambda v: num(v) and 0 <= v < 1, "must be in [0, 1)")
  train_count = train_lib.validate_common(config, batch_unit="examples")
  app.check(config, "batch_size", lambda v: v <= train_count, f"must be <= the {train_count} training dialogues")


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, dialogues: train_lib.Dialogues) -> dict[str, Any]:
  """Trains (resuming) the span model and the pairwise baseline; scores all three systems on the test split."""
  test = dialogues.test
  truth = [true_pairs(d) for d in test]
  detector = train_detector(config, workdir, dialogues)
  ex = build_examples(test, detector.vocab, detector.layout)
  add_embeddings(ex, config.text_encoder, detector.layout.max_candidates + 1, detector.cache_dir)
  dec = span_decisions(detector, ex)
  systems = {"span": _group(ex, dec["target"], len(test))}
  if config.baseline:
    systems["pairwise"] = _pairwise(config, workdir, dialogues, detector, ex)
  systems["gap_heuristic"] = heuristic_pairs(test)
  in_window = sum(int(np.any(c == truth[d].get(int(s), -2))) for d, s, c in zip(ex.dialogue, ex.source, ex.cand_turns))
  results = {
    "task": "rephrase",
    "test_dialogues": len(test),
    "test_requests": ex.size,
    "test_true_pairs": sum(len(t) for t in truth),
    "true_pairs_in_window": in_window,
    "settings": {k: config[k] for k in ("text_encoder", "max_gap", "max_candidates", "max_span", "threshold")},
    "systems": {k: system_scores(test, truth, v) for k, v in systems.items()},
    "span_exact_match": span_exact_match(dec["i"], dec["j"], ex.labels["y_start"], ex.labels["y_end"]),
    "keynote": KEYNOTE,
  }
  train_lib.write_results(workdir, results, render(results))
  s = results["systems"]
  line = ", ".join(f"{k} {v['pairs']['f1']:.3f}" for k, v in s.items())
  print(f"outputs in {workdir}: results.json, results.md, rephrase/, data/ | test pair F1: {line}", flush=True)
  out = {f"{k}_pair_f1": v["pairs"]["f1"] for k, v in s.items()}
  return {
    **out,
    "span_pair_precision": s["span"]["pairs"]["precision"],
    "span_pair_recall": s["span"]["pairs"]["recall"],
  }


def _pairwise(config, workdir, dialogues, detector: Detector, test_ex: Examples) -> list[list[tuple[int, int]]]:
  """Fits (resuming) the pairwise baseline in `workdir/rephrase_pairwise`; its test pairs."""
  layout, vocab, kind = detector.layout, detector.vocab, config.text_encoder
  splits = []
  for d in (dialogues.train, dialogues.val):
    ex = build_examples(d, vocab, layout)
    text_dim = add_embeddings(ex, kind, layout.max_candidates + 1, detector.cache_dir)
    inputs, _, _, y = pair_examples(d, vocab, layout, ex, signals=config.baseline_signals)
    splits.append({**{k: jnp.asarray(v) for k, v in inputs.items()}, "y_pair": jnp.asarray(y)})
  _check_size(config, int(splits[0]["y_pair"].shape[0]), "pairs")
  network = make_network(config, vocab, "pair", text_dim)
  params = _fit(config, workdir / "rephrase_pairwise", network, "pair", *splits)
  inputs, owner, slot, _ = pair_examples(dialogues.test, vocab, layout, test_ex, signals=config.baseline_signals)
  prob = _apply_chunks(jax.jit(lambda p, b: jax.nn.sigmoid(network.apply(p, b))), params, inputs)
  return _group(test_ex, pairwise_targets(prob, owner, slot, test_ex.cand_turns), len(dialogues.test))


def pairwise_targets(prob: np.ndarray, owner: np.ndarray, slot: np.ndarray, cand_turns: np.ndarray) -> np.ndarray:
  """Per example, the candidate turn of highest probability if above 0.5, else -1."""
  best = np.full(cand_turns.shape, -np.inf)
  best[owner, slot] = prob
  c = np.argmax(best, axis=1)
  return np.where(best[np.arange(len(c)), c] > 0.5, cand_turns[np.arange(len(c)), c], -1)


ROWS = (
  ("span", "span model (ContReph-style)"),
  ("pairwise", "pairwise classifier"),
  ("gap_heuristic", "time-gap heuristic"),
)


def render(results: dict) -> str:
  """The Markdown tables of a results dict."""
  s = results["settings"]
  lines = [
    "# Contextual rephrase detection: test split",
    "",
    f"{results['test_dialogues']} test dialogues, {results['test_requests']} request turns (sources),"
    f" {results['test_true_pairs']} true rephrase pairs ({results['true_pairs_in_window']} inside the candidate window:"
    f" max_gap {s['max_gap']} s, max_candidates {s['max_candidates']}). Text encoder: {s['text_encoder']}.",
    "",
    "| system | pair P | pair R | pair F1 | detection P | detection R | detection F1 |",
    "|---|---|---|---|---|---|---|",
  ]
  for key, name in ROWS:
    if key in results["systems"]:
      p, d = results["systems"][key]["pairs"], results["systems"][key]["detection"]
      cells = [p["precision"], p["recall"], p["f1"], d["precision"], d["recall"], d["f1"]]
      lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
  em = results["span_exact_match"]
  lines += [
    "",
    f"Span exact match (span model): {em['all']:.3f} of all sources, {em['positive']:.3f} of true rephrases.",
  ]
  lines += [
    "",
    "Pair recall by rephrase kind:",
    "",
    "| system | " + " | ".join(KINDS) + " |",
    "|---|" + "---|" * len(KINDS),
  ]
  for key, name in ROWS:
    if key in results["systems"]:
      r = results["systems"][key]["recall_by_kind"]
      lines.append(f"| {name} | " + " | ".join(f"{r.get(k, math.nan):.3f}" for k in KINDS) + " |")
  lines += ["", f"Paper: {results['keynote']}."]
  return "\n".join(lines) + "\n"
