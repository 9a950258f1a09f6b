"""Virtual dosing experiments: a grid of regimens x a virtual population, with RECIST endpoints.

:func:`run_trial` simulates every regimen on every patient of a
:class:`~immunopd.population.Population` with one compiled solver (the dose arrays of all
regimens are padded to one shape, so the solver compiles once and is reused for every regimen
and every chunk of patients), keeps only the requested outputs, and scores each (regimen,
patient) with RECIST 1.1 at scan times (:mod:`immunopd.endpoints`). The result is an
``xarray.Dataset`` with dims ``(regimen, patient, time)``::

    <outputs>           (regimen, patient, time)  e.g. sld, pct_change, tumor_volume
    best_response       (regimen, patient)        int8 codes; flag_meanings "CR PR SD PD NE"
    best_pct_change     (regimen, patient)        %
    pfs_days, progressed, responded, dor_days, dor_event
    adverse_event_day   (regimen, patient)        first grade >= 3 treatment-related AE (NaN: none)
    orr, dcr, adverse_event_rate (+ _lower/_upper 95% Clopper-Pearson)  (regimen,)
    median_pfs_days (+ _lower/_upper)                (regimen,)
    parameters and covariates of the population      (patient,)

Experiments can be written in TOML (:func:`load_experiment`, ``immunopd trial file.toml``);
see ``examples/`` for annotated files.

Missed doses: regimen text can skip or delay given doses (``skip 3,4``, ``delay 3 by 1w``),
and ``missed_dose_probability`` drops each planned infusion of each patient independently
(seeded), like non-adherence in a real trial.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
import xarray as xr

from . import endpoints as ep
from .dosing import Regimen
from .errors import InputError, InputTypeError, describe
from .integrate import DRUG_OUTPUTS, note_compiling
from .models.drugs import EXAMPLE_REGIMEN
from .pkmodels import COMPARTMENTS
from .population import Covariates, Population, sample
from .results import as_dims, drug_coords, package_versions, time_course_attrs
from .solve import CHUNK, check_options, check_outputs, check_times, failures, padded_chunks, problem, resolve_model, run_batches

__all__ = ["run_trial", "Experiment", "load_experiment", "endpoint_table", "population_endpoints", "stratify", "strata_table", "DEFAULT_OUTPUTS"]

DEFAULT_OUTPUTS: tuple[str, ...] = ("tumor_volume", "sld", "pct_change")
#: scans every 6 weeks (assumed: the usual RECIST schedule of immunotherapy trials; the shipped
#: Laleh 2022 data have a median gap of 44 days between scans)
DEFAULT_SCAN_INTERVAL_DAYS = 42.0


def _as_regimens(regimens) -> dict[str, Regimen]:
    if isinstance(regimens, (str, Regimen)):
        regimens = [regimens]
    if isinstance(regimens, Mapping):
        items = list(regimens.items())
    elif isinstance(regimens, Sequence):
        items = [(r if isinstance(r, str) else r.describe(), r) for r in regimens]
    else:
        raise InputTypeError(describe("regimens", regimens, "a mapping name -> regimen text, or a list of regimen texts"))
    if not items:
        raise InputError(describe("regimens", regimens, "at least one regimen"))
    out: dict[str, Regimen] = {}
    for name, reg in items:
        if not isinstance(name, str) or not name.strip():
            raise InputError(describe("regimen name", name, "a non-empty string"))
        if name in out:
            raise InputError(describe("regimen name", name, "distinct names"))
        out[name] = reg if isinstance(reg, Regimen) else Regimen.parse(reg)
    return out


def run_trial(
    regimens: Mapping[str, str | Regimen] | Sequence[str | Regimen],
    population: Population,
    *,
    days: float = 365.0,
    scan_interval_days: float = DEFAULT_SCAN_INTERVAL_DAYS,
    outputs: Sequence[str] = DEFAULT_OUTPUTS,
    missed_dose_probability: float = 0.0,
    seed: int = 0,
    growth_law: str = "gompertz",
    model=None,
    solver: str = "tsit5",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 100_000,
    on_failure: str = "raise",
    chunk: int = CHUNK,
    progress: bool = False,
    adverse_events: str = "continue",
    hold_days: float = 42.0,
) -> xr.Dataset:
    """Simulate ``regimens`` x ``population`` and score RECIST endpoints.

    Parameters
    ----------
    regimens
        ``{name: regimen text or Regimen}`` (or a list of texts, named by their text).
    population
        Virtual patients (:func:`immunopd.population.sample`). Their ``body_weight`` resolves
        mg/kg doses.
    days
        Length of the trial (day); outputs are daily.
    scan_interval_days
        RECIST scans every this many days from treatment start (default 42 = 6 weeks).
    outputs
        Time courses kept in the result (state or observable names); ``sld`` is always used
        for the endpoints. Each costs ``8 * regimens * patients * (days + 1)`` bytes.
    missed_dose_probability
        Chance that each planned infusion is missed, per patient and dose (seeded by ``seed``).
    chunk
        Patients per compiled call; :func:`immunopd.solve.threads` calls run at once (memory
        grows linearly with both).
    adverse_events
        What a patient's first grade >= 3 treatment-related adverse event does to the regimen
        (models with the ``irae_cumulative_hazard`` state): ``"continue"`` (default: dosing as
        planned), ``"hold"`` (doses due within ``hold_days`` after the event are not given;
        dosing then resumes, as guidelines advise for grade 3 immune-related events: Schneider
        et al. 2021, J Clin Oncol 39:4073, doi:10.1200/JCO.21.01440) or ``"stop"`` (no dose
        after the event: discontinuation). Each patient's event time is drawn once from the
        model's cumulative hazard (an Exp(1) threshold per patient id and ``seed``, the same in
        every regimen, so regimens are compared on common random numbers); the withheld doses
        feed back into the efficacy of that patient.
    hold_days
        Length of a hold (day, default 42 = two 3-week cycles; assumed).
    """
    check_options(solver=solver, on_failure=on_failure, rtol=rtol, atol=atol, max_steps=max_steps)
    model = resolve_model(model, growth_law)
    regs = _as_regimens(regimens)
    if not isinstance(population, Population):
        raise InputTypeError(describe("population", population, "an immunopd.population.Population"))
    keep = list(check_outputs(outputs, model))
    if not (0.0 <= missed_dose_probability < 1.0):
        raise InputError(describe("missed_dose_probability", missed_dose_probability, "a probability in [0, 1)"))
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(describe("chunk", chunk, "an integer number of patients >= 1"))
    if adverse_events not in ADVERSE_EVENT_ACTIONS:
        raise InputError(describe("adverse_events", adverse_events, f"one of {list(ADVERSE_EVENT_ACTIONS)}"))
    if isinstance(hold_days, bool) or not isinstance(hold_days, (int, float)) or not np.isfinite(hold_days) or hold_days <= 0:
        raise InputError(describe("hold_days", hold_days, "a finite hold > 0 day"))
    ts = check_times(None, days)
    scans = ep.scan_times(ts, scan_interval_days)
    n = len(population)
    params = population.params()
    horizon = float(ts[-1])
    min_doses = max(r.max_doses_per_drug(horizon) for r in regs.values())
    drugs = trial_drugs(regs)

    store: dict[str, np.ndarray] = {}
    names = list(_ENDPOINT_DTYPES)
    ends = {k: np.empty((len(regs), n), dtype=dtype) for k, dtype in _ENDPOINT_DTYPES.items()}
    status_all = np.zeros((len(regs), n), dtype=np.int32)
    steps_all = np.zeros((len(regs), n), dtype=np.int64)
    order = np.arange(n)
    dosed = np.zeros((len(regs), n, len(drugs)))
    with_events = AE_STATE in model.state_names
    wanted = tuple(sorted(set(keep) | {"sld"} | ({AE_STATE} if with_events else set())))
    thresholds = event_thresholds(population.data.patient.values, seed) if with_events else None
    ends["adverse_event_day"] = np.full((len(regs), n), np.nan)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(regs) * n, unit="patient", desc="trial")
    texts = []
    for r_idx, (name, regimen) in enumerate(regs.items()):
        prob = problem(regimen, params, ts=ts, model=model, solver=solver, rtol=rtol, atol=atol,
                       max_steps=max_steps, min_doses=min_doses, outputs=wanted, drugs=drugs)
        texts.append(prob.regimen.describe())
        rates, boluses = prob.per_patient
        if missed_dose_probability > 0:
            rng = np.random.default_rng([seed, r_idx])
            missed = rng.random(rates.shape) < missed_dose_probability
            rates, boluses = np.where(missed, 0.0, rates), np.where(missed, 0.0, boluses)
        given_rates, given_boluses = rates.copy(), boluses.copy()
        chunks = padded_chunks(order, chunk)
        compiling = note_compiling(bar, prob.fn)
        for (sel, _), out in zip(chunks, run_batches(prob.fn, prob.p, (rates, boluses), prob.shared, (idx for _, idx in chunks))):
            m = sel.size
            picked, status, steps = jax.tree_util.tree_map(lambda a: a[:m], out)
            if with_events:
                event_day = first_crossing(picked[AE_STATE], ts, thresholds[sel])
                ends["adverse_event_day"][r_idx, sel] = np.where(status == 0, event_day, np.nan)
                if adverse_events != "continue":
                    hit = np.flatnonzero(np.isfinite(event_day) & (status == 0))
                    changed = [k for k in hit if _withhold(prob.schedule, given_rates, given_boluses, sel[k], event_day[k],
                                                           adverse_events, hold_days)]
                    if changed:
                        picked = {o: np.array(v) for o, v in picked.items()}
                        status, steps = np.array(status), np.array(steps)
                        changed = np.array(changed)  # positions in this chunk of the patients to rerun
                        redone = padded_chunks(changed, chunk)
                        for (pos, _), redo in zip(redone, run_batches(prob.fn, prob.p, (given_rates, given_boluses), prob.shared,
                                                                      (sel[idx] for _, idx in redone))):
                            redo = jax.tree_util.tree_map(lambda a: a[:pos.size], redo)
                            for o in picked:
                                picked[o][pos] = redo[0][o]
                            status[pos], steps[pos] = redo[1], redo[2]
            status_all[r_idx, sel] = status
            steps_all[r_idx, sel] = steps
            for o in keep:
                if o not in store:
                    store[o] = np.empty((len(regs), n) + picked[o].shape[1:])
                store[o][r_idx, sel] = picked[o]
            sld = picked["sld"]
            bad = status != 0
            if bad.any():
                for o in keep:
                    store[o][r_idx, sel[bad]] = np.nan
                sld = sld.copy()
                sld[bad] = 1.0  # scored then overwritten with NE below
            res = ep.recist(sld, ts, scans=scans)
            for k in names:
                ends[k][r_idx, sel] = res[k]
            if bad.any():
                ends["best_response"][r_idx, sel[bad]] = ep.NE
                for k in ("best_pct_change", "pfs_days", "response_onset_days", "dor_days"):
                    ends[k][r_idx, sel[bad]] = np.nan
            if bar is not None:
                if compiling:
                    bar.set_postfix_str("", refresh=False)
                    compiling = False
                bar.update(m)
        dosed[r_idx] = _dosed(prob.schedule, given_rates, given_boluses)
        # a vmapped chunk runs as many steps as its slowest patient: group patients of similar
        # step counts (as seen under this regimen) for the next regimen
        order = np.argsort(steps_all[r_idx], kind="stable")
    if bar is not None:
        bar.close()
    for r_idx, name in enumerate(regs):
        failures(status_all[r_idx], params, on_failure, context=f" of regimen {name!r}")
    return _assemble(model, drugs, regs, texts, population, ts, scans, store, ends, status_all, dosed, _settings_attrs(
        model, days, scan_interval_days, missed_dose_probability, seed, solver, rtol, atol, adverse_events, hold_days))


#: what a first grade >= 3 treatment-related adverse event does to the regimen (see run_trial)
ADVERSE_EVENT_ACTIONS = ("continue", "hold", "stop")
#: the model state a trial draws adverse events from
AE_STATE = "irae_cumulative_hazard"


def event_thresholds(patient_ids, seed: int) -> np.ndarray:
    """One Exp(1) draw per patient, from ``(seed, patient id)`` alone: the same in every regimen
    and in every chunk a patient may fall into (the first event is when the cumulative hazard
    reaches it)."""
    return np.array([-np.log1p(-np.random.default_rng([int(seed), 7_011, int(pid)]).random()) for pid in patient_ids])


def first_crossing(cumulative: np.ndarray, ts: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """First time (day) each row of ``cumulative`` (patients, time) reaches its threshold,
    interpolated linearly between output times; NaN if never."""
    above = cumulative >= thresholds[:, None]
    hit = above.any(axis=1)
    j = np.where(hit, above.argmax(axis=1), 0)
    rows = np.arange(cumulative.shape[0])
    j0 = np.maximum(j - 1, 0)
    h0, h1 = cumulative[rows, j0], cumulative[rows, j]
    frac = np.where(h1 > h0, (thresholds - h0) / np.where(h1 > h0, h1 - h0, 1.0), 0.0)
    day = np.where(j > 0, ts[j0] + np.clip(frac, 0.0, 1.0) * (ts[j] - ts[j0]), ts[j])
    return np.where(hit, day, np.nan)


def _withhold(schedule, rates, boluses, patient: int, event_day: float, action: str, hold_days: float) -> bool:
    """Zero (in place) the doses of ``patient`` that ``action`` withholds after ``event_day``;
    True if any planned dose was removed. Every drug of the regimen is withheld (trials hold or
    discontinue the whole regimen for a grade >= 3 treatment-related event)."""
    after = schedule.starts > event_day
    if action == "hold":
        after &= schedule.starts <= event_day + hold_days
    withheld = after & ((rates[patient] > 0) | (boluses[patient] > 0))
    if not withheld.any():
        return False
    rates[patient][withheld] = 0.0
    boluses[patient][withheld] = 0.0
    return True


def trial_drugs(regs: Mapping[str, Regimen]) -> tuple[str, ...]:
    """Every drug any regimen doses, in order of appearance: the shared rows of all schedules."""
    return tuple(dict.fromkeys(d for r in regs.values() for d in r.drugs))


def _settings_attrs(model, days, scan_interval_days, missed_dose_probability, seed, solver, rtol, atol, adverse_events="continue",
                    hold_days=42.0) -> dict:
    return dict(days=float(days), scan_interval_days=float(scan_interval_days), missed_dose_probability=float(missed_dose_probability),
                seed=int(seed), model=model.name, growth_law=model.variant, solver=solver, rtol=float(rtol), atol=float(atol),
                adverse_events=adverse_events, hold_days=float(hold_days))


def result_layout(regimens, population: Population, *, chunk_patients: int, days: float = 365.0,
                  scan_interval_days: float = DEFAULT_SCAN_INTERVAL_DAYS, outputs: Sequence[str] = DEFAULT_OUTPUTS,
                  missed_dose_probability: float = 0.0, seed: int = 0, growth_law: str = "gompertz", model=None,
                  solver: str = "tsit5", rtol: float = 1e-6, atol: float = 1e-9, adverse_events: str = "continue",
                  hold_days: float = 42.0, **_solver_only) -> xr.Dataset:
    """The Dataset :func:`run_trial` returns for these arguments (names, dims, dtypes, units,
    coordinates, attrs), nothing simulated: every per-patient variable is a lazy dask array of
    zeros in chunks of ``chunk_patients``, for laying out a store that chunks of patients are
    then written into (``to_zarr(..., compute=False)``). The population-level endpoints in it
    are computed from those zeros, to be recomputed once the patients are in. ``_solver_only``:
    run_trial's arguments that do not show in the result."""
    import dask.array as da

    model = resolve_model(model, growth_law)
    regs = _as_regimens(regimens)
    keep = list(check_outputs(outputs, model))
    ts = check_times(None, days)
    scans = ep.scan_times(ts, scan_interval_days)
    n, r = len(population), len(regs)
    drugs = trial_drugs(regs)

    def zeros(shape, dtype=np.float64):  # a view of one zero: no memory for 100,000s of patients
        return np.broadcast_to(np.zeros((), dtype), shape)

    extra = {"drug": len(drugs), "target": len(model.targets), "compartment": len(COMPARTMENTS)}
    shapes = {o: (r, n, ts.size) + tuple(extra[d] for d in DRUG_OUTPUTS.get(o, ((),))[0]) for o in keep}
    ds = _assemble(model, drugs, regs, [reg.describe() for reg in regs.values()], population, ts, scans,
                   {o: zeros(shape) for o, shape in shapes.items()},
                   {**{k: zeros((r, n), dtype) for k, dtype in _ENDPOINT_DTYPES.items()}, "adverse_event_day": zeros((r, n))},
                   zeros((r, n), np.int32), zeros((r, n, len(drugs))),
                   _settings_attrs(model, days, scan_interval_days, missed_dose_probability, seed, solver, rtol, atol, adverse_events,
                                   hold_days))
    for name in per_patient_variables(ds):
        v = ds[name].variable
        chunks = tuple(chunk_patients if d == "patient" else ds.sizes[d] for d in v.dims)
        ds[name] = xr.Variable(v.dims, da.zeros(v.shape, dtype=v.dtype, chunks=chunks), v.attrs)
    return ds


