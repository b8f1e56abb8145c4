"""schedulers.optimizers: the shared factory equals the chains it stands for."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import schedulers
from common import app
from schedulers import optimizers


def _quadratic_run(tx, steps=30, observe=None):
  params = {"w": jnp.array([3.0, -2.0])}
  state = tx.init(params)
  lrs = []
  for i in range(steps):
    loss, grads = jax.value_and_grad(lambda p: jnp.sum(p["w"] ** 2))(params)
    updates, state = tx.update(grads, state, params, value=loss)
    params = optax.apply_updates(params, updates)
    if observe is not None and i % 5 == 4:
      state = observe(state, loss)
    lrs.append(state)
  return params, state


def test_per_step_equals_the_manual_chain():
  built = schedulers.make_optimizer(
    name="adamw", learning_rate=0.1, objective="supervised", weight_decay=1e-3, greedy={"patience": 1, "smooth": False}
  )
  manual = optax.chain(optax.adamw(0.1, weight_decay=1e-3), schedulers.greedy_lr(patience=1, smooth=False))
  p1, s1 = _quadratic_run(built.tx)
  p2, s2 = _quadratic_run(optax.with_extra_args_support(manual))
  np.testing.assert_array_equal(p1["w"], p2["w"])
  assert float(built.learning_rate(s1)) == pytest.approx(0.1 * float(schedulers.greedy_scale(s2)))
  assert float(schedulers.greedy_scale(s1)) != 1.0  # GreedyLR acted


def test_per_eval_steps_only_on_observe():
  built = schedulers.make_optimizer(
    name="sgd",
    learning_rate=0.05,
    objective="supervised",
    greedy_mode="per_eval",
    greedy={"patience": 0, "smooth": False},
  )
  controller = schedulers.greedy_lr(patience=0, smooth=False)
  manual = optax.with_extra_args_support(optax.chain(optax.sgd(0.05), schedulers.on_eval(controller)))
  p1, s1 = _quadratic_run(built.tx, observe=built.observe)
  p2, s2 = _quadratic_run(manual, observe=lambda s, v: schedulers.observe(s, controller, value=v))
  np.testing.assert_array_equal(p1["w"], p2["w"])
  assert float(built.learning_rate(s1)) > 0.05  # improving losses raised the rate
  _, untouched = _quadratic_run(built.tx)
  assert float(built.learning_rate(untouched)) == pytest.approx(0.05)


def test_none_mode_and_clipping():
  built = schedulers.make_optimizer(
    name="momentum", learning_rate=0.01, objective="supervised", greedy_mode="none", max_grad_norm=1.0
  )
  manual = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.01, momentum=0.9))
  p1, s1 = _quadratic_run(built.tx)
  p2, _ = _quadratic_run(optax.with_extra_args_support(manual))
  np.testing.assert_array_equal(p1["w"], p2["w"])
  assert built.controller is None and float(built.learning_rate(s1)) == pytest.approx(0.01)
  assert built.observe(s1, 1.0) is s1


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"name": "lion"}, "name"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"greedy_mode": "often"}, "greedy_mode"),
    ({"momentum": 1.0}, "momentum"),
    ({"max_grad_norm": -1.0}, "max_grad_norm"),
    ({"greedy": {"factor": 2.0}}, "factor"),
    ({"objective": "rl"}, "objective"),
  ],
)
def test_bad_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    schedulers.make_optimizer(**{"name": "adamw", "learning_rate": 1e-3, "objective": "supervised", **kwargs})


def test_objective_is_required():
  with pytest.raises(TypeError, match="objective"):
    schedulers.make_optimizer(name="adamw", learning_rate=1e-3)
  with pytest.raises(TypeError, match="objective"):
    optimizers.optimizer_config(name="adam")


@pytest.mark.parametrize("objective", optimizers.OBJECTIVES)
def test_rule_sets_the_defaults(objective):
  rule = optimizers.RULE[objective]
  built = schedulers.make_optimizer(name="adam", learning_rate=1e-3, objective=objective)
  block = optimizers.optimizer_config(name="adam", learning_rate=1e-3, objective=objective)
  assert built.greedy_mode == rule.greedy_mode == block.greedy_mode
  assert dict(block.greedy) == dict(rule.greedy)
  from_block = optimizers.from_config(block)
  assert from_block.greedy_mode == built.greedy_mode
  # The same decisions on the same values: the block builds the rule's controller.
  if built.controller is not None:
    values = jnp.concatenate([jnp.linspace(5.0, 1.0, 40), jnp.ones(60)])
    s1, s2 = built.controller.init({}), from_block.controller.init({})
    for v in values:
      _, s1 = built.controller.update({}, s1, value=v)
      _, s2 = from_block.controller.update({}, s2, value=v)
    assert float(s1.scale) == float(s2.scale)


def test_rl_objectives_never_step_on_their_loss():
  """No RL objective class gets GreedyLR per step on its raw loss by default."""
  for objective in ("td", "adversarial", "policy_gradient"):
    assert optimizers.RULE[objective].greedy_mode != "per_step"
  assert optimizers.RULE["supervised"].greedy_mode == "per_step"
  assert optimizers.RULE["dual"].greedy_mode == "none"


def test_progress_rule_never_exceeds_the_base_rate():
  """Per eval on -return with the progress settings: the scale stays in [min_scale, 1]."""
  opt = schedulers.make_optimizer(name="adam", learning_rate=3e-4, objective="td")
  params = {"w": jnp.ones(3)}
  state = opt.tx.init(params)
  rng = np.random.default_rng(0)
  scales = []
  for t in range(400):  # rising returns, then a noisy plateau
    ret = min(t, 100) + rng.normal(0, 2.0)
    state = opt.observe(state, -ret)
    scales.append(float(schedulers.greedy_scale(state)))
  assert max(scales) <= 1.0
  assert scales[99] == 1.0  # steady progress: no decrease
  assert min(scales) >= optimizers.PROGRESS_GREEDY["min_scale"] - 1e-6
  assert scales[-1] < 1.0  # the plateau lowered it


def test_config_block_builds_and_validates():
  config = ml_collections.ConfigDict(
    {"optimizer": optimizers.optimizer_config(name="adam", learning_rate=3e-4, objective="supervised")}
  )
  optimizers.check_optimizer_config(config, "optimizer")
  built = optimizers.from_config(config.optimizer)
  assert built.greedy_mode == "per_step" and built.base_learning_rate == pytest.approx(3e-4)
  config.optimizer.greedy.factor = 1.5
  with pytest.raises(app.ConfigError) as err:
    optimizers.check_optimizer_config(config, "optimizer")
  assert err.value.field == "optimizer.greedy.factor"
  config.optimizer.greedy.factor = 0.9
  config.optimizer.objective = "rl"
  with pytest.raises(app.ConfigError, match="objective"):
    optimizers.check_optimizer_config(config, "optimizer")
  config.optimizer.objective = "td"
  config.optimizer.max_grad_norm = 0.0
  with pytest.raises(app.ConfigError, match="max_grad_norm"):
    optimizers.check_optimizer_config(config, "optimizer")
