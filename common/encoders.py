"""Flax Linen encoders behind a functional `(init, apply)` boundary.

Shared network building blocks for the RL methods in this repository:

* `MLP` / `make_mlp`: TD3 actors and critics, reward and value heads.
* `GRUEncoder` / `make_gru_encoder`: masked recurrent context encoder (the task
  context of Meta-Q-Learning).
* `TransformerEncoder` / `make_transformer_encoder`: pre-LayerNorm transformer
  over feature vectors or token ids (language/goal encoders, optionally causal
  for character-level language models).

Every `make_*` factory returns a `Network` (in the style of brax's
`FeedForwardNetwork`): `init(key)` builds the variables from dummy inputs of
the explicit sizes given to the factory, and `apply(params, *inputs, **kw)` is
`module.apply`, so keyword arguments such as `rngs={'dropout': key}` pass
straight through. `params` is the full Flax variables dict
(`{'params': ...}`).

Padding convention: masks are `1`/`True` for valid steps and `0`/`False` for
padding. Both sequence encoders give, at valid positions, exactly what they
would give on the sequence with the padded steps removed, wherever the padding
is (left, right or interleaved).
"""

import dataclasses
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PRNGKey = jax.Array
Params = Any
Initializer = Callable[..., jax.Array]
Dtype = Any


@dataclasses.dataclass(frozen=True)
class Network:
  """A pure-functional network: `init(key) -> params`, `apply(params, ...)`."""

  init: Callable[[PRNGKey], Params]
  apply: Callable[..., Any]


def _network(module: nn.Module, *dummy_inputs: jax.Array) -> Network:
  """Wraps `module` into a `Network` whose `init` uses `dummy_inputs`."""

  def init(key: PRNGKey) -> Params:
    return module.init(key, *dummy_inputs)

  def apply(params: Params, *inputs, **kwargs) -> Any:
    return module.apply(params, *inputs, **kwargs)

  return Network(init=init, apply=apply)


# ---------------------------------------------------------------------------
# MLP.
# ---------------------------------------------------------------------------


class MLP(nn.Module):
  """Multi-layer perceptron.

  Each layer is `Dense -> [LayerNorm] -> activation`; the last layer is linear
  unless `activate_final`. Several inputs are concatenated along the last axis,
  so a critic is called as `mlp(obs, action)`. Leading axes are batch axes.

  Attributes:
    layer_sizes: Output size of each Dense layer (the last is the output).
    activation: Nonlinearity applied after hidden layers.
    layer_norm: Whether to apply LayerNorm before each activation.
    activate_final: Whether the last layer gets (LayerNorm and) activation.
    kernel_init: Kernel initializer of every Dense layer.
    bias_init: Bias initializer of every Dense layer.
    dtype: Computation dtype (None: inferred from inputs and params).
    param_dtype: Parameter dtype.
  """

  layer_sizes: Sequence[int]
  activation: Callable[[jax.Array], jax.Array] = nn.relu
  layer_norm: bool = False
  activate_final: bool = False
  kernel_init: Initializer = nn.initializers.lecun_uniform()
  bias_init: Initializer = nn.initializers.zeros_init()
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, *inputs: jax.Array) -> jax.Array:
    if not inputs:
      raise ValueError("MLP needs at least one input.")
    x = inputs[0] if len(inputs) == 1 else jnp.concatenate(inputs, axis=-1)
    num_layers = len(self.layer_sizes)
    for i, size in enumerate(self.layer_sizes):
      x = nn.Dense(
        size,
        kernel_init=self.kernel_init,
        bias_init=self.bias_init,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=f"hidden_{i}",
      )(x)
      if i < num_layers - 1 or self.activate_final:
        if self.layer_norm:
          x = nn.LayerNorm(
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=f"layer_norm_{i}",
          )(x)
        x = self.activation(x)
    return x


