"""Trains the digits MLP with adamw + GreedyLR.

  python -m schedulers.main --config=schedulers.configs.default[:VARIANT] --workdir=DIR

Re-running on the same workdir resumes from the latest checkpoint (with the
same config: only the fields listed below may change).
"""

from common import app
from schedulers import train

if __name__ == "__main__":
  app.run(
    train.train_and_evaluate,
    validate=train.validate_config,
    default_config=train.DEFAULT_CONFIG,
    resumable=train.RESUMABLE_FIELDS,
  )
