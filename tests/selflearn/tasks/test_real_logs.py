"""A log written by hand to the minimal contract -> AMC and online rewriters -> `python -m selflearn.rewrite`.

The fixture (`fixtures/handwritten_log.jsonl`, 63 turns, 42 sessions, 7
users) has no truth, intents (PlayTrack, OrderCoffee, SetThermostat, ...)
and device types (car, watch, fridge) the simulator never uses, ISO-8601 and
epoch timestamps, 3-wide audio features and an extra field.  Bad logs exit 2
with one line and leave no workdir.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import pytest

from selflearn import train
from selflearn.configs import amc as amc_config
from selflearn.configs import fpi as fpi_config
from selflearn.configs import online as online_config
from selflearn.data import logs, schema
from selflearn.rewriting.precomputed import rewriter as table_rewriter
from selflearn.sim import simulator

ROOT = pathlib.Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "selflearn" / "fixtures" / "handwritten_log.jsonl"
REQUESTS = [
  {"utterance": "play tailor swift", "user_id": "alice"},
  {"utterance": "order a flat why", "user_id": "somebody new", "context": {"domain": "Cafe"}},
  {"utterance": "open the garage door", "user_id": "bob"},
  {"utterance": "set the thermo stat to seventy", "user_id": "carol", "timestamp": "2026-03-01T10:00:00Z"},
]


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = os.environ.get("TESTS_XLA_FLAGS", "")  # the test session's compile flags, nothing of the caller's
  return env


def _main(config, workdir, *overrides, timeout=300):
  cmd = [sys.executable, "-m", "selflearn.main", f"--config={config}", f"--workdir={workdir}", *overrides]
  return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def _rewrite(model, tmp_path, name):
  src, out = tmp_path / f"{name}_requests.jsonl", tmp_path / f"{name}_rewrites.jsonl"
  src.write_text("".join(json.dumps(r) + "\n" for r in REQUESTS))
  cmd = [sys.executable, "-m", "selflearn.rewrite", f"--model={model}", f"--in={src}", f"--out={out}"]
  proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "rewrite: 4/4 requests" in proc.stderr
  return [json.loads(line) for line in out.read_text().splitlines()]


def test_handwritten_log_to_amc_table_applied_by_rewrite(tmp_path):
  workdir = tmp_path / "amc"
  proc = _main("selflearn/configs/amc.py:smoke", workdir, f"--config.data.log_path={FIXTURE}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "not judged (no truth in the log)" in proc.stdout and "intents 5 learned" in proc.stdout
  results = json.loads((workdir / "results.json").read_text())
  assert not results["judged"] and results["log"]["users"] == 7
  assert set(results["log"]["vocabularies"]["device_type"]["top"][i][0] for i in range(3)) == {"car", "watch", "fridge"}
  rules = {r["source_text"]: r["rewrite"] for r in json.loads((workdir / "rewrites.json").read_text())}
  assert rules == {
    "play tailor swift": "play taylor swift",
    "order a flat why": "order a flat white",
    "set the thermo stat to seventy": "set the thermostat to seventy",
  }
  answers = _rewrite(workdir / "rewriter", tmp_path, "amc")
  assert [a["rewrite"] for a in answers] == [rules.get(r["utterance"]) for r in REQUESTS]
  # What the rewriter answered before it was saved (built from the same rows in this process).
  rows = json.loads((workdir / "rewrites.json").read_text())
  before = table_rewriter.TableRewriter(rows).rewrite(REQUESTS)
  assert [None if a is None else a.to_json() for a in before] == [
    None if a["rewrite"] is None else {k: a[k] for k in ("rewrite", "score", "source")} for a in answers
  ]
  assert {a["source"] for a in answers if a["rewrite"]} == {"table"}


@pytest.mark.slow  # trains the encoder and both rankers, then a fresh process applies them (about 40 s of CPU)
def test_handwritten_log_to_online_rewriter_applied_by_rewrite(tmp_path):
  workdir = tmp_path / "online"
  proc = _main("selflearn/configs/online.py:smoke", workdir, f"--config.data.log_path={FIXTURE}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "proxy failure rate (no truth in the log" in proc.stdout
  results = json.loads((workdir / "results.json").read_text())
  assert results["main"]["ab"]["judge"].startswith("observable proxy") and results["log"]["sessions"] == 42
  assert results["main"]["mining"]["train_pairs"] >= 2
  answers = _rewrite(workdir / "rewriter", tmp_path, "online")
  assert [a["utterance"] for a in answers] == [r["utterance"] for r in REQUESTS]
  assert all(a["source"] in (None, "global", "personal") for a in answers)
  assert answers[2]["rewrite"] is None  # a request that works is left alone


def _config(module, log_path, **data):
  config = module.get_config("smoke")
  config.data.log_path = str(log_path)
  for k, v in data.items():
    config.data[k] = v
  return config


def _write(path, lines):
  path.write_text("".join(lines))
  return path


def test_bad_contract_log_exits_2_in_one_line_and_leaves_no_workdir(tmp_path):
  bad = _write(tmp_path / "bad.jsonl", FIXTURE.read_text().splitlines(True)[:5] + ['{"session_id": "x"}\n'])
  workdir = tmp_path / "run"
  proc = _main("selflearn/configs/amc.py:smoke", workdir, f"--config.data.log_path={bad}", timeout=120)
  assert proc.returncode == 2, proc.stderr
  assert f"{bad}:6: user_id: missing field" in proc.stderr and "Traceback" not in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1
  assert not workdir.exists()


def test_empty_and_all_skipped_logs_say_so(tmp_path):
  empty = _write(tmp_path / "empty.jsonl", [])
  with pytest.raises(ValueError, match=r"data.log_path: .*empty.jsonl is empty"):
    train.validate_config(_config(amc_config, empty))
  junk = _write(tmp_path / "junk.jsonl", ['{"session_id": "a"}\n', "not json\n"])
  with pytest.raises(ValueError, match=r"junk.jsonl has no valid row \(2 read, 2 skipped; first: .*junk.jsonl:1: "):
    train.validate_config(_config(amc_config, junk, skip_invalid=True))


def test_tasks_that_need_labels_name_the_fields(tmp_path):
  with pytest.raises(ValueError, match=r"task 'fpi' needs truth.failure_point"):
    train.validate_config(_config(fpi_config, FIXTURE))
  config = _config(online_config, FIXTURE)
  config.upper_bound = True
  with pytest.raises(ValueError, match=r"needs truth.rephrase_pairs \(upper_bound=True"):
    train.validate_config(config)
  config.upper_bound, config.compare_detector = False, True
  with pytest.raises(ValueError, match=r"compare_detector=True trains the rephrase detector"):
    train.validate_config(config)
  config.compare_detector, config.pairs_source = False, "detector"
  with pytest.raises(ValueError, match=r"pairs_source='detector'"):
    train.validate_config(config)
  config = _config(amc_config, FIXTURE)
  config.states = "interpretation"
  with pytest.raises(ValueError, match=r"states='interpretation'; use states='text'"):
    train.validate_config(config)


def _simulate(out, *flags):
  cmd = [sys.executable, "-m", "selflearn.simulate", f"--out={out}", "--num_dialogues=20", "--preset=closed_world"]
  proc = subprocess.run([*cmd, *flags], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return out


def _mismatch_line(path, header, seed):
  ours = schema.config_hash(dataclasses.asdict(simulator.preset("closed_world", seed=seed, num_users=20, max_turns=8)))
  assert header["sim_config_hash"] != ours
  return f"{path}: its header names simulator seed 1 and config {header['sim_config_hash']}, but the config's world", (
    f"is seed {seed} and config {ours} (seed: log 1 vs config {seed})"
  )


def test_a_simulated_log_must_come_from_the_configs_world(tmp_path):
  """A log whose header says seed 1 against a config with data.sim_seed=0: refused, naming both; seed 1 passes."""
  path = tmp_path / "sim.jsonl"
  sim = simulator.preset("closed_world", seed=1, num_users=20, max_turns=8)  # what --seed=1 writes (the slow test)
  logs.write_logs(str(path), simulator.generate(sim, 20), progress=False, header=simulator.header(sim))
  header = logs.read_header(path)
  with pytest.raises(Exception) as e:
    train.validate_config(_config(amc_config, path))
  assert e.value.field == "data.sim_seed" and all(part in str(e.value) for part in _mismatch_line(path, header, 0))
  train.validate_config(_config(amc_config, path, sim_seed=1))  # the matching config passes
  with pytest.raises(Exception, match=r"num_users: log 20 vs config 30\)") as e:
    train.validate_config(_config(amc_config, path, sim_seed=1, num_users=30))
  assert e.value.field == "data.num_users"


@pytest.mark.slow
def test_a_log_simulated_with_another_seed_exits_2_naming_both_worlds(tmp_path):
  """`python -m selflearn.simulate --seed=1`, then `selflearn.main` with data.sim_seed=0: exit 2, no workdir."""
  path = _simulate(tmp_path / "sim.jsonl", "--seed=1", "--num_users=20", "--max_turns=8")
  header = logs.read_header(path)
  assert header["sim_seed"] == 1 and header["sim_config"]["num_users"] == 20
  workdir = tmp_path / "run"
  proc = _main("selflearn/configs/amc.py:smoke", workdir, f"--config.data.log_path={path}", timeout=120)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert all(part in proc.stderr for part in _mismatch_line(path, header, 0)) and "config.data.sim_seed" in proc.stderr
  assert not workdir.exists()


def test_a_judged_task_refuses_a_simulated_log_without_a_header(tmp_path):
  path = tmp_path / "old.jsonl"
  logs.write_logs(str(path), simulator.generate(simulator.preset("closed_world", seed=0), 10), progress=False)
  with pytest.raises(Exception, match=r"old.jsonl has no simulator header \(its first line\): task 'amc' judges") as e:
    train.validate_config(_config(amc_config, path))
  assert e.value.field == "data.log_path"
  train.validate_config(_config(amc_config, FIXTURE))  # a real log to the contract: no header, no judge
