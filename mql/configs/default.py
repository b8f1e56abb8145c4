"""Config of `mql.main`: Meta-Q-Learning on one task family.

  python -m mql.main --config=mql.configs.default:<variant> --workdir=DIR

Variants (`VARIANTS`): `<family>` runs at the scale this 2-core CPU machine
affords (point-robot: minutes; the Brax families: hours, resumable);
`<family>-smoke` a tiny run for tests (seconds to a minute); `<family>-gpu`
the original code's scale (5e6 env steps, its per-family hyperparameters and
update-to-data ratios from `run_script.py` / `main.py`, 128 vmapped envs) for
a GPU or TPU.  The CPU and smoke variants run 0.25 updates per transition,
below the original's ratios, for the budget.  `smoke` is
`point-robot-smoke`; the default is `point-robot`.  The multi-task TD3
baseline without context is any variant with `--config.use_context=False`.
"""

import ml_collections

from schedulers import optimizers

FAMILY_NAMES = ("point-robot", "cheetah-vel", "cheetah-dir", "ant-dir", "ant-goal", "humanoid-dir", "walker-params")

# The original code's per-family settings (amazon-science/meta-q-learning `run_script.py`;
# point-robot is not in MQL: ours, in the cheetah-vel mould).  Keys are config fields.
# Update-to-data ratio (`main.py`, `adjust_number_train_iters`): after each collection of
# `num_tasks_sample` 200-step episodes it runs one update per step of one episode while the replay
# holds < 1e5 transitions (update_ratio_early = 1 / num_tasks_sample), then `num_train_steps`
# (update_ratio = num_train_steps / (num_tasks_sample x 200)).
ORIGINAL = {
  "cheetah-vel": dict(
    update_ratio=1.0,
    update_ratio_early=1.0,
    lr=1e-3,
    policy_delay=2,
    exploration_noise=0.3,
    policy_noise=0.3,
    history_length=20,
    context_size=15,
    beta_clip=1.0,
    C=0.1,
    start_steps=10_000,
    stage1=10,
    stage2=100,
    snapshot=2000,
    sample_mult=5,
    obs_features=False,
    replay_size=1_000_000,
  ),
  "cheetah-dir": dict(
    update_ratio=2.5,
    update_ratio_early=1.0,
    lr=3e-4,
    policy_delay=2,
    exploration_noise=0.3,
    policy_noise=0.3,
    history_length=20,
    context_size=20,
    beta_clip=1.5,
    C=0.5,
    start_steps=10_000,
    stage1=10,
    stage2=50,
    snapshot=2000,
    sample_mult=10,
    obs_features=False,
    replay_size=1_000_000,
  ),
  "ant-dir": dict(
    update_ratio=1.0,
    update_ratio_early=0.2,
    lr=3e-4,
    policy_delay=4,
    exploration_noise=0.2,
    policy_noise=0.4,
    history_length=25,
    context_size=30,
    beta_clip=1.2,
    C=0.05,
    start_steps=10_000,
    stage1=5,
    stage2=400,
    snapshot=2000,
    sample_mult=5,
    obs_features=False,
    replay_size=1_000_000,
  ),
  "ant-goal": dict(
    update_ratio=0.2,
    update_ratio_early=0.2,
    lr=4e-4,
    policy_delay=4,
    exploration_noise=0.3,
    policy_noise=0.3,
    history_length=40,
    context_size=40,
    beta_clip=2.0,
    C=0.1,
    start_steps=10_000,
    stage1=10,
    stage2=150,
    snapshot=1000,
    sample_mult=1,
    obs_features=True,
    replay_size=1_000_000,
  ),
  "humanoid-dir": dict(
    update_ratio=2.5,
    update_ratio_early=1.0,
    lr=3e-4,
    policy_delay=3,
    exploration_noise=0.2,
    policy_noise=0.3,
    history_length=15,
    context_size=20,
    beta_clip=2.0,
    C=0.1,
    start_steps=10_000,
    stage1=5,
    stage2=15,
    snapshot=2000,
    sample_mult=5,
    obs_features=True,
    replay_size=500_000,
  ),
  "walker-params": dict(
    update_ratio=0.2,
    update_ratio_early=0.2,
    lr=8e-4,
    policy_delay=3,
    exploration_noise=0.2,
    policy_noise=0.2,
    history_length=10,
    context_size=30,
    beta_clip=1.1,
    C=0.06,
    start_steps=10_000,
    stage1=10,
    stage2=400,
    snapshot=4000,
    sample_mult=5,
    obs_features=True,
    replay_size=1_000_000,
  ),
  "point-robot": dict(
    update_ratio=1.0,
    update_ratio_early=1.0,
    lr=1e-3,
    policy_delay=2,
    exploration_noise=0.3,
    policy_noise=0.3,
    history_length=10,
    context_size=20,
    beta_clip=1.0,
    C=0.1,
    start_steps=2000,
    stage1=10,
    stage2=100,
    snapshot=2000,
    sample_mult=5,
    obs_features=False,
    replay_size=1_000_000,
  ),
}
# Train / test task counts (MQL `configs/pearl_envs.json`; PEARL's for point-robot).
TASK_COUNTS = {
  "cheetah-vel": (100, 30),
  "cheetah-dir": (2, 2),
  "ant-dir": (2, 2),
  "ant-goal": (150, 30),
  "humanoid-dir": (100, 30),
  "walker-params": (40, 10),
  "point-robot": (80, 20),
}

