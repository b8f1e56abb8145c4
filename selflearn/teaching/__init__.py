"""Teachable preferences.

`preferences` (the per-user store), `turns` (teaching turns and the store
they build), `extractor` (the learned model), `extraction` (decoding and
catalogue normalisation, scores), `rules` (the regular-expression baseline).
"""
