"""Full-size study tasks train to where the study says they do (slow tier).

Each run is one seed of one study arm at the study's full budget, with the
learning rate the study tuned for it (`schedulers/study/results/report.md`).  The
char LM also checks the source's information-theoretic bounds: no model can
beat the best window-average entropy of the Markov source (a leak would), and
a model that uses the token two back must beat the order-1 entropy.
"""

import jax
import numpy as np
import pytest

from schedulers.study import arms as arms_lib
from schedulers.study import runner as study_runner
from schedulers.study import tasks as tasks_lib

pytestmark = pytest.mark.slow


def _final_test_metric(task_name, optimizer, arm_name, lr, seed=0):
  task = tasks_lib.make_task(task_name, size="full")
  arm = next(a for a in arms_lib.make_arms(optimizer) if a.name == arm_name)
  curves = jax.jit(study_runner.make_run(task, arm))(np.float32(lr), seed)
  test = np.asarray(curves["test"])
  assert np.all(np.isfinite(test)), (task_name, arm_name)
  return float(test[0]), float(test[-1])


@pytest.mark.parametrize("arm_name", ["cosine", "greedy_step"])
def test_char_lm_learns_the_second_order_context_and_respects_the_entropy_floor(arm_name):
  chain = tasks_lib.char_lm_chain()
  context = 32  # predicted tokens per 33-token window
  floor = (chain.bigram_entropy + (context - 1) * chain.entropy_rate) / context
  _, bits = _final_test_metric("char_lm", "adamw", arm_name, 0.01)
  assert bits > floor - 0.03  # 32k test tokens: sampling error ~0.01 bit
  assert bits < chain.bigram_entropy - 0.4  # study: ~1.65 bits/char


@pytest.mark.parametrize(
  "task_name, optimizer, arm_name, lr, bound",
  [
    ("nmf_synthetic", "adamw", "greedy_step", 0.0316, 0.07),  # study 0.0634
    ("nmf_digits", "momentum", "greedy_eval", 0.316, 0.43),  # study 0.409
    ("digits_mlp", "adamw", "greedy_step", 1e-4, 0.17),  # study 0.134
    ("mnist1d_cnn", "adamw", "greedy_step", 0.01, 0.5),  # study 0.329 ± 0.06
    ("logreg_breast_cancer", "sgd", "greedy_step", 1.0, 0.1),  # study 0.0874
  ],
)
def test_full_size_task_reaches_the_study_level(task_name, optimizer, arm_name, lr, bound):
  first, last = _final_test_metric(task_name, optimizer, arm_name, lr)
  assert last < bound
  assert last < first  # still improving after the first evaluation
