"""Calibrate a virtual population to published response data (best % change and ORR).

Method: the "virtual population" acceptance–rejection of Allen et al. 2016 (CPT
Pharmacometrics Syst Pharmacol 5:140, doi:10.1002/psp4.12063), on a histogram of best %
change instead of their kernel densities (the observed distribution has a point mass at
-100%, complete disappearance, that a kernel would smear):

1. sample *plausible* patients widely (:func:`plausible_population`);
2. simulate them under the trial's therapy, scanned like the trial's patients: every 6 weeks
   up to a follow-up drawn from the observed follow-ups (seeded);
3. accept a plausible patient in bin ``b`` of best % change with probability
   ``(obs_b / sim_b) / max_c (obs_c / sim_c)``; the accepted patients then follow the observed
   distribution in expectation (Allen et al.'s choice of the largest scaling that keeps every
   probability <= 1).

Simulated diameters are "measured" like the trial's: rounded to ``resolution_mm`` (1 mm; most
diameters in the data are whole millimetres, and 11% of the observed lesions have a best
change of exactly 0%), and CR is a diameter measured as 0 mm.

Bins the plausible population never reaches cannot be matched; they are reported, never
hidden. The observed data are one arm of Ghaffari Laleh et al. 2022
(doi:10.1371/journal.pcbi.1009822), one target lesion per patient, scored here with the same
RECIST code as the simulations, and each arm is simulated with its own drug
(:data:`ARM_REGIMENS`): the immunotherapy arms with atezolizumab 1200 mg Q3W (anti-PD-L1), the
chemotherapy arms with docetaxel 75 mg/m2 Q3W (a 1-hour infusion, dosed by each virtual
patient's body surface area). The report prints the simulated trough occupancy of the drug's
target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from . import endpoints as ep
from .datasets import from_baseline
from .errors import InputError, describe
from .models.drugs import ARM_REGIMENS
from .population import Covariates, Population, sample
from .trial import DEFAULT_SCAN_INTERVAL_DAYS, run_trial

__all__ = ["observed_responses", "observed_courses", "plausible_population", "calibrate", "calibrate_time_courses",
           "time_course_figures", "Calibration", "TimeCourseCalibration", "ARM_REGIMENS", "BIN_EDGES"]

#: best % change bins; the first holds complete responses (0 mm measured)
BIN_EDGES = np.array([-100.0, -97.0, -90.0, -80.0, -70.0, -60.0, -50.0, -40.0, -30.0, -22.0, -15.0, -8.0, -3.0,
                      -1e-9, 1e-9,  # a bin of its own for "unchanged" (0%, 11% of the observed lesions)
                      3.0, 6.0, 10.0, 15.0, 20.0, 27.0, 35.0, 50.0, 75.0, np.inf])

#: wide between-patient variability for plausible patients (assumed: wide enough to cover the
#: observed range; the acceptance step, not these values, sets the final distribution)
PLAUSIBLE_CV = {
    "growth_rate": 1.0,
    "kill_rate": 1.0,
    "effector_influx": 1.0,
    "effector_expansion": 0.5,
    "exhaustion_rate": 0.5,
    "pdl1_upregulation": 0.7,
    "sclever1_release": 0.7,
    "dead_clearance": 1.0,
    "inflammation_clearance": 1.0,  # assumed, as dead_clearance: no rate published
    "chemo_kill_ratio": 1.5,  # the docetaxel arms' spread, from progression to response (calibrated, see immunopd params)
}
PLAUSIBLE_UNIFORM = {
    "resistant_fraction0": (0.0, 0.95),
}
#: parameters whose magnitude is unknown over decades, each decade equally likely (assumed)
PLAUSIBLE_LOG_UNIFORM = {
    # from negligible swelling to the swelling that takes the default hot patient on pembrolizumab
    # 200 mg Q3W to +23 % at the 6-week scan and still to a response by week 12 (q = 4); uniform
    # on the log scale, so most plausible patients swell little (pseudo-progression is rare)
    "inflammatory_swelling": (1e-3, 4.0),
}


def observed_responses(dataset: str = "laleh2022", arm: str = "immunotherapy") -> pd.DataFrame:
    """One row per lesion: baseline diameter, RECIST best response and best % change, follow-up.

    Baseline is the last scan on or before day 0 (the first scan when there is none before
    treatment); scans after it are the assessments. A single target lesion per patient means
    the "SLD" is that lesion's longest diameter. Lesions with a 0 mm baseline are dropped.
    """
    rows = []
    for lesion, base, t, d in from_baseline(dataset, arm):
        res = ep.recist(d[None], t, cr_threshold_mm=0.0)
        rows.append({
            "lesion": lesion, "study_arm": base.study_arm, "baseline_mm": float(base.diameter_mm),
            "best_response": ep.RESPONSES[int(res["best_response"][0])], "best_pct_change": float(res["best_pct_change"][0]),
            "followup_days": float(t[-1]), "progressed": bool(res["progressed"][0]), "pfs_days": float(res["pfs_days"][0]),
        })
    return pd.DataFrame(rows)


def observed_courses(dataset: str = "laleh2022", arm: str = "immunotherapy") -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each lesion's ``(lesion, days since its baseline scan, longest diameter mm)`` from the
    baseline on (baseline chosen as in :func:`observed_responses`; 0 mm baselines and lesions
    without a later scan dropped)."""
    return [(str(lesion), t - t[0], d) for lesion, _, t, d in from_baseline(dataset, arm)]


