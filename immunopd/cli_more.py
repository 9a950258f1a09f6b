"""Command-line subcommands kept out of :mod:`immunopd.cli` (which calls :func:`add_parsers` and
:func:`dispatch`): ``immunopd exposure`` and ``immunopd plot``, and ``immunopd fit --data FILE.csv``.

Like the rest of the command line, nothing here imports JAX at module level, and every option
and output path is checked before anything runs.
"""

from __future__ import annotations

import math

__all__ = ["add_parsers", "dispatch", "COMMANDS"]

COMMANDS = ("exposure", "plot", "forecast")


def _positive(option: str, unit: str):
    from .cli import _number

    return _number(option, float, f"a finite number of {unit} > 0", lambda v: math.isfinite(v) and v > 0)


def add_parsers(sub) -> None:
    """Add ``exposure`` and ``plot`` to the subparsers ``sub`` of the ``immunopd`` parser."""
    from .cli import _bsa, _days, _example, _height, _weight
    from .cli_forecast import add_parser as add_forecast

    add_forecast(sub)

    exp = sub.add_parser("exposure", help="Cmax, Ctrough, AUC, time above a concentration and occupancy at trough per drug and dose")
    exp.add_argument("--regimen", required=True, help=f"regimen text, e.g. '{_example()}'")
    exp.add_argument("--weight", type=_weight, default=None, help="body weight: kg, or with a unit ('154 lb'); needed for mg/kg doses")
    exp.add_argument("--height", type=_height, default=None, help="height: cm, or with a unit; with --weight gives the Mosteller BSA")
    exp.add_argument("--bsa", type=_bsa, default=None, help="body surface area in m2 (for mg/m2 doses), instead of --height")
    exp.add_argument("--days", type=_days("--days"), default=365.0, help="simulation length in days (default 365)")
    exp.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter (repeatable)")
    exp.add_argument("--growth-law", default="gompertz", help="exponential, logistic, gompertz or bertalanffy")
    exp.add_argument("--above", action="append", default=[], metavar="[DRUG=]CONC",
                     help="time above this serum concentration: ug/mL, or with a unit ('500 ng/mL'); DRUG=CONC for one drug (repeatable)")
    exp.add_argument("--step-hours", type=_positive("--step-hours", "hours"), default=1.0,
                     help="largest grid step between dose edges in hours (default 1; Cmax is read at the infusion ends regardless)")
    exp.add_argument("--out", default=None, help="also write the table: .nc (netCDF, with units) or .csv")

    plo = sub.add_parser("plot", help="draw the standard figure of a result of simulate, exposure, trial, biomarker, sensitivity "
                                      "or fit (kind read from its attrs; demo draws its own figures, calibrate, popfit and forecast "
                                      "theirs with --plot)")
    plo.add_argument("result", help="a .nc or .zarr result of simulate, exposure, trial, sensitivity or fit")
    plo.add_argument("--out", required=True, help="output .png path (written atomically)")


def dispatch(args) -> int:
    if args.command == "forecast":
        from .cli_forecast import run

        return run(args)
    if args.command == "exposure":
        return _exposure(args)
    if args.command == "plot":
        return _plot(args)
    raise AssertionError(args.command)


def _above(items: list[str]):
    from .errors import InputError, describe

    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return _concentration(items[0])
    out = {}
    for item in items:
        drug, sep, value = item.partition("=")
        if not sep or not drug.strip() or not value.strip():
            raise InputError(describe("--above", item, "one CONC for every drug, or DRUG=CONC per drug (e.g. --above DRUG=20)"))
        if drug.strip() in out:
            raise InputError(describe(f"--above {drug.strip()}", item, "one --above per drug"))
        out[drug.strip()] = _concentration(value)
    return out


def _concentration(text: str):
    try:
        return float(text)
    except ValueError:
        return text.strip()  # with a unit: converted (and checked) by exposure()


