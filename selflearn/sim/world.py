"""The simulated world: the shared error tables over the catalogues, and the users.

`make_world(seed, num_users)` builds everything the dialogue simulator
(`selflearn.sim.simulator`) samples from, over the catalogues of
`selflearn.language.ontology`; it is a pure function of its
arguments.  Two kinds of structure matter for self-learning:

* **Shared (global) error patterns**: a fixed table of systematic ASR
  confusions, built from CMUdict phonetic neighbours (`selflearn.language.phonetics`), e.g.
  "imagine dragons" is heard as "imagined dragons" by every user with the
  same probability; plus context-blind NLU routing ("play frozen" on a
  speaker is an audiobook, the NLU says video; "what is the temperature"
  with the oven on).  Aggregated across users these are what a precomputed
  (absorbing-Markov-chain) rewriter learns.
* **Personal habits** (`selflearn.sim.users`): each user's favourite artists (a Zipf law over a
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

from selflearn.language import ontology, phonetics
from selflearn.sim import openworld
from selflearn.sim import users as users_lib


@dataclasses.dataclass(frozen=True)
class World:
  """Catalogues, the shared error tables and the users of one simulation."""

  seed: int
  users: tuple[users_lib.User, ...]
  asr_confusions: Mapping[str, tuple[str, float]]  # word -> (confused word, probability): shared by all users
  neighbours: Mapping[str, tuple[str, ...]]  # word -> phonetic neighbours (random ASR substitutions)
  song_popularity: Mapping[str, tuple[str, ...]]  # title -> artists, most popular first
  result_error: Mapping[str, float]  # domain -> result failure rate
  vocabulary: tuple[str, ...]  # every word a template or catalogue can produce (sorted)
  open: openworld.OpenParts | None = None  # the open world's catalogues, accents, drift, activity

  @property
  def is_open(self) -> bool:
    return self.open is not None

  def slot_values(self, slot: str, user: users_lib.User) -> Sequence[str]:
    """The values `user` may say for `slot` (contacts are personal)."""
    return {
      "song": tuple(sorted(self.song_popularity)),
      "artist": ontology.ARTISTS,
      "station": ontology.STATIONS,
      "title": ontology.TITLES,
      "device": ontology.DEVICES,
      "room": ontology.ROOMS,
      "level": ontology.LEVELS,
      "city": tuple(ontology.CITIES),
      "duration": ontology.DURATIONS,
      "time": ontology.TIMES,
      "item": ontology.ITEMS,
      "contact": user.contacts,
    }[slot]


# Entity words the systematic confusions are drawn from (carrier words get random errors only).
def _entity_words() -> list[str]:
  values = (
    [s for s, _, _ in ontology.SONGS]
    + list(ontology.ARTISTS)
    + list(ontology.TITLES)
    + list(ontology.ITEMS)
    + list(ontology.STATIONS)
  )
  return sorted({w for v in values for w in v.split() if w not in ontology.FUNCTION_WORDS})


def _pick_confusion(word: str, options: Sequence[str], rng: np.random.Generator) -> str | None:
  prons = phonetics.pronunciations()
  if not options or word not in prons:
    return None
  # Prefer same-length substitutions (the usual ASR error), then the rest.
  same = [o for o in options if len(prons[o]) == len(prons[word])]
  pool = same or list(options)
  return pool[int(rng.integers(len(pool)))]


def make_world(seed: int = 0, num_users: int = 100, *, systematic_fraction: float = 0.5) -> World:
  """Builds the shared confusion table, the back ends' failure rates and `num_users` users.

  Args:
    seed: world seed (catalogue confusions, users); dialogues have their own.
    num_users: number of simulated customers.
    systematic_fraction: share of confusable entity words that get a shared
      systematic ASR confusion.
  """
  if num_users < 1:
    raise ValueError(f"num_users must be >= 1, got {num_users}.")
  rng = np.random.default_rng([seed, 0x5E1F])
  words = ontology.catalogue_words()
  neighbours = phonetics.phonetic_neighbours(words)
  confusions = {}
  for w in _entity_words():
    choice = _pick_confusion(w, neighbours.get(w, ()), rng)
    if choice is not None and rng.random() < systematic_fraction:
      confusions[w] = (choice, float(rng.uniform(0.35, 0.8)))
  popularity: dict[str, list[tuple[int, str]]] = {}
  for title, artist, pop in ontology.SONGS:
    popularity.setdefault(title, []).append((pop, artist))
  song_popularity = {t: tuple(a for _, a in sorted(v, key=lambda x: (-x[0], x[1]))) for t, v in popularity.items()}
  result_error = {d: float(rng.uniform(0.02, 0.06)) for d in ontology.DOMAIN_NAMES if d not in ("none", "global")}
  users = tuple(users_lib.make_user(i, rng, song_popularity) for i in range(num_users))
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


def make_world_for(config) -> World:
  """The world of a `simulator.SimConfig`: the closed world (`make_world`) or the open one (`make_open_world`)."""
  if config.world == "closed":
    return make_world(config.seed, config.num_users, systematic_fraction=config.systematic_fraction)
  return make_open_world(config)


def make_open_world(config) -> World:
  """The open world of `config` (`selflearn.sim.openworld`): a pure function of the config's world fields."""
  rng = np.random.default_rng([config.seed, 0x09E4])
  parts, extra = openworld.make_open_parts(config, rng, phonetics.phonetic_neighbours)
  song_popularity = openworld.song_popularity(parts.catalogues["song"])
  result_error = {d: float(rng.uniform(0.02, 0.06)) for d in ontology.DOMAIN_NAMES if d not in ("none", "global")}
  users = []
  for i in range(config.num_users):
    base = users_lib.make_user(i, rng, {})  # a song entity names its artist: no per-user song habit
    users.append(dataclasses.replace(base, **openworld.open_user_extras(i, config, parts, rng, base.devices)))
  neighbours = extra["neighbours"]
  vocab = set(neighbours) | {w for opts in neighbours.values() for w in opts}
  vocab |= {w for u in users for n in list(u.device_aliases) + list(u.nicknames) + list(u.contacts) for w in n.split()}
  return World(
    seed=config.seed,
    users=tuple(users),
    asr_confusions=extra["early"],
    neighbours=neighbours,
    song_popularity=song_popularity,
    result_error=result_error,
    vocabulary=tuple(sorted(vocab)),
    open=parts,
  )


def user_of(world: World, user_id: str) -> users_lib.User:
  """The simulated customer behind a log's `user_id` (`u<index>`)."""
  return world.users[int(user_id.lstrip("u"))]
