"""LangGoalIRL and its baselines on R2R-lite: one jitted iteration, resumable training, evaluation, adaptation.

`train_and_evaluate(config, workdir)` (the body of `python -m nlirl.main`):

1. builds the R2R-lite splits, the expert demonstrations (shortest paths, all instructions), the networks
   (`nlirl.networks`) and the losses (`nlirl.losses`);
2. LangGoalIRL variants: pretrains the goal generator on the demonstrations (`gen.pretrain_steps` ELBO steps,
   checkpointed as step 0), so its relabels and paraphrases describe trajectories before they are used;
3. trains `config.num_seeds` seeds vmapped in one program.  One iteration (`make_iteration`) is:
   `num_envs` vmapped policy rollouts in train houses (lax.scan over the horizon, goals = expert
   instructions), hindsight labels for them from the goal generator, a replay-buffer write, generator ELBO
   steps, discriminator steps, then discrete-SAC steps whose rewards are recomputed from the current
   discriminator.  `iterations_per_chunk` iterations are one `lax.scan` inside one `jit`; the state (params,
   optimizer states, replay, RNG key, iteration counter) is checkpointed after every chunk and metrics are
   flushed first, so a killed run resumes and ends identically, metrics included;
4. evaluates the greedy policy on `val_seen` / `val_unseen` (every instruction of every path: SR, SPL, NE,
   oracle SR) every `eval_every` iterations and at the end; the final evaluation also commands every path
   with another path's instruction and counts STOPs near and away from the goal, for the fields of
   `nlirl.evaluation` (shuffled SR, language gain, SR per template family, oracle gap, P(STOP));
5. LangGoalIRL variants only: unseen-house adaptation (`adapt`): a goal-agnostic exploration policy (the
   policy network with an empty instruction, behaviour-cloned on the training demonstrations) walks from
   random viewpoints of the unseen houses, the generator labels its trajectories, these pseudo-demonstrations
   adapt the reward and SAC fine-tunes the policy on them; SR on `val_unseen` before and after is reported.
   No instruction or goal of the unseen houses is used.  The adaptation is a deterministic function of the
   trained state and is recomputed (not checkpointed) when a finished run is re-run;
6. writes `results.json` (per-seed metrics) and prints a summary.

Regimes (`nlirl.regimes`): `data.max_train_episodes` trains on a nested subset of the training paths (few
demonstrations); `data.held_out_phrasing` keeps a template family or a synonym set out of the training
instructions (evaluation splits keep every phrasing).

Algorithms (`config.algorithm`): 'langgoalirl' (AIRL logit + generator: paraphrase positives, relabelled
positives, mismatched-goal negatives, each switchable for ablations), 'airl' and 'gail' (language-conditioned,
no generator / relabel / mismatch), 'bc' (behaviour cloning only).
"""

from __future__ import annotations

import functools
import json
import pathlib
import time
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import app, checkpoint, replay, sharding
from common import metrics as metrics_lib
from nlirl import envs, evaluation, regimes, rollouts
from nlirl import losses as losses_lib
from nlirl import networks as networks_lib
from nlirl.configs import default as default_config
from nlirl.envs import instructions as grammar
from schedulers import optimizers

DEFAULT_CONFIG = default_config.__file__
RESUMABLE_FIELDS = ("num_iterations", "iterations_per_chunk", "eval_every", "keep_checkpoints")
ALGORITHMS = ("langgoalirl", "airl", "gail", "bc")
ADAPT_LABELS = ("generator", "shuffled")  # adapt.labels
OPTIMIZERS = (
  "policy_optimizer",
  "critic_optimizer",
  "reward_optimizer",
  "generator_optimizer",
  "temperature_optimizer",
)
METRIC_NAMES = evaluation.METRIC_NAMES


# --- config validation ------------------------------------------------------------------------------------


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field; runs before anything compiles."""
  app.check_known_fields(config, default_config.get_config())
  positive_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1
  nonneg_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0
  app.check(config, "algorithm", lambda v: v in ALGORITHMS, f"must be one of {ALGORITHMS}")
  for field in ("data.train_split", "data.adapt_split"):
    app.check(config, field, lambda v: v in envs.SPLITS, f"must be one of {envs.SPLITS}")
  app.check(
    config, "data.eval_splits", lambda v: len(v) >= 1 and all(s in envs.SPLITS for s in v), f"must be in {envs.SPLITS}"
  )
  for field in (
    "num_seeds",
    "num_iterations",
    "iterations_per_chunk",
    "eval_every",
    "keep_checkpoints",
    "num_envs",
    "replay_capacity",
    "disc.batch_size",
    "sac.batch_size",
    "gen.batch_size",
    "bc.batch_size",
    "data.max_tokens",
    "env.horizon",
    "net.hidden",
    "net.embed_dim",
    "net.latent",
  ):
    app.check(config, field, positive_int, "must be an integer >= 1")
  for field in (
    "disc.steps",
    "sac.steps",
    "gen.steps",
    "gen.pretrain_steps",
    "bc.steps",
    "bc.warmstart_iterations",
    "gen.warmup_iterations",
    "net.gen_hidden",
  ):
    app.check(config, field, nonneg_int, "must be an integer >= 0")
  for field in ("data.max_train_episodes", "data.max_eval_episodes", "adapt.iterations", "adapt.explore_bc_steps"):
    app.check(config, field, nonneg_int, "must be an integer >= 0 (0: all / off)")
  app.check(
    config,
    "data.held_out_phrasing",
    lambda v: v in regimes.HELD_OUT,
    f"must be one of {regimes.HELD_OUT} ('': every phrasing in training)",
  )
  app.check(config, "net.encoder", lambda v: v in networks_lib.ENCODERS, f"must be one of {networks_lib.ENCODERS}")
  app.check(config, "net.policy", lambda v: v in networks_lib.POLICIES, f"must be one of {networks_lib.POLICIES}")
  app.check(
    config,
    "bc.early_stopping_split",
    lambda v: v == "" or (v in envs.SPLITS and config.algorithm == "bc"),
    f"must be '' (off) or, with algorithm=bc, one of {envs.SPLITS}",
  )
  app.check(config, "bc.patience_iterations", nonneg_int, "must be an integer >= 0 (0: no early stop)")
  app.check(config, "adapt.labels", lambda v: v in ADAPT_LABELS, f"must be one of {ADAPT_LABELS}")
  app.check(
    config,
    "num_iterations",
    lambda v: v % config.iterations_per_chunk == 0,
    f"must be a multiple of iterations_per_chunk ({config.iterations_per_chunk})",
  )
  app.check(
    config,
    "eval_every",
    lambda v: v % config.iterations_per_chunk == 0,
    f"must be a multiple of iterations_per_chunk ({config.iterations_per_chunk})",
  )
  app.check(
    config,
    "adapt.iterations",
    lambda v: v % config.iterations_per_chunk == 0,
    f"must be a multiple of iterations_per_chunk ({config.iterations_per_chunk})",
  )
  longest = max(
    len(ep.path) - 1 for ep in envs.load_split(config.data.train_split, seed=config.data.dataset_seed).episodes
  )
  app.check(
    config,
    "env.horizon",
    lambda v: v >= longest + 1,
    f"must be >= the longest expert path ({longest} moves) + 1 for its STOP",
  )
  app.check(config, "rl.gamma", lambda v: 0 < v < 1, "must be in (0, 1)")
  app.check(config, "rl.tau", lambda v: 0 < v <= 1, "must be in (0, 1]")
  app.check(config, "rl.initial_alpha", lambda v: v > 0, "must be > 0")
  app.check(config, "rl.target_entropy_scale", lambda v: 0 <= v <= 1, "must be in [0, 1]")
  app.check(config, "rl.max_reward", lambda v: v > 0, "must be > 0")
  app.check(
    config, "rl.airl_reward", lambda v: v in losses_lib.AIRL_REWARDS, f"must be one of {losses_lib.AIRL_REWARDS}"
  )
  app.check(config, "disc.gradient_penalty", lambda v: v >= 0, "must be >= 0")
  app.check(config, "gen.word_dropout", lambda v: 0 <= v < 1, "must be in [0, 1)")
  app.check(config, "gen.gate_nll_per_token", lambda v: v >= 0, "must be >= 0 (0: no likelihood gate)")
  app.check(config, "gen.kl_anneal_iterations", lambda v: isinstance(v, int) and v >= 0, "must be an integer >= 0")
  app.check(config, "adapt.num_demos", positive_int, "must be an integer >= 1")
  app.check(config, "replay_capacity", lambda v: v >= config.num_envs, f"must be >= num_envs ({config.num_envs})")
  devices = jax.device_count()
  for field in ("num_envs", "disc.batch_size", "sac.batch_size", "gen.batch_size", "bc.batch_size", "adapt.num_demos"):
    app.check(config, field, lambda v: v % (4 * devices) == 0, f"must be divisible by 4 x the device count ({devices})")
  for name in OPTIMIZERS:
    optimizers.check_optimizer_config(config, name)
  validate_finetune(config)


POLICY_FIELDS = ("net.policy", "net.encoder", "net.embed_dim", "net.hidden", "net.num_layers", "net.num_heads")
POLICY_FIELDS += ("data.max_tokens",)  # a warm start's bc run must match these (the policy's shapes and type)


def validate_finetune(config: ml_collections.ConfigDict) -> None:
  """The fine-tune fields (`config.finetune`, `rl.fixed_alpha`, `disc.absorbing`); reads a bc workdir's config."""
  nonneg_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0
  app.check(config, "rl.fixed_alpha", lambda v: v >= 0 or v < 0, "must be a number (< 0: tuned, >= 0: fixed)")
  app.check(config, "disc.absorbing", lambda v: v in losses_lib.ABSORBING, f"must be one of {losses_lib.ABSORBING}")
  f = config.finetune
  for field in ("bc_pretrain_steps", "critic_warmup_iterations", "bc_anneal_iterations"):
    app.check(config, f"finetune.{field}", nonneg_int, "must be an integer >= 0")
  app.check(config, "finetune.diagnostic_episodes", lambda v: nonneg_int(v) and v >= 1, "must be an integer >= 1")
  for field in ("bc_coef_start", "bc_coef_end"):
    app.check(config, f"finetune.{field}", lambda v: v >= 0, "must be >= 0")
  app.check(config, "finetune.bc_pretrain_learning_rate", lambda v: v > 0, "must be > 0")
  uses = f.bc_workdir or f.bc_pretrain_steps or f.critic_warmup_iterations or f.bc_coef_start or f.bc_coef_end
  if uses and config.algorithm == "bc":
    raise app.ConfigError("algorithm", "got 'bc'; the finetune fields apply to airl, gail and langgoalirl only.")
  if f.bc_workdir:
    bc_run_config(config)


