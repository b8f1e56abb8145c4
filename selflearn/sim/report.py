"""Can the simulator say no?  Recurrence, signal strength and the metadata shortcut per preset.

  python -m selflearn.sim.report --out=selflearn/results/simulator [--presets=closed_world,open_world,tail_heavy]
      [--seeds=0,1,2 --num_dialogues=6000]

For each preset and simulator seed: one log of `num_dialogues` dialogues,
split by day (train 0-59, validation 60-69, test 70-89) and, for the closed
world, also by dialogue index (the split of its published results).  On each
split: the recurrence of test requests in training
(`evaluation.recurrence`), the ROC AUC of each confidence alone for
defective vs correct turns, and the macro-F1 of failure-point isolation by
the metadata-only gradient-boosted tree (`understanding.shortcut`, trained
on the training split's true labels: the ceiling of what metadata alone
gives).  One JSON per (preset, seed, split) in `--out` (existing ones are
reused: a killed run resumes), then `report.md` with means and 95%
t-intervals over seeds.
"""

from __future__ import annotations

import json
import pathlib

from absl import flags
from sklearn.metrics import roc_auc_score

from common import app, sweep
from selflearn.data import splits
from selflearn.evaluation import recurrence
from selflearn.signals import features
from selflearn.sim import config as config_lib
from selflearn.sim import simulator
from selflearn.understanding import fpi, shortcut

_OUT = flags.DEFINE_string("out", None, "Output directory (per-run JSON files and report.md).")
_PRESETS = flags.DEFINE_list("presets", ["closed_world", "open_world", "tail_heavy"], "Presets to measure.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Simulator seeds.")
_NUM = flags.DEFINE_integer("num_dialogues", 6000, "Dialogues per log.")
_USERS = flags.DEFINE_integer("closed_users", 200, "num_users of the closed world (the tasks' default).")

CONFIDENCES = {
  "asr": lambda t: t["asr"]["confidence"],
  "nlu": lambda t: t["nlu"]["confidence"],
  "er": lambda t: t["er"]["score"],
  "wake": lambda t: t["wake"]["score"],
}


def measure(train: list, test: list) -> dict:
  """Recurrence, per-confidence AUC (all turns of `train + test`) and the shortcut's FPI scores on one split."""
  turns = [t for d in train + test for t in d["turns"]]
  y = [t["truth"]["defect"] for t in turns]
  auc = {k: float(roc_auc_score(y, [-get(t) for t in turns])) for k, get in CONFIDENCES.items()}
  vocab = features.Vocab.build([], max_size=10)
  enc = [features.encode(s, vocab, (), max_turns=12, max_tokens=4) for s in (train, test)]
  pred = shortcut.fit_predict(enc[0].inputs, enc[0].labels["fpi"], enc[1].inputs)
  truth = enc[1].labels["fpi"][enc[1].inputs["turn_mask"]]
  scores = fpi.scores(truth, pred)
  return {
    "recurrence": recurrence.recurrence(train, test),
    "auc": auc,
    "shortcut_fpi": {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]},
    "train_dialogues": len(train),
    "test_dialogues": len(test),
  }


def run_one(preset: str, seed: int, num: int, out: pathlib.Path) -> dict[str, dict]:
  paths = {s: out / f"{preset}-seed{seed}-{s}.json" for s in ("temporal", "dialogue")}
  wanted = ("temporal", "dialogue") if preset == "closed_world" else ("temporal",)
  if all(paths[s].exists() for s in wanted):
    return {s: json.loads(paths[s].read_text()) for s in wanted}
  extra = {"num_users": _USERS.value} if preset == "closed_world" else {}
  cfg = config_lib.preset(preset, seed=seed, **extra)
  rows = list(simulator.generate(cfg, num))
  results = {}
  for s in wanted:
    if s == "temporal":
      train, _, test = splits.temporal_split(rows)
    else:
      n_train, n_val, _ = splits.split_sizes(len(rows), val_fraction=0.1, test_fraction=0.2)
      train, test = rows[:n_train], rows[n_train + n_val :]
    r = measure(train, test)
    r.update(preset=preset, seed=seed, split=s, num_dialogues=num)
    paths[s].write_text(json.dumps(r, indent=1, sort_keys=True))
    results[s] = r
    print(f"{preset} seed {seed} {s}: {json.dumps({k: r[k] for k in ('shortcut_fpi', 'auc')})}", flush=True)
  return results


def _ci(values) -> str:
  ci = sweep.t_interval([float(v) for v in values])
  return f"{ci['mean']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def render(runs: list[dict]) -> str:
  groups: dict[tuple, list] = {}
  for r in runs:
    groups.setdefault((r["preset"], r["split"]), []).append(r)
  n = runs[0]["num_dialogues"]
  lines = [
    "# Can the simulator say no?",
    "",
    f"One log of {n} dialogues per preset and simulator seed; mean [95% t-interval] over seeds"
    f" ({', '.join(sorted({str(r['seed']) for r in runs}))}).  Written by `python -m selflearn.sim.report`.",
    "",
    "| preset | split | seeds | test requests seen in training (true text) | (ASR text) |"
    " defective test requests seen (true text) | (ASR text) | metadata-tree FPI macro-F1 | accuracy |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for (preset, split), rs in sorted(groups.items()):
    rec = [r["recurrence"] for r in rs]
    cells = [
      _ci([x["true_text_seen"] for x in rec]),
      _ci([x["asr_text_seen"] for x in rec]),
      _ci([x["defective_true_text_seen"] for x in rec]),
      _ci([x["defective_asr_text_seen"] for x in rec]),
      _ci([r["shortcut_fpi"]["macro_f1"] for r in rs]),
      _ci([r["shortcut_fpi"]["accuracy"] for r in rs]),
    ]
    lines.append(f"| {preset} | {split} | {len(rs)} | " + " | ".join(cells) + " |")
  lines += [
    "",
    "ROC AUC of each confidence alone, defective vs correct turns (all turns of train and test):",
    "",
    "| preset | split | " + " | ".join(CONFIDENCES) + " |",
    "|---|---|" + "---|" * len(CONFIDENCES),
  ]
  for (preset, split), rs in sorted(groups.items()):
    lines.append(f"| {preset} | {split} | " + " | ".join(_ci([r["auc"][k] for r in rs]) for k in CONFIDENCES) + " |")
  return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
  del argv
  if not _OUT.value:
    app.fail("--out is required: the output directory.")
  for p in _PRESETS.value:
    if p not in config_lib.PRESETS:
      app.fail(f"--presets: {p!r} is not one of {sorted(config_lib.PRESETS)}")
  try:
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError:
    app.fail(f"--seeds={','.join(_SEEDS.value)}: expected integers")
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  runs = []
  for preset in _PRESETS.value:
    for seed in seeds:
      runs.extend(run_one(preset, seed, _NUM.value, out).values())
  (out / "report.md").write_text(render(runs))
  print(f"wrote {out / 'report.md'}", flush=True)
  return 0


if __name__ == "__main__":
  app.run_tool(main)
