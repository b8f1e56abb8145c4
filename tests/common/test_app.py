"""common.app: bad input exits with status 2 and names the flag/field/file/line."""

import os
import pathlib
import subprocess
import sys

import ml_collections
import pytest

from common import app

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMOKE = "schedulers/configs/default.py:smoke"


def run_main(*args, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "schedulers.main", *args],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
  )


def test_check_and_locate_field_in_a_config_file(tmp_path):
  cfg_file = tmp_path / "my_config.py"
  cfg_file.write_text(
      "import ml_collections\n"
      "def get_config(arg=None):\n"
      "  c = ml_collections.ConfigDict()\n"
      "  c.optim = ml_collections.ConfigDict()\n"
      "  c.optim.factor = 1.5\n"
      "  return c\n"
  )
  config = ml_collections.ConfigDict({"optim": {"factor": 1.5}})
  with pytest.raises(app.ConfigError) as err:
    app.check(config, "optim.factor", lambda v: 0 < v < 1, "must be in (0, 1)")
  assert err.value.field == "optim.factor"
  assert "config.optim.factor: got 1.5; must be in (0, 1)." == str(err.value)
  assert app.locate_field(f"{cfg_file}:variant", "optim.factor") == f"{cfg_file}:5"
  flag = ["prog", "--config.optim.factor=1.5"]
  assert app.locate_field(str(cfg_file), "optim.factor", flag) == "flag --config.optim.factor=1.5"


def test_check_known_fields_rejects_a_misspelt_field():
  reference = ml_collections.ConfigDict({"greedy": {"patience": 10}, "seed": 0})
  good = ml_collections.ConfigDict({"greedy": {"patience": 3}, "seed": 1})
  app.check_known_fields(good, reference)
  bad = ml_collections.ConfigDict({"greedy": {"pateince": 3}, "seed": 1})
  with pytest.raises(app.ConfigError, match="greedy.pateince"):
    app.check_known_fields(bad, reference)


def test_unknown_override_exits_2(tmp_path):
  proc = run_main(f"--config={SMOKE}", f"--workdir={tmp_path}", "--config.no_such_field=1")
  assert proc.returncode == 2, proc.stderr
  assert "no_such_field" in proc.stderr


def test_bad_factor_exits_2_naming_field_and_flag(tmp_path):
  proc = run_main(f"--config={SMOKE}", f"--workdir={tmp_path}", "--config.greedy.factor=1.5")
  assert proc.returncode == 2, proc.stderr
  assert "config.greedy.factor" in proc.stderr
  assert "flag --config.greedy.factor=1.5" in proc.stderr
  assert "(0, 1)" in proc.stderr
  assert not (tmp_path / "checkpoints").exists()  # nothing ran


def test_negative_patience_exits_2(tmp_path):
  proc = run_main(f"--config={SMOKE}", f"--workdir={tmp_path}", "--config.greedy.patience=-1")
  assert proc.returncode == 2, proc.stderr
  assert "config.greedy.patience" in proc.stderr and ">= 0" in proc.stderr


def test_misspelt_field_in_config_file_names_file_and_line(tmp_path):
  cfg_file = tmp_path / "typo.py"
  cfg_file.write_text(
      "from schedulers.configs import default\n"
      "def get_config(arg=None):\n"
      "  config = default.get_config('smoke')\n"
      "  config.greedy.pateince = 3\n"
      "  return config\n"
  )
  proc = run_main(f"--config={cfg_file}", f"--workdir={tmp_path / 'w'}")
  assert proc.returncode == 2, proc.stderr
  assert "config.greedy.pateince" in proc.stderr
  assert f"{cfg_file}:4" in proc.stderr


def test_unwritable_workdir_exits_2(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  proc = run_main(f"--config={SMOKE}", f"--workdir={blocker}/sub")
  assert proc.returncode == 2, proc.stderr
  assert "--workdir" in proc.stderr


def test_missing_config_file_exits_2(tmp_path):
  proc = run_main("--config=schedulers/configs/nope.py", f"--workdir={tmp_path}")
  assert proc.returncode == 2, proc.stderr
  assert "nope.py" in proc.stderr