def bc_run_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config of the finished bc run `finetune.bc_workdir` (its config.json over the defaults).

  Raises `ConfigError` naming `finetune.bc_workdir` when the directory is not a finished bc run with a
  checkpoint, or its policy (`POLICY_FIELDS`) differs from this config's.
  """
  field, workdir = "finetune.bc_workdir", pathlib.Path(config.finetune.bc_workdir)

  def fail(why):
    raise app.ConfigError(field, f"got {str(workdir)!r}; {why}")

  path = workdir / app.CONFIG_FILE
  if not path.is_file():
    fail(f"no {app.CONFIG_FILE} there: not an nlirl.main workdir.")
  raw = json.loads(path.read_text())
  raw.pop(app.PROVENANCE_KEY, None)

  def merge(base, new):
    for k, v in new.items():
      base[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base

  bc = ml_collections.ConfigDict(merge(default_config.get_config().to_dict(), raw))
  if bc.algorithm != "bc":
    fail(f"that run's algorithm is {bc.algorithm!r}, not 'bc'.")
  get = lambda c, name: functools.reduce(lambda block, part: block[part], name.split("."), c)
  differ = [
    f"{n} is {get(bc, n)!r} there, {get(config, n)!r} here" for n in POLICY_FIELDS if get(bc, n) != get(config, n)
  ]
  if differ:
    fail("its policy differs: " + "; ".join(differ) + ".")
  steps = workdir / "checkpoints"
  if not (steps.is_dir() and any(d.name.isdigit() for d in steps.iterdir())):
    fail(f"no checkpoint in {steps}.")
  if not (workdir / app.RESULTS_FILE).is_file():
    fail(f"no {app.RESULTS_FILE} there: the bc run has not finished.")
  return bc


def load_bc_policy(config: ml_collections.ConfigDict, mesh) -> tuple[Any, dict[str, Any]]:
  """Policy params [num_seeds, ...] of the bc run `finetune.bc_workdir`, through `common.checkpoint`.

  The best (early-stopping) policy when that run stopped early on a validation split, else its last; seed s
  takes the run's seed s mod its num_seeds.  Returns (params, a description for results.json).
  """
  bc = bc_run_config(config)
  program = build_program(bc, mesh)
  target = init_state(program, bc, mesh)
  directory = pathlib.Path(config.finetune.bc_workdir) / "checkpoints"
  with checkpoint.Checkpointer(directory, keep=bc.keep_checkpoints) as ckpt:
    try:
      restored, step = ckpt.restore_latest(target)
    except checkpoint.CheckpointRestoreError as e:
      raise app.ConfigError("finetune.bc_workdir", f"its checkpoint cannot be restored: {e}") from None
  if restored is None:
    raise app.ConfigError("finetune.bc_workdir", f"no checkpoint in {directory}.")
  best = bool(bc.bc.early_stopping_split)
  policy = restored.best["policy"] if best else restored.params["policy"]
  seeds = np.arange(config.num_seeds) % bc.num_seeds
  info = {
    "bc_workdir": str(config.finetune.bc_workdir),
    "checkpoint_step": int(step),
    "params": "early-stopping best" if best else "last",
    "bc_seeds": seeds.tolist(),
    "bc_best_iteration_per_seed": np.asarray(restored.best["iteration"])[seeds].tolist() if best else None,
  }
  return jax.tree.map(lambda x: x[seeds], policy), info


def bc_coefficient(config: ml_collections.ConfigDict, iteration: jax.Array) -> jax.Array:
  """The bc term's weight in the actor loss at `iteration`: linear from `finetune.bc_coef_start` to
  `bc_coef_end` over `bc_anneal_iterations` iterations after the critic warm-up, then `bc_coef_end`."""
  f = config.finetune
  after = jnp.maximum(jnp.asarray(iteration) - f.critic_warmup_iterations, 0).astype(jnp.float32)
  frac = jnp.minimum(1.0, after / f.bc_anneal_iterations) if f.bc_anneal_iterations else jnp.ones((), jnp.float32)
  return f.bc_coef_start + (f.bc_coef_end - f.bc_coef_start) * frac


# --- data -------------------------------------------------------------------------------------------------


class Data(NamedTuple):
  """What an iteration reads (arguments of the jitted chunk, not constants baked into it).

  Attributes:
    houses: `envs.Houses` of every house set the run uses (train + unseen houses in one table, so training,
      evaluation and adaptation share compiled programs).
    episodes: `envs.Episodes` [E] rollout episodes (start, goal, heading); goals only feed logged metrics.
    tokens: int32 [E, I, L] the goals the policy is commanded with (episode e, instruction i).
    expert: `rollouts.Record` [E] demonstrations of those episodes (their `tokens` unused: see `tokens`).
    learn_generator: float32 [] 1 while training, 0 in adaptation (the generator is not fit to its own labels).
  """

  houses: envs.Houses
  episodes: envs.Episodes
  tokens: jax.Array
  expert: rollouts.Record
  learn_generator: jax.Array


def _house_set(split: str) -> str:
  return "train" if split == "val_seen" else split


def _world_sets(config) -> tuple[str, ...]:
  d = config.data
  names = [d.train_split, *d.eval_splits, d.adapt_split]
  if config.bc.early_stopping_split:
    names.append(config.bc.early_stopping_split)
  return tuple(dict.fromkeys(_house_set(n) for n in names))


@functools.lru_cache(maxsize=4)
def _world(seed: int, sets: tuple[str, ...]) -> tuple[envs.Houses, dict[str, int]]:
  """One padded table of the house sets `sets`, and each set's first index in it."""
  houses, offsets = [], {}
  for name in sets:
    offsets[name] = len(houses)
    houses += list(envs.load_split(name, seed=seed).houses)
  return envs.house_arrays(tuple(houses)), offsets