def _exposure(args) -> int:
    from .cli import _check_output, _parse_set

    if args.out is not None:
        _check_output(args.out, "--out", (".nc", ".csv"))
    params = _parse_set(args.set)
    above = _above(args.above)
    from .exposures import exposure, exposure_table

    ds = exposure(args.regimen, params, days=args.days, weight=args.weight, height=args.height, bsa=args.bsa,
                  growth_law=args.growth_law, above=above, step_days=args.step_hours / 24.0)
    print(f"regimen: {ds.attrs['regimen']}")
    print(exposure_table(ds))
    if args.out is not None:
        if args.out.endswith(".csv"):
            from .io import write_text

            write_text(exposure_csv(ds), args.out)
        else:
            from .io import write_netcdf

            write_netcdf(ds, args.out)
        print(f"wrote {args.out}")
    return 0


def exposure_csv(ds) -> str:
    """The exposure Dataset as tidy CSV, one row per (patient, drug, dose_interval) that exists,
    the units in the column names."""
    import numpy as np

    frame = ds[["dose", "cmax", "tmax", "ctrough", "auc", "auc_error", "cavg", "time_above", "trough_occupancy"]].to_dataframe()
    frame = frame[np.isfinite(frame["cmax"])].reset_index()
    frame = frame.rename(columns={n: f"{n}_{ds[n].attrs['units'].replace('/', '_per_').replace('*', '_')}"
                                  for n in ds.data_vars if n in frame.columns and ds[n].attrs.get("units") not in (None, "1")})
    frame = frame.rename(columns={"interval_start": "interval_start_day", "interval_end": "interval_end_day",
                                  "above_threshold": "above_threshold_ug_per_mL"})
    return frame.to_csv(index=False)


def _plot(args) -> int:
    from .cli import _check_input, _check_output

    _check_input(args.result, "RESULT") if not str(args.result).endswith(".zarr") else None
    _check_output(args.out, "--out", (".png",))
    from .figures import plot_result

    kind = plot_result(args.result, args.out)
    print(f"wrote {args.out} ({kind})")
    return 0


# ---------------------------------------------------------------------- fit --data FILE
class _DefaultSize(str):
    """``--size``'s default, told apart from the same text typed by the user (a file's own size
    column is used unless --size is given)."""


def extend_fit_parser(fitp) -> None:
    """``immunopd fit``: ``--data`` may be a CSV file; its units come from the column names or these flags."""
    fitp.add_argument("--time-unit", default=None, help="unit of a CSV's 'time' or NONMEM TIME column: day, week or hour")
    fitp.add_argument("--size-unit", default=None, help="unit of a CSV's 'size' or NONMEM DV column: mm, cm (diameter), mm3, cm3 or mL (volume)")
    fitp.set_defaults(size=_DefaultSize("volume_mm3"))
    for action in fitp._actions:
        if action.dest == "data":
            action.help = ("a shipped dataset name (see `immunopd datasets`), or your own CSV file: lesion and/or patient, "
                           "time_days (or _weeks, _hours) and diameter_mm, diameter_cm, volume_mm3, volume_cm3 or volume_ml "
                           "columns, or NONMEM-style ID, TIME, DV with --time-unit and --size-unit")


def is_file(data: str) -> bool:
    """``--data`` names a file (a .csv path, or anything that exists) rather than a shipped dataset."""
    from pathlib import Path

    return str(data).lower().endswith(".csv") or Path(data).exists()


def check_shipped(args) -> None:
    """A shipped dataset's units are known: --time-unit/--size-unit are refused with it."""
    from .errors import InputError, describe

    for option, value in (("--time-unit", args.time_unit), ("--size-unit", args.size_unit)):
        if value is not None:
            raise InputError(describe(option, value, f"nothing with the shipped dataset {args.data!r} (its units are known); "
                                                     "give a CSV file to --data to fit your own"))


