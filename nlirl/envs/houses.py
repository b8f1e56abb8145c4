"""Procedural R2R-lite houses: rooms on a lattice, viewpoints in metres, doors and landmark objects.

A house is a navigation graph in the spirit of a Matterport3D connectivity graph.  Rooms occupy cells of a
`GRID_SHAPE` lattice of `CELL_SIZE_M` squares and grow as a connected blob (each new room gets a door to one room
it touches, so the house is connected; extra doors join other touching rooms).  Each room has a distinct type
and 1-3 viewpoints (nodes) at least `MIN_SPACING_M` apart; the viewpoints of a room are all joined and a door
joins the closest viewpoint pair of two rooms.  Every viewpoint carries 1-2 coloured objects typical of its room
type: these are the landmarks the instructions name.  Edge lengths are Euclidean, and all-pairs geodesic
distances and next hops are precomputed (Floyd-Warshall), so shortest paths and metrics are table look-ups.

Everything is NumPy and a pure function of `(seed, house_id)`: nothing is downloaded.
"""

import dataclasses

import numpy as np

ROOM_TYPES = (
  "bedroom",
  "bathroom",
  "kitchen",
  "living room",
  "hallway",
  "office",
  "dining room",
  "laundry room",
  "stairs",
  "closet",
)
OBJECT_TYPES = (
  "bed",
  "lamp",
  "rug",
  "painting",
  "plant",
  "toilet",
  "bathtub",
  "sink",
  "mirror",
  "fridge",
  "table",
  "stove",
  "sofa",
  "tv",
  "desk",
  "chair",
  "bookshelf",
  "washer",
  "shelf",
)
COLORS = ("red", "blue", "green", "white", "black", "yellow", "brown", "grey")

# Objects that may stand in each room type (names from OBJECT_TYPES).
ROOM_OBJECTS = {
  "bedroom": ("bed", "lamp", "rug", "painting", "plant", "mirror"),
  "bathroom": ("toilet", "bathtub", "sink", "mirror"),
  "kitchen": ("fridge", "sink", "table", "stove", "plant"),
  "living room": ("sofa", "tv", "rug", "lamp", "plant", "painting"),
  "hallway": ("painting", "plant", "rug", "mirror", "lamp"),
  "office": ("desk", "chair", "lamp", "bookshelf", "plant"),
  "dining room": ("table", "chair", "painting", "plant", "lamp"),
  "laundry room": ("washer", "sink", "shelf"),
  "stairs": ("painting", "plant", "rug"),
  "closet": ("shelf", "mirror", "lamp"),
}

GRID_SHAPE = (4, 4)  # room lattice, rows x columns
CELL_SIZE_M = 5.0  # side of one room cell
WALL_MARGIN_M = 0.75  # viewpoints keep this far from a cell's border
MIN_SPACING_M = 1.8  # minimum distance between two viewpoints of a room (MP3D: about 2.25 m)
ROOMS_PER_HOUSE = (7, 10)  # inclusive range
VIEWPOINTS_PER_ROOM = (1, 3)  # inclusive range
EXTRA_DOOR_PROBABILITY = 0.25  # a touching room pair outside the spanning tree gets a door
MAX_DEGREE = 6  # neighbours of a node at most: the padded action space is MAX_DEGREE + 1 (STOP)
MAX_OBJECTS = 2  # objects per viewpoint at most
MAX_NODES = 32  # >= max rooms x max viewpoints; the padded node dimension of the JAX tables


@dataclasses.dataclass(frozen=True, eq=False)
class House:
  """One navigation graph (NumPy, read-only arrays).

  Attributes:
    house_id: global id; the house is a pure function of `(seed, house_id)`.
    adjacency: [N, N] bool, symmetric, no self loops.
    positions: [N, 2] float64 viewpoint positions in metres (x east, y north).
    room_of_node: [N] int64 room index of each node (rooms are numbered 0..R-1).
    room_types: [N] int64 room type of each node (index into ROOM_TYPES).
    objects: [N, MAX_OBJECTS] int64 object types (index into OBJECT_TYPES), -1 = none.
    object_colors: [N, MAX_OBJECTS] int64 colours (index into COLORS), -1 = none.
    distances: [N, N] float64 geodesic (shortest-path) distances in metres.
    next_hop: [N, N] int64 first node after i on the shortest path from i to j (j itself when i == j).
  """

  house_id: int
  adjacency: np.ndarray
  positions: np.ndarray
  room_of_node: np.ndarray
  room_types: np.ndarray
  objects: np.ndarray
  object_colors: np.ndarray
  distances: np.ndarray
  next_hop: np.ndarray

  @property
  def num_nodes(self) -> int:
    return self.adjacency.shape[0]

  def neighbors(self, node: int) -> np.ndarray:
    """Neighbour ids of `node`, ascending: the order of the env's action slots."""
    return np.flatnonzero(self.adjacency[node])

  def shortest_path(self, start: int, goal: int) -> np.ndarray:
    """Node ids of the shortest path from start to goal, both included."""
    path = [start]
    while path[-1] != goal:
      path.append(int(self.next_hop[path[-1], goal]))
    return np.asarray(path, dtype=np.int64)

  def room_name(self, node: int) -> str:
    return ROOM_TYPES[self.room_types[node]]

  def object_names(self, node: int) -> list[str]:
    """The node's objects as "colour type" phrases."""
    return [
      f"{COLORS[c]} {OBJECT_TYPES[o]}"
      for o, c in zip(self.objects[node], self.object_colors[node], strict=True)
      if o >= 0
    ]


