"""mql.adapt: choosing C from the held-out classifier check, by each criterion; older workdirs' configs."""

import json
import types

import numpy as np
import pytest

from mql import adapt
from mql.configs import default as default_config


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


def test_meta_config_reads_a_workdir_written_before_the_update_ratio_fields(tmp_path):
  """An older config.json's `td3.updates_per_step` (per vmapped step of num_envs slots) becomes the ratio."""
  recorded = default_config.get_config("point-robot").to_dict()
  recorded["num_envs"] = 16
  for name in ("update_ratio", "update_ratio_early", "update_ratio_switch"):
    recorded["td3"].pop(name)
  recorded["td3"]["updates_per_step"] = 4
  (tmp_path / "config.json").write_text(json.dumps(recorded))
  config = adapt.meta_config(tmp_path)
  assert config.td3.update_ratio == config.td3.update_ratio_early == 0.25
  assert "updates_per_step" not in config.td3
