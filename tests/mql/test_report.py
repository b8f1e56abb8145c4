"""mql.report: intervals against scipy, aggregation of per-seed results, committed tables rebuilt."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
from scipy import stats

from mql import report


def test_interval_matches_scipy():
  x = np.array([1.0, 2.5, 0.5, 3.0])
  mean, lo, hi = report.interval(x)
  ref = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
  np.testing.assert_allclose([lo, hi], ref, rtol=1e-12)
  assert mean == x.mean()
  assert np.isnan(report.interval([1.0])[1])


def test_summarize_and_markdown_from_workdirs(tmp_path):
  rng = np.random.default_rng(0)
  for seed in range(3):
    workdir = tmp_path / "mql" / f"seed{seed}"
    workdir.mkdir(parents=True)
    before = rng.normal(-10, 1, (4, 2))
    after = before + 1.0 + seed
    results = {"seed": seed, "per_task": {"before": before.tolist(), "after": after.tolist()}}
    results["summary"] = {"env_steps": 100, "classifier_accuracy": 0.8, "ess": 0.5}
    (workdir / "results.json").write_text(json.dumps(results))
    rows = [
      {"step": 1, "env_steps": 50, "episode_return": -12.0},
      {"step": 2, "env_steps": 100, "episode_return": -11.0},
    ]
    rows.append({"step": 2, "eval/return_before_mql": before.mean(), "eval/return_after_mql": after.mean()})
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  runs = report.load_method(tmp_path / "mql")
  summary = report.summarize(runs)
  assert summary["seeds"] == [0, 1, 2]
  np.testing.assert_allclose(summary["gain_mql"][0], 2.0)  # gains 1, 2, 3
  np.testing.assert_allclose(summary["gain_mql"][1:], report.interval([1.0, 2.0, 3.0])[1:])
  assert summary["tasks_improved"] == 1.0
  text = report.markdown("point-robot", {"mql": summary})
  assert "| MQL (TD3 + GRU context) | 3 | 100 |" in text
  report.plot("point-robot", {"mql": runs}, tmp_path / "return.png")
  assert (tmp_path / "return.png").read_bytes()[:4] == b"\x89PNG"


def _adaptation_file(directory, label, gains, rng, check=True):
  """A synthetic `mql.adapt` output: 3 tasks x 2 episodes, variants `default` and `other`."""
  variants = {}
  for name, gain in gains.items():
    before = rng.normal(-5, 1, (3, 2))
    variants[name] = {
      "meaning": f"the {name} variant",
      "settings": {"C": 0.1},
      "per_task": {
        "before": before.tolist(),
        "after1": (before - 1).tolist(),
        "after": (before + gain).tolist(),
        **{field: [0.5, 0.5, 0.5] for field, _ in report.DIAGNOSTICS},
      },
    }
  out = {"label": label, "family": "point-robot", "env_steps": 96000, "variants": variants}
  if check:
    out["classifier_check"] = {
      "C": [0.1, 10.0],
      "held_out_tasks": [0, 1],
      "accuracy": [[0.8, 0.9], [0.8, 0.95]],
      "majority_rate": [[0.8, 0.8], [0.8, 0.8]],
      "beta_own": [[1.0, 2.0], [1.0, 2.0]],
      "beta_other": [[1.0, 0.5], [1.0, 0.5]],
      "auc": [[0.5, 0.7], [0.5, 0.9]],
    }
  path = directory / label / "adaptation.json"
  path.parent.mkdir(parents=True)
  path.write_text(json.dumps(out))


def test_adaptation_table_pairs_variants_with_the_checkpoint_as_the_unit(tmp_path):
  rng = np.random.default_rng(1)
  for i, (a, b) in enumerate([(1.0, 0.0), (2.0, 0.5), (3.0, 0.5)]):
    _adaptation_file(tmp_path / "t", f"ckpt{i}", {"default": a, "other": b}, rng)
  summary = report.summarize_adaptation(report.load_adaptation(tmp_path / "t"))
  assert summary["units"] == ["ckpt0", "ckpt1", "ckpt2"]
  default, other = summary["variants"]["default"], summary["variants"]["other"]
  np.testing.assert_allclose(default["gain"], report.interval([1.0, 2.0, 3.0]), rtol=1e-12)
  np.testing.assert_allclose(other["minus_reference"], report.interval([-1.0, -1.5, -2.5]), rtol=1e-12)
  np.testing.assert_allclose(default["stage1_gain"][0], -1.0)
  # The (checkpoint, task)-paired interval: 9 pairs, narrower than the 3-unit one.
  assert default["gain_paired_tasks"][2] - default["gain_paired_tasks"][1] < default["gain"][2] - default["gain"][1]
  rows = summary["classifier_check"]["rows"]
  np.testing.assert_allclose(rows[1]["accuracy"], 0.925)
  np.testing.assert_allclose(rows[1]["accuracy_minus_majority"][0], 0.125, rtol=1e-12)
  np.testing.assert_allclose(rows[1]["auc"][0], 0.8, rtol=1e-12)
  np.testing.assert_allclose(rows[1]["log_beta_ratio"][0], np.log(4.0), rtol=1e-12)
  text = report.markdown_adaptation("t", summary)
  assert "| other | 0.33 [" in text and "the other variant" in text and "| 10 | 0.925 | 0.800 |" in text
  assert "| 0.800 [0.800, 0.800] | 1.39 [1.39, 1.39] |" in text


def test_every_committed_table_is_rebuilt_from_its_committed_runs(tmp_path):
  """`python -m mql.report` rebuilds each mql/results/<table>/results.md from mql/results/runs/<table>/.

  Tables whose per-seed files were lost must say so instead.
  """
  root = pathlib.Path(__file__).resolve().parents[2]
  results = root / "mql" / "results"
  tables = sorted(p.parent.name for p in results.glob("*/results.md"))
  assert tables
  rebuilt = 0
  for table in tables:
    committed = (results / table / "results.md").read_text()
    if not (results / "runs" / table).is_dir():
      assert report.NOT_REBUILDABLE in committed, f"{table}: no mql/results/runs/{table}/ and no note saying so"
      continue
    out = tmp_path / table
    subprocess.run(
      [sys.executable, "-m", "mql.report", f"--table={table}", f"--runs={results / 'runs'}", f"--out={out}"],
      check=True,
      cwd=root,
      capture_output=True,
      env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert (out / "results.md").read_text() == committed, table
    assert json.loads((out / "results.json").read_text()) == json.loads((results / table / "results.json").read_text())
    rebuilt += 1
  assert rebuilt >= 1  # the adaptation tables have their per-checkpoint files committed
