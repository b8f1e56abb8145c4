"""learned_schedule: the observation formula, env/transform equality, policy files, the factory."""

import functools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import schedulers
from common import checkpoint, encoders
from schedulers.learned import dnn_env, transform
from schedulers.learned import policy as policy_lib

SPEC = transform.ControllerSpec(
  multipliers=(0.5, 0.8, 1.0, 1.25, 2.0), decision_interval=4, num_decisions=6, scale_bounds=(0.1, 10.0)
)


def _random_policy(spec=SPEC, seed=0, gain=3.0) -> policy_lib.Policy:
  """A policy whose argmax actually depends on the observation (weights scaled up)."""
  policy_spec = policy_lib.PolicySpec((16,), "tanh", spec)
  network = encoders.make_mlp(transform.OBSERVATION_SIZE, (16,), len(spec.multipliers), activation=jnp.tanh)
  params = network.init(jax.random.PRNGKey(seed))
  return policy_lib.Policy(jax.tree.map(lambda x: gain * x, params), policy_spec)


def test_update_norms_group_leaves_by_layer():
  tree = {
    "params": {
      "dense_0": {"kernel": jnp.full((2, 3), 1.0), "bias": jnp.full((3,), 2.0)},
      "dense_1": {"kernel": jnp.full((3, 1), -0.5)},
    }
  }
  norms = np.asarray(transform.update_norms(tree))
  layer0 = np.sqrt(6 * 1.0 + 3 * 4.0)
  layer1 = np.sqrt(3 * 0.25)
  np.testing.assert_allclose(norms, [np.hypot(layer0, layer1), layer0, layer1], rtol=1e-6)
  # A bare array (or a flat tuple) is one layer per leaf.
  np.testing.assert_allclose(transform.update_norms(jnp.array([3.0, 4.0])), [5.0, 5.0, 5.0])
  np.testing.assert_allclose(transform.update_norms((jnp.array([3.0]), jnp.array([4.0]))), [5.0, 4.0, 3.0])


class FeatureTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_features_and_decide_follow_the_formula(self):
    features = self.variant(functools.partial(transform.features, SPEC))
    decide = self.variant(functools.partial(transform.decide, SPEC))
    state = transform.init_state()
    values = [2.0, 1.0, np.nan, 3.0]  # the NaN is not counted
    for i, v in enumerate(values):
      state = transform.accumulate(state, {"a": jnp.full((4,), float(i + 1))}, v)
    obs = np.asarray(features(state))
    chex.assert_shape(obs, (transform.OBSERVATION_SIZE,))
    mean_norm = np.mean([2.0 * (i + 1) for i in range(4)])
    np.testing.assert_allclose(obs, [np.log(2.0), 0.0, 1.0, 0.0, *([np.log(mean_norm)] * 3)], rtol=1e-6)
    state = decide(state, jnp.int32(4))
    assert float(state.scale) == 2.0 and int(state.decisions) == 1 and float(state.best) == 2.0
    assert float(state.value_sum) == 0.0 and int(state.value_count) == 0
    for _ in range(4):
      state = transform.accumulate(state, {"a": jnp.ones((4,))}, 4.0)
    obs = np.asarray(features(state))
    np.testing.assert_allclose(obs[:4], [np.log(4.0), np.log(2.0), 5 / 6, np.log(2.0)], rtol=1e-6)
    for _ in range(30):  # clipped to scale_bounds
      state = decide(state, jnp.int32(4))
    np.testing.assert_allclose(state.scale, 10.0)
    np.testing.assert_allclose(features(state)[2], 0.0)  # budget spent, not negative


def test_interval_without_finite_values_reads_the_loss_cap():
  state = transform.accumulate(transform.init_state(), jnp.ones(2), jnp.inf)
  np.testing.assert_allclose(transform.features(SPEC, state)[0], np.log(SPEC.loss_cap), rtol=1e-6)


def test_controller_spec_validation():
  for kwargs in (
    {"multipliers": (1.0,)},
    {"multipliers": (1.0, -2.0)},
    {"decision_interval": 0},
    {"num_decisions": 1.5},
    {"scale_bounds": (2.0, 3.0)},
    {"loss_cap": 0.0},
  ):
    with pytest.raises(ValueError):
      transform.ControllerSpec(**{**SPEC.__dict__, **kwargs})


