"""The scripted agents' only memory: where they have been, integrated from what they observed.

The observation gives every neighbour's direction relative to the heading and its distance, and the heading
after a move is that move's direction.  Summing the moves therefore places every visited viewpoint (and every
neighbour seen from one) in the frame of the start viewpoint and start heading, without node ids.  Viewpoints
are at least `houses.MIN_SPACING_M` apart, so positions within `TOLERANCE_M` are the same viewpoint.
"""

from __future__ import annotations

import math

from nlirl.scripted.observation import Slot, View

TOLERANCE_M = 0.3  # well under the minimum spacing of viewpoints (1.8 m); float32 observations drift ~1e-5 m


class DeadReckoning:
  """Positions of the visited viewpoints (and the room types seen there) in the start frame."""

  def __init__(self):
    self.position = (0.0, 0.0)
    self.heading = 0.0
    self.visited: list[tuple[float, float]] = []
    self.rooms: set[int] = set()

  def arrive(self, view: View) -> None:
    """Records the current viewpoint (call once per step, before choosing the action)."""
    if not self.is_visited(self.position):
      self.visited.append(self.position)
    self.rooms.add(view.room)

  def slot_position(self, slot: Slot) -> tuple[float, float]:
    direction = self.heading + slot.angle
    x, y = self.position
    return x + slot.length * math.cos(direction), y + slot.length * math.sin(direction)

  def is_visited(self, position: tuple[float, float]) -> bool:
    return any(math.dist(position, p) < TOLERANCE_M for p in self.visited)

  def slot_visited(self, slot: Slot) -> bool:
    return self.is_visited(self.slot_position(slot))

  def move(self, slot: Slot) -> None:
    """Follows the move to `slot` (its direction becomes the heading)."""
    self.position = self.slot_position(slot)
    self.heading += slot.angle
