"""common.app: bad input exits with status 2 and names the flag/field/file/line; configs by module; provenance."""

import importlib.metadata
import json
import math
import os
import pathlib
import shutil
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
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


@pytest.fixture(scope="module")
def finished_smoke(tmp_path_factory):
  """One finished smoke run, named by module from outside the repository (tests copy its workdir)."""
  tmp = tmp_path_factory.mktemp("finished_smoke")
  workdir = tmp / "quiet"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  proc = subprocess.run(
    [sys.executable, "-m", "schedulers.main", "--config=schedulers.configs.default:smoke", f"--workdir={workdir}"],
    cwd=tmp,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr
  return workdir, proc


def _copy_of(finished_smoke, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(finished_smoke[0], workdir)
  return workdir


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


@pytest.mark.parametrize(
  "override, expected",
  [
    (
      "--config.optimizr.name=sgd",
      "unknown config field 'optimizr' in --config.optimizr.name (did you mean 'optimizer'?)",
    ),
    ("--config.greedy.factr=0.9", "unknown config field 'factr' in --config.greedy.factr (did you mean 'factor'?)"),
  ],
)
def test_misspelt_override_is_one_clean_line(tmp_path, override, expected):
  proc = run_main(f"--config={SMOKE}", f"--workdir={tmp_path / 'run'}", override)
  assert proc.returncode == 2, proc.stderr
  assert _stderr_lines(proc) == [
    f"error: {expected}; run with --help to list the config fields (set as --config.<field>=<value>) and flags."
  ], proc.stderr
  assert not (tmp_path / "run").exists()


def test_unknown_message_helper_unwraps_ml_collections_reprs():
  nested = KeyError("'\\'factr\\'\\nDid you mean \"factor\" instead of \"factr\"?'")
  assert app.unknown_field_message(nested, ["--config.greedy.factr=1"]) == (
    "unknown config field 'factr' in --config.greedy.factr (did you mean 'factor'?)"
  )
  assert app.unknown_field_message(KeyError("'x'"), []) == "unknown config field 'x'"


def _hparams_and_text(workdir):
  """(hparams, config text) recorded in the run's TensorBoard events."""
  from tensorboardX.proto import event_pb2, plugin_hparams_pb2  # pylint: disable=g-import-not-at-top

  from common import metrics  # pylint: disable=g-import-not-at-top

  hparams, text = None, None
  for path in (workdir / "tensorboard").glob("events.out.tfevents.*"):
    for record in metrics._read_records(path):
      for value in event_pb2.Event.FromString(record).summary.value:
        if value.tag == "_hparams_/session_start_info":
          data = plugin_hparams_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
          hparams = dict(data.session_start_info.hparams)
        elif value.tag == "config/text_summary":
          text = value.tensor.string_val[0].decode()
  return hparams, text


def test_provenance_is_added_keeping_the_file_layout(tmp_path):
  record = {"git_commit": "abc", "packages": {"jax": "0.10.2"}}
  for text in ('{\n "a": 1,\n "b": NaN\n}\n', '{\n  "a": [\n    1\n  ]\n}', '{"a": 1}', "{}"):
    path = tmp_path / "results.json"
    path.write_text(text)
    assert app.add_provenance(path, record)
    new = path.read_text()
    data = json.loads(new)
    assert data.pop("provenance") == record and json.dumps(data) == json.dumps(json.loads(text))
    assert new.startswith(text.rstrip()[:-1].rstrip()) and new.endswith(text[len(text.rstrip()) :] or "}")
    assert not app.add_provenance(path, {"other": 1})  # results of an earlier run keep theirs
  path.write_text("[1, 2]")
  assert not app.add_provenance(path, record) and path.read_text() == "[1, 2]"
  assert not app.add_provenance(tmp_path / "missing.json", record)


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
  # An unknown module is one line, exit 2.
  proc = run_main("--config=schedulers.configs.nope:smoke", f"--workdir={tmp_path / 'nope'}")
  assert proc.returncode == 2 and _stderr_lines(proc) == [
    "error: --config=schedulers.configs.nope:smoke: no such config file or module schedulers.configs.nope."
  ], proc.stderr


def _stderr_lines(proc):
  return [line for line in proc.stderr.splitlines() if line.strip()]


def test_changed_config_on_resume_exits_2_and_keeps_the_record(tmp_path, finished_smoke):
  workdir = _copy_of(finished_smoke, tmp_path)
  recorded = (workdir / "config.json").read_text()
  final = (workdir / "final_metrics.json").read_text()
  proc = run_main(f"--config={SMOKE}", f"--workdir={workdir}", "--config.greedy.factor=0.5", "--config.seed=3")
  assert proc.returncode == 2, proc.stderr
  assert len(_stderr_lines(proc)) == 1, proc.stderr
  assert "greedy.factor: 0.95 -> 0.5" in proc.stderr and "seed: 0 -> 3" in proc.stderr
  assert "new --workdir" in proc.stderr
  assert (workdir / "config.json").read_text() == recorded
  assert (workdir / "final_metrics.json").read_text() == final


@pytest.mark.slow  # kept out of the default tier for its time budget (make test-slow runs it)
def test_resumable_change_is_recorded_in_the_history(tmp_path, finished_smoke):
  workdir = _copy_of(finished_smoke, tmp_path)  # its file form names the same run as the module form
  proc = run_main(f"--config={SMOKE}", f"--workdir={workdir}", "--config.num_epochs=4", "--config.keep_checkpoints=2")
  assert proc.returncode == 0, proc.stderr
  history = [json.loads(line) for line in (workdir / "config_history.jsonl").read_text().splitlines()]
  assert [h["event"] for h in history] == ["start", "resume"]
  assert history[0]["config"]["num_epochs"] == 3
  assert history[1]["changed"] == {"keep_checkpoints": {"from": 3, "to": 2}, "num_epochs": {"from": 3, "to": 4}}
  assert json.loads((workdir / "config.json").read_text())["num_epochs"] == 4
  # The same command again changes nothing and records nothing.
  assert (
    run_main(
      f"--config={SMOKE}", f"--workdir={workdir}", "--config.num_epochs=4", "--config.keep_checkpoints=2"
    ).returncode
    == 0
  )
  assert len((workdir / "config_history.jsonl").read_text().splitlines()) == 2


def test_config_identity_helpers():
  old = {"a": 1, "g": {"factor": 0.95, "p": 10}, "t": [1, 2]}
  new = {"a": 1, "g": {"factor": 0.5, "p": 10}, "t": [1, 2, 3], "n": None}
  assert app.config_changes(old, new) == {"g.factor": (0.95, 0.5), "n": ("<absent>", None), "t": ([1, 2], [1, 2, 3])}
  assert app._is_resumable("g.factor", ("g",)) and not app._is_resumable("gx", ("g",))


@pytest.mark.parametrize("variant_or_file", ["bogus", "syntax"])
def test_broken_config_is_one_line_exit_2_and_leaves_no_workdir(tmp_path, variant_or_file):
  if variant_or_file == "bogus":
    config, where = "schedulers/configs/default.py:bogus", "schedulers/configs/default.py:"
  else:
    bad = tmp_path / "bad_config.py"
    bad.write_text("import ml_collections\n\ndef get_config(arg=None):\n  x = = 1\n")
    config, where = str(bad), f"{bad}:4"
  workdir = tmp_path / "run"
  proc = run_main(f"--config={config}", f"--workdir={workdir}")
  assert proc.returncode == 2, proc.stderr
  assert len(_stderr_lines(proc)) == 1, proc.stderr
  assert where in proc.stderr and "Traceback" not in proc.stderr
  if variant_or_file == "bogus":
    assert "'bogus'" in proc.stderr and "smoke" in proc.stderr  # lists the variants
  assert not workdir.exists()


def test_rejected_field_leaves_no_workdir(tmp_path):
  workdir = tmp_path / "run"
  proc = run_main(f"--config={SMOKE}", f"--workdir={workdir}", "--config.batch_size=0")
  assert proc.returncode == 2 and not workdir.exists()


def test_help_lists_variants_and_every_field():
  proc = run_main("--help")
  assert proc.returncode == 0, proc.stderr
  from schedulers.configs import default as default_config  # pylint: disable=g-import-not-at-top

  for variant in default_config.VARIANTS:
    if variant:
      assert f"  {variant} " in proc.stdout
  fields = list(app._fields(default_config.get_config()))
  lines = proc.stdout.splitlines()
  for field in fields:
    line = next((row for row in lines if row.strip().startswith(f"{field} = ")), None)
    assert line is not None, field
    value = repr(app._get(default_config.get_config(), field))
    meaning = line.split(f"{field} = {value}", 1)[1].strip()
    assert meaning, f"{field} has no meaning in --help"
  assert "num_epochs, checkpoint_every, keep_checkpoints" in proc.stdout
  # Configs are shown by module, so installed binaries need no file paths.
  assert proc.stdout.startswith("usage: python -m schedulers.main --config=schedulers.configs.default[:VARIANT] ")
  assert "Variants (--config=schedulers.configs.default:<variant>):" in proc.stdout
  smoke = run_main(f"--config={SMOKE}", "--help")
  assert "model.hidden_sizes = (32,)" in smoke.stdout  # the variant's values


def test_benchmark_flags_are_clear():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "schedulers.benchmark"]
  run = lambda *args: subprocess.run([*cmd, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  proc = run("--config.x=1")
  assert proc.returncode == 2 and len(_stderr_lines(proc)) == 1, proc.stderr
  assert "--steps" in proc.stderr and "no --config" in proc.stderr and "FATAL" not in proc.stderr
  proc = run("--help")
  assert proc.returncode == 0
  for flag in ("--steps", "--repeats", "--seeds", "--sections"):
    assert flag in proc.stdout


def test_binary_is_quiet_by_default_and_verbose_on_request(tmp_path, finished_smoke):
  """Also: `--config=<module>:<variant>` from outside the repository; config.json and TensorBoard record the config."""
  workdir, proc = finished_smoke
  assert _stderr_lines(proc) == [], proc.stderr[:2000]  # no library INFO, no warnings
  assert len(proc.stdout.splitlines()) <= 12
  assert proc.stdout.splitlines()[-1].startswith(f"outputs in {workdir}")
  recorded = json.loads((workdir / "config.json").read_text())
  assert recorded["model"]["hidden_sizes"] == [32]  # the smoke variant
  provenance = recorded["provenance"]
  for dist in ("jax", "jaxlib", "flax", "optax", "brax"):
    assert provenance["packages"][dist] == importlib.metadata.version(dist)
  head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
  assert provenance["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
  history = json.loads((workdir / "config_history.jsonl").read_text())
  assert history["provenance"] == provenance and "provenance" not in history["config"]
  hparams, text = _hparams_and_text(workdir)
  assert math.isclose(hparams["greedy.factor"].number_value, 0.95) and hparams["optimizer.name"].string_value == "adamw"
  assert hparams["model.hidden_sizes"].string_value == "[32]" and not any(k.startswith("provenance") for k in hparams)
  assert json.loads(text.strip("`\n")) == recorded
  loud = run_main(f"--config={SMOKE}", f"--workdir={_copy_of(finished_smoke, tmp_path)}", "--verbosity=0")
  assert loud.returncode == 0, loud.stderr
  assert "checkpoint" in loud.stderr.lower()  # orbax's INFO lines (restoring the finished run) are back


def test_incompatible_checkpoint_is_one_line_exit_2(tmp_path, finished_smoke):
  workdir = _copy_of(finished_smoke, tmp_path)
  (workdir / "config.json").unlink()  # as if the checkpoints came from other code
  proc = run_main(f"--config={SMOKE}", f"--workdir={workdir}", "--config.model.hidden_sizes=16,")
  assert proc.returncode == 2, proc.stderr
  assert len(_stderr_lines(proc)) == 1, proc.stderr[:3000]
  assert (
    "params.params.hidden_0.kernel: the checkpoint has shape (64, 32), the state being restored (64, 16)" in proc.stderr
  )


def test_multihost_flags_are_checked():
  proc = run_main(f"--config={SMOKE}", "--workdir=/tmp/unused", "--coordinator_address=127.0.0.1:1")
  assert proc.returncode == 2 and "--num_processes" in proc.stderr
  proc = run_main(f"--config={SMOKE}", "--workdir=/tmp/unused", "--process_id=1")
  assert proc.returncode == 2 and "--coordinator_address" in proc.stderr


@pytest.mark.parametrize("workdir_existed", [False, True])
def test_config_error_from_train_fn_is_one_line_exit_2_and_undoes_the_fresh_run(tmp_path, workdir_existed):
  """A check that needs the data (raised inside train_fn) is reported like validate's, not as a traceback."""
  binary = ROOT / "tests/common/fixtures/data_check_binary.py"
  workdir = tmp_path / "run"
  if workdir_existed:
    workdir.mkdir()
    (workdir / "keep.txt").write_text("user file\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  run = lambda *a: subprocess.run(
    [sys.executable, str(binary), f"--config={binary}", f"--workdir={workdir}", *a],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  proc = run("--config.batch_size=64")
  assert proc.returncode == 2, proc.stderr
  assert len(_stderr_lines(proc)) == 1 and "Traceback" not in proc.stderr, proc.stderr
  assert "config.batch_size" in proc.stderr and "--config.batch_size" in proc.stderr and "<= the 10" in proc.stderr
  if workdir_existed:
    assert sorted(p.name for p in workdir.iterdir()) == ["keep.txt", "partial_output.txt"]
  else:
    assert not workdir.exists()
  assert run("--config.batch_size=8").returncode == 0  # the same workdir then takes a valid run
