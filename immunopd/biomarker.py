"""The sClever-1 biomarker experiment: anti-PD-1 alone vs with anti-Clever-1, by stratum.

Clinical background (model-reference.md): high plasma soluble Clever-1 is associated with
resistance to anti-PD-1, and the anti-Clever-1 antibody bexmarilimab lowers its release by
repolarising Clever-1+ macrophages. The virtual experiment: take the population calibrated to
the published immunotherapy response (:mod:`immunopd.calibration`), give every patient both
arms (an in-silico crossover: the same patients in both regimens), and report ORR and PFS per
stratum of baseline plasma sClever-1 (below / above the median) and of baseline infiltration
(hot / cold), with 95% CIs and the paired ORR difference.

Because sClever-1 is made by macrophages that the tumor recruits, a raw split by sClever-1 is
partly a split by tumor size. :func:`sclever1_adjusted` reports what remains once baseline
volume is accounted for: ORR below / above the median sClever-1 within tertiles of baseline
tumor volume, and the coefficient of log sClever-1 in a logistic regression of response on log
sClever-1 and log baseline volume (Wald 95 % CI), as an epidemiologist would adjust for a
confounder.

Biomarker-guided choice (issue 17 item 5): :func:`sclever1_predictive_value` gives the ROC AUC
of baseline sClever-1 for non-response to anti-PD-1 (:func:`roc_auc`, DeLong CI), raw and
covariate-adjusted for baseline volume (Janes & Pepe 2009); :func:`treatment_rule` gives the
ORR of "add anti-Clever-1 when baseline sClever-1 > threshold" on the crossover against treating
no one and everyone, with paired bootstrap CIs, and a quantile sweep whose best row is
exploratory (selected in-sample).

Everything the answer depends on that is assumed is in the parameter table: the bexmarilimab
PK and all sClever-1 terms are placeholders ("assumed"), so the figures show what the model
implies, not a clinical prediction.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from . import endpoints as ep
from .errors import InputError, describe

from .calibration import calibrate_time_courses, plausible_population
from .models.drugs import STANDARD_REGIMENS
from .population import Population
from .trial import run_trial, stratify, strata_table

__all__ = ["REGIMENS", "run_biomarker_experiment", "biomarker_report", "logistic_regression", "sclever1_adjusted",
           "sclever1_adjusted_table", "roc_auc", "sclever1_predictive_value", "sclever1_predictive_table", "treatment_rule",
           "treatment_rule_table", "SWEEP_QUANTILES", "biomarker_analyses"]

REGIMENS: dict[str, str] = {name: STANDARD_REGIMENS[name] for name in ("anti-PD-1", "anti-PD-1 + anti-Clever-1")}


def run_biomarker_experiment(
    population: Population | None = None,
    *,
    plausible_patients: int = 10_000,
    seed: int = 1,
    days: float = 365.0,
    progress: bool = False,
) -> tuple[xr.Dataset, dict[str, xr.Dataset]]:
    """Run the experiment; return the trial Dataset and ``{"sclever1": ..., "infiltration": ...}``
    stratified endpoints. Without ``population`` it is built first (seeded): one virtual twin per
    immunotherapy lesion of the shipped data, matched on its whole time course among
    ``plausible_patients`` (:func:`immunopd.calibration.calibrate_time_courses`; more than the
    1,061 lesions are needed)."""
    if population is None:
        population = calibrate_time_courses(plausible_population(plausible_patients, seed=seed), seed=seed, progress=progress).population
    trial = run_trial(REGIMENS, population, days=days, outputs=("sld", "pct_change"), progress=progress)
    strata = {
        "sclever1": stratify(trial, "baseline_sclever1", quantiles=[0.5], seed=seed),
        "infiltration": stratify(trial, "cold", seed=seed),
    }
    return trial, strata


def biomarker_analyses(trial: xr.Dataset, *, threshold: float | None = None, seed: int = 0) -> dict[str, xr.Dataset]:
    """``{"predictive": sclever1_predictive_value(trial), "rule": treatment_rule(trial, threshold)}``
    (anti-PD-1; seeded bootstraps)."""
    return {"predictive": sclever1_predictive_value(trial, seed=seed), "rule": treatment_rule(trial, threshold, seed=seed)}


def biomarker_report(trial: xr.Dataset, strata: dict[str, xr.Dataset], analyses: dict[str, xr.Dataset] | None = None) -> str:
    """The endpoint and strata tables, sClever-1 adjusted for volume, its ROC AUC for
    non-response and the treatment rule (``analyses`` from :func:`biomarker_analyses`, computed
    here when not given)."""
    from .trial import endpoint_table

    analyses = biomarker_analyses(trial) if analyses is None else analyses
    parts = [endpoint_table(trial)] + [strata_table(s) for s in strata.values()]
    parts.append(sclever1_adjusted_table(sclever1_adjusted(trial)))
    parts.append(sclever1_predictive_table(analyses["predictive"]))
    parts.append(treatment_rule_table(analyses["rule"]))
    return "\n\n".join(parts)


def logistic_regression(y, x, names=None, *, max_iter: int = 100) -> dict[str, dict[str, float]]:
    """Maximum-likelihood logistic regression of ``y`` (n,) 0/1 on ``x`` (n, k), with an intercept.

    Newton-Raphson on the log-likelihood; standard errors from the inverse observed
    information, 95 % Wald intervals (estimate +- 1.96 SE). Returns ``{name: {"coef", "se",
    "lower", "upper"}}`` for "intercept" and each column (``names``, default x1, x2, ...).
    Raises InputError when the outcome does not vary or the fit separates the data (the
    maximum-likelihood estimate does not exist), rather than report a divergent number.
    """
    y = np.asarray(y, dtype=float)
    x = np.asarray(x, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise InputError(describe("x", f"shape {x.shape}", f"(n, k) with n = {y.shape[0]} rows, one per outcome"))
    names = [f"x{i + 1}" for i in range(x.shape[1])] if names is None else list(names)
    if len(names) != x.shape[1]:
        raise InputError(describe("names", names, f"{x.shape[1]} names, one per column of x"))
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise InputError(describe("y", "values other than 0 and 1", "a 0/1 outcome"))
    if y.min() == y.max():
        raise InputError(describe("y", f"all {int(y[0])}", "an outcome with both 0s and 1s (no logistic fit exists otherwise)"))
    if not np.all(np.isfinite(x)):
        raise InputError(describe("x", "non-finite values", "finite covariates"))
    design = np.column_stack([np.ones(y.size), x])
    beta = np.zeros(design.shape[1])
    converged = False
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-design @ beta))
        info = design.T @ (design * (p * (1 - p))[:, None])
        step = np.linalg.lstsq(info, design.T @ (y - p), rcond=None)[0]
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            converged = True
            break
    p = 1.0 / (1.0 + np.exp(-design @ beta))
    info = design.T @ (design * (p * (1 - p))[:, None])
    if not converged or np.max(np.abs(beta)) > 30 or np.linalg.cond(info) > 1e12:
        raise InputError(describe("y", "an outcome separated by the covariates", "data for which the logistic maximum-likelihood estimate exists"))
    se = np.sqrt(np.diag(np.linalg.inv(info)))
    return {n: {"coef": float(b), "se": float(s), "lower": float(b - 1.96 * s), "upper": float(b + 1.96 * s)}
            for n, b, s in zip(["intercept"] + names, beta, se)}


def sclever1_adjusted(trial: xr.Dataset, regimen: str | None = None) -> xr.Dataset:
    """The sClever-1 effect on response adjusted for baseline tumor volume, for one regimen.

    ``trial`` needs ``baseline_sclever1`` (ng/mL) and ``baseline_tumor_volume`` (mm3) per
    patient; ``regimen`` defaults to the first. Patients whose solve failed are left out.
    Returns: ``orr`` with dims ``(volume_tertile, sclever1_half)`` (%, and ``n``), and as
    attrs the logistic coefficients (per unit ln sClever-1) unadjusted and adjusted for ln
    baseline volume, with Wald 95 % CIs, and the correlation of the two logs.
    """
    for name in ("baseline_sclever1", "baseline_tumor_volume", "best_response"):
        if name not in trial:
            raise InputError(describe("trial", f"a dataset without {name!r}", "a run_trial result of a population with baseline covariates"))
    regimen = str(trial.regimen.values[0]) if regimen is None else regimen
    if regimen not in [str(r) for r in trial.regimen.values]:
        raise InputError(describe("regimen", regimen, f"one of {[str(r) for r in trial.regimen.values]}"))
    arm = trial.sel(regimen=regimen)
    ok = np.ones(arm.sizes["patient"], bool) if "solver_status" not in arm else arm.solver_status.values == 0
    resp = np.isin(arm.best_response.values, (ep.CR, ep.PR))[ok].astype(float)
    log_s = np.log(arm.baseline_sclever1.values[ok])
    log_v = np.log(arm.baseline_tumor_volume.values[ok])
    tertile = np.searchsorted(np.quantile(log_v, [1 / 3, 2 / 3]), log_v, side="left")
    orr = np.full((3, 2), np.nan)
    count = np.zeros((3, 2), int)
    for t in range(3):
        in_t = tertile == t
        high = log_s > np.median(log_s[in_t])
        for h, sel in enumerate((in_t & ~high, in_t & high)):
            count[t, h] = sel.sum()
            orr[t, h] = 100 * resp[sel].mean() if sel.any() else np.nan
    raw = logistic_regression(resp, log_s, ["log_sclever1"])["log_sclever1"]
    adjusted = logistic_regression(resp, np.column_stack([log_s, log_v]), ["log_sclever1", "log_volume"])["log_sclever1"]
    coords = {"volume_tertile": ["lowest", "middle", "highest"], "sclever1_half": ["below median", "above median"]}
    return xr.Dataset(
        {"orr": (("volume_tertile", "sclever1_half"), orr, {"units": "%", "long_name": "objective response rate"}),
         "n": (("volume_tertile", "sclever1_half"), count, {"long_name": "patients"})},
        coords=coords,
        attrs={"regimen": regimen, "patients": int(ok.sum()),
               "sclever1_split": "at the median sClever-1 within each tertile of baseline tumor volume",
               "logit_coef_unadjusted": raw["coef"], "logit_coef_unadjusted_lower": raw["lower"], "logit_coef_unadjusted_upper": raw["upper"],
               "logit_coef_adjusted": adjusted["coef"], "logit_coef_adjusted_lower": adjusted["lower"],
               "logit_coef_adjusted_upper": adjusted["upper"],
               "logit_model": "logit P(response) = b0 + b1 ln sClever-1 [+ b2 ln baseline volume]; b1 per unit ln(ng/mL), Wald 95 % CI",
               "corr_log_sclever1_log_volume": float(np.corrcoef(log_s, log_v)[0, 1])},
    )


def sclever1_adjusted_table(adj: xr.Dataset) -> str:
    a = adj.attrs
    lines = [f"sClever-1 and response adjusted for baseline tumor volume ({a['regimen']}, {a['patients']} patients)",
             f"{'baseline volume tertile':<24} {'ORR sClever-1 below median':>28} {'above median':>14}"]
    for t in adj.volume_tertile.values:
        lo, hi = adj.orr.sel(volume_tertile=t).values
        n_lo, n_hi = adj.n.sel(volume_tertile=t).values
        lines.append(f"{t:<24} {lo:>20.1f} % (n={n_lo})  {hi:>6.1f} % (n={n_hi})")
    lines.append(f"logistic coefficient of ln sClever-1: unadjusted {a['logit_coef_unadjusted']:.3f} "
                 f"({a['logit_coef_unadjusted_lower']:.3f} to {a['logit_coef_unadjusted_upper']:.3f}), adjusted for ln volume "
                 f"{a['logit_coef_adjusted']:.3f} ({a['logit_coef_adjusted_lower']:.3f} to {a['logit_coef_adjusted_upper']:.3f})")
    lines.append(f"correlation of ln sClever-1 with ln baseline volume: {a['corr_log_sclever1_log_volume']:.2f}")
    return "\n".join(lines)


# --- predictive value of baseline sClever-1 and a biomarker-guided treatment rule (issue 17, item 5) ---

def _midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with tied values given the mean of the ranks they share."""
    values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    below = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (below + (counts + 1) / 2.0)[inverse]


