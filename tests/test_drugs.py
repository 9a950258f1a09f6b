"""The anti-PD-L1, anti-CTLA-4, chemotherapy and antagomir drugs against their published PK.

Every number below is the source's (label or paper), with its tolerance stated; where our
typical-patient value is compared with a population summary (a geometric or arithmetic mean
over patients) the tolerance allows for the between-patient variability the summary includes.
Three published half-lives are not our typical patient's terminal half-life, and each test says
what the comparable quantity is: durvalumab's label figure is the older label model's at baseline
(ours, from a refit whose clearance starts higher and falls further, is 0.77 of it at t = 0 and
matches the label's day-365 clearance and Vss; the test locks the gap); avelumab's label figure is a summary over patients (the refit
popPK we use has a very variable peripheral volume, so the mean of individual half-lives exceeds
the typical patient's), and docetaxel's label figure is the gamma phase of a phase-I fit that
disagrees with the popPK whose volumes we use (the test keeps the popPK and locks the gap).
"""

import re

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import immunopd as ip
from immunopd.dosing import Regimen
from immunopd.errors import RegimenError
from immunopd.models.drugs import DRUGS
from immunopd.units import mosteller_bsa

TIGHT = dict(rtol=1e-10, atol=1e-12)
PK_ONLY = ["tumor_volume", "concentration", "occupancy", "drug_amount"]


def typical(drug, role):
    return DRUGS[drug].pk_values[role].value


def terminal_half_life_days(drug, **scale):
    import jax.numpy as jnp

    d = DRUGS[drug]
    v = {r: jnp.asarray(d.pk_values[r].value * scale.get(r, 1.0)) for r in d.pk.roles}
    rates, *_ = d.pk.propagator(v)
    return float(np.log(2) / np.min(np.asarray(rates)))


def run(regimen, params=None, *, times, **kw):
    return ip.simulate(regimen, params or {}, times=times, outputs=PK_ONLY, **kw, **TIGHT)


def conc(ds, drug):
    return ds.concentration.sel(drug=drug).values[0]


# --------------------------------------------------------------------------- atezolizumab
def test_atezolizumab_half_life_and_steady_state_exposure():
    """Stroh et al. 2017 (doi:10.1002/cpt.587): terminal half-life 27 days (within 5 %).
    Tecentriq SmPC (model-based, 1200 mg Q3W): steady-state trough 179 ug/mL geometric mean
    (5th-95th percentile 98.4-313; ours within 10 %) and AUC,ss 6107 ug day/mL (within 5 %),
    for the source's reference patient (77 kg, albumin 40 g/L, male)."""
    assert terminal_half_life_days("atezolizumab") == pytest.approx(27.0, rel=0.05)
    tau, k = 21.0, 17
    times = np.linspace(k * tau, (k + 1) * tau, 21 * 48 + 1)
    ds = run("atezolizumab 1200 mg q3w", {"albumin": 40.0}, times=np.concatenate([[0.0], times]), weight=77.0)
    c = conc(ds, "atezolizumab")[1:]
    assert c[-1] == pytest.approx(179.0, rel=0.10)
    assert np.trapezoid(c, times) == pytest.approx(6107.0, rel=0.05)


@pytest.mark.parametrize("preset", ["atezolizumab-1200mg-q3w", "atezolizumab-840mg-q2w", "atezolizumab-1680mg-q4w"])
def test_pdl1_occupancy_at_approved_atezolizumab_doses(preset):
    """Deng et al. 2016 (mAbs 8:593, doi:10.1080/19420862.2015.1136043) put the serum trough for
    95 % tumor PD-L1 occupancy at 6 ug/mL; the approved doses' first troughs are >10x that, so
    tumor PD-L1 occupancy stays >= 0.95 throughout the first cycle (and the 6 ug/mL point itself
    gives 0.95 +- 0.02 with the declared KD and tumor partition)."""
    reg = Regimen.preset(preset)
    tau = reg.series[0].interval
    ds = run(reg, times=np.linspace(0.1, tau, 200), weight=70.0)
    assert ds.occupancy.sel(target="pdl1").values[0].min() >= 0.95
    d = DRUGS["atezolizumab"]
    x = d.tumor_partition.value * 6.0 / d.potency.ec50_ug_per_ml(d.molecular_weight_kda)
    assert x / (1 + x) == pytest.approx(0.95, abs=0.02)


