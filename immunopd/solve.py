"""The one place that calls diffrax: compiled, vmapped solves returning an xarray Dataset.

One function, :func:`simulate`, serves one patient and a batch: every parameter may be a
scalar or an array over patients, and the batch is ``jax.vmap``-ed over one compiled solve.
Compilation is cached per (model, solver, tolerances, max_steps) and JAX re-traces only when
array shapes change (number of patients, output times, padded dose count), so repeated calls
on the same grid reuse the compiled code.

Infusions are exact. The antibody PK is linear, so its states come from the exact solution
(closed-form propagation between infusion edges, as rxode2's linCmt does) and the solver
integrates only the 8 PD states, whose vector field reads the occupancies from that
solution. Every infusion start and end is also passed to the step-size controller as a
``jump_ts``, so the solver steps onto each edge, where the occupancies have a kink; no small
maximum step is used to "catch" doses. (Boluses are not modelled; see :mod:`immunopd.dosing`.)

A patient whose solve fails (diffrax result code other than success) is never returned as
numbers: :func:`simulate` raises :class:`~immunopd.errors.SolverError` naming the patient
indices and their parameters, or, with ``on_failure="flag"``, returns NaN for them and the
code in ``solver_status``.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from collections.abc import Mapping, Sequence

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .dosing import Regimen
from .errors import InputError, InputTypeError, SolverError, describe
from .models.core import LOG_STATES, OBSERVABLES, STATES, core_model
from .models.growth import GROWTH_LAWS
from .models import pk
from .models.pk import DRUGS, TARGETS

__all__ = ["simulate", "SOLVERS", "prepare", "problem", "check_options", "check_outputs", "check_times", "padded_chunks", "run_batches", "threads"]

SOLVERS: dict[str, type] = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "kvaerno5": diffrax.Kvaerno5,  # the stiff (implicit) option
}

_RESULT_MESSAGES = list(diffrax.RESULTS._index_to_message)


N_PD = 8  # states integrated numerically; the antibody states come from the exact PK solution


def _pk_tables(model, pkv, starts, ends, rates, edges):
    """Per target: its exact propagator, segment input rates, amounts at every edge, and the
    central amount on each segment as ``c_k + sum_i m_ki exp(-l_i (t - e_k))`` (for the vector field)."""
    hits = (edges[None, :, None] >= starts[:, None, :]) & (edges[None, :, None] < ends[:, None, :])
    seg_rates = jnp.sum(jnp.where(hits, rates[:, None, :], 0.0), axis=-1)  # (targets, edges)
    dts = jnp.diff(edges)
    tables = []
    for k, target in enumerate(model.targets):
        prop = pk.propagator(*pkv[target])

        def step(carry, inputs, prop=prop):
            x, el = carry
            rate, dt = inputs
            nxt = pk.advance(prop, x, el, rate, dt)
            return nxt, nxt

        start = (jnp.zeros(2), jnp.zeros(()))
        _, (xs, els) = jax.lax.scan(step, start, (seg_rates[k, :-1], dts))
        xs = jnp.concatenate([start[0][None], xs])
        els = jnp.concatenate([start[1][None], els])
        lam, proj, x_ss, _ = prop
        forced = seg_rates[k][:, None] * (proj[:, 0, :] @ x_ss)[None, :]  # (edges, modes)
        modes = xs @ proj[:, 0, :].T - forced  # free minus forced central-amount modes
        level = seg_rates[k] * x_ss[0]
        tables.append((prop, seg_rates[k], xs, els, level, modes))
    return tables


def _segment(edges, t):
    # a binary search (7 probes for a year of weekly doses): measured 10 % faster per solve
    # than comparing t with every edge (bench/simulate.py batch, 2 CPU cores)
    return jnp.clip(jnp.searchsorted(edges, t, side="right", method="scan") - 1, 0, edges.shape[0] - 1)


def _central_at(tables, edges, t):
    """Central amount (mg) of each target at time t: two exponentials per target."""
    k = _segment(edges, t)
    dt = t - edges[k]
    return [level[k] + modes[k] @ jnp.exp(-prop[0] * dt) for prop, _, _, _, level, modes in tables]


def _pk_at(tables, edges, t):
    """(central, peripheral, eliminated) amounts of each target at time t, exactly."""
    k = _segment(edges, t)
    out = []
    for prop, seg_rates, xs, els, _, _ in tables:
        x, el = pk.advance(prop, xs[k], els[k], seg_rates[k], t - edges[k])
        out.append(jnp.concatenate([x, el[None]]))
    return out


def one_patient_solver(model, solver_name: str, rtol: float, atol: float, max_steps: int,
                       outputs: tuple[str, ...], adjoint=None):
    """The solve of one patient, ``f(p, starts, ends, rates, jumps, ts)``, before jit/vmap.

    Returns ``({name: (time,)}, status, steps)`` for the state and observable names in
    ``outputs`` (states in their own units, not log). ``adjoint`` (e.g.
    ``diffrax.ForwardMode()``) is passed to diffeqsolve for forward-mode derivatives.
    """
    solver = SOLVERS[solver_name]()
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint

    def one_patient(p, starts, ends, rates, jumps, ts):
        pkv = model.pk_values(p)
        y0 = model.initial_state(p)
        edges = jnp.concatenate([jnp.zeros(1), jumps])
        tables = _pk_tables(model, pkv, starts, ends, rates, edges)

        def vector_field(t, y, args):
            c1, c2 = _central_at(tables, edges, t)
            ro1 = pk.occupancy(c1 / pkv["pd1"][1], p["pd1_tumor_partition"], p["pd1_ec50"])
            ro2 = pk.occupancy(c2 / pkv["clever1"][1], p["clever1_tumor_partition"], p["clever1_ec50"])
            return model.pd_rhs(y, p, ro1, ro2)

        controller = diffrax.ClipStepSizeController(diffrax.PIDController(rtol=rtol, atol=atol), jump_ts=jumps)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field),
            solver,
            t0=0.0,
            t1=ts[-1],
            dt0=None,
            y0=y0[:N_PD],
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller,
            max_steps=max_steps,
            throw=False,
            adjoint=adjoint,
        )
        pk_states = jax.vmap(lambda t: jnp.concatenate(_pk_at(tables, edges, t)))(ts)
        ys = jnp.concatenate([sol.ys, pk_states], axis=1)
        obs = jax.vmap(lambda y: model.observables(y, p, pkv, y0))(ys)
        picked = {}
        for name in outputs:
            if name in obs:
                picked[name] = obs[name]
            else:
                i = model.states.index(name)
                picked[name] = jnp.exp(ys[:, i]) if name in LOG_STATES else ys[:, i]
        return picked, sol.result._value, sol.stats["num_steps"]

    return one_patient


#: every state and observable, in the order of a full result
ALL_OUTPUTS = tuple(STATES) + tuple(OBSERVABLES)


@functools.lru_cache(maxsize=64)
def _compiled(model, solver_name: str, rtol: float, atol: float, max_steps: int, outputs: tuple[str, ...] = ALL_OUTPUTS):
    """The jitted, vmapped solve, returning ``({name: (patients, time)}, status, steps)`` for
    the state and observable names in ``outputs``: XLA drops the work of the others, and each
    comes back as its own contiguous array (one copy to the host, none to split or exponentiate)."""
    one_patient = one_patient_solver(model, solver_name, rtol, atol, max_steps, outputs)
    return jax.jit(jax.vmap(one_patient, in_axes=(0, None, None, 0, None, None)))


def check_outputs(outputs) -> tuple[str, ...] | None:
    """Validate a selection of state/observable names; ``None`` means all."""
    if outputs is None:
        return None
    if isinstance(outputs, str) or not isinstance(outputs, Sequence) or len(outputs) == 0:
        raise InputError(describe("outputs", outputs, "None or a non-empty list of state/observable names"))
    for name in outputs:
        if name not in OBSERVABLES and name not in STATES:
            raise InputError(describe("outputs", name, f"state or observable names: {list(STATES) + list(OBSERVABLES)}"))
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


def prepare(regimen=None, params: Mapping | None = None, *, weight=None, growth_law: str = "gompertz"):
    """Validate inputs and return (model, regimen, parameter dict, n_patients, weight_given).

    Drug-specific PK defaults follow the dosed drug (nivolumab's when the regimen gives
    nivolumab), unless the user set them. Shared by :func:`simulate` and the fitting code.
    """
    if growth_law not in GROWTH_LAWS:
        raise InputError(describe("growth_law", growth_law, f"one of {list(GROWTH_LAWS)}"))
    model = core_model(growth_law)
    regimen = _as_regimen(regimen)
    if not isinstance(params, (Mapping, type(None))):
        raise InputTypeError(describe("params", params, "a mapping of parameter name to value(s)"))
    overrides = dict(params or {})
    for name in overrides:
        model.parameters[name]  # raises ParameterError for unknown names
    if isinstance(weight, str):  # "154 lb"
        from .units import parse_value

        weight = parse_value(weight, "kg", "weight")
    if weight is not None:
        if "body_weight" in overrides:
            raise InputError(describe("weight", weight, "weight or params['body_weight'], not both"))
        overrides["body_weight"] = weight
    weight_given = "body_weight" in overrides
    drug_defaults = {}
    for target in TARGETS:
        drug = regimen.drug_for(target)
        if drug is not None:
            d = DRUGS[drug]
            for key, value in (
                ("clearance", d.clearance),
                ("central_volume", d.central_volume),
                ("intercompartmental_clearance", d.intercompartmental_clearance),
                ("peripheral_volume", d.peripheral_volume),
                ("ec50", d.ec50),
            ):
                if f"{target}_{key}" not in overrides:
                    drug_defaults[f"{target}_{key}"] = value
    values, batch = model.parameters.resolve({**drug_defaults, **overrides})
    return model, regimen, values, (batch or 1), weight_given


def _drug_constants(regimen: Regimen) -> dict[str, float]:
    out = {}
    for target in TARGETS:
        name = regimen.drug_for(target) or {"pd1": "pembrolizumab", "clever1": "bexmarilimab"}[target]
        d = DRUGS[name]
        out[f"{target}_ref_weight"] = d.ref_weight
        out[f"{target}_cl_exponent"] = d.clearance_weight_exponent
        out[f"{target}_v_exponent"] = d.volume_weight_exponent
    return out


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
    weight_given: bool
    schedule: object
    p: dict  # parameters as (n,) float64 arrays, drug constants included
    fn: object  # the compiled, vmapped solve
    shared: tuple  # (starts, ends, jump times, output times), shared by all patients


def problem(regimen, params, *, ts, weight=None, growth_law="gompertz", solver="tsit5", rtol=1e-6, atol=1e-9,
            max_steps=100_000, min_doses=0, outputs: tuple[str, ...] | None = None) -> Problem:
    """Validate and assemble a batch for the compiled solver (used by simulate and trials)."""
    model, regimen, values, n, weight_given = prepare(regimen, params, weight=weight, growth_law=growth_law)
    weights = values["body_weight"] if weight_given else None
    schedule = regimen.schedule(float(ts[-1]), weights, n, min_doses=min_doses)
    p = {k: jnp.broadcast_to(jnp.asarray(v, dtype=jnp.float64), (n,)) for k, v in values.items()}
    p.update({k: jnp.full((n,), v, dtype=jnp.float64) for k, v in _drug_constants(regimen).items()})
    fn = _compiled(model, solver, float(rtol), float(atol), int(max_steps), ALL_OUTPUTS if outputs is None else tuple(outputs))
    shared = (
        jnp.asarray(schedule.starts),
        jnp.asarray(schedule.ends),
        jnp.asarray(np.where(np.isfinite(schedule.jump_times), schedule.jump_times, ts[-1] + 1.0)),
        jnp.asarray(ts),
    )
    return Problem(model, regimen, values, n, weight_given, schedule, p, fn, shared)


def simulate(
    regimen: Regimen | str | None = None,
    params: Mapping[str, float | Sequence[float]] | None = None,
    *,
    days: float = 365.0,
    times: Sequence[float] | None = None,
    weight: float | Sequence[float] | None = None,
    growth_law: str = "gompertz",
    solver: str = "tsit5",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 100_000,
    on_failure: str = "raise",
    outputs: Sequence[str] | None = None,
) -> xr.Dataset:
    """Simulate the core model for one patient or a batch.

    Parameters
    ----------
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
        Dims ``patient`` and ``time`` (day); states and observables as ``(patient, time)``
        variables, parameters as ``(patient,)`` variables, units in each variable's attrs and
        provenance in the Dataset attrs.
    """
    check_options(solver=solver, on_failure=on_failure, rtol=rtol, atol=atol, max_steps=max_steps)
    outputs = check_outputs(outputs)
    ts = check_times(times, days)
    prob = problem(regimen, params, ts=ts, weight=weight, growth_law=growth_law, solver=solver,
                   rtol=rtol, atol=atol, max_steps=max_steps, outputs=outputs)
    model, regimen, values, n, schedule = prob.model, prob.regimen, prob.values, prob.n, prob.schedule
    obs, status, steps = _run_chunked(prob.fn, prob.p, schedule.rates, prob.shared, n)
    obs = {name: obs[name] for name in (outputs or ALL_OUTPUTS)}  # jax returns dicts sorted by key
    failed = np.flatnonzero(status != 0)
    if failed.size and on_failure == "raise":
        shown = ", ".join(
            f"patient {i}: {_RESULT_MESSAGES[status[i]].splitlines()[0]} "
            + "{" + ", ".join(f"{k}={float(np.asarray(values[k]).reshape(-1)[i if np.ndim(values[k]) else 0]):.4g}" for k in _varying(values)) + "}"
            for i in failed[:5]
        )
        raise SolverError(
            f"the ODE solve failed for {failed.size} of {n} patient(s) (indices {failed[:20].tolist()}); {shown}. "
            "Try solver='kvaerno5', a larger max_steps, or on_failure='flag' to keep the others."
        )
    if failed.size:
        for v in obs.values():
            v[failed] = np.nan
    from .results import build_dataset

    return build_dataset(
        model=model, ts=ts, obs=obs, values=values, n=n, status=status, steps=steps,
        attrs={
            "model": model.name,
            "growth_law": model.growth_law,
            "regimen": regimen.describe(),
            "anti_pd1_drug": regimen.drug_for("pd1") or "none",
            "anti_clever1_drug": regimen.drug_for("clever1") or "none",
            "body_weight_given": int(prob.weight_given),
            "solver": f"diffrax.{SOLVERS[solver].__name__} with PIDController inside ClipStepSizeController(jump_ts=infusion edges)",
            "rtol": float(rtol),
            "atol": float(atol),
        },
        dosed_mg=schedule.dosed_mg,
    )


#: patients per compiled call on CPU. Measured on 2 CPU cores (bench/simulate.py): one
#: compiled call keeps about one core busy whatever its size (XLA's CPU runtime runs the
#: solver loop's small kernels one after another), so throughput comes from running
#: several calls at once (see :func:`threads`); 256-1,024 patients per call were within
#: noise of each other, 2,048 was ~10 % slower (cache), and smaller batches also wait less
#: for their slowest patient (a vmapped while loop runs until its last patient is done).
CHUNK = 512
#: batches at most this large run as one call of their exact size (no padding, no threads)
SINGLE_CALL = 128


def threads() -> int:
    """Compiled calls run at once: ``IMMUNOPD_THREADS`` if set, else the CPU cores this process
    may use (its affinity mask, capped by a container's CPU quota); 1 on accelerators (one
    device executes one call at a time)."""
    env = os.environ.get("IMMUNOPD_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise InputError(describe("IMMUNOPD_THREADS", env, "an integer >= 1"))
        return int(env)
    if jax.default_backend() != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, quota)) if quota else cores


@functools.lru_cache(maxsize=1)
def _cgroup_cpu_quota() -> int | None:
    """Whole CPUs allowed by a container's CPU quota (cgroup v2 ``cpu.max`` or v1
    ``cfs_quota_us``), rounded up; None when there is none. A container limited to 2 CPUs on a
    64-core host still sees 64 cores in its affinity mask."""
    v2 = _read("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" or "max <period>"
    if v2 is not None:
        quota, _, period = v2.strip().partition(" ")
    else:
        quota, period = _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    try:
        q, p = int(quota), int(period)  # "max", v1's "-1" or a missing file: no quota
    except (TypeError, ValueError):
        return None
    return max(1, -(-q // p)) if q > 0 and p > 0 else None


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def chunk_size(n: int, workers: int) -> int:
    """Patients per call for a batch of ``n``: CHUNK, or less so that every worker gets a
    share (rounded up to a multiple of 64, so a few sizes cover all batches)."""
    share = -(-n // workers)
    return min(CHUNK, -(-share // 64) * 64)


def padded_chunks(order: np.ndarray, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split the patient indices ``order`` into ``(chunk, padded)`` pairs: each chunk's indices,
    and the same padded to ``size`` with copies of its first patient (one compiled shape for
    all chunks; the copies' results are dropped)."""
    out = []
    for lo in range(0, len(order), size):
        chunk = order[lo : lo + size]
        out.append((chunk, np.concatenate([chunk, np.full(size - chunk.size, chunk[0])])))
    return out


