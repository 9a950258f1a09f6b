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


def _design(n, rng, jitter=0.0):
    rng = np.random.default_rng(rng)
    rows = []
    for i in range(n):
        d0 = float(rng.uniform(15, 40))
        for k, t in enumerate((0.0, 42.0, 84.0, 126.0, 189.0, 252.0)):
            rows.append({"ID": f"L{i:03d}", "TIME": t + (jitter * i * k / n if k else 0.0), "AMT": 0.0, "DV": d0,
                         "BASEVOL": math.pi / 6 * d0**3, "STUDY": 1.0 + (i % 2)})
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
    data = sse.simulate(model, _design(12, 3), TRUTH, seed=4)
    v = vpc(model, data, TRUTH, replicates=4, bins=3, stratify="STUDY")
    assert v.observed.dims == ("stratum", "bin", "percentile") and list(v.stratum.values) == [1.0, 2.0]
    for k, study in enumerate((1.0, 2.0)):
        alone = vpc(model, data[data.STUDY == study], TRUTH, replicates=4, bins=3)
        np.testing.assert_allclose(v.observed.isel(stratum=k).values, alone.observed.values, rtol=1e-12)
        assert int(v.n_observed.isel(stratum=k).sum()) == 6 * 5
    # the observed percentiles by hand: the first bin of study 2 holds its 42-day scans
    s2 = data[(data.STUDY == 2.0)]
    base = s2.groupby("ID").DV.transform("first")
    first = 100 * (s2.DV / base - 1)[s2.TIME == 42.0]
    assert float(v.observed.sel(stratum=2.0).isel(bin=0, percentile=1)) == pytest.approx(np.median(first), rel=1e-12)
    with pytest.raises(InputError, match=r"^stratify = 'TRIAL' is not allowed; allowed: a column of the data"):
        vpc(model, data, TRUTH, replicates=2, stratify="TRIAL")


def test_prediction_correction_removes_the_spread_of_scan_times_within_a_bin():
    """Lesions read exactly on the typical curve (no eta, no error) but scanned at staggered
    times: the pcVPC's observed percentiles in each bin collapse onto the bin's median
    prediction, 100 (median over the bin of exp(g t / 3) - 1) (Bergstrand et al. 2011)."""
    model = curve_nlme_model("exponential")
    truth = {"V0_RATIO": 1.0, "POP_GROWTH_RATE": 0.004, "OMEGA(initial_size,initial_size)": 0.01,
             "OMEGA(growth_rate,growth_rate)": 0.04, "SIGMA(proportional)": 0.0025, "SIGMA(additive)": 0.25}
    exact = dict(truth, **{k: 0.0 for k in truth if k.startswith(("OMEGA", "SIGMA"))})
    data = sse.simulate(model, _design(10, 5, jitter=30.0).drop(columns="STUDY"), exact, seed=0)
    plain = vpc(model, data, truth, replicates=3, bins=5)
    pc = vpc(model, data, truth, replicates=3, bins=5, prediction_corrected=True)
    assert pc.attrs["prediction_corrected"] == 1
    later = data[data.TIME > 0]
    for b in range(5):
        inb = (later.TIME >= float(pc.bin_start[b])) & (later.TIME < float(pc.bin_end[b]))
        expected = 100 * (np.median(np.exp(0.004 * later.TIME[inb] / 3)) - 1)
        np.testing.assert_allclose(pc.observed.isel(bin=b).values, expected, rtol=1e-10)
        assert float(plain.observed.isel(bin=b, percentile=2) - plain.observed.isel(bin=b, percentile=0)) > 0.1


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
    assert cli.main(["popfit", "--lesions", "2", "--vpc-stratify", "TRIAL", "--out", out]) == 2
    assert "stratify = 'TRIAL' is not allowed; allowed: a column of the data" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
