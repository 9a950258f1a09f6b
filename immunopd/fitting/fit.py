"""lmfit front end: fit one tumor-size curve with a closed-form model and a JAX Jacobian.

The residual is ``(observed - model) / sigma`` with sigma from the error model:

- ``"additive"``: sigma = ``additive_sd`` (default 1, data units);
- ``"proportional"``: sigma = ``proportional_sd`` x max(model, floor), floor = 1e-3 x max(data)
  so that measured zeros (lesions below measurability) keep a finite weight;
- ``"combined"``: sigma = sqrt(additive_sd^2 + (proportional_sd x model)^2), additive_sd
  defaulting to 5 % of the largest observation.

Bounds: rates and the Bertalanffy exponent as listed in :data:`CURVE_MODELS`; sizes positive;
the carrying capacity at most 1000x the largest observation. The Jacobian of the residual with respect to the user-facing values of the varying
parameters (``result.var_names`` order) comes from ``jax.jacfwd`` and is passed to lmfit as
``Dfun``; lmfit applies its own bounds scaling, so no finite differences are used.

A fit is "converged" (:func:`convergence`, the same rule for :func:`fit` and the batched
:func:`~immunopd.fitting.fit_lesions`) only if the optimizer converged, the estimates are
physical (a carrying capacity at least the lesion's largest observed size: a tumor cannot
have been larger than its plateau), no estimate sits at a bound (a rate below
:data:`RATE_FLOOR` is the bound 0), and every standard error is finite and > 0. Otherwise the
status lists every condition that failed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import lmfit
import numpy as np
import xarray as xr

from ..errors import InputError, describe
from .curves import CURVE_MODELS, CurveModel

__all__ = ["fit", "FitResult", "ERROR_MODELS", "weighted_residual", "convergence", "curve_bounds", "RATE_FLOOR"]

ERROR_MODELS = ("additive", "proportional", "combined")


@dataclass
class FitResult:
    """What :func:`fit` returns: lmfit's objects and a Dataset of the fitted curve."""

    minimizer: lmfit.Minimizer
    result: lmfit.minimizer.MinimizerResult
    curve: xr.Dataset
    model: str
    lesion: str
    status: str  # "converged", or "not converged: <every condition that failed>" (see convergence)

    @property
    def converged(self) -> bool:
        return self.status == "converged"

    def report(self) -> str:
        """lmfit's fit report, headed by the model, lesion and parameter units."""
        units = ", ".join(f"{p.name} [{p.unit}]" for p in CURVE_MODELS[self.model].parameters)
        return (f"[[Model]] {self.model} for {self.lesion}; units: {units}\n[[Status]] {self.status}\n"
                + lmfit.fit_report(self.result))


#: a rate (1/day) below this is the bound 0: a doubling or halving time of over 1,900 years
RATE_FLOOR = 1e-6
#: relative distance to a bound within which an estimate counts as at it
BOUND_TOLERANCE = 1e-3


def curve_bounds(model: str, name: str, largest: float) -> tuple[float, float]:
    """Bounds of a curve parameter for a lesion whose largest observed size is ``largest``: the
    declared ones, sizes >= 1e-9 x ``largest``, the carrying capacity <= 1000 x ``largest`` (a
    plateau beyond it is unidentifiable from the data)."""
    spec = {p.name: p for p in CURVE_MODELS[model].parameters}[name]
    lower = 1e-9 * largest if name in ("initial_size", "carrying_capacity") else float(spec.lower)
    upper = 1e3 * largest if name == "carrying_capacity" else float(spec.upper)
    return lower, upper


def convergence(model: str, values: dict, stderr: dict, largest: float, *, n_obs: int | None = None, optimizer: str | None = None,
                bounds: dict | None = None) -> str:
    """``"converged"`` or ``"not converged: <reasons>"`` for one lesion's curve fit.

    ``values``/``stderr``: estimate and standard error of each fitted parameter (fixed ones left
    out); ``largest``: the lesion's largest observed size; ``n_obs``: its number of measurements
    (as many as free parameters leave no degree of freedom, so no standard error);
    ``optimizer``: the optimizer's reason for failing, None if it converged; ``bounds``: per
    parameter, default :func:`curve_bounds`.
    """
    reasons = [] if optimizer is None else [optimizer]
    if n_obs is not None and n_obs <= len(values):
        reasons.append(f"{n_obs} measurements for {len(values)} free parameters: no degree of freedom left for standard errors")
    for name, v in values.items():
        lo, hi = (bounds or {}).get(name) or curve_bounds(model, name, largest)
        unit = "/day" if name.endswith("_rate") else ""
        if not np.isfinite(v):
            reasons.append(f"{name} = {v} is not finite")
            continue
        if v <= lo + (RATE_FLOOR if lo == 0 else BOUND_TOLERANCE * abs(lo)):
            reasons.append(f"{name} = {v:.4g}{unit} at its lower bound {lo:.4g}" + (f" (below {RATE_FLOOR:g}/day)" if lo == 0 else ""))
        elif np.isfinite(hi) and v >= hi - BOUND_TOLERANCE * abs(hi):  # the batched path has no upper bound on rates
            where = "at" if v <= hi * (1 + BOUND_TOLERANCE) else "above"
            reasons.append(f"{name} = {v:.4g}{unit} {where} its upper bound {hi:.4g}")
        if name == "carrying_capacity" and v < largest * (1 - 1e-6):  # (rounding: a flat lesion's plateau is its size)
            reasons.append(f"carrying_capacity = {v:.4g} below the lesion's largest observed size {largest:.4g}")
        se = stderr.get(name)
        if se is None or not np.isfinite(se) or se <= 0:
            reasons.append(f"{name}: no finite standard error > 0 (SE = {se})")
    return "converged" if not reasons else "not converged: " + "; ".join(reasons)


