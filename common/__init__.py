"""Shared, method-agnostic toolkit: replay, encoders, trainer, checkpoints, metrics, app runner.

`common` imports none of the method packages (a test enforces it).  Import the
submodules directly, e.g. `from common import trainer`.
"""
