"""Teachable preferences: simulated teaching turns, a learned extractor, the store, its effect on defects.

After Ping et al., "Interactive Teaching for Conversational AI"
(arXiv:2012.00958) and the Amazon blog "New Alexa features: Interactive
teaching by customers": a customer tells the assistant what they mean,
the assistant extracts the concept and keeps it with the customer's account
(`selflearn.preferences`), and the next request uses it.  Here the concepts
are the simulator's personal habits that the global entity resolver gets
wrong (`world.User.song_artist`, `city_state`; artist affinities).

* **Teaching turns** (`teaching_turns`, `corpus`): a seeded grammar of
  frames with paraphrase variety ("when i say hello i mean the one by
  lionel richie", "by portland i mean portland maine", "i live in
  springfield missouri", "i'm a big adele fan"), ASR-style noise (the
  world's shared confusions and phonetic neighbours, dropped function
  words) and distractors that teach nothing (ordinary requests such as
  "play hello by adele", chit-chat such as "when i say stop i mean it").
  Truth: `(kind, key, value)` or None, and BIO tags of the key / value
  spans.  Some frames are held out of the annotated training corpus, to
  measure paraphrase generalisation.
* **Extractor** (`make_extractor`): a word-level pre-LN Transformer
  (`common.encoders.TransformerEncoder`) with a per-utterance head (does not
  teach / song / city / artist) and a per-word BIO head (key, value),
  trained through `training.fit` (Adam(W) + GreedyLR by default).  Decoded
  spans are normalised to catalogue entities by fuzzy matching (rapidfuzz)
  and must pass the store's validation.  Baseline: `rule_parse`, regular
  expressions over the frames a developer would write down.
* **Evaluation** (`run`): every user of the training dialogues teaches in
  the training period; on the test split's logged requests the defect rate
  without the store (the logged outcome) is compared with the defect rate
  with it (a turn whose interpretation the user's preferences change is
  re-judged by `interpret.rewrite_succeeds`), with paired-bootstrap 95% CIs
  over dialogues, for the learned store, the rule store, oracle extraction
  (the true entries of the same teaching turns) and full knowledge (every
  user's true habits).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import time
from typing import Any, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from rapidfuzz import fuzz, process

from common import app, encoders
from selflearn import evaluation, features, interpret, preferences
from selflearn import training as train_lib
from selflearn import world as world_lib

KIND_NAMES = ("none", "song", "city", "artist")
TAG_NAMES = ("O", "B-KEY", "I-KEY", "B-VAL", "I-VAL")
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
SIGNIFICANT = ("song", "city", "artist")


@dataclasses.dataclass(frozen=True)
class TeachingTurn:
  """One simulated user utterance to the assistant and what it teaches."""

  user_id: str
  dialogue_id: str  # the (training) dialogue it happened in
  turn: int  # index among the user's teaching turns
  timestamp: float
  words: tuple[str, ...]  # recognised words (after ASR noise)
  tags: tuple[str, ...]  # BIO tags of the key / value spans, one per word
  truth: Optional[tuple[str, str, str]]  # (kind, key, value) or None: teaches nothing
  frame: str  # the grammar frame (or "request")
  held_out: bool  # the frame is not in the annotated training corpus

  @property
  def text(self) -> str:
    return " ".join(self.words)


# --- the grammar -------------------------------------------------------------------


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
    others = [s for s in world_lib.CITIES[key] if s != value]
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
  city = _pick(rng, list(world_lib.CITIES))
  title = _pick(rng, list(preferences.SONG_ARTISTS))
  return {
    "title": title,
    "artist": _pick(rng, world_lib.ARTISTS),
    "city": city,
    "state": _pick(rng, world_lib.CITIES[city]),
  }


def _distractor(rng, include_held_out: bool) -> tuple[list, list, None, str, bool]:
  """An utterance that teaches nothing: an ordinary request (half) or chit-chat."""
  if rng.random() < 0.5:
    templates = [(i, t) for i, (_, ts) in world_lib.INTENTS.items() for t in ts]
    templates += [("get_weather", "weather in {city} {state}"), ("play_song", "play {song} by {sung_by}")]
    intent, template = _pick(rng, templates)
    vals = _random_entity_values(rng)
    song = _pick(rng, list(preferences.SONG_ARTISTS))
    vals.update(song=song, sung_by=_pick(rng, preferences.SONG_ARTISTS[song]))
    for slot in ("station", "title", "device", "room", "level", "duration", "time", "item"):
      vals[slot] = _pick(rng, _SLOT_VALUES[slot])
    vals["contact"] = _pick(rng, world_lib.FIRST_NAMES)
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
  "station": world_lib.STATIONS,
  "title": world_lib.TITLES,
  "device": world_lib.DEVICES,
  "room": world_lib.ROOMS,
  "level": world_lib.LEVELS,
  "duration": world_lib.DURATIONS,
  "time": world_lib.TIMES,
  "item": world_lib.ITEMS,
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
    elif w not in world_lib.FUNCTION_WORDS and world.neighbours.get(w) and rng.random() < asr_noise:
      out_w.append(_pick(rng, world.neighbours[w]))
    elif w in world_lib.FUNCTION_WORDS and t == "O" and len(words) > 3 and rng.random() < asr_noise / 2:
      continue
    else:
      out_w.append(w)
    out_t.append(t)
  return out_w, out_t


def _fan_candidates(user: world_lib.User) -> list[str]:
  """Artists the user may call themselves a fan of without contradicting a title habit."""
  consistent = lambda a: all(user.song_artist.get(t) == a for t in preferences.AMBIGUOUS_BY_ARTIST[a])
  out = [user.song_artist[t] for t in sorted(user.song_artist)]
  out += [a for a in user.artist_order[:3] if consistent(a)]
  return list(dict.fromkeys(out))


def _user_teaching(rng, user: world_lib.User, include_held_out: bool):
  """One teaching utterance of `user`'s true habits: an ambiguous title, an ambiguous city, home, or a fan."""
  kind = _pick(rng, ("song", "city", "home", "artist"))
  if kind == "song":
    title = _pick(rng, sorted(user.song_artist))
    return _teaching(rng, "song", title, user.song_artist[title], include_held_out)
  if kind == "city":
    city = _pick(rng, sorted(user.city_state))
    return _teaching(rng, "city", city, user.city_state[city], include_held_out)
  if kind == "home":
    home = user.home_city
    return _teaching(rng, "home", home, user.city_state.get(home, world_lib.CITIES[home][0]), include_held_out)
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
    user = interpret.user_of(world, user_id)
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


