"""Seeded simulator of voice-assistant dialogue logs with ground truth.

`generate(config, num_dialogues)` yields one dialogue (a session of one user
on one device) at a time; dialogue `i` depends only on `(config, i)`
(`numpy.random.default_rng([seed, 1, i])`), so any slice can be regenerated
or produced in parallel, and nothing is kept between dialogues: a million
dialogues stream to disk in constant memory (`selflearn.data.logs.write_logs`).
The record layout is `selflearn.data.schema` (version `SCHEMA_VERSION`);
`header(config)` is the log's first line (seed, config and its hash).

Each user request goes through the assistant's pipeline with injected errors
(`selflearn.sim.channel`: false wake, ASR, NLU, entity resolution, result).
The **failure point** is the first stage whose error is not recovered
downstream (the keynote's rule); later stages that fail because of it are
also marked as errors (`stage_errors`), not as the failure point.  An
unsupported request ("make me a sandwich") is processed correctly
(`correct`) yet its goal fails, as in the keynote's example.

User behaviour (this module): after a defect the user may barge in
(interrupting the response at a recorded time), say "stop", give explicit
negative feedback, rephrase (`repeat`, `clearer`, `paraphrase`, `fuller`: a
fuller entity such as "play hello by lionel richie"), or abandon; patience
bounds the attempts.  Rephrases follow after short lognormal gaps (median
5 s), new goals after long ones (median 20 s).  Every defective request whose
query could be fixed by rewriting carries the correct rewrite and its kind
(`global`: a shared pattern; `personal`: the user's habit; `user_asr`: a
one-off recognition error).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator

import numpy as np

from selflearn.data import schema
from selflearn.language import ontology
from selflearn.sim import channel as channel_lib
from selflearn.sim import openworld
from selflearn.sim import users as users_lib
from selflearn.sim import world as world_lib
from selflearn.sim.config import PRESETS, SimConfig, preset, signal_shift  # noqa: F401  (re-exported)
from selflearn.sim.users import User
from selflearn.sim.world import World

_CLOSED_SLOTS = {
  "device": ontology.DEVICES,
  "room": ontology.ROOMS,
  "level": ontology.LEVELS,
  "duration": ontology.DURATIONS,
  "time": ontology.TIMES,
}
BASE_TIME = 1767225600.0  # 2026-01-01T00:00:00Z
BACKGROUND = (
  "and now the news at nine",
  "turn left at the next light",
  "we will be right back after this",
  "play it again sam",
  "i told you to call me",
  "set the table please",
  "what a beautiful day",
  "the weather tonight is cold",
)


def header(config: SimConfig) -> dict:
  """The header line of a log of `config`'s dialogues: seed, config and its hash (`schema.make_header`)."""
  return schema.make_header(dataclasses.asdict(config))


def generate(config: SimConfig, num_dialogues: int, *, start: int = 0, world: World | None = None) -> Iterator[dict]:
  """Lazily yields dialogues `start .. start + num_dialogues - 1` (schema records)."""
  if num_dialogues < 0:
    raise ValueError(f"num_dialogues must be >= 0, got {num_dialogues}.")
  world = world or world_lib.make_world_for(config)
  for i in range(start, start + num_dialogues):
    yield simulate_dialogue(world, config, i)


# --- one dialogue -----------------------------------------------------------------


