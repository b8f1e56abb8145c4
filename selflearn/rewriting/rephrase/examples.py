"""Inputs of contextual rephrase detection: one example per request, its candidates and the span target.

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
`pair_examples` gives the pairwise baseline's inputs ([CLS] source [SEP]
candidate), `add_embeddings` frozen sentence embeddings per turn.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Mapping, Sequence

import numpy as np

from selflearn.data import truth as truth_lib
from selflearn.signals import features, sessions, text_features

SIDE = ("stop", "feedback_negative", "feedback_positive")
SPECIALS = ("[CLS]", "[SEP]", "<barge_in>", "<failed>", *(f"<{s}>" for s in SIDE))
GAP_EDGES = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)  # seconds; bucket b: GAP_EDGES[b-1] <= gap < GAP_EDGES[b]
NUM_SIGNALS = 3  # at most: <barge_in>, <failed>, one side intent


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
  truth = [truth_lib.true_pairs(d) for d in dialogues]
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
  truth = [truth_lib.true_pairs(d) for d in dialogues]
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
