"""Trials and Sobol/Morris/eFAST evaluations beyond one process: chunked, resumable, on Dask.

:func:`run_trial_to_zarr` splits a trial into chunks of patients. Each chunk is simulated by
:func:`immunopd.trial.run_trial` (in this process, or as a task on a Dask ``distributed``
worker, which compiles the solver once and reuses it for every chunk it gets) and written as
its patients' slice of one zarr store in ``<out>.parts/``, then a marker file saying the slice is
complete. The store is laid out first, in this process, from :func:`immunopd.trial.result_layout`
(the names, dims, units and attrs of :func:`~immunopd.trial.run_trial`'s result, its per-patient
variables lazy dask zeros, written with ``compute=False``); its zarr chunks are the run's chunks, so each
chunk writes whole zarr chunks of its own and concurrent workers never touch the same file.
When all are in, the population-level endpoints (ORR, DCR, median PFS) are computed from the
per-patient ones, and the store is renamed over ``out``: ``out`` is only ever a complete result.
Each value is written once.

Resume: the same command after an interruption (Ctrl-C, a killed process) finds the parts
marked complete and computes only the missing chunks (a slice without its marker is simply
written again, with the same values), and the run's fingerprint (regimens, population,
settings, chunking) is checked so parts of a different run are never mixed in. Since every
chunk is a deterministic function of its inputs, the final file equals an uninterrupted run's,
value for value.

Faults: a worker that dies mid-run loses only its in-flight tasks, which the Dask scheduler
gives to another worker; the parts it had finished are on disk. A failed write never replaces
a good result (temporary names and renames), and disk-full and permission errors are reported
as such, naming the path.

:func:`evaluate_distributed` does the same for the model evaluations of a global sensitivity
analysis (:func:`immunopd.sensitivity.evaluate` on chunks of the sample matrix).
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import InputError, describe
from .population import Population

__all__ = ["run_trial_to_zarr", "evaluate_distributed", "ScaleRun", "local_client"]


@dataclass(frozen=True)
class ScaleRun:
    """What a chunked run did: the output path and which chunks were computed or reused."""

    path: Path
    computed: tuple[int, ...]
    reused: tuple[int, ...]


#: Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536 in every worker by default. Setting it at
#: all switches off glibc's dynamic mmap threshold, so each large temporary (XLA buffers, the
#: RECIST arrays) becomes a fresh mmap with its page faults: a warm 8,192-patient chunk ran
#: 10-15 % slower in such a worker than in this process, and within 2-5 % of it without the
#: variable (bench/scale.py). Workers of immunopd's own LocalCluster are started without it.
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


#: modules each worker of :func:`local_client` imports when it starts (Dask's worker preload,
#: ``dask worker --preload immunopd.trial`` on a real cluster): JAX, diffrax and immunopd take
#: ~1.5 s to import, which the first chunk would otherwise pay (bench/scale.py)
WORKER_PRELOAD = ["immunopd.trial", "immunopd.scaleout"]


def local_client(workers: int):
    """A ``distributed.Client`` on a new LocalCluster of ``workers`` single-threaded processes
    (started with :data:`WORKER_CONFIG`, importing :data:`WORKER_PRELOAD`). Each runs its
    chunk's compiled solves on :func:`immunopd.solve.threads` threads."""
    import dask
    from distributed import Client, LocalCluster

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(describe("workers", workers, "an integer >= 1"))
    with dask.config.set(WORKER_CONFIG):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               preload=WORKER_PRELOAD)
    return Client(cluster)


