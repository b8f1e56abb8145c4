"""Config of `nlirl.main`: LangGoalIRL and its baselines on R2R-lite.

Variants: `--config=nlirl.configs.default:<variant>`, see `VARIANTS`; every method variant also has a
`<variant>_smoke` form (tiny sizes, seconds), e.g. `:airl_smoke`.
"""

import ml_collections

from schedulers import optimizers

METHODS = {
  "": "LangGoalIRL: AIRL + goal generator (paraphrase, relabelled positives, mismatched negatives) + adaptation",
  "bc": "baseline: behaviour cloning of the expert demonstrations",
  "bc_converged": "baseline: bc trained to convergence (sizes and rate tuned on val_seen, early stopping on its loss)",
  "follower": "recurrent follower: bc of a GRU over the trajectory attending over the instruction (early stopping)",
  "gail": "baseline: language-conditioned GAIL (logit f, reward -log(1 - D); no generator, relabel or mismatch)",
  "airl": "baseline: language-conditioned AIRL (logit f - log pi, shaped f; no generator, relabel or mismatch)",
  "airl_finetune": "fine-tune: airl from a bc policy (critic warm-up, annealed bc term, alpha 0, DAC absorbing)",
  "gail_finetune": "fine-tune: gail from a bc policy (critic warm-up, annealed bc term, alpha 0.01, DAC absorbing)",
  "no_relabel": "ablation: LangGoalIRL without relabelled rollouts",
  "no_paraphrase": "ablation: LangGoalIRL without generated paraphrases of expert goals",
  "no_mismatch": "ablation: LangGoalIRL without mismatched-goal negatives",
}
FINETUNE = ("airl_finetune", "gail_finetune")  # the methods with a `_gpu` form
VARIANTS = {
  **METHODS,
  "smoke": "LangGoalIRL, tiny sizes for tests (seconds)",
  **{f"{name}_smoke": f"{meaning.split(':')[0]}: {name}, tiny sizes" for name, meaning in METHODS.items() if name},
  **{
    f"{name}_gpu": f"fine-tune: {name} at one accelerator's scale (256 rollouts, 8 SAC steps, 10^5 updates)"
    for name in FINETUNE
  },
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # network inits, rollouts, batches (seed s of num_seeds uses fold_in(PRNGKey(seed), s))
  config.num_seeds = 3  # independent seeds trained side by side in one vmapped program
  config.algorithm = "langgoalirl"  # langgoalirl | airl | gail | bc
  config.relabel = True  # langgoalirl: relabelled rollouts (tau_pi, G ~ q) as positives and SAC goals
  config.paraphrase = True  # langgoalirl: expert trajectories with generated goals as positives
  config.mismatch = True  # langgoalirl: expert trajectories with another path's instruction as negatives

  config.data = ml_collections.ConfigDict()
  config.data.dataset_seed = 0  # nlirl.envs.load_split seed
  config.data.train_split = "train"  # demonstrations and rollout goals
  config.data.eval_splits = ("val_seen", "val_unseen")  # evaluated every eval_every iterations
  config.data.adapt_split = "val_unseen"  # unseen houses of the adaptation (their instructions are not used)
  config.data.max_tokens = 96  # instruction length L (the grammar's longest is 94 with EOS)
  config.data.max_train_episodes = 0  # training paths (0: all 3050); few demonstrations: 100 / 300 / 1000 (nested)
  config.data.held_out_phrasing = ""  # kept out of training instructions: '' | step_by_step | rooms | goal | synonyms
  config.data.max_eval_episodes = 0  # paths evaluated per split, x 3 instructions (0: all)

  config.env = ml_collections.ConfigDict()
  config.env.horizon = 10  # fixed episode length (>= longest expert path + 1 for STOP)

  config.net = ml_collections.ConfigDict()
  config.net.policy = "markov"  # markov (each step from its observation) | recurrent (GRU over the trajectory)
  config.net.encoder = "gru"  # instruction encoder: gru | transformer
  config.net.embed_dim = 32  # token embedding size
  config.net.hidden = 64  # hidden size of every network
  config.net.num_layers = 1  # transformer layers
  config.net.num_heads = 2  # transformer heads
  config.net.latent = 16  # goal-generator latent z
  config.net.gen_hidden = 0  # goal generator's decoder and trajectory-encoder size (0: net.hidden)
  config.net.shaping = True  # AIRL f = g + gamma h(s') - h(s) (gail never shapes)

  config.rl = ml_collections.ConfigDict()
  config.rl.gamma = 0.95  # SAC discount (and shaping's gamma)
  config.rl.tau = 0.01  # target-critic Polyak rate per SAC step
  config.rl.initial_alpha = 0.1  # SAC temperature at init
  config.rl.target_entropy_scale = 0.3  # target entropy = scale x log(number of valid actions)
  config.rl.max_reward = 10.0  # |reward| clip
  config.rl.airl_reward = "logit"  # airl rewards: logit (f - log pi, AIRL's) | f (SAC's alpha log pi stands in)
  config.rl.fixed_alpha = -1.0  # SAC temperature: < 0 tuned to the target entropy from initial_alpha; >= 0 fixed
  # (0: no entropy bonus; the airl logit reward f - log pi already carries -log pi)

  config.num_envs = 64  # rollouts per iteration (vmapped, sharded over the data mesh)
  config.replay_capacity = 4096  # rollouts kept (compact: env states + actions + goals)

  config.disc = ml_collections.ConfigDict()
  config.disc.steps = 1  # discriminator updates per iteration
  config.disc.batch_size = 64  # positives (and as many negatives) per update, in quarters
  config.disc.gradient_penalty = 1.0  # zero-centred |d logit / d obs|^2 weight
  config.disc.absorbing = "every_step"  # absorbing (post-STOP) steps in the loss: every_step | once (one per
  # stopped trajectory, Discriminator-Actor-Critic's absorbing sample; every_step penalises stopping)

  config.sac = ml_collections.ConfigDict()
  config.sac.steps = 2  # SAC updates per iteration
  config.sac.batch_size = 64  # trajectories: 1/2 rollouts, 1/4 expert, 1/4 relabelled (rollouts without relabel)

  config.gen = ml_collections.ConfigDict()
  config.gen.steps = 1  # generator ELBO updates per iteration
  config.gen.batch_size = 32  # expert trajectories per ELBO update
  config.gen.kl_anneal_iterations = 200  # KL weight rises linearly 0 -> 1 over these iterations
  config.gen.word_dropout = 0.25  # decoder inputs replaced by UNK
  config.gen.pretrain_steps = 2000  # ELBO steps on the demonstrations before iteration 0 (KL weight 0 -> 1 over half)
  config.gen.warmup_iterations = 100  # relabel / paraphrase positives count only after this
  config.gen.gate_nll_per_token = 1.5  # ... and only while the generator's nats/token are below this (0: no gate)
  config.gen.temperature = 1.0  # sampling temperature of generated goals

  config.bc = ml_collections.ConfigDict()
  config.bc.steps = 4  # bc algorithm: updates per iteration
  config.bc.batch_size = 64  # bc algorithm: expert trajectories per update
  config.bc.warmstart_iterations = 50  # IRL algorithms: the policy is behaviour-cloned for these iterations
  config.bc.early_stopping_split = ""  # bc: validation loss on this split's demonstrations after every chunk,
  # the lowest's params are evaluated ('' off | val_seen)
  config.bc.patience_iterations = 0  # bc with early stopping: stop once no seed improved for this long (0: never)

  # IRL as a fine-tune of a behaviour-cloned policy (airl, gail, langgoalirl; iteration 0 is the switch to RL).
  config.finetune = ml_collections.ConfigDict()
  config.finetune.bc_workdir = ""  # a finished `nlirl.main` bc run (e.g. :bc_converged): its best (early-stopping)
  # policy initialises every seed's policy (seed s takes its seed s mod its num_seeds); '' none
  config.finetune.bc_pretrain_steps = 0  # with bc_workdir '': bc steps on the training demonstrations before
  # iteration 0, in-process (constant rate below, bc.batch_size), checkpointed as step 0; 0 off
  config.finetune.bc_pretrain_learning_rate = 1e-3  # adam rate of those steps (bc_converged's)
  config.finetune.critic_warmup_iterations = 0  # the actor and temperature stay frozen while the critic
  # (and discriminator) learn for these first iterations
  config.finetune.bc_coef_start = 0.0  # bc term on expert (state, instruction, action) added to the actor loss:
  config.finetune.bc_coef_end = 0.0  # coefficient linear from start to end over the anneal iterations (after the
  config.finetune.bc_anneal_iterations = 0  # critic warm-up), then held at end; 0 iterations: end at once
  config.finetune.diagnostic_episodes = 256  # training demonstrations of the per-evaluation diagnostics (bc loss
  # on expert states, the expert's reward per move and per absorbing step)

  config.adapt = ml_collections.ConfigDict()
  config.adapt.iterations = 60  # langgoalirl: adaptation iterations in the unseen houses (0: off)
  config.adapt.explore_bc_steps = 300  # BC steps of the goal-agnostic exploration policy
  config.adapt.num_demos = 512  # pseudo-demonstrations (exploration walks labelled by the generator)
  config.adapt.labels = "generator"  # generator | shuffled (control: each walk gets another walk's labels)

  # Each network names its objective class; the class sets GreedyLR's mode (schedulers.optimizers.RULE):
  # per eval on the training rollouts' success for SAC and the discriminator, per step for the
  # supervised generator (and the policy under bc), none for the temperature (a dual variable).
  opt = lambda lr, objective: optimizers.optimizer_config(
    name="adam", learning_rate=lr, objective=objective, max_grad_norm=1.0
  )
  config.policy_optimizer = opt(3e-4, "td")  # schedulers.make_optimizer block (bc: supervised)
  config.critic_optimizer = opt(3e-4, "td")  # schedulers.make_optimizer block
  config.reward_optimizer = opt(1e-4, "adversarial")  # schedulers.make_optimizer block (small: a strong D saturates)
  config.generator_optimizer = opt(1e-3, "supervised")  # schedulers.make_optimizer block
  config.temperature_optimizer = opt(3e-4, "dual")  # schedulers.make_optimizer block

  config.num_iterations = 600  # training iterations (may grow on resume)
  config.iterations_per_chunk = 20  # iterations per compiled call, between checkpoints
  config.eval_every = 200  # evaluation period (a multiple of iterations_per_chunk)
  config.keep_checkpoints = 2  # newest checkpoints kept

  name, smoke, gpu = (arg or ""), False, False
  if name == "smoke" or name.endswith("_smoke"):
    name, smoke = name.removesuffix("smoke").removesuffix("_"), True
  if name.removesuffix("_gpu") in FINETUNE and name.endswith("_gpu"):
    name, gpu = name.removesuffix("_gpu"), True
  if name not in METHODS:
    raise ValueError(f"unknown config variant {arg!r}; valid: {', '.join(v or '(default)' for v in VARIANTS)}")
  if name in ("bc", "gail", "airl"):
    config.algorithm = name
    config.adapt.iterations = 0
    if name == "bc":  # the policy fits the demonstrations: a supervised loss
      config.policy_optimizer = opt(3e-4, "supervised")
  elif name in ("bc_converged", "follower"):  # tuned on val_seen: nlirl/README.md, "A follower that reads"
    config.algorithm = "bc"
    config.adapt.iterations = 0
    config.policy_optimizer = opt(1e-3, "supervised")
    config.net.policy = "recurrent" if name == "follower" else "markov"
    config.bc.batch_size = 64
    config.bc.early_stopping_split = "val_seen"
    config.bc.patience_iterations = 500
    config.num_iterations = 3000
    config.iterations_per_chunk = 50
    config.eval_every = 500
  elif name in FINETUNE:
    # nlirl/README.md, "IRL as a fine-tune".  Start from a finished :bc_converged workdir
    # (--config.finetune.bc_workdir=DIR; same net sizes); with none, bc_pretrain_steps clone in-process.
    config.algorithm = name.removesuffix("_finetune")
    config.adapt.iterations = 0
    config.bc.warmstart_iterations = 0  # replaced by the warm start and the annealed bc term
    config.finetune.bc_pretrain_steps = 4000
    config.finetune.critic_warmup_iterations = 200
    config.finetune.bc_coef_start = 1.0
    config.finetune.bc_coef_end = 0.1
    config.finetune.bc_anneal_iterations = 2500
    # The entropy counted once: AIRL's log-odds reward f - log pi already holds -log pi (alpha 0); GAIL's
    # softplus(f) holds none, so a small fixed alpha keeps exploration without outweighing rewards of ~0.5.
    config.rl.fixed_alpha = 0.0 if name == "airl_finetune" else 0.01
    config.disc.absorbing = "once"
    # GreedyLR off (the rule allows per eval on progress, or off with a reason): a fine-tune starts at the
    # bc policy's success, which the run should hold, not beat, and the actor is frozen for the critic
    # warm-up, so the progress signal is flat by design and per-eval GreedyLR would read it as a plateau.
    config.policy_optimizer = optimizers.optimizer_config(
      name="adam", learning_rate=1e-4, objective="td", max_grad_norm=1.0, greedy_mode="none"
    )
    config.critic_optimizer = optimizers.optimizer_config(
      name="adam", learning_rate=3e-4, objective="td", max_grad_norm=1.0, greedy_mode="none"
    )
    config.reward_optimizer = optimizers.optimizer_config(
      name="adam", learning_rate=1e-4, objective="adversarial", max_grad_norm=1.0, greedy_mode="none"
    )
    # Budget: 5000 iterations x 2 SAC updates = 10^4 updates (DAC / GAIL use 10^5 - 10^6); the `_gpu`
    # forms run 12500 x 8 = 10^5 on one accelerator.
    config.num_iterations = 5000
    config.iterations_per_chunk = 50
    config.eval_every = 500
    if gpu:  # one accelerator: 4x the rollouts and SAC updates per iteration, 2.5x the iterations
      config.num_envs = 256
      config.replay_capacity = 16384
      config.sac.steps = 8
      config.disc.steps = 4
      config.num_iterations = 12500
      config.iterations_per_chunk = 250
      config.eval_every = 1250
  elif name:
    setattr(config, name.removeprefix("no_"), False)
  if smoke:
    config.num_seeds = 1
    config.data.max_train_episodes = 64
    config.data.max_eval_episodes = 16
    config.data.max_tokens = 96
    config.net.embed_dim = 8
    config.net.hidden = 16
    config.net.latent = 4
    config.num_envs = 8
    config.replay_capacity = 64
    config.disc.batch_size = 8
    config.sac.batch_size = 8
    config.sac.steps = 1
    config.gen.batch_size = 8
    config.gen.warmup_iterations = 2
    config.gen.pretrain_steps = 2
    config.gen.kl_anneal_iterations = 4
    config.bc.steps = 1
    config.bc.batch_size = 8
    config.bc.warmstart_iterations = 1
    config.num_iterations = 4
    config.iterations_per_chunk = 2
    config.eval_every = 4
    if config.finetune.bc_pretrain_steps:  # self-contained: clones in-process, no bc workdir needed
      config.finetune.bc_pretrain_steps = 20
      config.finetune.critic_warmup_iterations = 2
      config.finetune.bc_anneal_iterations = 2
      config.finetune.diagnostic_episodes = 16
    if config.adapt.iterations:
      config.adapt.iterations = 2
      config.adapt.explore_bc_steps = 2
      config.adapt.num_demos = 8
  return config
