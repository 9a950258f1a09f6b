"""Categorical covariate effects on typical values (nlme.with_categorical_effect), the stratified
and the prediction-corrected VPC (popfit.vpc), on the exponential curve whose predictions are
closed-form, and their CLI flags (issue 16, item 4)."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from immunopd import cli, nlme, sse
from immunopd.errors import InputError
from immunopd.popcurves import curve_nlme_model
from immunopd.popfit import population_from_fit, vpc

jax.config.update("jax_enable_x64", True)

TRUTH = {"V0_RATIO": 1.0, "POP_GROWTH_RATE": 0.004, "GROWTH_RATE_STUDY2": 0.5, "OMEGA(initial_size,initial_size)": 0.01,
         "OMEGA(growth_rate,growth_rate)": 0.04, "SIGMA(proportional)": 0.0025, "SIGMA(additive)": 0.25}


def _model():
    return nlme.with_categorical_effect(curve_nlme_model("exponential"), "growth_rate", "STUDY", [1, 2])


def _design(n, rng, jitter=0.0, study_shift=0.0):
    """n lesions alternating between studies 1 and 2; ``jitter`` staggers lesions' scans, and
    ``study_shift`` (days) moves study 2's post-baseline scans later."""
    rng = np.random.default_rng(rng)
    rows = []
    for i in range(n):
        d0 = float(rng.uniform(15, 40))
        study = 1.0 + (i % 2)
        for k, t in enumerate((0.0, 42.0, 84.0, 126.0, 189.0, 252.0)):
            late = (jitter * i * k / n + study_shift * (study == 2.0)) if k else 0.0
            rows.append({"ID": f"L{i:03d}", "TIME": t + late, "AMT": 0.0, "DV": d0,
                         "BASEVOL": math.pi / 6 * d0**3, "STUDY": study})
    return pd.DataFrame(rows)


def test_typical_values_and_refusals():
    m = nlme.with_categorical_effect(curve_nlme_model("exponential"), "growth_rate", "STUDY", [1, 2, 5])
    assert [t.name for t in m.thetas][-2:] == ["GROWTH_RATE_STUDY2", "GROWTH_RATE_STUDY5"]
    assert m.covariates == ("BASEVOL", "STUDY") and m.categories == {"STUDY": (1.0, 2.0, 5.0)}
    theta = {t.name: jnp.asarray(v) for t, v in zip(m.thetas, (1.0, 0.004, 0.5, 3.0))}
    for study, factor in ((1.0, 1.0), (2.0, 0.5), (5.0, 3.0)):
        tv = m.typical(theta, {"BASEVOL": jnp.asarray(1000.0), "STUDY": jnp.asarray(study)})
        assert float(tv["growth_rate"]) == pytest.approx(0.004 * factor, rel=1e-15)
        assert float(tv["initial_size"]) == pytest.approx(1000.0, rel=1e-15)  # other parameters untouched
    base = curve_nlme_model("exponential")
    with pytest.raises(InputError, match=r"^parameter = 'kill_rate' is not allowed; allowed: one of the model's individual"
                                         r" parameters \['initial_size', 'growth_rate'\]$"):
        nlme.with_categorical_effect(base, "kill_rate", "STUDY", [1, 2])
    with pytest.raises(InputError, match=r"^levels = \[1, 1\] is not allowed; allowed: two or more distinct finite numbers"):
        nlme.with_categorical_effect(base, "growth_rate", "STUDY", [1, 1])
    with pytest.raises(InputError, match=r"^parameter = 'growth_rate' is not allowed; allowed: a parameter without an effect of"
                                         r" STUDY already"):
        nlme.with_categorical_effect(m, "growth_rate", "STUDY", [1, 2, 5])
    data = _design(4, 0)
    data.loc[data.ID == "L002", "STUDY"] = 7.0
    with pytest.raises(InputError, match=r"^covariate STUDY of subject ID L002 = 7.0 is not allowed; allowed: one of the"
                                         r" model's levels \[1.0, 2.0, 5.0\]$"):
        nlme.fit(m, data)