def run_batches(fn, p, rates, shared, batches, workers: int | None = None):
    """Run the compiled solve ``fn`` on each index array in ``batches`` (patients of ``p`` and
    ``rates``; all arrays of one length, padding copies included) and yield each one's outputs
    as numpy arrays, in order. Up to ``workers`` calls (default :func:`threads`) run at once, each
    from its own thread: JAX releases the GIL while XLA runs, and each patient's numbers are
    the same however the batches are formed or scheduled (no reduction across patients).
    """
    workers = threads() if workers is None else workers
    host = {k: np.asarray(v) for k, v in p.items()}  # index on the host, not with eager JAX ops
    rates = np.asarray(rates)
    starts, ends, jumps, ts = shared

    def one(idx):
        out = fn({k: v[idx] for k, v in host.items()}, starts, ends, rates[idx], jumps, ts)
        return jax.tree_util.tree_map(np.asarray, out)

    batches = iter(batches)
    if workers == 1:
        for idx in batches:
            yield one(idx)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="immunopd-solve") as pool:
        pending = deque(pool.submit(one, idx) for idx in itertools.islice(batches, workers))
        while pending:
            out = pending.popleft().result()
            nxt = next(batches, None)
            if nxt is not None:
                pending.append(pool.submit(one, nxt))
            yield out


