"""Inverse RL with natural-language goals (language-conditioned AIRL, goal generator, adaptation).

Placeholder package: the implementation lands with its own issue.  It may import
`common` and `schedulers`, never another method package.
"""
