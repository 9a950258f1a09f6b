"""Trials and Sobol/Morris/eFAST evaluations beyond one process: chunked, resumable, on Dask.

:func:`run_trial_to_zarr` splits a trial into chunks of patients. Each chunk is simulated by
:func:`immunopd.trial.run_trial` (in this process, or as a task on a Dask ``distributed``
worker, which compiles the solver once and reuses it for every chunk it gets) and written as
its own netCDF part file, atomically, in ``<out>.parts/``. As each part is done (while the
workers go on with the next chunks), this process copies it into its patient slice of one zarr
store in that folder, laid out from the first part with dask-backed placeholders (zarr chunks =
the run's chunks, so each part fills whole zarr chunks). When all are in, the population-level
endpoints (ORR, DCR, median PFS) are computed from the per-patient ones and added, and the
store is renamed over ``out``: ``out`` is only ever a complete result.

Resume: the same command after an interruption (Ctrl-C, a killed process) finds the parts
already written and computes only the missing chunks; a part is either complete or absent
(written to a temporary name, then renamed), and the run's fingerprint (regimens, population,
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


def _trial_chunk(regimens, population_data: xr.Dataset, settings: dict, part: str) -> str:
    """One chunk, run wherever it is scheduled: simulate, keep per-patient variables, write."""
    from .trial import run_trial

    ds = run_trial(regimens, Population(population_data), **settings)
    per_patient = [k for k, v in ds.data_vars.items() if "patient" in v.dims]
    _write_part(ds[per_patient], Path(part))
    return part


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
                on_chunk_done: Callable[[int], None] | None,
                on_part: Callable[[int, Path], None] | None = None) -> tuple[list[int], list[int]]:
    """Run the jobs whose part file is missing (in process, or on ``client``); ``on_part(k,
    part)`` is called in this process for every part, reused ones first, as it is ready."""
    reused = [k for k, _, _, part in jobs if part.exists()]
    todo = [(k, fn, args, part) for k, fn, args, part in jobs if not part.exists()]
    parts = {k: part for k, _, _, part in jobs}
    if on_part is not None:
        for k in reused:
            on_part(k, parts[k])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), initial=len(reused), unit="chunk", desc="chunks")
    done = []

    def finished(k):
        done.append(k)
        if bar is not None:
            bar.update(1)
        if on_part is not None:
            on_part(k, parts[k])
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
    jobs = []
    for k in range(n_chunks):
        sub = population.data.isel(patient=slice(k * chunk_patients, (k + 1) * chunk_patients))
        jobs.append((k, _trial_chunk, (regs, sub, settings), parts_dir / f"part-{k:05d}.nc"))
    store = _TrialStore(parts_dir / "store.zarr", out, population, chunk_patients)
    computed, reused = _run_chunks(jobs, client, progress, on_chunk_done, on_part=store.add)
    store.finish()
    shutil.rmtree(parts_dir, ignore_errors=True)
    return ScaleRun(out, tuple(computed), tuple(reused))


class _TrialStore:
    """The zarr store a chunked trial is written into, one part at a time, then renamed to ``out``.

    Laid out from the first part: every per-patient variable over all patients, zarr-chunked
    like the run, so each part writes whole chunks of its own. Rebuilt from the parts on
    disk when a run resumes, so a store half-written by an interrupted run is never trusted.
    """

    def __init__(self, path: Path, out: Path, population: Population, chunk_patients: int):
        self.path, self.out, self.population, self.chunk = path, out, population, chunk_patients
        self.n = len(population)
        self.created = False

    def _write(self, ds: xr.Dataset, **kwargs) -> None:
        try:
            ds.to_zarr(self.path, zarr_format=2, **kwargs)
        except OSError as exc:
            raise _os_error(exc, self.path) from exc

    def _create(self, first: xr.Dataset) -> None:
        import dask.array as da

        if self.path.exists():
            shutil.rmtree(self.path)
        data, coords = {}, {}
        for name, v in first.variables.items():
            if name == "patient":
                coords[name] = ("patient", self.population.data.patient.values, v.attrs)
            elif "patient" in v.dims:
                shape = tuple(self.n if d == "patient" else size for d, size in zip(v.dims, v.shape))
                chunks = tuple(self.chunk if d == "patient" else size for d, size in zip(v.dims, v.shape))
                placeholder = xr.Variable(v.dims, da.zeros(shape, chunks=chunks, dtype=v.dtype), v.attrs)
                (coords if name in first.coords else data)[name] = placeholder
            else:
                (coords if name in first.coords else data)[name] = xr.Variable(v.dims, v.values, v.attrs)
        from .results import package_versions

        # the parts' attrs (settings, provenance) are those of the whole run: all come from one call
        attrs = {**first.attrs, **package_versions(), "title": "immunopd virtual trial", "chunks_written": -(-self.n // self.chunk),
                 "population_seed": self.population.data.attrs.get("seed", -1)}
        self._write(xr.Dataset(data, coords=coords, attrs=attrs), mode="w", compute=False)
        self.created = True

    def add(self, k: int, part: Path) -> None:
        """Copy part ``k`` (patients ``k * chunk ...``) into its slice of the store."""
        with xr.open_dataset(part, engine="h5netcdf") as ds:
            ds = ds.load()
        if not self.created:
            self._create(ds)
        others = [name for name, v in ds.variables.items() if "patient" not in v.dims or name == "patient"]
        lo = k * self.chunk
        self._write(ds.drop_vars(others), region={"patient": slice(lo, lo + ds.sizes["patient"])})

    def finish(self) -> None:
        """Add the population-level endpoints, then rename the store over ``out``."""
        from .io import replace_folder
        from .trial import population_endpoints

        with xr.open_zarr(self.path, consolidated=False) as ds:
            per_patient = {k: ds[k].values for k in ("best_response", "pfs_days", "progressed", "solver_status")}
            attrs = dict(ds.attrs)
        endpoints = population_endpoints(per_patient["best_response"], per_patient["pfs_days"], per_patient["progressed"],
                                         per_patient["solver_status"] == 0)
        self._write(xr.Dataset(endpoints, attrs=attrs), mode="a")  # an append sets the store's attrs to these
        try:
            replace_folder(self.path, self.out)
        except OSError as exc:
            raise _os_error(exc, self.out) from exc


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