# --------------------------------------------------------------------------- durvalumab
def test_durvalumab_clearance_in_time_and_exposure():
    """Imfinzi label (2017): steady-state clearance 8.24 mL/h = 0.198 L/day (ours at one year,
    reference patient, within 5 %). De Vries et al. 2025 (doi:10.1007/s40262-025-01555-8,
    Table 2, simulated from Baverel 2018's model): 1500 mg Q4W steady-state Ctrough 161 and
    Cavg 263 ug/mL (ours within 10 %; the models differ, ours has clearance falling in time)."""
    cl_ss = typical("durvalumab", "clearance") * np.exp(typical("durvalumab", "clearance_emax") * 365 / (61.3 + 365))
    assert cl_ss == pytest.approx(8.24e-3 * 24, rel=0.05)
    tau = 28.0
    times = np.linspace(13 * tau, 14 * tau, 28 * 24 + 1)
    ds = run("durvalumab 1500 mg q4w", {"albumin": 39.0, "egfr": 85.66}, times=np.concatenate([[0.0], times]), weight=69.4)
    c = conc(ds, "durvalumab")[1:]
    assert c[-1] == pytest.approx(161.0, rel=0.10)
    assert np.trapezoid(c, times) / tau == pytest.approx(263.0, rel=0.10)


def test_durvalumab_half_life_and_steady_state_distribution():
    """Imfinzi Swiss product information (Fachinformation, Pharmacocinetique, population PK of
    1,878 patients at 10 mg/kg Q2W to 20 mg/kg Q4W; as read on ch.oddb.org): geometric-mean Vss
    5.64 L, steady-state clearance 8.16 mL/h at day 365, and a terminal half-life "based on
    baseline clearance" of about 18 days, after a mean maximal fall of clearance of 23 %.

    What is comparable: all three are geometric means over patients; Abegesah et al. 2025
    (doi:10.1007/s00280-024-04743-8, Table 4 via nlmixr2lib) has log-normal variability on CL and
    V1 only (omega2 0.0795, 0.0593, cov 0.0390) and none on Q or V2, so the geometric mean of
    individual half-lives is the typical patient's to 1 % (14.0 vs 13.9 d at t = 0): the typical
    values are compared. Vss (5.41 L) and the day-365 clearance (8.11 mL/h) agree within 5 %.
    The half-life at t = 0 does not: ours is 13.9 d, 0.77 of the label's 18 d, because Abegesah's
    refit starts from a higher clearance (0.298 L/day = 12.4 mL/h) that falls further (-39 % at
    the asymptote, against the label model's mean -23 %) to the same day-365 clearance; the label's
    figure lies between our t = 0 and our day-365 half-life (20.5 d). The ratio is locked at
    0.77 +- 0.03 so a change is seen; no value of the record is changed."""
    t50, emax = typical("durvalumab", "clearance_t50"), typical("durvalumab", "clearance_emax")
    t0 = terminal_half_life_days("durvalumab")
    t365 = terminal_half_life_days("durvalumab", clearance=np.exp(emax * 365 / (t50 + 365)))
    vss = typical("durvalumab", "central_volume") + typical("durvalumab", "peripheral_volume")
    assert vss == pytest.approx(5.64, rel=0.05)
    cl365_ml_h = typical("durvalumab", "clearance") * np.exp(emax * 365 / (t50 + 365)) / 24 * 1000
    assert cl365_ml_h == pytest.approx(8.16, rel=0.05)
    assert t0 == pytest.approx(13.89, abs=0.01)
    assert t0 / 18.0 == pytest.approx(0.77, abs=0.03)
    assert t0 < 18.0 < t365
    assert t365 == pytest.approx(20.5, abs=0.1)


