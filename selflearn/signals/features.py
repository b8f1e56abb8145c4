"""Dialogue logs -> padded model arrays (observations) and label arrays (ground truth).

Only the observed fields of a record become inputs (recognised text, the
response, NLU/ER/result decisions, confidences, timing, barge-ins, device
and time of day, summary audio features); `truth` blocks only become
labels.  Shapes, with `T` turns and `L` tokens per text:

* `utt_ids`, `resp_ids` `[N, T, L]` int32 word ids (`Vocab`), with masks;
* `cat` `[N, T, len(CATEGORICAL)]` int32 categorical features;
* `num` `[N, T, len(NUMERIC)]` float32 numerical features;
* `audio` `[N, T, 6]` float32;
* `turn_mask` `[N, T]` bool.

Labels (`LABELS`): `segment` (B/I/O), `success` (the turn's goal succeeded;
-1 outside goals), `intent`, `fpi` (failure point), `tags` and `values`
(`[N, T, L]` BIO slot tags and canonical value ids of the recognised
words), `goal` (goal index, -1 outside goals).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Iterable, Sequence

import numpy as np

from selflearn.data import schema
from selflearn.language import ontology

SEGMENTS = schema.SEGMENTS
FAILURE_POINTS = schema.FAILURE_POINTS
INTENTS = ontology.INTENT_NAMES
TAGS = ("O", *(f"{p}-{s}" for s in ontology.SLOT_NAMES for p in ("B", "I")))
CATEGORICAL = {
  "nlu_domain": ontology.DOMAIN_NAMES,
  "nlu_intent": INTENTS,
  "nlu_second_intent": INTENTS,
  "result_status": schema.STATUSES,
  "device_type": ("speaker", "screen"),
  "time_of_day": ontology.TIME_OF_DAY,
  "oven": ("off", "on"),
}
NUMERIC = (
  "log_tokens",
  "asr_confidence",
  "asr_nbest_margin",
  "nlu_confidence",
  "nlu_margin",
  "wake_score",
  "er_score",
  "unresolved_slots",
  "num_slots",
  "log_response_duration",
  "utterance_duration",
  "log_gap",
  "barge_in",
  "barge_in_fraction",
  "num_nbest",
  "position",
)
AUDIO_SIZE = 6
PAD, UNK = 0, 1
_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
  """Lower-cased word tokens (punctuation dropped)."""
  return _WORD.findall(text.lower())


@dataclasses.dataclass(frozen=True)
class Vocab:
  """Word -> id (0 padding, 1 unknown), built from training texts."""

  words: tuple[str, ...]

  @classmethod
  def build(cls, texts: Iterable[str], max_size: int = 5000) -> "Vocab":
    counts: dict[str, int] = {}
    for t in texts:
      for w in words(t):
        counts[w] = counts.get(w, 0) + 1
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[: max_size - 2]
    return cls(tuple(sorted(ranked)))

  @property
  def size(self) -> int:
    return len(self.words) + 2

  def ids(self, text_words: Sequence[str], length: int) -> list[int]:
    index = self._index
    out = [index.get(w, UNK) for w in text_words[:length]]
    return out + [PAD] * (length - len(out))

  @property
  def _index(self) -> dict[str, int]:
    cached = self.__dict__.get("_cache")
    if cached is None:
      cached = {w: i + 2 for i, w in enumerate(self.words)}
      object.__setattr__(self, "_cache", cached)
    return cached


def value_vocab(dialogues: Iterable[dict]) -> tuple[str, ...]:
  """Canonical slot values seen in `dialogues` (index 0 = none, 1 = unknown value)."""
  seen = set()
  for d in dialogues:
    for t in d["turns"]:
      seen.update(t["truth"]["values"].values())
  return ("<none>", "<unk>", *sorted(seen))


@dataclasses.dataclass
class Dataset:
  """Inputs, labels and the texts (for frozen sentence embeddings) of a split."""

  inputs: dict[str, np.ndarray]
  labels: dict[str, np.ndarray]
  utt_texts: list[list[str]]  # per dialogue, per turn (recognised text)
  resp_texts: list[list[str]]

  @property
  def size(self) -> int:
    return int(self.inputs["turn_mask"].shape[0])


def _index(names: Sequence[str], value: str, field: str) -> int:
  """The category's id; an unknown value is an error (never silently category 0, e.g. the false-wake class)."""
  try:
    return names.index(value)
  except ValueError:
    raise ValueError(
      f"{field}: {value!r} is not one of the {len(names)} categories this model encodes"
      " (it reads the simulator's categories; a log to the minimal contract goes to the rewriting tasks)"
    ) from None


