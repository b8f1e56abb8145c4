"""Self-learning tasks on simulated dialogue logs (`selflearn.train.TASKS`).

  python -m selflearn.main --config=selflearn/configs/fpi.py[:smoke] --workdir=DIR       # failure points
  python -m selflearn.main --config=selflearn/configs/labels.py[:smoke] --workdir=DIR    # label generation
  python -m selflearn.main --config=selflearn/configs/rephrase.py[:smoke] --workdir=DIR  # rephrase detection
  python -m selflearn.main --config=selflearn/configs/amc.py[:smoke] --workdir=DIR       # AMC rewriting
  python -m selflearn.main --config=selflearn/configs/online.py[:smoke] --workdir=DIR    # online rewriting A/B
  python -m selflearn.main --config=selflearn/configs/teach.py[:smoke] --workdir=DIR     # teachable preferences

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
