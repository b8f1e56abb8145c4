"""R2R-lite's template instructions read backwards into a plan (`parse(text) -> Plan`).

The grammar is `nlirl.envs.instructions`; the regular expressions here are built from its phrase tables, so
they follow the grammar when it changes.  The three families give different plans:

* `step_by_step`: one `Move` per clause (turn category, and the room entered or the landmark passed), then the
  stop landmark;
* `rooms`: the room sequence from the start room to the goal room, then the stop landmark;
* `goal`: the goal room and landmark, and the room or landmark named on the way, if any.

Text the grammar cannot produce (or a clause it cannot place) leaves the corresponding fields empty rather
than raising: an agent given another path's instruction, or a future phrasing, still gets a plan.
"""

from __future__ import annotations

import dataclasses
import functools
import re

from nlirl.envs import houses
from nlirl.envs import instructions as grammar

FAMILIES = grammar.FAMILIES


@dataclasses.dataclass(frozen=True)
class Thing:
  """A landmark phrase: an object type and, when named, a colour (indices into OBJECT_TYPES / COLORS)."""

  object: int
  color: int | None = None


@dataclasses.dataclass(frozen=True)
class Move:
  """One step-by-step clause: a turn category (a TURN_PHRASES key) and the room entered or the thing passed."""

  turn: str
  room: int | None = None
  thing: Thing | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
  """What an instruction says, whatever its family (fields a family does not use are empty).

  Attributes:
    family: one of FAMILIES, or "unknown".
    moves: step_by_step clauses in order.
    rooms: rooms family: room types from the start room to the goal room.
    goal_room: the goal's room type (named by the goal or stop clause, or the last of `rooms`).
    goal_thing: the landmark at the goal.
    via_room, via_thing: goal family: what the path passes on the way.
  """

  family: str
  moves: tuple[Move, ...] = ()
  rooms: tuple[int, ...] = ()
  goal_room: int | None = None
  goal_thing: Thing | None = None
  via_room: int | None = None
  via_thing: Thing | None = None


def _alternation(options) -> str:
  return "(?:" + "|".join(re.escape(o) for o in sorted(options, key=len, reverse=True)) + ")"


_ROOM = _alternation(houses.ROOM_TYPES)
_THING = rf"(?:(?P<color>{_alternation(houses.COLORS)}) )?(?P<object>{_alternation(houses.OBJECT_TYPES)})"
_TURNS = {phrase: key for key, phrases in grammar.TURN_PHRASES.items() for phrase in phrases}


def _template(template: str) -> str:
  """A template's regex: {room} / {thing} / {rooms} become named groups."""
  out = re.escape(template)
  out = out.replace(re.escape("{room}"), rf"(?P<room>{_ROOM})")
  out = out.replace(re.escape("{thing}"), _THING)
  return out.replace(re.escape("{rooms}"), r"(?P<rooms>.+?)")


def _prefixes(templates, placeholder) -> str:
  """The part before `placeholder` of templates that end with it (ENTER, PASS, LEAVE)."""
  assert all(t.endswith(placeholder) for t in templates), templates
  return _alternation(t[: -len(placeholder)] for t in templates)


@functools.cache
def _patterns():
  clause = re.compile(
    rf"(?P<turn>{_alternation(_TURNS)}) and (?:{_prefixes(grammar.ENTER, '{room}')}(?P<room>{_ROOM})"
    rf"|{_prefixes(grammar.PASS, '{thing}')}{_THING})"
  )
  stops = [re.compile(_template(t) + r"\.$") for t in grammar.STOP]
  goals = [re.compile("^" + _template(t)) for t in grammar.GOAL]
  vias = [re.compile("^" + _template(t) + r"\.$") for t in (*grammar.VIA_ROOM, *grammar.VIA_THING)]
  leave = re.compile("^" + _prefixes(grammar.LEAVE, "{room}"))
  return clause, stops, goals, vias, leave


def _thing(match: re.Match) -> Thing | None:
  groups = match.groupdict()
  if not groups.get("object"):
    return None
  color = groups.get("color")
  return Thing(houses.OBJECT_TYPES.index(groups["object"]), houses.COLORS.index(color) if color else None)


def _room(match: re.Match) -> int | None:
  room = match.groupdict().get("room")
  return houses.ROOM_TYPES.index(room) if room else None


def _stop_clause(text: str) -> re.Match | None:
  _, stops, _, _, _ = _patterns()
  found = [m for m in (p.search(text) for p in stops) if m]
  return min(found, key=lambda m: m.start()) if found else None  # the longest clause that ends the text


def parse(text: str) -> Plan:
  """The `Plan` of one instruction (lower-case text as the grammar writes it, e.g. `Vocabulary.decode`'s)."""
  clause, _, goals, vias, leave = _patterns()
  text = text.strip()
  stop = _stop_clause(text)
  stop_room, stop_thing = (_room(stop), _thing(stop)) if stop else (None, None)
  body = text[: stop.start()] if stop else text
  first = clause.match(text)
  if first:
    moves = []
    for m in clause.finditer(body):
      moves.append(Move(_TURNS[m.group("turn")], _room(m), _thing(m)))
    room = stop_room if stop_room is not None else next((m.room for m in reversed(moves) if m.room is not None), None)
    return Plan("step_by_step", moves=tuple(moves), goal_room=room, goal_thing=stop_thing)
  if leave.match(text):
    rooms = tuple(houses.ROOM_TYPES.index(r) for r in re.findall(_ROOM, body))
    goal_room = stop_room if stop_room is not None else (rooms[-1] if rooms else None)
    return Plan("rooms", rooms=rooms, goal_room=goal_room, goal_thing=stop_thing)
  for pattern in goals:
    m = pattern.match(text)
    if not m:
      continue
    via_room = via_thing = None
    rest = text[m.end() :]
    for via in vias:
      v = via.match(rest)
      if v:
        via_room, via_thing = _room(v), _thing(v)
        break
    return Plan("goal", goal_room=_room(m), goal_thing=_thing(m), via_room=via_room, via_thing=via_thing)
  return Plan("unknown", goal_room=stop_room, goal_thing=stop_thing)