# --- model inputs ------------------------------------------------------------------


def encode(turns: Sequence[TeachingTurn], vocab: features.Vocab, max_words: int) -> dict[str, np.ndarray]:
  """Token ids, masks and labels (`y_kind`, `y_tags`) of `turns`, padded / truncated to `max_words`."""
  ids = np.array([vocab.ids(list(t.words), max_words) for t in turns], np.int32).reshape(len(turns), max_words)
  mask = ids != features.PAD
  tags = np.zeros_like(ids)
  for i, t in enumerate(turns):
    row = [TAG_NAMES.index(x) for x in t.tags[:max_words]]
    tags[i, : len(row)] = row
  kind = np.array([KIND_NAMES.index(t.truth[0]) if t.truth else 0 for t in turns], np.int32)
  return {"ids": ids, "mask": mask, "y_kind": kind, "y_tags": tags}


class Extractor(nn.Module):
  """Word Transformer; per-utterance kind logits `[B, 4]` and per-word BIO logits `[B, L, 5]`."""

  vocab_size: int
  dim: int = 64
  num_layers: int = 2
  num_heads: int = 4
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, ids: jax.Array, mask: jax.Array, *, deterministic: bool = True) -> dict[str, jax.Array]:
    tokens, pooled = encoders.TransformerEncoder(
      model_dim=self.dim,
      num_layers=self.num_layers,
      num_heads=self.num_heads,
      mlp_dim=2 * self.dim,
      vocab_size=self.vocab_size,
      dropout_rate=self.dropout_rate,
      name="encoder",
    )(ids, mask, deterministic=deterministic)
    first = tokens[..., 0, :]  # the first word: position-aware summary next to the mean
    kind = nn.Dense(len(KIND_NAMES), name="kind")(nn.gelu(nn.Dense(self.dim, name="kind_hidden")(
      jnp.concatenate([pooled, first], -1))))  # fmt: skip
    return {"kind": kind, "tags": nn.Dense(len(TAG_NAMES), name="tags")(tokens)}


