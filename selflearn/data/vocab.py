"""Vocabularies learned from a log: counts, a minimum frequency and an explicit unknown bucket.

A categorical field of a team's own logs (intents, domains, device types,
slot names) ranges over whatever names the team uses, never the simulator's
enums.  `Vocabulary.learn(name, counts, min_count)` keeps the values seen at
least `min_count` times (most frequent first, ties by name) after id 0, the
explicit unknown bucket `UNKNOWN`; rarer values and values never seen map to
it and are counted, never silently folded into a real category.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

UNKNOWN = "<unk>"


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Id 0: the unknown bucket; ids 1.. the kept values (most frequent first)."""

  name: str
  values: tuple[str, ...]
  counts: tuple[int, ...]
  min_count: int
  rare_values: int  # distinct values below min_count (in the unknown bucket)
  rare_count: int  # their occurrences
  missing: int = 0  # rows without the field

  @classmethod
  def learn(cls, name: str, counts: Mapping[str, int], *, min_count: int = 1, missing: int = 0) -> "Vocabulary":
    if min_count < 1:
      raise ValueError(f"min_count must be >= 1, got {min_count}")
    kept = sorted((v for v, c in counts.items() if c >= min_count), key=lambda v: (-counts[v], v))
    rare = [c for v, c in counts.items() if c < min_count]
    return cls(name, tuple(kept), tuple(int(counts[v]) for v in kept), min_count, len(rare), int(sum(rare)), missing)

  @property
  def size(self) -> int:
    """Ids in use, the unknown bucket included."""
    return len(self.values) + 1

  def id(self, value: str) -> int:
    """The value's id (0: unknown)."""
    index = self.__dict__.get("_index")
    if index is None:
      index = {v: i + 1 for i, v in enumerate(self.values)}
      object.__setattr__(self, "_index", index)
    return index.get(value, 0)

  def report(self, top: int = 10) -> dict:
    """Size, minimum count, what fell into the unknown bucket, the most frequent values."""
    return {
      "size": self.size,
      "min_count": self.min_count,
      "known_values": len(self.values),
      "unknown_bucket": {"values": self.rare_values, "count": self.rare_count},
      "missing": self.missing,
      "top": [[v, c] for v, c in zip(self.values[:top], self.counts[:top])],
    }

  def to_json(self) -> dict:
    return dataclasses.asdict(self) | {"values": list(self.values), "counts": list(self.counts)}

  @classmethod
  def from_json(cls, d: Mapping) -> "Vocabulary":
    return cls(
      d["name"], tuple(d["values"]), tuple(d["counts"]), d["min_count"], d["rare_values"], d["rare_count"],
      d.get("missing", 0),
    )  # fmt: skip