def per_patient_variables(ds: xr.Dataset) -> list[str]:
    """The variables of a trial Dataset that have a ``patient`` dim, the coordinate itself excepted."""
    return [name for name, v in ds.variables.items() if "patient" in v.dims and name != "patient"]


#: names and dtypes of the per-patient RECIST arrays (from a one-patient call of the scorer)
_ENDPOINT_DTYPES = {k: v.dtype for k, v in ep.recist(np.ones((1, 2)), np.array([0.0, 1.0])).items()}


def _dosed(schedule, rates, boluses) -> np.ndarray:
    """Total mg dosed per (patient, drug) from the (possibly thinned) rates and boluses."""
    return np.sum(rates * (schedule.ends - schedule.starts)[None] + boluses, axis=-1)


def _assemble(model, drugs, regs, texts, population, ts, scans, store, ends, status, dosed, settings) -> xr.Dataset:
    dims2 = ("regimen", "patient")
    data = {}
    for o, arr in store.items():
        dims, arr = as_dims(o, arr, dims2)
        data[o] = xr.Variable(dims, arr, time_course_attrs(model, o))
    data["best_response"] = xr.Variable(dims2, ends["best_response"], {
        "long_name": "RECIST 1.1 best overall response (unconfirmed)", "units": "1",
        "flag_values": np.arange(len(ep.RESPONSES), dtype=np.int8), "flag_meanings": " ".join(ep.RESPONSES)})
    data["best_pct_change"] = xr.Variable(dims2, ends["best_pct_change"], {"units": "%", "long_name": "best change of SLD from baseline at a scan, up to progression"})
    data["pfs_days"] = xr.Variable(dims2, ends["pfs_days"], {"units": "day", "long_name": "progression-free survival: first PD scan, or last scan if censored"})
    data["progressed"] = xr.Variable(dims2, ends["progressed"], {"units": "1", "long_name": "PD seen (False = PFS censored)"})
    data["responded"] = xr.Variable(dims2, ends["responded"], {"units": "1", "long_name": "PR or CR seen before progression"})
    data["response_onset_days"] = xr.Variable(dims2, ends["response_onset_days"], {"units": "day", "long_name": "first PR/CR scan"})
    data["dor_days"] = xr.Variable(dims2, ends["dor_days"], {"units": "day", "long_name": "duration of response (to PD, or censored at last scan)"})
    data["dor_event"] = xr.Variable(dims2, ends["dor_event"], {"units": "1", "long_name": "duration of response ended by PD"})
    data["adverse_event_day"] = xr.Variable(dims2, ends["adverse_event_day"], {
        "units": "day", "long_name": "day of the first grade >= 3 treatment-related adverse event (NaN: none within the trial)"})
    data["solver_status"] = xr.Variable(dims2, status, {"units": "1", "long_name": "diffrax result code (0 = success; 99 = no untreated steady state)"})
    data["dosed"] = xr.Variable(dims2 + ("drug",), dosed, {"units": "mg", "long_name": "total amount of each drug dosed"})
    data.update(population_endpoints(ends["best_response"], ends["pfs_days"], ends["progressed"], status == 0, ends["adverse_event_day"]))
    for k, v in population.data.data_vars.items():
        data[k] = v
    ds = xr.Dataset(data, coords={
        "regimen": ("regimen", list(regs)),
        "regimen_text": ("regimen", texts),
        "patient": population.data.patient.values,
        "time": ("time", ts, {"units": "day", "long_name": "time since treatment start"}),
        "scan_time": ("scan_time", ts[scans], {"units": "day", "long_name": "RECIST scan times"}),
        **drug_coords(model, tuple(model.drug(d) for d in drugs)),
    })
    ds.attrs.update({
        "title": "immunopd virtual trial",
        **package_versions(),
        **settings,
        "endpoints": "RECIST 1.1 on SLD at scan times (immunopd.endpoints): CR <= 1 mm, PR <= -30%, PD >= +20% and +5 mm over nadir",
        "population_seed": population.data.attrs.get("seed", -1),
        "population_recipe": str({k: population.data.attrs[k] for k in ("cv", "uniform", "log_uniform", "covariates")
                                   if k in population.data.attrs}),
    })
    return ds


