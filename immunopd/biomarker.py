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
           "sclever1_adjusted_table"]

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


def biomarker_report(trial: xr.Dataset, strata: dict[str, xr.Dataset]) -> str:
    from .trial import endpoint_table

    parts = [endpoint_table(trial)] + [strata_table(s) for s in strata.values()]
    parts.append(sclever1_adjusted_table(sclever1_adjusted(trial)))
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
