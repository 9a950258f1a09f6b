"""Simulation and re-estimation (immunopd.sse, PsN's SSE): the simulated rows against the closed-form
curve, the summary's arithmetic by hand, the refusals, and recovery of known parameters (the
exponential curve fast; the mechanistic population model of bench/sse.py as a small slow run)."""

import math

import jax
import numpy as np
import pandas as pd
import pytest

from immunopd import sse
from immunopd.errors import InputError
from immunopd.popcurves import curve_nlme_model

jax.config.update("jax_enable_x64", True)

EXP_TRUTH = {"V0_RATIO": 1.0, "POP_GROWTH_RATE": 0.004, "OMEGA(initial_size,initial_size)": 0.01,
             "OMEGA(growth_rate,growth_rate)": 0.09, "SIGMA(proportional)": 0.0025, "SIGMA(additive)": 0.25}


def _design(n, rng, times=(0.0, 42.0, 84.0, 126.0, 189.0, 252.0)):
    rng = np.random.default_rng(rng)
    rows = []
    for i in range(n):
        d0 = float(rng.uniform(15, 40))
        rows += [{"ID": f"L{i:03d}", "TIME": t, "AMT": 0.0, "DV": d0, "BASEVOL": math.pi / 6 * d0**3} for t in times]
    return pd.DataFrame(rows)


def test_simulated_rows_are_the_curve_at_zero_variances_whatever_the_row_order():
    model = curve_nlme_model("exponential")
    design = _design(5, 1).sample(frac=1.0, random_state=3).set_index(np.arange(100, 130))  # interleaved subjects
    design["DV"] = 0  # an integer DV column: simulate must still write float diameters into it
    exact = dict(EXP_TRUTH, **{"OMEGA(initial_size,initial_size)": 0.0, "OMEGA(growth_rate,growth_rate)": 0.0,
                               "SIGMA(proportional)": 0.0, "SIGMA(additive)": 0.0})
    out = sse.simulate(model, design, exact, seed=0)
    d0 = (6 * design.BASEVOL.to_numpy() / math.pi) ** (1 / 3)
    # diameter of V0 exp(g t): d0 exp(g t / 3)
    np.testing.assert_allclose(out.DV.to_numpy(), d0 * np.exp(0.004 * design.TIME.to_numpy() / 3), rtol=1e-10)
    np.testing.assert_array_equal(out.ID.to_numpy(), design.ID.to_numpy())
    np.testing.assert_array_equal(out.TIME.to_numpy(), design.TIME.to_numpy())


def test_summary_arithmetic_by_hand():
    res = pd.DataFrame({"parameter": ["A"] * 5 + ["B"] * 5, "true": [2.0] * 5 + [1.0] * 5,
                        "estimate": [2.2, 1.8, 2.4, 2.0, 2.0, 1.0, 1.5, 1.1, 0.9, np.nan],
                        "se": [0.1, 0.1, 0.1, np.nan, 1.0, 1.0, 0.2, 0.1, 0.1, np.nan],
                        "covariance_ok": [True, True, True, False, False, True, True, True, True, False],
                        "converged": [True, True, False, True, True, True, True, True, True, False]})
    tab = sse.summarize(res, fixed=["A"]).set_index("parameter")
    assert tab.loc["A", "kind"] == "fixed effect" and tab.loc["B", "kind"] == "variance"
    assert tab.loc["A", "bias %"] == pytest.approx(100 * (0.1 - 0.1 + 0.2 + 0.0 + 0.0) / 5)
    assert tab.loc["A", "rRMSE %"] == pytest.approx(100 * math.sqrt((0.01 + 0.01 + 0.04) / 5))
    # A: intervals 2.2 +- 0.164, 1.8 +- 0.164, 2.4 +- 0.164; the 4th has no SE and the 5th (which
    # would hold 2) no covariance step: none counts
    assert tab.loc["A", "90% CI coverage %"] == 0.0 and tab.loc["A", "n with SE"] == 3
    assert tab.loc["A", "n estimated"] == 5 and tab.loc["A", "n converged"] == 4
    # B's failed 5th replicate (no estimate) is left out of everything
    # B: 1.0 +- 1.64 holds 1, 1.5 +- 0.33 does not, 1.1 +- 0.164 and 0.9 +- 0.164 do
    assert tab.loc["B", "90% CI coverage %"] == pytest.approx(75.0)
    assert tab.loc["B", "bias %"] == pytest.approx(100 * (0.0 + 0.5 + 0.1 - 0.1) / 4)
    assert tab.loc["B", "n estimated"] == 4
    from scipy.stats import norm

    assert sse.Z90 == pytest.approx(norm.ppf(0.95), rel=1e-12)
    with pytest.raises(InputError, match=r"^fixed = \['C'\] is not allowed; allowed: parameters of the results: \['A', 'B'\]$"):
        sse.summarize(res, fixed=["C"])


