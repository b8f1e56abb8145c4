"""The assistant's pipeline with injected errors: one request through wake word, ASR, NLU, ER and result.

`Channel(world, config, user, device, rng)` processes the requests of one
dialogue (`selflearn.sim.simulator` drives it; every draw comes from the
dialogue's own generator, in order).  `request(...)` renders the user's
template, then:

* **ASR**: shared systematic confusions of entity words (the world's
  CMUdict-neighbour table, same for every user), random phonetic
  substitutions scaled by the user's accent and clarity, dropped function
  words (always recovered downstream);
* **NLU**: context-blind routing of ambiguous requests ("play frozen" on a
  speaker; "what is the temperature" with the oven on) and rare random
  mis-routing; a carrier-word ASR error is recovered by the NLU 60% of the
  time;
* **ER**: an entity mangled by ASR is recovered by fuzzy matching 15%
  (systematic) / 50% (random) of the time; bare ambiguous titles and cities
  resolve to the globally most popular entity; personal contacts are missed;
* **result**: per-domain back-end failures;

and returns the observed turn with its `truth` block (the failure point, the
first irrecoverable stage, and the rewrite that would have worked).
`observed(...)` builds the observation fields of any turn (confidences,
n-best lists, timing, the response).
"""

from __future__ import annotations

import numpy as np

from selflearn.data import schema
from selflearn.language import ontology
from selflearn.sim import config as config_lib
from selflearn.sim import world as world_lib
from selflearn.sim.users import User

TITLE_TEMPLATES = {"play_video": "play the movie {title}", "play_audiobook": "play the audiobook {title}"}
# The rewrite of a misrouted "what is the temperature".  The closed world keeps its original
# "what is the oven temperature" whatever the goal (wrong for the weather question) so that its
# logs stay bit for bit the ones its published results used.
TEMPERATURE_REWRITES = {"oven_temperature": "what is the oven temperature", "get_temperature": "how warm is it outside"}
MEDIA = ("music", "video", "books")


def beta(rng: np.random.Generator, a: float, b: float) -> float:
  return round(float(rng.beta(a, b)), 4)


def fuller_template(intent: str, template: str) -> str:
  """The explicit form a rephrasing user (or a rewrite) would use."""
  if intent in TITLE_TEMPLATES:
    return TITLE_TEMPLATES[intent]
  if intent == "oven_temperature":
    return "what is the oven temperature"
  if intent == "play_song":
    return "play {song} by {artist}"
  if intent == "get_weather":
    return template.replace("{city}", "{city_full}")
  return template


