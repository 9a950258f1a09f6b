"""Population fits of the closed-form growth curves (immunopd.popcurves): the predictor against
hand-computed values, recovery of known population parameters from simulated lesions, and the
AIC/BIC table's arithmetic and refusals."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from immunopd.errors import InputError
from immunopd.fitting.curves import CURVE_MODELS
from immunopd.popcurves import CURVE_THETAS, compare_population_models, curve_nlme_model, fit_curve_population

jax.config.update("jax_enable_x64", True)

D0 = 20.0  # mm, the baseline scan's diameter in the closed-form checks
BASEVOL = math.pi / 6 * D0**3  # 4188.790... mm3

#: the curves as numpy formulas, written out independently of immunopd.fitting.curves
REFERENCE = {
    "exponential": lambda t, v0, g, k, d, a: v0 * np.exp(g * t),
    "logistic": lambda t, v0, g, k, d, a: k * v0 * np.exp(g * t) / (k + v0 * (np.exp(g * t) - 1)),
    "gompertz": lambda t, v0, g, k, d, a: k * (v0 / k) ** np.exp(-g * t),
    "bertalanffy": lambda t, v0, g, k, d, a: (k ** (1 / 3) + (v0 ** (1 / 3) - k ** (1 / 3)) * np.exp(-g * t)) ** 3,
    "general_bertalanffy": lambda t, v0, g, k, d, a: (k ** (1 - a) + (v0 ** (1 - a) - k ** (1 - a)) * np.exp(-g * t)) ** (1 / (1 - a)),
    "stein": lambda t, v0, g, k, d, a: v0 * (np.exp(-d * t) + np.exp(g * t) - 1),
}
THETA_AT = {"V0_RATIO": 1.0, "POP_GROWTH_RATE": 0.004, "K_RATIO": 0.5, "POP_SHRINKAGE_RATE": 0.02, "POP_EXPONENT": 0.6}


def predicted(model, theta, basevol, times):
    tv = model.typical({k: jnp.asarray(v) for k, v in theta.items()}, {"BASEVOL": jnp.asarray(basevol)})
    return np.asarray(model.predict(tv, jnp.zeros(1), jnp.zeros(1), jnp.asarray(times, float)))


@pytest.mark.parametrize("name", list(CURVE_MODELS))
def test_predictor_is_the_curve_in_diameter(name):
    model = curve_nlme_model(name)
    theta = {t.name: THETA_AT[t.name] for t in model.thetas}
    t = np.array([0.0, 30.0, 100.0, 400.0])
    f = predicted(model, theta, BASEVOL, t)
    assert f[0] == pytest.approx(D0, rel=1e-12)  # the baseline scan's diameter at V0_RATIO = 1
    v = REFERENCE[name](t, BASEVOL, 0.004, 0.5 * BASEVOL, 0.02, 0.6)
    np.testing.assert_allclose(f, (6 * v / math.pi) ** (1 / 3), rtol=1e-10)
    assert model.covariates == ("BASEVOL",) and model.error == "combined"
    assert model.units["DV"] == "mm" and model.units["growth_rate"] == "1/day"


@pytest.mark.parametrize("name", list(CURVE_MODELS))
def test_log_volume_forms_are_the_curves_of_the_single_lesion_fits(name):
    from immunopd.popcurves import _log_volume

    t = jnp.asarray([0.0, 7.0, 60.0, 300.0, 800.0])
    for k_ratio, g in ((0.3, 0.002), (4.0, 0.02), (1.2, 0.1)):  # shrinking, growing, fast (stein: g t > 30 at day 800)
        p = {"initial_size": jnp.asarray(BASEVOL), "growth_rate": jnp.asarray(g), "carrying_capacity": jnp.asarray(k_ratio * BASEVOL),
             "shrinkage_rate": jnp.asarray(0.03), "exponent": jnp.asarray(0.55)}
        p = {n: p[n] for n in CURVE_MODELS[name].names}
        np.testing.assert_allclose(np.exp(np.asarray(_log_volume(name)(t, p))), np.asarray(CURVE_MODELS[name].function(t, p)),
                                   rtol=1e-10)
    # an extreme individual rate: curves.py's logistic gives inf / inf = NaN, the log form the plateau
    p = {"initial_size": jnp.asarray(BASEVOL), "growth_rate": jnp.asarray(5.0), "carrying_capacity": jnp.asarray(2 * BASEVOL)}
    if name == "logistic":
        assert np.isnan(float(CURVE_MODELS[name].function(jnp.asarray(800.0), p)))
        assert float(_log_volume(name)(jnp.asarray(800.0), p)) == pytest.approx(math.log(2 * BASEVOL))


def test_predictor_hand_numbers():
    # exponential: D(t) = D0 exp(g t / 3); 20 mm, g = 0.003 /day, t = 100 days: 20 e^0.1 = 22.103418 mm
    m = curve_nlme_model("exponential")
    f = predicted(m, {"V0_RATIO": 1.0, "POP_GROWTH_RATE": 0.003}, BASEVOL, [0.0, 100.0])
    assert f == pytest.approx([20.0, 22.103418], abs=1e-6)
    # gompertz with the plateau at half the baseline volume, g = 0.01 /day, t = 100 days:
    # V = V0 0.5 (1/0.5)^(e^-1) = V0 0.5 * 2^0.367879 = 0.5 * 1.290459 V0 = 0.645229 V0,
    # D = 20 * 0.645229^(1/3) = 20 * 0.864114 = 17.2823 mm
    m = curve_nlme_model("gompertz")
    f = predicted(m, {"V0_RATIO": 1.0, "POP_GROWTH_RATE": 0.01, "K_RATIO": 0.5}, BASEVOL, [0.0, 100.0])
    assert f == pytest.approx([20.0, 17.2823], abs=1e-4)
    # V0_RATIO scales the volume: 1.331 V0 is 1.1 D0
    f = predicted(m, {"V0_RATIO": 1.331, "POP_GROWTH_RATE": 0.01, "K_RATIO": 0.5}, BASEVOL, [0.0])
    assert f[0] == pytest.approx(22.0, rel=1e-12)


def test_model_layout_mirrors_the_mechanistic_one():
    m = curve_nlme_model("general_bertalanffy")
    assert [t.name for t in m.thetas] == ["V0_RATIO", "POP_GROWTH_RATE", "K_RATIO", "POP_EXPONENT"]
    assert m.etas == ("initial_size", "growth_rate", "carrying_capacity")  # the exponent is a population value
    assert m.parameter_names()[-2:] == ["SIGMA(proportional)", "SIGMA(additive)"]
    bounds = {t.name: (t.lower, t.upper) for t in m.thetas}
    assert bounds == {"V0_RATIO": (0.0, math.inf), "POP_GROWTH_RATE": (0.0, 1.0), "K_RATIO": (0.0, math.inf),
                      "POP_EXPONENT": (0.01, 0.99)}
    m = curve_nlme_model("stein", ["initial_size", "growth_rate"], initial={"POP_SHRINKAGE_RATE": 0.03}, sigma=(0.02, 0.5))
    assert m.etas == ("initial_size", "growth_rate") and m.sigma == (0.02, 0.5)
    assert {t.name: t.initial for t in m.thetas}["POP_SHRINKAGE_RATE"] == 0.03
    assert set(CURVE_THETAS) >= {p for c in CURVE_MODELS.values() for p in c.names}


# ----------------------------------------------------------------------------- recovery
TRUE = {"V0_RATIO": 1.0, "POP_GROWTH_RATE": 0.004, "OMEGA(initial_size,initial_size)": 0.04,
        "OMEGA(growth_rate,growth_rate)": 0.3, "SIGMA(proportional)": 0.0025, "SIGMA(additive)": 0.25}
SCANS = (0.0, 42.0, 84.0, 126.0, 189.0, 252.0)


def simulate_exponential(true, n=30, seed=0):
    """Lesions from the exponential population model, in numpy: V_i(t) = V0_RATIO BASEVOL_i e^{eta_V}
    exp(g e^{eta_g} t), diameter (6 V / pi)^(1/3), combined error; baselines 15-40 mm."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        d0 = rng.uniform(15.0, 40.0)
        basevol = math.pi / 6 * d0**3
        v0 = true["V0_RATIO"] * basevol * math.exp(rng.normal(0, math.sqrt(true["OMEGA(initial_size,initial_size)"])))
        g = true["POP_GROWTH_RATE"] * math.exp(rng.normal(0, math.sqrt(true["OMEGA(growth_rate,growth_rate)"])))
        for t in SCANS:
            f = (6 / math.pi * v0 * math.exp(g * t)) ** (1 / 3)
            y = f + math.sqrt(true["SIGMA(proportional)"] * f**2 + true["SIGMA(additive)"]) * rng.standard_normal()
            rows.append({"ID": f"L{i}", "TIME": t, "AMT": 0.0, "DV": max(y, 0.0), "BASEVOL": basevol})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def exponential_fit():
    return fit_curve_population("exponential", simulate_exponential(TRUE))


