"""Adaptation variants on finished meta-training checkpoints, paired per checkpoint.

  python -m mql.adapt --workdirs=DIR[,DIR...] --out=mql/results/runs/point-robot-adaptation \
      [--variants=default,no_adaptation,...] [--check_C=0.1,1,10,100 [--select_C]] [--set=C=10]

Adaptation is a pure function of a meta-training checkpoint (`mql.adaptation`
reads the networks, targets, replay and optimizer states and returns
numbers), so its variants are compared without meta-training again: each
workdir of `mql.main` (its `config.json` and latest checkpoint) is restored
once and every variant adapts to every test task with the same key (the same
collection episode, classifier negatives, minibatch draws and K evaluation
episodes), so variants are paired within a checkpoint.  The unit of the
intervals is the checkpoint (an independent meta-training run), never the
(checkpoint, task) pair.

Meta-training fields come from the workdir's `config.json`; the adaptation
settings are this repository's current defaults for the family
(`mql.configs.default`) with each variant's overrides (`VARIANTS`) and
`--set` on top.  The checkpoint directory is opened with `common.checkpoint`,
which may move a corrupt step aside: run it on a copy of a workdir that must
stay untouched.

Writes `<out>/<label>/adaptation.json` per workdir (label: `<parent>-<seed
dir>`, e.g. `constant-seed0`): per variant, its settings, per-task returns
before / after stage 1 / after and diagnostics, and with `--check_C` the
held-out classifier check of each C (`mql.adaptation.make_classifier_check`);
with `--select_C` every variant that does not set C adapts at the C whose
held-out margin over chance is largest (mean over the checkpoints;
`--select_C_by`: accuracy - majority rate, AUC - 0.5, or the log ratio of the
held-out task's mean β to the others'), which is how a family's C is chosen
without its test tasks.
`python -m mql.report --table=<name of out>` turns these into the paired
table.  The file is written after each variant and a re-run skips the
variants it holds with the same settings, so a killed run resumes.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags

from common import app, checkpoint
from mql import adaptation, envs, train
from mql.configs import default as default_config
from schedulers import optimizers

# name -> (meaning, adaptation overrides of the current defaults); in the order they are run.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
  "default": ("this repository's defaults", {}),
  "no_adaptation": ("control: the meta-trained policy (no updates)", dict(stage1_iterations=0, stage2_iterations=0)),
  "stage2_only": ("control: no stage 1", dict(stage1_iterations=0)),
  "uniform_beta": ("control: beta = 1 in stage 2", dict(beta="uniform")),
  "previous": (
    "the repository's former defaults: fixed rate 1e-3, no stage-1 prox, lambda = 1 - ESS, "
    "beta from the adapted actor, unnormalised",
    dict(
      learning_rate_mode="fixed",
      learning_rate=0.001,
      stage1_prox=False,
      prox="ess",
      beta_features="current",
      beta_normalize=False,
    ),
  ),
  "C_100": ("C = 100 (the largest own / other beta ratio on held-out train tasks)", dict(C=100.0)),
  "no_stage1_prox": ("no proximal term in stage 1 (as the original)", dict(stage1_prox=False)),
  "prox_ess": ("lambda = 1 - ESS", dict(prox="ess")),
  "rate_x3": ("3x meta-training's final rate", dict(rate_multiplier=3.0)),
  "prox_td_scaled": ("lambda = 0.1 x the meta critic's TD loss", dict(prox="td_scaled")),
  "beta_current": (
    "beta from the adapted actor's GRU, unnormalised",
    dict(beta_features="current", beta_normalize=False),
  ),
  "stage1_only": ("stage 1 only (its proximal term on)", dict(stage2_iterations=0)),
}
RESULTS_FILE = "adaptation.json"
HELD_OUT_TASKS = 10  # train tasks held out in turn by --check_C


def _define_flags() -> None:
  flags.DEFINE_list("workdirs", [], "Finished mql.main workdirs (config.json + checkpoints/).")
  flags.DEFINE_list("variants", list(VARIANTS), f"Variants, of {', '.join(VARIANTS)}.")
  flags.DEFINE_string("out", None, "Directory of the per-checkpoint adaptation.json files.")
  flags.DEFINE_list("check_C", [], "C values scored on held-out train tasks (empty: no check).")
  flags.DEFINE_bool("select_C", False, "Adapt at the --check_C value whose --select_C_by margin is largest.")
  flags.DEFINE_enum("select_C_by", "accuracy", list(SELECT_C_BY), "The criterion of --select_C.")
  flags.DEFINE_list("set", [], "adaptation overrides for every variant, field=value (e.g. C=10).")
  flags.DEFINE_list("labels", [], "Labels of the workdirs (default <parent>-<dir>).")


def _upgrade_update_ratio(recorded: dict) -> None:
  """Workdirs written before the update-to-data ratio fields: `td3.updates_per_step`
  updates per vmapped step of `num_envs` slots is a ratio of updates_per_step / num_envs
  per transition, the same before and after the switch."""
  td3 = recorded.get("td3", {})
  if "updates_per_step" in td3:
    ratio = td3.pop("updates_per_step") / recorded.get("num_envs", 1)
    td3["update_ratio"] = td3["update_ratio_early"] = ratio


def meta_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """The workdir's config with the current adaptation defaults of its family."""
  path = workdir / "config.json"
  if not path.is_file():
    app.fail(f"--workdirs: {path} does not exist (not an mql.main workdir)")
  recorded = json.loads(path.read_text())
  recorded.pop("provenance", None)
  family = recorded.get("family")
  if family not in default_config.ORIGINAL:
    app.fail(f"--workdirs: {path}: family {family!r} is not one of {', '.join(default_config.ORIGINAL)}")
  config = default_config.get_config(family)
  adaptation_defaults = config.adaptation.to_dict()
  recorded.pop("adaptation", None)
  _upgrade_update_ratio(recorded)
  unknown = sorted(set(recorded) - set(config.to_dict()))
  if unknown:
    app.fail(f"--workdirs: {path} has fields this version does not know: {', '.join(unknown)}")
  config.update(recorded)
  config.network.hidden_sizes = tuple(config.network.hidden_sizes)
  config.adaptation = ml_collections.ConfigDict(adaptation_defaults)
  return config


