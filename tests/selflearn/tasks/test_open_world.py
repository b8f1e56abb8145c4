"""amc, online and teach on schema-2 open-world logs (the judge reads the world regenerated from the config).

Slow tier: each runs a smoke binary on the `open_world` preset with the temporal split.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
OPEN = ("--config.data.preset=open_world", "--config.data.split=temporal", "--config.data.num_dialogues=240")


def _run(config, workdir, *overrides, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "")  # the test session's compile flags, nothing of the caller's
  cmd = [sys.executable, "-m", "selflearn.main", f"--config={config}", f"--workdir={workdir}", *OPEN, *overrides]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads((workdir / "results.json").read_text())


@pytest.mark.slow
def test_amc_on_the_open_world_with_detector_pairs(tmp_path):
  r = _run("selflearn/configs/amc.py:smoke", tmp_path / "amc", "--config.compare_sources=('gap', 'detector', 'truth')")
  assert r["preset"] == "open_world" and 0 <= r["recurrence"]["true_text_seen"] < 0.8
  assert [v["pairs_source"] for v in r["variants"]] == ["gap", "gap", "truth", "truth", "detector", "detector"]
  assert r["guardrails"]["min_similarity"] in (0.0, 0.7)  # chosen from the smoke grid, on validation
  t = r["test"]
  assert t["ties"] == t["ties_both_served"] + t["ties_both_failed"]
  assert set(r["detector"]["scores"]) == {"train", "val", "test"}


@pytest.mark.slow
def test_online_on_the_open_world_with_detector_pairs(tmp_path):
  # The smoke detector needs a few more dialogues and epochs than the smoke config gives to find pairs at all.
  r = _run(
    "selflearn/configs/online.py:smoke",
    tmp_path / "online",
    "--config.pairs_source=detector",
    "--config.data.num_dialogues=600",
    "--config.detector.num_epochs=8",
  )
  assert r["preset"] == "open_world" and r["main"]["pairs_source"] == "detector"
  assert r["main"]["detector"]["folds"] == 2 and r["main"]["ab"]["judge"] == "simulator"
  assert r["main"]["mining"]["train_pairs"] >= 2 and r["main"]["detector"]["scores"]["train"]["detector"]["tp"] > 0


@pytest.mark.slow
def test_teach_on_the_open_world(tmp_path):
  r = _run("selflearn/configs/teach.py:smoke", tmp_path / "teach")
  assert r["preset"] == "open_world" and r["teaching_turns"] > 0
  # Open-world users teach their cities only (a song entity names its artist).
  assert all(e["truth"] is None or e["truth"][0] == "city" for e in r["examples"])
