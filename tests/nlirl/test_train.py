"""nlirl.train: relabelling uses the goal generator; the likelihood gate; generator pretraining."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import app, sharding
from nlirl import envs, rollouts, train
from nlirl.configs import default as default_config
from schedulers import per_eval, state_utils
from schedulers.greedy_lr import GreedyLRState


def _override(config, fields):
  """Sets `block.name` (or top-level `name`) fields of `config` in place."""
  for field, value in fields.items():
    block, name = config, field
    if "." in field:
      head, name = field.split(".")
      block = config[head]
    block[name] = value


def _program(**overrides):
  config = default_config.get_config("smoke")
  config.gen.warmup_iterations = 0
  _override(config, overrides)
  mesh = sharding.data_mesh()
  program = train.build_program(config, mesh)
  return config, program, train.train_data(config), train.init_state(program, config, mesh)


@pytest.mark.slow
def test_rl_optimizers_decide_once_per_iteration_on_rollout_success():
  """The rule's per-eval GreedyLR: SAC's and the discriminator's rates take one decision per iteration."""
  config, program, data, state = _program()
  assert all(config[f"{n}_optimizer"].greedy_mode == "per_eval" for n in ("policy", "critic", "reward"))
  iterations = 3
  new, m = program.chunk(state, data, iterations)
  for name in ("policy", "critic", "reward"):
    wrapped = state_utils.find_state(new.opt_states[name], per_eval.PerEvalState)
    controller = state_utils.find_state(wrapped.controller, GreedyLRState)
    assert int(np.asarray(controller.window_count).max()) == iterations, name
    assert np.all(np.asarray(m[f"lr/{name}"]) <= config[f"{name}_optimizer"].learning_rate * (1 + 1e-6))
  # The generator's loss is supervised: per step, one decision per ELBO update.
  gen = state_utils.find_state(new.opt_states["generator"], GreedyLRState)
  assert int(np.asarray(gen.window_count).max()) > 0


@pytest.mark.slow
def test_relabels_come_from_the_generator_and_the_gate_switches_generated_positives():
  config, program, data, state = _program(**{"gen.gate_nll_per_token": 0.0})
  # The same state with another generator: rollouts (policy, keys) are identical, only the labels change.
  other = jax.vmap(program.nets.generator.init)(jax.random.split(jax.random.PRNGKey(99), config.num_seeds))
  state_b = state.replace(params=dict(state.params, generator=other))
  a, ma = program.chunk(jax.tree.map(jnp.copy, state), data, 1)
  b, _ = program.chunk(state_b, data, 1)
  ra, rb = (jax.device_get(s.replay.data) for s in (a, b))
  n = config.num_envs
  np.testing.assert_array_equal(ra.tokens[:, :n], rb.tokens[:, :n])  # commanded goals
  np.testing.assert_array_equal(ra.states.node[:, :n], rb.states.node[:, :n])  # the same walks
  assert not np.array_equal(ra.relabel[:, :n], rb.relabel[:, :n])  # the labels are the generator's
  assert not np.array_equal(ra.relabel[:, :n], ra.tokens[:, :n])
  vocab = envs.Vocabulary()
  assert vocab.bos_id not in ra.relabel and vocab.unk_id not in ra.relabel
  assert float(np.asarray(ma["gen/positives_on"]).min()) == 1.0  # no gate, warm-up 0: generated positives on
  # A gate far below what an untrained generator reaches keeps them off.
  _, program, data, state = _program(**{"gen.gate_nll_per_token": 0.05})
  _, m = program.chunk(state, data, 1)
  assert float(np.asarray(m["gen/nll_per_token"]).min()) > 0.05
  assert float(np.asarray(m["gen/positives_on"]).max()) == 0.0
  # Per-group discriminator accuracies: with the generated groups weighted 0, the positive accuracy is the
  # expert group's; every group of LangGoalIRL is reported.
  groups = ("expert", "paraphrase", "relabel", "rollout", "mismatch")
  assert all(f"disc/accuracy/{g}" in m for g in groups)
  np.testing.assert_allclose(m["disc/accuracy/expert"], m["disc/accuracy_positive"], rtol=1e-6)


