"""schedulers.objectives: the grid's commands fit each binary's config; paired statistics; readers."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest
from scipy import stats

from schedulers.objectives import grid, readers, report

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _load_config(spec: str):
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("cfg", ROOT / path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


@pytest.mark.parametrize("name", list(grid.SETTINGS))
def test_every_cell_sets_existing_fields(name):
  """Each `--config.<field>` of every variant names a field of the setting's config (no typo reaches a run)."""
  setting = grid.SETTINGS[name]
  config = _load_config(setting.config)
  for variant in setting.variants:
    cmd = grid.command(setting, variant, 3, "/tmp/x", "python")
    assert cmd[:3] == ["python", "-m", setting.binary]
    fields = [a.removeprefix("--config.").split("=", 1) for a in cmd if a.startswith("--config.")]
    for field, _ in fields:
      node = config
      for part in field.split("."):
        assert part in node, f"{name}/{variant}: {field}"
        node = node[part]
      assert not isinstance(node, dict)
    flat = dict(fields)
    for block in setting.blocks:
      prefix = f"{block}." if block else ""
      assert flat[f"{prefix}greedy_mode"] == grid.VARIANTS[variant].greedy_mode
    if setting.seed_field:
      assert flat[setting.seed_field] == "3"


def test_variants_differ_only_in_the_rate_control():
  setting = grid.SETTINGS["mql-point-robot"]
  a = set(grid.command(setting, "constant", 0, "w", "p"))
  b = set(grid.command(setting, "per_eval_progress", 0, "w", "p"))
  assert all(".greedy" in x for x in a ^ b)


def test_paired_interval_matches_scipy():
  rng = np.random.default_rng(0)
  ref = rng.normal(0, 1, 6)
  other = ref + rng.normal(0.5, 0.3, 6)
  rows = report.compare({"constant": {"m": list(ref)}, "x": {"m": list(other)}})
  row = next(r for r in rows if r["variant"] == "x")
  d = other - ref
  lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
  assert row["diff"] == pytest.approx(d.mean(), rel=1e-12)
  assert (row["diff_lo"], row["diff_hi"]) == pytest.approx((lo, hi), rel=1e-9)
  assert row["verdict"] == ("better" if lo > 0 else "worse" if hi < 0 else "n.s.")
  same = report.compare({"constant": {"m": [1.0, 2.0, 3.0]}, "y": {"m": [1.0, 2.1, 2.9]}})
  assert same[-1]["verdict"] == "n.s."
  single = report.compare({"constant": {"m": [1.0]}, "y": {"m": [2.0]}})
  assert single[-1]["verdict"] == "one seed" and single[-1]["diff"] == 1.0
  assert "reference" in report.markdown("s", "td", rows, {"constant": "c", "x": "x"})


def test_readers(tmp_path):
  (tmp_path / "results.json").write_text(json.dumps({"summary": {"return_before_mql": -7.5}}))
  rows = [{"step": i, "episode_return": float(i)} for i in range(1, 5)] + [{"step": 5, "episode_return": None}]
  (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
  assert readers.mql(tmp_path) == {"test_return": [-7.5], "train_return_auc": [2.5]}
  ev = {s: {"success": {"per_seed": [0.1, 0.2]}} for s in ("val_seen", "val_unseen")}
  (tmp_path / "results.json").write_text(json.dumps({"eval": ev}))
  assert readers.nlirl(tmp_path) == {"val_seen_sr": [0.1, 0.2], "val_unseen_sr": [0.1, 0.2]}


def test_every_committed_cell_is_readable():
  """The committed cells rebuild the tables: each one's kept files give finite numbers through its reader."""
  runs = ROOT / "schedulers" / "objectives" / "results" / "runs"
  cells = [c for c in runs.glob("*/*/*") if c.is_dir()]
  assert cells
  for cell in cells:
    setting = grid.SETTINGS[cell.parents[1].name]
    measured = readers.READERS[setting.measure](cell)
    assert measured and all(np.all(np.isfinite(v)) for v in measured.values()), cell


def test_importing_the_runner_defines_no_flags():
  """The flags live in `__main__`: the library module must not clash with other tools' `--out` in one process."""
  from absl import flags

  before = set(flags.FLAGS)
  import schedulers.objectives.main  # noqa: F401

  assert set(flags.FLAGS) == before or not {"out", "seeds", "settings"} & (set(flags.FLAGS) - before)
