"""Biomarker-guided choice (issue 17, item 5): the ROC AUC of baseline sClever-1 for non-response,
raw and adjusted for baseline volume, and the rule "add anti-Clever-1 when sClever-1 > threshold"
on the crossover. Small trials built by hand, so every expected number is counted on paper."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.stats import mannwhitneyu

from immunopd import endpoints as ep
from immunopd.biomarker import roc_auc, sclever1_predictive_table, sclever1_predictive_value, treatment_rule, treatment_rule_table
from immunopd.errors import InputError

ARMS = ["anti-PD-1", "anti-PD-1 + anti-Clever-1"]


def _trial(sclever1, volume, resp_alone, resp_added, status=None) -> xr.Dataset:
    n = len(sclever1)
    best = np.array([[ep.PR if r else ep.PD for r in resp] for resp in (resp_alone, resp_added)], np.int8)
    status = np.zeros((2, n), np.int32) if status is None else np.asarray(status, np.int32)
    return xr.Dataset(
        {"baseline_sclever1": ("patient", np.asarray(sclever1, float)),
         "baseline_tumor_volume": ("patient", np.asarray(volume, float)),
         "best_response": (("regimen", "patient"), best), "solver_status": (("regimen", "patient"), status)},
        coords={"regimen": ARMS, "patient": np.arange(n)})


# --- roc_auc ---------------------------------------------------------------------------------

def test_roc_auc_by_hand():
    # events score 3, 4; non-events 1, 3. Pairs: (3,1)=1, (3,3)=1/2, (4,1)=1, (4,3)=1 -> 3.5/4.
    # DeLong components: per event 0.75, 1; per non-event 1, 0.75; each variance (ddof 1) 0.03125,
    # so var(AUC) = 0.03125/2 + 0.03125/2 = 0.03125, SE 0.1767767.
    r = roc_auc([3, 4, 1, 3], [1, 1, 0, 0])
    assert r["auc"] == pytest.approx(0.875)
    assert r["se"] == pytest.approx(np.sqrt(0.03125))
    assert r["lower"] == pytest.approx(0.875 - 1.959963985 * np.sqrt(0.03125))
    assert r["upper"] == 1.0  # clipped
    assert (r["n_events"], r["n_nonevents"]) == (2, 2) and "DeLong" in r["ci_method"]


def test_roc_auc_extremes():
    assert roc_auc([5, 6, 1, 2], [1, 1, 0, 0]) == {"auc": 1.0, "se": 0.0, "lower": 1.0, "upper": 1.0, "n_events": 2,
                                                   "n_nonevents": 2, "ci_method": "DeLong 95 % normal interval"}
    assert roc_auc([1, 2, 5, 6], [True, True, False, False])["auc"] == 0.0
    assert roc_auc([7, 7, 7, 7, 7], [1, 0, 1, 0, 0])["auc"] == 0.5  # all tied: every pair counts 1/2


def test_roc_auc_is_mann_whitney_u_and_delong_is_the_pairwise_variance():
    rng = np.random.default_rng(4)
    score = rng.integers(0, 6, 80).astype(float)  # many ties
    y = rng.random(80) < 0.35
    r = roc_auc(score, y)
    u = mannwhitneyu(score[y], score[~y]).statistic
    assert r["auc"] == pytest.approx(u / (y.sum() * (~y).sum()), abs=1e-12)
    # DeLong's structural components from the pair matrix directly (O(n1 n0))
    psi = (score[y][:, None] > score[~y][None, :]) + 0.5 * (score[y][:, None] == score[~y][None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    assert r["se"] == pytest.approx(np.sqrt(v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size), rel=1e-12)


@pytest.mark.parametrize("score,outcome,message", [
    ([1, 2, 3], [1, 0, 2], "outcome = 'values other than 0 and 1' is not allowed; allowed: a 0/1 (or boolean) outcome"),
    ([1, 2, 3], [1, 0], "score = 'shape (3,) with outcome shape (2,)' is not allowed; allowed: two 1-D arrays of the same length"),
    ([1, np.nan, 3, 4], [1, 0, 1, 0], "score = 'non-finite values' is not allowed; allowed: finite scores"),
    ([1, 2, 3, 4], [1, 0, 0, 0], "outcome = '1 events and 3 non-events' is not allowed; allowed: at least 2 of each "
                                 "(the AUC and its DeLong variance need both)"),
])
def test_roc_auc_bad_input(score, outcome, message):
    with pytest.raises(InputError) as err:
        roc_auc(score, outcome)
    assert str(err.value) == message


# --- sclever1_predictive_value ---------------------------------------------------------------

def _confounded():
    # responders: sClever-1 = volume / 10 exactly (ln s = ln v - ln 10, the responders' fit);
    # non-responders: volume / 10 times 2, 2, 2 and 0.5 (residuals ln 2, ln 2, ln 2, -ln 2).
    # Raw: non-responders 8, 10, 12 beat all 3 responders (1, 2, 3); 3.5 beats them too -> 12/12.
    # Adjusted: responders' residuals 0; three non-responders above, one below -> 9/12 = 0.75.
    # Patient 8 failed to solve and is left out.
    s = [1, 2, 3, 8, 10, 12, 3.5, 100]
    v = [10, 20, 30, 40, 50, 60, 70, 80]
    resp = [1, 1, 1, 0, 0, 0, 0, 1]
    status = [[0] * 7 + [1], [0] * 8]
    return _trial(s, v, resp, resp, status)


def test_predictive_value_raw_and_adjusted_by_hand():
    pv = sclever1_predictive_value(_confounded(), n_boot=200, seed=3)
    assert list(pv.adjustment.values) == ["none", "baseline tumor volume"]
    assert pv.auc.values.tolist() == pytest.approx([1.0, 0.75])
    assert (pv.attrs["patients"], pv.attrs["nonresponders"], pv.attrs["responders"]) == (7, 4, 3)
    assert "not CR or PR" in pv.attrs["outcome"] and "Janes & Pepe 2009" in pv.attrs["adjustment_method"]
    assert float(pv.auc_lower[0]) == 1.0 and float(pv.auc_upper[0]) == 1.0  # complete separation: DeLong SE 0
    assert float(pv.auc_lower[1]) <= 0.75 <= float(pv.auc_upper[1])
    assert "DeLong" in str(pv.ci_method.values[0]) and "bootstrap" in str(pv.ci_method.values[1])
    text = sclever1_predictive_table(pv)
    assert "7 patients: 4 non-responders, 3 responders" in text and "0.750" in text


def test_predictive_value_bad_input():
    t = _confounded()
    with pytest.raises(InputError) as err:
        sclever1_predictive_value(t, "anti-CTLA-4")
    assert str(err.value) == "regimen = 'anti-CTLA-4' is not allowed; allowed: one of ['anti-PD-1', 'anti-PD-1 + anti-Clever-1']"
    bad = t.copy(deep=True)
    bad["baseline_sclever1"][1] = 0.0
    with pytest.raises(InputError) as err:
        sclever1_predictive_value(bad)
    assert str(err.value) == ("trial.baseline_sclever1 = 0.0 is not allowed; allowed: finite values > 0 ng/mL for every patient "
                              "(its log is taken)")
    everyone = t.copy(deep=True)
    everyone["best_response"][:] = ep.CR
    with pytest.raises(InputError) as err:
        sclever1_predictive_value(everyone)
    assert str(err.value) == ("trial.best_response (regimen 'anti-PD-1') = '7 responders and 0 non-responders' is not allowed; "
                              "allowed: at least 3 responders (CR/PR) and 2 non-responders among the solved patients")
    with pytest.raises(InputError) as err:
        sclever1_predictive_value(t.drop_vars("baseline_tumor_volume"))
    assert str(err.value) == ("trial = \"a dataset without 'baseline_tumor_volume'\" is not allowed; allowed: a run_trial result of a "
                              "population with baseline covariates")
    with pytest.raises(InputError) as err:
        sclever1_predictive_value(t, n_boot=10)
    assert str(err.value) == "n_boot = 10 is not allowed; allowed: an integer >= 100 (bootstrap resamples)"


# --- treatment_rule --------------------------------------------------------------------------

def _crossover():
    # sClever-1 1..10 ng/mL. Anti-PD-1 alone: patients with sClever-1 1 and 2 respond. With
    # anti-Clever-1 added those two still respond and 4, 8, 9, 10 gain a response.
    s = np.arange(1.0, 11.0)
    alone = np.isin(s, [1, 2])
    added = np.isin(s, [1, 2, 4, 8, 9, 10])
    return _trial(s, np.full(10, 1000.0), alone, added)


def test_rule_by_hand():
    rule = treatment_rule(_crossover(), n_boot=500, seed=1)
    r = rule.sel
    # no one: 2/10; everyone: 6/10
    assert float(r(rule="no one").orr) == pytest.approx(20) and float(r(rule="no one").treated) == 0
    assert float(r(rule="everyone").orr) == pytest.approx(60) and float(r(rule="everyone").treated) == 100
    # median 5.5: 6..10 treated; responders 1, 2 (alone) and 8, 9, 10 (added) -> 50 %
    med = r(rule="rule")
    assert float(med.threshold) == 5.5 and float(med.treated) == 50 and float(med.orr) == pytest.approx(50)
    assert float(med.gain_vs_no_one) == pytest.approx(30) and float(med.gain_vs_everyone) == pytest.approx(-10)
    assert rule.attrs["threshold_from"] == "the median baseline sClever-1" and rule.attrs["patients"] == 10
    # sweep (numpy linear quantiles of 1..10): q0.10 = 1.9 treats 9 -> 60 %, q0.20 = 2.8 treats 8 -> 60 %,
    # q0.30 = 3.7 treats 7 -> 60 %, q0.40 = 4.6 misses patient 4 -> 50 %; best: 60 % treating fewest, q0.30
    assert float(r(rule="sweep q0.30").threshold) == pytest.approx(3.7)
    assert [float(r(rule=f"sweep q0.{k}0").orr) for k in (1, 2, 3, 4)] == pytest.approx([60, 60, 60, 50])
    best = r(rule="best of sweep (exploratory)")
    assert float(best.threshold) == pytest.approx(3.7) and float(best.treated) == 70 and float(best.orr) == pytest.approx(60)
    assert "selected in-sample" in str(best.role.values) and str(med.role.values) == "pre-specified"
    # paired bootstrap: no one vs itself is exactly 0; adding anti-Clever-1 never loses a response
    # here, so no rule beats everyone and none is worse than no one, in every resample
    assert float(r(rule="no one").gain_vs_no_one_lower) == 0 == float(r(rule="no one").gain_vs_no_one_upper)
    assert (rule.gain_vs_everyone_upper <= 0).all() and (rule.gain_vs_no_one_lower >= 0).all()
    assert (rule.orr_lower <= rule.orr).all() and (rule.orr <= rule.orr_upper).all()
    text = treatment_rule_table(rule)
    assert "best of sweep (exploratory)" in text and "selected in-sample" in text


def test_rule_given_threshold_and_failed_solves():
    t = _crossover()
    t["solver_status"][1, 9] = 2  # patient with sClever-1 10 failed under the combination: out of both arms
    rule = treatment_rule(t, threshold=8.5, quantiles=[0.5], n_boot=200)
    assert rule.attrs["patients"] == 9 and rule.attrs["threshold_from"] == "given"
    got = rule.sel(rule="rule")
    # 9 patients; treated: sClever-1 9 only (1/9); responders 1, 2 alone and 9 added -> 3/9
    assert float(got.treated) == pytest.approx(100 / 9) and float(got.orr) == pytest.approx(100 * 3 / 9)
    assert list(rule.rule.values) == ["no one", "everyone", "rule", "sweep q0.50", "best of sweep (exploratory)"]


@pytest.mark.parametrize("kwargs,message", [
    ({"threshold": "high"}, "threshold = 'high' is not allowed; allowed: a finite sClever-1 level in ng/mL, or None for the median"),
    ({"threshold": float("nan")}, "threshold = nan is not allowed; allowed: a finite sClever-1 level in ng/mL, or None for the median"),
    ({"quantiles": [0.5, 1.0]}, "quantiles = [0.5, 1.0] is not allowed; allowed: one or more quantiles strictly between 0 and 1, e.g. [0.25, 0.5, 0.75]"),
    ({"added": "anti-CTLA-4"}, "added = 'anti-CTLA-4' is not allowed; allowed: one of ['anti-PD-1', 'anti-PD-1 + anti-Clever-1']"),
    ({"seed": -1}, "seed = -1 is not allowed; allowed: an integer >= 0"),
])
def test_rule_bad_input(kwargs, message):
    with pytest.raises(InputError) as err:
        treatment_rule(_crossover(), **kwargs)
    assert str(err.value) == message


def test_cli_threshold_must_be_a_positive_level(capsys, tmp_path, monkeypatch):
    from immunopd.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["biomarker", "--threshold", "-1", "--out", "x.nc"]) == 2
    assert "--threshold = '-1' is not allowed; allowed: a finite sClever-1 level in ng/mL > 0" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_rule_and_auc_on_the_real_experiment():
    """The calibrated experiment on few plausible patients (the twins are still one per lesion)."""
    from immunopd.biomarker import biomarker_analyses, biomarker_report, run_biomarker_experiment

    trial, strata = run_biomarker_experiment(plausible_patients=4000, seed=2)
    got = biomarker_analyses(trial)
    rule = got["rule"]
    # the combination adds response overall (as test_trial's direction test says by stratum)
    assert float(rule.sel(rule="everyone").gain_vs_no_one_lower) > 0
    # the rule sits between its two references
    med = rule.sel(rule="rule")
    assert 0 <= float(med.gain_vs_no_one) <= float(rule.sel(rule="everyone").gain_vs_no_one)
    assert float(med.treated) == pytest.approx(50, abs=0.2)
    pv = got["predictive"]
    assert ((pv.auc_lower <= pv.auc) & (pv.auc <= pv.auc_upper)).all() and pv.attrs["patients"] == trial.sizes["patient"]
    assert "best of sweep (exploratory)" in biomarker_report(trial, strata, got)