def population_endpoints(best_response, pfs_days, progressed, ok, adverse_event_day=None) -> dict[str, xr.Variable]:
    """Per-regimen ORR and DCR (95% Clopper-Pearson CI), Kaplan-Meier median PFS (95% CI) and
    the incidence of grade >= 3 treatment-related adverse events within the trial (95%
    Clopper-Pearson CI), from ``(regimen, patient)`` arrays; ``ok`` masks out failed solves."""
    n_reg = best_response.shape[0]
    data = {}
    if adverse_event_day is not None:
        rate, lo, hi = zip(*(ep.response_rate(np.isfinite(adverse_event_day[r][ok[r]])) for r in range(n_reg)))
        for key, v, long in (("adverse_event_rate", rate, "incidence of a grade >= 3 treatment-related adverse event within the trial"),
                             ("adverse_event_rate_lower", lo, "adverse_event_rate 95% CI lower (Clopper-Pearson)"),
                             ("adverse_event_rate_upper", hi, "adverse_event_rate 95% CI upper (Clopper-Pearson)")):
            data[key] = xr.Variable(("regimen",), np.array(v), {"units": "1", "long_name": long})
    for key, codes, long in (("orr", (ep.CR, ep.PR), "objective response rate (CR + PR)"),
                             ("dcr", (ep.CR, ep.PR, ep.SD), "disease control rate (CR + PR + SD)")):
        rate, lo, hi = zip(*(ep.response_rate(np.isin(best_response[r][ok[r]], codes)) for r in range(n_reg)))
        data[key] = xr.Variable(("regimen",), np.array(rate), {"units": "1", "long_name": long})
        data[f"{key}_lower"] = xr.Variable(("regimen",), np.array(lo), {"units": "1", "long_name": f"{key} 95% CI lower (Clopper-Pearson)"})
        data[f"{key}_upper"] = xr.Variable(("regimen",), np.array(hi), {"units": "1", "long_name": f"{key} 95% CI upper (Clopper-Pearson)"})
    med = np.array([ep.km_median(ep.kaplan_meier(pfs_days[r][ok[r]], progressed[r][ok[r]])) for r in range(n_reg)])
    for j, suffix in enumerate(("", "_lower", "_upper")):
        data[f"median_pfs_days{suffix}"] = xr.Variable(("regimen",), med[:, j], {
            "units": "day", "long_name": "Kaplan-Meier median PFS" + (f" 95% CI {suffix[1:]}" if suffix else "") + " (NaN: not reached)"})
    return data