def roc_auc(score, outcome, *, level: float = 0.95) -> dict[str, float | int | str]:
    """The area under the ROC curve of ``score`` for ``outcome`` (1 = the event it should rank high).

    AUC is the Mann-Whitney probability that a random patient with the event scores higher than one
    without it, ties counting 1/2 (= U / (n1 n0) with U scipy's ``mannwhitneyu`` statistic of the
    event group). Its standard error is DeLong's (DeLong, DeLong & Clarke-Pearson 1988, Biometrics
    44:837, doi:10.2307/2531595), computed from midranks (Sun & Xu 2014,
    doi:10.1109/LSP.2014.2337313); the CI is the normal one, AUC +- z SE, clipped to [0, 1] (at
    AUC 0 or 1 the SE is 0 and so is the interval's width). Returns ``{"auc", "se", "lower",
    "upper", "n_events", "n_nonevents", "ci_method"}``.
    """
    s = np.asarray(score, dtype=float)
    y = np.asarray(outcome)
    if s.ndim != 1 or y.shape != s.shape:
        raise InputError(describe("score", f"shape {s.shape} with outcome shape {y.shape}", "two 1-D arrays of the same length"))
    if not np.all(np.isfinite(s)):
        raise InputError(describe("score", "non-finite values", "finite scores"))
    if not np.all(np.isin(y, (0, 1))):
        raise InputError(describe("outcome", "values other than 0 and 1", "a 0/1 (or boolean) outcome"))
    if not 0 < level < 1:
        raise InputError(describe("level", level, "a confidence level between 0 and 1, e.g. 0.95"))
    y = y.astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise InputError(describe("outcome", f"{m} events and {n} non-events", "at least 2 of each (the AUC and its DeLong variance need both)"))
    pos, neg = s[y], s[~y]
    r_all = _midranks(s)
    v10 = (r_all[y] - _midranks(pos)) / n        # per event: share of non-events it outranks (ties 1/2)
    v01 = 1.0 - (r_all[~y] - _midranks(neg)) / m  # per non-event: share of events that outrank it
    auc = float(v10.mean())
    se = float(np.sqrt(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n))
    z = _normal_quantile(0.5 + level / 2)
    return {"auc": auc, "se": se, "lower": max(0.0, auc - z * se), "upper": min(1.0, auc + z * se),
            "n_events": m, "n_nonevents": n, "ci_method": f"DeLong {100 * level:g} % normal interval"}