def make_extractor(*, vocab_size: int, max_words: int, dim: int, num_layers: int, num_heads: int, dropout_rate: float):
  """`Network(init, apply)`: `apply(params, batch, deterministic=, rngs=) -> {"kind", "tags"}` logits."""
  module = Extractor(vocab_size, dim, num_layers, num_heads, dropout_rate)

  def init(key):
    return module.init(key, jnp.ones((1, max_words), jnp.int32), jnp.ones((1, max_words), bool))

  def apply(params, batch, **kw):
    return module.apply(params, batch["ids"], batch["mask"], **kw)

  return encoders.Network(init=init, apply=apply)


def make_loss(apply, *, train: bool):
  """`loss_fn(params, batch, rng) -> (loss, metrics)`: kind cross-entropy + BIO cross-entropy over words."""

  def loss_fn(params, batch, rng):
    out = apply(params, batch, deterministic=not train, rngs={"dropout": rng})
    chex_shape = out["tags"].shape[:-1] == batch["ids"].shape
    assert chex_shape, (out["tags"].shape, batch["ids"].shape)
    kind = optax.softmax_cross_entropy_with_integer_labels(out["kind"], batch["y_kind"]).mean()
    ce = optax.softmax_cross_entropy_with_integer_labels(out["tags"], batch["y_tags"])
    w = batch["mask"].astype(ce.dtype)
    tags = jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)
    return kind + tags, {"loss_kind": kind, "loss_tags": tags}

  return loss_fn


def predict(network, params, batch: Mapping[str, np.ndarray], *, chunk: int = 512) -> dict[str, np.ndarray]:
  """Kind probabilities `[N, 4]` and BIO tag ids `[N, L]` in fixed-size chunks (one compilation)."""
  n = int(batch["ids"].shape[0])
  fn = jax.jit(lambda p, b: network.apply(p, b))
  size = min(chunk, max(n, 1))
  kinds, tags = [], []
  for start in range(0, n, size):
    idx = np.minimum(np.arange(start, start + size), n - 1)
    out = fn(params, {"ids": jnp.asarray(batch["ids"][idx]), "mask": jnp.asarray(batch["mask"][idx])})
    keep = min(size, n - start)
    kinds.append(np.asarray(jax.nn.softmax(out["kind"], -1))[:keep])
    tags.append(np.asarray(jnp.argmax(out["tags"], -1))[:keep])
  return {"kind": np.concatenate(kinds), "tags": np.concatenate(tags)}


# --- decoding and normalisation -----------------------------------------------------


def spans(words: Sequence[str], tags: Sequence[str]) -> dict[str, list[str]]:
  """Role -> the texts of its BIO spans, in order (an I- without a B- starts a span)."""
  out: dict[str, list[str]] = {"KEY": [], "VAL": []}
  role, current = None, []
  for w, t in zip(words, tags):
    if t.startswith("B-") or (t.startswith("I-") and t[2:] != role):
      if role:
        out[role].append(" ".join(current))
      role, current = t[2:], [w]
    elif t.startswith("I-"):
      current.append(w)
    else:
      if role:
        out[role].append(" ".join(current))
      role, current = None, []
  if role:
    out[role].append(" ".join(current))
  return out


def _sounds_like(text: str, candidate: str, neighbours: Mapping[str, Sequence[str]]) -> bool:
  """Each word of `text` is the candidate's word or one of its CMUdict phonetic neighbours (`world.neighbours`)."""
  a, b = text.split(), candidate.split()
  return len(a) == len(b) and all(x == y or x in neighbours.get(y, ()) for x, y in zip(a, b))


def _match(text: str, choices: Sequence[str], cutoff: float, neighbours) -> Optional[str]:
  """Exact, then phonetic (every word a phonetic neighbour), then the best rapidfuzz ratio >= `cutoff`."""
  if text in choices:
    return text
  sounds = [c for c in choices if _sounds_like(text, c, neighbours)]
  if sounds:
    return sounds[0]
  best = process.extractOne(text, list(choices), scorer=fuzz.ratio, score_cutoff=cutoff)
  return None if best is None else best[0]


