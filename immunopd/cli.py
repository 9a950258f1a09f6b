"""The ``immunopd`` command line: thin calls into the package.

    immunopd simulate --regimen "pembrolizumab 200 mg q3w" [--weight 70] [--days 365]
                      [--set name=value ...] [--growth-law gompertz] --out result.nc
    immunopd params [--markdown]
    immunopd datasets
    immunopd fit --data laleh2022 --arm immunotherapy --model gompertz --out fits.nc
    immunopd demo [--out-dir out]

A bad argument ends with a one-paragraph message on stderr and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: same one-paragraph form
        raise _UsageError(f"{self.prog}: {message}. Run '{self.prog} --help' for the accepted arguments.")


class _UsageError(Exception):
    pass


def _parse_set(items: list[str]) -> dict[str, float]:
    from .errors import InputError, describe

    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(describe("--set", item, "name=value, e.g. --set tcell_exclusion=0.9"))
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise InputError(describe(f"--set {name.strip()}", value, "a number")) from None
    return out


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="immunopd", description="Mechanistic PD of cancer immunotherapy resistance.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sim = sub.add_parser("simulate", help="simulate one patient under a regimen and write a netCDF file")
    sim.add_argument("--regimen", default="none", help="regimen text, e.g. 'pembrolizumab 200 mg q3w x8' (default: none)")
    sim.add_argument("--weight", type=float, default=None, help="body weight in kg (needed for mg/kg doses)")
    sim.add_argument("--days", type=float, default=365.0, help="simulation length in days (daily output; default 365)")
    sim.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter (repeatable)")
    sim.add_argument("--growth-law", default="gompertz", help="exponential, logistic, gompertz or bertalanffy")
    sim.add_argument("--solver", default="tsit5", help="tsit5 (default), dopri5, dopri8 or kvaerno5 (stiff)")
    sim.add_argument("--out", required=True, help="output netCDF path (written atomically)")

    par = sub.add_parser("params", help="print the parameter table (name, default, unit, bounds, source)")
    par.add_argument("--markdown", action="store_true", help="print as a Markdown table")

    sub.add_parser("datasets", help="list the shipped published datasets with counts and citations")

    fitp = sub.add_parser("fit", help="fit a tumor-size model to every lesion of a shipped dataset (batched)")
    fitp.add_argument("--data", default="laleh2022", help="shipped dataset name (see `immunopd datasets`)")
    fitp.add_argument("--arm", default="all", choices=["all", "immunotherapy", "chemotherapy"], help="which arm(s) to fit")
    fitp.add_argument("--model", default="gompertz", help="exponential, logistic, gompertz, bertalanffy, general_bertalanffy or stein")
    fitp.add_argument("--size", default="volume_mm3", help="size column to fit (volume_mm3, normalized_volume or diameter_mm)")
    fitp.add_argument("--error-model", default="proportional", help="additive, proportional or combined")
    fitp.add_argument("--out", required=True, help="output netCDF path (written atomically)")

    demo = sub.add_parser("demo", help="no treatment vs anti-PD-1 vs anti-PD-1 + anti-Clever-1 on three patient types")
    demo.add_argument("--out-dir", default="out", help="folder for demo.nc and demo.png (default: out)")
    return parser


def _simulate(args) -> int:
    from .io import write_netcdf
    from .solve import simulate

    params = _parse_set(args.set)
    ds = simulate(args.regimen, params, days=args.days, weight=args.weight, growth_law=args.growth_law, solver=args.solver)
    write_netcdf(ds, args.out)
    sld = ds.sld.values[0]
    print(f"regimen: {ds.attrs['regimen']}")
    print(f"sld {sld[0]:.1f} mm at day 0 -> {sld[-1]:.1f} mm at day {ds.time.values[-1]:g} "
          f"(best change {ds.pct_change.values[0].min():+.1f} %)")
    print(f"wrote {args.out}")
    return 0


def _fit(args) -> int:
    import xarray as xr
    from tqdm import tqdm

    from .datasets import load
    from .errors import InputError, describe
    from .fitting.batched import fit_lesions
    from .io import write_netcdf

    table = load(args.data, clean=True)
    if args.size not in ("volume_mm3", "normalized_volume", "diameter_mm"):
        raise InputError(describe("--size", args.size, "volume_mm3, normalized_volume or diameter_mm"))
    if args.arm != "all":
        table = table[table["arm"] == args.arm]
    lesions = list(dict.fromkeys(table["lesion"]))
    width = int(table.groupby("lesion").size().max())
    chunk = 256
    parts = []
    for lo in tqdm(range(0, len(lesions), chunk), desc=f"fitting {args.model}", unit="chunk", file=sys.stderr):
        part = table[table["lesion"].isin(lesions[lo : lo + chunk])]
        parts.append(fit_lesions(part, args.model, size=args.size, error_model=args.error_model, width=width, on_invalid="flag"))
    ds = xr.concat(parts, dim="lesion", data_vars="all", coords="minimal", compat="override", combine_attrs="override")
    ds.attrs.update({"dataset": args.data, "arm": args.arm, "citation": table.attrs["citation"], "cleaning": table.attrs["cleaning"]})
    write_netcdf(ds, args.out)
    n_ok = int(ds.converged.sum())
    n_invalid = int((ds.status != "ok").sum())
    print(f"{args.model} on {ds.sizes['lesion']} lesions ({args.arm}): {n_ok} converged, {ds.sizes['lesion'] - n_ok} flagged "
          f"({n_invalid} of them invalid input, reasons in 'status'); median AIC {float(ds.aic.median()):.2f}")
    print(f"wrote {args.out}")
    return 0


def _params(args) -> int:
    from .models.core import PARAMETERS

    print(PARAMETERS.to_markdown() if args.markdown else PARAMETERS.to_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    from .errors import ImmunopdError

    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "params":
            return _params(args)
        if args.command == "fit":
            return _fit(args)
        if args.command == "datasets":
            from .datasets import summary

            print(summary())
            return 0
        if args.command == "demo":
            from .demo import run_demo

            run_demo(Path(args.out_dir))
            return 0
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except ImmunopdError as exc:
        print(f"immunopd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"immunopd: error: cannot write or read a file: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