def _normal_quantile(p: float) -> float:
    """Standard normal quantile by bisection on erfc (to ~1e-15; enough for a CI level)."""
    from math import erfc, sqrt

    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * erfc(-mid / sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


NON_RESPONSE = "non-response: RECIST 1.1 best overall response SD, PD or NE (not CR or PR), failed solves left out"


def _need(trial, names) -> None:
    if not isinstance(trial, xr.Dataset):
        raise InputError(describe("trial", type(trial).__name__, "an xarray Dataset from run_trial / run_biomarker_experiment"))
    for name in names:
        if name not in trial:
            raise InputError(describe("trial", f"a dataset without {name!r}", "a run_trial result of a population with baseline covariates"))


def _regimen_arm(trial: xr.Dataset, regimen: str, field: str = "regimen") -> xr.Dataset:
    known = [str(r) for r in trial.regimen.values] if "regimen" in trial.coords else []
    if regimen not in known:
        raise InputError(describe(field, regimen, f"one of {known}"))
    return trial.sel(regimen=regimen)


def _positive_finite(values: np.ndarray, field: str, unit: str) -> np.ndarray:
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        raise InputError(describe(field, float(values[bad][0]), f"finite values > 0 {unit} for every patient (its log is taken)"))
    return values


def _bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _check_boot(n_boot, seed) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise InputError(describe("n_boot", n_boot, "an integer >= 100 (bootstrap resamples)"))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(describe("seed", seed, "an integer >= 0"))


def _volume_adjusted_marker(log_s: np.ndarray, log_v: np.ndarray, control: np.ndarray) -> np.ndarray:
    """ln sClever-1 less its least-squares prediction from ln volume fitted among the controls (responders)."""
    slope, intercept = np.polyfit(log_v[control], log_s[control], 1)
    return log_s - (intercept + slope * log_v)


def sclever1_predictive_value(trial: xr.Dataset, regimen: str = "anti-PD-1", *, n_boot: int = 2000, seed: int = 0) -> xr.Dataset:
    """How well baseline plasma sClever-1 picks out the patients who will not respond to ``regimen``.

    Outcome: non-response (best overall response not CR or PR; NE counts as non-response, as in an
    intention-to-treat ORR); patients whose solve failed are left out. The score is baseline
    sClever-1 (ng/mL); AUC > 0.5 means higher sClever-1 goes with non-response.

    - ``none``: the AUC of sClever-1 itself (:func:`roc_auc`; DeLong 95 % CI).
    - ``baseline tumor volume``: the covariate-adjusted AUC (AAUC) of Janes & Pepe (2009,
      Biometrika 96:371, doi:10.1093/biomet/asp002), semiparametric form (Janes, Longton & Pepe
      2009, Stata J 9:17): ln sClever-1 is regressed on ln baseline volume by least squares among
      the responders (the reference group), and the AUC is taken of the residuals, i.e. each
      non-responder's sClever-1 is compared with responders' sClever-1 at the same baseline
      volume. 95 % CI: seeded percentile bootstrap over patients (``n_boot`` resamples, the
      regression refitted in each), since DeLong's variance ignores the fitted regression.

    Returns a Dataset over ``adjustment`` with ``auc``, ``auc_lower``, ``auc_upper``,
    ``ci_method``; n and the outcome in attrs.
    """
    _need(trial, ("baseline_sclever1", "baseline_tumor_volume", "best_response"))
    _check_boot(n_boot, seed)
    arm = _regimen_arm(trial, regimen)
    ok = np.ones(arm.sizes["patient"], bool) if "solver_status" not in arm else arm.solver_status.values == 0
    nonresp = ~np.isin(arm.best_response.values[ok], (ep.CR, ep.PR))
    s = _positive_finite(np.asarray(arm.baseline_sclever1.values, float)[ok], "trial.baseline_sclever1", "ng/mL")
    v = _positive_finite(np.asarray(arm.baseline_tumor_volume.values, float)[ok], "trial.baseline_tumor_volume", "mm3")
    if nonresp.sum() < 2 or (~nonresp).sum() < 3:
        raise InputError(describe(f"trial.best_response (regimen {regimen!r})", f"{int((~nonresp).sum())} responders and {int(nonresp.sum())} non-responders",
                                  "at least 3 responders (CR/PR) and 2 non-responders among the solved patients"))
    log_s, log_v = np.log(s), np.log(v)
    if np.ptp(log_v[~nonresp]) == 0:
        raise InputError(describe("trial.baseline_tumor_volume", "one value for every responder", "baseline volumes that vary (the adjustment regresses on them)"))
    raw = roc_auc(s, nonresp)
    adj_auc = roc_auc(_volume_adjusted_marker(log_s, log_v, ~nonresp), nonresp)["auc"]
    boot = []
    for idx in _bootstrap_indices(s.size, n_boot, seed):
        y = nonresp[idx]
        if y.sum() < 2 or (~y).sum() < 3 or np.ptp(log_v[idx][~y]) == 0:
            continue
        boot.append(roc_auc(_volume_adjusted_marker(log_s[idx], log_v[idx], ~y), y)["auc"])
    lo, hi = np.quantile(boot, [0.025, 0.975])
    adjustment = ["none", "baseline tumor volume"]
    return xr.Dataset(
        {"auc": ("adjustment", [raw["auc"], adj_auc], {"units": "1", "long_name": "ROC AUC of baseline sClever-1 for non-response"}),
         "auc_lower": ("adjustment", [raw["lower"], float(lo)], {"units": "1", "long_name": "95 % CI lower bound"}),
         "auc_upper": ("adjustment", [raw["upper"], float(hi)], {"units": "1", "long_name": "95 % CI upper bound"}),
         "ci_method": ("adjustment", [f"DeLong (DeLong et al. 1988, doi:10.2307/2531595), normal interval",
                                      f"percentile bootstrap, {len(boot)} of {n_boot} resamples usable, seed {seed}, regression refitted"])},
        coords={"adjustment": adjustment},
        attrs={"regimen": regimen, "patients": int(ok.sum()), "nonresponders": int(nonresp.sum()), "responders": int((~nonresp).sum()),
               "outcome": NON_RESPONSE, "score": "baseline plasma sClever-1 (ng/mL); AUC > 0.5: higher sClever-1 with non-response",
               "auc": "Mann-Whitney: P(non-responder's score > responder's), ties 1/2",
               "adjustment_method": ("covariate-adjusted AUC (Janes & Pepe 2009, Biometrika 96:371, doi:10.1093/biomet/asp002), "
                                     "semiparametric: AUC of the residual of ln sClever-1 after least squares on ln baseline tumor "
                                     "volume fitted among responders (the reference group)")},
    )


def sclever1_predictive_table(pv: xr.Dataset) -> str:
    a = pv.attrs
    lines = [f"baseline sClever-1 as a predictor of non-response to {a['regimen']} ({a['patients']} patients: "
             f"{a['nonresponders']} non-responders, {a['responders']} responders; non-response = not CR/PR)",
             f"{'adjusted for':<24} {'ROC AUC':>8}  {'95 % CI':<15} CI method"]
    for adj in pv.adjustment.values:
        row = pv.sel(adjustment=adj)
        lines.append(f"{str(adj):<24} {float(row.auc):>8.3f}  {float(row.auc_lower):.3f}-{float(row.auc_upper):.3f}     {str(row.ci_method.values)}")
    lines.append("volume adjustment: " + a["adjustment_method"])
    return "\n".join(lines)


SWEEP_QUANTILES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def treatment_rule(trial: xr.Dataset, threshold: float | None = None, *, alone: str = "anti-PD-1",
                   added: str = "anti-PD-1 + anti-Clever-1", quantiles=SWEEP_QUANTILES, n_boot: int = 2000,
                   seed: int = 0) -> xr.Dataset:
    """The rule "add anti-Clever-1 when baseline sClever-1 > threshold" on the crossover trial.

    Every patient has a best response under ``alone`` (anti-PD-1) and under ``added`` (anti-PD-1
    + anti-Clever-1); the rule gives each patient the outcome of the arm it assigns, so its ORR,
    and its gain over treating no one (everyone ``alone``) or everyone (everyone ``added``), are
    paired. Patients whose solve failed in either arm are left out. ``threshold`` (ng/mL)
    defaults to the median baseline sClever-1; it is held fixed in the bootstrap (the rule as it
    would be applied). The rows (dimension ``rule``):

    - ``no one``: everyone anti-PD-1 alone; ``everyone``: everyone both drugs;
    - ``rule``: the pre-specified threshold;
    - ``sweep q0.10`` ...: thresholds at the ``quantiles`` of baseline sClever-1;
    - ``best of sweep (exploratory)``: the sweep threshold with the highest ORR (ties: the one
      treating fewest), *selected in-sample*: optimistic, and its CI ignores the selection.

    ORR in %, gains in percentage points, with 95 % paired percentile bootstrap CIs (patients
    resampled with both their outcomes; ``n_boot`` resamples, ``seed``), and the % treated.
    """
    _need(trial, ("baseline_sclever1", "best_response"))
    _check_boot(n_boot, seed)
    a, b = _regimen_arm(trial, alone, "alone"), _regimen_arm(trial, added, "added")
    ok = np.ones(trial.sizes["patient"], bool)
    if "solver_status" in trial:
        ok = (a.solver_status.values == 0) & (b.solver_status.values == 0)
    if ok.sum() < 2:
        raise InputError(describe("trial.solver_status", f"{int(ok.sum())} patients solved in both arms", "at least 2"))
    s = np.asarray(trial.baseline_sclever1.values, float)[ok]
    bad = ~np.isfinite(s)
    if bad.any():
        raise InputError(describe("trial.baseline_sclever1", float(s[bad][0]), "finite values (ng/mL) for every solved patient"))
    try:
        q = np.asarray(quantiles, float).ravel()
    except (TypeError, ValueError):
        q = np.array([np.nan])
    if q.size == 0 or not np.all((q > 0) & (q < 1)):
        shown = [float(x) for x in q] if np.isfinite(q).all() else quantiles
        raise InputError(describe("quantiles", shown, "one or more quantiles strictly between 0 and 1, e.g. [0.25, 0.5, 0.75]"))
    if threshold is None:
        threshold, how = float(np.median(s)), "the median baseline sClever-1"
    else:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) or not np.isfinite(threshold):
            raise InputError(describe("threshold", threshold, "a finite sClever-1 level in ng/mL, or None for the median"))
        threshold, how = float(threshold), "given"
    resp_a = np.isin(a.best_response.values[ok], (ep.CR, ep.PR)).astype(float)
    resp_b = np.isin(b.best_response.values[ok], (ep.CR, ep.PR)).astype(float)
    cuts = np.quantile(s, q)
    names = ["no one", "everyone", "rule"] + [f"sweep q{x:.2f}" for x in q]
    thresholds = [np.inf, -np.inf, threshold] + list(cuts)
    treated = np.array([s > t for t in thresholds])                       # (rule, patient)
    outcome = np.where(treated, resp_b, resp_a)                             # (rule, patient)
    orr_sweep = outcome[3:].mean(axis=1)
    best = 3 + max(range(q.size), key=lambda k: (orr_sweep[k], -treated[3 + k].sum()))
    names.append("best of sweep (exploratory)")
    thresholds.append(thresholds[best])
    treated = np.vstack([treated, treated[best]])
    outcome = np.vstack([outcome, outcome[best]])
    idx = _bootstrap_indices(s.size, n_boot, seed)
    orr_boot = np.stack([o[idx].mean(axis=1) for o in outcome])          # (rule, boot)
    gain_none, gain_all = orr_boot - orr_boot[0], orr_boot - orr_boot[1]

    def ci(x):
        return 100 * np.quantile(x, 0.025, axis=1), 100 * np.quantile(x, 0.975, axis=1)

    orr = 100 * outcome.mean(axis=1)
    pts = {"units": "percentage points"}
    lo_o, hi_o = ci(orr_boot)
    lo_n, hi_n = ci(gain_none)
    lo_a, hi_a = ci(gain_all)
    role = ["reference", "reference", "pre-specified"] + ["sweep"] * q.size + ["exploratory: threshold selected in-sample by ORR; optimistic, CI ignores the selection"]
    quant = [np.nan, np.nan, np.nan] + list(q) + [q[best - 3]]
    thr = np.array(thresholds, float)
    thr[~np.isfinite(thr)] = np.nan
    return xr.Dataset(
        {"threshold": ("rule", thr, {"units": "ng/mL", "long_name": "add anti-Clever-1 when baseline sClever-1 > threshold (NaN: no threshold)"}),
         "threshold_quantile": ("rule", quant, {"units": "1", "long_name": "quantile of baseline sClever-1 the threshold sits at"}),
         "treated": ("rule", 100 * treated.mean(axis=1), {"units": "%", "long_name": "patients given anti-Clever-1"}),
         "orr": ("rule", orr, {"units": "%", "long_name": "objective response rate (CR + PR)"}),
         "orr_lower": ("rule", lo_o, {"units": "%"}), "orr_upper": ("rule", hi_o, {"units": "%"}),
         "gain_vs_no_one": ("rule", orr - orr[0], {**pts, "long_name": "ORR gain over treating no one with anti-Clever-1"}),
         "gain_vs_no_one_lower": ("rule", lo_n, pts), "gain_vs_no_one_upper": ("rule", hi_n, pts),
         "gain_vs_everyone": ("rule", orr - orr[1], {**pts, "long_name": "ORR gain over giving everyone anti-Clever-1"}),
         "gain_vs_everyone_lower": ("rule", lo_a, pts), "gain_vs_everyone_upper": ("rule", hi_a, pts),
         "role": ("rule", role)},
        coords={"rule": names},
        attrs={"alone": alone, "added": added, "patients": int(s.size), "threshold_from": how,
               "design": "in-silico crossover: the same patients under both regimens; each rule takes each patient's outcome under the arm it assigns",
               "ci": f"paired percentile bootstrap over patients, {n_boot} resamples, seed {seed}; thresholds held fixed",
               "response": "RECIST 1.1 best overall response CR or PR; failed solves (either arm) left out"},
    )