def _parse_value(text: str) -> Any:
  try:
    return json.loads(text)
  except ValueError:
    return text


def settings_of(config, overrides: dict[str, Any]) -> adaptation.AdaptationSettings:
  fields = {**config.adaptation.to_dict(), **overrides}
  return adaptation.AdaptationSettings(**fields, greedy=config.optimizer.greedy.to_dict())


def restore(workdir: pathlib.Path, config):
  """(state, iteration, trainer pieces) of the workdir's latest checkpoint."""
  task_set, nets, meta, _ = train.build(config)
  tasks = {"train": np.asarray(task_set.train), "test": np.asarray(task_set.test)}
  with checkpoint.Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints) as ckpt:
    restored, step = ckpt.restore_latest({"state": meta.init(jax.random.key(config.seed)), "tasks": tasks})
  if restored is None:
    app.fail(f"--workdirs: {workdir} has no checkpoint")
  for split in ("train", "test"):
    if not np.array_equal(np.asarray(restored["tasks"][split]), tasks[split]):
      app.fail(f"--workdirs: {workdir}: the checkpoint's {split} tasks differ from its config's task set")
  return restored["state"], step, task_set, nets


def _lists(tree: dict) -> dict:
  return {k: np.asarray(v).tolist() for k, v in tree.items()}


_PROGRAMS: dict[str, Any] = {}


def _cached(config, name: str, make):
  """One compiled program per (meta-training config but the seed, variant): checkpoints of seeds share it."""
  fields = {k: v for k, v in config.to_dict().items() if k != "seed"}
  key = json.dumps(fields, sort_keys=True, default=str) + "|" + name
  if key not in _PROGRAMS:
    _PROGRAMS[key] = make()
  return _PROGRAMS[key]


