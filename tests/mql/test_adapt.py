"""mql.adapt: choosing C from the held-out classifier check, by each criterion."""

import types

import numpy as np
import pytest

from mql import adapt


def _unit(accuracy, majority, auc, own, other):
  check = {"C": [0.1, 10.0], "accuracy": accuracy, "majority_rate": majority, "auc": auc}
  check.update(beta_own=own, beta_other=other)
  return types.SimpleNamespace(out={"classifier_check": {k: np.asarray(v).tolist() for k, v in check.items()}})


def test_select_C_by_each_criterion():
  # Two held-out tasks x two C: accuracy never beats the majority rate; C = 10 ranks better.
  units = [
    _unit([[0.8, 0.79], [0.8, 0.78]], [[0.8, 0.8]] * 2, [[0.55, 0.7], [0.6, 0.8]], [[1.0, 3.0]] * 2, [[1.0, 1.0]] * 2),
    _unit([[0.8, 0.8], [0.8, 0.8]], [[0.8, 0.8]] * 2, [[0.5, 0.6], [0.5, 0.6]], [[1.2, 2.0]] * 2, [[1.0, 1.0]] * 2),
  ]
  assert adapt.select_C(units, "accuracy") is None
  assert adapt.select_C(units, "auc") == 10.0
  assert adapt.select_C(units, "beta_ratio") == 10.0
  # Below chance everywhere: no C.
  worse = [_unit([[0.8, 0.8]], [[0.8, 0.8]], [[0.4, 0.45]], [[0.5, 0.9]], [[1.0, 1.0]])]
  assert adapt.select_C(worse, "auc") is None and adapt.select_C(worse, "beta_ratio") is None


def test_select_C_by_auc_needs_the_auc():
  unit = _unit([[0.8, 0.8]], [[0.8, 0.8]], [[0.5, 0.6]], [[1.0, 1.0]], [[1.0, 1.0]])
  del unit.out["classifier_check"]["auc"]
  with pytest.raises(SystemExit) as e:
    adapt.select_C([unit], "auc")
  assert e.value.code == 2