#: the weeks and days at which :func:`time_course_figures` reads the courses
FIGURE_WEEKS = (6, 12, 24)
FIGURE_DAYS = (56, 105, 196)


def time_course_figures(courses) -> dict[str, float]:
    """Time-course figures of lesions ``[(t, d), ...]`` or ``[(lesion, t, d), ...]`` (t in days
    from the baseline scan at t = 0, d longest diameter in mm), as issue #14 names them.

    - % change at weeks 6, 12, 24: each lesion's scan nearest the week, within 3 weeks of it
      (median, share <= -30 %, share >= +20 %);
    - responders (a scan <= -30 %): median day of the first such scan, share at the first scan;
    - cumulative response by days 56, 105, 196: 1 - Kaplan-Meier of the time to the first
      <= -30 % scan, censored at each lesion's last scan (its own follow-up);
    - pseudo-progression: first scan >= +20 % and a later one <= -30 % (% of lesions);
    - the fastest log-diameter slope between consecutive scans, and the responders' median
      slope from baseline to nadir (1/day).
    """
    pct_at = {w: [] for w in FIGURE_WEEKS}
    first_resp, resp_event, resp_time, pseudo, slopes, nadir_slopes = [], [], [], 0, [], []
    courses = [c[-2:] for c in courses]
    for t, d in courses:
        pct = 100 * (d / d[0] - 1)
        for w in FIGURE_WEEKS:
            if t.size > 1:
                k = int(np.argmin(np.abs(t[1:] - 7 * w))) + 1
                if abs(t[k] - 7 * w) <= 21:
                    pct_at[w].append(pct[k])
        hit = np.flatnonzero(pct[1:] <= -30) + 1
        if hit.size:
            first_resp.append((t[hit[0]], hit[0] == 1))
        resp_event.append(bool(hit.size))
        resp_time.append(t[hit[0]] if hit.size else t[-1])
        if t.size > 2 and pct[1] >= 20 and np.any(pct[2:] <= -30):
            pseudo += 1
        pos = d > 0
        for i in range(1, t.size):
            if pos[i] and pos[i - 1] and t[i] > t[i - 1]:
                slopes.append((np.log(d[i]) - np.log(d[i - 1])) / (t[i] - t[i - 1]))
        if hit.size:
            j = int(np.argmin(np.where(pos, d, np.inf)))
            if j > 0 and pos[j]:
                nadir_slopes.append((np.log(d[j]) - np.log(d[0])) / t[j])
    out = {}
    for w in FIGURE_WEEKS:
        x = np.array(pct_at[w])
        out[f"week {w}: median % change"] = float(np.median(x)) if x.size else np.nan
        out[f"week {w}: share <= -30 %"] = 100 * float(np.mean(x <= -30)) if x.size else np.nan
        out[f"week {w}: share >= +20 %"] = 100 * float(np.mean(x >= 20)) if x.size else np.nan
    times = np.array([f[0] for f in first_resp])
    out["median day of first <= -30 % scan (responders)"] = float(np.median(times)) if times.size else np.nan
    out["responders responding at the first scan %"] = 100 * float(np.mean([f[1] for f in first_resp])) if first_resp else np.nan
    km = ep.kaplan_meier(np.array(resp_time), np.array(resp_event)) if courses else None
    for day in FIGURE_DAYS:
        if km is None:
            out[f"cumulative response by day {day} % (KM)"] = np.nan
            continue
        idx = np.searchsorted(km["time"], day, side="right") - 1  # the KM step function at the day
        out[f"cumulative response by day {day} % (KM)"] = 100 * (1 - (1.0 if idx < 0 else float(km["survival"][idx])))
    out["pseudo-progression % (first scan >= +20 %, later <= -30 %)"] = 100 * pseudo / max(len(courses), 1)
    out["fastest log-diameter slope between scans (1/day)"] = float(np.min(slopes)) if slopes else np.nan
    out["median responder slope, baseline to nadir (1/day)"] = float(np.median(nadir_slopes)) if nadir_slopes else np.nan
    return out


