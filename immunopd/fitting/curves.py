"""Closed-form tumor-size models for fitting single lesions (JAX, differentiable).

Each model is ``size(t, theta)`` with ``t`` in days since treatment start and sizes in the
data's own unit (mm3, normalized volume...). ``initial_size`` is the size at t = 0.

| model | size(t) | source |
|---|---|---|
| exponential | V0 e^{g t} | |
| logistic | K V0 e^{g t} / (K + V0 (e^{g t} - 1)) | |
| gompertz | K (V0/K)^{e^{-g t}} | Gompertz; Laleh et al. 2022 |
| bertalanffy | classical von Bertalanffy (exponent 2/3) with plateau K | Benzekry et al. 2014, doi:10.1371/journal.pcbi.1003800 |
| general_bertalanffy | exponent gamma free in (0, 1) | as above |
| stein | V0 (e^{-d t} + e^{g t} - 1) (shrinkage plus regrowth) | Stein et al. 2008, Clin Cancer Res 14:8155, doi:10.1158/1078-0432.CCR-08-0587 (DOI unverified) |

The growth-law forms are those of :mod:`immunopd.models.growth` (the same lambda and K).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

__all__ = ["CurveModel", "CURVE_MODELS"]


@dataclass(frozen=True)
class CurveParameter:
    name: str
    unit: str
    lower: float
    upper: float
    guess: str  # how the initial value is set from the data: "first", "max", or a number as text


@dataclass(frozen=True)
class CurveModel:
    name: str
    parameters: tuple[CurveParameter, ...]
    function: object  # (t, dict of parameter values) -> size

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)


def _bertalanffy(t, v0, lam, k, gamma):
    om = 1.0 - gamma
    # extrapolated far before t = 0 the base can cross zero (the tumor "before birth"): size 0 there
    base = jnp.maximum(k**om + (v0**om - k**om) * jnp.exp(-lam * t), 1e-300)
    return base ** (1.0 / om)


_V0 = CurveParameter("initial_size", "data unit", 0.0, jnp.inf, "first")
_G = CurveParameter("growth_rate", "1/day", 0.0, 1.0, "0.005")
_K = CurveParameter("carrying_capacity", "data unit", 0.0, jnp.inf, "max")

CURVE_MODELS: dict[str, CurveModel] = {
    "exponential": CurveModel("exponential", (_V0, _G), lambda t, p: p["initial_size"] * jnp.exp(p["growth_rate"] * t)),
    "logistic": CurveModel(
        "logistic", (_V0, _G, _K),
        lambda t, p: p["carrying_capacity"] * p["initial_size"] * jnp.exp(p["growth_rate"] * t)
        / (p["carrying_capacity"] + p["initial_size"] * jnp.expm1(p["growth_rate"] * t)),
    ),
    "gompertz": CurveModel(
        "gompertz", (_V0, _G, _K),
        lambda t, p: p["carrying_capacity"] * jnp.exp(jnp.log(p["initial_size"] / p["carrying_capacity"]) * jnp.exp(-p["growth_rate"] * t)),
    ),
    "bertalanffy": CurveModel(
        "bertalanffy", (_V0, _G, _K),
        lambda t, p: _bertalanffy(t, p["initial_size"], p["growth_rate"], p["carrying_capacity"], 2.0 / 3.0),
    ),
    "general_bertalanffy": CurveModel(
        "general_bertalanffy", (_V0, _G, _K, CurveParameter("exponent", "-", 0.01, 0.99, "0.6667")),
        lambda t, p: _bertalanffy(t, p["initial_size"], p["growth_rate"], p["carrying_capacity"], p["exponent"]),
    ),
    "stein": CurveModel(
        "stein", (_V0, CurveParameter("shrinkage_rate", "1/day", 0.0, 1.0, "0.01"), _G),
        lambda t, p: p["initial_size"] * (jnp.exp(-p["shrinkage_rate"] * t) + jnp.expm1(p["growth_rate"] * t)),
    ),
}
