"""The mechanistic population fit with study as a covariate, on lesions from every study of an arm
(issue 16, item 4), with the VPC stratified by study and prediction-corrected.

Takes the first ``--per-study`` lesions with >= ``--min-scans`` scans of each study of the arm
(Laleh 2022: studies 1-5 for immunotherapy, 2 and 4 for docetaxel), fits the FOCE-I population
(etas on growth and kill rates, V0_RATIO x the baseline scan's volume, combined error) with a
categorical effect of STUDY on the typical kill rate (``KILL_RATE_STUDY<k>``; on docetaxel the
cytotoxic kill ratio; the smallest study number the reference), then draws the stratified pcVPC and the GOF panels. Prints the
report, writes the result (.nc) and the figure (.png) when asked. ``--per-study 100000
--min-scans 3`` takes every lesion (1,060 on immunotherapy): it ran end to end in 37 minutes on the
2-core machine without converging (README, "Population fits").

Reproduce with:  .venv/bin/python bench/popfit_study.py --per-study 6 --out study.nc --plot study.png
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import immunopd  # noqa: E402,F401
from immunopd.calibration import observed_courses  # noqa: E402
from immunopd.cli import _check_output  # noqa: E402
from immunopd.io import write_netcdf  # noqa: E402
from immunopd.popfit import lesion_covariates, lesion_data, mechanistic_nlme_model, plot_popfit, popfit  # noqa: E402

#: per arm: free parameters, those with an eta, and the one the study effect multiplies (as
#: bench/forecast_prior.py: on docetaxel the drug's cytotoxic kill ratio carries the effect; the
#: data carry no body size, so mg/m2 doses use the core model's typical adult BSA, assumed)
ARM_MODEL = {"immunotherapy": (("baseline_tumor_volume", "growth_rate", "kill_rate"), ("growth_rate", "kill_rate"), "kill_rate"),
             "chemotherapy": (("baseline_tumor_volume", "growth_rate", "chemo_kill_ratio"),
                              ("growth_rate", "chemo_kill_ratio"), "chemo_kill_ratio")}
#: initial OMEGA per arm (bench/forecast_prior.py: 0.1 on docetaxel keeps the first conditional
#: modes off the tumor-immune threshold, bench/separatrix.py)
INITIAL_OMEGA = {"immunotherapy": 0.3, "chemotherapy": 0.1}


def study_subset(arm: str, per_study: int, min_scans: int):
    cov = lesion_covariates("laleh2022", arm)
    data = lesion_data(observed_courses("laleh2022", arm=arm), min_scans=min_scans, columns=cov)
    keep = data.groupby("STUDY", sort=True).ID.unique().map(lambda ids: list(ids[:per_study]))
    ids = [i for group in keep for i in group]
    return data[data.ID.isin(ids)].reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", default="immunotherapy", choices=["immunotherapy", "chemotherapy"])
    ap.add_argument("--per-study", type=int, default=6)
    ap.add_argument("--min-scans", type=int, default=4)
    ap.add_argument("--maxiter", type=int, default=100)
    ap.add_argument("--initial", default=None,
                    help="initial THETAs, NAME=VALUE,... (default: the values bench/popforecast.py starts from, a fit"
                         " to lesions with 3-5 readings; from the model's defaults the first iteration alone takes"
                         " about 9 minutes on 30 lesions)")
    ap.add_argument("--out", default=None, help="the popfit result (.nc)")
    ap.add_argument("--plot", default=None, help="the stratified pcVPC and GOF figure (.png)")
    args = ap.parse_args()
    if args.out:
        _check_output(args.out, "--out", (".nc",))
    if args.plot:
        _check_output(args.plot, "--plot", (".png",))
    if args.initial is None:
        args.initial = ("V0_RATIO=0.91,POP_GROWTH_RATE=0.0016,POP_KILL_RATE=0.0084" if args.arm == "immunotherapy"
                        else "V0_RATIO=0.91,POP_GROWTH_RATE=0.0016")
    initial = {k.strip(): float(v) for k, v in (item.split("=") for item in args.initial.split(",") if item.strip())}
    data = study_subset(args.arm, args.per_study, args.min_scans)
    counts = data.groupby("STUDY").ID.nunique()
    print(f"{data.ID.nunique()} lesions, {len(data)} scans; lesions per study: "
          + ", ".join(f"{int(k)}: {v}" for k, v in counts.items()), flush=True)
    free, random, effect = ARM_MODEL[args.arm]
    params = {"body_surface_area": float(immunopd.core_model().parameters["body_surface_area"].default)} \
        if args.arm == "chemotherapy" else None
    model = mechanistic_nlme_model(args.arm, free, random=random, initial=initial, omega=INITIAL_OMEGA[args.arm],
                                   params=params)
    t0 = time.perf_counter()
    pf = popfit(data, arm=args.arm, model=model, covariates={effect: "STUDY"}, stratify="STUDY",
                prediction_corrected=True, maxiter=args.maxiter, progress=True, initial=initial)
    print(pf.report())
    print(f"wall time, compilation included: {time.perf_counter() - t0:.1f} s")
    if args.out:
        write_netcdf(pf.to_dataset(), args.out)
        print(f"wrote {args.out}")
    if args.plot:
        plot_popfit(pf, args.plot)
        print(f"wrote {args.plot}")
    print(f"reproduce: .venv/bin/python bench/popfit_study.py --arm {args.arm} --per-study {args.per_study}"
          f" --min-scans {args.min_scans} --maxiter {args.maxiter} --initial {args.initial}")


if __name__ == "__main__":
    main()
