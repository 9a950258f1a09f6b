"""Independent references for the tests: scipy's stiff solvers and closed forms.

The scipy path integrates the same right-hand side (``CoreModel.rhs``) with Radau/LSODA,
segment by segment between infusion edges (scipy knows nothing about the jumps), so it checks
the diffrax solve, dosing and output handling, not the equations.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from immunopd.solve import _drug_constants, prepare


@functools.lru_cache(maxsize=8)
def _compiled_rhs(model):
    """The full 14-state rhs and its Jacobian, compiled once per model (parameters are arguments)."""
    def rhs(y, u, p, pkv):
        return model.rhs(y, p, pkv, u)

    return jax.jit(rhs), jax.jit(jax.jacfwd(rhs))


def scipy_solve(regimen, params=None, *, times, weight=None, method="Radau", rtol=1e-10, atol=1e-12, growth_law="gompertz"):
    """States (T, 14) at ``times`` for one patient, integrated by scipy (used by the tests and bench/simulate.py)."""
    model, reg, values, n, weight_given = prepare(regimen, params, weight=weight, growth_law=growth_law)
    assert n == 1
    p = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in values.items()}
    p.update({k: jnp.asarray(v, dtype=jnp.float64) for k, v in _drug_constants(reg).items()})
    pkv = model.pk_values(p)
    y0 = np.asarray(model.initial_state(p))
    times = np.asarray(times, dtype=float)
    sched = reg.schedule(float(times[-1]), np.asarray(values["body_weight"]) if weight_given else None, 1)
    starts, ends, rates = sched.starts, sched.ends, sched.rates[0]

    edges = np.unique(np.concatenate([[0.0], sched.jump_times[np.isfinite(sched.jump_times)], [times[-1]]]))
    edges = edges[(edges >= 0) & (edges <= times[-1])]
    out = np.full((times.size, y0.size), np.nan)
    y = y0
    if times[0] == 0.0:
        out[0] = y0
    rhs_p, jac_p = _compiled_rhs(model)
    rhs = lambda yy, u: rhs_p(yy, u, p, pkv)  # noqa: E731
    jac = lambda yy, u: jac_p(yy, u, p, pkv)  # noqa: E731
    for a, b in zip(edges[:-1], edges[1:]):
        mid = 0.5 * (a + b)  # the input is constant on [a, b): evaluate it at the midpoint
        u_mid = jnp.asarray(np.sum(np.where((mid >= starts) & (mid < ends), rates, 0.0), axis=-1))
        fa = lambda t, yy, u=u_mid: rhs(yy, u)  # noqa: E731
        ja = lambda t, yy, u=u_mid: jac(yy, u)  # noqa: E731
        sel = (times > a) & (times <= b)
        sol = solve_ivp(
            lambda t, yy: np.asarray(fa(t, yy)), (a, b), y, method=method, rtol=rtol, atol=atol,
            t_eval=times[sel] if sel.any() else None, jac=(lambda t, yy: np.asarray(ja(t, yy))) if method in ("Radau", "BDF") else None,
        )
        assert sol.success, sol.message
        if sel.any():
            out[sel] = sol.y.T[-sel.sum():]
        y = sol.y[:, -1]
    return out


def two_compartment_infusions(times, doses, cl, v1, q, v2):
    """Central concentration (mg/L) by superposition of closed-form infusion responses.

    ``doses``: iterable of (start day, amount mg, duration day). Standard biexponential
    solution: C(t) = sum_i A_i e^{-a_i t} per unit impulse, with a_i roots of
    s^2 - (k10 + k12 + k21) s + k10 k21 = 0, A_1 = (a_1 - k21)/(V1 (a_1 - a_2)),
    A_2 = (k21 - a_2)/(V1 (a_1 - a_2)).
    """
    k10, k12, k21 = cl / v1, q / v1, q / v2
    s = k10 + k12 + k21
    disc = np.sqrt(s * s - 4 * k10 * k21)
    a1, a2 = (s + disc) / 2, (s - disc) / 2
    coef = [((a1 - k21) / (v1 * (a1 - a2)), a1), ((k21 - a2) / (v1 * (a1 - a2)), a2)]
    t = np.asarray(times, dtype=float)
    c = np.zeros_like(t)
    for start, amount, duration in doses:
        rate = amount / duration
        end = start + duration
        on = t > start
        upper = np.minimum(t, end)
        for a_coef, lam in coef:
            # integral over tau in [start, upper] of rate * a_coef * exp(-lam (t - tau))
            c += np.where(on, rate * a_coef / lam * (np.exp(-lam * (t - upper)) - np.exp(-lam * (t - start))), 0.0)
    return c
