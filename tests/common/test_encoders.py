"""Tests for common/encoders.py: shapes, transforms, NumPy references, masking.

Inputs are NumPy arrays and init/apply are jitted (or skipped via eval_shape),
so each test compiles a few programs instead of compiling op by op.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import encoders

ATOL = 1e-5
RTOL = 1e-5
_STATIC = ("return_all_states", "deterministic")


def _rng(seed):
  return np.random.default_rng(seed)


def _normal(seed, shape, scale=1.0):
  return (scale * _rng(seed).standard_normal(shape)).astype(np.float32)


def _build(net, seed=0, scale=0.3):
  """Returns (jitted apply, params with noise on every leaf)."""
  params = jax.jit(net.init)(jax.random.key(seed))
  # Noise exercises zero-initialised biases and unit LayerNorm scales.
  rng = _rng(seed + 100)
  params = jax.tree.map(
    lambda leaf: np.asarray(leaf) + scale * rng.standard_normal(leaf.shape).astype(np.float32),
    params,
  )
  return jax.jit(net.apply, static_argnames=_STATIC), params


def _synthetic_params(net, seed=0):
  """Random init-scale params from `eval_shape`, skipping init compilation.

  A jitted init compiles one PRNG program per parameter, which dominates the
  runtime of these tests on CPU, so most tests use these params; real inits
  are run (and checked) by the GRU fixture, the MLP ensemble and
  `test_transformer_token_inputs`. Biases and LayerNorm scales are random
  too, so the references exercise them.
  """
  rng = _rng(seed)
  shapes = jax.eval_shape(net.init, jax.random.key(seed))

  def leaf(path, s):
    name = str(path[-1].key)
    noise = rng.standard_normal(s.shape).astype(np.float32)
    if name == "scale":
      return 1.0 + 0.1 * noise
    if name == "bias":
      return 0.1 * noise
    if name == "kernel":
      in_dims = s.shape[:-1] if str(path[-2].key) == "out" else s.shape[:1]
      return noise / np.sqrt(np.prod(in_dims))
    return noise

  return jax.tree_util.tree_map_with_path(leaf, shapes)


def _assert_differs(a, b, atol=1e-3):
  assert not np.allclose(np.asarray(a), np.asarray(b), atol=atol)


# ---------------------------------------------------------------------------
# Network.
# ---------------------------------------------------------------------------


def test_network_is_frozen_dataclass():
  net = encoders.make_mlp(3, [4], 2)
  assert isinstance(net, encoders.Network)
  assert dataclasses.is_dataclass(net)
  with pytest.raises(dataclasses.FrozenInstanceError):
    net.init = None  # type: ignore[misc]


# ---------------------------------------------------------------------------
# MLP.
# ---------------------------------------------------------------------------


def _np_layer_norm(x, scale, bias, eps=1e-6):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


def _np_mlp(params, x, num_layers, layer_norm, activate_final, act):
  p = params["params"]
  for i in range(num_layers):
    x = x @ p[f"hidden_{i}"]["kernel"] + p[f"hidden_{i}"]["bias"]
    if i < num_layers - 1 or activate_final:
      if layer_norm:
        ln = p[f"layer_norm_{i}"]
        x = _np_layer_norm(x, ln["scale"], ln["bias"])
      x = act(x)
  return x


@pytest.mark.parametrize(
  "layer_norm,activate_final,activation,np_act",
  [
    (False, False, nn.relu, lambda x: np.maximum(x, 0.0)),
    (True, False, nn.relu, lambda x: np.maximum(x, 0.0)),
    (True, True, nn.tanh, np.tanh),
  ],
)
def test_mlp_matches_numpy(layer_norm, activate_final, activation, np_act):
  net = encoders.make_mlp(
    5,
    [16, 8],
    3,
    activation=activation,
    layer_norm=layer_norm,
    activate_final=activate_final,
  )
  apply, params = jax.jit(net.apply), _synthetic_params(net)
  x = _normal(1, (4, 7, 5))
  out = apply(params, x)
  assert out.shape == (4, 7, 3)
  expected = _np_mlp(params, x.astype(np.float64), 3, layer_norm, activate_final, np_act)
  np.testing.assert_allclose(out, expected, atol=ATOL, rtol=RTOL)


def test_mlp_concatenates_inputs_and_transforms():
  net = encoders.make_mlp(5, [8], 2)
  shapes = jax.eval_shape(net.init, jax.random.key(0))
  assert shapes["params"]["hidden_0"]["kernel"].shape == (5, 8)
  assert shapes["params"]["hidden_1"]["kernel"].shape == (8, 2)

  apply, params = jax.jit(net.apply), _synthetic_params(net)
  obs, act = _normal(1, (6, 3)), _normal(2, (6, 2))
  x = np.concatenate([obs, act], -1)
  assert jax.eval_shape(net.apply, params, obs, act).shape == (6, 2)
  expected = apply(params, x)
  np.testing.assert_allclose(apply(params, obs, act), expected, atol=ATOL)
  np.testing.assert_allclose(net.apply(params, x), expected, atol=ATOL)
  vapply = jax.jit(jax.vmap(net.apply, in_axes=(None, 0, 0)))
  np.testing.assert_allclose(vapply(params, obs, act), expected, atol=ATOL)
  # Ensemble of critics: vmap over the real init and over params.
  ens = jax.jit(jax.vmap(net.init))(jax.random.split(jax.random.key(3), 2))
  assert jax.tree.map(jnp.shape, ens) == jax.tree.map(lambda s: (2,) + s.shape, shapes)
  out = jax.jit(jax.vmap(net.apply, in_axes=(0, None)))(ens, x)
  assert out.shape == (2, 6, 2)
  _assert_differs(out[0], out[1])


# ---------------------------------------------------------------------------
# GRU.
# ---------------------------------------------------------------------------


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _np_gru(params, xs, mask, h0=None):
  """NumPy GRU on one sequence xs [T, F], following flax.linen.GRUCell.

  r = sigmoid(W_ir x + b_ir + W_hr h)
  z = sigmoid(W_iz x + b_iz + W_hz h)
  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
  h' = (1 - z) * n + z * h, and h' = h where mask is 0.
  """
  c = params["params"]["gru"]["cell"]
  hidden = c["hr"]["kernel"].shape[0]
  h = np.zeros(hidden) if h0 is None else np.asarray(h0, np.float64)
  states = []
  for x, m in zip(np.asarray(xs, np.float64), mask):
    r = _sigmoid(x @ c["ir"]["kernel"] + c["ir"]["bias"] + h @ c["hr"]["kernel"])
    z = _sigmoid(x @ c["iz"]["kernel"] + c["iz"]["bias"] + h @ c["hz"]["kernel"])
    n = np.tanh(x @ c["in"]["kernel"] + c["in"]["bias"] + r * (h @ c["hn"]["kernel"] + c["hn"]["bias"]))
    if m:
      h = (1.0 - z) * n + z * h
    states.append(h)
  return h, np.stack(states)


@pytest.fixture(scope="module")
def gru():
  net = encoders.make_gru_encoder(3, 6)
  apply, params = _build(net)
  return net, apply, params


def test_gru_param_tree_and_eval_shape(gru):
  net, _, params = gru
  shapes = jax.eval_shape(net.init, jax.random.key(0))
  cell = shapes["params"]["gru"]["cell"]
  assert set(cell) == {"ir", "iz", "in", "hr", "hz", "hn"}
  assert cell["ir"]["kernel"].shape == (3, 6)
  assert cell["hn"]["kernel"].shape == (6, 6)
  x = jnp.zeros((2, 9, 3))
  assert jax.eval_shape(net.apply, params, x).shape == (2, 6)
  final, states = jax.eval_shape(lambda p, x: net.apply(p, x, return_all_states=True), params, x)
  assert final.shape == (2, 6) and states.shape == (2, 9, 6)


def test_gru_matches_numpy(gru):
  _, apply, params = gru
  xs = _normal(5, (8, 3))
  mask = np.array([1, 1, 0, 1, 0, 1, 1, 1], bool)
  final, states = apply(params, xs, mask, return_all_states=True)
  ref_final, ref_states = _np_gru(params, xs, mask)
  assert final.shape == (6,) and states.shape == (8, 6)
  np.testing.assert_allclose(final, ref_final, atol=ATOL, rtol=RTOL)
  np.testing.assert_allclose(states, ref_states, atol=ATOL, rtol=RTOL)
  assert np.abs(ref_final).max() > 1e-2  # Depends on the input at all.
  # Initial state.
  h0 = _normal(6, (6,))
  out = apply(params, xs, mask, initial_state=h0)
  np.testing.assert_allclose(out, _np_gru(params, xs, mask, h0)[0], atol=ATOL, rtol=RTOL)


def test_gru_leading_batch_dims(gru):
  _, apply, params = gru
  xs = _normal(8, (2, 3, 8, 3))
  mask = _rng(9).random((2, 3, 8)) < 0.7
  out = apply(params, xs, mask)
  assert out.shape == (2, 3, 6)
  for i in range(2):
    for j in range(3):
      ref, _ = _np_gru(params, xs[i, j], mask[i, j])
      np.testing.assert_allclose(out[i, j], ref, atol=ATOL, rtol=RTOL)
  np.testing.assert_array_equal(apply(params, xs), apply(params, xs, np.ones((2, 3, 8), bool)))


@pytest.mark.parametrize(
  "valid_idx",
  [
    (0, 1, 2, 3),  # right-padded
    (4, 5, 6, 7),  # left-padded
    (1, 2, 5, 7),  # interleaved
  ],
)
def test_gru_final_state_invariant_to_padding(gru, valid_idx):
  _, apply, params = gru
  valid_idx = np.array(valid_idx)
  core = _normal(11, (4, 3))
  padded = _normal(12, (8, 3), scale=100.0)
  padded[valid_idx] = core
  mask = np.zeros(8, bool)
  mask[valid_idx] = True
  expected = apply(params, core)
  final, states = apply(params, padded, mask, return_all_states=True)
  np.testing.assert_allclose(final, expected, atol=ATOL, rtol=RTOL)
  # The junk would change the answer if it were not masked.
  _assert_differs(apply(params, padded, np.ones(8, bool)), expected)
  # Padded steps repeat the previous state.
  for t in range(1, 8):
    if not mask[t]:
      np.testing.assert_array_equal(states[t], states[t - 1])


def test_gru_vmap_and_fully_padded(gru):
  net, apply, params = gru
  xs = _normal(13, (4, 8, 3))
  mask = np.arange(8)[None, :] < np.array([8, 3, 1, 0])[:, None]
  expected = apply(params, xs, mask)
  vapply = jax.jit(jax.vmap(net.apply, in_axes=(None, 0, 0)))
  np.testing.assert_allclose(vapply(params, xs, mask), expected, atol=ATOL)
  np.testing.assert_array_equal(expected[3], np.zeros(6))


def test_gru_rejects_bad_mask(gru):
  net, _, params = gru
  with pytest.raises(ValueError):
    jax.eval_shape(net.apply, params, jnp.zeros((2, 5, 3)), jnp.ones((5,)))


# ---------------------------------------------------------------------------
# Transformer.
# ---------------------------------------------------------------------------


def _make_transformer(**kw):
  kw = dict(model_dim=16, num_layers=2, num_heads=4, mlp_dim=32) | kw
  if "vocab_size" not in kw:
    kw["input_size"] = 3
  return encoders.make_transformer_encoder(**kw)


@pytest.fixture(scope="module", params=[False, True], ids=["full", "causal"])
def transformer(request):
  net = _make_transformer(causal=request.param)
  apply = jax.jit(net.apply, static_argnames=_STATIC)
  params = _synthetic_params(net)
  return net, apply, params, request.param


def test_transformer_shapes_and_eval_shape():
  net = _make_transformer()
  shapes = jax.eval_shape(net.init, jax.random.key(0))
  assert set(shapes["params"]) == {"input_projection", "block_0", "block_1", "ln_final"}
  out, pooled = jax.eval_shape(net.apply, shapes, jnp.zeros((2, 3, 7, 3)))
  assert out.shape == (2, 3, 7, 16) and pooled.shape == (2, 3, 16)
  out, pooled = jax.eval_shape(net.apply, shapes, jnp.zeros((7, 3)))
  assert out.shape == (7, 16) and pooled.shape == (16,)


def test_transformer_token_inputs():
  net = _make_transformer(vocab_size=11, num_layers=1)
  shapes = jax.eval_shape(net.init, jax.random.key(0))
  assert shapes["params"]["token_embedding"]["embedding"].shape == (11, 16)
  apply, params = _build(net, scale=0.1)
  tokens = _rng(1).integers(0, 11, (4, 9)).astype(np.int32)
  out, pooled = apply(params, tokens, tokens > 0)
  assert out.shape == (4, 9, 16) and pooled.shape == (4, 16)
  assert np.isfinite(np.asarray(out)).all()
  with pytest.raises(ValueError):
    jax.eval_shape(net.apply, params, jnp.zeros((4, 9, 16)))


def test_transformer_factory_validates_args():
  with pytest.raises(ValueError):  # Neither input_size nor vocab_size.
    encoders.make_transformer_encoder(model_dim=16, num_layers=1, num_heads=2, mlp_dim=8)
  with pytest.raises(ValueError):  # Both.
    _make_transformer(input_size=3, vocab_size=5)
  with pytest.raises(ValueError):  # Heads do not divide model_dim.
    _make_transformer(model_dim=10, num_heads=3)


def test_transformer_pooled_is_masked_mean_and_transforms(transformer):
  net, apply, params, _ = transformer
  x = _normal(1, (3, 8, 3))
  mask = np.arange(8)[None, :] < np.array([8, 2, 0])[:, None]
  out, pooled = apply(params, x, mask)
  out, pooled = np.asarray(out), np.asarray(pooled)
  np.testing.assert_array_equal(out[~mask], 0.0)
  for b, n in enumerate([8, 2]):
    np.testing.assert_allclose(pooled[b], out[b, :n].mean(0), atol=ATOL)
  np.testing.assert_array_equal(pooled[2], 0.0)
  # Vmapping over the batch agrees with the natively batched call.
  vout, vpooled = jax.jit(jax.vmap(net.apply, in_axes=(None, 0, 0)))(params, x, mask)
  np.testing.assert_allclose(vout, out, atol=ATOL, rtol=RTOL)
  np.testing.assert_allclose(vpooled, pooled, atol=ATOL, rtol=RTOL)


def test_transformer_invariant_to_padded_content(transformer):
  _, apply, params, _ = transformer
  x = _normal(2, (3, 8, 3))
  mask = np.array(
    [[1, 1, 0, 1, 1, 0, 1, 0], [0, 0, 1, 1, 1, 1, 1, 1], [1] * 6 + [0] * 2],
    bool,
  )
  x2 = np.where(mask[..., None], x, _normal(3, x.shape, scale=50.0))
  out1, pooled1 = apply(params, x, mask)
  out2, pooled2 = apply(params, x2, mask)
  np.testing.assert_allclose(out1, out2, atol=ATOL, rtol=RTOL)
  np.testing.assert_allclose(pooled1, pooled2, atol=ATOL, rtol=RTOL)
  # Sanity: if the junk were attended to, valid outputs would change.
  out3, _ = apply(params, x2, np.ones_like(mask))
  _assert_differs(np.asarray(out3)[mask], np.asarray(out1)[mask])


def test_transformer_matches_unpadded_sequence(transformer):
  _, apply, params, _ = transformer
  core = _normal(4, (5, 3))
  valid_idx = np.array([2, 3, 5, 6, 7])  # left- and interior-padded
  padded = _normal(5, (8, 3))
  padded[valid_idx] = core
  mask = np.zeros(8, bool)
  mask[valid_idx] = True
  out_core, pooled_core = apply(params, core)
  out_pad, pooled_pad = apply(params, padded, mask)
  np.testing.assert_allclose(out_pad[valid_idx], out_core, atol=ATOL, rtol=RTOL)
  np.testing.assert_allclose(pooled_pad, pooled_core, atol=ATOL, rtol=RTOL)


def test_transformer_causal(transformer):
  _, apply, params, causal = transformer
  x = _normal(6, (3, 8, 3))
  t0 = 3
  x2 = x.copy()
  x2[:, t0 + 1 :] = _normal(7, (3, 8 - t0 - 1, 3))
  mask = np.array([[1] * 8, [0, 1, 1, 1, 1, 1, 1, 0], [1] * 8], bool)
  out1, _ = apply(params, x, mask)
  out2, _ = apply(params, x2, mask)
  past1, past2 = out1[:, : t0 + 1], out2[:, : t0 + 1]
  if causal:
    np.testing.assert_allclose(past1, past2, atol=ATOL, rtol=RTOL)
  else:  # The same check must fail without the causal mask.
    _assert_differs(past1, past2)
  _assert_differs(out1[:, t0 + 1 :], out2[:, t0 + 1 :])


def test_transformer_dropout():
  net = _make_transformer(num_layers=1, dropout_rate=0.3, attention_dropout_rate=0.3)
  apply = jax.jit(net.apply, static_argnames=_STATIC)
  params = _synthetic_params(net)
  x = _normal(9, (2, 8, 3))
  det, _ = apply(params, x)  # Deterministic by default: no rng needed.
  drop = lambda seed: apply(params, x, deterministic=False, rngs={"dropout": jax.random.key(seed)})[0]
  drop_a = drop(1)
  np.testing.assert_array_equal(drop_a, drop(1))
  _assert_differs(drop_a, drop(2))
  _assert_differs(drop_a, det)
