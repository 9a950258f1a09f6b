"""Which parameters decide response and resistance: local and global sensitivity, as xarray.

Local (:func:`local_sensitivity`): normalized coefficients ``S = d ln y(t) / d ln p`` for every
requested output, parameter and output time, by forward-mode automatic differentiation through
the diffrax solve (``jax.jacfwd`` with ``diffrax.ForwardMode``), for one patient or a batch.

Global, in SALib's four steps (Herman & Usher 2017, JOSS 2:97, doi:10.21105/joss.00097; the
estimators are SALib's, not re-implemented here):

1. :func:`define` — the problem: parameter names and ranges (default: each parameter's bounds;
   log-uniform where the parameter is on a log scale with a positive lower bound, so a range of
   1e-5..1 is not 99.99% above 1e-4);
2. :func:`sample` — SALib's sampler for ``"sobol"`` (Saltelli/Sobol' sequence), ``"morris"``
   or ``"efast"``;
3. :func:`evaluate` — the model on every sample through the compiled, vmapped solver
   (chunked), or any Python function of a parameter dict (used to verify the pipeline on the
   Ishigami function);
4. :func:`analyze` — SALib's analyzer per output (and per output time for time-resolved
   outputs), returned as one ``xarray.Dataset`` (dims ``parameter``, ``output``, ``time``;
   ``S1``, ``S1_conf``, ``ST``, ``ST_conf``, ``S2``, ``S2_conf`` for Sobol; ``mu``,
   ``mu_star``, ``mu_star_conf``, ``sigma`` for Morris; ``S1``, ``ST`` and their ``_conf``
   for eFAST).

Scalar endpoints: ``log10_tumor_volume_day<D>`` (log10 mm3 at day D; volumes span orders of
magnitude, so the log is the quantity whose variance is meaningful), ``best_pct_change`` (RECIST
best % change at 6-weekly scans), ``time_to_progression_days`` (first PD scan; patients without
PD count as the last scan day, i.e. censored values enter as the horizon) and
``sclever1_day<D>`` (plasma sClever-1, ng/mL). Time-resolved: ``log10_tumor_volume`` on the
``time`` grid.

Results are written with :func:`write` to netCDF or zarr (atomic: a failed write leaves no
partial file where a good one was).
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from . import endpoints as ep
from .errors import InputError, describe
from .integrate import CHUNK, note_compiling, one_patient_solver, padded_chunks, run_batches
from .results import package_versions
from .solve import check_outputs, check_times, failures, problem, resolve_model

__all__ = ["local_sensitivity", "summary_table", "DEFAULT_PARAMETERS", "Outputs", "define", "sample", "evaluate", "analyze", "run_global", "write", "open_sensitivity",
           "SensitivityProblem", "METHODS", "ranges_around_defaults"]

METHODS = ("sobol", "morris", "efast")
#: the 12 parameters analysed by default (CLI, notebook, bench): growth, killing, T-cell
#: supply and fate, checkpoint, suppression and sClever-1
DEFAULT_PARAMETERS = (
    "growth_rate", "kill_rate", "kill_half_ratio", "effector_influx", "effector_expansion", "effector_death",
    "exhaustion_rate", "checkpoint_strength", "pdl1_upregulation", "treg_suppression", "sclever1_release",
    "sclever1_suppression",
)


# ---------------------------------------------------------------------- local
@functools.lru_cache(maxsize=16)
def _compiled_local(model, drugs, solver, rtol, atol, max_steps, names: tuple[str, ...], outputs: tuple[str, ...]):
    one = one_patient_solver(model, drugs, solver, rtol, atol, max_steps, outputs, adjoint=diffrax.ForwardMode())

    def values(log_p, p, starts, ends, rates, boluses, jumps, ts):
        q = dict(p)
        for i, name in enumerate(names):
            q[name] = jnp.exp(log_p[i])
        picked, status, _ = one(q, starts, ends, rates, boluses, jumps, ts)
        return jnp.stack([picked[o] for o in outputs]), status

    def sens(p, starts, ends, rates, boluses, jumps, ts):
        log_p = jnp.log(jnp.stack([p[n] for n in names]))
        dy, status = jax.jacfwd(values, has_aux=True)(log_p, p, starts, ends, rates, boluses, jumps, ts)  # (O, T, P)
        y, _ = values(log_p, p, starts, ends, rates, boluses, jumps, ts)
        return y, dy, status

    return jax.jit(jax.vmap(sens, in_axes=(0, None, None, 0, 0, None, None)))


def local_sensitivity(
    regimen=None,
    params: Mapping | None = None,
    *,
    parameters: Sequence[str] | None = None,
    outputs: Sequence[str] = ("tumor_volume", "effector", "sclever1_plasma"),
    days: float = 365.0,
    times: Sequence[float] | None = None,
    weight=None,
    growth_law: str = "gompertz",
    model=None,
    solver: str = "tsit5",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 100_000,
) -> xr.Dataset:
    """Normalized local sensitivities ``S[patient, output, parameter, time] = d ln y / d ln p``.

    ``parameters`` default to every non-switch parameter with a non-zero value. Where ``y`` is
    0 (a drug concentration before the first dose) ``S`` is NaN. ``dy_dlnp`` (the unnormalized
    ``d y / d ln p``) is returned too. Tighter default tolerances than :func:`simulate`: the
    derivative of a solution is less accurate than the solution.
    """
    ts = check_times(times, days)
    model = resolve_model(model, growth_law)
    outputs = check_outputs(tuple(outputs), model)
    scalar = model.state_names + model.observable_names
    bad = [o for o in outputs if o not in scalar]
    if bad:
        raise InputError(describe("outputs", bad[0], f"state or observable names: {list(scalar)}"))
    prob = problem(regimen, params, ts=ts, weight=weight, model=model, solver=solver, rtol=rtol, atol=atol,
                   max_steps=max_steps, outputs=outputs)
    if parameters is None:
        parameters = [s.name for s in prob.model.parameters if not s.switch and np.all(np.asarray(prob.values[s.name]) != 0)]
    names = tuple(parameters)
    for name in names:
        prob.model.parameters[name]  # unknown names raise with a suggestion
        v = np.asarray(prob.values[name])
        if np.any(v <= 0):
            raise InputError(describe(f"parameters: {name}", float(v.reshape(-1)[0]), "parameters with a value > 0 (d ln y / d ln p needs p > 0)"))
    fn = _compiled_local(prob.model, prob.drugs, solver, float(rtol), float(atol), int(max_steps), names, outputs)
    starts, ends, jumps, tsj = prob.shared
    rates, boluses = (jnp.asarray(a) for a in prob.per_patient)
    y, dy, status = jax.tree_util.tree_map(np.asarray, fn(prob.p, starts, ends, rates, boluses, jumps, tsj))
    failures(status, prob.values, "raise")
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(y[..., None] != 0, dy / y[..., None], np.nan)
    dims = ("patient", "output", "time", "parameter")
    ds = xr.Dataset(
        {
            "S": (dims, s, {"units": "1", "long_name": "normalized local sensitivity d ln y / d ln p"}),
            "dy_dlnp": (dims, dy, {"long_name": "d y / d ln p (units of the output)"}),
            "value": (("patient", "output", "time"), y, {"long_name": "output value"}),
        },
        coords={"patient": np.arange(prob.n), "output": list(outputs), "time": ("time", ts, {"units": "day"}),
                "parameter": list(names),
                "output_units": ("output", [prob.model.unit_of(o)[0] for o in outputs]),
                "parameter_value": (("patient", "parameter"), np.stack([np.broadcast_to(prob.values[n], (prob.n,)) for n in names], axis=-1))},
    )
    ds = ds.transpose("patient", "output", "parameter", "time")
    ds.attrs.update({"method": "local: forward-mode AD through diffrax (jax.jacfwd, diffrax.ForwardMode)",
                     "regimen": prob.regimen.describe(), "model": prob.model.name, "growth_law": prob.model.variant,
                     "solver": solver, "rtol": rtol, "atol": atol, **package_versions()})
    return ds


# ---------------------------------------------------------------------- global: problem
@dataclass(frozen=True)
class SensitivityProblem:
    """Parameter names, ranges (in the parameter's unit) and whether each is sampled in log10."""

    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    log: tuple[bool, ...]

    def salib(self) -> dict:
        bounds = [[math.log10(lo), math.log10(hi)] if lg else [lo, hi] for lo, hi, lg in zip(self.lower, self.upper, self.log)]
        return {"num_vars": len(self.names), "names": list(self.names), "bounds": bounds}

    def to_values(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """SALib samples (on the sampling scale) -> parameter values in their units."""
        return {n: (10.0 ** X[:, i] if lg else X[:, i]) for i, (n, lg) in enumerate(zip(self.names, self.log))}


#: limits inside which the ranges around defaults stay, for parameters beyond which sampled
#: patients lose their untreated steady state: with faster effector expansion (or slower effector
#: death) the untreated immune response at baseline outgrows every loss, so no tumor could have
#: grown to its baseline size there, the initial state does not exist (status 99), and SALib's
#: estimators cannot skip a sample. Measured on the 12 default parameters, factor 3, Sobol
#: N = 8192 (212,992 samples): 22 such samples without these limits, 0 with them.
PLAUSIBLE_LIMITS: dict[str, tuple[float, float]] = {"effector_expansion": (0.0, 0.35), "effector_death": (0.0206, 2.0)}


def ranges_around_defaults(names: Sequence[str], factor: float = 2.0, *, model=None) -> dict[str, tuple[float, float]]:
    """``default / factor`` to ``default * factor`` for each name, clipped to the bounds and to
    :data:`PLAUSIBLE_LIMITS`."""
    if not (factor > 1):
        raise InputError(describe("factor", factor, "a number > 1"))
    table = resolve_model(model).parameters
    out = {}
    for n in names:
        spec = table[n]
        if spec.default <= 0:
            raise InputError(describe(f"ranges around default: {n}", spec.default, "parameters with a default > 0; give an explicit range"))
        lo_limit, hi_limit = PLAUSIBLE_LIMITS.get(n, (spec.lower, spec.upper))
        out[n] = (max(spec.lower, lo_limit, spec.default / factor), min(spec.upper, hi_limit, spec.default * factor))
    return out


def define(parameters: Sequence[str], ranges: Mapping[str, tuple[float, float]] | None = None,
           log_scale: Mapping[str, bool] | None = None, *, validate: bool = True, model=None) -> SensitivityProblem:
    """The SALib problem. Ranges default to the parameter bounds; sampling is log-uniform where
    the parameter's scale is "log" and its lower end is > 0, unless ``log_scale`` says otherwise.
    With ``validate=False`` any names are accepted (for test functions such as Ishigami)."""
    names = list(dict.fromkeys(parameters))
    if len(names) < 2:
        raise InputError(describe("parameters", list(parameters), "at least two distinct parameter names"))
    ranges = dict(ranges or {})
    for n in ranges:
        if n not in names:
            raise InputError(describe("ranges key", n, f"one of the analysed parameters {names}"))
    table = resolve_model(model).parameters if validate else None
    lower, upper, logs = [], [], []
    for n in names:
        if validate:
            spec = table[n]
            lo, hi = ranges.get(n, (spec.lower, spec.upper))
            if not (spec.lower <= lo < hi <= spec.upper):
                raise InputError(describe(f"ranges[{n!r}]", (lo, hi), f"low < high within the bounds [{spec.lower:g}, {spec.upper:g}] {spec.unit}"))
            lg = (log_scale or {}).get(n, spec.scale == "log" and lo > 0)
        else:
            if n not in ranges:
                raise InputError(describe(f"ranges[{n!r}]", None, "a (low, high) range for every parameter"))
            lo, hi = ranges[n]
            lg = (log_scale or {}).get(n, False)
        if lg and lo <= 0:
            raise InputError(describe(f"ranges[{n!r}]", (lo, hi), "a positive lower end for log-uniform sampling"))
        lower.append(float(lo)), upper.append(float(hi)), logs.append(bool(lg))
    return SensitivityProblem(tuple(names), tuple(lower), tuple(upper), tuple(logs))


# ---------------------------------------------------------------------- global: sample
def sample(problem_: SensitivityProblem, method: str, n: int, *, seed: int = 0, second_order: bool = True,
           num_levels: int = 4, M: int = 4) -> np.ndarray:
    """SALib samples on the sampling scale, shape ``(samples, parameters)``.

    ``n`` is SALib's ``N``: base samples for Sobol (``N (2D + 2)`` rows with second order, a
    power of 2), trajectories for Morris (``N (D + 1)`` rows), samples per parameter for eFAST
    (``N D`` rows)."""
    if method not in METHODS:
        raise InputError(describe("method", method, f"one of {list(METHODS)}"))
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise InputError(describe("n", n, "an integer >= 2"))
    sp = problem_.salib()
    if method == "sobol":
        if n & (n - 1):
            raise InputError(describe("n", n, "a power of 2 for Sobol' sampling (e.g. 1024, 4096, 8192)"))
        from SALib.sample import sobol as sampler

        return sampler.sample(sp, n, calc_second_order=second_order, seed=seed)
    if method == "morris":
        from SALib.sample import morris as sampler

        return sampler.sample(sp, n, num_levels=num_levels, seed=seed)
    from SALib.sample import fast_sampler as sampler

    if n <= 4 * M * M:
        raise InputError(describe("n", n, f"more than 4 M^2 = {4 * M * M} samples per parameter for eFAST (M = {M})"))
    return sampler.sample(sp, n, M=M, seed=seed)


# ---------------------------------------------------------------------- global: evaluate
@dataclass(frozen=True)
class Outputs:
    """Which outputs to compute (see the module docstring for their meaning)."""

    tumor_days: tuple[float, ...] | None = None  # default: mid-point and end (whole days)
    sclever1_days: tuple[float, ...] | None = None  # default: mid-point
    best_response: bool = True
    time_to_progression: bool = True
    time_step_days: float = 14.0  # grid of the time-resolved log10 tumor volume (0 = none)


def evaluate(
    problem_: SensitivityProblem,
    X: np.ndarray,
    *,
    function: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
    regimen=None,
    params: Mapping | None = None,
    days: float = 365.0,
    outputs: Outputs = Outputs(),
    scan_interval_days: float = 42.0,
    growth_law: str = "gompertz",
    model=None,
    solver: str = "tsit5",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    chunk: int = CHUNK,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Outputs for every sample row: ``({name: (samples,) or (samples, time)}, time grid)``.

    With ``function`` (a function of a dict of parameter arrays returning a dict of output
    arrays) the rows go to it instead of the ODE model (``model``, default the core model). Otherwise every row is simulated with
    ``regimen`` (fixed ``params`` are applied to all rows) through the compiled solver, in
    chunks, and a failed solve raises :class:`~immunopd.errors.SolverError` (SALib's
    estimators cannot skip samples).
    """
    values = problem_.to_values(np.asarray(X, dtype=float))
    if function is not None:
        out = {k: np.asarray(v, dtype=float) for k, v in function(values).items()}
        return out, None
    ts = check_times(None, days)
    fixed = dict(params or {})
    clash = sorted(set(fixed) & set(values))
    if clash:
        raise InputError(describe("params", clash, "fixed parameters that are not also sampled"))
    n = X.shape[0]
    half = float(math.floor(ts[-1] / 2))
    outputs = Outputs(
        tumor_days=(half, float(math.floor(ts[-1]))) if outputs.tumor_days is None else tuple(outputs.tumor_days),
        sclever1_days=(half,) if outputs.sclever1_days is None else tuple(outputs.sclever1_days),
        best_response=outputs.best_response, time_to_progression=outputs.time_to_progression, time_step_days=outputs.time_step_days,
    )
    names = ["tumor_volume", "sld"] + (["sclever1_plasma"] if outputs.sclever1_days else [])
    prob = problem(regimen, {**fixed, **{k: v for k, v in values.items()}}, ts=ts, growth_law=growth_law, model=model,
                   solver=solver, rtol=rtol, atol=atol, outputs=tuple(names))
    idx_day = {d: int(np.argmin(np.abs(ts - d))) for d in (*outputs.tumor_days, *outputs.sclever1_days)}
    for d, i in idx_day.items():
        if abs(ts[i] - d) > 1e-9:
            raise InputError(describe("output day", d, f"a day on the output grid 0..{ts[-1]:g}"))
    grid = np.arange(0, ts.size, max(int(round(outputs.time_step_days)), 1)) if outputs.time_step_days > 0 else None
    scans = ep.scan_times(ts, scan_interval_days)
    res: dict[str, np.ndarray] = {}
    for d in outputs.tumor_days:
        res[f"log10_tumor_volume_day{d:g}"] = np.empty(n)
    for d in outputs.sclever1_days:
        res[f"sclever1_day{d:g}"] = np.empty(n)
    if outputs.best_response:
        res["best_pct_change"] = np.empty(n)
    if outputs.time_to_progression:
        res["time_to_progression_days"] = np.empty(n)
    if grid is not None:
        res["log10_tumor_volume"] = np.empty((n, grid.size))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="sample", desc="evaluating")
    chunks = padded_chunks(np.arange(n), chunk)
    compiling = note_compiling(bar, prob.fn)
    for (rows, _), out in zip(chunks, run_batches(prob.fn, prob.p, prob.per_patient, prob.shared, (idx for _, idx in chunks))):
        lo, m = rows[0], rows.size
        picked, status, _ = jax.tree_util.tree_map(lambda a: a[:m], out)
        if np.any(status != 0):  # SALib's estimators cannot skip samples: the one policy, always raising
            failures(status, {k: v[lo: lo + m] for k, v in values.items()}, "raise", what="sample",
                     context=f" of the chunk from row {lo} (narrow the ranges where the status says so)")
        sl = slice(lo, lo + m)
        v = np.maximum(picked["tumor_volume"], 1e-300)
        for d in outputs.tumor_days:
            res[f"log10_tumor_volume_day{d:g}"][sl] = np.log10(v[:, idx_day[d]])
        for d in outputs.sclever1_days:
            res[f"sclever1_day{d:g}"][sl] = picked["sclever1_plasma"][:, idx_day[d]]
        if outputs.best_response or outputs.time_to_progression:
            r = ep.recist(picked["sld"], ts, scans=scans)
            if outputs.best_response:
                res["best_pct_change"][sl] = r["best_pct_change"]
            if outputs.time_to_progression:
                res["time_to_progression_days"][sl] = r["pfs_days"]
        if grid is not None:
            res["log10_tumor_volume"][sl] = np.log10(v[:, grid])
        if bar is not None:
            if compiling:
                bar.set_postfix_str("", refresh=False)
                compiling = False
            bar.update(m)
    if bar is not None:
        bar.close()
    return res, (ts[grid] if grid is not None else None)


# ---------------------------------------------------------------------- global: analyze
_UNITS = {"log10_tumor_volume": "log10 mm3", "best_pct_change": "%", "time_to_progression_days": "day", "sclever1": "ng/mL"}


def _unit(name):
    return next((u for k, u in _UNITS.items() if name.startswith(k)), "1")


#: what the ``N`` attr counts, per method (``evaluations`` holds the number of model runs)
N_MEANING = {"sobol": "base sample size (Saltelli; N (2D + 2) evaluations with second order, N (D + 2) without)",
             "morris": "trajectories (N (D + 1) evaluations)",
             "efast": "samples per parameter (N D evaluations)"}


def analyze(problem_: SensitivityProblem, method: str, X: np.ndarray, Y: Mapping[str, np.ndarray], *,
            time: np.ndarray | None = None, seed: int = 0, second_order: bool = True, num_resamples: int = 100,
            conf_level: float = 0.95, num_levels: int = 4, M: int = 4, attrs: Mapping | None = None) -> xr.Dataset:
    """SALib's analyzer on every output; one Dataset (dims parameter, output[, time][, parameter_2])."""
    if method not in METHODS:
        raise InputError(describe("method", method, f"one of {list(METHODS)}"))
    sp = problem_.salib()
    names = list(problem_.names)
    d = len(names)
    # model evaluations per unit of SALib's N: Saltelli's N (2D + 2) or N (D + 2) rows, (D + 1) per
    # Morris trajectory, D blocks of N for eFAST
    per_base = {"sobol": 2 * d + 2 if second_order else d + 2, "morris": d + 1, "efast": d}[method]

    def one(y):
        y = np.asarray(y, dtype=float)
        if not np.all(np.isfinite(y)):
            raise InputError(describe("model output", "NaN or inf", "finite outputs for every sample"))
        if method == "sobol":
            from SALib.analyze import sobol

            r = sobol.analyze(sp, y, calc_second_order=second_order, num_resamples=num_resamples, conf_level=conf_level, seed=seed)
            keys = ["S1", "S1_conf", "ST", "ST_conf"] + (["S2", "S2_conf"] if second_order else [])
        elif method == "morris":
            from SALib.analyze import morris

            r = morris.analyze(sp, X, y, num_resamples=num_resamples, conf_level=conf_level, num_levels=num_levels, seed=seed)
            keys = ["mu", "mu_star", "mu_star_conf", "sigma"]
        else:
            import warnings

            from SALib.analyze import fast

            with warnings.catch_warnings():  # the caveat is kept in the attrs (see below)
                warnings.filterwarnings("ignore", message="FAST confidence intervals")
                r = fast.analyze(sp, y, M=M, num_resamples=num_resamples, conf_level=conf_level, seed=seed)
            keys = ["S1", "S1_conf", "ST", "ST_conf"]
        return {k: np.asarray(r[k], dtype=float) for k in keys}

    scalar = [k for k, v in Y.items() if np.ndim(v) == 1]
    series = [k for k, v in Y.items() if np.ndim(v) == 2]
    data: dict[str, tuple] = {}
    if scalar:
        res = [one(Y[k]) for k in scalar]
        for key in res[0]:
            if key.startswith("S2"):
                data[key] = (("output", "parameter", "parameter_2"), np.stack([r[key] for r in res]))
            else:
                data[key] = (("output", "parameter"), np.stack([r[key] for r in res]))
    ds = xr.Dataset({k: xr.Variable(d, v, {"units": "1"}) for k, (d, v) in data.items()},
                    coords={"output": scalar, "parameter": names, **({"parameter_2": names} if second_order and method == "sobol" else {})})
    for k in series:
        y = np.asarray(Y[k])
        # constant outputs (time 0: every patient starts at baseline) have no variance to split
        res = [one(y[:, j]) if np.ptp(y[:, j]) > 0 else None for j in range(y.shape[1])]
        proto = next(r for r in res if r is not None)
        for key, arr in proto.items():
            if key.startswith("S2"):
                continue
            stack = np.stack([r[key] if r is not None else np.full_like(arr, np.nan) for r in res])  # (time, parameter)
            ds[f"{key}_{k}"] = xr.Variable(("time", "parameter"), stack, {"units": "1", "long_name": f"{key} of {k} over time"})
    if time is not None and series:
        ds = ds.assign_coords(time=("time", np.asarray(time), {"units": "day"}))
    if scalar:
        ds = ds.assign_coords(output_units=("output", [_unit(k) for k in scalar]))
    ds = ds.assign_coords(lower=("parameter", list(problem_.lower)), upper=("parameter", list(problem_.upper)),
                          log_uniform=("parameter", [int(x) for x in problem_.log]),
                          parameter_units=("parameter", [_unit(n) for n in names]))
    ds.attrs.update({
        "method": {"sobol": "Sobol' (Saltelli 2010 estimators, SALib.analyze.sobol)", "morris": "Morris elementary effects (SALib.analyze.morris)",
                   "efast": "eFAST (Saril et al. 1999, SALib.analyze.fast)"}[method],
        **({"conf_note": "eFAST S1_conf/ST_conf are bootstrap estimates that SALib marks as unreliable for this method "
                          "(SALib issue 649): treat them as indicative"} if method == "efast" else {}),
        "method_key": method, "N": int(X.shape[0]) // per_base, "N_meaning": N_MEANING[method], "evaluations": int(X.shape[0]),
        "seed": int(seed), "conf_level": conf_level, "num_resamples": num_resamples,
        "ranges": json.dumps({n: [lo, hi, "log10-uniform" if lg else "uniform"] for n, lo, hi, lg in zip(names, problem_.lower, problem_.upper, problem_.log)}),
        **package_versions(), **(attrs or {}),
    })
    return ds


def run_global(method: str, parameters: Sequence[str], n: int, *, ranges=None, regimen=None, params=None, days: float = 365.0,
               outputs: Outputs = Outputs(), seed: int = 0, second_order: bool = True, progress: bool = False,
               growth_law: str = "gompertz", model=None, evaluator: Callable | None = None, **kw) -> xr.Dataset:
    """define -> sample -> evaluate -> analyze on the ODE model, in one call.

    ``evaluator`` replaces :func:`evaluate` with the same signature, e.g.
    ``functools.partial(immunopd.scaleout.evaluate_distributed, parts_dir=..., client=...)`` for
    resumable chunks on Dask workers (this module does not import the scale-out layer)."""
    resolved = resolve_model(model, growth_law)
    prob = define(parameters, ranges, model=resolved)
    X = sample(prob, method, n, seed=seed, second_order=second_order)
    run = evaluate if evaluator is None else evaluator
    # the model object travels only when it is not the default (workers rebuild the default themselves)
    Y, time = run(prob, X, regimen=regimen, params=params, days=days, outputs=outputs, progress=progress,
                  growth_law=growth_law, **({"model": model} if model is not None else {}), **kw)
    model = resolved
    from .dosing import Regimen

    reg = regimen if isinstance(regimen, Regimen) else Regimen.parse(regimen or "none")
    ds = analyze(prob, method, X, Y, time=time, seed=seed, second_order=second_order,
                 attrs={"model": model.name, "growth_law": model.variant, "regimen": reg.describe(), "days": float(days)})
    return ds


def _unit(name: str) -> str:
    table = resolve_model(None).parameters
    return table[name].unit if name in table else "1"


def summary_table(ds: xr.Dataset) -> str:
    """Indices of every scalar output as text (largest total effect first)."""
    lines = [f"{ds.attrs['method']}; {ds.attrs.get('evaluations', ds.attrs['N'])} model evaluations; regimen: {ds.attrs.get('regimen', '-')}"]
    main, second = (("ST", "S1"), "ST_conf") if "ST" in ds else (("mu_star", "sigma"), "mu_star_conf")
    for out in ds.output.values:
        d = ds.sel(output=out)
        lines.append(f"\n{out} ({str(d.output_units.values)}):")
        lines.append(f"  {'parameter':<24} {main[0]:>8} {'+-':>6} {main[1]:>8}")
        for i in np.argsort(-np.nan_to_num(d[main[0]].values)):
            lines.append(f"  {str(d.parameter.values[i]):<24} {float(d[main[0]][i]):>8.3f} {float(d[second][i]):>6.3f} {float(d[main[1]][i]):>8.3f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- export
def write(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write to netCDF (``.nc``) or zarr (``.zarr``), atomically (temporary path, then rename)."""
    path = Path(path)
    if path.suffix == ".nc":
        from .io import write_netcdf

        return write_netcdf(ds, path)
    if path.suffix != ".zarr":
        raise InputError(describe("output path", str(path), "a path ending in .nc (netCDF) or .zarr"))
    from .io import write_zarr

    return write_zarr(ds, path)


def open_sensitivity(path: str | os.PathLike) -> xr.Dataset:
    path = Path(path)
    if path.suffix == ".zarr":
        with xr.open_zarr(path) as ds:
            return ds.load()
    from .io import open_result

    return open_result(path)