def _os_error(exc: OSError, path) -> InputError:
    if exc.errno == errno.ENOSPC:
        return InputError(f"no space left on the device while writing {path}; free space or choose another --out (partial results are kept for resuming)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return InputError(f"permission denied writing {path}; choose a folder you can write to")
    return InputError(f"cannot write {path}: {exc.strerror or exc}")


def _write_part(ds: xr.Dataset, path: Path) -> None:
    from .io import write_netcdf

    try:
        write_netcdf(ds, path)
    except OSError as exc:
        raise _os_error(exc, path) from exc


def _trial_chunk(regimens, population_data: xr.Dataset, settings: dict, store: str, first: int, marker: str) -> str:
    """One chunk, run wherever it is scheduled: simulate, write its patients' slice of the
    store, then the marker that says the slice is complete."""
    from .io import write_text
    from .trial import per_patient_variables, run_trial

    ds = run_trial(regimens, Population(population_data), **settings)
    keep = set(per_patient_variables(ds))
    try:
        # consolidated=False: the slices change no metadata, and several writers must not race on it
        ds.drop_vars([name for name in ds.variables if name not in keep]).to_zarr(store, region={"patient": slice(first, first + ds.sizes["patient"])}, consolidated=False)
        write_text("", marker)
    except OSError as exc:
        raise _os_error(exc, store) from exc
    return marker


def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _population_digest(pop: Population) -> str:
    h = hashlib.sha256()
    for k in sorted(pop.data.data_vars):
        h.update(k.encode())
        h.update(np.ascontiguousarray(pop.data[k].values).tobytes())
    return h.hexdigest()[:16]


def _prepare_parts(parts_dir: Path, fingerprint: str) -> None:
    manifest = parts_dir / "run.json"
    try:
        if parts_dir.exists():
            if not manifest.exists() or json.loads(manifest.read_text()).get("fingerprint") != fingerprint:
                raise InputError(describe("partial results folder", str(parts_dir),
                                          "parts of this same run only (different regimens, population or settings found); remove it to start afresh"))
            return
        parts_dir.mkdir(parents=True)
        manifest.write_text(json.dumps({"fingerprint": fingerprint}))
    except OSError as exc:
        raise _os_error(exc, parts_dir) from exc


def _run_chunks(jobs: list[tuple[int, Callable, tuple, Path]], client, progress: bool,
                on_chunk_done: Callable[[int], None] | None) -> tuple[list[int], list[int]]:
    """Run the jobs whose part file (or completion marker) is missing, in process or on ``client``."""
    reused = [k for k, _, _, part in jobs if part.exists()]
    todo = [(k, fn, args, part) for k, fn, args, part in jobs if not part.exists()]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), initial=len(reused), unit="chunk", desc="chunks")
    done = []

    def finished(k):
        done.append(k)
        if bar is not None:
            bar.update(1)
        if on_chunk_done is not None:
            on_chunk_done(k)

    if client is None:
        for k, fn, args, part in todo:
            fn(*args, str(part))
            finished(k)
    else:
        from distributed import as_completed

        futures = {client.submit(fn, *args, str(part), key=f"immunopd-chunk-{part.parent.name}-{k}", pure=False): k
                   for k, fn, args, part in todo}
        for fut in as_completed(futures):
            fut.result()  # re-raises a chunk's own error (not a lost worker: those are rescheduled)
            finished(futures[fut])
    if bar is not None:
        bar.close()
    return sorted(done), reused


