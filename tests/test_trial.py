"""Virtual trials: agreement with simulate, one compilation, dose deviations, TOML, CLI, strata,
and the calibration to the shipped immunotherapy response."""

import re

import numpy as np
import pytest
import xarray as xr

from immunopd import Regimen, simulate
from immunopd import endpoints as ep
from immunopd.cli import main
from immunopd.errors import InputError, RegimenError
from immunopd.population import sample
from immunopd.trial import load_experiment, run_trial, stratify

REGIMENS = {
    "untreated": "none",
    "pembrolizumab Q3W": "pembrolizumab 200 mg q3w",
    "combination": "pembrolizumab 200 mg q3w; bexmarilimab 1 mg/kg q3w over 60 min",
}


@pytest.fixture(scope="module")
def pop():
    return sample(40, seed=11)


@pytest.fixture(scope="module")
def trial(pop):
    return run_trial(REGIMENS, pop, days=200)


def test_trial_equals_simulate_patient_by_patient(trial, pop):
    for name, text in REGIMENS.items():
        ds = simulate(text, pop.params(), days=200)
        # 1e-9, not exact: the trial pads every regimen's dose arrays to one length, which changes
        # XLA's summation order in the PK tables (differences seen: 1e-10)
        np.testing.assert_allclose(trial.sld.sel(regimen=name).values, ds.sld.values, rtol=1e-9)
        r = ep.recist(ds.sld.values, ds.time.values, scans=ep.scan_times(ds.time.values, 42))
        np.testing.assert_array_equal(trial.best_response.sel(regimen=name).values, r["best_response"])
        np.testing.assert_allclose(trial.pfs_days.sel(regimen=name).values, r["pfs_days"])
        np.testing.assert_allclose(trial.best_pct_change.sel(regimen=name).values, r["best_pct_change"], rtol=1e-8)
    assert trial.sld.dims == ("regimen", "patient", "time")
    assert trial.orr.dims == ("regimen",)
    orr = np.isin(trial.best_response.values, (ep.CR, ep.PR)).mean(axis=1)
    np.testing.assert_allclose(trial.orr.values, orr)
    # mg/kg bexmarilimab resolved with each patient's weight
    np.testing.assert_allclose(trial.dosed.sel(regimen="combination", drug="bexmarilimab").values,
                               10 * 1.0 * pop.data.body_weight.values)  # 10 doses before day 200


def test_regimens_share_one_compilation(pop):
    from immunopd.integrate import compiled
    from immunopd.models.core import core_model

    model = core_model("gompertz")
    # a trial also computes the adverse-event cumulative hazard it draws events from
    fn = compiled(model, (model.drug("nivolumab"), model.drug("pembrolizumab")), "tsit5", 1e-6, 1e-9, 100_000,
                  ("irae_cumulative_hazard", "sld"))
    before = fn._cache_size()
    # 14, 5 and 0 infusions before day 97 (padded alone to 16, 8 and 8 doses): padded to one
    # shape, the three regimens need one new trace (the 98-point grid is new), not two
    run_trial({"a": "nivolumab 240 mg qw", "b": "pembrolizumab 200 mg q3w", "c": "none"}, pop, days=97, outputs=("sld",))
    assert fn._cache_size() == before + 1


def test_skipped_and_delayed_doses_equal_explicit_schedules(pop):
    sub = pop.isel(np.arange(5))
    skip = run_trial({"skip": "pembrolizumab 200 mg q3w x4 skip 2", "explicit": "pembrolizumab 200 mg; pembrolizumab 200 mg q3w x2 from day 42"},
                     sub, days=120, outputs=("sld",))
    np.testing.assert_allclose(skip.sld.sel(regimen="skip"), skip.sld.sel(regimen="explicit"), rtol=1e-12)
    assert [d[1] for d in Regimen.parse("pembrolizumab 200 mg q3w x3 delay 2 by 1w").doses(400)] == [0.0, 28.0, 49.0]
    with pytest.raises(RegimenError, match=r"skip = 5 is not allowed; allowed: dose numbers from 1 to 4"):
        Regimen.parse("pembrolizumab 200 mg q3w x4 skip 5")


def test_missed_dose_probability_thins_infusions_reproducibly(pop):
    kw = dict(days=365, outputs=("sld",), missed_dose_probability=0.3, seed=5)
    a = run_trial({"p": "pembrolizumab 200 mg q3w"}, pop, **kw)
    b = run_trial({"p": "pembrolizumab 200 mg q3w"}, pop, **kw)
    xr.testing.assert_identical(a.dosed, b.dosed)
    doses = a.dosed.sel(drug="pembrolizumab").values / 200.0
    assert np.allclose(doses, np.round(doses))  # whole infusions are missed
    assert doses.mean() == pytest.approx(18 * 0.7, abs=1.0)  # 18 planned doses in a year, 30% missed


