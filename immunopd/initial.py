"""The pre-treatment initial state, derived from the model's own equations.

States with an ``initial`` expression take it (the tumor volumes at baseline). Every other
state starts at the steady state of the untreated system with those held fixed, found by
pseudo-transient continuation: implicit-Euler steps of the untreated ODE itself (in the
solver's coordinates: ln x for log states, x otherwise), ``(I/dt - J) du = F(u)``, with the
step ``dt`` doubling from 0.1 day to ~1e12 days and then pure Newton steps (Kelley & Keyes
1998, SIAM J Numer Anal 35:508, doi:10.1137/S0036142996304796). It starts from each state's
``guess``; it follows the untreated dynamics towards their stable equilibrium, and it reaches
steady states at 0 (a population with no source) that a Newton iteration in log space cannot.
Derivatives of the root come from the implicit function theorem (``jax.lax.custom_root``),
not from differentiating the iterations.

A patient whose iteration does not reach a steady state (a rate above 1e-8 per day relative
to its state, or not finite) has ``ok = False``: the integrators report it as
:data:`NO_STEADY_STATE`, never as numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["initial_state", "NO_STEADY_STATE", "CONTINUATION_STEPS", "NEWTON_STEPS"]

#: status code of a patient whose untreated system has no steady state at baseline
NO_STEADY_STATE = 99
CONTINUATION_STEPS = 45  # dt = 0.1 * 2**k day: up to ~1.8e12 days
NEWTON_STEPS = 8
_TOLERANCE = 1e-8  # 1/day, relative to the state (absolute for log states)
_ZERO = 1e-300


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

    def solve(f, u):
        eye = jnp.eye(u.shape[0])

        def step(k, u):
            inv_dt = jnp.where(k < CONTINUATION_STEPS, 10.0 * 0.5 ** k, 0.0)
            du = jnp.linalg.solve(inv_dt * eye - jax.jacfwd(f)(u), f(u))
            new = u + du
            # a population cannot go negative: clamp linear states at 0 (log states are free)
            return jnp.where(logs, new, jnp.maximum(new, 0.0))

        return jax.lax.fori_loop(0, CONTINUATION_STEPS + NEWTON_STEPS, step, u)

    def tangent_solve(g, y):
        return jnp.linalg.solve(jax.jacfwd(g)(y), y)

    guess = jnp.stack([jnp.asarray(vals[s.name], dtype=jnp.float64) for s in free])
    u0 = jnp.where(logs, jnp.log(guess), guess)
    u = jax.lax.custom_root(rates, jax.lax.stop_gradient(u0), solve, tangent_solve)
    scale = jnp.where(logs, 1.0, jnp.maximum(jnp.abs(u), _ZERO))
    ok = jnp.all(jnp.isfinite(u)) & jnp.all(jnp.abs(rates(u)) <= _TOLERANCE * scale)
    u = jnp.where(ok, u, u0)  # a failed patient integrates from its guess, flagged, never reported as numbers
    return coords(u), ok
