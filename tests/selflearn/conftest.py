"""Shared fixtures of the selflearn tests: one small simulated log per session."""

import pytest

from selflearn.sim import simulator
from selflearn.sim import world as world_lib


@pytest.fixture(scope="session")
def sim_config():
  return simulator.preset("closed_world", seed=3, num_users=40)  # the original world: pinned numbers


@pytest.fixture(scope="session")
def sim_world(sim_config):
  return world_lib.make_world(sim_config.seed, sim_config.num_users)


@pytest.fixture(scope="session")
def dialogues(sim_config, sim_world):
  return list(simulator.generate(sim_config, 600, world=sim_world))
