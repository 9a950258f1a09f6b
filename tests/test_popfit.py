"""Population fit of the mechanistic model (immunopd.popfit): predictor, VPC/GOF data, CLI."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from immunopd import cli, nlme
from immunopd.popfit import (DEFAULT_RANDOM, gof, lesion_data, mechanistic_nlme_model, mechanistic_predictor, plot_popfit,
                             popfit, vpc)

jax.config.update("jax_enable_x64", True)

TRUE = {"V0_RATIO": 1.0, "POP_GROWTH_RATE": 0.003, "POP_KILL_RATE": 1.0,
        "OMEGA(baseline_tumor_volume,baseline_tumor_volume)": 0.04, "OMEGA(growth_rate,growth_rate)": 0.09,
        "OMEGA(kill_rate,kill_rate)": 0.5, "SIGMA(proportional)": 0.0025, "SIGMA(additive)": 0.25}


@pytest.fixture(scope="module")
def model():
    return mechanistic_nlme_model()


def synthetic(model, n=8, seed=1):
    """Lesions simulated by the same predictor from TRUE: the VPC's simulator, one replicate."""
    from immunopd.popfit import _simulate, _subjects

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        d0 = float(rng.uniform(15, 40))
        for t in (0.0, 42.0, 84.0, 126.0, 189.0, 252.0):
            rows.append({"ID": f"L{i}", "TIME": t, "AMT": 0.0, "DV": d0, "BASEVOL": math.pi / 6 * d0**3})
    df = pd.DataFrame(rows)
    y = _simulate(model, _subjects(model, df), TRUE, 1, seed)[0]
    df["DV"] = np.maximum(y.reshape(-1), 0.0)
    return df


def test_predictor_padding_and_baseline():
    pr = mechanistic_predictor("immunotherapy")
    v0 = 8000.0
    p = {"baseline_tumor_volume": jnp.asarray(v0), "growth_rate": jnp.asarray(0.003), "kill_rate": jnp.asarray(1.0)}
    t = jnp.asarray([0.0, 42.0, 84.0, 126.0])
    run = jax.jit(lambda q, ts: pr(q, None, None, ts))
    f = np.asarray(run(p, t))
    padded = np.asarray(run(p, jnp.concatenate([t, jnp.zeros(3)])))
    assert f[0] == pytest.approx((6 * v0 / math.pi) ** (1 / 3), rel=1e-9)  # mm at the baseline scan
    np.testing.assert_allclose(padded[:4], f, rtol=1e-12)  # nlme's zero padding does not disturb the solve


@pytest.mark.slow
def test_predictor_reverse_mode_equals_forward_mode():
    pr = mechanistic_predictor("immunotherapy")
    p = {"baseline_tumor_volume": jnp.asarray(8000.0), "growth_rate": jnp.asarray(0.003), "kill_rate": jnp.asarray(1.0)}
    t = jnp.asarray([0.0, 42.0, 84.0, 126.0])
    # reverse mode (nlme's gradient) through the custom JVP equals forward mode
    g_rev = jax.jit(jax.grad(lambda q: pr(q, None, None, t)[-1]))(p)
    g_fwd = jax.jit(jax.jacfwd(lambda q: pr(q, None, None, t)[-1]))(p)
    for k in DEFAULT_RANDOM:
        assert np.isfinite(float(g_rev[k])) and float(g_rev[k]) == pytest.approx(float(g_fwd[k]), rel=1e-10)


def test_lesion_data_selects_first_lesions_with_enough_scans():
    courses = [("a", np.array([0.0, 40.0]), np.array([10.0, 9.0])),
               ("b", np.array([0.0, 40, 80, 120]), np.array([20.0, 18, 15, 12])),
               ("c", np.array([0.0, 40, 80, 120, 160]), np.array([5.0, 5, 6, 7, 8])),
               ("d", np.array([0.0, 40, 80, 120]), np.array([7.0, 7, 7, 7]))]
    df = lesion_data(courses, min_scans=4, lesions=2)
    assert list(df.ID.unique()) == ["b", "c"]
    assert df.BASEVOL.iloc[0] == pytest.approx(math.pi / 6 * 20.0**3)


def test_vpc_shapes_and_units(model):
    df = synthetic(model)
    v = vpc(model, df, TRUE, replicates=5, bins=4, seed=0)
    assert v.observed.dims == ("bin", "percentile") and v.observed.shape == (4, 3)
    assert list(v.percentile.values) == [5.0, 50.0, 95.0]
    for k in ("observed", "simulated_median", "simulated_lower", "simulated_upper"):
        assert v[k].attrs["units"] == "%"
        assert np.all(np.isfinite(v[k].values))
    assert v.time.attrs["units"] == "day"
    assert int(v.n_observed.sum()) == 8 * 5  # every scan but the baselines
    assert np.all(v.simulated_lower <= v.simulated_upper)