def make_mlp(
  input_size: int,
  hidden_sizes: Sequence[int],
  output_size: int,
  *,
  activation: Callable[[jax.Array], jax.Array] = nn.relu,
  layer_norm: bool = False,
  activate_final: bool = False,
  kernel_init: Initializer = nn.initializers.lecun_uniform(),
  bias_init: Initializer = nn.initializers.zeros_init(),
  dtype: Optional[Dtype] = None,
  param_dtype: Dtype = jnp.float32,
) -> Network:
  """Makes an `MLP` network `[..., input_size] -> [..., output_size]`.

  `apply(params, *xs)` concatenates `xs` on the last axis; their feature sizes
  must sum to `input_size`.

  Args:
    input_size: Total input feature size.
    hidden_sizes: Sizes of the hidden layers.
    output_size: Output feature size.
    activation: Hidden nonlinearity.
    layer_norm: LayerNorm before each activation.
    activate_final: Also normalise/activate the output layer.
    kernel_init: Dense kernel initializer.
    bias_init: Dense bias initializer.
    dtype: Computation dtype.
    param_dtype: Parameter dtype.

  Returns:
    A `Network`.
  """
  module = MLP(
    layer_sizes=tuple(hidden_sizes) + (output_size,),
    activation=activation,
    layer_norm=layer_norm,
    activate_final=activate_final,
    kernel_init=kernel_init,
    bias_init=bias_init,
    dtype=dtype,
    param_dtype=param_dtype,
  )
  return _network(module, jnp.zeros((1, input_size), param_dtype))


# ---------------------------------------------------------------------------
# GRU.
# ---------------------------------------------------------------------------


def _check_mask(mask: Optional[jax.Array], shape: tuple[int, ...]) -> jax.Array:
  """Returns a boolean mask of `shape` (all valid when `mask` is None)."""
  if mask is None:
    return jnp.ones(shape, jnp.bool_)
  mask = jnp.asarray(mask)
  if mask.shape != shape:
    raise ValueError(f"mask shape {mask.shape} != expected {shape}.")
  return mask.astype(jnp.bool_)


class _MaskedGRUStep(nn.Module):
  """One GRU step that keeps the previous state where `mask` is False."""

  hidden_size: int
  kernel_init: Initializer
  recurrent_kernel_init: Initializer
  bias_init: Initializer
  dtype: Optional[Dtype]
  param_dtype: Dtype

  @nn.compact
  def __call__(self, h, xs):
    x, m = xs
    new_h, _ = nn.GRUCell(
      features=self.hidden_size,
      kernel_init=self.kernel_init,
      recurrent_kernel_init=self.recurrent_kernel_init,
      bias_init=self.bias_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="cell",
    )(h, x)
    h = jnp.where(m[..., None], new_h.astype(h.dtype), h)
    return h, h


