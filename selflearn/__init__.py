"""Self-learning conversational AI: simulated dialogue logs, failure-point isolation, label generation.

See `selflearn/README.md`.  Rephrase detection and query rewriting are not
built yet.  This package may import `common` and `schedulers`, never another
method package.
"""
