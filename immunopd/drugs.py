"""Drugs as records: one declaration holds a drug's target, PK, potency, covariates and presets.

A :class:`Drug` generates its own parameter records, named ``<drug>_<role>``
(``pembrolizumab_clearance``, ``nivolumab_ec50``, ...), each with the drug's own source, so a
result of a nivolumab run carries nivolumab's citations. Covariate effects
(:class:`CovariateEffect`) are parameters too (``<drug>_<role>_<covariate>_effect``): they can
be varied, fitted and sampled like any other.

Occupancy of the target in the tumor (fast binding, target << drug):
``RO = tumor_partition C / (tumor_partition C + EC50)`` with C the serum concentration
(ug/mL); several drugs on one target at once are refused by the regimen. The potency records
what kind of number the EC50 is (a binding KD converted with the molecular weight, or a
functional IC50), because the two are not interchangeable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ModelSpecError, describe
from .models.parameters import Parameter
from .pkmodels import ROLE_UNITS, LinearPK

__all__ = ["Drug", "Potency", "CovariateEffect", "PKValue", "register", "known_drug", "known_drugs"]

POTENCY_KINDS = ("binding KD", "functional IC50", "functional EC50", "assumed")


@dataclass(frozen=True)
class Potency:
    """The drug's potency at its target: ``value`` in ``unit`` ("nM" or "ug/mL")."""

    value: float
    unit: str
    kind: str
    source: str

    def __post_init__(self) -> None:
        if self.unit not in ("nM", "ug/mL"):
            raise ModelSpecError(describe("Potency.unit", self.unit, "'nM' or 'ug/mL'"))
        if self.kind not in POTENCY_KINDS:
            raise ModelSpecError(describe("Potency.kind", self.kind, f"one of {list(POTENCY_KINDS)}"))

    def ec50_ug_per_ml(self, molecular_weight_kda: float) -> float:
        """In ug/mL: nM x kDa / 1000 (1 nM of a 146 kDa IgG is 0.146 ug/mL)."""
        return self.value if self.unit == "ug/mL" else self.value * molecular_weight_kda / 1000.0


@dataclass(frozen=True)
class PKValue:
    """A typical PK value with its own source."""

    value: float
    source: str


@dataclass(frozen=True)
class CovariateEffect:
    """Effect of a patient covariate (a model parameter such as ``body_weight``) on a PK role.

    ``form``: ``"power"`` ``(cov/reference)**effect`` (allometry), ``"exponential"``
    ``exp(effect (cov - reference))``, or ``"categorical"`` ``(1 + effect)**cov`` for a 0/1
    indicator.
    """

    role: str
    covariate: str
    form: str
    effect: float
    reference: float
    source: str
    lower: float = -10.0
    upper: float = 10.0

    def __post_init__(self) -> None:
        if self.form not in ("power", "exponential", "categorical"):
            raise ModelSpecError(describe("CovariateEffect.form", self.form, "'power', 'exponential' or 'categorical'"))

    def factor(self, cov, effect, xp):
        if self.form == "power":
            return (cov / self.reference) ** effect
        if self.form == "exponential":
            return xp.exp(effect * (cov - self.reference))
        return (1.0 + effect) ** cov