def test_study_effect_is_recovered_and_recorded():
    """40 lesions, half in study 2 growing at half the rate: the ratio comes back within 15 %, its
    90 % Wald interval holds the truth, and the fit records the effect for population draws."""
    model = _model()
    data = sse.simulate(model, _design(40, 1), TRUTH, seed=2)
    fit = nlme.fit(model, data)
    est, se = fit.estimates(), fit.standard_errors()
    assert fit.converged and fit.covariance_status == "ok"
    assert est["GROWTH_RATE_STUDY2"] == pytest.approx(0.5, rel=0.15)
    assert abs(est["GROWTH_RATE_STUDY2"] - 0.5) < sse.Z90 * se["GROWTH_RATE_STUDY2"]
    recorded = json.loads(fit.dataset.attrs["categorical_effects"])
    assert recorded == [{"theta": "GROWTH_RATE_STUDY2", "parameter": "growth_rate", "covariate": "STUDY", "level": 2.0,
                         "reference": 1.0}]
    assert list(fit.dataset.covariate_STUDY.values[:4]) == [1.0, 2.0, 1.0, 2.0]


def test_population_from_fit_applies_each_drawn_lesions_study():
    import xarray as xr

    names = ["V0_RATIO", "POP_GROWTH_RATE", "POP_KILL_RATE", "KILL_RATE_STUDY2", "OMEGA(kill_rate,kill_rate)",
             "SIGMA(proportional)", "SIGMA(additive)"]
    ds = xr.Dataset({"estimate": ("parameter", [1.0, 0.004, 2.0, 0.25, 1e-12, 0.01, 1.0]), "ofv": ((), 10.0),
                     "covariate_BASEVOL": ("subject", [1000.0, 8000.0]), "covariate_STUDY": ("subject", [1.0, 2.0])},
                    coords={"parameter": names, "individual_parameter": ["baseline_tumor_volume", "growth_rate", "kill_rate"],
                            "eta": ["kill_rate"], "subject": ["a", "b"]},
                    attrs={"n_subjects": 2, "categorical_effects": json.dumps([{"theta": "KILL_RATE_STUDY2", "parameter":
                           "kill_rate", "covariate": "STUDY", "level": 2.0, "reference": 1.0}])})
    p = population_from_fit(ds, 2000, seed=1).params()
    v0, kill = p["baseline_tumor_volume"], p["kill_rate"]
    # the study goes with the lesion drawn: study 1 (1000 mm3) kills at 2.0/day, study 2 (8000 mm3) at 0.5
    np.testing.assert_allclose(kill[v0 == 1000.0], 2.0, rtol=1e-5)
    np.testing.assert_allclose(kill[v0 == 8000.0], 0.5, rtol=1e-5)
    assert 0.4 < np.mean(v0 == 8000.0) < 0.6


def test_stratified_vpc_is_the_vpc_of_each_stratum():
    model = _model()
    data = sse.simulate(model, _design(12, 3, study_shift=10.0), TRUTH, seed=4)  # each study its own scan days
    v = vpc(model, data, TRUTH, replicates=4, bins=3, stratify="STUDY")
    assert v.observed.dims == ("stratum", "bin", "percentile") and list(v.stratum.values) == [1.0, 2.0]
    for k, study in enumerate((1.0, 2.0)):
        alone = vpc(model, data[data.STUDY == study], TRUTH, replicates=4, bins=3)
        np.testing.assert_allclose(v.observed.isel(stratum=k).values, alone.observed.values, rtol=1e-12)
        np.testing.assert_allclose(v.bin_start.isel(stratum=k).values, alone.bin_start.values, rtol=1e-12)
        assert int(v.n_observed.isel(stratum=k).sum()) == 6 * 5
        pc = vpc(model, data, TRUTH, replicates=4, bins=3, stratify="STUDY", prediction_corrected=True)
        pc_alone = vpc(model, data[data.STUDY == study], TRUTH, replicates=4, bins=3, prediction_corrected=True)
        np.testing.assert_allclose(pc.observed.isel(stratum=k).values, pc_alone.observed.values, rtol=1e-12)
    assert float(v.bin_start.sel(stratum=2.0)[1]) > float(v.bin_start.sel(stratum=1.0)[1])  # bins of its own
    # the observed percentiles by hand: the first bin of study 2 holds its 42-day scans
    s2 = data[(data.STUDY == 2.0)]
    base = s2.groupby("ID").DV.transform("first")
    first = 100 * (s2.DV / base - 1)[s2.TIME == 52.0]
    assert float(v.observed.sel(stratum=2.0).isel(bin=0, percentile=1)) == pytest.approx(np.median(first), rel=1e-12)
    with pytest.raises(InputError, match=r"^stratify = 'TRIAL' is not allowed; allowed: a column of the data"):
        vpc(model, data, TRUTH, replicates=2, stratify="TRIAL")
    holes = data.copy()
    holes.loc[3, "STUDY"] = np.nan
    with pytest.raises(InputError, match=r"^stratify = 'STUDY' is not allowed; allowed: a column with a value on every row"):
        vpc(model, holes, TRUTH, replicates=2, stratify="STUDY")
    only_baseline = pd.concat([data, data[data.TIME == 0].assign(ID=lambda f: f.ID + "b", STUDY=3.0)], ignore_index=True)
    with pytest.raises(InputError, match=r"^stratify = 'STUDY' is not allowed; allowed: strata with at least one scan after"
                                         r" the baseline; \[[^,\]]*3\.0[^,\]]*\] have none$"):
        vpc(nlme.with_categorical_effect(curve_nlme_model("exponential"), "growth_rate", "STUDY", [1, 2, 3]),
            only_baseline, dict(TRUTH, GROWTH_RATE_STUDY3=1.0), replicates=2, stratify="STUDY")


