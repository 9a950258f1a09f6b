"""Help text and attrs agree with the files written, and long runs say what they are doing (issue
#18): the biomarker help names the variables and dimensions its file has (it spoke of netCDF
groups, which the file does not have); a trial's progress bar says when its first chunk waits
for the solver to compile."""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np
import pytest
import xarray as xr

from immunopd.cli import main


def _help(*argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(out.getvalue().split())


def test_biomarker_help_names_what_its_file_holds(tmp_path, monkeypatch):
    import immunopd.biomarker as bio
    from immunopd.io import open_result

    trial = xr.Dataset({"orr": ("regimen", [0.2, 0.3])}, coords={"regimen": ["anti-PD-1", "anti-PD-1 + anti-Clever-1"],
                                                                 "patient": np.arange(4)})

    def strata(labels):
        return xr.Dataset({"orr": (("stratum", "regimen"), np.full((2, 2), 0.25)), "n": (("stratum", "regimen"), np.full((2, 2), 2))},
                          coords={"stratum": labels, "regimen": trial.regimen.values})

    # the experiment's own strata keys (immunopd.biomarker), with stand-in tables
    monkeypatch.setattr(bio, "run_biomarker_experiment", lambda pop, **kw: (trial.copy(), {
        "sclever1": strata(["<= median", "> median"]), "infiltration": strata(["hot", "cold"])}))
    monkeypatch.setattr(bio, "biomarker_report", lambda trial, strata, analyses=None: "report")
    rules = ["no one", "everyone", "rule"]
    monkeypatch.setattr(bio, "biomarker_analyses", lambda trial, **kw: {
        "predictive": xr.Dataset({"auc": ("adjustment", [0.5, 0.5])}, coords={"adjustment": ["none", "baseline tumor volume"]}),
        "rule": xr.Dataset({"orr": ("rule", [20.0, 30.0, 25.0])}, coords={"rule": rules})})
    out = tmp_path / "b.nc"
    pop = tmp_path / "pop.nc"
    pop.write_bytes(b"")
    monkeypatch.setattr("immunopd.population.Population.open", classmethod(lambda cls, path: None))
    assert main(["biomarker", "--population", str(pop), "--out", str(out)]) == 0
    ds = open_result(out)
    text = _help("biomarker")
    assert "group" not in text
    named_dims = set(re.findall(r"\b(\w+_stratum)\b", text))
    assert named_dims == {"sclever1_stratum", "infiltration_stratum"} and named_dims <= set(ds.dims)
    for prefix in ("sclever1", "infiltration"):
        assert f"{prefix}_<endpoint>" in text
        assert {f"{prefix}_orr", f"{prefix}_n"} <= set(ds.data_vars)
    # the ROC AUC and the treatment rule (issue 17 item 5), as the help names them
    assert "predictive_<variable> over predictive_adjustment" in text and "rule_<variable> over rule" in text
    assert {"predictive_auc", "rule_orr"} <= set(ds.data_vars) and {"predictive_adjustment", "rule"} <= set(ds.dims)


def test_biomarker_strata_keys_are_the_ones_the_help_names():
    """The stand-in above uses the experiment's keys; this keeps them honest without a 10,000-patient run."""
    import inspect

    import immunopd.biomarker as bio

    source = inspect.getsource(bio.run_biomarker_experiment)
    assert '"sclever1": stratify(' in source and '"infiltration": stratify(' in source


def test_trial_progress_says_when_the_first_chunk_compiles(capsys):
    from immunopd.integrate import COMPILING
    from immunopd.population import sample
    from immunopd.trial import run_trial

    pop = sample(20, seed=3)
    run_trial({"a": "pembrolizumab 200 mg q3w"}, pop, days=17, progress=True)  # days=17: compiled nowhere else
    first = capsys.readouterr().err
    assert COMPILING in first
    assert COMPILING not in first.replace("\r", "\n").strip().split("\n")[-1]  # cleared once the chunk is back
    assert "20/20" in first
    run_trial({"a": "pembrolizumab 200 mg q3w"}, pop, days=17, progress=True)
    second = capsys.readouterr().err
    assert "20/20" in second and COMPILING not in second  # compiled already: nothing to say


def test_every_command_prints_its_help():
    """`immunopd <command> --help` prints and exits 0 for every command (argparse %-formats help
    text: a bare "% change" in popfit's made its --help crash with a TypeError)."""
    import argparse

    from immunopd.cli import _build_parser

    parser = _build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert "popfit" in commands
    for command in commands:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
            main([command, "--help"])
        assert stop.value.code == 0, command
        assert out.getvalue().startswith(f"usage: immunopd {command}"), command
