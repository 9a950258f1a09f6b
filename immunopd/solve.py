"""Simulation: validate inputs, assemble a batch, run it, label the result.

One function, :func:`simulate`, serves one patient and a batch: every parameter may be a
scalar or an array over patients, and the batch is ``jax.vmap``-ed over one compiled solve
(:mod:`immunopd.integrate`). Compilation is cached per (model, dosed drugs, solver,
tolerances, max_steps, outputs) and JAX re-traces only when array shapes change (number of
patients, output times, padded dose count), so repeated calls on the same grid reuse it.

A patient whose solve fails is never returned as numbers: :func:`failures` is the one policy
every runner applies (simulate, trials, sensitivity): :class:`~immunopd.errors.SolverError`
naming the patients and their parameters, or, with ``on_failure="flag"``, NaN for them and
the code in ``solver_status``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import xarray as xr

from .dosing import Regimen
from .errors import InputError, InputTypeError, RegimenError, SolverError, describe
from .integrate import (CHUNK, DRUG_OUTPUTS, SINGLE_CALL, SOLVERS, chunk_size, compiled, padded_chunks, run_batches,  # noqa: F401
                        run_chunked, status_message, threads)
from .models.core import core_model
from .models.growth import GROWTH_LAWS

__all__ = ["simulate", "SOLVERS", "prepare", "problem", "check_options", "check_outputs", "check_times", "padded_chunks",
           "run_batches", "threads", "all_outputs", "failures", "resolve_model"]


def resolve_model(model=None, growth_law: str = "gompertz"):
    """``model`` if given (an :class:`immunopd.spec.Model`), else the core model of ``growth_law``."""
    if model is None:
        if growth_law not in GROWTH_LAWS:
            raise InputError(describe("growth_law", growth_law, f"one of {list(GROWTH_LAWS)}"))
        return core_model(growth_law)
    from .spec import Model

    if not isinstance(model, Model):
        raise InputTypeError(describe("model", model, "an immunopd.spec.Model (e.g. immunopd.core_model())"))
    return model


def all_outputs(model) -> tuple[str, ...]:
    """Every state, observable and drug/target-indexed output of ``model``, in result order."""
    return model.state_names + model.observable_names + tuple(DRUG_OUTPUTS)


def check_outputs(outputs, model=None) -> tuple[str, ...] | None:
    """Validate a selection of output names; ``None`` means all."""
    if outputs is None:
        return None
    if isinstance(outputs, str) or not isinstance(outputs, Sequence) or len(outputs) == 0:
        raise InputError(describe("outputs", outputs, "None or a non-empty list of state/observable names"))
    known = all_outputs(resolve_model(model))
    for name in outputs:
        if name not in known:
            raise InputError(describe("outputs", name, f"state or observable names: {list(known)}"))
    return tuple(dict.fromkeys(outputs))


def check_times(times, days) -> np.ndarray:
    if times is None:
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not np.isfinite(days) or days <= 0:
            raise InputError(describe("days", days, "a finite simulation length > 0 (day)"))
        n = int(np.floor(days))
        ts = np.arange(0.0, n + 1.0)
        if days > n:
            ts = np.append(ts, float(days))
        return ts
    ts = np.asarray(times, dtype=np.float64)
    if ts.ndim != 1 or ts.size == 0:
        raise InputError(describe("times", times, "a non-empty 1-D sequence of output times (day)"))
    bad = np.flatnonzero(~np.isfinite(ts) | (ts < 0))
    if bad.size:
        raise InputError(describe(f"times[{bad[0]}]", float(ts[bad[0]]), "finite times >= 0 day"))
    step = np.diff(ts)
    bad = np.flatnonzero(step <= 0)
    if bad.size:
        i = bad[0] + 1
        what = "a duplicate" if step[bad[0]] == 0 else "out of order"
        raise InputError(
            describe(f"times[{i}]", float(ts[i]), f"strictly increasing output times ({what}: times[{i - 1}] = {ts[i - 1]:g})")
        )
    if ts[-1] <= 0:
        raise InputError(describe("times[-1]", float(ts[-1]), "a last output time > 0 day"))
    return ts


def _as_regimen(regimen) -> Regimen:
    if regimen is None:
        return Regimen()
    if isinstance(regimen, Regimen):
        return regimen
    if isinstance(regimen, str):
        return Regimen.parse(regimen)
    raise InputTypeError(describe("regimen", regimen, "a Regimen, regimen text or None"))


def prepare(regimen=None, params: Mapping | None = None, *, weight=None, height=None, bsa=None, growth_law: str = "gompertz",
            model=None):
    """Validate inputs and return (model, regimen, parameter dict, n_patients, given).

    ``given`` is the set of body sizes the caller gave (``"body_weight"``,
    ``"body_surface_area"``): mg/kg and mg/m2 doses need theirs given, never a default.
    ``height`` (cm) with a weight gives the body surface area by the Mosteller formula;
    ``bsa`` (m2) gives it directly. Every drug's PK parameters are the model's own
    (``<drug>_clearance``, ...), so no default has to follow the dosed drug. A dose of a drug
    the model does not declare is an error.
    """
    model = resolve_model(model, growth_law)
    regimen = _as_regimen(regimen)
    for drug in regimen.drugs:
        if drug not in model.drug_index:
            raise RegimenError(describe("regimen drug", drug, f"a drug of model {model.name!r}: {sorted(model.drug_index)}"))
    if not isinstance(params, (Mapping, type(None))):
        raise InputTypeError(describe("params", params, "a mapping of parameter name to value(s)"))
    overrides = dict(params or {})
    for name in overrides:
        model.parameters[name]  # raises ParameterError for unknown names
    from .units import mosteller_bsa, parse_value

    sizes = {}
    for field, value, unit, lo, hi in (("weight", weight, "kg", 0.0, np.inf), ("height", height, "cm", 30.0, 300.0),
                                       ("bsa", bsa, "m2", 0.1, 5.0)):
        if value is None:
            continue
        if isinstance(value, str):  # "154 lb"
            if unit == "m2":
                value = value.strip().removesuffix("m2").strip()
                try:
                    value = float(value)
                except ValueError:
                    raise InputError(describe(field, value, "a body surface area in m2, e.g. 1.8")) from None
            else:
                value = parse_value(value, unit, field)
        if field != "weight":  # the body_weight parameter's own bounds check the weight
            try:
                arr = np.asarray(value, dtype=float) if not isinstance(value, bool) else None
            except (TypeError, ValueError):
                arr = None
            if arr is None or not np.all(np.isfinite(arr)) or np.any(arr < lo) or np.any(arr > hi):
                raise InputError(describe(field, value, f"a {field} in {unit} between {lo:g} and {hi:g}"))
        sizes[field] = value
    if "weight" in sizes:
        if "body_weight" in overrides:
            raise InputError(describe("weight", weight, "weight or params['body_weight'], not both"))
        overrides["body_weight"] = sizes["weight"]
    if "height" in sizes and "bsa" in sizes:
        raise InputError(describe("height", height, "height (with weight) or bsa, not both"))
    if "height" in sizes:
        if "body_weight" not in overrides:
            raise InputError(describe("weight", None, "a body weight in kg together with height (the Mosteller BSA needs both)"))
        sizes["bsa"] = mosteller_bsa(sizes["height"], overrides["body_weight"])
    if "bsa" in sizes:
        if "body_surface_area" in overrides:
            raise InputError(describe("bsa", bsa if bsa is not None else height, "height/bsa or params['body_surface_area'], not both"))
        overrides["body_surface_area"] = sizes["bsa"]
    given = frozenset(k for k in ("body_weight", "body_surface_area") if k in overrides)
    values, batch = model.parameters.resolve(overrides)
    return model, regimen, values, (batch or 1), given


def check_options(*, solver, on_failure, rtol, atol, max_steps) -> None:
    """Validate the solver options shared by simulate, trials and sensitivity runs."""
    if solver not in SOLVERS:
        raise InputError(describe("solver", solver, f"one of {list(SOLVERS)}"))
    if on_failure not in ("raise", "flag"):
        raise InputError(describe("on_failure", on_failure, "'raise' or 'flag'"))
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (0 < tol < 1):
            raise InputError(describe(name, tol, "a number in (0, 1)"))
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise InputError(describe("max_steps", max_steps, "an integer >= 1"))


@dataclass(frozen=True)
class Problem:
    """Everything one compiled batch call needs (built by :func:`problem`)."""

    model: object
    regimen: Regimen
    values: dict
    n: int
    given: frozenset  # the body sizes the caller gave: "body_weight", "body_surface_area"
    schedule: object
    drugs: tuple  # the Drug records of the schedule's rows
    p: dict  # parameters as (n,) float64 arrays
    fn: object  # the compiled, vmapped solve
    shared: tuple  # (starts, ends, jump times, output times), shared by all patients

    @property
    def per_patient(self) -> tuple:
        """(rates, boluses), each (patients, drugs, doses)."""
        return self.schedule.rates, self.schedule.boluses


def problem(regimen, params, *, ts, weight=None, height=None, bsa=None, growth_law="gompertz", model=None, solver="tsit5", rtol=1e-6, atol=1e-9,
            max_steps=100_000, min_doses=0, outputs: tuple[str, ...] | None = None, drugs: Sequence[str] | None = None) -> Problem:
    """Validate and assemble a batch for the compiled solver (used by simulate, trials, sensitivity).

    ``drugs``: the drug rows of the schedule (default the regimen's), so that the regimens of
    a trial share one compiled solve.
    """
    model, regimen, values, n, given = prepare(regimen, params, weight=weight, height=height, bsa=bsa, growth_law=growth_law,
                                               model=model)
    regimen.check_horizon(float(ts[-1]))  # a series that never doses before the end is a mistake, not "untreated"
    names = tuple(regimen.drugs if drugs is None else dict.fromkeys(drugs))
    records = tuple(model.drug(d) for d in names)
    weights = values["body_weight"] if "body_weight" in given else None
    bsas = values["body_surface_area"] if "body_surface_area" in given else None
    schedule = regimen.schedule(float(ts[-1]), weights, n, drugs=tuple(r.name for r in records), min_doses=min_doses, bsas=bsas)
    p = {k: jnp.broadcast_to(jnp.asarray(v, dtype=jnp.float64), (n,)) for k, v in values.items()}
    fn = compiled(model, records, solver, float(rtol), float(atol), int(max_steps),
                  all_outputs(model) if outputs is None else tuple(outputs))
    shared = (
        jnp.asarray(schedule.starts),
        jnp.asarray(schedule.ends),
        jnp.asarray(np.where(np.isfinite(schedule.jump_times), schedule.jump_times, ts[-1] + 1.0)),
        jnp.asarray(ts),
    )
    return Problem(model, regimen, values, n, given, schedule, records, p, fn, shared)


def failures(status: np.ndarray, values: Mapping, on_failure: str, *, what: str = "patient", context: str = "") -> np.ndarray:
    """The one failed-solve policy: the indices of failed patients, after raising
    :class:`SolverError` for them unless ``on_failure == "flag"``. ``what`` names one item
    ("patient", "sample"), ``context`` is said after the count."""
    status = np.asarray(status)
    failed = np.flatnonzero(status.reshape(-1) != 0)
    if failed.size and on_failure == "raise":
        n = status.size
        shown = ", ".join(
            f"{what} {i}: {status_message(int(status.reshape(-1)[i]))} "
            + "{" + ", ".join(f"{k}={_value_of(values[k], i):.4g}" for k in _varying(values)) + "}"
            for i in failed[:5]
        )
        raise SolverError(
            f"the ODE solve failed for {failed.size} of {n} {what}(s){context} (indices {failed[:20].tolist()}); {shown}. "
            "Try solver='kvaerno5', a larger max_steps, or on_failure='flag' to keep the others."
        )
    return failed


def simulate(
    regimen: Regimen | str | None = None,
    params: Mapping[str, float | Sequence[float]] | None = None,
    *,
    days: float = 365.0,
    times: Sequence[float] | None = None,
    weight: float | Sequence[float] | None = None,
    height: float | Sequence[float] | None = None,
    bsa: float | Sequence[float] | None = None,
    growth_law: str = "gompertz",
    model=None,
    solver: str = "tsit5",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 100_000,
    on_failure: str = "raise",
    outputs: Sequence[str] | None = None,
) -> xr.Dataset:
    """Simulate a model for one patient or a batch.

    Parameters
    ----------
    model
        The model to simulate (an :class:`immunopd.spec.Model`); default the core model with
        ``growth_law``.
    regimen
        A :class:`~immunopd.dosing.Regimen`, regimen text (``"pembrolizumab 200 mg q3w"``) or
        ``None`` for no treatment. Time 0 is the start of treatment (the baseline).
    params
        Overrides of the defaults in ``immunopd.PARAMETERS`` (units as listed there). A value
        may be an array of shape ``(patients,)``; all such arrays share one length.
    days
        Simulation length in days; output is daily from 0 to ``days`` unless ``times`` is
        given.
    times
        Output times in days, strictly increasing, >= 0.
    weight
        Body weight in kg, scalar or ``(patients,)``; needed for mg/kg doses and used for
        allometric PK scaling (otherwise ``body_weight``'s default is used for PK only).
    height, bsa
        Height in cm (with ``weight``: body surface area by the Mosteller formula) or the body
        surface area in m2 directly; needed for mg/m2 doses and used where a drug's PK scales
        with BSA (otherwise ``body_surface_area``'s default is used for PK only).
    growth_law
        ``"exponential"``, ``"logistic"``, ``"gompertz"`` (default) or ``"bertalanffy"``.
    solver
        ``"tsit5"`` (default, explicit), ``"dopri5"``, ``"dopri8"`` or ``"kvaerno5"``
        (implicit, for stiff parameter sets).
    rtol, atol
        Tolerances of the PID step-size controller (relative; absolute in state units).
    on_failure
        ``"raise"`` (default) or ``"flag"``: failed patients come back as NaN with their
        diffrax result code in ``solver_status``.
    outputs
        Names of the states and observables to return over time (like mrgsolve's ``Req`` or
        rxode2's ``keep``); ``None`` (default) returns all of them. The compiled solve then
        computes only these, which roughly halves its cost for a single output. Parameters,
        doses, ``solver_status`` and ``num_steps`` are always included.

    Batches of more than :data:`SINGLE_CALL` patients run in padded chunks of up to
    :data:`CHUNK`, :func:`threads` of them at once (``IMMUNOPD_THREADS`` sets how many). A
    patient's numbers do not depend on the threads, nor on its neighbours in a chunk; a
    different chunk size changes them only through floating-point rounding (XLA vectorises
    each batch size differently; up to ~1e-10 relative seen between 512 and 2,048).

    Returns
    -------
    xarray.Dataset
        Dims ``patient``, ``time`` (day), ``drug`` (the dosed drugs), ``target`` and
        ``compartment``; states and observables as ``(patient, time)`` variables,
        ``concentration(patient, drug, time)``, ``occupancy(patient, target, time)``,
        ``drug_amount(patient, drug, compartment, time)``, parameters as ``(patient,)``
        variables with each one's own source, units in each variable's attrs and provenance
        in the Dataset attrs.
    """
    check_options(solver=solver, on_failure=on_failure, rtol=rtol, atol=atol, max_steps=max_steps)
    model = resolve_model(model, growth_law)
    outputs = check_outputs(outputs, model)
    ts = check_times(times, days)
    prob = problem(regimen, params, ts=ts, weight=weight, height=height, bsa=bsa, model=model, solver=solver,
                   rtol=rtol, atol=atol, max_steps=max_steps, outputs=outputs)
    regimen, values, n, schedule = prob.regimen, prob.values, prob.n, prob.schedule
    obs, status, steps = run_chunked(prob.fn, prob.p, prob.per_patient, prob.shared, n)
    keep = outputs or all_outputs(model)
    obs = {name: obs[name] for name in keep}  # jax returns dicts sorted by key
    failed = failures(status, values, on_failure)
    if failed.size:
        for v in obs.values():
            v[failed] = np.nan
    from .results import build_dataset, model_attrs

    return build_dataset(
        model=model, ts=ts, obs=obs, values=values, n=n, status=status, steps=steps, drugs=prob.drugs,
        attrs={
            **model_attrs(model),
            "regimen": regimen.describe(),
            "drugs": ", ".join(regimen.drugs) or "none",
            "body_weight_given": int("body_weight" in prob.given),
            "body_surface_area_given": int("body_surface_area" in prob.given),
            "solver": f"diffrax.{SOLVERS[solver].__name__} with PIDController inside ClipStepSizeController(jump_ts=dose edges)",
            "rtol": float(rtol),
            "atol": float(atol),
        },
        dosed_mg=schedule.dosed_mg,
    )


def _value_of(value, i: int) -> float:
    """Patient ``i``'s value of a parameter given as a scalar or as an array over patients."""
    arr = np.asarray(value).reshape(-1)
    return float(arr[i] if np.ndim(value) else arr[0])


def _varying(values: Mapping[str, np.ndarray]) -> list[str]:
    batched = [k for k, v in values.items() if np.ndim(v) == 1]
    return batched[:6] if batched else ["baseline_tumor_volume"]
