"""Learns SGD learning-rate schedules for a digits MLP with PPO, then compares them.

  python -m schedulers.learned.dnn_main --config=schedulers.learned.configs.dnn[:smoke] --workdir=DIR

Re-running on the same workdir resumes the agent from its latest checkpoint
(only the fields listed by --help may change) and re-evaluates.
"""

from common import app
from schedulers.learned import dnn_train

if __name__ == "__main__":
  app.run(
    dnn_train.train_and_evaluate,
    validate=dnn_train.validate_config,
    default_config=dnn_train.DEFAULT_CONFIG,
    resumable=dnn_train.RESUMABLE_FIELDS,
  )