class GRUEncoder(nn.Module):
  """Masked GRU that encodes a sequence into its final hidden state.

  Axis convention: `inputs` is `[..., T, F]` and `mask` is `[..., T]`; time is
  the second-to-last input axis and any leading axes are batch axes (so both
  `[T, F]` and `[B, T, F]` work). The recurrence is an `nn.scan` over
  `nn.GRUCell` (equations in `flax.linen.GRUCell`). A step with `mask == 0`
  leaves the hidden state unchanged, so padding anywhere in the sequence
  yields the same final state as the sequence with those steps removed.

  Attributes:
    hidden_size: GRU state size.
    kernel_init: Input kernel initializer.
    recurrent_kernel_init: Recurrent kernel initializer.
    bias_init: Bias initializer.
    dtype: Computation dtype (the carried state stays in `param_dtype`).
    param_dtype: Parameter and state dtype.
  """

  hidden_size: int
  kernel_init: Initializer = nn.initializers.lecun_normal()
  recurrent_kernel_init: Initializer = nn.initializers.orthogonal()
  bias_init: Initializer = nn.initializers.zeros_init()
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self,
    inputs: jax.Array,
    mask: Optional[jax.Array] = None,
    *,
    initial_state: Optional[jax.Array] = None,
    return_all_states: bool = False,
  ):
    """Runs the GRU over time.

    Args:
      inputs: `[..., T, F]` input sequence.
      mask: `[..., T]` validity mask (None: all steps valid).
      initial_state: `[..., hidden_size]` initial state (None: zeros).
      return_all_states: Also return the state after every step.

    Returns:
      The final state `[..., hidden_size]`, or `(final, states)` with
      `states` of shape `[..., T, hidden_size]` when `return_all_states`
      (at a padded step, `states` repeats the previous state).
    """
    if inputs.ndim < 2:
      raise ValueError(f"inputs must be [..., T, F], got {inputs.shape}.")
    mask = _check_mask(mask, inputs.shape[:-1])
    batch_shape = inputs.shape[:-2]
    if initial_state is None:
      h0 = jnp.zeros(batch_shape + (self.hidden_size,), self.param_dtype)
    else:
      h0 = jnp.broadcast_to(
        jnp.asarray(initial_state, self.param_dtype),
        batch_shape + (self.hidden_size,),
      )
    scan = nn.scan(
      _MaskedGRUStep,
      variable_broadcast="params",
      split_rngs={"params": False},
      in_axes=0,
      out_axes=0,
    )
    step = scan(
      hidden_size=self.hidden_size,
      kernel_init=self.kernel_init,
      recurrent_kernel_init=self.recurrent_kernel_init,
      bias_init=self.bias_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="gru",
    )
    xs = (jnp.moveaxis(inputs, -2, 0), jnp.moveaxis(mask, -1, 0))
    final, states = step(h0, xs)
    if return_all_states:
      return final, jnp.moveaxis(states, 0, -2)
    return final


def make_gru_encoder(
  input_size: int,
  hidden_size: int,
  *,
  kernel_init: Initializer = nn.initializers.lecun_normal(),
  recurrent_kernel_init: Initializer = nn.initializers.orthogonal(),
  bias_init: Initializer = nn.initializers.zeros_init(),
  dtype: Optional[Dtype] = None,
  param_dtype: Dtype = jnp.float32,
) -> Network:
  """Makes a `GRUEncoder` network.

  `apply(params, inputs [..., T, input_size], mask [..., T] = None, *,
  initial_state=None, return_all_states=False)`; see `GRUEncoder.__call__`.
  Parameters do not depend on `T`.

  Args:
    input_size: Per-step input feature size.
    hidden_size: GRU state size.
    kernel_init: Input kernel initializer.
    recurrent_kernel_init: Recurrent kernel initializer.
    bias_init: Bias initializer.
    dtype: Computation dtype.
    param_dtype: Parameter and state dtype.

  Returns:
    A `Network`.
  """
  module = GRUEncoder(
    hidden_size=hidden_size,
    kernel_init=kernel_init,
    recurrent_kernel_init=recurrent_kernel_init,
    bias_init=bias_init,
    dtype=dtype,
    param_dtype=param_dtype,
  )
  return _network(module, jnp.zeros((1, input_size), param_dtype), jnp.ones((1,), bool))


# ---------------------------------------------------------------------------
# Transformer.
# ---------------------------------------------------------------------------


def sinusoidal_embedding(positions: jax.Array, dim: int) -> jax.Array:
  """Sinusoidal position encoding (Vaswani et al., 2017).

  Args:
    positions: Integer or float positions of any shape `S`.
    dim: Encoding size.

  Returns:
    `[*S, dim]` float32 array; even channels are sines, odd ones cosines.
  """
  half = (dim + 1) // 2
  inv_freq = np.exp(-np.log(10000.0) * (2.0 * np.arange(half) / dim))
  angles = positions.astype(jnp.float32)[..., None] * inv_freq.astype(np.float32)
  enc = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  return enc.reshape(positions.shape + (2 * half,))[..., :dim]


