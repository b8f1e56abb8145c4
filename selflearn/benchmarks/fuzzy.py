"""Hard-negative mining at scale: the tiled rapidfuzz top-k's time and peak memory, measured and extrapolated.

  python -m selflearn.benchmarks.fuzzy [sizes...] [--target=100000]

`run(sizes=(8_000, 16_000, 32_000), target=100_000)` mines the hard negative
of `n` positives against an index of `n` texts (`index.hard_negatives`: a
running top-3 per row over `process.cdist` blocks of 512 x 4096) for each
size, on generated request-like texts (3 to 6 words of a 2,000-word
vocabulary), and reports the wall time and the peak traced allocation above
the inputs (`tracemalloc`: numpy and rapidfuzz's result blocks are traced).
The dense matrix the tiling avoids is `n^2` int32 scores (40 GB at 100k x
100k).  Extrapolation to `target`: the time by the exponent measured between
the two largest sizes (the work is n^2 ratio evaluations), the memory by a
straight line through the two largest sizes' peaks (the part that grows is
the n x 3 running top-k and the per-pair output; the blocks are fixed once
`n` >= 4096, so the sizes start above it).  About a minute on one core.
"""

from __future__ import annotations

import math
import sys
import time
import tracemalloc

import numpy as np

from selflearn.rewriting.online import index

BLOCK_ROWS, BLOCK_COLS = 512, 4096


def request_texts(n: int, seed: int, *, vocabulary: int = 2000) -> list[str]:
  """`n` request-like texts: 3-6 words drawn Zipf-like from a generated vocabulary."""
  rng = np.random.default_rng(seed)
  letters = np.array(list("abcdefghijklmnoprstuvwy"))
  words = ["".join(rng.choice(letters, size=rng.integers(2, 9))) for _ in range(vocabulary)]
  p = 1.0 / np.arange(1, vocabulary + 1)
  p /= p.sum()
  lengths = rng.integers(3, 7, size=n)
  ids = rng.choice(vocabulary, size=int(lengths.sum()), p=p)
  out, at = [], 0
  for m in lengths:
    out.append(" ".join(words[j] for j in ids[at : at + m]))
    at += m
  return out


def measure(n: int, seed: int = 0) -> dict:
  """Time and peak traced memory of mining `n` hard negatives against `n` index texts."""
  choices = request_texts(n, seed)
  positives = request_texts(n, seed + 1)
  sources = request_texts(n, seed + 2)
  tracemalloc.start()
  try:
    start = time.perf_counter()
    negatives = index.hard_negatives(positives, sources, choices, block_rows=BLOCK_ROWS, block_cols=BLOCK_COLS)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert len(negatives) == n
  return {"n": n, "seconds": seconds, "peak_mb": peak / 2**20, "dense_mb": 4.0 * n * n / 2**20}


def run(sizes=(8_000, 16_000, 32_000), target: int = 100_000, seed: int = 0) -> list[dict]:
  rows = [measure(n, seed) for n in sizes]
  print(f"blocks {BLOCK_ROWS} x {BLOCK_COLS}, running top-3 per row; one core")
  print("| n positives x n index texts | time s | ratios/s | peak traced MB | dense int32 matrix MB |")
  print("|---|---|---|---|---|")
  for r in rows:
    rate = r["n"] ** 2 / r["seconds"]
    print(f"| {r['n']:,} x {r['n']:,} | {r['seconds']:.1f} | {rate:.3g} | {r['peak_mb']:.1f} | {r['dense_mb']:,.0f} |")
  if len(rows) >= 2:
    a, b = rows[-2], rows[-1]
    exponent = math.log(b["seconds"] / a["seconds"]) / math.log(b["n"] / a["n"])
    seconds = b["seconds"] * (target / b["n"]) ** exponent
    per_n = (b["peak_mb"] - a["peak_mb"]) / (b["n"] - a["n"])
    peak = b["peak_mb"] + per_n * (target - b["n"])
    print(
      f"measured growth {a['n']:,} -> {b['n']:,}: time exponent {exponent:.2f} (2.00 = quadratic work), peak"
      f" {per_n * 2**20:.0f} bytes per added pair; extrapolated to {target:,} x {target:,}: about {seconds:,.0f} s"
      f" on one core and a peak of about {peak:.0f} MB (the dense matrix: {4.0 * target**2 / 2**30:.0f} GiB)"
    )
  return rows


def main(argv) -> None:
  sizes = tuple(int(a) for a in argv[1:] if not a.startswith("--")) or (8_000, 16_000, 32_000)
  target = next((int(a.split("=", 1)[1]) for a in argv[1:] if a.startswith("--target=")), 100_000)
  run(sizes, target)


if __name__ == "__main__":
  main(sys.argv)
