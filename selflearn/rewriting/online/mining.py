"""Mining rewrite pairs from customers' own reformulations (observations only by default).

A request that met friction -> the last request of its reformulation
session when that one met none (`sessions.reformulation_sessions`,
`source="gap"`; `"detector"`: the sessions the rephrase detector's
predicted pairs chain, `rewriting.rephrase.crossfit`); or, as an upper bound, the true rephrase pairs with truly
successful targets (`"truth"`).  `successful_requests` are the frictionless
requests the indexes hold.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from selflearn.data import truth as truth_lib
from selflearn.signals import sessions

PAIRS_SOURCES = ("gap", "truth", "detector")


@dataclasses.dataclass(frozen=True)
class Pair:
  """A mined (friction request -> successful reformulation) pair."""

  dialogue: int
  source: int
  target: int
  source_text: str
  target_text: str


def mine_pairs(
  dialogues: Sequence[Mapping], *, source: str = "gap", rephrase_gap: float = 15.0, detected=None
) -> list[Pair]:
  """(request that met friction -> the session's last request) for every successful session.

  `source="gap"` uses the observable sessions; `"detector"` the sessions
  chained by `detected` (per dialogue, the detector's (source, target)
  pairs), kept when their last request met no observable friction;
  `"truth"` chains the simulator's true rephrase pairs and keeps a session
  only when its last request truly succeeded.  Pairs with identical texts
  are dropped.
  """
  if source == "detector" and (detected is None or len(detected) != len(dialogues)):
    raise ValueError('source="detector" needs the detected pairs of every dialogue (`detected`)')
  out = []
  for di, d in enumerate(dialogues):
    turns = d["turns"]
    if source == "detector":
      found = sessions.reformulation_sessions(d, pairs=detected[di], rephrase_gap=rephrase_gap)
      found = [s for s in found if s.success]
    elif source == "truth":
      links = truth_lib.rephrase_links(d)
      found = sessions.reformulation_sessions(d, pairs=links, rephrase_gap=rephrase_gap)
      found = [s for s in found if truth_lib.original_succeeds(d, s.turns[-1])]
    else:
      found = [s for s in sessions.reformulation_sessions(d, rephrase_gap=rephrase_gap) if s.success]
    for s in found:
      last = s.turns[-1]
      target = turns[last]["asr"]["text"]
      for i in s.turns[:-1]:
        if turns[i]["asr"]["text"] != target:
          out.append(Pair(di, i, last, turns[i]["asr"]["text"], target))
  return out


def successful_requests(dialogue: Mapping, *, rephrase_gap: float = 15.0) -> list[int]:
  """Request turns that met no observable friction."""
  return [
    i
    for i, t in enumerate(dialogue["turns"])
    if sessions.is_request(t) and not sessions.friction(dialogue, i, rephrase_gap=rephrase_gap)
  ]
