"""The FPI/human ratio as a curve over the simulated annotator's noise, not one number.

  python -m selflearn.sim.annotator_sweep --runs=DIR --out=selflearn/results/annotator_noise
      [--scales=0,0.25,0.5,0.75,1,1.5,2]

"Share of human performance" divides the model's macro-F1 by that of a
simulated single-pass annotator whose per-class accuracies
(`annotator.fpi_accuracy`, 0.75-0.95 by default) are assumptions.  This
sweep scales every class's error rate by `s` (accuracy `1 - s * (1 -
default)`, clipped to [0, 1]; `s = 0` a perfect annotator, `s = 2` errors
of 10-50%) and re-draws the annotator on the test split of every finished
`fpi` run under `DIR` (`fpi_<world>_s<seed>/`: its `config.json`, its
logs in `data/`, its `results.json`), with the run's own annotator seed.
The model and the metadata tree stay those of the run (trained on the
default annotator's labels); only the human reference moves.  At `s = 1`
the sweep reproduces the run's own human row (checked).  Writes
`summary.json` and `summary.md`: per world and scale, mean and 95%
t-interval over the seeds of the human's macro-F1, the model/human and the
metadata tree/human ratios.
"""

from __future__ import annotations

import json
import math
import pathlib
import re

import ml_collections
import numpy as np
from absl import flags

from common import app, sweep
from selflearn.signals import features
from selflearn.sim import annotators
from selflearn.tasks import base
from selflearn.understanding import fpi

_RUNS = flags.DEFINE_string("runs", None, "Directory of fpi run directories fpi_<world>_s<seed>.")
_OUT = flags.DEFINE_string("out", None, "Output directory (summary.json, summary.md).")
_SCALES = flags.DEFINE_list("scales", ["0", "0.25", "0.5", "0.75", "1", "1.5", "2"], "Error-rate multipliers.")

NAME = re.compile(r"^fpi_(?P<world>open|tail|closed)_s(?P<seed>\d+)$")


def scaled(accuracy: dict, scale: float) -> dict:
  """Per-class accuracies with every error rate multiplied by `scale` (clipped to [0, 1])."""
  return {c: float(min(1.0, max(0.0, 1.0 - scale * (1.0 - a)))) for c, a in accuracy.items()}


def human_curve(labels: dict, mask: np.ndarray, noise: annotators.Noise, seed: int, scales) -> list[dict]:
  """Per scale: the single annotator's FPI scores against the truth (the runs' `panel` draw)."""
  y = labels["fpi"][mask]
  out = []
  for s in scales:
    n = annotators.Noise(
      segment=noise.segment, success=noise.success, intent=noise.intent, slot=noise.slot,
      fpi_accuracy=scaled(dict(noise.fpi_accuracy), s),
    )  # fmt: skip
    single = annotators.panel(labels, mask, n, seed)["single"]
    out.append({"scale": s, "fpi_accuracy": dict(n.fpi_accuracy), "scores": fpi.scores(y, single["fpi"][mask])})
  return out


def measure(run: pathlib.Path, scales) -> dict:
  """The curve of one finished fpi run."""
  config = ml_collections.ConfigDict(json.loads((run / "config.json").read_text()))
  results = json.loads((run / "results.json").read_text())
  d = config.data
  dialogues = base.load_dialogues(config, run)
  values = features.value_vocab(dialogues.train)  # as the run encoded them: the annotator's draws depend on it
  vocab = features.Vocab.build([], max_size=10)
  enc = features.encode(dialogues.test, vocab, values, max_turns=d.max_turns, max_tokens=d.max_tokens)
  mask = enc.inputs["turn_mask"]
  a = config.annotator
  noise = annotators.Noise(a.segment, a.success, a.intent, a.slot, dict(a.fpi_accuracy))
  curve = human_curve(enc.labels, mask, noise, config.annotator_seed + 100, scales)
  at_one = [c for c in curve if c["scale"] == 1.0]
  if at_one and not math.isclose(at_one[0]["scores"]["macro_f1"], results["vs_truth"]["human"]["macro_f1"]):
    raise ValueError(f"{run}: the s=1 annotator does not reproduce the run's human row")
  model, tree = results["vs_truth"]["model"]["macro_f1"], results["vs_truth"]["metadata_gbt"]["macro_f1"]
  for c in curve:
    h = c["scores"]["macro_f1"]
    c.update(human_macro_f1=h, model_over_human=model / h, tree_over_human=tree / h)
    del c["scores"]
  return {"model_macro_f1": model, "tree_macro_f1": tree, "curve": curve}