def normalise(
  kind: str, keys: Sequence[str], values: Sequence[str], *, cutoff: float, neighbours: Mapping = {}
) -> Optional[tuple]:
  """Span texts -> a catalogue entry `(kind, key, value)` that passes the store's validation, or None.

  The key span is matched (`_match`: exact, phonetic neighbours, or
  rapidfuzz ratio >= `cutoff`) against the kind's catalogue (titles,
  cities, artists), the value span against the values valid for that key;
  the first span that matches is used.
  """
  catalogue = {"song": list(preferences.SONG_ARTISTS), "city": list(world_lib.CITIES), "artist": world_lib.ARTISTS}
  if kind not in catalogue:
    return None
  key = next((k for k in (_match(s, catalogue[kind], cutoff, neighbours) for s in keys) if k), None)
  if key is None:
    return None
  allowed = preferences.valid_values(kind, key)
  if kind == "artist":
    return (kind, key, preferences.FAN)
  value = next((v for v in (_match(s, allowed, cutoff, neighbours) for s in values) if v), None)
  return None if value is None else (kind, key, value)


def decode(
  words: Sequence[str],
  kind_probs: np.ndarray,
  tag_ids: Sequence[int],
  *,
  threshold: float,
  cutoff: float,
  neighbours: Mapping = {},
) -> tuple[Optional[tuple[str, str, str]], float]:
  """The extractor's entry for one utterance (or None) and its confidence (the kind probability)."""
  k = int(np.argmax(kind_probs))
  confidence = float(kind_probs[k])
  if k == 0 or confidence < threshold:
    return None, confidence
  tags = [TAG_NAMES[int(t)] for t in tag_ids[: len(words)]]
  found = spans(words, tags)
  return normalise(KIND_NAMES[k], found["KEY"], found["VAL"], cutoff=cutoff, neighbours=neighbours), confidence


# --- the rule-based baseline --------------------------------------------------------

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
      entry = normalise(kind, [m.group("key")], [val] if val else [], cutoff=cutoff, neighbours=neighbours)
      if entry is not None:
        return entry
  return None


# --- metrics -----------------------------------------------------------------------


def extraction_scores(truth: Sequence[Optional[tuple]], pred: Sequence[Optional[tuple]]) -> dict[str, float]:
  """Entry precision / recall / F1 (an entry counts when kind, key and value all match), exact match, detection."""
  tp = sum(1 for t, p in zip(truth, pred, strict=True) if p is not None and p == t)
  n_pred = sum(p is not None for p in pred)
  n_true = sum(t is not None for t in truth)
  precision = tp / n_pred if n_pred else 0.0
  recall = tp / n_true if n_true else 0.0
  dt = sum(1 for t, p in zip(truth, pred) if p is not None and t is not None)
  det_p, det_r = (dt / n_pred if n_pred else 0.0), (dt / n_true if n_true else 0.0)
  return {
    "turns": len(truth),
    "teaching": n_true,
    "precision": precision,
    "recall": recall,
    "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    "exact_match": float(np.mean([t == p for t, p in zip(truth, pred)])) if truth else 0.0,
    "detection_precision": det_p,
    "detection_recall": det_r,
    "detection_f1": 2 * det_p * det_r / (det_p + det_r) if det_p + det_r else 0.0,
  }


def build_store(turns: Sequence[TeachingTurn], entries: Sequence[Optional[tuple]], confidences=None):
  """A `PreferenceStore` of the entries extracted from `turns` (applied in time order; newest wins)."""
  store = preferences.PreferenceStore()
  order = sorted(range(len(turns)), key=lambda i: (turns[i].timestamp, turns[i].user_id, turns[i].turn))
  for i in order:
    if entries[i] is None:
      continue
    kind, key, value = entries[i]
    t = turns[i]
    conf = 1.0 if confidences is None else float(confidences[i])
    store.add(t.user_id, preferences.Entry(kind, key, value, t.dialogue_id, t.turn, t.timestamp, conf))
  return store


def oracle_store(world: world_lib.World, user_ids: Sequence[str]) -> preferences.PreferenceStore:
  """Full knowledge: every user's true title and city habits."""
  store = preferences.PreferenceStore()
  for uid in user_ids:
    user = interpret.user_of(world, uid)
    for title, artist in sorted(user.song_artist.items()):
      store.add(uid, preferences.Entry("song", title, artist))
    for city, state in sorted(user.city_state.items()):
      store.add(uid, preferences.Entry("city", city, state))
  return store


