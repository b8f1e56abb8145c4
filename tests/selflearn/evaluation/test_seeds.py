"""The summary over simulator seeds: each metric's mean and 95% t-interval, per task and world."""

import json

import numpy as np
import pytest
import scipy.stats

from selflearn.evaluation import seeds


def _amc(wins, losses, seen):
  test = {"wins": wins, "losses": losses, "ties_both_served": 0, "ties_both_failed": 1, "precision_at_1": 0.5}
  return {"recurrence": {"true_text_seen": seen}, "test": test, "variants": [], "chain": {"rules": 3}}


def test_summary_is_the_t_interval_over_seeds(tmp_path):
  runs = tmp_path / "runs"
  values = {0: (10, 2, 0.4), 1: (14, 1, 0.5), 2: (9, 3, 0.45)}
  for seed, v in values.items():
    (runs / f"amc_open_s{seed}").mkdir(parents=True)
    (runs / f"amc_open_s{seed}" / "results.json").write_text(json.dumps(_amc(*v)))
  (runs / "amc_closed_s0").mkdir()
  (runs / "amc_closed_s0" / "results.json").write_text(json.dumps(_amc(20, 0, 0.99)))
  (runs / "not_a_run").mkdir()
  assert seeds.main(["seeds", f"--runs={runs}", f"--out={tmp_path / 'out'}"]) == 0
  summary = json.loads((tmp_path / "out" / "summary.json").read_text())
  wins = summary["amc"]["open"]["metrics"]["wins"]
  x = np.array([10, 14, 9.0])
  half = scipy.stats.t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)
  assert wins["mean"] == pytest.approx(x.mean()) and wins["high"] == pytest.approx(x.mean() + half)
  assert summary["amc"]["closed"]["seeds"] == [0]
  assert np.isnan(summary["amc"]["closed"]["metrics"]["win/loss (seeds with a loss)"]["mean"])  # no loss: no ratio
  md = (tmp_path / "out" / "summary.md").read_text()
  assert "| wins | 11.0 [4.43, 17.6] | 20.0 (1 seed) |" in md and "open world | closed world" in md
  assert (tmp_path / "out" / "runs" / "amc_open_s1" / "results.json").is_file()
  assert seeds.main(["seeds", f"--runs={tmp_path / 'missing'}", f"--out={tmp_path / 'o'}"]) == 2