# --------------------------------------------------------------------------- avelumab
def test_avelumab_proportional_clearance_in_time_against_its_own_ode():
    """Masters et al. 2022 (doi:10.1002/psp4.12771) write CL(t) = CL (1 + Imax t^g/(T50^g + t^g))
    (Imax -0.08533, T50 99.24 day, g 2.086): integrated with the PD states it equals that ODE typed
    here and solved by scipy Radau at rtol 1e-11 (rel < 1e-6, 800 mg Q2W for 200 days, 80 kg)."""
    cl0, v1, q, v2 = (typical("avelumab", r) for r in ("clearance", "central_volume", "intercompartmental_clearance", "peripheral_volume"))
    imax, t50, g = -0.08533, 99.24, 2.086
    dur = 60 / 1440

    def pk(t, y, rate):
        cl = cl0 * (1 + imax * t**g / (t50**g + t**g))
        c1, c2 = y[0] / v1, y[1] / v2
        return [rate - cl * c1 - q * (c1 - c2), q * (c1 - c2)]

    times = np.arange(1.0, 201.0)
    ds = run("avelumab 800 mg q2w", times=times, weight=80.0)
    edges = sorted({e for s in np.arange(0, 200, 14) for e in (s, s + dur)} | {200.0})
    y, out = np.zeros(2), []
    for a, b in zip(edges[:-1], edges[1:]):
        rate = 800 / dur if (a % 14) < dur / 2 else 0.0
        sel = times[(times > a) & (times <= b)]
        sol = solve_ivp(pk, (a, b), y, args=(rate,), method="Radau", rtol=1e-11, atol=1e-13, t_eval=sel if sel.size else None)
        out += list(sol.y[0, -sel.size:] / v1) if sel.size else []
        y = sol.y[:, -1]
    np.testing.assert_allclose(conc(ds, "avelumab"), np.array(out), rtol=1e-6)


def two_compartment_half_life(cl, v1, q, v2):
    """Terminal half-life of a linear 2-compartment model (the slower eigenvalue), vectorised."""
    k10, k12, k21 = cl / v1, q / v1, q / v2
    a = k10 + k12 + k21
    return np.log(2) / ((a - np.sqrt(a * a - 4 * k10 * k21)) / 2)


def test_avelumab_half_life_is_a_population_summary_and_matches_it():
    """The label's 6.1 days (Bavencio, 10 mg/kg Q2W; from the population PK at approval) is not
    Masters et al. 2022's typical patient, whose terminal half-life is 4.34 d at t = 0 and 4.74 d
    once clearance has fallen by Imax (-8.5 %). Masters' Table 1 (doi:10.1002/psp4.12771, as
    transcribed in nlmixr2lib Masters_2022_avelumab) gives a very variable peripheral volume
    (omega2 V2 1.204, i.e. CV about 150 %, with the CL-V1-V2 covariances and omega2 Imax 0.1052), and
    a half-life is convex in V2, so a summary over patients exceeds the typical value. The
    comparable quantity: the mean of individual steady-state terminal half-lives over patients
    drawn from Table 1 (80 kg): 6.0 d, within 5 % of 6.1 d. The label text available here does
    not say which summary it is; the geometric mean is 5.4 d (within 15 %) and the typical
    patient is 22 % below it. No value of the record is changed (no transcription error found:
    CL 0.0269 L/h, V1 3.196 L, V2 0.7278 L, Q 0.03352 L/h (Table 1 prints 0.3352; its own CI
    says 0.03352), Imax -0.08533, T50 99.24 d, gamma 2.086)."""
    cl, v1, q, v2, imax = (typical("avelumab", r) for r in
                           ("clearance", "central_volume", "intercompartmental_clearance", "peripheral_volume", "clearance_emax"))
    assert two_compartment_half_life(cl, v1, q, v2) == pytest.approx(terminal_half_life_days("avelumab"), rel=1e-9)
    assert terminal_half_life_days("avelumab") == pytest.approx(4.34, abs=0.01)
    assert two_compartment_half_life(cl * (1 + imax), v1, q, v2) == pytest.approx(4.74, abs=0.01)
    # Masters 2022 Table 1: the CL-V1-V2 block and Imax's (log-normal on its magnitude)
    omega = np.array([[0.09339, 0.03048, 0.08418], [0.03048, 0.03776, 0.01799], [0.08418, 0.01799, 1.204]])
    rng = np.random.default_rng(2022)
    n = 200_000
    eta = rng.multivariate_normal(np.zeros(3), omega, n)
    imax_i = imax * np.exp(rng.normal(0.0, np.sqrt(0.1052), n))
    t_half = two_compartment_half_life(cl * np.exp(eta[:, 0]) * (1 + imax_i), v1 * np.exp(eta[:, 1]), q, v2 * np.exp(eta[:, 2]))
    assert t_half.mean() == pytest.approx(6.1, rel=0.05)
    assert np.exp(np.log(t_half).mean()) == pytest.approx(6.1, rel=0.15)


