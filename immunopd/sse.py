"""Stochastic simulation and re-estimation (PsN's SSE) of a population model.

Known parameters (``truth``, nlme names: THETA names, ``OMEGA(a,b)``, ``SIGMA(...)``) generate
``replicates`` data sets on a fixed design (a NONMEM-layout frame: its ID, TIME and covariate
columns are kept, its DV replaced); each is re-estimated by :func:`immunopd.nlme.fit` from the
model's initial values, never from the truth. :func:`summarize` then reports, per parameter,
the relative bias and RMSE of the estimates and how often the 90 % Wald interval
(estimate +- 1.645 SE, from the covariance step) holds the true value.

Steps as in PsN: :func:`simulate_reestimate` (simulate + estimate, one row per replicate and
parameter) then :func:`summarize` (the table). With R replicates a coverage has a binomial
standard error of about sqrt(0.09 / R).

The simulation draws eta ~ N(0, OMEGA) per subject and the model's residual error; it has no
dose records (the mechanistic models carry their regimen inside the prediction), so models
whose prediction needs dose rows (pheno) are refused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import InputError, describe

__all__ = ["simulate", "simulate_reestimate", "summarize", "Z90"]

#: the standard normal's 95th percentile: a two-sided 90 % Wald interval is estimate +- Z90 SE
Z90 = 1.6448536269514722


def _check_truth(model, truth: Mapping[str, float]) -> None:
    names = model.parameter_names()
    missing = [n for n in names if n not in truth]
    if missing:
        raise InputError(describe("truth", sorted(truth), f"a value for every model parameter; missing {missing}"))
    extra = [n for n in truth if n not in names]
    if extra:
        raise InputError(describe("truth", extra, f"names among the model's parameters {names}"))
    bad = {n: v for n, v in truth.items() if not math.isfinite(float(v))}
    if bad:
        raise InputError(describe("truth", bad, "finite values"))


def _check(model, design, truth: Mapping[str, float], replicates: int) -> None:
    _check_truth(model, truth)
    zero = {n: v for n, v in truth.items() if float(v) == 0.0}
    if zero:
        raise InputError(describe("truth", zero, "non-zero values (the bias is relative to them)"))
    if isinstance(replicates, bool) or int(replicates) != replicates or replicates < 1:
        raise InputError(describe("replicates", replicates, "an integer >= 1"))
    if "AMT" in design and np.any(np.asarray(design["AMT"], float) != 0):
        raise InputError(describe("design.AMT", "non-zero dose rows", "observation rows only (AMT 0): the simulation"
                                  " has no dose records; the regimen is the model's"))


def simulate(model, design: pd.DataFrame, truth: Mapping[str, float], seed) -> pd.DataFrame:
    """One simulated copy of ``design`` at ``truth``: same rows, DV replaced (a diameter cannot
    be below 0). Every row of ``design`` must be an observation; ``seed`` is anything
    :func:`numpy.random.default_rng` takes."""
    from .popfit import _simulate, _subjects

    _check_truth(model, truth)
    out = design.reset_index(drop=True)
    if out["ID"].isna().any():
        raise InputError(describe("design.ID", "missing values", "an ID on every row"))
    d = _subjects(model, out)
    if int(d.mask.sum()) != len(out):
        raise InputError(describe("design", f"{len(out) - int(d.mask.sum())} non-observation rows",
                                  "observation rows only (AMT 0, no EVID 1 or MDV 1 rows)"))
    y = _simulate(model, d, dict(truth), 1, seed)[0]
    out["DV"] = out["DV"].astype(float)
    # nlme's packing (subject by subject, observations in row order) names each value's row
    out.loc[np.concatenate(d.rows), "DV"] = np.maximum(y[d.mask], 0.0)
    return out


def simulate_reestimate(model, design, truth, *, replicates: int = 20,
                        seed: int = 0, fit_options: Mapping | None = None, progress=None) -> pd.DataFrame:
    """Simulate ``replicates`` data sets from ``truth`` on ``design`` and re-estimate each.

    ``design`` is a NONMEM-layout frame of observation rows, or a function of a
    :class:`numpy.random.Generator` returning one (a design drawn anew per replicate, e.g.
    baseline sizes). Replicate r spawns two independent streams from ``SeedSequence(seed + r)``:
    one for the design, one for the etas and residuals. Returns one row per (replicate,
    parameter): true value, estimate, SE (NaN where the covariance step failed), ``converged``,
    ``covariance_ok``, ``status`` and ``seconds`` (the replicate's wall time); a replicate whose
    simulation or fit raises is kept as NaN estimates with status "failed: ..." (as PsN goes on
    past a failed run). ``fit_options`` go to :func:`immunopd.nlme.fit` (default: sandwich
    covariance, ``gtol`` 1e-2, ``maxiter`` 200); ``progress`` is called with each replicate's
    summary line.
    """
    from . import nlme

    def streams(r):
        design_ss, sim_ss = np.random.SeedSequence(seed + r).spawn(2)
        return np.random.default_rng(design_ss), sim_ss

    make = design if callable(design) else (lambda _rng: design)
    _check(model, make(streams(0)[0]), truth, replicates)
    opts = {"covariance": "sandwich", "gtol": 1e-2, "maxiter": 200, **dict(fit_options or {})}
    rows = []
    for r in range(int(replicates)):
        t0 = time.perf_counter()
        design_rng, sim_ss = streams(r)
        try:
            data = simulate(model, make(design_rng), truth, sim_ss)
            fit = nlme.fit(model, data, **opts)
        except Exception as err:  # noqa: BLE001 - one failed replicate must not lose the others
            status = f"failed: {type(err).__name__}: {err}"
            est = se = {name: np.nan for name in truth}
            converged = covariance_ok = False
            ofv = np.nan
        else:
            status, est, se = fit.status, fit.estimates(), fit.standard_errors()
            converged, covariance_ok, ofv = bool(fit.converged), fit.covariance_status == "ok", fit.ofv
        seconds = time.perf_counter() - t0
        for name, true in truth.items():
            rows.append({"replicate": r, "parameter": name, "true": float(true), "estimate": float(est[name]),
                         "se": float(se[name]), "converged": converged, "covariance_ok": covariance_ok,
                         "status": status, "seconds": seconds})
        if progress is not None:
            progress(f"replicate {r}: {seconds:.0f} s, OFV {ofv:.2f}, {status}")
    return pd.DataFrame(rows)


def summarize(results: pd.DataFrame, fixed: Sequence[str] = ()) -> pd.DataFrame:
    """Per parameter: true value, mean estimate, bias % (mean of (estimate - true) / true),
    rRMSE %, 90 % Wald coverage % over the replicates with a covariance step and a finite SE,
    and the counts behind them (replicates estimated, converged, with an SE); ``kind`` is
    "fixed effect" for the names in ``fixed``, else "variance". Bias and rRMSE are over every
    replicate with an estimate, converged or not (as PsN's default); failed ones are left out."""
    need = {"parameter", "true", "estimate", "se", "covariance_ok", "converged"}
    if not need <= set(results.columns):
        raise InputError(describe("results columns", sorted(results.columns), f"columns including {sorted(need)}"))
    unknown = [f for f in fixed if f not in set(results.parameter)]
    if unknown:
        raise InputError(describe("fixed", unknown, f"parameters of the results: {list(pd.unique(results.parameter))}"))
    out = []
    for name, g in results.groupby("parameter", sort=False):
        g = g[np.isfinite(g.estimate)]
        rel = (g.estimate - g.true) / g.true
        ok = g[g.covariance_ok & np.isfinite(g.se)]
        inside = (ok.estimate - Z90 * ok.se <= ok.true) & (ok.true <= ok.estimate + Z90 * ok.se)
        out.append({"parameter": name, "kind": "fixed effect" if name in fixed else "variance",
                    "true": g.true.iloc[0] if len(g) else np.nan, "mean estimate": g.estimate.mean(),
                    "bias %": 100 * rel.mean(), "rRMSE %": 100 * math.sqrt((rel**2).mean()) if len(g) else np.nan,
                    "90% CI coverage %": 100 * inside.mean() if len(ok) else np.nan, "n estimated": len(g),
                    "n converged": int(g.converged.sum()), "n with SE": len(ok)})
    return pd.DataFrame(out)
