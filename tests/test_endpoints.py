"""RECIST 1.1, response rates and Kaplan–Meier on hand-made data with answers worked out by hand."""

import numpy as np
import pytest
from scipy import stats

from immunopd import endpoints as ep
from immunopd.errors import InputError

T = np.array([0.0, 42.0, 84.0, 126.0, 168.0])


def score(*rows, **kw):
    return ep.recist(np.array(rows, dtype=float), T, **kw)


def test_pr_then_progression_over_the_nadir():
    # baseline 50; -20%, -40% (PR), -32%, then 45 mm = +50% over the 30 mm nadir and +15 mm: PD
    r = score([50, 40, 30, 34, 45])
    assert ep.RESPONSES[r["best_response"][0]] == "PR"
    assert r["best_pct_change"][0] == pytest.approx(-40.0)
    assert r["progressed"][0] and r["pfs_days"][0] == 168.0
    assert r["response_onset_days"][0] == 84.0 and r["dor_days"][0] == 84.0 and r["dor_event"][0]


def test_growth_is_stable_disease_until_20_percent_over_baseline():
    r = score([50, 55, 61, 70, 80])  # +10% (SD), then 61 >= 1.2 * 50 and +11 mm: PD at day 84
    assert ep.RESPONSES[r["best_response"][0]] == "SD"
    assert r["pfs_days"][0] == 84.0 and r["progressed"][0]
    assert not r["responded"][0] and np.isnan(r["dor_days"][0])


def test_small_lesion_needs_5_mm_absolute_increase():
    # 10 -> 14 mm is +40% but only +4 mm: not PD; 15.5 mm is +5.5 mm: PD
    r = score([10, 12.5, 14, 14, 14], [10, 12.5, 14, 15.5, 15.5])
    assert ep.RESPONSES[r["best_response"][0]] == "SD" and not r["progressed"][0]
    assert r["pfs_days"][0] == 168.0  # censored at the last scan
    assert r["progressed"][1] and r["pfs_days"][1] == 126.0


def test_complete_response_and_regrowth_from_zero():
    # CR at day 84 (<= 1 mm); 6 mm later is +5 mm over a ~0 nadir (and >20%): PD at day 168
    r = score([30, 10, 0.5, 0.8, 6.0])
    assert ep.RESPONSES[r["best_response"][0]] == "CR"
    assert r["pfs_days"][0] == 168.0 and r["progressed"][0]


def test_first_scan_progression_is_pd_and_best_change_stops_at_pd():
    r = score([20, 30, 5, 5, 5])  # PD at the first scan; later shrinkage does not count
    assert ep.RESPONSES[r["best_response"][0]] == "PD"
    assert r["best_pct_change"][0] == pytest.approx(50.0)
    assert r["pfs_days"][0] == 42.0


def test_followup_and_scan_subset():
    rows = [[50, 40, 30, 34, 45]] * 2
    r = ep.recist(np.array(rows, float), T, followup_days=np.array([126.0, 42.0]))
    assert not r["progressed"][0] and r["pfs_days"][0] == 126.0 and ep.RESPONSES[r["best_response"][0]] == "PR"
    assert ep.RESPONSES[r["best_response"][1]] == "SD" and r["pfs_days"][1] == 42.0  # -20% only
    r = score([50, 40, 30, 34, 45], scans=np.array([2, 4]))  # scans on day 84 and 168 only
    assert r["pfs_days"][0] == 168.0 and ep.RESPONSES[r["best_response"][0]] == "PR"


def test_no_scan_is_not_evaluable():
    r = ep.recist(np.array([[50.0, 40.0]]), np.array([0.0, 42.0]), followup_days=10.0)
    assert ep.RESPONSES[r["best_response"][0]] == "NE" and np.isnan(r["best_pct_change"][0])


def test_batch_shapes_are_kept():
    sld = np.tile(np.array([50, 40, 30, 34, 45.0]), (3, 4, 1))
    r = ep.recist(sld, T)
    assert r["best_response"].shape == (3, 4) and np.all(r["best_response"] == ep.PR)


def test_bad_sld_input_names_the_field():
    with pytest.raises(InputError, match=r"sld at baseline = 0\.0 is not allowed"):
        ep.recist(np.array([[0.0, 1.0]]), np.array([0.0, 1.0]))
    with pytest.raises(InputError, match=r"sld = -1\.0 is not allowed"):
        ep.recist(np.array([[5.0, -1.0]]), np.array([0.0, 1.0]))
    with pytest.raises(InputError, match=r"scan_interval_days = 0 is not allowed"):
        ep.scan_times(np.arange(10.0), 0)


def test_response_rate_is_clopper_pearson():
    hits = np.array([True] * 7 + [False] * 13)
    rate, lo, hi = ep.response_rate(hits)
    ci = stats.binomtest(7, 20).proportion_ci(confidence_level=0.95, method="exact")
    assert rate == 0.35 and lo == pytest.approx(ci.low, rel=1e-10) and hi == pytest.approx(ci.high, rel=1e-10)
    assert ep.response_rate(np.zeros(5, bool))[1] == 0.0 and ep.response_rate(np.ones(5, bool))[2] == 1.0


def test_kaplan_meier_by_hand():
    # times 1, 2, 2(censored), 3, 4(censored): S = 4/5, 4/5*3/4, then *1/2
    km = ep.kaplan_meier([1, 2, 2, 3, 4], [1, 1, 0, 1, 0])
    np.testing.assert_allclose(km["time"], [1, 2, 3])
    np.testing.assert_allclose(km["survival"], [0.8, 0.6, 0.3])
    np.testing.assert_array_equal(km["at_risk"], [5, 4, 2])
    # Greenwood at t=1: S^2 * d/(n(n-d)) = 0.64 / 20; log-log band from it
    var = 0.8**2 * (1 / 20)
    se = np.sqrt(var) / (0.8 * abs(np.log(0.8)))
    assert km["lower"][0] == pytest.approx(0.8 ** np.exp(1.959963984540054 * se))
    assert ep.km_median(km)[0] == 3.0
    assert np.isnan(ep.km_median(ep.kaplan_meier([5, 6], [0, 0]))[0])  # not reached


def test_no_scan_before_the_horizon_is_not_evaluable():
    r = ep.recist(np.array([[50.0, 40.0, 30.0]]), np.array([0.0, 10.0, 20.0]), scans=ep.scan_times(np.array([0.0, 10.0, 20.0]), 42))
    assert ep.RESPONSES[r["best_response"][0]] == "NE" and np.isnan(r["best_pct_change"][0]) and not r["progressed"][0]
