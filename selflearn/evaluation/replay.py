"""Held-out logged requests replayed through the judge: what a rewriter or a preference store would have changed.

Each evaluation takes the test split's logged requests and asks the judge
(`selflearn.sim.judge`: the simulated NLU and entity resolver on a clean
text) whether the request would have served its goal with the change; a
request left alone keeps its logged outcome (`data.truth.original_succeeds`).
Outcomes are counted as wins and losses (`evaluation.winloss`), intervals
come from the dialogue-level bootstrap (`evaluation.bootstrap`):

* `evaluate_rewrites`: a rewrite function (recognised text -> rewrite or
  None), e.g. a precomputed table: wins, losses and ties (both served /
  both failed) separately, defect reductions, precision@1 of the applied
  rewrites (the rewrite is read as what the user meant; it equals the true
  utterance), precision@1 against the simulator's rewrite, outcomes by
  rewrite kind;
* `request_turns`, `outcomes`, `ab_report`: a paired A/B of several arms on
  the same request turns (online rewriting);
* `preference_outcomes`, `preference_effect`: a store of taught preferences
  (teachable preferences).

Caveat: replaying logged turns ignores that a fixed request would not have
been followed by the user's rephrase; each logged turn counts once.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from selflearn.data import schema
from selflearn.data import truth as truth_lib
from selflearn.evaluation import bootstrap, winloss
from selflearn.signals import sessions
from selflearn.sim import judge
from selflearn.sim import world as world_lib

REWRITE_KINDS = (*schema.REWRITE_KINDS, "none")  # the simulator's rewrite kind of a turn; none: no fixable defect


def _normalise(text: str) -> str:
  return " ".join(text.lower().split())


# --- a rewrite function --------------------------------------------------------------------------------------


def judge_rewrite(world, dialogue: Mapping, i: int, rewrite: str) -> str:
  """win / loss / tie of sending `rewrite` instead of request `i`'s recognised text."""
  new = judge.rewrite_succeeds(world, dialogue, i, rewrite)
  old = truth_lib.original_succeeds(dialogue, i)
  return winloss.outcome(old, new)


def evaluate_rewrites(world, dialogues: Sequence[Mapping], rewrite_of: Callable[[str], Optional[str]], *,
                      bootstrap_samples: int = 0, seed: int = 0) -> dict[str, Any]:  # fmt: skip
  """Win/loss accounting of a rewrite function (recognised text -> rewrite or None) on held-out dialogues.

  With `bootstrap_samples`, `win_loss_ci95` is the percentile interval of
  the win/loss ratio over dialogues resampled with replacement.
  """
  per_dialogue = np.zeros((len(dialogues), 2), np.int64)  # wins, losses
  requests = defects = triggered = before = after = 0
  kinds = {k: collections.Counter() for k in REWRITE_KINDS}
  labelled = exact = same_reading = 0
  meant = true_text = ties_served = 0
  for di, d in enumerate(dialogues):
    user = world_lib.user_of(world, d["user_id"])
    for i, t in enumerate(d["turns"]):
      if not sessions.is_request(t):
        continue
      requests += 1
      old = truth_lib.original_succeeds(d, i)
      defects += not old
      rewrite = rewrite_of(t["asr"]["text"])
      if rewrite is None:
        continue
      triggered += 1
      new = judge.rewrite_succeeds(world, d, i, rewrite)
      before += not old
      after += not new
      outcome = winloss.outcome(old, new)
      per_dialogue[di] += (outcome == "win", outcome == "loss")
      kind = t["truth"]["rewrite_kind"] or "none"
      kinds[kind][outcome] += 1
      ties_served += outcome == "tie" and old
      meant += judge.means_goal(world, d, i, rewrite)
      true_text += _normalise(rewrite) == _normalise(t["truth"]["utterance"])
      truth = t["truth"]["rewrite"]
      if truth is not None:
        labelled += 1
        exact += _normalise(rewrite) == _normalise(truth)
        ours = judge.resolve(world, rewrite, user=user)
        same_reading += ours is not None and ours == judge.resolve(world, truth, user=user)
  wins, losses = (int(x) for x in per_dialogue.sum(0))
  out = {
    "requests": requests,
    "triggered": triggered,
    "trigger_rate": triggered / requests if requests else 0.0,
    "wins": wins,
    "losses": losses,
    "ties": triggered - wins - losses,
    "ties_both_served": ties_served,
    "ties_both_failed": triggered - wins - losses - ties_served,
    "precision_at_1": meant / triggered if triggered else float("nan"),
    "precision_at_1_true_text": true_text / triggered if triggered else float("nan"),
    "win_loss": winloss.ratio(wins, losses),
    "defect_rate_triggered_before": before / triggered if triggered else float("nan"),
    "defect_rate_triggered_after": after / triggered if triggered else float("nan"),
    "defect_reduction_triggered": (before - after) / before if before else float("nan"),
    "defect_rate_before": defects / requests if requests else float("nan"),
    "defect_rate_after": (defects - wins + losses) / requests if requests else float("nan"),
    "defect_reduction": (wins - losses) / defects if defects else float("nan"),
    "labelled_triggered": labelled,
    "precision_at_1_exact": exact / labelled if labelled else float("nan"),
    "precision_at_1_same_reading": same_reading / labelled if labelled else float("nan"),
    "by_kind": {k: {o: int(kinds[k][o]) for o in ("win", "loss", "tie")} for k in REWRITE_KINDS},
  }
  if bootstrap_samples:
    out["win_loss_ci95"] = bootstrap.ratio_ci(per_dialogue, bootstrap_samples, seed)
  return out


