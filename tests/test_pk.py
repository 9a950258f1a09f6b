"""Drug PK against closed forms, scipy, mass balance and covariate scaling."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import immunopd as ip
from immunopd.integrate import occupancies
from immunopd.models.drugs import DRUGS

from .reference import two_compartment_infusions

TIGHT = dict(rtol=1e-10, atol=1e-12)
#: nivolumab with its time-varying clearance switched off and the source's reference patient (female)
NIVO_STATIC = {"nivolumab_clearance_emax": 0.0, "female": 1.0, "egfr": 90.0}


def typical(drug: str, role: str) -> float:
    return DRUGS[drug].pk_values[role].value


def reference_weight(drug: str) -> float:
    return next(c.reference for c in DRUGS[drug].covariates if c.covariate == "body_weight")


def conc(ds, drug):
    return ds.concentration.sel(drug=drug).values[0]


@pytest.mark.parametrize("drug,amount,every,params", [("pembrolizumab", 200.0, 21, {}), ("nivolumab", 480.0, 28, NIVO_STATIC)])
def test_year_of_infusions_matches_closed_form(drug, amount, every, params):
    """Two-compartment PK under a year of IV infusions equals the superposed closed form (rel < 1e-6).

    Weight = the popPK reference weight and sex = the reference category, so the typical values
    apply unscaled (Ahamadi 2017 doi:10.1002/psp4.12139; Bajaj 2017 doi:10.1002/psp4.12143, with
    its clearance-in-time effect off: the closed form is for constant clearance).
    """
    times = np.unique(np.concatenate([np.arange(0, 366.0), np.arange(0, 365, every) + 30 / 1440]))
    ds = ip.simulate(f"{drug} {amount:g} mg q{every}d", params, times=times, weight=reference_weight(drug), **TIGHT)
    doses = [(t, amount, 30 / 1440) for t in np.arange(0, 365, every)]
    expected = two_compartment_infusions(times, doses, *(typical(drug, r) for r in (
        "clearance", "central_volume", "intercompartmental_clearance", "peripheral_volume")))
    got = conc(ds, drug)
    on = expected > 1e-3
    assert np.max(np.abs(got[on] - expected[on]) / expected[on]) < 1e-6
    assert np.all(np.abs(got[~on]) < 1e-12)  # before the first dose: zero up to round-off


def test_nivolumab_time_varying_clearance_against_its_own_ode():
    """Bajaj 2017's CL(t) = CL0 exp(Emax t^h/(T50^h + t^h)) (Emax -0.295, T50 1410 h, Hill 3.15),
    integrated with the PD states, equals the two-compartment ODE with that CL(t) typed here and
    integrated by scipy Radau at rtol 1e-11 (rel < 1e-6 over a year of 240 mg Q2W)."""
    cl0, v1, q, v2 = 0.2256, 3.63, 0.7704, 2.78
    emax, t50, hill = -0.295, 1410 / 24, 3.15

    def pk(t, y, rate):
        cl = cl0 * np.exp(emax * t**hill / (t50**hill + t**hill))
        c1, c2 = y[0] / v1, y[1] / v2
        return [rate - cl * c1 - q * (c1 - c2), q * (c1 - c2)]

    times = np.arange(1.0, 366.0)
    ds = ip.simulate("nivolumab 240 mg q2w", {"female": 1.0, "egfr": 90.0}, times=times, weight=80.0, **TIGHT)
    y, out = np.zeros(2), []
    dur = 30 / 1440
    edges = sorted({e for s in np.arange(0, 365, 14) for e in (s, s + dur)} | {365.0})
    for a, b in zip(edges[:-1], edges[1:]):
        rate = 240 / dur if (a % 14) < dur / 2 else 0.0
        sel = times[(times > a) & (times <= b)]
        sol = solve_ivp(pk, (a, b), y, args=(rate,), method="Radau", rtol=1e-11, atol=1e-13, t_eval=sel if sel.size else None)
        out += list(sol.y[0, -sel.size:] / v1) if sel.size else []
        y = sol.y[:, -1]
    np.testing.assert_allclose(conc(ds, "nivolumab"), np.array(out), rtol=1e-6)
    # the clearance falls by the published ~25 %: steady-state troughs late rise above the early ones
    assert conc(ds, "nivolumab")[-1] > conc(ds, "nivolumab")[13]


def test_reference_cmax_and_trough_recomputed():
    """Pembrolizumab 200 mg Q3W, typical patient: first trough 12.7 ug/mL, first-infusion peak 57.5 ug/mL.

    model-reference.md 5.4 [calc] quotes these from an IV-bolus approximation; our 30-min infusion
    peak must sit just below the bolus value and the day-21 trough within 1 %.
    """
    ds = ip.simulate("pembrolizumab 200 mg q3w", times=[30 / 1440, 21.0], weight=reference_weight("pembrolizumab"), **TIGHT)
    peak, trough = conc(ds, "pembrolizumab")
    bolus_peak = 200.0 / typical("pembrolizumab", "central_volume")  # 57.47 ug/mL
    assert 0.98 * bolus_peak < peak < bolus_peak
    assert trough == pytest.approx(12.7, rel=0.01)


@pytest.mark.parametrize("regimen", ["pembrolizumab 200 mg q3w; bexmarilimab 3 mg/kg q2w over 60 min", "nivolumab 240 mg q2w"])
def test_mass_balance(regimen):
    """Dosed amount = central + peripheral + eliminated, for every drug, at every output time
    (exact PK and the integrated time-varying-clearance PK alike)."""
    ds = ip.simulate(regimen, days=200, weight=82.0)
    for drug in ds.drug.values:
        amounts = ds.drug_amount.sel(drug=drug).fillna(0.0).sum("compartment")
        dosed = float(ds.dosed.sel(drug=drug)[0])
        assert float(amounts[0, -1]) == pytest.approx(dosed, rel=1e-6)
        assert np.all(np.diff(amounts.values[0]) >= -1e-6 * dosed)  # only infusions add, nothing is lost
    if "bexmarilimab" in ds.drug.values:
        # 3 mg/kg x 82 kg every 14 days before day 200: 15 doses of 246 mg
        assert float(ds.dosed.sel(drug="bexmarilimab")[0]) == pytest.approx(15 * 246.0)
        assert float(ds.dosed.sel(drug="pembrolizumab")[0]) == pytest.approx(10 * 200.0)


def test_weight_scales_clearance_and_volumes():
    """At 50 kg the closed form with allometrically scaled CL, Q (^0.595) and V1, V2 (^0.489) applies."""
    w, ref = 50.0, reference_weight("pembrolizumab")
    sc, sv = (w / ref) ** 0.595, (w / ref) ** 0.489
    times = np.arange(1.0, 120.0)
    ds = ip.simulate("pembrolizumab 2 mg/kg q3w", times=times, weight=w, **TIGHT)
    doses = [(t, 2.0 * w, 30 / 1440) for t in np.arange(0, 120, 21)]
    expected = two_compartment_infusions(times, doses, typical("pembrolizumab", "clearance") * sc,
                                         typical("pembrolizumab", "central_volume") * sv,
                                         typical("pembrolizumab", "intercompartmental_clearance") * sc,
                                         typical("pembrolizumab", "peripheral_volume") * sv)
    np.testing.assert_allclose(conc(ds, "pembrolizumab"), expected, rtol=1e-6)


def test_sex_covariate_scales_clearance_and_central_volume():
    """Ahamadi 2017: female -15.2 % CL and -13.4 % V1 (categorical, reference male)."""
    times = np.arange(1.0, 60.0)
    ds = ip.simulate("pembrolizumab 200 mg q3w", {"female": 1.0}, times=times, weight=reference_weight("pembrolizumab"), **TIGHT)
    doses = [(t, 200.0, 30 / 1440) for t in np.arange(0, 60, 21)]
    expected = two_compartment_infusions(times, doses, 0.22 * (1 - 0.152), 3.48 * (1 - 0.134), 0.795, 4.06)
    np.testing.assert_allclose(conc(ds, "pembrolizumab"), expected, rtol=1e-6)


def test_albumin_egfr_and_ecog_scale_clearance():
    """Ahamadi 2017 power and categorical effects on pembrolizumab CL: albumin 30 g/L
    ((30/39.6)^-0.907 on CL, ^-0.208 on V1), eGFR 60 ((60/88.47)^0.135), ECOG >= 1 (-7.39 %)."""
    times = np.arange(1.0, 60.0)
    ds = ip.simulate("pembrolizumab 200 mg q3w", {"albumin": 30.0, "egfr": 60.0, "ecog_1_or_more": 1.0}, times=times,
                     weight=reference_weight("pembrolizumab"), **TIGHT)
    cl = 0.22 * (30 / 39.6) ** -0.907 * (60 / 88.47) ** 0.135 * (1 - 0.0739)
    doses = [(t, 200.0, 30 / 1440) for t in np.arange(0, 60, 21)]
    expected = two_compartment_infusions(times, doses, cl, 3.48 * (30 / 39.6) ** -0.208, 0.795, 4.06)
    np.testing.assert_allclose(conc(ds, "pembrolizumab"), expected, rtol=1e-6)


def test_occupancy_half_at_ec50_over_partition():
    """RO = pC/(pC + EC50): at C = EC50/p the occupancy is exactly 0.5."""
    model = ip.core_model()
    drug = model.drug("pembrolizumab")
    p = model.parameters.defaults()
    occ = occupancies((drug,), p, [p["pembrolizumab_ec50"] / p["pembrolizumab_tumor_partition"]])
    assert float(occ["pd1"]) == pytest.approx(0.5, abs=1e-15)
    assert float(occupancies((drug,), p, [0.0])["pd1"]) == 0.0


def test_back_to_back_infusions_equal_one_long_infusion():
    """Two 30-min infusions of 100 mg back to back give the same profile as 200 mg over 60 min (mrgsolve's check)."""
    times = np.linspace(0.01, 10, 50)
    two = ip.simulate("pembrolizumab 100 mg over 30 min; pembrolizumab 100 mg over 30 min from day 0.0208333333333333",
                      times=times, **TIGHT)
    one = ip.simulate("pembrolizumab 200 mg over 60 min", times=times, **TIGHT)
    np.testing.assert_allclose(conc(two, "pembrolizumab"), conc(one, "pembrolizumab"), rtol=1e-7)


def test_infusion_peak_at_its_end():
    """Concentration rises during a 2-h infusion and peaks at its end time."""
    end = 2 / 24
    times = np.linspace(0.001, 0.3, 300)
    times = np.sort(np.append(times, end))
    ds = ip.simulate("nivolumab 240 mg over 2 h", times=times, **TIGHT)
    c = conc(ds, "nivolumab")
    assert times[np.argmax(c)] == pytest.approx(end)


def test_three_compartment_exact_pk_against_radau():
    """A linear three-compartment drug (the chemotherapy type: Ozawa et al. 2007's docetaxel values,
    CL 35.7, V1 6.94, Q2 5.58, V2 7.39, Q3 12.5 L/h, V3 225 L, as a toy on the Clever-1 target)
    under 1-h infusions every 3 weeks: the exact propagation equals the 3-compartment ODE typed here
    and integrated by scipy Radau at rtol 1e-11 (rel < 1e-7), and the amounts balance the dose."""
    from immunopd.drugs import Drug, PKValue, Potency
    from immunopd.pkmodels import LinearPK

    src = "Ozawa et al. 2007 docetaxel values (nlmixr2lib Ozawa_2007_docetaxel), used as a toy here"
    h = 24.0  # L/h -> L/day
    values = {"clearance": 35.7 * h, "central_volume": 6.94, "intercompartmental_clearance": 5.58 * h,
              "peripheral_volume": 7.39, "intercompartmental_clearance_2": 12.5 * h, "peripheral_volume_2": 225.0}
    drug = Drug(name="three_cmt_toy", target="clever1", kind="small molecule", molecular_weight_kda=0.808, pk=LinearPK(3),
                pk_values={k: PKValue(v, src) for k, v in values.items()},
                potency=Potency(1.0, "ug/mL", "assumed", "assumed: toy"), tumor_partition=PKValue(1.0, "assumed: toy"))
    model = ip.core_model().extend(drugs=(drug,), name="core + 3-cmt toy")
    times = np.sort(np.concatenate([np.linspace(0.001, 42.0, 400), [1 / 24, 21 + 1 / 24]]))
    ds = ip.simulate("three_cmt_toy 150 mg q3w over 1 h", times=times, model=model, **TIGHT)

    cl, v1, q2, v2, q3, v3 = (values[k] for k in values)

    def ode(t, a, rate):
        c1, c2, c3 = a[0] / v1, a[1] / v2, a[2] / v3
        return [rate - cl * c1 - q2 * (c1 - c2) - q3 * (c1 - c3), q2 * (c1 - c2), q3 * (c1 - c3), cl * c1]

    y, got, dur = np.zeros(4), [], 1 / 24
    for a, b, infusing in ((0, dur, True), (dur, 21, False), (21, 21 + dur, True), (21 + dur, 42, False)):
        rate = 150 / dur if infusing else 0.0
        sel = times[(times > a) & (times <= b)]
        sol = solve_ivp(ode, (a, b), y, args=(rate,), method="Radau", rtol=1e-11, atol=1e-14, t_eval=np.unique(np.append(sel, b)))
        got += list(sol.y[:, np.isin(sol.t, sel)].T)
        y = sol.y[:, -1]
    ref = np.array(got)
    amounts = ds.drug_amount.sel(drug="three_cmt_toy").values[0]  # (compartment, time)
    np.testing.assert_allclose(amounts.T, ref, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(np.nansum(amounts, axis=0)[-1], 300.0, rtol=1e-10)
