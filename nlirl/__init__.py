"""Inverse RL with natural-language goals (language-conditioned AIRL, goal generator, adaptation).

Not implemented yet: this package is empty.  It may import
`common` and `schedulers`, never another method package.
"""
