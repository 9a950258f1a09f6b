"""One patient's forecast (immunopd.forecast, `immunopd forecast`): inputs, regimens, posterior, predictions."""

import math
import re

import numpy as np
import pytest

from immunopd import forecast as fc
from immunopd.dosing import Regimen
from immunopd.errors import InputError

GIVEN = "atezolizumab 1200 mg q3w over 60 min"


def _csv(tmp_path, text, name="scans.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


# ----------------------------------------------------------------------------- bad input names row and column
def test_tidy_scans_are_read_with_their_units(tmp_path):
    s = fc.read_scans(_csv(tmp_path, "time_week,sld_cm\n-1,5.0\n6,4.4\n12,4.0\n"))
    assert s.time_day.tolist() == [0.0, 42.0, 84.0]  # the baseline (day -7) moves to day 0
    assert s.baseline_day == -7.0
    assert s.size_mm.tolist() == [50.0, 44.0, 40.0]
    v = fc.read_scans(_csv(tmp_path, f"time_day,volume_mm3\n0,{math.pi / 6 * 20**3}\n40,0\n", "v.csv"))
    assert v.size_mm == pytest.approx([20.0, 0.0])  # a volume is the sphere of that diameter


def test_scans_out_of_order_name_the_row_and_column(tmp_path):
    with pytest.raises(InputError, match=re.escape("row 3, column time_day = 30.0 is not allowed; allowed: a time after the previous"
                                                   " scan's (42, row 2)")):
        fc.read_scans(_csv(tmp_path, "time_day,sld_mm\n0,50\n42,44\n30,40\n"))


def test_negative_and_zero_sizes(tmp_path):
    with pytest.raises(InputError, match=re.escape("row 2, column sld_mm = -4.0 is not allowed; allowed: a finite size >= 0")):
        fc.read_scans(_csv(tmp_path, "time_day,sld_mm\n0,50\n42,-4\n"))
    with pytest.raises(InputError, match=re.escape("row 1, column sld_mm = 0.0 is not allowed; allowed: a positive baseline size")):
        fc.read_scans(_csv(tmp_path, "time_day,sld_mm\n0,0\n42,4\n"))
    assert fc.read_scans(_csv(tmp_path, "time_day,sld_mm\n0,10\n42,0\n")).size_mm[-1] == 0.0  # a lesion may disappear


def test_text_in_a_numeric_cell_is_named_as_typed(tmp_path):
    with pytest.raises(InputError, match=re.escape("row 2, column sld_mm = '44 mm' is not allowed; allowed: a finite size >= 0")):
        fc.read_scans(_csv(tmp_path, "time_day,sld_mm\n0,50\n42,44 mm\n"))
    with pytest.raises(InputError, match=re.escape("row 2, column TIME = 'six weeks' is not allowed; allowed: a finite time")):
        fc.read_scans(_csv(tmp_path, "ID,TIME,DV\n1,0,50\n1,six weeks,44\n", "nm.csv"), time_unit="day", size_unit="mm")
    # a dose row (EVID 1, DV '.') is not a scan; the bad cell keeps its own row number and text
    with pytest.raises(InputError, match=re.escape("row 3, column DV = '4 4' is not allowed; allowed: a finite size >= 0")):
        fc.read_scans(_csv(tmp_path, "ID,TIME,DV,EVID\n1,0,50,0\n1,0,.,1\n1,42,4 4,0\n", "nm2.csv"), time_unit="day",
                      size_unit="mm")
    # a number is shown in the column's own unit (cm here), not converted
    with pytest.raises(InputError, match=re.escape("row 2, column sld_cm = -1.0 is not allowed; allowed: a finite size >= 0")):
        fc.read_scans(_csv(tmp_path, "time_day,sld_cm\n0,5\n42,-1\n", "cm.csv"))


def test_scan_before_the_first_dose(tmp_path):
    with pytest.raises(InputError, match=re.escape("row 2, column time_day = -3.0 is not allowed; allowed: a scan after the first"
                                                   " dose (day 0)")):
        fc.read_scans(_csv(tmp_path, "time_day,sld_mm\n-10,50\n-3,50\n42,44\n"))
    with pytest.raises(InputError, match=re.escape("row 1, column time_day = 14.0 is not allowed; allowed: a baseline scan at or"
                                                   " before the first dose")):
        fc.read_scans(_csv(tmp_path, "time_day,sld_mm\n14,50\n42,44\n"))


def test_columns_must_carry_units(tmp_path):
    with pytest.raises(InputError, match=re.escape("time column = ['size', 'time'] is not allowed; allowed: exactly one of"
                                                   " ['time_day', 'day', 'time_week', 'week']")):
        fc.read_scans(_csv(tmp_path, "time,size\n0,50\n"))
    nm = _csv(tmp_path, "ID,TIME,DV,MDV\n1,0,50,0\n1,42,44,0\n1,50,0,1\n", "nm.csv")
    with pytest.raises(InputError, match=re.escape("time_unit = None is not allowed; allowed: one of ['day', 'week', 'h']")):
        fc.read_scans(nm)
    s = fc.read_scans(nm, time_unit="day", size_unit="mm")
    assert s.time_day.tolist() == [0.0, 42.0] and s.rows.tolist() == [1, 2]  # the MDV = 1 row is not a scan


def test_unknown_covariate_and_too_few_scans():
    s = fc.scans_from_arrays([0, 42], [50, 44])
    with pytest.raises(InputError, match=re.escape("covariates = 'pdl1' is not allowed; allowed: one of ['body_weight',"
                                                   " 'body_surface_area', 'infiltration', 'baseline_sclever1']")):
        fc.posterior(s, GIVEN, covariates={"pdl1": 50})
    with pytest.raises(InputError, match=re.escape("scans scans = 1 is not allowed; allowed: at least 2 scans (the baseline and 1 on"
                                                   " treatment) for a forecast")):
        fc.posterior(s.first(1), GIVEN)
    with pytest.raises(InputError, match=re.escape("covariates.infiltration = 'lukewarm' is not allowed; allowed: 'hot' or 'cold'")):
        fc.posterior(s, GIVEN, covariates={"infiltration": "lukewarm"})
    with pytest.raises(InputError, match=re.escape("prior = 'radiotherapy' is not allowed; allowed: an existing netCDF file written"
                                                   f" by `immunopd popfit --out`, or a shipped prior: {sorted(fc.shipped_priors())}")):
        fc.load_prior("radiotherapy")
    # R-hat and ESS need at least 4 draws per chain (split chains of 2)
    with pytest.raises(InputError, match=re.escape("draws = 3 is not allowed; allowed: an integer >= 4")):
        fc.posterior(s, GIVEN, method="nuts", draws=3)


def test_cli_checks_everything_before_solving(tmp_path, capsys, monkeypatch):
    from immunopd.cli import main

    scans = _csv(tmp_path, "time_day,sld_mm\n0,50\n42,44\n")
    rc = main(["forecast", str(scans), "--given", GIVEN, "--regimen", "continue", "--out", str(tmp_path / "f.txt")])
    assert rc == 2 and "--out = " in capsys.readouterr().err
    rc = main(["forecast", str(scans), "--given", GIVEN, "--regimen", "frobnicate 3 mg", "--out", str(tmp_path / "f.nc")])
    err = capsys.readouterr().err
    assert rc == 2 and "regimen = 'frobnicate 3 mg' is not allowed" in err
    rc = main(["forecast", str(tmp_path / "missing.csv"), "--given", GIVEN, "--regimen", "continue", "--out", str(tmp_path / "f.nc")])
    assert rc == 2 and "scans = " in capsys.readouterr().err
    # a mg/kg candidate without --weight: refused before the posterior is sampled (it was refused after it, 69 s in)
    def no_sampling(*args, **kws):
        raise AssertionError("the posterior was sampled before the regimens' doses were checked")

    monkeypatch.setattr(fc, "posterior", no_sampling)
    rc = main(["forecast", str(scans), "--given", GIVEN, "--regimen", "continue + bexmarilimab 1 mg/kg q3w",
               "--out", str(tmp_path / "f.nc")])
    assert rc == 2 and "body weight = None is not allowed; allowed: a weight in kg (needed by the mg/kg dose" in capsys.readouterr().err
    assert not (tmp_path / "f.nc").exists()


# ----------------------------------------------------------------------------- regimens from the decision day
def _dose_days(reg, horizon=400.0, drug=None):
    return sorted(t for d, t, *_ in reg.doses(horizon, weight=70.0) if drug is None or d == drug)


def test_candidates_start_at_the_decision_day():
    given = Regimen.parse("pembrolizumab 200 mg q3w")
    cont = fc.compose_regimen(given, "continue", 84)
    assert _dose_days(cont, 200) == [0, 21, 42, 63, 84, 105, 126, 147, 168, 189]
    stop = fc.compose_regimen(given, "stop", 84)
    assert _dose_days(stop) == [0, 21, 42, 63]
    year = fc.compose_regimen(given, "stop at week 52", 84)
    assert _dose_days(year, 800) == [21.0 * k for k in range(18)]  # 18 doses before day 364
    add = fc.compose_regimen(given, "continue + bexmarilimab 1 mg/kg q3w x2", 84)
    assert _dose_days(add, 200, "bexmarilimab") == [84, 105]
    assert _dose_days(add, 130, "pembrolizumab") == [0, 21, 42, 63, 84, 105, 126]
    switch = fc.compose_regimen(given, "pembrolizumab 400 mg q6w", 84)
    assert _dose_days(switch, 200) == [0, 21, 42, 63, 84, 126, 168]
    with pytest.raises(InputError, match=re.escape("regimen = 'stop at day 10' is not allowed; allowed: a stop on or after the"
                                                   " decision day (84)")):
        fc.compose_regimen(given, "stop at day 10", 84)


# ----------------------------------------------------------------------------- the shipped prior
#: the individual parameter that carries each arm's drug effect in bench/forecast_prior.py
DRUG_EFFECT = {"immunotherapy": "kill_rate", "chemotherapy": "chemo_kill_ratio"}


@pytest.mark.parametrize("arm", sorted(fc.shipped_priors()))
def test_shipped_prior_is_a_mechanistic_population_fit_on_unscored_lesions(arm):
    """Every shipped prior (one per arm of data/laleh2022, loaded by the arm's name) is fitted to
    that arm's lesions outside the held-out half that bench/forecast.py scores."""
    shipped = fc.shipped_priors()
    assert shipped["immunotherapy"] == fc.DEFAULT_PRIOR
    drug_effect = DRUG_EFFECT[arm]
    p = fc.load_prior(arm)
    assert p.source == str(shipped[arm])
    assert f"{arm}-arm lesions" in p.description
    assert p.free == ("baseline_tumor_volume", "growth_rate", drug_effect)
    assert p.omega.shape == (len(p.etas), len(p.etas)) and np.all(np.linalg.eigvalsh(p.omega) > 0)
    assert len(p.training_subjects) >= 20 and all(isinstance(x, str) for x in p.training_subjects)
    assert "scored only on lesions not among this fit's subjects" in p.description
    assert p.typical(20.0)["baseline_tumor_volume"] == pytest.approx(p.estimates["V0_RATIO"] * math.pi / 6 * 8000.0)
    assert f"status: {p.status}" in p.description and p.status != "?"


def test_prior_typical_values_scale_volumes_with_the_baseline_scan():
    """A prior's typical baseline volume and carrying capacity are V0_RATIO and K_RATIO times the
    volume of the patient's baseline scan (pi/6 D0^3); rates are the THETAs themselves."""
    est = {"V0_RATIO": 0.9, "POP_GROWTH_RATE": 0.004, "POP_KILL_RATE": 2.0, "K_RATIO": 5.0}
    prior = fc.Prior(est, ("baseline_tumor_volume", "growth_rate", "kill_rate", "carrying_capacity"), ("growth_rate",),
                     np.eye(1), (0.01, 1.0), "gompertz", "hand-written", "test")
    typ = prior.typical(20.0)
    base = math.pi / 6 * 20.0**3
    assert typ == pytest.approx({"baseline_tumor_volume": 0.9 * base, "growth_rate": 0.004, "kill_rate": 2.0,
                                 "carrying_capacity": 5.0 * base}, rel=1e-12)


# ----------------------------------------------------------------------------- the posterior and the forecast
@pytest.mark.slow
@pytest.mark.heavy
def test_map_recovers_a_simulated_patient_and_laplace_draws_match_the_mode():
    from immunopd import nlme

    prior = fc.load_prior()
    days = np.array([0.0, 42.0, 84.0, 126.0, 168.0, 210.0])
    base = 40.0
    typical = prior.typical(base)
    eta_true = np.zeros(len(prior.etas))
    eta_true[prior.etas.index("growth_rate")] = 0.5
    eta_true[prior.etas.index("kill_rate")] = 2.0
    ind = fc._individual(prior, typical, eta_true[None])
    model = fc._nlme_model(prior, Regimen.parse(GIVEN), {}, 2000.0)
    y = np.array(nlme.predict_individuals(model, ind, days[None])[0])
    y[0] = base  # the baseline scan is what the lesion measured
    post = fc.posterior(fc.scans_from_arrays(days, y), GIVEN, prior=prior, draws=4000, seed=1)
    assert post["status"] == "converged"
    for name in ("growth_rate", "kill_rate"):
        k = prior.etas.index(name)
        sd = math.sqrt(post["mode_covariance"][k, k])
        assert abs(post["mode"][k] - eta_true[k]) < 2 * sd + 0.05, name  # noise-free data: the mode is near the truth
    draws = post["eta"][0]
    c = post["mode_covariance"]
    se = np.sqrt((np.outer(np.diag(c), np.diag(c)) + c**2) / len(draws))  # sampling SE of a normal sample's covariance
    assert np.all(np.abs(np.cov(draws.T) - c) < 4 * se)
    assert np.abs(draws.mean(0) - post["mode"]).max() < 4 * np.sqrt(np.diag(c) / len(draws)).max()


def test_baseline_sclever1_sets_the_release_that_reproduces_it():
    import immunopd as ip

    prior = fc.load_prior("immunotherapy")
    assert fc.individualize(prior, {"body_weight": 70.0}, 30.0) is prior
    releases = []
    for measured in (8.0, 30.0):
        ind = fc.individualize(prior, {"baseline_sclever1": measured}, 30.0)
        assert ind.free == prior.free + ("sclever1_release",)
        assert fc.individualize(ind, {"baseline_sclever1": measured}, 30.0) is ind
        typical = ind.typical(30.0)
        assert typical["baseline_tumor_volume"] == pytest.approx(prior.estimates["V0_RATIO"] * math.pi / 6 * 30.0**3)
        ds = ip.simulate(None, {k: float(v) for k, v in typical.items()}, times=[0.0, 1.0], outputs=("sclever1_plasma",))
        assert float(ds.sclever1_plasma.values.reshape(-1)[0]) == pytest.approx(measured, rel=1e-5)
        releases.append(typical["sclever1_release"])
    assert releases[0] < ip.PARAMETERS["sclever1_release"].default < releases[1]
    with pytest.raises(InputError, match=re.escape("covariates.baseline_sclever1 = 4.0 is not allowed; allowed: a level above the"
                                                   " model's tumor-free plasma sClever-1, sclever1_healthy = 5 ng/mL (assumed; the"
                                                   " release is set from the excess over it)")):
        fc.individualize(prior, {"baseline_sclever1": 4.0}, 30.0)


@pytest.mark.slow
@pytest.mark.heavy
def test_higher_baseline_sclever1_forecasts_less_shrinkage():
    scans = fc.scans_from_arrays([0, 42, 84], [30.0, 27.0, 25.0])
    change = {}
    for measured in (12.0, 30.0):
        idata = fc.forecast(scans, ["continue"], given=GIVEN, covariates={"baseline_sclever1": measured}, draws=200,
                            predictive_draws=100, seed=1)
        release = idata.posterior.sclever1_release.values
        assert np.all(release == release.reshape(-1)[0])  # a fixed individual parameter, no eta
        table = fc.forecast_table(idata)
        assert "sclever1_release set to" in table
        assert f"prior: laleh2022_immunotherapy.nc (population fit status: {fc.load_prior().status})" in table
        change[measured] = float(idata.forecast.pct_change_mean.sel(regimen="continue"))
    # more sClever-1, weaker effectors: the same scans forecast less shrinkage (the model's assumption)
    assert change[30.0] > change[12.0] + 5.0


@pytest.mark.slow
@pytest.mark.heavy
def test_forecast_endpoints_agree_with_the_trajectories(tmp_path):
    import arviz as az

    scans = fc.scans_from_arrays([0, 42, 84], [50.0, 44.0, 40.0])
    idata = fc.forecast(scans, ["continue", "stop"], given=GIVEN, predictive_draws=100, draws=200, seed=3)
    f = idata.forecast
    lat = idata.posterior_predictive.sld_latent
    t = lat.time.values
    pct = 100 * (lat / 50.0 - 1)
    at = f.attrs["at_day"]
    resp = (pct.where(lat.time <= at) <= -30).any("time").mean(("chain", "draw"))
    assert f.p_response.values == pytest.approx(resp.values)
    assert f.diff_pct_change_mean.sel(regimen="continue") == 0.0
    assert at in t
    chg = pct.sel(time=at).mean(("chain", "draw"))
    assert f.pct_change_mean.values == pytest.approx(chg.values)
    out = tmp_path / "f.nc"
    idata.to_netcdf(str(out))
    back = az.from_netcdf(str(out))
    assert set(back.groups()) >= {"posterior", "posterior_predictive", "observed_data", "constant_data"}
    assert "recommendation:" in fc.forecast_table(idata)


@pytest.mark.slow
def test_cli_forecast_end_to_end(tmp_path, capsys):
    import arviz as az

    from immunopd.cli import main

    scans = _csv(tmp_path, "time_week,sld_mm\n-2,50\n6,44\n12,41\n")
    out, fig = tmp_path / "f.nc", tmp_path / "fan.png"
    rc = main(["forecast", str(scans), "--given", GIVEN, "--regimen", "continue", "--regimen", "stop", "--draws", "200",
               "--out", str(out), "--plot", str(fig)])
    text = capsys.readouterr().out
    assert rc == 0 and "recommendation:" in text and f"wrote {out}" in text
    back = az.from_netcdf(str(out))
    assert list(back.posterior_predictive.regimen.values) == ["continue", "stop"]
    assert back.observed_data.sld.values.tolist() == [50.0, 44.0, 41.0]
    assert fig.stat().st_size > 10_000


@pytest.mark.slow
def test_nuts_posterior_mean_matches_quadrature():
    """NUTS against a brute-force posterior: the two-eta posterior on an 81 x 81 grid (prior N(0, OMEGA),
    combined-error likelihood written out here), its mean within 4 Monte Carlo SEs of NUTS's."""
    import jax
    import jax.numpy as jnp

    prior = fc.load_prior()
    assert len(prior.etas) == 2
    scans = fc.scans_from_arrays([0.0, 62.0, 103.0], [13.0, 11.0, 10.0])
    post = fc.posterior(scans, GIVEN, prior=prior, method="nuts", draws=600, chains=4, warmup=400, seed=5)
    d = post["diagnostics"]
    assert np.all(d["r_hat"] < 1.01) and d["divergences"] <= 5, post["status"]  # a rare divergence is flagged in status
    model = fc._nlme_model(prior, Regimen.parse(GIVEN), {}, 2000.0)
    typical = prior.typical(13.0)
    sd_prior = np.sqrt(np.diag(prior.omega))
    axes = [np.linspace(-5 * s, 5 * s, 81) for s in sd_prior]
    e1, e2 = np.meshgrid(*axes, indexing="ij")
    grid = np.column_stack([e1.ravel(), e2.ravel()])
    ind = fc._individual(prior, typical, grid)
    f = np.asarray(jax.jit(jax.vmap(lambda q: model.predict.forward(dict(zip(prior.free, q)), jnp.zeros(1), jnp.zeros(1),
                                                                     jnp.asarray(scans.time_day))))(jnp.asarray(ind)))
    prop, add = prior.sigma
    var = prop * f**2 + add
    loglik = -0.5 * np.sum((scans.size_mm - f) ** 2 / var + np.log(var), axis=1)
    logprior = -0.5 * np.einsum("ni,ij,nj->n", grid, np.linalg.inv(prior.omega), grid)
    w = np.exp(loglik + logprior - np.max(loglik + logprior))
    w /= w.sum()
    mean_quad = w @ grid
    eta = post["eta"].reshape(-1, 2)
    mc_se = eta.std(0) / np.sqrt(post["diagnostics"]["ess_bulk"])
    assert np.all(np.abs(eta.mean(0) - mean_quad) < 4 * mc_se + 0.02), (eta.mean(0), mean_quad, mc_se)


def test_compiled_nuts_runs_are_kept_least_recently_used_first_out(monkeypatch):
    """The cache of compiled NUTS runs holds at most _NUTS_CACHE_SIZE; a use moves an entry to the
    end, and the entry dropped is the one used longest ago."""
    monkeypatch.setattr(fc, "_NUTS_RUNNERS", {})
    monkeypatch.setattr(fc, "_NUTS_CACHE_SIZE", 3)
    model = object()
    for k in "abc":
        fc._remember_runner(k, model, k.upper())
    fc._remember_runner("a", model, "A")  # a used again: b is now the oldest
    fc._remember_runner("d", model, "D")
    assert list(fc._NUTS_RUNNERS) == ["c", "a", "d"]
    assert fc._NUTS_RUNNERS["d"] == (model, "D")