def endpoint_table(ds: xr.Dataset) -> str:
    """The per-regimen endpoint table that the CLI and demo print."""
    w = max([len("regimen")] + [len(str(r)) for r in ds.regimen.values])
    ae = "adverse_event_rate" in ds
    lines = [f"{'regimen':<{w}} {'n':>6} {'ORR % (95% CI)':>20} {'DCR % (95% CI)':>20} {'median PFS d (95% CI)':>24}"
             + (f" {'grade>=3 AE % (95% CI)':>24}" if ae else "")]

    def fmt(x):
        return "NR" if not np.isfinite(x) else f"{x:.0f}"

    for r in ds.regimen.values:
        d = ds.sel(regimen=r)
        n = int((d.solver_status == 0).sum())
        orr = f"{100 * d.orr:.1f} ({100 * d.orr_lower:.1f}-{100 * d.orr_upper:.1f})"
        dcr = f"{100 * d.dcr:.1f} ({100 * d.dcr_lower:.1f}-{100 * d.dcr_upper:.1f})"
        pfs = f"{fmt(float(d.median_pfs_days))} ({fmt(float(d.median_pfs_days_lower))}-{fmt(float(d.median_pfs_days_upper))})"
        row = f"{str(r):<{w}} {n:>6} {orr:>20} {dcr:>20} {pfs:>24}"
        if ae:
            row += f" {f'{100 * d.adverse_event_rate:.1f} ({100 * d.adverse_event_rate_lower:.1f}-{100 * d.adverse_event_rate_upper:.1f})':>24}"
        lines.append(row)
    return "\n".join(lines)


