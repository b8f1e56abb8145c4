"""Win / loss / tie: what changing a request's interpretation did to it.

A change (a rewrite, a taught preference, a treatment arm) **wins** on a
request that failed as logged (or under the baseline) and now serves its
goal, **loses** on one that served it and now does not, and **ties**
otherwise.  Rewrite tables are compared by wins / losses (Ponnusamy et al.,
AAAI-20: win/loss 11.8).
"""

from __future__ import annotations

import numpy as np


def outcome(old: bool, new: bool) -> str:
  """`"win"`, `"loss"` or `"tie"` of a request that succeeded `old` before and `new` after the change."""
  return "win" if new and not old else "loss" if old and not new else "tie"


def counts(old: np.ndarray, new: np.ndarray) -> tuple[int, int]:
  """(wins, losses) over paired success flags before (`old`) and after (`new`) the change."""
  old, new = np.asarray(old, bool), np.asarray(new, bool)
  return int(np.sum(~old & new)), int(np.sum(old & ~new))


def ratio(wins: int, losses: int) -> float:
  """wins / losses; inf for wins without losses, NaN for neither."""
  return float(wins / losses) if losses else float("inf") if wins else float("nan")
