"""Batched fits: every lesion of a table in one compiled, vmapped Levenberg-Marquardt solve.

The residual is the same :func:`~immunopd.fitting.fit.weighted_residual` as the lmfit path.
Positive parameters are solved for on the log scale, the Bertalanffy exponent on a logit
scale mapped to (0.01, 0.99) and the carrying capacity on a logit scale mapped to (0, 1000 x the
lesion's largest size) (the lmfit path's upper bound), so no bounds are needed; a lesion whose optimum sits on a
boundary of the lmfit path (a rate of exactly 0, say) drifts towards it here and is reported
as not converged rather than silently clipped. Convergence is judged by the lmfit path's rule
(:func:`~immunopd.fitting.fit.convergence`: optimizer, physical estimates, bounds, standard
errors), with every failed condition in ``convergence``. Lesions are padded to the longest series with
a mask that zeroes the padded residuals.

Standard errors follow lmfit's convention: covariance = (J^T J)^{-1} chi2/(n - p), with J the
Jacobian of the residual with respect to the user-facing parameters at the optimum. AIC and
BIC use lmfit's definitions, n ln(chi2/n) + 2p and n ln(chi2/n) + p ln(n).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pandas as pd
import xarray as xr

from ..errors import InputError, describe
from .curves import CURVE_MODELS
from .fit import ERROR_MODELS, _check, _initial, convergence, default_additive_sd, weighted_residual

__all__ = ["fit_lesions"]


def _to_user(names, theta, cap):
    def one(i, n):
        if n == "exponent":
            return 0.01 + 0.98 * jax.nn.sigmoid(theta[i])
        if n == "carrying_capacity":  # (0, cap): the lmfit path's upper bound, log-like well below it
            return cap * jax.nn.sigmoid(theta[i])
        return jnp.exp(theta[i])

    return {n: one(i, n) for i, n in enumerate(names)}


def _from_user(names, values, cap):
    out = []
    for n in names:
        v = values[n]
        if n == "exponent":
            out.append(np.log((v - 0.01) / (0.99 - v)))
        elif n == "carrying_capacity":
            q = min(v / cap, 1 - 1e-9)
            out.append(np.log(q / (1 - q)))
        else:
            out.append(np.log(v))
    return np.asarray(out)


@functools.lru_cache(maxsize=32)
def _compiled(model: str, error_model: str, proportional_sd: float, max_steps: int):
    spec = CURVE_MODELS[model]
    names = spec.names
    solver = optx.LevenbergMarquardt(rtol=1e-10, atol=1e-10)

    def one(theta0, t, y, mask, floor, a_sd):
        def residual_user(u):
            values = dict(zip(names, u))
            return mask * weighted_residual(spec, error_model, proportional_sd, a_sd, floor, t, y, values)

        cap = 1e6 * floor  # floor = 1e-3 x the lesion's largest size, so cap = 1e3 x it

        def residual_theta(theta, _):
            u = _to_user(names, theta, cap)
            return residual_user(jnp.stack([u[n] for n in names]))

        sol = optx.least_squares(residual_theta, solver, theta0, max_steps=max_steps, throw=False)
        u_hat = _to_user(names, sol.value, cap)
        u_vec = jnp.stack([u_hat[n] for n in names])
        r = residual_user(u_vec)
        chisqr = jnp.sum(r**2)
        n = jnp.sum(mask)
        p = len(names)
        jac = jax.jacfwd(residual_user)(u_vec)
        cov = jnp.linalg.inv(jac.T @ jac) * chisqr / jnp.maximum(n - p, 1.0)
        stderr = jnp.sqrt(jnp.clip(jnp.diag(cov), 0.0))
        ok = (sol.result == optx.RESULTS.successful) & jnp.all(jnp.isfinite(u_vec)) & jnp.isfinite(chisqr)
        return u_vec, stderr, chisqr, n, ok, sol.stats["num_steps"]

    return jax.jit(jax.vmap(one))


def _numeric_columns(table: pd.DataFrame, columns) -> pd.DataFrame:
    """``table`` with ``columns`` as float; text in them is an error naming the column, the row
    (1-based, as a spreadsheet shows the data rows) and the lesion."""
    out = None
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna().to_numpy() & table[column].notna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(describe(f"table column {column!r} row {i + 1} (lesion {table['lesion'].iloc[i]!r})",
                                      table[column].iloc[i], "a number (NaN or empty for a missing value)"))
        if values.dtype != table[column].dtype:
            out = table.copy() if out is None else out
            out[column] = values.astype(float)
    return table if out is None else out


def fit_lesions(
    table: pd.DataFrame,
    model: str = "gompertz",
    *,
    size: str = "volume_mm3",
    error_model: str = "proportional",
    proportional_sd: float = 0.1,
    max_steps: int = 1000,
    width: int | None = None,
    on_invalid: str = "raise",
) -> xr.Dataset:
    """Fit ``model`` to every lesion of a tidy table (columns ``lesion``, ``time_days`` and ``size``).

    Returns a Dataset with dims (lesion, parameter): ``estimate``, ``stderr``; and per lesion
    ``chisqr``, ``aic``, ``bic``, ``n_obs``, ``converged`` (non-converged lesions are kept and
    flagged, never dropped), ``convergence`` ("converged" or "not converged: " and every condition
    that failed), ``num_steps``. ``width`` pads every lesion to that many points
    (default: the longest here), so chunks of one table share one compilation. A lesion that
    fails the input checks (too few points, NaN, ...) raises, or with ``on_invalid="flag"`` is
    kept with NaN estimates, ``converged`` False and the reason in ``status``.
    """
    if on_invalid not in ("raise", "flag"):
        raise InputError(describe("on_invalid", on_invalid, "'raise' or 'flag'"))
    if model not in CURVE_MODELS:
        raise InputError(describe("model", model, f"one of {sorted(CURVE_MODELS)}"))
    if error_model not in ERROR_MODELS:
        raise InputError(describe("error_model", error_model, f"one of {list(ERROR_MODELS)}"))
    for column in ("lesion", "time_days", size):
        if column not in table.columns:
            raise InputError(describe("table column", column, f"present; columns are {list(table.columns)}"))
    table = _numeric_columns(table, ("time_days", size))
    spec = CURVE_MODELS[model]
    groups = [(lesion, g.sort_values("time_days", kind="stable")) for lesion, g in table.groupby("lesion", sort=False)]
    longest = max(len(g) for _, g in groups)
    if width is None or width < longest:
        width = longest
    n_les = len(groups)
    t = np.zeros((n_les, width))
    y = np.zeros((n_les, width))
    mask = np.zeros((n_les, width))
    theta0 = np.zeros((n_les, len(spec.names)))
    floor = np.zeros(n_les)
    a_sd = np.zeros(n_les)
    status = ["ok"] * n_les
    for i, (lesion, g) in enumerate(groups):
        try:
            ti, yi = _check(g["time_days"].to_numpy(), g[size].to_numpy(), lesion, len(spec.names))
        except InputError as exc:
            if on_invalid == "raise":
                raise
            status[i] = str(exc)
            ti, yi = np.arange(len(spec.names), dtype=float), np.ones(len(spec.names))  # stand-in rows; results set to NaN below
        k = ti.size
        t[i, :k], y[i, :k], mask[i, :k] = ti, yi, 1.0
        t[i, k:] = ti[-1]
        scale = float(yi.max())
        floor[i], a_sd[i] = 1e-3 * scale, default_additive_sd(error_model, scale)
        theta0[i] = _from_user(spec.names, _initial(spec, ti, yi), 1e3 * scale)
    fn = _compiled(model, error_model, float(proportional_sd), int(max_steps))
    est, se, chisqr, n, ok, steps = (np.array(a) for a in fn(*(jnp.asarray(a) for a in (theta0, t, y, mask, floor, a_sd))))
    invalid = np.array([st != "ok" for st in status])
    est[invalid], se[invalid], chisqr[invalid] = np.nan, np.nan, np.nan
    verdict = [
        "not converged: invalid input" if invalid[i] else
        convergence(model, dict(zip(spec.names, est[i])), dict(zip(spec.names, se[i])), float(y[i][mask[i] > 0].max()),
                    n_obs=int(n[i]), optimizer=None if ok[i] else "Levenberg-Marquardt did not reach its tolerance in max_steps (or met a non-finite value)")
        for i in range(n_les)
    ]
    ok = np.array([v == "converged" for v in verdict], dtype=bool)
    p = len(spec.names)
    with np.errstate(divide="ignore", invalid="ignore"):
        neg2ll = n * np.log(chisqr / n)
    units = {q.name: q.unit for q in spec.parameters}
    return xr.Dataset(
        {
            "estimate": (("lesion", "parameter"), est),
            "stderr": (("lesion", "parameter"), se),
            "chisqr": ("lesion", chisqr),
            "aic": ("lesion", neg2ll + 2 * p),
            "bic": ("lesion", neg2ll + p * np.log(n)),
            "n_obs": ("lesion", n.astype(int)),
            "converged": ("lesion", ok.astype(bool)),
            "num_steps": ("lesion", steps.astype(int)),
            "status": ("lesion", np.array(status, dtype=object)),
            "convergence": ("lesion", np.array(verdict, dtype=object)),
        },
        coords={
            "lesion": [str(lesion) for lesion, _ in groups],
            "parameter": list(spec.names),
            "parameter_unit": ("parameter", [units[q] for q in spec.names]),
        },
        attrs={"model": model, "error_model": error_model, "size_column": size, "solver": "optimistix.LevenbergMarquardt (vmapped)",
               "proportional_sd": float(proportional_sd)},
    )
