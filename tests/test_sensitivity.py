"""Sensitivity: forward-mode AD against central finite differences, SALib pipeline on functions
with known indices (Ishigami, linear), export round trips, bad input."""

import numpy as np
import pytest
import xarray as xr

from immunopd import simulate
from immunopd import sensitivity as sa
from immunopd.cli import main
from immunopd.errors import InputError, ParameterError

REGIMEN = "pembrolizumab 200 mg q3w"


def test_local_sensitivity_matches_central_differences():
    names = ["growth_rate", "kill_rate", "effector_influx", "sclever1_release"]
    pop = {"growth_rate": np.array([0.003, 0.005]), "sclever1_release": np.array([1.35, 4.0])}
    tol = dict(rtol=1e-10, atol=1e-12)
    ds = sa.local_sensitivity(REGIMEN, pop, parameters=names, outputs=("tumor_volume", "sclever1_plasma"), days=120, **tol)
    assert ds.S.dims == ("patient", "output", "parameter", "time")
    h = 1e-4
    for name in ["growth_rate", "kill_rate", "sclever1_release"]:
        base = ds.parameter_value.sel(parameter=name).values
        up = simulate(REGIMEN, {**pop, name: base * np.exp(h)}, days=120, **tol)
        dn = simulate(REGIMEN, {**pop, name: base * np.exp(-h)}, days=120, **tol)
        for out in ("tumor_volume", "sclever1_plasma"):
            fd = (np.log(up[out].values) - np.log(dn[out].values)) / (2 * h)
            ad = ds.S.sel(output=out, parameter=name).values
            big = np.abs(fd) > 1e-2
            assert big.sum() > 50
            np.testing.assert_allclose(ad[big], fd[big], rtol=1e-4)


def test_local_rejects_zero_parameters_and_unknown_outputs():
    with pytest.raises(InputError, match=r"parameters: antigen_loss_rate = 0\.0 is not allowed"):
        sa.local_sensitivity(REGIMEN, parameters=["antigen_loss_rate"], days=10)
    with pytest.raises(InputError, match=r"outputs = 'tumour' is not allowed"):
        sa.local_sensitivity(REGIMEN, outputs=("tumour",), days=10)


A, B = 7.0, 0.1


def ishigami(v):
    return {"y": np.sin(v["x1"]) + A * np.sin(v["x2"]) ** 2 + B * v["x3"] ** 4 * np.sin(v["x1"])}


def ishigami_indices():
    """Analytic Sobol indices of the Ishigami function (Ishigami & Homma 1990; Sobol' & Levitan 1999)."""
    v = A**2 / 8 + B * np.pi**4 / 5 + B**2 * np.pi**8 / 18 + 0.5
    v1 = 0.5 * (1 + B * np.pi**4 / 5) ** 2
    v2 = A**2 / 8
    v13 = B**2 * np.pi**8 * (1 / 18 - 1 / 50)
    return np.array([v1, v2, 0]) / v, np.array([v1 + v13, v2, v13]) / v, v13 / v


def test_sobol_pipeline_recovers_ishigami_within_its_confidence_intervals():
    prob = sa.define(["x1", "x2", "x3"], {k: (-np.pi, np.pi) for k in ("x1", "x2", "x3")}, validate=False)
    X = sa.sample(prob, "sobol", 4096, seed=1)
    assert X.shape == (4096 * (2 * 3 + 2), 3)
    Y, _ = sa.evaluate(prob, X, function=ishigami)
    ds = sa.analyze(prob, "sobol", X, Y, seed=1).sel(output="y")
    s1, st, s13 = ishigami_indices()
    assert np.all(np.abs(ds.S1.values - s1) <= ds.S1_conf.values)
    assert np.all(np.abs(ds.ST.values - st) <= ds.ST_conf.values)
    assert abs(float(ds.S2.sel(parameter="x1", parameter_2="x3")) - s13) <= float(ds.S2_conf.sel(parameter="x1", parameter_2="x3"))
    assert abs(float(ds.S2.sel(parameter="x1", parameter_2="x2"))) <= float(ds.S2_conf.sel(parameter="x1", parameter_2="x2"))
    # the intervals are informative, not wide enough to contain anything
    assert np.all(ds.S1_conf.values < 0.05) and np.all(ds.ST_conf.values < 0.05)


