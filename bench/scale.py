"""Benchmark: the same virtual trial in process, on 1 Dask worker and on 2 Dask workers.

The trial of bench/trial.py (issue #4): 100,000 patients x 4 regimens x 1 year, daily SLD,
RECIST endpoints. Each configuration starts cold (the in-process run compiles in
this process; each worker compiles in its own), so compilation is charged to every one alike:

- in process, one call (immunopd.trial.run_trial) and a netCDF write: the default path;
- in process, chunked to zarr (immunopd.scaleout.run_trial_to_zarr, client=None), the same
  output path as the Dask runs, also cold;
- a LocalCluster of 1 worker, then of 2 workers (single-threaded Dask workers; inside each, the
  compiled solves run on immunopd.integrate.threads() threads, as in process), chunked to zarr.

Overhead = time / in-process time - 1 of the same round (target <= 10 % at 100,000 patients,
issue #6), against both in-process runs: the one-call default, and the chunked zarr run, which
differs from the Dask runs only in where the chunks run. These machines drift by tens of percent over minutes, so the configurations run in
--rounds rounds, in alternating order, and the medians are reported. The in-process run clears
this process's compiled solvers first, so it starts as cold as a fresh worker. Every
configuration runs its solves on both cores (immunopd.integrate.threads), so 2 workers on 2 cores
cannot be faster than 1: they show what splitting costs, not a speed-up.

Reproduce with:  .venv/bin/python bench/scale.py          (about 8 min on 2 cores)
Options: --patients 100000  --chunk-patients 8192  --rounds 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from immunopd.io import write_netcdf  # noqa: E402
from immunopd.population import sample  # noqa: E402
from immunopd.scaleout import local_client, run_trial_to_zarr  # noqa: E402
from immunopd.trial import run_trial  # noqa: E402
from bench.trial import REGIMENS  # noqa: E402  (the same trial as bench/trial.py)

SETTINGS = dict(days=365.0, outputs=("sld",))


def cold_in_process() -> None:
    """Forget this process's compiled solvers, so the in-process run compiles like a fresh worker."""
    import jax

    from immunopd.integrate import compiled

    compiled.cache_clear()
    jax.clear_caches()


def one_round(pop, work: Path, chunk_patients: int, order: list[str]) -> dict[str, float]:
    times = {}
    for config in order:
        if config in ("in_process_s", "chunked_zarr_s"):
            cold_in_process()
        t0 = time.perf_counter()
        if config == "in_process_s":
            ds = run_trial(REGIMENS, pop, **SETTINGS)
            write_netcdf(ds, work / "inproc.nc")
            del ds
        elif config == "chunked_zarr_s":
            run_trial_to_zarr(REGIMENS, pop, work / "chunked.zarr", chunk_patients=chunk_patients, **SETTINGS)
        else:
            n = int(config.split("_")[1])
            client = local_client(n)
            try:
                t0 = time.perf_counter()
                run_trial_to_zarr(REGIMENS, pop, work / f"dask{n}.zarr", client=client, chunk_patients=chunk_patients, **SETTINGS)
            finally:
                client.close()
                client.cluster.close()
        times[config] = time.perf_counter() - t0
        for path in work.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--chunk-patients", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    pop = sample(args.patients, seed=1)
    work = Path(tempfile.mkdtemp(prefix="immunopd-scale-"))
    configs = ["in_process_s", "chunked_zarr_s", "dask_1_workers_s", "dask_2_workers_s"]
    rounds = []
    try:
        for r in range(args.rounds):
            order = configs if r % 2 == 0 else configs[::-1]  # alternate, so a slow spell of the machine hits both ends
            rounds.append(one_round(pop, work, args.chunk_patients, order))
            base = rounds[-1]["in_process_s"]
            print(f"round {r + 1}: " + ", ".join(f"{k} {v:.1f} ({100 * (v / base - 1):+.1f} %)" for k, v in rounds[-1].items()), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    overhead = {k: float(np.median([100 * (t[k] / t["in_process_s"] - 1) for t in rounds])) for k in configs}
    vs_chunked = {k: float(np.median([100 * (t[k] / t["chunked_zarr_s"] - 1) for t in rounds])) for k in configs}
    times = {k: float(np.median([t[k] for t in rounds])) for k in configs}
    for k in configs:
        print(f"{k:<22} median {times[k]:7.1f} s   median overhead (same round) vs in process {overhead[k]:+5.1f} %, "
              f"vs in process chunked {vs_chunked[k]:+5.1f} %")
    print(f"speed-up 2 workers vs 1: {times['dask_1_workers_s'] / times['dask_2_workers_s']:.2f}x")
    print("bench: scale patients={} rounds={} ".format(args.patients, args.rounds) + " ".join(f"{k}={v:.1f}" for k, v in times.items())
          + f" overhead_1_worker_pct={overhead['dask_1_workers_s']:.1f} overhead_2_workers_pct={overhead['dask_2_workers_s']:.1f}"
          + f" vs_chunked_1_worker_pct={vs_chunked['dask_1_workers_s']:.1f} vs_chunked_2_workers_pct={vs_chunked['dask_2_workers_s']:.1f}")
    print("reproduce: .venv/bin/python bench/scale.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