def summarise(per_run: dict) -> dict:
  """world -> seeds and, per scale, t-intervals of the human macro-F1 and both ratios."""
  out = {}
  for world in sorted({w for w, _ in per_run}):
    seeds = sorted(s for w, s in per_run if w == world)
    runs = [per_run[(world, s)] for s in seeds]
    rows = []
    for i, c in enumerate(runs[0]["curve"]):
      row = {"scale": c["scale"], "fpi_accuracy": c["fpi_accuracy"]}
      for k in ("human_macro_f1", "model_over_human", "tree_over_human"):
        row[k] = sweep.t_interval([r["curve"][i][k] for r in runs])
      rows.append(row)
    model = sweep.t_interval([r["model_macro_f1"] for r in runs])
    out[world] = {"seeds": seeds, "model_macro_f1": model, "rows": rows}
  return out


def _ci(ci: dict, pct: bool = True) -> str:
  f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.3f}")
  if ci["n"] < 2:
    return f(ci["mean"])
  return f"{f(ci['mean'])} [{f(ci['low'])}, {f(ci['high'])}]"


def markdown(summary: dict) -> str:
  lines = ["# FPI/human ratio over the simulated annotator's noise: mean [95% t-interval] over simulator seeds", ""]
  for world, s in summary.items():
    lines += [
      f"## {world} world (seeds {s['seeds']}; model macro-F1 {_ci(s['model_macro_f1'], False)})",
      "",
      "| error scale | annotator per-class accuracy (min-max) | human macro-F1 | model / human"
      " | metadata tree / human |",
      "|---|---|---|---|---|",
    ]
    for r in s["rows"]:
      acc = r["fpi_accuracy"].values()
      lines.append(
        f"| {r['scale']:g} | {min(acc):.2f}-{max(acc):.2f} | {_ci(r['human_macro_f1'], False)} |"
        f" {_ci(r['model_over_human'])} | {_ci(r['tree_over_human'])} |"
      )
    lines.append("")
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  del argv
  if not _RUNS.value or not _OUT.value:
    app.fail("--runs and --out are required")
  runs = pathlib.Path(_RUNS.value)
  if not runs.is_dir():
    app.fail(f"--runs: no such directory {runs}")
  try:
    scales = sorted({float(s) for s in _SCALES.value})
  except ValueError:
    app.fail(f"--scales: not numbers: {_SCALES.value}")
  if any(s < 0 for s in scales):
    app.fail("--scales: must be >= 0")
  per_run = {}
  for d in sorted(runs.iterdir()):
    m = NAME.match(d.name)
    if m and (d / "results.json").is_file() and (d / "config.json").is_file():
      per_run[(m["world"], int(m["seed"]))] = measure(d, scales)
      print(f"{d.name}: done", flush=True)
  if not per_run:
    app.fail(f"--runs: no finished fpi_<world>_s<seed> run under {runs}")
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  summary = summarise(per_run)
  per = {f"fpi_{w}_s{s}": v for (w, s), v in per_run.items()}
  (out / "summary.json").write_text(json.dumps({"summary": summary, "runs": per}, indent=2, sort_keys=True))
  (out / "summary.md").write_text(markdown(summary))
  print(f"{len(per_run)} runs -> {out}/summary.md")
  return 0


if __name__ == "__main__":
  app.run_tool(main)