def turn_outcomes(world: world_lib.World, dialogues: Sequence[Mapping], store) -> dict[str, np.ndarray]:
  """Per request turn (truth attempt set): dialogue and turn index, logged success, success with the store, affected.

  A turn is affected when its user's preferences change the interpretation
  of its recognised text; it is then re-judged (`interpret.rewrite_succeeds`),
  otherwise it keeps its logged outcome.  `store=None`: no store.
  """
  rows = []
  for di, d in enumerate(dialogues):
    uid = d["user_id"]
    prefs = store.for_user(uid) if store is not None else None
    user = interpret.user_of(world, uid)
    for i, t in enumerate(d["turns"]):
      if t["truth"]["attempt"] is None:
        continue
      logged = interpret.original_succeeds(d, i)
      text = t["asr"]["text"]
      affected = bool(prefs) and interpret.resolve(world, text, user=user) != interpret.resolve(
        world, text, user=user, preferences=prefs
      )
      with_store = interpret.rewrite_succeeds(world, d, i, text, preferences=prefs) if affected else logged
      rows.append((di, i, logged, with_store, affected))
  a = np.array(rows, dtype=np.int64).reshape(-1, 5)
  return {"dialogue": a[:, 0], "turn": a[:, 1], "logged": a[:, 2] > 0, "with": a[:, 3] > 0, "affected": a[:, 4] > 0}


def paired_bootstrap(
  groups: np.ndarray, base: np.ndarray, new: np.ndarray, num_dialogues: int, *, samples: int, seed: int
) -> dict[str, Any]:
  """Defect rates of `base` and `new` (per-turn defect flags), their difference, 95% percentile CIs.

  Resamples dialogues with replacement (`groups`: each turn's dialogue
  index); both systems use the same resample (paired).
  """
  (point_b, point_w), resampled = evaluation.bootstrap_rates(
    groups, [base, new], num_groups=num_dialogues, samples=samples, seed=seed
  )
  rb, rw = resampled[:, 0], resampled[:, 1]
  rel = np.where(rb > 0, (rb - rw) / np.where(rb > 0, rb, 1.0), 0.0)
  ci = lambda x: [float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5))]
  return {
    "turns": int(len(groups)),
    "defect_rate_without": float(point_b),
    "defect_rate_with": float(point_w),
    "ci_without": ci(rb),
    "ci_with": ci(rw),
    "reduction": float(point_b - point_w),
    "ci_reduction": ci(rb - rw),
    "relative_reduction": float((point_b - point_w) / point_b) if point_b else 0.0,
    "ci_relative_reduction": ci(rel),
  }


def defect_effect(world, dialogues, store, *, samples: int, seed: int) -> dict[str, Any]:
  """The store's effect on the test split's defect rate: overall and on the affected turns."""
  o = turn_outcomes(world, dialogues, store)
  nd = len(dialogues)
  overall = paired_bootstrap(o["dialogue"], ~o["logged"], ~o["with"], nd, samples=samples, seed=seed)
  m = o["affected"]
  if m.any():
    affected = paired_bootstrap(o["dialogue"][m], ~o["logged"][m], ~o["with"][m], nd, samples=samples, seed=seed)
  else:
    affected = {"turns": 0}
  return {
    "overall": overall,
    "affected": affected,
    "fixed": int(np.sum(m & ~o["logged"] & o["with"])),
    "broken": int(np.sum(m & o["logged"] & ~o["with"])),
    "entries": len(store) if store is not None else 0,
    "decisions": o["with"],
  }


# --- the task ------------------------------------------------------------------------