def _subset(episodes: envs.Episodes, limit: int, seed: int) -> envs.Episodes:
  n = int(episodes.house.shape[0])
  if not limit or limit >= n:
    return episodes
  idx = regimes.subset(n, limit, seed)
  return jax.tree.map(lambda x: x[idx], episodes)


@functools.lru_cache(maxsize=16)
def _split_arrays(name: str, seed: int, limit: int, max_tokens: int, sets: tuple[str, ...], held_out: str = ""):
  """(world houses, episodes of `name` indexing the world table, tokens [E, I, max_tokens]).

  `held_out` (training only) removes that phrasing from the split's instructions (`regimes.hold_out`).
  """
  houses, offsets = _world(seed, sets)
  episodes = envs.episode_arrays(regimes.hold_out(envs.load_split(name, seed=seed), held_out))
  episodes = episodes._replace(house=episodes.house + offsets[_house_set(name)])
  episodes = _subset(episodes, limit, seed)
  return houses, episodes, episodes.instructions[..., :max_tokens]  # a longer instruction loses its tail


def _expert_records(houses, episodes, tokens, horizon) -> rollouts.Record:
  states, actions = jax.jit(jax.vmap(functools.partial(rollouts.expert_rollout, horizon=horizon), (None, 0)))(
    houses, episodes
  )
  first = tokens[:, 0]
  return rollouts.Record(states=states, actions=actions, tokens=first, relabel=first)


def train_data(config: ml_collections.ConfigDict) -> Data:
  """Rollout houses, episodes, goals and demonstrations of the training split."""
  d = config.data
  houses, episodes, tokens = _split_arrays(
    d.train_split, d.dataset_seed, d.max_train_episodes, d.max_tokens, _world_sets(config), d.held_out_phrasing
  )
  expert = _expert_records(houses, episodes, tokens, config.env.horizon)
  return Data(houses, episodes, tokens, expert, jnp.ones((), jnp.float32))


def validation_data(config: ml_collections.ConfigDict):
  """(houses, demonstrations [E * I], tokens [E * I, L]): every (path, instruction) of `bc.early_stopping_split`."""
  d = config.data
  houses, episodes, tokens = _split_arrays(
    config.bc.early_stopping_split, d.dataset_seed, 0, d.max_tokens, _world_sets(config)
  )
  e, i = tokens.shape[:2]
  records = _expert_records(houses, episodes, tokens, config.env.horizon)
  records = jax.tree.map(lambda x: jnp.repeat(x, i, axis=0), records)
  return houses, records, tokens.reshape(e * i, -1)


# --- state ------------------------------------------------------------------------------------------------


@flax.struct.dataclass
class TrainState:
  """Everything a run carries between iterations (one seed; seeds add a leading axis to every leaf)."""

  params: dict
  opt_states: dict
  replay: replay.ReplayState
  key: jax.Array
  iteration: jax.Array
  best: dict  # early stopping: policy params of the lowest validation loss, that loss, and its iteration


class Program(NamedTuple):
  """The built, static pieces of a run (shared by train, eval and adaptation)."""

  nets: networks_lib.Networks
  losses: losses_lib.Losses
  opts: dict
  init: Any
  chunk: Any
  evaluate: Any
  explore: Any
  explorer_bc: Any
  pretrain_generator: Any
  use_generator: bool
  validation_loss: Any
  bc_pretrain: Any
  diagnose: Any


def _optimizer(config, name):
  return optimizers.from_config(config[name])


def _empty_record(horizon: int, max_tokens: int) -> rollouts.Record:
  scalar = lambda dtype: jax.ShapeDtypeStruct((horizon + 1,), dtype)
  states = envs.NavState(
    house=scalar(jnp.int32),
    node=scalar(jnp.int32),
    goal=scalar(jnp.int32),
    heading=scalar(jnp.float32),
    t=scalar(jnp.int32),
    horizon=scalar(jnp.int32),
    stopped=scalar(jnp.bool_),
    travelled=scalar(jnp.float32),
    oracle_distance=scalar(jnp.float32),
    shortest=scalar(jnp.float32),
  )
  tok = jax.ShapeDtypeStruct((max_tokens,), jnp.int32)
  return rollouts.Record(states=states, actions=jax.ShapeDtypeStruct((horizon,), jnp.int32), tokens=tok, relabel=tok)


def _group_sizes(config) -> dict[str, int]:
  """Static sizes of the discriminator's and SAC's batch groups (quarters of the batch)."""
  irl = config.algorithm == "langgoalirl"
  dq, sq = config.disc.batch_size // 4, config.sac.batch_size // 4
  relabel, paraphrase, mismatch = irl and config.relabel, irl and config.paraphrase, irl and config.mismatch
  sizes = {
    "pos_paraphrase": dq if paraphrase else 0,
    "pos_relabel": dq if relabel else 0,
    "neg_mismatch": dq if mismatch else 0,
    "sac_expert": sq,
    "sac_relabel": sq if relabel else 0,
  }
  sizes["pos_expert"] = config.disc.batch_size - sizes["pos_paraphrase"] - sizes["pos_relabel"]
  sizes["neg_rollout"] = config.disc.batch_size - sizes["neg_mismatch"]
  sizes["sac_rollout"] = config.sac.batch_size - sizes["sac_expert"] - sizes["sac_relabel"]
  return sizes


def sac_expert_rows(sizes: dict[str, int]) -> slice:
  """The expert group's rows of a SAC batch (rollouts, expert, relabelled): the bc term's data, expert only."""
  return slice(sizes["sac_rollout"], sizes["sac_rollout"] + sizes["sac_expert"])


def _concat(*trees):
  trees = [t for t in trees if jax.tree.leaves(t)[0].shape[0] > 0]
  return jax.tree.map(lambda *xs: jnp.concatenate(xs), *trees)