def test_morris_on_a_linear_function_is_exact_and_efast_on_an_additive_one():
    prob = sa.define(["a", "b"], {"a": (0, 1), "b": (0, 1)}, validate=False)
    lin = lambda v: {"y": 2.0 * v["a"] - 0.5 * v["b"]}  # noqa: E731
    X = sa.sample(prob, "morris", 50, seed=3)
    Y, _ = sa.evaluate(prob, X, function=lin)
    ds = sa.analyze(prob, "morris", X, Y, seed=3).sel(output="y")
    np.testing.assert_allclose(ds.mu.values, [2.0, -0.5], rtol=1e-12)
    np.testing.assert_allclose(ds.mu_star.values, [2.0, 0.5], rtol=1e-12)
    np.testing.assert_allclose(ds.sigma.values, [0.0, 0.0], atol=1e-12)
    assert (ds.attrs["N"], ds.attrs["evaluations"], ds.attrs["N_meaning"]) == (50, 150, "trajectories (N (D + 1) evaluations)")
    # y = a + 2b with a, b ~ U(0, 1): S1 = ST = (1/5, 4/5)
    X = sa.sample(prob, "efast", 2000, seed=3)
    Y, _ = sa.evaluate(prob, X, function=lambda v: {"y": v["a"] + 2 * v["b"]})
    ds = sa.analyze(prob, "efast", X, Y, seed=3).sel(output="y")
    np.testing.assert_allclose(ds.S1.values, [0.2, 0.8], atol=0.01)
    assert (ds.attrs["N"], ds.attrs["evaluations"]) == (2000, 4000)
    prob3 = sa.define(["a", "b", "c"], {k: (0, 1) for k in "abc"}, validate=False)
    X = sa.sample(prob3, "sobol", 64, seed=3, second_order=False)
    Y, _ = sa.evaluate(prob3, X, function=lambda v: {"y": v["a"] + v["b"] * v["c"]})
    ds = sa.analyze(prob3, "sobol", X, Y, seed=3, second_order=False)
    assert (ds.attrs["N"], ds.attrs["evaluations"]) == (64, 64 * 5)


def test_model_sobol_dataset_layout_and_round_trips(tmp_path):
    names = ["growth_rate", "kill_rate", "sclever1_release"]
    out = sa.Outputs(tumor_days=(84.0,), sclever1_days=(84.0,), time_step_days=28)
    ds = sa.run_global("sobol", names, 32, ranges=sa.ranges_around_defaults(names, 2), regimen=REGIMEN, days=84, outputs=out, seed=4)
    assert set(ds.output.values) == {"log10_tumor_volume_day84", "sclever1_day84", "best_pct_change", "time_to_progression_days"}
    assert ds.S2.dims == ("output", "parameter", "parameter_2")
    assert ds.ST_log10_tumor_volume.dims == ("time", "parameter") and list(ds.time.values) == [0, 28, 56, 84]
    assert np.all(np.isnan(ds.ST_log10_tumor_volume.sel(time=0)))  # no variance at baseline
    for key in ("method", "N", "seed", "ranges", "regimen", "immunopd_version"):
        assert key in ds.attrs
    # N is SALib's N, the base sample size asked for (it was the evaluation count, 256); 3 parameters with S2: 2D + 2 = 8 per N
    assert (ds.attrs["N"], ds.attrs["evaluations"]) == (32, 32 * 8) and ds.log_uniform.sel(parameter="kill_rate") == 1
    for name in ("s.nc", "s.zarr"):
        sa.write(ds, tmp_path / name)
        xr.testing.assert_identical(sa.open_sensitivity(tmp_path / name), ds)
    # the rows of a model evaluation equal plain simulations of the same parameter values
    prob = sa.define(names, sa.ranges_around_defaults(names, 2))
    X = sa.sample(prob, "sobol", 2, seed=0, second_order=False)
    Y, _ = sa.evaluate(prob, X, regimen=REGIMEN, days=84, outputs=out)
    sim = simulate(REGIMEN, prob.to_values(X), days=84)
    np.testing.assert_allclose(Y["log10_tumor_volume_day84"], np.log10(sim.tumor_volume.sel(time=84).values), rtol=1e-9)


def test_failed_write_keeps_the_previous_result(tmp_path):
    good = xr.Dataset({"S1": ("parameter", [0.1, 0.2])}, coords={"parameter": ["a", "b"]})
    for name in ("r.nc", "r.zarr"):
        sa.write(good, tmp_path / name)
        bad = good.assign(bad=("parameter", np.array([object(), object()])))
        with pytest.raises(Exception):
            sa.write(bad, tmp_path / name)
        xr.testing.assert_identical(sa.open_sensitivity(tmp_path / name), good)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc", "r.zarr"]


def test_bad_global_input():
    with pytest.raises(ParameterError, match="growth_rat"):
        sa.define(["growth_rat", "kill_rate"])
    with pytest.raises(InputError, match=r"ranges\['kill_rate'\] = \(1, 100000\.0\) is not allowed; allowed: low < high within the bounds \[0, 100\]"):
        sa.define(["growth_rate", "kill_rate"], {"kill_rate": (1, 1e5)})
    prob = sa.define(["growth_rate", "kill_rate"])
    with pytest.raises(InputError, match=r"n = 1000 is not allowed; allowed: a power of 2"):
        sa.sample(prob, "sobol", 1000)
    with pytest.raises(InputError, match=r"method = 'sobel' is not allowed"):
        sa.sample(prob, "sobel", 1024)
    with pytest.raises(InputError, match=r"output path = '.*x.csv' is not allowed"):
        sa.write(xr.Dataset(), "x.csv")


def test_cli_sensitivity(tmp_path, capsys):
    out = tmp_path / "m.nc"
    assert main(["sensitivity", "--method", "morris", "--n", "4", "--parameters", "growth_rate,kill_rate",
                 "--range-factor", "2", "--days", "84", "--out", str(out)]) == 0
    assert "mu_star" in capsys.readouterr().out
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds.attrs["method_key"] == "morris" and ds.mu_star.dims == ("output", "parameter")
    assert main(["sensitivity", "--method", "sobol", "--n", "100", "--out", str(out)]) == 2
    assert "power of 2" in capsys.readouterr().err
