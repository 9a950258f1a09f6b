"""Fit a declared model (:class:`immunopd.spec.Model`) to one lesion's time course with lmfit.

The model is simulated on the dosing of the lesion's arm from the lesion's baseline scan, and
a chosen subset of its parameters varies (every other one stays at its default or the value
in ``params``). The residual is ``(observed - predicted) / sigma`` with the error models of
:mod:`immunopd.fitting.fit` (proportional by default, sigma floored at 1e-3 of the largest
observation so measured zeros keep a finite weight). Its Jacobian in the varying parameters
is forward-mode AD through the solver (``jax.jacfwd`` with ``diffrax.ForwardMode``; the
untreated steady state differentiated by the implicit function theorem), handed to lmfit's
``leastsq`` as ``Dfun``: no finite differences.

Time: the lesion's times are days since treatment start; the simulation starts at the
baseline scan (the last scan on or before day 0), so a baseline taken ``k`` days before
treatment starts the doses ``k`` days into the simulation. The immune states start at the
untreated steady state of the baseline volume (:func:`immunopd.initial.initial_state`).

A fit is reported converged only if lmfit says so, the solver succeeded at the estimate, no
estimate sits at a bound (within 0.1 %, in log units for log-scale parameters), every standard
error from the covariance step is finite, positive and below 1000x its estimate, and no two
estimates correlate beyond 0.9999 (:attr:`MechanisticFit.status` names each check that failed).
:meth:`MechanisticFit.identifiability` gives correlations and relative SEs;
:meth:`MechanisticFit.profile` a profile likelihood on request.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import diffrax
import jax
import jax.numpy as jnp
import lmfit
import numpy as np
import xarray as xr

from ..dosing import Regimen
from ..errors import InputError, describe
from ..integrate import one_patient_solver, release_compiled_if_needed
from ..solve import _as_regimen, prepare, resolve_model
from .fit import ERROR_MODELS, _check, default_additive_sd, residual_sd

__all__ = ["fit_model", "MechanisticFit", "DEFAULT_FREE", "OBSERVABLES"]

#: varied by default: growth, killing and the baseline volume (the size at the baseline scan)
DEFAULT_FREE = ("baseline_tumor_volume", "growth_rate", "kill_rate")
#: what a lesion's size column may be compared with
OBSERVABLES = ("sld", "tumor_volume")
_MAX_RELATIVE_SE = 1e3  # a relative SE above this: the covariance step is numerically singular
_FAILED = 1e6  # the residual of an observation whose solve failed
_PAD = 8  # observation arrays are padded to a multiple of this, so lesions share compilations


def _shifted(regimen: Regimen, days: float) -> Regimen:
    """``regimen`` with every dose ``days`` later (the simulation starts before treatment)."""
    if days == 0:
        return regimen
    return Regimen(tuple(dataclasses.replace(s, start=s.start + days) for s in regimen.series), text=regimen.text)


@functools.lru_cache(maxsize=32)
def _compiled(model, drugs: tuple, free: tuple[str, ...], observable: str, error_model: str, proportional_sd: float,
              solver: str, rtol: float, atol: float, max_steps: int):
    """(predict, residual, jacobian), jitted once per configuration; data are arguments."""
    one = one_patient_solver(model, drugs, solver, rtol, atol, max_steps, (observable,), adjoint=diffrax.ForwardMode())

    def predict(theta, p, starts, ends, rates, boluses, jumps, ts):
        q = dict(p) | {name: theta[i] for i, name in enumerate(free)}
        picked, status, _ = one(q, starts, ends, rates, boluses, jumps, ts)
        return picked[observable], status

    def residual(theta, p, starts, ends, rates, boluses, jumps, ts, y, mask, floor, a_sd):
        f, _ = predict(theta, p, starts, ends, rates, boluses, jumps, ts)
        return mask * (y - f) / residual_sd(f, error_model, proportional_sd, a_sd, floor)

    return jax.jit(predict), jax.jit(residual), jax.jit(jax.jacfwd(residual))


@dataclass
class MechanisticFit:
    """What :func:`fit_model` returns: lmfit's objects, the fitted course and the checks."""

    minimizer: lmfit.Minimizer
    result: lmfit.minimizer.MinimizerResult
    curve: xr.Dataset
    model: object
    lesion: str
    free: tuple[str, ...]
    status: str  # "converged", or "not converged: <every reason>"
    _refit: object = dataclasses.field(repr=False, default=None)
    #: ``(residual, jacobian)``: the functions of lmfit Parameters that leastsq was given
    functions: tuple = dataclasses.field(repr=False, default=())

    @property
    def converged(self) -> bool:
        return self.status == "converged"

    @property
    def estimates(self) -> dict[str, float]:
        return {n: float(self.result.params[n].value) for n in self.free}

    def identifiability(self) -> xr.Dataset:
        """Estimates, standard errors, relative SEs (SE / |estimate|) and the correlation matrix."""
        n = len(self.free)
        est = np.array([self.result.params[k].value for k in self.free])
        se = np.array([self.result.params[k].stderr if self.result.params[k].stderr is not None else np.nan for k in self.free])
        corr = np.full((n, n), np.nan)
        if self.result.covar is not None:
            c = np.asarray(self.result.covar)
            d = np.sqrt(np.abs(np.diag(c)))
            with np.errstate(invalid="ignore", divide="ignore"):
                corr = c / np.outer(d, d)
        units = [self.model.parameters[k].unit for k in self.free]
        return xr.Dataset(
            {"estimate": ("parameter", est, {"long_name": "estimate (units per parameter in 'unit')"}),
             "stderr": ("parameter", se, {"long_name": "standard error from the covariance step"}),
             "relative_se": ("parameter", se / np.abs(est), {"units": "1", "long_name": "SE / |estimate|"}),
             "correlation": (("parameter", "parameter_2"), corr, {"units": "1", "long_name": "correlation of the estimates"})},
            coords={"parameter": list(self.free), "parameter_2": list(self.free), "unit": ("parameter", units)},
            attrs={"lesion": self.lesion, "status": self.status})

    def profile(self, name: str, points: int = 11, factor: float = 4.0) -> xr.Dataset:
        """Profile likelihood of ``name``: the objective (chi-square of the weighted residual)
        refitted with ``name`` fixed on ``points`` values from estimate/``factor`` to
        estimate x ``factor`` (log-spaced), and the 95 % interval where it stays within 3.84
        of the minimum (NaN at an end the grid does not bracket)."""
        if name not in self.free:
            raise InputError(describe("profile name", name, f"one of the fitted parameters {list(self.free)}"))
        if len(self.free) < 2:
            raise InputError(describe("profile name", name, "a fit with at least two free parameters"))
        est = self.result.params[name].value
        lo, hi = self.result.params[name].min, self.result.params[name].max
        grid = np.clip(est * np.geomspace(1 / factor, factor, points), lo, hi)
        chi = np.array([self._refit(name, v) for v in grid])
        best = float(self.result.chisqr)
        inside = chi - best <= 3.84
        lower = grid[np.argmax(inside)] if inside.any() and not inside[0] else np.nan
        upper = grid[len(inside) - 1 - np.argmax(inside[::-1])] if inside.any() and not inside[-1] else np.nan
        return xr.Dataset({"chisqr": ("value", chi, {"long_name": "objective with the parameter fixed, others refitted"})},
                          coords={"value": ("value", grid, {"units": self.model.parameters[name].unit})},
                          attrs={"parameter": name, "minimum_chisqr": best, "lower_95": float(lower), "upper_95": float(upper)})

    def report(self) -> str:
        units = ", ".join(f"{k} [{self.model.parameters[k].unit}]" for k in self.free)
        ident = self.identifiability()
        lines = [f"[[Model]] {self.model.name} ({self.model.variant}) for {self.lesion}: {self.status}", f"units: {units}",
                 lmfit.fit_report(self.result), "[[Identifiability]]"]
        for k in self.free:
            lines.append(f"    {k:<28} relative SE {float(ident.relative_se.sel(parameter=k)):.3g}")
        c = ident.correlation.values
        if np.isfinite(c).any() and len(self.free) > 1:
            off = np.where(np.eye(len(self.free), dtype=bool), 0.0, np.abs(np.nan_to_num(c)))
            i, j = np.unravel_index(np.argmax(off), off.shape)
            lines.append(f"    largest |correlation|: {self.free[i]} ~ {self.free[j]} {c[i, j]:+.3f}")
        return "\n".join(lines)


