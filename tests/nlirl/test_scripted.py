"""nlirl.scripted: the parser inverts the grammar, the walkers avoid themselves, the reader follows instructions.

The agents are stepped by the plain-Python reference env (no compilation); `test_baselines` checks the JAX
driver against it.
"""

import math

import numpy as np
import pytest

from nlirl import envs, scripted
from nlirl.envs import instructions as grammar


def _walk(env, episode, agent):
  """Steps `agent` through `episode`: (nodes visited [moves + 1], actions, metrics)."""
  obs = env.reset(episode)
  nodes, actions = [env.node], []
  for _ in range(env.horizon):
    if env.stopped:
      break
    action = agent.act(np.asarray(obs, np.float32))
    actions.append(action)
    obs, _, _ = env.step(action)
    if action != envs.STOP:
      nodes.append(env.node)
  return nodes, actions, env.metrics()


@pytest.fixture(scope="module")
def val_unseen():
  split = envs.load_split("val_unseen")
  return split, envs.ReferenceEnv(split.houses)


def test_parser_recovers_what_every_instruction_says():
  split = envs.load_split("val_seen")
  for ep in split.episodes:
    house, path = split.houses[ep.house], ep.path
    goal = int(path[-1])
    plans = [scripted.parse(t) for t in ep.instructions]
    assert [p.family for p in plans] == list(grammar.FAMILIES), ep.instructions
    steps, rooms, goal_plan = plans
    assert len(steps.moves) == len(path) - 1
    heading = ep.heading
    for move, a, b in zip(steps.moves, path[:-1], path[1:]):
      direction = grammar.edge_heading(house, a, b)
      assert move.turn == grammar.turn_category(grammar.wrap_angle(direction - heading))
      heading = direction
      if house.room_of_node[a] != house.room_of_node[b]:
        assert move.room == house.room_types[b] and move.thing is None
      else:
        assert move.thing.object in house.objects[b] and move.room is None
    route = [
      house.room_types[n]
      for k, n in enumerate(path)
      if k == 0 or house.room_of_node[n] != house.room_of_node[path[k - 1]]
    ]
    assert list(rooms.rooms) == route
    for plan in plans:
      assert plan.goal_room == house.room_types[goal]
      assert plan.goal_thing.object in house.objects[goal]
      if plan.goal_thing.color is not None:
        assert plan.goal_thing.color in house.object_colors[goal]
    if goal_plan.via_room is not None:
      assert goal_plan.via_room in [house.room_types[n] for n in path[1:-1]]
    if goal_plan.via_thing is not None:
      assert any(goal_plan.via_thing.object in house.objects[n] for n in path[1:-1])


def test_text_outside_the_grammar_gives_an_empty_plan():
  assert scripted.parse("dance in the garden.") == scripted.Plan("unknown")


def test_decoded_observation_and_dead_reckoning_match_the_house(val_unseen):
  split, env = val_unseen
  for ep in split.episodes[:20]:
    house = split.houses[ep.house]
    obs = env.reset(ep)
    memory = scripted.DeadReckoning()
    start = house.positions[ep.path[0]]
    rotate = np.array([[math.cos(-ep.heading), -math.sin(-ep.heading)], [math.sin(-ep.heading), math.cos(-ep.heading)]])
    for step in range(env.horizon):
      view = scripted.decode(np.asarray(obs, np.float32))
      assert view.room == house.room_types[env.node]
      assert view.objects == {int(o) for o in house.objects[env.node] if o >= 0}
      neighbours = house.neighbors(env.node)
      assert [s.index for s in view.slots] == list(range(len(neighbours)))
      for slot, n in zip(view.slots, neighbours):
        assert slot.room == house.room_types[n]
        assert slot.same_room == (house.room_of_node[n] == house.room_of_node[env.node])
        true = rotate @ (house.positions[n] - start)  # the start frame: start at 0, start heading along +x
        np.testing.assert_allclose(memory.slot_position(slot), true, atol=1e-3)
      slot = view.slots[step % len(view.slots)]
      memory.move(slot)
      obs, _, _ = env.step(slot.index)
      np.testing.assert_allclose(memory.position, rotate @ (house.positions[env.node] - start), atol=1e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_walker_is_self_avoiding_and_never_stops(val_unseen, seed):
  split, env = val_unseen
  for k, ep in enumerate(split.episodes[::10]):
    walker = scripted.RandomWalker(np.random.default_rng([seed, k]))
    nodes, actions, _ = _walk(env, ep, walker)
    house = split.houses[ep.house]
    assert envs.STOP not in actions and len(actions) == env.horizon
    for t in range(len(nodes) - 1):
      fresh = set(house.neighbors(nodes[t]).tolist()) - set(nodes[: t + 1])
      if fresh:  # an unvisited neighbour exists: the walk takes one
        assert nodes[t + 1] in fresh, (nodes, t)


def test_random_walker_with_a_stop_count_stops_after_that_many_moves(val_unseen):
  split, env = val_unseen
  for k, ep in enumerate(split.episodes[:20]):
    moves = 4 + k % 4
    _, actions, _ = _walk(env, ep, scripted.RandomWalker(np.random.default_rng(k), stop_after=moves))
    assert actions == actions[:moves] + [envs.STOP] and envs.STOP not in actions[:moves]


@pytest.mark.parametrize("memory", [False, True])
def test_reader_follows_step_by_step_and_rooms_instructions(val_unseen, memory):
  split, env = val_unseen
  episodes = split.episodes[::20]  # 30 paths of 15 unseen houses
  sr = {f: [] for f in grammar.FAMILIES}
  for ep in episodes:
    for family, text in zip(grammar.FAMILIES, ep.instructions):
      _, actions, m = _walk(env, ep, scripted.InstructionReader(text, memory=memory))
      sr[family].append(m["success"])
      if family == "step_by_step":
        assert actions == [a for a in actions if a != envs.STOP] + [envs.STOP]
        assert len(actions) == len(ep.path)  # one move per clause, then STOP
  assert np.mean(sr["step_by_step"]) == 1.0
  assert np.mean(sr["rooms"]) >= 0.9
  if memory:  # memory is what lets it search an unseen house for a named room
    assert np.mean(sr["goal"]) >= 0.4


def test_reader_given_another_paths_instruction_mostly_fails(val_unseen):
  split, env = val_unseen
  episodes = split.episodes[:40]  # one house
  sr = []
  for k, ep in enumerate(episodes):
    other = episodes[(k + 20) % len(episodes)]
    _, _, m = _walk(env, ep, scripted.InstructionReader(other.instructions[0], memory=True))
    sr.append(m["success"])
  assert np.mean(sr) < 0.25
