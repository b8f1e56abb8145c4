"""Seeded simulator of voice-assistant dialogue logs with ground truth.

`generate(config, num_dialogues)` yields one dialogue (a session of one user
on one device) at a time; dialogue `i` depends only on `(config, i)`
(`numpy.random.default_rng([seed, 1, i])`), so any slice can be regenerated
or produced in parallel, and nothing is kept between dialogues: a million
dialogues stream to disk in constant memory (`write_logs`).  The record
layout is `selflearn.schema` (version `SCHEMA_VERSION`).

Each user request goes through the pipeline wake word -> ASR -> NLU ->
entity resolution (ER) -> result, with injected errors:

* **false wake**: background speech wakes the device (failure point
  `false_wake`, no user goal);
* **ASR**: shared systematic confusions of entity words (the world's
  CMUdict-neighbour table, same for every user), random phonetic
  substitutions scaled by the user's accent, dropped function words (always
  recovered downstream);
* **NLU**: context-blind routing of ambiguous requests ("play frozen" on a
  speaker; "what is the temperature" with the oven on) and rare random
  mis-routing; a carrier-word ASR error is recovered by the NLU 60% of the
  time;
* **ER**: an entity mangled by ASR is recovered by fuzzy matching 15%
  (systematic) / 50% (random) of the time; bare ambiguous titles and cities
  resolve to the globally most popular entity, which is wrong for users whose
  habit differs; personal contacts with rare spellings are missed;
* **result**: per-domain skill failures.

The **failure point** is the first stage whose error is not recovered
downstream (the keynote's rule); later stages that fail because of it are
also marked as errors (`stage_errors`), not as the failure point.  An
unsupported request ("make me a sandwich") is processed correctly
(`correct`) yet its goal fails, as in the keynote's example.

User behaviour: after a defect the user may barge in (interrupting the
response at a recorded time), say "stop", give explicit negative feedback,
rephrase (`repeat`, `clearer`, `paraphrase`, `fuller`: a fuller entity such
as "play hello by lionel richie"), or abandon; patience bounds the
attempts.  Rephrases follow after short lognormal gaps (median 5 s), new
goals after long ones (median 20 s).  Every defective request whose query
could be fixed by rewriting carries the correct rewrite and its kind
(`global`: a shared pattern; `personal`: the user's habit; `user_asr`: a
one-off recognition error).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Iterable, Iterator

import numpy as np

from selflearn import schema
from selflearn import world as world_lib
from selflearn.world import FUNCTION_WORDS, INTENTS, User, World

STAGES = ("wake", "asr", "nlu", "entity", "result")
FAILURE_POINTS = ("false_wake", "asr", "nlu", "entity", "result", "correct")
_STAGE_TO_POINT = {"wake": "false_wake", "asr": "asr", "nlu": "nlu", "entity": "entity", "result": "result"}
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
_TITLE_TEMPLATES = {"play_video": "play the movie {title}", "play_audiobook": "play the audiobook {title}"}
_MEDIA = ("music", "video", "books")


@dataclasses.dataclass(frozen=True)
class SimConfig:
  """Simulation knobs (all error rates scale with `error_scale`).

  Attributes:
    seed: world and dialogue seed.
    num_users: simulated customers.
    max_goals: goals per dialogue (1 + Poisson(0.8), capped).
    max_turns: turns per dialogue (later goals are dropped).
    false_wake_rate: probability that a goal is preceded by a false wake.
    error_scale: multiplies every injected error probability.
    systematic_fraction: share of confusable entity words with a shared ASR confusion.
  """

  seed: int = 0
  num_users: int = 100
  max_goals: int = 4
  max_turns: int = 12
  false_wake_rate: float = 0.05
  error_scale: float = 1.0
  systematic_fraction: float = 0.5

  def __post_init__(self):
    if self.num_users < 1:
      raise ValueError(f"num_users must be >= 1, got {self.num_users}.")
    if self.max_goals < 1 or self.max_turns < 2:
      raise ValueError(f"need max_goals >= 1 and max_turns >= 2, got {self.max_goals}, {self.max_turns}.")
    if not 0 <= self.false_wake_rate <= 1:
      raise ValueError(f"false_wake_rate must be in [0, 1], got {self.false_wake_rate}.")
    if not 0 <= self.error_scale <= 3:
      raise ValueError(f"error_scale must be in [0, 3], got {self.error_scale}.")
    if not 0 <= self.systematic_fraction <= 1:
      raise ValueError(f"systematic_fraction must be in [0, 1], got {self.systematic_fraction}.")


def generate(config: SimConfig, num_dialogues: int, *, start: int = 0, world: World | None = None) -> Iterator[dict]:
  """Lazily yields dialogues `start .. start + num_dialogues - 1` (schema records)."""
  if num_dialogues < 0:
    raise ValueError(f"num_dialogues must be >= 0, got {num_dialogues}.")
  world = world or world_lib.make_world(config.seed, config.num_users, systematic_fraction=config.systematic_fraction)
  for i in range(start, start + num_dialogues):
    yield simulate_dialogue(world, config, i)


def write_logs(path: str, dialogues: Iterable[dict], *, total: int | None = None, progress: bool | None = None) -> int:
  """Streams `dialogues` to a JSONL file, one line each; returns the count.

  Progress: a tqdm bar when stderr is a terminal (or `progress=True`), else
  about ten one-line reports on stdout when `total` is known.
  """
  use_bar = sys.stderr.isatty() if progress is None else progress
  bar = None
  if use_bar:
    from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top

    bar = tqdm(total=total, unit="dialogue", desc="simulate")
  every = max(1, (total or 0) // 10)
  count = 0
  started = None  # from the first dialogue on: the world is built lazily before it
  with open(path, "w", encoding="utf-8") as f:
    for d in dialogues:
      started = time.monotonic() if started is None else started
      f.write(schema.dumps(d) + "\n")
      count += 1
      if bar is not None:
        bar.update(1)
      elif total and progress is not False and count % every == 0:
        rate = (count - 1) / max(time.monotonic() - started, 1e-9)
        print(f"simulate: {count}/{total} dialogues ({rate:.0f}/s)", flush=True)
  if bar is not None:
    bar.close()
  return count


# --- one dialogue -----------------------------------------------------------------


def _time_of_day(hour: int) -> str:
  return world_lib.TIME_OF_DAY[hour // 6]


def simulate_dialogue(world: World, config: SimConfig, index: int) -> dict:
  """Dialogue `index`: a pure function of `(world, config, index)`."""
  rng = np.random.default_rng([config.seed, 1, index])
  user = world.users[int(rng.integers(len(world.users)))]
  device = dict(user.devices[int(rng.integers(len(user.devices)))])
  day = int(rng.integers(0, 90))
  hour = int(user.active_hours[int(rng.integers(len(user.active_hours)))])
  tod = _time_of_day(hour)
  oven_on = device["room"] == "kitchen" and tod != "night" and rng.random() < 0.35
  device["state"] = {"oven": "on" if oven_on else "off", "lights": "on" if rng.random() < 0.5 else "off"}
  start = BASE_TIME + day * 86400 + hour * 3600 + float(rng.uniform(0, 3600))
  context = {"time_of_day": tod, "hour": hour, "weekday": (day + 3) % 7, "location": user.home_city}
  sim = _Session(world, config, user, device, rng, start)
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
  w = world_lib.intent_weights(user, tod)
  intents = list(world_lib.GOAL_INTENTS)
  if device["state"]["oven"] != "on":
    w[intents.index("oven_temperature")] = 0.0
  intent = intents[int(rng.choice(len(intents), p=w / w.sum()))]
  if intent in ("play_video", "play_audiobook"):  # what a title request means depends on the device
    intent = "play_video" if rng.random() < (0.8 if device["has_screen"] else 0.15) else "play_audiobook"
  return intent


def _beta(rng: np.random.Generator, a: float, b: float) -> float:
  return round(float(rng.beta(a, b)), 4)


class _Session:
  """Mutable builder of one dialogue's turns (host-side simulation only)."""

  def __init__(self, world: World, config: SimConfig, user: User, device: dict, rng: np.random.Generator, t0: float):
    self.world, self.config, self.user, self.device, self.rng = world, config, user, device, rng
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
    text = BACKGROUND[int(rng.integers(len(BACKGROUND)))]
    intent = world_lib.GOAL_INTENTS[int(rng.integers(len(world_lib.GOAL_INTENTS)))]
    response = "Sorry, I'm not sure about that."
    turn = self._observed(
      asr_text=text,
      asr_conf=_beta(rng, 3, 3),
      nbest=[],
      wake_score=_beta(rng, 3, 2.5),
      pred_intent=intent,
      nlu_conf=_beta(rng, 2, 4),
      slots={},
      resolved={},
      er_score=_beta(rng, 1, 4),
      status="no_match",
      response=response,
      audio=self._audio(false_wake=True),
    )
    errors = {s: s == "wake" for s in STAGES}
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
      "recovered": {s: False for s in STAGES},
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
      "domain": INTENTS[intent][0],
      "intent": intent,
      "values": values,
      "canonical": None,
      "turn_ids": [],
      "success": False,
      "failure_point": "correct",
      "end": "abandon",
    }
    self.goals.append(goal)
    templates = INTENTS[intent][1]
    template = self._first_template(intent, templates)
    goal["canonical"] = _text(self._fuller_template(intent, template), spoken_full)
    kind, clarity, previous = None, 1.0, None
    attempt = 0
    gap = self._gap(20.0, 0.7)
    while True:
      turn = self._request(intent, template, values, spoken_full, clarity, goal_id, attempt)
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
        if rng.random() < user.feedback and self._room():
          self._side_turn("feedback_positive", goal, self._gap(2.0))
        return
      media = goal["domain"] in _MEDIA
      if rng.random() < min(0.95, user.barge_in * (1.5 if media else 1.0)):
        duration = turn["response"]["duration"]
        turn["signals"]["barge_in"] = True
        turn["signals"]["barge_in_time"] = round(float(rng.uniform(0.5, max(0.6, duration))), 3)
        self.t += turn["signals"]["barge_in_time"] - duration
      if intent == "out_of_scope" or attempt >= user.patience or not self._room():
        goal["end"] = "abandon"
        if rng.random() < 0.3 and self._room():
          self._side_turn("stop", goal, self._gap(1.5))
          goal["end"] = "stop"
        return
      reaction = rng.choice(["rephrase", "repeat", "stop", "negative", "abandon"], p=[0.5, 0.15, 0.1, 0.1, 0.15])
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
          template = self._fuller_template(intent, template)

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

  def _fuller_template(self, intent: str, template: str) -> str:
    """The explicit form a rephrasing user (or a rewrite) would use."""
    if intent in _TITLE_TEMPLATES:
      return _TITLE_TEMPLATES[intent]
    if intent == "oven_temperature":
      return "what is the oven temperature"
    if intent == "play_song":
      return "play {song} by {artist}"
    if intent == "get_weather":
      return template.replace("{city}", "{city_full}")
    return template

  def _goal_values(self, intent: str) -> tuple[dict, dict]:
    """(canonical entity per slot, spoken text per placeholder incl. fuller forms)."""
    rng, user, world = self.rng, self.user, self.world
    slots = sorted({p[1:-1] for t in INTENTS[intent][1] for p in t.split() if p.startswith("{")})
    values, spoken = {}, {}
    for slot in slots:
      if slot == "artist" and intent == "play_artist":
        ranks = np.arange(1, len(user.artist_order) + 1, dtype=np.float64) ** -1.1
        v = user.artist_order[int(rng.choice(len(ranks), p=ranks / ranks.sum()))]
      elif slot == "artist":
        continue  # play_song: the artist follows from the song and the user's habit
      elif slot == "city":
        v = user.home_city if rng.random() < 0.6 else list(world_lib.CITIES)[int(rng.integers(len(world_lib.CITIES)))]
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
      states = world_lib.CITIES[spoken["city"]]
      state = user.city_state.get(spoken["city"], states[0])
      values["city"] = f"{spoken['city']} {state}"
      spoken["city_full"] = values["city"]
    return values, spoken

  def _side_turn(self, intent: str, goal: dict, gap: float) -> None:
    """A stop / feedback turn inside a goal: processed correctly, no rewrite."""
    rng = self.rng
    templates = INTENTS[intent][1]
    text = templates[int(rng.integers(len(templates)))]
    response = {"stop": "", "feedback_positive": "You're welcome.", "feedback_negative": "Sorry about that."}[intent]
    turn = self._observed(
      asr_text=text,
      asr_conf=_beta(rng, 9, 1.5),
      nbest=[],
      wake_score=_beta(rng, 8, 1.5),
      pred_intent=intent,
      nlu_conf=_beta(rng, 8, 2),
      slots={},
      resolved={},
      er_score=1.0,
      status="ok",
      response=response,
      audio=self._audio(false_wake=False),
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
      "stage_errors": {s: False for s in STAGES},
      "recovered": {s: False for s in STAGES},
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

  def _request(self, intent, template, values, spoken_full, clarity, goal_id, attempt) -> dict:
    rng, world, user, cfg = self.rng, self.world, self.user, self.config
    scale = cfg.error_scale
    words, tags = _render(template, spoken_full)
    true_text = " ".join(words)
    # ASR: token by token, the tag travels with its word.
    heard, heard_tags = [], []
    systematic, random_slot, carrier_err, pattern = set(), set(), False, None
    for w, tag in zip(words, tags):
      slot = tag[2:] if tag != "O" else None
      conf = world.asr_confusions.get(w)
      if slot and conf and rng.random() < conf[1] * clarity * scale:
        heard.append(conf[0])
        systematic.add(slot)
        pattern = pattern or {"heard": conf[0], "meant": w}
      elif w not in FUNCTION_WORDS and world.neighbours.get(w) and rng.random() < 0.03 * user.accent * clarity * scale:
        opts = world.neighbours[w]
        heard.append(opts[int(rng.integers(len(opts)))])
        if slot:
          random_slot.add(slot)
        else:
          carrier_err = True
      elif w in FUNCTION_WORDS and tag == "O" and len(words) > 2 and rng.random() < 0.05 * scale:
        continue  # a dropped "the": the NLU does not need it
      else:
        heard.append(w)
      heard_tags.append(tag)
    asr_text = " ".join(heard)
    asr_error = asr_text != true_text
    asr_changed_slots = systematic | random_slot
    # NLU.
    pred_intent, nlu_rewrite = intent, None
    carrier_recovered = True
    if carrier_err and rng.random() >= 0.6:
      carrier_recovered = False
      pred_intent = self._other_intent(intent)
    elif template == "play {title}" and intent in _TITLE_TEMPLATES:
      aware = rng.random() < 0.4
      pred_intent = ("play_audiobook" if not self.device["has_screen"] else "play_video") if aware else "play_video"
      if pred_intent != intent:
        nlu_rewrite = _TITLE_TEMPLATES[intent]
    elif template == "what is the temperature":
      aware = rng.random() < 0.4
      oven = self.device["state"]["oven"] == "on"
      pred_intent = ("oven_temperature" if oven else "get_temperature") if aware else "get_temperature"
      if pred_intent != intent:
        nlu_rewrite = "what is the oven temperature"
    elif rng.random() < 0.02 * scale:
      pred_intent = self._other_intent(intent)
    nlu_error = pred_intent != intent
    # NLU slots: spans of the recognised text.
    pred_slots: dict[str, str] = {}
    for w, tag in zip(heard, heard_tags):
      if tag.startswith("B-"):
        pred_slots[tag[2:]] = w
      elif tag.startswith("I-"):
        pred_slots[tag[2:]] = pred_slots.get(tag[2:], "") + " " + w
    pred_slots = {k.replace("city_full", "city"): v.strip() for k, v in pred_slots.items()}
    # ER: resolve each slot of a correctly routed request.
    resolved, slot_ok, asr_slot_lost, er_rewrite = {}, True, False, None
    for slot in sorted(pred_slots):
      truth_value = values.get(slot)
      ok, value = True, truth_value
      if slot in asr_changed_slots:
        recover = 0.15 if slot in systematic else 0.5
        if rng.random() >= recover:
          ok, asr_slot_lost = False, True
          value = None if rng.random() < 0.5 else pred_slots[slot]
      elif not nlu_error:
        if slot == "song" and "artist" not in pred_slots:
          popular = world.song_popularity[pred_slots["song"]][0]
          value = f"{pred_slots['song']} by {popular}"
          if value != truth_value:
            ok, er_rewrite = False, "personal"
        elif slot == "city" and len(pred_slots["city"].split()) == 1:
          value = f"{pred_slots['city']} {world_lib.CITIES[pred_slots['city']][0]}"
          if value != truth_value:
            ok, er_rewrite = False, "personal"
        elif slot == "contact" and rng.random() < 0.35 * scale:
          ok, value = False, None
        elif rng.random() < 0.02 * scale:
          ok, value = False, None
      if nlu_error:
        ok = False
      slot_ok &= ok
      resolved[slot] = value
    entity_error = nlu_error or not slot_ok
    # Result.
    upstream_failed = nlu_error or not slot_ok
    domain = INTENTS[intent][0]
    own_result_error = not upstream_failed and rng.random() < world.result_error.get(domain, 0.0) * scale
    result_error = upstream_failed or own_result_error
    # Recovery and the failure point (the first irrecoverable error).
    asr_irrecoverable = asr_error and ((carrier_err and not carrier_recovered) or asr_slot_lost)
    errors = {"wake": False, "asr": asr_error, "nlu": nlu_error, "entity": entity_error, "result": result_error}
    recovered = {
      "wake": False,
      "asr": asr_error and not asr_irrecoverable,
      "nlu": False,
      "entity": False,
      "result": False,
    }
    failure = next((_STAGE_TO_POINT[s] for s in STAGES if errors[s] and not recovered[s]), "correct")
    # The rewrite that would have worked.
    rewrite, rewrite_kind = None, None
    canonical_full = _text(self._fuller_template(intent, template), spoken_full)
    if failure == "asr":
      rewrite = true_text
      rewrite_kind = "global" if systematic and asr_slot_lost else "user_asr"
    elif failure == "nlu" and nlu_rewrite:
      rewrite, rewrite_kind = _text(nlu_rewrite, spoken_full), "global"
    elif failure == "entity" and er_rewrite:
      rewrite, rewrite_kind = canonical_full, "personal"
    # Observations.
    status = "ok"
    if intent == "out_of_scope" and not nlu_error:
      status = "unsupported"
    elif any(v is None for v in resolved.values()):
      status = "no_match"
    elif own_result_error and rng.random() < 0.5:
      status = "error"
    response = _response(pred_intent, resolved, pred_slots, status)
    turn = self._observed(
      asr_text=asr_text,
      asr_conf=_beta(rng, 4, 2.5) if asr_error else _beta(rng, 9, 1.5),
      nbest=self._nbest(asr_text, true_text, asr_error),
      wake_score=_beta(rng, 8, 1.5),
      pred_intent=pred_intent,
      nlu_conf=_beta(rng, 3, 3) if nlu_error else _beta(rng, 8, 2),
      slots=pred_slots,
      resolved=resolved,
      er_score=_beta(rng, 20, 1) if slot_ok and not asr_changed_slots else _beta(rng, 4, 3),
      status=status,
      response=response,
      audio=self._audio(false_wake=False, clarity=clarity),
    )
    turn["truth"] = {
      "utterance": true_text,
      "domain": domain,
      "intent": intent,
      "slots": {k.replace("city_full", "city"): v for k, v in _spans(words, tags).items()},
      "values": {k: values[k] for k in _slot_names(tags)},
      "tags": [t.replace("city_full", "city") for t in heard_tags],
      "goal_id": goal_id,
      "segment": "B" if attempt == 0 else "I",
      "attempt": attempt,
      "stage_errors": errors,
      "recovered": recovered,
      "failure_point": failure,
      "defect": failure != "correct",
      "rephrase_of": None,
      "rephrase_kind": None,
      "rewrite": rewrite,
      "rewrite_kind": rewrite_kind,
      "error_pattern": pattern if rewrite_kind == "global" and failure == "asr" else None,
    }
    return turn

  def _other_intent(self, intent: str) -> str:
    others = [i for i in world_lib.GOAL_INTENTS if i != intent]
    return others[int(self.rng.integers(len(others)))]

  def _nbest(self, asr_text: str, true_text: str, asr_error: bool) -> list[dict]:
    rng = self.rng
    out = []
    if asr_error and rng.random() < 0.5:
      out.append({"text": true_text, "confidence": _beta(rng, 2, 5)})
    words = asr_text.split()
    content = [i for i, w in enumerate(words) if self.world.neighbours.get(w)]
    if content:
      i = content[int(rng.integers(len(content)))]
      opts = self.world.neighbours[words[i]]
      alt = words[:i] + [opts[int(rng.integers(len(opts)))]] + words[i + 1 :]
      out.append({"text": " ".join(alt), "confidence": _beta(rng, 1.5, 6)})
    return out

  def _audio(self, *, false_wake: bool, clarity: float = 1.0) -> list[float]:
    """Summary acoustic features: SNR, speech rate, energy, distance, pitch variance, TV-likeness."""
    rng = self.rng
    snr = rng.normal(8.0 if false_wake else 20.0 - 4.0 * self.user.accent * clarity, 4.0)
    rate = rng.normal(3.0 * (0.8 if clarity < 1 else 1.0), 0.4)
    energy = rng.normal(0.3 if false_wake else 0.7, 0.15)
    distance = rng.normal(3.5 if false_wake else 1.8, 0.8)
    pitch = rng.normal(0.5, 0.2)
    tv = rng.normal(0.7 if false_wake else 0.2, 0.2)
    return [round(float(x), 4) for x in (snr / 30.0, rate / 3.0, energy, distance / 3.0, pitch, tv)]

  def _observed(
    self,
    *,
    asr_text,
    asr_conf,
    nbest,
    wake_score,
    pred_intent,
    nlu_conf,
    slots,
    resolved,
    er_score,
    status,
    response,
    audio,
  ) -> dict:
    rng = self.rng
    others = [i for i in world_lib.GOAL_INTENTS if i != pred_intent]
    picks = rng.choice(len(others), size=2, replace=False)
    rest = 1.0 - nlu_conf
    split = float(rng.uniform(0.5, 0.9))
    n_words = len(asr_text.split())
    playing = status == "ok" and INTENTS[pred_intent][0] in _MEDIA  # content plays after the prompt
    return {
      "turn_id": -1,
      "timestamp": 0.0,
      "utterance_duration": round(0.3 + 0.35 * n_words * float(rng.uniform(0.8, 1.25)), 3),
      "wake": {"score": wake_score},
      "asr": {"text": asr_text, "confidence": asr_conf, "nbest": nbest},
      "nlu": {
        "domain": INTENTS[pred_intent][0],
        "intent": pred_intent,
        "confidence": nlu_conf,
        "slots": slots,
        "nbest": [
          {"intent": pred_intent, "confidence": nlu_conf},
          {"intent": others[int(picks[0])], "confidence": round(rest * split, 4)},
          {"intent": others[int(picks[1])], "confidence": round(rest * (1 - split) * 0.5, 4)},
        ],
      },
      "er": {"resolved": resolved, "score": round(float(er_score), 4)},
      "result": {"status": status},
      "response": {"text": response, "duration": round(0.065 * len(response) + (8.0 if playing else 0.0), 3)},
      "signals": {"barge_in": False, "barge_in_time": None},
      "audio": audio,
    }


def _render(template: str, spoken: dict) -> tuple[list[str], list[str]]:
  """Words and BIO slot tags of `template` filled with `spoken` values."""
  words, tags = [], []
  for part in template.split():
    if part.startswith("{"):
      slot = part[1:-1]
      name = "city" if slot == "city_full" else slot
      for j, w in enumerate(spoken[slot].split()):
        words.append(w)
        tags.append(("B-" if j == 0 else "I-") + name)
    else:
      words.append(part)
      tags.append("O")
  return words, tags


def _text(template: str, spoken: dict) -> str:
  return " ".join(_render(template, spoken)[0])


def _spans(words: list[str], tags: list[str]) -> dict[str, str]:
  out: dict[str, str] = {}
  for w, t in zip(words, tags):
    if t != "O":
      out[t[2:]] = (out.get(t[2:], "") + " " + w).strip()
  return out


def _slot_names(tags: list[str]) -> list[str]:
  return sorted({t[2:] for t in tags if t != "O"})


def _response(intent: str, resolved: dict, slots: dict, status: str) -> str:
  if status == "unsupported":
    return "Sorry, I can't help with that."
  if status == "no_match":
    return "Sorry, I couldn't find that."
  if status == "error":
    return "Sorry, something went wrong."
  v = {k: (resolved.get(k) or slots.get(k) or "") for k in set(resolved) | set(slots)}
  return {
    "play_song": f"Playing {v.get('song', '')}.",
    "play_artist": f"Playing songs by {v.get('artist', '')}.",
    "play_station": f"Here is {v.get('station', '')} radio.",
    "play_video": f"Here is the movie {v.get('title', '')}.",
    "play_audiobook": f"Reading {v.get('title', '')} from Audible.",
    "turn_on": f"Turning on the {v.get('device', 'light')}.",
    "turn_off": f"Turning off the {v.get('device', 'light')}.",
    "set_level": f"Setting the {v.get('device', 'light')} to {v.get('level', '')} percent.",
    "oven_temperature": "The oven is at 350 degrees.",
    "get_weather": f"In {v.get('city', 'your area')}, it's 18 degrees and sunny.",
    "get_temperature": "It's 18 degrees outside.",
    "set_timer": f"Timer set for {v.get('duration', '')}.",
    "set_alarm": f"Alarm set for {v.get('time', '')}.",
    "add_item": f"I've added {v.get('item', '')} to your shopping list.",
    "call": f"Calling {v.get('contact', '')}.",
    "out_of_scope": "Sorry, I can't help with that.",
  }.get(intent, "OK.")


def summary(dialogues: Iterable[dict[str, Any]]) -> dict[str, Any]:
  """Counts and rates over dialogues (failure points, rephrases, rewrites, goal success)."""
  counts = {fp: 0 for fp in FAILURE_POINTS}
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
