"""The R2R-lite navigation env in pure JAX: padded house tables, reset/step, observations and metrics.

Houses of a split are stacked into padded tables (`Houses`, [H, MAX_NODES, ...]) and episodes into arrays
(`Episodes`, [E, ...]); `reset(houses, episode)` and `step(houses, state, action)` are unbatched, pure gathers
on those tables, so `jax.vmap(step, in_axes=(None, 0, 0))` runs thousands of episodes under one `jit`.

Actions (Speaker-Follower's panoramic action space): `NUM_ACTIONS = MAX_DEGREE + 1`.  Action k < MAX_DEGREE
moves to the k-th neighbour in ascending node-id order (`Houses.neighbors`); an empty slot (k >= degree) is a
no-op that still uses a time step (mask it with `action_mask`).  The last action, `STOP`, ends navigation.

Fixed horizon: every episode lasts `horizon` steps (`done` only when `t == horizon`, STOP or not).  After STOP
the state is absorbing: position, heading, path length and metrics no longer change (only `t` still counts up
to the horizon) and the reward is 0; the same holds for any action once the horizon is reached.  The reward
is 1 on the step that takes STOP within `SUCCESS_RADIUS_M` of the goal and 0 otherwise (IRL methods replace
it by a learned reward; the fixed horizon keeps episode length from leaking reward information).

Observation (float32 [OBS_SIZE]), the current node's features followed by one block per neighbour slot:

* node: room type one-hot [len(ROOM_TYPES)], object types multi-hot [len(OBJECT_TYPES)], colours multi-hot
  [len(COLORS)] (NODE_FEATURES together), then `stopped` and `t / horizon`;
* each of the MAX_DEGREE slots: valid, sin and cos of the neighbour's direction relative to the heading
  (counter-clockwise positive: sin > 0 is to the left), edge length / LENGTH_SCALE_M, same-room flag and the
  neighbour's NODE_FEATURES; all zero for an empty slot.

The heading is the direction of the last move (the episode's start heading before the first move).

Metrics (R2R's `eval.py`, from the geodesic distance table): navigation error = distance from the final node to
the goal; success = error < 3 m; oracle success = some visited node within 3 m; SPL = success x shortest /
max(shortest, travelled).
"""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from nlirl.envs import houses as houses_lib
from nlirl.envs import instructions as instructions_lib
from nlirl.envs import splits as splits_lib

MAX_NODES = houses_lib.MAX_NODES
MAX_DEGREE = houses_lib.MAX_DEGREE
NUM_ACTIONS = MAX_DEGREE + 1
STOP = MAX_DEGREE
HORIZON = 10  # Speaker-Follower's max_episode_len; expert paths need at most 7 moves + STOP
SUCCESS_RADIUS_M = 3.0
LENGTH_SCALE_M = 5.0
MAX_PATH_NODES = splits_lib.PATH_EDGES[1] + 1
NODE_FEATURES = len(houses_lib.ROOM_TYPES) + len(houses_lib.OBJECT_TYPES) + len(houses_lib.COLORS)
SLOT_FEATURES = 5 + NODE_FEATURES
OBS_SIZE = NODE_FEATURES + 2 + MAX_DEGREE * SLOT_FEATURES
_FAR = 1e6  # distance to and from padded nodes


class Houses(NamedTuple):
  """A split's houses as padded tables (H houses, N = MAX_NODES, K = MAX_DEGREE).

  Attributes:
    neighbors: int32 [H, N, K] neighbour ids in ascending order, -1 = empty slot.
    positions: float32 [H, N, 2] metres (padded nodes at 0).
    room_of_node: int32 [H, N] room index (-1 for padded nodes).
    node_features: float32 [H, N, NODE_FEATURES] room one-hot, object and colour multi-hots.
    distances: float32 [H, N, N] geodesic distances in metres (_FAR for padded nodes).
    next_hop: int32 [H, N, N] next node on the shortest path (-1 for padded nodes).
    num_nodes: int32 [H].
  """

  neighbors: jax.Array
  positions: jax.Array
  room_of_node: jax.Array
  node_features: jax.Array
  distances: jax.Array
  next_hop: jax.Array
  num_nodes: jax.Array


