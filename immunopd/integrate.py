"""The integration layer: the only place that calls diffrax and packs named states into vectors.

:func:`one_patient_solver` builds the solve of one patient for a model and the drugs a batch
doses. The PD states are integrated by diffrax; each drug's PK comes from its exact solution
between dose edges (:mod:`immunopd.pkexact`) when its model is time-invariant, and is otherwise
integrated with the PD states (``exact = False``, e.g. time-varying clearance). Every dose edge
is a ``jump_ts`` of the step-size controller, so the solver steps onto each kink.

:func:`compiled` jits and vmaps it (cached per model, drugs, solver, tolerances, outputs);
:func:`run_batches` runs compiled calls over chunks of patients, several at once from threads.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from . import pkexact
from .errors import InputError, describe
from .initial import NO_STEADY_STATE, initial_state
from .pkmodels import COMPARTMENTS

__all__ = ["SOLVERS", "one_patient_solver", "compiled", "full_rhs", "full_layout", "run_batches", "run_chunked", "threads", "chunk_size", "bucket", "padded_chunks", "note_compiling",
           "status_message", "DRUG_OUTPUTS"]

SOLVERS: dict[str, type] = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "kvaerno5": diffrax.Kvaerno5,  # the stiff (implicit) option
}

#: outputs indexed by drug or target rather than one per name: name -> (extra dims, unit, long name)
DRUG_OUTPUTS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "concentration": (("drug",), "ug/mL", "serum (central) concentration of each dosed drug"),
    "occupancy": (("target",), "1", "fraction of each target occupied in the tumor, 0-1"),
    "drug_amount": (("drug", "compartment"), "mg",
                    "amount of each dosed drug per PK compartment (cumulative for 'eliminated'; NaN where its model has no such compartment)"),
}


def status_message(code: int) -> str:
    """The first line of what a solver status code means."""
    if code == NO_STEADY_STATE:
        return "no untreated steady state at baseline (the initial-state Newton iteration did not converge)"
    messages = list(diffrax.RESULTS._index_to_message)
    return messages[code].splitlines()[0] if 0 <= code < len(messages) else f"unknown status {code}"


def occupancies(drugs, p, concentrations):
    """Occupancy of each model target: competitive binding of the drugs on it, 0 with none."""
    exposure: dict[str, object] = {}
    for drug, c in zip(drugs, concentrations):
        x = drug.partition(p) * jnp.maximum(c, 0.0) / drug.ec50(p)
        exposure[drug.target] = exposure.get(drug.target, 0.0) + x
    return {t: x / (1.0 + x) for t, x in exposure.items()}


def one_patient_solver(model, drugs: tuple, solver_name: str, rtol: float, atol: float, max_steps: int,
                       outputs: tuple[str, ...], adjoint=None):
    """The solve of one patient, ``f(p, starts, ends, rates, boluses, jumps, ts)``, before jit/vmap.

    ``starts``/``ends``: (drugs, doses) day; ``rates``: (drugs, doses) mg/day; ``boluses``:
    (drugs, doses) mg given at ``starts``; ``jumps``: sorted dose edges (padded with times past
    the end); ``ts``: output times. Returns ``({name: array}, status, steps)``: states and
    observables as ``(time,)``, ``concentration`` ``(time, drugs)``, ``occupancy`` ``(time,
    targets)``, ``drug_amount`` ``(time, drugs, compartments)``.
    """
    solver = SOLVERS[solver_name]()
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    names = model.state_names
    n_pd = len(names)

    def one_patient(p, starts, ends, rates, boluses, jumps, ts):
        y0_named, ok = initial_state(model, p)
        edges = jnp.concatenate([jnp.zeros(1), jumps])
        indiv = [d.individual(p, jnp) for d in drugs]
        tables = [pkexact.tables(d.pk, v, starts[k], ends[k], rates[k], boluses[k], edges) if d.pk.exact else
                  pkexact.segment_rates(starts[k], ends[k], rates[k], edges)
                  for k, (d, v) in enumerate(zip(drugs, indiv))]
        layout = []  # (drug index, offset in y) of numerically integrated PK
        offset = n_pd
        for k, d in enumerate(drugs):
            if not d.pk.exact:
                layout.append((k, offset))
                offset += d.pk.compartments + 1

        def concentrations(t, y):
            out = []
            seg = pkexact.segment(edges, t)
            for k, (d, v) in enumerate(zip(drugs, indiv)):
                if d.pk.exact:
                    out.append(pkexact.central_at(tables[k], seg, t - edges[seg]) / v["central_volume"])
                else:
                    off = dict(layout)[k]
                    out.append(y[off] / v["central_volume"])
            return out

        def vector_field(t, y, args):
            states = {name: y[i] for i, name in enumerate(names)}
            occ = occupancies(drugs, p, concentrations(t, y))
            d = model.derivatives(model.environment(states, p, occ, jnp), jnp)
            parts = [jnp.stack([d[name] for name in names])]
            if layout:
                seg = pkexact.segment(edges, t)
                for k, off in layout:
                    drug, n = drugs[k], drugs[k].pk.compartments
                    flows, elim = drug.pk.rhs(y[off: off + n], tables[k][seg], indiv[k], t, jnp)
                    parts += [flows, elim[None]]
            return jnp.concatenate(parts)

        y0 = jnp.stack([y0_named[name] for name in names])
        if layout:
            y0 = jnp.concatenate([y0, jnp.zeros(offset - n_pd)])
        controller = diffrax.ClipStepSizeController(diffrax.PIDController(rtol=rtol, atol=atol), jump_ts=jumps)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field), solver, t0=0.0, t1=ts[-1], dt0=None, y0=y0,
            saveat=diffrax.SaveAt(ts=ts), stepsize_controller=controller, max_steps=max_steps, throw=False, adjoint=adjoint,
        )
        status = jnp.where(ok, sol.result._value, NO_STEADY_STATE)
        picked = _outputs(model, drugs, p, indiv, tables, layout, edges, ts, sol.ys, y0, outputs, concentrations)
        return picked, status, sol.stats["num_steps"]

    return one_patient


def _outputs(model, drugs, p, indiv, tables, layout, edges, ts, ys, y0, outputs, concentrations):
    names = model.state_names
    start_states = {name: y0[i] for i, name in enumerate(names)}
    start_env = model.environment(start_states, p, occupancies(drugs, p, concentrations(0.0, y0)), jnp)
    start_obs = model.observe(start_env, None, jnp)
    start = {**{k: v for k, v in start_env.items() if k not in p}, **start_obs}

    def at(t, y):
        states = {name: y[i] for i, name in enumerate(names)}
        conc = concentrations(t, y)
        occ = occupancies(drugs, p, conc)
        env = model.environment(states, p, occ, jnp)
        obs = model.observe(env, start, jnp)
        out = {}
        for name in outputs:
            if name in obs:
                out[name] = obs[name]
            elif name in states:
                out[name] = env[name]  # natural units (log states exponentiated)
            elif name == "concentration":
                out[name] = jnp.stack(conc) if drugs else jnp.zeros(0)
            elif name == "occupancy":
                out[name] = jnp.stack([jnp.asarray(occ.get(t_, 0.0), dtype=jnp.float64) for t_ in model.target_names]) \
                    if model.targets else jnp.zeros(0)
            elif name == "drug_amount":
                out[name] = _amounts(drugs, tables, layout, edges, t, y) if drugs else jnp.zeros((0, len(COMPARTMENTS)))
        return out

    return jax.vmap(at)(ts, ys)


def _amounts(drugs, tables, layout, edges, t, y):
    seg = pkexact.segment(edges, t)
    rows = []
    offsets = dict(layout)
    for k, d in enumerate(drugs):
        n = d.pk.compartments
        if d.pk.exact:
            x, el = pkexact.amounts_at(tables[k], seg, t - edges[seg])
        else:
            x, el = y[offsets[k]: offsets[k] + n], y[offsets[k] + n]
        pad = jnp.full(len(COMPARTMENTS) - 1 - n, jnp.nan)
        rows.append(jnp.concatenate([x, pad, el[None]]))
    return jnp.stack(rows)


def full_layout(model, drugs) -> tuple[str, ...]:
    """Names of the full state vector of :func:`full_rhs`: the model's states, then each drug's
    compartments and cumulative elimination (``<drug>_central``, ``<drug>_peripheral_1``, ...)."""
    out = list(model.state_names)
    for d in drugs:
        out += [f"{d.name}_{c}" for c in COMPARTMENTS[: d.pk.compartments]] + [f"{d.name}_eliminated"]
    return tuple(out)


def full_rhs(model, drugs):
    """``f(t, y, p, u)``: dy/dt with every drug's PK as ODEs, in the layout of :func:`full_layout`
    (``u``: infusion rate of each drug, mg/day). The reference form that scipy integrates in the
    tests; the compiled solver instead takes exact PK where it exists."""
    names = model.state_names
    n_pd = len(names)

    def rhs(t, y, p, u):
        indiv = [d.individual(p, jnp) for d in drugs]
        states = {name: y[i] for i, name in enumerate(names)}
        parts, conc, off = [], [], n_pd
        for k, (d, v) in enumerate(zip(drugs, indiv)):
            n = d.pk.compartments
            conc.append(y[off] / v["central_volume"])
            flows, elim = d.pk.rhs(y[off: off + n], u[k], v, t, jnp)
            parts += [flows, elim[None]]
            off += n + 1
        occ = occupancies(drugs, p, conc)
        d = model.derivatives(model.environment(states, p, occ, jnp), jnp)
        return jnp.concatenate([jnp.stack([d[name] for name in names])] + parts)

    return rhs


@functools.lru_cache(maxsize=64)
def compiled(model, drugs: tuple, solver_name: str, rtol: float, atol: float, max_steps: int, outputs: tuple[str, ...]):
    """The jitted, vmapped solve, ``f(p, starts, ends, rates, boluses, jumps, ts)`` returning
    ``({name: (patients, time, ...)}, status, steps)``: XLA drops the work of outputs not asked for."""
    one_patient = one_patient_solver(model, drugs, solver_name, rtol, atol, max_steps, outputs)
    return jax.jit(jax.vmap(one_patient, in_axes=(0, None, None, 0, 0, None, None)))


#: patients per compiled call on CPU. Measured on 2 CPU cores (bench/simulate.py): one
#: compiled call keeps about one core busy whatever its size (XLA's CPU runtime runs the
#: solver loop's small kernels one after another), so throughput comes from running
#: several calls at once (see :func:`threads`); 256-1,024 patients per call were within
#: noise of each other, 2,048 was ~10 % slower (cache), and smaller batches also wait less
#: for their slowest patient (a vmapped while loop runs until its last patient is done).
CHUNK = 512
#: batches at most this large run as one call (padded to its :func:`bucket`, no threads)
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


def bucket(n: int) -> int:
    """The batch size a call of ``n`` patients is compiled for: the next power of 2, so that a new
    batch size reuses a compiled solve (in memory or from the persistent cache) instead of
    compiling for 6-15 s; the padding patients cost a few milliseconds."""
    return 1 << max(n - 1, 0).bit_length()


def chunk_size(n: int, workers: int) -> int:
    """Patients per call for a batch of ``n``: CHUNK, or less so that every worker gets a
    share (rounded up to a :func:`bucket`, so a few sizes cover all batches)."""
    share = -(-n // workers)
    return min(CHUNK, bucket(share))


#: shown on a progress bar while its first chunk waits for the solver to compile
COMPILING = "compiling the solver (first use of this model, drugs and output grid; seconds)"


def note_compiling(bar, fn) -> bool:
    """Say on ``bar`` (a tqdm bar, or None) that the next call compiles ``fn``, when it has no
    compiled program yet; True if it said so (clear it with ``bar.set_postfix_str("")``)."""
    try:
        fresh = bar is not None and fn._cache_size() == 0
    except AttributeError:  # not a jitted function
        fresh = False
    if fresh:
        bar.set_postfix_str(COMPILING, refresh=True)
    return fresh


def padded_chunks(order: np.ndarray, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split the patient indices ``order`` into ``(chunk, padded)`` pairs: each chunk's indices,
    and the same padded to ``size`` with copies of its first patient (one compiled shape for
    all chunks; the copies' results are dropped)."""
    out = []
    for lo in range(0, len(order), size):
        chunk = order[lo: lo + size]
        out.append((chunk, np.concatenate([chunk, np.full(size - chunk.size, chunk[0])])))
    return out