def treatment_rule_table(rule: xr.Dataset) -> str:
    a = rule.attrs
    lines = [f"add {a['added'].replace(a['alone'] + ' + ', '')} when baseline sClever-1 > threshold ({a['patients']} patients, "
             f"crossover; threshold of 'rule': {a['threshold_from']}; 95 % CIs: {a['ci']})",
             f"{'rule':<30} {'threshold':>10} {'treated':>8} {'ORR':>18} {'gain vs no one':>22} {'gain vs everyone':>22}"]
    for name in rule.rule.values:
        r = rule.sel(rule=name)
        thr = "-" if np.isnan(float(r.threshold)) else f"{float(r.threshold):.2f}"
        lines.append(f"{str(name):<30} {thr:>10} {float(r.treated):>7.1f}% "
                     f"{float(r.orr):>5.1f} ({float(r.orr_lower):.1f}-{float(r.orr_upper):.1f}) "
                     f"{float(r.gain_vs_no_one):>+6.1f} ({float(r.gain_vs_no_one_lower):+.1f}, {float(r.gain_vs_no_one_upper):+.1f}) "
                     f"{float(r.gain_vs_everyone):>+6.1f} ({float(r.gain_vs_everyone_lower):+.1f}, {float(r.gain_vs_everyone_upper):+.1f})")
    lines.append("threshold in ng/mL; ORR in %, gains in percentage points. 'best of sweep' is selected in-sample "
                 "(exploratory, optimistic; its CI ignores the selection)")
    return "\n".join(lines)
