"""The update-to-data ratio: per-family defaults, the count per vmapped step, the switch, validation."""

import math

import jax
import numpy as np
import pytest

from mql import envs, networks, train
from mql import trainer as trainer_lib
from mql.configs import default as default_config

# The original's updates per transition (amazon-science/meta-q-learning `run_script.py` and
# `main.py`): (before 1e5 transitions, after) = (1 / num_tasks_sample, num_train_steps /
# (num_tasks_sample x 200)); point-robot is ours, in the cheetah-vel mould.
ORIGINAL_RATIOS = {
  "cheetah-vel": (1.0, 1.0),
  "cheetah-dir": (1.0, 2.5),
  "ant-dir": (0.2, 1.0),
  "ant-goal": (0.2, 0.2),
  "humanoid-dir": (1.0, 2.5),
  "walker-params": (0.2, 0.2),
  "point-robot": (1.0, 1.0),
}


def _counts(settings, num_envs, first_step, num_steps):
  env_steps = (np.arange(first_step, first_step + num_steps) * num_envs).astype(np.int32)
  return np.asarray(jax.vmap(lambda s: trainer_lib.updates_per_env_step(settings, num_envs, s))(env_steps))


@pytest.mark.parametrize("family", default_config.FAMILY_NAMES)
def test_gpu_variants_run_the_original_ratios_and_cpu_variants_state_theirs(family):
  early, late = ORIGINAL_RATIOS[family]
  config = default_config.get_config(f"{family}-gpu")
  settings = train._td3_settings(config)
  assert (settings.early_ratio, settings.update_ratio, settings.update_ratio_switch) == (early, late, 100_000)
  e = config.num_envs
  switch_step = settings.update_ratio_switch // e  # the first vmapped step that ends at or past the switch
  before = _counts(settings, e, switch_step - 50, 50)
  after = _counts(settings, e, switch_step, 50)
  # Any 5 consecutive steps run exactly ratio x E x 5 updates (the ratios are multiples of 1/5), each floor or ceil.
  for counts, ratio in ((before, early), (after, late)):
    assert counts.reshape(10, 5).sum(axis=1).tolist() == [round(ratio * e * 5)] * 10
    assert set(counts.tolist()) <= {math.floor(ratio * e), math.ceil(ratio * e)}
  cpu = train._td3_settings(default_config.get_config(family))
  assert cpu.update_ratio == cpu.early_ratio == 0.25  # below the original, for the CPU budget
  assert _counts(cpu, 16, 0, 10).tolist() == [4] * 10


def test_fractional_ratio_is_spread_exactly_and_the_switch_changes_the_count():
  settings = trainer_lib.TD3Settings(update_ratio=0.3, update_ratio_early=0.75, update_ratio_switch=40)
  counts = _counts(settings, 4, 0, 30).tolist()
  assert counts[:9] == [3] * 9  # steps ending at 4..36 transitions: 0.75 x 4
  assert sum(counts[9:19]) == 12 and set(counts[9:]) == {1, 2}  # 0.3 x 4 = 1.2: 12 per 10 steps
  # Step k (0-based) runs floor(1.2 (k + 1)) - floor(1.2 k): after step k, floor(1.2 (k + 1)) - floor(1.2 x 9) in all.
  assert np.cumsum(counts[9:]).tolist() == [(12 * (k + 1)) // 10 - (12 * 9) // 10 for k in range(9, 30)]


def test_switch_inside_a_jitted_iteration():
  """E = 4, 0.5 then 1.5 updates per transition from 20 transitions: 2 per step, then 6."""
  tasks = envs.sample_tasks("point-robot", 0, num_train=4, num_test=2)
  env = envs.make("point-robot", task_set=tasks, batch_size=4)
  nets = networks.make_networks(2, 2, hidden_sizes=(8,), context_size=4, history_length=3, use_context=False)
  settings = trainer_lib.TD3Settings(
    batch_size=8,
    start_steps=0,
    steps_per_iteration=5,
    update_ratio_early=0.5,
    update_ratio=1.5,
    update_ratio_switch=20,
    replay_size=200,
  )
  trainer = trainer_lib.make_trainer(env, nets, settings)
  state, m1 = trainer.iteration(trainer.init(jax.random.key(0)))
  assert int(state.updates) == 4 * 2 + 6  # steps ending at 4..16 transitions, then the one at 20
  state, m2 = trainer.iteration(state)
  assert int(state.updates) == 14 + 5 * 6
  assert float(m1["updates_per_transition"]) == pytest.approx(14 / 20)
  assert float(m2["updates_per_transition"]) == pytest.approx(1.5)
  assert np.isfinite(m2["critic_loss"]) and np.isfinite(m2["actor_loss"])
  # The state alone decides the count: continuing from a copy (as a resume restores it) is identical.
  copy = state._replace(rng=jax.random.wrap_key_data(np.asarray(jax.random.key_data(state.rng))))
  copy = jax.tree.map(lambda x: x if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else np.asarray(x), copy)
  once, _ = trainer.iteration(state)
  again, _ = trainer.iteration(copy)
  assert int(once.updates) == int(again.updates) == 14 + 10 * 6
  np.testing.assert_array_equal(jax.random.key_data(once.rng), jax.random.key_data(again.rng))
  for a, b in zip(jax.tree.leaves(once.params), jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
  "kwargs, field",
  [
    (dict(update_ratio=0), "update_ratio"),
    (dict(update_ratio=-0.5), "update_ratio"),
    (dict(update_ratio=float("nan")), "update_ratio"),
    (dict(update_ratio=True), "update_ratio"),
    (dict(update_ratio="1"), "update_ratio"),
    (dict(update_ratio=math.pi), "update_ratio"),  # no fraction with a denominator <= 10^4
    (dict(update_ratio_early=0.0), "update_ratio_early"),
    (dict(update_ratio_switch=-1), "update_ratio_switch"),
  ],
)
def test_bad_ratio_settings_name_the_field(kwargs, field):
  with pytest.raises(ValueError, match=f"^{field} must"):
    trainer_lib.TD3Settings(**kwargs)