def test_fit_recovers_the_simulated_population(exponential_fit):
    """Tolerances from 10 seeds of this simulation (30 lesions, 6 scans): V0_RATIO came within 5 %
    and POP_GROWTH_RATE within 15 % of the truth, both within 1.5 of their SEs; each OMEGA within
    0.45 to 1.4 times its value; the residual SD at 30 mm within 10 % (its two SIGMAs trade off)."""
    fit = exponential_fit
    assert fit.status == "converged", fit.status
    assert fit.dataset.attrs["n_subjects"] == 30 and fit.dataset.attrs["n_observations"] == 180
    est, se = fit.estimates(), fit.standard_errors()
    for name, rel in (("V0_RATIO", 0.06), ("POP_GROWTH_RATE", 0.2)):
        assert est[name] == pytest.approx(TRUE[name], rel=rel), name
        assert abs(est[name] - TRUE[name]) <= 3 * se[name], name  # within 3 of its own standard errors
    for name in ("OMEGA(initial_size,initial_size)", "OMEGA(growth_rate,growth_rate)"):
        assert 0.4 < est[name] / TRUE[name] < 2.5, name

    def sd(p, d):
        return math.sqrt(p["SIGMA(proportional)"] * d**2 + p["SIGMA(additive)"])

    assert sd(est, 30.0) == pytest.approx(sd(TRUE, 30.0), rel=0.15)