def build_program(config: ml_collections.ConfigDict, mesh) -> Program:
  """Networks, losses, optimizers and the jitted init / chunk / evaluate functions of `config`."""
  irl = config.algorithm == "langgoalirl"
  use_generator = irl and (config.relabel or config.paraphrase or config.adapt.iterations > 0)
  horizon, max_tokens = config.env.horizon, config.data.max_tokens
  gen_hidden = config.net.gen_hidden or config.net.hidden
  gate = irl and config.gen.steps > 0 and config.gen.gate_nll_per_token > 0
  vocab = envs.Vocabulary()
  nets = networks_lib.make_networks(
    vocab_size=vocab.size,
    max_tokens=max_tokens,
    encoder=config.net.encoder,
    embed_dim=config.net.embed_dim,
    hidden=config.net.hidden,
    num_layers=config.net.num_layers,
    num_heads=config.net.num_heads,
    gamma=config.rl.gamma,
    shaping=config.net.shaping and config.algorithm != "gail",
    latent=config.net.latent,
    trajectory_hidden=gen_hidden,
    horizon=horizon,
    generator_hidden=gen_hidden,
    policy=config.net.policy,
  )
  losses = losses_lib.make_losses(
    nets,
    gamma=config.rl.gamma,
    discriminator="gail" if config.algorithm == "gail" else "airl",
    gradient_penalty=config.disc.gradient_penalty,
    max_reward=config.rl.max_reward,
    airl_reward=config.rl.airl_reward,
    target_entropy_scale=config.rl.target_entropy_scale,
    word_dropout=config.gen.word_dropout,
    absorbing=config.disc.absorbing,
  )
  opts = {name.removesuffix("_optimizer"): _optimizer(config, name) for name in OPTIMIZERS}
  sizes = _group_sizes(config)
  constrain = functools.partial(sharding.constrain_batch, mesh=mesh)

  def init(key):
    keys = jax.random.split(key, 6)
    params = {
      "policy": nets.policy.init(keys[0]),
      "critic": nets.critic.init(keys[1]),
      "reward": nets.reward.init(keys[2]),
      "generator": nets.generator.init(keys[3]),
      "log_alpha": jnp.log(jnp.asarray(config.rl.initial_alpha, jnp.float32)),
    }
    params["target_critic"] = params["critic"]
    opt_states = {
      "policy": opts["policy"].tx.init(params["policy"]),
      "critic": opts["critic"].tx.init(params["critic"]),
      "reward": opts["reward"].tx.init(params["reward"]),
      "generator": opts["generator"].tx.init(params["generator"]),
      "temperature": opts["temperature"].tx.init(params["log_alpha"]),
    }
    buffer = replay.init(_empty_record(horizon, max_tokens), config.replay_capacity)
    best = {"policy": params["policy"], "val_loss": jnp.full((), jnp.inf), "iteration": jnp.zeros((), jnp.int32)}
    return TrainState(params, opt_states, buffer, keys[4], jnp.zeros((), jnp.int32), best)

  def apply_update(name, params, opt_state, grads, loss):
    updates, opt_state = opts[name].tx.update(grads, opt_state, params, value=loss)
    return optax.apply_updates(params, updates), opt_state

  def trajectories(houses, records: rollouts.Record, tokens) -> losses_lib.Trajectory:
    return jax.vmap(rollouts.to_trajectory, (None, 0, 0, 0))(houses, records.states, records.actions, tokens)

  def label(gen_params, traj: losses_lib.Trajectory, key) -> jax.Array:
    keys = jax.random.split(key, traj.actions.shape[0])
    sample = functools.partial(networks_lib.sample_goal, nets.generator, temperature=config.gen.temperature)
    return jax.vmap(lambda o, a, m, k: sample(gen_params, o, a, m, k))(
      traj.obs[:, :-1], traj.actions, traj.active, keys
    )

  def sample_expert(data: Data, key, n):
    k1, k2 = jax.random.split(key)
    idx = constrain(jax.random.randint(k1, (n,), 0, data.tokens.shape[0]))
    ins = jax.random.randint(k2, (n,), 0, data.tokens.shape[1])
    return jax.tree.map(lambda x: x[idx], data.expert), data.tokens[idx, ins]

  def sample_replay(buffer, key, n):
    return jax.tree.map(constrain, replay.sample(buffer, key, n))

  def do_rollouts(state: TrainState, data: Data, key):
    k_ep, k_ins, k_act, k_rel = jax.random.split(key, 4)
    n = config.num_envs
    idx = constrain(jax.random.randint(k_ep, (n,), 0, data.tokens.shape[0]))
    ins = jax.random.randint(k_ins, (n,), 0, data.tokens.shape[1])
    tokens = data.tokens[idx, ins]
    eps = rollouts.episode(data.episodes, idx)

    def one(ep, tok, key):
      act, carry = rollouts.policy_actor(nets.policy, state.params["policy"], tok, greedy=False)
      return rollouts.rollout(data.houses, ep, act, key, horizon=horizon, carry=carry)

    states, actions = jax.vmap(one)(eps, tokens, jax.random.split(k_act, n))
    record = rollouts.Record(states, actions, tokens, tokens)
    if irl and config.relabel:
      traj = trajectories(data.houses, record, tokens)
      record = record._replace(relabel=label(state.params["generator"], traj, k_rel))
    m = jax.vmap(envs.metrics, (None, 0))(data.houses, jax.tree.map(lambda x: x[:, -1], states))
    return record, {f"rollout/{k}": jnp.mean(v) for k, v in m.items() if k in METRIC_NAMES}

  def generator_step(carry, key, data: Data, beta):
    params, opt_states, iteration = carry
    records, tokens = sample_expert(data, key, config.gen.batch_size)
    batch = trajectories(data.houses, records, tokens)
    (loss, m), grads = jax.value_and_grad(losses.generator, has_aux=True)(
      params["generator"], batch, jax.random.fold_in(key, 1), beta
    )
    new, opt = apply_update("generator", params["generator"], opt_states["generator"], grads, loss)
    keep = lambda n, o: jnp.where(data.learn_generator > 0, n, o)
    new = jax.tree.map(keep, new, params["generator"])
    opt = jax.tree.map(keep, opt, opt_states["generator"])
    return (dict(params, generator=new), dict(opt_states, generator=opt), iteration), m

  def disc_step(carry, key, data: Data, buffer, paraphrases, warm):
    params, opt_states, iteration = carry
    ks = jax.random.split(key, 5)
    expert, expert_tokens = sample_expert(data, ks[0], sizes["pos_expert"])
    groups_pos, weights_pos = [trajectories(data.houses, expert, expert_tokens)], [jnp.ones(sizes["pos_expert"])]
    if sizes["pos_paraphrase"]:
      groups_pos.append(paraphrases)
      weights_pos.append(jnp.full((sizes["pos_paraphrase"],), warm))
    if sizes["pos_relabel"]:
      rec = sample_replay(buffer, ks[1], sizes["pos_relabel"])
      groups_pos.append(trajectories(data.houses, rec, rec.relabel))
      weights_pos.append(jnp.full((sizes["pos_relabel"],), warm))
    rec = sample_replay(buffer, ks[2], sizes["neg_rollout"])
    groups_neg, weights_neg = [trajectories(data.houses, rec, rec.tokens)], [jnp.ones(sizes["neg_rollout"])]
    if sizes["neg_mismatch"]:
      expert, expert_tokens = sample_expert(data, ks[3], sizes["neg_mismatch"])
      shuffled = jnp.roll(expert_tokens, 1, axis=0)  # another episode's instruction
      groups_neg.append(trajectories(data.houses, expert, shuffled))
      weights_neg.append(jnp.ones(sizes["neg_mismatch"]))
    pos, neg = _concat(*groups_pos), _concat(*groups_neg)
    (loss, m), grads = jax.value_and_grad(losses.discriminator, has_aux=True)(
      params["reward"], params["policy"], pos, jnp.concatenate(weights_pos), neg, jnp.concatenate(weights_neg), ks[4]
    )
    new, opt = apply_update("reward", params["reward"], opt_states["reward"], grads, loss)
    m = dict(m)
    # Accuracy per data group (positives: expert, paraphrase, relabel; negatives: rollout, mismatch).
    for sign, names in (("positive", ("expert", "paraphrase", "relabel")), ("negative", ("rollout", "mismatch"))):
      rows, start = m.pop(f"disc/row_correct_{sign}"), 0
      for name in names:
        size = sizes[f"{sign[:3]}_{name}"]
        if size:
          m[f"disc/accuracy/{name}"] = jnp.mean(rows[start : start + size])
          start += size
    return (dict(params, reward=new), dict(opt_states, reward=opt), iteration), m

  def sac_step(carry, key, data: Data, buffer, warm):
    params, opt_states, iteration = carry
    ks = jax.random.split(key, 4)
    rec = sample_replay(buffer, ks[0], sizes["sac_rollout"])
    groups = [trajectories(data.houses, rec, rec.tokens)]
    expert, expert_tokens = sample_expert(data, ks[1], sizes["sac_expert"])
    groups.append(trajectories(data.houses, expert, expert_tokens))
    if sizes["sac_relabel"]:
      rec = sample_replay(buffer, ks[2], sizes["sac_relabel"])
      groups.append(trajectories(data.houses, rec, jnp.where(warm > 0, rec.relabel, rec.tokens)))
    batch = _concat(*groups)
    # The temperature: tuned (log_alpha), or fixed at rl.fixed_alpha (log 0 = -inf: alpha exactly 0).
    fixed = config.rl.fixed_alpha >= 0
    alpha_log = jnp.log(jnp.asarray(config.rl.fixed_alpha, jnp.float32)) if fixed else params["log_alpha"]
    rewards = losses.reward(params["reward"], params["policy"], batch)  # from the current discriminator, never stored
    (c_loss, cm), c_grads = jax.value_and_grad(losses.critic, has_aux=True)(
      params["critic"], params["target_critic"], params["policy"], alpha_log, batch, rewards
    )
    critic, critic_opt = apply_update("critic", params["critic"], opt_states["critic"], c_grads, c_loss)

    bc_weight = (iteration < config.bc.warmstart_iterations).astype(jnp.float32)
    bc_coef = bc_coefficient(config, iteration)
    expert_rows = sac_expert_rows(sizes)

    def policy_objective(p):
      a_loss, am = losses.actor(p, critic, alpha_log, batch)
      bc_loss, bm = losses.behaviour_cloning(p, jax.tree.map(lambda x: x[expert_rows], batch))
      rl = a_loss + bc_coef * bc_loss
      return (1.0 - bc_weight) * rl + bc_weight * bc_loss, {**am, **bm}

    (p_loss, pm), p_grads = jax.value_and_grad(policy_objective, has_aux=True)(params["policy"])
    policy, policy_opt = apply_update("policy", params["policy"], opt_states["policy"], p_grads, p_loss)
    t_loss, t_grad = jax.value_and_grad(losses.temperature)(
      params["log_alpha"], pm["sac/entropy"], pm["sac/target_entropy"]
    )
    log_alpha, t_opt = apply_update("temperature", params["log_alpha"], opt_states["temperature"], t_grad, t_loss)
    # Critic warm-up: the actor and the temperature keep their values (and optimizer states) meanwhile.
    frozen = iteration < config.finetune.critic_warmup_iterations
    hold = lambda new, old: jax.tree.map(lambda n, o: jnp.where(frozen, o, n), new, old)
    policy, policy_opt = hold(policy, params["policy"]), hold(policy_opt, opt_states["policy"])
    if fixed:
      log_alpha, t_opt = params["log_alpha"], opt_states["temperature"]
    else:
      log_alpha, t_opt = hold(log_alpha, params["log_alpha"]), hold(t_opt, opt_states["temperature"])
    target = losses_lib.soft_update(params["target_critic"], critic, config.rl.tau)
    params = dict(params, critic=critic, policy=policy, log_alpha=log_alpha, target_critic=target)
    opt_states = dict(opt_states, critic=critic_opt, policy=policy_opt, temperature=t_opt)
    alpha = jnp.exp(alpha_log) if fixed else jnp.exp(log_alpha)
    extra = {"sac/alpha": alpha, "finetune/bc_coef": bc_coef, "finetune/actor_frozen": frozen.astype(jnp.float32)}
    return (params, opt_states, iteration), {**cm, **pm, **extra}

  def bc_step(carry, key, data: Data):
    params, opt_states, iteration = carry
    expert, tokens = sample_expert(data, key, config.bc.batch_size)
    batch = trajectories(data.houses, expert, tokens)
    (loss, m), grads = jax.value_and_grad(losses.behaviour_cloning, has_aux=True)(params["policy"], batch)
    new, opt = apply_update("policy", params["policy"], opt_states["policy"], grads, loss)
    return (dict(params, policy=new), dict(opt_states, policy=opt), iteration), m

  def loop_kl_weight(iteration):
    """The ELBO's KL weight in training iterations: 1 after pretraining (annealed there), else annealed here."""
    if config.gen.pretrain_steps > 0:
      return jnp.ones((), jnp.float32)
    return jnp.minimum(1.0, (iteration.astype(jnp.float32) + 1.0) / max(config.gen.kl_anneal_iterations, 1))

  def pretrain_generator(state: TrainState, data: Data, steps: int):
    """`steps` ELBO steps on the demonstrations, KL weight rising 0 -> 1 over the first half (one seed)."""
    key, k_gen = jax.random.split(state.key)
    half = max(steps // 2, 1)

    def step(carry, xs):
      k, i = xs
      return generator_step(carry, k, data, jnp.minimum(1.0, (i + 1.0) / half))

    carry = (state.params, state.opt_states, state.iteration)
    carry, m = jax.lax.scan(step, carry, (jax.random.split(k_gen, steps), jnp.arange(steps, dtype=jnp.float32)))
    return state.replace(params=carry[0], opt_states=carry[1], key=key), m

  def scan_steps(step, carry, key, steps):
    if steps == 0:
      return carry, {}
    carry, m = jax.lax.scan(step, carry, jax.random.split(key, steps))
    return carry, jax.tree.map(jnp.mean, m)

  def make_iteration():
    def iteration(state: TrainState, data: Data) -> tuple[TrainState, dict]:
      key, k_roll, k_gen, k_para, k_disc, k_sac = jax.random.split(state.key, 6)
      carry = (state.params, state.opt_states, state.iteration)
      metrics = {}
      buffer = state.replay
      if config.algorithm == "bc":
        carry, m = scan_steps(lambda c, k: bc_step(c, k, data), carry, k_sac, config.bc.steps)
        metrics.update(m)
      else:
        record, m = do_rollouts(state, data, k_roll)
        metrics.update(m)
        buffer = replay.add(buffer, record)
        warm = state.iteration >= config.gen.warmup_iterations
        if use_generator:
          beta = loop_kl_weight(state.iteration)
          carry, m = scan_steps(lambda c, k: generator_step(c, k, data, beta), carry, k_gen, config.gen.steps)
          metrics.update(m)
          if gate:  # generated goals count only while the generator models real instructions well enough
            warm = warm & (m["gen/nll_per_token"] <= config.gen.gate_nll_per_token)
        warm = warm.astype(jnp.float32)
        metrics["gen/positives_on"] = warm
        paraphrases = None
        if sizes["pos_paraphrase"]:
          expert, _ = sample_expert(data, k_para, sizes["pos_paraphrase"])
          traj = trajectories(data.houses, expert, expert.tokens)
          paraphrases = traj._replace(tokens=label(carry[0]["generator"], traj, jax.random.fold_in(k_para, 1)))
        carry, m = scan_steps(
          lambda c, k: disc_step(c, k, data, buffer, paraphrases, warm), carry, k_disc, config.disc.steps
        )
        metrics.update(m)
        carry, m = scan_steps(lambda c, k: sac_step(c, k, data, buffer, warm), carry, k_sac, config.sac.steps)
        metrics.update(m)
        # Per-eval GreedyLR (the rule for TD and adversarial objectives) decides once per iteration on
        # the progress of the training rollouts; other modes' states pass through unchanged.
        progress = -metrics["rollout/success"]
        carry = (carry[0], {name: opts[name].observe(s, progress) for name, s in carry[1].items()}, carry[2])
      params, opt_states, _ = carry
      for name in ("policy", "critic", "reward", "generator"):
        metrics[f"lr/{name}"] = opts[name].learning_rate(opt_states[name])
      new = TrainState(params, opt_states, buffer, key, state.iteration + 1, state.best)
      return new, metrics

    return iteration

  def make_chunk():
    iteration = make_iteration()

    def chunk(state, data, length):
      def one_seed(s):
        return jax.lax.scan(lambda c, _: iteration(c, data), s, None, length=length)

      return jax.vmap(one_seed)(state)

    return jax.jit(chunk, static_argnums=2, donate_argnums=0)

  def evaluate_one(policy_params, houses, episodes, tokens):
    """Greedy rollouts of every (episode, instruction): metrics and `evaluation.STOP_COUNTS` [E * I]."""
    e, i = tokens.shape[:2]
    idx = jnp.repeat(jnp.arange(e), i)
    flat_tokens = tokens.reshape(e * i, -1)
    eps = rollouts.episode(episodes, idx)

    def one(ep, tok):
      act, carry = rollouts.policy_actor(nets.policy, policy_params, tok, greedy=True)
      states, actions = rollouts.rollout(houses, ep, act, jax.random.PRNGKey(0), horizon=horizon, carry=carry)
      before = jax.tree.map(lambda x: x[:-1], states)  # the state each action was taken in
      active = ~before.stopped & (before.t < before.horizon)
      near = jax.vmap(envs.navigation_error, (None, 0))(houses, before) < envs.SUCCESS_RADIUS_M
      stop = actions == envs.STOP
      counts = {
        "steps_at_goal": jnp.sum(active & near),
        "stops_at_goal": jnp.sum(active & near & stop),
        "steps_away": jnp.sum(active & ~near),
        "stops_away": jnp.sum(active & ~near & stop),
      }
      return {**envs.metrics(houses, rollouts.final_state(states)), **counts}

    return jax.vmap(one)(eps, flat_tokens)

  evaluate = jax.jit(jax.vmap(evaluate_one, (0, None, None, None)))

  def explore_fn(policy_params, gen_params, houses, starts, key, num_labels):
    """Goal-agnostic walks from `starts` and `num_labels` generator labels each: (Record, tokens [N, I, L])."""
    empty = empty_goal(max_tokens)
    n = starts.house.shape[0]
    k_act, k_lab = jax.random.split(key)

    def one(ep, key):
      act, carry = rollouts.policy_actor(nets.policy, policy_params, empty, greedy=False)
      return rollouts.rollout(houses, ep, act, key, horizon=horizon, carry=carry)

    states, actions = jax.vmap(one)(starts, jax.random.split(k_act, n))
    record = rollouts.Record(states, actions, jnp.tile(empty, (n, 1)), jnp.tile(empty, (n, 1)))
    traj = trajectories(houses, record, record.tokens)
    labels = jnp.stack([label(gen_params, traj, k) for k in jax.random.split(k_lab, num_labels)], axis=1)
    return record._replace(tokens=labels[:, 0], relabel=labels[:, 0]), labels

  explore = jax.jit(jax.vmap(explore_fn, (0, 0, None, None, 0, None)), static_argnums=5)

  def explorer_bc(state: TrainState, data: Data, steps: int):
    carry = (state.params, state.opt_states, state.iteration)
    carry, m = jax.lax.scan(lambda c, k: bc_step(c, k, data), carry, jax.random.split(state.key, steps))
    return state.replace(params=carry[0], opt_states=carry[1]), m

  explorer = jax.jit(jax.vmap(explorer_bc, (0, None, None)), static_argnums=2)
  pretrain = jax.jit(jax.vmap(pretrain_generator, (0, None, None)), static_argnums=2, donate_argnums=0)

  def validation_loss(policy_params, houses, records: rollouts.Record, tokens):
    """Behaviour-cloning loss (nats per expert action) of every demonstration of a held-out split."""
    return losses.behaviour_cloning(policy_params, trajectories(houses, records, tokens))[0]

  validate = jax.jit(jax.vmap(validation_loss, (0, None, None, None)))

  bc_tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(config.finetune.bc_pretrain_learning_rate))

  def bc_pretrain(state: TrainState, data: Data, steps: int):
    """`steps` bc steps on the demonstrations with their own constant-rate adam (one seed): the in-process
    warm start.  The RL optimizers' states are left as initialised."""
    key, k_bc = jax.random.split(state.key)

    def step(carry, k):
      policy, opt = carry
      expert, tokens = sample_expert(data, k, config.bc.batch_size)
      (loss, m), grads = jax.value_and_grad(losses.behaviour_cloning, has_aux=True)(
        policy, trajectories(data.houses, expert, tokens)
      )
      updates, opt = bc_tx.update(grads, opt, policy)
      return (optax.apply_updates(policy, updates), opt), m

    policy = state.params["policy"]
    (policy, _), m = jax.lax.scan(step, (policy, bc_tx.init(policy)), jax.random.split(k_bc, steps))
    return state.replace(params=dict(state.params, policy=policy), key=key), m

  bc_pre = jax.jit(jax.vmap(bc_pretrain, (0, None, None)), static_argnums=2)

  def diagnose(params, houses, records: rollouts.Record, tokens):
    """Fine-tune checks on demonstrations (one seed): bc loss on expert states, the learned reward per expert
    move and on the expert's first absorbing step (DAC's absorbing sample; its reward should be > 0).

    With AIRL's shaping the absorbing step's reward is g + (gamma - 1) h(absorbing): a potential the STOP
    before it has already been paid (gamma h), so it can be negative while stopping is not penalised.  The
    shaping-free part g (AIRL's disentangled reward) of the same steps is reported beside it.
    """
    traj = trajectories(houses, records, tokens)
    bc_loss = losses.behaviour_cloning(params["policy"], traj)[0]
    r = losses.reward(params["reward"], params["policy"], traj)  # [B, T]
    apply = lambda t: nets.reward.apply(params["reward"], t.tokens, t.obs, t.actions, t.terminal)[1]
    g = jax.vmap(apply)(traj)  # [B, T]
    moves = traj.active.astype(r.dtype)
    absorbing = losses_lib.step_weights(traj.active, "once") * (1.0 - moves)
    mean = lambda w, x=r: jnp.sum(w * x) / jnp.maximum(jnp.sum(w), 1.0)
    return {
      "bc_loss_expert": bc_loss,
      "expert_reward_move": mean(moves),
      "expert_reward_absorbing": mean(absorbing),
      "expert_g_move": mean(moves, g),
      "expert_g_absorbing": mean(absorbing, g),
    }

  diag = jax.jit(jax.vmap(diagnose, (0, None, None, None)))
  chunk = make_chunk()
  return Program(
    nets, losses, opts, init, chunk, evaluate, explore, explorer, pretrain, use_generator, validate, bc_pre, diag
  )