class Channel:
  """The pipeline of one dialogue: its world, user, device and random generator."""

  def __init__(self, world: world_lib.World, config, user: User, device: dict, rng: np.random.Generator, day=0):
    """`config` is the dialogue's `simulator.SimConfig` (its `error_scale`); `device` its device dict."""
    self.world, self.config, self.user, self.device, self.rng = world, config, user, device, rng
    self.day, self.open = day, world.is_open

  def request(self, intent, template, values, spoken_full, clarity, goal_id, attempt, frame=("", "")) -> dict:
    """One request of goal `goal_id` (`template` spoken with `spoken_full`) through the pipeline, with its truth."""
    rng, world, user, cfg = self.rng, self.world, self.user, self.config
    scale = cfg.error_scale
    words, tags = render(template, spoken_full)
    prefix, suffix = frame[0].split(), frame[1].split()
    words, tags = prefix + words + suffix, ["O"] * len(prefix) + tags + ["O"] * len(suffix)
    true_text = " ".join(words)
    # ASR: token by token, the tag travels with its word.
    table, accent = world.asr_confusions, {}
    if self.open:
      table = world.open.late_confusions if self.day >= cfg.drift_day else world.asr_confusions
      accent = world.open.accent_confusions[user.accent_group]
    heard, heard_tags = [], []
    systematic, random_slot, carrier_err, pattern = set(), set(), False, None
    accent_slot, accent_err = set(), False
    for w, tag in zip(words, tags):
      slot = tag[2:] if tag != "O" else None
      conf = table.get(w)
      acc = accent.get(w)
      if slot and conf and rng.random() < conf[1] * clarity * scale:
        heard.append(conf[0])
        systematic.add(slot)
        pattern = pattern or {"heard": conf[0], "meant": w}
      elif acc and rng.random() < acc[1] * clarity * scale:
        heard.append(acc[0])  # the user's accent: a confusion only their accent group suffers
        accent_err = True
        if slot:
          accent_slot.add(slot)
        else:
          carrier_err = True
      elif (
        w not in ontology.FUNCTION_WORDS
        and world.neighbours.get(w)
        and rng.random() < 0.03 * user.accent * clarity * scale
      ):
        opts = world.neighbours[w]
        heard.append(opts[int(rng.integers(len(opts)))])
        if slot:
          random_slot.add(slot)
        else:
          carrier_err = True
      elif w in ontology.FUNCTION_WORDS and tag == "O" and len(words) > 2 and rng.random() < 0.05 * scale:
        continue  # a dropped "the": the NLU does not need it
      else:
        heard.append(w)
      heard_tags.append(tag)
    asr_text = " ".join(heard)
    asr_error = asr_text != true_text
    asr_changed_slots = systematic | random_slot | accent_slot
    # NLU.
    pred_intent, nlu_rewrite = intent, None
    carrier_recovered = True
    if carrier_err and rng.random() >= 0.6:
      carrier_recovered = False
      pred_intent = self.other_intent(intent)
    elif template == "play {title}" and intent in TITLE_TEMPLATES:
      aware = rng.random() < 0.4
      pred_intent = ("play_audiobook" if not self.device["has_screen"] else "play_video") if aware else "play_video"
      if pred_intent != intent:
        nlu_rewrite = TITLE_TEMPLATES[intent]
    elif template == "what is the temperature":
      aware = rng.random() < 0.4
      oven = self.device["state"]["oven"] == "on"
      pred_intent = ("oven_temperature" if oven else "get_temperature") if aware else "get_temperature"
      if pred_intent != intent:  # the explicit form of the goal's own intent
        nlu_rewrite = TEMPERATURE_REWRITES[intent] if self.open else "what is the oven temperature"
    elif rng.random() < 0.02 * scale:
      pred_intent = self.other_intent(intent)
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
        recover = 0.15 if slot in systematic or slot in accent_slot else 0.5
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
          value = f"{pred_slots['city']} {ontology.CITIES[pred_slots['city']][0]}"
          if value != truth_value:
            ok, er_rewrite = False, "personal"
        elif self.open and slot in ("device", "contact") and value != pred_slots[slot]:
          if rng.random() >= cfg.alias_resolve:  # a personal name ("the juniper", "grandma") the resolver lacks
            ok, value, er_rewrite = False, None, "personal"
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
    domain = ontology.INTENTS[intent][0]
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
    failure = schema.first_failure(errors, recovered)
    # The rewrite that would have worked.
    rewrite, rewrite_kind = None, None
    canonical_full = text(fuller_template(intent, template), spoken_full)
    if er_rewrite and self.open:  # the canonical names a resolver knows
      spoken_full = dict(spoken_full, **{k: values[k] for k in ("device", "contact") if k in values})
      canonical_full = text(fuller_template(intent, template), spoken_full)
    if failure == "asr":
      rewrite = true_text
      rewrite_kind = "global" if systematic and asr_slot_lost else "personal" if accent_err else "user_asr"
    elif failure == "nlu" and nlu_rewrite:
      rewrite, rewrite_kind = text(nlu_rewrite, spoken_full), "global"
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
    response = response_text(pred_intent, resolved, pred_slots, status)
    if self.open:
      scores = self.open_scores(defect=failure != "correct", asr_text=asr_text)
    else:
      scores = dict(
        asr_conf=beta(rng, 4, 2.5) if asr_error else beta(rng, 9, 1.5),
        nbest=self.nbest(asr_text, true_text, asr_error),
        wake_score=beta(rng, 8, 1.5),
        nlu_conf=beta(rng, 3, 3) if nlu_error else beta(rng, 8, 2),
        er_score=beta(rng, 20, 1) if slot_ok and not asr_changed_slots else beta(rng, 4, 3),
      )
    turn = self.observed(
      asr_text=asr_text,
      pred_intent=pred_intent,
      slots=pred_slots,
      resolved=resolved,
      status=status,
      response=response,
      audio=self.audio(false_wake=False, clarity=clarity),
      **scores,
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

  def other_intent(self, intent: str) -> str:
    """A random goal intent other than `intent` (a mis-routing)."""
    others = [i for i in ontology.GOAL_INTENTS if i != intent]
    return others[int(self.rng.integers(len(others)))]

  def nbest(self, asr_text: str, true_text: str, asr_error: bool) -> list[dict]:
    """The ASR n-best list after the 1-best: sometimes the true text after an error, a phonetic variant."""
    rng = self.rng
    out = []
    if asr_error and rng.random() < 0.5:
      out.append({"text": true_text, "confidence": beta(rng, 2, 5)})
    words = asr_text.split()
    content = [i for i, w in enumerate(words) if self.world.neighbours.get(w)]
    if content:
      i = content[int(rng.integers(len(content)))]
      opts = self.world.neighbours[words[i]]
      alt = words[:i] + [opts[int(rng.integers(len(opts)))]] + words[i + 1 :]
      out.append({"text": " ".join(alt), "confidence": beta(rng, 1.5, 6)})
    return out

  def open_scores(self, *, defect: bool, asr_text: str) -> dict:
    """Open world: confidences from one distribution whatever failed, shifted on a defect by `signal_auc`'s shift.

    Each confidence is `sigmoid(N(mu, 1) - shift * defect)`, `shift = sqrt(2) Phi^-1(signal_auc)`,
    so each one alone separates defective from correct turns with ROC AUC `signal_auc`, for
    every failing component alike.  The n-best never holds the true text because of an error:
    it lists 0-2 phonetic variants of the 1-best, as many whether or not the 1-best is wrong.
    """
    rng = self.rng
    s = config_lib.signal_shift(self.config.signal_auc) if defect else 0.0

    def conf(mu: float) -> float:
      return round(float(1.0 / (1.0 + np.exp(-(rng.normal(mu, 1.0) - s)))), 4)

    asr_conf = conf(2.0)
    nbest = []
    words = asr_text.split()
    content = [i for i, w in enumerate(words) if self.world.neighbours.get(w)]
    for _ in range(int(rng.choice(3, p=[0.3, 0.4, 0.3])) if content else 0):
      i = content[int(rng.integers(len(content)))]
      opts = self.world.neighbours[words[i]]
      alt = words[:i] + [opts[int(rng.integers(len(opts)))]] + words[i + 1 :]
      nbest.append({"text": " ".join(alt), "confidence": round(float(rng.beta(1.5, 6)), 4)})
    return dict(asr_conf=asr_conf, nbest=nbest, wake_score=conf(2.5), nlu_conf=conf(1.5), er_score=conf(2.5))

  def audio(self, *, false_wake: bool, clarity: float = 1.0) -> list[float]:
    """Summary acoustic features: SNR, speech rate, energy, distance, pitch variance, TV-likeness.

    Open world: a false wake differs from a request only in TV-likeness, by the shift that gives
    it ROC AUC `signal_auc` alone (in the closed world every feature differs).
    """
    rng = self.rng
    if self.open:
      tv_shift = 0.2 * config_lib.signal_shift(self.config.signal_auc) if false_wake else 0.0
      snr = rng.normal(20.0 - 4.0 * self.user.accent * clarity, 4.0)
      rate = rng.normal(3.0 * (0.8 if clarity < 1 else 1.0), 0.4)
      feats = (snr / 30.0, rate / 3.0, rng.normal(0.7, 0.15), rng.normal(1.8, 0.8) / 3.0, rng.normal(0.5, 0.2))
      return [round(float(x), 4) for x in (*feats, rng.normal(0.2 + tv_shift, 0.2))]
    snr = rng.normal(8.0 if false_wake else 20.0 - 4.0 * self.user.accent * clarity, 4.0)
    rate = rng.normal(3.0 * (0.8 if clarity < 1 else 1.0), 0.4)
    energy = rng.normal(0.3 if false_wake else 0.7, 0.15)
    distance = rng.normal(3.5 if false_wake else 1.8, 0.8)
    pitch = rng.normal(0.5, 0.2)
    tv = rng.normal(0.7 if false_wake else 0.2, 0.2)
    return [round(float(x), 4) for x in (snr / 30.0, rate / 3.0, energy, distance / 3.0, pitch, tv)]

  def observed(
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
    """The observed fields of a turn: timing, wake score, ASR, NLU (with an n-best), ER, result, response."""
    rng = self.rng
    others = [i for i in ontology.GOAL_INTENTS if i != pred_intent]
    picks = rng.choice(len(others), size=2, replace=False)
    rest = 1.0 - nlu_conf
    split = float(rng.uniform(0.5, 0.9))
    n_words = len(asr_text.split())
    playing = status == "ok" and ontology.INTENTS[pred_intent][0] in MEDIA  # content plays after the prompt
    return {
      "turn_id": -1,
      "timestamp": 0.0,
      "utterance_duration": round(0.3 + 0.35 * n_words * float(rng.uniform(0.8, 1.25)), 3),
      "wake": {"score": wake_score},
      "asr": {"text": asr_text, "confidence": asr_conf, "nbest": nbest},
      "nlu": {
        "domain": ontology.INTENTS[pred_intent][0],
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


def render(template: str, spoken: dict) -> tuple[list[str], list[str]]:
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


def text(template: str, spoken: dict) -> str:
  return " ".join(render(template, spoken)[0])


def _spans(words: list[str], tags: list[str]) -> dict[str, str]:
  out: dict[str, str] = {}
  for w, t in zip(words, tags):
    if t != "O":
      out[t[2:]] = (out.get(t[2:], "") + " " + w).strip()
  return out


def _slot_names(tags: list[str]) -> list[str]:
  return sorted({t[2:] for t in tags if t != "O"})


def response_text(intent: str, resolved: dict, slots: dict, status: str) -> str:
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