class Unit:
  """One restored checkpoint, its programs and its output file (written after each variant)."""

  def __init__(self, workdir: pathlib.Path, label: str, path: pathlib.Path):
    self.workdir, self.path = workdir, path
    self.config = config = meta_config(workdir)
    self.state, step, self.task_set, self.nets = restore(workdir, config)
    self.td3 = train._td3_settings(config)
    self.eval_env = _cached(
      config,
      "eval_env",
      lambda: envs.make(config.family, task_set=self.task_set, split="test", episode_length=config.episode_length),
    )
    self.meta_opts = _cached(
      config,
      "optimizers",
      lambda: (optimizers.from_config(config.optimizer), optimizers.from_config(config.optimizer)),
    )
    # The final evaluation's key of mql.main: the same episodes as the workdir's results.json.
    self.key = jax.random.fold_in(jax.random.key(config.seed + 1_000_003), step)
    self.out = {
      "label": label,
      "workdir": str(workdir),
      "family": config.family,
      "seed": config.seed,
      "iteration": int(step),
      "env_steps": int(self.state.env_steps),
      "meta_optimizer": config.optimizer.to_dict(),
      "variants": {},
    }
    if path.exists():  # resume: keep what an earlier (killed) run of the same checkpoint wrote
      previous = json.loads(path.read_text())
      if previous.get("iteration") == step and previous.get("seed") == config.seed:
        for name in ("variants", "classifier_check", "selected_C", "selected_C_by"):
          if name in previous:
            self.out[name] = previous[name]

  def write(self) -> None:
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self.path.write_text(json.dumps(self.out, indent=1, allow_nan=True) + "\n")

  def check(self, check_cs: list[float], overrides: dict) -> None:
    """The held-out classifier check of each C (skipped when the file has it for these C)."""
    if self.out.get("classifier_check", {}).get("C") == check_cs:
      return
    config = self.config
    check = _cached(
      config,
      "check|" + json.dumps(overrides, sort_keys=True),
      lambda: adaptation.make_classifier_check(
        envs.make(config.family, task_set=self.task_set, split="train", episode_length=config.episode_length),
        self.nets,
        settings_of(config, overrides),
        num_train_tasks=config.num_train_tasks,
      ),
    )
    held_out = jnp.arange(min(HELD_OUT_TASKS, config.num_train_tasks), dtype=jnp.int32)
    cs = jnp.asarray(check_cs, jnp.float32)
    result = jax.device_get(check(self.state, jax.random.fold_in(self.key, 1), held_out, cs))
    self.out["classifier_check"] = {"C": check_cs, "held_out_tasks": np.asarray(held_out).tolist(), **_lists(result)}
    self.write()

  def run(self, name: str, overrides: dict) -> None:
    """One variant on every test task (skipped when the file has it with the same settings)."""
    config = self.config
    settings = settings_of(config, overrides)
    recorded = {k: v for k, v in vars(settings).items() if k != "greedy"}
    if self.out["variants"].get(name, {}).get("settings") == recorded:
      return
    adapter = _cached(
      config,
      json.dumps(vars(settings), sort_keys=True, default=str),
      lambda: adaptation.make_adapter(
        self.eval_env,
        self.nets,
        self.td3,
        settings,
        num_train_tasks=config.num_train_tasks,
        meta_optimizers=self.meta_opts,
      ),
    )
    start = time.time()
    results = jax.device_get(adapter.adapt_all(self.state, self.key))
    summary = adaptation.summarize(results)
    self.out["variants"][name] = {
      "meaning": VARIANTS[name][0],
      "settings": recorded,
      "summary": summary,
      "per_task": _lists(results),
    }
    print(
      f"{self.out['label']}: {name}: before {summary['return_before_mql']:.3f} "
      f"after1 {summary['return_after1_mql']:.3f} after {summary['return_after_mql']:.3f} "
      f"({time.time() - start:.0f} s)",
      flush=True,
    )
    self.write()