@pytest.mark.slow
def test_generator_pretraining_lowers_the_elbo_and_leaves_the_rest():
  config, program, data, state = _program(**{"gen.pretrain_steps": 60})
  before = jax.tree.map(np.asarray, jax.device_get(state))
  after, m = program.pretrain_generator(jax.tree.map(jnp.copy, state), data, 60)
  nll = np.asarray(m["gen/nll_per_token"])[0]
  assert nll[-10:].mean() < nll[:10].mean() - 0.3, (nll[:10].mean(), nll[-10:].mean())
  beta = np.asarray(m["gen/beta"])[0]
  assert beta[0] < 0.1 and beta[-1] == 1.0 and np.all(np.diff(beta) >= 0)  # KL weight 0 -> 1 over half
  after = jax.device_get(after)
  for name in ("policy", "critic", "reward"):
    jax.tree.map(np.testing.assert_array_equal, after.params[name], before.params[name])
  assert int(after.iteration[0]) == 0
  changed = jax.tree.leaves(
    jax.tree.map(lambda x, y: bool(np.any(x != y)), after.params["generator"], before.params["generator"])
  )
  assert all(changed)


def test_shuffled_adaptation_labels_keep_the_walks_and_re_pair_the_labels():
  seeds, n, horizon, length, instructions = 2, 5, 3, 4, 3
  states = envs.NavState(*[jnp.zeros((seeds, n, horizon + 1), jnp.int32)] * len(envs.NavState._fields))
  labels = jnp.arange(seeds * n * instructions * length).reshape(seeds, n, instructions, length)
  demos = rollouts.Record(states, jnp.ones((seeds, n, horizon), jnp.int32), labels[:, :, 0], labels[:, :, 0])
  perm = np.array([3, 0, 4, 1, 2])
  shuffled, new_labels = train.shuffle_labels(demos, labels, perm)
  np.testing.assert_array_equal(new_labels, labels[:, perm])
  np.testing.assert_array_equal(shuffled.tokens, new_labels[:, :, 0])  # the record's goal is the first label
  np.testing.assert_array_equal(shuffled.relabel, new_labels[:, :, 0])
  np.testing.assert_array_equal(shuffled.actions, demos.actions)  # the walks themselves are unchanged
  assert not np.array_equal(new_labels[:, 0], labels[:, 0])


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
def test_early_stopping_keeps_each_seeds_best_policy_and_stops_when_all_stalled():
  config = default_config.get_config("follower_smoke")
  config.num_seeds = 2
  mesh = sharding.data_mesh()
  program = train.build_program(config, mesh)
  state = train.init_state(program, config, mesh)
  first = state.params["policy"]
  state = train.update_best(state.replace(iteration=jnp.array([2, 2])), jnp.array([1.0, 2.0]))
  moved = jax.tree.map(lambda x: x + 1.0, first)
  state = state.replace(params=dict(state.params, policy=moved), iteration=jnp.array([4, 4]))
  state = train.update_best(state, jnp.array([0.5, 3.0]))  # seed 0 improves, seed 1 does not
  np.testing.assert_array_equal(state.best["iteration"], [4, 2])
  np.testing.assert_array_equal(state.best["val_loss"], [0.5, 2.0])
  for best, new, old in zip(*(jax.tree.leaves(t) for t in (state.best["policy"], moved, first))):
    np.testing.assert_array_equal(best[0], new[0])
    np.testing.assert_array_equal(best[1], old[1])
  config.bc.patience_iterations = 2
  assert not train.stalled(config, state)  # seed 0 improved at the current iteration
  assert train.stalled(config, state.replace(iteration=jnp.array([6, 6])))
  config.bc.patience_iterations = 0
  assert not train.stalled(config, state.replace(iteration=jnp.array([600, 600])))