# --- a paired A/B of rewriting arms ------------------------------------------------------------------------------


def request_turns(dialogues: Sequence[Mapping]) -> list[tuple[int, int]]:
  """(dialogue, turn) of every request turn serving a goal: the A/B's traffic."""
  return [
    (di, i)
    for di, d in enumerate(dialogues)
    for i, t in enumerate(d["turns"])
    if t["truth"]["goal_id"] is not None and t["truth"]["attempt"] is not None and sessions.is_request(t)
  ]


def outcomes(world, dialogues, turns, texts: Sequence[Optional[str]]) -> np.ndarray:
  """Whether each turn served its goal under the arm's decision (None / the source text: pass through)."""
  out = np.zeros(len(turns), bool)
  for n, ((di, i), text) in enumerate(zip(turns, texts)):
    d = dialogues[di]
    if text is None or text == d["turns"][i]["asr"]["text"]:
      out[n] = truth_lib.original_succeeds(d, i)
    else:
      out[n] = judge.rewrite_succeeds(world, d, i, text)
  return out


def paired_change(
  dialogue_of: np.ndarray, defect_a: np.ndarray, defect_b: np.ndarray, *, num: int, seed: int
) -> dict[str, float]:
  """Defect rates of arms a and b, b - a and (b - a) / a with 95% percentile CIs, resampling dialogues."""
  dialogues, inverse = np.unique(dialogue_of, return_inverse=True)
  (rate_a, rate_b), resampled = bootstrap.bootstrap_rates(
    inverse, [defect_a, defect_b], num_groups=len(dialogues), samples=num, seed=seed
  )
  ra, rb = resampled[:, 0], resampled[:, 1]
  diff, rel = rb - ra, (rb - ra) / np.where(ra > 0, ra, np.nan)
  wins, losses = winloss.counts(~defect_a, ~defect_b)
  return {
    "rate_a": float(rate_a),
    "rate_b": float(rate_b),
    "diff": float(rate_b - rate_a),
    "diff_ci": bootstrap.percentile_ci(diff, ignore_nan=True),
    "relative": float((rate_b - rate_a) / rate_a) if rate_a else float("nan"),
    "relative_ci": bootstrap.percentile_ci(rel, ignore_nan=True),
    "wins": wins,
    "losses": losses,
  }


