"""Dataset layout, netCDF round trip, atomic writes and the command line."""

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

import immunopd as ip
from immunopd.cli import main
MODEL = ip.core_model()
STATES, OBSERVABLES = MODEL.state_names, MODEL.observable_names

STABLE_NAMES = ["tumor_volume", "sld", "pct_change", "sclever1_plasma", "effector", "exhausted", "treg", "mdsc",
                "clever1_macrophage", "infiltration_score"]


@pytest.fixture(scope="module")
def result():
    return ip.simulate("pembrolizumab 200 mg q3w x4", {"growth_rate": [0.003, 0.004]}, days=60)


def test_dataset_layout(result):
    assert result.sizes == {"patient": 2, "time": 61, "drug": 1, "target": 6, "compartment": 4}
    for name in STABLE_NAMES:
        assert result[name].dims == ("patient", "time") and "units" in result[name].attrs
    assert result.concentration.dims == ("patient", "drug", "time") and list(result.drug.values) == ["pembrolizumab"]
    assert result.occupancy.dims == ("patient", "target", "time") and list(result.target.values) == ["pd1", "pdl1", "clever1", "ctla4", "tubulin", "mir25"]
    assert result.drug_amount.dims == ("patient", "drug", "compartment", "time")
    assert result.time.attrs["units"] == "day"
    assert result.tumor_volume.attrs["units"] == "mm3" and result.sld.attrs["units"] == "mm"
    assert result.concentration.attrs["units"] == "ug/mL"
    assert float(result.occupancy.sel(target="clever1").max()) == 0.0  # no drug on it
    for p in ip.PARAMETERS:
        assert result[p.name].dims == ("patient",) and result[p.name].attrs["source"] == p.source
    np.testing.assert_allclose(result.growth_rate.values, [0.003, 0.004])
    for key in ("immunopd_version", "model", "growth_law", "solver", "rtol", "atol", "regimen"):
        assert key in result.attrs
    assert set(STATES) | set(OBSERVABLES) <= set(result.data_vars)
    # sld of one sphere: (6 V / pi)^(1/3)
    np.testing.assert_allclose(result.sld, (6 * result.tumor_volume / np.pi) ** (1 / 3), rtol=1e-12)
    assert np.all(result.pct_change.values[:, 0] == pytest.approx(0.0, abs=1e-9))


def test_netcdf_round_trip(result, tmp_path):
    path = ip.write_netcdf(result, tmp_path / "r.nc")
    xr.testing.assert_identical(ip.open_result(path), result)


def test_failed_write_keeps_the_good_file(result, tmp_path, monkeypatch):
    path = tmp_path / "r.nc"
    ip.write_netcdf(result, path)
    before = path.read_bytes()

    def broken(self, target, **kw):  # the writer hands HDF5 an open file object
        target.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(ip.errors.OutputError) as info:
        ip.write_netcdf(result.isel(time=slice(0, 3)), path)
    assert str(info.value) == (f"cannot write {str(path)!r}: disk full; nothing was replaced "
                               "(a file already at that path is unchanged and no partial file is left)")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.nc"]


def test_solver_failure_is_flagged_never_returned_as_numbers():
    params = {"growth_rate": [0.003, 0.004]}
    with pytest.raises(ip.SolverError, match=r"the ODE solve failed for 2 of 2 patient\(s\) \(indices \[0, 1\]\); patient 0: The maximum number of solver steps"):
        ip.simulate("pembrolizumab 200 mg q3w", params, days=100, max_steps=5)
    ds = ip.simulate("pembrolizumab 200 mg q3w", params, days=100, max_steps=5, on_failure="flag")
    assert np.all(ds.solver_status.values == 1)
    assert np.all(np.isnan(ds.tumor_volume.values))


