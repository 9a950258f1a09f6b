"""Antibody pharmacokinetics and receptor occupancy.

Each antibody follows linear two-compartment PK with zero-order IV infusion ``u(t)`` (mg/day):

    dAc/dt = u(t) - (CL/V1) Ac - (Q/V1) Ac + (Q/V2) Ap
    dAp/dt = (Q/V1) Ac - (Q/V2) Ap

with amounts in mg, clearances in L/day and volumes in L, so ``Ac/V1`` is in mg/L (= ug/mL).
Clearances scale with body weight as ``(WT/WT_ref)**e_CL`` and volumes as ``(WT/WT_ref)**e_V``
(the allometric form of the population-PK papers below).

Occupancy of the target in the tumor assumes fast binding and target << drug:

    RO = p C / (p C + EC50)

where ``p`` is the tumor-interstitium-to-serum concentration ratio (uncertain, 0.1-0.9).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

__all__ = ["Drug", "DRUGS", "TARGETS", "two_compartment", "occupancy", "weight_scaled"]

#: the drug slots of the core model: one anti-PD-1 and one anti-Clever-1 antibody
TARGETS: tuple[str, ...] = ("pd1", "clever1")


@dataclass(frozen=True)
class Drug:
    """A dosable antibody: its target slot and typical population-PK values."""

    name: str
    target: str  # "pd1" or "clever1"
    clearance: float  # L/day, typical patient at ref_weight
    central_volume: float  # L
    intercompartmental_clearance: float  # L/day
    peripheral_volume: float  # L
    ref_weight: float  # kg
    clearance_weight_exponent: float
    volume_weight_exponent: float
    ec50: float  # ug/mL, occupancy half-max in the tumor
    pk_source: str
    ec50_source: str


DRUGS: dict[str, Drug] = {
    "pembrolizumab": Drug(
        name="pembrolizumab",
        target="pd1",
        clearance=0.22,
        central_volume=3.48,
        intercompartmental_clearance=0.795,
        peripheral_volume=4.06,
        ref_weight=76.8,
        clearance_weight_exponent=0.595,
        volume_weight_exponent=0.489,
        ec50=0.535,
        pk_source="Ahamadi et al. 2017, CPT Pharmacometrics Syst Pharmacol 6:49, doi:10.1002/psp4.12139 "
        "(typical values as transcribed in nlmixr2lib Ahamadi_2017_pembrolizumab)",
        ec50_source="IL-2 stimulation IC50 0.535 ug/mL, Elassaiss-Schaap et al. 2017, doi:10.1002/psp4.12132",
    ),
    "nivolumab": Drug(
        name="nivolumab",
        target="pd1",
        clearance=0.2256,
        central_volume=3.63,
        intercompartmental_clearance=0.7704,
        peripheral_volume=2.78,
        ref_weight=80.0,
        clearance_weight_exponent=0.566,
        volume_weight_exponent=0.597,
        ec50=0.38,
        pk_source="Bajaj et al. 2017, CPT Pharmacometrics Syst Pharmacol 6:58, doi:10.1002/psp4.12143 "
        "(baseline CL; the time-varying CL decrease is not modelled; Vc weight exponent also applied to Vp: assumed)",
        ec50_source="KD 2.6 nM x 146 kDa = 0.38 ug/mL (QSP-IO example 1, citing Wang et al. 2014, "
        "doi:10.1158/2326-6066.CIR-14-0040)",
    ),
    "bexmarilimab": Drug(
        name="bexmarilimab",
        target="clever1",
        clearance=0.2,
        central_volume=3.5,
        intercompartmental_clearance=0.8,
        peripheral_volume=3.5,
        ref_weight=70.0,
        clearance_weight_exponent=0.5,
        volume_weight_exponent=0.5,
        ec50=0.15,
        pk_source="assumed: no public population PK for bexmarilimab; typical IgG4 two-compartment values "
        "(cf. pembrolizumab/nivolumab above)",
        ec50_source="assumed: KD 1 nM x 146 kDa; no public affinity value found",
    ),
}


def weight_scaled(typical: jnp.ndarray, weight: jnp.ndarray, ref_weight: jnp.ndarray, exponent: jnp.ndarray):
    """Allometric scaling ``typical * (weight/ref_weight)**exponent``."""
    return typical * (weight / ref_weight) ** exponent


def two_compartment(central, peripheral, infusion_rate, clearance, v1, q, v2):
    """Right-hand side of linear two-compartment PK; returns (dAc/dt, dAp/dt, elimination rate).

    Amounts in mg, rates in mg/day, clearances in L/day, volumes in L.
    """
    c_central = central / v1
    c_peripheral = peripheral / v2
    elimination = clearance * c_central
    distribution = q * (c_central - c_peripheral)
    return infusion_rate - elimination - distribution, distribution, elimination


def occupancy(concentration, partition, ec50):
    """Fraction of target bound in the tumor, ``p C / (p C + EC50)`` (0-1)."""
    exposed = partition * jnp.maximum(concentration, 0.0)
    return exposed / (exposed + ec50)


def propagator(clearance, v1, q, v2):
    """Exact propagator of two-compartment PK with constant input into the central compartment.

    With k10 = CL/V1, k12 = Q/V1, k21 = Q/V2 the system x' = A x + (r, 0) has
    A = [[-(k10+k12), k21], [k12, -k21]], eigenvalues -l1, -l2 with
    l1,2 = (s +- sqrt(s^2 - 4 k10 k21))/2, s = k10 + k12 + k21 (the standard alpha, beta), and
    spectral projectors P1 = (A + l2 I)/(l2 - l1), P2 = (A + l1 I)/(l1 - l2). The steady state
    for unit input is x_ss = (1/k10, k12/(k10 k21)). Returns (l, P, x_ss, k10) with l (2,),
    P (2, 2, 2), x_ss (2,).
    """
    k10, k12, k21 = clearance / v1, q / v1, q / v2
    s = k10 + k12 + k21
    disc = jnp.sqrt(s * s - 4.0 * k10 * k21)
    l1, l2 = 0.5 * (s + disc), 0.5 * (s - disc)
    a = jnp.array([[-(k10 + k12), k21], [k12, -k21]])
    eye = jnp.eye(2)
    projectors = jnp.stack([(a + l2 * eye) / (l2 - l1), (a + l1 * eye) / (l1 - l2)])
    x_ss = jnp.stack([1.0 / k10, k12 / (k10 * k21)])
    return jnp.stack([l1, l2]), projectors, x_ss, k10


def advance(prop, amounts, eliminated, rate, dt):
    """Exact amounts (central, peripheral) and cumulative elimination after ``dt`` days at ``rate`` mg/day.

    x(dt) = r x_ss + sum_i e^{-l_i dt} P_i (x0 - r x_ss); the elimination k10 * integral of
    the central amount uses the integral of each exponential, (1 - e^{-l_i dt})/l_i.
    """
    lam, proj, x_ss, k10 = prop
    # Written with 1 - e^{-l dt} = -expm1(-l dt) so that dt = 0 returns x0 exactly (the
    # form r x_ss + e^{-l dt}(x0 - r x_ss) loses ~1e-11 mg to cancellation there).
    free = jnp.einsum("ijk,k->ij", proj, amounts)  # (2 modes, 2 compartments)
    forced = rate * jnp.einsum("ijk,k->ij", proj, x_ss)
    decay = jnp.exp(-lam * dt)
    rise = -jnp.expm1(-lam * dt)
    new = decay @ free + rise @ forced
    integral_central = rate * x_ss[0] * dt + (rise / lam) @ (free - forced)[:, 0]
    return new, eliminated + k10 * integral_central
