"""Learned learning-rate schedules: stochastic NMF and an RL environment on it.

* `nmf`: stochastic NMF (problems, init, minibatch gradients, projected SGD),
  the noise-aware learning-rate stability bound (derivation in its docstring)
  and vmappable training under count-driven or bound-driven schedules.
* `nmf_env`: `make_nmf_env(...) -> common.ppo.Env`, an episode = one NMF
  training run whose learning rate an agent scales at every decision.

A reconstruction of "Efficient Learning rate schedules for Stochastic
Non-negative Matrix Factorization via Reinforcement Learning" (Tiny Papers @
ICLR 2023): only its abstract is known, the bound and environment are ours.
"""