def test_cli_simulate_writes_file(tmp_path, capsys):
    out = tmp_path / "res.nc"
    rc = main(["simulate", "--regimen", "pembrolizumab 2 mg/kg q3w x3", "--weight", "80", "--days", "50",
               "--set", "tcell_exclusion=0.5", "--out", str(out)])
    assert rc == 0
    ds = ip.open_result(out)
    assert float(ds.tcell_exclusion[0]) == 0.5 and float(ds.dosed.sel(drug="pembrolizumab")[0]) == pytest.approx(480.0)
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["simulate", "--regimen", "pembrolizumab 2 mg/kg q3w", "--out", "x.nc"], "body weight = None is not allowed"),
        (["simulate", "--set", "nope=1", "--out", "x.nc"], "parameter name = 'nope' is not allowed"),
        (["simulate", "--set", "growth_rate", "--out", "x.nc"], "--set = 'growth_rate' is not allowed; allowed: name=value"),
        (["simulate", "--days", "abc", "--out", "x.nc"], "argument --days: --days = 'abc' is not allowed; allowed: a finite number of days > 0"),
        (["simulate", "--out", "/nonexistent-dir/x.nc", "--days", "5"], "--out folder = '/nonexistent-dir' is not allowed; allowed: an existing folder"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_cli_bad_arguments_one_paragraph_no_traceback(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert not (tmp_path / "x.nc").exists()


def test_cli_params_lists_every_parameter():
    proc = subprocess.run([sys.executable, "-m", "immunopd.cli", "params"], capture_output=True, text=True, check=True)
    for p in ip.PARAMETERS:
        assert p.name in proc.stdout
    assert "0 switches off: antigen loss" in proc.stdout


def test_every_default_has_a_source_and_unit():
    for p in ip.PARAMETERS:
        assert p.unit and (p.source.startswith(("assumed:", "calibrated:")) or "doi:10." in p.source), p.name


def test_plain_xarray_round_trip(result, tmp_path):
    """Dataset.to_netcdf / xarray.open_dataset (no immunopd helpers) round-trip the result."""
    path = tmp_path / "plain.nc"
    result.to_netcdf(path)
    with xr.open_dataset(path) as back:
        xr.testing.assert_identical(back.load(), result)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["simulate", "--regimen", "", "--days", "5", "--out", "x.nc"],
         "immunopd: error: regimen = '' is not allowed; allowed: non-empty regimen text (no treatment: 'none'): "),
        (["simulate", "--set", "tcell_exclusion=0.9", "--set", "tcell_exclusion=0.1", "--out", "x.nc"],
         "immunopd: error: --set tcell_exclusion = 'tcell_exclusion=0.1' is not allowed; allowed: one --set per parameter (already --set tcell_exclusion=0.9)"),
        (["simulate", "--regimen", "pembrolizumab 1e9 mg", "--days", "5", "--out", "x.nc"],
         "immunopd: error: regimen clause 1 ('pembrolizumab 1e9 mg').amount = 1000000000.0 is not allowed; allowed: at most 100000 mg per dose"),
        (["simulate", "--regimen", "pembrolizumab 200 mg q3w from day 400", "--days", "30", "--out", "x.nc"],
         "immunopd: error: regimen clause 1 ('pembrolizumab 200 mg q3w from day 400').start = 400.0 is not allowed; allowed: a first dose before the end of the simulation (day 30)"),
        (["simulate", "--days", "5", "--out", "x.zarr"], "immunopd: error: --out = 'x.zarr' is not allowed; allowed: a path ending in .nc\n"),
        (["trial", "--regimen", "NAME=", "--out", "x.nc"],
         "immunopd: error: --regimen = 'NAME=' is not allowed; allowed: regimen text, or NAME=TEXT with a regimen text after '=' (no treatment: NAME=none)"),
        (["trial", "--regimen", "=none", "--out", "x.nc"],
         "immunopd: error: --regimen = '=none' is not allowed; allowed: NAME=TEXT with a name before '=' (or the regimen text alone)"),
        (["trial", "--regimen", "a=pembrolizumab-200mg-q3w", "--regimen", "a=none", "--out", "x.nc"],
         "immunopd: error: --regimen name = 'a' is not allowed; allowed: distinct names: each regimen at most once"),
        (["trial", "--regimen", "late=pembrolizumab 200 mg q3w from day 400", "--days", "30", "--out", "x.nc"],
         "immunopd: error: regimen 'late': regimen clause 1 ('pembrolizumab 200 mg q3w from day 400').start = 400.0 is not allowed"),
        (["trial", "--regimen", "none", "--patients", "0", "--out", "x.nc"],
         "immunopd trial: argument --patients: --patients = '0' is not allowed; allowed: an integer >= 1."),
        (["trial", "--regimen", "none", "--out", "x.csv"], "immunopd: error: --out = 'x.csv' is not allowed; allowed: a path ending in .nc or .zarr"),
        (["trial", "--regimen", "none", "--population", "missing.nc", "--out", "x.nc"],
         "immunopd: error: --population = 'missing.nc' is not allowed; allowed: an existing file"),
        (["sensitivity", "--range-factor", "0", "--out", "x.nc"],
         "immunopd sensitivity: argument --range-factor: --range-factor = '0' is not allowed; allowed: a finite factor > 1."),
        (["sensitivity", "--method", "local", "--range-factor", "2", "--out", "x.nc"],
         "immunopd: error: --range-factor = 2.0 is not allowed; allowed: nothing with --method local"),
        (["sensitivity", "--out", "x.csv"], "immunopd: error: --out = 'x.csv' is not allowed; allowed: a path ending in .nc or .zarr"),
        (["export-sbml", "--days", "-1", "--out", "x.xml"],
         "immunopd export-sbml: argument --days: --days = '-1' is not allowed; allowed: a finite number of days > 0."),
        (["export-sbml", "--out", "x.nc"], "immunopd: error: --out = 'x.nc' is not allowed; allowed: a path ending in .xml or .sbml"),
        (["calibrate", "--out", "x.csv"], "immunopd: error: --out = 'x.csv' is not allowed; allowed: a path ending in .nc"),
        (["calibrate", "--out", "x.nc", "--plot", "x.jpg"], "immunopd: error: --plot = 'x.jpg' is not allowed; allowed: a path ending in .png"),
        (["fit", "--out", "x.zarr"], "immunopd: error: --out = 'x.zarr' is not allowed; allowed: a path ending in .nc"),
        (["biomarker", "--out", "x.txt"], "immunopd: error: --out = 'x.txt' is not allowed; allowed: a path ending in .nc"),
    ],
)
def test_cli_contradictory_or_impossible_input_is_an_error(argv, message, capsys, tmp_path, monkeypatch):
    """Nothing is silently resolved (last one wins, 0 means the default, the wrong format under the
    asked-for name): each is an error naming the option and its value, before anything runs."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) or message in err, err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_cli_failing_command_leaves_the_existing_output_untouched(tmp_path, capsys, monkeypatch):
    """Every argument and output path (--plot too) is checked before anything runs or is written."""
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "good.nc"
    good.write_bytes(b"a good result")
    assert main(["trial", "--regimen", "pembrolizumab 200 mg q3w", "--patients", "5", "--days", "42",
                 "--stratify", "no_such_var", "--out", str(good)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("immunopd: error: --stratify = 'no_such_var' is not allowed; allowed: a patient variable of the trial: [")
    assert "'cold'" in err and "'growth_rate'" in err
    c = tmp_path / "c.nc"
    c.write_bytes(b"a good population")
    assert main(["calibrate", "--patients", "10", "--out", str(c), "--plot", "missing_dir/c.png"]) == 2
    assert capsys.readouterr().err == "immunopd: error: --plot folder = 'missing_dir' is not allowed; allowed: an existing folder\n"
    assert good.read_bytes() == b"a good result" and c.read_bytes() == b"a good population"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.nc", "good.nc"]


def test_cli_output_folder_must_be_writable(tmp_path, capsys, monkeypatch):
    import os

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ro").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == "ro" else real(p, mode, **kw))  # root may write anywhere
    assert main(["simulate", "--days", "5", "--out", "ro/x.nc"]) == 2
    assert capsys.readouterr().err == "immunopd: error: --out folder = 'ro' is not allowed; allowed: a folder this user may write in\n"
    if os.path.isdir("/proc"):  # os.access lets root write there, but nothing can be created: refused before the run too
        assert main(["simulate", "--days", "5", "--out", "/proc/x.nc"]) == 2
        assert capsys.readouterr().err == "immunopd: error: --out folder = '/proc' is not allowed; allowed: a folder this user may write in\n"
    (tmp_path / "dir.nc").mkdir()
    assert main(["simulate", "--days", "5", "--out", "dir.nc"]) == 2
    assert capsys.readouterr().err == "immunopd: error: --out = 'dir.nc' is not allowed; allowed: a file path (this is a folder)\n"


def test_cli_ctrl_c_exits_130_with_one_line(tmp_path, capsys, monkeypatch):
    import immunopd.cli as cli

    monkeypatch.chdir(tmp_path)

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_simulate", interrupted)
    assert main(["simulate", "--days", "5", "--out", "x.nc"]) == 130
    err = capsys.readouterr().err
    assert err == ("immunopd: interrupted; no output was replaced by a partial one "
                   "(a .zarr trial resumes when the same command is run again)\n")


def test_output_files_respect_the_umask(result, tmp_path):
    import os
    import stat

    old = os.umask(0o027)
    try:
        nc = ip.write_netcdf(result, tmp_path / "r.nc")
        txt = ip.io.write_text("x", tmp_path / "r.txt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(nc.stat().st_mode) == 0o640 and stat.S_IMODE(txt.stat().st_mode) == 0o640
    os.chmod(nc, 0o604)  # a file being replaced keeps its own mode
    ip.write_netcdf(result, nc)
    assert stat.S_IMODE(nc.stat().st_mode) == 0o604


def test_netcdf_is_compressed_and_round_trips_exactly(result, tmp_path):
    """Variables of 4 KiB or more are zlib-compressed; values read back bit for bit. (A 1,000-patient,
    2-regimen, 1-year trial with the default outputs: 17.9 MB uncompressed, 11.9 MB compressed.)"""
    big = xr.concat([result] * 40, "patient")  # 80 patients: time courses of 39 KB each
    packed = ip.write_netcdf(big, tmp_path / "packed.nc")
    plain = ip.write_netcdf(big, tmp_path / "plain.nc", compress=False)
    back = ip.open_result(packed)
    xr.testing.assert_identical(back, big)
    for name in big.data_vars:
        np.testing.assert_array_equal(back[name].values, big[name].values)  # bit for bit, NaN where NaN
    assert back.tumor_volume.encoding.get("zlib") or back.tumor_volume.encoding.get("compression") == "gzip"
    assert "compression" not in back.growth_rate.encoding or back.growth_rate.encoding["compression"] is None  # 640 bytes: as is
    assert packed.stat().st_size < 0.8 * plain.stat().st_size, (packed.stat().st_size, plain.stat().st_size)
    small = ip.write_netcdf(result, tmp_path / "small.nc")  # small variables are not made larger by chunk indexes
    assert small.stat().st_size <= ip.write_netcdf(result, tmp_path / "small_plain.nc", compress=False).stat().st_size


def test_cli_broken_pipe_exits_quietly():
    """`immunopd params | head` when the reader has gone: no traceback, the shell's SIGPIPE status."""
    proc = subprocess.Popen([sys.executable, "-m", "immunopd.cli", "params"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_cli_answers_help_params_drugs_datasets_without_jax():
    """The declarations load without JAX, diffrax or xarray, so these answer in a fraction of a
    second (measured: --help 1.76 s before, 0.19 s after)."""
    script = (
        "import contextlib, io, sys\n"
        "from immunopd.cli import main\n"
        "for argv in (['--help'], ['params'], ['params', '--markdown'], ['drugs'], ['datasets']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try:\n"
        "            rc = main(argv)\n"
        "        except SystemExit as exc:\n"
        "            rc = exc.code\n"
        "    assert rc == 0 and out.getvalue(), argv\n"
        "print(sorted(m for m in ('jax', 'diffrax', 'xarray') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert proc.stdout == "[]\n", proc.stdout + proc.stderr


def test_importing_immunopd_still_gives_float64_jax():
    script = "import immunopd, jax.numpy as jnp; print(jnp.ones(1).dtype, immunopd.simulate.__module__, immunopd.io.__name__)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert proc.stdout == "float64 immunopd.solve immunopd.io\n"


def test_cli_local_sensitivity_refuses_non_finite_coefficients(tmp_path, capsys, monkeypatch):
    import immunopd.sensitivity as sa

    def fake(regimen, parameters, days):
        shape = (1, 2, 3, len(parameters))
        s, dy = np.ones(shape), np.ones(shape)
        s[0, 0, -1, 1] = np.nan  # tumor_volume / kill_rate at the reported day
        dy[0, 1, 1, 0] = np.inf  # effector / growth_rate on the way
        s[0, 1, 0, :] = np.nan  # NaN by definition where the output is 0, with a finite dy: allowed
        dims = ("patient", "output", "time", "parameter")
        other = ("patient", "output", "parameter", "time")  # the real result's dy_dlnp is laid out differently
        return xr.Dataset({"S": (dims, s), "dy_dlnp": (other, dy.transpose(0, 1, 3, 2))},
                          coords={"patient": [0], "output": ["tumor_volume", "effector"], "time": [0.0, 1.0, 2.0], "parameter": parameters})

    monkeypatch.setattr(sa, "local_sensitivity", fake)
    out = tmp_path / "local.nc"
    assert main(["sensitivity", "--method", "local", "--parameters", "growth_rate,kill_rate,effector_influx", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("immunopd: error: local sensitivity coefficients (d ln output / d ln parameter) = "
                            "{'tumor_volume': ['kill_rate'], 'effector': ['growth_rate']} is not allowed; allowed: finite values: "
                            "a NaN or infinite coefficient is a failed solve or derivative, not a result (nothing was written)\n")
    assert captured.out == "" and not out.exists()