# --------------------------------------------------------------------------- ipilimumab
def test_ipilimumab_trough_and_half_life():
    """Yervoy label 12.3: mean steady-state minimum 19.4 ug/mL at 3 mg/kg Q3W, reached by the third
    dose (ours: the trough before dose 4, 80 kg reference patient, within 15 %: the label's is an
    arithmetic mean over patients); terminal half-life 15.4 days (ours at t = 0, within 10 %)."""
    ds = run("ipilimumab 3 mg/kg q3w x4", times=np.array([0.0, 63.0]), weight=80.0)
    assert conc(ds, "ipilimumab")[-1] == pytest.approx(19.4, rel=0.15)
    assert terminal_half_life_days("ipilimumab") == pytest.approx(15.4, rel=0.10)


# --------------------------------------------------------------------------- docetaxel
def test_docetaxel_cmax_and_auc_at_100_mg_per_m2():
    """Taxotere label 5.2: 100 mg/m2 as a 1-hour infusion gives Cmax 3.7 ug/mL and AUC 4.6 ug h/mL
    (ours within 10 %, BSA 1.82 m2); dose-proportional (linear PK, 20-115 mg/m2)."""
    times = np.concatenate([np.linspace(0, 2 / 24, 241), np.linspace(2 / 24, 7.0, 2000)[1:]])
    ds = run("docetaxel 100 mg/m2 over 60 min", times=times, bsa=1.82)
    c = conc(ds, "docetaxel")
    assert c.max() == pytest.approx(3.7, rel=0.10)
    assert c.argmax() == np.argmin(np.abs(times - 1 / 24))  # the peak at the end of the infusion
    assert np.trapezoid(c, times) * 24 == pytest.approx(4.6, rel=0.10)
    half = run("docetaxel 50 mg/m2 over 60 min", times=times, bsa=1.82)
    np.testing.assert_allclose(conc(half, "docetaxel"), c / 2, rtol=1e-8, atol=1e-14)


