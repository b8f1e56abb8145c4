"""Readers of a log's `truth` blocks: labels, upper bounds and evaluation only, never model inputs.

The simulator writes its ground truth next to the observations
(`selflearn.data.schema`); production logs would not have it.  Code that
trains on it (labels, "truth" upper bounds) or scores against it reads it
through these helpers or through `signals.features`' label arrays.
"""

from __future__ import annotations

from typing import Mapping


def original_succeeds(dialogue: Mapping, turn_index: int) -> bool:
  """Whether the logged turn served its goal as it was (no rewrite)."""
  truth = dialogue["turns"][turn_index]["truth"]
  return truth["goal_id"] is not None and truth["attempt"] is not None and not truth["defect"]


def rephrase_links(dialogue: Mapping) -> list[tuple[int, int]]:
  """The true (source turn, rephrase turn) pairs, in log order."""
  return [(p["source_turn"], p["target_turn"]) for p in dialogue["truth"]["rephrase_pairs"]]


def true_pairs(dialogue: Mapping) -> dict[int, int]:
  """source turn -> its true rephrase."""
  return {p["source_turn"]: p["target_turn"] for p in dialogue["truth"]["rephrase_pairs"]}
