"""The settings (objective class x trainer) and GreedyLR variants compared at equal budget.

A setting is one committed configuration of one binary; a variant sets the
GreedyLR mode and settings of the optimizer blocks that train the setting's
non-stationary networks (everything else stays at the configuration's value,
so the comparison is paired: same seeds, same budget, only the rate control
changes).  Binaries are named by module and run in a subprocess, so
`schedulers` imports none of the methods.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from schedulers import optimizers

# Progress-signal settings for a validation loss stepped once per epoch (the digits binary's own
# `per_eval` variant: few decisions, so no smoothing and a short patience).
EPOCH_GREEDY = {**optimizers.LOSS_GREEDY, "patience": 2, "smooth": False}


@dataclasses.dataclass(frozen=True)
class Variant:
  """How the learning rate is controlled: a GreedyLR mode, its settings, and extra config fields."""

  greedy_mode: str
  greedy: Mapping[str, Any]
  meaning: str
  extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


VARIANTS = {
  "constant": Variant("none", optimizers.LOSS_GREEDY, "constant rate (the original papers' setting)"),
  "per_step_loss": Variant(
    "per_step", optimizers.LOSS_GREEDY, "GreedyLR per step on each network's raw loss (the old default)"
  ),
  "per_eval_progress": Variant(
    "per_eval",
    optimizers.PROGRESS_GREEDY,
    "GreedyLR once per iteration on a progress signal (-return, -rollout success), scale in [0.3, 1]",
  ),
  "per_step_relative_td": Variant(
    "per_step",
    optimizers.LOSS_GREEDY,
    "GreedyLR per step on the critic's relative TD error td_loss / (2 mean y^2) (scale-free)",
    extra={"td3.greedy_signal": "relative_td"},
  ),
  "per_eval_val_loss": Variant("per_eval", EPOCH_GREEDY, "GreedyLR once per epoch on the validation loss"),
}


@dataclasses.dataclass(frozen=True)
class Setting:
  """One configuration of one binary, and the optimizer blocks a variant changes.

  Attributes:
    objective: the objective class the setting measures (`optimizers.OBJECTIVES`).
    binary: module run with `python -m`.
    config: `--config` value.
    overrides: fixed `--config.<field>=<value>` of every cell (the budget).
    blocks: optimizer blocks (`schedulers.optimizers.optimizer_config`) a variant sets; '' is the
      digits binary's flat layout (`greedy_mode`, `greedy.*` at the top level).
    variants: the variants compared (the first is the reference, the constant rate).
    seed_field: the config field of the run seed; None: seeds are vmapped inside one run
      (`num_seeds`), so one cell holds every seed.
    measure: the `readers` function that turns a finished workdir into per-seed numbers.
    done_file: the file a finished run leaves in its workdir.
    keep: the files of a finished cell copied into the results (what `measure` reads, and the config),
      so the tables rebuild from the repository without the workdirs.
  """

  objective: str
  binary: str
  config: str
  overrides: Mapping[str, Any]
  blocks: tuple[str, ...]
  variants: tuple[str, ...]
  measure: str
  done_file: str = "results.json"
  seed_field: str | None = "seed"
  keep: tuple[str, ...] = ("results.json", "metrics.jsonl", "config.json")


SETTINGS = {
  "mql-point-robot": Setting(
    objective="td",
    binary="mql.main",
    config="mql/configs/default.py:point-robot",
    overrides={"eval_every": 300},  # the committed CPU budget (96k env steps); one evaluation, at the end
    blocks=("optimizer",),
    variants=("constant", "per_step_loss", "per_eval_progress", "per_step_relative_td"),
    measure="mql",
  ),
  "nlirl-airl": Setting(
    objective="adversarial",
    binary="nlirl.main",
    config="nlirl/configs/default.py:airl",
    # The default config (sizes, all evaluation paths) at the committed runs' 400 iterations.
    overrides={"num_iterations": 400, "eval_every": 100, "num_seeds": 5},
    blocks=("policy_optimizer", "critic_optimizer", "reward_optimizer"),
    variants=("constant", "per_eval_progress", "per_step_loss"),
    measure="nlirl",
    seed_field=None,
    keep=("results.json", "config.json"),
  ),
  "nlirl-bc": Setting(
    objective="supervised",
    binary="nlirl.main",
    config="nlirl/configs/default.py:bc",
    overrides={"num_iterations": 400, "eval_every": 100, "num_seeds": 5},
    blocks=("policy_optimizer",),
    variants=("constant", "per_step_loss"),  # BC has no rollouts, so no progress signal
    measure="nlirl",
    seed_field=None,
    keep=("results.json", "config.json"),
  ),
  "ppo-dnn": Setting(
    objective="policy_gradient",
    binary="schedulers.learned.dnn_main",
    config="schedulers/learned/configs/dnn.py",
    # The committed 200-iteration agent; the held-out evaluation cut to 8 runs and no grid search.
    overrides={"eval.num_seeds": 8, "eval.grid_multipliers": (1.0,), "eval.grid_families": ("constant",)},
    blocks=("agent_optimizer",),
    variants=("constant", "per_step_loss", "per_eval_progress"),
    measure="ppo",
  ),
  "digits": Setting(
    objective="supervised",
    binary="schedulers.main",
    config="schedulers/configs/default.py",
    overrides={},
    blocks=("",),
    variants=("constant", "per_step_loss", "per_eval_val_loss"),
    measure="digits",
    done_file="final_metrics.json",
    keep=("final_metrics.json", "metrics.jsonl", "config.json"),
  ),
}


def _flag(field: str, value: Any) -> str:
  if isinstance(value, tuple):
    value = "(" + ",".join(repr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return f"--config.{field}={value}"


def command(setting: Setting, variant: str, seed: int, workdir: str, python: str) -> list[str]:
  """The command line of one cell."""
  v = VARIANTS[variant]
  argv = [python, "-m", setting.binary, f"--config={setting.config}", f"--workdir={workdir}"]
  fields: dict[str, Any] = dict(setting.overrides)
  if setting.seed_field is not None:
    fields[setting.seed_field] = seed
  for block in setting.blocks:
    prefix = f"{block}." if block else ""
    fields[f"{prefix}greedy_mode"] = v.greedy_mode
    for key, value in v.greedy.items():
      fields[f"{prefix}greedy.{key}"] = value
  fields.update(v.extra)
  return argv + [_flag(k, val) for k, val in fields.items()]
