"""`python -m common.sweep`: a smoke-scale grid of a real binary, resume/skip, the table, SLURM, bad flags."""

import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from common import sweep

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMOKE = "schedulers.configs.default:smoke"


def run_sweep(*args, cwd=ROOT, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  cmd = [sys.executable, "-m", "common.sweep", *args]
  return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_grid_parsing_and_layout(tmp_path):
  sets = sweep.parse_set(["optimizer.greedy_mode=none,per_step", "--config.model.hidden_sizes=16,16|32,32"])
  assert sets == [("optimizer.greedy_mode", ["none", "per_step"]), ("model.hidden_sizes", ["16,16", "32,32"])]
  grid = sweep.make_grid(sets, [0, 1], tmp_path)
  assert len(grid) == 8 and [r.seed for r in grid] == [0] * 4 + [1] * 4  # seed-major
  assert grid[1].workdir == tmp_path / "optimizer.greedy_mode=none,model.hidden_sizes=32_32" / "seed0"
  assert sweep.make_grid([], [3], tmp_path)[0].workdir == tmp_path / "seed3"  # no cells: <root>/seed<s>
  cmd = sweep.command(grid[1], binary="mql.main", config="mql.configs.default:smoke", seed_field="seed")
  assert cmd[1:] == [
    "-m",
    "mql.main",
    "--config=mql.configs.default:smoke",
    f"--workdir={grid[1].workdir}",
    "--config.seed=0",
    "--config.optimizer.greedy_mode=none",
    "--config.model.hidden_sizes=32,32",
  ]
  for bad in (["x"], ["x="], ["x=1,1"], ["x=1", "x=2"]):
    with pytest.raises(ValueError):
      sweep.parse_set(bad)


def test_numeric_fields_and_t_interval():
  results = {"a": 1, "b": {"c": 2.5, "d": [1, 2], "e": True, "f": "x"}, "config": {"lr": 0.1}, "provenance": {"x": 1}}
  assert sweep.numeric_fields(results) == {"a": 1.0, "b.c": 2.5}
  x = [1.0, 2.5, 0.5, 3.0]
  s = sweep.t_interval(x + [math.nan])
  ref = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
  np.testing.assert_allclose([s["low"], s["high"]], ref, rtol=1e-12)
  assert s["mean"] == np.mean(x) and s["n"] == 4
  assert math.isnan(sweep.t_interval([1.0])["low"])


def test_smoke_grid_runs_skips_finished_and_writes_one_table(tmp_path):
  """2 learning rates x 2 seeds of `schedulers.main` smoke (one epoch); seed 1's workdirs already finished."""
  root = tmp_path / "sweep"
  for rate, loss in (("0.001", 5.0), ("0.01", 7.0)):
    finished = root / f"optimizer.learning_rate={rate}" / "seed1"
    finished.mkdir(parents=True)
    extra = {"extra": {"n": 1}} if rate == "0.01" else {}
    (finished / "final_metrics.json").write_text(json.dumps({"test_loss": loss, "step": 33, **extra}))
  args = [
    "--binary=schedulers.main",
    f"--config={SMOKE}",
    "--seeds=0,1",
    "--set",
    "optimizer.learning_rate=0.001,0.01",
    f"--root={root}",
    "--extra=--config.num_epochs=1",
  ]
  proc = run_sweep(*args, cwd=tmp_path)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  lines = proc.stdout.splitlines()
  assert sum(": running -> " in line for line in lines) == 2 and sum(": done" in line for line in lines) == 2
  assert "[3/4] optimizer.learning_rate=0.001 seed 1: finished, skipped" in proc.stdout
  assert "[4/4] optimizer.learning_rate=0.01 seed 1: finished, skipped" in proc.stdout
  assert lines[-1] == f"4/4 runs finished; table: {root / 'sweep.md'}, {root / 'sweep.json'}"
  table = json.loads((root / "sweep.json").read_text())
  assert table["binary"] == "schedulers.main" and table["seeds"] == [0, 1]
  cells = {c["name"]: c for c in table["cells"]}
  assert set(cells) == {"optimizer.learning_rate=0.001", "optimizer.learning_rate=0.01"}
  low = cells["optimizer.learning_rate=0.001"]
  losses = [
    json.loads((root / low["name"] / f"seed{s}" / "final_metrics.json").read_text())["test_loss"] for s in (0, 1)
  ]
  assert low["finished"] == [0, 1] and low["fields"]["test_loss"]["values"] == losses and losses[1] == 5.0
  np.testing.assert_allclose(low["fields"]["test_loss"]["mean"], np.mean(losses), rtol=1e-12)
  high = cells["optimizer.learning_rate=0.01"]["fields"]
  assert high["test_loss"]["values"][1] == 7.0 and high["extra.n"]["n"] == 1  # the pre-finished run counts
  assert high["test_loss"]["values"][0] != losses[0]  # the cells ran with their own rates
  assert json.loads((root / low["name"] / "seed0" / "config.json").read_text())["optimizer"]["learning_rate"] == 0.001
  text = (root / "sweep.md").read_text()
  assert "| field | optimizer.learning_rate=0.001 | optimizer.learning_rate=0.01 |" in text
  assert "| finished seeds | 2/2 | 2/2 |" in text and "| test_loss | " in text
  # Everything finished: the same command runs nothing and rewrites the same table.
  again = run_sweep(*args, cwd=tmp_path)
  assert again.returncode == 0 and again.stdout.count("finished, skipped") == 4, again.stdout + again.stderr
  assert json.loads((root / "sweep.json").read_text()) == table
  # The SLURM script of the same grid; a task whose workdir finished exits at once.
  proc = run_sweep(*args, "--emit=slurm", "--parallel=2", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  script = (root / "sweep.sbatch").read_text()
  assert "#SBATCH --array=0-3%2" in script and script.count("--config.num_epochs=1") == 4
  task = subprocess.run(
    ["bash", str(root / "sweep.sbatch")], env=dict(os.environ, SLURM_ARRAY_TASK_ID="3"), capture_output=True, text=True
  )
  assert task.returncode == 0 and task.stdout == f"finished: {finished}\n", task.stderr  # task 3: 0.01, seed 1


@pytest.mark.parametrize(
  "args, message",
  [
    (["--config=" + SMOKE, "--root=r"], "error: --binary is required"),
    (["--binary=schedulers.nope", "--config=" + SMOKE, "--root=r"], "error: --binary=schedulers.nope: no such module."),
    (["--binary=schedulers.main", "--config=schedulers.configs.default:smok", "--root=r"], "unknown config variant"),
    (["--binary=schedulers.main", "--config=" + SMOKE, "--root=r", "--set=greedy.factr=0.5,0.9"], "'greedy.factr'"),
    (["--binary=schedulers.main", "--config=" + SMOKE, "--root=r", "--seeds=a"], "seeds must be integers"),
  ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, args, message):
  proc = run_sweep(*args, cwd=tmp_path)
  assert proc.returncode == 2, proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and message in lines[0], proc.stderr
  assert not (tmp_path / "r").exists()


def test_a_run_that_rejects_its_input_stops_the_sweep(tmp_path):
  proc = run_sweep(
    "--binary=schedulers.main",
    f"--config={SMOKE}",
    "--seeds=0,1",
    "--root=r",
    "--extra=--config.batch_size=0",
    cwd=tmp_path,
  )
  assert proc.returncode == 2, proc.stderr
  assert proc.stdout.count(": running -> ") == 1 and "FAILED (exit 2" in proc.stdout  # the second seed never started
  assert proc.stderr.startswith("error: a run rejected its input, sweep stopped: error: invalid config"), proc.stderr
