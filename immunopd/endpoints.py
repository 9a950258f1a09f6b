"""Clinical endpoints from simulated (or measured) tumor size: RECIST 1.1, ORR, PFS, Kaplan–Meier.

Everything here is plain NumPy on arrays whose last axis is time, so the same functions
serve one trajectory, a population and a (regimen, patient) grid, and can be checked by
hand on made-up trajectories (tests/test_endpoints.py).

RECIST 1.1 on the sum of longest diameters (Eisenhauer et al. 2009, Eur J Cancer 45:228,
doi:10.1016/j.ejca.2008.10.026), applied at scan times only (as in a trial, not daily):

- **CR**: all target lesions gone; here the SLD is at or below ``cr_threshold_mm`` (a
  continuous model never reaches exactly 0; the default 1 mm is below CT resolution).
- **PR**: SLD at least 30% below baseline.
- **PD**: SLD at least 20% above the nadir (the smallest SLD so far, baseline included) and at
  least 5 mm above it.
- **SD**: neither, at a scan at least ``sd_min_days`` after baseline.

Best overall response is the best of the scans up to and including the first PD (responses
are not required to be confirmed, as in RECIST 1.1 for randomized trials); a patient whose
first scan is PD, or who has no scan, is PD or NE. Progression-free survival is the time of
the first PD scan; patients without PD are censored at their last scan (the model has no
death, so PFS equals time to progression). Duration of response runs from the first PR/CR
scan to PD, censored at the last scan.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .errors import InputError, describe

__all__ = [
    "RESPONSES",
    "recist",
    "scan_times",
    "response_rate",
    "kaplan_meier",
    "km_median",
]

#: best overall response codes, in the order stored in result files (``flag_values`` 0..4)
RESPONSES: tuple[str, ...] = ("CR", "PR", "SD", "PD", "NE")
CR, PR, SD, PD, NE = range(5)


def scan_times(times: np.ndarray, every_days: float, horizon: float | None = None) -> np.ndarray:
    """Indices into ``times`` of the scans every ``every_days`` after time 0 (time 0 excluded)."""
    times = np.asarray(times, dtype=float)
    if not np.isfinite(every_days) or every_days <= 0:
        raise InputError(describe("scan_interval_days", every_days, "a finite scan interval > 0 day"))
    end = times[-1] if horizon is None else horizon
    wanted = np.arange(every_days, end + 1e-9, every_days)
    idx = np.searchsorted(times, wanted - 1e-9)
    ok = (idx < times.size) & (np.abs(times[np.minimum(idx, times.size - 1)] - wanted) < 1e-6)
    if not np.all(ok):
        missing = wanted[~ok][0]
        raise InputError(describe("scan time (day)", float(missing), "a scan time that is also an output time; use a daily grid"))
    return idx


def recist(
    sld: np.ndarray,
    times: np.ndarray,
    *,
    scans: np.ndarray | None = None,
    followup_days: np.ndarray | float | None = None,
    cr_threshold_mm: float = 1.0,
    pr_decrease: float = 0.30,
    pd_increase: float = 0.20,
    pd_absolute_mm: float = 5.0,
    sd_min_days: float = 0.0,
) -> dict[str, np.ndarray]:
    """RECIST 1.1 endpoints of SLD trajectories.

    Parameters
    ----------
    sld
        Sum of longest diameters (mm), shape ``(..., time)``; ``sld[..., 0]`` is the baseline.
    times
        Times (day) of the last axis, shape ``(time,)``, ``times[0]`` the baseline.
    scans
        Indices of the scan times along the last axis (default: every time after 0).
    followup_days
        Last day a patient is scanned, scalar or shape ``sld.shape[:-1]`` (default: all scans).

    Returns
    -------
    dict of arrays of shape ``sld.shape[:-1]``
        ``best_response`` (int codes into :data:`RESPONSES`), ``best_pct_change`` (%, the
        smallest change at a scan), ``progressed`` (bool), ``pfs_days`` (first PD scan, or the
        last scan when censored), ``responded`` (bool), ``response_onset_days``,
        ``dor_days`` (duration of response, NaN for non-responders) and ``dor_event``.
    """
    sld = np.asarray(sld, dtype=float)
    times = np.asarray(times, dtype=float)
    if sld.shape[-1] != times.size:
        raise InputError(describe("sld.shape[-1]", sld.shape[-1], f"the number of times ({times.size})"))
    if np.any(sld < 0):
        raise InputError(describe("sld", float(sld[sld < 0].flat[0]), "sums of diameters >= 0 mm"))
    base = sld[..., 0]
    if np.any(base <= 0):
        raise InputError(describe("sld at baseline", float(base[base <= 0].flat[0]), "a baseline SLD > 0 mm"))
    scans = np.arange(1, times.size) if scans is None else np.asarray(scans, dtype=int)
    if scans.size == 0:  # nothing assessed (a horizon shorter than the first scan): not evaluable
        batch = sld.shape[:-1]
        nan = np.full(batch, np.nan)
        no = np.zeros(batch, dtype=bool)
        return {"best_response": np.full(batch, NE, dtype=np.int8), "best_pct_change": nan, "progressed": no,
                "pfs_days": np.zeros(batch), "responded": no.copy(), "response_onset_days": nan.copy(),
                "dor_days": nan.copy(), "dor_event": no.copy()}
    t_scan = times[scans]
    s = sld[..., scans]  # (..., scans)
    batch = s.shape[:-1]
    if followup_days is None:
        observed = np.ones(s.shape, dtype=bool)
    else:
        fu = np.broadcast_to(np.asarray(followup_days, dtype=float), batch)
        observed = t_scan <= fu[..., None]
    valid = observed & np.isfinite(s)

    # the nadir before each scan: min over baseline and the earlier valid scans
    running = np.minimum.accumulate(np.where(valid, s, np.inf), axis=-1)
    prior = np.concatenate([np.full(batch + (1,), np.inf), running[..., :-1]], axis=-1)
    nadir = np.minimum(base[..., None], prior)
    is_pd = valid & (s >= (1.0 + pd_increase) * nadir) & (s - nadir >= pd_absolute_mm)
    pct = 100.0 * (s / base[..., None] - 1.0)
    is_cr = valid & (s <= cr_threshold_mm)
    is_pr = valid & ~is_cr & (pct <= -100.0 * pr_decrease)

    n_scan = s.shape[-1]
    progressed = is_pd.any(axis=-1)
    first_pd = np.where(progressed, np.argmax(is_pd, axis=-1), n_scan)
    upto = np.arange(n_scan) <= first_pd[..., None]  # scans up to and including the first PD
    before = np.arange(n_scan) < first_pd[..., None]
    any_cr = (is_cr & before).any(axis=-1)
    any_pr = (is_pr & before).any(axis=-1)
    any_sd = (valid & before & (t_scan >= sd_min_days)).any(axis=-1)
    best = np.full(batch, NE, dtype=np.int8)
    best[progressed] = PD
    best[any_sd] = SD
    best[any_pr] = PR
    best[any_cr] = CR

    best_pct = np.where((valid & upto).any(axis=-1), np.min(np.where(valid & upto, pct, np.inf), axis=-1), np.nan)
    any_valid = valid.any(axis=-1)
    last_scan = np.where(any_valid, t_scan[np.maximum(n_scan - 1 - np.argmax(valid[..., ::-1], axis=-1), 0)], 0.0)
    pfs = np.where(progressed, t_scan[np.minimum(first_pd, n_scan - 1)], last_scan)

    resp = (is_cr | is_pr) & before
    responded = resp.any(axis=-1)
    onset = np.where(responded, t_scan[np.argmax(resp, axis=-1)], np.nan)
    dor = np.where(responded, pfs - onset, np.nan)
    return {
        "best_response": best,
        "best_pct_change": best_pct,
        "progressed": progressed,
        "pfs_days": pfs,
        "responded": responded,
        "response_onset_days": onset,
        "dor_days": dor,
        "dor_event": responded & progressed,
    }


def response_rate(hits: np.ndarray, axis: int = -1, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proportion of True along ``axis`` with its exact (Clopper–Pearson) confidence interval."""
    hits = np.asarray(hits, dtype=bool)
    k = hits.sum(axis=axis)
    n = hits.shape[axis]
    if n == 0:
        raise InputError(describe("number of patients", 0, "at least 1"))
    alpha = 1.0 - confidence
    lo = np.where(k > 0, stats.beta.ppf(alpha / 2, k, n - k + 1), 0.0)
    hi = np.where(k < n, stats.beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    return k / n, lo, hi


def kaplan_meier(time: np.ndarray, event: np.ndarray, confidence: float = 0.95) -> dict[str, np.ndarray]:
    """Kaplan–Meier estimate with Greenwood variance and log(-log) confidence band.

    Returns ``time`` (distinct event times), ``survival``, ``lower``, ``upper``, ``at_risk``
    and ``events`` at those times; survival is 1 before the first of them.
    """
    time = np.asarray(time, dtype=float).ravel()
    event = np.asarray(event, dtype=bool).ravel()
    if time.size != event.size:
        raise InputError(describe("event.size", event.size, f"the size of time ({time.size})"))
    if np.any(~np.isfinite(time)) or np.any(time < 0):
        raise InputError(describe("time", time[~np.isfinite(time) | (time < 0)][0], "finite times >= 0 day"))
    t_ev = np.unique(time[event])
    at_risk = (time[None, :] >= t_ev[:, None]).sum(axis=1)
    d = ((time[None, :] == t_ev[:, None]) & event[None, :]).sum(axis=1)
    surv = np.cumprod(1.0 - d / at_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        gw = np.cumsum(d / (at_risk * (at_risk - d)))
        z = stats.norm.ppf(0.5 + confidence / 2)
        log_s = np.log(surv)
        se = np.sqrt(gw) / np.abs(log_s)
        lower = surv ** np.exp(z * se)
        upper = surv ** np.exp(-z * se)
    lower = np.where(surv > 0, lower, 0.0)
    upper = np.where(surv > 0, upper, 0.0)
    return {"time": t_ev, "survival": surv, "lower": lower, "upper": upper, "at_risk": at_risk, "events": d}


def km_median(km: dict[str, np.ndarray]) -> tuple[float, float, float]:
    """Median survival time and its confidence interval from the band (Brookmeyer–Crowley style):
    the first time each curve falls to 0.5 or below; NaN when it never does (not reached)."""

    def first_below(curve):
        hit = np.flatnonzero(curve <= 0.5)
        return float(km["time"][hit[0]]) if hit.size else float("nan")

    return first_below(km["survival"]), first_below(km["lower"]), first_below(km["upper"])
