"""Route instructions for R2R-lite paths: a template grammar with paraphrase variety, and a tokenizer.

Each path gets instructions from three template families, so the three paraphrases differ in structure and
not only in words (as R2R's three annotators do):

* `step_by_step`: one clause per edge, a turn phrase from the heading change ("turn left", "bear right",
  "turn around", "walk straight") plus the room entered or a landmark passed, then a stop clause.
* `rooms`: the room sequence ("leave the bedroom, walk through the hallway and enter the kitchen") and a stop
  clause.
* `goal`: the goal only ("find the red sofa in the living room"), optionally with a landmark on the way.

Every family ends with the goal room and/or an object at the goal node, so every instruction names landmarks
(room types and objects) that lie on its path, and nothing off the path.  Synonym sets for verbs, turns,
connectives and stop conditions give the lexical variety.  Text is lower case, words and "." / "," separated
by single spaces (", " and ". "), so `decode(encode(text)) == text`.

Turns are measured against the agent's heading (the direction of its last move, or the episode's start
heading): counter-clockwise (positive angle, x east and y north) is left.
"""

import math
import re

import numpy as np

from nlirl.envs.houses import COLORS, OBJECT_TYPES, ROOM_TYPES, House

NUM_INSTRUCTIONS = 3  # instructions per path, one per family
MAX_INSTRUCTION_TOKENS = 128  # padded length, end-of-sequence token included

TURN_PHRASES = {
  "straight": ("walk straight", "go straight ahead", "continue forward", "keep going straight", "head forward"),
  "slight_left": ("bear left", "veer slightly left", "go slightly left", "angle to the left"),
  "left": ("turn left", "make a left", "take a left", "go left"),
  "slight_right": ("bear right", "veer slightly right", "go slightly right", "angle to the right"),
  "right": ("turn right", "make a right", "take a right", "go right"),
  "around": ("turn around", "turn back", "face the other way"),
}
ENTER = (
  "enter the {room}",
  "walk into the {room}",
  "go into the {room}",
  "step into the {room}",
  "head into the {room}",
)
PASS = (
  "pass the {thing}",
  "walk past the {thing}",
  "go by the {thing}",
  "move towards the {thing}",
  "go to the {thing}",
)
CONNECT = (", then ", ". ", " and then ", ", ", ". next, ", ". after that, ")
STOP = (
  "stop next to the {thing}",
  "stop by the {thing} in the {room}",
  "wait beside the {thing}",
  "stop when you reach the {thing}",
  "you are done once you are near the {thing}",
  "stand next to the {thing} and stop",
  "wait in the {room} near the {thing}",
)
LEAVE = (
  "leave the {room}",
  "exit the {room}",
  "walk out of the {room}",
  "get out of the {room}",
  "go out of the {room}",
)
THROUGH = ("go through the {rooms}", "walk through the {rooms}", "cross the {rooms}", "pass through the {rooms}")
INTO = (" and enter the {room}", " into the {room}", " until you reach the {room}", " and continue to the {room}")
GOAL = (
  "go to the {room} and stop next to the {thing}",
  "find the {thing} in the {room} and wait there",
  "your goal is the {thing} in the {room}",
  "head for the {room} and stop by the {thing}",
  "make your way to the {thing} in the {room}",
)
VIA_THING = (", passing the {thing} on the way", " by way of the {thing}", ", going past the {thing}")
VIA_ROOM = (", going through the {room}", " by way of the {room}", ", crossing the {room} on the way")
FAMILIES = ("step_by_step", "rooms", "goal")

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
_TOKEN_RE = re.compile(r"[a-z]+|[.,]")


def wrap_angle(angle: float) -> float:
  """The angle in (-pi, pi]."""
  wrapped = math.atan2(math.sin(angle), math.cos(angle))
  return math.pi if wrapped == -math.pi else wrapped


def turn_category(relative_angle: float) -> str:
  """Turn phrase key for a move at `relative_angle` (radians, counter-clockwise = left) from the heading."""
  degrees = abs(math.degrees(wrap_angle(relative_angle)))
  side = "left" if relative_angle > 0 else "right"
  if degrees < 30:
    return "straight"
  if degrees < 75:
    return f"slight_{side}"
  if degrees <= 150:
    return side
  return "around"


def edge_heading(house: House, a: int, b: int) -> float:
  """Direction (radians, from +x, counter-clockwise) of the move a -> b."""
  dx, dy = house.positions[b] - house.positions[a]
  return math.atan2(dy, dx)


def _thing(rng: np.random.Generator, house: House, node: int) -> str:
  """A landmark phrase for one object at `node`: "red sofa", or just "sofa" now and then."""
  slots = np.flatnonzero(house.objects[node] >= 0)
  k = slots[int(rng.integers(len(slots)))]
  name = OBJECT_TYPES[house.objects[node, k]]
  return name if rng.random() < 0.25 else f"{COLORS[house.object_colors[node, k]]} {name}"


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
  return options[int(rng.integers(len(options)))]


def _stop_clause(rng, house, goal):
  return _pick(rng, STOP).format(thing=_thing(rng, house, goal), room=house.room_name(goal))


