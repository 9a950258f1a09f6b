"""Stochastic simulation and re-estimation (PsN's SSE) of the mechanistic population model (issue 16, item 3).

Known population parameters (``TRUE``: typical baseline-volume ratio, growth and kill rates,
between-lesion variances of growth and kill, combined residual error) generate ``--replicates``
data sets of ``--lesions`` lesions scanned at weeks 0, 6, 12, 18, 27 and 36 on atezolizumab
1200 mg Q3W (baseline diameters uniform on 15-40 mm); each is re-estimated by FOCE-I from the
model's initial values (not from the truth), by ``immunopd.sse``. Reported per parameter: relative bias of the
estimates (mean (estimate - true) / true), relative RMSE, and the coverage of the 90 % Wald
interval estimate +- 1.645 SE (sandwich covariance step) over the replicates whose covariance
step succeeded. Targets (issue 16): |bias| < 10 % for each fixed effect, coverage within
80-97 %. With R replicates a coverage has a binomial standard error of about sqrt(0.09 / R).

Reproduce with:  .venv/bin/python bench/sse.py --replicates 40 --lesions 20 --out sse.csv   (2,915 s, one 2-core run)
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
from immunopd import sse  # noqa: E402
from immunopd.cli import _check_output  # noqa: E402
from immunopd.popfit import mechanistic_nlme_model  # noqa: E402

FREE = ("baseline_tumor_volume", "growth_rate", "kill_rate")
RANDOM = ("growth_rate", "kill_rate")
#: the simulation truth: growth and kill near the defaults (Table of immunopd.models.core), 30 % and
#: 70 % between-lesion CV, 5 % proportional and 0.5 mm additive residual SD (assumed, a typical
#: RECIST measurement error)
TRUE = {"V0_RATIO": 1.0, "POP_GROWTH_RATE": 0.003, "POP_KILL_RATE": 1.0,
        "OMEGA(growth_rate,growth_rate)": 0.09, "OMEGA(kill_rate,kill_rate)": 0.5,
        "SIGMA(proportional)": 0.0025, "SIGMA(additive)": 0.25}
SCAN_DAYS = (0.0, 42.0, 84.0, 126.0, 189.0, 252.0)
FIXED = ("V0_RATIO", "POP_GROWTH_RATE", "POP_KILL_RATE")


def design(n: int, rng) -> pd.DataFrame:
    rows = []
    for i in range(n):
        d0 = float(rng.uniform(15, 40))
        for t in SCAN_DAYS:
            rows.append({"ID": f"L{i:03d}", "TIME": t, "AMT": 0.0, "DV": d0, "BASEVOL": math.pi / 6 * d0**3})
    return pd.DataFrame(rows)


def run(replicates: int, lesions: int, seed: int = 0, maxiter: int = 200, verbose: bool = True) -> pd.DataFrame:
    model = mechanistic_nlme_model("immunotherapy", FREE, random=RANDOM)
    res = sse.simulate_reestimate(model, lambda rng: design(lesions, rng), TRUE,
                                  replicates=replicates, seed=seed, fit_options={"maxiter": maxiter, "gtol": 1e-2},
                                  progress=(lambda line: print(line, flush=True)) if verbose else None)
    return res.assign(lesions=lesions, seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=40)
    ap.add_argument("--lesions", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write every replicate's estimates (.csv)")
    ap.add_argument("--from-csv", default=None, help="summarize a saved run (--out of an earlier run) instead of running")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.out and args.from_csv:
        ap.error("--out is for a new run; --from-csv summarizes a saved one")
    if args.out:  # checked before hours of fitting, not after
        _check_output(args.out, "--out", (".csv",))
    if args.from_csv:
        res = pd.read_csv(args.from_csv)
        args.replicates, args.lesions, args.seed = res.replicate.nunique(), int(res.lesions.iloc[0]), int(res.seed.iloc[0])
    else:
        res = run(args.replicates, args.lesions, args.seed)
    if args.out:
        tmp = args.out + ".part"
        res.to_csv(tmp, index=False)
        os.replace(tmp, args.out)
    tab = sse.summarize(res, fixed=FIXED)
    fixed = tab[tab.kind == "fixed effect"]
    print(tab.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    conv = res.groupby("replicate").converged.first().mean()
    seconds = res.groupby("replicate").seconds.first().sum() if args.from_csv else time.perf_counter() - t0
    print(f"\n{args.replicates} replicates x {args.lesions} lesions x {len(SCAN_DAYS)} scans in {seconds:.0f} s;"
          f" estimation converged in {100 * conv:.0f} %")
    print(f"fixed effects |bias| < 10 %: {bool((fixed['bias %'].abs() < 10).all())}; fixed effects' 90 % CI coverage "
          f"within 80-97 %: {bool(fixed['90% CI coverage %'].between(80, 97).all())}; variances' coverage within 80-97 %: "
          f"{bool(tab[~tab.parameter.isin(fixed.parameter)]['90% CI coverage %'].between(80, 97).all())} (reported; "
          f"binomial SE of a coverage ~{100 * math.sqrt(0.09 / args.replicates):.0f} points at this R)")
    print(f"reproduce: .venv/bin/python bench/sse.py --replicates {args.replicates} --lesions {args.lesions} --seed {args.seed}")


if __name__ == "__main__":
    main()