class _TransformerBlock(nn.Module):
  """Pre-LayerNorm transformer block: x + MHA(LN(x)); x + MLP(LN(x))."""

  num_heads: int
  model_dim: int
  mlp_dim: int
  dropout_rate: float
  attention_dropout_rate: float
  activation: Callable[[jax.Array], jax.Array]
  dtype: Optional[Dtype]
  param_dtype: Dtype

  @nn.compact
  def __call__(self, x, attention_mask, deterministic):
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    ln = lambda name: nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    y = ln("ln_attention")(x)
    y = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads,
      qkv_features=self.model_dim,
      out_features=self.model_dim,
      dropout_rate=self.attention_dropout_rate,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="attention",
    )(y, mask=attention_mask, deterministic=deterministic)
    y = nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
    x = x + y
    y = ln("ln_mlp")(x)
    y = self.activation(dense(self.mlp_dim, "mlp_in")(y))
    y = nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
    y = dense(self.model_dim, "mlp_out")(y)
    y = nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
    return x + y


class TransformerEncoder(nn.Module):
  """Pre-LayerNorm transformer encoder with padding (and causal) masking.

  Inputs are either float features `[..., T, F]` (projected to `model_dim`
  by a Dense layer) or, when `vocab_size` is set, int token ids `[..., T]`
  (embedded and scaled by `sqrt(model_dim)`). Leading axes are batch axes.

  Positions use fixed sinusoidal encodings (no parameters, any length). A
  token's position is the number of valid tokens before it, so with key
  masking the outputs at valid positions equal those of the unpadded
  sequence wherever the padding is. Padded keys get exactly zero attention
  weight; with `causal=True` position t also ignores keys after t.

  Attributes:
    model_dim: Residual stream width.
    num_layers: Number of transformer blocks.
    num_heads: Attention heads (must divide `model_dim`).
    mlp_dim: Hidden size of each block's MLP.
    vocab_size: If set, inputs are token ids in `[0, vocab_size)`.
    dropout_rate: Dropout on embeddings and residual branches.
    attention_dropout_rate: Dropout on attention weights.
    causal: Whether to apply a causal (autoregressive) mask.
    activation: MLP nonlinearity.
    dtype: Computation dtype.
    param_dtype: Parameter dtype.
  """

  model_dim: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  vocab_size: Optional[int] = None
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  causal: bool = False
  activation: Callable[[jax.Array], jax.Array] = nn.gelu
  dtype: Optional[Dtype] = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self,
    inputs: jax.Array,
    mask: Optional[jax.Array] = None,
    *,
    deterministic: bool = True,
  ) -> tuple[jax.Array, jax.Array]:
    """Encodes a (padded) sequence.

    Args:
      inputs: `[..., T]` int token ids if `vocab_size` is set, else
        `[..., T, F]` features.
      mask: `[..., T]` validity mask (None: all valid).
      deterministic: Disable dropout. When False, pass
        `rngs={'dropout': key}` to `apply`.

    Returns:
      `(outputs, pooled)`: `outputs` `[..., T, model_dim]` after the final
      LayerNorm, zeroed at padded positions; `pooled` `[..., model_dim]` is
      the mean of `outputs` over valid positions (zeros if none is valid).
    """
    if self.model_dim % self.num_heads:
      raise ValueError(f"num_heads={self.num_heads} must divide model_dim={self.model_dim}.")
    if self.vocab_size is not None:
      if not jnp.issubdtype(inputs.dtype, jnp.integer):
        raise ValueError("With vocab_size set, inputs must be int token ids.")
      x = nn.Embed(
        self.vocab_size,
        self.model_dim,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name="token_embedding",
      )(inputs)
      x = x * (self.model_dim**0.5)
    else:
      if inputs.ndim < 2:
        raise ValueError(f"inputs must be [..., T, F], got {inputs.shape}.")
      x = nn.Dense(
        self.model_dim,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name="input_projection",
      )(inputs)
    mask = _check_mask(mask, x.shape[:-1])
    length = x.shape[-2]

    positions = jnp.maximum(jnp.cumsum(mask, axis=-1) - 1, 0)
    x = x + sinusoidal_embedding(positions, self.model_dim).astype(x.dtype)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)

    # [..., 1 (heads), T (queries), T (keys)].
    attention_mask = mask[..., None, None, :]
    if self.causal:
      causal = jnp.tril(jnp.ones((length, length), jnp.bool_))
      attention_mask = attention_mask & causal
    else:
      attention_mask = jnp.broadcast_to(attention_mask, mask.shape[:-1] + (1, length, length))

    for i in range(self.num_layers):
      x = _TransformerBlock(
        num_heads=self.num_heads,
        model_dim=self.model_dim,
        mlp_dim=self.mlp_dim,
        dropout_rate=self.dropout_rate,
        attention_dropout_rate=self.attention_dropout_rate,
        activation=self.activation,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=f"block_{i}",
      )(x, attention_mask, deterministic)
    x = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="ln_final")(x)

    weights = mask.astype(x.dtype)[..., None]
    outputs = x * weights
    count = jnp.maximum(jnp.sum(weights, axis=-2), 1.0)
    pooled = jnp.sum(outputs, axis=-2) / count
    return outputs, pooled