def residual_sd(f, error_model, proportional_sd, additive_sd, floor):
    """sigma of the error model (module docstring) at the prediction ``f``."""
    if error_model == "additive":
        return additive_sd * jnp.ones_like(f)
    if error_model == "proportional":
        return proportional_sd * jnp.maximum(f, floor)
    return jnp.sqrt(additive_sd**2 + (proportional_sd * f) ** 2)


def weighted_residual(spec: CurveModel, error_model, proportional_sd, additive_sd, floor, t, y, values):
    """``(y - f) / sigma(f)`` for the error model (module docstring); shared by the lmfit and batched paths."""
    f = spec.function(t, values)
    return (y - f) / residual_sd(f, error_model, proportional_sd, additive_sd, floor)


def default_additive_sd(error_model: str, scale: float) -> float:
    return 1.0 if error_model == "additive" else 0.05 * scale


@functools.lru_cache(maxsize=64)
def _compiled_residual(model: str, error_model: str, proportional_sd: float, varying: tuple[str, ...]):
    """Residual and its Jacobian in the varying parameters, compiled once per configuration
    (data are arguments, so fitting many lesions does not recompile)."""
    spec = CURVE_MODELS[model]

    def residual_vec(theta, fixed, t, y, floor, a_sd):
        values = dict(fixed) | dict(zip(varying, theta))
        return weighted_residual(spec, error_model, proportional_sd, a_sd, floor, t, y, values)

    return jax.jit(residual_vec), jax.jit(jax.jacfwd(residual_vec))


@functools.lru_cache(maxsize=64)
def _compiled_curve(model: str, varying: tuple[str, ...]):
    """The model curve on a grid and its Jacobian in the varying parameters (for the band)."""
    spec = CURVE_MODELS[model]

    def curve(theta, fixed, grid):
        return spec.function(grid, dict(fixed) | dict(zip(varying, theta)))

    return jax.jit(curve), jax.jit(jax.jacfwd(curve))