SELECT_C_BY = {
  "accuracy": "held-out accuracy - majority rate",
  "auc": "held-out AUC - 0.5 (ranking, no threshold)",
  "beta_ratio": "log(mean beta of the held-out task's rows / the others')",
}


def _margin(check: dict, by: str) -> np.ndarray:
  """Per C, the criterion's margin over chance (> 0: better than chance), mean over the held-out tasks."""
  a = lambda name: np.asarray(check[name], np.float64)
  if by == "accuracy":
    return np.mean(a("accuracy") - a("majority_rate"), axis=0)
  if by == "auc":
    return np.mean(a("auc"), axis=0) - 0.5
  return np.log(np.mean(a("beta_own"), axis=0) / np.mean(a("beta_other"), axis=0))


def select_C(units: list[Unit], by: str = "accuracy") -> float | None:
  """The C with the largest margin of the criterion `by` (mean over checkpoints); None if none beats chance."""
  checks = [u.out["classifier_check"] for u in units]
  if by == "auc" and not all("auc" in c for c in checks):
    app.fail("--select_C_by=auc: a classifier check in the files has no AUC (written by an older version)")
  margin = np.mean([_margin(c, by) for c in checks], 0)
  best = int(np.argmax(margin))
  return float(checks[0]["C"][best]) if margin[best] > 0 else None


def label_of(workdir: pathlib.Path) -> str:
  return f"{workdir.parent.name}-{workdir.name}"


def main(argv) -> None:
  del argv
  f = flags.FLAGS
  if not f.workdirs:
    app.fail("--workdirs: give at least one mql.main workdir")
  if not f.out:
    app.fail("--out: give the directory of the per-checkpoint files")
  unknown = [v for v in f.variants if v not in VARIANTS]
  if unknown:
    app.fail(f"--variants: unknown {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
  if f.labels and len(f.labels) != len(f.workdirs):
    app.fail("--labels: give one label per workdir")
  overrides = {}
  for item in f.set:
    field, sep, value = item.partition("=")
    if not sep:
      app.fail(f"--set: {item!r} is not field=value")
    overrides[field] = _parse_value(value)
  try:
    check_cs = [float(c) for c in f.check_C]
  except ValueError:
    app.fail(f"--check_C: {f.check_C} are not numbers")
  workdirs = [pathlib.Path(w) for w in f.workdirs]
  labels = f.labels or [label_of(w) for w in workdirs]
  for workdir in workdirs:
    config = meta_config(workdir)
    try:
      for name in f.variants:
        settings_of(config, {**VARIANTS[name][1], **overrides})
    except (TypeError, ValueError) as e:
      app.fail(f"--set: {e}")
  out_root = pathlib.Path(f.out)
  units = [Unit(w, label, out_root / label / RESULTS_FILE) for w, label in zip(workdirs, labels)]
  selected = {}
  if check_cs:
    for unit in units:
      unit.check(check_cs, overrides)
    if f.select_C:
      chosen = select_C(units, f.select_C_by)
      print(
        f"held-out classifier check: C = {chosen} by {SELECT_C_BY[f.select_C_by]} (None: none beats chance)", flush=True
      )
      if chosen is not None and "C" not in overrides:
        selected = {"C": chosen}
      for unit in units:
        unit.out["selected_C"] = chosen
        unit.out["selected_C_by"] = f.select_C_by
        unit.write()
  for name in f.variants:  # variant by variant, so every checkpoint has the first ones first
    for unit in units:
      unit.run(name, {**selected, **VARIANTS[name][1], **overrides})
  print(f"outputs in {out_root}; table: python -m mql.report --runs={out_root.parent} --table={out_root.name}")


if __name__ == "__main__":
  _define_flags()
  app.run_tool(main)
  sys.exit(0)
