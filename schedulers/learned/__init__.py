"""Learned learning-rate schedules: environments, the stability bound, the agent.

* `nmf`: stochastic NMF (problems, init, minibatch gradients, projected SGD),
  the noise-aware learning-rate stability bound (derivation in its docstring)
  and vmappable training under count-driven or bound-driven schedules.
* `nmf_env`: `make_nmf_env(...) -> common.ppo.Env`, an episode = one NMF
  training run whose learning rate an agent scales at every decision.
* `dnn_env`: `make_dnn_task(...)`, the same for SGD with momentum training a
  digits MLP, observing validation loss, budget, per-layer gradient norms and
  the previous rate; `run_schedule` trains identical runs under given rates.
* `agent`: `train_agent(env, ...)`, resumable PPO training (`common.ppo`).
* `transform`, `policy`: `learned_schedule(policy)` (exported as
  `schedulers.learned_schedule`), the trained actor as an optax transform,
  and `Policy` / `save_policy` / `load_policy` (one `policy.npz`: JSON spec +
  weights) / `shipped_policy()` (the DNN policy shipped as package data).
* `compare`: paired geometric-mean ratios with t-intervals, wins/ties/losses.
* `dnn_train` / `dnn_main`, `nmf_train` / `nmf_main` with `configs/`: the
  binaries (train or resume the agent, evaluate it on held-out runs against
  the baselines, write results); `results/` holds the committed runs.

Reconstructions of two Tiny Papers @ ICLR 2023 whose abstracts only are
known: "Efficient Learning rate schedules for Stochastic Non-negative Matrix
Factorization via Reinforcement Learning" and "Learned Learning Rate Schedules
for Deep Neural Network Training Using Reinforcement Learning" (Subramanian,
Ganapathiraman, El Gamal); the bound, environments and rewards are ours.
"""