def test_docetaxel_terminal_half_life_between_its_published_figures():
    """Our gamma phase is 16.6 h (label clearance 21 L/h/m2 x 1.82 m2 with Ozawa et al. 2007's
    volumes, doi:10.1111/j.1349-7006.2007.00615.x, Table 2 as transcribed in nlmixr2lib: V1 6.94,
    V2 7.39, V3 225 L; Q2 5.58, Q3 12.5 L/h; no transcription error found). Ozawa's own model
    (its CL 35.7 L/h) gives 16.9 h, so the gap is the source's, not our clearance (within 5 %).
    The published figures of a "terminal half-life" depend on how long plasma was sampled:
    Taxotere SmPC 5.2 (phase I, 20-115 mg/m2, three-compartment fit): alpha 4 min, beta 36 min,
    gamma 11.1 h with Vss 113 L; Extra/Bruno's phase-I review (Cancer Surv 1993 17:305) 12 h; the
    current US docetaxel label 12.3, with sampling extended to 8-22 days: 116 h (range of means
    92-135) and CL 18 L/h/m2. Ours lies between the short- and the long-sampling figures; against
    the phase-I gamma phase it is 1.50 times longer (locked here at +-0.05 so a change is seen),
    because Ozawa's V3 (225 L, SE 46) makes our Vss 239 L against the SmPC's 113 L. Cmax and AUC,
    which the early phases and the clearance set, match the label (the test above)."""
    t_gamma = terminal_half_life_days("docetaxel", clearance=1.82) * 24
    assert t_gamma == pytest.approx(16.6, abs=0.05)
    d = DRUGS["docetaxel"]
    ozawa = dict(clearance=35.7 * 24 / typical("docetaxel", "clearance"))
    assert terminal_half_life_days("docetaxel", **ozawa) * 24 == pytest.approx(t_gamma, rel=0.05)
    assert 11.1 < t_gamma < 92.0
    assert t_gamma / 11.1 == pytest.approx(1.50, abs=0.05)
    vss = sum(typical("docetaxel", r) for r in d.pk.roles if "volume" in r)
    assert vss / 113.0 == pytest.approx(2.11, abs=0.05)


def test_bsa_dosing_against_a_hand_calculation():
    """75 mg/m2 for 170 cm and 70 kg: Mosteller BSA sqrt(170 x 70 / 3600) = 1.8181 m2, 136.36 mg per
    dose; three doses Q3W before day 63 are 409.1 mg, and the amount eliminated plus that in the body
    equals it (mass balance, rel 1e-8)."""
    assert float(mosteller_bsa(170, 70)) == pytest.approx(1.818118, abs=1e-6)
    ds = run("docetaxel 75 mg/m2 q3w", times=np.linspace(0, 63, 64), weight=70.0, height=170.0)
    assert float(ds.dosed.sel(drug="docetaxel")[0]) == pytest.approx(3 * 75 * np.sqrt(170 * 70 / 3600), rel=1e-12)
    assert float(ds.body_surface_area[0]) == pytest.approx(1.818118, abs=1e-6)
    total = ds.drug_amount.sel(drug="docetaxel").isel(time=-1)[0].sum()
    assert float(total) == pytest.approx(3 * 75 * 1.818118, rel=1e-6)
    # BSA given directly gives the same doses
    direct = run("docetaxel 75 mg/m2 q3w", times=np.linspace(0, 63, 64), bsa=float(mosteller_bsa(170, 70)))
    np.testing.assert_allclose(conc(direct, "docetaxel"), conc(ds, "docetaxel"), rtol=1e-10, atol=1e-15)


def test_bsa_given_directly_as_a_population_covariate():
    """Issue #15: BSA may be given directly, in Python (``bsa=``) and in populations. body_surface_area
    is a model parameter, so ``Population.from_params({"body_surface_area": ...})`` gives each
    patient's BSA, and ``sample(typical={"body_surface_area": b})`` gives every sampled patient b (a
    BSA the caller gives is kept; only without one is it the Mosteller BSA of the drawn height and
    weight). A 75 mg/m2 dose is then 75 x BSA mg: at the end of the 1-hour infusion
    the amount in the body plus that eliminated is exactly that (1.6 m2: 120 mg, 2.1 m2: 157.5 mg)."""
    from immunopd.population import Covariates, Population, sample
    from immunopd.trial import run_trial

    end = np.array([0.0, 1 / 24])
    pop = Population.from_params({"body_surface_area": np.array([1.6, 2.1])})
    ds = run("docetaxel 75 mg/m2 over 60 min", pop.params(), times=end)
    np.testing.assert_allclose(ds.dosed.sel(drug="docetaxel").values, [120.0, 157.5], rtol=1e-12)
    total = ds.drug_amount.sel(drug="docetaxel").isel(time=-1).sum("compartment").values
    np.testing.assert_allclose(total, [120.0, 157.5], rtol=1e-6)
    assert ds.attrs["body_surface_area_given"] == 1

    sampled = sample(4, seed=1, typical={"body_surface_area": 1.9}, covariates=Covariates(height_median_cm=None), eligibility=None)
    np.testing.assert_array_equal(sampled.data.body_surface_area.values, 1.9)
    trial = run_trial({"docetaxel": "docetaxel 75 mg/m2 q3w over 60 min"}, sampled, days=21, outputs=("sld",))
    np.testing.assert_allclose(trial.dosed.sel(drug="docetaxel").values, 75 * 1.9, rtol=1e-12)
    # a given BSA is kept even where height is drawn; without one, BSA is Mosteller's from height and weight
    np.testing.assert_array_equal(sample(4, seed=1, typical={"body_surface_area": 1.9}, eligibility=None).data.body_surface_area.values, 1.9)
    drawn = sample(4, seed=1, eligibility=None).data
    np.testing.assert_allclose(drawn.body_surface_area.values, np.sqrt(drawn.height.values * drawn.body_weight.values / 3600), rtol=1e-12)