def _run_chunked(fn, p, rates, shared, n):
    """Run the compiled solve over ``n`` patients in padded chunks, several at once; returns
    (outputs, status, steps) as numpy arrays, each chunk copied once into arrays preallocated
    for all patients."""
    starts, ends, jumps, ts = shared
    if n <= SINGLE_CALL:
        return jax.tree_util.tree_map(np.array, fn(p, starts, ends, jnp.asarray(rates), jumps, ts))
    workers = threads()
    chunks = padded_chunks(np.arange(n), chunk_size(n, workers))
    buffers = treedef = None
    for (chunk, _), out in zip(chunks, run_batches(fn, p, rates, shared, (idx for _, idx in chunks), workers)):
        leaves, treedef = jax.tree_util.tree_flatten(out)
        if buffers is None:
            buffers = [np.empty((n,) + leaf.shape[1:], leaf.dtype) for leaf in leaves]
        lo, m = chunk[0], chunk.size
        for buf, leaf in zip(buffers, leaves):
            buf[lo : lo + m] = leaf[:m]
    return jax.tree_util.tree_unflatten(treedef, buffers)


def _varying(values: Mapping[str, np.ndarray]) -> list[str]:
    batched = [k for k, v in values.items() if np.ndim(v) == 1]
    return batched[:6] if batched else ["baseline_tumor_volume"]
