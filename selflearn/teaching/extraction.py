"""From the extractor's output to a preference entry: spans, catalogue normalisation, scores.

`decode` reads the kind head and the BIO tags of one utterance, `spans`
collects the key / value spans, `normalise` maps them to a catalogue entry
(`language.ontology`: exact, then phonetic neighbours, then the best
rapidfuzz ratio) that passes the store's validation (`preferences`).
`extraction_scores` compares extracted entries with the true ones.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from rapidfuzz import fuzz, process

from selflearn.evaluation import metrics
from selflearn.language import ontology
from selflearn.teaching import extractor, preferences


def spans(words: Sequence[str], tags: Sequence[str]) -> dict[str, list[str]]:
  """Role -> the texts of its BIO spans, in order (an I- without a B- starts a span)."""
  out: dict[str, list[str]] = {"KEY": [], "VAL": []}
  role, current = None, []
  for w, t in zip(words, tags):
    if t.startswith("B-") or (t.startswith("I-") and t[2:] != role):
      if role:
        out[role].append(" ".join(current))
      role, current = t[2:], [w]
    elif t.startswith("I-"):
      current.append(w)
    else:
      if role:
        out[role].append(" ".join(current))
      role, current = None, []
  if role:
    out[role].append(" ".join(current))
  return out


def _sounds_like(text: str, candidate: str, neighbours: Mapping[str, Sequence[str]]) -> bool:
  """Each word of `text` is the candidate's word or one of its CMUdict phonetic neighbours (`neighbours`)."""
  a, b = text.split(), candidate.split()
  return len(a) == len(b) and all(x == y or x in neighbours.get(y, ()) for x, y in zip(a, b))


def _match(text: str, choices: Sequence[str], cutoff: float, neighbours) -> Optional[str]:
  """Exact, then phonetic (every word a phonetic neighbour), then the best rapidfuzz ratio >= `cutoff`."""
  if text in choices:
    return text
  sounds = [c for c in choices if _sounds_like(text, c, neighbours)]
  if sounds:
    return sounds[0]
  best = process.extractOne(text, list(choices), scorer=fuzz.ratio, score_cutoff=cutoff)
  return None if best is None else best[0]


def normalise(
  kind: str, keys: Sequence[str], values: Sequence[str], *, cutoff: float, neighbours: Mapping = {}
) -> Optional[tuple]:
  """Span texts -> a catalogue entry `(kind, key, value)` that passes the store's validation, or None.

  The key span is matched (`_match`: exact, phonetic neighbours, or
  rapidfuzz ratio >= `cutoff`) against the kind's catalogue (titles,
  cities, artists), the value span against the values valid for that key;
  the first span that matches is used.
  """
  catalogue = {"song": list(preferences.SONG_ARTISTS), "city": list(ontology.CITIES), "artist": ontology.ARTISTS}
  if kind not in catalogue:
    return None
  key = next((k for k in (_match(s, catalogue[kind], cutoff, neighbours) for s in keys) if k), None)
  if key is None:
    return None
  allowed = preferences.valid_values(kind, key)
  if kind == "artist":
    return (kind, key, preferences.FAN)
  value = next((v for v in (_match(s, allowed, cutoff, neighbours) for s in values) if v), None)
  return None if value is None else (kind, key, value)


def decode(
  words: Sequence[str],
  kind_probs: np.ndarray,
  tag_ids: Sequence[int],
  *,
  threshold: float,
  cutoff: float,
  neighbours: Mapping = {},
) -> tuple[Optional[tuple[str, str, str]], float]:
  """The extractor's entry for one utterance (or None) and its confidence (the kind probability)."""
  k = int(np.argmax(kind_probs))
  confidence = float(kind_probs[k])
  if k == 0 or confidence < threshold:
    return None, confidence
  tags = [extractor.TAG_NAMES[int(t)] for t in tag_ids[: len(words)]]
  found = spans(words, tags)
  return normalise(
    extractor.KIND_NAMES[k], found["KEY"], found["VAL"], cutoff=cutoff, neighbours=neighbours
  ), confidence


def extraction_scores(truth: Sequence[Optional[tuple]], pred: Sequence[Optional[tuple]]) -> dict[str, float]:
  """Entry precision / recall / F1 (an entry counts when kind, key and value all match), exact match, detection."""
  tp = sum(1 for t, p in zip(truth, pred, strict=True) if p is not None and p == t)
  n_pred = sum(p is not None for p in pred)
  n_true = sum(t is not None for t in truth)
  dt = sum(1 for t, p in zip(truth, pred) if p is not None and t is not None)
  entries, detection = metrics.prf(tp, n_pred, n_true), metrics.prf(dt, n_pred, n_true)
  return {
    "turns": len(truth),
    "teaching": n_true,
    **entries,
    "exact_match": float(np.mean([t == p for t, p in zip(truth, pred)])) if truth else 0.0,
    **{f"detection_{k}": v for k, v in detection.items()},
  }
