"""Benchmark: fit every lesion of the shipped Laleh 2022 data with every curve model, batched,
and, in the same run, lmfit with finite-difference Jacobians looping over a sample of lesions
(timed per lesion and scaled to the whole dataset).

Reproduce with:  .venv/bin/python bench/fit.py   [--lmfit-sample 40]

Figures: wall seconds per model for all lesions, cold (compile included, as a user's first
call pays it) and warm (a second call, compiled), totals over models, and both ratios to the
scaled lmfit loop (the like-for-like one is warm vs warm). The lmfit loop is timed on a warm
second pass (its residual is compiled once per series length) and includes what immunopd's
``fit`` adds around lmfit (the fitted-curve Dataset and band).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from immunopd.datasets import load  # noqa: E402
from immunopd.fitting import CURVE_MODELS, fit, fit_lesions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lmfit-sample", type=int, default=40)
    args = ap.parse_args()
    table = load("laleh2022", clean=True)
    lesions = list(dict.fromkeys(table.lesion))
    print(f"# {len(lesions)} lesions, {len(table)} measurements, {len(CURVE_MODELS)} models")
    total_batched = total_warm = total_lmfit = 0.0
    converged = {}
    rng = np.random.default_rng(0)
    sample = rng.choice(lesions, size=args.lmfit_sample, replace=False)
    for model in CURVE_MODELS:
        t0 = time.perf_counter()
        ds = fit_lesions(table, model, on_invalid="flag")
        wall = time.perf_counter() - t0
        total_batched += wall
        t0 = time.perf_counter()
        fit_lesions(table, model, on_invalid="flag")  # warm: compiled, as the peer's timed pass is
        warm = time.perf_counter() - t0
        total_warm += warm
        converged[model] = int(ds.converged.sum())
        curves = [table[table.lesion == lesion] for lesion in sample]
        curves = [c for c in curves if len(c) >= len(CURVE_MODELS[model].names)]
        for _ in range(2):  # the second pass is timed: the peer's per-length compiles are not charged to it
            t0 = time.perf_counter()
            for one in curves:
                fit(one.time_days.values, one.volume_mm3.values, model, jacobian=False, lesion=one.lesion.iloc[0])
            per_lesion = (time.perf_counter() - t0) / len(curves)
        scaled = per_lesion * len(lesions)
        total_lmfit += scaled
        print(f"{model:<20} batched {wall:6.2f} s cold, {warm:5.2f} s warm ({converged[model]} converged)   lmfit FD loop {per_lesion * 1e3:6.1f} ms/lesion -> {scaled:6.1f} s scaled")
    ratio = total_lmfit / total_batched
    ratio_warm = total_lmfit / total_warm
    print(f"all models: batched {total_batched:.1f} s cold (compile included), {total_warm:.1f} s warm; "
          f"lmfit FD loop {total_lmfit:.1f} s (scaled, warm); ratio {ratio:.1f}x cold, {ratio_warm:.1f}x warm vs warm")
    print("reproduce: .venv/bin/python bench/fit.py " + " ".join(sys.argv[1:]))
    print(f"bench: fit all_models_s={total_batched:.1f} lmfit_fd_loop_s={total_lmfit:.1f} ratio={ratio:.1f} warm_s={total_warm:.1f} ratio_warm={ratio_warm:.1f} lesions={len(lesions)}")


if __name__ == "__main__":
    main()
