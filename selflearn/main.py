"""Self-learning models on simulated dialogue logs: failure-point isolation or label generation.

  python -m selflearn.main --config=selflearn/configs/fpi.py[:smoke] --workdir=DIR
  python -m selflearn.main --config=selflearn/configs/labels.py[:smoke] --workdir=DIR

The binary simulates its logs into DIR/data (or reads --config.data.log_path,
validated row by row), trains, and writes DIR/results.{json,md}.  Re-running
on the same workdir resumes every training stage from its latest checkpoint
(only the fields listed by --help may change).
"""

from common import app
from selflearn import train

if __name__ == "__main__":
  app.run(
    train.train_and_evaluate,
    validate=train.validate_config,
    default_config=train.DEFAULT_CONFIG,
    resumable=train.RESUMABLE_FIELDS,
  )
