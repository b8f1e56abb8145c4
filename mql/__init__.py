"""Meta-Q-Learning (TD3 with a GRU context, multi-task Brax training, propensity-score adaptation).

In progress: `propensity` (the new-vs-old task classifier as a jitted
scikit-learn-equivalent logistic fit, the original's clipped importance
weights and ESS-based proximal coefficient) and `envs` (the task families).
Not here yet: the TD3 + context agent, multi-task training, adaptation and
the `mql.main` binary.  It may import `common` and `schedulers`, never
another method package.
"""
