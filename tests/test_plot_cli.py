"""`immunopd exposure`, `immunopd fit --data my.csv` and `immunopd plot RESULT` (small files made here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import immunopd as ip
from immunopd.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- exposure
def test_exposure_command_prints_the_table_and_writes_nc_and_csv(tmp_path, capsys):
    nc, csv = tmp_path / "e.nc", tmp_path / "e.csv"
    args = ["exposure", "--regimen", "pembrolizumab 200 mg q3w x2", "--weight", "70", "--days", "42", "--above", "20 ug/mL"]
    assert main(args + ["--out", str(nc)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:3] == ["drug", "dose", "start"]
    row = out.splitlines()[3].split()
    assert row[:2] == ["pembrolizumab", "1"]
    assert float(row[5]) == pytest.approx(59.96, abs=0.01)  # Cmax of dose 1 (ug/mL), at the 30-min infusion end
    ds = ip.open_result(nc)
    assert ds.cmax.attrs["units"] == "ug/mL" and ds.auc.attrs["units"] == "ug*day/mL"
    assert main(args + ["--out", str(csv)]) == 0
    table = pd.read_csv(csv)
    assert {"cmax_ug_per_mL", "ctrough_ug_per_mL", "auc_ug_day_per_mL", "time_above_day", "interval_start_day"} <= set(table.columns)
    assert len(table) == 2
    np.testing.assert_allclose(table.cmax_ug_per_mL, ds.cmax.values[0, 0], rtol=1e-12)


@pytest.mark.parametrize("argv, message", [
    (["exposure", "--regimen", "pembrolizumab 200 mg q3w", "--out", "x.txt"],
     "immunopd: error: --out = 'x.txt' is not allowed; allowed: a path ending in .nc or .csv\n"),
    (["exposure", "--regimen", "pembrolizumab 200 mg q3w", "--above", "pembrolizumab"],
     "immunopd: error: above = 'pembrolizumab' is not allowed; allowed: a number with a unit, e.g. '1.5 ug/mL'\n"),
    (["exposure", "--regimen", "pembrolizumab 200 mg q3w", "--above", "nivolumab=5"],
     "immunopd: error: above drug = 'nivolumab' is not allowed; allowed: a drug of the regimen: ['pembrolizumab']\n"),
    (["exposure", "--regimen", "none"],
     "immunopd: error: regimen = 'none' is not allowed; allowed: a regimen that doses at least one drug (exposure of no treatment is 0)\n"),
])
def test_exposure_command_refuses_bad_arguments(argv, message, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err == message


# ---------------------------------------------------------------------- fit --data my.csv
def _lesion_table():
    """Two patients with two lesions each, exponential growth of known rates (volume in cm3, time in weeks)."""
    rows = []
    for patient, study, arm in (("P1", "S1", "A"), ("P2", "S1", "B")):
        for lesion, rate in (("L1", 0.01), ("L2", 0.02)):
            for week in range(6):
                t = 7.0 * week
                rows.append({"study": study, "arm": arm, "patient": patient, "lesion": lesion, "time_weeks": week,
                             "volume_cm3": 2.0 * np.exp(rate * t) * (1 + (0.01 if week % 2 else -0.01))})
    return pd.DataFrame(rows)


def test_fit_a_users_csv_with_units_in_the_header(tmp_path, capsys):
    data, out = tmp_path / "my.csv", tmp_path / "fits.nc"
    _lesion_table().to_csv(data, index=False)
    assert main(["fit", "--data", str(data), "--model", "exponential", "--out", str(out)]) == 0
    assert "time_weeks (week) -> time_days (day); volume_cm3 (cm3) -> volume_mm3 (mm3)" in capsys.readouterr().out
    ds = ip.open_result(out)
    assert list(ds.lesion.values) == ["P1/L1", "P1/L2", "P2/L1", "P2/L2"]
    assert list(ds.patient.values) == ["P1", "P1", "P2", "P2"] and list(ds.arm.values) == ["A", "A", "B", "B"]
    assert list(ds.study.values) == ["S1"] * 4
    assert dict(zip(ds.parameter.values, ds.parameter_unit.values)) == {"initial_size": "mm3", "growth_rate": "1/day"}
    # the rates put in (1/day), from 6 weekly scans with +-1 % noise, and 2 cm3 = 2000 mm3 at day 0
    rate = ds.estimate.sel(parameter="growth_rate").values
    np.testing.assert_allclose(rate, [0.01, 0.02, 0.01, 0.02], rtol=0.05)
    np.testing.assert_allclose(ds.estimate.sel(parameter="initial_size").values, 2000.0, rtol=0.03)
    assert ds.observed_size.attrs["units"] == "mm3" and ds.observed_time.attrs["units"] == "day"
    assert float(ds.observed_time[0, -1]) == 35.0 and ds.estimate.attrs["long_name"] == "estimate of each curve parameter"
    assert bool(ds.converged.all())


def test_fit_a_nonmem_style_file_needs_its_units(tmp_path, capsys):
    table = _lesion_table()
    nm = pd.DataFrame({"ID": table.patient + table.lesion, "TIME": table.time_weeks * 7.0, "DV": table.volume_cm3 * 1000.0,
                       "EVID": 0, "MDV": 0, "ARM": table.arm})
    nm = pd.concat([pd.DataFrame({"ID": ["P1L1"], "TIME": [0.0], "DV": [np.nan], "EVID": [1], "MDV": [1], "ARM": ["A"]}), nm])
    data, out = tmp_path / "nm.csv", tmp_path / "fits.nc"
    nm.to_csv(data, index=False)
    assert main(["fit", "--data", str(data), "--model", "exponential", "--out", str(out)]) == 2
    assert capsys.readouterr().err == ("immunopd: error: --time-unit/--size-unit = (None, None) is not allowed; allowed: both given for a "
                                       "NONMEM-style file (ID, TIME, DV carry no units), e.g. --time-unit day --size-unit mm\n")
    assert main(["fit", "--data", str(data), "--model", "exponential", "--time-unit", "day", "--size-unit", "mm3", "--out", str(out)]) == 0
    ds = ip.open_result(out)
    assert list(ds.ARM.values) == ["A", "A", "B", "B"]
    np.testing.assert_allclose(ds.estimate.sel(parameter="growth_rate").values, [0.01, 0.02, 0.01, 0.02], rtol=0.05)


@pytest.mark.parametrize("drop, rename, extra, message", [
    ("volume_cm3", {}, [], "immunopd: error: --data size column = None is not allowed; allowed: exactly one of ['diameter_mm', 'diameter_cm', "
                            "'volume_mm3', 'volume_cm3', 'volume_ml'] (the unit in the name), or 'size' with --size-unit\n"),
    (None, {"time_weeks": "time"}, [], "immunopd: error: --time-unit = None is not allowed; allowed: a time unit for column 'time' "
                                       "(day, week, hour), or name the column one of ['time_days', 'time_weeks', 'time_hours']\n"),
    (None, {"volume_cm3": "size"}, ["--size-unit", "inch"], "immunopd: error: --size-unit = 'inch' is not allowed; allowed: mm or cm "
                                                            "(diameter), mm3, cm3 or mL (volume)\n"),
    (None, {"lesion": "nodule", "patient": "subject"}, [], "immunopd: error: --data columns = ['study', 'arm', 'subject', 'nodule', "
                                                           "'time_weeks', 'volume_cm3'] is not allowed; allowed: a 'lesion' or 'patient' "
                                                           "column identifying each series (or NONMEM-style ID, TIME, DV)\n"),
    (None, {}, ["--size", "diameter_mm"], "immunopd: error: --size = 'diameter_mm' is not allowed; allowed: 'volume_mm3', the size this "
                                          "file holds (after unit conversion), or no --size\n"),
    (None, {}, ["--time-unit", "day"], "immunopd: error: --time-unit = 'day' is not allowed; allowed: nothing: column 'time_weeks' names "
                                       "its own unit\n"),
])
def test_fit_file_errors_name_the_column(tmp_path, capsys, drop, rename, extra, message):
    table = _lesion_table()
    if drop:
        table = table.drop(columns=drop)
    data, out = tmp_path / "my.csv", tmp_path / "fits.nc"
    table.rename(columns=rename).to_csv(data, index=False)
    assert main(["fit", "--data", str(data), "--out", str(out)] + extra) == 2
    assert capsys.readouterr().err == message
    assert not out.exists()


def test_fit_file_text_in_a_number_column_names_row_and_lesion(tmp_path, capsys):
    table = _lesion_table().astype({"volume_cm3": object})
    table.loc[3, "volume_cm3"] = "2.1 cm3"
    data = tmp_path / "my.csv"
    table.to_csv(data, index=False)
    assert main(["fit", "--data", str(data), "--out", str(tmp_path / "f.nc")]) == 2
    assert capsys.readouterr().err == ("immunopd: error: --data column 'volume_cm3' row 4 (lesion 'P1/L1') = '2.1 cm3' is not allowed; "
                                       "allowed: a number (empty for a missing value)\n")


def test_shipped_dataset_refuses_unit_flags(tmp_path, capsys):
    assert main(["fit", "--data", "laleh2022", "--time-unit", "day", "--out", str(tmp_path / "f.nc")]) == 2
    assert capsys.readouterr().err == ("immunopd: error: --time-unit = 'day' is not allowed; allowed: nothing with the shipped dataset "
                                       "'laleh2022' (its units are known); give a CSV file to --data to fit your own\n")


# ---------------------------------------------------------------------- plot
@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from immunopd import sensitivity as sa
    from immunopd.population import sample
    from immunopd.trial import run_trial

    d = tmp_path_factory.mktemp("results")
    files = {}
    files["simulation"] = ip.write_netcdf(ip.simulate("pembrolizumab 200 mg q3w", days=42, weight=70), d / "sim.nc")
    files["exposure"] = ip.write_netcdf(ip.exposure("pembrolizumab 200 mg q3w x2", days=42, weight=70), d / "exp.nc")
    trial = run_trial({"pembro": "pembrolizumab 200 mg q3w", "none": "none"}, sample(6, seed=1), days=84)
    files["trial"] = ip.write_netcdf(trial, d / "trial.nc")
    local = sa.local_sensitivity("pembrolizumab 200 mg q3w", parameters=["growth_rate", "kill_rate"], days=21)
    sa.write(local, d / "local.nc")
    files["sensitivity-local"] = d / "local.nc"
    names = ["growth_rate", "kill_rate"]
    gsa = sa.run_global("sobol", names, 8, ranges=sa.ranges_around_defaults(names, 2), regimen="pembrolizumab 200 mg q3w", days=84,
                        outputs=sa.Outputs(tumor_days=(84.0,), sclever1_days=(84.0,), time_step_days=28), seed=1, second_order=False)
    sa.write(gsa, d / "sobol.nc")
    files["sensitivity-global"] = d / "sobol.nc"
    data = d / "my.csv"
    _lesion_table().to_csv(data, index=False)
    assert main(["fit", "--data", str(data), "--model", "exponential", "--out", str(d / "fit.nc")]) == 0
    files["fit"] = d / "fit.nc"
    return files


@pytest.mark.parametrize("kind", ["simulation", "exposure", "trial", "sensitivity-local", "sensitivity-global", "fit"])
def test_plot_draws_every_kind_of_result(results, kind, tmp_path, capsys):
    png = tmp_path / f"{kind}.png"
    assert main(["plot", str(results[kind]), "--out", str(png)]) == 0
    assert capsys.readouterr().out == f"wrote {png} ({kind})\n"
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000


def test_plot_refuses_an_unknown_file(tmp_path, capsys):
    other = tmp_path / "other.nc"
    xr.Dataset({"x": ("i", np.arange(3.0))}, attrs={"title": "something else"}).to_netcdf(other, engine="h5netcdf")
    png = tmp_path / "f.png"
    assert main(["plot", str(other), "--out", str(png)]) == 2
    assert capsys.readouterr().err == (
        f"immunopd: error: RESULT = {str(other)!r} is not allowed; allowed: a result of immunopd simulate, exposure, trial, biomarker, "
        "sensitivity or fit (kinds: simulation, exposure, trial, sensitivity-local, sensitivity-global, fit); this file (title "
        "'something else') has variables ['x'] and attrs {'title': 'something else'}\n")
    assert not png.exists()
    text = tmp_path / "notes.nc"
    text.write_text("not a netCDF file")
    assert main(["plot", str(text), "--out", str(png)]) == 2
    assert capsys.readouterr().err.startswith(f"immunopd: error: RESULT = '{text}' is not allowed; allowed: a netCDF (.nc) or zarr (.zarr) "
                                              "result written by immunopd (")
    assert main(["plot", str(tmp_path / "missing.nc"), "--out", str(png)]) == 2
    assert capsys.readouterr().err == f"immunopd: error: RESULT = '{tmp_path / 'missing.nc'}' is not allowed; allowed: an existing file\n"
    assert main(["plot", str(other), "--out", str(tmp_path / "f.jpg")]) == 2
    assert capsys.readouterr().err == f"immunopd: error: --out = '{tmp_path / 'f.jpg'}' is not allowed; allowed: a path ending in .png\n"
