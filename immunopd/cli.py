"""The ``immunopd`` command line: thin calls into the package.

    immunopd simulate --regimen "pembrolizumab 200 mg q3w" [--weight 70] [--days 365]
                      [--set name=value ...] [--growth-law gompertz] --out result.nc
    immunopd params [--markdown]
    immunopd drugs [--markdown]
    immunopd datasets
    immunopd fit --data laleh2022 --arm immunotherapy --model gompertz --out fits.nc
    immunopd trial experiment.toml --out trial.nc
    immunopd trial --regimen "..." --regimen "..." --patients 1000 --seed 1 --out trial.nc
    immunopd calibrate --patients 10000 --seed 1 --out calibrated.nc [--plot calibration.png]
    immunopd biomarker [--population calibrated.nc] [--threshold 14] --out biomarker.nc
    immunopd sensitivity --method sobol --n 4096 --regimen "..." --out sobol.nc
    immunopd sensitivity --method local --regimen "..." --out local.nc
    immunopd export-sbml --regimen "..." [--weight 70] [--set name=value ...] --out model.xml
    immunopd demo [--out-dir out]
    immunopd exposure --regimen "..." [--weight 70] [--days 365] [--above 20] [--out exposure.nc|.csv]
    immunopd plot RESULT.nc --out figure.png
    immunopd forecast scans.csv --given "..." --regimen continue --regimen "..." --out forecast.nc [--plot fan.png]

A bad argument ends with a one-paragraph message on stderr and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
from pathlib import Path

__all__ = ["main"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: same one-paragraph form
        raise _UsageError(f"{self.prog}: {message}. Run '{self.prog} --help' for the accepted arguments.")


class _UsageError(Exception):
    pass


def _weight(text: str) -> float:
    """``--weight``: a bare number is kg; '154 lb' or '70 kg' are converted."""
    from .units import parse_value

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_value(text, "kg", "--weight")
    except ValueError as exc:  # argparse shows an ArgumentTypeError's own message
        raise argparse.ArgumentTypeError(str(exc)) from None


def _height(text: str) -> float:
    """``--height``: a bare number is cm; '180 cm', '1.8 m' or '71 in' are converted."""
    from .units import parse_value

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_value(text, "cm", "--height")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bsa(text: str) -> float:
    """``--bsa``: a number in m2 ('1.8' or '1.8 m2')."""
    try:
        return float(text.strip().removesuffix("m2").strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bsa = {text!r} is not allowed; allowed: a body surface area in m2, e.g. 1.8") from None


def _number(option: str, kind: type, allowed: str, ok):
    """An argparse type: ``kind(text)`` that ``ok`` accepts, else the project's one-line message."""

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"{option} = {text!r} is not allowed; allowed: {allowed}")
        return value

    return convert


def _count(option: str):
    return _number(option, int, "an integer >= 1", lambda v: v >= 1)


def _seed(option: str):
    return _number(option, int, "an integer >= 0", lambda v: v >= 0)


def _days(option: str):
    return _number(option, float, "a finite number of days > 0", lambda v: math.isfinite(v) and v > 0)