VARIANTS = {"": "point-robot at CPU scale (a few minutes)", "smoke": "point-robot-smoke"}
for _name in FAMILY_NAMES:
  VARIANTS[_name] = f"{_name} at the scale this 2-core CPU machine affords"
  VARIANTS[f"{_name}-smoke"] = f"{_name}, a tiny run for tests"
  VARIANTS[f"{_name}-gpu"] = f"{_name} at the original's scale (5e6 env steps, 128 envs): GPU/TPU"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = arg or "point-robot"
  if arg == "smoke":
    arg = "point-robot-smoke"
  family, scale = arg, "cpu"
  for suffix in ("-smoke", "-gpu"):
    if arg.endswith(suffix):
      family, scale = arg[: -len(suffix)], suffix[1:]
  if family not in ORIGINAL:
    raise ValueError(f"unknown variant {arg!r}; valid: {', '.join(v for v in VARIANTS if v)}")
  o = ORIGINAL[family]
  num_train, num_test = TASK_COUNTS[family]

  config = ml_collections.ConfigDict()
  config.family = family  # one of mql.envs.FAMILIES
  config.seed = 0  # run seed: network init, exploration, env noise (not the tasks)
  config.task_seed = 0  # task-set seed, independent of the run seed (tasks saved with the run)
  config.num_train_tasks = num_train  # meta-training tasks
  config.num_test_tasks = num_test  # tasks adapted to at evaluation
  config.episode_length = 20 if family == "point-robot" else 200  # steps per episode (time limit, not terminal)
  config.use_context = True  # False: the multi-task TD3 baseline without context
  config.num_envs = 128  # vmapped env slots (sharded over devices)
  config.num_iterations = 5_000_000 // (128 * 20)  # iterations of steps_per_iteration vmapped env steps each

  config.network = ml_collections.ConfigDict()  # mql.networks.make_networks
  config.network.hidden_sizes = (300, 300)  # actor and each Q head
  config.network.context_size = o["context_size"]  # GRU hidden size (--hiddens_conext)
  config.network.history_length = o["history_length"]  # H, steps of (a, r, s) the GRUs read (--history_length)

  config.td3 = ml_collections.ConfigDict()  # mql.trainer.TD3Settings
  config.td3.batch_size = 256  # TD3 batch (divisible by the device count)
  config.td3.discount = 0.99  # gamma
  config.td3.tau = 0.005  # Polyak rate of the targets
  config.td3.policy_noise = o["policy_noise"]  # target smoothing std
  config.td3.noise_clip = 0.5  # target smoothing clip
  config.td3.policy_delay = o["policy_delay"]  # critic updates per actor update
  config.td3.exploration_noise = o["exploration_noise"]  # acting noise std
  config.td3.start_steps = o["start_steps"]  # env steps (all slots) of uniform random actions first
  config.td3.steps_per_iteration = 20  # vmapped env steps per compiled iteration
  # TD3 updates per env transition (the trainer runs ratio x num_envs per vmapped env step, a
  # fractional product spread exactly over consecutive steps): update_ratio_early until
  # update_ratio_switch transitions were collected, update_ratio afterwards.
  config.td3.update_ratio = o["update_ratio"]
  config.td3.update_ratio_early = o["update_ratio_early"]
  config.td3.update_ratio_switch = 100_000  # the original's min_buffer_size
  config.td3.replay_size = o["replay_size"]  # total replay capacity (transitions)
  config.td3.snapshot_size = o["snapshot"]  # per-task snapshot (the classifier's negatives)
  config.td3.greedy_signal = "loss"  # value= of a per-step GreedyLR: loss (each network's) | relative_td (critic's)

  config.optimizer = optimizers.optimizer_config(name="adam", learning_rate=o["lr"], objective="td")  # actor and critic

  config.adaptation = ml_collections.ConfigDict()  # mql.adaptation.AdaptationSettings
  config.adaptation.learning_rate_mode = "meta"  # meta: rate_multiplier x meta-training's final rate | fixed
  config.adaptation.rate_multiplier = 1.0  # adaptation rate / meta-training's final effective rate (<= 3)
  config.adaptation.learning_rate = 1e-3  # Adam rate under learning_rate_mode=fixed (the original's implicit 1e-3)
  # GreedyLR during adaptation (settings: optimizer.greedy): none | per_step.  The TD rule decides per
  # evaluation on return, and there is none inside adaptation's updates: constant rate.
  config.adaptation.greedy_mode = "none"
  config.adaptation.stage1_iterations = o["stage1"]  # TD3 updates on the new task's episode (0: stage 2 only)
  config.adaptation.stage2_iterations = o["stage2"]  # beta-weighted updates on the meta replay
  config.adaptation.stage2_batch_size = o["sample_mult"] * 256  # their batch (sample_mult x batch_size)
  config.adaptation.stage1_prox = True  # proximal term in stage 1 too (the original: stage 2 only)
  config.adaptation.beta = "propensity"  # stage-2 weights: propensity | uniform (beta = 1, the control)
  config.adaptation.beta_features = "meta"  # beta from the frozen meta actor's GRU (meta) | the adapted one (current)
  config.adaptation.beta_normalize = True  # divide beta by its minibatch mean (self-normalised)
  config.adaptation.beta_clip = o["beta_clip"]  # upper clip of log beta
  config.adaptation.C = o["C"]  # propensity classifier's inverse L2 strength (sklearn C)
  config.adaptation.prox = "fixed"  # lambda: fixed (prox_coef) | ess (1 - ESS) | td_scaled (x meta TD loss) | none
  config.adaptation.prox_coef = 0.1  # fixed lambda, ESS fallback, td_scaled factor (the original's 0.1)
  config.adaptation.observation_features = o["obs_features"]  # classifier features [s, context]
  config.adaptation.num_eval_episodes = 5  # K episodes per test task, the same K before / after stage 1 / after

  config.eval_every = 100  # iterations between adaptation evaluations (and at the end)
  config.log_every = 10  # iterations between metric lines
  config.checkpoint_every = 50  # iterations between checkpoints (and at the end)
  config.keep_checkpoints = 2  # newest checkpoints kept
  config.nonfinite = "skip"  # NaN/Inf updates: skip (counted) | stop (the run ends with an error)

  if scale == "cpu":
    if family == "point-robot":
      config.num_envs = 16
      config.num_iterations = 300  # 96k env steps, ~3 min of training
      config.td3.steps_per_iteration = 20  # one episode per slot
      # Below the original's 1.0 for the CPU budget: 4 updates per vmapped step of 16 transitions.
      config.td3.update_ratio = config.td3.update_ratio_early = 0.25
      config.td3.replay_size = 96_000
      config.eval_every = 150  # one evaluation of the 20 test tasks is ~1 min on 2 cores
      config.checkpoint_every = 50
    else:
      config.num_envs = 16
      config.num_iterations = 1000  # 3.2e5 env steps, 20-35 min per cheetah seed on 2 cores
      # Below the original's ratios (0.2-2.5) for the CPU budget: 4 updates per vmapped step of 16.
      config.td3.update_ratio = config.td3.update_ratio_early = 0.25
      config.td3.replay_size = 320_000
      config.td3.start_steps = 10_000
      config.num_test_tasks = min(num_test, 10)
      config.eval_every = 250
      config.checkpoint_every = 25
  elif scale == "smoke":
    config.num_train_tasks = min(num_train, 4)
    config.num_test_tasks = 2
    config.num_envs = 4
    config.num_iterations = 4
    config.episode_length = 20 if family == "point-robot" else 10
    config.network.hidden_sizes = (32, 32)
    config.network.context_size = 8
    config.network.history_length = min(o["history_length"], 5)
    config.td3.batch_size = 32
    config.td3.start_steps = 40
    config.td3.steps_per_iteration = 5
    # 1 update per vmapped step of 4 transitions, 2 from 60 transitions on: every smoke run (the
    # kill/resume test's included) crosses the switch.
    config.td3.update_ratio_early = 0.25
    config.td3.update_ratio = 0.5
    config.td3.update_ratio_switch = 60
    config.td3.replay_size = 800
    config.td3.snapshot_size = 100
    config.adaptation.stage1_iterations = 2
    config.adaptation.stage2_iterations = 3
    config.adaptation.stage2_batch_size = 64
    config.eval_every = 2
    config.log_every = 1
    config.checkpoint_every = 2
  return config