# ---------------------------------------------------------------------- TOML experiments
@dataclass(frozen=True)
class Experiment:
    """A virtual dosing experiment as read from TOML (see examples/)."""

    regimens: dict[str, str]
    population: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    name: str = "experiment"

    def build_population(self) -> Population:
        pop = dict(self.population)
        if "file" in pop:
            return Population.open(pop["file"])
        _check_population_tables("experiment", pop)
        cov = Covariates(**pop.get("covariates", {}))
        corr = {tuple(k.split(",")): v for k, v in pop.get("correlation", {}).items()}
        return sample(pop.get("patients", 1000), seed=pop.get("seed", 0), cv=pop.get("cv"), uniform=pop.get("uniform"),
                      log_uniform=pop.get("log_uniform"), correlation=corr or None, typical=pop.get("typical"), covariates=cov)

    def run(self, progress: bool = False) -> xr.Dataset:
        ds = run_trial(self.regimens, self.build_population(), progress=progress, **self.settings)
        ds.attrs["experiment"] = self.name
        return ds


_TOP = {"experiment", "population", "regimens"}
_SETTINGS = {"name", "days", "scan_interval_days", "outputs", "missed_dose_probability", "seed", "growth_law", "solver", "rtol", "atol",
             "adverse_events", "hold_days"}
