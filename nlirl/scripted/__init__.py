"""Scripted R2R-lite agents: the floor and the ceiling that every results table is read against.

They act on what a learned policy gets, the observation vector (plus, for the reader, the instruction's
tokens decoded to text), never on the path, the goal node or node ids:

* `walkers`: random walkers that ignore the instruction (the floor): a self-avoiding walk of the whole horizon
  that never STOPs, and one that STOPs after a random number of moves.
* `reader`: `InstructionReader`, which parses the template instruction and follows it (the ceiling), without
  or with a memory of the viewpoints it has visited.
* `instruction_parser`: the template grammar read backwards (`parse` -> `Plan`).
* `observation`: the observation vector decoded into the current viewpoint and its neighbour slots.
* `dead_reckoning`: the only memory they may keep, the positions of visited viewpoints integrated from the
  observed move directions and lengths (no node ids).
"""

from nlirl.scripted.dead_reckoning import DeadReckoning
from nlirl.scripted.instruction_parser import Move, Plan, Thing, parse
from nlirl.scripted.observation import Slot, View, decode
from nlirl.scripted.reader import InstructionReader
from nlirl.scripted.walkers import RandomWalker

__all__ = [
  "DeadReckoning",
  "InstructionReader",
  "Move",
  "Plan",
  "RandomWalker",
  "Slot",
  "Thing",
  "View",
  "decode",
  "parse",
]
