"""The simulated world: intents, slot catalogues, shared error patterns, users and devices.

`make_world(seed, num_users)` builds everything the dialogue simulator
(`selflearn.simulator`) samples from; it is a pure function of its
arguments.  Two kinds of structure matter for self-learning:

* **Shared (global) error patterns**: a fixed table of systematic ASR
  confusions, built from CMUdict phonetic neighbours (`phonetics`), e.g.
  "imagine dragons" is heard as "imagined dragons" by every user with the
  same probability; plus context-blind NLU routing ("play frozen" on a
  speaker is an audiobook, the NLU says video; "what is the temperature"
  with the oven on).  Aggregated across users these are what a precomputed
  (absorbing-Markov-chain) rewriter learns.
* **Personal habits**: each user's favourite artists (a Zipf law over a
  user-specific order), the state of their ambiguous home city ("springfield"
  resolves to Illinois globally; a Missouri user means Missouri), the artist
  they mean by an ambiguous song title, their contacts (rare spellings the
  entity resolver often misses), active hours and an intent mix by time of
  day.  These are what a personal rewriting layer learns.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from selflearn import phonetics

FUNCTION_WORDS = frozenset({"the", "a", "an", "my", "to", "for", "of", "in", "on", "at", "some", "by", "me", "up"})

# intent -> (domain, templates).  `{slot}` placeholders; a template's words
# outside placeholders are the "carrier" words.
INTENTS: Mapping[str, tuple[str, tuple[str, ...]]] = {
  "play_song": (
    "music",
    ("play {song}", "play {song} by {artist}", "put on {song} by {artist}", "play the song {song}"),
  ),
  "play_artist": ("music", ("play {artist}", "play some {artist}", "play music by {artist}")),
  "play_station": ("music", ("play {station} radio", "tune in to {station} radio")),
  "play_video": ("video", ("play {title}", "watch {title}", "play the movie {title}")),
  "play_audiobook": ("books", ("play {title}", "read {title}", "play the audiobook {title}")),
  "turn_on": ("smart_home", ("turn on the {device}", "turn on the {room} {device}", "switch on the {device}")),
  "turn_off": ("smart_home", ("turn off the {device}", "turn off the {room} {device}", "switch off the {device}")),
  "set_level": ("smart_home", ("set the {device} to {level} percent", "dim the {device} to {level} percent")),
  "oven_temperature": ("appliance", ("what is the temperature", "what is the oven temperature")),
  "get_weather": ("weather", ("what is the weather in {city}", "weather in {city}", "how is the weather in {city}")),
  "get_temperature": ("weather", ("what is the temperature", "how warm is it outside")),
  "set_timer": ("timers", ("set a timer for {duration}", "timer for {duration}", "start a {duration} timer")),
  "set_alarm": ("timers", ("set an alarm for {time}", "wake me up at {time}")),
  "add_item": ("shopping", ("add {item} to my shopping list", "put {item} on my list", "add {item} to the list")),
  "call": ("communication", ("call {contact}", "phone {contact}", "give {contact} a call")),
  "out_of_scope": ("unsupported", ("make me a sandwich", "do my homework", "clean the kitchen floor")),
  "stop": ("global", ("stop", "cancel", "alexa stop")),
  "feedback_positive": ("global", ("thanks", "thank you", "perfect")),
  "feedback_negative": ("global", ("no that is wrong", "that is not what i asked", "wrong")),
}
# Intents a user starts a goal with (stop/feedback only follow other turns).
GOAL_INTENTS = tuple(i for i in INTENTS if INTENTS[i][0] != "global")
# Index 0 is reserved for false wakes ("no intent").
INTENT_NAMES = ("none", *INTENTS)
DOMAIN_NAMES = ("none", *sorted({d for d, _ in INTENTS.values()}))
SLOT_NAMES = (
  "song",
  "artist",
  "station",
  "title",
  "device",
  "room",
  "level",
  "city",
  "duration",
  "time",
  "item",
  "contact",
)

# (title, artist, popularity): a title sung by two artists is ambiguous
# without "by <artist>"; the resolver picks the more popular version.
SONGS = (
  ("believer", "imagine dragons", 5),
  ("thunder", "imagine dragons", 4),
  ("yellow", "coldplay", 5),
  ("hello", "adele", 6),
  ("hello", "lionel richie", 2),
  ("purple haze", "jimi hendrix", 3),
  ("sunflower", "post malone", 4),
  ("beautiful", "bazzi", 2),
  ("beautiful", "christina aguilera", 3),
  ("halo", "beyonce", 4),
  ("umbrella", "rihanna", 4),
  ("roar", "katy perry", 3),
  ("shallow", "lady gaga", 3),
  ("believe", "cher", 2),
  ("dancing queen", "abba", 3),
  ("river", "leon bridges", 1),
  ("river", "joni mitchell", 2),
  ("bad guy", "billie eilish", 4),
  ("wonderwall", "oasis", 3),
  ("fields of gold", "sting", 2),
)
ARTISTS = tuple(
  sorted({a for _, a, _ in SONGS} | {"drake", "queen", "eminem", "shakira", "selena gomez", "bruno mars"})
)
STATIONS = ("jazz", "country", "classic rock", "hip hop", "news", "chill", "oldies", "sports")
TITLES = ("harry potter", "frozen", "the hunger games", "dune", "matilda", "the hobbit", "wonder", "coraline")
DEVICES = ("light", "lamp", "fan", "heater", "plug", "tv")
ROOMS = ("kitchen", "bedroom", "living room", "garage", "office")
LEVELS = ("ten", "twenty", "thirty", "fifty", "seventy", "eighty")
DURATIONS = ("five minutes", "ten minutes", "twenty minutes", "one hour", "thirty seconds")
TIMES = ("six am", "seven am", "seven thirty", "eight am", "noon", "nine pm")
ITEMS = ("milk", "eggs", "bread", "bananas", "coffee", "butter", "apples", "rice", "cheese", "tea")
# city -> (states by global popularity); a bare ambiguous name resolves to the first.
CITIES = {
  "springfield": ("illinois", "missouri", "massachusetts"),
  "portland": ("oregon", "maine"),
  "wilkerson": ("washington", "california"),
  "columbus": ("ohio", "georgia"),
  "seattle": ("washington",),
  "boston": ("massachusetts",),
  "denver": ("colorado",),
  "austin": ("texas",),
  "chicago": ("illinois",),
  "miami": ("florida",),
}
FIRST_NAMES = ("aoife", "siobhan", "niamh", "xavier", "joaquin", "saoirse", "ximena", "gwendolyn", "mom", "dad")
TIME_OF_DAY = ("night", "morning", "afternoon", "evening")
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


@dataclasses.dataclass(frozen=True)
class World:
  """Catalogues, the shared error tables and the users of one simulation."""

  seed: int
  users: tuple[User, ...]
  asr_confusions: Mapping[str, tuple[str, float]]  # word -> (confused word, probability): shared by all users
  neighbours: Mapping[str, tuple[str, ...]]  # word -> phonetic neighbours (random ASR substitutions)
  song_popularity: Mapping[str, tuple[str, ...]]  # title -> artists, most popular first
  result_error: Mapping[str, float]  # domain -> result failure rate
  vocabulary: tuple[str, ...]  # every word a template or catalogue can produce (sorted)

  def slot_values(self, slot: str, user: User) -> Sequence[str]:
    """The values `user` may say for `slot` (contacts are personal)."""
    return {
      "song": tuple(sorted(self.song_popularity)),
      "artist": ARTISTS,
      "station": STATIONS,
      "title": TITLES,
      "device": DEVICES,
      "room": ROOMS,
      "level": LEVELS,
      "city": tuple(CITIES),
      "duration": DURATIONS,
      "time": TIMES,
      "item": ITEMS,
      "contact": user.contacts,
    }[slot]


def catalogue_words() -> list[str]:
  """Every word of the slot catalogues and templates (before ASR confusions)."""
  words = set()
  for _, templates in INTENTS.values():
    for t in templates:
      words.update(w for w in t.split() if not w.startswith("{"))
  values = [s for s, _, _ in SONGS] + list(ARTISTS) + list(STATIONS) + list(TITLES) + list(DEVICES)
  values += list(ROOMS) + list(LEVELS) + list(DURATIONS) + list(TIMES) + list(ITEMS) + list(FIRST_NAMES)
  values += list(CITIES) + [s for states in CITIES.values() for s in states]
  for v in values:
    words.update(v.split())
  return sorted(words)


# Entity words the systematic confusions are drawn from (carrier words get random errors only).
def _entity_words() -> list[str]:
  values = [s for s, _, _ in SONGS] + list(ARTISTS) + list(TITLES) + list(ITEMS) + list(STATIONS)
  return sorted({w for v in values for w in v.split() if w not in FUNCTION_WORDS})


def _pick_confusion(word: str, options: Sequence[str], rng: np.random.Generator) -> str | None:
  prons = phonetics.pronunciations()
  if not options or word not in prons:
    return None
  # Prefer same-length substitutions (the usual ASR error), then the rest.
  same = [o for o in options if len(prons[o]) == len(prons[word])]
  pool = same or list(options)
  return pool[int(rng.integers(len(pool)))]


def make_world(seed: int = 0, num_users: int = 100, *, systematic_fraction: float = 0.5) -> World:
  """Builds the catalogues, the shared confusion table and `num_users` users.

  Args:
    seed: world seed (catalogue confusions, users); dialogues have their own.
    num_users: number of simulated customers.
    systematic_fraction: share of confusable entity words that get a shared
      systematic ASR confusion.
  """
  if num_users < 1:
    raise ValueError(f"num_users must be >= 1, got {num_users}.")
  rng = np.random.default_rng([seed, 0x5E1F])
  words = catalogue_words()
  neighbours = phonetics.phonetic_neighbours(words)
  confusions = {}
  for w in _entity_words():
    choice = _pick_confusion(w, neighbours.get(w, ()), rng)
    if choice is not None and rng.random() < systematic_fraction:
      confusions[w] = (choice, float(rng.uniform(0.35, 0.8)))
  popularity: dict[str, list[tuple[int, str]]] = {}
  for title, artist, pop in SONGS:
    popularity.setdefault(title, []).append((pop, artist))
  song_popularity = {t: tuple(a for _, a in sorted(v, key=lambda x: (-x[0], x[1]))) for t, v in popularity.items()}
  result_error = {d: float(rng.uniform(0.02, 0.06)) for d in DOMAIN_NAMES if d not in ("none", "global")}
  users = tuple(_make_user(i, rng, song_popularity) for i in range(num_users))
  vocab = set(words)
  for opts in neighbours.values():
    vocab.update(opts)
  return World(
    seed=seed,
    users=users,
    asr_confusions=confusions,
    neighbours=neighbours,
    song_popularity=song_popularity,
    result_error=result_error,
    vocabulary=tuple(sorted(vocab)),
  )


def _make_user(i: int, rng: np.random.Generator, song_popularity: Mapping[str, tuple[str, ...]]) -> User:
  start = int(rng.integers(6, 20))
  hours = tuple(sorted({(start + int(h)) % 24 for h in rng.integers(0, 6, size=4)}))
  bias = {intent: float(rng.lognormal(0.0, 0.8)) for intent in GOAL_INTENTS}
  artists = list(ARTISTS)
  rng.shuffle(artists)
  song_artist = {t: a[int(rng.integers(len(a)))] for t, a in song_popularity.items() if len(a) > 1}
  city_state = {c: s[int(rng.integers(len(s)))] for c, s in CITIES.items() if len(s) > 1}
  home = list(CITIES)[int(rng.integers(len(CITIES)))]
  contacts = tuple(sorted(rng.choice(FIRST_NAMES, size=3, replace=False).tolist()))
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
  k = TIME_OF_DAY.index(time_of_day)
  return np.array([_TOD_WEIGHTS[i][k] * user.intent_bias[i] for i in GOAL_INTENTS], dtype=np.float64)