def empty_goal(max_tokens: int) -> jax.Array:
  """The empty instruction (EOS, then PAD): the goal-agnostic policy's input."""
  return jnp.zeros((max_tokens,), jnp.int32).at[0].set(envs.Vocabulary().eos_id)


def update_best(state: TrainState, val_loss: jax.Array) -> TrainState:
  """Keeps, per seed, the policy of the lowest validation loss so far (early stopping's parameters)."""
  better = val_loss < state.best["val_loss"]  # [S]
  pick = lambda new, old: jnp.where(better.reshape(better.shape + (1,) * (new.ndim - 1)), new, old)
  best = {
    "policy": jax.tree.map(pick, state.params["policy"], state.best["policy"]),
    "val_loss": jnp.where(better, val_loss, state.best["val_loss"]),
    "iteration": jnp.where(better, state.iteration, state.best["iteration"]),
  }
  return state.replace(best=best)


def stalled(config, state: TrainState) -> bool:
  """Early stop: every seed's validation loss has not improved for `bc.patience_iterations` iterations."""
  patience = config.bc.patience_iterations
  if not (config.bc.early_stopping_split and patience):
    return False
  since = np.asarray(jax.device_get(state.iteration)) - np.asarray(jax.device_get(state.best["iteration"]))
  return bool(np.all(since >= patience))