GOMPERTZ = {"V0_RATIO": 1.0, "POP_GROWTH_RATE": 0.01, "K_RATIO": 0.5, "OMEGA(initial_size,initial_size)": 0.04,
            "OMEGA(growth_rate,growth_rate)": 0.2, "OMEGA(carrying_capacity,carrying_capacity)": 0.5,
            "SIGMA(proportional)": 0.0025, "SIGMA(additive)": 0.25}


def simulate_gompertz(true, n=30, seed=0):
    """Lesions from the Gompertz population model, in numpy: plateau K_RATIO BASEVOL_i e^{eta_K}
    (typically half the baseline volume; about a sixth of the lesions have theirs above it and
    grow), V(t) = K (V0 / K)^{exp(-g t)}, combined error."""
    rng = np.random.default_rng(seed)
    sd = np.sqrt([true[f"OMEGA({n},{n})"] for n in ("initial_size", "growth_rate", "carrying_capacity")])
    rows = []
    for i in range(n):
        d0 = rng.uniform(15.0, 40.0)
        basevol = math.pi / 6 * d0**3
        e = rng.standard_normal(3) * sd
        v0 = true["V0_RATIO"] * basevol * math.exp(e[0])
        g = true["POP_GROWTH_RATE"] * math.exp(e[1])
        k = true["K_RATIO"] * basevol * math.exp(e[2])
        for t in SCANS:
            f = (6 / math.pi * k * (v0 / k) ** math.exp(-g * t)) ** (1 / 3)
            y = f + math.sqrt(true["SIGMA(proportional)"] * f**2 + true["SIGMA(additive)"]) * rng.standard_normal()
            rows.append({"ID": f"L{i}", "TIME": t, "AMT": 0.0, "DV": max(y, 0.0), "BASEVOL": basevol})
    return pd.DataFrame(rows)


def test_gompertz_fit_recovers_the_typical_course():
    """The plateau scaled by BASEVOL in a fit. Tolerances from 6 seeds of this simulation (30
    lesions, 6 scans): V0_RATIO came within 8 %, POP_GROWTH_RATE within 40 % and K_RATIO within
    30 % of the truth; three OMEGAs from 30 lesions are weakly determined (one collapsed to 0 in
    two seeds), so only the typical values are checked."""
    fit = fit_curve_population("gompertz", simulate_gompertz(GOMPERTZ), covariance=None)
    assert fit.estimation_status == "converged", fit.estimation_status
    est = fit.estimates()
    for name, rel in (("V0_RATIO", 0.1), ("POP_GROWTH_RATE", 0.45), ("K_RATIO", 0.35)):
        assert est[name] == pytest.approx(GOMPERTZ[name], rel=rel), name


# ----------------------------------------------------------------------------- the table
def result(ofv, k, n_obs, n_sub=20, dv=None, estimation="converged", covariance="ok"):
    """A stand-in nlme result Dataset with what compare_population_models reads."""
    names = [f"P{i}" for i in range(k)]
    data = {"ofv": ((), ofv), "estimate": ("parameter", np.ones(k))}
    if dv is not None:
        data["DV"] = ("observation", np.asarray(dv, float))
    return xr.Dataset(data, coords={"parameter": names},
                      attrs={"n_subjects": n_sub, "n_observations": n_obs, "estimation_status": estimation,
                             "covariance_status": covariance})


