"""Precomputed rewriting with an absorbing Markov chain.

`amc` (the maths: absorption probabilities, expected visits, rewrite
selection; re-exported as `selflearn.amc`), `chain` (the chain counted from
reformulation sessions), `table` (the rewrite table under guardrails).
"""
