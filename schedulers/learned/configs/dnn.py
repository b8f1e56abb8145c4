"""Config of `schedulers.learned.dnn_main`: a PPO agent learns SGD learning-rate schedules for a digits MLP.

Variants: `--config=schedulers.learned.configs.dnn:<variant>`, see `VARIANTS`.
"""

import ml_collections

from schedulers import optimizers

VARIANTS = {
  "": "the full run: ~5 min of PPO, then evaluation on 32 held-out runs and an equally expensive grid search",
  "smoke": "a tiny run for tests (seconds)",
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # agent init, training episodes (their inits and data orders), PPO minibatches

  config.env = ml_collections.ConfigDict()  # schedulers.learned.dnn_env.make_dnn_task arguments
  config.env.hidden_sizes = (64,)  # the trained MLP's hidden layers (64 -> ... -> 10, ReLU)
  config.env.batch_size = 64  # SGD minibatch
  config.env.steps_per_decision = 25  # SGD steps between two decisions
  config.env.num_decisions = 20  # decisions per run; a run is (num_decisions + 1) * steps_per_decision steps
  config.env.initial_lr = 0.01  # rate of the first interval (the base rate the policy scales)
  config.env.multipliers = (0.5, 0.8, 1.0, 1.25, 2.0)  # rate factor of each action
  config.env.lr_bounds = (1e-4, 1.0)  # the rate is clipped to these after every action
  config.env.momentum = 0.9  # heavy-ball momentum of the SGD
  config.env.reward_gamma = 1.0  # weight of the new-low term best_{t-1} - val_t
  config.env.reward_lambda = 0.0  # weight of the budget term (a constant for fixed-length episodes)
  config.env.loss_cap = 10.0  # validation/test losses are clamped to this
  config.env.split_seed = 0  # the stratified 60/20/20 digits split

  config.ppo = ml_collections.ConfigDict()  # common.ppo.PPOConfig fields
  config.ppo.num_envs = 16  # parallel training runs per PPO iteration
  config.ppo.unroll_length = 20  # decisions per env per iteration
  config.ppo.num_minibatches = 4  # minibatches per update epoch
  config.ppo.update_epochs = 4  # passes over each rollout
  config.ppo.discount = 0.99  # per decision
  config.ppo.gae_lambda = 0.95  # GAE lambda
  config.ppo.clip_eps = 0.2  # surrogate clipping
  config.ppo.entropy_coef = 0.01  # entropy bonus
  config.ppo.value_coef = 0.5  # critic loss weight
  config.ppo.hidden_sizes = (32, 32)  # actor and critic MLPs (tanh)
  config.ppo.activation = "tanh"  # tanh | relu

  # The agent's optimizer, from the repository's factory. GreedyLR is off here:
  # the PPO loss is re-defined by every rollout, so its plateaus say nothing
  # about the rate (GreedyLR drives the schedules it is compared with below).
  config.agent_optimizer = optimizers.optimizer_config(
    name="adam", learning_rate=3e-4, objective="policy_gradient", greedy_mode="none", max_grad_norm=0.5
  )  # schedulers.make_optimizer block

  config.num_iterations = 200  # PPO iterations (may grow on resume)
  config.iterations_per_chunk = 10  # iterations per compiled call, between checkpoints
  config.keep_checkpoints = 3  # newest agent checkpoints kept

  config.eval = ml_collections.ConfigDict()
  config.eval.num_seeds = 32  # held-out runs (init + data order), paired across methods
  config.eval.seed = 1_000_003  # their keys: fold_in(PRNGKey(eval.seed), i), disjoint from training's
  config.eval.grid_seed = 2_000_003  # keys of the grid search's own runs (scored on validation)
  config.eval.grid_multipliers = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # grid of base rates, x initial_lr
  config.eval.grid_families = ("constant", "step", "exponential", "cosine")  # grid of schedule shapes
  config.eval.step_every = 0.25  # step decay: x0.5 every this fraction of the run
  config.eval.exponential_final = 0.01  # exponential decay: final rate / base rate
  config.eval.confidence = 0.95  # two-sided level of the paired intervals

  if arg == "smoke":
    config.env.hidden_sizes = (16,)
    config.env.steps_per_decision = 5
    config.env.num_decisions = 4
    config.ppo.num_envs = 4
    config.ppo.unroll_length = 4
    config.ppo.num_minibatches = 2
    config.ppo.update_epochs = 2
    config.ppo.hidden_sizes = (16,)
    config.num_iterations = 4
    config.iterations_per_chunk = 2
    config.eval.num_seeds = 4
    config.eval.grid_multipliers = (0.5, 2.0)
    config.eval.grid_families = ("constant", "cosine")
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}.")
  return config