def _step_by_step(rng, house, path, heading):
  clauses = []
  for a, b in zip(path[:-1], path[1:], strict=True):
    direction = edge_heading(house, a, b)
    turn = _pick(rng, TURN_PHRASES[turn_category(wrap_angle(direction - heading))])
    heading = direction
    if house.room_of_node[b] != house.room_of_node[a]:
      tail = _pick(rng, ENTER).format(room=house.room_name(b))
    else:
      tail = _pick(rng, PASS).format(thing=_thing(rng, house, b))
    clauses.append(f"{turn} and {tail}")
  text = clauses[0]
  for clause in clauses[1:]:
    text += _pick(rng, CONNECT) + clause
  return text + _pick(rng, CONNECT) + _stop_clause(rng, house, path[-1]) + "."


def _rooms(rng, house, path, heading):
  del heading
  rooms = [int(path[0])]
  for node in path[1:]:
    if house.room_of_node[node] != house.room_of_node[rooms[-1]]:
      rooms.append(int(node))
  names = [house.room_name(node) for node in rooms]
  text = _pick(rng, LEAVE).format(room=names[0])
  middle = names[1:-1]
  if middle:
    joined = middle[0] if len(middle) == 1 else ", the ".join(middle[:-1]) + " and the " + middle[-1]
    text += ", " + _pick(rng, THROUGH).format(rooms=joined)
  if len(names) > 1:
    text += _pick(rng, INTO).format(room=names[-1])
  return text + ". " + _stop_clause(rng, house, path[-1]) + "."


def _goal(rng, house, path, heading):
  del heading
  goal = path[-1]
  text = _pick(rng, GOAL).format(room=house.room_name(goal), thing=_thing(rng, house, goal))
  middle = path[1:-1]
  if rng.random() < 0.7:
    node = middle[int(rng.integers(len(middle)))]
    ends = (house.room_of_node[path[0]], house.room_of_node[goal])
    if rng.random() < 0.5 and house.room_of_node[node] not in ends:
      text += _pick(rng, VIA_ROOM).format(room=house.room_name(node))
    else:
      text += _pick(rng, VIA_THING).format(thing=_thing(rng, house, node))
  return text + "."


_FAMILY_FNS = {"step_by_step": _step_by_step, "rooms": _rooms, "goal": _goal}


def generate_instructions(
  rng: np.random.Generator, house: House, path: np.ndarray, heading: float, *, count: int = NUM_INSTRUCTIONS
) -> list[str]:
  """`count` distinct instructions for `path` (node ids) starting at `heading`, cycling through FAMILIES."""
  out: list[str] = []
  for i in range(count):
    family = _FAMILY_FNS[FAMILIES[i % len(FAMILIES)]]
    for _ in range(100):
      text = family(rng, house, path, heading)
      if text not in out:
        break
    else:
      raise RuntimeError("could not generate distinct instructions")
    out.append(text)
  return out


def tokenize(text: str) -> list[str]:
  """Lower-cased words and "." / "," tokens."""
  return _TOKEN_RE.findall(text.lower())


def _lexicon() -> list[str]:
  templates = [p for phrases in TURN_PHRASES.values() for p in phrases]
  templates += [*ENTER, *PASS, *CONNECT, *STOP, *LEAVE, *THROUGH, *INTO, *GOAL, *VIA_THING, *VIA_ROOM]
  templates += [" and ", ", the "]  # glue used by the families
  words = {w for t in templates for w in tokenize(re.sub(r"\{\w+\}", " ", t))}
  words |= {w for name in (*ROOM_TYPES, *OBJECT_TYPES, *COLORS) for w in tokenize(name)}
  return sorted(words)


class Vocabulary:
  """Token <-> id map over the grammar's full lexicon (fixed, so unseen houses have no unknown words).

  Ids 0-3 are PAD, UNK, BOS, EOS; the rest follow in sorted order.
  """

  def __init__(self, words: list[str] | None = None):
    self.tokens = list(SPECIAL_TOKENS) + (_lexicon() if words is None else list(words))
    self.ids = {t: i for i, t in enumerate(self.tokens)}
    self.pad_id, self.unk_id, self.bos_id, self.eos_id = (self.ids[t] for t in SPECIAL_TOKENS)

  @property
  def size(self) -> int:
    return len(self.tokens)

  def encode(self, text: str, max_len: int = MAX_INSTRUCTION_TOKENS) -> np.ndarray:
    """int32 [max_len]: token ids, EOS, then PAD.  Raises ValueError if the text does not fit."""
    ids = [self.ids.get(t, self.unk_id) for t in tokenize(text)] + [self.eos_id]
    if len(ids) > max_len:
      raise ValueError(f"instruction has {len(ids)} tokens (EOS included) > max_len={max_len}: {text!r}")
    out = np.full((max_len,), self.pad_id, dtype=np.int32)
    out[: len(ids)] = ids
    return out

  def encode_batch(self, texts: list[str], max_len: int = MAX_INSTRUCTION_TOKENS) -> np.ndarray:
    """int32 [len(texts), max_len]."""
    return np.stack([self.encode(t, max_len) for t in texts]) if texts else np.zeros((0, max_len), np.int32)

  def decode(self, ids) -> str:
    """Text of the ids up to the first EOS, skipping PAD and BOS."""
    words = []
    for i in np.asarray(ids).tolist():
      if i == self.eos_id:
        break
      if i not in (self.pad_id, self.bos_id):
        words.append(self.tokens[i])
    return re.sub(r" ([.,])", r"\1", " ".join(words))
