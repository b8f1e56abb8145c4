"""R2R-lite: splits, expert paths, instructions, tokenizer, the JAX env against the Python reference, metrics."""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlirl import envs
from nlirl.envs import houses as houses_lib
from nlirl.envs import instructions as instructions_lib
from nlirl.envs import splits as splits_lib


@functools.lru_cache(maxsize=None)
def arrays(name):
  return envs.load_arrays(name)


def unordered_pairs(split):
  return {(split.houses[e.house].house_id, *sorted((int(e.path[0]), int(e.path[-1])))) for e in split.episodes}


def test_unknown_split_raises_listing_valid_names():
  with pytest.raises(ValueError, match="unknown split 'validation'") as info:
    envs.load_split("validation")
  for name in envs.SPLITS:
    assert name in str(info.value)


def test_same_seed_gives_identical_split_and_other_seed_differs():
  first = envs.load_split("val_unseen", seed=3)
  splits_lib._build.cache_clear()
  splits_lib._house_set.cache_clear()
  second = envs.load_split("val_unseen", seed=3)
  assert first is not second
  for a, b in zip(first.houses, second.houses, strict=True):
    for field in ("adjacency", "positions", "room_of_node", "room_types", "objects", "object_colors"):
      np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  for a, b in zip(first.episodes, second.episodes, strict=True):
    np.testing.assert_array_equal(a.path, b.path)
    assert (a.house, a.heading, a.instructions) == (b.house, b.heading, b.instructions)
  other = envs.load_split("val_unseen", seed=4)
  assert not np.array_equal(other.houses[0].positions, first.houses[0].positions)


def test_sizes_meet_the_minimums():
  train, val_seen, val_unseen = (envs.load_split(n) for n in ("train", "val_seen", "val_unseen"))
  assert len(train.houses) >= 60 and len(val_unseen.houses) >= 15
  assert len(train.episodes) >= 3000
  assert len(val_seen.episodes) >= 500 and len(val_unseen.episodes) >= 500


def test_splits_are_disjoint_as_specified():
  train, val_seen, val_unseen, test = (envs.load_split(n) for n in envs.SPLITS)
  train_ids = {h.house_id for h in train.houses}
  assert {h.house_id for h in val_seen.houses} == train_ids
  for other in (val_unseen, test):
    assert not train_ids & {h.house_id for h in other.houses}
    for house in other.houses:
      assert not any(np.array_equal(house.positions, t.positions) for t in train.houses)
  assert not unordered_pairs(train) & unordered_pairs(val_seen)


@pytest.mark.parametrize("name", envs.SPLITS)
def test_expert_paths_are_shortest_with_4_to_7_edges(name):
  split = envs.load_split(name)
  lists = [[list(map(int, np.flatnonzero(h.adjacency[i]))) for i in range(h.num_nodes)] for h in split.houses]
  points = [[tuple(p) for p in h.positions.tolist()] for h in split.houses]
  for ep in split.episodes:
    path = [int(v) for v in ep.path]
    assert 4 <= len(path) - 1 <= 7
    adj = lists[ep.house]
    assert all(b in adj[a] for a, b in zip(path[:-1], path[1:], strict=True))
    length = sum(math.dist(points[ep.house][a], points[ep.house][b]) for a, b in zip(path[:-1], path[1:], strict=True))
    best = envs.dijkstra(adj, points[ep.house], path[0])[path[-1]]
    assert length == pytest.approx(best, rel=1e-9)
    assert ep.distance == pytest.approx(best, rel=1e-9)


def test_houses_are_connected_graphs_in_metres():
  for house in envs.load_split("train").houses[:10]:
    assert house.adjacency.dtype == bool and np.array_equal(house.adjacency, house.adjacency.T)
    assert not house.adjacency.diagonal().any()
    assert house.positions.shape == (house.num_nodes, 2) and house.num_nodes <= envs.MAX_NODES
    assert np.isfinite(house.distances).all()
    assert house.adjacency.sum(axis=1).max() <= envs.MAX_DEGREE
    lengths = np.linalg.norm(house.positions[:, None] - house.positions[None], axis=-1)[house.adjacency]
    assert lengths.min() >= 2 * houses_lib.WALL_MARGIN_M - 1e-9  # viewpoints keep off the walls


def _mentions(text):
  rooms = {r for r in envs.ROOM_TYPES if re.search(rf"\b{r}\b", text)}
  objects = {w for w in instructions_lib.tokenize(text) if w in envs.OBJECT_TYPES}
  return rooms, objects