def make_transformer_encoder(
  *,
  model_dim: int,
  num_layers: int,
  num_heads: int,
  mlp_dim: int,
  input_size: Optional[int] = None,
  vocab_size: Optional[int] = None,
  dropout_rate: float = 0.0,
  attention_dropout_rate: float = 0.0,
  causal: bool = False,
  activation: Callable[[jax.Array], jax.Array] = nn.gelu,
  dtype: Optional[Dtype] = None,
  param_dtype: Dtype = jnp.float32,
) -> Network:
  """Makes a `TransformerEncoder` network.

  Give exactly one of `input_size` (float features `[..., T, input_size]`)
  or `vocab_size` (int token ids `[..., T]`). `apply(params, inputs,
  mask=None, *, deterministic=True, rngs=None)` returns `(outputs, pooled)`;
  see `TransformerEncoder.__call__`. Parameters do not depend on `T`.

  Args:
    model_dim: Residual stream width.
    num_layers: Number of blocks.
    num_heads: Attention heads (must divide `model_dim`).
    mlp_dim: Hidden size of each block's MLP.
    input_size: Feature size of float inputs.
    vocab_size: Vocabulary size of token inputs.
    dropout_rate: Dropout on embeddings and residual branches.
    attention_dropout_rate: Dropout on attention weights.
    causal: Apply a causal mask (for autoregressive models).
    activation: MLP nonlinearity.
    dtype: Computation dtype.
    param_dtype: Parameter dtype.

  Returns:
    A `Network`.
  """
  if (input_size is None) == (vocab_size is None):
    raise ValueError("Give exactly one of input_size and vocab_size.")
  if model_dim % num_heads:
    raise ValueError(f"num_heads={num_heads} must divide model_dim={model_dim}.")
  module = TransformerEncoder(
    model_dim=model_dim,
    num_layers=num_layers,
    num_heads=num_heads,
    mlp_dim=mlp_dim,
    vocab_size=vocab_size,
    dropout_rate=dropout_rate,
    attention_dropout_rate=attention_dropout_rate,
    causal=causal,
    activation=activation,
    dtype=dtype,
    param_dtype=param_dtype,
  )
  if vocab_size is not None:
    dummy = jnp.zeros((1,), jnp.int32)
  else:
    dummy = jnp.zeros((1, input_size), param_dtype)
  return _network(module, dummy, jnp.ones((1,), bool))