@pytest.mark.slow  # a recurrent-follower training run (~50 s); the network's own tests stay in the default tier
def test_follower_smoke_trains_evaluates_and_reports_early_stopping(tmp_path):
  config = default_config.get_config("follower_smoke")
  train.validate_config(config)
  headline = train.train_and_evaluate(config, str(tmp_path), log=lambda *_: None)
  assert np.isfinite(headline["val_seen/success"])
  results = json.loads((tmp_path / "results.json").read_text())
  stop = results["early_stopping"]
  assert stop["split"] == "val_seen" and len(stop["best_iteration_per_seed"]) == config.num_seeds
  assert all(0 < i <= config.num_iterations for i in stop["best_iteration_per_seed"])
  assert "sr_shuffled" in results["eval"]["val_unseen"] and "language_gain_goal" in results["eval"]["val_seen"]


def test_bc_coefficient_anneals_linearly_after_the_critic_warmup():
  config = default_config.get_config("airl_finetune")
  f = config.finetune
  coef = lambda i: float(train.bc_coefficient(config, jnp.asarray(i)))
  warm, n = f.critic_warmup_iterations, f.bc_anneal_iterations
  assert coef(0) == coef(warm) == pytest.approx(f.bc_coef_start)
  assert coef(warm + n // 2) == pytest.approx((f.bc_coef_start + f.bc_coef_end) / 2)
  assert coef(warm + n) == coef(warm + 10 * n) == pytest.approx(f.bc_coef_end)
  f.bc_anneal_iterations = 0  # no anneal: the end value at once
  assert coef(0) == pytest.approx(f.bc_coef_end)
  assert float(train.bc_coefficient(default_config.get_config("airl"), jnp.asarray(0))) == 0.0  # off by default


def test_the_bc_term_reads_the_expert_group_only():
  """SAC's batch is [rollouts, expert, relabelled]: the relabelled group (before the generator warm-up, the
  policy's own walks) must not be behaviour-cloned."""
  config = default_config.get_config("")
  sizes = train._group_sizes(config)
  assert sizes["sac_relabel"] > 0
  rows = np.arange(config.sac.batch_size)[train.sac_expert_rows(sizes)]
  np.testing.assert_array_equal(rows, sizes["sac_rollout"] + np.arange(sizes["sac_expert"]))
  assert rows.max() < config.sac.batch_size - sizes["sac_relabel"]


def _fake_bc_workdir(path, **fields):
  """A workdir with a bc run's config.json (no checkpoint unless made)."""
  config = default_config.get_config("bc_smoke")
  _override(config, fields)
  path.mkdir()
  (path / "config.json").write_text(config.to_json_best_effort())
  return path


def _unfinished(path):
  (path / "checkpoints" / "20").mkdir(parents=True)  # a checkpoint step, but no results.json
  return path


@pytest.mark.parametrize(
  "make, message",
  [
    (lambda p: p / "missing", "no config.json"),
    (lambda p: _fake_bc_workdir(p / "w", algorithm="gail"), "not 'bc'"),
    (lambda p: _fake_bc_workdir(p / "w", **{"net.hidden": 64}), "net.hidden is 64 there, 16 here"),
    (lambda p: _fake_bc_workdir(p / "w", **{"net.policy": "recurrent"}), "net.policy is 'recurrent' there"),
    (lambda p: _fake_bc_workdir(p / "w"), "no checkpoint"),
    (lambda p: _unfinished(_fake_bc_workdir(p / "w")), "has not finished"),
  ],
)
def test_warm_start_from_a_bad_bc_workdir_names_the_field(tmp_path, make, message):
  config = default_config.get_config("airl_finetune_smoke")
  config.finetune.bc_workdir = str(make(tmp_path))
  with pytest.raises(app.ConfigError) as error:
    train.validate_config(config)
  assert error.value.field == "finetune.bc_workdir" and message in str(error.value)


def test_finetune_fields_are_refused_under_bc():
  config = default_config.get_config("bc_smoke")
  config.finetune.critic_warmup_iterations = 5
  with pytest.raises(app.ConfigError) as error:
    train.validate_config(config)
  assert error.value.field == "algorithm"


@pytest.mark.slow  # one compiled chunk of the smoke program (~1 min on a loaded CPU)
def test_critic_warmup_freezes_the_actor_and_a_fixed_alpha_stays_fixed():
  config, program, data, state = _program(
    **{"algorithm": "airl", "finetune.critic_warmup_iterations": 1, "rl.fixed_alpha": 0.0, "sac.steps": 1}
  )
  host = lambda tree: jax.tree.map(np.asarray, jax.device_get(tree))  # the chunk donates its input state
  start = host(state.params)
  one, m = program.chunk(state, data, 1)
  after_one = host(one.params)
  two, m2 = program.chunk(one, data, 1)
  same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert same(after_one["policy"], start["policy"])  # frozen in iteration 0
  assert not same(after_one["critic"], start["critic"])  # while the critic learns
  assert not same(host(two.params["policy"]), after_one["policy"])  # unfrozen from iteration 1
  assert same(host(two.params["log_alpha"]), start["log_alpha"])  # the fixed temperature is never tuned
  assert float(np.asarray(m["sac/alpha"]).max()) == 0.0 and float(np.asarray(m["finetune/actor_frozen"])[0, 0]) == 1
  assert float(np.asarray(m2["finetune/actor_frozen"])[0, 0]) == 0


@pytest.mark.slow  # a bc run through the binary, then its checkpoint restored (~2 min on a loaded CPU)
def test_warm_start_loads_the_bc_runs_early_stopping_best_policy(tmp_path):
  import os
  import subprocess
  import sys

  bc_dir = tmp_path / "bc"
  cmd = [sys.executable, "-m", "nlirl.main", "--config=nlirl.configs.default:bc_converged_smoke", f"--workdir={bc_dir}"]
  root = pathlib.Path(__file__).resolve().parents[2]
  proc = subprocess.run(cmd, cwd=root, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  config = default_config.get_config("airl_finetune_smoke")
  config.num_seeds = 2  # the bc run has one seed: both seeds start from it
  config.finetune.bc_workdir = str(bc_dir)
  train.validate_config(config)
  mesh = sharding.data_mesh()
  policy, info = train.load_bc_policy(config, mesh)
  assert info["params"] == "early-stopping best" and info["bc_seeds"] == [0, 0]
  # The loaded params are the best ones: their validation loss is the one the bc run recorded as its best.
  bc_config = train.bc_run_config(config)
  bc_program = train.build_program(bc_config, mesh)
  val = np.asarray(bc_program.validation_loss(policy, *train.validation_data(bc_config)))
  best = json.loads((bc_dir / "results.json").read_text())["early_stopping"]["best_val_loss_per_seed"]
  np.testing.assert_allclose(val, [best[0], best[0]], rtol=1e-5)
  # And the fine-tune runs from it: at the switch, its bc loss on expert states is the loaded policy's.
  config.num_iterations = config.eval_every = config.iterations_per_chunk = 2
  train.train_and_evaluate(config, str(tmp_path / "ft"), log=lambda *_: None)
  fine = json.loads((tmp_path / "ft" / "results.json").read_text())["finetune"]
  assert fine["warm_start"]["checkpoint_step"] == bc_config.num_iterations
  program = train.build_program(config, mesh)
  data = train.train_data(config)
  n = fine["diagnostic_episodes"]
  params = {"policy": policy, "reward": train.init_state(program, config, mesh).params["reward"]}
  at_switch = program.diagnose(params, data.houses, jax.tree.map(lambda x: x[:n], data.expert), data.tokens[:n, 0])
  np.testing.assert_allclose(fine["at_switch"]["bc_loss_expert"], np.asarray(at_switch["bc_loss_expert"]), rtol=1e-5)
