"""`immunopd calibrate --method time-course`: one virtual twin per observed lesion, from the CLI."""

import numpy as np

from immunopd.cli import main
from immunopd.population import Population


def test_time_course_calibration_writes_one_twin_per_lesion(tmp_path, capsys):
    out = tmp_path / "twins.nc"
    assert main(["calibrate", "--method", "time-course", "--patients", "1500", "--seed", "3", "--out", str(out)]) == 0
    pop = Population.open(out)
    assert len(pop) == 1061  # the immunotherapy lesions with a baseline and a later scan (observed_courses)
    assert len(set(pop.data.patient.values.tolist())) == 1061  # each plausible patient at most once
    assert np.all(np.isfinite(pop.data.match_distance.values))
    text = capsys.readouterr().out
    assert "1061 lesions matched among 1500 plausible patients" in text and "virtual twins" in text


def test_time_course_calibration_refuses_a_plot_before_running(tmp_path, capsys):
    out = tmp_path / "twins.nc"
    out.write_text("keep")
    assert main(["calibrate", "--method", "time-course", "--out", str(out), "--plot", str(tmp_path / "c.png")]) == 2
    assert "is not allowed; allowed: only with --method best-response" in capsys.readouterr().err
    assert out.read_text() == "keep"
