"""Virtual populations: seeded, reproducible parameter sets with covariates.

A :class:`Population` is a labelled table of virtual patients (an ``xarray.Dataset`` over
``patient``): one variable per parameter that differs from the model defaults, plus
covariates. It round-trips through netCDF with its sampling recipe in the attrs, and feeds
:func:`immunopd.simulate` and :func:`immunopd.trial.run_trial` directly.

Sampling (:func:`sample`), in the style of NONMEM/mrgsolve between-subject variability:

- log-normal parameters ``p_i = typical * exp(eta_i)``, ``eta ~ N(0, Omega)`` with
  ``omega_k^2 = ln(1 + CV_k^2)`` (so ``CV`` is the coefficient of variation of ``p``) and
  optional correlations between the etas;
- uniform parameters on an interval (the "plausible patient" sampling of Allen et al. 2016,
  CPT Pharmacometrics Syst Pharmacol 5:140, doi:10.1002/psp4.12063);
- covariates: body weight (kg), baseline tumor volume (mm3), baseline infiltration (a hot/cold
  draw that sets ``tcell_exclusion``) and baseline plasma sClever-1 (ng/mL, computed from each
  patient's quasi-steady state, so it follows ``sclever1_release`` and the other parameters).

A draw outside a parameter's bounds is redrawn (the distributions are truncated at the
bounds listed in ``immunopd params``), so every virtual patient is a valid parameter set.

Eligibility (``eligibility="progressing"``, the default): patients enter immunotherapy trials
with progressing disease (e.g. OAK enrolled NSCLC progressing after platinum chemotherapy,
Rittmeyer et al. 2017, Lancet 389:255, doi:10.1016/S0140-6736(16)32517-X), so a drawn patient
whose untreated lesion would shrink (untreated net growth of the viable tumor at baseline
<= 0: the immune response already controls it) is not eligible and is replaced by the next
eligible draw, as a trial screens patients. ``eligibility=None`` keeps every draw (the
sampling distributions exactly as specified). Each patient's untreated net growth rate at
baseline is kept as the covariate ``baseline_net_growth`` (1/day).
The same ``seed`` and recipe give the same population on every machine (NumPy's PCG64).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .errors import InputError, InputTypeError, describe

__all__ = ["Population", "Covariates", "sample", "DEFAULT_CV", "ELIGIBILITY", "untreated_net_growth"]

#: who may enter a virtual trial (see the module doc)
ELIGIBILITY = ("progressing", None)

#: between-patient coefficients of variation used by default (all "assumed": no published
#: population analysis of this model exists; values give several-fold spread, as seen in
#: fitted tumor growth and kill rates of trial data, e.g. Stein et al. 2008, doi:10.1158/1078-0432.CCR-07-4331)
DEFAULT_CV: dict[str, float] = {
    "growth_rate": 0.7,
    "kill_rate": 0.5,
    "effector_influx": 0.5,
    "effector_expansion": 0.3,
    "exhaustion_rate": 0.3,
    "pdl1_upregulation": 0.5,
    "sclever1_release": 0.5,
}


@dataclass(frozen=True)
class Covariates:
    """How covariates are drawn (units in the names).

    ``weight_median_kg``/``weight_cv``: log-normal body weight (assumed: median 75 kg, CV 20%,
    typical of adult oncology population-PK cohorts). ``baseline_volume_median_mm3`` /
    ``baseline_volume_log_sd``: log-normal baseline tumor volume; the defaults are the median
    (20,580 mm3) and log-SD (1.83) of the baseline target-lesion volumes (pi/6 LD^3) of the
    immunotherapy arms of Ghaffari Laleh et al. 2022 (doi:10.1371/journal.pcbi.1009822), as
    shipped in data/laleh2022 (checked in tests/test_population.py). ``cold_fraction``: share
    of "cold" (T-cell excluded) tumors, which get ``tcell_exclusion = cold_exclusion``
    (assumed: 0.4, roughly the immune-desert plus excluded share reported for NSCLC; not
    verified here). ``height_median_cm``/``height_cv``: log-normal height (assumed: median 170 cm,
    CV 5 %, independent of weight), which with the weight gives ``body_surface_area`` by the
    Mosteller formula (doi:10.1056/NEJM198710223171717) for mg/m2 doses and BSA-scaled PK.
    ``None`` for a field leaves that parameter at its default/typical value.
    """

    weight_median_kg: float | None = 75.0
    weight_cv: float = 0.2
    baseline_volume_median_mm3: float | None = 20580.0
    baseline_volume_log_sd: float = 1.83
    cold_fraction: float | None = 0.4
    cold_exclusion: float = 0.9
    height_median_cm: float | None = 170.0
    height_cv: float = 0.05

    def __post_init__(self) -> None:
        for name in ("weight_median_kg", "baseline_volume_median_mm3", "height_median_cm"):
            v = getattr(self, name)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise InputError(describe(f"covariates.{name}", v, "a finite value > 0, or None"))
        for name in ("weight_cv", "baseline_volume_log_sd", "height_cv"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise InputError(describe(f"covariates.{name}", v, "a finite value >= 0"))
        if self.cold_fraction is not None and not (0 <= self.cold_fraction <= 1):
            raise InputError(describe("covariates.cold_fraction", self.cold_fraction, "a fraction in [0, 1], or None"))
        if not (0 <= self.cold_exclusion < 1):
            raise InputError(describe("covariates.cold_exclusion", self.cold_exclusion, "a fraction in [0, 1)"))


@dataclass(frozen=True)
class Population:
    """Virtual patients as a Dataset over ``patient`` (parameters and covariates)."""

    data: xr.Dataset = field(repr=False)

    def __len__(self) -> int:
        return int(self.data.sizes["patient"])

    def __repr__(self) -> str:
        names = ", ".join(self.parameter_names)
        return f"Population({len(self)} patients; parameters: {names}; seed={self.data.attrs.get('seed')})"

    @property
    def parameter_names(self) -> list[str]:
        return [k for k, v in self.data.data_vars.items() if v.attrs.get("kind") == "parameter"]

    def params(self) -> dict[str, np.ndarray]:
        """Parameter overrides for :func:`immunopd.simulate`, each of shape ``(patients,)``."""
        return {k: self.data[k].values.astype(np.float64) for k in self.parameter_names}

    def isel(self, index) -> "Population":
        """A sub-population (NumPy index or boolean mask over patients), patient ids kept."""
        return Population(self.data.isel(patient=index))

    def to_netcdf(self, path: str | os.PathLike):
        from .io import write_netcdf

        return write_netcdf(self.data, path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Population":
        from .io import open_result

        ds = open_result(path)
        if ds.attrs.get("title") != "immunopd virtual population":
            raise InputError(describe("population file", str(path), "a file written by Population.to_netcdf"))
        return cls(ds)

    @classmethod
    def from_params(cls, params: Mapping[str, np.ndarray], *, model=None, **attrs) -> "Population":
        """Wrap explicit parameter arrays (validated against the model's parameter table)."""
        model = _model(model)
        values, n = model.parameters.resolve(dict(params))
        n = n or 1
        data = {k: ("patient", np.broadcast_to(values[k], (n,)).copy(), _param_attrs(k, model)) for k in params}
        ds = xr.Dataset(data, coords={"patient": np.arange(n)})
        _add_baseline_sclever1(ds, model)
        ds.attrs.update({"title": "immunopd virtual population", **{k: _attr(v) for k, v in attrs.items()}})
        return cls(ds)


def _attr(v):
    return v if isinstance(v, (int, float, str)) else json.dumps(v)


def _model(model):
    from .solve import resolve_model

    return resolve_model(model)


def _param_attrs(name: str, model=None) -> dict:
    spec = _model(model).parameters[name]
    return {"units": spec.unit, "long_name": spec.description, "source": spec.source, "kind": "parameter"}


def _truncated(rng, draw, lower, upper, name, tries: int = 100) -> np.ndarray:
    """Redraw entries outside [lower, upper] (bounds of the parameter table)."""
    x = draw(None)
    for _ in range(tries):
        bad = (x < lower) | (x > upper)
        if not bad.any():
            return x
        x[bad] = draw(int(bad.sum()))
    raise InputError(
        describe(f"variability of {name}", "most draws outside the bounds", f"a distribution mostly inside [{lower:g}, {upper:g}]")
    )


def sample(
    n: int,
    *,
    seed: int,
    cv: Mapping[str, float] | None = None,
    uniform: Mapping[str, tuple[float, float]] | None = None,
    log_uniform: Mapping[str, tuple[float, float]] | None = None,
    correlation: Mapping[tuple[str, str], float] | None = None,
    typical: Mapping[str, float] | None = None,
    covariates: Covariates | None = None,
    eligibility: str | None = "progressing",
    model=None,
) -> Population:
    """Sample ``n`` virtual patients of ``model`` (default the core model).

    Parameters
    ----------
    n
        Number of patients.
    seed
        Seed of NumPy's default generator: same seed and arguments, same population.
    cv
        Log-normal variability: parameter name -> coefficient of variation (default
        :data:`DEFAULT_CV`; ``{}`` for none).
    uniform
        Parameter name -> ``(low, high)`` in the parameter's unit, sampled uniformly.
    log_uniform
        Parameter name -> ``(low, high)``, ``0 < low < high``, in the parameter's unit, sampled
        uniformly on the log scale (each decade equally likely): for a parameter whose default
        is 0 (off) and whose magnitude is unknown over decades.
    correlation
        ``{(name_a, name_b): rho}`` between log-normal parameters (on the eta scale).
    typical
        Typical values (medians) overriding the model defaults, in the parameter's unit.
    covariates
        :class:`Covariates` (default ``Covariates()``).
    eligibility
        ``"progressing"`` (default): only patients whose untreated lesion grows at baseline
        (see the module doc); ``None``: every draw.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(describe("n", n, "an integer number of patients >= 1"))
    model = _model(model)
    table = model.parameters
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(describe("seed", seed, "an integer >= 0"))
    cv = dict(DEFAULT_CV if cv is None else cv)
    uniform = dict(uniform or {})
    log_uniform = dict(log_uniform or {})
    typical = dict(typical or {})
    covariates = Covariates() if covariates is None else covariates
    if not isinstance(covariates, Covariates):
        raise InputTypeError(describe("covariates", covariates, "a Covariates instance"))
    if eligibility not in ELIGIBILITY:
        raise InputError(describe("eligibility", eligibility, f"one of {list(ELIGIBILITY)}"))
    for label, names in (("cv", cv), ("uniform", uniform), ("log_uniform", log_uniform), ("typical", typical)):
        for name in names:
            table[name]  # unknown names raise with a suggestion
    for (label_a, a), (label_b, b) in itertools.combinations((("cv", cv), ("uniform", uniform), ("log_uniform", log_uniform)), 2):
        both = sorted(set(a) & set(b))
        if both:
            raise InputError(describe(f"{label_a} and {label_b}", both, "each parameter in at most one of them"))
    for name, c in cv.items():
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not np.isfinite(c) or c < 0:
            raise InputError(describe(f"cv[{name!r}]", c, "a coefficient of variation >= 0 (0.3 = 30%)"))
    for label, ranges, floor, floor_text in (("uniform", uniform, -np.inf, ""), ("log_uniform", log_uniform, 0.0, "0 < ")):
        for name, bounds in ranges.items():
            spec = table[name]
            try:
                lo, hi = (float(b) for b in bounds)
            except (TypeError, ValueError):
                raise InputError(describe(f"{label}[{name!r}]", bounds, "a (low, high) pair")) from None
            if not (floor < lo < hi and spec.lower <= lo and hi <= spec.upper):
                raise InputError(describe(f"{label}[{name!r}]", bounds,
                                          f"{floor_text}low < high within [{spec.lower:g}, {spec.upper:g}] {spec.unit}"))
    typical_values, _ = table.resolve(typical)

    rng = np.random.default_rng(seed)
    names = list(cv)
    corr = np.eye(len(names))
    for pair, rho in (correlation or {}).items():
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(p in names for p in pair) and pair[0] != pair[1]):
            raise InputError(describe("correlation key", pair, f"a pair of two different log-normal parameters from {names}"))
        if not (-1 < rho < 1):
            raise InputError(describe(f"correlation[{pair}]", rho, "a correlation in (-1, 1)"))
        i, j = names.index(pair[0]), names.index(pair[1])
        corr[i, j] = corr[j, i] = rho
    try:
        chol = np.linalg.cholesky(corr) if names else corr
    except np.linalg.LinAlgError:
        raise InputError(describe("correlation", dict(correlation or {}), "a positive-definite correlation matrix")) from None
    omega = np.sqrt(np.log1p(np.array([cv[k] for k in names]) ** 2))

    cov = covariates

    def draw(m: int):
        """``m`` patients from ``rng``: (parameter values, cold flags or None, heights or None)."""
        values: dict[str, np.ndarray] = {}
        etas = (rng.standard_normal((m, len(names))) @ chol.T) * omega if names else np.zeros((m, 0))
        for k, name in enumerate(names):
            spec = table[name]
            median = float(typical_values[name])
            x = median * np.exp(etas[:, k])
            values[name] = _truncated(
                rng, lambda q, k=k, median=median, x=x: x.copy() if q is None else median * np.exp(omega[k] * rng.standard_normal(q)),
                spec.lower, spec.upper, name,
            )
        for name, (lo, hi) in uniform.items():
            values[name] = rng.uniform(lo, hi, m)
        for name, (lo, hi) in log_uniform.items():
            values[name] = np.exp(rng.uniform(np.log(lo), np.log(hi), m))

        if cov.weight_median_kg is not None:
            s = np.sqrt(np.log1p(cov.weight_cv**2))
            spec = table["body_weight"]
            values["body_weight"] = _truncated(
                rng, lambda q: cov.weight_median_kg * np.exp(s * rng.standard_normal(m if q is None else q)), spec.lower, spec.upper, "body_weight"
            )
        if cov.baseline_volume_median_mm3 is not None:
            spec = table["baseline_tumor_volume"]
            values["baseline_tumor_volume"] = _truncated(
                rng,
                lambda q: cov.baseline_volume_median_mm3 * np.exp(cov.baseline_volume_log_sd * rng.standard_normal(m if q is None else q)),
                spec.lower, spec.upper, "baseline_tumor_volume",
            )
        cold = None
        if cov.cold_fraction is not None:
            cold = rng.random(m) < cov.cold_fraction
            values["tcell_exclusion"] = np.where(cold, cov.cold_exclusion, 0.0)
        height = None
        # drawn last, so that adding it left every earlier draw of a seed unchanged
        # a body surface area the caller gives (typical, cv or uniform) is kept, not replaced by Mosteller's
        given_bsa = any("body_surface_area" in given for given in (cv, uniform, log_uniform, typical))
        if cov.height_median_cm is not None and cov.weight_median_kg is not None and "body_surface_area" in table.names and not given_bsa:
            from .units import mosteller_bsa

            s = np.sqrt(np.log1p(cov.height_cv**2))
            height = np.clip(cov.height_median_cm * np.exp(s * rng.standard_normal(m)), 120.0, 220.0)
            spec = table["body_surface_area"]
            values["body_surface_area"] = np.clip(mosteller_bsa(height, values["body_weight"]), spec.lower, spec.upper)
        for name, v in typical.items():
            values.setdefault(name, np.full(m, float(typical_values[name])))

        return values, cold, height

    values, cold, height = draw(n)
    if eligibility == "progressing" and values:
        keep = untreated_net_growth(values, model) > 0
        for _ in range(50):  # replace ineligible draws by further draws of the same generator
            if keep.sum() >= n:
                break
            more, more_cold, more_height = draw(n)
            more_keep = untreated_net_growth(more, model) > 0
            values = {k: np.concatenate([values[k][keep], more[k][more_keep]]) for k in values}
            cold = None if cold is None else np.concatenate([cold[keep], more_cold[more_keep]])
            height = None if height is None else np.concatenate([height[keep], more_height[more_keep]])
            keep = np.ones(next(iter(values.values())).size, bool)
        else:
            raise InputError(describe("eligibility", eligibility, "a population in which some patients' untreated tumors grow "
                                      "(almost none of these draws do: use eligibility=None or other typical values)"))
        index = np.flatnonzero(keep)[:n]
        values = {k: v[index] for k, v in values.items()}
        cold = None if cold is None else cold[index]
        height = None if height is None else height[index]
    pop = Population.from_params(
        values,
        model=model,
        seed=int(seed),
        cv=cv,
        uniform={k: list(v) for k, v in uniform.items()},
        log_uniform={k: list(v) for k, v in log_uniform.items()},
        correlation={f"{a},{b}": r for (a, b), r in (correlation or {}).items()},
        typical=typical,
        covariates={k: getattr(cov, k) for k in cov.__dataclass_fields__},
        eligibility=str(eligibility),
    )
    if cold is not None:
        pop.data["cold"] = xr.Variable(
            ("patient",), cold.astype(np.int8),
            {"long_name": "baseline infiltration: 1 = cold (T-cell excluded), 0 = hot", "units": "1", "kind": "covariate",
             "flag_values": np.array([0, 1], dtype=np.int8), "flag_meanings": "hot cold"},
        )
    if height is not None:
        pop.data["height"] = xr.Variable(("patient",), height, {"units": "cm", "long_name": "height (with body_weight gives "
                                         "body_surface_area by the Mosteller formula)", "kind": "covariate"})
    return pop


#: baseline covariates read off each patient's initial state: name -> (state, long name)
BASELINE_COVARIATES = {
    "baseline_sclever1": ("sclever1_plasma", "baseline plasma sClever-1 (untreated steady state at baseline)"),
    "baseline_effector": ("effector", "baseline tumor effector CD8 T cells (untreated steady state at baseline)"),
}


def untreated_net_growth(params: Mapping[str, np.ndarray], model=None) -> np.ndarray:
    """Untreated net specific growth rate (1/day) of each patient's viable tumor at baseline.

    ``d ln(viable volume)/dt`` of the untreated model at the initial state (growth minus
    killing and every other loss, at the untreated immune steady state); ``(patients,)``.
    NaN where the patient has no untreated steady state. Needs a model with a
    ``viable_volume`` assignment (the core model); other models get NaN.
    """
    model = _model(model)
    import jax.numpy as jnp

    values, n = model.parameters.resolve(dict(params))
    p = {k: jnp.broadcast_to(jnp.asarray(v), (n or 1,)) for k, v in values.items()}
    _, ok, rate = _initial_states(model)(p)
    return np.where(np.asarray(ok), np.asarray(rate), np.nan)


def _add_baseline_sclever1(ds: xr.Dataset, model) -> None:
    """Baseline covariates (:data:`BASELINE_COVARIATES`) of each patient from its initial state
    (for the states the model has), and the untreated net growth rate at baseline."""
    import jax.numpy as jnp

    values, n = model.parameters.resolve({k: ds[k].values for k in ds.data_vars if ds[k].attrs.get("kind") == "parameter"})
    n = n or 1
    p = {k: jnp.broadcast_to(jnp.asarray(v), (n,)) for k, v in values.items()}
    y0, ok, rate = _initial_states(model)(p)
    if _has_viable_volume(model):
        ds["baseline_net_growth"] = xr.Variable(("patient",), np.where(np.asarray(ok), np.asarray(rate), np.nan), {
            "units": "1/day", "kind": "covariate",
            "long_name": "untreated net specific growth rate of the viable tumor at baseline, d ln(viable volume)/dt"})
    for name, (state, long_name) in BASELINE_COVARIATES.items():
        if state not in y0:
            continue
        value = np.asarray(y0[state])
        value = np.where(np.asarray(ok), np.exp(value) if model.state(state).log else value, np.nan)
        ds[name] = xr.Variable(("patient",), value, {"units": model.unit_of(state)[0], "long_name": long_name, "kind": "covariate"})


def _has_viable_volume(model) -> bool:
    return any(a.name == "viable_volume" for a in model.assignments)


@functools.lru_cache(maxsize=None)
def _initial_states(model):
    """The model's initial state ``({state: (patients,)}, ok, untreated net growth 1/day)``,
    jitted and vmapped over patients (compiled once); the growth is NaN for a model without
    a ``viable_volume`` assignment."""
    import jax
    import jax.numpy as jnp

    from .initial import initial_state

    def one(p):
        y0, ok = initial_state(model, p)
        if not _has_viable_volume(model):
            return y0, ok, jnp.nan
        env = model.environment(y0, p, {}, jnp)
        rates = model.derivatives(env, jnp)
        # d ln V/dt of the viable volume, from the states that make it (log states' rates are already d ln x/dt)
        parts = [s for s in model.states if s.name in ("tumor_sensitive", "tumor_resistant")]
        volume = env["viable_volume"]
        dv = sum(rates[s.name] * (env[s.name] if s.log else 1.0) for s in parts)
        return y0, ok, dv / volume

    return jax.jit(jax.vmap(one))