@dataclass(frozen=True, eq=False)
class Drug:
    """One dosable drug.

    ``pk_values`` maps each role of ``pk`` (see :data:`immunopd.pkmodels.ROLE_UNITS`) to a
    :class:`PKValue` at the covariates' reference values. ``presets`` maps a short name to
    regimen text without the drug name (``{"200mg-q3w": "200 mg q3w over 30 min"}``); the
    preset is then called ``<drug>-<name>``.
    """

    name: str
    target: str
    kind: str  # "antibody", "small molecule", "oligonucleotide", ...
    molecular_weight_kda: float
    pk: LinearPK
    pk_values: dict[str, PKValue]
    potency: Potency
    tumor_partition: PKValue
    covariates: tuple[CovariateEffect, ...] = ()
    presets: dict[str, str] = field(default_factory=dict)
    description: str = ""
    default_duration_min: float = 30.0

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ModelSpecError(describe("Drug.name", self.name, "a lower-case identifier"))
        missing = [r for r in self.pk.roles if r not in self.pk_values]
        extra = [r for r in self.pk_values if r not in self.pk.roles]
        if missing or extra:
            raise ModelSpecError(describe(f"drug {self.name}.pk_values", sorted(self.pk_values),
                                          f"exactly the roles of {self.pk.describe()}: {list(self.pk.roles)}"))
        for c in self.covariates:
            if c.role not in self.pk.roles:
                raise ModelSpecError(describe(f"drug {self.name} covariate effect role", c.role, f"one of {list(self.pk.roles)}"))

    # ------------------------------------------------------------------ parameters
    def parameter_name(self, role: str) -> str:
        return f"{self.name}_{role}"

    def covariate_parameter(self, c: CovariateEffect) -> str:
        return f"{self.name}_{c.role}_{c.covariate}_effect"

    def parameters(self) -> list[Parameter]:
        out = []
        for role in self.pk.roles:
            unit, lo, hi, what = ROLE_UNITS[role]
            pv = self.pk_values[role]
            scale = "linear" if lo < 0 else "log"
            out.append(Parameter(self.parameter_name(role), float(pv.value), unit, lo, hi, pv.source,
                                 f"{self.name} {what} (typical, at the covariates' reference values)", scale=scale))
        ec50 = self.potency.ec50_ug_per_ml(self.molecular_weight_kda)
        conversion = "" if self.potency.unit == "ug/mL" else f" ({self.potency.value:g} nM x {self.molecular_weight_kda:g} kDa)"
        out.append(Parameter(self.parameter_name("ec50"), ec50, "ug/mL", 1e-4, 1e3,
                             f"{self.potency.source} ({self.potency.kind}{conversion})",
                             f"{self.name} tumor concentration for 50 % {self.target} occupancy"))
        out.append(Parameter(self.parameter_name("tumor_partition"), self.tumor_partition.value, "-", 1e-3, 1.0,
                             self.tumor_partition.source, f"{self.name} tumor-interstitium-to-serum concentration ratio",
                             scale="linear"))
        for c in self.covariates:
            out.append(Parameter(self.covariate_parameter(c), c.effect, "-", c.lower, c.upper, c.source,
                                 f"{c.form} effect of {c.covariate} on {self.name} {c.role} (reference {c.reference:g})",
                                 scale="linear"))
        return out

    def individual(self, p, xp):
        """Individual PK values (role -> value) with every covariate effect applied."""
        v = {role: p[self.parameter_name(role)] for role in self.pk.roles}
        for c in self.covariates:
            v[c.role] = v[c.role] * c.factor(p[c.covariate], p[self.covariate_parameter(c)], xp)
        return v

    def ec50(self, p):
        return p[self.parameter_name("ec50")]

    def partition(self, p):
        return p[self.parameter_name("tumor_partition")]

    def preset_texts(self) -> dict[str, str]:
        return {f"{self.name}-{k}": f"{self.name} {text}" for k, text in self.presets.items()}

    def summary(self) -> dict[str, str]:
        """One row of ``immunopd drugs``."""
        return {
            "drug": self.name,
            "target": self.target,
            "kind": self.kind,
            "pk": self.pk.describe(),
            "potency": f"{self.potency.value:g} {self.potency.unit} ({self.potency.kind})",
            "pk source": self.pk_values["clearance"].source,
            "potency source": self.potency.source,
            "presets": ", ".join(self.preset_texts()) or "-",
        }


_REGISTERED: dict[str, Drug] = {}


def register(drug: Drug) -> None:
    """Make ``drug`` known to the regimen parser (models register the drugs they declare)."""
    _REGISTERED[drug.name] = drug


def known_drugs() -> dict[str, Drug]:
    """The package's drugs and every drug a model has registered, by name."""
    from .models.drugs import DRUGS

    return {**DRUGS, **_REGISTERED}


def known_drug(name: str) -> Drug | None:
    return known_drugs().get(name.lower()) if isinstance(name, str) else None
