"""Tests of schedulers.study.report on synthetic study records.

The fixture builds 2 tasks × 2 optimizer rows × 4 baselines + 2 GreedyLR
variants × 5 paired seeds, with final test losses constructed so that every
cell's label is known: GreedyLR is clearly better than 'constant', equal to
'cosine', clearly worse than 'step' and inconclusive against 'linear'.
greedy_eval is absent from one row and diverges (NaN) on one seed of
another, which makes that row's cells 'worse'.
"""

import json
import math

import numpy as np
import pytest

from schedulers.study import outputs as study_outputs
from schedulers.study import report as study_report
from schedulers.study import stats

NUM_STEPS = 100
EVAL_EVERY = 10
EVAL_STEPS = list(range(EVAL_EVERY, NUM_STEPS + 1, EVAL_EVERY))
SEEDS = [0, 1, 2, 3, 4]
SEED_EFFECT = np.array([0.0, 0.01, -0.01, 0.02, -0.02])  # shared by all arms
GREEDY_FINAL = 0.9
# Baseline final loss (before the seed effect) and per-seed jitter of
# d = greedy − baseline, so that d = GREEDY_FINAL − final − jitter.  No two
# differences tie, which keeps scipy's Wilcoxon on its fast exact path.
BASELINES = {
  "constant": (1.0, np.array([0.0, 0.001, -0.001, 0.002, 0.0015])),  # better
  "cosine": (0.9, np.array([-0.001, -0.002, 0.0, -0.0015, -0.0005])),  # equal
  "step": (0.8, np.array([0.0, 0.002, -0.001, 0.001, 0.0005])),  # worse
  "linear": (0.9, np.array([-0.08, 0.02, -0.09, 0.03, -0.03])),  # inconcl.
}
EXPECTED = {"constant": stats.BETTER, "cosine": stats.EQUAL, "step": stats.WORSE, "linear": stats.INCONCLUSIVE}
TASKS = ("task_a", "task_b")
OPTIMIZERS = ("sgd", "adamw")
KWARGS = dict(
  delta_rel=0.01, k_std=1.0, sensitivity_delta_rels=(0.005, 0.01, 0.02), absolute_margin=0.1, confidence=0.95
)


def _record(task, optimizer, arm, final, *, shape=0.5, diverge_seed=None, seeds=SEEDS):
  """One study_runner-style record whose test curve ends at `final`.

  test[s, t] = final[s] + shape·(1 − step_t/num_steps): baselines converge
  from above (shape 0.5), GreedyLR arms are flat (shape 0).
  """
  frac = np.asarray(EVAL_STEPS) / NUM_STEPS
  test = np.asarray(final)[:, None] + shape * (1.0 - frac)[None, :]
  lr = np.tile(0.1 * (1.0 - 0.5 * frac), (len(seeds), 1))
  nonfinite = np.zeros_like(test)
  if diverge_seed is not None:
    test[diverge_seed, 7:] = np.nan
    lr[diverge_seed, 7:] = np.nan
    nonfinite[diverge_seed, 7:] = 3
  passes = np.tile(np.asarray(EVAL_STEPS, float) * 0.5, (len(seeds), 1))
  curves = {
    "val": test + 0.01,
    "test": test,
    "train": test - 0.05,
    "lr": lr,
    "forward_passes": passes if arm == "sls" else 0 * passes,
    "nonfinite": nonfinite,
  }
  grid = [0.01, 0.1, 1.0]
  return {
    "task": task,
    "optimizer": optimizer,
    "arm": arm,
    "metric": "held-out cross-entropy (nats)",
    "num_steps": NUM_STEPS,
    "eval_steps": EVAL_STEPS,
    "lr_grid": grid,
    "tuning_seeds": [1000],
    "tuning_final_val": [[1.0], [0.5], [float("inf")]],
    "chosen_lr": 0.1 if arm != "constant" else 0.01,
    "chosen_at_grid_edge": arm == "constant",
    "eval_seeds": list(seeds),
    "curves": {k: v.tolist() for k, v in curves.items()},
    "seconds": {"tuning": 1.5, "evaluation": 0.5},
  }


