"""The assistant's ontology and catalogues: what the logs' categorical fields and entity values range over.

Intents with their domains and surface templates (BIO slots as `{slot}`
placeholders), the slot names, and the entity catalogues (songs with their
artists and popularity, artists, stations, titles, devices, rooms, levels,
durations, times, shopping items, cities with their states, contact names).
A production assistant knows these from its NLU schema and its catalogues,
so models may use them; what the simulator keeps hidden (users, their
habits, the shared ASR confusion table) lives in `selflearn.sim`.
"""

from __future__ import annotations

from typing import Mapping

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
