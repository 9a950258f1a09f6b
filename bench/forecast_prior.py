"""Fit the population prior that `immunopd forecast` ships with (issue 17), on lesions it is never scored on.

The forecast validation (bench/forecast.py) and TumorGrowth.jl's protocol score lesions with >= 6
readings; this prior is a FOCE-I fit (immunopd.popfit) of the mechanistic model to a random sample
of the *other* immunotherapy-arm lesions of data/laleh2022 (3 to 5 readings), on the arms'
atezolizumab 1200 mg Q3W from the baseline scan, with log-normal random effects on the baseline
volume ratio, the growth rate and the kill rate. The Dataset it writes (the one `immunopd popfit
--out` writes) is package data: immunopd/priors/laleh2022_atezolizumab.nc.

Reproduce with (the shipped file's attrs['reproduce'] has the exact commands):
    .venv/bin/python bench/forecast_prior.py --out /tmp/leg1.nc && .venv/bin/python bench/forecast_prior.py --start /tmp/leg1.nc --maxiter 60
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from immunopd.io import write_netcdf  # noqa: E402
from immunopd.popfit import mechanistic_nlme_model, popfit  # noqa: E402

from popforecast import all_records, nonmem_rows  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "immunopd", "priors", "laleh2022_atezolizumab.nc")
FREE = ("baseline_tumor_volume", "growth_rate", "kill_rate")
#: start near an earlier 30-lesion fit (bench/popforecast.py) to save iterations; the fit moves from there
START = {"V0_RATIO": 0.53, "POP_GROWTH_RATE": 0.0037, "POP_KILL_RATE": 3.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lesions", type=int, default=40)
    ap.add_argument("--maxiter", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--start", default=None, help="start from the estimates of an earlier run's file (a second leg of a fit"
                                                  " that stopped at --maxiter)")
    args = ap.parse_args()
    df = all_records()
    pool = df[(df.arm == "immunotherapy") & (df.readings >= 3) & (df.readings <= 5)].lesion.unique()
    pick = np.random.default_rng(args.seed).choice(pool, size=min(args.lesions, pool.size), replace=False)
    data = nonmem_rows(df[df.lesion.isin(pick)])
    start = dict(START)
    if args.start:
        import xarray as xr

        with xr.open_dataset(args.start) as prev:
            start = {str(k): float(v) for k, v in zip(prev.parameter.values, prev.estimate.values)}
    model = mechanistic_nlme_model("immunotherapy", FREE, initial=start, omega=0.5)
    t0 = time.perf_counter()
    pf = popfit(data, model=model, initial=start if args.start else None, maxiter=args.maxiter, replicates=100, seed=args.seed, progress=True)
    print(f"{len(pick)} lesions with 3-5 readings (of {pool.size}), {len(data)} scans: {time.perf_counter() - t0:.0f} s")
    print(pf.report())
    ds = pf.to_dataset()
    ds.attrs["prior_training"] = (f"{len(pick)} immunotherapy-arm lesions of data/laleh2022 with 3-5 readings (seed {args.seed});"
                                  " lesions with >= 6 readings (the scored ones) are never used")
    ds.attrs["reproduce"] = "python bench/forecast_prior.py " + " ".join(sys.argv[1:])
    if args.start:
        with xr.open_dataset(args.start) as prev:
            ds.attrs["reproduce"] = prev.attrs.get("reproduce", "?") + " && " + ds.attrs["reproduce"]
    write_netcdf(ds, args.out)
    print("wrote", os.path.abspath(args.out))


if __name__ == "__main__":
    main()