def ab_report(
  dialogue_of: np.ndarray,
  success: Mapping[str, np.ndarray],
  triggered: Mapping[str, np.ndarray],
  *,
  num: int,
  seed: int,
) -> dict[str, Any]:
  """Per-arm defect and trigger rates and the paired comparisons of consecutive arms."""
  defect = {a: ~s for a, s in success.items()}
  arms = {
    a: {
      "defect_rate": float(defect[a].mean()) if len(defect[a]) else float("nan"),
      "defects": int(defect[a].sum()),
      "trigger_rate": float(triggered[a].mean()) if len(triggered[a]) else float("nan"),
    }
    for a in success
  }
  pairs = [("none", "global"), ("global", "personal"), ("none", "personal"), ("none", "oracle")]
  comps = {
    f"{a}_vs_{b}": paired_change(dialogue_of, defect[a], defect[b], num=num, seed=seed)
    for a, b in pairs
    if a in defect and b in defect
  }
  return {"turns": int(len(dialogue_of)), "dialogues": int(len(np.unique(dialogue_of))), "arms": arms, **comps}


# --- a store of taught preferences ----------------------------------------------------------------------------


def preference_outcomes(world, dialogues: Sequence[Mapping], store) -> dict[str, np.ndarray]:
  """Per request turn (truth attempt set): dialogue and turn index, logged success, success with the store, affected.

  A turn is affected when its user's preferences change the interpretation
  of its recognised text; it is then re-judged (`judge.rewrite_succeeds`),
  otherwise it keeps its logged outcome.  `store=None`: no store.
  """
  rows = []
  for di, d in enumerate(dialogues):
    uid = d["user_id"]
    prefs = store.for_user(uid) if store is not None else None
    user = world_lib.user_of(world, uid)
    for i, t in enumerate(d["turns"]):
      if t["truth"]["attempt"] is None:
        continue
      logged = truth_lib.original_succeeds(d, i)
      text = t["asr"]["text"]
      affected = bool(prefs) and judge.resolve(world, text, user=user) != judge.resolve(
        world, text, user=user, preferences=prefs
      )
      with_store = judge.rewrite_succeeds(world, d, i, text, preferences=prefs) if affected else logged
      rows.append((di, i, logged, with_store, affected))
  a = np.array(rows, dtype=np.int64).reshape(-1, 5)
  return {"dialogue": a[:, 0], "turn": a[:, 1], "logged": a[:, 2] > 0, "with": a[:, 3] > 0, "affected": a[:, 4] > 0}


def paired_reduction(
  groups: np.ndarray, base: np.ndarray, new: np.ndarray, num_dialogues: int, *, samples: int, seed: int
) -> dict[str, Any]:
  """Defect rates of `base` and `new` (per-turn defect flags), their difference, 95% percentile CIs.

  Resamples dialogues with replacement (`groups`: each turn's dialogue
  index); both systems use the same resample (paired).
  """
  (point_b, point_w), resampled = bootstrap.bootstrap_rates(
    groups, [base, new], num_groups=num_dialogues, samples=samples, seed=seed
  )
  rb, rw = resampled[:, 0], resampled[:, 1]
  rel = np.where(rb > 0, (rb - rw) / np.where(rb > 0, rb, 1.0), 0.0)
  return {
    "turns": int(len(groups)),
    "defect_rate_without": float(point_b),
    "defect_rate_with": float(point_w),
    "ci_without": bootstrap.percentile_ci(rb),
    "ci_with": bootstrap.percentile_ci(rw),
    "reduction": float(point_b - point_w),
    "ci_reduction": bootstrap.percentile_ci(rb - rw),
    "relative_reduction": float((point_b - point_w) / point_b) if point_b else 0.0,
    "ci_relative_reduction": bootstrap.percentile_ci(rel),
  }


def preference_effect(world, dialogues, store, *, samples: int, seed: int) -> dict[str, Any]:
  """The store's effect on the test split's defect rate: overall and on the affected turns."""
  o = preference_outcomes(world, dialogues, store)
  nd = len(dialogues)
  overall = paired_reduction(o["dialogue"], ~o["logged"], ~o["with"], nd, samples=samples, seed=seed)
  m = o["affected"]
  if m.any():
    affected = paired_reduction(o["dialogue"][m], ~o["logged"][m], ~o["with"][m], nd, samples=samples, seed=seed)
  else:
    affected = {"turns": 0}
  fixed, broken = winloss.counts(o["logged"][m], o["with"][m])
  return {
    "overall": overall,
    "affected": affected,
    "fixed": fixed,
    "broken": broken,
    "entries": len(store) if store is not None else 0,
    "decisions": o["with"],
  }
