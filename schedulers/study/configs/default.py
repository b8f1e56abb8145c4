"""Config of `schedulers.study`: the fair GreedyLR benchmark study.

Variants: `--config=schedulers.study.configs.default:<variant>`, see `VARIANTS`.
"""

import ml_collections

VARIANTS = {
  "": "the full study: every task, optimizer row and arm (hours on 2 cores)",
  "smoke": "one tiny task, two rows, four arms (under a minute)",
}


def _grid(low_exp: float, n: int = 8) -> tuple[float, ...]:
  """n learning rates, a factor sqrt(10) apart, from 10**low_exp."""
  return tuple(float(f"{10 ** (low_exp + 0.5 * i):.6g}") for i in range(n))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.tasks = (  # cheapest first; T3 (char_lm) is most of the cost
    "logreg_breast_cancer",
    "nmf_synthetic",
    "digits_mlp",
    "nmf_digits",
    "mnist1d_cnn",
    "char_lm",
  )
  config.size = "full"  # task budgets: 'full' or 'smoke'
  config.optimizers = ("sgd", "momentum", "adamw")
  config.arms = ()  # empty: every arm of each row (schedulers.study.arms.make_arms)

  # Equal tuning: the same log grid for every arm of a row, chosen by mean
  # final validation loss on tuning seeds disjoint from the evaluation seeds.
  config.lr_grid = ml_collections.ConfigDict()
  config.lr_grid.sgd = _grid(-3.0)  # 1e-3 .. 3.16
  config.lr_grid.momentum = _grid(-3.5)  # 3.16e-4 .. 1
  config.lr_grid.adamw = _grid(-4.5)  # 3.16e-5 .. 0.1
  config.tuning_seeds = (1000, 1001)  # seeds that choose the learning rate
  config.eval_seeds = tuple(range(10))  # paired seeds of the reported runs
  config.char_lm_eval_seeds = tuple(range(5))  # T3 is the costly task
  config.pairs_per_call = 16  # (lr, seed) runs vmapped in one compiled call
  config.char_lm_pairs_per_call = 8  # less padding waste with 5 eval seeds

  # Cell classification (see schedulers/README.md): delta = max(rel * mean
  # baseline loss, k_std * baseline seed std), one-sided 95% paired t bounds.
  config.delta_rel = 0.01  # relative part of the equivalence margin delta
  config.delta_k_std = 1.0  # seed-std multiple in delta
  config.sensitivity_delta_rels = (0.005, 0.01, 0.02)  # delta_rel values of the sensitivity table
  config.absolute_margin = 0.1  # the paper's "no significant difference"
  config.confidence = 0.95  # level of the paired bounds and Clopper-Pearson CIs

  if arg == "smoke":
    config.tasks = ("logreg_breast_cancer",)
    config.size = "smoke"
    config.optimizers = ("sgd", "adamw")
    config.arms = ("constant", "cosine", "greedy_step", "greedy_eval")  # every arm: tests/schedulers/study
    config.lr_grid.sgd = (0.03, 0.3)
    config.lr_grid.adamw = (0.003, 0.03)
    config.tuning_seeds = (1000,)
    config.eval_seeds = (0, 1, 2)
    config.char_lm_eval_seeds = (0, 1, 2)
    config.pairs_per_call = 4
    config.char_lm_pairs_per_call = 4
  elif arg not in (None, ""):
    raise ValueError(f"unknown config variant {arg!r}.")
  return config
