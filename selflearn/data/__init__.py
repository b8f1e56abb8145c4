"""Dialogue logs: the versioned schema, reading and writing, splits, truth readers.

Modules: `schema` (the record spec and its validation), `logs` (streaming
reader and writer), `splits` (train / validation / test by dialogue),
`truth` (readers of the ground-truth blocks, never model inputs).
"""