def test_mg_per_m2_without_body_size_is_an_error_naming_what_is_missing():
    with pytest.raises(RegimenError) as err:
        ip.simulate("docetaxel 75 mg/m2 q3w", days=30)
    assert str(err.value) == (
        "body surface area = None is not allowed; allowed: a body surface area in m2 (needed by the mg/m2 dose "
        "'docetaxel 75 mg/m2 q21d over 60 min'): pass bsa=... (m2) or height=... (cm) with weight=... (kg), or --bsa / "
        "--height with --weight")
    with pytest.raises(ip.errors.InputError, match="a body weight in kg together with height"):
        ip.simulate("docetaxel 75 mg/m2 q3w", days=30, height=170.0)
    with pytest.raises(ip.errors.InputError, match="height .with weight. or bsa, not both"):
        ip.simulate("docetaxel 75 mg/m2 q3w", days=30, height=170.0, weight=70.0, bsa=1.8)


# --------------------------------------------------------------------------- regimens
def test_melanoma_combination_schedule_expands_to_the_label_dose_times():
    """Nivolumab 1 mg/kg + ipilimumab 3 mg/kg Q3W x4 (days 0, 21, 42, 63), then nivolumab 240 mg
    Q2W from week 12 (days 84, 98, ...): CheckMate 067 / Opdivo and Yervoy labels."""
    doses = Regimen.preset("nivolumab-ipilimumab-melanoma-q2w").doses(140.0, weight=80.0)
    nivo = [(t, mg) for d, t, mg, _ in doses if d == "nivolumab"]
    ipi = [(t, mg) for d, t, mg, _ in doses if d == "ipilimumab"]
    assert ipi == [(0.0, 240.0), (21.0, 240.0), (42.0, 240.0), (63.0, 240.0)]
    assert nivo == [(0.0, 80.0), (21.0, 80.0), (42.0, 80.0), (63.0, 80.0), (84.0, 240.0), (98.0, 240.0), (112.0, 240.0),
                    (126.0, 240.0)]
    q4w = Regimen.preset("nivolumab-ipilimumab-melanoma-q4w").doses(200.0, weight=80.0)
    assert [t for d, t, mg, _ in q4w if d == "nivolumab" and mg == 480.0] == [84.0, 112.0, 140.0, 168.0, 196.0]


