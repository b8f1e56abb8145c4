"""Defect reduction by query rewriting.

`rephrase` (contextual rephrase detection), `precomputed` (absorbing-Markov-
chain rewrite tables), `online` (retrieval-and-ranking rewrites with a
global and a personal layer).
"""
