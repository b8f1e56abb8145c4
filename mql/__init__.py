"""Meta-Q-Learning (TD3 with a GRU context, multi-task Brax training, propensity-score adaptation).

Not implemented yet: this package is empty.  It may import
`common` and `schedulers`, never another method package.
"""
