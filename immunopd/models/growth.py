"""Tumor growth laws, as specific growth rates ``g(V) = (dV/dt)/V`` and their closed forms.

All laws share the parameters ``growth_rate`` (lambda, 1/day) and, where bounded,
``carrying_capacity`` (K, mm3):

| law | g(V) | V(t) with no immune kill |
|---|---|---|
| exponential | lambda | V0 exp(lambda t) |
| logistic | lambda (1 - V/K) | K V0 e^{lambda t} / (K + V0 (e^{lambda t} - 1)) |
| gompertz | lambda ln(K/V) | K exp(ln(V0/K) e^{-lambda t}) |
| bertalanffy | lambda/(1-gamma) ((K/V)^(1-gamma) - 1) | [K^(1-g) + (V0^(1-g) - K^(1-g)) e^{-lambda t}]^(1/(1-g)) |

The generalized von Bertalanffy law ``dV/dt = a V^gamma - b V`` is written with
``b = lambda/(1-gamma)`` and ``a = b K^(1-gamma)``, so K is its plateau, gamma = 2/3 gives the
classical law, and gamma -> 1 tends to Gompertz with the same lambda and K
(Benzekry et al. 2014, PLoS Comput Biol 10:e1003800, doi:10.1371/journal.pcbi.1003800).
"""

from __future__ import annotations

import numpy as np

__all__ = ["GROWTH_LAWS", "specific_growth_rate", "closed_form", "growth_expression"]

GROWTH_LAWS: tuple[str, ...] = ("exponential", "logistic", "gompertz", "bertalanffy")

# Volumes below this (mm3, about one cell) are treated as this inside logs and powers, so a
# tumor driven to zero never produces log(0) while V * g(V) still tends to zero.
_TINY_VOLUME = 1e-6


def growth_expression(law: str, volume: str = "tumor_volume") -> str:
    """``g(V)`` of ``law`` as model-expression text (the model declaration and SBML use it)."""
    v = f"max({volume}, {_TINY_VOLUME!r})"
    texts = {
        "exponential": "growth_rate",
        "logistic": f"growth_rate * (1 - {v} / carrying_capacity)",
        "gompertz": f"growth_rate * log(carrying_capacity / {v})",
        "bertalanffy": f"growth_rate / (1 - bertalanffy_exponent) * ((carrying_capacity / {v}) ** (1 - bertalanffy_exponent) - 1)",
    }
    if law not in texts:
        raise ValueError(f"growth law {law!r} is not one of {GROWTH_LAWS}")
    return texts[law]


def specific_growth_rate(law: str, volume, growth_rate, carrying_capacity, bertalanffy_exponent):
    """``g(V)`` in 1/day for ``law`` (a static string), elementwise over arrays."""
    import jax.numpy as jnp  # here, so the declarations (and `immunopd params`) load without JAX

    v = jnp.maximum(volume, _TINY_VOLUME)
    if law == "exponential":
        return growth_rate * jnp.ones_like(v)
    if law == "logistic":
        return growth_rate * (1.0 - v / carrying_capacity)
    if law == "gompertz":
        return growth_rate * jnp.log(carrying_capacity / v)
    if law == "bertalanffy":
        one_minus = 1.0 - bertalanffy_exponent
        return growth_rate / one_minus * ((carrying_capacity / v) ** one_minus - 1.0)
    raise ValueError(f"growth law {law!r} is not one of {GROWTH_LAWS}")


def closed_form(law: str, t, v0, growth_rate, carrying_capacity=np.inf, bertalanffy_exponent=2.0 / 3.0):
    """Untreated volume V(t) (mm3) in closed form, NumPy, for tests and fitting."""
    t = np.asarray(t, dtype=float)
    lam, k = growth_rate, carrying_capacity
    if law == "exponential":
        return v0 * np.exp(lam * t)
    if law == "logistic":
        e = np.exp(lam * t)
        return k * v0 * e / (k + v0 * (e - 1.0))
    if law == "gompertz":
        return k * np.exp(np.log(v0 / k) * np.exp(-lam * t))
    if law == "bertalanffy":
        om = 1.0 - bertalanffy_exponent
        return (k**om + (v0**om - k**om) * np.exp(-lam * t)) ** (1.0 / om)
    raise ValueError(f"growth law {law!r} is not one of {GROWTH_LAWS}")
