"""The task runners of `python -m selflearn.main`, dispatched by `selflearn.train`.

One module per task (`fpi`, `labels`, `rephrase`, `amc`, `online`, `teach`:
`validate_config`, `run`, `render`); `base` and `encoded` hold what they
share.  Runners may use the simulator (its world, annotators and judge); the
models they drive may not.
"""
