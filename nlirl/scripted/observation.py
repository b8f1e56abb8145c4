"""The R2R-lite observation vector decoded into the current viewpoint and its neighbour slots.

Layout (`nlirl.envs.navigation`): the node's features (room type one-hot, object and colour multi-hots), then
`stopped` and `t / horizon`, then per neighbour slot: valid, sin and cos of the direction relative to the
heading (counter-clockwise positive), length / LENGTH_SCALE_M, same-room flag and the neighbour's features.
Decoding reads nothing else, so an agent built on it sees exactly what a learned policy sees.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from nlirl.envs import houses, navigation

NUM_ROOMS = len(houses.ROOM_TYPES)
NUM_OBJECTS = len(houses.OBJECT_TYPES)
NUM_COLORS = len(houses.COLORS)
_NODE = navigation.NODE_FEATURES


class Slot(NamedTuple):
  """One occupied neighbour slot (action `index`).

  Attributes:
    index: the action that moves there.
    angle: direction relative to the heading in radians, (-pi, pi], counter-clockwise (left) positive.
    length: edge length in metres.
    same_room: whether the neighbour is in the current room.
    room: the neighbour's room type (index into ROOM_TYPES).
    objects, colors: the neighbour's object types and colours (not bound to each other, as in the features).
  """

  index: int
  angle: float
  length: float
  same_room: bool
  room: int
  objects: frozenset[int]
  colors: frozenset[int]


class View(NamedTuple):
  """The current viewpoint and its occupied neighbour slots."""

  room: int
  objects: frozenset[int]
  colors: frozenset[int]
  stopped: bool
  time: float
  slots: tuple[Slot, ...]


def _features(x: np.ndarray) -> tuple[int, frozenset[int], frozenset[int]]:
  room = int(np.argmax(x[:NUM_ROOMS]))
  objects = frozenset(np.flatnonzero(x[NUM_ROOMS : NUM_ROOMS + NUM_OBJECTS] > 0.5).tolist())
  colors = frozenset(np.flatnonzero(x[NUM_ROOMS + NUM_OBJECTS : _NODE] > 0.5).tolist())
  return room, objects, colors


def decode(obs) -> View:
  """The `View` of one observation (float [OBS_SIZE])."""
  obs = np.asarray(obs, np.float64)
  if obs.shape != (navigation.OBS_SIZE,):
    raise ValueError(f"expected an observation of shape ({navigation.OBS_SIZE},), got {obs.shape}")
  room, objects, colors = _features(obs[:_NODE])
  slots = []
  blocks = obs[_NODE + 2 :].reshape(navigation.MAX_DEGREE, navigation.SLOT_FEATURES)
  for k, block in enumerate(blocks):
    if block[0] < 0.5:
      continue
    n_room, n_objects, n_colors = _features(block[5:])
    angle = math.atan2(block[1], block[2])
    slots.append(
      Slot(k, angle, float(block[3]) * navigation.LENGTH_SCALE_M, bool(block[4] > 0.5), n_room, n_objects, n_colors)
    )
  return View(room, objects, colors, bool(obs[_NODE] > 0.5), float(obs[_NODE + 1]), tuple(slots))
