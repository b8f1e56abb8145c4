"""Teaching turns: what a customer says to teach the assistant, and the store the extracted entries build.

A `TeachingTurn` is one recognised utterance with what it teaches, if
anything (`truth`: `(kind, key, value)`), and the BIO tags of its key and
value spans; the simulator produces them (`selflearn.sim.teaching`), the
extractor reads their words.  `build_store` applies extracted entries to a
`preferences.PreferenceStore` in time order (newest wins).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from selflearn.teaching import preferences


@dataclasses.dataclass(frozen=True)
class TeachingTurn:
  """One simulated user utterance to the assistant and what it teaches."""

  user_id: str
  dialogue_id: str  # the (training) dialogue it happened in
  turn: int  # index among the user's teaching turns
  timestamp: float
  words: tuple[str, ...]  # recognised words (after ASR noise)
  tags: tuple[str, ...]  # BIO tags of the key / value spans, one per word
  truth: Optional[tuple[str, str, str]]  # (kind, key, value) or None: teaches nothing
  frame: str  # the grammar frame (or "request")
  held_out: bool  # the frame is not in the annotated training corpus

  @property
  def text(self) -> str:
    return " ".join(self.words)


def build_store(turns: Sequence[TeachingTurn], entries: Sequence[Optional[tuple]], confidences=None):
  """A `PreferenceStore` of the entries extracted from `turns` (applied in time order; newest wins)."""
  store = preferences.PreferenceStore()
  order = sorted(range(len(turns)), key=lambda i: (turns[i].timestamp, turns[i].user_id, turns[i].turn))
  for i in order:
    if entries[i] is None:
      continue
    kind, key, value = entries[i]
    t = turns[i]
    conf = 1.0 if confidences is None else float(confidences[i])
    store.add(t.user_id, preferences.Entry(kind, key, value, t.dialogue_id, t.turn, t.timestamp, conf))
  return store