def _study():
  records = []
  for task in TASKS:
    for opt in OPTIMIZERS:
      for arm, (final, jitter) in BASELINES.items():
        records.append(_record(task, opt, arm, final + SEED_EFFECT + jitter))
      greedy = GREEDY_FINAL + SEED_EFFECT
      records.append(_record(task, opt, "greedy_step", greedy, shape=0.0))
      if (task, opt) == ("task_b", "adamw"):
        continue  # greedy_eval absent from this row
      records.append(
        _record(
          task, opt, "greedy_eval", greedy, shape=0.0, diverge_seed=2 if (task, opt) == ("task_b", "sgd") else None
        )
      )
  return records


@pytest.fixture(scope="module")
def records():
  return _study()


@pytest.fixture(scope="module")
def analysis(records):
  return study_report.analyze(records, **KWARGS)


@pytest.fixture(scope="module")
def outputs(analysis, records, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("study")
  return workdir, study_outputs.write_outputs(analysis, records, workdir)


def _cells(analysis, variant, endpoint="final"):
  return [c for c in analysis["cells"] if c["variant"] == variant and c["endpoint"] == endpoint]


# ----------------------------------------------------------------------------
# Endpoints


@pytest.mark.parametrize(
  "steps, num_steps, fraction, expected",
  [
    (EVAL_STEPS, 100, 0.1, 0),  # step 10
    (EVAL_STEPS, 100, 0.5, 4),  # step 50
    (EVAL_STEPS, 100, 1.0, 9),  # step 100
    ([4, 8], 8, 0.1, 0),  # smoke budget: 0.8 -> step 4
    ([4, 8], 8, 0.5, 0),  # exactly step 4
    ([75 * (i + 1) for i in range(20)], 1500, 0.1, 1),  # 150 -> step 150
    ([2, 4, 6, 8], 8, 0.375, 0),  # tie (3: steps 2 and 4) -> earlier
    ([30, 60, 90], 90, 0.5, 0),  # tie at 45 -> step 30
  ],
)
def test_endpoint_index(steps, num_steps, fraction, expected):
  assert study_report.endpoint_index(steps, num_steps, fraction) == expected


def test_endpoint_losses_pick_the_right_columns(records):
  rec = records[0]  # task_a/sgd/constant
  test = np.asarray(rec["curves"]["test"])
  np.testing.assert_allclose(study_report.endpoint_losses(rec, "at_10"), test[:, 0])
  np.testing.assert_allclose(study_report.endpoint_losses(rec, "at_50"), test[:, 4])
  np.testing.assert_allclose(study_report.endpoint_losses(rec, "final"), test[:, -1])
  np.testing.assert_allclose(study_report.endpoint_losses(rec, "auc"), np.asarray(rec["curves"]["val"]).mean(axis=1))


def test_endpoint_steps_in_setup(analysis):
  for task in TASKS:
    steps = analysis["setup"]["tasks"][task]["endpoint_steps"]
    assert steps == {"at_10": 10, "at_50": 50, "final": 100}


def test_variants_match_arms():
  from schedulers.study import arms  # pylint: disable=g-import-not-at-top

  assert study_report.VARIANTS == arms.GREEDY_ARMS


# ----------------------------------------------------------------------------
# Labels, counts, headline


def test_greedy_step_labels(analysis):
  cells = _cells(analysis, "greedy_step")
  assert len(cells) == len(TASKS) * len(OPTIMIZERS) * len(BASELINES)
  for c in cells:
    assert c["label"] == EXPECTED[c["baseline"]], c
    assert c["greedy_mean"] == pytest.approx(GREEDY_FINAL)
    assert c["lower"] <= c["mean_diff"] <= c["upper"]
    assert c["delta"] == pytest.approx(
      max(0.01 * c["baseline_mean"], np.std(SEED_EFFECT + BASELINES[c["baseline"]][1], ddof=1))
    )


def test_greedy_eval_labels_absent_row_and_nan(analysis):
  cells = _cells(analysis, "greedy_eval")
  rows = {(c["task"], c["optimizer"]) for c in cells}
  assert ("task_b", "adamw") not in rows  # variant absent: no cells
  assert len(cells) == 3 * len(BASELINES)
  for c in cells:
    if (c["task"], c["optimizer"]) == ("task_b", "sgd"):
      # GreedyLR NaN on a seed where the baseline is finite: 'worse'.
      assert c["label"] == stats.WORSE
      assert math.isnan(c["mean_diff"])
    else:
      assert c["label"] == EXPECTED[c["baseline"]]
  coverage = {(c["task"], c["optimizer"]): c["missing_variants"] for c in analysis["coverage"]}
  assert coverage[("task_b", "adamw")] == ["greedy_eval"]


def test_headline(analysis):
  head = analysis["headline"]
  step, ev = head["greedy_step"], head["greedy_eval"]
  assert step["n_cells"] == 16
  assert step["counts"] == {"better": 4, "equal": 4, "worse": 4, "inconclusive": 4}
  assert step["equal_or_better_rate"] == pytest.approx(0.5)
  assert step["better_rate"] == pytest.approx(0.25)
  assert tuple(step["equal_or_better_ci"]) == pytest.approx(stats.clopper_pearson(8, 16))
  assert step["claim_supported"] is False
  # abs 0.1 margin: 'step' (d = +0.1) stays worse or inconclusive, the
  # inconclusive 'linear' cells become equal -> 12/16.
  assert step["paper_margin_rate"] == pytest.approx(12 / 16)
  assert ev["n_cells"] == 12
  assert ev["counts"] == {"better": 2, "equal": 2, "worse": 6, "inconclusive": 2}
  assert ev["equal_or_better_rate"] == pytest.approx(4 / 12)
  assert head["primary_endpoint"] == "final"
  json.dumps(head, allow_nan=False)  # small, strict-JSON-able


def test_other_endpoints(analysis):
  # GreedyLR curves are flat, baselines start 0.5·(1 − frac) higher: at 10%
  # and 50% GreedyLR is better than every baseline.
  for endpoint in ("at_10", "at_50"):
    s = analysis["summaries"]["greedy_step"][endpoint]
    assert s["counts"]["better"] == 16, endpoint
  assert analysis["summaries"]["greedy_step"]["auc"]["n_cells"] == 16


def test_sensitivity_and_per_baseline(analysis):
  s = analysis["summaries"]["greedy_step"]["final"]
  assert [x["margin"] for x in s["sensitivity"]] == ["rel=0.005", "rel=0.01", "rel=0.02", "abs=0.1"]
  assert s["per_baseline"]["constant"] == {
    "win": 4,
    "tie": 0,
    "loss": 0,
    "inconclusive": 0,
    "n": 4,
    "equal_or_better_rate": 1.0,
  }
  assert s["per_baseline"]["step"]["loss"] == 4
  assert "cells" not in s  # moved to analysis['cells']


def test_claim_supported_with_many_cells():
  # 36 baselines all clearly worse than GreedyLR: CP lower end of 36/36 is
  # 0.9026 > 0.9, so the claim is supported.
  tie_free = 1e-3 * np.arange(5)
  recs = [_record("t", "sgd", f"b{i:02d}", 1.2 + SEED_EFFECT + tie_free) for i in range(36)]
  recs.append(_record("t", "sgd", "greedy_step", 0.9 + SEED_EFFECT))
  head = study_report.analyze(recs, **KWARGS)["headline"]
  assert head["greedy_step"]["claim_supported"] is True
  assert head["greedy_eval"]["n_cells"] == 0
  assert head["greedy_eval"]["equal_or_better_rate"] is None
  assert "**supported**" in study_report.verdict("greedy_step", head["greedy_step"])
  assert "no verdict" in study_report.verdict("greedy_eval", head["greedy_eval"])


def test_profiles(analysis):
  prof = analysis["profiles"]["greedy_step"]
  assert prof["offset"] is None  # all losses positive: plain ratios
  const = prof["pairs"]["constant"]
  assert const["n_problems"] == 4 * len(SEEDS)
  assert const["greedy_wins"] == 1.0 and const["baseline_wins"] == 0.0
  assert prof["pairs"]["step"]["baseline_wins"] == 1.0
  assert set(analysis["profiles"]["greedy_eval"]["pairs"]) == set(BASELINES)


def test_arm_table(analysis):
  rows = {(e["task"], e["optimizer"], e["arm"]): e for e in analysis["arms"]}
  const = rows[("task_a", "sgd", "constant")]
  assert const["final_test"]["mean"] == pytest.approx(np.mean(1.0 + SEED_EFFECT + BASELINES["constant"][1]))
  assert const["chosen_at_grid_edge"] is True
  div = rows[("task_b", "sgd", "greedy_eval")]
  assert div["final_test"]["n_diverged"] == 1
  assert div["nonfinite_updates_max"] == 3
  assert div["final_test"]["mean"] == pytest.approx(GREEDY_FINAL, abs=0.02)


# ----------------------------------------------------------------------------
# Outputs


def test_files_exist(outputs):
  workdir, paths = outputs
  names = {p.relative_to(workdir).as_posix() for p in paths}
  assert names == {
    "results.json",
    "curves.npz",
    "report.md",
    "plots/curves_task_a.png",
    "plots/lr_task_a.png",
    "plots/curves_task_b.png",
    "plots/lr_task_b.png",
    "plots/profile_greedy_step.png",
    "plots/profile_greedy_eval.png",
  }
  for p in paths:
    assert p.exists() and p.stat().st_size > 0
    if p.suffix == ".png":
      assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_json_is_strict(outputs):
  workdir, _ = outputs
  text = (workdir / "results.json").read_text()

  def reject(token):
    raise ValueError(f"non-strict JSON constant {token}")

  data = json.loads(text, parse_constant=reject)
  assert data["analysis"]["headline"]["greedy_step"]["n_cells"] == 16
  rec = data["records"][0]
  assert "curves" not in rec and len(rec["final_test"]) == len(SEEDS)
  # inf in tuning_final_val and NaN in the diverged run became null.
  assert rec["tuning_final_val"][2] == [None]
  cell = next(
    c
    for c in data["analysis"]["cells"]
    if c["variant"] == "greedy_eval" and c["task"] == "task_b" and c["endpoint"] == "final"
  )
  assert cell["mean_diff"] is None


def test_load_records_recomputes_the_analysis(outputs, analysis, records):
  workdir, _ = outputs
  loaded = study_report.load_records(workdir)
  assert [study_report.curves_key(r, "test") for r in loaded] == [study_report.curves_key(r, "test") for r in records]
  for old, new in zip(records, loaded):
    for name in study_report.CURVE_NAMES:
      np.testing.assert_array_equal(study_report.curve(new, name), study_report.curve(old, name))
  committed = study_report.load_results(workdir)["analysis"]
  again = study_report.analyze(loaded, **study_report.settings_kwargs(committed))
  assert study_report.strict_json(again) == study_report.strict_json(analysis)
  assert json.loads(json.dumps(study_report.strict_json(again))) == committed


def test_curves_keep_float32_int32_nan_and_inf(tmp_path):
  rec = _record("t", "sgd", "constant", 1.0 + SEED_EFFECT, diverge_seed=0)
  rec["curves"] = {k: np.asarray(v, np.float32) for k, v in rec["curves"].items()}
  rec["curves"]["nonfinite"] = rec["curves"]["nonfinite"].astype(np.int32)
  rec["curves"]["test"][1, -1] = np.inf
  path = tmp_path / "curves.npz"
  study_report.write_curves([rec], path)
  with np.load(path) as z:
    test = z["t/sgd/constant/test"]
    assert test.dtype == np.float32 and test.shape == (len(SEEDS), 10)
    assert np.isnan(test[0, -1]) and np.isposinf(test[1, -1])
    assert z["t/sgd/constant/nonfinite"].dtype == np.int32
  # JSON-style lists (Python floats of float32 values) shrink to float32.
  rec["curves"] = {k: v.tolist() for k, v in rec["curves"].items()}
  rec["curves"]["val"][2][3] = None
  study_report.write_curves([rec], path)
  with np.load(path) as z:
    assert z["t/sgd/constant/val"].dtype == np.float32
    assert np.isnan(z["t/sgd/constant/val"][2, 3])


def test_load_records_needs_matching_curves(outputs, tmp_path):
  workdir, _ = outputs
  (tmp_path / "results.json").write_bytes((workdir / "results.json").read_bytes())
  with pytest.raises(FileNotFoundError):
    study_report.load_records(tmp_path)
  with np.load(workdir / "curves.npz") as z:
    arrays = dict(z)
  key = next(k for k in arrays if k.endswith("/test"))
  arrays[key] = arrays[key].copy()
  arrays[key][0, -1] += 1e-3
  np.savez_compressed(tmp_path / "curves.npz", **arrays)
  with pytest.raises(ValueError, match="final_test"):
    study_report.load_records(tmp_path)
  del arrays[key]
  np.savez_compressed(tmp_path / "curves.npz", **arrays)
  with pytest.raises(KeyError):
    study_report.load_records(tmp_path)


def test_report_contents(outputs, analysis):
  workdir, _ = outputs
  report = (workdir / "report.md").read_text()
  step = analysis["headline"]["greedy_step"]
  low, high = step["equal_or_better_ci"]
  assert "50.0%" in report and f"{100 * low:.1f}%" in report
  assert f"{100 * high:.1f}%" in report
  assert "(8/16)" in report and "(4/12)" in report
  assert report.count("is **not supported**") == 2
  for v in study_report.VARIANTS:
    assert study_report.verdict(v, analysis["headline"][v]) in report
  for heading in (
    "## Headline",
    "## Setup",
    "## Sensitivity",
    "## Endpoints",
    "## Per-baseline",
    "### task_a",
    "## Cost",
    "## Plots",
  ):
    assert heading in report, heading
  assert "δ_rel = 0.5%" in report and "absolute 0.1 (paper)" in report
  assert "(lr 0.01*)" in report  # grid-edge marker
  assert "(1/5 diverged)" in report
  assert "task_b/adamw lacks greedy_eval" in report
  assert "plots/profile_greedy_step.png" in report


def test_nan_and_inf_curves(tmp_path):
  # A baseline that diverged on every seed and one greedy seed at +inf.
  base = _record("t", "sgd", "constant", 1.0 + SEED_EFFECT, diverge_seed=0)
  for s in range(len(SEEDS)):
    base["curves"]["test"][s][-1] = float("nan")
  greedy = _record("t", "sgd", "greedy_step", 0.9 + SEED_EFFECT, shape=0.0)
  greedy["curves"]["test"][3][-1] = float("inf")
  greedy["curves"]["val"][1][2] = None  # a JSON null
  other = _record("t", "sgd", "cosine", 0.95 + SEED_EFFECT)
  recs = [base, other, greedy]
  analysis = study_report.analyze(recs, **KWARGS)
  labels = {c["baseline"]: c["label"] for c in _cells(analysis, "greedy_step")}
  assert labels == {"constant": stats.INCONCLUSIVE, "cosine": stats.WORSE}
  auc = {c["baseline"]: c for c in _cells(analysis, "greedy_step", "auc")}
  assert auc["cosine"]["label"] == stats.WORSE  # NaN AUC on seed 1
  paths = study_outputs.write_outputs(analysis, recs, tmp_path)
  json.loads((tmp_path / "results.json").read_text(), parse_constant=lambda t: (_ for _ in ()).throw(ValueError(t)))
  assert all(p.exists() for p in paths)
  assert "(5/5 diverged)" in (tmp_path / "report.md").read_text()


def test_partial_study_without_greedy(tmp_path):
  recs = [_record("t", "adamw", "constant", 1.0 + SEED_EFFECT)]
  analysis = study_report.analyze(recs, **KWARGS)
  assert analysis["cells"] == []
  assert analysis["headline"]["greedy_step"]["n_cells"] == 0
  paths = study_outputs.write_outputs(analysis, recs, tmp_path)
  names = sorted(p.name for p in paths)
  assert names == ["curves.npz", "curves_t.png", "lr_t.png", "report.md", "results.json"]
  assert "no verdict" in (tmp_path / "report.md").read_text()


def test_profile_offset_for_nonpositive_losses():
  recs = [
    _record("t", "sgd", "constant", -1.0 + SEED_EFFECT),
    _record("t", "sgd", "greedy_step", -1.1 + SEED_EFFECT, shape=0.0),
  ]
  prof = study_report.analyze(recs, **KWARGS)["profiles"]["greedy_step"]
  assert prof["offset"] == pytest.approx(0.1)  # the absolute margin
  pair = prof["pairs"]["constant"]
  assert pair["greedy_wins"] == 1.0 and pair["baseline_wins"] == 0.0
  # constant is 0.1 above greedy: tau = 1 + 0.1/0.1 = 2 reaches it.
  taus = np.asarray(prof["taus"])
  rho = np.asarray(pair["rho_baseline"])
  assert rho[taus < 1.99].max() == 0.0 and rho[taus > 2.01].min() == 1.0


def test_study_curves_check_rerenders_written_outputs(outputs):
  from schedulers.study import curves as study_curves  # pylint: disable=g-import-not-at-top

  workdir, paths = outputs
  analysis = study_report.load_results(workdir)["analysis"]
  assert study_curves.report_plot_paths(analysis, study_report.load_records(workdir), workdir) == [
    p for p in paths if p.suffix == ".png"
  ]
  lines = []
  assert study_curves.check_results(workdir, log=lines.append)
  assert "identical; report.md: identical" in lines[0]
