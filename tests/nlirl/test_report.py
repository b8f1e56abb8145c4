"""`python -m nlirl.report`: the committed results re-render; floor / ceiling rows and the language tables;
bad arguments are one line and exit 2."""

import copy
import json
import pathlib

from nlirl import report

RESULTS = pathlib.Path(__file__).resolve().parents[2] / "nlirl" / "results"


def test_committed_runs_render_the_committed_table(capsys):
  dirs = [str(RESULTS / m) for m in ("bc", "gail", "airl", "langgoalirl")]
  assert report.main(["report", *dirs]) == 0
  out = capsys.readouterr().out
  committed = (RESULTS / "results.md").read_text()
  for row in out.splitlines()[2:6]:  # the four method rows
    assert row in committed


def test_committed_gen64_runs_render_their_table_and_curves(capsys, tmp_path):
  names = ("bc", "gail", "airl", "langgoalirl", "no_relabel", "no_paraphrase", "no_mismatch")
  png = tmp_path / "curves.png"
  dirs = [str(RESULTS / "gen64" / m) for m in names]
  assert report.main(["report", *dirs, f"--plot={png}", "--baselines="]) == 0  # the table as committed
  assert capsys.readouterr().out == (RESULTS / "gen64" / "results.md").read_text()
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_missing_arguments_and_results_exit_2_with_one_line(tmp_path, capsys):
  assert report.main(["report"]) == 2
  assert "usage" in capsys.readouterr().err
  assert report.main(["report", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and str(tmp_path) in err
  assert report.main(["report", "--help"]) == 0


def test_floor_and_ceiling_rows_and_language_tables(capsys):
  dirs = [str(RESULTS / "gen64_long" / m) for m in ("bc", "gail", "airl", "langgoalirl")]
  assert report.main(["report", *dirs]) == 0  # the committed baselines file by default
  out = capsys.readouterr().out
  floor = report.load_baselines(report.BASELINES_FILE)
  for row in floor:
    assert sum(line.startswith(f"| {row['name']} |") for line in out.splitlines()) == 3  # main + 2 splits
  assert "val_seen: does it read the instruction?" in out and "val_unseen: does it read the instruction?" in out
  bc = [line for line in out.splitlines() if line.startswith("| bc | 3 |")]
  assert len(bc) == 3 and "| - |" not in bc[0] and bc[1].count("| - ") == 8  # no new fields: "-" but for SR
  walk = next(r for r in floor if r["algorithm"] == report.FLOOR)["eval"]["val_seen"]["success"]["mean"]
  line = next(x for x in out.splitlines() if x.startswith("* val_seen: the random-walk floor"))
  assert f"SR {100 * walk:.1f}%" in line and "gail" in line and "langgoalirl" in line and "bc" not in line


def test_language_columns_of_a_run_with_the_new_fields(tmp_path, capsys):
  run = json.loads((RESULTS / "gen64_long" / "bc" / "results.json").read_text())
  fields = ("sr_shuffled", "language_gain", "sr_step_by_step", "sr_rooms", "sr_goal", "oracle_gap", "p_stop_at_goal")
  for split in run["eval"].values():
    for i, k in enumerate(fields):
      split[k] = copy.deepcopy(split["success"]) | {"mean": 0.01 * (i + 1), "ci95": 0.005}
  (tmp_path / "results.json").write_text(json.dumps(run))
  assert report.main(["report", str(tmp_path), "--baselines="]) == 0
  out = capsys.readouterr().out
  rows = [line for line in out.splitlines() if line.startswith("| bc |")]
  assert len(rows) == 3
  assert "| 1.0 ± 0.5 | +2.0 ± 0.5 | 3.0 ± 0.5 | 4.0 ± 0.5 | 5.0 ± 0.5 | 6.0 ± 0.5 | 7.0 ± 0.5 | - |" in rows[1]
  assert report.main(["report", str(tmp_path), "--baselines=/nonexistent.json"]) == 2
  assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_committed_bc_language_run_renders_its_table(capsys):
  assert report.main(["report", str(RESULTS / "gen64_long" / "bc_language")]) == 0
  assert capsys.readouterr().out == (RESULTS / "gen64_long" / "bc_language" / "results.md").read_text()
