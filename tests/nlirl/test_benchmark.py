"""nlirl.benchmark: both sections run and print their ratios; bad flags exit 2 before compiling."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(*args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "nlirl.benchmark", *args]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
  "args, flag",
  [
    (["--sections=env,speed"], "--sections"),
    pytest.param(["--envs=64,-1"], "--envs", marks=pytest.mark.slow),
    pytest.param(["--variants=smoke,dagger_smoke"], "--variants", marks=pytest.mark.slow),
    pytest.param(["--repeats=0"], "--repeats", marks=pytest.mark.slow),
  ],
)
def test_bad_flags_exit_2_naming_the_flag(tmp_path, args, flag):
  proc = _run(*args, f"--out={tmp_path}", timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert flag in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "benchmark.json").exists()


@pytest.mark.slow
def test_both_sections_print_ratios_and_merge_into_benchmark_json(tmp_path):
  proc = _run("--sections=env", "--envs=1,8", "--repeats=1", f"--out={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert [line.startswith("env:") and "ratio" in line for line in proc.stdout.splitlines()].count(True) == 2
  assert (tmp_path / "env_steps.png").is_file()
  proc = _run("--sections=train", "--variants=smoke,airl_smoke", "--train_envs=8", "--repeats=1", f"--out={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "1.00x airl" in proc.stdout
  results = json.loads((tmp_path / "benchmark.json").read_text())
  assert [r["envs"] for r in results["env"]] == [1, 8]  # kept from the first call
  assert [r["variant"] for r in results["train"]] == ["smoke", "airl_smoke"]
  assert all(r["iterations_per_s"] > 0 and r["ratio_to_airl"] > 0 for r in results["train"])
