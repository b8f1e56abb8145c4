"""Contextual rephrase detection as span prediction.

`examples` (the inputs and span targets), `networks` (span and pairwise
models, losses, decoding), `detector` (training, decisions, baselines,
`predict_pairs`), `scores`.
"""
