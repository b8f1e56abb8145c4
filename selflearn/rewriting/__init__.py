"""Defect reduction by query rewriting.

`rephrase` (contextual rephrase detection), `precomputed` (absorbing-Markov-
chain rewrite tables), `online` (retrieval-and-ranking rewrites with a
global and a personal layer).  Trained rewriters share one interface
(`api`): `Rewriter.rewrite(requests) -> list[Rewrite | None]`, `save(dir)`,
`load(dir)`, `export_table(path)`; `python -m selflearn.rewrite` applies a
saved one to a JSONL file of requests.
"""

from selflearn.rewriting.api import VERSION, Request, Rewrite, Rewriter, load

__all__ = ["VERSION", "Request", "Rewrite", "Rewriter", "load"]
