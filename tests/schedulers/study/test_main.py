"""The GreedyLR study: runner semantics, resumability and the smoke binary."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from schedulers.study import arms as arms_lib
from schedulers.study import runner as study_runner
from schedulers.study import tasks as tasks_lib

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def task():
  return tasks_lib.make_task("logreg_breast_cancer", size="smoke")


def _arm(optimizer, name):
  return next(a for a in arms_lib.make_arms(optimizer) if a.name == name)


def _protocol(**kw):
  kw = {
    "lr_grids": {"sgd": (0.01, 0.3), "adamw": (1e-3, 3e-2)},
    "tuning_seeds": (100,),
    "eval_seeds": (0, 1, 2),
    "batch": 4,
    **kw,
  }
  return study_runner.Protocol(**kw)


def test_arms_per_row():
  assert study_runner.arms_lib.arm_names("sgd") == [
    *arms_lib.SCHEDULE_ARMS,
    "plateau",
    "schedule_free",
    "sgd_hd",
    "sls",
    "greedy_step",
    "greedy_eval",
  ]
  assert "sls" not in arms_lib.arm_names("momentum") and "schedule_free" not in arms_lib.arm_names("momentum")
  assert {"adam_hd_group", "adam_hd_param"} <= set(arms_lib.arm_names("adamw"))
  with pytest.raises(ValueError, match="optimizer"):
    arms_lib.make_arms("lion")


@pytest.mark.parametrize("optimizer", arms_lib.OPTIMIZERS)
def test_every_arm_reads_its_rate_when_params_have_a_scale_leaf(optimizer):
  # A LayerNorm `scale` parameter reappears in momentum traces and Adam
  # moments; a lookup by field name ("scale") then finds several values.
  params = {"norm": {"scale": jnp.ones(3), "bias": jnp.zeros(3)}, "w": jnp.ones((3, 2))}
  for arm in arms_lib.make_arms(optimizer):
    opt_state = arm.make(0.1, 100, 10).init(params)
    lr = float(arm.lr_fn(opt_state, 0.1, 100))
    assert np.isfinite(lr) and lr >= 0, arm.name


def test_protocol_validation():
  with pytest.raises(ValueError, match="disjoint"):
    _protocol(tuning_seeds=(0,))
  with pytest.raises(ValueError, match="2 eval_seeds"):
    _protocol(eval_seeds=(0,))
  with pytest.raises(ValueError, match="positive"):
    _protocol(lr_grids={"sgd": (0.0,)})


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
def test_pairs_are_independent_of_chunking_and_seeds_pair_arms(task):
  run = study_runner.make_run_pairs(task, _arm("sgd", "constant"))
  a = study_runner.run_pairs(run, [0.1, 0.1, 0.3], [0, 1, 0], batch=4)
  b = study_runner.run_pairs(run, [0.1, 0.1, 0.3], [0, 1, 0], batch=2)
  assert a["val"].shape == (3, task.num_steps // task.eval_every)
  np.testing.assert_allclose(a["val"], b["val"], rtol=1e-6)
  assert not np.allclose(a["val"][0], a["val"][1])  # seeds differ
  # Paired seeds: GreedyLR starts exactly like the constant schedule
  # (its first change needs more than `patience` = 10 steps).
  greedy = study_runner.run_pairs(study_runner.make_run_pairs(task, _arm("sgd", "greedy_step")), [0.1], [0], batch=1)
  np.testing.assert_allclose(greedy["val"][0, 0], a["val"][0, 0], rtol=1e-6)


def test_per_eval_controller_steps_on_validation_loss(task):
  task = dataclasses.replace(task, num_steps=8, eval_every=1)
  arm = _arm("adamw", "greedy_eval")
  curves = study_runner.run_pairs(study_runner.make_run_pairs(task, arm), [3e-2], [0], batch=1)
  lr, val = curves["lr"][0], curves["val"][0]
  assert np.all(np.diff(val[:3]) < 0), "validation loss should fall at first"
  # Patience 2: the third consecutive new best raises the rate, not earlier.
  np.testing.assert_allclose(lr[:2], 3e-2, rtol=1e-6)
  np.testing.assert_allclose(lr[2], 3e-2 / arms_lib.GREEDY_EVAL["factor"], rtol=1e-5)


def test_sls_counts_forward_passes(task):
  curves = study_runner.run_pairs(study_runner.make_run_pairs(task, _arm("sgd", "sls")), [1.0], [0], batch=1)
  passes = curves["forward_passes"][0]
  assert passes[-1] >= task.num_steps  # at least one trial step per update
  assert np.all(np.diff(passes) >= 0)


def test_run_cell_picks_the_best_tuning_rate(task):
  record = study_runner.run_cell(task, _arm("sgd", "cosine"), _protocol())
  final = np.asarray(record["tuning_final_val"])
  assert record["chosen_lr"] == record["lr_grid"][int(np.argmin(final.mean(axis=1)))]
  assert np.asarray(record["curves"]["test"]).shape == (3, task.num_steps // task.eval_every)
  assert record["eval_steps"][-1] == task.num_steps
  json.dumps(record)  # JSON-able


def test_run_study_resumes_without_redoing_cells(tmp_path, monkeypatch):
  protocol = _protocol()
  kwargs = dict(
    task_names=("logreg_breast_cancer",),
    optimizers=("sgd",),
    arm_names=("constant", "greedy_step", "greedy_eval"),
    protocol=protocol,
    size="smoke",
    workdir=tmp_path,
    log=lambda s: None,
  )
  real_run_cell = study_runner.run_cell
  calls = []

  def dies_after_two(task, arm, protocol):
    if len(calls) == 2:
      raise KeyboardInterrupt  # the study is killed during its third cell
    calls.append(arm.name)
    return real_run_cell(task, arm, protocol)

  monkeypatch.setattr(study_runner, "run_cell", dies_after_two)
  with pytest.raises(KeyboardInterrupt):
    study_runner.run_study(**kwargs)
  done = sorted((tmp_path / "cells").rglob("*.json"))
  assert [p.stem for p in done] == ["constant", "greedy_step"]
  mtimes = [p.stat().st_mtime_ns for p in done]

  calls.clear()
  monkeypatch.setattr(study_runner, "run_cell", lambda t, a, p: (calls.append(a.name), real_run_cell(t, a, p))[1])
  records = study_runner.run_study(**kwargs)
  assert calls == ["greedy_eval"]  # only the missing cell ran
  assert [r["arm"] for r in records] == ["constant", "greedy_step", "greedy_eval"]
  assert [p.stat().st_mtime_ns for p in done] == mtimes


def test_study_smoke_binary(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cmd = [
    sys.executable,
    "-m",
    "schedulers.study",
    "--config=schedulers.study.configs.default:smoke",
    f"--workdir={tmp_path}",
  ]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  cells = sorted((tmp_path / "cells").rglob("*.json"))
  assert len(cells) == 8  # 4 arms x 2 rows of the smoke config
  results = json.loads((tmp_path / "results.json").read_text(), parse_constant=float)
  headline = results["analysis"]["headline"]
  assert headline["greedy_step"]["n_cells"] == 4  # 2 sgd + 2 adamw baselines
  report = (tmp_path / "report.md").read_text()
  assert "## Headline" in report and "greedy_step" in report
  assert (tmp_path / "plots" / "curves_logreg_breast_cancer.png").read_bytes()[:4] == b"\x89PNG"
  # Re-running finds every cell on disk and only re-analyses.
  again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "sgd/constant" not in again.stdout
  assert json.loads((tmp_path / "results.json").read_text())["analysis"]["headline"] == headline


def test_task_gradient_clipping_is_applied(task):
  arm = _arm("sgd", "constant")
  free = study_runner.run_pairs(study_runner.make_run_pairs(task, arm), [0.3], [0], batch=1)
  clipped = dataclasses.replace(task, grad_clip=1e-9)
  tight = study_runner.run_pairs(study_runner.make_run_pairs(clipped, arm), [0.3], [0], batch=1)
  moved = lambda c: abs(c["val"][0, -1] - c["val"][0, 0])
  assert moved(tight) < 1e-4 < moved(free)  # clipped to a ~zero norm, SGD stalls
  assert tasks_lib.make_task("char_lm", size="smoke").grad_clip == tasks_lib.CHAR_LM_GRAD_CLIP


def test_study_curves_regenerates_the_evaluation_phase_bitwise(tmp_path):
  # A smoke-size study (the smoke config's 4 pairs per call and 3 eval
  # seeds), written as results.json would hold it: without its curves.
  from schedulers.study import curves as study_curves  # pylint: disable=g-import-not-at-top
  from schedulers.study import report as study_report  # pylint: disable=g-import-not-at-top

  records = study_runner.run_study(
    task_names=("logreg_breast_cancer",),
    optimizers=("sgd",),
    arm_names=("constant", "greedy_eval"),
    protocol=_protocol(),
    size="smoke",
    workdir=tmp_path / "study",
    log=lambda s: None,
  )
  compact = study_report.strict_json([study_report.compact_record(r) for r in records])
  lines = []
  full, equal = study_curves.regenerate(compact, tmp_path / "cache", "smoke", log=lines.append)
  assert equal == 2 and "2/2 cells bitwise equal" in lines[-1]
  for old, new in zip(records, full):
    for name in study_report.CURVE_NAMES:
      np.testing.assert_array_equal(study_report.curve(new, name), study_report.curve(old, name))
  # Cached cells are not re-run.
  lines.clear()
  assert study_curves.regenerate(compact, tmp_path / "cache", "smoke", log=lines.append)[1] == 2
  assert len(lines) == 1
  # A changed committed final is caught.
  compact[0]["final_test"][1] += 1e-6
  check = study_curves.compare_finals(compact[0], full[0]["curves"])
  assert not check["equal"] and 0 < check["max_abs_diff"] < 2e-6
