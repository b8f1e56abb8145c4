"""Understanding dialogues in context: failure-point isolation and label generation.

`networks`, `losses` and `dataset` (the dialogue model, its losses, its
encoded data), `fpi` (the failure-point head and its scores), `labels` (the
label heads, decoding and scores).
"""
