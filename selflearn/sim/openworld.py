"""The open world: generated catalogues with a head and a long tail, sparse users, personal errors, drift.

The default simulator world (`SimConfig(world="open")`; the original one is
the `closed_world` preset).  `make_open_parts(config, rng)` builds, from its
own random stream, what the closed world does not have:

* **Catalogues** (`Catalogue`): thousands of songs (title, artist), artists,
  movie/book titles, radio stations and shopping items with generated names
  (one to three words drawn from the CMU Pronouncing Dictionary, so that every
  name has phonetic neighbours an ASR can confuse it with).  Each entity has a
  popularity rank (a random order) and a release day: a `new_entity_share` of
  them is released uniformly over days 1..89 and cannot be asked for before.
  A request draws from the **head** (the `head_fraction` most popular, Zipf
  with `zipf_exponent`) with probability `1 - tail_share`, else uniformly from the
  **tail** (the rest): `tail_share` sets how much test traffic was never seen
  in training (`selflearn.evaluation.recurrence`).
* **Phrasing**: every template of `selflearn.language.ontology.INTENTS` may be
  framed by a prefix ("can you", "hey alexa", ...) and a suffix ("please",
  "now", ...), each drawn from a Zipf law over its list with the bare form
  first (exponents 1.5 and 2: half the command prefixes and two thirds of
  the suffixes are empty); each user has three favourite frames (used 80% of the time).
* **Accents**: `num_accents` accent groups; group 0 has no confusions of its
  own, every other group a table of systematic ASR confusions (carrier and
  entity words, `accent_fraction` of them) that only its users suffer.
* **Personal names**: devices named by their owner ("turn on the juniper")
  and contacts called by a nickname ("call grandma"), which the entity
  resolver rarely knows.
* **Drift**: on `drift_day` an ASR model update removes a `drift_share` of the
  shared confusions and introduces as many new ones.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

import numpy as np

from selflearn.language import ontology, phonetics

GENERATED_SLOTS = ("song", "artist", "title", "station", "item")
COMMAND_PREFIXES = (
  "",
  "please",
  "can you",
  "could you",
  "would you",
  "alexa",
  "hey alexa",
  "i want you to",
  "go ahead and",
  "can you please",
)
QUESTION_PREFIXES = ("", "alexa", "hey alexa", "tell me", "can you tell me", "do you know")
SUFFIXES = ("", "please", "now", "for me", "right now", "thanks")


def _zipf(n: int, a: float) -> np.ndarray:
  w = np.arange(1, n + 1, dtype=np.float64) ** -a
  return w / w.sum()


# Phrasing is concentrated as in real traffic: most requests are bare ("" first), a few framed.
COMMAND_P, QUESTION_P, SUFFIX_P = _zipf(len(COMMAND_PREFIXES), 1.5), _zipf(len(QUESTION_PREFIXES), 1.5), _zipf(6, 2.0)
QUESTION_INTENTS = ("get_weather", "get_temperature", "oven_temperature")
LEXICON_SIZE = 1500
NICKNAMES = ("mom", "dad", "grandma", "grandpa", "my sister", "my brother", "the boss", "honey", "my doctor", "coach")


@dataclasses.dataclass(frozen=True)
class Catalogue:
  """Entities of one slot, most popular first, with their release days (and artists, for songs)."""

  names: tuple[str, ...]
  release: np.ndarray  # int day each entity appears
  head_cdf: np.ndarray  # cumulative Zipf weights over the head
  head_size: int
  artists: tuple[str, ...] = ()  # songs only: the artist of each entry

  def sample(self, rng: np.random.Generator, day: int, tail_share: float) -> int:
    """The index of one entity released by `day` (head w.p. 1 - tail_share, else uniform over the tail)."""
    n = len(self.names)
    for _ in range(64):
      if n > self.head_size and rng.random() < tail_share:
        i = int(rng.integers(self.head_size, n))
      else:
        i = int(np.searchsorted(self.head_cdf, rng.random(), side="right"))
      if self.release[i] <= day:
        return i
    return 0  # the most popular entity is always released on day 0


@dataclasses.dataclass(frozen=True)
class OpenParts:
  """What the open world adds to `World` (see the module docstring)."""

  catalogues: Mapping[str, Catalogue]
  accent_confusions: tuple[Mapping[str, tuple[str, float]], ...]  # per accent group: word -> (heard, probability)
  late_confusions: Mapping[str, tuple[str, float]]  # the shared table after the ASR update on `drift_day`
  user_cdf: np.ndarray  # cumulative Zipf activity over users (user 0 is the most active)
  words: tuple[str, ...]  # every word a generated name uses


@functools.lru_cache(maxsize=1)
def word_pool() -> tuple[str, ...]:
  """Dictionary words of 4-8 letters with a pronunciation (the material of generated names)."""
  prons = phonetics.pronunciations()
  return tuple(sorted(w for w, p in prons.items() if 4 <= len(w) <= 8 and len(p) <= 7))


def _names(rng: np.random.Generator, n: int, lengths: tuple[float, ...], taken: set[str], pool) -> list[str]:
  out = []
  while len(out) < n:
    k = 1 + int(rng.choice(len(lengths), p=np.asarray(lengths) / sum(lengths)))
    name = " ".join(pool[int(j)] for j in rng.integers(len(pool), size=k))
    if name not in taken:
      taken.add(name)
      out.append(name)
  return out


def _catalogue(rng, names, config, artists=()) -> Catalogue:
  n = len(names)
  release = np.where(rng.random(n) < config.new_entity_share, rng.integers(1, config.num_days, size=n), 0)
  release[0] = 0
  head = max(1, int(round(config.head_fraction * n)))
  w = np.arange(1, head + 1, dtype=np.float64) ** -config.zipf_exponent
  return Catalogue(tuple(names), release, np.cumsum(w) / w.sum(), head, tuple(artists))


def make_catalogues(config, rng: np.random.Generator) -> dict[str, Catalogue]:
  """Songs, artists, titles, stations and items with generated names (`config.catalogue_size` songs)."""
  size = config.catalogue_size
  taken: set[str] = set()
  full = word_pool()
  # One lexicon of LEXICON_SIZE words per world: names share words, as real titles do.
  pool = tuple(sorted(full[int(j)] for j in rng.choice(len(full), size=min(LEXICON_SIZE, len(full)), replace=False)))
  artists = _names(rng, max(size // 10, 20), (3.0, 2.0), taken, pool)
  titles = _names(rng, size, (3.0, 3.0, 1.0), taken, pool)
  # A few titles are sung by two artists (a bare title is ambiguous: the resolver picks the more popular).
  dup = rng.random(size) < 0.03
  titles = [titles[int(rng.integers(i))] if dup[i] and i > 0 else t for i, t in enumerate(titles)]
  a_cdf = np.cumsum(np.arange(1, len(artists) + 1, dtype=np.float64) ** -1.0)
  song_artists = [artists[int(np.searchsorted(a_cdf / a_cdf[-1], rng.random(), side="right"))] for _ in titles]
  seen: set[tuple[str, str]] = set()
  songs, song_by = [], []
  for t, a in zip(titles, song_artists):
    if (t, a) not in seen:
      seen.add((t, a))
      songs.append(t)
      song_by.append(a)
  return {
    "song": _catalogue(rng, songs, config, song_by),
    "artist": _catalogue(rng, artists, config),
    "title": _catalogue(rng, _names(rng, max(size // 3, 20), (3.0, 3.0, 1.0), taken, pool), config),
    "station": _catalogue(rng, _names(rng, max(size // 50, 10), (3.0, 1.0), taken, pool), config),
    "item": _catalogue(rng, _names(rng, max(size // 10, 20), (4.0, 1.0), taken, pool), config),
  }


def song_popularity(catalogue: Catalogue) -> dict[str, tuple[str, ...]]:
  """Title -> its artists, most popular first (what the resolver picks for a bare title)."""
  out: dict[str, list[str]] = {}
  for t, a in zip(catalogue.names, catalogue.artists):
    out.setdefault(t, []).append(a)
  return {t: tuple(a) for t, a in out.items()}


def _confusions(words, neighbours, rng, fraction, lo, hi, exclude=frozenset()) -> dict[str, tuple[str, float]]:
  out = {}
  for w in words:
    opts = [o for o in neighbours.get(w, ()) if o.isalpha()]
    if w in exclude or not opts or rng.random() >= fraction:
      continue
    out[w] = (opts[int(rng.integers(len(opts)))], float(rng.uniform(lo, hi)))
  return out


def make_open_parts(config, rng: np.random.Generator, neighbours_of) -> tuple[OpenParts, dict]:
  """The open world's catalogues, accent tables, drifted table and user activity; also the neighbours used."""
  catalogues = make_catalogues(config, rng)
  words = sorted({w for c in catalogues.values() for n in c.names for w in n.split()})
  carrier = sorted(
    {w for _, ts in ontology.INTENTS.values() for t in ts for w in t.split() if not w.startswith("{")}
    | {w for f in COMMAND_PREFIXES + QUESTION_PREFIXES + SUFFIXES for w in f.split()}
  )
  neighbours = neighbours_of(tuple(sorted(set(words) | set(carrier) | set(ontology.catalogue_words()))))
  entity = [w for w in words if w not in ontology.FUNCTION_WORDS]
  early = _confusions(entity, neighbours, rng, config.systematic_fraction, 0.35, 0.8)
  kept = {w: v for w, v in early.items() if rng.random() >= config.drift_share}
  fresh = _confusions(entity, neighbours, rng, config.systematic_fraction * config.drift_share, 0.35, 0.8, set(early))
  late = {**kept, **fresh}
  content_carrier = [w for w in carrier if w not in ontology.FUNCTION_WORDS]
  accents = [{}]
  for _ in range(1, config.num_accents):
    table = _confusions(content_carrier, neighbours, rng, config.accent_fraction, 0.3, 0.7)
    table.update(_confusions(entity, neighbours, rng, config.accent_fraction, 0.3, 0.7))
    accents.append(table)
  w = np.arange(1, config.num_users + 1, dtype=np.float64) ** -config.activity_exponent
  parts = OpenParts(
    catalogues=catalogues,
    accent_confusions=tuple(accents),
    late_confusions=late,
    user_cdf=np.cumsum(w) / w.sum(),
    words=tuple(words),
  )
  return parts, {"early": early, "neighbours": neighbours}


