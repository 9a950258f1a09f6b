"""Speed of the mechanistic population fit (issue 16, item 7), beside the natural alternative.

1. The FOCE-I population fit (:func:`immunopd.popfit.popfit`: typical growth and kill rates with
   between-lesion etas, V0_RATIO x the baseline scan's volume, combined error; sandwich
   covariance step and a 100-replicate VPC included) of the first ``--lesions`` immunotherapy
   lesions with >= 3 scans (``all``: every one), wall time including compilation.
2. The alternative a user has without a population tool: one lmfit fit per lesion of the same
   three parameters (:func:`immunopd.fitting.fit_model`, Levenberg-Marquardt with the Jacobian
   by forward-mode AD through the solver), on the same lesions, looped.
3. Pheno (NONMEM's phenobarbital problem): the FOCE-I fit warm (target <= 5 s).

Both mechanistic timings come from the same run; compare them as a ratio (the machine is
shared and noisy).

Reproduce with:  .venv/bin/python bench/population.py --lesions 40     (or --lesions all)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import immunopd  # noqa: E402,F401
from immunopd import nlme  # noqa: E402
from immunopd.calibration import observed_courses  # noqa: E402
from immunopd.fitting import fit_model  # noqa: E402
from immunopd.models.drugs import ARM_REGIMENS  # noqa: E402
from immunopd.popfit import lesion_data, popfit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lesions", default="40", help="number of lesions or 'all' (default 40)")
    ap.add_argument("--skip-loop", action="store_true", help="time the population fit only")
    args = ap.parse_args()
    n = None if args.lesions == "all" else int(args.lesions)
    courses = observed_courses("laleh2022", arm="immunotherapy")
    data = lesion_data(courses, min_scans=3, lesions=n)
    ids = set(data.ID)
    print(f"{len(ids)} lesions, {len(data)} scans (immunotherapy arm, >= 3 scans)", flush=True)

    t0 = time.perf_counter()
    pf = popfit(data, random=("growth_rate", "kill_rate"), replicates=100)
    pop_s = time.perf_counter() - t0
    print(pf.report())
    print(f"population fit (FOCE-I, covariance step, VPC; compilation included): {pop_s:.1f} s", flush=True)

    loop_s = float("nan")
    if not args.skip_loop:
        t0 = time.perf_counter()
        ok = 0
        for lesion, t, d in courses:
            if lesion not in ids:
                continue
            res = fit_model(t, d, regimen=ARM_REGIMENS["immunotherapy"], error_model="combined", lesion=lesion)
            ok += bool(res.converged)
        loop_s = time.perf_counter() - t0
        print(f"per-lesion lmfit loop of the same 3 parameters: {loop_s:.1f} s ({ok} of {len(ids)} fits converged)")

    pheno, pdata = nlme.pheno_model(), nlme.read_nonmem_table(os.path.join(os.path.dirname(__file__), "..", "data", "pheno", "pheno.dta"))
    nlme.fit(pheno, pdata)
    t0 = time.perf_counter()
    res = nlme.fit(pheno, pdata)
    pheno_s = time.perf_counter() - t0
    print(f"pheno warm: {pheno_s:.2f} s (OFV {res.ofv:.3f}; NONMEM 586.276)")
    ratio = pop_s / loop_s if np.isfinite(loop_s) else float("nan")
    print(f"bench: population lesions={len(ids)} popfit_s={pop_s:.1f} loop_s={loop_s:.1f} ratio_pop_over_loop={ratio:.2f} "
          f"pheno_warm_s={pheno_s:.2f}")
    print(f"reproduce: .venv/bin/python bench/population.py --lesions {args.lesions}")


if __name__ == "__main__":
    main()
