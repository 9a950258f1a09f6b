"""``immunopd forecast``: one patient's Bayesian forecast under candidate regimens (see :mod:`immunopd.forecast`).

    immunopd forecast scans.csv --given "atezolizumab 1200 mg q3w" --regimen continue \\
        --regimen "continue + bexmarilimab 1 mg/kg q3w" --regimen "pembrolizumab 400 mg q6w" \\
        [--weight 70] [--method laplace|nuts] [--at-day 252] --out forecast.nc [--plot fan.png]

Every option, the scans file and the output paths are checked before anything is solved.
"""

from __future__ import annotations

import math

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    from .cli import _bsa, _number, _weight

    fc = sub.add_parser("forecast", help="one patient's Bayesian forecast from early scans under candidate regimens")
    fc.add_argument("scans", help="CSV of the patient's scans: time_day (or time_week) and sld_mm (or diameter_mm, sld_cm,"
                                  " volume_mm3); or a NONMEM-style file (ID, TIME, DV) with --time-unit and --size-unit")
    from .models.drugs import ARM_REGIMENS

    fc.add_argument("--given", required=True,
                    help=f"the regimen given since day 0 (the first dose), e.g. '{ARM_REGIMENS['immunotherapy']}'")
    fc.add_argument("--regimen", action="append", required=True,
                    help="a candidate from the decision day (repeatable; the first is the reference): 'continue', 'stop',"
                         " 'stop at day N', 'continue + <regimen>' or regimen text")
    fc.add_argument("--method", default="laplace", choices=("laplace", "nuts"),
                    help="laplace: MAP + Laplace approximation (default); nuts: NumPyro NUTS")
    fc.add_argument("--prior", default=None, help="population fit (.nc from `immunopd popfit --out`) or a shipped prior by arm name"
                         " (immunotherapy, the default, or chemotherapy: fitted to that arm of data/laleh2022)")
    fc.add_argument("--weight", type=_weight, default=None, help="body weight (kg, or '154 lb'); for mg/kg doses and PK")
    fc.add_argument("--bsa", type=_bsa, default=None, help="body surface area (m2), for mg/m2 doses")
    fc.add_argument("--infiltration", choices=("hot", "cold"), default=None, help="baseline T-cell infiltration when known")
    fc.add_argument("--sclever1", type=_number("--sclever1", float, "a finite concentration in ng/mL > 0",
                                                lambda v: math.isfinite(v) and v > 0), default=None,
                    help="baseline plasma sClever-1 (ng/mL, above the model's tumor-free 5): sets the patient's sClever-1 release so the"
                         " model's baseline level equals it; an assumed effect (the shipped priors have no sClever-1 data)")
    fc.add_argument("--time-unit", default=None, help="NONMEM-style files only: day, week or h")
    fc.add_argument("--size-unit", default=None, help="NONMEM-style files only: mm, cm or mm3")
    fc.add_argument("--patient", default=None, help="NONMEM-style files with several IDs: the one to forecast")
    fc.add_argument("--decision-day", type=float, default=None, help="day the candidates start (default: the last scan's)")
    fc.add_argument("--at-day", type=float, default=None, help="day of the endpoints (default: decision day + 168)")
    fc.add_argument("--draws", type=int, default=1000, help="posterior draws per chain (default 1000)")
    fc.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    fc.add_argument("--seed", type=int, default=0)
    fc.add_argument("--out", required=True, help="output .nc (ArviZ InferenceData: posterior, posterior_predictive, ...)")
    fc.add_argument("--plot", default=None, help="also write the fan chart (.png)")


def run(args) -> int:
    from .cli import _check_input, _check_output
    from .forecast import forecast, forecast_table, load_prior, plot_forecast, read_scans, shipped_priors

    _check_output(args.out, "--out", (".nc",))
    if args.plot is not None:
        _check_output(args.plot, "--plot", (".png",))
    if args.prior not in shipped_priors():
        _check_input(args.prior, "--prior")
    scans = read_scans(args.scans, time_unit=args.time_unit, size_unit=args.size_unit, patient=args.patient)
    covariates = {k: v for k, v in (("body_weight", args.weight), ("body_surface_area", args.bsa),
                                    ("infiltration", args.infiltration), ("baseline_sclever1", args.sclever1)) if v is not None}
    prior = load_prior(args.prior)  # forecast() composes every candidate regimen before it solves anything
    idata = forecast(scans, args.regimen, given=args.given, prior=prior, covariates=covariates, method=args.method,
                     decision_day=args.decision_day, at_day=args.at_day, draws=args.draws, chains=args.chains, seed=args.seed)
    from .io import atomic_file

    with atomic_file(args.out) as tmp:
        idata.to_netcdf(str(tmp))
    print(forecast_table(idata))
    if args.plot:
        plot_forecast(idata, args.plot)
        print(f"wrote {args.plot}")
    print(f"wrote {args.out}")
    return 0