def init_state(program: Program, config, mesh) -> TrainState:
  keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(config.seed), s))(jnp.arange(config.num_seeds))
  return sharding.replicate(jax.jit(jax.vmap(program.init))(keys), mesh)


# --- evaluation -------------------------------------------------------------------------------------------


def eval_splits(
  program: Program, config, policy_params, names, *, shuffled: bool = False
) -> dict[str, dict[str, np.ndarray]]:
  """Per-seed, per-(episode, instruction) metrics and STOP counts [S, E_split * I] of the greedy policy.

  All splits run in one call (one compiled program): their episodes index the same world house table.  With
  `shuffled`, each path is commanded with the instructions of path `evaluation.shuffled_order(...)[e]` of
  its split (same house; the pairing depends on the episodes only, so every run gets the same one).
  """
  d, sets = config.data, _world_sets(config)
  parts = [_split_arrays(n, d.dataset_seed, d.max_eval_episodes, d.max_tokens, sets) for n in names]
  houses = parts[0][0]
  episodes = jax.tree.map(lambda *xs: jnp.concatenate(xs), *[p[1] for p in parts])
  if shuffled:
    order = lambda eps: evaluation.shuffled_order(np.asarray(eps.house), np.asarray(eps.goal))
    tokens = jnp.concatenate([p[2][order(p[1])] for p in parts])
  else:
    tokens = jnp.concatenate([p[2] for p in parts])
  out = jax.device_get(program.evaluate(policy_params, houses, episodes, tokens))
  result, start = {}, 0
  for name, p in zip(names, parts):
    n = int(p[2].shape[0] * p[2].shape[1])
    result[name] = {k: np.asarray(out[k])[:, start : start + n] for k in (*METRIC_NAMES, *evaluation.STOP_COUNTS)}
    start += n
  return result