def _time_of_day(hour: int) -> str:
  return ontology.TIME_OF_DAY[hour // 6]


def simulate_dialogue(world: World, config: SimConfig, index: int) -> dict:
  """Dialogue `index`: a pure function of `(world, config, index)`."""
  rng = np.random.default_rng([config.seed, 1, index])
  if world.is_open:  # Zipf activity: most users have a few dialogues, a few have hundreds
    user = world.users[min(int(np.searchsorted(world.open.user_cdf, rng.random(), side="right")), len(world.users) - 1)]
  else:
    user = world.users[int(rng.integers(len(world.users)))]
  device = dict(user.devices[int(rng.integers(len(user.devices)))])
  day = int(rng.integers(0, config.num_days))
  hour = int(user.active_hours[int(rng.integers(len(user.active_hours)))])
  tod = _time_of_day(hour)
  oven_on = device["room"] == "kitchen" and tod != "night" and rng.random() < 0.35
  device["state"] = {"oven": "on" if oven_on else "off", "lights": "on" if rng.random() < 0.5 else "off"}
  start = BASE_TIME + day * 86400 + hour * 3600 + float(rng.uniform(0, 3600))
  context = {"time_of_day": tod, "hour": hour, "weekday": (day + 3) % 7, "location": user.home_city}
  sim = _Session(world, config, user, device, rng, start, day)
  num_goals = min(1 + int(rng.poisson(0.8)), config.max_goals)
  for _ in range(num_goals):
    if len(sim.turns) >= config.max_turns - 1:
      break
    if rng.random() < config.false_wake_rate:
      sim.false_wake()
    if len(sim.turns) >= config.max_turns - 1:
      break
    sim.goal(_sample_intent(rng, user, tod, device))
  return {
    "schema_version": schema.SCHEMA_VERSION,
    "dialogue_id": f"s{config.seed}-d{index:08d}",
    "user_id": user.user_id,
    "device": device,
    "context": context,
    "start_time": round(start, 3),
    "turns": sim.turns,
    "truth": {"goals": sim.goals, "rephrase_pairs": sim.pairs},
  }


def _sample_intent(rng: np.random.Generator, user: User, tod: str, device: dict) -> str:
  w = users_lib.intent_weights(user, tod)
  intents = list(ontology.GOAL_INTENTS)
  if device["state"]["oven"] != "on":
    w[intents.index("oven_temperature")] = 0.0
  intent = intents[int(rng.choice(len(intents), p=w / w.sum()))]
  if intent in ("play_video", "play_audiobook"):  # what a title request means depends on the device
    intent = "play_video" if rng.random() < (0.8 if device["has_screen"] else 0.15) else "play_audiobook"
  return intent


class _Session:
  """Mutable builder of one dialogue's turns (host-side simulation only)."""

  def __init__(self, world: World, config: SimConfig, user: User, device: dict, rng: np.random.Generator, t0, day=0):
    self.world, self.config, self.user, self.device, self.rng = world, config, user, device, rng
    self.day, self.open = day, world.is_open
    self.channel = channel_lib.Channel(world, config, user, device, rng, day=day)
    self.t = t0
    self.turns: list[dict] = []
    self.goals: list[dict] = []
    self.pairs: list[dict] = []

  # -- turns ----------------------------------------------------------------------

  def _room(self) -> bool:
    return len(self.turns) < self.config.max_turns

  def _append(self, turn: dict, gap: float) -> dict:
    turn["turn_id"] = len(self.turns)
    if self.turns:
      self.t += gap
    turn["timestamp"] = round(self.t, 3)
    spoken = turn["utterance_duration"]
    heard = turn["signals"]["barge_in_time"]
    self.t += spoken + (heard if heard is not None else turn["response"]["duration"])
    self.turns.append(turn)
    return turn

  def _gap(self, median: float, sigma: float = 0.5) -> float:
    return round(float(self.rng.lognormal(np.log(median), sigma)), 3)

  def false_wake(self) -> None:
    rng = self.rng
    if self.open:  # background speech of any words
      pool = openworld.word_pool()
      text = " ".join(pool[int(j)] for j in rng.integers(len(pool), size=int(rng.integers(3, 7))))
    else:
      text = BACKGROUND[int(rng.integers(len(BACKGROUND)))]
    intent = ontology.GOAL_INTENTS[int(rng.integers(len(ontology.GOAL_INTENTS)))]
    response, status = "Sorry, I'm not sure about that.", "no_match"
    if self.open:  # the assistant acts on the noise as on a request: refuses it, or does something
      status = "unsupported" if rng.random() < 0.5 else "ok"
      response = channel_lib.response_text("out_of_scope" if status == "unsupported" else intent, {}, {}, status)
      scores = self.channel.open_scores(defect=True, asr_text=text)
    else:
      scores = dict(
        asr_conf=channel_lib.beta(rng, 3, 3),
        nbest=[],
        wake_score=channel_lib.beta(rng, 3, 2.5),
        nlu_conf=channel_lib.beta(rng, 2, 4),
        er_score=channel_lib.beta(rng, 1, 4),
      )
    turn = self.channel.observed(
      asr_text=text,
      pred_intent=intent,
      slots={},
      resolved={},
      status=status,
      response=response,
      audio=self.channel.audio(false_wake=True),
      **scores,
    )
    errors = {s: s == "wake" for s in schema.STAGES}
    errors.update(nlu=True, entity=True, result=True)  # everything after a false wake acts on noise
    turn["signals"]["barge_in"] = bool(rng.random() < 0.3)
    turn["signals"]["barge_in_time"] = round(float(rng.uniform(0.3, 1.2)), 3) if turn["signals"]["barge_in"] else None
    turn["truth"] = {
      "utterance": text,
      "domain": "none",
      "intent": "none",
      "slots": {},
      "values": {},
      "tags": ["O"] * len(text.split()),
      "goal_id": None,
      "segment": "O",
      "attempt": 0,
      "stage_errors": errors,
      "recovered": {s: False for s in schema.STAGES},
      "failure_point": "false_wake",
      "defect": True,
      "rephrase_of": None,
      "rephrase_kind": None,
      "rewrite": None,
      "rewrite_kind": None,
      "error_pattern": None,
    }
    self._append(turn, self._gap(20.0, 0.7))

  def goal(self, intent: str) -> None:
    rng, user = self.rng, self.user
    goal_id = len(self.goals)
    values, spoken_full = self._goal_values(intent)
    goal = {
      "goal_id": goal_id,
      "domain": ontology.INTENTS[intent][0],
      "intent": intent,
      "values": values,
      "canonical": None,
      "turn_ids": [],
      "success": False,
      "failure_point": "correct",
      "end": "abandon",
    }
    self.goals.append(goal)
    templates = ontology.INTENTS[intent][1]
    template = self._first_template(intent, templates)
    if "{room}" in template and spoken_full.get("device") in self.user.device_aliases:
      template = templates[0]  # a named device is called by its name alone
    frame = openworld.frame(rng, user, intent) if self.open else ("", "")
    goal["canonical"] = channel_lib.text(channel_lib.fuller_template(intent, template), spoken_full)
    kind, clarity, previous = None, 1.0, None
    attempt = 0
    gap = self._gap(20.0, 0.7)
    while True:
      turn = self.channel.request(intent, template, values, spoken_full, clarity, goal_id, attempt, frame=frame)
      turn["truth"]["rephrase_of"] = previous
      turn["truth"]["rephrase_kind"] = kind
      self._append(turn, gap)
      goal["turn_ids"].append(turn["turn_id"])
      if previous is not None:
        self.pairs.append(
          {
            "source_turn": previous,
            "target_turn": turn["turn_id"],
            "kind": kind,
            "gap": round(turn["timestamp"] - self._end_of(previous), 3),
          }
        )
      fp = turn["truth"]["failure_point"]
      goal["failure_point"] = fp
      if fp == "correct" and intent != "out_of_scope":
        goal["success"], goal["end"] = True, "success"
        if self.open:
          self._friction_after_success(turn, goal)
        elif rng.random() < user.feedback and self._room():
          self._side_turn("feedback_positive", goal, self._gap(2.0))
        return
      media = goal["domain"] in channel_lib.MEDIA
      if rng.random() < min(0.95, user.barge_in * (1.5 if media else 1.0)):
        self._barge_in(turn)
      if intent == "out_of_scope" or attempt >= user.patience or not self._room():
        goal["end"] = "abandon"
        if rng.random() < 0.3 and self._room():
          self._side_turn("stop", goal, self._gap(1.5))
          goal["end"] = "stop"
        return
      reaction = rng.choice(["rephrase", "repeat", "stop", "negative", "abandon"], p=self._reaction_probs())
      if reaction == "abandon":
        goal["end"] = "abandon"
        return
      gap = self._gap(5.0)
      if reaction in ("stop", "negative"):
        self._side_turn("stop" if reaction == "stop" else "feedback_negative", goal, self._gap(1.5))
        gap = self._gap(4.0)
        if not self._room():
          goal["end"] = "stop"
          return
      previous = turn["turn_id"]
      attempt += 1
      if reaction == "repeat":
        kind, clarity = "repeat", 1.0
      else:
        kind = str(rng.choice(["clearer", "paraphrase", "fuller"], p=[0.3, 0.35, 0.35]))
        if kind == "clearer":
          clarity = 0.4
        elif kind == "paraphrase":
          clarity = 0.8
          others = [t for t in templates if t != template] or list(templates)
          template = others[int(rng.integers(len(others)))]
        else:
          clarity = 0.8
          template = channel_lib.fuller_template(intent, template)

  def _reaction_probs(self) -> list[float]:
    """After a failed request: rephrase, repeat, stop, negative feedback, silent abandonment."""
    if not self.open:
      return [0.5, 0.15, 0.1, 0.1, 0.15]
    silence = self.config.failure_silence_rate
    return [p / 0.85 * (1 - silence) for p in (0.5, 0.15, 0.1, 0.1)] + [silence]

  def _barge_in(self, turn: dict) -> None:
    duration = turn["response"]["duration"]
    turn["signals"]["barge_in"] = True
    turn["signals"]["barge_in_time"] = round(float(self.rng.uniform(0.5, max(0.6, duration))), 3)
    self.t += turn["signals"]["barge_in_time"] - duration

  def _friction_after_success(self, turn: dict, goal: dict) -> None:
    """Open world: users interrupt, stop and complain about responses that did serve them, at stated rates."""
    rng, cfg = self.rng, self.config
    if rng.random() < cfg.success_barge_in_rate:
      self._barge_in(turn)
    r = rng.random()
    if not self._room():
      return
    if r < cfg.success_stop_rate:
      self._side_turn("stop", goal, self._gap(3.0, 0.8))
    elif r < cfg.success_stop_rate + cfg.success_negative_rate:
      self._side_turn("feedback_negative", goal, self._gap(2.0))
    elif rng.random() < self.user.feedback:
      self._side_turn("feedback_positive", goal, self._gap(2.0))

  def _end_of(self, turn_id: int) -> float:
    t = self.turns[turn_id]
    heard = t["signals"]["barge_in_time"]
    return t["timestamp"] + t["utterance_duration"] + (heard if heard is not None else t["response"]["duration"])

  def _first_template(self, intent: str, templates: tuple[str, ...]) -> str:
    if intent in ("play_video", "play_audiobook"):
      return "play {title}" if self.rng.random() < 0.6 else templates[int(self.rng.integers(len(templates)))]
    if intent in ("oven_temperature", "get_temperature"):
      return "what is the temperature" if self.rng.random() < 0.7 else templates[1]
    if intent == "play_song" and self.rng.random() > self.user.verbosity:
      return "play {song}"
    return templates[int(self.rng.integers(len(templates)))]

  def _goal_values(self, intent: str) -> tuple[dict, dict]:
    """(canonical entity per slot, spoken text per placeholder incl. fuller forms)."""
    rng, user, world = self.rng, self.user, self.world
    slots = sorted({p[1:-1] for t in ontology.INTENTS[intent][1] for p in t.split() if p.startswith("{")})
    values, spoken = {}, {}
    if self.open:
      return self._open_values(intent, slots)
    for slot in slots:
      if slot == "artist" and intent == "play_artist":
        ranks = np.arange(1, len(user.artist_order) + 1, dtype=np.float64) ** -1.1
        v = user.artist_order[int(rng.choice(len(ranks), p=ranks / ranks.sum()))]
      elif slot == "artist":
        continue  # play_song: the artist follows from the song and the user's habit
      elif slot == "city":
        v = user.home_city if rng.random() < 0.6 else list(ontology.CITIES)[int(rng.integers(len(ontology.CITIES)))]
      else:
        options = world.slot_values(slot, user)
        v = options[int(rng.integers(len(options)))]
      spoken[slot] = v
      values[slot] = v
    if intent == "play_song":
      artists = world.song_popularity[spoken["song"]]
      artist = user.song_artist.get(spoken["song"], artists[0])
      spoken["artist"] = artist
      values["song"] = f"{spoken['song']} by {artist}"
      values["artist"] = artist
    if "city" in spoken:
      states = ontology.CITIES[spoken["city"]]
      state = user.city_state.get(spoken["city"], states[0])
      values["city"] = f"{spoken['city']} {state}"
      spoken["city_full"] = values["city"]
    return values, spoken

  def _open_values(self, intent: str, slots: list[str]) -> tuple[dict, dict]:
    """`_goal_values` in the open world: catalogue entities by popularity and release, personal names."""
    rng, user, cfg, cats = self.rng, self.user, self.config, self.world.open.catalogues
    values, spoken = {}, {}

    def entity(slot: str) -> int:
      own = user.favourites.get(slot, ())
      if own and rng.random() < cfg.personal_repeat:
        return own[int(rng.integers(len(own)))]
      return cats[slot].sample(rng, self.day, cfg.tail_share)

    for slot in slots:
      if slot in ("song", "artist") and intent == "play_song":
        continue  # drawn below: the song entity names its artist
      if slot in openworld.GENERATED_SLOTS:
        v = cats[slot].names[entity(slot)]
      elif slot == "city":
        v = user.home_city if rng.random() < 0.6 else list(ontology.CITIES)[int(rng.integers(len(ontology.CITIES)))]
      elif slot == "device" and user.device_aliases and rng.random() < 0.5:
        alias = sorted(user.device_aliases)[int(rng.integers(len(user.device_aliases)))]
        device, room = user.device_aliases[alias]
        spoken["device"], values["device"] = alias, f"{room} {device}"
        continue
      elif slot == "contact":
        if rng.random() < 0.5:
          nick = sorted(user.nicknames)[int(rng.integers(len(user.nicknames)))]
          spoken["contact"], values["contact"] = nick, user.nicknames[nick]
          continue
        v = user.contacts[int(rng.integers(len(user.contacts)))]
      else:
        options = _CLOSED_SLOTS[slot]
        v = options[int(rng.integers(len(options)))]
      spoken[slot] = v
      values[slot] = v
    if intent == "play_song":
      song = cats["song"]
      i = entity("song")
      spoken["song"], spoken["artist"] = song.names[i], song.artists[i]
      values["song"] = f"{song.names[i]} by {song.artists[i]}"
      values["artist"] = song.artists[i]
    if "city" in spoken:
      states = ontology.CITIES[spoken["city"]]
      state = user.city_state.get(spoken["city"], states[0])
      values["city"] = f"{spoken['city']} {state}"
      spoken["city_full"] = values["city"]
    return values, spoken

  def _side_turn(self, intent: str, goal: dict, gap: float) -> None:
    """A stop / feedback turn inside a goal: processed correctly, no rewrite."""
    rng = self.rng
    templates = ontology.INTENTS[intent][1]
    text = templates[int(rng.integers(len(templates)))]
    response = {"stop": "", "feedback_positive": "You're welcome.", "feedback_negative": "Sorry about that."}[intent]
    if self.open:
      scores = self.channel.open_scores(defect=False, asr_text=text)
    else:
      scores = dict(
        asr_conf=channel_lib.beta(rng, 9, 1.5),
        nbest=[],
        wake_score=channel_lib.beta(rng, 8, 1.5),
        nlu_conf=channel_lib.beta(rng, 8, 2),
        er_score=1.0,
      )
    turn = self.channel.observed(
      asr_text=text,
      pred_intent=intent,
      slots={},
      resolved={},
      status="ok",
      response=response,
      audio=self.channel.audio(false_wake=False),
      **scores,
    )
    turn["truth"] = {
      "utterance": text,
      "domain": "global",
      "intent": intent,
      "slots": {},
      "values": {},
      "tags": ["O"] * len(text.split()),
      "goal_id": goal["goal_id"],
      "segment": "I",
      "attempt": None,
      "stage_errors": {s: False for s in schema.STAGES},
      "recovered": {s: False for s in schema.STAGES},
      "failure_point": "correct",
      "defect": False,
      "rephrase_of": None,
      "rephrase_kind": None,
      "rewrite": None,
      "rewrite_kind": None,
      "error_pattern": None,
    }
    self._append(turn, gap)
    goal["turn_ids"].append(turn["turn_id"])

  # -- the pipeline -----------------------------------------------------------------


def summary(dialogues: Iterable[dict[str, Any]]) -> dict[str, Any]:
  """Counts and rates over dialogues (failure points, rephrases, rewrites, goal success)."""
  counts = {fp: 0 for fp in schema.FAILURE_POINTS}
  n_d = n_t = n_goals = n_success = n_pairs = n_barge = 0
  rewrites = {}
  for d in dialogues:
    n_d += 1
    for t in d["turns"]:
      n_t += 1
      counts[t["truth"]["failure_point"]] += 1
      n_barge += t["signals"]["barge_in"]
      k = t["truth"]["rewrite_kind"]
      if k:
        rewrites[k] = rewrites.get(k, 0) + 1
    n_goals += len(d["truth"]["goals"])
    n_success += sum(g["success"] for g in d["truth"]["goals"])
    n_pairs += len(d["truth"]["rephrase_pairs"])
  return {
    "dialogues": n_d,
    "turns": n_t,
    "goals": n_goals,
    "goal_success_rate": n_success / max(n_goals, 1),
    "failure_points": counts,
    "rephrase_pairs": n_pairs,
    "barge_ins": n_barge,
    "rewrites": rewrites,
  }
