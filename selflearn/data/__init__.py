"""Dialogue logs: the versioned schema, the minimal log contract, reading and writing, splits, truth readers.

Modules: `schema` (the simulator's record spec and its validation),
`contract` (the minimal per-turn contract of a team's own logs: JSONL and
Parquet readers, sessions, the validation pass), `vocab` (vocabularies
learned from a log, with an explicit unknown bucket), `logs` (streaming
reader and writer of simulated logs and their header line), `splits` (train / validation / test by
dialogue or session, in two streaming passes), `truth` (readers of the ground-truth blocks, never
model inputs).
"""