def test_every_new_drug_acts_on_its_own_target():
    """Each drug raises only its own target's occupancy, and its mechanism changes the course
    (with no drug on a target its terms are exactly zero: untreated runs are unchanged)."""
    times = np.array([0.0, 0.05, 0.5, 10.0, 30.0, 60.0])  # 0.05 day: during the docetaxel peak
    base = ip.simulate(None, {"tcell_exclusion": 0.9}, times=times, weight=70.0, bsa=1.8)
    for regimen, target in (("atezolizumab 1200 mg q3w", "pdl1"), ("ipilimumab 3 mg/kg q3w x4", "ctla4"),
                            ("docetaxel 75 mg/m2 q3w", "tubulin"), ("mir25_antagomir 5 mg/kg qw", "mir25")):
        ds = ip.simulate(regimen, {"tcell_exclusion": 0.9}, times=times, weight=70.0, bsa=1.8)
        occ = ds.occupancy.max("time")[0]
        assert float(occ.sel(target=target)) > 0.5, regimen
        assert float(occ.drop_sel(target=target).max()) == 0.0, regimen
        assert not np.allclose(ds.tumor_volume.values, base.tumor_volume.values, rtol=1e-6), regimen


# --------------------------------------------------------------------------- adverse events
#: (regimen, events, patients, source): grade 3-4 treatment-related adverse events over the trial
AE_RATES = [
    ("nivolumab 3 mg/kg q2w", 51, 313, "CheckMate 067 nivolumab, Larkin et al. 2015, doi:10.1056/NEJMoa1504030 (16.3 %)"),
    ("ipilimumab 3 mg/kg q3w x4 over 90 min", 85, 311, "CheckMate 067 ipilimumab (27.3 %)"),
    ("nivolumab 1 mg/kg q3w x4; ipilimumab 3 mg/kg q3w x4 over 90 min; nivolumab 3 mg/kg q2w from week 12", 172, 313,
     "CheckMate 067 nivolumab + ipilimumab (55.0 %)"),
    ("docetaxel 75 mg/m2 q3w over 60 min", 247, 578, "OAK docetaxel, Fehrenbacher et al. 2018, doi:10.1016/j.jtho.2018.04.039 (42.7 %)"),
    # not used in the calibration: a check
    ("atezolizumab 1200 mg q3w", 90, 609, "OAK atezolizumab (14.8 %), not fitted"),
]


@pytest.mark.parametrize("regimen, events, patients, source", AE_RATES)
def test_adverse_event_rates_within_the_published_ci(regimen, events, patients, source):
    """The typical patient's one-year probability of a grade >= 3 treatment-related adverse
    event lies in the 95 % Clopper-Pearson CI of the published rate (four regimens calibrated,
    atezolizumab not)."""
    from immunopd.endpoints import response_rate

    _, lo, hi = response_rate(np.arange(patients) < events)
    ds = ip.simulate(regimen, times=np.array([0.0, 365.0]), weight=75.0, bsa=1.85, outputs=["adverse_event_probability"])
    p = float(ds.adverse_event_probability[0, -1])
    assert lo <= p <= hi, (source, p, lo, hi)
    if "not fitted" not in source:
        # the four calibrated rates are reproduced, not merely inside a CI: the defaults were solved
        # for them (bench/adverse_events.py), so a change of PK or potency must re-solve them
        assert p == pytest.approx(events / patients, abs=2e-3), (source, p)