def fit_model(
    times,
    sizes,
    *,
    regimen: Regimen | str | None = None,
    free: Sequence[str] = DEFAULT_FREE,
    model=None,
    params: Mapping | None = None,
    start: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    observable: str = "sld",
    error_model: str = "proportional",
    proportional_sd: float = 0.1,
    additive_sd: float | None = None,
    weight=None,
    height=None,
    bsa=None,
    lesion: str = "lesion",
    solver: str = "tsit5",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 100_000,
    grid_points: int = 200,
    fit_kws: dict | None = None,
) -> MechanisticFit:
    """Fit ``free`` parameters of ``model`` (default: the core model) to one lesion.

    ``times``: days since treatment start (scans before day 0 allowed; the last one on or
    before day 0 is the baseline, earlier ones are not fitted); ``sizes``: the lesion's longest
    diameter in mm (``observable="sld"``) or volume in mm3 (``"tumor_volume"``); ``regimen``:
    the arm's dosing from treatment start. ``params`` fixes other parameters (e.g. a patient's
    covariates); ``start`` and ``bounds`` override the starting values (default: the parameter
    defaults, the baseline volume from the baseline scan) and the bounds (default: the
    parameter table's). ``weight``/``height``/``bsa`` as in :func:`immunopd.simulate`.
    """
    release_compiled_if_needed()
    model = resolve_model(model, "gompertz")
    if observable not in OBSERVABLES:
        raise InputError(describe("observable", observable, f"one of {list(OBSERVABLES)}"))
    if error_model not in ERROR_MODELS:
        raise InputError(describe("error_model", error_model, f"one of {list(ERROR_MODELS)}"))
    free = tuple(free)
    if not free or len(set(free)) != len(free):
        raise InputError(describe("free", list(free), "a non-empty list of distinct parameter names"))
    for name in free:
        model.parameters[name]  # unknown names raise, naming the table
        if name in (params or {}):
            raise InputError(describe("free", name, "a parameter not also fixed in params"))
    for what, mapping in (("start", start), ("bounds", bounds)):
        for name in (mapping or {}):
            if name not in free:
                raise InputError(describe(f"{what} name", name, f"one of the free parameters {list(free)}"))
    t_all, y_all = _check(times, sizes, lesion, len(free))
    pre = np.flatnonzero(t_all <= 0)
    b = int(pre[-1]) if pre.size else 0
    t0 = float(t_all[b])
    t, y = t_all[b:] - t0, y_all[b:]
    if t.size < len(free):
        raise InputError(describe(f"lesion {lesion}: scans from the baseline on", int(t.size), f">= {len(free)}, the number of free parameters"))
    if y[0] <= 0:
        raise InputError(describe(f"lesion {lesion}: baseline size", float(y[0]), "a size > 0 at the baseline scan"))

    reg = _shifted(_as_regimen(regimen), -t0)
    model, reg, values, n, given = prepare(reg, params, weight=weight, height=height, bsa=bsa, model=model)
    if n != 1 or any(np.ndim(v) for v in values.values()):
        raise InputError(describe("params", "arrays over patients", "scalar values: one lesion is one patient"))
    drugs = tuple(model.drug(d) for d in reg.drugs)

    m = _PAD * math.ceil(t.size / _PAD)
    horizon_obs = float(t[-1])
    ts_obs = np.concatenate([t, horizon_obs + np.arange(1, m - t.size + 1)])  # padding: after the last scan, weight 0
    mask = np.concatenate([np.ones(t.size), np.zeros(m - t.size)])
    y_pad = np.concatenate([y, np.zeros(m - t.size)])
    grid = np.linspace(0.0, horizon_obs, grid_points)
    horizon = max(float(ts_obs[-1]), float(grid[-1]))
    weights = values["body_weight"] if "body_weight" in given else None
    bsas = values["body_surface_area"] if "body_surface_area" in given else None
    sched = reg.schedule(horizon, weights, 1, drugs=tuple(d.name for d in drugs), bsas=bsas)
    jumps = np.where(np.isfinite(sched.jump_times), sched.jump_times, horizon + 1.0)
    dose_args = (jnp.asarray(sched.starts), jnp.asarray(sched.ends), jnp.asarray(sched.rates[0]), jnp.asarray(sched.boluses[0]),
                 jnp.asarray(jumps))
    p = {k: jnp.asarray(float(v)) for k, v in values.items()}

    scale = float(y.max())
    a_sd = float(additive_sd) if additive_sd is not None else default_additive_sd(error_model, scale)
    data = (jnp.asarray(ts_obs), jnp.asarray(y_pad), jnp.asarray(mask), 1e-3 * scale, a_sd)
    predict, residual_jit, jac_jit = _compiled(model, drugs, free, observable, error_model, float(proportional_sd), solver,
                                               float(rtol), float(atol), int(max_steps))

    guess = {k: float(values[k]) for k in free}
    if "baseline_tumor_volume" in free:
        guess["baseline_tumor_volume"] = math.pi / 6 * float(y[0]) ** 3 if observable == "sld" else float(y[0])
    guess |= dict(start or {})
    lm_params = lmfit.Parameters()
    for name in free:
        spec = model.parameters[name]
        lo, hi = (bounds or {}).get(name, (spec.lower, spec.upper))
        value = float(np.clip(guess[name], lo, hi))
        lm_params.add(name, value=value, min=lo, max=hi)

    def theta_of(pars):
        return jnp.asarray([pars[k].value for k in free])

    obs_args = (p, *dose_args, data[0], data[1], data[2], data[3], data[4])

    # a failed solve (NaN) becomes a large residual with a zero Jacobian: leastsq then rejects
    # the step instead of stopping
    def residual(pars):
        r = np.array(residual_jit(theta_of(pars), *obs_args))
        return np.where(np.isfinite(r), r, _FAILED)

    def dfun(pars):  # lmfit rescales this array in place: a writable copy
        j = np.array(jac_jit(theta_of(pars), *obs_args))[:, [i for i, k in enumerate(free) if pars[k].vary]]
        return np.where(np.isfinite(j), j, 0.0)

    def minimize(pars):
        minimizer = lmfit.Minimizer(residual, pars, nan_policy="raise")
        kws = {"Dfun": dfun, "col_deriv": False} | dict(fit_kws or {})
        return minimizer, minimizer.minimize(method="leastsq", **kws)

    minimizer, result = minimize(lm_params)
    theta_hat = theta_of(result.params)
    f_obs, status_obs = predict(theta_hat, p, *dose_args, data[0])
    fitted, status_grid = predict(theta_hat, p, *dose_args, jnp.asarray(grid))

    reasons = []
    if not result.success:
        reasons.append(f"lmfit: {result.message}")
    if int(status_obs) != 0:
        reasons.append(f"solver status {int(status_obs)} at the estimate")
    for name in free:
        par = result.params[name]
        spec = model.parameters[name]
        lo, hi = par.min, par.max
        if spec.scale == "log":  # distance in log units; a zero lower bound counts from 1e-12 of the upper
            lo_eff = max(lo, 1e-12 * hi)
            near = min(abs(math.log(max(par.value, 1e-300) / lo_eff)), abs(math.log(hi / par.value))) < 1e-3
        else:
            near = min(par.value - lo, hi - par.value) < 1e-3 * (hi - lo)
        if near:
            reasons.append(f"{name} = {par.value:.4g} at its bound [{lo:g}, {hi:g}]")
        if par.stderr is None or not np.isfinite(par.stderr) or par.stderr <= 0:
            reasons.append(f"{name}: no finite positive standard error")
        elif par.stderr > _MAX_RELATIVE_SE * abs(par.value):
            reasons.append(f"{name}: relative SE {par.stderr / abs(par.value):.3g} (not identifiable from these scans)")
    if result.covar is not None and len(free) > 1:
        c = np.asarray(result.covar)
        d = np.sqrt(np.abs(np.diag(c)))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.abs(c / np.outer(d, d))[~np.eye(len(free), dtype=bool)]
        if np.any(~np.isfinite(corr)) or np.any(corr > 0.9999):
            reasons.append("singular covariance step (|correlation| > 0.9999)")
    status = "converged" if not reasons else "not converged: " + "; ".join(dict.fromkeys(reasons))

    def refit(name, value):
        pars = result.params.copy()
        pars[name].set(value=value, vary=False)
        return float(minimize(pars)[1].chisqr)

    unit = model.unit_of(observable)[0]
    curve = xr.Dataset(
        {
            "fitted": ("time", np.asarray(fitted), {"long_name": f"{observable} of {model.name} at the estimate", "units": unit}),
            "observed": ("obs", y, {"long_name": f"observed {observable}", "units": unit}),
            "observed_time": ("obs", t + t0, {"units": "day", "long_name": "days since treatment start"}),
            "predicted": ("obs", np.asarray(f_obs)[: t.size], {"units": unit, "long_name": "model at the scans"}),
        },
        coords={"time": ("time", grid + t0, {"units": "day", "long_name": "days since treatment start"})},
        attrs={"model": model.name, "growth_law": model.variant, "lesion": lesion, "status": status, "converged": int(status == "converged"),
               "regimen": reg.describe(), "error_model": error_model, "chisqr": float(result.chisqr), "aic": float(result.aic),
               "bic": float(result.bic), "nfev": int(result.nfev),
               "jacobian": "jax.jacfwd through diffrax (ForwardMode); steady state by the implicit function theorem"},
    )
    return MechanisticFit(minimizer, result, curve, model, lesion, free, status, refit, (residual, dfun))
