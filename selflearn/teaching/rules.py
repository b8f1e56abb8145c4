"""The baseline extractor of teachable preferences: regular expressions over the frames a developer would write down.

`rule_parse(text)` tries the patterns in order; the first that matches gives
key and value spans, normalised like the learned extractor's
(`extraction.normalise`).  Paraphrases outside the patterns are missed.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

from selflearn.teaching import extraction

_W = r"[a-z']+(?: [a-z']+)*?"
_SONG_VAL = rf"(?:the one by |the )?(?P<val>{_W})(?: song| version| one)?"
_RULES: tuple[tuple[str, re.Pattern], ...] = tuple(
  (kind, re.compile(pattern))
  for kind, pattern in (
    ("song", rf"^(?:when|if) i (?:say|ask for|ask you to play) (?P<key>{_W}) (?:i mean|i want|play) {_SONG_VAL}$"),
    ("song", rf"^by (?P<key>{_W}) i mean the (?P<val>{_W}) (?:song|version|one)$"),
    ("song", rf"^(?P<key>{_W}) means the one by (?P<val>{_W})(?: for me)?$"),
    ("song", rf"^remember that (?:my )?(?P<key>{_W}) is by (?P<val>{_W})$"),
    ("city", rf"^by (?P<key>[a-z]+) i mean (?:[a-z]+ |the one in )(?P<val>{_W})$"),
    ("city", rf"^when i say (?P<key>[a-z]+) i mean (?:the one in |[a-z]+ )(?P<val>{_W})$"),
    ("city", r"^(?P<key>[a-z]+) means [a-z]+ (?P<val>[a-z]+)(?: not .*)?$"),
    ("city", rf"^i mean (?P<key>[a-z]+) (?P<val>[a-z]+) when i say {_W}$"),
    ("city", r"^remember that (?P<key>[a-z]+) is (?:[a-z]+ |in )(?P<val>[a-z]+)(?: for me)?$"),
    ("city", rf"^(?:i live in|i'm from|my home is in|we moved to) (?P<key>[a-z]+) (?:in )?(?P<val>{_W})$"),
    ("artist", rf"^i'm a (?:big |huge )?(?P<key>{_W}) fan$"),
    ("artist", rf"^i'm a (?:big |huge )?fan of (?P<key>{_W})$"),
    ("artist", rf"^(?P<key>{_W}) is my favou?rite (?:artist|singer|band)$"),
    ("artist", rf"^i (?:love|really like) (?P<key>{_W})$"),
  )
)


def rule_parse(text: str, *, cutoff: float, neighbours: Mapping = {}) -> Optional[tuple[str, str, str]]:
  """The baseline: the first regular expression that matches, its groups normalised like the model's spans."""
  for kind, pattern in _RULES:
    m = pattern.match(text)
    if m:
      val = m.groupdict().get("val")
      entry = extraction.normalise(kind, [m.group("key")], [val] if val else [], cutoff=cutoff, neighbours=neighbours)
      if entry is not None:
        return entry
  return None
