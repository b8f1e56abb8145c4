"""A plain-Python R2R-lite env: the reference the JAX env is tested against (and the benchmark's baseline).

Same semantics as `navigation` (see its docstring), written with Python lists, `math` and a heapq Dijkstra,
independent of the NumPy Floyd-Warshall tables and of JAX.  One episode at a time.
"""

import heapq
import math

from nlirl.envs import houses as houses_lib
from nlirl.envs import navigation

NUM_ROOMS = len(houses_lib.ROOM_TYPES)
NUM_OBJECTS = len(houses_lib.OBJECT_TYPES)
NUM_COLORS = len(houses_lib.COLORS)


def dijkstra(neighbors: list[list[int]], positions: list[tuple[float, float]], source: int) -> list[float]:
  """Geodesic distances (metres) from `source` with Euclidean edge lengths."""
  dist = [math.inf] * len(neighbors)
  dist[source] = 0.0
  heap = [(0.0, source)]
  while heap:
    d, u = heapq.heappop(heap)
    if d > dist[u]:
      continue
    for v in neighbors[u]:
      nd = d + math.dist(positions[u], positions[v])
      if nd < dist[v]:
        dist[v] = nd
        heapq.heappush(heap, (nd, v))
  return dist


class _House:
  def __init__(self, house: houses_lib.House):
    n = house.num_nodes
    self.neighbors = [sorted(int(j) for j in range(n) if house.adjacency[i][j]) for i in range(n)]
    self.positions = [(float(x), float(y)) for x, y in house.positions.tolist()]
    self.room = [int(r) for r in house.room_of_node.tolist()]
    self.features = []
    for i in range(n):
      f = [0.0] * (NUM_ROOMS + NUM_OBJECTS + NUM_COLORS)
      f[int(house.room_types[i])] = 1.0
      for o, c in zip(house.objects[i].tolist(), house.object_colors[i].tolist(), strict=True):
        if o >= 0:
          f[NUM_ROOMS + o] = 1.0
          f[NUM_ROOMS + NUM_OBJECTS + c] = 1.0
      self.features.append(f)
    self._dist = {}

  def distance(self, a: int, b: int) -> float:
    if a not in self._dist:
      self._dist[a] = dijkstra(self.neighbors, self.positions, a)
    return self._dist[a][b]


class ReferenceEnv:
  """One R2R-lite episode at a time: `reset(episode)`, `step(action)`, `metrics()`.

  Args:
    houses: the split's houses (`Split.houses`).
    horizon: episode length in steps.
  """

  def __init__(self, houses, *, horizon: int = navigation.HORIZON):
    self.houses = [_House(h) for h in houses]
    self.horizon = horizon

  def reset(self, episode) -> list[float]:
    """Start `episode` (a `splits.Episode`); returns the observation."""
    self.house = self.houses[episode.house]
    self.node = int(episode.path[0])
    self.goal = int(episode.path[-1])
    self.heading = float(episode.heading)
    self.t = 0
    self.stopped = False
    self.travelled = 0.0
    self.shortest = self.house.distance(self.node, self.goal)
    self.oracle_distance = self.shortest
    return self.observe()

  def observe(self) -> list[float]:
    house, node = self.house, self.node
    obs = list(house.features[node]) + [float(self.stopped), self.t / self.horizon]
    nbrs = house.neighbors[node]
    for k in range(navigation.MAX_DEGREE):
      if k >= len(nbrs):
        obs += [0.0] * navigation.SLOT_FEATURES
        continue
      v = nbrs[k]
      dx = house.positions[v][0] - house.positions[node][0]
      dy = house.positions[v][1] - house.positions[node][1]
      rel = math.atan2(dy, dx) - self.heading
      obs += [1.0, math.sin(rel), math.cos(rel), math.hypot(dx, dy) / navigation.LENGTH_SCALE_M]
      obs += [float(house.room[v] == house.room[node])] + house.features[v]
    return obs

  def step(self, action: int) -> tuple[list[float], float, bool]:
    """Apply `action`; returns `(obs, reward, done)`."""
    reward = 0.0
    active = self.t < self.horizon and not self.stopped
    self.t = min(self.t + 1, self.horizon)
    if active:
      if action == navigation.STOP:
        self.stopped = True
        if self.house.distance(self.node, self.goal) < navigation.SUCCESS_RADIUS_M:
          reward = 1.0
      elif 0 <= action < len(self.house.neighbors[self.node]):
        v = self.house.neighbors[self.node][action]
        (x0, y0), (x1, y1) = self.house.positions[self.node], self.house.positions[v]
        self.heading = math.atan2(y1 - y0, x1 - x0)
        self.travelled += math.hypot(x1 - x0, y1 - y0)
        self.node = v
        self.oracle_distance = min(self.oracle_distance, self.house.distance(v, self.goal))
    return self.observe(), reward, self.t >= self.horizon

  def metrics(self) -> dict[str, float]:
    error = self.house.distance(self.node, self.goal)
    success = float(error < navigation.SUCCESS_RADIUS_M)
    longest = max(self.shortest, self.travelled)
    return {
      "success": success,
      "oracle_success": float(self.oracle_distance < navigation.SUCCESS_RADIUS_M),
      "navigation_error": error,
      "spl": success * (self.shortest / longest if longest > 0 else 1.0),
      "path_length": self.travelled,
    }
