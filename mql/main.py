"""Meta-Q-Learning on one task family: meta-train, then adapt to every test task.

  python -m mql.main --config=mql.configs.default[:<family>|:<family>-smoke|:<family>-gpu] --workdir=DIR

Re-running on the same workdir resumes from its latest checkpoint (only the
fields listed by --help as resumable may change).
"""

from common import app
from mql import train

if __name__ == "__main__":
  app.run(
    train.train_and_evaluate,
    validate=train.validate_config,
    default_config=train.DEFAULT_CONFIG,
    resumable=train.RESUMABLE_FIELDS,
  )
