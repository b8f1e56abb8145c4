"""Writes simulated voice-assistant dialogue logs (JSONL, `selflearn.data.schema` version 2).

  python -m selflearn.simulate --out=logs.jsonl --num_dialogues=10000 [--preset=open_world --seed=0]
  python -m selflearn.simulate --out=logs.jsonl --preset=closed_world --num_users=100
  python -m selflearn.simulate --out=logs.jsonl --set=tail_share=0.5 --set=signal_auc=0.6

`--preset` names a world of `selflearn.sim.config.PRESETS` (`open_world`,
the default; `tail_heavy`; `closed_world`, the original world); `--set`
overrides any `SimConfig` field.

The first line is the log's header (`selflearn.data.schema.HEADER`: schema
version, simulator seed, the whole `SimConfig` and its hash), which tasks
that judge with the simulator check against their config.  Dialogues
stream to disk one at a time (constant memory at any count); a
progress bar shows on a terminal, progress lines otherwise.  Ends with a
summary: goal success, failure points, rephrase pairs and rewrites.
`--validate` re-reads the file through the loader afterwards.
"""

import dataclasses
import json
import os
import pathlib
import sys

from absl import flags

from common import app
from selflearn.data import logs
from selflearn.sim import simulator

_OUT = flags.DEFINE_string("out", None, "Output JSONL path (its directory is created).")
_NUM = flags.DEFINE_integer("num_dialogues", 1000, "Dialogues to write.")
_PRESET = flags.DEFINE_enum("preset", "open_world", sorted(simulator.PRESETS), "The simulated world.")
_SET = flags.DEFINE_multi_string("set", [], "field=value: overrides a SimConfig field (repeatable).")
_SEED = flags.DEFINE_integer("seed", 0, "World and dialogue seed.")
_USERS = flags.DEFINE_integer("num_users", None, "Simulated customers (default: the preset's).")
_ERRORS = flags.DEFINE_float("error_scale", 1.0, "Multiplies every injected error probability (0..3).")
_WAKE = flags.DEFINE_float("false_wake_rate", 0.05, "Probability that a goal is preceded by a false wake.")
_TURNS = flags.DEFINE_integer("max_turns", 12, "Turns per dialogue at most.")
_VALIDATE = flags.DEFINE_bool("validate", False, "Re-read the written file through the validating loader.")


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(app.EXIT_BAD_INPUT)


def main(argv: list[str]) -> int:
  del argv
  if not _OUT.value:
    _fail("--out is required: the JSONL file to write.")
  if _NUM.value < 0:
    _fail(f"--num_dialogues={_NUM.value}: must be >= 0.")
  overrides = {}
  fields = {f.name: f.type for f in dataclasses.fields(simulator.SimConfig)}
  for item in _SET.value:
    key, sep, raw = item.partition("=")
    if not sep or key not in fields or key == "world":
      _fail(f"--set={item}: expected field=value with a SimConfig field (not world: use --preset)")
    cast = {"int": int, "float": float, "str": str}[fields[key]]
    try:
      overrides[key] = cast(raw)
    except ValueError:
      _fail(f"--set={item}: {key} takes a {fields[key]}")
  if _USERS.value is not None:
    overrides["num_users"] = _USERS.value
  try:
    config = simulator.preset(
      _PRESET.value,
      seed=_SEED.value,
      error_scale=_ERRORS.value,
      false_wake_rate=_WAKE.value,
      max_turns=_TURNS.value,
      **overrides,
    )
  except ValueError as e:
    flag = str(e).split(" ", 1)[0]
    _fail(f"--{flag if flag not in overrides else 'set=' + flag}: {e}")
  out = pathlib.Path(_OUT.value)
  if out.is_dir():
    _fail(f"--out={out}: is a directory.")
  out.parent.mkdir(parents=True, exist_ok=True)
  if not os.access(out.parent, os.W_OK):
    _fail(f"--out={out}: {out.parent} is not writable.")
  counter = _Counter()
  dialogues = counter.wrap(simulator.generate(config, _NUM.value))
  n = logs.write_logs(str(out), dialogues, total=_NUM.value, header=simulator.header(config))
  s = counter.summary()
  print(
    f"wrote {n} dialogues ({s['turns']} turns, {s['goals']} goals) to {out}: goal success"
    f" {s['goal_success_rate']:.1%}; failure points {json.dumps(s['failure_points'])};"
    f" {s['rephrase_pairs']} rephrase pairs; rewrites {json.dumps(s['rewrites'])}",
    flush=True,
  )
  if _VALIDATE.value:
    stats = logs.LoadStats()
    for _ in logs.iter_logs(out, stats=stats):
      pass
    print(f"validated {stats.rows} rows of {out}", flush=True)
  return 0


class _Counter:
  """Summarises dialogues as they stream past (nothing is kept)."""

  def __init__(self):
    self._parts = []
    self._acc = None

  def wrap(self, dialogues):
    for d in dialogues:
      self._add(simulator.summary([d]))
      yield d

  def _add(self, s):
    if self._acc is None:
      self._acc = s
      self._acc["goal_success"] = s["goal_success_rate"] * s["goals"]
      return
    a = self._acc
    for k in ("dialogues", "turns", "goals", "rephrase_pairs", "barge_ins"):
      a[k] += s[k]
    a["goal_success"] += s["goal_success_rate"] * s["goals"]
    for k, v in s["failure_points"].items():
      a["failure_points"][k] += v
    for k, v in s["rewrites"].items():
      a["rewrites"][k] = a["rewrites"].get(k, 0) + v

  def summary(self):
    if self._acc is None:
      return simulator.summary([])
    a = dict(self._acc)
    a["goal_success_rate"] = round(a.pop("goal_success") / max(a["goals"], 1), 4)
    return a


if __name__ == "__main__":
  app.run_tool(main)
