"""Benchmark: a virtual trial of 100,000 patients x 4 regimens x 1 year, daily output, with
RECIST endpoints; and, in the same run, scipy's LSODA looping over a subset of the same work,
scaled to the whole trial.

Reproduce with:  .venv/bin/python bench/trial.py          (full size; ~2-3 min on 2 cores)
Options: --patients 100000  --scipy-patients 8  --chunk 512

Targets (issue #4): <= 120 s on the 2-core CPU, peak memory <= 8 GB. Compile time is reported
apart (a warm-up trial of one chunk on the same grid compiles the solver first). Peak memory
is the process's maximum resident set size (ru_maxrss), so it includes JAX/XLA themselves.
The trial keeps the daily SLD of every (regimen, patient) (8 bytes x 4 x 100,000 x 366 =
1.2 GB) and the endpoint variables.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402

import immunopd as ip  # noqa: E402
from immunopd.population import sample  # noqa: E402
from immunopd.solve import CHUNK  # noqa: E402
from immunopd.trial import endpoint_table, run_trial  # noqa: E402
from tests.reference import scipy_solve  # noqa: E402

REGIMENS = {
    "pembrolizumab 200 mg Q3W": "pembrolizumab 200 mg q3w",
    "nivolumab 480 mg Q4W": "nivolumab 480 mg q4w",
    "bexmarilimab 1 mg/kg Q3W": "bexmarilimab 1 mg/kg q3w over 60 min",
    "pembrolizumab + bexmarilimab": "pembrolizumab 200 mg q3w; bexmarilimab 1 mg/kg q3w over 60 min",
}
DAYS = 365.0


def scipy_seconds(pop, n: int) -> float:
    """Warm LSODA wall time for n patients under every regimen (rtol 1e-6, atol 1e-9)."""
    times = np.arange(0.0, DAYS + 1)
    params = pop.params()

    def one(i, text):
        single = {k: float(v[i]) for k, v in params.items()}
        weight = single.pop("body_weight")
        scipy_solve(text, single, times=times, weight=weight, method="LSODA", rtol=1e-6, atol=1e-9)

    for text in REGIMENS.values():
        one(0, text)  # compile the reference rhs for this regimen's drugs
    start = time.perf_counter()
    for text in REGIMENS.values():
        for i in range(n):
            one(i, text)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--scipy-patients", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=CHUNK)
    args = ap.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__} "
          f"on {jax.default_backend()}; immunopd {ip.__version__}")
    t0 = time.perf_counter()
    pop = sample(args.patients, seed=1)
    t_pop = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_trial(REGIMENS, pop.isel(np.arange(min(args.chunk, len(pop)))), days=DAYS, outputs=("sld",), chunk=args.chunk)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = run_trial(REGIMENS, pop, days=DAYS, outputs=("sld",), chunk=args.chunk, progress=False)
    t_run = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    work = len(REGIMENS) * args.patients
    print(endpoint_table(ds))
    sp = scipy_seconds(pop, args.scipy_patients)
    scipy_scaled = sp / (len(REGIMENS) * args.scipy_patients) * work
    print(f"population sampling: {t_pop:.2f} s; warm-up trial of one chunk (compiles): {t_compile:.1f} s")
    print(f"trial: {work} patient-regimens x {DAYS:g} days in {t_run:.1f} s "
          f"({work * DAYS / 365 / t_run:.0f} patient-years/s); peak RSS {peak_gb:.2f} GB")
    print(f"scipy LSODA loop: {sp:.1f} s for {len(REGIMENS) * args.scipy_patients} patient-regimens, "
          f"scaled to the trial: {scipy_scaled:.0f} s; ratio {scipy_scaled / t_run:.0f}x")
    print(f"bench: trial patients={args.patients} regimens={len(REGIMENS)} run_s={t_run:.1f} compile_s={t_compile:.1f} "
          f"peak_rss_gb={peak_gb:.2f} scipy_scaled_s={scipy_scaled:.0f} ratio_vs_scipy={scipy_scaled / t_run:.0f}")
    print("reproduce: .venv/bin/python bench/trial.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
