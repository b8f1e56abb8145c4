"""Self-learning conversational AI (dialogue simulator, rephrase detection, rewrites, ranking).

Not implemented yet: this package is empty.  It may import
`common` and `schedulers`, never another method package.
"""
