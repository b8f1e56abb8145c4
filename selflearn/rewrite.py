"""Applies a saved rewriter to a JSONL file of requests.

  python -m selflearn.rewrite --model=DIR --in=requests.jsonl --out=rewrites.jsonl [--batch_size=256]

`DIR` is a saved `selflearn.rewriting.Rewriter` (`rewriter/` in the workdir
of the `amc` or `online` task, or anything `Rewriter.save` wrote).  Each
input line is one request: `{"utterance": ..., "user_id": ..., "context":
{...}}` (context keys may also sit at the top level; a row of the minimal
log contract is a valid request).  Each output line repeats the input's
`utterance` and `user_id` and adds `rewrite`, `score` and `source` (all
null: send the utterance unchanged), in input order.  Progress goes to
stderr (a bar on a terminal, else one line per tenth); a bad line or model
exits 2 naming it, and no output file is left behind.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

from absl import flags

from common import app

_MODEL = flags.DEFINE_string("model", None, "Directory of a saved rewriter (rewriter.json inside).")
_IN = flags.DEFINE_string("in", None, "JSONL file of requests (utterance, user_id, context).")
_OUT = flags.DEFINE_string("out", None, "JSONL file to write, one answer per request.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Requests per rewrite call.")


def _read_requests(path: pathlib.Path) -> list[dict]:
  from selflearn.rewriting import api  # pylint: disable=g-import-not-at-top

  rows = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        app.fail(f"{path}:{lineno}: not JSON: {e.msg} (column {e.colno})")
      if not isinstance(obj, dict) or not isinstance(obj.get("utterance"), str):
        app.fail(f"{path}:{lineno}: utterance: a request is a JSON object with a string 'utterance'")
      try:
        api.Request.of(obj)
      except (TypeError, ValueError) as e:
        app.fail(f"{path}:{lineno}: {e}")
      rows.append(obj)
  return rows


def main(argv: list[str]) -> int:
  del argv
  for name, flag in (("model", _MODEL), ("in", _IN), ("out", _OUT)):
    if not flag.value:
      app.fail(f"--{name} is required (python -m selflearn.rewrite --model=DIR --in=requests.jsonl --out=FILE)")
  if _BATCH.value < 1:
    app.fail("--batch_size must be >= 1")
  src, out = pathlib.Path(_IN.value), pathlib.Path(_OUT.value)
  if not src.is_file():
    app.fail(f"--in: no such file {src}")
  from selflearn.rewriting import api  # pylint: disable=g-import-not-at-top

  try:
    rewriter = api.load(_MODEL.value)
  except ValueError as e:
    app.fail(f"--model: {e}")
  rows = _read_requests(src)
  bar = None
  if sys.stderr.isatty():
    from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top

    bar = tqdm(total=len(rows), unit="request", desc="rewrite")
  every = max(1, len(rows) // 10)
  started = time.monotonic()
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.parent / f".{out.name}.{os.getpid()}"
  done = rewritten = 0
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      for start in range(0, len(rows), _BATCH.value):
        batch = rows[start : start + _BATCH.value]
        answers = rewriter.rewrite(batch)
        for row, a in zip(batch, answers):
          rec = {"utterance": row["utterance"], "user_id": row.get("user_id")}
          rec.update(a.to_json() if a is not None else {"rewrite": None, "score": None, "source": None})
          f.write(json.dumps(rec, allow_nan=False) + "\n")
          rewritten += a is not None
        before, done = done, done + len(batch)
        if bar is not None:
          bar.update(len(batch))
        elif done // every > before // every or done == len(rows):
          rate = done / max(time.monotonic() - started, 1e-9)
          print(f"rewrite: {done}/{len(rows)} requests ({rate:.0f}/s)", file=sys.stderr, flush=True)
    os.replace(tmp, out)
  finally:
    if tmp.exists():
      tmp.unlink()
  if bar is not None:
    bar.close()
  print(f"wrote {out}: {done} requests, {rewritten} rewritten ({rewriter.kind} rewriter from {_MODEL.value})")
  return 0


if __name__ == "__main__":
  app.run_tool(main)