def open_user_extras(i: int, config, parts: OpenParts, rng: np.random.Generator, devices) -> dict:
  """The open-world fields of user `i`: accent group, favourite frames and entities, device names, contacts."""
  pool = parts.words
  accent_group = int(rng.integers(config.num_accents)) if config.num_accents > 1 else 0
  frames = tuple(
    (int(rng.choice(len(COMMAND_P), p=COMMAND_P)), int(rng.choice(len(QUESTION_P), p=QUESTION_P)), _suffix(rng))
    for _ in range(3)
  )
  favourites = {}
  for slot in ("song", "artist", "title", "station"):
    cat = parts.catalogues[slot]
    favourites[slot] = tuple(sorted({cat.sample(rng, 0, config.tail_share) for _ in range(5)}))
  aliases = {}
  for d in devices:
    if rng.random() < 0.5:
      alias = pool[int(rng.integers(len(pool)))]
      aliases[alias] = (str(ontology.DEVICES[int(rng.integers(len(ontology.DEVICES)))]), str(d["room"]))
  contacts = tuple(
    sorted({f"{pool[int(rng.integers(len(pool)))]} {pool[int(rng.integers(len(pool)))]}" for _ in range(4)})
  )
  picks = rng.choice(len(NICKNAMES), size=2, replace=False)
  nicknames = {NICKNAMES[int(k)]: contacts[j % len(contacts)] for j, k in enumerate(picks)}
  return {
    "accent_group": accent_group,
    "frames": frames,
    "favourites": favourites,
    "device_aliases": aliases,
    "contacts": contacts,
    "nicknames": nicknames,
  }


def _suffix(rng: np.random.Generator) -> int:
  return int(rng.choice(len(SUFFIX_P), p=SUFFIX_P))


def frame(rng: np.random.Generator, user, intent: str) -> tuple[str, str]:
  """(prefix, suffix) of one request: one of the user's favourite frames 80% of the time, else a random one."""
  if user.frames and rng.random() < 0.8:
    c, q, s = user.frames[int(rng.integers(len(user.frames)))]
  else:
    c, q, s = int(rng.choice(len(COMMAND_P), p=COMMAND_P)), int(rng.choice(len(QUESTION_P), p=QUESTION_P)), _suffix(rng)
  prefix = QUESTION_PREFIXES[q] if intent in QUESTION_INTENTS else COMMAND_PREFIXES[c]
  return prefix, SUFFIXES[s]