def test_prediction_correction_by_hand():
    """Lesions scanned at staggered times, each read at its own constant multiple c_i of the
    typical curve's ratio to baseline (exp(g t / 3)). Prediction correction (Bergstrand et al.
    2011) on the ratio: pc ratio = c_i exp(g t / 3) m_b / exp(g t / 3) = c_i m_b, m_b the bin's
    median of exp(g t / 3), so the observed percentiles are 100 (m_b percentile(c) - 1). The
    simulations (no eta, no error) are corrected by the same PRED: every percentile 100 (m_b - 1)."""
    model = curve_nlme_model("exponential")
    truth = {"V0_RATIO": 1.0, "POP_GROWTH_RATE": 0.004, "OMEGA(initial_size,initial_size)": 0.0,
             "OMEGA(growth_rate,growth_rate)": 0.0, "SIGMA(proportional)": 0.0, "SIGMA(additive)": 0.0}
    data = sse.simulate(model, _design(10, 5, jitter=30.0).drop(columns="STUDY"), truth, seed=0)
    c = {f"L{i:03d}": 0.7 + 0.07 * i for i in range(10)}
    later = data.TIME > 0
    data.loc[later, "DV"] *= data.loc[later, "ID"].map(c)
    plain = vpc(model, data, truth, replicates=3, bins=5)
    pc = vpc(model, data, truth, replicates=3, bins=5, prediction_corrected=True)
    assert pc.attrs["prediction_corrected"] == 1 and "prediction-corrected" in pc.observed.attrs["long_name"]
    obs = data[later]
    for b in range(5):
        inb = (obs.TIME >= float(pc.bin_start[b])) & (obs.TIME < float(pc.bin_end[b]))
        m = np.median(np.exp(0.004 * obs.TIME[inb] / 3))
        np.testing.assert_allclose(pc.observed.isel(bin=b).values,
                                   100 * (m * np.percentile(obs.ID[inb].map(c), [5, 50, 95]) - 1), rtol=1e-10)
        for k in ("simulated_lower", "simulated_median", "simulated_upper"):
            np.testing.assert_allclose(pc[k].isel(bin=b).values, 100 * (m - 1), rtol=1e-10)
        # uncorrected, the simulations keep the spread of the scan times
        assert float(plain.simulated_median.isel(bin=b, percentile=2) - plain.simulated_median.isel(bin=b, percentile=0)) > 0.1


def test_stratified_pcvpc_travels_to_netcdf_and_the_figure(tmp_path):
    from immunopd.io import open_result, write_netcdf
    from immunopd.popfit import PopFit, gof, plot_popfit

    model = _model()
    data = sse.simulate(model, _design(16, 6), TRUTH, seed=7)
    fit = nlme.fit(model, data, covariance=None, maxiter=30)
    v = vpc(model, data, fit.estimates(), replicates=5, bins=3, stratify="STUDY", prediction_corrected=True)
    pf = PopFit(fit, v, gof(fit.dataset), 1.0)
    write_netcdf(pf.to_dataset(), tmp_path / "fit.nc")
    back = open_result(tmp_path / "fit.nc")
    assert list(back.vpc_stratum.values) == [1.0, 2.0] and back.vpc_observed.dims == ("vpc_stratum", "vpc_bin", "vpc_percentile")
    assert back.attrs["vpc_prediction_corrected"] == 1 and back.attrs["vpc_stratified_by"] == "STUDY"
    np.testing.assert_allclose(back.vpc_observed.values, v.observed.values, rtol=1e-12)
    assert json.loads(back.attrs["categorical_effects"])[0]["theta"] == "GROWTH_RATE_STUDY2"
    plot_popfit(pf, tmp_path / "fit.png")
    assert (tmp_path / "fit.png").stat().st_size > 10_000