def _reference_config():
  from selflearn.configs import teach  # pylint: disable=g-import-not-at-top

  return teach.get_config()


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `common.app.ConfigError` naming the first bad field (before anything compiles)."""
  app.check(config, "task", lambda v: v == "teach", "must be 'teach' for selflearn/configs/teach.py")
  app.check_known_fields(config, _reference_config())
  pos = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1
  for field in ("teach.train_turns", "teach.val_turns", "teach.turns_per_user", "teach.max_words"):
    app.check(config, field, pos, "must be an integer >= 1")
  app.check(config, "teach.max_words", lambda v: v >= 8, "must be >= 8 (the longest frames have 12 words)")
  app.check(config, "teach.distractor_rate", lambda v: 0 <= v < 1, "must be in [0, 1)")
  for field in ("teach.asr_noise", "teach.systematic_noise"):
    app.check(config, field, lambda v: 0 <= v <= 1, "must be in [0, 1]")
  app.check(config, "teach.vocab_size", lambda v: isinstance(v, int) and v >= 10, "must be an integer >= 10")
  for field in ("model.dim", "model.num_heads", "model.num_layers"):
    app.check(config, field, pos, "must be an integer >= 1")
  app.check(config, "model.dim", lambda v: v % config.model.num_heads == 0, "must be a multiple of model.num_heads")
  app.check(config, "model.dropout_rate", lambda v: 0 <= v < 1, "must be in [0, 1)")
  app.check(config, "extract.threshold", lambda v: 0 <= v <= 1, "must be in [0, 1]")
  app.check(config, "extract.fuzzy_cutoff", lambda v: 0 < v <= 100, "must be in (0, 100] (rapidfuzz ratio)")
  app.check(config, "eval.bootstrap", pos, "must be an integer >= 1")
  train_lib.validate_common(config, batch_unit="turns")
  app.check(
    config, "batch_size", lambda v: v <= config.teach.train_turns, "must be <= teach.train_turns (the training corpus)"
  )


def _entry_row(t: TeachingTurn, learned, rules) -> dict:
  return {"user": t.user_id, "text": t.text, "truth": t.truth, "learned": learned, "rules": rules, "frame": t.frame}


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, dialogues: train_lib.Dialogues) -> dict[str, Any]:
  """Teaching turns -> extractor (trained, resuming) -> stores -> defect rates on the test split; writes results."""
  start = time.time()
  world = train_lib.world_of(config)
  tc = config.teach
  train_corpus = corpus(world, tc.train_turns, tc, config.seed)
  val_corpus = corpus(world, tc.val_turns, tc, config.seed + 1)
  deploy = teaching_turns(world, dialogues.train, tc, config.data.sim_seed)
  vocab = features.Vocab.build((t.text for t in train_corpus), max_size=tc.vocab_size)
  train = {k: jnp.asarray(v) for k, v in encode(train_corpus, vocab, tc.max_words).items()}
  val = {k: jnp.asarray(v) for k, v in encode(val_corpus, vocab, tc.max_words).items()}
  m = config.model
  net = make_extractor(
    vocab_size=vocab.size, max_words=tc.max_words, dim=m.dim, num_layers=m.num_layers, num_heads=m.num_heads,
    dropout_rate=m.dropout_rate,
  )  # fmt: skip
  params, _ = train_lib.fit(
    workdir / "extractor", network=net, loss_fn=make_loss(net.apply, train=True), train=train, val=val,
    config=config, num_epochs=config.num_epochs, seed=config.seed, eval_loss_fn=make_loss(net.apply, train=False),
  )  # fmt: skip
  out = predict(net, params, encode(deploy, vocab, tc.max_words))
  ex, nb = config.extract, world.neighbours
  decoded = [
    decode(t.words, out["kind"][i], out["tags"][i], threshold=ex.threshold, cutoff=ex.fuzzy_cutoff, neighbours=nb)
    for i, t in enumerate(deploy)
  ]
  learned = [e for e, _ in decoded]
  rules = [rule_parse(t.text, cutoff=ex.fuzzy_cutoff, neighbours=nb) for t in deploy]
  truth = [t.truth for t in deploy]
  extraction = {}
  for name, pred in (("learned", learned), ("rules", rules)):
    extraction[name] = {
      "all": extraction_scores(truth, pred),
      "seen_frames": extraction_scores(*_subset(truth, pred, [not t.held_out for t in deploy])),
      "held_out_frames": extraction_scores(*_subset(truth, pred, [t.held_out for t in deploy])),
    }
  users = sorted({d["user_id"] for d in dialogues.train})
  stores = {
    "learned": build_store(deploy, learned, [c for _, c in decoded]),
    "rules": build_store(deploy, rules),
    "oracle_extraction": build_store(deploy, truth),
    "full_knowledge": oracle_store(world, users),
  }
  path = workdir / "preferences.json"
  stores["learned"].save(path)
  reloaded = preferences.PreferenceStore.load(path)
  effects = {k: defect_effect(world, dialogues.test, s, samples=config.eval.bootstrap, seed=config.eval.seed)
             for k, s in stores.items()}  # fmt: skip
  again = defect_effect(world, dialogues.test, reloaded, samples=1, seed=config.eval.seed)
  same = reloaded == stores["learned"] and bool(np.array_equal(again["decisions"], effects["learned"]["decisions"]))
  if not same:
    raise RuntimeError(f"the preference store reloaded from {path} decides differently from the one saved")
  for e in effects.values():
    e.pop("decisions")
  results = {
    "task": "teach",
    "users": len(users),
    "teaching_turns": len(deploy),
    "teaching_turns_that_teach": sum(t is not None for t in truth),
    "train_corpus": len(train_corpus),
    "vocab_size": vocab.size,
    "test_dialogues": len(dialogues.test),
    "extraction": extraction,
    "defects": effects,
    "store_entries": {k: len(s) for k, s in stores.items()},
    "restart": {"path": "preferences.json", "schema_version": preferences.SCHEMA_VERSION, "same_decisions": same},
    "examples": [_entry_row(t, learned[i], rules[i]) for i, t in enumerate(deploy[:12])],
  }
  train_lib.write_results(workdir, results, render(results))
  le, lx = effects["learned"]["overall"], extraction["learned"]["all"]
  print(
    f"outputs in {workdir}: results.json, results.md, preferences.json, extractor/ |"
    f" extraction P {lx['precision']:.3f} R {lx['recall']:.3f} EM {lx['exact_match']:.3f};"
    f" defect rate {le['defect_rate_without']:.4f} -> {le['defect_rate_with']:.4f}"
    f" ({le['relative_reduction']:.1%} relative) in {time.time() - start:.0f} s",
    flush=True,
  )
  return {
    "extraction_f1": lx["f1"],
    "exact_match": lx["exact_match"],
    "defect_rate_without": le["defect_rate_without"],
    "defect_rate_with": le["defect_rate_with"],
    "relative_reduction": le["relative_reduction"],
  }


def _subset(truth, pred, keep):
  return [t for t, k in zip(truth, keep) if k], [p for p, k in zip(pred, keep) if k]


def render(results: dict) -> str:
  """The Markdown tables of a results dict."""
  lines = [
    "# Teachable preferences: extraction and effect on defects",
    "",
    f"{results['users']} users taught in the training period: {results['teaching_turns']} turns, "
    f"{results['teaching_turns_that_teach']} of them teaching (the rest distractors). Extractor trained on "
    f"{results['train_corpus']} annotated turns (held-out frames excluded).",
    "",
    "| extractor | turns | precision | recall | F1 | exact match | detection F1 |",
    "|---|---|---|---|---|---|---|",
  ]
  for name in ("learned", "rules"):
    for part in ("all", "seen_frames", "held_out_frames"):
      s = results["extraction"][name][part]
      lines.append(
        f"| {name} ({part.replace('_', ' ')}) | {s['turns']} | {s['precision']:.3f} | {s['recall']:.3f} | "
        f"{s['f1']:.3f} | {s['exact_match']:.3f} | {s['detection_f1']:.3f} |"
      )
  lines += [
    "",
    f"Test split: {results['test_dialogues']} dialogues. Defect rate of the logged requests without the store and "
    "with it (95% paired-bootstrap CIs over dialogues):",
    "",
    "| store | entries | defect rate without | with | relative reduction | affected turns | defect rate on affected "
    "(without -> with) | fixed | broken |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for name, e in results["defects"].items():
    o, a = e["overall"], e["affected"]
    aff = (
      f"{a['defect_rate_without']:.3f} -> {a['defect_rate_with']:.3f} [{a['ci_with'][0]:.3f}, {a['ci_with'][1]:.3f}]"
      if a["turns"]
      else "—"
    )
    lines.append(
      f"| {name} | {e['entries']} | {o['defect_rate_without']:.4f} | {o['defect_rate_with']:.4f} "
      f"[{o['ci_with'][0]:.4f}, {o['ci_with'][1]:.4f}] | {o['relative_reduction']:.1%} "
      f"[{o['ci_relative_reduction'][0]:.1%}, {o['ci_relative_reduction'][1]:.1%}] | {a['turns']} | {aff} | "
      f"{e['fixed']} | {e['broken']} |"
    )
  r = results["restart"]
  lines += [
    "",
    f"Restart: the learned store saved to {r['path']} (schema version {r['schema_version']}) and reloaded"
    f" makes the same decisions: {r['same_decisions']}.",
  ]
  return "\n".join(lines) + "\n"
