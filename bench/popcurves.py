"""Benchmark: every closed-form growth curve fitted as a population (FOCE-I, immunopd.popcurves)
to the same lesions as the mechanistic population fit (immunopd popfit), side by side:
OFV, estimated parameters k, AIC, BIC, statuses and the wall time of each fit.

Reproduce with:  .venv/bin/python bench/popcurves.py [--lesions N] [--min-scans 3] [--models a,b]
                 [--mechanistic fit.nc]

Data: the arm's lesions (default the immunotherapy arm of laleh2022) with at least
``--min-scans`` scans (baseline included), the first ``--lesions`` of them (default all), as
:func:`immunopd.popfit.lesion_data` selects them. ``--mechanistic fit.nc``: a result written by
``immunopd popfit --out fit.nc`` for the SAME lesions (same ``--arm``, ``--lesions`` and
``--min-scans``; popfit's own defaults are ``--lesions 20 --min-scans 4``, so pass them: the
header prints the command); it is added as a row, read from the file (its OFV, parameter count
and statuses), and refused when its lesions or scans differ. The wall time per curve model
includes compilation and the covariance step (a user's first fit pays both); a fit that raises
is reported and left out of the table.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from immunopd.calibration import observed_courses  # noqa: E402
from immunopd.errors import ImmunopdError  # noqa: E402
from immunopd.fitting.curves import CURVE_MODELS  # noqa: E402
from immunopd.io import open_result  # noqa: E402
from immunopd.popcurves import compare_population_models, fit_curve_population  # noqa: E402
from immunopd.popfit import lesion_data  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="laleh2022", help="shipped dataset (default laleh2022)")
    ap.add_argument("--arm", default="immunotherapy", help="immunotherapy or chemotherapy (default immunotherapy)")
    ap.add_argument("--lesions", type=int, default=None, help="the first N lesions with enough scans (default: all)")
    ap.add_argument("--min-scans", type=int, default=3, help="scans a lesion needs, baseline included (default 3)")
    ap.add_argument("--models", default=",".join(CURVE_MODELS), help=f"comma-separated curve models (default {','.join(CURVE_MODELS)})")
    ap.add_argument("--maxiter", type=int, default=500, help="BFGS iterations at most per fit (default 500, nlme.fit's)")
    ap.add_argument("--no-covariance", action="store_true", help="skip the covariance step (faster; no SEs)")
    ap.add_argument("--mechanistic", default=None, metavar="FIT.nc", help="add the mechanistic fit read from this file")
    args = ap.parse_args()

    data = lesion_data(observed_courses(args.data, arm=args.arm), min_scans=args.min_scans, lesions=args.lesions)
    n_les, n_obs = data.ID.nunique(), len(data)
    print(f"# {args.data} {args.arm}: {n_les} lesions with >= {args.min_scans} scans, {n_obs} scans (DV: longest diameter, mm)",
          flush=True)
    print(f"# the mechanistic row needs: immunopd popfit --data {args.data} --arm {args.arm} --lesions {n_les}"
          f" --min-scans {args.min_scans} --out fit.nc   (then --mechanistic fit.nc)", flush=True)
    fits, wall, failed = {}, {}, {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        t0 = time.perf_counter()
        try:
            fit = fit_curve_population(name, data, maxiter=args.maxiter, covariance=None if args.no_covariance else "sandwich")
        except Exception as exc:  # a fit that raises is reported and left out of the table, the others still run
            failed[name] = f"{type(exc).__name__}: {exc}"
            print(f"{name:<20} {time.perf_counter() - t0:7.1f} s  FAILED: {failed[name]}", flush=True)
            continue
        wall[name] = time.perf_counter() - t0
        fits[name] = fit
        a = fit.dataset.attrs
        print(f"{name:<20} {wall[name]:7.1f} s  OFV {fit.ofv:12.3f}  {a['iterations']:4d} iterations,"
              f" {a['objective_evaluations']:4d} evaluations  {fit.status}", flush=True)
        est = ", ".join(f"{k} {v:.4g}" for k, v in fit.estimates().items())
        print(f"{'':<20} {est}", flush=True)
    if args.mechanistic:
        ds = open_result(args.mechanistic)
        fits["mechanistic"] = ds
        wall["mechanistic"] = float(ds.attrs.get("elapsed_s", float("nan")))
        print(f"{'mechanistic':<20} read from {args.mechanistic}: OFV {float(ds['ofv']):.3f}, {ds.attrs.get('model', '')}")
    try:
        table = compare_population_models(fits)
    except ImmunopdError as exc:
        print(f"error: {exc}\n(the mechanistic fit must be of the same lesions: `immunopd popfit --data {args.data}"
              f" --arm {args.arm} --lesions {n_les} --min-scans {args.min_scans} --out fit.nc`)", file=sys.stderr)
        return 2
    table["wall_s"] = table["model"].map(wall)
    show = table[["model", "OFV", "k", "n_observations", "AIC", "BIC", "delta_AIC", "delta_BIC", "wall_s"]]
    print()
    print(show.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print()
    for _, row in table.iterrows():
        print(f"{row['model']:<20} estimation: {row['estimation_status']}; covariance: {row['covariance_status']}")
    for name, why in failed.items():
        print(f"{name:<20} not in the table: the fit raised {why}")
    total = sum(v for k, v in wall.items() if k != "mechanistic")
    print(f"\ncurve fits: {total:.1f} s in all (mechanistic row: its own fit's elapsed_s from the file, not re-run)")
    print("reproduce: .venv/bin/python bench/popcurves.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
