"""Fit the population prior that `immunopd forecast` ships with (issue 17), on lesions it is never scored on.

The forecast validation (bench/forecast.py) scores lesions with >= 6 readings. This prior is a FOCE-I
fit (immunopd.popfit) of the mechanistic model to a random sample of one arm's lesions (--arm) of
data/laleh2022 with >= 3 readings, drawn from all of them except a held-out random half of those with
>= 6 readings (one target lesion per patient, so lesions are patients); bench/forecast.py scores only
lesions that are not among the prior's subjects (its `subject` coordinate). Sampling only short
courses (3-5 readings) was tried first: those are mostly early progressors (a patient stays on study
while responding), and the prior then predicted growth for the long-followed lesions it was scored on.
The model runs on the arms' atezolizumab 1200 mg Q3W from the baseline scan, with log-normal random
effects on the growth and kill rates (an eta on the baseline volume ratio collapsed to zero: the
baseline scan fixes the volume). The Dataset it writes (the one `immunopd popfit
--out` writes) is package data: immunopd/priors/laleh2022_<arm>.nc (`immunopd forecast --prior <arm>`).

Reproduce with:  .venv/bin/python bench/forecast_prior.py [--arm immunotherapy|chemotherapy] [--lesions 60] [--maxiter 60] [--omega 0.1]
[--add-random carrying_capacity --out FILE]
(a fit that stops at --maxiter can go on with --start FILE; the shipped file's attrs['reproduce'] says how it was made)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

import immunopd  # noqa: E402
from immunopd.io import write_netcdf  # noqa: E402
from immunopd.popfit import mechanistic_nlme_model, popfit  # noqa: E402

from popforecast import all_records, nonmem_rows  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "immunopd", "priors", "laleh2022_{arm}.nc")
#: per arm: the individual parameters, those with etas, and the start. Immunotherapy: growth and the
#: immune kill rate, started near an earlier 30-lesion fit (bench/popforecast.py) to save iterations.
#: Chemotherapy: growth and the cytotoxic kill ratio (the drug's effect on this arm; the immune
#: kill rate stays at its default), started from the defaults with the initial OMEGA at 0.1: at 0.5
#: the first conditional modes put a lesion on the tumor-immune threshold, whose cliff-like
#: prediction stopped BFGS in its first iteration (bench/separatrix.py).
ARMS = {
    "immunotherapy": (("baseline_tumor_volume", "growth_rate", "kill_rate"), ("growth_rate", "kill_rate"),
                      {"V0_RATIO": 0.91, "POP_GROWTH_RATE": 0.0016, "POP_KILL_RATE": 0.0084}),
    "chemotherapy": (("baseline_tumor_volume", "growth_rate", "chemo_kill_ratio"), ("growth_rate", "chemo_kill_ratio"),
                     {"V0_RATIO": 0.91, "POP_GROWTH_RATE": 0.0016}),
}
#: initial OMEGA (variance) of every eta, per arm
INITIAL_OMEGA = {"immunotherapy": 0.5, "chemotherapy": 0.1}


#: fixed parameters per arm: the data carry no body size, so the mg/m2 doses (docetaxel) use the
#: core model's typical adult BSA (assumed, Mosteller 1987); bench/forecast.py scores with the same
ARM_PARAMS = {"immunotherapy": {},
              "chemotherapy": {"body_surface_area": float(immunopd.core_model().parameters["body_surface_area"].default)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", choices=tuple(ARMS), default="immunotherapy")
    ap.add_argument("--lesions", type=int, default=60)
    ap.add_argument("--maxiter", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--omega", type=float, default=None, help="initial OMEGA (variance) of every eta (default: the arm's,"
                                                               " INITIAL_OMEGA)")
    ap.add_argument("--add-random", default="", help="comma-separated further parameters to fit with an eta each (e.g."
                                                     " carrying_capacity: K_RATIO x the lesion's baseline volume)")
    ap.add_argument("--out", default=None, help="default: immunopd/priors/laleh2022_<arm>.nc")
    ap.add_argument("--start", default=None, help="start from the estimates of an earlier run's file (a second leg of a fit"
                                                  " that stopped at --maxiter)")
    args = ap.parse_args()
    out = args.out or OUT.format(arm=args.arm)
    free, random, start_values = ARMS[args.arm]
    extra = tuple(x.strip() for x in args.add_random.split(",") if x.strip())
    free, random = free + tuple(x for x in extra if x not in free), random + tuple(x for x in extra if x not in random)
    df = all_records()
    rng = np.random.default_rng(args.seed)
    arm = df[df.arm == args.arm]
    long = arm[arm.readings >= 6].lesion.unique()
    held_out = set(rng.choice(long, size=long.size // 2, replace=False))
    pool = np.array([x for x in arm[arm.readings >= 3].lesion.unique() if x not in held_out])
    pick = rng.choice(pool, size=min(args.lesions, pool.size), replace=False)
    data = nonmem_rows(df[df.lesion.isin(pick)])
    start = dict(start_values)
    if args.start:
        import xarray as xr

        with xr.open_dataset(args.start) as prev:
            start = {str(k): float(v) for k, v in zip(prev.parameter.values, prev.estimate.values)}
    start = {k: v for k, v in start.items() if "baseline_tumor_volume" not in k}
    model = mechanistic_nlme_model(args.arm, free, random=random, initial=start, omega=INITIAL_OMEGA[args.arm] if args.omega is None else args.omega, params=ARM_PARAMS[args.arm] or None)
    t0 = time.perf_counter()
    pf = popfit(data, model=model, initial=start if args.start else None, maxiter=args.maxiter, replicates=100, seed=args.seed, progress=True)
    print(f"{len(pick)} lesions (of {pool.size} eligible; {len(held_out)} long courses held out), {len(data)} scans: {time.perf_counter() - t0:.0f} s")
    print(pf.report())
    ds = pf.to_dataset()
    n_long = int(np.isin(pick, long).sum())
    ds.attrs["prior_training"] = (f"{len(pick)} {args.arm}-arm lesions of data/laleh2022 with >= 3 readings (seed {args.seed};"
                                  f" {n_long} of them with >= 6), drawn outside a held-out random half of the lesions with >= 6"
                                  " readings; forecasts are scored only on lesions not among this fit's subjects")
    ds.attrs["reproduce"] = "python bench/forecast_prior.py " + " ".join(sys.argv[1:])
    if args.start:
        with xr.open_dataset(args.start) as prev:
            ds.attrs["reproduce"] = prev.attrs.get("reproduce", "?") + " && " + ds.attrs["reproduce"]
    write_netcdf(ds, out)
    print("wrote", os.path.abspath(out))


if __name__ == "__main__":
    main()
