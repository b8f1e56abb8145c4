"""Inverse RL with natural-language goals (language-conditioned AIRL, goal generator, adaptation).

So far: `nlirl.envs`, the R2R-lite benchmark (procedural houses as navigation graphs, 4-7 edge expert paths
with three template instructions each, a tokenizer, `load_split` for train / val_seen / val_unseen / test, and a
pure-JAX env with R2R metrics plus a plain-Python reference).  No IRL method yet.  It may import `common` and
`schedulers`, never another method package.
"""