def encode(
  dialogues: Sequence[dict], vocab: Vocab, values: Sequence[str], *, max_turns: int, max_tokens: int
) -> Dataset:
  """Pads `dialogues` (truncated to `max_turns` turns, `max_tokens` words) into a `Dataset`."""
  n, T, L = len(dialogues), max_turns, max_tokens
  inputs = {
    "utt_ids": np.zeros((n, T, L), np.int32),
    "resp_ids": np.zeros((n, T, L), np.int32),
    "cat": np.zeros((n, T, len(CATEGORICAL)), np.int32),
    "num": np.zeros((n, T, len(NUMERIC)), np.float32),
    "audio": np.zeros((n, T, AUDIO_SIZE), np.float32),
    "turn_mask": np.zeros((n, T), bool),
  }
  labels = {
    "segment": np.zeros((n, T), np.int32),
    "success": np.full((n, T), -1, np.int32),
    "intent": np.zeros((n, T), np.int32),
    "fpi": np.zeros((n, T), np.int32),
    "tags": np.zeros((n, T, L), np.int32),
    "values": np.zeros((n, T, L), np.int32),
    "goal": np.full((n, T), -1, np.int32),
  }
  value_index = {v: i for i, v in enumerate(values)}
  cat_names = list(CATEGORICAL.values())
  utt_texts, resp_texts = [], []
  for i, d in enumerate(dialogues):
    goals = d["truth"]["goals"]
    turns = d["turns"][:T]
    utt_texts.append([t["asr"]["text"] for t in turns])
    resp_texts.append([t["response"]["text"] for t in turns])
    prev_end = None
    for j, t in enumerate(turns):
      asr_words = t["asr"]["text"].split()
      inputs["utt_ids"][i, j] = vocab.ids(asr_words, L)
      inputs["resp_ids"][i, j] = vocab.ids(words(t["response"]["text"]), L)
      inputs["turn_mask"][i, j] = True
      nbest = t["nlu"]["nbest"]
      second = nbest[1]["intent"] if len(nbest) > 1 else "none"
      cats = (
        t["nlu"]["domain"],
        t["nlu"]["intent"],
        second,
        t["result"]["status"],
        d["device"]["type"],
        d["context"]["time_of_day"],
        d["device"]["state"].get("oven", "off"),
      )
      inputs["cat"][i, j] = [_index(names, v, f) for names, v, f in zip(cat_names, cats, CATEGORICAL)]
      asr_nbest = [h["confidence"] for h in t["asr"]["nbest"]]
      resp_dur = t["response"]["duration"]
      barge = t["signals"]["barge_in"]
      heard = t["signals"]["barge_in_time"]
      gap = 0.0 if prev_end is None else max(t["timestamp"] - prev_end, 0.0)
      prev_end = t["timestamp"] + t["utterance_duration"] + (heard if heard is not None else resp_dur)
      inputs["num"][i, j] = [
        math.log1p(len(asr_words)),
        t["asr"]["confidence"],
        t["asr"]["confidence"] - max(asr_nbest, default=0.0),
        t["nlu"]["confidence"],
        t["nlu"]["confidence"] - (nbest[1]["confidence"] if len(nbest) > 1 else 0.0),
        t["wake"]["score"],
        t["er"]["score"],
        sum(v is None for v in t["er"]["resolved"].values()),
        len(t["nlu"]["slots"]),
        math.log1p(resp_dur),
        t["utterance_duration"] / 5.0,
        math.log1p(gap) / 5.0,
        float(barge),
        (heard / resp_dur) if barge and resp_dur > 0 else 0.0,
        len(asr_nbest),
        j / T,
      ]
      if len(t["audio"]) != AUDIO_SIZE:
        raise ValueError(f"turns[{j}].audio: {len(t['audio'])} values, this model reads {AUDIO_SIZE}")
      inputs["audio"][i, j] = t["audio"]
      tr = t["truth"]
      labels["segment"][i, j] = SEGMENTS.index(tr["segment"])
      labels["intent"][i, j] = _index(INTENTS, tr["intent"], "truth.intent")
      labels["fpi"][i, j] = FAILURE_POINTS.index(tr["failure_point"])
      if tr["goal_id"] is not None:
        labels["goal"][i, j] = tr["goal_id"]
        labels["success"][i, j] = int(goals[tr["goal_id"]]["success"])
      for k, tag in enumerate(tr["tags"][:L]):
        labels["tags"][i, j, k] = TAGS.index(tag)
        if tag != "O":
          labels["values"][i, j, k] = value_index.get(tr["values"].get(tag[2:], ""), 1)
  return Dataset(inputs, labels, utt_texts, resp_texts)


def token_masks(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """`utt_mask` / `resp_mask` `[N, T, L]`: non-padding tokens of valid turns."""
  turn = inputs["turn_mask"][..., None]
  return {"utt_mask": (inputs["utt_ids"] != PAD) & turn, "resp_mask": (inputs["resp_ids"] != PAD) & turn}


def spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
  """(slot, start, end) spans of a BIO sequence (conlleval rules: a stray I- starts a span)."""
  out, start, label = set(), None, None
  for i, tag in enumerate([*tags, "O"]):
    inside = tag.startswith("I-") and label == tag[2:]
    if start is not None and not inside:
      out.add((label, start, i))
      start, label = None, None
    if tag.startswith("B-") or (tag.startswith("I-") and not inside):
      start, label = i, tag[2:]
  return out