class Episodes(NamedTuple):
  """A split's episodes as arrays (E episodes; I instructions of L tokens).

  Attributes:
    house: int32 [E] index into `Houses`.
    start, goal: int32 [E] node ids.
    heading: float32 [E] start heading (radians).
    path: int32 [E, MAX_PATH_NODES] expert path, -1 padded.
    path_edges: int32 [E] edges of the expert path.
    distance: float32 [E] geodesic start-goal distance (metres).
    instructions: int32 [E, I, L] token ids (`instructions.Vocabulary`), EOS then PAD.
  """

  house: jax.Array
  start: jax.Array
  goal: jax.Array
  heading: jax.Array
  path: jax.Array
  path_edges: jax.Array
  distance: jax.Array
  instructions: jax.Array


class NavState(NamedTuple):
  """Unbatched env state (all scalars).

  Attributes:
    house, node, goal: int32 ids.
    heading: float32 radians.
    t: int32 steps taken; horizon: int32 episode length.
    stopped: bool, STOP taken.
    travelled: float32 metres walked.
    oracle_distance: float32 smallest distance to the goal over the visited nodes.
    shortest: float32 geodesic start-goal distance.
  """

  house: jax.Array
  node: jax.Array
  goal: jax.Array
  heading: jax.Array
  t: jax.Array
  horizon: jax.Array
  stopped: jax.Array
  travelled: jax.Array
  oracle_distance: jax.Array
  shortest: jax.Array


def node_features(house: houses_lib.House) -> np.ndarray:
  """float32 [N, NODE_FEATURES]: room type one-hot, object type and colour multi-hots."""
  n = house.num_nodes
  rooms = np.eye(len(houses_lib.ROOM_TYPES), dtype=np.float32)[house.room_types]
  objects = np.zeros((n, len(houses_lib.OBJECT_TYPES)), np.float32)
  colors = np.zeros((n, len(houses_lib.COLORS)), np.float32)
  for node in range(n):
    for o, c in zip(house.objects[node], house.object_colors[node], strict=True):
      if o >= 0:
        objects[node, o] = 1.0
        colors[node, c] = 1.0
  return np.concatenate([rooms, objects, colors], axis=1)


def house_arrays(houses: tuple[houses_lib.House, ...]) -> Houses:
  """Stack houses into padded `Houses` tables (device arrays)."""
  h = len(houses)
  neighbors = np.full((h, MAX_NODES, MAX_DEGREE), -1, np.int32)
  positions = np.zeros((h, MAX_NODES, 2), np.float32)
  room_of_node = np.full((h, MAX_NODES), -1, np.int32)
  features = np.zeros((h, MAX_NODES, NODE_FEATURES), np.float32)
  distances = np.full((h, MAX_NODES, MAX_NODES), _FAR, np.float32)
  next_hop = np.full((h, MAX_NODES, MAX_NODES), -1, np.int32)
  for i, house in enumerate(houses):
    n = house.num_nodes
    for node in range(n):
      nbrs = house.neighbors(node)
      neighbors[i, node, : len(nbrs)] = nbrs
    positions[i, :n] = house.positions
    room_of_node[i, :n] = house.room_of_node
    features[i, :n] = node_features(house)
    distances[i, :n, :n] = house.distances
    next_hop[i, :n, :n] = house.next_hop
  num_nodes = np.array([house.num_nodes for house in houses], np.int32)
  return Houses(*map(jnp.asarray, (neighbors, positions, room_of_node, features, distances, next_hop, num_nodes)))


