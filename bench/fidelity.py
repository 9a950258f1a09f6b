"""How the model compares with the clinic: each behaviour beside the shipped data or a published value.

One table: the figure, immunopd's value, the data's or the publication's value, the target of
issue #14 where it sets one, whether it matches, and the citation. Nothing is tuned here; a
figure that does not match is printed as not matching.

The data's time-course figures come from the immunotherapy (atezolizumab) lesions of Ghaffari
Laleh et al. 2022 (data/laleh2022), each lesion on its own scans and follow-up; the model's
from each lesion's virtual twin (immunopd.calibration.calibrate_time_courses, atezolizumab
1200 mg Q3W), scanned on that lesion's own schedule and measured to 1 mm, scored by the same
function. Calibration figures are in-sample by construction, so the table also shows a
held-out check: twins matched to half of the lesions against the other half's figures. Beside
each held-out figure the source column gives the matched half's own figure and how far two
random halves of the lesions differ (95th percentile over 200 splits, and the share of splits
differing by more than the target's tolerance): a held-out miss smaller than that is within what
splitting the data alone produces. The verdict is not changed by it.

Reproduce with:  .venv/bin/python bench/fidelity.py   [--patients 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import immunopd as ip  # noqa: E402
from immunopd import endpoints as ep  # noqa: E402
from immunopd.biomarker import logistic_regression, sclever1_adjusted  # noqa: E402
from immunopd.calibration import calibrate_time_courses, observed_courses, plausible_population, time_course_figures  # noqa: E402
from immunopd.population import sample  # noqa: E402
from immunopd.trial import run_trial  # noqa: E402

SCLEVER1_SIGN = ("expected from mechanistic work: sClever-1 impairs activated T cells and lowered anti-PD-1 efficacy"
                 " in models and tumor explants (Prince et al. 2025, Theranostics 15:7501, doi:10.7150/thno.110544);"
                 " no published link of patients' plasma level to response, adjusted for tumor size, found")
LALEH = "Ghaffari Laleh et al. 2022, doi:10.1371/journal.pcbi.1009822 (data/laleh2022, atezolizumab arms)"
from immunopd.calibration import FIGURE_DAYS as DAYS, FIGURE_WEEKS as WEEKS  # noqa: E402


def lesion_courses(arm: str = "immunotherapy"):
    """Each lesion's (days since its baseline scan, diameter mm) from the baseline on."""
    return [(t, d) for _, t, d in observed_courses(arm=arm)]


# ---------------------------------------------------------------------- the table
TARGETS = ({f"week {w}: median % change": 5.0 for w in WEEKS} | {f"week {w}: share <= -30 %": 5.0 for w in WEEKS}
           | {f"week {w}: share >= +20 %": 5.0 for w in WEEKS} | {"median day of first <= -30 % scan (responders)": 15.0,
                                                                  "responders responding at the first scan %": 10.0}
           | {f"cumulative response by day {d} % (KM)": 4.0 for d in DAYS})


