"""Evaluation that can tell whether a policy reads its instruction.

A policy that ignores the instruction can still score: a self-avoiding random walk reaches the goal's 3 m
radius on a sizeable share of R2R-lite paths.  So next to SR / SPL / NE / oracle SR, every split summary
(`split_summary`) holds:

* `sr_shuffled`: SR when each path is commanded with another path's instruction (`shuffled_order`: same
  house, start and heading, a fixed permutation, so every method is scored on the same pairs);
* `language_gain`: SR - `sr_shuffled`, paired per seed (what the instruction is worth to the policy);
* `sr_<family>`, `sr_shuffled_<family>`, `language_gain_<family>` for the template families (instruction i of
  a path is family `FAMILIES[i % 3]`);
* `oracle_gap`: oracle SR - SR (the goal was passed but the policy did not stop there);
* `p_stop_at_goal`, `p_stop_away`: P(STOP | within `SUCCESS_RADIUS_M` of the goal) and P(STOP | elsewhere),
  over the steps taken before stopping (pooled over a seed's episodes).

Each field is `{"mean", "ci95", "per_seed", "episodes"}`: the mean over seeds of the per-seed value and the
half-width of a 95% t-interval over seeds (NaN with one seed, as for a deterministic agent).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nlirl.envs import instructions

METRIC_NAMES = ("success", "spl", "navigation_error", "oracle_success")
STOP_COUNTS = ("steps_at_goal", "stops_at_goal", "steps_away", "stops_away")  # per (path, instruction)
FAMILIES = instructions.FAMILIES


def shuffled_order(house, goal) -> np.ndarray:
  """perm [E]: path e is commanded with path perm[e]'s instructions (instruction i with instruction i).

  Within a house, paths sorted by (goal, index) are paired with the path half the house's count further on,
  so the substitute instruction names rooms of the same house, no path keeps its own instruction, and two
  paired paths share a goal only when more than half the house's paths do.  Paths alone in their house are
  cycled among themselves (one such path joins the largest house).  The order depends on the episodes only.

  Args:
    house: int [E] house of each path.
    goal: int [E] goal node of each path.
  """
  house, goal = np.asarray(house), np.asarray(goal)
  n = house.shape[0]
  perm = np.arange(n)
  groups = [np.flatnonzero(house == h) for h in np.unique(house)]
  alone = [g for g in groups if len(g) == 1]
  groups = [g for g in groups if len(g) > 1]
  if len(alone) > 1:
    groups.append(np.concatenate(alone))
  elif alone and groups:
    largest = max(range(len(groups)), key=lambda k: len(groups[k]))
    groups[largest] = np.concatenate([groups[largest], alone[0]])
  for members in groups:
    order = members[np.lexsort((members, goal[members]))]
    perm[order] = np.roll(order, -(len(order) // 2))
  return perm


def family_of(num_episodes: int, num_instructions: int) -> np.ndarray:
  """str [E * I]: the template family of each evaluated (path, instruction), path-major as evaluated."""
  return np.asarray([FAMILIES[i % len(FAMILIES)] for i in range(num_instructions)] * num_episodes)


def summarize_seeds(per_seed, episodes: int) -> dict[str, Any]:
  """Mean over seeds and a 95% t-interval half-width of per-seed values (NaN seeds are left out)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top

  values = np.asarray(per_seed, np.float64)
  finite = values[np.isfinite(values)]
  s = len(finite)
  mean = float(finite.mean()) if s else float("nan")
  half = float(stats.t.ppf(0.975, s - 1) * finite.std(ddof=1) / np.sqrt(s)) if s > 1 else float("nan")
  return {"mean": mean, "ci95": half, "per_seed": values.tolist(), "episodes": int(episodes)}


def summarize(per_episode: dict[str, np.ndarray]) -> dict[str, Any]:
  """Seed means and a 95% t-interval over seeds of every metric ([S, N] arrays)."""
  arrays = {k: np.asarray(v, np.float64) for k, v in per_episode.items()}
  return {k: summarize_seeds(v.mean(axis=1), v.shape[1]) for k, v in arrays.items()}


def stop_rates(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Per-seed P(STOP | at goal) and P(STOP | away) from `STOP_COUNTS` arrays [S, N] (NaN: never there)."""
  out = {}
  for name, steps, stops in (("at_goal", "steps_at_goal", "stops_at_goal"), ("away", "steps_away", "stops_away")):
    n, k = np.asarray(counts[steps]).sum(axis=1), np.asarray(counts[stops]).sum(axis=1)
    out[f"p_stop_{name}"] = np.where(n > 0, k / np.maximum(n, 1), np.nan)
  return out


def split_summary(
  true: dict[str, np.ndarray], shuffled: dict[str, np.ndarray] | None, *, num_instructions: int
) -> dict[str, Any]:
  """Every field of one split (module docstring) from per-(path, instruction) arrays [S, E * I].

  Args:
    true: METRIC_NAMES (and, if measured, STOP_COUNTS) with each path's own instructions.
    shuffled: the same with the instructions of `shuffled_order`, or None (no shuffled fields).
    num_instructions: instructions per path (I), to tell the families apart.
  """
  success = np.asarray(true["success"], np.float64)
  seeds, n = success.shape
  out = summarize({k: true[k] for k in METRIC_NAMES})
  out["oracle_gap"] = summarize_seeds((np.asarray(true["oracle_success"]) - success).mean(axis=1), n)
  family = family_of(n // num_instructions, num_instructions)
  for f in FAMILIES:
    if (family == f).any():
      out[f"sr_{f}"] = summarize_seeds(success[:, family == f].mean(axis=1), int((family == f).sum()))
  if all(k in true for k in STOP_COUNTS):
    for k, v in stop_rates(true).items():
      out[k] = summarize_seeds(v, n)
  if shuffled is not None:
    other = np.asarray(shuffled["success"], np.float64)
    if other.shape != (seeds, n):
      raise ValueError(f"shuffled success has shape {other.shape}, expected {(seeds, n)}")
    out["sr_shuffled"] = summarize_seeds(other.mean(axis=1), n)
    out["language_gain"] = summarize_seeds((success - other).mean(axis=1), n)
    for f in FAMILIES:
      cols = family == f
      if cols.any():
        out[f"sr_shuffled_{f}"] = summarize_seeds(other[:, cols].mean(axis=1), int(cols.sum()))
        out[f"language_gain_{f}"] = summarize_seeds((success - other)[:, cols].mean(axis=1), int(cols.sum()))
  return out