def test_popfit_bad_lesions_message():
    from immunopd.errors import InputError

    with pytest.raises(InputError) as exc:
        popfit(lesions=0)
    assert str(exc.value) == "lesions = 0 is not allowed; allowed: a positive integer (or None for every lesion)"


def test_popfit_optimizer_is_checked_before_the_data_are_read(monkeypatch):
    from immunopd import calibration
    from immunopd.errors import InputError

    monkeypatch.setattr(calibration, "observed_courses", lambda *a, **k: pytest.fail("read the data before the check"))
    with pytest.raises(InputError) as exc:
        popfit(lesions=2, optimizer="lbfgs")
    assert str(exc.value) == "optimizer = 'lbfgs' is not allowed; allowed: one of ['bfgs', 'anchored']"
    with pytest.raises(InputError) as exc:
        popfit(lesions=2, optimizer="anchored", max_step=float("nan"))
    assert str(exc.value) == "max_step = nan is not allowed; allowed: a finite number > 0 (unconstrained scale)"


def test_optimizer_options_reach_nlme_fit(tmp_path, monkeypatch):
    """popfit and `immunopd popfit` hand --optimizer, --max-step and --covariance to nlme.fit."""
    from immunopd import popfit as popfit_module

    seen = []

    class Stop(Exception):
        pass

    def recording(*args, **kws):
        seen.append((kws["optimizer"], kws["max_step"], kws["covariance"]))
        raise Stop

    monkeypatch.setattr(nlme, "fit", recording)
    with pytest.raises(Stop):
        popfit(lesions=2, optimizer="anchored", max_step=0.25)
    monkeypatch.setattr(popfit_module, "popfit", lambda **kws: recording(**kws))
    with pytest.raises(Stop):
        cli.main(["popfit", "--lesions", "2", "--optimizer", "anchored", "--max-step", "0.5", "--out", str(tmp_path / "f.nc")])
    with pytest.raises(Stop):
        cli.main(["popfit", "--lesions", "2", "--covariance", "none", "--out", str(tmp_path / "f.nc")])
    assert seen == [("anchored", 0.25, "sandwich"), ("anchored", 0.5, "sandwich"), ("bfgs", 1.0, None)]


def test_cli_optimizer_options_are_checked(tmp_path, capsys):
    out = str(tmp_path / "fit.nc")
    assert cli.main(["popfit", "--optimizer", "anchored", "--max-step", "0", "--out", out]) == 2
    assert "argument --max-step: --max-step = '0' is not allowed; allowed: a finite number > 0" in capsys.readouterr().err
    assert cli.main(["popfit", "--optimizer", "newton", "--out", out]) == 2
    assert "argument --optimizer: invalid choice: 'newton'" in capsys.readouterr().err
    assert not (tmp_path / "fit.nc").exists()


