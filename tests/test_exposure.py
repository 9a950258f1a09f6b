"""Exposure summaries (immunopd.exposure) against closed forms and published pembrolizumab figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

import immunopd as ip
from immunopd.errors import InputError, RegimenError
from immunopd.exposures import exposure, exposure_table

INFUSION = 30.0 / 1440.0  # day


def one_compartment(dose, cl, v, tau, n_doses, infusion=INFUSION):
    """Closed-form Cmax (infusion end), Ctrough and AUC of each of n_doses infusions of ``dose`` mg
    every ``tau`` days into V L with clearance CL L/day (superposition of 1-compartment infusions)."""
    k = cl / v
    rate = dose / infusion
    n = np.arange(1, n_doses + 1)
    cmax = rate / cl * (1 - math.exp(-k * infusion)) * (1 - np.exp(-n * k * tau)) / (1 - math.exp(-k * tau))
    ctrough = cmax * math.exp(-k * (tau - infusion))
    before = np.concatenate([[0.0], ctrough[:-1]])
    auc = (dose - v * (ctrough - before)) / cl  # mass balance: what was eliminated over the interval
    return cmax, ctrough, auc


def test_one_compartment_infusions_match_the_closed_form():
    # mir25_antagomir: 1 compartment, CL 0.33 L/day and V 10 L at the reference weight 70 kg
    ds = exposure("mir25_antagomir 5 mg/kg qw x6 over 30 min", weight=70, days=42, above=30.0)
    cmax, ctrough, auc = one_compartment(350.0, 0.33, 10.0, 7.0, 6)
    got = ds.sel(drug="mir25_antagomir").isel(patient=0)
    np.testing.assert_allclose(got.cmax.values, cmax, rtol=1e-9)
    np.testing.assert_allclose(got.tmax.values, 7.0 * np.arange(6) + INFUSION, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.ctrough.values, ctrough, rtol=1e-9)
    np.testing.assert_allclose(got.auc.values, auc, rtol=1e-9)
    np.testing.assert_allclose(got.cavg.values, auc / 7.0, rtol=1e-9)
    assert got.complete.values.all()
    # hand numbers of dose 1: Cmax = 350/10 (1 - e^{-kT})/(kT) = 34.9880 ug/mL, trough 27.790 ug/mL
    assert float(got.cmax[0]) == pytest.approx(34.9880, abs=1e-4)
    assert float(got.ctrough[0]) == pytest.approx(27.790, abs=1e-3)
    # time above 30 ug/mL in interval 1: the rise during the infusion from 0, then ln(Cmax/30)/k
    k, rate = 0.033, 350.0 / INFUSION
    s_star = -math.log(1 - 30.0 * 0.33 / rate) / k
    expected = (INFUSION - s_star) + math.log(cmax[0] / 30.0) / k
    assert float(got.time_above[0]) == pytest.approx(expected, abs=1e-6)
    assert float(got.time_above[-1]) == pytest.approx(7.0, abs=1e-12)  # the trough of dose 6 is above 30
    # occupancy at trough: the model's own Emax form with partition 0.5, EC50 1 ug/mL
    x = 0.5 * ctrough / 1.0
    np.testing.assert_allclose(got.trough_occupancy.values, x / (1 + x), rtol=1e-9)


def pembrolizumab_steady_state(weight=70.0, dose=200.0, tau=21.0, infusion=INFUSION):
    """Steady-state Cmax, Ctrough of the Ahamadi 2017 two-compartment model by matrix exponentials
    (scipy.linalg.expm, independent of immunopd's eigen-decomposition)."""
    cl = 0.22 * (weight / 76.8) ** 0.595
    q = 0.795 * (weight / 76.8) ** 0.595
    v1 = 3.48 * (weight / 76.8) ** 0.489
    v2 = 4.06 * (weight / 76.8) ** 0.489
    m = np.array([[-(cl + q) / v1, q / v2], [q / v1, -q / v2]])
    rate = dose / infusion
    e_inf = scipy.linalg.expm(m * infusion)
    b = np.linalg.solve(m, (e_inf - np.eye(2)) @ np.array([rate, 0.0]))  # amounts added by one infusion from 0
    e_rest = scipy.linalg.expm(m * (tau - infusion))
    phi = e_rest @ e_inf
    x0 = np.linalg.solve(np.eye(2) - phi, e_rest @ b)  # amounts at the trough, periodic
    peak = e_inf @ x0 + b
    return peak[0] / v1, x0[0] / v1, cl


@pytest.fixture(scope="module")
def pembro():
    return exposure("pembrolizumab 200 mg q3w", weight=70, days=21 * 30).isel(patient=0).sel(drug="pembrolizumab")


def test_pembrolizumab_steady_state_matches_the_exact_two_compartment_solution(pembro):
    cmax_ss, ctrough_ss, cl = pembrolizumab_steady_state()
    last = pembro.isel(dose_interval=-1)
    assert float(last.cmax) == pytest.approx(cmax_ss, rel=1e-6)
    assert float(last.ctrough) == pytest.approx(ctrough_ss, rel=1e-6)
    # linear PK: the AUC over a dosing interval at steady state equals dose / CL
    assert float(last.auc) == pytest.approx(200.0 / cl, rel=1e-6)
    assert float(last.tmax) == pytest.approx(float(last.interval_start) + INFUSION, abs=1e-12)  # at the infusion end
    # the figures, for the README: Cmax,ss 91.2, Ctrough,ss 31.3 ug/mL, AUC 961 ug*day/mL
    assert (round(cmax_ss, 1), round(ctrough_ss, 1), round(200.0 / cl)) == (91.2, 31.3, 961)


def test_pembrolizumab_beside_published_exposure(pembro):
    # Freshwater et al. 2017, J Immunother Cancer 5:43, doi:10.1186/s40425-017-0242-5: mean AUCss over
    # 6 weeks 1.87 mg*day/mL (CV 37 %, n = 830) on 200 mg Q3W, i.e. 935 ug*day/mL per 3-week interval.
    # The typical 70-kg patient of the Ahamadi 2017 model: within 5 % of that mean.
    ss = float(pembro.auc[-1])
    assert ss == pytest.approx(935.0, rel=0.05)
    # Keytruda label (section 12.3): "systemic accumulation was 2.1-fold" at steady state on Q3W dosing
    assert ss / float(pembro.auc[0]) == pytest.approx(2.1, rel=0.02)
    # target occupancy at each trough: tumor partition 0.3 (Deng et al. 2016) x Ctrough over that plus the EC50
    # of 39.90 ng/mL (De Sousa Linhares et al. 2019), by hand from the trough concentrations
    tumor = 0.3 * pembro.ctrough.values
    np.testing.assert_allclose(pembro.trough_occupancy.values, tumor / (tumor + 0.0399), rtol=1e-9)
    assert float(pembro.trough_occupancy.min()) > 0.985  # the first trough, 0.990: on the plateau


def test_time_varying_clearance_auc_by_simpson_with_its_error():
    hourly = exposure("nivolumab 480 mg q4w x3", weight=70, days=84).isel(patient=0)
    fine = exposure("nivolumab 480 mg q4w x3", weight=70, days=84, step_days=1 / 96).isel(patient=0)
    assert str(hourly.auc_method.values[0]).startswith("composite Simpson")
    assert float(hourly.auc_error.max()) < 1e-6 * float(hourly.auc.min())
    np.testing.assert_allclose(hourly.auc.values, fine.auc.values, rtol=1e-8)
    np.testing.assert_allclose(hourly.cmax.values, fine.cmax.values, rtol=1e-7)  # both at the infusion end
    np.testing.assert_allclose(hourly.tmax.values[0], [INFUSION, 28 + INFUSION, 56 + INFUSION], atol=1e-12)


def test_a_cut_short_last_interval_is_marked():
    ds = exposure("pembrolizumab 200 mg q3w", weight=70, days=50)
    assert ds.sizes["dose_interval"] == 3
    assert ds.complete.values.tolist() == [[True, True, False]]
    assert float(ds.interval_end[0, -1]) == 50.0
    assert "*" in exposure_table(ds).splitlines()[4]
    assert exposure_table(ds).splitlines()[-1].startswith("* the simulation ended before the next dose")
    whole = exposure("pembrolizumab 200 mg q3w", weight=70, days=63)  # three whole intervals: no mark, no footnote
    assert bool(whole.complete.all()) and "the simulation ended before" not in exposure_table(whole)


def test_bolus_trough_is_the_left_limit():
    from tests.test_spec import MEMORY, TOY_DRUG

    model = ip.core_model().extend(MEMORY, drugs=(TOY_DRUG,), name="core + resident memory")
    ds = exposure("toymab 100 mg qw x3 bolus", model=model, days=21).isel(patient=0).sel(drug="toymab")
    k, tau = 0.5 / 5.0, 7.0
    n = np.arange(1, 4)
    cmax = 100.0 / 5.0 * (1 - np.exp(-n * k * tau)) / (1 - np.exp(-k * tau))
    ctrough = cmax * np.exp(-k * tau)
    np.testing.assert_allclose(ds.cmax.values, cmax, rtol=1e-9)
    np.testing.assert_allclose(ds.ctrough.values, ctrough, rtol=1e-9)
    np.testing.assert_allclose(ds.auc.values, (100.0 - 5.0 * np.diff(np.concatenate([[0.0], ctrough]))) / 0.5, rtol=1e-9)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"regimen": "none"}, RegimenError,
     "regimen = 'none' is not allowed; allowed: a regimen that doses at least one drug (exposure of no treatment is 0)"),
    ({"regimen": "pembrolizumab 200 mg q3w", "above": -1.0}, InputError,
     "above = -1.0 is not allowed; allowed: a finite concentration > 0 (ug/mL, or text with a unit such as '500 ng/mL')"),
    ({"regimen": "pembrolizumab 200 mg q3w", "above": {"nivolumab": 5.0}}, InputError,
     "above drug = 'nivolumab' is not allowed; allowed: a drug of the regimen: ['pembrolizumab']"),
    ({"regimen": "pembrolizumab 200 mg q3w", "step_days": 0}, InputError,
     "step_days = 0 is not allowed; allowed: a grid step in day, > 0 and <= 1"),
    ({"regimen": "pembrolizumab 200 mg q3w", "above": "5 kg"}, InputError,
     "above: cannot convert 'kg' (mass) to 'ug/mL' (concentration); give a quantity in ug/mL or another concentration unit"),
])
def test_bad_input_is_refused_before_anything_runs(kwargs, error, message):
    with pytest.raises(error) as exc:
        exposure(**kwargs)
    assert str(exc.value) == message


def test_threshold_with_a_unit():
    ds = exposure("pembrolizumab 200 mg q3w x2", weight=70, days=42, above="20000 ng/mL")
    assert float(ds.above_threshold[0]) == 20.0
    assert 0 < float(ds.time_above[0, 0, 0]) < 21