def test_learned_schedule_needs_value_and_holds_after_the_budget():
  policy = _random_policy()
  tx = optax.chain(optax.sgd(0.1), schedulers.learned_schedule(policy))
  params = jnp.ones(3)
  state = tx.init(params)
  with pytest.raises(TypeError, match="value"):
    tx.update(params, state, params)
  step = jax.jit(lambda s, v: tx.update(jnp.ones(3), s, params, value=v)[1])
  scales = []
  for i in range(SPEC.decision_interval * (SPEC.num_decisions + 3)):
    state = step(state, jnp.float32(1.0 / (i + 1)))
    scales.append(float(state[-1].scale))
  assert int(state[-1].decisions) == SPEC.num_decisions
  held = scales[SPEC.decision_interval * SPEC.num_decisions - 1 :]
  assert len(set(held)) == 1
  # Scales change only at interval ends.
  changes = [i + 1 for i in range(1, len(scales)) if scales[i] != scales[i - 1]]
  assert changes and all(c % SPEC.decision_interval == 0 for c in changes)


@pytest.fixture(scope="module")
def small_task():
  return dnn_env.make_dnn_task(steps_per_decision=5, num_decisions=6, initial_lr=0.02, lr_bounds=(1e-3, 0.5))


@pytest.mark.opt
def test_deployed_transform_replays_the_env_rollout(small_task):
  """The env driven by the policy's argmax actions and `run_tail(learned_schedule)` are one run."""
  task = small_task
  policy = policy_lib.from_ppo(
    _random_policy(task.controller, seed=8, gain=10.0).params,
    hidden_sizes=(16,),
    activation="tanh",
    controller=task.controller,
  )

  @jax.jit
  def rollout(key):
    state, obs = task.env.reset(key)

    def body(carry, _):
      state, obs = carry
      action = policy.action(obs)
      state, obs, _, _ = task.env.step(state, action)
      return (state, obs), (action, task.learning_rate(state), state.val_loss)

    first_val = state.val_loss
    (state, _), (actions, lrs, vals) = jax.lax.scan(body, (state, obs), None, length=task.num_decisions)
    return actions, lrs, jnp.concatenate([first_val[None], vals]), task.test_loss(state)

  deployed = jax.jit(lambda k: task.run_tail(k, schedulers.learned_schedule(policy)))
  distinct = set()
  for seed in range(3):
    key = jax.random.key(seed)
    actions, lrs, vals, test_loss = rollout(key)
    record = deployed(key)
    distinct |= set(np.asarray(actions).tolist())
    interval_lrs = np.asarray(record.lrs).reshape(task.num_decisions + 1, -1)
    np.testing.assert_allclose(interval_lrs[0], task.initial_lr, rtol=1e-5)
    np.testing.assert_allclose(
      interval_lrs[1:], np.broadcast_to(np.asarray(lrs)[:, None], interval_lrs[1:].shape), 1e-5
    )
    np.testing.assert_allclose(record.val_losses, vals, rtol=1e-5)
    np.testing.assert_allclose(record.test_loss, test_loss, rtol=1e-5)
  assert len(distinct) >= 2, distinct  # the check is not about a constant policy


@pytest.mark.opt
def test_policy_logits_are_the_flax_mlp_bitwise():
  """`Policy.logits` (plain JAX) is the Flax MLP `common.ppo` trains, operation for operation."""
  policy = _random_policy(seed=4)
  network = encoders.make_mlp(transform.OBSERVATION_SIZE, (16,), len(SPEC.multipliers), activation=jnp.tanh)
  obs = jax.random.normal(jax.random.PRNGKey(1), (9, transform.OBSERVATION_SIZE))
  np.testing.assert_array_equal(policy.logits(obs), network.apply(policy.params, obs))
  plain = jax.jit(lambda params, obs: policy_lib.Policy(params, policy.spec).logits(obs))
  np.testing.assert_array_equal(plain(policy.params, obs), jax.jit(network.apply)(policy.params, obs))