def test_refusals_name_the_field():
    model = curve_nlme_model("exponential")
    truth = dict(EXP_TRUTH)
    del truth["SIGMA(additive)"]
    with pytest.raises(InputError) as e:
        sse.simulate_reestimate(model, _design(3, 0), truth, replicates=2)
    assert str(e.value) == ("truth = ['OMEGA(growth_rate,growth_rate)', 'OMEGA(initial_size,initial_size)', 'POP_GROWTH_RATE',"
                            " 'SIGMA(proportional)', 'V0_RATIO'] is not allowed; allowed: a value for every model parameter;"
                            " missing ['SIGMA(additive)']")
    with pytest.raises(InputError, match=r"^replicates = 0 is not allowed; allowed: an integer >= 1$"):
        sse.simulate_reestimate(model, _design(3, 0), EXP_TRUTH, replicates=0)
    dosed = _design(3, 0)
    dosed.loc[0, "AMT"] = 200.0
    with pytest.raises(InputError, match=r"^design.AMT = 'non-zero dose rows' is not allowed"):
        sse.simulate_reestimate(model, dosed, EXP_TRUTH, replicates=1)
    with pytest.raises(InputError, match=r"^truth = \{'V0_RATIO': 0.0\} is not allowed; allowed: non-zero values"):
        sse.simulate_reestimate(model, _design(3, 0), dict(EXP_TRUTH, V0_RATIO=0.0), replicates=1)
    with pytest.raises(InputError, match=r"^truth = \{'V0_RATIO': nan\} is not allowed; allowed: finite values$"):
        sse.simulate(model, _design(3, 0), dict(EXP_TRUTH, V0_RATIO=float("nan")), seed=0)
    no_id = _design(3, 0)
    no_id.loc[4, "ID"] = None
    with pytest.raises(InputError, match=r"^design.ID = 'missing values' is not allowed"):
        sse.simulate(model, no_id, EXP_TRUTH, seed=0)


def test_a_failed_replicate_is_kept_as_failed_and_the_others_go_on():
    model = curve_nlme_model("exponential")
    calls = []

    def design(rng):
        calls.append(1)
        frame = _design(10, rng)
        if len(calls) == 3:  # the first call is the up-front check; replicate 1 gets a broken design
            frame.loc[0, "BASEVOL"] = np.nan
        return frame

    res = sse.simulate_reestimate(model, design, EXP_TRUTH, replicates=3, seed=0)
    status = res.groupby("replicate").status.first()
    assert status[1].startswith("failed: InputError: data['BASEVOL'] = 'NaN or infinite values' is not allowed")
    assert not status[0].startswith("failed") and not status[2].startswith("failed")
    assert res[res.replicate == 1].estimate.isna().all() and res[res.replicate != 1].estimate.notna().all()


def test_exponential_population_is_recovered():
    """5 replicates x 30 lesions of the exponential curve: each fixed effect's mean relative
    error under 10 % (the SSE bar of issue 16, on a model that takes seconds), every fit converged
    with a covariance step."""
    model = curve_nlme_model("exponential")
    res = sse.simulate_reestimate(model, lambda rng: _design(30, rng), EXP_TRUTH, replicates=5, seed=10)
    assert res.converged.all() and res.covariance_ok.all(), res.status.unique()
    tab = sse.summarize(res, fixed=("V0_RATIO", "POP_GROWTH_RATE")).set_index("parameter")
    assert (tab.loc[["V0_RATIO", "POP_GROWTH_RATE"], "bias %"].abs() < 10).all(), tab
    assert tab.loc["SIGMA(proportional)", "bias %"] == pytest.approx(0, abs=40), tab


#: relative RMSE (%) of each fixed effect over the 40 replicates of `bench/sse.py --replicates 40
#: --lesions 20` (README): the spread one replicate's estimate has about the truth
BENCH_RRMSE = {"V0_RATIO": 3.8, "POP_GROWTH_RATE": 13.9, "POP_KILL_RATE": 24.4}


@pytest.mark.slow
def test_mechanistic_population_is_recovered():
    """The small version of bench/sse.py: 2 replicates x 20 lesions of the mechanistic population
    model on atezolizumab (etas on growth and kill), from the model's initial values. Two
    replicates cannot test the 10 % bias bar (the bench does, over 40): each fixed effect's mean
    error must be within three standard errors of a 2-replicate mean, 3 rRMSE / sqrt(2), with the
    bench's rRMSE; an estimator off by more than that (or not converging) fails."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_sse", Path(__file__).resolve().parents[1] / "bench" / "sse.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.run(2, 20, seed=0, verbose=False)
    assert res.converged.all() and res.covariance_ok.all(), res.status.unique()
    tab = sse.summarize(res, fixed=bench.FIXED).set_index("parameter")
    for name in bench.FIXED:
        assert abs(tab.loc[name, "bias %"]) < 3 * BENCH_RRMSE[name] / math.sqrt(2), (name, tab.loc[name, "bias %"])
