"""Per-seed measurements of a finished workdir: the final figure and the area under the learning curve.

Each reader returns `{metric: [value per seed]}`; higher is better for every
metric (losses are negated), so one table reads the same way for all.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from common import metrics as metrics_lib


def _curve(workdir: pathlib.Path, key: str) -> np.ndarray:
  rows = metrics_lib.read_metrics(workdir)
  values = np.asarray([r[key] for r in rows if r.get(key) is not None], np.float64)
  if not values.size:
    raise ValueError(f"{workdir}: no finite {key!r} in metrics.jsonl")
  return values[np.isfinite(values)]


def mql(workdir: pathlib.Path) -> dict[str, list[float]]:
  """Test-task return of the meta-trained policy (before adaptation) and the training return's mean over the run."""
  summary = json.loads((workdir / "results.json").read_text())["summary"]
  return {
    "test_return": [summary["return_before_mql"]],
    "train_return_auc": [float(np.mean(_curve(workdir, "episode_return")))],
  }


def nlirl(workdir: pathlib.Path) -> dict[str, list[float]]:
  """Greedy success rate on val_seen / val_unseen per seed (seeds vmapped in one run)."""
  ev = json.loads((workdir / "results.json").read_text())["eval"]
  return {f"{split}_sr": list(ev[split]["success"]["per_seed"]) for split in ("val_seen", "val_unseen")}


def ppo(workdir: pathlib.Path) -> dict[str, list[float]]:
  """The agent's training-episode return (last 10% of its logged points, and the mean over the run), and
  minus the held-out test loss of the schedule it learned (what the agent is for)."""
  returns = _curve(workdir, "agent/episode_return")
  tail = returns[-max(1, len(returns) // 10) :]
  rows = json.loads((workdir / "results.json").read_text())["rows"]
  (learned,) = [r for r in rows if r["method"] == "learned"]
  return {
    "final_return": [float(np.mean(tail))],
    "return_auc": [float(np.mean(returns))],
    "neg_heldout_loss": [-float(learned["mean"])],
  }


def digits(workdir: pathlib.Path) -> dict[str, list[float]]:
  """Minus the test loss at the end, and minus the mean validation loss over the epochs (`eval/loss`)."""
  final = json.loads((workdir / "final_metrics.json").read_text())
  return {"neg_test_loss": [-final["test_loss"]], "neg_val_loss_auc": [-float(np.mean(_curve(workdir, "eval/loss")))]}


READERS = {"mql": mql, "nlirl": nlirl, "ppo": ppo, "digits": digits}
