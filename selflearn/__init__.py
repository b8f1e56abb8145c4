"""Self-learning conversational AI (dialogue simulator, rephrase detection, rewrites, ranking).

Placeholder package: the implementation lands with its own issue.  It may import
`common` and `schedulers`, never another method package.
"""
