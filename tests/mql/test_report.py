"""mql.report: intervals against scipy, aggregation of per-seed results."""

import json

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
