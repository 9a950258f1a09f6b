"""Stochastic simulation and re-estimation (PsN's SSE) of the mechanistic population model (issue 16, item 3).

Known population parameters (``TRUE``: typical baseline-volume ratio, growth and kill rates,
between-lesion variances of growth and kill, combined residual error) generate ``--replicates``
data sets of ``--lesions`` lesions scanned at weeks 0, 6, 12, 18, 27 and 36 on atezolizumab
1200 mg Q3W (baseline diameters uniform on 15-40 mm); each is re-estimated by FOCE-I from the
model's initial values (not from the truth). Reported per parameter: relative bias of the
estimates (mean (estimate - true) / true), relative RMSE, and the coverage of the 90 % Wald
interval estimate +- 1.645 SE (sandwich covariance step) over the replicates whose covariance
step succeeded. Targets (issue 16): |bias| < 10 % for each fixed effect, coverage within
80-97 %. With R replicates a coverage has a binomial standard error of about sqrt(0.09 / R).

Reproduce with:  .venv/bin/python bench/sse.py --replicates 20 --lesions 40
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import immunopd  # noqa: E402,F401
from immunopd import nlme  # noqa: E402
from immunopd.popfit import _simulate, _subjects, mechanistic_nlme_model  # noqa: E402

FREE = ("baseline_tumor_volume", "growth_rate", "kill_rate")
RANDOM = ("growth_rate", "kill_rate")
#: the simulation truth: growth and kill near the defaults (Table of immunopd.models.core), 30 % and
#: 70 % between-lesion CV, 5 % proportional and 0.5 mm additive residual SD (assumed, a typical
#: RECIST measurement error)
TRUE = {"V0_RATIO": 1.0, "POP_GROWTH_RATE": 0.003, "POP_KILL_RATE": 1.0,
        "OMEGA(growth_rate,growth_rate)": 0.09, "OMEGA(kill_rate,kill_rate)": 0.5,
        "SIGMA(proportional)": 0.0025, "SIGMA(additive)": 0.25}
SCAN_DAYS = (0.0, 42.0, 84.0, 126.0, 189.0, 252.0)


def design(n: int, rng) -> pd.DataFrame:
    rows = []
    for i in range(n):
        d0 = float(rng.uniform(15, 40))
        for t in SCAN_DAYS:
            rows.append({"ID": f"L{i:03d}", "TIME": t, "AMT": 0.0, "DV": d0, "BASEVOL": math.pi / 6 * d0**3})
    return pd.DataFrame(rows)


def replicate_data(model, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = design(n, rng)
    y = _simulate(model, _subjects(model, df), TRUE, 1, seed)[0]
    d = _subjects(model, df)
    df["DV"] = np.maximum(y[d.mask], 0.0)  # a lesion cannot measure below 0 mm
    return df


def run(replicates: int, lesions: int, seed: int = 0, maxiter: int = 200, verbose: bool = True) -> pd.DataFrame:
    model = mechanistic_nlme_model("immunotherapy", FREE, random=RANDOM)
    rows = []
    for r in range(replicates):
        t0 = time.perf_counter()
        data = replicate_data(model, lesions, seed + r)
        fit = nlme.fit(model, data, covariance="sandwich", maxiter=maxiter, gtol=1e-2)
        est, se = fit.estimates(), fit.standard_errors()
        for name, true in TRUE.items():
            rows.append({"replicate": r, "parameter": name, "true": true, "estimate": est[name], "se": se[name],
                         "converged": fit.converged, "covariance_ok": fit.covariance_status == "ok",
                         "seconds": time.perf_counter() - t0})
        if verbose:
            print(f"replicate {r}: {time.perf_counter() - t0:.0f} s, OFV {fit.ofv:.2f}, {fit.status}", flush=True)
    return pd.DataFrame(rows)


def summarize(res: pd.DataFrame) -> pd.DataFrame:
    out = []
    for name, g in res.groupby("parameter", sort=False):
        rel = (g.estimate - g.true) / g.true
        ok = g[g.covariance_ok & np.isfinite(g.se)]
        inside = (ok.estimate - 1.645 * ok.se <= ok.true) & (ok.true <= ok.estimate + 1.645 * ok.se)
        out.append({"parameter": name, "true": g.true.iloc[0], "mean estimate": g.estimate.mean(),
                    "bias %": 100 * rel.mean(), "rRMSE %": 100 * math.sqrt((rel**2).mean()),
                    "90% CI coverage %": 100 * inside.mean() if len(ok) else np.nan, "n with SE": len(ok)})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--lesions", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write every replicate's estimates (.csv)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = run(args.replicates, args.lesions, args.seed)
    if args.out:
        res.to_csv(args.out, index=False)
    tab = summarize(res)
    fixed = tab[tab.parameter.isin(["V0_RATIO", "POP_GROWTH_RATE", "POP_KILL_RATE"])]
    print(tab.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    conv = res.groupby("replicate").converged.first().mean()
    print(f"\n{args.replicates} replicates x {args.lesions} lesions x {len(SCAN_DAYS)} scans in {time.perf_counter() - t0:.0f} s;"
          f" estimation converged in {100 * conv:.0f} %")
    print(f"fixed effects |bias| < 10 %: {bool((fixed['bias %'].abs() < 10).all())}; coverage within 80-97 %: "
          f"{bool(tab['90% CI coverage %'].between(80, 97).all())} (binomial SE of a coverage ~"
          f"{100 * math.sqrt(0.09 / args.replicates):.0f} points at this R)")
    print(f"reproduce: .venv/bin/python bench/sse.py --replicates {args.replicates} --lesions {args.lesions} --seed {args.seed}")


if __name__ == "__main__":
    main()