def run_trial_to_zarr(
    regimens: Mapping[str, str],
    population: Population,
    out: str | os.PathLike,
    *,
    client=None,
    chunk_patients: int = 8192,
    progress: bool = False,
    on_chunk_done: Callable[[int], None] | None = None,
    **settings,
) -> ScaleRun:
    """Run a trial in chunks of ``chunk_patients`` (in process, or on ``client``'s workers) and
    write it to the zarr store ``out``; resumable (see the module docstring). ``settings`` are
    :func:`immunopd.trial.run_trial`'s keyword arguments (days, outputs, ...)."""
    from .trial import _as_regimens

    out = Path(out)
    if out.suffix != ".zarr":
        raise InputError(describe("out", str(out), "a path ending in .zarr"))
    if importlib.util.find_spec("dask") is None:
        raise InputError(f"writing {out} in chunks needs dask (its store is laid out from lazy dask arrays): "
                         "pip install 'immunopd[dask]', or write a .nc file in one go")
    if isinstance(chunk_patients, bool) or not isinstance(chunk_patients, int) or chunk_patients < 1:
        raise InputError(describe("chunk_patients", chunk_patients, "an integer >= 1"))
    if not isinstance(population, Population):
        raise InputError(describe("population", type(population).__name__, "an immunopd.population.Population"))
    if not isinstance(regimens, Mapping):
        raise InputError(describe("regimens", regimens, "a mapping name -> regimen text"))
    _as_regimens(regimens)  # validates every regimen before any work
    regs = {name: (r if isinstance(r, str) else r.describe()) for name, r in regimens.items()}
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(describe("output folder", str(folder), "an existing folder"))
    n = len(population)
    n_chunks = -(-n // chunk_patients)
    fingerprint = _fingerprint({"regimens": regs, "population": _population_digest(population), "settings": settings,
                                "chunk_patients": chunk_patients, "n": n})
    parts_dir = out.with_name(out.name + ".parts")
    _prepare_parts(parts_dir, fingerprint)
    store = parts_dir / "store.zarr"
    _lay_out(store, regs, population, chunk_patients, settings)
    jobs = []
    for k in range(n_chunks):
        sub = population.data.isel(patient=slice(k * chunk_patients, (k + 1) * chunk_patients))
        marker = parts_dir / f"part-{k:05d}.done"
        jobs.append((k, _trial_chunk, (regs, sub, settings, str(store), k * chunk_patients), marker))
    computed, reused = _run_chunks(jobs, client, progress, on_chunk_done)
    _finish(store, out)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return ScaleRun(out, tuple(computed), tuple(reused))


def _lay_out(store: Path, regs, population: Population, chunk_patients: int, settings: dict) -> None:
    """Create the run's store (unless a resumed run finds it complete): the layout of the whole
    result, zarr-chunked like the run, so each chunk's patients fill whole zarr chunks of their
    own and workers never write the same file."""
    from .trial import result_layout

    ready = store.with_name("store.ready")
    if ready.exists():
        return
    try:
        if store.exists():
            shutil.rmtree(store)
        for marker in store.parent.glob("part-*.done"):  # slices of a store that was never completed
            marker.unlink()
        layout = result_layout(regs, population, chunk_patients=chunk_patients, **settings)
        layout.attrs["chunks_written"] = -(-len(population) // chunk_patients)
        layout.to_zarr(store, mode="w", compute=False, zarr_format=2)
        ready.touch()
    except OSError as exc:
        raise _os_error(exc, store) from exc


def _finish(store: Path, out: Path) -> None:
    """Compute the population-level endpoints from the per-patient ones, then rename the store over ``out``."""
    from .io import replace_folder
    from .trial import population_endpoints

    try:
        with xr.open_zarr(store, consolidated=False, chunks=None) as ds:  # read here, not through a Dask client
            per_patient = {k: ds[k].values for k in ("best_response", "pfs_days", "progressed", "solver_status", "adverse_event_day")}
            attrs = dict(ds.attrs)
        endpoints = population_endpoints(per_patient["best_response"], per_patient["pfs_days"], per_patient["progressed"],
                                         per_patient["solver_status"] == 0, per_patient["adverse_event_day"])
        # overwrites the layout's endpoints (computed from zeros); an append also sets the store's attrs
        # (to the same) and consolidates its metadata
        xr.Dataset(endpoints, attrs=attrs).to_zarr(store, mode="a", zarr_format=2)
        replace_folder(store, out)
    except OSError as exc:
        raise _os_error(exc, out) from exc


# ---------------------------------------------------------------------- sensitivity
def _evaluate_chunk(problem, X, kwargs, part: str) -> str:
    from .sensitivity import evaluate

    Y, grid = evaluate(problem, X, **kwargs)
    data = {k: (("sample",) if np.ndim(v) == 1 else ("sample", "grid"), v) for k, v in Y.items()}
    _write_part(xr.Dataset(data, coords={"grid_time": ("grid", grid)} if grid is not None else {}), Path(part))
    return part


def evaluate_distributed(problem, X: np.ndarray, parts_dir: str | os.PathLike, *, client=None, chunk_samples: int = 16384,
                         progress: bool = False, on_chunk_done=None, **kwargs):
    """:func:`immunopd.sensitivity.evaluate` over chunks of ``X`` (resumable parts in ``parts_dir``,
    in process or on ``client``); returns ``(Y, time grid)`` like ``evaluate``."""
    parts_dir = Path(parts_dir)
    fp = _fingerprint({"X": hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest(), "problem": repr(problem),
                       "kwargs": {k: repr(v) for k, v in kwargs.items()}, "chunk": chunk_samples})
    _prepare_parts(parts_dir, fp)
    jobs = [(k, _evaluate_chunk, (problem, X[lo:lo + chunk_samples], kwargs), parts_dir / f"part-{k:05d}.nc")
            for k, lo in enumerate(range(0, X.shape[0], chunk_samples))]
    _run_chunks(jobs, client, progress, on_chunk_done)
    from .io import open_result

    parts = [open_result(p) for *_, p in jobs]
    Y = {k: np.concatenate([p[k].values for p in parts]) for k in parts[0].data_vars}
    grid = parts[0].grid_time.values if "grid_time" in parts[0].coords else None
    shutil.rmtree(parts_dir, ignore_errors=True)
    return Y, grid