def run_batches(fn, p, per_patient, shared, batches, workers: int | None = None):
    """Run the compiled solve ``fn`` on each index array in ``batches`` and yield each one's
    outputs as numpy arrays, in order.

    ``p``: parameters ``{name: (patients,)}``; ``per_patient``: ``(rates, boluses)``, each
    ``(patients, drugs, doses)``; ``shared``: ``(starts, ends, jumps, ts)``. Up to ``workers``
    calls (default :func:`threads`) run at once, each from its own thread: JAX releases the GIL
    while XLA runs, and each patient's numbers are the same however the batches are formed or
    scheduled (no reduction across patients).
    """
    workers = threads() if workers is None else workers
    host = {k: np.asarray(v) for k, v in p.items()}  # index on the host, not with eager JAX ops
    rates, boluses = (np.asarray(a) for a in per_patient)
    starts, ends, jumps, ts = shared

    def one(idx):
        out = fn({k: v[idx] for k, v in host.items()}, starts, ends, rates[idx], boluses[idx], jumps, ts)
        return jax.tree_util.tree_map(np.asarray, out)

    batches = iter(batches)
    # the first batch runs here, alone, so that a first call compiles once in this thread rather
    # than in several workers at once (the full suite's segfaults had another cause: the mapping
    # limit, see release_compiled_if_needed)
    first = next(batches, None)
    if first is None:
        return
    yield one(first)
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


