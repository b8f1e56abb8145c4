"""Trains the NMF learning-rate agent (PPO) and evaluates it against baselines on identical runs.

  python -m schedulers.learned.nmf_main --config=schedulers.learned.configs.nmf:smoke --workdir=DIR

(drop `:smoke` for the full run).  Writes `DIR/results.json`, `DIR/results.md`
and `DIR/plots/*.png`; re-running on the same workdir resumes training from
its last chunk (only the fields listed below may change) and skips an
evaluation that is already up to date.
"""

from common import app
from schedulers.learned import nmf_train

if __name__ == "__main__":
  app.run(
    nmf_train.train_and_evaluate,
    validate=nmf_train.validate_config,
    default_config=nmf_train.DEFAULT_CONFIG,
    resumable=nmf_train.RESUMABLE_FIELDS,
  )
