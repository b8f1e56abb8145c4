"""The encoded data and the dialogue model of the understanding tasks (failure points, labels).

`encode_splits(dialogues, ...)` builds the word vocabulary on the training
split and encodes all three splits (`signals.features`: observations as
inputs, truth as labels), plus frozen sentence embeddings when the turn
encoder is a pretrained one (`signals.text_features`, cached in
`cache_dir`).  `make_network` builds `networks.DialogueModel` from a
config's `model` block, `model_batch` is a split's device dict, `predict`
the heads' probabilities over a split.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from selflearn.data import splits
from selflearn.signals import features, text_features
from selflearn.understanding import networks


@dataclasses.dataclass
class Data:
  """Encoded splits plus what describes them."""

  train: features.Dataset
  val: features.Dataset
  test: features.Dataset
  vocab: features.Vocab
  values: tuple[str, ...]
  log_path: os.PathLike | str
  skipped: int
  skipped_errors: list
  text_dim: int
  recurrence: dict | None = None  # test requests seen in training (`evaluation.recurrence`), set by the runner


def encode_splits(
  dialogues: splits.Dialogues,
  *,
  vocab_size: int,
  max_turns: int,
  max_tokens: int,
  turn_encoder: str,
  cache_dir: pathlib.Path,
) -> Data:
  """Vocabulary and value table from the training split; every split encoded (see the module docstring)."""
  train_rows = dialogues.train
  vocab = features.Vocab.build(
    (t[k]["text"] for r in train_rows for t in r["turns"] for k in ("asr", "response")), max_size=vocab_size
  )
  values = features.value_vocab(train_rows)
  enc = lambda r: features.encode(r, vocab, values, max_turns=max_turns, max_tokens=max_tokens)
  parts = [enc(dialogues.train), enc(dialogues.val), enc(dialogues.test)]
  text_dim = 0
  if turn_encoder != "tokens":
    for s in parts:
      for name, texts in (("utt_emb", s.utt_texts), ("resp_emb", s.resp_texts)):
        s.inputs[name] = text_features.dialogue_embeddings(turn_encoder, texts, max_turns, cache_dir=cache_dir)
    text_dim = int(parts[0].inputs["utt_emb"].shape[-1])
  return Data(*parts, vocab, values, dialogues.log_path, dialogues.skipped, dialogues.skipped_errors, text_dim)


def model_batch(split: features.Dataset, labels: dict[str, np.ndarray] | None = None) -> dict[str, jax.Array]:
  """The device dict of a split: inputs, token masks and `y_<label>` arrays."""
  out = dict(split.inputs)
  out.update(features.token_masks(split.inputs))
  for k, v in (labels or split.labels).items():
    out[f"y_{k}"] = v
  return {k: jnp.asarray(v) for k, v in out.items()}


def make_network(config: ml_collections.ConfigDict, data: Data, heads, *, context: bool):
  """The dialogue model of a config's `model` block over `data`'s vocabulary (`context=False`: the baseline)."""
  m = config.model
  return networks.make_dialogue_model(
    turns=config.data.max_turns,
    tokens=config.data.max_tokens,
    vocab_size=data.vocab.size,
    cat_sizes=tuple(len(v) for v in features.CATEGORICAL.values()),
    num_numeric=len(features.NUMERIC),
    heads=tuple(heads),
    num_audio=features.AUDIO_SIZE if m.use_audio else 0,
    text_dim=data.text_dim,
    token_dim=m.token_dim,
    token_layers=m.token_layers,
    model_dim=m.model_dim,
    num_layers=m.num_layers,
    num_heads=m.num_heads,
    cat_dim=m.cat_dim,
    context=context,
    dropout_rate=m.dropout_rate,
  )


def predict(network, params, batch: dict, *, chunk: int = 256) -> dict[str, np.ndarray]:
  """Softmax probabilities of every head over a split, in fixed-size chunks (one compilation)."""
  n = int(batch["turn_mask"].shape[0])
  keys = [k for k in batch if not k.startswith("y_")]
  apply = jax.jit(lambda p, b: jax.tree.map(lambda x: jax.nn.softmax(x, -1), network.apply(p, b)))
  size = min(chunk, n)
  outs = []
  for start in range(0, n, size):
    idx = np.minimum(np.arange(start, start + size), n - 1)  # pad the last chunk by repetition
    part = apply(params, {k: batch[k][idx] for k in keys})
    keep = min(size, n - start)
    outs.append({k: np.asarray(v)[:keep] for k, v in part.items()})
  return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
