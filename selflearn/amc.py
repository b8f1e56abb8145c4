"""`selflearn.amc`: the absorbing-Markov-chain solver under its published name.

The implementation lives in `selflearn.rewriting.precomputed.amc`; this
module re-exports its public functions so that `selflearn.amc.
absorption_probabilities(Q, R)` keeps working.
"""

from selflearn.rewriting.precomputed.amc import (
  METHODS,
  absorption_probabilities,
  cannot_absorb,
  expected_steps,
  select_rewrites,
  transition_matrices,
  validate_chain,
  visits,
)

__all__ = [
  "METHODS",
  "absorption_probabilities",
  "cannot_absorb",
  "expected_steps",
  "select_rewrites",
  "transition_matrices",
  "validate_chain",
  "visits",
]
