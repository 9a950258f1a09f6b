"""Independent references for the tests: scipy's stiff solvers and closed forms.

The scipy path integrates the model's full ODE (every drug's PK as ODEs,
:func:`immunopd.integrate.full_rhs`) with Radau/LSODA, segment by segment between dose edges
(scipy knows nothing about the jumps), so it checks the diffrax solve, the exact PK, dosing and
output handling, not the equations.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from immunopd.initial import initial_state
from immunopd.integrate import full_layout, full_rhs
from immunopd.solve import prepare


@functools.lru_cache(maxsize=8)
def _compiled_rhs(model, drugs):
    """The full rhs and its Jacobian, compiled once per model and drugs (parameters are arguments)."""
    rhs = full_rhs(model, drugs)
    return jax.jit(rhs), jax.jit(jax.jacfwd(rhs, argnums=1))


def scipy_solve(regimen, params=None, *, times, weight=None, bsa=None, method="Radau", rtol=1e-10, atol=1e-12, growth_law="gompertz",
                model=None):
    """``(names, states (T, S))`` at ``times`` for one patient, integrated by scipy (tests and bench/simulate.py).

    ``names`` is :func:`immunopd.integrate.full_layout`; log states are in their log coordinate.
    """
    model, reg, values, n, given = prepare(regimen, params, weight=weight, bsa=bsa, growth_law=growth_law, model=model)
    assert n == 1
    drugs = tuple(model.drug(d) for d in reg.drugs)
    p = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in values.items()}
    y0_named, ok = initial_state(model, p)
    assert bool(ok)
    names = full_layout(model, drugs)
    y0 = np.array([float(y0_named[k]) if k in y0_named else 0.0 for k in names])
    times = np.asarray(times, dtype=float)
    sched = reg.schedule(float(times[-1]), np.asarray(values["body_weight"]) if "body_weight" in given else None, 1,
                         bsas=np.asarray(values["body_surface_area"]) if "body_surface_area" in given else None)
    starts, ends, rates = sched.starts, sched.ends, sched.rates[0]
    assert not np.any(sched.boluses), "the scipy reference integrates infusions only"

    edges = np.unique(np.concatenate([[0.0], sched.jump_times[np.isfinite(sched.jump_times)], [times[-1]]]))
    edges = edges[(edges >= 0) & (edges <= times[-1])]
    out = np.full((times.size, y0.size), np.nan)
    y = y0
    if times[0] == 0.0:
        out[0] = y0
    rhs_p, jac_p = _compiled_rhs(model, drugs)
    for a, b in zip(edges[:-1], edges[1:]):
        mid = 0.5 * (a + b)  # the input is constant on [a, b): evaluate it at the midpoint
        u_mid = jnp.asarray(np.sum(np.where((mid >= starts) & (mid < ends), rates, 0.0), axis=-1))
        sel = (times > a) & (times <= b)
        # b itself is always evaluated: the next segment starts from the state at b, not at the
        # last output time inside this one
        t_eval = np.unique(np.append(times[sel], b))
        sol = solve_ivp(
            lambda t, yy, u=u_mid: np.asarray(rhs_p(t, yy, p, u)), (a, b), y, method=method, rtol=rtol, atol=atol,
            t_eval=t_eval,
            jac=(lambda t, yy, u=u_mid: np.asarray(jac_p(t, yy, p, u))) if method in ("Radau", "BDF") else None,
        )
        assert sol.success, sol.message
        if sel.any():
            out[sel] = sol.y.T[np.isin(t_eval, times[sel])]
        y = sol.y[:, -1]
    return names, out


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
