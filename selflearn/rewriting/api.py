"""The `Rewriter` interface: trained rewriters as objects that rewrite batches, save and load.

`rewrite(requests) -> list[Rewrite | None]` for a batch of `Request`s
(utterance, user id, context), each answered by a `Rewrite` (the text to
send instead, its score, its source: `table`, `global` or `personal`) or
None (send the utterance as it is).  `save(dir)` writes `dir/rewriter.json`
(`{"version": VERSION, "kind": ...}` and the kind's settings), JSON for
tables and indexes and, for learned parts, arrays through
`common.checkpoint`; `load(dir)` reads any kind back.  `export_table(path)`
writes the rewriter's rules as JSON (a table rewriter: its rows; the online
rewriter: its global index).

Implementations: `selflearn.rewriting.precomputed.rewriter.TableRewriter`
(the absorbing-Markov-chain rewrite table) and
`selflearn.rewriting.online.rewriter.OnlineRewriter` (retriever + rankers,
both layers and the over-personalisation guard).

Request context keys (all optional): `timestamp` (epoch seconds or
ISO-8601; default: the end of the rewriter's training data), `intent`,
`domain`, `slots`, `asr_confidence`, `device_type`; the online rewriter
trained on simulated logs also reads `nlu_confidence`, `er_score`,
`status`.  A request whose utterance is empty is answered None.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import json
import os
import pathlib
from typing import Any, Iterable, Mapping, Optional, Sequence

VERSION = 1
MANIFEST = "rewriter.json"
SOURCES = ("table", "global", "personal")
# kind -> the module:class that loads it
KINDS = {
  "amc_table": "selflearn.rewriting.precomputed.rewriter:TableRewriter",
  "online": "selflearn.rewriting.online.rewriter:OnlineRewriter",
}


@dataclasses.dataclass(frozen=True)
class Request:
  """One request to rewrite: what the recogniser heard, who asked, and what else the log holds."""

  utterance: str
  user_id: str = ""
  context: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @classmethod
  def of(cls, x: Any) -> "Request":
    """A `Request` from a Request, a dict (`utterance`, `user_id`, `context` or the context keys inline) or a tuple."""
    if isinstance(x, Request):
      return x
    if isinstance(x, Mapping):
      ctx = dict(x.get("context") or {})
      ctx.update({k: v for k, v in x.items() if k not in ("utterance", "user_id", "context")})
      return cls(str(x.get("utterance", "")), str(x.get("user_id", "") or ""), ctx)
    if isinstance(x, (tuple, list)) and 1 <= len(x) <= 3:
      return cls(str(x[0]), str(x[1]) if len(x) > 1 else "", dict(x[2]) if len(x) > 2 else {})
    raise TypeError(f"a request is a Request, a dict or an (utterance, user_id, context) tuple, got {x!r}")


@dataclasses.dataclass(frozen=True)
class Rewrite:
  """The text to send instead of the utterance, its score (higher: surer) and where it came from."""

  text: str
  score: float
  source: str  # one of SOURCES

  def to_json(self) -> dict:
    return {"rewrite": self.text, "score": self.score, "source": self.source}


def requests_of(requests: Iterable[Any]) -> list[Request]:
  return [Request.of(r) for r in requests]


class Rewriter(abc.ABC):
  """A trained rewriter (see the module docstring)."""

  kind: str = ""

  @abc.abstractmethod
  def rewrite(self, requests: Sequence[Any]) -> list[Optional[Rewrite]]:
    """One `Rewrite` or None per request, in order."""

  @abc.abstractmethod
  def save(self, directory: str | os.PathLike) -> pathlib.Path:
    """Writes the rewriter into `directory` (created); returns it."""

  @abc.abstractmethod
  def export_table(self, path: str | os.PathLike) -> pathlib.Path:
    """Writes the rewriter's rules as JSON; returns the path."""

  @staticmethod
  def load(directory: str | os.PathLike, **kw) -> "Rewriter":
    """The rewriter saved in `directory`, of whichever kind (`selflearn.rewriting.load`)."""
    return load(directory, **kw)

  @classmethod
  @abc.abstractmethod
  def _load(cls, directory: pathlib.Path, manifest: dict, **kw) -> "Rewriter":
    """Reads a rewriter of this kind (`load` has checked the manifest)."""

  def _write_manifest(self, directory: pathlib.Path, **fields) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{MANIFEST}.{os.getpid()}"
    tmp.write_text(json.dumps({"version": VERSION, "kind": self.kind, **fields}, indent=2, sort_keys=True))
    os.replace(tmp, directory / MANIFEST)


def read_manifest(directory: str | os.PathLike) -> dict:
  """The manifest of a saved rewriter; ValueError naming what is wrong."""
  path = pathlib.Path(directory) / MANIFEST
  if not path.is_file():
    raise ValueError(f"{directory}: not a saved rewriter (no {MANIFEST})")
  try:
    manifest = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not JSON ({e.msg})") from None
  if manifest.get("version") != VERSION:
    raise ValueError(f"{path}: version {manifest.get('version')!r}; this code reads version {VERSION}")
  if manifest.get("kind") not in KINDS:
    raise ValueError(f"{path}: kind {manifest.get('kind')!r} is not one of {sorted(KINDS)}")
  return manifest


def load(directory: str | os.PathLike, **kw) -> Rewriter:
  """The rewriter saved in `directory` (any kind)."""
  manifest = read_manifest(directory)
  module, name = KINDS[manifest["kind"]].split(":")
  cls = getattr(importlib.import_module(module), name)
  return cls._load(pathlib.Path(directory), manifest, **kw)


def write_json(path: pathlib.Path, obj: Any) -> pathlib.Path:
  """Writes `obj` as JSON atomically (a temporary file renamed into place)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / f".{path.name}.{os.getpid()}"
  tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, allow_nan=False))
  os.replace(tmp, path)
  return path