def test_stopping_after_an_adverse_event_withholds_the_later_doses_and_feeds_back():
    """With ``adverse_events="stop"`` a patient with an event gets no dose after it (its dosed
    amount is exactly the doses started before the event day), one without an event is
    unchanged, the event days are the same as without stopping (the hazard before the event does
    not depend on what follows), and holding gives back the doses after the hold."""
    from immunopd.population import sample
    from immunopd.trial import run_trial

    pop = sample(60, seed=4)
    regimen = {"combo": "nivolumab 1 mg/kg q3w x4; ipilimumab 3 mg/kg q3w x4 over 90 min; nivolumab 3 mg/kg q2w from week 12"}
    kw = dict(days=182, outputs=("sld",))
    go = run_trial(regimen, pop, **kw).isel(regimen=0)
    stop = run_trial(regimen, pop, adverse_events="stop", **kw).isel(regimen=0)
    hold = run_trial(regimen, pop, adverse_events="hold", hold_days=42.0, **kw).isel(regimen=0)
    np.testing.assert_array_equal(go.adverse_event_day.values, stop.adverse_event_day.values)
    day = stop.adverse_event_day.values
    hit = np.isfinite(day)
    assert 10 < hit.sum() < 60  # about 40 % by half a year
    w = pop.data.body_weight.values
    for i in np.flatnonzero(hit):
        nivo = sum(w[i] * (1.0 if t < 84 else 3.0) for t in [0, 21, 42, 63] + list(range(84, 182, 14)) if t <= day[i])
        assert float(stop.dosed.sel(drug="nivolumab")[i]) == pytest.approx(nivo, rel=1e-12)
    np.testing.assert_array_equal(stop.dosed.values[~hit], go.dosed.values[~hit])
    np.testing.assert_array_equal(stop.sld.values[~hit], go.sld.values[~hit])
    assert np.all(stop.dosed.sel(drug="nivolumab").values[hit] <= go.dosed.sel(drug="nivolumab").values[hit])
    assert np.all(hold.dosed.sel(drug="nivolumab").values[hit] >= stop.dosed.sel(drug="nivolumab").values[hit])
    assert np.any(hold.dosed.sel(drug="nivolumab").values[hit] > stop.dosed.sel(drug="nivolumab").values[hit])
    # less drug after the event: the tumor of at least one such patient ends larger
    assert np.any(stop.sld.values[hit, -1] > go.sld.values[hit, -1] * (1 + 1e-6))
    assert float(stop.adverse_event_rate) == pytest.approx(hit.mean())


def test_first_crossing_by_hand():
    from immunopd.trial import first_crossing

    ts = np.array([0.0, 1.0, 2.0, 3.0])
    cumulative = np.array([[0.0, 0.5, 1.0, 1.5], [0.0, 0.1, 0.2, 0.3], [0.0, 2.0, 2.0, 2.0]])
    np.testing.assert_allclose(first_crossing(cumulative, ts, np.array([0.75, 1.0, 0.5])), [1.5, np.nan, 0.25])


def test_drugs_command_lists_every_drug_with_sources_and_presets(capsys):
    """Issue #15 part 6: ``immunopd drugs`` names every drug with its PK and potency sources and
    every preset; every PK value and covariate of every drug carries a source (a DOI or a label,
    or "assumed" with its reason). PK values from another source than the clearance's are listed
    too, grouped by source (docetaxel's volumes and distribution clearances are Ozawa 2007's, its
    clearance the Taxotere label's), and the combination presets follow with their regimen text."""
    from immunopd.cli import main
    from immunopd.models.drugs import COMBINATIONS

    assert main(["drugs"]) == 0
    blocks: dict[str, str] = {}
    for line in capsys.readouterr().out.splitlines():
        if not line.startswith(" "):
            name = line.split(":")[0]
            blocks[name] = ""
        blocks[name] += line + "\n"
    assert list(blocks) == [*DRUGS, "combinations"]
    for name, text in COMBINATIONS.items():
        assert f"\n    {name}: {text}\n" in blocks["combinations"], name
    assert ("\n    PK central_volume, intercompartmental_clearance, peripheral_volume, intercompartmental_clearance_2, "
            "peripheral_volume_2: Ozawa et al. 2007") in blocks["docetaxel"]
    assert "doi:10.1111/j.1349-7006.2007.00615.x" in blocks["docetaxel"]
    # every PK value's source appears in its drug's block (by DOI where it has one)
    for name, d in DRUGS.items():
        for role, v in d.pk_values.items():
            doi = re.search(r"doi:\S+?(?=[\s,;)]|$)", v.source)
            assert (doi.group(0) if doi else v.source) in blocks[name], (name, role)
    for name, d in DRUGS.items():
        assert "\n    PK: " in blocks[name] and "\n    potency: " in blocks[name], name
        for preset in d.preset_texts():
            assert preset in blocks[name], (name, preset)
        for role, v in d.pk_values.items():
            assert "doi:" in v.source or "label" in v.source or v.source.startswith("assumed:"), (name, role, v.source)
        for c in d.covariates:
            assert c.source, (name, c.role, c.covariate)
