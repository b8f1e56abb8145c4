"""Recurrence: how much of the test traffic was already seen, verbatim, in training.

Pooled rewriting (a precomputed table, retrieval over past rephrases) can only
reuse what recurs, so every results table reports, next to its numbers, the
share of test requests whose exact true text occurs among the training
split's true texts and whose exact ASR text occurs among the training split's
ASR texts, over all requests and over the defective ones.  A *request* is a
turn of a goal (a first attempt or a rephrase; not a false wake, "stop" or
feedback: `truth.attempt` is set).  Needs the `truth` blocks for the true
text and the defect label; the ASR-text share of all requests does not.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping


def _requests(dialogues: Iterable[Mapping]):
  for d in dialogues:
    for t in d["turns"]:
      tr = t.get("truth")
      if tr is not None and tr["attempt"] is not None:
        yield t, tr


def recurrence(
  train: Iterable[Mapping], test: Iterable[Mapping], where: Callable[[Mapping], bool] | None = None
) -> dict:
  """Shares of test requests (all, and defective) whose exact true / ASR text occurs in `train`.

  `where(truth)`, if given, keeps only the test requests whose turn `truth` block it accepts
  (e.g. one domain).

  Returns a dict: `requests`, `true_text_seen`, `asr_text_seen`, `defective`,
  `defective_true_text_seen`, `defective_asr_text_seen` (shares in [0, 1];
  NaN where a group is empty).
  """
  true_seen, asr_seen = set(), set()
  for d in train:
    for t in d["turns"]:
      asr_seen.add(t["asr"]["text"])
      if "truth" in t:
        true_seen.add(t["truth"]["utterance"])
  n = n_true = n_asr = n_def = d_true = d_asr = 0
  for t, tr in _requests(test):
    if where is not None and not where(tr):
      continue
    hit_true, hit_asr = tr["utterance"] in true_seen, t["asr"]["text"] in asr_seen
    n += 1
    n_true += hit_true
    n_asr += hit_asr
    if tr["defect"]:
      n_def += 1
      d_true += hit_true
      d_asr += hit_asr
  nan = float("nan")
  return {
    "requests": n,
    "true_text_seen": n_true / n if n else nan,
    "asr_text_seen": n_asr / n if n else nan,
    "defective": n_def,
    "defective_true_text_seen": d_true / n_def if n_def else nan,
    "defective_asr_text_seen": d_asr / n_def if n_def else nan,
  }


def markdown(stats: Mapping) -> str:
  """One line for a results file: the recurrence of test requests in training."""
  return (
    f"Recurrence of the {stats['requests']} test requests in training (exact text): true"
    f" {stats['true_text_seen']:.1%}, ASR {stats['asr_text_seen']:.1%}; of the {stats['defective']}"
    f" defective ones: true {stats['defective_true_text_seen']:.1%}, ASR {stats['defective_asr_text_seen']:.1%}."
  )


def world_lines(results: Mapping) -> list[str]:
  """A results file's world and recurrence line (then a blank line); none without `results["recurrence"]`."""
  if not results.get("recurrence"):
    return []
  return [f"World: {results.get('preset', '?')}. " + markdown(results["recurrence"]), ""]
