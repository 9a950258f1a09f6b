"""Benchmark: the same virtual trial in process, on 1 Dask worker and on 2 Dask workers.

The trial of bench/trial.py (issue #4): 100,000 patients x 4 regimens x 1 year, daily SLD,
RECIST endpoints. Each configuration starts cold (the in-process run compiles in
this process; each worker compiles in its own), so compilation is charged to every one alike:

- in process, one call (immunopd.trial.run_trial) and a netCDF write: the default path;
- in process, chunked to zarr (immunopd.scaleout.run_trial_to_zarr, client=None; warm: it reuses
  the compilation of the run before it);
- a LocalCluster of 1 worker, then of 2 workers (single-threaded Dask workers; XLA inside each
  still uses the machine's cores), chunked to zarr.

Overhead = time / in-process time - 1 (target <= 10 % at 100,000 patients, issue #6). On this
2-core machine 2 workers cannot beat one process that already uses both cores; the figure
shows what Dask costs, and the speed-up needs more machines.

Reproduce with:  .venv/bin/python bench/scale.py          (about 8 min on 2 cores)
Options: --patients 100000  --chunk-patients 8192
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from immunopd.io import write_netcdf  # noqa: E402
from immunopd.population import sample  # noqa: E402
from immunopd.scaleout import local_client, run_trial_to_zarr  # noqa: E402
from immunopd.trial import run_trial  # noqa: E402
from bench.trial import REGIMENS  # noqa: E402  (the same trial as bench/trial.py)

SETTINGS = dict(days=365.0, outputs=("sld",))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--chunk-patients", type=int, default=8192)
    args = ap.parse_args()
    pop = sample(args.patients, seed=1)
    work = Path(tempfile.mkdtemp(prefix="immunopd-scale-"))
    times = {}
    try:
        t0 = time.perf_counter()
        ds = run_trial(REGIMENS, pop, **SETTINGS)
        write_netcdf(ds, work / "inproc.nc")
        times["in_process_s"] = time.perf_counter() - t0
        del ds
        t0 = time.perf_counter()
        run_trial_to_zarr(REGIMENS, pop, work / "chunked.zarr", chunk_patients=args.chunk_patients, **SETTINGS)
        times["chunked_zarr_s"] = time.perf_counter() - t0
        for n in (1, 2):
            client = local_client(n)
            try:
                t0 = time.perf_counter()
                run_trial_to_zarr(REGIMENS, pop, work / f"dask{n}.zarr", client=client, chunk_patients=args.chunk_patients, **SETTINGS)
                times[f"dask_{n}_workers_s"] = time.perf_counter() - t0
            finally:
                client.close()
                client.cluster.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = times["in_process_s"]
    for k, v in times.items():
        print(f"{k:<22} {v:7.1f} s   overhead vs in process {100 * (v / base - 1):+5.1f} %")
    print(f"speed-up 2 workers vs 1: {times['dask_1_workers_s'] / times['dask_2_workers_s']:.2f}x")
    print("bench: scale patients={} ".format(args.patients) + " ".join(f"{k}={v:.1f}" for k, v in times.items())
          + f" overhead_1_worker_pct={100 * (times['dask_1_workers_s'] / base - 1):.1f}")
    print("reproduce: .venv/bin/python bench/scale.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