def plausible_population(n: int, seed: int, *, model=None) -> Population:
    """Plausible patients: wide log-normal variability (:data:`PLAUSIBLE_CV`), a uniform antigen-loss
    fraction at baseline (:data:`PLAUSIBLE_UNIFORM`), a log-uniform inflammatory swelling
    (:data:`PLAUSIBLE_LOG_UNIFORM`), and the default covariates (baseline volumes as in the data)."""
    return sample(n, seed=seed, cv=PLAUSIBLE_CV, uniform=PLAUSIBLE_UNIFORM, log_uniform=PLAUSIBLE_LOG_UNIFORM, covariates=Covariates(),
                  model=model)


@dataclass(frozen=True)
class Calibration:
    """Result of :func:`calibrate`: the accepted sub-population and the comparison."""

    population: Population  # accepted patients
    plausible: xr.Dataset  # the plausible trial: best_pct_change, accept probability, accepted
    observed: pd.DataFrame
    summary: xr.Dataset  # observed vs simulated figures (dims: source, bin)

    def report(self) -> str:
        s = self.summary
        lines = [
            f"calibration to {s.attrs['observed']} (therapy: {s.attrs['regimen']}; seed {s.attrs['seed']})",
            f"plausible patients: {s.attrs['n_plausible']}, accepted: {s.attrs['n_accepted']}; simulated "
            f"{s.attrs['trough_occupancy_target']} trough occupancy (median, 5th pct): {s.attrs['trough_occupancy_median']:.3f}, "
            f"{s.attrs['trough_occupancy_p05']:.3f}",
            f"{'':<26}{'observed':>12}{'calibrated':>12}{'plausible':>12}",
        ]
        for key, label in (("orr", "ORR %"), ("cr_rate", "CR %"), ("pd_rate", "best response PD %"),
                           ("median_best_pct_change", "median best % change"),
                           ("q25_best_pct_change", "25th pct best % change"), ("q75_best_pct_change", "75th pct best % change")):
            scale = 100 if key.endswith("rate") or key == "orr" else 1
            vals = [float(s[key].sel(source=src)) * scale for src in ("observed", "calibrated", "plausible")]
            lines.append(f"{label:<26}" + "".join(f"{v:>12.1f}" for v in vals))
        lo, hi = float(s.orr_lower.sel(source="observed")), float(s.orr_upper.sel(source="observed"))
        lines.append(f"observed ORR 95% CI: {100 * lo:.1f}-{100 * hi:.1f}%; KS distance calibrated vs observed: {s.attrs['ks_distance']:.3f}")
        if s.attrs["uncovered_bins"]:
            lines.append(f"bins the plausible population never reached (not matched): {s.attrs['uncovered_bins']}")
        return "\n".join(lines)