_POPULATION = {"patients", "seed", "cv", "uniform", "log_uniform", "correlation", "typical", "covariates", "file"}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_population_tables(fname: str, pop: dict) -> None:
    """The [population] entries have the TOML types the sampler takes: a typo or a number where a
    table goes is an error naming the key, not a TypeError deep in the sampler."""
    from dataclasses import fields

    for key, allowed in (("patients", "an integer number of patients >= 1"), ("seed", "an integer >= 0")):
        if key in pop and (not isinstance(pop[key], int) or isinstance(pop[key], bool) or pop[key] < (1 if key == "patients" else 0)):
            raise InputError(describe(f"{fname} [population] {key}", pop[key], allowed))
    if "file" in pop and not isinstance(pop["file"], str):
        raise InputError(describe(f"{fname} [population] file", pop["file"], "a path (string) to a population netCDF file"))
    examples = {"cv": "[population.cv] with lines such as growth_rate = 0.5",
                "uniform": "[population.uniform] with lines such as growth_rate = [0.001, 0.01]",
                "log_uniform": "[population.log_uniform] with lines such as antigen_loss_rate = [1e-5, 0.01]",
                "typical": "[population.typical] with lines such as growth_rate = 0.004",
                "correlation": '[population.correlation] with lines such as "growth_rate,kill_rate" = 0.3',
                "covariates": "[population.covariates] with lines such as weight_median_kg = 75.0"}
    for key, example in examples.items():
        if key in pop and not isinstance(pop[key], dict):
            raise InputError(describe(f"{fname} [population] {key}", pop[key], f"a table: {example}"))
    for name, v in pop.get("cv", {}).items():
        if not _is_number(v):
            raise InputError(describe(f"{fname} [population.cv] {name}", v, "a coefficient of variation >= 0 (0.3 = 30%)"))
    for name, v in pop.get("correlation", {}).items():
        if not _is_number(v):
            raise InputError(describe(f"{fname} [population.correlation] {name}", v, "a correlation in (-1, 1)"))
    known = [f.name for f in fields(Covariates)]
    for name, v in pop.get("covariates", {}).items():
        if name not in known:
            raise InputError(describe(f"{fname} [population.covariates] key", name, f"one of {known}"))
        if not _is_number(v):
            raise InputError(describe(f"{fname} [population.covariates] {name}", v, "a number (its unit is in its name)"))


