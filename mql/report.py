"""Aggregates per-seed mql runs into results tables: meta-training runs and adaptation variants.

  python -m mql.report --table=point-robot --runs=mql/results/runs           # -> mql/results/point-robot/
  python -m mql.report --table=point-robot-adaptation --runs=mql/results/runs

Every committed table under `mql/results/<table>/` is rebuilt by this command
from the per-seed files committed under `mql/results/runs/<table>/` (a test
checks it); tables whose per-seed files were lost say so in their first lines.

Two layouts under `<runs>/<table>/`:

* **meta-training runs** (`mql.main` workdirs): `<method>/seed*/` for the
  methods `mql` (context TD3 with adaptation) and `td3` (the multi-task TD3
  baseline without context, `--config.use_context=False`); each workdir's
  small files (`results.json`: the final evaluation on the test tasks;
  `metrics.jsonl`: return vs env steps; `config.json`, `tasks.json`) are all
  that is read, so a directory holding only those rebuilds the table.
  Writes `results.json`, `results.md`, `return.png`.
* **adaptation variants** (`python -m mql.adapt`): `<label>/adaptation.json`
  per meta-training checkpoint.  Writes `results.json` and `results.md`.

Intervals are 95% Student-t intervals with the seed (a meta-training run) as
the unit: each run's number is its mean over the test tasks and evaluation
episodes.  Intervals over all (seed, task) pairs treat the tasks of one run
as independent draws; they are printed only as a labelled secondary column.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from absl import flags
from scipy import stats

from common import app
from common import metrics as metrics_lib

# The first lines of a committed table whose per-seed files are not in the repository.
NOT_REBUILDABLE = "per-seed files not in the repository"
METHODS = {"mql": "MQL (TD3 + GRU context)", "td3": "multi-task TD3, no context"}


def interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
  """Mean and Student-t interval of `values` (NaN bounds for fewer than 2 values)."""
  x = np.asarray(values, np.float64)
  mean = float(x.mean())
  if x.size < 2:
    return mean, float("nan"), float("nan")
  half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
  return mean, mean - half, mean + half


def load_method(directory: pathlib.Path) -> list[dict]:
  """Each finished seed's results.json and learning curve, seed order."""
  runs = []
  for workdir in sorted(directory.glob("seed*")):
    path = workdir / "results.json"
    if not path.exists():
      continue
    results = json.loads(path.read_text())
    rows = metrics_lib.read_metrics(workdir)
    curve = [(r["env_steps"], r["episode_return"]) for r in rows if r.get("episode_return") is not None]
    steps = {r["step"]: r["env_steps"] for r in rows if "env_steps" in r}
    evals = [
      (steps.get(r["step"]), r["eval/return_before_mql"], r["eval/return_after_mql"])
      for r in rows
      if r.get("eval/return_after_mql") is not None
    ]
    runs.append({"seed": results["seed"], "results": results, "curve": curve, "evals": evals})
  return runs


def summarize(runs: list[dict]) -> dict:
  """Seed-unit intervals of the returns before / after stage 1 / after adaptation and of the gains."""
  per_task = lambda name: np.asarray([r["results"]["per_task"][name] for r in runs], np.float64)  # [seeds, tasks, K]
  before, after = per_task("before"), per_task("after")
  gain_tasks = (after.mean(-1) - before.mean(-1)).reshape(-1)
  out = {
    "seeds": [r["seed"] for r in runs],
    "env_steps": runs[0]["results"]["summary"]["env_steps"],
    "test_tasks": int(before.shape[1]),
    "eval_episodes": int(before.shape[2]),
    "before_mql": interval(before.mean(axis=(1, 2))),
    "after_mql": interval(after.mean(axis=(1, 2))),
    "gain_mql": interval(after.mean(axis=(1, 2)) - before.mean(axis=(1, 2))),
    "gain_mql_paired_tasks": interval(gain_tasks),
    "tasks_improved": float(np.mean(gain_tasks > 0)),
  }
  if all("after1" in r["results"]["per_task"] for r in runs):
    after1 = per_task("after1")
    out["after1_mql"] = interval(after1.mean(axis=(1, 2)))
    out["stage1_gain_mql"] = interval(after1.mean(axis=(1, 2)) - before.mean(axis=(1, 2)))
  for name in ("classifier_accuracy", "classifier_majority_rate", "ess"):
    values = [r["results"]["summary"].get(name) for r in runs]
    out[name] = float(np.mean(values)) if all(v is not None for v in values) else None
  return out


def _fmt(ci, digits: int = 2) -> str:
  mean, lo, hi = ci
  return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" if np.isfinite(lo) else f"{mean:.{digits}f}"


