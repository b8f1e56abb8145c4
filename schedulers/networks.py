"""Networks of the schedulers binary and study: functional (init, apply) pairs.

Every factory returns a `common.encoders.Network`: `init(key)` builds the
Flax variables dict from dummy inputs and `apply(params, inputs)` runs the
module. The study's tasks (`schedulers.study.tasks`) use:

* `make_classifier`: ReLU MLP logits (digits MLP; with no hidden layer, the
  linear model of the logistic-regression control).
* `make_conv1d_classifier`: small strided 1-D CNN (MNIST-1D).
* `make_causal_lm`: causal transformer over token ids with a vocabulary head
  (character-level language model).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from common import encoders


def make_classifier(input_size: int, hidden_sizes: tuple[int, ...], num_classes: int) -> encoders.Network:
  """ReLU MLP producing class logits."""
  return encoders.make_mlp(input_size=input_size, hidden_sizes=tuple(hidden_sizes), output_size=num_classes)


def _network(module: nn.Module, *dummy_inputs: jax.Array) -> encoders.Network:
  """Wraps `module` into a `Network` whose `init` traces `dummy_inputs`."""

  def init(key: jax.Array):
    return module.init(key, *dummy_inputs)

  def apply(params, *inputs, **kwargs):
    return module.apply(params, *inputs, **kwargs)

  return encoders.Network(init=init, apply=apply)


def num_params(params) -> int:
  """Total number of scalar parameters in a pytree."""
  return int(sum(x.size for x in jax.tree.leaves(params)))


def conv1d_patches(x: jax.Array, kernel_size: int, stride: int) -> jax.Array:
  """im2col for a SAME-padded strided 1-D convolution.

  Args:
    x: `[..., length, channels]` signals.
    kernel_size: Convolution width.
    stride: Convolution stride.

  Returns:
    `[..., ceil(length / stride), kernel_size * channels]` patches, ordered
    (tap, channel) so that a Dense kernel reshaped to `[kernel_size,
    channels, features]` is the matching `nn.Conv` kernel.
  """
  length = x.shape[-2]
  out = -(-length // stride)
  pad = max((out - 1) * stride + kernel_size - length, 0)
  widths = [(0, 0)] * (x.ndim - 2) + [(pad // 2, pad - pad // 2), (0, 0)]
  x = jnp.pad(x, widths)
  taps = [x[..., j : j + (out - 1) * stride + 1 : stride, :] for j in range(kernel_size)]
  return jnp.concatenate(taps, axis=-1)


class Conv1DClassifier(nn.Module):
  """Strided 1-D CNN over single-channel signals, then a linear classifier.

  Each layer is a SAME-padded strided convolution followed by ReLU; the final
  feature map is flattened into a Dense layer giving logits. Input
  `[..., length]`, output `[..., num_classes]`. The convolutions are written
  as im2col + Dense (`conv1d_patches`): same function as `nn.Conv`, but about
  10x faster to differentiate on XLA:CPU at these sizes.

  Attributes:
    channels: Output channels of each conv layer.
    kernel_size: Width of every conv kernel.
    stride: Stride of every conv layer (downsamples the signal).
    num_classes: Number of output logits.
  """

  channels: Sequence[int]
  kernel_size: int
  stride: int
  num_classes: int

  @nn.compact
  def __call__(self, signals: jax.Array) -> jax.Array:
    x = signals[..., None]
    for i, c in enumerate(self.channels):
      x = conv1d_patches(x, self.kernel_size, self.stride)
      x = nn.relu(nn.Dense(c, name=f"conv_{i}")(x))
    x = x.reshape(x.shape[:-2] + (-1,))
    return nn.Dense(self.num_classes, name="head")(x)


def make_conv1d_classifier(
  length: int,
  num_classes: int,
  *,
  channels: Sequence[int] = (16, 32, 32),
  kernel_size: int = 5,
  stride: int = 2,
) -> encoders.Network:
  """Makes a `Conv1DClassifier`: `apply(params, x [..., length]) -> logits`."""
  module = Conv1DClassifier(channels=tuple(channels), kernel_size=kernel_size, stride=stride, num_classes=num_classes)
  return _network(module, jnp.zeros((1, length), jnp.float32))


class CausalLM(nn.Module):
  """Causal pre-LN transformer over token ids with a linear vocabulary head.

  Output position t holds the logits of token t+1 given tokens 0..t.

  Attributes:
    vocab_size: Number of distinct tokens.
    model_dim: Residual stream width.
    num_layers: Number of transformer blocks.
    num_heads: Attention heads.
    mlp_dim: Hidden width of each block's MLP.
  """

  vocab_size: int
  model_dim: int
  num_layers: int
  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    hidden, _ = encoders.TransformerEncoder(
      model_dim=self.model_dim,
      num_layers=self.num_layers,
      num_heads=self.num_heads,
      mlp_dim=self.mlp_dim,
      vocab_size=self.vocab_size,
      causal=True,
      name="encoder",
    )(tokens)
    return nn.Dense(self.vocab_size, name="head")(hidden)


def make_causal_lm(
  vocab_size: int,
  *,
  model_dim: int = 64,
  num_layers: int = 2,
  num_heads: int = 4,
  mlp_dim: int = 256,
) -> encoders.Network:
  """Makes a `CausalLM`: `apply(params, tokens [..., T]) -> logits [..., T, vocab]`.

  Parameters do not depend on the context length (sinusoidal positions).
  """
  module = CausalLM(
    vocab_size=vocab_size,
    model_dim=model_dim,
    num_layers=num_layers,
    num_heads=num_heads,
    mlp_dim=mlp_dim,
  )
  return _network(module, jnp.zeros((1, 1), jnp.int32))
