"""Simulated customers: persona, habits and devices, drawn from the world seed.

Each `User` has a persona (accent, which scales random ASR errors; patience,
the rephrases tried before abandoning; barge-in and feedback propensities;
verbosity), active hours and an intent mix by time of day, and the personal
habits a personal rewriting layer or taught preferences can learn: favourite
artists (a Zipf law over a user-specific order), the artist they mean by an
ambiguous song title, the state of each ambiguous city, their home city,
contacts with rare spellings, and 1-3 devices.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from selflearn.language import ontology

# Intent weights by time of day (night, morning, afternoon, evening).
_TOD_WEIGHTS = {
  "set_alarm": (3, 1, 1, 3),
  "get_weather": (1, 5, 2, 1),
  "get_temperature": (1, 3, 2, 1),
  "set_timer": (1, 2, 3, 3),
  "play_song": (2, 2, 3, 5),
  "play_artist": (1, 2, 3, 4),
  "play_station": (1, 3, 2, 2),
  "play_video": (1, 1, 2, 5),
  "play_audiobook": (3, 1, 1, 3),
  "turn_on": (1, 3, 1, 4),
  "turn_off": (4, 2, 1, 3),
  "set_level": (2, 1, 1, 3),
  "oven_temperature": (0, 1, 2, 3),
  "add_item": (1, 3, 2, 2),
  "call": (1, 2, 3, 2),
  "out_of_scope": (1, 1, 1, 1),
}


@dataclasses.dataclass(frozen=True)
class User:
  """A simulated customer: persona (noise, patience, reactions) and habits."""

  user_id: str
  accent: float  # multiplies the random (idiosyncratic) ASR error rate
  patience: int  # rephrases tried before abandoning a goal
  barge_in: float  # probability of interrupting a wrong response
  feedback: float  # probability of explicit feedback
  verbosity: float  # probability of the fuller template variants
  active_hours: tuple[int, ...]  # hours of day the user's sessions start in
  intent_bias: Mapping[str, float]  # personal multiplier on the time-of-day intent mix
  artist_order: tuple[str, ...]  # favourite artists first (Zipf weights)
  song_artist: Mapping[str, str]  # ambiguous title -> the artist this user means
  home_city: str
  city_state: Mapping[str, str]  # ambiguous city -> the state this user means
  contacts: tuple[str, ...]
  devices: tuple[Mapping[str, object], ...]  # {"device_id", "type", "has_screen", "room"}
  # Open world only (`selflearn.sim.openworld`); empty in the closed world.
  accent_group: int = 0  # 0: no accent-specific confusions
  frames: tuple[tuple[int, int, int], ...] = ()  # favourite (command prefix, question prefix, suffix) indices
  favourites: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)  # slot -> catalogue indices
  device_aliases: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)  # name -> (device, room)
  nicknames: Mapping[str, str] = dataclasses.field(default_factory=dict)  # "grandma" -> a contact


def make_user(i: int, rng: np.random.Generator, song_popularity: Mapping[str, tuple[str, ...]]) -> User:
  start = int(rng.integers(6, 20))
  hours = tuple(sorted({(start + int(h)) % 24 for h in rng.integers(0, 6, size=4)}))
  bias = {intent: float(rng.lognormal(0.0, 0.8)) for intent in ontology.GOAL_INTENTS}
  artists = list(ontology.ARTISTS)
  rng.shuffle(artists)
  song_artist = {t: a[int(rng.integers(len(a)))] for t, a in song_popularity.items() if len(a) > 1}
  city_state = {c: s[int(rng.integers(len(s)))] for c, s in ontology.CITIES.items() if len(s) > 1}
  home = list(ontology.CITIES)[int(rng.integers(len(ontology.CITIES)))]
  contacts = tuple(sorted(rng.choice(ontology.FIRST_NAMES, size=3, replace=False).tolist()))
  devices = [{"device_id": f"u{i:05d}-d0", "type": "speaker", "has_screen": False, "room": "kitchen"}]
  if rng.random() < 0.5:
    devices.append({"device_id": f"u{i:05d}-d1", "type": "screen", "has_screen": True, "room": "living room"})
  if rng.random() < 0.3:
    devices.append({"device_id": f"u{i:05d}-d2", "type": "speaker", "has_screen": False, "room": "bedroom"})
  return User(
    user_id=f"u{i:05d}",
    accent=float(rng.lognormal(0.0, 0.5)),
    patience=int(rng.integers(1, 4)),
    barge_in=float(rng.uniform(0.2, 0.7)),
    feedback=float(rng.uniform(0.05, 0.3)),
    verbosity=float(rng.uniform(0.1, 0.6)),
    active_hours=hours,
    intent_bias=bias,
    artist_order=tuple(artists),
    song_artist=song_artist,
    home_city=home,
    city_state=city_state,
    contacts=contacts,
    devices=tuple(devices),
  )


def intent_weights(user: User, time_of_day: str) -> np.ndarray:
  """Unnormalised weights over `GOAL_INTENTS` for `user` at `time_of_day`."""
  k = ontology.TIME_OF_DAY.index(time_of_day)
  return np.array([_TOD_WEIGHTS[i][k] * user.intent_bias[i] for i in ontology.GOAL_INTENTS], dtype=np.float64)