def annotate_fit(ds, table, size: str, unit: str, long_name: str):
    """Units and long names on a batched fit, the per-lesion covariates of ``table`` and the
    observations themselves (lesion, obs), so the result can be plotted and joined back."""
    import numpy as np

    from .userdata import observations, per_lesion_covariates

    lesions = [str(x) for x in ds.lesion.values]
    table = table.assign(lesion=table["lesion"].astype(str))
    for name, values in per_lesion_covariates(table, lesions, skip=("lesion", "time_days", size, "diameter_mm", "volume_mm3",
                                                                     "normalized_volume")).items():
        if name in ds:
            continue
        ds[name] = ("lesion", values, {"long_name": f"{name} of the lesion (column {name!r} of the input)"})
    t, y = observations(table, lesions, size)
    ds["observed_time"] = (("lesion", "obs"), t, {"units": "day", "long_name": "time of each scan since treatment start (NaN: padding)"})
    ds["observed_size"] = (("lesion", "obs"), y, {"units": unit, "long_name": f"observed {long_name} (NaN: padding)"})
    units = [unit if u == "data unit" else u for u in ds.parameter_unit.values]
    ds = ds.assign_coords(parameter_unit=("parameter", np.array(units, dtype=str), {"long_name": "unit of each parameter"}))
    labels = {
        "estimate": ("see parameter_unit", "estimate of each curve parameter"),
        "stderr": ("see parameter_unit", "standard error of the estimate (lmfit convention)"),
        "chisqr": ("1", "sum of squared weighted residuals"),
        "aic": ("1", "Akaike information criterion, n ln(chisqr/n) + 2p"),
        "bic": ("1", "Bayesian information criterion, n ln(chisqr/n) + p ln(n)"),
        "n_obs": ("1", "number of scans fitted"),
        "converged": (None, "fit converged and no estimate at a boundary"),
        "num_steps": ("1", "Levenberg-Marquardt steps"),
        "status": (None, "'ok', or why the lesion's input was refused"),
    }
    for name, (u, ln) in labels.items():
        if name in ds:
            ds[name].attrs.update({"long_name": ln, **({"units": u} if u else {})})
    ds.lesion.attrs["long_name"] = "lesion identifier (patient/lesion when the input has both)"
    ds.attrs.update({"size_column": str(size), "size_unit": unit, "time_unit": "day"})
    return ds


def fit_file(args) -> int:
    """``immunopd fit --data my.csv``: the batched curve fit of every lesion of a user's file."""
    from .cli import _check_input, _check_output
    from .errors import InputError, describe

    _check_output(args.out, "--out", (".nc",))
    _check_input(args.data, "--data")
    from .userdata import read_size_table

    table = read_size_table(args.data, time_unit=args.time_unit, size_unit=args.size_unit)
    size = table.attrs["size_column"]
    if not isinstance(args.size, _DefaultSize) and args.size != size:
        raise InputError(describe("--size", args.size, f"{size!r}, the size this file holds (after unit conversion), or no --size"))
    if args.arm != "all":
        if "arm" not in table:
            raise InputError(describe("--arm", args.arm, f"'all': the file has no 'arm' column (columns: {list(table.columns)})"))
        table = table[table["arm"].astype(str) == args.arm]
        if table.empty:
            raise InputError(describe("--arm", args.arm, "an arm present in the file's 'arm' column"))
    from .fitting.batched import fit_lesions
    from .io import write_netcdf

    ds = fit_lesions(table, args.model, size=size, error_model=args.error_model, on_invalid="flag")
    ds = annotate_fit(ds, table, size, table.attrs["size_unit"], table.attrs["size_long_name"])
    ds.attrs.update({"dataset": str(args.data), "arm": args.arm, "layout": table.attrs["layout"], "conversion": table.attrs["conversion"],
                     "title": "immunopd batched curve fit"})
    write_netcdf(ds, args.out)
    n_ok = int(ds.converged.sum())
    n_invalid = int((ds.status != "ok").sum())
    print(f"{args.model} on {ds.sizes['lesion']} lesions of {args.data} ({table.attrs['conversion']}): {n_ok} converged, "
          f"{ds.sizes['lesion'] - n_ok} flagged ({n_invalid} of them invalid input, reasons in 'status'; the others' in 'convergence')")
    print(f"wrote {args.out}")
    return 0
