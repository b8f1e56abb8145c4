"""The judge: the simulated assistant's interpretation of a clean text, and whether it serves a goal.

Rewriting (precomputed or online) and teachable preferences change the
*text* (or the entity resolution) a request is interpreted from, after ASR.
To judge a rewrite on held-out simulated traffic we need what the simulated
NLU and entity resolver (`selflearn.sim.channel`) do with that text, without
new recognition noise: `resolve` is that behaviour made deterministic.

* NLU: the text is matched against every intent template of `ontology.INTENTS`
  (slot spans must be catalogue values); where several intents share a
  template the assistant is context-blind, as in the simulator: a bare
  "play {title}" is a video, "what is the temperature" the weather.
* Entity resolution: a bare ambiguous song title resolves to its globally
  most popular artist and a bare ambiguous city to its first state, unless
  `preferences` (what a user taught, `selflearn.teaching.preferences`) name
  another;
  contacts resolve when they are the user's.

`serves(interpretation, goal)` says whether the interpretation fulfils the
goal (the simulator's `truth.goals[g]`), and `rewrite_succeeds` combines the
two for a logged turn, counting a back-end (result-stage) failure of the
original turn as a failure of any rewrite too: rewriting cannot fix it.
Whether a turn served its goal as logged is `selflearn.data.truth.
original_succeeds`.  Only task runners and evaluation import the judge:
it knows the simulated users (their contacts), which models never see.

**The open world** (`world.is_open`): the judge reads the world the
simulator generated from the same config (`world.make_world_for`, never the
logs): its catalogues (songs with their artists, artists, titles, stations,
items), every user's contacts, device names and contact nicknames, and the
phrasing frames (a command or question prefix and a suffix,
`sim.openworld`), which the simulated NLU ignores.  A personal name ("turn on
the juniper", "call grandma") parses but stays unresolved: the simulator's
resolver knows one only `alias_resolve` of the time (0.3), the judge takes
the deterministic majority case; the canonical name ("the kitchen lamp",
the full contact name) resolves.  A goal's device named by its room
("kitchen lamp") is served by the room and device spoken either way.
The closed world's path is unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Optional

from selflearn.language import ontology
from selflearn.sim import openworld
from selflearn.sim import world as world_lib
from selflearn.sim.users import User
from selflearn.teaching.preferences import Preferences


@dataclasses.dataclass(frozen=True)
class Interpretation:
  """An intent and the canonical entity of each slot (as in the simulator's `truth.values`)."""

  intent: str
  values: Mapping[str, str]


def _catalogue() -> dict[str, frozenset[str]]:
  songs = {s for s, _, _ in ontology.SONGS}
  cities = set(ontology.CITIES)
  city_full = {f"{c} {s}" for c, states in ontology.CITIES.items() for s in states}
  return {
    "song": frozenset(songs),
    "artist": frozenset(ontology.ARTISTS),
    "station": frozenset(ontology.STATIONS),
    "title": frozenset(ontology.TITLES),
    "device": frozenset(ontology.DEVICES),
    "room": frozenset(ontology.ROOMS),
    "level": frozenset(ontology.LEVELS),
    "city": frozenset(cities | city_full),
    "city_full": frozenset(city_full),
    "duration": frozenset(ontology.DURATIONS),
    "time": frozenset(ontology.TIMES),
    "item": frozenset(ontology.ITEMS),
    "contact": frozenset(ontology.FIRST_NAMES),
  }


def _templates() -> list[tuple[str, str]]:
  """(intent, template) pairs, including the fuller forms the simulator's rephrases and rewrites use."""
  out = [(intent, t) for intent, (_, templates) in ontology.INTENTS.items() for t in templates]
  out.append(("get_weather", "weather in {city_full}"))
  out.append(("get_weather", "what is the weather in {city_full}"))
  out.append(("get_weather", "how is the weather in {city_full}"))
  return out


def _content(words) -> tuple[str, ...]:
  return tuple(w for w in words if w not in ontology.FUNCTION_WORDS)


@functools.lru_cache(maxsize=1)
def _compiled() -> tuple[tuple[str, tuple[str, ...]], dict[str, dict[tuple[str, ...], str]]]:
  """Templates as content-word sequences (slots as `{slot}`), and each slot's values keyed by content words."""
  templates = tuple((intent, _content(t.split())) for intent, t in _templates())
  values = {slot: {_content(v.split()): v for v in vals} for slot, vals in _catalogue().items()}
  return templates, values


def _match(pattern: tuple[str, ...], words: tuple[str, ...], values) -> list[tuple[tuple[str, str], ...]]:
  """Slot assignments under which `pattern` spells `words` (slot spans: catalogue values)."""
  if not pattern:
    return [()] if not words else []
  head, rest = pattern[0], pattern[1:]
  if not head.startswith("{"):
    return _match(rest, words[1:], values) if words and words[0] == head else []
  slot, out = head[1:-1], []
  for k in range(1, len(words) + 1):
    value = values[slot].get(words[:k])
    if value is not None:
      out.extend(((slot, value),) + tail for tail in _match(rest, words[k:], values))
  return out


@functools.lru_cache(maxsize=65536)
def parse(text: str) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
  """Every (intent, ((slot, value), ...)) reading of `text` whose spans are catalogue values.

  Function words ("the", "to", "by", ...) are ignored on both sides: the
  simulated NLU does not need a dropped "the" either.
  """
  templates, values = _compiled()
  words = _content(text.lower().split())
  readings = []
  for intent, pattern in templates:
    for spans in _match(pattern, words, values):
      reading = (intent, tuple((("city" if s == "city_full" else s), v) for s, v in spans))
      if reading not in readings:
        readings.append(reading)
  return tuple(readings)


def _open_catalogue(world: world_lib.World) -> dict[str, frozenset[str]]:
  """The closed catalogue with the open world's generated entities and every user's personal names."""
  out = dict(_catalogue())
  for slot in openworld.GENERATED_SLOTS:
    out[slot] = frozenset(world.open.catalogues[slot].names)
  out["artist"] = out["artist"] | frozenset(world.open.catalogues["song"].artists)
  named = {f"{r} {d}" for r in ontology.ROOMS for d in ontology.DEVICES}  # the canonical name of a named device
  out["device"] = frozenset(ontology.DEVICES) | named | {a for u in world.users for a in u.device_aliases}
  out["contact"] = frozenset(c for u in world.users for c in u.contacts) | frozenset(openworld.NICKNAMES)
  return out


def _frames() -> tuple[tuple[tuple[str, ...], ...], tuple[tuple[str, ...], ...]]:
  """The open world's prefixes and suffixes as content-word tuples, the bare form first, then shortest first."""
  prefixes = {_content(p.split()) for p in openworld.COMMAND_PREFIXES + openworld.QUESTION_PREFIXES}
  suffixes = {_content(p.split()) for p in openworld.SUFFIXES}
  order = lambda xs: tuple(sorted(xs, key=lambda x: (len(x), x)))
  return order(prefixes), order(suffixes)


# The open world's compiled catalogues, keyed by id(world) (the world is kept alive with its entry).
_OPEN: dict[int, tuple] = {}


def _open_compiled(world: world_lib.World) -> tuple[dict, dict, frozenset[str]]:
  """(each slot's values keyed by content words, the parse cache, every user's personal device names)."""
  entry = _OPEN.get(id(world))
  if entry is None or entry[0] is not world:
    if len(_OPEN) >= 4:
      _OPEN.pop(next(iter(_OPEN)))
    values = {slot: {_content(v.split()): v for v in vals} for slot, vals in _open_catalogue(world).items()}
    aliases = frozenset(a for u in world.users for a in u.device_aliases)
    entry = (world, values, {}, aliases)
    _OPEN[id(world)] = entry
  return entry[1], entry[2], entry[3]


def parse_in(world: world_lib.World, text: str) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
  """`parse` against `world`'s catalogues: the closed world's `parse`, or the open world's (frames stripped)."""
  if not world.is_open:
    return parse(text)
  values, cache, _ = _open_compiled(world)
  if text in cache:
    return cache[text]
  templates = _compiled()[0]
  words = _content(text.lower().split())
  prefixes, suffixes = _frames()
  readings = []
  for pre in prefixes:
    if words[: len(pre)] != pre:
      continue
    for suf in suffixes:
      core = words[len(pre) : len(words) - len(suf)]
      if not core or (suf and words[len(words) - len(suf) :] != suf):
        continue
      for intent, pattern in templates:
        for spans in _match(pattern, core, values):
          reading = (intent, tuple((("city" if s == "city_full" else s), v) for s, v in spans))
          if reading not in readings:
            readings.append(reading)
  cache[text] = out = tuple(readings)
  return out


# Context-blind routing among intents that share a template (the simulator's NLU).
_PREFERRED = ("play_video", "get_temperature")


def resolve(
  world: world_lib.World,
  text: str,
  *,
  user: Optional[User] = None,
  preferences: Optional[Preferences] = None,
) -> Optional[Interpretation]:
  """The assistant's interpretation of the clean `text` for `user`, or None when nothing parses."""
  readings = parse_in(world, text)
  if not readings:
    return None
  intents = [r[0] for r in readings]
  chosen = next((r for r in readings if r[0] in _PREFERRED), None) if len(set(intents)) > 1 else None
  intent, spans = chosen or readings[0]
  spans = dict(spans)
  prefs = preferences or {}
  values: dict[str, str] = {}
  for slot, span in spans.items():
    if slot == "song":
      artist = spans.get("artist")
      if artist is None:
        artist = prefs.get("song", {}).get(span)
        if artist not in world.song_popularity[span]:
          artist = world.song_popularity[span][0]
      elif artist not in world.song_popularity[span]:
        return Interpretation(intent, {})  # no such recording: nothing plays
      values["song"] = f"{span} by {artist}"
    elif slot == "artist" and intent == "play_song":
      values["artist"] = span
    elif slot == "city":
      if " " in span and span.split(" ", 1)[0] in ontology.CITIES and span not in ontology.CITIES:
        values["city"] = span
      else:
        states = ontology.CITIES[span]
        state = prefs.get("city", {}).get(span)
        values["city"] = f"{span} {state if state in states else states[0]}"
    elif slot == "contact":
      if user is not None and span not in user.contacts:
        continue  # not in the address book: unresolved
      values["contact"] = span
    elif slot == "device" and world.is_open and span in _open_compiled(world)[2]:
      continue  # a personal device name: unresolved
    else:
      values[slot] = span
  return Interpretation(intent, values)


def serves(interpretation: Optional[Interpretation], goal: Mapping) -> bool:
  """Whether `interpretation` fulfils `goal` (a simulator `truth.goals[g]`).

  As in the simulator: the intent is right, every slot the request names
  resolves to the goal's entity, and the intent's core slots are named (an
  unspoken optional slot, e.g. the room of "turn on the heater", is fine).
  An out-of-scope goal is served by being recognised as out of scope.
  """
  if interpretation is None or interpretation.intent != goal["intent"]:
    return False
  values, wanted = _split_device(interpretation.values), _split_device(goal["values"])
  if any(k in wanted and wanted[k] != v for k, v in values.items()):
    return False
  return all(k in values for k in core_slots(goal["intent"]))


def _split_device(values: Mapping[str, str]) -> Mapping[str, str]:
  """An open-world device value named with its room ("kitchen lamp") as separate room and device slots.

  The device's own room wins over a goal's separate `room` value (drawn for templates the request did not use).
  """
  device = values.get("device")
  if device is None or device in ontology.DEVICES:
    return values
  for room in ontology.ROOMS:
    if device.startswith(room + " ") and device[len(room) + 1 :] in ontology.DEVICES:
      return {**values, "room": room, "device": device[len(room) + 1 :]}
  return values


@functools.lru_cache(maxsize=None)
def core_slots(intent: str) -> frozenset[str]:
  """The slots every template of `intent` names (a request without one of them cannot serve the goal)."""
  sets = [{p[1:-1] for p in t.split() if p.startswith("{")} for t in ontology.INTENTS[intent][1]]
  return frozenset(set.intersection(*sets)) if sets else frozenset()


def rewrite_succeeds(
  world: world_lib.World,
  dialogue: Mapping,
  turn_index: int,
  text: str,
  *,
  preferences: Optional[Preferences] = None,
) -> bool:
  """Whether sending `text` instead of turn `turn_index`'s recognised text would have served its goal.

  False for a turn without a goal (false wake, stop, feedback) and for a
  turn whose original failure was the back end's (rewriting cannot fix it).
  """
  truth = dialogue["turns"][turn_index]["truth"]
  if truth["failure_point"] == "result":
    return False
  return means_goal(world, dialogue, turn_index, text, preferences=preferences)


def means_goal(
  world: world_lib.World,
  dialogue: Mapping,
  turn_index: int,
  text: str,
  *,
  preferences: Optional[Preferences] = None,
) -> bool:
  """Whether `text` is read as what the user of turn `turn_index` meant (its goal), whatever the back end does.

  False for a turn without a goal.  `rewrite_succeeds` is this, unless the
  back end failed the original turn.
  """
  truth = dialogue["turns"][turn_index]["truth"]
  if truth["goal_id"] is None or truth["attempt"] is None:
    return False
  goal = dialogue["truth"]["goals"][truth["goal_id"]]
  user = world_lib.user_of(world, dialogue["user_id"])
  return serves(resolve(world, text, user=user, preferences=preferences), goal)