def test_bad_trial_input(pop):
    with pytest.raises(InputError, match=r"regimens = \{\} is not allowed"):
        run_trial({}, pop)
    with pytest.raises(InputError, match=r"outputs = 'tumour' is not allowed"):
        run_trial({"a": "none"}, pop, outputs=("tumour",))
    with pytest.raises(InputError, match=r"missed_dose_probability = 1\.0 is not allowed"):
        run_trial({"a": "none"}, pop, missed_dose_probability=1.0)


def test_examples_load_and_unknown_keys_are_named(tmp_path):
    import pathlib

    for path in sorted(pathlib.Path("examples").glob("*.toml")):
        exp = load_experiment(path)
        assert exp.regimens
    bad = tmp_path / "bad.toml"
    bad.write_text('[population]\npatents = 10\n[regimens]\na = "none"\n')
    with pytest.raises(InputError, match=r"\[population\] key = 'patents' is not allowed; allowed: one of \['correlation'"):
        load_experiment(bad)
    bad.write_text('[regimens]\na = "pembrolizumab 200 q3w"\n')
    with pytest.raises(RegimenError, match="amount unit"):
        load_experiment(bad)


def test_experiment_toml_log_uniform_population(tmp_path):
    """[population.log_uniform] reaches the sampler (each patient's value inside the range) and is
    recorded in the trial's population recipe; a number where the table goes is a named error."""
    good = tmp_path / "lu.toml"
    good.write_text('[population]\npatients = 12\nseed = 3\n[population.log_uniform]\ninflammatory_swelling = [0.01, 2.0]\n'
                    '[regimens]\npd1 = "pembrolizumab 200 mg q3w"\n')
    exp = load_experiment(good)
    pop = exp.build_population()
    q = pop.data.inflammatory_swelling.values
    assert q.size == 12 and np.all((q >= 0.01) & (q < 2.0)) and np.ptp(q) > 0
    ds = run_trial(exp.regimens, pop, days=42, outputs=("sld",))
    assert "'log_uniform': '{\"inflammatory_swelling\": [0.01, 2.0]}'" in ds.attrs["population_recipe"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[population]\nlog_uniform = 3\n[regimens]\na = "none"\n')
    with pytest.raises(InputError, match=r"\[population\] log_uniform = 3 is not allowed; allowed: a table: \[population.log_uniform\]"):
        load_experiment(bad).build_population()


def test_cli_trial_from_toml_and_from_options(tmp_path, capsys):
    out = tmp_path / "trial.nc"
    assert main(["trial", "examples/approved_regimens.toml", "--patients", "20", "--days", "84", "--out", str(out)]) == 0
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        assert ds.sizes["regimen"] == 6 and ds.sizes["patient"] == 20
        assert ds.best_response.attrs["flag_meanings"] == "CR PR SD PD NE"
    assert "pembrolizumab 400 mg Q6W" in capsys.readouterr().out
    out2 = tmp_path / "t2.nc"
    assert main(["trial", "--regimen", "pd1=pembrolizumab 200 mg q3w", "--patients", "10", "--days", "84",
                 "--stratify", "cold", "--out", str(out2)]) == 0
    text = capsys.readouterr().out
    assert "stratified by cold" in text and "pd1" in text
    assert main(["trial", "--patients", "10", "--out", str(out2)]) == 2
    assert "at least one --regimen" in capsys.readouterr().err


def _fake_trial(best, pfs, progressed, x):
    best, pfs, progressed = (np.asarray(a) for a in (best, pfs, progressed))
    return xr.Dataset({
        "best_response": (("regimen", "patient"), best.astype(np.int8)),
        "pfs_days": (("regimen", "patient"), pfs.astype(float)),
        "progressed": (("regimen", "patient"), progressed.astype(bool)),
        "marker": (("patient",), np.asarray(x, float), {"units": "ng/mL"}),
        "cold": (("patient",), np.array([0, 1, 0, 1], np.int8), {"flag_meanings": "hot cold"}),
    }, coords={"regimen": ["mono", "combo"]})


def test_stratify_by_hand():
    CR, PR, SD, PD = ep.CR, ep.PR, ep.SD, ep.PD
    ds = _fake_trial([[PR, PD, SD, PD], [PR, PR, CR, PD]], [[84, 42, 126, 42], [126, 84, 126, 84]],
                     [[1, 1, 0, 1], [0, 1, 0, 1]], [1.0, 2.0, 3.0, 4.0])
    st = stratify(ds, "marker")  # median split at 2.5: patients {0, 1} and {2, 3}
    assert list(st.stratum.values) == ["marker <= 2.5 ng/mL", "marker > 2.5 ng/mL"]
    np.testing.assert_allclose(st.orr.values, [[0.5, 1.0], [0.0, 0.5]])
    np.testing.assert_allclose(st.orr_difference.sel(regimen="combo").values, [0.5, 0.5])
    np.testing.assert_allclose(st.median_pfs_days.sel(regimen="mono").values, [42.0, 42.0])
    hot_cold = stratify(ds, "cold")
    assert list(hot_cold.stratum.values) == ["hot", "cold"]
    np.testing.assert_allclose(hot_cold.dcr.sel(regimen="mono").values, [1.0, 0.0])
    with pytest.raises(InputError, match="by = 'nope' is not allowed"):
        stratify(ds, "nope")


def test_observed_responses_agree_with_a_direct_computation():
    from immunopd.calibration import observed_responses
    from immunopd.datasets import load

    obs = observed_responses()
    assert len(obs) == 1061  # immunotherapy lesions with a baseline > 0 mm and a later scan
    df = load("laleh2022", clean=True)
    df = df[df.arm == "immunotherapy"]
    no_pd = obs[~obs.progressed].set_index("lesion")
    for lesion in no_pd.index[:200]:
        g = df[df.lesion == lesion].sort_values("time_days")
        pre = g[g.time_days <= 0]
        base = (pre if len(pre) else g).iloc[-1 if len(pre) else 0]
        later = g[g.time_days > base.time_days].diameter_mm
        assert no_pd.loc[lesion, "best_pct_change"] == pytest.approx(100 * (later.min() / base.diameter_mm - 1))


def _best_change_bin(best):
    """Index of each best % change in calibration.BIN_EDGES (-100 % and below in the first bin)."""
    from immunopd.calibration import BIN_EDGES

    return np.clip(np.searchsorted(BIN_EDGES, np.clip(best, -100, None), side="right") - 1, 0, BIN_EDGES.size - 2)


def test_calibration_acceptance_matches_observed_bins():
    from immunopd.calibration import calibrate, observed_responses, plausible_population

    obs = observed_responses()
    cal = calibrate(plausible_population(1500, seed=3), obs, seed=3)
    s = cal.summary
    # expected accepted mass per bin is proportional to the observed fraction (covered bins)
    best = cal.plausible.best_pct_change.values
    prob = cal.plausible.accept_probability.values
    from immunopd.calibration import BIN_EDGES

    b = _best_change_bin(best)
    ok = np.isfinite(best)
    expected = np.bincount(b[ok], weights=prob[ok], minlength=BIN_EDGES.size - 1)
    obs_frac = s.bin_fraction.sel(source="observed").values
    covered = np.bincount(b[ok], minlength=BIN_EDGES.size - 1) > 0
    np.testing.assert_allclose(expected[covered] / expected.sum(), obs_frac[covered] / obs_frac[covered].sum(), rtol=1e-9)
    assert len(cal.population) == int(cal.plausible.accepted.sum())
    assert "ORR %" in cal.report()


@pytest.mark.slow
def test_best_response_calibration_reproduces_the_orr_on_the_bins_it_reaches():
    """Acceptance-rejection (Allen et al. 2016) reproduces the observed best-response distribution on
    the bins the plausible patients reach. Since the issue-14 dynamics no plausible lesion measures
    0 mm within follow-up (the CR bin and [-97, -90) %, 5.8 % of lesions, are never reached), so the
    calibrated ORR must equal the observed ORR among the lesions in reached bins (one target lesion,
    RECIST thresholds, unconfirmed) within 1.96 standard errors of the difference of two binomial
    proportions (the accepted patients and the lesions). The miss on all lesions is the strict xfail
    below."""
    from immunopd.calibration import BIN_EDGES, calibrate, observed_responses, plausible_population

    cal = calibrate(plausible_population(10_000, seed=1), seed=1)
    s = cal.summary
    best = observed_responses().best_pct_change.to_numpy()
    best_plausible = cal.plausible.best_pct_change.values
    reached = np.isin(_best_change_bin(best), _best_change_bin(best_plausible[np.isfinite(best_plausible)]))
    assert 0.9 < reached.mean() < 1.0  # the unreached bins hold a few % of the lesions
    observed = float(np.mean(best[reached] <= -30))
    n_cal = int(s.attrs["n_accepted"])
    tolerance = 1.96 * np.sqrt(observed * (1 - observed) * (1 / n_cal + 1 / reached.sum()))
    assert abs(float(s.orr.sel(source="calibrated")) - observed) <= tolerance
    # a histogram calibration matches the median to the resolution of its bins: within the width of
    # the bin that holds the observed median ([-8, -3) %: 5 points)
    observed_median = float(s.median_best_pct_change.sel(source="observed"))
    k = np.searchsorted(BIN_EDGES, observed_median, side="right") - 1
    assert abs(float(s.median_best_pct_change.sel(source="calibrated")) - observed_median) < BIN_EDGES[k + 1] - BIN_EDGES[k]


@pytest.mark.xfail(strict=True, reason="known miss since the issue-14 dynamics (seed 1, 10,000 plausible, 293 accepted): calibrated "
                   "ORR 23.5 % below the observed 95 % CI 24.9-30.3 %, KS distance 0.078. 2.4 % of plausible patients respond, "
                   "and no lesion measures 0 mm within follow-up while killed cells clear slowly (the CR bin, 5.5 % of lesions, is "
                   "never reached). The time-course twins (calibrate_time_courses) are the calibration that matches the data now.")
def test_best_response_calibration_matches_the_whole_distribution():
    from immunopd.calibration import calibrate, plausible_population

    cal = calibrate(plausible_population(10_000, seed=1), seed=1)
    s = cal.summary
    in_ci = float(s.orr_lower.sel(source="observed")) <= float(s.orr.sel(source="calibrated")) <= float(s.orr_upper.sel(source="observed"))
    assert in_ci and s.attrs["ks_distance"] < 0.05


@pytest.mark.slow
def test_biomarker_experiment_direction():
    from immunopd.biomarker import run_biomarker_experiment

    trial, strata = run_biomarker_experiment(plausible_patients=4000, seed=2)
    assert trial.sizes["patient"] == 1061  # one time-course twin per observed lesion
    sc = strata["sclever1"]
    low, high = sc.stratum.values
    # anti-Clever-1 adds response where sClever-1 is high (paired difference CI above 0); the raw
    # split of anti-PD-1 response by sClever-1 is partly tumor size, so it is not asserted here
    # (immunopd.biomarker.sclever1_adjusted reports it adjusted for volume)
    assert float(sc.orr_difference_lower.sel(stratum=high, regimen="anti-PD-1 + anti-Clever-1")) > 0
    cold = strata["infiltration"].orr.sel(regimen="anti-PD-1")
    assert float(cold.sel(stratum="cold")) < float(cold.sel(stratum="hot"))


@pytest.mark.parametrize(
    "population,message",
    [
        ("[population.covariates]\nweight_median = 70.0\n",
         "bad.toml [population.covariates] key = 'weight_median' is not allowed; allowed: one of ['weight_median_kg', 'weight_cv', "),
        ("[population.covariates]\ncold_fraction = \"40%\"\n",
         "bad.toml [population.covariates] cold_fraction = '40%' is not allowed; allowed: a number (its unit is in its name)"),
        ("[population]\ncv = 0.5\n",
         "bad.toml [population] cv = 0.5 is not allowed; allowed: a table: [population.cv] with lines such as growth_rate = 0.5"),
        ("[population.cv]\ngrowth_rate = \"high\"\n",
         "bad.toml [population.cv] growth_rate = 'high' is not allowed; allowed: a coefficient of variation >= 0 (0.3 = 30%)"),
        ("[population]\npatients = 0\n", "bad.toml [population] patients = 0 is not allowed; allowed: an integer number of patients >= 1"),
        ("[population]\nseed = 1.5\n", "bad.toml [population] seed = 1.5 is not allowed; allowed: an integer >= 0"),
        ("[experiment]\noutputs = \"sld\"\n",
         "bad.toml [experiment] outputs = 'sld' is not allowed; allowed: a non-empty list of names, e.g. outputs = [\"sld\", \"pct_change\"]"),
    ],
)
def test_experiment_file_type_mistakes_are_named(tmp_path, population, message):
    """A typo or a value where a table or list goes is an error naming the key, never a TypeError
    from the sampler or a string read letter by letter."""
    bad = tmp_path / "bad.toml"
    bad.write_text(population + '[regimens]\na = "none"\n')
    with pytest.raises(InputError, match=re.escape(message)):
        load_experiment(bad)