def test_aic_bic_by_hand():
    table = compare_population_models({"a": result(100.0, 6, 150), "b": result(90.0, 8, 150, covariance="not requested")})
    # a: AIC 100 + 12 = 112, BIC 100 + 6 ln 150 = 100 + 6 * 5.0106353 = 130.0638
    # b: AIC  90 + 16 = 106, BIC  90 + 8 ln 150 =  90 + 8 * 5.0106353 = 130.0851
    assert list(table.columns) == ["model", "OFV", "k", "n_subjects", "n_observations", "AIC", "BIC", "delta_AIC",
                                   "delta_BIC", "estimation_status", "covariance_status"]
    assert list(table.model) == ["b", "a"]  # best AIC first
    b, a = table.iloc[0], table.iloc[1]
    assert (a.AIC, b.AIC) == (112.0, 106.0)
    assert a.BIC == pytest.approx(130.0638, abs=1e-4) and b.BIC == pytest.approx(130.0851, abs=1e-4)
    assert (a.delta_AIC, b.delta_AIC) == (6.0, 0.0)
    assert a.delta_BIC == 0.0 and b.delta_BIC == pytest.approx(0.0213, abs=1e-4)
    assert (a.k, b.k, a.n_observations) == (6, 8, 150)
    assert b.covariance_status == "not requested" and a.estimation_status == "converged"


def test_table_of_real_fits(exponential_fit, tmp_path):
    from immunopd.io import open_result, write_netcdf

    # a fit read back from netCDF (as bench/popcurves.py reads `immunopd popfit --out`) is a row too
    read_back = open_result(write_netcdf(exponential_fit.dataset, tmp_path / "fit.nc"))
    table = compare_population_models({"exponential": exponential_fit, "as read back": read_back})
    assert list(table.model) == ["exponential", "as read back"] and table.delta_AIC.tolist() == [0.0, 0.0]
    row = table.iloc[0]
    assert row.k == 6 and row.n_observations == 180  # 2 THETA + 2 OMEGA + 2 SIGMA
    assert row.OFV == pytest.approx(exponential_fit.ofv)
    assert row.AIC == pytest.approx(exponential_fit.ofv + 12) and row.BIC == pytest.approx(exponential_fit.ofv + 6 * math.log(180))
    assert row.estimation_status == "converged" and row.covariance_status == "ok"


def test_fits_to_different_data_are_refused():
    with pytest.raises(InputError) as err:
        compare_population_models({"gompertz": result(100.0, 8, 150), "mechanistic": result(90.0, 8, 120, n_sub=20)})
    assert str(err.value) == ("fits = {'gompertz': '20 subjects, 150 observations', 'mechanistic': '20 subjects,"
                              " 120 observations'} is not allowed; allowed: fits to the same data (same subjects and"
                              " observations): OFV, AIC and BIC are only comparable then")
    with pytest.raises(InputError, match="fits = .*'b': '21 subjects, 150 observations'"):
        compare_population_models({"a": result(100.0, 8, 150), "b": result(90.0, 8, 150, n_sub=21)})
    # same counts, other lesions: the observed values differ
    with pytest.raises(InputError) as err:
        compare_population_models({"a": result(100.0, 8, 3, dv=[1, 2, 3]), "b": result(90.0, 8, 3, dv=[1, 2, 4])})
    assert str(err.value) == ("fits = {'b': \"observed DV differ from those of 'a'\"} is not allowed; allowed: fits to"
                              " the same data (same DV values): OFV, AIC and BIC are only comparable then")


def test_unknown_curve_and_bad_arguments():
    with pytest.raises(InputError) as err:
        curve_nlme_model("gomperz")
    assert str(err.value) == ("name = 'gomperz' is not allowed; allowed: one of the curve models ['exponential',"
                              " 'logistic', 'gompertz', 'bertalanffy', 'general_bertalanffy', 'stein']")
    with pytest.raises(InputError, match=r"random = \['kill_rate'\] is not allowed; allowed: a non-empty list of"
                                         r" distinct parameters of the exponential curve: \['initial_size', 'growth_rate'\]"):
        curve_nlme_model("exponential", ["kill_rate"])
    with pytest.raises(InputError, match=r"initial\['K_RATIO'\] = 2 is not allowed; allowed: one of the exponential"):
        curve_nlme_model("exponential", initial={"K_RATIO": 2})
    with pytest.raises(InputError, match="fits = {} is not allowed"):
        compare_population_models({})
    with pytest.raises(InputError, match="name = 'nope' is not allowed"):
        fit_curve_population("nope", pd.DataFrame())