def floyd_warshall(adjacency: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """All-pairs shortest paths with Euclidean edge lengths.

  Returns:
    distances [N, N] float64 (inf between disconnected nodes) and next_hop [N, N] int64 (-1 when unreachable).
  """
  n = adjacency.shape[0]
  lengths = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
  dist = np.where(adjacency, lengths, np.inf)
  np.fill_diagonal(dist, 0.0)
  nxt = np.where(adjacency, np.arange(n)[None, :], -1)
  np.fill_diagonal(nxt, np.arange(n))
  for k in range(n):
    via = dist[:, k : k + 1] + dist[k : k + 1, :]
    better = via < dist - 1e-12
    dist = np.where(better, via, dist)
    nxt = np.where(better, nxt[:, k : k + 1], nxt)
  return dist, nxt


def _lattice_neighbors(cell: tuple[int, int]) -> list[tuple[int, int]]:
  rows, cols = GRID_SHAPE
  r, c = cell
  out = [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]
  return [(a, b) for a, b in out if 0 <= a < rows and 0 <= b < cols]


def _sample_points(rng: np.random.Generator, cell: tuple[int, int], count: int) -> np.ndarray | None:
  """`count` points inside the cell, pairwise >= MIN_SPACING_M apart (None if rejection sampling fails)."""
  low = np.array([cell[1], cell[0]], dtype=np.float64) * CELL_SIZE_M + WALL_MARGIN_M
  high = low + CELL_SIZE_M - 2 * WALL_MARGIN_M
  points: list[np.ndarray] = []
  for _ in range(200):
    p = rng.uniform(low, high)
    if all(np.linalg.norm(p - q) >= MIN_SPACING_M for q in points):
      points.append(p)
      if len(points) == count:
        return np.stack(points)
  return None


def _try_generate(rng: np.random.Generator, house_id: int) -> House | None:
  num_rooms = int(rng.integers(ROOMS_PER_HOUSE[0], ROOMS_PER_HOUSE[1] + 1))
  cells = [(int(rng.integers(GRID_SHAPE[0])), int(rng.integers(GRID_SHAPE[1])))]
  doors: set[tuple[int, int]] = set()
  while len(cells) < num_rooms:
    frontier = sorted({(nb, i) for i, c in enumerate(cells) for nb in _lattice_neighbors(c) if nb not in cells})
    new_cell, parent = frontier[int(rng.integers(len(frontier)))]
    cells.append(new_cell)
    doors.add((parent, len(cells) - 1))
  for i in range(num_rooms):
    for j in range(i + 1, num_rooms):
      if cells[j] in _lattice_neighbors(cells[i]) and (i, j) not in doors and rng.random() < EXTRA_DOOR_PROBABILITY:
        doors.add((i, j))
  types = rng.permutation(len(ROOM_TYPES))[:num_rooms]

  positions, room_of_node = [], []
  for room, cell in enumerate(cells):
    count = int(rng.integers(VIEWPOINTS_PER_ROOM[0], VIEWPOINTS_PER_ROOM[1] + 1))
    points = _sample_points(rng, cell, count)
    if points is None:
      return None
    positions.append(points)
    room_of_node += [room] * count
  positions = np.concatenate(positions)
  room_of_node = np.asarray(room_of_node, dtype=np.int64)
  n = len(room_of_node)

  adjacency = (room_of_node[:, None] == room_of_node[None, :]) & ~np.eye(n, dtype=bool)
  lengths = np.linalg.norm(positions[:, None] - positions[None, :], axis=-1)
  for a, b in sorted(doors):
    nodes_a, nodes_b = np.flatnonzero(room_of_node == a), np.flatnonzero(room_of_node == b)
    sub = lengths[np.ix_(nodes_a, nodes_b)]
    ia, ib = np.unravel_index(np.argmin(sub), sub.shape)
    adjacency[nodes_a[ia], nodes_b[ib]] = adjacency[nodes_b[ib], nodes_a[ia]] = True
  if adjacency.sum(axis=1).max() > MAX_DEGREE:
    return None

  room_types = types[room_of_node].astype(np.int64)
  objects = np.full((n, MAX_OBJECTS), -1, dtype=np.int64)
  colors = np.full((n, MAX_OBJECTS), -1, dtype=np.int64)
  for node in range(n):
    allowed = ROOM_OBJECTS[ROOM_TYPES[room_types[node]]]
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    picked = rng.choice(len(allowed), size=count, replace=False)
    objects[node, :count] = [OBJECT_TYPES.index(allowed[k]) for k in picked]
    colors[node, :count] = rng.integers(len(COLORS), size=count)

  distances, next_hop = floyd_warshall(adjacency, positions)
  arrays = dict(
    adjacency=adjacency,
    positions=positions,
    room_of_node=room_of_node,
    room_types=room_types,
    objects=objects,
    object_colors=colors,
    distances=distances,
    next_hop=next_hop,
  )
  for value in arrays.values():
    value.flags.writeable = False
  return House(house_id=house_id, **arrays)


def generate_house(seed: int, house_id: int, *, accept=None) -> House:
  """The house `(seed, house_id)`: deterministic; resamples until it is valid and `accept(house)` holds.

  Args:
    seed: dataset seed.
    house_id: global house id (splits use disjoint id ranges).
    accept: optional predicate on a generated house (e.g. "has enough 4-7 edge paths").
  """
  rng = np.random.default_rng([seed, house_id, 0])
  for _ in range(1000):
    house = _try_generate(rng, house_id)
    if house is not None and (accept is None or accept(house)):
      return house
  raise RuntimeError(f"could not generate house {house_id} for seed {seed}")
