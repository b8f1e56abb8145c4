"""Observable stand-ins for wins and losses: the user's own correction agrees, a frictionless turn is disturbed."""

import math

import numpy as np

from selflearn.signals import proxy, sessions


def _requests(dialogues):
  return [(di, i) for di, d in enumerate(dialogues) for i, t in enumerate(d["turns"]) if sessions.is_request(t)]


def test_agree_and_disturb(dialogues):
  turns = _requests(dialogues)
  fr = [sessions.friction(dialogues[di], i) for di, i in turns]
  nxt = []
  for di, i in turns:
    t = dialogues[di]["turns"]
    j = next((k for k in range(i + 1, len(t)) if sessions.is_request(t[k])), None)
    nxt.append(t[j]["asr"]["text"] if j is not None and t[j]["timestamp"] - sessions.end_of(t[i]) <= 15.0 else None)
  # Rewriting every turn with friction into the user's next attempt: agreement wherever there is one.
  texts = [n if f else None for n, f in zip(nxt, fr)]
  agree, disturb = proxy.agree_disturb(dialogues, turns, texts)
  expected = np.array(
    [t is not None and t != dialogues[di]["turns"][i]["asr"]["text"] for t, (di, i) in zip(texts, turns)]
  )
  np.testing.assert_array_equal(agree, expected)
  assert agree.sum() > 20 and not disturb.any()
  # Rewriting frictionless turns: every one disturbs, none agrees.
  texts = [None if f else "play something else" for f in fr]
  agree, disturb = proxy.agree_disturb(dialogues, turns, texts)
  assert not agree.any() and disturb.sum() == sum(not f for f in fr)
  best, table = proxy.select_threshold([0.0, 1.0], lambda th: texts if th == 0.0 else [None] * len(turns),
                                       lambda x: proxy.agree_disturb(dialogues, turns, x))  # fmt: skip
  assert best == 1.0 and table["1"]["net"] == 0 and table["0"]["net"] < 0 and "off" not in table
  # Every threshold tried disturbs more than it agrees: the layer is switched off.
  best, table = proxy.select_threshold([0.0, 1.0], lambda th: texts if th < math.inf else [None] * len(turns),
                                       lambda x: proxy.agree_disturb(dialogues, turns, x))  # fmt: skip
  assert best == math.inf and table["off"] == {"agree": 0, "disturb": 0, "net": 0} and table["1"]["net"] < 0
