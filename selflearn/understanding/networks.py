"""The dialogue model: turn-level encoder + dialogue-level Transformer + task heads (Flax Linen).

`make_dialogue_model(...)` returns a `common.encoders.Network`
(`init(key) -> variables`, `apply(variables, batch) -> {head: logits}`).

* **Turn encoder** (pluggable).  Always: a small word-level pre-LN
  Transformer (`common.encoders.TransformerEncoder` with a token embedding)
  over the recognised utterance and, with the same weights, over the
  response; its token outputs also feed the slot heads.  Optionally
  (`text_dim > 0`): frozen sentence embeddings of both texts, computed once
  per dataset by a pretrained encoder (`selflearn.signals.text_features`), projected
  and concatenated.  The keynote's turn encoder is a fine-tuned RoBERTa; on
  2 CPU cores fine-tuning is out of reach, so the pretrained encoder is
  frozen and the small token Transformer is the trainable part.
* **Turn features**: embeddings of the categorical features (NLU domain and
  intents, result status, device type, time of day, oven state), an MLP over
  the numerical ones (token count, ASR/NLU/ER confidences and margins, wake
  score, timing, barge-in), optionally the summary audio features.
* **Dialogue encoder**: a pre-LN Transformer over the turn vectors of the
  whole dialogue (previous and next turns), or, with `context=False` (the
  baseline), the same stack applied to each turn alone.
* **Heads**: `turn` heads give `[B, T, n]` logits, `token` heads `[B, T, L, n]`
  (the token output concatenated with its turn's contextual vector).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from common import encoders

TURN, TOKEN = "turn", "token"


class DialogueModel(nn.Module):
  """See the module docstring; `heads` is a sequence of (name, classes, level)."""

  vocab_size: int
  cat_sizes: Sequence[int]
  num_numeric: int
  heads: Sequence[tuple[str, int, str]]
  num_audio: int = 0
  text_dim: int = 0
  token_dim: int = 64
  token_layers: int = 1
  model_dim: int = 64
  num_layers: int = 2
  num_heads: int = 4
  cat_dim: int = 8
  context: bool = True
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, batch: dict, *, deterministic: bool = True) -> dict[str, jax.Array]:
    tokens = encoders.TransformerEncoder(
      model_dim=self.token_dim,
      num_layers=self.token_layers,
      num_heads=self.num_heads,
      mlp_dim=2 * self.token_dim,
      vocab_size=self.vocab_size,
      dropout_rate=self.dropout_rate,
      name="token_encoder",
    )
    utt_tokens, utt = tokens(batch["utt_ids"], batch["utt_mask"], deterministic=deterministic)
    _, resp = tokens(batch["resp_ids"], batch["resp_mask"], deterministic=deterministic)
    parts = [utt, resp, utt * resp]
    if self.text_dim:
      proj = nn.Dense(self.token_dim, name="text_projection")
      u, r = proj(batch["utt_emb"]), proj(batch["resp_emb"])
      parts += [u, r, u * r]
    cat = batch["cat"]
    for i, n in enumerate(self.cat_sizes):
      parts.append(nn.Embed(n, self.cat_dim, name=f"cat_{i}")(cat[..., i]))
    parts.append(nn.gelu(nn.Dense(2 * self.cat_dim, name="numeric")(batch["num"])))
    if self.num_audio:
      parts.append(nn.gelu(nn.Dense(self.cat_dim, name="audio")(batch["audio"])))
    x = nn.gelu(nn.Dense(self.model_dim, name="turn_projection")(jnp.concatenate(parts, axis=-1)))
    mask = batch["turn_mask"]
    dialogue = encoders.TransformerEncoder(
      model_dim=self.model_dim,
      num_layers=self.num_layers,
      num_heads=self.num_heads,
      mlp_dim=2 * self.model_dim,
      dropout_rate=self.dropout_rate,
      name="dialogue_encoder",
    )
    if self.context:
      h, _ = dialogue(x, mask, deterministic=deterministic)
    else:  # the same stack on each turn alone: no information flows between turns
      h, _ = dialogue(x[..., None, :], mask[..., None], deterministic=deterministic)
      h = h[..., 0, :]
    out = {}
    for name, classes, level in self.heads:
      if level == TURN:
        out[name] = nn.Dense(classes, name=f"head_{name}")(h)
      else:
        length = utt_tokens.shape[-2]
        ctx = jnp.broadcast_to(h[..., None, :], h.shape[:-1] + (length, h.shape[-1]))
        z = nn.gelu(nn.Dense(self.model_dim, name=f"head_{name}_hidden")(jnp.concatenate([utt_tokens, ctx], -1)))
        out[name] = nn.Dense(classes, name=f"head_{name}")(z)
    return out


def dummy_batch(*, turns: int, tokens: int, num_cat: int, num_numeric: int, num_audio: int, text_dim: int) -> dict:
  """A one-dialogue batch of the model's input shapes (for `init`)."""
  b = {
    "utt_ids": jnp.ones((1, turns, tokens), jnp.int32),
    "resp_ids": jnp.ones((1, turns, tokens), jnp.int32),
    "utt_mask": jnp.ones((1, turns, tokens), bool),
    "resp_mask": jnp.ones((1, turns, tokens), bool),
    "cat": jnp.zeros((1, turns, num_cat), jnp.int32),
    "num": jnp.zeros((1, turns, num_numeric), jnp.float32),
    "audio": jnp.zeros((1, turns, max(num_audio, 1)), jnp.float32),
    "turn_mask": jnp.ones((1, turns), bool),
  }
  if text_dim:
    b["utt_emb"] = jnp.zeros((1, turns, text_dim), jnp.float32)
    b["resp_emb"] = jnp.zeros((1, turns, text_dim), jnp.float32)
  return b


def make_dialogue_model(*, turns: int, tokens: int, **kwargs) -> encoders.Network:
  """A `DialogueModel` as a `Network`; `kwargs` are its attributes."""
  module = DialogueModel(**kwargs)
  dummy = dummy_batch(
    turns=turns,
    tokens=tokens,
    num_cat=len(module.cat_sizes),
    num_numeric=module.num_numeric,
    num_audio=module.num_audio,
    text_dim=module.text_dim,
  )

  def init(key):
    return module.init(key, dummy)

  def apply(params, batch, **kw):
    return module.apply(params, batch, **kw)

  return encoders.Network(init=init, apply=apply)