def _check(times, sizes, lesion, n_free):
    t = np.asarray(times, dtype=float)
    y = np.asarray(sizes, dtype=float)
    if t.ndim != 1 or y.shape != t.shape:
        raise InputError(describe(f"lesion {lesion}: times/sizes shapes", (t.shape, y.shape), "two 1-D arrays of equal length"))
    for column, values in (("time", t), ("size", y)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise InputError(describe(f"lesion {lesion}: {column}[{bad[0]}]", float(values[bad[0]]), "a finite number (no NaN)"))
    bad = np.flatnonzero(y < 0)
    if bad.size:
        raise InputError(describe(f"lesion {lesion}: size[{bad[0]}]", float(y[bad[0]]), "a size >= 0"))
    bad = np.flatnonzero(np.diff(t) <= 0)
    if bad.size:
        i = bad[0] + 1
        raise InputError(describe(f"lesion {lesion}: time[{i}]", float(t[i]), f"strictly increasing times (time[{i - 1}] = {t[i - 1]:g})"))
    if t.size < n_free:
        raise InputError(describe(f"lesion {lesion}: number of measurements", int(t.size), f">= {n_free}, the number of free parameters"))
    if not np.any(y > 0):
        raise InputError(describe(f"lesion {lesion}: sizes", "all zero", "at least one size > 0"))
    return t, y


def _initial(model: CurveModel, t, y):
    start = float(y[np.argmin(np.abs(t))])
    out = {}
    for p in model.parameters:
        if p.guess == "first":
            out[p.name] = max(start, 1e-3 * float(y.max()))
        elif p.guess == "max":
            out[p.name] = 2.0 * float(y.max())
        else:
            out[p.name] = float(p.guess)
    return out


def fit(
    times,
    sizes,
    model: str = "gompertz",
    *,
    error_model: str = "proportional",
    params: dict | None = None,
    additive_sd: float | None = None,
    proportional_sd: float = 0.1,
    jacobian: bool = True,
    lesion: str = "curve",
    grid_points: int = 200,
    fit_kws: dict | None = None,
) -> FitResult:
    """Fit ``model`` to one curve (times in days since treatment start, sizes in any unit >= 0).

    ``params`` maps a parameter name to overrides of ``value``, ``min``, ``max`` or ``vary``
    (lmfit's fields). With ``jacobian=False`` lmfit uses finite differences (for comparison).
    ``fit_kws`` go to scipy's leastsq through lmfit (e.g. ``{"xtol": 1e-12, "ftol": 1e-12}``).
    Returns a :class:`FitResult`; a fit that does not converge says so in
    ``result.success``/``result.message`` and in the curve's ``converged`` attr.
    """
    if model not in CURVE_MODELS:
        raise InputError(describe("model", model, f"one of {sorted(CURVE_MODELS)}"))
    if error_model not in ERROR_MODELS:
        raise InputError(describe("error_model", error_model, f"one of {list(ERROR_MODELS)}"))
    spec = CURVE_MODELS[model]
    overrides = dict(params or {})
    for name in overrides:
        if name not in spec.names:
            raise InputError(describe("params name", name, f"one of {list(spec.names)} for model {model!r}"))
    n_free = sum(1 for p in spec.parameters if overrides.get(p.name, {}).get("vary", True))
    t, y = _check(times, sizes, lesion, n_free)
    scale = float(y.max())
    guess = _initial(spec, t, y)

    lm_params = lmfit.Parameters()
    for p in spec.parameters:
        lower, upper = curve_bounds(model, p.name, scale)
        kw = {"value": guess[p.name], "min": lower, "max": upper, "vary": True} | overrides.get(p.name, {})
        lm_params.add(p.name, **kw)
    varying = [p.name for p in spec.parameters if lm_params[p.name].vary]

    a_sd = float(additive_sd) if additive_sd is not None else default_additive_sd(error_model, scale)
    data = (jnp.asarray(t), jnp.asarray(y), 1e-3 * scale, a_sd)
    residual_jit, jac_jit = _compiled_residual(model, error_model, float(proportional_sd), tuple(varying))

    def split(pars):
        theta = jnp.asarray([pars[n].value for n in varying])
        fixed = {n: pars[n].value for n in spec.names if n not in varying}
        return theta, fixed

    def residual(pars):
        return np.array(residual_jit(*split(pars), *data))

    def dfun(pars):  # lmfit rescales this array in place: return a writable copy
        return np.array(jac_jit(*split(pars), *data))

    minimizer = lmfit.Minimizer(residual, lm_params, nan_policy="raise")
    kws = ({"Dfun": dfun, "col_deriv": False} if jacobian else {}) | dict(fit_kws or {})
    result = minimizer.minimize(method="leastsq", **kws)

    grid = np.linspace(min(0.0, t.min()), t.max(), grid_points)
    best = {n: result.params[n].value for n in spec.names}
    status = convergence(model, {n: best[n] for n in varying}, {n: result.params[n].stderr for n in varying}, scale, n_obs=t.size,
                         optimizer=None if result.success else f"lmfit: {result.message}",
                         bounds={n: (result.params[n].min, result.params[n].max) for n in varying})
    fixed = {n: best[n] for n in spec.names if n not in varying}
    theta_hat = jnp.asarray([best[n] for n in varying])
    curve_fn, curve_jac = _compiled_curve(model, tuple(varying))
    fitted = np.array(curve_fn(theta_hat, fixed, jnp.asarray(grid)))
    if result.covar is not None and result.covar.shape == (len(varying), len(varying)):
        j = np.asarray(curve_jac(theta_hat, fixed, jnp.asarray(grid)))
        sd = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", j, result.covar, j), 0.0))
    else:
        sd = np.full_like(fitted, np.nan)
    curve = xr.Dataset(
        {
            "fitted": ("time", fitted, {"long_name": f"{model} fit", "units": "data unit"}),
            "lower": ("time", fitted - 1.96 * sd, {"long_name": "95 % confidence band of the fitted curve (delta method)"}),
            "upper": ("time", fitted + 1.96 * sd, {"long_name": "95 % confidence band of the fitted curve (delta method)"}),
            "observed": ("obs", y, {"long_name": "observed size", "units": "data unit"}),
            "observed_time": ("obs", t, {"units": "day"}),
        },
        coords={"time": ("time", grid, {"units": "day"})},
        attrs={"model": model, "error_model": error_model, "lesion": lesion, "converged": int(status == "converged"), "status": status,
               "message": str(result.message), "chisqr": float(result.chisqr), "aic": float(result.aic),
               "bic": float(result.bic), "nfev": int(result.nfev), "jacobian": "jax.jacfwd" if jacobian else "finite differences"},
    )
    return FitResult(minimizer, result, curve, model, lesion, status)
