"""R2R-lite splits: houses, expert paths and instructions, all generated from one seed.

| split | houses (ids) | paths |
|---|---|---|
| `train` | 61 (0-60) | 50 per house |
| `val_seen` | the train houses | 10 per house, start/goal pairs unused by `train` (either direction) |
| `val_unseen` | 15 new (1000-1014) | 40 per house |
| `test` | 18 new (2000-2017) | 40 per house |

(R2R has 61 / 11 / 18 buildings.)  An expert path is the geodesic shortest path between a start and a goal
viewpoint with 4-7 edges; each gets a random start heading and `NUM_INSTRUCTIONS` distinct instructions.
Every house, seen or unseen, is drawn from the same generator and must offer at least
`MIN_PAIRS_PER_HOUSE` such start/goal pairs.
"""

import dataclasses
import functools
import math

import numpy as np

from nlirl.envs import houses as houses_lib
from nlirl.envs import instructions as instructions_lib

PATH_EDGES = (4, 7)  # inclusive range of expert path lengths in edges
MIN_PAIRS_PER_HOUSE = 60

# name -> (first house id, number of houses, paths per house).  val_seen reuses the train houses.
_HOUSE_SETS = {"train": (0, 61), "val_unseen": (1000, 15), "test": (2000, 18)}
_PATHS_PER_HOUSE = {"train": 50, "val_seen": 10, "val_unseen": 40, "test": 40}
SPLITS = ("train", "val_seen", "val_unseen", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class Episode:
  """One expert path with its instructions.

  Attributes:
    house: index into the split's `houses` tuple.
    path: int64 [edges + 1] node ids from start to goal (the shortest path).
    heading: start heading in radians (from +x, counter-clockwise); the first turn is relative to it.
    instructions: `NUM_INSTRUCTIONS` distinct instructions.
    distance: geodesic start-goal distance in metres (the path's length).
  """

  house: int
  path: np.ndarray
  heading: float
  instructions: list[str]
  distance: float


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """A split: its houses and episodes (NumPy; shared per process, so treat it as read-only)."""

  name: str
  seed: int
  houses: tuple[houses_lib.House, ...]
  episodes: tuple[Episode, ...]


def candidate_pairs(house: houses_lib.House) -> list[tuple[int, int]]:
  """Unordered start/goal pairs (i < j) whose shortest path has PATH_EDGES edges."""
  pairs = []
  for i in range(house.num_nodes):
    for j in range(i + 1, house.num_nodes):
      if PATH_EDGES[0] <= len(house.shortest_path(i, j)) - 1 <= PATH_EDGES[1]:
        pairs.append((i, j))
  return pairs


def _accept(house: houses_lib.House) -> bool:
  return len(candidate_pairs(house)) >= MIN_PAIRS_PER_HOUSE


def _episodes(seed, house_index, house, pairs, rng):
  out = []
  for i, j in pairs:
    start, goal = (i, j) if rng.random() < 0.5 else (j, i)
    path = house.shortest_path(start, goal)
    path.flags.writeable = False
    heading = float(rng.uniform(-math.pi, math.pi))
    texts = instructions_lib.generate_instructions(rng, house, path, heading)
    out.append(Episode(house_index, path, heading, texts, float(house.distances[start, goal])))
  return out


@functools.lru_cache(maxsize=4)
def _house_set(seed: int, first_id: int, count: int) -> tuple[houses_lib.House, ...]:
  return tuple(houses_lib.generate_house(seed, first_id + k, accept=_accept) for k in range(count))


@functools.lru_cache(maxsize=16)
def _build(name: str, seed: int) -> Split:
  set_name = "train" if name == "val_seen" else name
  houses = _house_set(seed, *_HOUSE_SETS[set_name])
  episodes = []
  for index, house in enumerate(houses):
    rng = np.random.default_rng([seed, house.house_id, 1])
    pairs = candidate_pairs(house)
    order = rng.permutation(len(pairs))
    n_train = _PATHS_PER_HOUSE["train"]
    if name == "train":
      chosen = order[:n_train]
    elif name == "val_seen":
      chosen = order[n_train : n_train + _PATHS_PER_HOUSE["val_seen"]]
    else:
      chosen = order[: _PATHS_PER_HOUSE[name]]
    # Each split draws headings and words from its own stream.
    text_rng = np.random.default_rng([seed, house.house_id, 2, SPLITS.index(name)])
    episodes += _episodes(seed, index, house, [pairs[k] for k in chosen], text_rng)
  return Split(name=name, seed=seed, houses=houses, episodes=tuple(episodes))


def load_split(name: str, *, seed: int = 0) -> Split:
  """The split `name` generated from `seed` (same seed -> identical split; cached per process).

  Args:
    name: one of SPLITS ("train", "val_seen", "val_unseen", "test").
    seed: dataset seed.

  Returns:
    A `Split` with `houses` (each with `adjacency` [N, N] bool, `positions` [N, 2] metres, `room_types`,
    `objects`, ...) and `episodes` (each with `house`, `path`, `heading`, `instructions`).

  Raises:
    ValueError: for an unknown split name, listing the valid ones.
  """
  if name not in SPLITS:
    raise ValueError(f"unknown split {name!r}; valid splits: {', '.join(SPLITS)}")
  return _build(name, int(seed))
