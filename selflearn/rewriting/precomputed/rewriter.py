"""The AMC rewrite table as a `Rewriter`: a recognised text's chain state -> its rewrite.

Ponnusamy et al., "Feedback-Based Self-Learning in Large-Scale
Conversational AI Agents", AAAI-20 (IAAI), arXiv:1911.02557: the table is
precomputed offline (`table.rewrite_table`) and applied by lookup.  A
request whose normalised utterance is a source state gets the row's
rewrite, scored by the rewrite state's success absorption B[j, success]
(`source="table"`); any other request passes through.  Saved as
`rewriter.json` (version, kind, states) and `table.json` (the rows).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping, Optional, Sequence

from selflearn.rewriting import api
from selflearn.rewriting.precomputed import chain as chain_lib

TABLE = "table.json"


class TableRewriter(api.Rewriter):
  """`rows`: `table.rewrite_table`'s rows; `states="interpretation"` needs the `interpret` function."""

  kind = "amc_table"

  def __init__(
    self, rows: Sequence[Mapping[str, Any]], *, states: str = "text", interpret: Optional[chain_lib.Interpret] = None
  ):
    if states not in chain_lib.STATES:
      raise ValueError(f"states must be one of {chain_lib.STATES}, got {states!r}")
    if states == "interpretation" and interpret is None:
      raise ValueError('a table over states="interpretation" needs the `interpret` function (text -> reading)')
    self.rows = [dict(r) for r in rows]
    self.states = states
    self.interpret = interpret
    self._by_source = {r["source"]: r for r in self.rows}

  def rewrite(self, requests: Sequence[Any]) -> list[Optional[api.Rewrite]]:
    out: list[Optional[api.Rewrite]] = []
    for r in api.requests_of(requests):
      text = chain_lib.normalise(r.utterance)
      row = self._by_source.get(chain_lib.state_key(text, self.states, self.interpret)) if text else None
      if row is None or row["rewrite"] == text:
        out.append(None)
      else:
        out.append(api.Rewrite(row["rewrite"], float(row["rewrite_success"]), "table"))
    return out

  def save(self, directory: str | os.PathLike) -> pathlib.Path:
    directory = pathlib.Path(directory)
    api.write_json(directory / TABLE, self.rows)
    self._write_manifest(directory, states=self.states, rules=len(self.rows), table=TABLE)
    return directory

  def export_table(self, path: str | os.PathLike) -> pathlib.Path:
    return api.write_json(pathlib.Path(path), self.rows)

  @classmethod
  def _load(cls, directory: pathlib.Path, manifest: dict, **kw) -> "TableRewriter":
    rows = json.loads((directory / manifest.get("table", TABLE)).read_text())
    return cls(rows, states=manifest["states"], interpret=kw.get("interpret"))
