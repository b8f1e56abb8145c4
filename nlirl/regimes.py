"""Training regimes where imitation from few or differently worded demonstrations can be told apart.

* Few demonstrations (`data.max_train_episodes`): `subset(n, limit, seed)` keeps `limit` of the `n` training
  paths, a prefix of one seeded permutation, so the subsets of 100, 300 and 1,000 paths are nested and the same
  for every method.
* Held-out phrasing (`data.held_out_phrasing`): `hold_out(split, mode)` rewrites the training split so a
  phrasing appears only in val / test:
  - a template family (`step_by_step`, `rooms` or `goal`): training paths keep only their other two
    instructions;
  - `synonyms`: the phrases of `HELD_OUT_SYNONYMS` are replaced in training instructions by a kept synonym
    with the same meaning (so no training path is lost and every training instruction stays correct).
  Evaluation splits are never rewritten.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from nlirl.envs import instructions, splits

HELD_OUT_SYNONYMS = {  # held-out phrase -> the kept synonym that replaces it in training instructions
  "make a left": "turn left",
  "make a right": "turn right",
  "veer slightly left": "bear left",
  "veer slightly right": "bear right",
  "head forward": "walk straight",
  "face the other way": "turn around",
  "step into the": "walk into the",
  "go by the": "walk past the",
  "wait beside the": "stop next to the",
  "make your way to the": "your goal is the",
}
HELD_OUT = ("", *instructions.FAMILIES, "synonyms")  # data.held_out_phrasing ("": none)
_SYNONYM_RE = re.compile(r"\b(" + "|".join(re.escape(p) for p in sorted(HELD_OUT_SYNONYMS, key=len)[::-1]) + r")\b")


def subset(n: int, limit: int, seed: int) -> np.ndarray:
  """Sorted indices of the first `limit` paths of a seeded permutation of `n` (all when `limit` is 0 or >= n)."""
  if not limit or limit >= n:
    return np.arange(n)
  return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def held_out_phrases(mode: str) -> tuple[str, ...]:
  """The phrases `mode` keeps out of training instructions (the synonyms; empty for a family or none)."""
  return tuple(HELD_OUT_SYNONYMS) if mode == "synonyms" else ()


def replace_synonyms(text: str) -> str:
  """`text` with every held-out synonym replaced by its kept synonym."""
  return _SYNONYM_RE.sub(lambda m: HELD_OUT_SYNONYMS[m.group(1)], text)


def hold_out(split: splits.Split, mode: str) -> splits.Split:
  """The training `split` without the phrasing `mode` (one of HELD_OUT; "" returns `split` itself)."""
  if mode not in HELD_OUT:
    raise ValueError(f"unknown held-out phrasing {mode!r}; valid: {HELD_OUT}")
  if not mode:
    return split
  if mode == "synonyms":
    rewrite = lambda texts: [replace_synonyms(t) for t in texts]
  else:
    families = instructions.FAMILIES
    keep = [i for i in range(instructions.NUM_INSTRUCTIONS) if families[i % len(families)] != mode]
    rewrite = lambda texts: [texts[i] for i in keep]
  episodes = tuple(dataclasses.replace(ep, instructions=rewrite(ep.instructions)) for ep in split.episodes)
  return dataclasses.replace(split, episodes=episodes)
