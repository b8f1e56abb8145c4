"""A scripted instruction reader: the ceiling of what the observation allows, without learning.

`InstructionReader(text, memory=...)` parses the instruction (`instruction_parser.parse`) and acts on the decoded
observation only.  Per family:

* `step_by_step`: clause k picks the neighbour whose direction has the clause's turn category (as the grammar
  measures it) and that is the room entered or carries the landmark passed; after the last clause it STOPs.
* `rooms`: it walks the named room sequence: through a door into the furthest named room in view, else to
  another viewpoint of the current room (where the next door may be); in the goal room it goes to the
  viewpoint with the stop landmark and STOPs.
* `goal`: the same in the goal room; before it, into the goal room or the room named on the way when one is in
  view, else it explores (through doors first).

A clause counter is its only state without memory.  Exploration without memory goes to the neighbour most
nearly ahead and never straight back (it can still circle); with `memory=True` it also remembers the
viewpoints and room types it has visited (`DeadReckoning`) and prefers unvisited ones.  It never sees node ids,
the path or the goal node.
"""

from __future__ import annotations

import math

from nlirl.envs import instructions as grammar
from nlirl.envs import navigation
from nlirl.scripted.dead_reckoning import DeadReckoning
from nlirl.scripted.instruction_parser import Plan, Thing, parse
from nlirl.scripted.observation import Slot, View, decode

_BEHIND = math.radians(150)  # a move further round than this turns back (the grammar's "turn around")
_ORDER = ("around", "left", "slight_left", "straight", "slight_right", "right")  # ring of turn categories


def _turn_score(angle: float, turn: str) -> float:
  """2 for the clause's category, 1 for a neighbouring one (an angle near a threshold), else 0."""
  got = grammar.turn_category(angle)
  if got == turn:
    return 2.0
  i, j = _ORDER.index(got), _ORDER.index(turn)
  return 1.0 if min((i - j) % len(_ORDER), (j - i) % len(_ORDER)) == 1 else 0.0


def _thing_score(objects, colors, thing: Thing | None) -> float:
  """2 when the object and (if named) the colour are there, 1 for the object alone, else 0."""
  if thing is None or thing.object not in objects:
    return 0.0
  return 2.0 if thing.color is None or thing.color in colors else 1.0


class InstructionReader:
  """Follows one template instruction from observations.

  Args:
    text: the instruction (as `Vocabulary.decode` returns it).
    memory: remember visited viewpoints and rooms (dead reckoning) and prefer unvisited ones.
  """

  def __init__(self, text: str, *, memory: bool):
    self.plan: Plan = parse(text)
    self.memory = DeadReckoning() if memory else None
    self.clause = 0

  def act(self, obs) -> int:
    view = decode(obs)
    if self.memory:
      self.memory.arrive(view)
    if view.stopped:
      return navigation.STOP
    slot = self._choose(view)
    if slot is None:
      return navigation.STOP
    if self.memory:
      self.memory.move(slot)
    return slot.index

  # --- families ---------------------------------------------------------------------------------------------

  def _choose(self, view: View) -> Slot | None:
    plan = self.plan
    if plan.family == "step_by_step":
      if self.clause >= len(plan.moves) or not view.slots:
        return None
      move = plan.moves[self.clause]
      self.clause += 1

      def score(s: Slot):
        # The landmark outweighs the turn (room types are unique in a house); the turn breaks ties.
        if move.room is not None:
          tail = 4.0 * (s.room == move.room) + (not s.same_room)
        else:
          tail = 2.0 * _thing_score(s.objects, s.colors, move.thing) + s.same_room
        return (_turn_score(s.angle, move.turn) + tail, -abs(s.angle))

      return max(view.slots, key=score)
    return self._toward_goal(view)

  def _toward_goal(self, view: View) -> Slot | None:
    """rooms / goal / unknown families: reach the goal room, then the goal landmark, then STOP."""
    plan = self.plan
    if plan.goal_room is None or view.room == plan.goal_room:
      return self._in_goal_room(view)
    doors = [s for s in view.slots if not s.same_room]
    into_goal = [s for s in doors if s.room == plan.goal_room]
    if into_goal:
      return max(into_goal, key=lambda s: (_thing_score(s.objects, s.colors, plan.goal_thing), -abs(s.angle)))
    if plan.rooms:  # the furthest named room in view, past the current one
      here = plan.rooms.index(view.room) if view.room in plan.rooms else -1
      ahead = [s for s in doors if s.room in plan.rooms[here + 1 :]]
      if ahead:
        return max(ahead, key=lambda s: (plan.rooms.index(s.room), -abs(s.angle)))
      # On the route the next door is at another viewpoint of this room; off it, doors lead back.
      return self._explore(view, doors=here < 0)
    if plan.via_room is not None and view.room != plan.via_room:
      via = [s for s in doors if s.room == plan.via_room]
      if via:
        return self._pick(via)
    if plan.via_thing is not None:
      passing = [s for s in view.slots if _thing_score(s.objects, s.colors, plan.via_thing) == 2.0]
      passing = [s for s in passing if not (self.memory and self.memory.slot_visited(s))]
      if passing:
        return self._pick(passing)
    return self._explore(view, doors=True)

  def _in_goal_room(self, view: View) -> Slot | None:
    """STOP at the viewpoint with the goal landmark, moving to it first if a neighbour of this room has it."""
    thing = self.plan.goal_thing
    here = _thing_score(view.objects, view.colors, thing)
    if thing is None or here == 2.0:
      return None
    same = [s for s in view.slots if s.same_room]
    best = max(same, key=lambda s: (_thing_score(s.objects, s.colors, thing), -abs(s.angle)), default=None)
    if best is not None and _thing_score(best.objects, best.colors, thing) > here:
      return best
    if here > 0:
      return None
    if self.memory:  # look further in the room before settling
      fresh = [s for s in same if not self.memory.slot_visited(s)]
      if fresh:
        return self._pick(fresh)
    return None

  # --- exploration --------------------------------------------------------------------------------------------

  def _pick(self, slots: list[Slot]) -> Slot:
    """The slot most nearly ahead."""
    return min(slots, key=lambda s: abs(s.angle))

  def _explore(self, view: View, *, doors: bool) -> Slot | None:
    """A neighbour to try next: through a door (`doors`) or within the room first, the one most nearly ahead.

    With memory, unvisited viewpoints come first (then doors into rooms not yet seen); without, it never
    turns straight back unless it must.
    """
    if not view.slots:
      return None
    if self.memory:

      def key(s: Slot):
        kind = s.same_room == doors
        return (self.memory.slot_visited(s), kind, s.room in self.memory.rooms, abs(s.angle))

      return min(view.slots, key=key)
    kind = [s for s in view.slots if s.same_room != doors] or list(view.slots)
    return self._pick([s for s in kind if abs(s.angle) <= _BEHIND] or kind)
