"""The pre-treatment initial state, derived from the model's own equations.

States with an ``initial`` expression take it (the tumor volumes at baseline). Every other
state starts at the steady state of the untreated system with those held fixed, found by
pseudo-transient continuation: implicit-Euler steps of the untreated ODE itself (in the
solver's coordinates: ln x for log states, x otherwise), ``(I/dt - J) du = F(u)``, with the
step ``dt`` starting at one day and growing as the residual falls (switched evolution
relaxation), so that it becomes Newton's method near the root (Kelley & Keyes 1998, SIAM J
Numer Anal 35:508, doi:10.1137/S0036142996304796); it stops when converged (at most
:data:`MAX_STEPS` steps). It starts from each state's
``guess``; it follows the untreated dynamics towards their stable equilibrium, and it reaches
steady states at 0 (a population with no source) that a Newton iteration in log space cannot.
Derivatives of the root come from the implicit function theorem (``jax.lax.custom_root``),
not from differentiating the iterations.

A patient whose iteration does not reach a steady state (a rate above 1e-8 per day relative
to its state, or to 1e-12 of its unit for a state at 0; or not finite) has ``ok = False``: the integrators report it as
:data:`NO_STEADY_STATE`, never as numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["initial_state", "NO_STEADY_STATE", "MAX_STEPS"]

#: status code of a patient whose untreated system has no steady state at baseline
NO_STEADY_STATE = 99
MAX_STEPS = 200
_FIRST_INV_DT = 1.0  # 1/day: the first pseudo-time step is one day
_TOLERANCE = 1e-8  # 1/day, relative to the state (absolute for log states)
_ZERO = 1e-300
_FLOOR = 1e-12  # state units: below this a linear state counts as 0 in the convergence test


def initial_state(model, p):
    """``({state name: value in integration coordinates}, ok)`` for one patient (scalar parameters)."""
    vals = model.initial_values(p, jnp)
    fixed = [s for s in model.states if s.initial is not None]
    free = [s for s in model.states if s.initial is None]
    base = {s.name: (jnp.log(vals[s.name]) if s.log else jnp.asarray(vals[s.name], dtype=jnp.float64)) for s in fixed}
    if not free:
        return base, jnp.asarray(True)
    logs = jnp.array([s.log for s in free])

    def coords(u):
        return {**base, **{s.name: u[i] for i, s in enumerate(free)}}

    def rates(u):
        d = model.derivatives(model.environment(coords(u), p, {}, jnp), jnp)
        return jnp.stack([d[s.name] for s in free])

    def scaled(u, r):  # rates relative to their state (absolute for log states), the convergence measure
        return r / jnp.where(logs, 1.0, jnp.maximum(jnp.abs(u), _FLOOR))

    def solve(f, u):
        eye = jnp.eye(u.shape[0])

        def step(carry):
            k, u, inv_dt, r, _ = carry
            du = jnp.linalg.solve(inv_dt * eye - jax.jacfwd(f)(u), r)
            # a population cannot go negative: clamp linear states at 0 (log states are free)
            new = jnp.where(logs, u + du, jnp.maximum(u + du, 0.0))
            r_new = f(new)
            # switched evolution relaxation: the step grows as the residual falls, so the
            # iteration turns into Newton's method near the root
            ratio = jnp.max(jnp.abs(r_new)) / jnp.maximum(jnp.max(jnp.abs(r)), _ZERO)
            inv_dt = jnp.where(jnp.isfinite(ratio), inv_dt * jnp.clip(ratio, 1e-3, 2.0), inv_dt)
            done = jnp.max(jnp.abs(scaled(new, r_new))) <= 1e-3 * _TOLERANCE
            return k + 1, new, inv_dt, r_new, done

        def more(carry):
            k, *_, done = carry
            return (k < MAX_STEPS) & ~done

        start = (0, u, jnp.asarray(_FIRST_INV_DT), f(u), jnp.asarray(False))
        return jax.lax.while_loop(more, step, start)[1]

    def tangent_solve(g, y):
        return jnp.linalg.solve(jax.jacfwd(g)(y), y)

    guess = jnp.stack([jnp.asarray(vals[s.name], dtype=jnp.float64) for s in free])
    u0 = jnp.where(logs, jnp.log(guess), guess)
    u = jax.lax.custom_root(rates, jax.lax.stop_gradient(u0), solve, tangent_solve)
    ok = jnp.all(jnp.isfinite(u)) & (jnp.max(jnp.abs(scaled(u, rates(u)))) <= _TOLERANCE)
    u = jnp.where(ok, u, u0)  # a failed patient integrates from its guess, flagged, never reported as numbers
    return coords(u), ok