def _sim_followup(observed: pd.DataFrame, n: int, rng, days: float) -> np.ndarray:
    return np.minimum(rng.choice(observed.followup_days.to_numpy(), size=n, replace=True), days)


def calibrate(
    plausible: Population,
    observed: pd.DataFrame | None = None,
    *,
    arm: str = "immunotherapy",
    regimen: str | None = None,
    days: float = 365.0,
    seed: int = 0,
    scan_interval_days: float = DEFAULT_SCAN_INTERVAL_DAYS,
    resolution_mm: float = 1.0,
    progress: bool = False,
    model=None,
) -> Calibration:
    """Accept plausible patients so that best % change matches ``observed`` (see module doc).

    ``arm`` (``"immunotherapy"`` or ``"chemotherapy"``) picks the observed lesions when
    ``observed`` is not given and the therapy (:data:`ARM_REGIMENS`) when ``regimen`` is not.
    """
    if arm not in ARM_REGIMENS:
        raise InputError(describe("arm", arm, f"one of {list(ARM_REGIMENS)}"))
    observed = observed_responses(arm=arm) if observed is None else observed
    regimen = ARM_REGIMENS[arm] if regimen is None else regimen
    if len(observed) == 0:
        raise InputError(describe("observed", "an empty table", "at least one observed lesion"))
    trial = run_trial({"calibration": regimen}, plausible, days=days, scan_interval_days=scan_interval_days, model=model,
                      outputs=("sld", "occupancy"), on_failure="flag", progress=progress).isel(regimen=0)
    rng = np.random.default_rng(seed)
    followup = _sim_followup(observed, len(plausible), rng, days)
    scans = ep.scan_times(trial.time.values, scan_interval_days)
    measured = np.round(trial.sld.values / resolution_mm) * resolution_mm if resolution_mm > 0 else trial.sld.values
    measured[:, 0] = np.maximum(measured[:, 0], resolution_mm)
    sim = ep.recist(measured, trial.time.values, scans=scans, followup_days=followup, cr_threshold_mm=0.0)
    ok = (trial.solver_status.values == 0) & np.isfinite(sim["best_pct_change"])
    best = sim["best_pct_change"]

    n_bins = BIN_EDGES.size - 1
    obs_counts = np.histogram(np.clip(observed.best_pct_change, -100, None), BIN_EDGES)[0]
    sim_bin = np.clip(np.searchsorted(BIN_EDGES, np.clip(best, -100, None), side="right") - 1, 0, n_bins - 1)
    sim_counts = np.bincount(sim_bin[ok], minlength=n_bins)
    obs_frac = obs_counts / obs_counts.sum()
    sim_frac = sim_counts / max(sim_counts.sum(), 1)
    covered = sim_counts > 0
    ratio = np.where(covered, obs_frac / np.where(covered, sim_frac, 1.0), 0.0)
    prob_bin = ratio / ratio.max()
    prob = np.where(ok, prob_bin[sim_bin], 0.0)
    accepted = rng.random(len(plausible)) < prob
    if accepted.sum() < 10:
        raise InputError(describe("accepted patients", int(accepted.sum()), "at least 10: sample more plausible patients"))

    def figures(best_pct, resp):
        best_pct = np.asarray(best_pct, float)
        orr, lo, hi = ep.response_rate(np.isin(resp, ("CR", "PR")))
        return {
            "orr": orr, "orr_lower": lo, "orr_upper": hi,
            "cr_rate": np.mean(np.asarray(resp) == "CR"), "pd_rate": np.mean(np.asarray(resp) == "PD"),
            "median_best_pct_change": np.median(best_pct), "q25_best_pct_change": np.percentile(best_pct, 25),
            "q75_best_pct_change": np.percentile(best_pct, 75),
            "bin_fraction": np.histogram(np.clip(best_pct, -100, None), BIN_EDGES)[0] / best_pct.size,
        }

    names = np.array(ep.RESPONSES)[sim["best_response"]]
    rows = {
        "observed": figures(observed.best_pct_change, observed.best_response.to_numpy()),
        "calibrated": figures(best[accepted], names[accepted]),
        "plausible": figures(best[ok], names[ok]),
    }
    data = {k: (("source",), np.array([rows[s][k] for s in rows], float)) for k in rows["observed"] if k != "bin_fraction"}
    data["bin_fraction"] = (("source", "bin"), np.array([rows[s]["bin_fraction"] for s in rows]))
    data["accept_probability"] = (("bin",), prob_bin)
    from scipy import stats

    ks = stats.ks_2samp(best[accepted], observed.best_pct_change.to_numpy()).statistic
    dosed_target = str(trial.drug_target.values[0])  # the target of the arm's (first) drug
    occ = trial.occupancy.sel(target=dosed_target, time=slice(21, None)).min("time").values[ok]
    uncovered = [f"[{BIN_EDGES[b]:g}, {BIN_EDGES[b + 1]:g}) obs {obs_frac[b]:.3f}" for b in range(n_bins) if not covered[b] and obs_counts[b] > 0]
    summary = xr.Dataset(data, coords={"source": list(rows), "bin_lower": ("bin", BIN_EDGES[:-1]), "bin_upper": ("bin", BIN_EDGES[1:])})
    summary.attrs.update({
        "observed": f"Ghaffari Laleh et al. 2022 {arm} arms (doi:10.1371/journal.pcbi.1009822), data/laleh2022",
        "arm": arm,
        "regimen": regimen, "seed": int(seed), "n_plausible": len(plausible), "n_accepted": int(accepted.sum()),
        "ks_distance": float(ks), "uncovered_bins": "; ".join(uncovered),
        "trough_occupancy_target": dosed_target, "trough_occupancy_median": float(np.median(occ)), "trough_occupancy_p05": float(np.percentile(occ, 5)),
        "method": "Allen et al. 2016 acceptance-rejection on binned best % change (doi:10.1002/psp4.12063)",
    })
    plaus = xr.Dataset({
        "best_pct_change": ("patient", best), "accept_probability": ("patient", prob), "accepted": ("patient", accepted),
        "followup_days": ("patient", followup),
    }, coords={"patient": plausible.data.patient.values})
    pop = plausible.isel(np.flatnonzero(accepted))
    pop.data.attrs.update({"calibration": summary.attrs["method"], "calibration_seed": int(seed), "calibration_regimen": regimen})
    return Calibration(population=pop, plausible=plaus, observed=observed, summary=summary)


