"""Benchmark: Sobol' indices (first, total, second order) of the full model, N = 8192 base
samples over the 12 default parameters (immunopd.sensitivity.DEFAULT_PARAMETERS), one year of
pembrolizumab 200 mg Q3W, daily output: N (2D + 2) = 212,992 model evaluations through the
compiled solver, then SALib's analyzer on 5 scalar endpoints and the time-resolved log10 tumor
volume (every 28 days).

Reproduce with:  .venv/bin/python bench/sensitivity.py      (about 2 min on 2 cores)
Options: --n 8192  --range-factor 3

Target (issue #5): <= 120 s on the 2-core CPU, sampling + evaluation + analysis (compilation
reported apart: a warm-up evaluation of one chunk compiles the solver first). Ranges are each
default divided/multiplied by --range-factor (the full parameter bounds span up to 8 decades
and include parameter sets the explicit solver cannot finish).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402

import immunopd as ip  # noqa: E402
from immunopd import sensitivity as sa  # noqa: E402

REGIMEN = "pembrolizumab 200 mg q3w"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--range-factor", type=float, default=3.0)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__} "
          f"on {jax.default_backend()}; immunopd {ip.__version__}")
    names = list(sa.DEFAULT_PARAMETERS)
    outputs = sa.Outputs(time_step_days=28)
    prob = sa.define(names, sa.ranges_around_defaults(names, args.range_factor))
    t0 = time.perf_counter()
    sa.evaluate(prob, sa.sample(prob, "sobol", 64, seed=0)[:2048], regimen=REGIMEN, outputs=outputs)
    t_compile = time.perf_counter() - t0

    t0 = time.perf_counter()
    X = sa.sample(prob, "sobol", args.n, seed=1)
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    Y, grid = sa.evaluate(prob, X, regimen=REGIMEN, outputs=outputs)
    t_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = sa.analyze(prob, "sobol", X, Y, time=grid, seed=1)
    t_analyze = time.perf_counter() - t0
    total = t_sample + t_eval + t_analyze
    print(sa.summary_table(ds.isel(output=[0, 2])))
    print(f"\nwarm-up (compiles): {t_compile:.1f} s")
    print(f"sample {t_sample:.1f} s + evaluate {t_eval:.1f} s ({X.shape[0]} solves, {X.shape[0] / t_eval:.0f} patient-years/s) "
          f"+ analyze {t_analyze:.1f} s = {total:.1f} s")
    print(f"bench: sensitivity method=sobol N={args.n} D={len(names)} evaluations={X.shape[0]} total_s={total:.1f} "
          f"evaluate_s={t_eval:.1f} analyze_s={t_analyze:.1f} compile_s={t_compile:.1f}")
    print("reproduce: .venv/bin/python bench/sensitivity.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