def test_policy_round_trips_through_one_file(tmp_path):
  policy = _random_policy(seed=3)
  path = policy_lib.save_policy(tmp_path / "policy", policy)
  assert path == tmp_path / "policy" / "policy.npz" and sorted(p.name for p in path.parent.iterdir()) == ["policy.npz"]
  obs = jax.random.normal(jax.random.PRNGKey(0), (5, transform.OBSERVATION_SIZE))
  for source in (tmp_path / "policy", path):
    restored = policy_lib.load_policy(source)
    assert restored.spec == policy.spec
    np.testing.assert_array_equal(restored.logits(obs), policy.logits(obs))
  # Weights that do not fit the spec are refused, naming the weight.
  bigger = policy_lib.Policy(policy.params, policy_lib.PolicySpec((32,), "tanh", SPEC))
  with pytest.raises(ValueError, match="hidden_0/bias"):
    policy_lib.save_policy(tmp_path / "bad", bigger)
  arrays = dict(np.load(path))
  arrays["spec.json"] = np.asarray(json.dumps(bigger.spec.to_json()))
  np.savez(tmp_path / "bad.npz", **arrays)
  with pytest.raises(ValueError, match=r"hidden_0/bias is float32\[16\], the spec needs float32\[32\]"):
    policy_lib.load_policy(tmp_path / "bad.npz")
  with pytest.raises(FileNotFoundError):
    policy_lib.load_policy(tmp_path / "nothing")
  np.savez(tmp_path / "other.npz", x=np.zeros(3))
  with pytest.raises(ValueError, match="not a policy file"):
    policy_lib.load_policy(tmp_path / "other.npz")


def test_policy_saved_by_earlier_versions_still_loads(tmp_path):
  """The orbax layout (`policy.json` + `params/`) that earlier versions wrote."""
  policy = _random_policy(seed=5)
  with checkpoint.Checkpointer(tmp_path / "params", keep=1) as ckpt:
    ckpt.save(0, jax.device_get(policy.params), force=True)
  (tmp_path / "policy.json").write_text(json.dumps(policy.spec.to_json()))
  obs = jax.random.normal(jax.random.PRNGKey(0), (5, transform.OBSERVATION_SIZE))
  np.testing.assert_array_equal(policy_lib.load_policy(tmp_path).logits(obs), policy.logits(obs))


def test_shipped_policy_is_package_data():
  policy = policy_lib.shipped_policy()
  assert policy.spec.hidden_sizes == (32, 32) and policy.spec.controller.num_decisions == 20
  with pytest.raises(ValueError, match="dnn"):
    policy_lib.shipped_policy("nmf")


def test_saving_again_replaces_the_policy(tmp_path):
  """A re-exported policy (e.g. after more training) is the one loaded, not the first."""
  first, second = _random_policy(seed=1), _random_policy(seed=2)
  policy_lib.save_policy(tmp_path, first)
  policy_lib.save_policy(tmp_path, second)
  obs = jax.random.normal(jax.random.PRNGKey(0), (5, transform.OBSERVATION_SIZE))
  np.testing.assert_array_equal(policy_lib.load_policy(tmp_path).logits(obs), second.logits(obs))


def test_factory_builds_the_learned_schedule():
  policy = _random_policy()
  with pytest.raises(ValueError, match="greedy_mode='none'"):
    schedulers.make_optimizer(
      name="momentum", learning_rate=0.1, objective="supervised", greedy_mode="per_step", schedule_policy=policy
    )
  opt = schedulers.make_optimizer(
    name="momentum", learning_rate=0.1, objective="supervised", greedy_mode="none", schedule_policy=policy
  )
  params = jnp.ones(3)
  state = opt.tx.init(params)
  for i in range(SPEC.decision_interval * 3):
    _, state = opt.tx.update(jnp.ones(3), state, params, value=jnp.float32(1.0 + i))
  np.testing.assert_allclose(opt.learning_rate(state), 0.1 * state[-1].scale)
  assert int(state[-1].decisions) == 3