@pytest.mark.parametrize("name", ["train", "val_unseen"])
def test_instructions_are_distinct_and_name_landmarks_on_their_path(name):
  split = envs.load_split(name)
  for ep in split.episodes:
    assert len(ep.instructions) >= 3 and len(set(ep.instructions)) == len(ep.instructions)
    house = split.houses[ep.house]
    path_rooms = {house.room_name(v) for v in ep.path}
    path_objects = {envs.OBJECT_TYPES[o] for v in ep.path for o in house.objects[v] if o >= 0}
    goal_words = {house.room_name(ep.path[-1])} | {envs.OBJECT_TYPES[o] for o in house.objects[ep.path[-1]] if o >= 0}
    for text in ep.instructions:
      rooms, objects = _mentions(text)
      assert rooms <= path_rooms and objects <= path_objects, (text, path_rooms, path_objects)
      assert (rooms | objects) & goal_words, text


def test_instructions_have_paraphrase_variety():
  split = envs.load_split("train")
  texts = [t for ep in split.episodes for t in ep.instructions]
  first_words = {" ".join(t.split()[:2]) for t in texts}
  assert len(first_words) >= 20
  for phrase in ("turn left", "turn right", "walk straight", "turn around", "stop", "wait", "past the", "enter"):
    assert any(phrase in t for t in texts), phrase


def test_turn_categories_follow_the_heading():
  cat = instructions_lib.turn_category
  assert cat(0.1) == "straight" and cat(math.pi / 2) == "left" and cat(-math.pi / 2) == "right"
  assert cat(math.radians(50)) == "slight_left" and cat(math.radians(-50)) == "slight_right"
  assert cat(math.pi) == "around" and cat(instructions_lib.wrap_angle(3 * math.pi / 2)) == "right"


def test_tokenizer_round_trip_and_padding():
  vocab = envs.Vocabulary()
  assert vocab.tokens[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
  for name in envs.SPLITS:
    for ep in envs.load_split(name).episodes:
      for text in ep.instructions:
        ids = vocab.encode(text)
        assert ids.shape == (instructions_lib.MAX_INSTRUCTION_TOKENS,) and ids.dtype == np.int32
        assert vocab.unk_id not in ids and vocab.decode(ids) == text
  ids = vocab.encode("turn left, then stop.", max_len=10)
  assert vocab.decode(ids) == "turn left, then stop."
  np.testing.assert_array_equal(ids[6:], [vocab.eos_id] + [vocab.pad_id] * 3)
  assert vocab.decode(vocab.encode("Walk to the zebra.")) == "walk to the <unk>."
  with pytest.raises(ValueError, match="max_len"):
    vocab.encode("stop " * 20, max_len=8)


def _episode(episodes, i):
  return jax.tree.map(lambda x: x[i], episodes)


@pytest.mark.parametrize("name", ["train", "val_unseen"])
def test_jax_env_matches_python_reference_on_random_actions(name):
  split = envs.load_split(name)
  houses, episodes = arrays(name)
  rng = np.random.default_rng(0)
  index = rng.choice(len(split.episodes), size=96, replace=False)
  batch = jax.tree.map(lambda x: x[index], episodes)
  steps = envs.HORIZON + 2
  p = np.full(envs.NUM_ACTIONS, 0.9 / (envs.NUM_ACTIONS - 1))
  p[envs.STOP] = 0.1
  actions = rng.choice(envs.NUM_ACTIONS, size=(len(index), steps), p=p).astype(np.int32)
  actions[:8, :] = rng.integers(-1, envs.NUM_ACTIONS + 2, size=(8, steps))  # out-of-range actions are no-ops

  reset = jax.jit(jax.vmap(envs.reset, in_axes=(None, 0)))
  step = jax.jit(jax.vmap(envs.step, in_axes=(None, 0, 0)))
  state, obs = reset(houses, batch)
  jax_obs, jax_nodes, jax_rewards, jax_dones = [obs], [], [], []
  for t in range(steps):
    state, obs, reward, done = step(houses, state, jnp.asarray(actions[:, t]))
    jax_obs.append(obs)
    jax_nodes.append(state.node)
    jax_rewards.append(reward)
    jax_dones.append(done)
  jax_metrics = jax.device_get(jax.jit(envs.metrics)(houses, state))

  ref = envs.ReferenceEnv(split.houses)
  for b, i in enumerate(index):
    obs = ref.reset(split.episodes[i])
    np.testing.assert_allclose(jax_obs[0][b], obs, atol=1e-5)
    for t in range(steps):
      obs, reward, done = ref.step(int(actions[b, t]))
      assert int(jax_nodes[t][b]) == ref.node
      assert float(jax_rewards[t][b]) == reward and bool(jax_dones[t][b]) == done
      np.testing.assert_allclose(jax_obs[t + 1][b], obs, atol=1e-5)
    for key, value in ref.metrics().items():
      assert float(jax_metrics[key][b]) == pytest.approx(value, abs=1e-4), key


def test_following_the_expert_succeeds_with_spl_one_for_all_train_episodes():
  houses, episodes = arrays("train")

  def follow(episode):
    state, _ = envs.reset(houses, episode)

    def body(state, _):
      state, _, reward, _ = envs.step(houses, state, envs.expert_action(houses, state))
      return state, (state.node, reward)

    state, (nodes, rewards) = jax.lax.scan(body, state, None, length=envs.HORIZON)
    return envs.metrics(houses, state), nodes, rewards.sum()

  m, nodes, returns = jax.jit(jax.vmap(follow))(episodes)
  assert episodes.house.shape[0] >= 3000
  np.testing.assert_array_equal(m["success"], 1.0)
  np.testing.assert_array_equal(m["oracle_success"], 1.0)
  np.testing.assert_array_equal(m["navigation_error"], 0.0)
  np.testing.assert_allclose(m["spl"], 1.0, atol=1e-5)
  np.testing.assert_array_equal(returns, 1.0)
  path = np.asarray(episodes.path)
  nodes = np.asarray(nodes)
  for e in range(0, len(path), 97):
    k = int(episodes.path_edges[e])
    np.testing.assert_array_equal(nodes[e, :k], path[e, 1 : k + 1])
    np.testing.assert_array_equal(nodes[e, k:], path[e, k])


def test_stop_is_absorbing():
  houses, episodes = arrays("train")
  state, _ = envs.reset(houses, _episode(episodes, 0))
  state, _, _, _ = envs.step(houses, state, jnp.int32(0))
  state, _, _, _ = envs.step(houses, state, jnp.int32(envs.STOP))
  assert bool(state.stopped) and int(state.t) == 2
  np.testing.assert_array_equal(envs.action_mask(houses, state), [False] * envs.MAX_DEGREE + [True])
  before = state
  dones = []
  for t in range(3, envs.HORIZON + 3):
    state, _, reward, done = envs.step(houses, state, jnp.int32(t % envs.NUM_ACTIONS))
    assert float(reward) == 0.0 and int(state.t) == min(t, envs.HORIZON)
    dones.append(bool(done))
    jax.tree.map(np.testing.assert_array_equal, state._replace(t=before.t), before)
  assert dones == [t >= envs.HORIZON for t in range(3, envs.HORIZON + 3)]  # the fixed horizon still ends it


def _line_house():
  """Four viewpoints on a line at x = 0, 2, 4, 6.5 m (0-1-2 one room, 3 another)."""
  positions = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0], [6.5, 0.0]])
  adjacency = np.zeros((4, 4), bool)
  for a in range(3):
    adjacency[a, a + 1] = adjacency[a + 1, a] = True
  distances, next_hop = houses_lib.floyd_warshall(adjacency, positions)
  objects = np.array([[0, -1], [1, -1], [2, 3], [4, -1]])
  return houses_lib.House(
    house_id=0,
    adjacency=adjacency,
    positions=positions,
    room_of_node=np.array([0, 0, 0, 1]),
    room_types=np.array([0, 0, 0, 4]),
    objects=objects,
    object_colors=np.where(objects >= 0, 1, -1),
    distances=distances,
    next_hop=next_hop,
  )


