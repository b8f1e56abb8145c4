"""Loss-driven and baseline learning-rate transforms in optax form.

Public API (optax style: explicit re-exports):

* `greedy_lr` / `GreedyLRState`: GreedyLR, chained after any optimizer and
  stepped with `update(..., value=loss)`.
* `on_eval`, `observe`, `greedy_scale`: GreedyLR stepped once per evaluation
  on a validation value (out-of-band state, read back for logging).
* `learned_schedule(policy)`: a trained RL schedule policy
  (`schedulers.learned.policy.load_policy`, or `shipped_policy()`) as a
  transform chained after any optimizer, stepped with
  `update(..., value=loss)` like GreedyLR.
* `make_optimizer` / `Optimizer`: the repository's one optimizer factory,
  base optimizer + GreedyLR per step / per eval / none (`schedulers.optimizers`
  also has the config block, `from_config` and its validation, which load
  ml_collections and `common` on first use).

This library part needs only jax, optax, chex and numpy (the core install)
and imports nothing of `common` or the training stack, so it also works next
to a user's own package named `common`.  The binaries, the study and the
learned-schedule training (`schedulers.main`, `.study`, `.learned.*_train`)
use `common` and need the `train` extra.
"""

from schedulers.greedy_lr import GreedyLRState, greedy_lr
from schedulers.learned.transform import LearnedScheduleState, learned_schedule
from schedulers.optimizers import Optimizer, make_optimizer
from schedulers.per_eval import PerEvalState, greedy_scale, observe, on_eval

__all__ = [
  "GreedyLRState",
  "LearnedScheduleState",
  "Optimizer",
  "PerEvalState",
  "greedy_lr",
  "greedy_scale",
  "learned_schedule",
  "make_optimizer",
  "observe",
  "on_eval",
]