def summarize(per_seed: dict[str, np.ndarray]) -> dict[str, Any]:
  """Seed means and a 95% t-interval over seeds of the METRIC_NAMES ([S, N] arrays)."""
  return evaluation.summarize({k: v for k, v in per_seed.items() if k in METRIC_NAMES})


# --- unseen-house adaptation ------------------------------------------------------------------------------


def shuffle_labels(demos: rollouts.Record, labels: jax.Array, perm: np.ndarray):
  """`adapt.labels=shuffled`: walk i gets walk perm[i]'s labels (seed axis first); the walks are unchanged."""
  perm = jnp.asarray(perm)
  return demos._replace(tokens=demos.tokens[:, perm], relabel=demos.relabel[:, perm]), labels[:, perm]


def adaptation(program: Program, config, state: TrainState, log) -> dict[str, Any]:
  """Goal-agnostic exploration -> generator labels -> reward adaptation + SAC fine-tuning in unseen houses.

  Uses the unseen houses' navigation graphs only: no instruction, path or goal of that split.
  """
  a, d = config.adapt, config.data
  train = train_data(config)
  # 1. The exploration policy: the policy network behaviour-cloned with the empty instruction (goal-agnostic).
  blind_tokens = jnp.broadcast_to(empty_goal(d.max_tokens), train.tokens.shape)
  explorer = jax.vmap(program.init)(
    jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(config.seed + 7919), s))(jnp.arange(config.num_seeds))
  )
  explorer, bc_metrics = program.explorer_bc(explorer, train._replace(tokens=blind_tokens), a.explore_bc_steps)
  # 2. Walks from random viewpoints of the unseen houses; the generator labels each (num instructions) times.
  houses, offsets = _world(d.dataset_seed, _world_sets(config))
  first = offsets[_house_set(d.adapt_split)]
  count = len(envs.load_split(d.adapt_split, seed=d.dataset_seed).houses)
  rng = np.random.default_rng(config.seed + 104729)
  house = first + rng.integers(0, count, a.num_demos)
  start = (rng.random(a.num_demos) * np.asarray(houses.num_nodes)[house]).astype(np.int32)
  n = a.num_demos
  starts = envs.Episodes(
    house=jnp.asarray(house, jnp.int32),
    start=jnp.asarray(start),
    goal=jnp.asarray(start),
    heading=jnp.asarray(rng.uniform(-np.pi, np.pi, n), jnp.float32),
    path=jnp.full((n, envs.navigation.MAX_PATH_NODES), -1, jnp.int32),
    path_edges=jnp.zeros((n,), jnp.int32),
    distance=jnp.zeros((n,), jnp.float32),
    instructions=jnp.zeros((n,) + train.episodes.instructions.shape[1:], jnp.int32),
  )
  keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(config.seed + 3), s))(jnp.arange(config.num_seeds))
  demos, labels = program.explore(
    explorer.params["policy"], state.params["generator"], houses, starts, keys, int(train.tokens.shape[1])
  )
  if a.labels == "shuffled":  # the control: the same walks and label texts, paired at random
    demos, labels = shuffle_labels(demos, labels, rng.permutation(n))
  moved = float(np.asarray(demos.states.node[:, :, -1] != demos.states.node[:, :, 0]).mean())
  before = eval_splits(program, config, state.params["policy"], (d.adapt_split,))[d.adapt_split]
  # 3 + 4. The pseudo-demonstrations are the expert data of further iterations of the same compiled chunk
  # (tiled to the training data's shapes); the replay starts empty; the generator is frozen.
  rows = np.arange(train.tokens.shape[0]) % n
  adapted = state.replace(
    replay=jax.vmap(lambda _: replay.init(_empty_record(config.env.horizon, d.max_tokens), config.replay_capacity))(
      keys
    )
  )
  done, last = 0, {}
  while done < a.iterations:
    seeds = []
    for s in range(config.num_seeds):
      demo = jax.tree.map(lambda x, s=s: x[s][rows], demos)
      eps = jax.tree.map(lambda x: x[rows], starts)._replace(goal=demo.states.node[:, -1])
      data = Data(houses, eps, labels[s][rows], demo, jnp.zeros((), jnp.float32))
      one, m = program.chunk(jax.tree.map(lambda x, s=s: x[s : s + 1], adapted), data, config.iterations_per_chunk)
      seeds.append((one, m))
    adapted = jax.tree.map(lambda *xs: jnp.concatenate(xs), *[o for o, _ in seeds])
    last = {k: float(np.mean([jax.device_get(m[k]) for _, m in seeds])) for k in seeds[0][1]}
    done += config.iterations_per_chunk
  after = eval_splits(program, config, adapted.params["policy"], (d.adapt_split,))[d.adapt_split]
  gain = after["success"].mean(1) - before["success"].mean(1)
  vocab = envs.Vocabulary()
  log(
    f"adaptation on {d.adapt_split}: SR {before['success'].mean():.3f} -> {after['success'].mean():.3f} "
    f"({n} pseudo-demos, {a.iterations} iterations)"
  )
  return {
    "num_demos": n,
    "iterations": a.iterations,
    "labels": a.labels,
    "explorer_bc_loss": float(np.asarray(jax.device_get(bc_metrics["bc/loss"]))[:, -1].mean())
    if a.explore_bc_steps
    else None,
    "explored_moved_fraction": moved,
    "example_labels": [vocab.decode(labels[0, i, 0]) for i in range(min(3, n))],
    "last_chunk_metrics": last,
    "before": summarize(before),
    "after": summarize(after),
    "success_gain_per_seed": gain.tolist(),
  }


