"""`python -m nlirl.report`: the committed results re-render; bad arguments are one line and exit 2."""

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
  assert report.main(["report", *[str(RESULTS / "gen64" / m) for m in names], f"--plot={png}"]) == 0
  assert capsys.readouterr().out == (RESULTS / "gen64" / "results.md").read_text()
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_missing_arguments_and_results_exit_2_with_one_line(tmp_path, capsys):
  assert report.main(["report"]) == 2
  assert "usage" in capsys.readouterr().err
  assert report.main(["report", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and str(tmp_path) in err
  assert report.main(["report", "--help"]) == 0