def test_a_forecast_prior_with_covariate_effects_is_refused(tmp_path):
    import xarray as xr

    from immunopd.forecast import DEFAULT_PRIOR, load_prior

    with xr.open_dataset(DEFAULT_PRIOR) as ds:
        ds = ds.load()
    ds.attrs["categorical_effects"] = json.dumps([{"theta": "KILL_RATE_STUDY2", "parameter": "kill_rate",
                                                   "covariate": "STUDY", "level": 2.0, "reference": 1.0}])
    ds.to_netcdf(tmp_path / "prior.nc")
    with pytest.raises(InputError, match=r"allowed: a population fit without covariate effects"):
        load_prior(tmp_path / "prior.nc")


def test_cli_passes_the_vpc_flags_to_popfit(tmp_path, monkeypatch):
    import immunopd.popfit as popfit_module

    seen = {}

    class Stop(Exception):
        pass

    def fake(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(popfit_module, "popfit", fake)
    with pytest.raises(Stop):
        cli.main(["popfit", "--lesions", "30", "--covariate", "kill_rate=STUDY", "--vpc-stratify", "STUDY", "--pc-vpc",
                  "--initial", "POP_GROWTH_RATE=0.0016", "--initial", "OMEGA(kill_rate,kill_rate)=0.25",
                  "--out", str(tmp_path / "fit.nc")])
    assert seen["covariates"] == {"kill_rate": "STUDY"} and seen["stratify"] == "STUDY"
    assert seen["prediction_corrected"] is True and seen["lesions"] == 30
    assert seen["initial"] == {"POP_GROWTH_RATE": 0.0016, "OMEGA(kill_rate,kill_rate)": 0.25}


def test_cli_covariate_flags_are_checked(tmp_path, capsys):
    out = str(tmp_path / "fit.nc")
    assert cli.main(["popfit", "--covariate", "kill_rate", "--out", out]) == 2
    assert "--covariate = 'kill_rate' is not allowed; allowed: PARAMETER=COLUMN, e.g. kill_rate=STUDY" in capsys.readouterr().err
    assert cli.main(["popfit", "--lesions", "2", "--covariate", "kill_rate=TRIAL", "--out", out]) == 2
    assert "covariates['kill_rate'] = 'TRIAL' is not allowed; allowed: a column of the data" in capsys.readouterr().err
    # the first two lesions are both from study 1: no effect can be estimated
    assert cli.main(["popfit", "--lesions", "2", "--covariate", "kill_rate=STUDY", "--out", out]) == 2
    assert ("covariates['kill_rate'] = 'STUDY' is not allowed; allowed: a column with two or more values in the fitted"
            " lesions (it has [1.0])") in capsys.readouterr().err
    assert cli.main(["popfit", "--covariate", "kill_rate=STUDY", "--covariate", "kill_rate=ARM", "--out", out]) == 2
    assert ("--covariate = 'kill_rate=ARM' is not allowed; allowed: one effect per parameter (kill_rate has STUDY"
            " already)") in capsys.readouterr().err
    assert cli.main(["popfit", "--lesions", "2", "--vpc-stratify", "TRIAL", "--out", out]) == 2
    assert "stratify = 'TRIAL' is not allowed; allowed: a column of the data" in capsys.readouterr().err
    for bad in ("POP_GROWTH_RATE", "POP_GROWTH_RATE=fast", "=0.1", "POP_GROWTH_RATE=inf"):
        assert cli.main(["popfit", "--initial", bad, "--out", out]) == 2
        assert (f"--initial = {bad!r} is not allowed; allowed: NAME=VALUE with a finite number, e.g."
                " POP_GROWTH_RATE=0.0016") in capsys.readouterr().err
    assert cli.main(["popfit", "--initial", "V0_RATIO=1", "--initial", "V0_RATIO=0.9", "--out", out]) == 2
    assert ("--initial = 'V0_RATIO=0.9' is not allowed; allowed: one value per parameter (V0_RATIO is 1 already)"
            in capsys.readouterr().err)
    # a name the model does not have is refused before anything is solved
    assert cli.main(["popfit", "--lesions", "2", "--random", "growth_rate", "--initial", "POP_GROWTH=0.001", "--out", out]) == 2
    assert "initial['POP_GROWTH'] = 0.001 is not allowed; allowed: one of the model's parameters" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