# --- the binary's body ------------------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, log=print) -> dict[str, Any]:
  """Trains (or resumes) `config` in `workdir`, evaluates, adapts; returns the headline metrics."""
  workdir = pathlib.Path(workdir)
  mesh = sharding.data_mesh()
  program = build_program(config, mesh)
  data = train_data(config)
  state = init_state(program, config, mesh)
  is_main = jax.process_index() == 0
  log = log if is_main else (lambda *_: None)
  evals = {}
  validation = validation_data(config) if config.bc.early_stopping_split else None
  warm_start, at_switch, history = None, None, []
  diagnostics = None
  if config.algorithm != "bc":  # fine-tune checks on the first `finetune.diagnostic_episodes` demonstrations
    n = min(config.finetune.diagnostic_episodes, int(data.tokens.shape[0]))
    diagnostics = (data.houses, jax.tree.map(lambda x: x[:n], data.expert), data.tokens[:n, 0])

  def diagnose(it):
    out = {k: np.asarray(v) for k, v in jax.device_get(program.diagnose(state.params, *diagnostics)).items()}
    history.append({"iteration": it, **{k: v.tolist() for k, v in out.items()}})
    return out

  with checkpoint.Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints) as ckpt:
    restored, step = ckpt.restore_latest(state)
    if restored is not None:
      state = restored
      log(f"resuming from iteration {step} of {config.num_iterations}")
    with metrics_lib.MetricWriter(
      workdir, total_steps=config.num_iterations, resume_step=step, progress_lines=10
    ) as writer:
      start = time.perf_counter()
      elapsed = 0.0
      pretrained = False
      if restored is None and config.finetune.bc_workdir:  # warm start from a finished bc run
        policy, warm_start = load_bc_policy(config, mesh)
        best = jax.tree.map(jnp.copy, policy)  # own buffers: the chunk donates the state
        state = state.replace(params=dict(state.params, policy=policy), best=dict(state.best, policy=best))
        pretrained = True
        log(f"policy warm-started from {config.finetune.bc_workdir} (step {warm_start['checkpoint_step']})")
      elif restored is None and config.finetune.bc_pretrain_steps:  # warm start in-process
        state, m = program.bc_pretrain(state, data, config.finetune.bc_pretrain_steps)
        last = float(np.mean(np.asarray(jax.device_get(m["bc/loss"]))[:, -10:]))
        writer.write(0, {"pretrain/bc/loss": last})
        warm_start = {"bc_pretrain_steps": config.finetune.bc_pretrain_steps, "bc_loss_last_10": last}
        pretrained = True
        log(f"policy behaviour-cloned for {config.finetune.bc_pretrain_steps} steps: bc loss {last:.3f} (last 10)")
      if restored is None and program.use_generator and config.gen.pretrain_steps:
        state, m = program.pretrain_generator(state, data, config.gen.pretrain_steps)
        tail = {k: float(np.mean(np.asarray(jax.device_get(v))[:, -50:])) for k, v in m.items()}
        writer.write(0, {f"pretrain/{k}": v for k, v in tail.items()})
        pretrained = True
        log(
          f"generator pretrained for {config.gen.pretrain_steps} ELBO steps: "
          f"{tail['gen/nll_per_token']:.3f} nats/token (mean of the last 50), KL {tail['gen/kl']:.2f}"
        )
      if restored is None and diagnostics is not None:  # the checks at the switch to RL
        at_switch = diagnose(0)
        writer.write(0, {f"finetune/{k}": float(np.mean(v)) for k, v in at_switch.items()})
      if pretrained:
        writer.flush()
        ckpt.save(0, state, force=True)
      while int(state.iteration[0]) < config.num_iterations and not stalled(config, state):
        state, m = program.chunk(state, data, config.iterations_per_chunk)
        it = int(state.iteration[0])
        m = jax.device_get(m)  # leaves [S, chunk]
        for j in range(config.iterations_per_chunk):
          writer.write(it - config.iterations_per_chunk + j + 1, {k: float(np.mean(v[:, j])) for k, v in m.items()})
        if validation is not None:  # early stopping: validation loss after every chunk, best params kept
          val_loss = program.validation_loss(state.params["policy"], *validation)
          state = update_best(state, val_loss)
          writer.write(
            it,
            {
              "val/bc_loss": float(np.mean(val_loss)),
              "val/best_bc_loss": float(np.mean(state.best["val_loss"])),
              "val/best_iteration": float(np.mean(state.best["iteration"])),
            },
          )
        if it % config.eval_every == 0 or it == config.num_iterations:
          evals = eval_splits(program, config, state.params["policy"], tuple(config.data.eval_splits))
          row = {f"eval/{name}/{k}": float(res[k].mean()) for name, res in evals.items() for k in METRIC_NAMES}
          for name, res in evals.items():  # P(STOP | at goal), P(STOP | away) and their ratio, pooled over seeds
            rates = evaluation.stop_rates({k: np.asarray(res[k]).reshape(1, -1) for k in evaluation.STOP_COUNTS})
            at, away = float(rates["p_stop_at_goal"][0]), float(rates["p_stop_away"][0])
            row.update({f"eval/{name}/p_stop_at_goal": at, f"eval/{name}/p_stop_away": away})
            if away > 0:
              row[f"eval/{name}/p_stop_ratio"] = at / away
          if diagnostics is not None:
            row.update({f"finetune/{k}": float(np.mean(v)) for k, v in diagnose(it).items()})
          row = {k: v for k, v in row.items() if np.isfinite(v)}
          writer.write(it, row)
        writer.flush()
        ckpt.save(it, state, force=True)
        elapsed = time.perf_counter() - start
  iterations = int(state.iteration[0])
  policy = state.best["policy"] if validation is not None else state.params["policy"]
  if not evals or validation is not None:  # a finished run re-run, or early stopping's best params
    evals = eval_splits(program, config, policy, tuple(config.data.eval_splits))
  shuffled = eval_splits(program, config, policy, tuple(config.data.eval_splits), shuffled=True)
  results = {
    "algorithm": config.algorithm,
    "policy": config.net.policy,
    "variant_flags": {"relabel": config.relabel, "paraphrase": config.paraphrase, "mismatch": config.mismatch},
    "num_seeds": config.num_seeds,
    "iterations": iterations,
    "train_seconds_this_run": elapsed,
    "eval": {
      name: evaluation.split_summary(v, shuffled[name], num_instructions=grammar.NUM_INSTRUCTIONS)
      for name, v in evals.items()
    },
  }
  if validation is not None:
    results["early_stopping"] = {
      "split": config.bc.early_stopping_split,
      "patience_iterations": config.bc.patience_iterations,
      "best_iteration_per_seed": np.asarray(state.best["iteration"]).tolist(),
      "best_val_loss_per_seed": np.asarray(state.best["val_loss"]).tolist(),
      "stopped_early": iterations < config.num_iterations,
    }
  if diagnostics is not None:
    final = history[-1] if history and history[-1]["iteration"] == iterations else None
    if final is None:
      final = {"iteration": iterations, **{k: np.asarray(v).tolist() for k, v in diagnose(iterations).items()}}
    after = [h["bc_loss_expert"] for h in history if h["iteration"] > 0]
    results["finetune"] = {
      "warm_start": warm_start,  # None: no warm start in this process (none configured, or a resumed run)
      "critic_warmup_iterations": config.finetune.critic_warmup_iterations,
      "bc_coef": [config.finetune.bc_coef_start, config.finetune.bc_coef_end, config.finetune.bc_anneal_iterations],
      "fixed_alpha": config.rl.fixed_alpha,
      "disc_absorbing": config.disc.absorbing,
      "diagnostic_episodes": int(diagnostics[2].shape[0]),
      "at_switch": None if at_switch is None else {k: v.tolist() for k, v in at_switch.items()},
      "per_evaluation": history,  # this process's evaluations (metrics.jsonl holds every one)
      "final": final,
      "bc_loss_expert_max_after_switch": np.max(after, axis=0).tolist() if after else None,
    }
  if config.algorithm == "langgoalirl" and config.adapt.iterations > 0:
    results["adaptation"] = adaptation(program, config, state, log)
  if is_main:
    tmp = workdir / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    tmp.replace(workdir / "results.json")
    parts = [
      f"{name} SR {r['success']['mean']:.3f} SPL {r['spl']['mean']:.3f} NE {r['navigation_error']['mean']:.2f}"
      for name, r in results["eval"].items()
    ]
    log(f"{config.algorithm}: {iterations} iterations | " + " | ".join(parts))
    log(f"outputs in {workdir}: results.json, metrics.jsonl, tensorboard/, checkpoints/")
  headline = {f"{name}/{k}": r[k]["mean"] for name, r in results["eval"].items() for k in METRIC_NAMES}
  if "adaptation" in results:
    headline["adaptation/success_gain"] = float(np.mean(results["adaptation"]["success_gain_per_seed"]))
  return headline