def split_half_gaps(courses, seed: int, splits: int = 200) -> dict[str, np.ndarray]:
    """Each figure's |figure(half A) - figure(half B)| over ``splits`` random halves of the
    lesions (finite gaps only): how far two halves of the same data differ."""
    rng = np.random.default_rng(seed)
    n = len(courses)
    gaps: dict[str, list[float]] = {}
    for _ in range(splits):
        perm = rng.permutation(n)
        a = time_course_figures([courses[i] for i in perm[: n // 2]])
        b = time_course_figures([courses[i] for i in perm[n // 2:]])
        for name in a:
            gaps.setdefault(name, []).append(abs(a[name] - b[name]))
    return {name: np.asarray(g)[np.isfinite(g)] for name, g in gaps.items()}


def _p95(gaps: np.ndarray) -> float:
    return float(np.percentile(gaps, 95)) if gaps.size else float("nan")


def split_half_spread(courses, seed: int, splits: int = 200) -> dict[str, float]:
    """Each figure's 95th percentile of :func:`split_half_gaps`."""
    return {name: _p95(g) for name, g in split_half_gaps(courses, seed, splits).items()}


def judge(name, value, reference):
    """(target text, matches) of one time-course figure (issue #14's targets)."""
    if name.startswith("median responder slope"):
        return "within 1.5x", bool(reference / 1.5 >= value >= reference * 1.5) if reference < 0 else None
    if name.startswith("fastest"):
        return ">= -0.1", bool(value >= -0.1)
    if name.startswith("pseudo"):
        return "reported", None
    if name.startswith("median day"):  # the target is 84 days (its own count of the data); ours of the data beside it
        return "within 15 of 84", bool(abs(value - 84.0) <= 15.0)
    tol = TARGETS[name]
    return f"within {tol:g}", bool(abs(value - reference) <= tol)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=20000, help="plausible patients the lesions' twins are matched from")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    start = time.time()
    rows = []

    def row(name, model, reference, target, ok, source):
        rows.append((name, model, reference, target, ok, source))

    def fmt(x):
        return "nan" if x is None or not np.isfinite(x) else (f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}")

    # 1. runaway collapse: the default hot patient on pembrolizumab
    ds = ip.simulate("pembrolizumab 200 mg q3w", days=365, outputs=["sld", "tumor_volume"])
    sld = ds.sld.values[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.diff(np.log(sld))
    courses = observed_courses()
    data = time_course_figures(courses)
    fastest = float(np.nanmin(slope))
    row("default hot patient, pembrolizumab 200 mg Q3W: fastest daily log-diameter slope (1/day)", fastest,
        data["fastest log-diameter slope between scans (1/day)"], ">= -0.1", fastest >= -0.1, LALEH)
    vmin = float(ds.tumor_volume.values[0].min())
    row("default hot patient: smallest tumor volume in a year (mm3)", vmin, 2.5e-6, ">= one cell (2.5e-6 mm3) or 0 (extinct)",
        vmin >= 2.5e-6 or vmin == 0, "one tumor cell ~2.5e-6 mm3 (QSP-IO cell volume 2527 um3, Sove et al. 2020, doi:10.1002/psp4.12546)")

    # 2. PD-1 occupancy at the first trough and at steady state (the trough before the dose of day 168)
    for regimen, interval in (("pembrolizumab 200 mg q3w", 21.0), ("pembrolizumab 2 mg/kg q3w", 21.0), ("nivolumab 240 mg q2w", 14.0),
                              ("nivolumab 480 mg q4w", 28.0)):
        occ = ip.simulate(regimen, times=[0.0, interval - 1e-6, 168.0 - 1e-6], weight=70.0,
                          outputs=["occupancy"]).occupancy.sel(target="pd1").values[0]
        src = "plateau of exposure-response: Turner et al. 2018 Clin Cancer Res; Chatterjee et al. 2017 CPT PSP"
        row(f"tumor PD-1 occupancy at the first trough, {regimen}", float(occ[1]), 0.95, ">= 0.95", occ[1] >= 0.95, src)
        row(f"tumor PD-1 occupancy at steady-state trough (day 168), {regimen}", float(occ[2]), 0.95, ">= 0.95", occ[2] >= 0.95, src)

    # 3. untreated ORR, default population (trial-eligible: progressing at baseline) and every draw
    for eligibility, label in (("progressing", "eligible (progressing at baseline)"), (None, "every draw, no eligibility")):
        pop = sample(1000, seed=args.seed, eligibility=eligibility)
        untreated = run_trial({"none": "none"}, pop, days=365, outputs=("sld",))
        orr0 = 100 * float(untreated.orr.values[0])
        row(f"untreated ORR %, default population (1,000, {label})", orr0, 1.0, "<= 1.5" if eligibility else "reported",
            orr0 <= 1.5 if eligibility else None, "placebo arms about 1 % (Sachdev et al. 2023, eClinicalMedicine, 45 randomized trials)")

    # 4. the time-course calibration: each lesion's twin, scanned on the lesion's own schedule
    plausible = plausible_population(args.patients, seed=args.seed)
    cal = calibrate_time_courses(plausible, courses, seed=args.seed)
    for name, value in cal.figures["calibrated"].items():
        target, ok = judge(name, value, data[name])
        row(f"calibrated (all {len(courses)} lesions): {name}", value, data[name], target, ok, LALEH)
    # held out: twins matched to the even-numbered lesions, compared with the odd-numbered ones
    half = calibrate_time_courses(plausible, courses[0::2], seed=args.seed)
    held, matched = time_course_figures(courses[1::2]), time_course_figures(courses[0::2])
    gaps = split_half_gaps(courses, args.seed)
    for name, value in half.figures["calibrated"].items():
        target, ok = judge(name, value, held[name])
        g = gaps[name]
        beyond = (f"; by more than the target's {TARGETS[name]:g} in {100 * np.mean(g > TARGETS[name]):.1f} % of them"
                  if name in TARGETS and g.size else "")
        row(f"held out (twins of even lesions vs odd lesions): {name}", value, held[name], target, ok,
            f"{LALEH}; even lesions themselves: {matched[name]:.3g}; two random halves of the lesions differ by up to "
            f"{_p95(g):.2g} (95th percentile, 200 splits){beyond}")

    # 5. the calibrated population under other regimens: 6-weekly scans for a year (RECIST)
    pop_c = cal.population
    trials = run_trial({"atezolizumab": "atezolizumab-1200mg-q3w", "none": "none",
                        "pembrolizumab 2 mg/kg": "pembrolizumab 2 mg/kg q3w", "pembrolizumab 10 mg/kg": "pembrolizumab 10 mg/kg q3w",
                        "pembrolizumab 200 mg": "pembrolizumab 200 mg q3w", "nivolumab 240 mg": "nivolumab 240 mg q2w",
                        "pembrolizumab 0.3 mg/kg": "pembrolizumab 0.3 mg/kg q3w",
                        "pembrolizumab 0.03 mg/kg": "pembrolizumab 0.03 mg/kg q3w",
                        "pembrolizumab 0.01 mg/kg": "pembrolizumab 0.01 mg/kg q3w"},
                       pop_c, days=365, outputs=("sld",), on_failure="flag")
    orr = {str(r): 100 * float(trials.orr.sel(regimen=r)) for r in trials.regimen.values}
    row("calibrated: untreated ORR %", orr["none"], 1.0, "<= 1.5", orr["none"] <= 1.5, "Sachdev et al. 2023")
    row("calibrated: ORR atezolizumab 1200 mg Q3W, 6-weekly scans for a year %", orr["atezolizumab"], np.nan, "reported", None,
        "OAK: ORR 14 % (Rittmeyer et al. 2017, doi:10.1016/S0140-6736(16)32517-X); the data pool OAK, POPLAR, BIRCH, FIR, IMvigor210")
    d_dose = orr["pembrolizumab 10 mg/kg"] - orr["pembrolizumab 2 mg/kg"]
    row("calibrated: ORR pembrolizumab 10 minus 2 mg/kg Q3W (points)", d_dose, 0.0, "within 2", abs(d_dose) <= 2,
        "flat 2-10 mg/kg (Chatterjee et al. 2017, CPT PSP; Turner et al. 2018 Clin Cancer Res)")
    d_drug = orr["nivolumab 240 mg"] - orr["pembrolizumab 200 mg"]
    row("calibrated: ORR nivolumab 240 mg Q2W minus pembrolizumab 200 mg Q3W (points)", d_drug, 0.0, "within 2", abs(d_drug) <= 2,
        "similar efficacy at the label doses (the issue's target)")
    for low in ("0.3", "0.03", "0.01"):
        d_low = orr[f"pembrolizumab {low} mg/kg"] - orr["pembrolizumab 2 mg/kg"]
        row(f"calibrated: ORR pembrolizumab {low} minus 2 mg/kg Q3W (points)", d_low, np.nan, "< 0 (low doses lose response)",
            d_low < 0, "dose-ranging (the issue's target)")

    # 6. sClever-1 beyond tumor volume (calibrated population, atezolizumab arm)
    adj = sclever1_adjusted(trials.assign(baseline_sclever1=("patient", pop_c.data.baseline_sclever1.values),
                                          baseline_tumor_volume=("patient", pop_c.data.baseline_tumor_volume.values)),
                            regimen="atezolizumab")
    a = adj.attrs
    row("calibrated: logistic coefficient of response on ln sClever-1, unadjusted", a["logit_coef_unadjusted"], np.nan, "reported",
        None, f"issue #14 item 7; 95 % CI {a['logit_coef_unadjusted_lower']:.3g} to {a['logit_coef_unadjusted_upper']:.3g}")
    # judged on its sign as well: sClever-1 is expected to go with resistance to anti-PD-1
    # (mechanistic work, Prince et al. 2025), so a CI above 0 (more response) is a miss, not a match
    below = a["logit_coef_adjusted_upper"] < 0
    row("calibrated: logistic coefficient of response on ln sClever-1, adjusted for ln baseline volume", a["logit_coef_adjusted"],
        np.nan, "< 0, CI excludes 0", below,
        f"issue #14 item 7; 95 % CI {a['logit_coef_adjusted_lower']:.3g} to {a['logit_coef_adjusted_upper']:.3g}; sign: {SCLEVER1_SIGN}")
    row("calibrated: correlation of ln baseline sClever-1 with ln baseline volume", a["corr_log_sclever1_log_volume"], np.nan,
        "reported", None, "issue #14 item 7")
    # the same before twin selection, where the outcome does not choose the patients: does the
    # release rate, and does baseline sClever-1, predict response once baseline volume is known?
    plaus_trial = run_trial({"atezolizumab": "atezolizumab-1200mg-q3w"}, plausible, days=365, outputs=("sld",), on_failure="flag")
    arm = plaus_trial.isel(regimen=0)
    ok = arm.solver_status.values == 0
    resp = np.isin(arm.best_response.values, (ep.CR, ep.PR))[ok].astype(float)
    log_v = np.log(plausible.data.baseline_tumor_volume.values[ok])
    for label, covariate in (("ln sClever-1 release rate", plausible.data.sclever1_release.values),
                             ("ln baseline sClever-1", plausible.data.baseline_sclever1.values)):
        fit = logistic_regression(resp, np.column_stack([np.log(covariate[ok]), log_v]), ["x", "log_volume"])["x"]
        row(f"plausible ({int(ok.sum())}, {int(resp.sum())} responders): logistic coefficient of response on {label}, "
            "adjusted for ln baseline volume", fit["coef"], np.nan, "reported", None,
            f"issue #14 item 7; 95 % CI {fit['lower']:.3g} to {fit['upper']:.3g}")

    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'immunopd':>10}  {'data/published':>14}  {'target':<30} {'matches':<8} source")
    for name, model_v, ref, target, ok, source in rows:
        verdict = "-" if ok is None else ("yes" if ok else "NO")
        print(f"{name:<{width}}  {fmt(model_v):>10}  {fmt(ref):>14}  {target:<30} {verdict:<8} {source}")
    judged = [r for r in rows if r[4] is not None]
    print(f"\n{sum(bool(r[4]) for r in judged)} of {len(judged)} judged figures match; "
          f"{len(pop_c)} twins matched among {args.patients} plausible patients (seed {args.seed}); {time.time() - start:.0f} s")
    print(f"reproduce: .venv/bin/python bench/fidelity.py --patients {args.patients} --seed {args.seed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
