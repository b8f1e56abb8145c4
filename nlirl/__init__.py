"""Inverse RL with natural-language goals: LangGoalIRL (language-conditioned AIRL + variational goal generator).

* `envs`: R2R-lite, the pure-JAX navigation benchmark (houses, instructions, splits, env, Python reference).
* `networks`, `losses`, `rollouts`: the method's (init, apply) networks, losses and trajectory handling.
* `train`, `main`, `configs/default.py`: the resumable binary (LangGoalIRL, BC, GAIL, AIRL, ablations, adaptation).
* `benchmark`, `report`: env / training throughput and the results table.

It may import `common` and `schedulers`, never another method package.  See `nlirl/README.md`.
"""