def test_cli_checks_outputs_before_fitting(tmp_path, capsys):
    assert cli.main(["popfit", "--lesions", "2", "--out", str(tmp_path / "fit.csv")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"immunopd: error: --out = {str(tmp_path / 'fit.csv')!r} is not allowed; allowed: a path ending in .nc"
    assert cli.main(["popfit", "--lesions", "2", "--out", str(tmp_path / "fit.nc"), "--plot", str(tmp_path / "f.pdf")]) == 2
    assert "allowed: a path ending in .png" in capsys.readouterr().err
    assert not (tmp_path / "fit.nc").exists()


@pytest.mark.slow
@pytest.mark.heavy
def test_simulation_recovery(model):
    """Six lesions x six scans from TRUE: typical values within 35 % (a handful of lesions)."""
    df = synthetic(model, n=6)
    res = nlme.fit(model, df, covariance=None, gtol=1e-2, maxiter=60)
    est = res.estimates()
    for k in ("V0_RATIO", "POP_GROWTH_RATE", "POP_KILL_RATE"):
        assert est[k] == pytest.approx(TRUE[k], rel=0.35), (k, est[k])
    g = gof(res.dataset)
    assert set(g.data_vars) >= {"DV", "PRED", "IPRED", "CWRES", "TIME"}
    assert g.DV.attrs["units"] == "mm" and g.TIME.attrs["units"] == "day" and g.sizes["observation"] == 36


@pytest.mark.slow
@pytest.mark.heavy
def test_cli_writes_fit_and_png(tmp_path):
    out, png = tmp_path / "fit.nc", tmp_path / "fit.png"
    assert cli.main(["popfit", "--lesions", "2", "--maxiter", "1", "--replicates", "3", "--out", str(out),
                     "--plot", str(png)]) == 0
    from immunopd.io import open_result

    ds = open_result(out)
    assert ds.attrs["kind"] == "popfit" and ds.sizes["subject"] == 2 and "vpc_observed" in ds
    assert png.stat().st_size > 10_000


def test_cli_lesions_model_and_random_are_checked(tmp_path, capsys):
    out = str(tmp_path / "fit.nc")
    assert cli.main(["popfit", "--lesions", "0", "--out", out]) == 2
    assert "argument --lesions: '0' is not allowed; allowed: a positive integer or 'all'" in capsys.readouterr().err
    assert cli._lesion_count("all") is None and cli._lesion_count("12") == 12
    assert cli.main(["popfit", "--model", "gompretz", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "gompretz" in err and "gompertz" in err
    assert cli.main(["popfit", "--random", "growth_rate,tumour_size", "--out", out]) == 2
    assert "random[1] = 'tumour_size' is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "fit.nc").exists()


def _fit_dataset():
    """A hand-written popfit result (what population_from_fit reads)."""
    import xarray as xr

    names = ["V0_RATIO", "POP_GROWTH_RATE", "POP_KILL_RATE", "OMEGA(growth_rate,growth_rate)",
             "OMEGA(kill_rate,growth_rate)", "OMEGA(kill_rate,kill_rate)", "SIGMA(proportional)", "SIGMA(additive)"]
    est = [0.9, 0.004, 2.0, 0.16, 0.1, 0.25, 0.01, 1.0]
    return xr.Dataset({"estimate": ("parameter", est), "ofv": ((), 123.0),
                       "covariate_BASEVOL": ("subject", [1000.0, 8000.0, 27000.0])},
                      coords={"parameter": names, "individual_parameter": list(DEFAULT_RANDOM),
                              "eta": ["growth_rate", "kill_rate"], "subject": ["a", "b", "c"]},
                      attrs={"n_subjects": 3})


def test_population_from_fit_draws_the_estimated_distribution():
    from immunopd.popfit import population_from_fit

    pop = population_from_fit(_fit_dataset(), 20_000, seed=3)
    p = pop.params()
    lg, lk = np.log(p["growth_rate"]), np.log(p["kill_rate"])
    assert lg.mean() == pytest.approx(math.log(0.004), abs=0.01) and lg.var() == pytest.approx(0.16, rel=0.05)
    assert lk.mean() == pytest.approx(math.log(2.0), abs=0.01) and lk.var() == pytest.approx(0.25, rel=0.05)
    assert np.corrcoef(lg, lk)[0, 1] == pytest.approx(0.1 / math.sqrt(0.16 * 0.25), abs=0.03)
    # no eta on the baseline volume here: V0_RATIO times a fitted lesion's BASEVOL, exactly
    assert set(np.unique(p["baseline_tumor_volume"])) == {900.0, 7200.0, 24300.0}
    assert pop.data.attrs["source"] == "immunopd popfit"
    with pytest.raises(Exception, match=r"n = 0 is not allowed"):
        population_from_fit(_fit_dataset(), 0)


def test_carrying_capacity_scales_with_the_lesions_baseline_volume():
    """A free carrying capacity is K_RATIO x BASEVOL, like the baseline volume (lesions span three
    decades of volume); its initial K_RATIO is the ratio of the two defaults (1e6 / 1e4 mm3), and a
    population drawn from such a fit takes both volumes from one lesion."""
    from immunopd.popfit import population_from_fit

    free = ("baseline_tumor_volume", "growth_rate", "kill_rate", "carrying_capacity")
    m = mechanistic_nlme_model("immunotherapy", free, random=("growth_rate", "carrying_capacity"))
    init = {t.name: t.initial for t in m.thetas}
    assert init["K_RATIO"] == pytest.approx(100.0) and init["V0_RATIO"] == 1.0 and m.covariates == ("BASEVOL",)
    typ = m.typical({"V0_RATIO": 0.9, "POP_GROWTH_RATE": 0.004, "POP_KILL_RATE": 2.0, "K_RATIO": 5.0}, {"BASEVOL": 8000.0})
    assert typ["carrying_capacity"] == 40_000.0 and typ["baseline_tumor_volume"] == 7200.0 and typ["kill_rate"] == 2.0
    names = ["V0_RATIO", "POP_GROWTH_RATE", "POP_KILL_RATE", "K_RATIO", "OMEGA(growth_rate,growth_rate)",
             "OMEGA(carrying_capacity,carrying_capacity)", "SIGMA(proportional)", "SIGMA(additive)"]
    ds = _fit_dataset().drop_vars(["estimate", "parameter"]).assign_coords(
        parameter=names, individual_parameter=list(free), eta=["growth_rate", "carrying_capacity"])
    ds["estimate"] = ("parameter", [0.9, 0.004, 2.0, 5.0, 0.16, 0.25, 0.01, 1.0])
    p = population_from_fit(ds, 5_000, seed=1).params()
    ratio = p["carrying_capacity"] / p["baseline_tumor_volume"]  # = 5 / 0.9 x exp(eta), whatever the lesion
    assert np.log(ratio).mean() == pytest.approx(math.log(5.0 / 0.9), abs=0.03)
    assert np.log(ratio).var() == pytest.approx(0.25, rel=0.06)
    assert set(np.unique(p["baseline_tumor_volume"])) == {900.0, 7200.0, 24300.0}


def test_cli_population_out_is_checked_before_fitting(tmp_path, capsys):
    out, pop = str(tmp_path / "fit.nc"), str(tmp_path / "pop.csv")
    assert cli.main(["popfit", "--out", out, "--population-out", pop]) == 2
    assert "allowed: a path ending in .nc" in capsys.readouterr().err
    assert cli.main(["popfit", "--model", "gompertz", "--out", out, "--population-out", str(tmp_path / "p.nc")]) == 2
    assert "only with --model mechanistic" in capsys.readouterr().err
    assert cli.main(["popfit", "--out", out, "--population-out", str(tmp_path / "p.nc"), "--patients", "0"]) == 2
    assert "--patients = 0 is not allowed; allowed: a positive integer" in capsys.readouterr().err
    assert cli.main(["popfit", "--arm", "all", "--covariate", "growth_rate=ARM", "--out", out, "--population-out",
                     str(tmp_path / "p.nc")]) == 2
    assert capsys.readouterr().err == ("immunopd: error: --covariate = 'growth_rate=ARM' is not allowed; allowed: no effect of"
                                       " ARM with --population-out (a virtual patient takes no arm: the trial gives the"
                                       " regimen)\n")
    assert not list(tmp_path.iterdir())


BOTH_ARMS = {0: "immunotherapy", 1: "chemotherapy"}
BSA = {"body_surface_area": 1.8}  # m2: docetaxel is dosed in mg/m2


def test_both_arm_predictor_gives_each_lesion_its_own_arms_regimen():
    """One predictor for both arms reads a lesion's ARM (a data item) and solves on that arm's
    regimen: its predictions equal those of the one-arm predictors (atezolizumab 1200 mg q3w for
    ARM 0, docetaxel 75 mg/m2 q3w for ARM 1) to rounding (vmapped over the arms here)."""
    free = ("baseline_tumor_volume", "growth_rate", "kill_rate", "chemo_kill_ratio")
    both = mechanistic_predictor(BOTH_ARMS, free, params=BSA)
    assert both.covariates == ("ARM",) and both.arm_codes == (0.0, 1.0)
    assert both.regimen == ("by ARM: 0 = atezolizumab 1200 mg q3w over 60 min; 1 = docetaxel 75 mg/m2 q3w over 60 min")
    p = {"baseline_tumor_volume": 5000.0, "growth_rate": 0.004, "kill_rate": 0.02, "chemo_kill_ratio": 20.0}
    ts = jnp.asarray([0.0, 42.0, 84.0, 126.0, 250.0])
    by_arm = jax.jit(jax.vmap(lambda arm: both.forward(p | {"ARM": arm}, None, None, ts)))(jnp.asarray([0.0, 1.0, 2.0]))
    assert np.all(np.isnan(by_arm[2]))  # a code of no arm: no prediction (nlme refuses it in the data before)
    for k, arm in enumerate(("immunotherapy", "chemotherapy")):
        single = mechanistic_predictor(arm, free, params=BSA)
        np.testing.assert_allclose(np.asarray(by_arm[k]), np.asarray(jax.jit(lambda q: single.forward(q, None, None, ts))(p)),
                                   rtol=1e-13)
    assert float(by_arm[1, -1]) < float(by_arm[0, -1]) - 10  # docetaxel shrinks what the immune kill alone does not


def test_both_arm_model_declares_the_arm_and_refuses_other_codes():
    from immunopd.errors import InputError

    m = mechanistic_nlme_model(BOTH_ARMS, ("baseline_tumor_volume", "growth_rate", "chemo_kill_ratio"), params=BSA)
    assert m.covariates == ("BASEVOL", "ARM") and m.predictor_covariates == ("ARM",) and m.categories == {"ARM": (0.0, 1.0)}
    df = pd.DataFrame({"ID": ["a", "a"], "TIME": [0.0, 42.0], "AMT": 0.0, "DV": [20.0, 18.0], "BASEVOL": 4000.0, "ARM": 2.0})
    with pytest.raises(InputError) as exc:
        nlme._prepare(m, df)
    assert str(exc.value) == "covariate ARM of subject ID a = 2.0 is not allowed; allowed: one of the model's levels [0.0, 1.0]"
    with pytest.raises(InputError) as exc:
        mechanistic_predictor({})
    assert str(exc.value) == ("regimen = {} is not allowed; allowed: a regimen, or a mapping {arm code: regimen} with one"
                              " or more arms")
    with pytest.raises(InputError) as exc:
        mechanistic_predictor({"chemo": "chemotherapy"}, params=BSA)
    assert str(exc.value) == "regimen arm code = 'chemo' is not allowed; allowed: a finite number (the arm's code in the data)"
    with pytest.raises(InputError) as exc:
        nlme.predict_individuals(m, np.ones((1, 3)), np.zeros((1, 2)), covariates={"ARM": [2.0]})
    assert str(exc.value) == "covariates['ARM'] = 2.0 is not allowed; allowed: one of the model's levels [0.0, 1.0]"
    import dataclasses

    with pytest.raises(InputError) as exc:
        dataclasses.replace(m, covariates=("BASEVOL", "growth_rate"), predictor_covariates=("growth_rate",))
    assert str(exc.value) == ("NLMEModel.predictor_covariates[0] = 'growth_rate' is not allowed; allowed: a name that is"
                              " not an individual parameter's ['baseline_tumor_volume', 'growth_rate', 'chemo_kill_ratio']"
                              " (the prediction reads both from one dict)")
    with pytest.raises(InputError) as exc:
        popfit(arm="both")
    assert str(exc.value) == "arm = 'both' is not allowed; allowed: one of ['immunotherapy', 'chemotherapy', 'all']"


@pytest.mark.slow
@pytest.mark.heavy
def test_both_arms_in_one_fit_with_an_arm_effect():
    """popfit(arm="all"): the first lesions of each arm, each on its own regimen, an effect of the
    arm on the growth rate; the result keeps each lesion's arm, the VPC stratifies by it, and a
    virtual population is refused from a fit whose effect is a treatment's, not a patient's."""
    from immunopd.errors import InputError
    from immunopd.popfit import population_from_fit

    pf = popfit(arm="all", lesions=2, free=("baseline_tumor_volume", "growth_rate"), random=("growth_rate",),
                covariates={"growth_rate": "ARM"}, covariance=None, maxiter=2, replicates=3, stratify="ARM")
    ds = pf.fit.dataset
    assert ds.sizes["subject"] == 4 and list(ds["covariate_ARM"].values) == [0.0, 0.0, 1.0, 1.0]
    assert "by ARM: 0 = atezolizumab" in ds.attrs["model"]
    est = pf.fit.estimates()
    assert set(est) >= {"V0_RATIO", "POP_GROWTH_RATE", "GROWTH_RATE_ARM1"} and math.isfinite(pf.fit.ofv)
    assert list(pf.vpc.stratum.values) == [0.0, 1.0]
    # each lesion's population prediction is its own arm's one-arm predictor at its typical values
    free = ("baseline_tumor_volume", "growth_rate")
    for subject, arm in zip(ds.subject.values[[0, 2]], ("immunotherapy", "chemotherapy")):
        rows = ds.ID.values == subject
        base = float(ds["covariate_BASEVOL"].sel(subject=subject))
        growth = est["POP_GROWTH_RATE"] * (est["GROWTH_RATE_ARM1"] if arm == "chemotherapy" else 1.0)
        single = mechanistic_predictor(arm, free, params=BSA)
        p = {"baseline_tumor_volume": est["V0_RATIO"] * base, "growth_rate": growth}
        expected = jax.jit(lambda q, t: single.forward(q, None, None, t))(p, jnp.asarray(ds.TIME.values[rows]))
        np.testing.assert_allclose(ds.PRED.values[rows], np.asarray(expected), rtol=1e-9)
    with pytest.raises(InputError) as exc:
        population_from_fit(pf, 10)
    assert str(exc.value) == ("result = 'a fit with effects of the arm (GROWTH_RATE_ARM1)' is not allowed; allowed: a fit"
                              " without effects of ARM (a virtual patient takes no arm: the trial gives the regimen)")
