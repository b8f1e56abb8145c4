"""Imports `mujoco.mjx` without its "Failed to import warp" stdout lines.

`mujoco.mjx.warp` prints two lines on stdout when the optional, GPU-only
`warp` package is absent (always, on CPU).  Every Brax import of this package
goes through `mql.envs`, which imports this module first, so an mql run's
stdout holds only its own progress.  Other lines printed meanwhile pass
through.
"""

import contextlib
import importlib
import io
import sys

_NOTICES = ("Failed to import warp", "Failed to import mujoco_warp")


def import_mjx_quietly() -> None:
  """Imports `mujoco.mjx.warp` (once) with its missing-warp notices dropped."""
  if "mujoco.mjx.warp" in sys.modules:
    return
  captured = io.StringIO()
  with contextlib.redirect_stdout(captured):
    importlib.import_module("mujoco.mjx.warp")
  for line in captured.getvalue().splitlines():
    if not line.startswith(_NOTICES):
      print(line)


import_mjx_quietly()
