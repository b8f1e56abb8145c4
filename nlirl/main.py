"""Trains LangGoalIRL (or a baseline) on R2R-lite, evaluates it on val_seen / val_unseen, adapts to unseen houses.

  python -m nlirl.main --config=nlirl.configs.default[:smoke|:bc|:gail|:airl|:no_relabel|...] --workdir=DIR

Re-running on the same workdir resumes from the latest checkpoint (only the fields listed by --help may
change) and re-evaluates.
"""

from common import app
from nlirl import train

if __name__ == "__main__":
  app.run(
    train.train_and_evaluate,
    validate=train.validate_config,
    default_config=train.DEFAULT_CONFIG,
    resumable=train.RESUMABLE_FIELDS,
  )
