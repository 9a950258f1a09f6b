"""Pharmacokinetic model types, each with its exact propagation between dose edges.

Amounts are in mg, clearances in L/day, volumes in L, so a central amount over its volume is
in mg/L (= ug/mL). Input is IV into the central compartment: zero-order infusions, and, for
models that allow it, boluses (an instantaneous amount at a dose edge).

- :class:`LinearPK` (1, 2 or 3 compartments, mammillary): linear and time-invariant, so its
  amounts come from the exact solution ``x(t) = r x_ss + sum_i e^{-l_i t} P_i (x0 - r x_ss)``
  between edges. The eigen-decomposition is that of the symmetrised system matrix: with flows
  ``Q`` symmetric and ``W = diag(1/V)``, ``A = Q W`` is similar to ``W^1/2 Q W^1/2`` (symmetric),
  so ``eigh`` gives real rates and spectral projectors for any number of compartments.
- :class:`TimeVaryingClearancePK`: the same structure with clearance
  ``CL(t) = CL exp(Emax t^h / (T50^h + t^h))`` (the Emax-in-time model of Bajaj et al. 2017,
  doi:10.1002/psp4.12143, t since the first dose = treatment start), or, with
  ``form="proportional"``, ``CL(t) = CL (1 + Emax t^h / (T50^h + t^h))`` (as avelumab's source
  writes it). It is not time-invariant,
  so no closed form exists; its amounts are integrated with the PD states at the solver's
  tolerance (``exact = False``), with the dose edges as jump times.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LinearPK", "TimeVaryingClearancePK", "ROLE_UNITS", "COMPARTMENTS"]

#: every PK role's unit and plausible bounds (used for the drug's parameter records)
ROLE_UNITS: dict[str, tuple[str, float, float, str]] = {
    "clearance": ("L/day", 1e-3, 1e4, "linear clearance from the central compartment"),
    "central_volume": ("L", 0.1, 1e4, "central volume"),
    "intercompartmental_clearance": ("L/day", 1e-3, 1e4, "clearance between central and first peripheral compartment"),
    "peripheral_volume": ("L", 0.1, 1e5, "first peripheral volume"),
    "intercompartmental_clearance_2": ("L/day", 1e-3, 1e4, "clearance between central and second peripheral compartment"),
    "peripheral_volume_2": ("L", 0.1, 1e5, "second peripheral volume"),
    "clearance_emax": ("-", -5.0, 5.0, "maximal change of log clearance over time (Emax in time)"),
    "clearance_t50": ("day", 1.0, 1e4, "time of half the clearance change"),
    "clearance_hill": ("-", 0.1, 20.0, "Hill coefficient of the clearance change over time"),
}
#: compartment coordinate of results; a drug's model uses the first ``compartments`` and "eliminated"
COMPARTMENTS: tuple[str, ...] = ("central", "peripheral_1", "peripheral_2", "eliminated")


@dataclass(frozen=True)
class LinearPK:
    """Linear mammillary PK with ``compartments`` = 1, 2 or 3 and IV input into the central one."""

    compartments: int = 2
    allows_bolus: bool = False
    exact: bool = True
    kind: str = "linear"

    def __post_init__(self) -> None:
        if self.compartments not in (1, 2, 3):
            from .errors import ModelSpecError, describe

            raise ModelSpecError(describe("LinearPK.compartments", self.compartments, "1, 2 or 3"))

    @property
    def roles(self) -> tuple[str, ...]:
        base = ("clearance", "central_volume", "intercompartmental_clearance", "peripheral_volume",
                "intercompartmental_clearance_2", "peripheral_volume_2")
        return base[: 2 * self.compartments]

    def describe(self) -> str:
        n = self.compartments
        return f"linear {n}-compartment" + (" (bolus or infusion)" if self.allows_bolus else " (IV infusion)")

    # ----------------------------------------------------------------- the linear system
    def system(self, v, xp):
        """(flows Q, 1/V) of the individual values ``v`` (role -> value): ``A = Q diag(1/V)``."""
        n = self.compartments
        cl, vols = v["clearance"], [v["central_volume"]]
        qs = []
        if n >= 2:
            qs.append(v["intercompartmental_clearance"])
            vols.append(v["peripheral_volume"])
        if n == 3:
            qs.append(v["intercompartmental_clearance_2"])
            vols.append(v["peripheral_volume_2"])
        rows = []
        for i in range(n):
            row = []
            for j in range(n):
                if i == 0 and j == 0:
                    row.append(-(cl + sum(qs)) if qs else -cl)
                elif i == 0 or j == 0:
                    row.append(qs[max(i, j) - 1])
                elif i == j:
                    row.append(-qs[i - 1])
                else:
                    row.append(0.0 * cl)
            rows.append(xp.stack([xp.asarray(x) for x in row]))
        return xp.stack(rows), xp.stack([1.0 / x for x in vols])

    def propagator(self, v, t_clearance=None):
        """Exact propagator: (rates l (n,), projectors P (n, n, n), x_ss (n,) for unit input, k10).

        ``x_ss`` is the steady state for 1 mg/day into the central compartment: every
        compartment at concentration 1/CL, so ``x_ss_i = V_i / CL``.
        """
        import jax.numpy as jnp

        q, winv = self.system(v, jnp)
        root = jnp.sqrt(winv)
        sym = root[:, None] * q * root[None, :]
        mu, u = jnp.linalg.eigh(sym)
        left = u / root[:, None]  # W^-1/2 u_i
        right = u * root[:, None]  # W^1/2 u_i
        proj = jnp.einsum("im,jm->mij", left, right)  # (modes, n, n)
        x_ss = (1.0 / winv) / v["clearance"]
        return -mu, proj, x_ss, v["clearance"] * winv[0]

    def rhs(self, amounts, rate, v, t, xp):
        """d/dt of (compartment amounts..., eliminated) at input ``rate`` mg/day (reference ODE form)."""
        q, winv = self.system(v, xp)
        conc = amounts * winv
        flows = q @ conc
        elim = v["clearance"] * conc[0]
        flows = flows.at[0].add(rate) if hasattr(flows, "at") else flows + xp.eye(self.compartments)[0] * rate
        return flows, elim


@dataclass(frozen=True)
class TimeVaryingClearancePK(LinearPK):
    """:class:`LinearPK` with ``CL(t) = CL exp(clearance_emax S(t))`` (``form="exponential"``) or
    ``CL (1 + clearance_emax S(t))`` (``form="proportional"``), ``S(t) = t^h / (clearance_t50^h + t^h)``."""

    exact: bool = False
    kind: str = "time-varying clearance"
    form: str = "exponential"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.form not in ("exponential", "proportional"):
            from .errors import ModelSpecError, describe

            raise ModelSpecError(describe("TimeVaryingClearancePK.form", self.form, "'exponential' or 'proportional'"))

    @property
    def roles(self) -> tuple[str, ...]:
        return super().roles + ("clearance_emax", "clearance_t50", "clearance_hill")

    def describe(self) -> str:
        return super().describe() + ", clearance Emax in time"

    def clearance_at(self, v, t, xp):
        th = xp.maximum(t, 0.0) ** v["clearance_hill"]
        change = v["clearance_emax"] * th / (v["clearance_t50"] ** v["clearance_hill"] + th)
        return v["clearance"] * (xp.exp(change) if self.form == "exponential" else 1.0 + change)

    def rhs(self, amounts, rate, v, t, xp):
        return super().rhs(amounts, rate, {**v, "clearance": self.clearance_at(v, t, xp)}, t, xp)