@pytest.mark.parametrize(
  "moves, expected",
  [
    # start 0, goal 3 (6.5 m away). Slot 0 is the lower-id neighbour, slot 1 the higher.
    ([0, 1, envs.STOP], dict(navigation_error=2.5, success=1.0, oracle_success=1.0, spl=1.0, path_length=4.0)),
    ([0, 1, 0, envs.STOP], dict(navigation_error=4.5, success=0.0, oracle_success=1.0, spl=0.0, path_length=6.0)),
    ([0, 0, 0, 1, 1, envs.STOP], dict(navigation_error=0.0, success=1.0, oracle_success=1.0, spl=6.5 / 10.5)),
    ([0, envs.STOP, 1, 1], dict(navigation_error=4.5, success=0.0, oracle_success=0.0, spl=0.0, path_length=2.0)),
  ],
)
def test_metrics_on_hand_computed_cases(moves, expected):
  houses = envs.house_arrays((_line_house(),))
  episode = envs.Episodes(
    house=jnp.int32(0),
    start=jnp.int32(0),
    goal=jnp.int32(3),
    heading=jnp.float32(0.0),
    path=jnp.arange(4, dtype=jnp.int32),
    path_edges=jnp.int32(3),
    distance=jnp.float32(6.5),
    instructions=jnp.zeros((1, 4), jnp.int32),
  )
  # The first move from node 0 uses slot 0 (its only neighbour, node 1); afterwards slot 0 = back, 1 = on.
  final, _, _, _ = envs.rollout(houses, episode, jnp.asarray(moves, jnp.int32))
  got = envs.metrics(houses, final)
  for key, value in expected.items():
    assert float(got[key]) == pytest.approx(value, abs=1e-5), key