def markdown(family: str, summaries: dict) -> str:
  lines = [
    f"# MQL on {family}: final test-task returns",
    "",
    "Means over seeds with 95% t-intervals, the seed as the unit: each seed's value is its mean over the test tasks "
    "and the K evaluation episodes (the same K episodes before adaptation, after its stage 1 and after it). "
    "'before' is the meta-trained policy without adaptation.",
    "",
    "| method | seeds | env steps | K | before | after stage 1 | after | gain (after - before) | tasks improved |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for method, s in summaries.items():
    after1 = _fmt(s["after1_mql"]) if "after1_mql" in s else "-"
    lines.append(
      f"| {METHODS[method]} | {len(s['seeds'])} | {s['env_steps']} | {s['eval_episodes']} | {_fmt(s['before_mql'])} "
      f"| {after1} | {_fmt(s['after_mql'])} | {_fmt(s['gain_mql'])} | {100 * s['tasks_improved']:.0f}% |"
    )
  if "mql" in summaries:
    s = summaries["mql"]
    lines += [
      "",
      f"Secondary (not the seed as the unit): the MQL gain over all {len(s['seeds'])} x {s['test_tasks']} "
      f"(seed, task) pairs, treating the tasks of a seed as independent, is {_fmt(s['gain_mql_paired_tasks'])}.",
    ]
    if s.get("classifier_accuracy") is not None:
      majority = s.get("classifier_majority_rate")
      lines.append(
        f"Propensity classifier training accuracy {s['classifier_accuracy']:.3f}"
        + (f" (majority rate {majority:.3f})" if majority is not None else "")
        + f"; normalised ESS of the stage-2 weights {s['ess']:.2f}."
      )
  return "\n".join(lines) + "\n"


# --- adaptation variants (python -m mql.adapt) ---

DIAGNOSTICS = (
  ("classifier_accuracy", "clf acc"),
  ("classifier_majority_rate", "majority"),
  ("beta_zero_fraction", "beta=0"),
  ("ess", "ESS"),
  ("prox_coef", "lambda"),
  ("actor_learning_rate", "actor rate"),
  ("actor_distance_stage1", "|d actor| s1"),
  ("actor_distance", "|d actor|"),
  ("critic_distance", "|d critic|"),
)


def load_adaptation(directory: pathlib.Path) -> list[dict]:
  """Every `<label>/adaptation.json` under `directory`, label order."""
  return [json.loads(p.read_text()) for p in sorted(directory.glob("*/adaptation.json"))]


def summarize_adaptation(units: list[dict], reference: str = "default") -> dict:
  """Per variant: seed-unit intervals of the gains, paired differences to `reference`, diagnostics.

  The units of the variant table are the checkpoints with at least one variant
  run, and only variants present in all of them are compared (the pairing
  needs them all; the others are listed as incomplete); the classifier check
  uses every checkpoint that has it.
  """
  all_units, units = units, [u for u in units if u["variants"]]
  names = [n for n in units[0]["variants"] if all(n in u["variants"] for u in units)] if units else []
  incomplete = sorted({n for u in units for n in u["variants"]} - set(names))

  def per_unit(name, field):  # [units, tasks, K]
    return np.asarray([u["variants"][name]["per_task"][field] for u in units], np.float64)

  gains = {}
  variants = {}
  for name in names:
    before, after1, after = (per_unit(name, f) for f in ("before", "after1", "after"))
    gain = after.mean(axis=(1, 2)) - before.mean(axis=(1, 2))
    gains[name] = gain
    task_gain = (after.mean(-1) - before.mean(-1)).reshape(-1)
    row = {
      "settings": units[0]["variants"][name]["settings"],
      "meaning": units[0]["variants"][name].get("meaning", ""),
      "before": interval(before.mean(axis=(1, 2))),
      "after": interval(after.mean(axis=(1, 2))),
      "stage1_gain": interval(after1.mean(axis=(1, 2)) - before.mean(axis=(1, 2))),
      "gain": interval(gain),
      "gain_per_unit": gain.tolist(),
      "gain_paired_tasks": interval(task_gain),
      "tasks_improved": float(np.mean(task_gain > 0)),
    }
    for field, _ in DIAGNOSTICS:
      values = np.concatenate([np.ravel(np.asarray(u["variants"][name]["per_task"][field], np.float64)) for u in units])
      row[field] = float(np.mean(values[np.isfinite(values)])) if np.isfinite(values).any() else None
    variants[name] = row
  if reference in gains:
    for name in names:
      variants[name]["minus_reference"] = interval(gains[name] - gains[reference])
  out = {
    "units": [u["label"] for u in units],
    "family": all_units[0]["family"],
    "env_steps": [u["env_steps"] for u in units],
    "test_tasks": int(per_unit(names[0], "before").shape[1]) if names else None,
    "eval_episodes": int(per_unit(names[0], "before").shape[2]) if names else None,
    "reference": reference,
    "variants": variants,
    "incomplete_variants": {n: sum(n in u["variants"] for u in units) for n in incomplete},
  }
  checks = [u["classifier_check"] for u in all_units if "classifier_check" in u]
  if checks and all(c["C"] == checks[0]["C"] for c in checks):
    out["checked_units"] = [u["label"] for u in all_units if "classifier_check" in u]
    rows = []
    for i, c in enumerate(checks[0]["C"]):
      field = lambda name, i=i: np.asarray([np.mean(np.asarray(k[name])[:, i]) for k in checks])
      accuracy, majority = field("accuracy"), field("majority_rate")
      own, other = field("beta_own"), field("beta_other")
      row = {
        "C": c,
        "accuracy": float(accuracy.mean()),
        "majority_rate": float(majority.mean()),
        "accuracy_minus_majority": interval(accuracy - majority),
        "beta_own": float(own.mean()),
        "beta_other": float(other.mean()),
      }
      if all("auc" in k for k in checks):  # files written before the AUC was recorded have none
        row["auc"] = interval(field("auc"))
        row["log_beta_ratio"] = interval(np.log(own / other))
      rows.append(row)
    out["classifier_check"] = {"held_out_tasks": len(checks[0]["held_out_tasks"]), "rows": rows}
  return out


def _num(v, digits=3) -> str:
  if v is None or not np.isfinite(v):
    return "-"
  return f"{v:.{digits}g}"


def markdown_adaptation(table: str, s: dict) -> str:
  n = len(s["units"])
  lines = [f"# MQL adaptation variants on {s['family']}: {table}", ""]
  if s["variants"]:
    lines += _variant_lines(s, n)
  if s["incomplete_variants"]:
    listed = ", ".join(f"{k} ({v} of {n})" for k, v in s["incomplete_variants"].items())
    lines += ["", f"Not in the table, run on only some of the checkpoints: {listed}."]
  if "classifier_check" in s:
    lines += _check_lines(s)
  return "\n".join(lines) + "\n"


def _variant_lines(s: dict, n: int) -> list[str]:
  lines = [
    f"Each variant adapts every one of the {s['test_tasks']} test tasks of each of {n} meta-training checkpoints "
    f"({', '.join(s['units'])}; env steps {sorted(set(s['env_steps']))}), all variants with the same key per "
    "checkpoint (the same collection episode, classifier negatives, minibatches and K = "
    f"{s['eval_episodes']} evaluation episodes), so they are paired.  Returns are means over the test tasks and the "
    "K episodes; 95% t-intervals with the checkpoint (an independent meta-training run) as the unit.  "
    f"'- {s['reference']}' is the paired difference of the gain to `{s['reference']}`.  "
    "'tasks improved' and the (checkpoint, task)-paired interval are secondary: they treat the tasks of a "
    "checkpoint as independent.",
    "",
    "| variant | gain (after - before) | - " + s["reference"] + " | after stage 1 - before | after | tasks improved "
    "| gain, (ckpt, task) pairs |",
    "|---|---|---|---|---|---|---|",
  ]
  for name, v in s["variants"].items():
    minus = _fmt(v["minus_reference"]) if "minus_reference" in v and name != s["reference"] else "-"
    lines.append(
      f"| {name} | {_fmt(v['gain'])} | {minus} | {_fmt(v['stage1_gain'])} | {_fmt(v['after'])} "
      f"| {100 * v['tasks_improved']:.0f}% | {_fmt(v['gain_paired_tasks'])} |"
    )
  first = next(iter(s["variants"].values()))
  lines += ["", f"Return before adaptation (every variant): {_fmt(first['before'])}.", ""]
  lines += [
    "Diagnostics (means over checkpoints and tasks): the classifier's training accuracy and its majority rate, "
    "the fraction of stage-2 rows with beta = 0, the normalised ESS of beta, lambda, the actor's adaptation rate, "
    "and the distance of the actor (after stage 1, after) and critic (after) from the meta-trained parameters.",
    "",
    "| variant | meaning | " + " | ".join(label for _, label in DIAGNOSTICS) + " |",
    "|---|---|" + "---|" * len(DIAGNOSTICS),
  ]
  for name, v in s["variants"].items():
    cells = " | ".join(_num(v[field]) for field, _ in DIAGNOSTICS)
    lines.append(f"| {name} | {v['meaning']} | {cells} |")
  return lines


def _check_lines(s: dict) -> list[str]:
  c = s["classifier_check"]
  lines = [
    "",
    f"Propensity classifier on {c['held_out_tasks']} held-out train tasks of each of {len(s['checked_units'])} "
    f"checkpoints ({', '.join(s['checked_units'])}; the test tasks are not used): fitted "
    "on the held-out task's deterministic episode against the other train tasks' snapshots, scored on the "
    "held-out task's own replay rows (exploration behaviour) against fresh rows of the other tasks at the same "
    "class ratio.  Accuracy - majority rate has the checkpoint as the unit; beta own / other are the mean "
    "clipped, unnormalised weights of the held-out task's rows and of the others'.",
  ]
  auc = all("auc" in r for r in c["rows"])
  if auc:
    lines[-1] += (
      "  AUC (the chance that a row of the held-out task scores above a row of the others: 0.5 is chance) and "
      "log(beta own / beta other) are ranking criteria free of the 0.5 threshold, the checkpoint as the unit."
    )
  lines += [
    "",
    "| C | accuracy | majority rate | accuracy - majority | beta own | beta other |"
    + (" AUC | log(own / other) |" if auc else ""),
    "|---|---|---|---|---|---|" + ("---|---|" if auc else ""),
  ]
  for r in c["rows"]:
    lines.append(
      f"| {r['C']:g} | {r['accuracy']:.3f} | {r['majority_rate']:.3f} | {_fmt(r['accuracy_minus_majority'], 4)} "
      f"| {r['beta_own']:.3f} | {r['beta_other']:.3f} |"
      + (f" {_fmt(r['auc'], 3)} | {_fmt(r['log_beta_ratio'], 2)} |" if auc else "")
    )
  return lines


def plot(family: str, loaded: dict, path: pathlib.Path) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6.5, 4))
  for (method, runs), color in zip(loaded.items(), ("C0", "C1")):
    if not runs:
      continue
    n = min(len(r["curve"]) for r in runs)
    steps = np.asarray([s for s, _ in runs[0]["curve"][:n]])
    values = np.asarray([[v for _, v in r["curve"][:n]] for r in runs])
    mean = values.mean(0)
    ax.plot(steps, mean, color=color, label=f"{METHODS[method]}: training episodes")
    if len(runs) > 1:
      ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.2)
    evals = [r["evals"] for r in runs]
    m = min(len(e) for e in evals)
    if m:
      x = [evals[0][i][0] for i in range(m)]
      ax.plot(x, [np.mean([e[i][1] for e in evals]) for i in range(m)], "o--", color=color, label="test, before")
      ax.plot(x, [np.mean([e[i][2] for e in evals]) for i in range(m)], "s-", color=color, label="test, after")
  ax.set_xlabel("env steps (all slots)")
  ax.set_ylabel("episode return")
  ax.set_title(f"{family}: mean over seeds (band: min-max)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _define_flags() -> None:
  flags.DEFINE_string("table", None, "Table: reads <runs>/<table>/, writes mql/results/<table>/ (default: --family).")
  flags.DEFINE_string("family", "point-robot", "Task family (the default table name).")
  flags.DEFINE_string("runs", "mql/results/runs", "Directory holding <table>/ (seed workdirs or adaptation files).")
  flags.DEFINE_string("out", None, "Output directory (default mql/results/<table>).")
  flags.DEFINE_string("reference", "default", "Adaptation tables: the variant the others are paired against.")


def build(runs: pathlib.Path, table: str, out: pathlib.Path, reference: str = "default") -> str:
  """Writes the table of `runs/table` to `out`; returns its markdown (exit 2 when nothing is there)."""
  root = runs / table
  units = load_adaptation(root)
  if units:
    summary = summarize_adaptation(units, reference)
    text = markdown_adaptation(table, summary)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"table": table, **summary}, indent=1) + "\n")
    (out / "results.md").write_text(text)
    return text
  loaded = {method: load_method(root / method) for method in METHODS}
  loaded = {m: runs for m, runs in loaded.items() if runs}
  if not loaded:
    app.fail(f"--runs/--table: no finished runs under {root}/<mql|td3>/seed*/ and no {root}/*/adaptation.json")
  family = next(iter(loaded.values()))[0]["results"]["family"]
  summaries = {method: summarize(runs) for method, runs in loaded.items()}
  out.mkdir(parents=True, exist_ok=True)
  (out / "results.json").write_text(json.dumps({"family": family, "methods": summaries}, indent=1) + "\n")
  text = markdown(family, summaries)
  (out / "results.md").write_text(text)
  plot(family, loaded, out / "return.png")
  return text


def main(argv) -> None:
  del argv
  f = flags.FLAGS
  table = f.table or f.family
  out = pathlib.Path(f.out or f"mql/results/{table}")
  print(build(pathlib.Path(f.runs), table, out, f.reference))
  print(f"outputs in {out}: results.md, results.json")


if __name__ == "__main__":
  _define_flags()
  app.run_tool(main)
