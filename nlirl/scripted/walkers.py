"""Random walkers that ignore the instruction: the floor a model must clear to show it reads.

`RandomWalker(rng)` makes a self-avoiding random walk: at every step it moves to a uniformly drawn neighbour it
has not visited (by dead reckoning, `DeadReckoning`), or to any neighbour when all are visited, and never
STOPs, so it is judged where the horizon leaves it.  With `stop_after` moves it STOPs after that many moves
instead (the stopping floor; the caller draws the count).
"""

from __future__ import annotations

import numpy as np

from nlirl.envs import navigation
from nlirl.scripted.dead_reckoning import DeadReckoning
from nlirl.scripted.observation import decode


class RandomWalker:
  """A self-avoiding random walk that never reads the instruction.

  Args:
    rng: the walk's random stream.
    stop_after: STOP after this many moves (None: never STOP).
  """

  def __init__(self, rng: np.random.Generator, *, stop_after: int | None = None):
    self.rng = rng
    self.stop_after = stop_after
    self.moves = 0
    self.memory = DeadReckoning()

  def act(self, obs) -> int:
    view = decode(obs)
    self.memory.arrive(view)
    if (self.stop_after is not None and self.moves >= self.stop_after) or not view.slots:
      return navigation.STOP
    fresh = [s for s in view.slots if not self.memory.slot_visited(s)]
    options = fresh or list(view.slots)
    slot = options[int(self.rng.integers(len(options)))]
    self.memory.move(slot)
    self.moves += 1
    return slot.index