def episode_arrays(split: splits_lib.Split, vocabulary: instructions_lib.Vocabulary | None = None) -> Episodes:
  """The split's episodes as `Episodes` arrays, instructions tokenized with `vocabulary` (default grammar's)."""
  vocabulary = vocabulary or instructions_lib.Vocabulary()
  eps = split.episodes
  path = np.full((len(eps), MAX_PATH_NODES), -1, np.int32)
  for i, ep in enumerate(eps):
    path[i, : len(ep.path)] = ep.path
  arrays = Episodes(
    house=np.array([ep.house for ep in eps], np.int32),
    start=np.array([ep.path[0] for ep in eps], np.int32),
    goal=np.array([ep.path[-1] for ep in eps], np.int32),
    heading=np.array([ep.heading for ep in eps], np.float32),
    path=path,
    path_edges=np.array([len(ep.path) - 1 for ep in eps], np.int32),
    distance=np.array([ep.distance for ep in eps], np.float32),
    instructions=np.stack([vocabulary.encode_batch(ep.instructions) for ep in eps]),
  )
  return Episodes(*map(jnp.asarray, arrays))


def load_arrays(name: str, *, seed: int = 0) -> tuple[Houses, Episodes]:
  """`(house_arrays, episode_arrays)` of `splits.load_split(name, seed=seed)`."""
  split = splits_lib.load_split(name, seed=seed)
  return house_arrays(split.houses), episode_arrays(split)


def observe(houses: Houses, state: NavState) -> jax.Array:
  """float32 [OBS_SIZE] observation (layout in the module docstring)."""
  h, n = state.house, state.node
  nbrs = houses.neighbors[h, n]
  valid = nbrs >= 0
  safe = jnp.where(valid, nbrs, n)
  delta = houses.positions[h, safe] - houses.positions[h, n]
  relative = jnp.arctan2(delta[:, 1], delta[:, 0]) - state.heading
  slots = jnp.concatenate(
    [
      valid[:, None].astype(jnp.float32),
      jnp.sin(relative)[:, None],
      jnp.cos(relative)[:, None],
      (jnp.linalg.norm(delta, axis=-1) / LENGTH_SCALE_M)[:, None],
      (houses.room_of_node[h, safe] == houses.room_of_node[h, n]).astype(jnp.float32)[:, None],
      houses.node_features[h, safe],
    ],
    axis=1,
  )
  slots = jnp.where(valid[:, None], slots, 0.0)
  time = state.t.astype(jnp.float32) / state.horizon.astype(jnp.float32)
  node = jnp.concatenate([houses.node_features[h, n], jnp.stack([state.stopped.astype(jnp.float32), time])])
  obs = jnp.concatenate([node, slots.reshape(-1)])
  chex.assert_shape(obs, (OBS_SIZE,))
  return obs


def reset(houses: Houses, episode: Episodes, *, horizon: int = HORIZON) -> tuple[NavState, jax.Array]:
  """Initial state and observation of one (unbatched) episode."""
  chex.assert_rank([episode.house, episode.start, episode.goal, episode.heading], 0)
  distance = houses.distances[episode.house, episode.start, episode.goal]
  state = NavState(
    house=jnp.asarray(episode.house, jnp.int32),
    node=jnp.asarray(episode.start, jnp.int32),
    goal=jnp.asarray(episode.goal, jnp.int32),
    heading=jnp.asarray(episode.heading, jnp.float32),
    t=jnp.zeros((), jnp.int32),
    horizon=jnp.asarray(horizon, jnp.int32),
    stopped=jnp.zeros((), bool),
    travelled=jnp.zeros((), jnp.float32),
    oracle_distance=distance,
    shortest=distance,
  )
  return state, observe(houses, state)


