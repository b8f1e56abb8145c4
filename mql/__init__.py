"""Meta-Q-Learning (TD3 with a GRU context, multi-task Brax training, propensity-score adaptation).

Placeholder package: the implementation lands with its own issue.  It may import
`common` and `schedulers`, never another method package.
"""
