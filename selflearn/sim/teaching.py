"""Simulated teaching turns: a seeded grammar of what customers say to teach the assistant.

After Ping et al., "Interactive Teaching for Conversational AI"
(arXiv:2012.00958): the concepts taught are the simulated users' personal
habits that the global entity resolver gets wrong (`User.song_artist`,
`city_state`; artist affinities).  A grammar of frames with paraphrase
variety ("when i say hello i mean the one by lionel richie", "by portland i
mean portland maine", "i live in springfield missouri", "i'm a big adele
fan"), ASR-style noise (`add_noise`: the world's shared confusions and
phonetic neighbours, dropped function words) and distractors that teach
nothing (ordinary requests such as "play hello by adele", chit-chat such as
"when i say stop i mean it").  Truth: `(kind, key, value)` or None, and BIO
tags of the key / value spans.  Some frames are held out of the annotated
training corpus (`corpus`), to measure paraphrase generalisation;
`teaching_turns` has every user of the training period teach their true
habits, `oracle_store` is full knowledge of them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import ml_collections
import numpy as np

from selflearn.language import ontology
from selflearn.sim import world as world_lib
from selflearn.sim.users import User
from selflearn.teaching import preferences
from selflearn.teaching.turns import TeachingTurn

# Placeholder -> tag role: the key / value spans of a frame; others are untagged.
_ROLES = {"title": "KEY", "city": "KEY", "artist": "VAL", "state": "VAL"}

# kind -> (frame, held out of the annotated training corpus).  `home` frames teach a `city` entry.
FRAMES: Mapping[str, tuple[tuple[str, bool], ...]] = {
  "song": (
    ("when i say {title} i mean the one by {artist}", False),
    ("by {title} i mean the {artist} song", False),
    ("if i ask for {title} i want the {artist} version", False),
    ("{title} means the one by {artist} for me", False),
    ("remember that my {title} is by {artist}", False),
    ("when i ask you to play {title} play the {artist} one", False),
    ("i always mean {artist} when i say {title}", True),
    ("the {title} i like is the one {artist} sings", True),
  ),
  "city": (
    ("by {city} i mean {city} {state}", False),
    ("when i say {city} i mean the one in {state}", False),
    ("{city} means {city} {state} not {city} {other}", False),
    ("i mean {city} {state} when i say {city}", False),
    ("remember that {city} is {city} {state} for me", False),
    ("my {city} is the one in {state}", True),
  ),
  "home": (
    ("i live in {city} {state}", False),
    ("i'm from {city} {state}", False),
    ("my home is in {city} {state}", False),
    ("we moved to {city} {state}", False),
    ("home for me is {city} in {state}", True),
  ),
  "artist": (
    ("i'm a big {artist} fan", False),
    ("i'm a huge fan of {artist}", False),
    ("i love {artist}", False),
    ("{artist} is my favorite artist", False),
    ("i really like {artist}", False),
    ("i listen to {artist} all the time", True),
    ("nobody beats {artist} for me", True),
  ),
}
# Chit-chat that teaches nothing (some mention entities, some mimic a teaching frame).
CHITCHAT: tuple[tuple[str, bool], ...] = (
  ("who sings {title}", False),
  ("is {artist} touring this year", False),
  ("how old is {artist}", False),
  ("what time is it in {city}", False),
  ("how far is {city} {state} from here", False),
  ("i love this song", False),
  ("i'm a big fan of yours", False),
  ("you are my favorite", False),
  ("i live for the weekend", False),
  ("what do you mean", False),
  ("tell me a joke", False),
  ("when i say stop i mean it", False),
  ("i really like you", False),
  ("how are you today", False),
  ("i mean it thank you", True),
  ("play something i like", True),
  ("is {city} in {state}", True),
  ("i'm from the future", True),
)


def _pick(rng: np.random.Generator, options: Sequence):
  return options[int(rng.integers(len(options)))]


def _render(frame: str, values: Mapping[str, str]) -> tuple[list[str], list[str]]:
  """Words and BIO tags of `frame` with its placeholders filled (key / value roles tagged)."""
  words, tags = [], []
  for part in frame.split():
    if part.startswith("{"):
      name = part[1:-1]
      role = _ROLES.get(name)
      for k, w in enumerate(values[name].split()):
        words.append(w)
        tags.append("O" if role is None else f"{'B' if k == 0 else 'I'}-{role}")
    else:
      words.append(part)
      tags.append("O")
  return words, tags


def _kind_frames(kind: str, include_held_out: bool) -> list[tuple[str, bool]]:
  return [(f, h) for f, h in FRAMES[kind] if include_held_out or not h]


def _teaching(rng, kind: str, key: str, value: str, include_held_out: bool) -> tuple[list, list, tuple, str, bool]:
  """A teaching utterance of `(kind, key, value)` (kind `home` teaches a city entry)."""
  frames = _kind_frames(kind, include_held_out)
  if kind in ("city", "home"):
    others = [s for s in ontology.CITIES[key] if s != value]
    if not others:
      frames = [(f, h) for f, h in frames if "{other}" not in f]
    vals = {"city": key, "state": value, "other": _pick(rng, others) if others else ""}
    truth = ("city", key, value)
  elif kind == "song":
    vals, truth = {"title": key, "artist": value}, ("song", key, value)
  else:
    vals, truth = {"artist": key}, ("artist", key, preferences.FAN)
  frame, held = _pick(rng, frames)
  words, tags = _render(frame, vals)
  if kind == "artist":
    tags = [t.replace("VAL", "KEY") for t in tags]  # the artist is the key of an affinity
  return words, tags, truth, frame, held


def _random_entity_values(rng) -> dict[str, str]:
  city = _pick(rng, list(ontology.CITIES))
  title = _pick(rng, list(preferences.SONG_ARTISTS))
  return {
    "title": title,
    "artist": _pick(rng, ontology.ARTISTS),
    "city": city,
    "state": _pick(rng, ontology.CITIES[city]),
  }


def _distractor(rng, include_held_out: bool) -> tuple[list, list, None, str, bool]:
  """An utterance that teaches nothing: an ordinary request (half) or chit-chat."""
  if rng.random() < 0.5:
    templates = [(i, t) for i, (_, ts) in ontology.INTENTS.items() for t in ts]
    templates += [("get_weather", "weather in {city} {state}"), ("play_song", "play {song} by {sung_by}")]
    intent, template = _pick(rng, templates)
    vals = _random_entity_values(rng)
    song = _pick(rng, list(preferences.SONG_ARTISTS))
    vals.update(song=song, sung_by=_pick(rng, preferences.SONG_ARTISTS[song]))
    for slot in ("station", "title", "device", "room", "level", "duration", "time", "item"):
      vals[slot] = _pick(rng, _SLOT_VALUES[slot])
    vals["contact"] = _pick(rng, ontology.FIRST_NAMES)
    if intent == "play_song" and "{artist}" in template:
      vals["artist"] = _pick(rng, preferences.SONG_ARTISTS[song])
    words = [w for part in template.split() for w in (vals[part[1:-1]].split() if part.startswith("{") else [part])]
    return words, ["O"] * len(words), None, "request", False
  frames = [(f, h) for f, h in CHITCHAT if include_held_out or not h]
  frame, held = _pick(rng, frames)
  vals = _random_entity_values(rng)
  words = [w for part in frame.split() for w in (vals[part[1:-1]].split() if part.startswith("{") else [part])]
  return words, ["O"] * len(words), None, frame, held


_SLOT_VALUES = {
  "station": ontology.STATIONS,
  "title": ontology.TITLES,
  "device": ontology.DEVICES,
  "room": ontology.ROOMS,
  "level": ontology.LEVELS,
  "duration": ontology.DURATIONS,
  "time": ontology.TIMES,
  "item": ontology.ITEMS,
}


def add_noise(
  world: world_lib.World, rng, words: Sequence[str], tags: Sequence[str], *, asr_noise: float, systematic: float
) -> tuple[list[str], list[str]]:
  """ASR-style noise: the shared confusions (their rate x `systematic`), phonetic neighbours (`asr_noise`), drops.

  A tag travels with its word; a dropped function word takes its tag with it.
  """
  out_w, out_t = [], []
  for w, t in zip(words, tags, strict=True):
    conf = world.asr_confusions.get(w)
    if conf and rng.random() < conf[1] * systematic:
      out_w.append(conf[0])
    elif w not in ontology.FUNCTION_WORDS and world.neighbours.get(w) and rng.random() < asr_noise:
      out_w.append(_pick(rng, world.neighbours[w]))
    elif w in ontology.FUNCTION_WORDS and t == "O" and len(words) > 3 and rng.random() < asr_noise / 2:
      continue
    else:
      out_w.append(w)
    out_t.append(t)
  return out_w, out_t


def _fan_candidates(user: User) -> list[str]:
  """Artists the user may call themselves a fan of without contradicting a title habit."""
  consistent = lambda a: all(user.song_artist.get(t) == a for t in preferences.AMBIGUOUS_BY_ARTIST[a])
  out = [user.song_artist[t] for t in sorted(user.song_artist)]
  out += [a for a in user.artist_order[:3] if consistent(a)]
  return list(dict.fromkeys(out))


def _user_teaching(rng, user: User, include_held_out: bool):
  """One teaching utterance of `user`'s true habits: an ambiguous title, an ambiguous city, home, or a fan.

  In the open world a song entity names its artist (users have no title habit) and the catalogue's artists
  are generated, so users teach their cities only (an ambiguous city, or home).
  """
  kinds = ("song", "city", "home", "artist") if user.song_artist else ("city", "home")
  kind = _pick(rng, kinds)
  if kind == "song":
    title = _pick(rng, sorted(user.song_artist))
    return _teaching(rng, "song", title, user.song_artist[title], include_held_out)
  if kind == "city":
    city = _pick(rng, sorted(user.city_state))
    return _teaching(rng, "city", city, user.city_state[city], include_held_out)
  if kind == "home":
    home = user.home_city
    return _teaching(rng, "home", home, user.city_state.get(home, ontology.CITIES[home][0]), include_held_out)
  return _teaching(rng, "artist", _pick(rng, _fan_candidates(user)), preferences.FAN, include_held_out)


def teaching_turns(
  world: world_lib.World, dialogues: Sequence[Mapping], cfg: ml_collections.ConfigDict, seed: int
) -> list[TeachingTurn]:
  """Each user of `dialogues` (the training period) says `cfg.turns_per_user` turns to the assistant.

  Turns are distractors with probability `cfg.distractor_rate`, otherwise
  they teach one of the user's true habits.  Each happens in one of the
  user's dialogues (drawn), after its start; every frame may occur.
  """
  by_user: dict[str, list[Mapping]] = {}
  for d in dialogues:
    by_user.setdefault(d["user_id"], []).append(d)
  out = []
  for user_id in sorted(by_user):
    user = world_lib.user_of(world, user_id)
    rng = np.random.default_rng([seed, 0x7EAC, int(user_id.lstrip("u"))])
    for k in range(cfg.turns_per_user):
      d = _pick(rng, by_user[user_id])
      if rng.random() < cfg.distractor_rate:
        words, tags, truth, frame, held = _distractor(rng, True)
      else:
        words, tags, truth, frame, held = _user_teaching(rng, user, True)
      words, tags = add_noise(world, rng, words, tags, asr_noise=cfg.asr_noise, systematic=cfg.systematic_noise)
      ts = float(d["start_time"]) + float(rng.uniform(0, 60))
      out.append(TeachingTurn(user_id, d["dialogue_id"], k, ts, tuple(words), tuple(tags), truth, frame, held))
  return out


def corpus(world: world_lib.World, n: int, cfg: ml_collections.ConfigDict, seed: int) -> list[TeachingTurn]:
  """`n` annotated turns for training the extractor: random (valid) entries, held-out frames excluded."""
  rng = np.random.default_rng([seed, 0xC0DE])
  out = []
  for k in range(n):
    if rng.random() < cfg.distractor_rate:
      words, tags, truth, frame, held = _distractor(rng, False)
    else:
      kind = _pick(rng, ("song", "city", "home", "artist"))
      v = _random_entity_values(rng)
      key = {"song": v["title"], "city": v["city"], "home": v["city"], "artist": v["artist"]}[kind]
      value = {"song": _pick(rng, preferences.SONG_ARTISTS[v["title"]]), "artist": preferences.FAN}.get(
        kind, v["state"]
      )
      words, tags, truth, frame, held = _teaching(rng, kind, key, value, False)
    words, tags = add_noise(world, rng, words, tags, asr_noise=cfg.asr_noise, systematic=cfg.systematic_noise)
    out.append(TeachingTurn("annotated", "", k, 0.0, tuple(words), tuple(tags), truth, frame, held))
  return out


def oracle_store(world: world_lib.World, user_ids: Sequence[str]) -> preferences.PreferenceStore:
  """Full knowledge: every user's true title and city habits."""
  store = preferences.PreferenceStore()
  for uid in user_ids:
    user = world_lib.user_of(world, uid)
    for title, artist in sorted(user.song_artist.items()):
      store.add(uid, preferences.Entry("song", title, artist))
    for city, state in sorted(user.city_state.items()):
      store.add(uid, preferences.Entry("city", city, state))
  return store