#: share of the kernel's limit on memory mappings (vm.max_map_count) above which compiled
#: programs are released before the next solve
MAPPING_SHARE = 0.5


def _mapping_count() -> tuple[int, int] | None:
    """(memory mappings of this process, the kernel's limit), or None where /proc does not say."""
    try:
        with open("/proc/sys/vm/max_map_count", "rb") as f:
            limit = int(f.read())
        with open("/proc/self/maps", "rb") as f:
            count = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except (OSError, ValueError):
        return None
    return count, limit


def release_compiled_if_needed(share: float = MAPPING_SHARE) -> bool:
    """Drop JAX's compiled programs when this process nears the kernel's mapping limit.

    Each compiled solver (one per model, drug set, output grid and batch shape) holds about
    700 memory mappings on XLA:CPU, and Linux allows 65,530 per process by default
    (vm.max_map_count): a long session that compiles ~90 programs (e.g. many different ``days``)
    would crash inside XLA with a segmentation fault. Above ``share`` of the limit this clears
    JAX's caches (later calls recompile; results are unchanged) and returns True.
    """
    counted = _mapping_count()
    if counted is None or counted[0] <= share * counted[1]:
        return False
    jax.clear_caches()
    return True


def run_chunked(fn, p, per_patient, shared, n):
    """Run the compiled solve over ``n`` patients in padded chunks, several at once; returns
    (outputs, status, steps) as numpy arrays, each chunk copied once into arrays preallocated
    for all patients."""
    release_compiled_if_needed()
    starts, ends, jumps, ts = shared
    if n <= SINGLE_CALL:  # one call, padded to its bucket with copies of the first patient (results dropped)
        idx = np.concatenate([np.arange(n), np.zeros(bucket(n) - n, dtype=int)])
        padded = {k: np.asarray(v)[idx] for k, v in p.items()}
        rates, boluses = (np.asarray(a)[idx] for a in per_patient)
        out = fn(padded, starts, ends, rates, boluses, jumps, ts)
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[:n].copy(), out)
    workers = threads()
    chunks = padded_chunks(np.arange(n), chunk_size(n, workers))
    buffers = treedef = None
    for (chunk, _), out in zip(chunks, run_batches(fn, p, per_patient, shared, (idx for _, idx in chunks), workers)):
        leaves, treedef = jax.tree_util.tree_flatten(out)
        if buffers is None:
            buffers = [np.empty((n,) + leaf.shape[1:], leaf.dtype) for leaf in leaves]
        lo, m = chunk[0], chunk.size
        for buf, leaf in zip(buffers, leaves):
            buf[lo: lo + m] = leaf[:m]
    return jax.tree_util.tree_unflatten(treedef, buffers)