def load_experiment(path: str | Path) -> Experiment:
    """Read an experiment TOML file; unknown tables or keys are errors naming them."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise InputError(describe("experiment file", str(path), "an existing TOML file")) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(describe(f"{path.name}", str(exc), "valid TOML")) from None
    for key in doc:
        if key not in _TOP:
            raise InputError(describe(f"{path.name} table [{key}]", key, f"one of {sorted(_TOP)}"))
    for key in ("experiment", "population"):
        if key in doc and not isinstance(doc[key], dict):
            raise InputError(describe(f"{path.name} [{key}]", doc[key], f"a table: a [{key}] header followed by key = value lines"))
    settings = dict(doc.get("experiment", {}))
    for key in settings:
        if key not in _SETTINGS:
            raise InputError(describe(f"{path.name} [experiment] key", key, f"one of {sorted(_SETTINGS)}"))
    pop = dict(doc.get("population", {}))
    for key in pop:
        if key not in _POPULATION:
            raise InputError(describe(f"{path.name} [population] key", key, f"one of {sorted(_POPULATION)}"))
    _check_population_tables(path.name, pop)
    if "outputs" in settings and (not isinstance(settings["outputs"], list) or not settings["outputs"]
                                  or not all(isinstance(o, str) for o in settings["outputs"])):
        raise InputError(describe(f"{path.name} [experiment] outputs", settings["outputs"],
                                  'a non-empty list of names, e.g. outputs = ["sld", "pct_change"]'))
    if "file" in pop and not Path(pop["file"]).is_absolute():
        pop["file"] = str(path.parent / pop["file"])
    regimens = doc.get("regimens")
    if not isinstance(regimens, dict) or not regimens:
        raise InputError(describe(f"{path.name} [regimens]", regimens, "a table of name = \"regimen text\" entries"))
    for name, text in regimens.items():
        if not isinstance(text, str):
            raise InputError(describe(f"{path.name} [regimens] {name}", text, f"regimen text such as {EXAMPLE_REGIMEN!r}"))
        Regimen.parse(text)  # fail early, naming the clause
    name = settings.pop("name", path.stem)
    if "outputs" in settings:
        settings["outputs"] = tuple(settings["outputs"])
    return Experiment(regimens=dict(regimens), population=pop, settings=settings, name=name)


# ---------------------------------------------------------------------- strata
def stratify(ds: xr.Dataset, by: str, *, quantiles: Sequence[float] | None = None, labels: Sequence[str] | None = None,
             n_boot: int = 2000, seed: int = 0) -> xr.Dataset:
    """Endpoints per stratum of a patient variable of a trial result.

    ``by`` names a ``(patient,)`` variable of ``ds``. An integer flag variable (such as
    ``cold``) is split by its values (labelled by ``flag_meanings``); a continuous one by its
    ``quantiles`` (default: the median). Returns dims ``(stratum, regimen)``: ``n``, ``orr``,
    ``dcr`` and ``median_pfs_days``, each with 95% CI (Clopper–Pearson; Kaplan–Meier with
    log-log band), and ``orr_difference`` of every regimen against the first one, with a
    95% percentile bootstrap CI over patients (seeded; the virtual patients are the same in
    every regimen, so the difference is paired).
    """
    if by not in ds or ds[by].dims != ("patient",):
        raise InputError(describe("by", by, f"a (patient,) variable of the trial: {[k for k, v in ds.data_vars.items() if v.dims == ('patient',)]}"))
    x = ds[by].values
    if np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
        values = np.unique(x)
        meanings = ds[by].attrs.get("flag_meanings", "").split()
        groups = [x == v for v in values]
        names = [meanings[int(v)] if meanings and int(v) < len(meanings) else f"{by}={v}" for v in values]
        definition = f"{by} by value"
    else:
        qs = [0.5] if quantiles is None else list(quantiles)
        cuts = np.quantile(x, qs)
        edges = np.concatenate([[-np.inf], cuts, [np.inf]])
        groups = [(x > lo) & (x <= hi) for lo, hi in zip(edges[:-1], edges[1:])]
        unit = ds[by].attrs.get("units", "")
        names = []
        for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            if k == 0:
                names.append(f"{by} <= {hi:.3g} {unit}".strip())
            elif k == len(edges) - 2:
                names.append(f"{by} > {lo:.3g} {unit}".strip())
            else:
                names.append(f"{lo:.3g} < {by} <= {hi:.3g} {unit}".strip())
        definition = f"{by} split at quantiles {qs}"
    if labels is not None:
        if len(labels) != len(names):
            raise InputError(describe("labels", list(labels), f"{len(names)} labels, one per stratum"))
        names = list(labels)
    br = ds.best_response.values
    resp = np.isin(br, (ep.CR, ep.PR))
    ctrl = np.isin(br, (ep.CR, ep.PR, ep.SD))
    n_reg = ds.sizes["regimen"]
    out = {k: np.full((len(groups), n_reg), np.nan) for k in (
        "n", "orr", "orr_lower", "orr_upper", "dcr", "dcr_lower", "dcr_upper",
        "median_pfs_days", "median_pfs_days_lower", "median_pfs_days_upper",
        "orr_difference", "orr_difference_lower", "orr_difference_upper")}
    rng = np.random.default_rng(seed)
    for s, g in enumerate(groups):
        idx = np.flatnonzero(g)
        boot = rng.integers(0, idx.size, size=(n_boot, idx.size)) if idx.size else None
        for r in range(n_reg):
            out["n"][s, r] = idx.size
            if idx.size == 0:
                continue
            for key, hits in (("orr", resp), ("dcr", ctrl)):
                v, lo, hi = ep.response_rate(hits[r, idx])
                out[key][s, r], out[f"{key}_lower"][s, r], out[f"{key}_upper"][s, r] = v, lo, hi
            km = ep.kaplan_meier(ds.pfs_days.values[r, idx], ds.progressed.values[r, idx])
            (out["median_pfs_days"][s, r], out["median_pfs_days_lower"][s, r], out["median_pfs_days_upper"][s, r]) = ep.km_median(km)
            diff = resp[r, idx].astype(float) - resp[0, idx]
            out["orr_difference"][s, r] = diff.mean()
            lo, hi = np.percentile(diff[boot].mean(axis=1), [2.5, 97.5])
            out["orr_difference_lower"][s, r], out["orr_difference_upper"][s, r] = lo, hi
    units = {"n": "1", "median_pfs_days": "day", "median_pfs_days_lower": "day", "median_pfs_days_upper": "day"}
    data = {k: (("stratum", "regimen"), v, {"units": units.get(k, "1")}) for k, v in out.items()}
    res = xr.Dataset(data, coords={"stratum": names, "regimen": ds.regimen.values})
    res.attrs.update({"stratified_by": by, "definition": definition, "bootstrap_resamples": n_boot, "seed": seed,
                      "orr_difference": f"ORR of each regimen minus ORR of {str(ds.regimen.values[0])!r}, same patients"})
    return res


def strata_table(st: xr.Dataset) -> str:
    """Text table of :func:`stratify` (ORR, ORR difference vs the first regimen, median PFS)."""

    def fmt(x):
        return "NR" if not np.isfinite(x) else f"{x:.0f}"

    ws = max([len("stratum")] + [len(str(x)) for x in st.stratum.values])
    wr = max([len("regimen")] + [len(str(x)) for x in st.regimen.values])
    lines = [f"stratified by {st.attrs['stratified_by']} ({st.attrs['definition']})",
             f"{'stratum':<{ws}} {'regimen':<{wr}} {'n':>5} {'ORR % (95% CI)':>19} {'dORR pts (95% CI)':>20} {'median PFS d (95% CI)':>22}"]
    for s in st.stratum.values:
        for r in st.regimen.values:
            d = st.sel(stratum=s, regimen=r)
            orr = f"{100 * d.orr:.1f} ({100 * d.orr_lower:.1f}-{100 * d.orr_upper:.1f})"
            dorr = f"{100 * d.orr_difference:+.1f} ({100 * d.orr_difference_lower:+.1f},{100 * d.orr_difference_upper:+.1f})"
            pfs = f"{fmt(float(d.median_pfs_days))} ({fmt(float(d.median_pfs_days_lower))}-{fmt(float(d.median_pfs_days_upper))})"
            lines.append(f"{str(s):<{ws}} {str(r):<{wr}} {int(d.n):>5} {orr:>19} {dorr:>20} {pfs:>22}")
    return "\n".join(lines)
