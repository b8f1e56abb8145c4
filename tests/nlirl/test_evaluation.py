"""nlirl.evaluation: the shuffled-instruction pairing, the language gain and the per-family / stopping fields."""

import numpy as np
import pytest
from scipy import stats

from nlirl import envs, evaluation, regimes


@pytest.mark.parametrize("split", ["val_seen", "val_unseen"])
def test_shuffled_order_is_a_same_house_derangement_shared_by_every_caller(split):
  _, episodes = envs.load_arrays(split)
  house, goal = np.asarray(episodes.house), np.asarray(episodes.goal)
  perm = evaluation.shuffled_order(house, goal)
  assert sorted(perm.tolist()) == list(range(len(perm)))  # a permutation
  assert not np.any(perm == np.arange(len(perm)))  # no path keeps its instruction
  np.testing.assert_array_equal(house[perm], house)  # the substitute comes from the same house
  assert np.mean(goal[perm] == goal) < 0.02  # and almost never leads to the same goal
  np.testing.assert_array_equal(evaluation.shuffled_order(house.copy(), goal.copy()), perm)  # fixed


def test_shuffled_order_of_an_evaluation_subset_and_of_lone_paths():
  _, episodes = envs.load_arrays("val_seen")
  keep = regimes.subset(int(episodes.house.shape[0]), 30, 0)  # 30 of 61 houses' paths: many alone
  house, goal = np.asarray(episodes.house)[keep], np.asarray(episodes.goal)[keep]
  perm = evaluation.shuffled_order(house, goal)
  assert sorted(perm.tolist()) == list(range(30)) and not np.any(perm == np.arange(30))
  shared = np.array([np.sum(house == h) > 1 for h in house])
  np.testing.assert_array_equal(house[perm][shared], house[shared])  # paths with a house-mate stay home
  assert not np.any(evaluation.shuffled_order([0, 0, 1], [1, 2, 3]) == np.arange(3))  # one lone path
  np.testing.assert_array_equal(evaluation.shuffled_order([5], [1]), [0])  # one path: nothing to swap


def test_split_summary_fields_language_gain_and_families():
  rng = np.random.default_rng(0)
  seeds, paths, instr = 3, 50, 3
  n = paths * instr
  true = {k: rng.random((seeds, n)) for k in evaluation.METRIC_NAMES}
  true["success"] = (rng.random((seeds, n)) < 0.6).astype(np.float32)
  true["oracle_success"] = np.maximum(true["success"], rng.random((seeds, n)) < 0.3)
  counts = {k: rng.integers(0, 4, (seeds, n)) for k in evaluation.STOP_COUNTS}
  shuffled = {k: v.copy() for k, v in true.items()}
  shuffled["success"] = (rng.random((seeds, n)) < 0.2).astype(np.float32)
  out = evaluation.split_summary({**true, **counts}, shuffled, num_instructions=instr)
  for k in ("sr_shuffled", "language_gain", "oracle_gap", "p_stop_at_goal", "p_stop_away", *evaluation.METRIC_NAMES):
    assert set(out[k]) == {"mean", "ci95", "per_seed", "episodes"}, k
  sr, sr_shuffled = true["success"].mean(1), shuffled["success"].mean(1)
  np.testing.assert_allclose(out["success"]["per_seed"], sr)
  np.testing.assert_allclose(out["sr_shuffled"]["per_seed"], sr_shuffled)
  np.testing.assert_allclose(out["language_gain"]["per_seed"], sr - sr_shuffled)  # paired per seed
  np.testing.assert_allclose(out["language_gain"]["mean"], out["success"]["mean"] - out["sr_shuffled"]["mean"])
  diff = sr - sr_shuffled
  half = stats.t.ppf(0.975, seeds - 1) * diff.std(ddof=1) / np.sqrt(seeds)
  np.testing.assert_allclose(out["language_gain"]["ci95"], half, rtol=1e-5)
  for i, family in enumerate(evaluation.FAMILIES):  # instruction i of every path, path-major
    np.testing.assert_allclose(out[f"sr_{family}"]["per_seed"], true["success"][:, i::instr].mean(1))
    np.testing.assert_allclose(
      out[f"language_gain_{family}"]["per_seed"], (true["success"] - shuffled["success"])[:, i::instr].mean(1)
    )
    assert out[f"sr_{family}"]["episodes"] == paths
  np.testing.assert_allclose(out["oracle_gap"]["per_seed"], (true["oracle_success"] - true["success"]).mean(1))
  np.testing.assert_allclose(
    out["p_stop_at_goal"]["per_seed"], counts["stops_at_goal"].sum(1) / counts["steps_at_goal"].sum(1)
  )


def test_split_summary_without_shuffled_or_stop_counts_and_with_one_seed():
  true = {k: np.ones((1, 6)) for k in evaluation.METRIC_NAMES}
  out = evaluation.split_summary(true, None, num_instructions=3)
  assert "sr_shuffled" not in out and "p_stop_at_goal" not in out and "sr_goal" in out
  assert out["success"]["mean"] == 1.0 and np.isnan(out["success"]["ci95"])
  counts = {k: np.zeros((2, 6), np.int32) for k in evaluation.STOP_COUNTS}  # never near the goal
  rates = evaluation.stop_rates(counts)
  assert np.all(np.isnan(rates["p_stop_at_goal"]))
  assert np.isnan(evaluation.summarize_seeds(rates["p_stop_at_goal"], 6)["mean"])
