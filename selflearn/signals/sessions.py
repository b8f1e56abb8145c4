"""Reformulation sessions and friction from what a production log observes (no `truth`).

Both rewriting paths learn from customers' own reformulations: a request
that met friction, quickly followed by another attempt.  This module finds
them from observations only:

* `friction(dialogue, i)`: turn `i` met friction: the user barged in, the
  result was an error / no match, the turn carries negative feedback (the
  log contract's `feedback: -1`), or the next turn (within `stop_gap`
  seconds) is "stop" / negative feedback, or the user tried again
  quickly (a follow-up request within `rephrase_gap`);
* `reformulation_sessions(dialogue)`: chains of requests, each following a
  request that met friction within `rephrase_gap` seconds of its end (the
  keynote's "rephrase sequences"), ending in the first request without
  friction (success) or the last attempt (failure); or, given `pairs`
  (e.g. from the rephrase detector, `selflearn.rewriting.rephrase`), the chains those
  (source, target) pairs link.

`truth` blocks are never read here (tests change them and check the output).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Optional, Sequence

SIDE_INTENTS = ("stop", "feedback_positive", "feedback_negative")
NEGATIVE_INTENTS = ("stop", "feedback_negative")


def end_of(turn: Mapping) -> float:
  """When the user stopped hearing turn `turn`'s response (unix s): its end, or the barge-in."""
  heard = turn["signals"]["barge_in_time"]
  return turn["timestamp"] + turn["utterance_duration"] + (heard if heard is not None else turn["response"]["duration"])


def is_request(turn: Mapping) -> bool:
  """A request to the assistant (not "stop" / feedback, as the NLU saw it)."""
  return turn["nlu"]["intent"] not in SIDE_INTENTS


def own_friction(turn: Mapping) -> bool:
  """Friction the turn itself shows: a barge-in, an error / no-match result, explicit negative feedback (-1)."""
  status = turn.get("result", {}).get("status")
  return bool(turn["signals"]["barge_in"]) or status in ("error", "no_match") or turn.get("feedback") == -1


def _next_request(turns: Sequence[Mapping], i: int) -> Optional[int]:
  return next((j for j in range(i + 1, len(turns)) if is_request(turns[j])), None)


def friction(dialogue: Mapping, i: int, *, rephrase_gap: float = 15.0, stop_gap: float = 8.0) -> bool:
  """Whether request `i` met observable friction (see the module docstring)."""
  turns = dialogue["turns"]
  t = turns[i]
  if own_friction(t):
    return True
  if i + 1 < len(turns):
    nxt = turns[i + 1]
    gap = nxt["timestamp"] - end_of(t)
    if nxt["nlu"]["intent"] in NEGATIVE_INTENTS and gap <= stop_gap:
      return True
  j = _next_request(turns, i)
  return j is not None and turns[j]["timestamp"] - end_of(t) <= rephrase_gap


@dataclasses.dataclass(frozen=True)
class Session:
  """A reformulation session: request turn ids in order, and whether the last one met no friction."""

  dialogue_id: str
  user_id: str
  turns: tuple[int, ...]
  success: bool

  def texts(self, dialogue: Mapping) -> list[str]:
    return [dialogue["turns"][i]["asr"]["text"] for i in self.turns]


def reformulation_sessions(
  dialogue: Mapping,
  *,
  pairs: Optional[Iterable[tuple[int, int]]] = None,
  rephrase_gap: float = 15.0,
  stop_gap: float = 8.0,
) -> list[Session]:
  """The dialogue's reformulation sessions of two or more requests (see the module docstring)."""
  turns = dialogue["turns"]
  fr = {i: friction(dialogue, i, rephrase_gap=rephrase_gap, stop_gap=stop_gap) for i, t in enumerate(turns)}
  nxt: dict[int, int] = {}
  if pairs is not None:
    for a, b in pairs:
      if 0 <= a < b < len(turns):
        nxt.setdefault(int(a), int(b))
  else:
    for i, t in enumerate(turns):
      if not is_request(t) or not fr[i]:
        continue
      j = _next_request(turns, i)
      if j is not None and turns[j]["timestamp"] - end_of(t) <= rephrase_gap:
        nxt[i] = j
  targets = set(nxt.values())
  out = []
  for start in sorted(nxt):
    if start in targets:
      continue
    chain = [start]
    while chain[-1] in nxt and len(chain) <= len(turns):
      chain.append(nxt[chain[-1]])
    # Friction of the last request ignores its own follow-up when that starts a new goal (not in the chain).
    last = chain[-1]
    success = not own_friction(turns[last])
    if success and last + 1 < len(turns):
      nt = turns[last + 1]
      success = not (nt["nlu"]["intent"] in NEGATIVE_INTENTS and nt["timestamp"] - end_of(turns[last]) <= stop_gap)
    out.append(Session(dialogue["dialogue_id"], dialogue["user_id"], tuple(chain), bool(success)))
  return out