def step(houses: Houses, state: NavState, action: jax.Array) -> tuple[NavState, jax.Array, jax.Array, jax.Array]:
  """One step: `(state, obs, reward, done)`.  Branch-free; see the module docstring for the semantics."""
  chex.assert_rank(action, 0)
  h, n = state.house, state.node
  frozen = state.stopped | (state.t >= state.horizon)
  is_stop = action == STOP
  target = houses.neighbors[h, n, jnp.clip(action, 0, MAX_DEGREE - 1)]
  moves = ~frozen & ~is_stop & (action >= 0) & (action < MAX_DEGREE) & (target >= 0)
  new_node = jnp.where(moves, target, n)
  delta = houses.positions[h, new_node] - houses.positions[h, n]
  heading = jnp.where(moves, jnp.arctan2(delta[1], delta[0]), state.heading)
  stops_now = ~frozen & is_stop
  error = houses.distances[h, new_node, state.goal]
  new_state = state._replace(
    node=new_node,
    heading=heading,
    t=jnp.where(state.t >= state.horizon, state.t, state.t + 1),
    stopped=state.stopped | stops_now,
    travelled=state.travelled + jnp.where(moves, jnp.linalg.norm(delta), 0.0),
    oracle_distance=jnp.minimum(state.oracle_distance, error),
  )
  reward = (stops_now & (error < SUCCESS_RADIUS_M)).astype(jnp.float32)
  done = new_state.t >= new_state.horizon
  return new_state, observe(houses, new_state), reward, done


def action_mask(houses: Houses, state: NavState) -> jax.Array:
  """bool [NUM_ACTIONS]: occupied neighbour slots and STOP; only STOP once the state is absorbing."""
  frozen = state.stopped | (state.t >= state.horizon)
  moves = (houses.neighbors[state.house, state.node] >= 0) & ~frozen
  return jnp.concatenate([moves, jnp.ones((1,), bool)])


def expert_action(houses: Houses, state: NavState) -> jax.Array:
  """The shortest-path action: the slot of the next hop to the goal, STOP at the goal (or when absorbing)."""
  h = state.house
  nxt = houses.next_hop[h, state.node, state.goal]
  slots = houses.neighbors[h, state.node] == nxt
  at_goal = (state.node == state.goal) | state.stopped | (state.t >= state.horizon)
  return jnp.where(at_goal, STOP, jnp.argmax(slots)).astype(jnp.int32)


def rollout(houses: Houses, episode: Episodes, actions: jax.Array, *, horizon: int = HORIZON):
  """Run `actions` [T] from `reset`: `(final_state, nodes [T + 1], rewards [T], dones [T])` (lax.scan)."""
  state, _ = reset(houses, episode, horizon=horizon)

  def body(state, action):
    state, _, reward, done = step(houses, state, action)
    return state, (state.node, reward, done)

  final, (nodes, rewards, dones) = jax.lax.scan(body, state, actions)
  return final, jnp.concatenate([state.node[None], nodes]), rewards, dones


def navigation_error(houses: Houses, state: NavState) -> jax.Array:
  """Geodesic distance (metres) from the current node to the goal."""
  return houses.distances[state.house, state.node, state.goal]


def success(houses: Houses, state: NavState) -> jax.Array:
  """1.0 if the navigation error is below SUCCESS_RADIUS_M, else 0.0."""
  return (navigation_error(houses, state) < SUCCESS_RADIUS_M).astype(jnp.float32)


def oracle_success(houses: Houses, state: NavState) -> jax.Array:
  """1.0 if some visited node was within SUCCESS_RADIUS_M of the goal."""
  del houses
  return (state.oracle_distance < SUCCESS_RADIUS_M).astype(jnp.float32)


def spl(houses: Houses, state: NavState) -> jax.Array:
  """Success weighted by path length: success x shortest / max(shortest, travelled)."""
  longest = jnp.maximum(state.shortest, state.travelled)
  ratio = jnp.where(longest > 0, state.shortest / jnp.where(longest > 0, longest, 1.0), 1.0)
  return success(houses, state) * ratio


def metrics(houses: Houses, state: NavState) -> dict[str, jax.Array]:
  """All metrics of a (possibly batched: vmap it) state."""
  return {
    "success": success(houses, state),
    "oracle_success": oracle_success(houses, state),
    "navigation_error": navigation_error(houses, state),
    "spl": spl(houses, state),
    "path_length": state.travelled,
  }
