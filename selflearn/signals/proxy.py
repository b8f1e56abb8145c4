"""Observable stand-ins for a rewrite's win and loss, for choosing thresholds without the judge.

On the validation split nothing may consult the ground truth or the
simulated judge, so a trigger threshold is chosen from what the log itself
shows (`sessions.friction` and the user's own next attempt):

* **agree**: the rewrite fires on a request that met friction, and the
  user's next request of the same session (within `rephrase_gap`) says,
  word for word, what the rewrite says: the user's own correction;
* **disturb**: the rewrite fires on a request that met no friction (the
  user looked served; a rewrite there risks a loss).

`select_threshold` keeps the threshold with the most `agree - disturb`
(ties: the highest, the most conservative); when every threshold tried
disturbs more than it agrees, the layer is switched off (threshold +inf:
it never fires).  Both counts are biased
stand-ins (a correct rewrite the user phrased differently counts as
neither; a frictionless success may still be a silent failure); they are
what an offline system has.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from selflearn.signals import sessions


def _norm(text: str) -> str:
  return " ".join(text.lower().split())


def agree_disturb(
  dialogues: Sequence[Mapping],
  turns: Sequence[tuple[int, int]],
  texts: Sequence[Optional[str]],
  *,
  rephrase_gap: float = 15.0,
  stop_gap: float = 8.0,
) -> tuple[np.ndarray, np.ndarray]:
  """Per request turn `(dialogue, turn)` with decision `texts[n]` (None: pass through): (agree, disturb)."""
  agree = np.zeros(len(turns), bool)
  disturb = np.zeros(len(turns), bool)
  for n, ((di, i), text) in enumerate(zip(turns, texts)):
    d = dialogues[di]
    t = d["turns"]
    if text is None or _norm(text) == _norm(t[i]["asr"]["text"]):
      continue
    if not sessions.friction(d, i, rephrase_gap=rephrase_gap, stop_gap=stop_gap):
      disturb[n] = True
      continue
    j = next((k for k in range(i + 1, len(t)) if sessions.is_request(t[k])), None)
    if j is not None and t[j]["timestamp"] - sessions.end_of(t[i]) <= rephrase_gap:
      agree[n] = _norm(t[j]["asr"]["text"]) == _norm(text)
  return agree, disturb


def select_threshold(
  thresholds: Sequence[float], decide: Callable[[float], Sequence[Optional[str]]], score
) -> tuple[float, dict[str, dict[str, int]]]:
  """The threshold with the most `agree - disturb` (`score(texts) -> (agree, disturb)`); ties: the highest.

  If every threshold's net is negative, +inf (off: never fires), listed in the table as `off`.
  """
  table, best = {}, None
  for th in sorted(float(t) for t in thresholds):
    agree, disturb = score(decide(th))
    net = int(agree.sum()) - int(disturb.sum())
    table[f"{th:g}"] = {"agree": int(agree.sum()), "disturb": int(disturb.sum()), "net": net}
    if best is None or net >= best[1]:
      best = (th, net)
  if best[1] < 0:
    agree, disturb = score(decide(math.inf))
    table["off"] = {"agree": int(agree.sum()), "disturb": int(disturb.sum()), "net": int(agree.sum() - disturb.sum())}
    best = (math.inf, table["off"]["net"])
  return best[0], table