def _parse_set(items: list[str]) -> dict[str, float]:
    from .errors import InputError, describe

    out: dict[str, float] = {}
    given: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise InputError(describe("--set", item, "name=value, e.g. --set tcell_exclusion=0.9"))
        if name in given:
            raise InputError(describe(f"--set {name}", item, f"one --set per parameter (already --set {given[name]})"))
        given[name] = item
        try:
            out[name] = float(value)
        except ValueError:
            out[name] = value.strip()  # a number with a unit ("500 ng/mL"), converted by the parameter table
    return out


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder``, tried: os.access says yes to root everywhere,
    also where nothing can be created (/proc, some network and FUSE mounts)."""
    import contextlib
    import os
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".immunopd-write-check-")
    except OSError:
        return False
    with contextlib.suppress(OSError):
        os.close(fd)
    with contextlib.suppress(OSError):  # e.g. an append-only folder: the check must not fail the run
        os.unlink(probe)
    return True


def _check_output(path: str, option: str, suffixes: tuple[str, ...]) -> str:
    """Refuse, before anything runs, an output path the writer would not produce or could not write:
    a suffix not in ``suffixes``, a folder that does not exist or is not writable, a folder where a
    file is to go."""
    import os

    from .errors import InputError, describe

    p = Path(path)
    if p.suffix not in suffixes:
        raise InputError(describe(option, str(path), f"a path ending in {' or '.join(suffixes)}"))
    folder = p.parent
    if not folder.is_dir():
        raise InputError(describe(f"{option} folder", str(folder), "an existing folder"))
    if not os.access(folder, os.W_OK | os.X_OK) or not _can_create_in(folder):
        raise InputError(describe(f"{option} folder", str(folder), "a folder this user may write in"))
    if p.suffix != ".zarr" and p.is_dir():
        raise InputError(describe(option, str(path), "a file path (this is a folder)"))
    if p.suffix == ".zarr" and p.exists() and not p.is_dir():
        raise InputError(describe(option, str(path), "a zarr store path (this is a file)"))
    return path


def _check_input(path: str | None, option: str) -> None:
    from .errors import InputError, describe

    if path is not None and not Path(path).is_file():
        raise InputError(describe(option, str(path), "an existing file"))


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="immunopd", description="Mechanistic PD of cancer immunotherapy resistance.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sim = sub.add_parser("simulate", help="simulate one patient under a regimen and write a netCDF file")
    sim.add_argument("--regimen", default="none", help=f"regimen text, e.g. '{_example()} x8' (default: none)")
    sim.add_argument("--weight", type=_weight, default=None, help="body weight: kg, or with a unit ('154 lb'); needed for mg/kg doses")
    sim.add_argument("--height", type=_height, default=None, help="height: cm, or with a unit ('180 cm'); with --weight gives the Mosteller BSA for mg/m2 doses")
    sim.add_argument("--bsa", type=_bsa, default=None, help="body surface area in m2 (for mg/m2 doses), instead of --height")
    sim.add_argument("--days", type=_days("--days"), default=365.0, help="simulation length in days (daily output; default 365)")
    sim.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter (repeatable)")
    sim.add_argument("--growth-law", default="gompertz", help="exponential, logistic, gompertz or bertalanffy")
    sim.add_argument("--solver", default="tsit5", help="tsit5 (default), dopri5, dopri8 or kvaerno5 (stiff)")
    sim.add_argument("--outputs", default=None, help="comma-separated states/observables to keep over time (default: all)")
    sim.add_argument("--out", required=True, help="output netCDF path (written atomically)")

    par = sub.add_parser("params", help="print the parameter table (name, default, unit, bounds, source)")
    par.add_argument("--markdown", action="store_true", help="print as a Markdown table")

    sub.add_parser("datasets", help="list the shipped published datasets with counts and citations")

    drg = sub.add_parser("drugs", help="list the drugs: target, PK model, potency, sources, presets")
    drg.add_argument("--markdown", action="store_true", help="print as a Markdown table")

    fitp = sub.add_parser("fit", help="fit a tumor-size model to every lesion of a shipped dataset (batched)")
    fitp.add_argument("--data", default="laleh2022", help="shipped dataset name (see `immunopd datasets`)")
    fitp.add_argument("--arm", default="all", choices=["all", "immunotherapy", "chemotherapy"], help="which arm(s) to fit")
    fitp.add_argument("--model", default="gompertz", help="exponential, logistic, gompertz, bertalanffy, general_bertalanffy or stein")
    fitp.add_argument("--size", default="volume_mm3", help="size column to fit (volume_mm3, normalized_volume or diameter_mm)")
    fitp.add_argument("--error-model", default="proportional", help="additive, proportional or combined")
    fitp.add_argument("--out", required=True, help="output netCDF path (written atomically)")
    from .cli_more import extend_fit_parser  # --data my.csv, --time-unit, --size-unit

    extend_fit_parser(fitp)

    tri = sub.add_parser("trial", help="virtual trial: regimens x virtual population, RECIST endpoints")
    tri.add_argument("experiment", nargs="?", default=None, help="experiment TOML file (see examples/); or use --regimen")
    tri.add_argument("--regimen", action="append", default=[], help="regimen text (repeatable), or NAME=TEXT")
    tri.add_argument("--patients", type=_count("--patients"), default=None, help="number of virtual patients (default 1000)")
    tri.add_argument("--seed", type=_seed("--seed"), default=None, help="population seed (default 1)")
    tri.add_argument("--population", default=None, help="a population netCDF file (e.g. from `immunopd calibrate`)")
    tri.add_argument("--days", type=_days("--days"), default=None, help="trial length in days (default 365)")
    tri.add_argument("--missed-dose-probability", type=_number("--missed-dose-probability", float, "a probability in [0, 1)", lambda v: 0 <= v < 1), default=None, help="chance each infusion is missed (default 0)")
    tri.add_argument("--adverse-events", default=None, choices=["continue", "hold", "stop"],
                     help="after a grade >= 3 treatment-related adverse event: continue dosing (default), hold doses for --hold-days, or stop")
    tri.add_argument("--hold-days", type=_days("--hold-days"), default=None, help="length of a hold after an adverse event in days (default 42)")
    tri.add_argument("--stratify", default=None, help="also print endpoints by a patient variable (e.g. baseline_sclever1, cold)")
    tri.add_argument("--out", required=True, help="output path: .nc (in one go) or .zarr (in chunks, resumable: rerun the same command after an interruption)")
    tri.add_argument("--workers", type=_count("--workers"), default=None, help="run the chunks on a local Dask cluster of N worker processes (.zarr output)")
    tri.add_argument("--scheduler", default=None, help="run the chunks on an existing Dask cluster, e.g. tcp://host:8786 (.zarr output)")
    tri.add_argument("--chunk-patients", type=_count("--chunk-patients"), default=8192, help="patients per chunk for .zarr output (default 8192)")

    cal = sub.add_parser("calibrate", help="virtual population matched to the published response of one arm (its own drug)")
    cal.add_argument("--arm", default="immunotherapy", choices=["immunotherapy", "chemotherapy"],
                     help="arm of the shipped data, simulated with its own drug (default immunotherapy; see immunopd.models.drugs.ARM_REGIMENS)")
    cal.add_argument("--patients", type=_count("--patients"), default=10_000, help="plausible patients to sample (default 10000)")
    cal.add_argument("--seed", type=_seed("--seed"), default=1, help="seed of sampling and acceptance (default 1)")
    cal.add_argument("--method", default="best-response", choices=["best-response", "time-course"],
                     help="best-response: Allen 2016 acceptance-rejection on best %% change (default); time-course: one virtual "
                          "twin per observed lesion, matched on its whole measured course on its own scans (needs more --patients "
                          "than lesions; 20000 recommended)")
    cal.add_argument("--out", required=True, help="calibrated population netCDF path")
    cal.add_argument("--plot", default=None, help="PNG of observed vs simulated best %% change (--method best-response)")

    bio = sub.add_parser("biomarker", help="anti-PD-1 vs anti-PD-1 + anti-Clever-1 by baseline sClever-1 and hot/cold")
    bio.add_argument("--population", default=None, help="calibrated population file (default: match one time-course twin per lesion now)")
    bio.add_argument("--patients", type=_count("--patients"), default=10_000, help="plausible patients the twins are matched from (default 10000; more than the 1061 lesions)")
    bio.add_argument("--seed", type=_seed("--seed"), default=1, help="seed (default 1)")
    bio.add_argument("--threshold", type=_number("--threshold", float, "a finite sClever-1 level in ng/mL > 0", lambda v: math.isfinite(v) and v > 0),
                     default=None, help="treatment rule: add anti-Clever-1 when baseline sClever-1 > this (ng/mL; default the median)")
    bio.add_argument("--out", required=True, help="trial netCDF path; the strata tables are variables of the same file: "
                     "sclever1_<endpoint> over dimension sclever1_stratum (median split) and infiltration_<endpoint> over infiltration_stratum (hot/cold); "
                     "the ROC AUC of baseline sClever-1 for non-response to anti-PD-1 is predictive_<variable> over predictive_adjustment "
                     "(none / baseline tumor volume) and the treatment rule is rule_<variable> over rule (no one, everyone, the rule, a quantile sweep)")

    sen = sub.add_parser("sensitivity", help="local (AD) or global (Sobol, Morris, eFAST via SALib) sensitivity to netCDF/zarr")
    sen.add_argument("--method", default="sobol", choices=["local", "sobol", "morris", "efast"], help="analysis (default sobol)")
    sen.add_argument("--n", type=_count("--n"), default=1024, help="SALib N: Sobol base samples (power of 2), Morris trajectories, eFAST samples per parameter")
    sen.add_argument("--regimen", default=_example(), help=f"regimen text (default {_example()})")
    sen.add_argument("--parameters", default=None, help="comma-separated parameter names (default: 12 core parameters)")
    sen.add_argument("--range-factor", type=_number("--range-factor", float, "a finite factor > 1", lambda v: math.isfinite(v) and v > 1), default=None,
                     help="ranges default/F..default*F instead of the parameter bounds (e.g. 2)")
    sen.add_argument("--days", type=_days("--days"), default=365.0, help="simulation length in days (default 365)")
    sen.add_argument("--seed", type=_seed("--seed"), default=0, help="sampling and bootstrap seed (default 0)")
    sen.add_argument("--no-second-order", action="store_true", help="Sobol without S2 (N (D + 2) evaluations)")
    sen.add_argument("--out", required=True, help="output path: .nc (netCDF) or .zarr")
    sen.add_argument("--workers", type=_count("--workers"), default=None, help="evaluate on a local Dask cluster of N worker processes (resumable)")
    sen.add_argument("--scheduler", default=None, help="evaluate on an existing Dask cluster, e.g. tcp://host:8786 (resumable)")

    sb = sub.add_parser("export-sbml", help="write one patient's model and regimen as SBML Level 3 (libRoadRunner-checked)")
    sb.add_argument("--regimen", default="none", help="regimen text (default: none)")
    sb.add_argument("--weight", type=_weight, default=None, help="body weight: kg, or with a unit ('154 lb'); needed for mg/kg doses")
    sb.add_argument("--height", type=_height, default=None, help="height: cm, or with a unit ('180 cm'); with --weight gives the Mosteller BSA for mg/m2 doses")
    sb.add_argument("--bsa", type=_bsa, default=None, help="body surface area in m2 (for mg/m2 doses), instead of --height")
    sb.add_argument("--days", type=_days("--days"), default=365.0, help="doses given before this day are written as events (default 365)")
    sb.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter (repeatable)")
    sb.add_argument("--growth-law", default="gompertz", help="exponential, logistic, gompertz or bertalanffy")
    sb.add_argument("--out", required=True, help="output .xml path (written atomically)")

    demo = sub.add_parser("demo", help="no treatment vs anti-PD-1 vs anti-PD-1 + anti-Clever-1 on three patient types")
    demo.add_argument("--out-dir", default="out", help="folder for demo.nc, demo.png, trial.nc and trial.png (default: out)")
    pf = sub.add_parser("popfit", help="population (FOCE-I) fit of the mechanistic model to a shipped dataset's lesions")
    pf.add_argument("--data", default="laleh2022", help="shipped dataset (default laleh2022)")
    pf.add_argument("--arm", default="immunotherapy",
                    help="immunotherapy, chemotherapy (its regimen from the baseline scan) or all (both arms in one fit: the"
                         " mechanistic model puts each lesion on its own arm's regimen, read from the data's ARM column,"
                         " 0 immunotherapy and 1 chemotherapy; a growth curve has no regimen and pools them)")
    pf.add_argument("--lesions", type=_lesion_count, default=20,
                    help="fit the first N lesions with >= --min-scans scans (of each arm with --arm all), or 'all' (default 20)")
    pf.add_argument("--model", default="mechanistic",
                    help="mechanistic (default) or a growth curve: exponential, logistic, gompertz, bertalanffy,"
                         " general_bertalanffy, stein")
    pf.add_argument("--random", default=None,
                    help="comma-separated parameters with a between-lesion eta (mechanistic default: every fitted parameter:"
                         " baseline_tumor_volume, growth_rate and kill_rate (immunotherapy), chemo_kill_ratio instead of"
                         " kill_rate (chemotherapy), both (all))")
    pf.add_argument("--min-scans", type=int, default=4, help="scans a lesion needs, baseline included (default 4)")
    pf.add_argument("--maxiter", type=int, default=200, help="BFGS iterations at most (default 200)")
    pf.add_argument("--replicates", type=int, default=100, help="VPC replicates (default 100)")
    pf.add_argument("--optimizer", default="bfgs", choices=["bfgs", "anchored"],
                    help="bfgs (scipy's; default) or anchored: every trial point's conditional etas start from the last"
                         " accepted point's and no step moves a parameter by more than --max-step on the unconstrained"
                         " scale: logs of positive THETAs and SIGMAs, logits of bounded THETAs, OMEGA's log-Cholesky"
                         " factor (immunopd.nlme.fit)")
    pf.add_argument("--covariance", default="sandwich", choices=["sandwich", "R", "S", "none"],
                    help="the covariance step: sandwich R^-1 S R^-1 (NONMEM's default), R, S, or none (skipped: no standard"
                         " errors; on many lesions it costs two objective evaluations per parameter)")
    pf.add_argument("--max-step", type=_number("--max-step", float, "a finite number > 0", lambda v: math.isfinite(v) and v > 0),
                    default=1.0, help="largest step of one parameter per iteration with --optimizer anchored (default 1.0)")
    pf.add_argument("--out", required=True, help="output .nc: the nlme result with the VPC")
    pf.add_argument("--plot", default=None, help="also write the VPC and goodness-of-fit figure (.png)")
    pf.add_argument("--covariate", action="append", default=[], metavar="PARAMETER=COLUMN",
                    help="a categorical effect on a parameter's typical value, e.g. kill_rate=STUDY (repeatable; the"
                         " data carry STUDY, the study's number; the smallest value is the reference)")
    pf.add_argument("--initial", action="append", default=[], metavar="NAME=VALUE",
                    help="an initial estimate, as NONMEM's $THETA/$OMEGA/$SIGMA give them (repeatable; names as the"
                         " report prints them: POP_GROWTH_RATE=0.0016, V0_RATIO=0.91, 'OMEGA(kill_rate,kill_rate)=0.3',"
                         " KILL_RATE_STUDY2=1; default: the model's parameter defaults)")
    pf.add_argument("--vpc-stratify", default=None, metavar="COLUMN", help="one VPC per value of a data column (e.g. STUDY)")
    pf.add_argument("--pc-vpc", action="store_true",
                    help="prediction-corrected VPC (Bergstrand et al. 2011) of the %% change in diameter")
    pf.add_argument("--population-out", default=None,
                    help="also write a virtual population drawn from the fit (.nc, for `immunopd trial --population`)")
    pf.add_argument("--patients", type=int, default=1000, help="patients in --population-out (default 1000)")
    from .cli_more import add_parsers  # exposure, plot

    add_parsers(sub)
    return parser


def _simulate(args) -> int:
    from .io import write_netcdf
    from .solve import simulate

    _check_output(args.out, "--out", (".nc",))
    params = _parse_set(args.set)
    outputs = None if args.outputs is None else [o.strip() for o in args.outputs.split(",")]
    ds = simulate(args.regimen, params, days=args.days, weight=args.weight, height=args.height, bsa=args.bsa, growth_law=args.growth_law, solver=args.solver,
                  outputs=outputs)
    write_netcdf(ds, args.out)
    print(f"regimen: {ds.attrs['regimen']}")
    if "sld" in ds and "pct_change" in ds:
        sld = ds.sld.values[0]
        print(f"sld {sld[0]:.1f} mm at day 0 -> {sld[-1]:.1f} mm at day {ds.time.values[-1]:g} "
              f"(best change {ds.pct_change.values[0].min():+.1f} %)")
    else:
        print(f"kept over time: {', '.join(n for n, v in ds.data_vars.items() if 'time' in v.dims)}")
    print(f"wrote {args.out}")
    return 0


def _fit(args) -> int:
    import xarray as xr
    from tqdm import tqdm

    from .datasets import load
    from .errors import InputError, describe
    from .fitting.batched import fit_lesions
    from .io import write_netcdf
    from .cli_more import annotate_fit, check_shipped, fit_file, is_file

    if is_file(args.data):
        return fit_file(args)
    check_shipped(args)
    _check_output(args.out, "--out", (".nc",))
    if args.size not in ("volume_mm3", "normalized_volume", "diameter_mm"):
        raise InputError(describe("--size", args.size, "volume_mm3, normalized_volume or diameter_mm"))
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
    ds = annotate_fit(ds, table, args.size, {"diameter_mm": "mm", "volume_mm3": "mm3"}.get(args.size, "1"), args.size.replace("_", " "))
    write_netcdf(ds, args.out)
    n_ok = int(ds.converged.sum())
    n_invalid = int((ds.status != "ok").sum())
    print(f"{args.model} on {ds.sizes['lesion']} lesions ({args.arm}): {n_ok} converged, {ds.sizes['lesion'] - n_ok} flagged "
          f"({n_invalid} of them invalid input, reasons in 'status'; the others' in 'convergence'); median AIC {float(ds.aic.median()):.2f}")
    print(f"wrote {args.out}")
    return 0


def _client(args):
    if args.workers and args.scheduler:
        from .errors import InputError, describe

        raise InputError(describe("--workers/--scheduler", (args.workers, args.scheduler), "one of them, not both"))
    if args.scheduler:
        from distributed import Client

        return Client(args.scheduler)
    if args.workers:
        from .scaleout import local_client

        return local_client(args.workers)
    return None


def _close(client):
    if client is not None:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()


def _command_line_regimens(items: list[str]) -> dict[str, str]:
    """``--regimen TEXT`` or ``--regimen NAME=TEXT``: every name distinct, every text non-empty."""
    from .errors import InputError, describe

    regimens: dict[str, str] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name, text = (name.strip(), text.strip()) if sep else (item.strip(), item.strip())
        if sep and not name:
            raise InputError(describe("--regimen", item, "NAME=TEXT with a name before '=' (or the regimen text alone)"))
        if not text:
            raise InputError(describe("--regimen", item, "regimen text, or NAME=TEXT with a regimen text after '=' (no treatment: NAME=none)"))
        if name in regimens:
            raise InputError(describe("--regimen name", name, "distinct names: each regimen at most once"))
        regimens[name] = text
    return regimens


def _trial(args) -> int:
    from .dosing import Regimen
    from .errors import InputError, describe
    from .io import write_netcdf
    from .trial import Experiment, endpoint_table, load_experiment, run_trial, stratify, strata_table

    # every argument, input and output path is checked before anything runs
    zarr = _check_output(args.out, "--out", (".nc", ".zarr")).endswith(".zarr")
    if (args.workers or args.scheduler) and not zarr:
        raise InputError(describe("--out", args.out, "a .zarr path when --workers or --scheduler is given"))
    if args.workers and args.scheduler:
        raise InputError(describe("--workers/--scheduler", (args.workers, args.scheduler), "one of them, not both"))
    _check_input(args.population, "--population")
    if args.population is not None and (args.patients is not None or args.seed is not None):
        raise InputError(describe("--patients/--seed", (args.patients, args.seed), "none with --population (the file holds the patients)"))
    if args.experiment is not None:
        if args.regimen:
            raise InputError(describe("--regimen", args.regimen, "either an experiment file or --regimen options, not both"))
        exp = load_experiment(args.experiment)
        pop = dict(exp.population)
        if args.patients is not None:
            pop["patients"] = args.patients
        if args.seed is not None:
            pop["seed"] = args.seed
        if args.population is not None:
            pop = {"file": args.population}
        settings = dict(exp.settings)
        if args.days is not None:
            settings["days"] = args.days
        for key in ("missed_dose_probability", "adverse_events", "hold_days"):
            if getattr(args, key) is not None:
                settings[key] = getattr(args, key)
        exp = Experiment(regimens=exp.regimens, population=pop, settings=settings, name=exp.name)
    else:
        if not args.regimen:
            raise InputError(describe("--regimen", None, "at least one --regimen (or an experiment TOML file)"))
        regimens = _command_line_regimens(args.regimen)
        pop = {"file": args.population} if args.population else {"patients": 1000 if args.patients is None else args.patients,
                                                                 "seed": 1 if args.seed is None else args.seed}
        settings = {k: getattr(args, k) for k in ("days", "missed_dose_probability", "adverse_events", "hold_days") if getattr(args, k) is not None}
        exp = Experiment(regimens=regimens, population=pop, settings=settings, name="command line")
    days = float(exp.settings.get("days", 365.0))
    for name, text in exp.regimens.items():
        try:
            Regimen.parse(text).check_horizon(days)
        except InputError as exc:
            raise type(exc)(f"regimen {name!r}: {exc}") from None
    population = exp.build_population()
    if args.stratify is not None:
        allowed = [k for k, v in population.data.data_vars.items() if v.dims == ("patient",)]
        if args.stratify not in allowed:
            raise InputError(describe("--stratify", args.stratify, f"a patient variable of the trial: {allowed}"))
    if zarr:
        import xarray as xr

        from .scaleout import run_trial_to_zarr

        client = _client(args)
        try:
            run = run_trial_to_zarr(exp.regimens, population, args.out, client=client,
                                    chunk_patients=args.chunk_patients, progress=True, **exp.settings)
        finally:
            _close(client)
        if run.reused:
            print(f"resumed: {len(run.reused)} chunk(s) reused, {len(run.computed)} computed")
        with xr.open_zarr(args.out) as z:
            ds = z.load()
        strata = stratify(ds, args.stratify) if args.stratify else None
    else:
        ds = run_trial(exp.regimens, population, progress=True, **exp.settings)
        ds.attrs["experiment"] = exp.name
        strata = stratify(ds, args.stratify) if args.stratify else None  # before the write: a failure leaves the old file
        write_netcdf(ds, args.out)
    print(endpoint_table(ds))
    if strata is not None:
        print()
        print(strata_table(strata))
    print(f"wrote {args.out}")
    return 0


def _calibrate(args) -> int:
    from .errors import InputError, describe

    _check_output(args.out, "--out", (".nc",))
    if args.plot is not None:
        if args.method != "best-response":
            raise InputError(describe("--plot", args.plot, "only with --method best-response (the time-course figures are in the printed report)"))
        _check_output(args.plot, "--plot", (".png",))
    from .calibration import calibrate, calibrate_time_courses, plausible_population, plot

    if args.method == "time-course":
        cal = calibrate_time_courses(plausible_population(args.patients, seed=args.seed), arm=args.arm, seed=args.seed, progress=True)
        cal.population.to_netcdf(args.out)
        print(cal.report())
        print(f"wrote {args.out} ({len(cal.population)} virtual twins, one per observed lesion)")
        return 0
    cal = calibrate(plausible_population(args.patients, seed=args.seed), arm=args.arm, seed=args.seed, progress=True)
    cal.population.to_netcdf(args.out)
    print(cal.report())
    if args.plot:
        plot(cal, args.plot)
        print(f"wrote {args.plot}")
    print(f"wrote {args.out} ({len(cal.population)} calibrated virtual patients)")
    return 0


def _lesion_count(text: str):
    """--lesions: a positive integer or 'all' (None)."""
    if text.strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed: a positive integer or 'all'")
    return n


def _finite_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _assignments(items, flag: str, form: str, value_of, already) -> dict:
    """``NAME=VALUE`` options (repeatable) as a dict: ``value_of(text)`` gives the value or
    ``None`` for a bad one, ``already(name, earlier value)`` what a repeated name is told."""
    from .errors import InputError, describe

    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        value = value_of(text) if sep and key else None
        if value is None:
            raise InputError(describe(flag, item, form))
        if key in out:
            raise InputError(describe(flag, item, already(key, out[key])))
        out[key] = value
    return out


def _popfit(args) -> int:
    from .errors import InputError, describe

    _check_output(args.out, "--out", (".nc",))
    if args.plot is not None:
        _check_output(args.plot, "--plot", (".png",))
    if args.population_out is not None:
        _check_output(args.population_out, "--population-out", (".nc",))
        if args.model != "mechanistic":
            raise InputError(describe("--population-out", args.population_out, "only with --model mechanistic (a virtual"
                                      " population is of the mechanistic model)"))
        if args.patients < 1:
            raise InputError(describe("--patients", args.patients, "a positive integer"))
        on_arm = [item for item in args.covariate if item.partition("=")[2].strip() == "ARM"]
        if on_arm:  # checked before the fit: population_from_fit would refuse it after
            raise InputError(describe("--covariate", on_arm[0], "no effect of ARM with --population-out (a virtual patient"
                                      " takes no arm: the trial gives the regimen)"))
    from .io import write_netcdf
    from .popfit import plot_popfit, popfit, population_from_fit

    random = None if args.random is None else tuple(r.strip() for r in args.random.split(",") if r.strip())
    covariates = _assignments(args.covariate, "--covariate", "PARAMETER=COLUMN, e.g. kill_rate=STUDY",
                              lambda text: text.strip() or None,
                              lambda key, old: f"one effect per parameter ({key} has {old} already)")
    initial = _assignments(args.initial, "--initial", "NAME=VALUE with a finite number, e.g. POP_GROWTH_RATE=0.0016",
                           _finite_number, lambda key, old: f"one value per parameter ({key} is {old:g} already)")
    model = None
    if args.model != "mechanistic":
        from .popcurves import curve_nlme_model

        model = curve_nlme_model(args.model, random)
    pf = popfit(dataset=args.data, arm=args.arm, lesions=args.lesions, min_scans=args.min_scans, maxiter=args.maxiter,
                replicates=args.replicates, model=model, random=random, progress=True, covariates=covariates,
                stratify=args.vpc_stratify, prediction_corrected=args.pc_vpc, initial=initial or None,
                optimizer=args.optimizer, max_step=args.max_step,
                covariance=None if args.covariance == "none" else args.covariance)
    write_netcdf(pf.to_dataset(), args.out)
    print(pf.report())
    if args.plot:
        plot_popfit(pf, args.plot)
        print(f"wrote {args.plot}")
    print(f"wrote {args.out}")
    if args.population_out:
        population_from_fit(pf, args.patients, seed=0).to_netcdf(args.population_out)
        print(f"wrote {args.population_out} ({args.patients} virtual patients drawn from the fit)")
    return 0


def _biomarker(args) -> int:
    from .biomarker import biomarker_analyses, biomarker_report, run_biomarker_experiment
    from .io import write_netcdf
    from .population import Population

    _check_output(args.out, "--out", (".nc",))
    _check_input(args.population, "--population")
    pop = Population.open(args.population) if args.population else None
    trial, strata = run_biomarker_experiment(pop, plausible_patients=args.patients, seed=args.seed, progress=True)
    for key, st in strata.items():
        for var in st.data_vars:
            trial[f"{key}_{var}"] = st[var].rename({"stratum": f"{key}_stratum"})
    analyses = biomarker_analyses(trial, threshold=args.threshold, seed=args.seed)
    for key, dim, main_var in (("predictive", "adjustment", "auc"), ("rule", "rule", "orr")):
        ds = analyses[key].rename({dim: f"{key}_{dim}"}) if dim != key else analyses[key]
        for var in ds.data_vars:
            trial[f"{key}_{var}"] = ds[var]
        trial[f"{key}_{main_var}"].attrs.update(ds.attrs)
    write_netcdf(trial, args.out)
    print(biomarker_report(trial, strata, analyses))
    print(f"wrote {args.out}")
    return 0


def _sensitivity(args) -> int:
    from .errors import InputError, describe

    _check_output(args.out, "--out", (".nc", ".zarr"))
    if args.method == "local":
        for option, value in (("--range-factor", args.range_factor), ("--workers", args.workers), ("--scheduler", args.scheduler)):
            if value is not None:
                raise InputError(describe(option, value, "nothing with --method local (it is one forward-mode AD solve)"))
    from . import sensitivity as sa

    names = [n.strip() for n in args.parameters.split(",")] if args.parameters else list(sa.DEFAULT_PARAMETERS)
    if args.method == "local":
        ds = sa.local_sensitivity(args.regimen, parameters=names, days=args.days)
        _refuse_non_finite(ds)
        sa.write(ds, args.out)
        s = ds.S.isel(patient=0).sel(output="tumor_volume").isel(time=-1)
        order = np.argsort(-np.abs(np.nan_to_num(s.values)))
        print(f"local d ln(tumor_volume) / d ln p at day {float(ds.time[-1]):g} ({args.regimen}):")
        for i in order:
            print(f"  {str(s.parameter.values[i]):<32} {float(s.values[i]):+.3g}")
    else:
        ranges = sa.ranges_around_defaults(names, args.range_factor) if args.range_factor is not None else None
        client = _client(args)
        evaluator = None
        if args.workers or args.scheduler:
            import functools

            from .scaleout import evaluate_distributed

            evaluator = functools.partial(evaluate_distributed, parts_dir=args.out + ".parts", client=client)
        try:
            ds = sa.run_global(args.method, names, args.n, ranges=ranges, regimen=args.regimen, days=args.days, seed=args.seed,
                               second_order=not args.no_second_order, progress=True, evaluator=evaluator)
        finally:
            _close(client)
        sa.write(ds, args.out)
        print(sa.summary_table(ds))
    print(f"wrote {args.out}")
    return 0


def _refuse_non_finite(ds) -> None:
    """A NaN or infinite local coefficient is a failed solve or derivative, never a result: refuse
    it by output and parameter before anything is written or printed. (``S`` is NaN by definition
    where the output itself is 0, e.g. a concentration before the first dose; there the
    unnormalized ``dy_dlnp`` must still be finite.)"""
    from .errors import SolverError, describe

    import xarray as xr

    dy = xr.apply_ufunc(np.isfinite, ds.dy_dlnp).all([d for d in ds.dy_dlnp.dims if d not in ("output", "parameter")])
    last = xr.apply_ufunc(np.isfinite, ds.S.isel(time=-1)).all([d for d in ds.S.dims if d not in ("output", "parameter", "time")])
    bad = (~(dy & last)).transpose("output", "parameter").values  # the reported coefficients and every derivative
    if bad.any():
        where = {str(o): [str(p) for p, b in zip(ds.parameter.values, row) if b] for o, row in zip(ds.output.values, bad) if row.any()}
        raise SolverError(describe("local sensitivity coefficients (d ln output / d ln parameter)", where,
                                   "finite values: a NaN or infinite coefficient is a failed solve or derivative, not a result "
                                   "(nothing was written)"))


def _export_sbml(args) -> int:
    from .dosing import Regimen

    _check_output(args.out, "--out", (".xml", ".sbml"))
    params = _parse_set(args.set)
    Regimen.parse(args.regimen).check_horizon(args.days)
    from .io import write_text
    from .sbml import to_sbml

    text = to_sbml(args.regimen, params, weight=args.weight, height=args.height, bsa=args.bsa, growth_law=args.growth_law,
                   horizon=args.days)
    out = write_text(text, args.out)
    print(f"wrote {out} (SBML Level 3 Version 2; simulate it with libRoadRunner, COPASI, tellurium...)")
    return 0


def _example() -> str:
    from .models.drugs import STANDARD_REGIMENS

    return STANDARD_REGIMENS["anti-PD-1"]


def _other_pk_sources(drug) -> list[tuple[str, str]]:
    """The PK values whose source is not the clearance's, grouped by source: (roles, source).

    Values citing the same DOI are one source (the shortest text stands for the group, so a
    per-value note such as "Q2 5.58 L/h" does not split it); values without a DOI group by text."""
    import re

    def key(source: str) -> str:
        doi = re.search(r"doi:\S+?(?=[\s,;)]|$)", source)
        return doi.group(0) if doi else source

    groups: dict[str, list[tuple[str, str]]] = {}
    for role, v in drug.pk_values.items():
        groups.setdefault(key(v.source), []).append((role, v.source))
    clearance = key(drug.pk_values["clearance"].source)
    return [(", ".join(r for r, _ in g), min((s for _, s in g), key=len)) for k, g in groups.items() if k != clearance]


def _drugs(args) -> int:
    from .models.core import core_model
    from .models.drugs import COMBINATIONS

    drugs = core_model().drugs
    rows = [d.summary() for d in drugs]
    others = [_other_pk_sources(d) for d in drugs]
    if args.markdown:
        for r, o in zip(rows, others):
            r["other PK sources"] = "; ".join(f"{roles}: {src}" for roles, src in o) or "-"
        keys = list(rows[0])
        print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
        for r in rows:
            print("| " + " | ".join(r.values()) + " |")
        print("\n| combination | regimen |\n|---|---|")
        for name, text in COMBINATIONS.items():
            print(f"| {name} | {text} |")
        return 0
    for r, o in zip(rows, others):
        print(f"{r['drug']}: {r['kind']} on {r['target']}; PK {r['pk']}; potency {r['potency']}")
        print(f"    PK: {r['pk source']}")
        for roles, src in o:
            print(f"    PK {roles}: {src}")
        print(f"    potency: {r['potency source']}")
        print(f"    presets: {r['presets']}")
    print("combinations: presets of several drugs (a preset name is also a regimen clause)")
    for name, text in COMBINATIONS.items():
        print(f"    {name}: {text}")
    return 0


def _params(args) -> int:
    from .models.core import PARAMETERS

    print(PARAMETERS.to_markdown() if args.markdown else PARAMETERS.to_text())
    return 0


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process stopped by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports `yes | head`


def _dispatch(args) -> int:
    from .cli_more import COMMANDS, dispatch

    if args.command in COMMANDS:
        return dispatch(args)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "params":
        return _params(args)
    if args.command == "drugs":
        return _drugs(args)
    if args.command == "fit":
        return _fit(args)
    if args.command == "sensitivity":
        return _sensitivity(args)
    if args.command == "export-sbml":
        return _export_sbml(args)
    if args.command == "trial":
        return _trial(args)
    if args.command == "calibrate":
        return _calibrate(args)
    if args.command == "popfit":
        return _popfit(args)
    if args.command == "biomarker":
        return _biomarker(args)
    if args.command == "datasets":
        from .datasets import summary

        print(summary())
        return 0
    if args.command == "demo":
        from .errors import InputError, describe

        out_dir = Path(args.out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(describe("--out-dir", args.out_dir, "a folder (this is a file)"))
        from .demo import run_demo

        run_demo(out_dir)
        return 0
    return EXIT_USAGE


def _close_progress_bars() -> None:
    """Close the progress bars an interrupt left open, so the message starts its own line."""
    if "tqdm" in sys.modules:
        for bar in list(getattr(sys.modules["tqdm"].tqdm, "_instances", ())):
            try:
                bar.close()
            except Exception:  # a bar is cosmetic: never hide the interrupt behind its error
                pass


def _end_interrupted() -> None:
    """End the process with 130 at once, without the interpreter's shutdown: after Ctrl-C during
    a solve, XLA's threads may still be running, and finalizing Python under them crashed the
    process (exit -11, SIGSEGV) after the message. Temporary files are already removed (the
    writers clean up as the interrupt passes through them)."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(EXIT_INTERRUPTED)


def main(argv: list[str] | None = None) -> int:
    from .errors import ImmunopdError

    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        code = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except ImmunopdError as exc:
        print(f"immunopd: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _close_progress_bars()
        print("immunopd: interrupted; no output was replaced by a partial one (a .zarr trial resumes when the same command is run again)",
              file=sys.stderr)
        if argv is None:  # the command itself: end now (see _end_interrupted)
            _end_interrupted()
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`immunopd params | head`): stop quietly, like a Unix tool; point
        # stdout at /dev/null so the interpreter's own flush at exit does not complain again
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout replaced by an object without a file descriptor
            pass
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        print(f"immunopd: error: cannot write or read a file: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