@dataclass(frozen=True)
class TimeCourseCalibration:
    """Result of :func:`calibrate_time_courses`.

    ``population``: one virtual patient per observed lesion (its "twin"), in the order of
    ``lesions``; ``courses``: each twin's measured scans on its lesion's own schedule,
    ``[(lesion, t, d)]``; ``observed``: the lesions' courses; ``figures``: observed and
    calibrated :func:`time_course_figures`; ``distance``: each twin's match distance.
    """

    population: Population
    courses: list
    observed: list
    figures: dict
    distance: np.ndarray
    attrs: dict

    def report(self) -> str:
        a = self.attrs
        lines = [f"time-course calibration to {a['observed']} (therapy: {a['regimen']}; seed {a['seed']})",
                 f"{a['n_lesions']} lesions matched among {a['n_plausible']} plausible patients; RMS distance median "
                 f"{np.median(self.distance):.1f}, 90th pct {np.percentile(self.distance, 90):.1f} (% change points)",
                 f"{'':<62}{'observed':>10}{'calibrated':>12}"]
        for name, obs in self.figures["observed"].items():
            lines.append(f"{name:<62}{obs:>10.3g}{self.figures['calibrated'][name]:>12.3g}")
        return "\n".join(lines)


def measured_pct(sld_at_scans: np.ndarray, resolution_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Diameters measured to ``resolution_mm`` (the baseline at least one step) and their %
    change from the first column; both ``sld_at_scans``' shape (patients, scans)."""
    d = np.round(sld_at_scans / resolution_mm) * resolution_mm if resolution_mm > 0 else np.array(sld_at_scans, float)
    d[:, 0] = np.maximum(d[:, 0], resolution_mm if resolution_mm > 0 else 1e-9)
    return d, 100 * (d / d[:, :1] - 1)


#: weight of the baseline-size term of the match distance: a twin whose baseline diameter is
#: twice (or half) its lesion's costs as much as 20 ln 2 = 13.9 points of RMS % change
BASELINE_WEIGHT = 20.0


def calibrate_time_courses(
    plausible: Population,
    courses: list | None = None,
    *,
    arm: str = "immunotherapy",
    regimen: str | None = None,
    days: float = 400.0,
    seed: int = 0,
    resolution_mm: float = 1.0,
    progress: bool = False,
    model=None,
) -> TimeCourseCalibration:
    """One virtual twin per observed lesion, matched on its whole measured time course.

    Each plausible patient is simulated under the arm's therapy (daily, ``days`` long); a
    lesion's candidates are scanned on that lesion's own schedule (its scans up to ``days``,
    so its own follow-up and dropout), measured to ``resolution_mm``; the twin is the
    candidate with the smallest distance: root mean square difference of % change from
    baseline over the lesion's scans, plus :data:`BASELINE_WEIGHT` x |ln(baseline diameter
    ratio)| (so twins also have the lesion's size). Lesions take their twins in a seeded random
    order, each plausible patient at most once (the population has distinct patients; the
    pool must be larger than the number of lesions). This is nearest-neighbour selection of a
    virtual population on the full observed trajectories, the time-course analogue of the
    marginal acceptance-rejection of :func:`calibrate` (Allen et al. 2016,
    doi:10.1002/psp4.12063): it reproduces the distribution of time courses as far as the
    plausible patients contain them, and ``distance`` shows how far that is.
    """
    if arm not in ARM_REGIMENS:
        raise InputError(describe("arm", arm, f"one of {list(ARM_REGIMENS)}"))
    courses = observed_courses(arm=arm) if courses is None else courses
    regimen = ARM_REGIMENS[arm] if regimen is None else regimen
    if len(courses) == 0:
        raise InputError(describe("courses", "no lesions", "at least one observed lesion"))
    if len(plausible) < len(courses):
        raise InputError(describe("plausible patients", len(plausible), f"more than the {len(courses)} lesions to match"))
    trial = run_trial({"calibration": regimen}, plausible, days=days, model=model, outputs=("sld",), on_failure="flag",
                      progress=progress).isel(regimen=0)
    ts = trial.time.values
    sld = trial.sld.values
    ok = (trial.solver_status.values == 0) & np.all(np.isfinite(sld), axis=1)
    available = ok.copy()
    rng = np.random.default_rng(seed)
    twin = np.full(len(courses), -1)
    distance = np.full(len(courses), np.nan)
    measured = [None] * len(courses)
    for j in rng.permutation(len(courses)):
        lesion, t, d = courses[j]
        keep = t <= ts[-1]
        t, d = t[keep], d[keep]
        idx = np.clip(np.searchsorted(ts, t), 0, ts.size - 1)
        cand = np.flatnonzero(available)
        if cand.size == 0:
            raise InputError(describe("plausible patients", len(plausible), "enough patients that solved to match every lesion"))
        dm, pct = measured_pct(sld[cand][:, idx], resolution_mm)
        obs_pct = 100 * (d / d[0] - 1)
        dist = np.sqrt(np.mean((pct[:, 1:] - obs_pct[1:]) ** 2, axis=1)) if t.size > 1 else np.zeros(cand.size)
        dist = dist + BASELINE_WEIGHT * np.abs(np.log(dm[:, 0] / d[0]))
        best = int(np.argmin(dist))
        twin[j], distance[j] = cand[best], dist[best]
        available[cand[best]] = False
        measured[j] = (lesion, t, dm[best])
    pop = plausible.isel(twin)
    pop.data["matched_lesion"] = xr.Variable(("patient",), np.array([c[0] for c in courses]),
                                             {"long_name": "observed lesion this virtual patient was matched to", "kind": "covariate"})
    pop.data["match_distance"] = xr.Variable(("patient",), distance, {
        "units": "%", "kind": "covariate",
        "long_name": "RMS difference of measured % change from the lesion's, plus the baseline-size term"})
    observed_name = f"Ghaffari Laleh et al. 2022 {arm} arms (doi:10.1371/journal.pcbi.1009822), data/laleh2022"
    attrs = {"observed": observed_name, "arm": arm, "regimen": regimen, "seed": int(seed), "n_plausible": len(plausible),
             "n_lesions": len(courses), "days": float(days), "resolution_mm": float(resolution_mm),
             "method": "nearest-neighbour time-course matching, each plausible patient at most once (immunopd.calibration)"}
    pop.data.attrs.update({"calibration": attrs["method"], "calibration_seed": int(seed), "calibration_regimen": regimen})
    figs = {"observed": time_course_figures([(t[t <= ts[-1]], d[t <= ts[-1]]) for _, t, d in courses]),
            "calibrated": time_course_figures(measured)}
    return TimeCourseCalibration(population=pop, courses=measured, observed=courses, figures=figs, distance=distance, attrs=attrs)


def plot(cal: Calibration, path=None):
    """Observed vs calibrated vs plausible: empirical CDFs and binned fractions of best % change."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    obs = np.sort(np.clip(cal.observed.best_pct_change.to_numpy(), -100, 150))
    cal_best = np.sort(np.clip(cal.plausible.best_pct_change.values[cal.plausible.accepted.values], -100, 150))
    pl = np.sort(np.clip(cal.plausible.best_pct_change.values[np.isfinite(cal.plausible.best_pct_change.values)], -100, 150))
    for x, label, style in ((obs, f"observed (Laleh 2022, {cal.summary.attrs.get('arm', 'immunotherapy')} arms)", "k-"), (cal_best, "calibrated virtual", "C1-"), (pl, "plausible virtual", "C0:")):
        axes[0].plot(x, np.arange(1, x.size + 1) / x.size, style, label=f"{label} (n={x.size})")
    axes[0].axvline(-30, color="grey", lw=0.8)
    axes[0].axvline(20, color="grey", lw=0.8)
    axes[0].set_xlabel("best % change of SLD from baseline")
    axes[0].set_ylabel("cumulative fraction")
    axes[0].legend(fontsize=8)
    s = cal.summary
    x = np.arange(s.sizes["bin"])
    for k, src in enumerate(("observed", "calibrated", "plausible")):
        axes[1].bar(x + (k - 1) * 0.27, s.bin_fraction.sel(source=src), width=0.27, label=src)
    axes[1].set_xticks(x, [f"{lo:g}" for lo in s.bin_lower.values], rotation=60, fontsize=7)
    axes[1].set_xlabel("best % change bin (lower edge)")
    axes[1].set_ylabel("fraction of patients")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        from .io import save_figure

        save_figure(fig, path)
        plt.close(fig)
    return fig
