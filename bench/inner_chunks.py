"""FOCE-I's inner problem on many lesions: one vmap over everyone vs chunks ordered by follow-up.

Every FOCE-I objective evaluation first finds each lesion's conditional mode of eta (damped
Newton, each iteration a second-order expansion of the ODE prediction). Vmapped, a batch runs as
many solver steps and Newton iterations as its slowest lesion; ordered by last scan and cut into
chunks (``immunopd.nlme._SORTED_CHUNK`` lesions each), a chunk pays only for its own. This bench
times the first objective evaluation of a fit (conditional modes from eta = 0 at the initial
estimates, then the OFV and its gradient) both ways on the same lesions, in alternating order
(A B B A) after one compiling call each, and checks that both give the same OFV and etas.

Reproduce with:  .venv/bin/python bench/inner_chunks.py --lesions 400
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax.numpy as jnp  # noqa: E402

import immunopd  # noqa: E402,F401
from immunopd import nlme  # noqa: E402
from immunopd.calibration import observed_courses  # noqa: E402
from immunopd.popfit import lesion_data, mechanistic_nlme_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lesions", default="400", help="number of lesions (>= 3 scans) or 'all' (default 400)")
    ap.add_argument("--chunk", type=int, default=nlme._SORTED_CHUNK, help="lesions per chunk (default %(default)s)")
    args = ap.parse_args()
    if args.lesions != "all" and (not args.lesions.isdigit() or int(args.lesions) < 1):
        ap.error(f"--lesions: {args.lesions!r} is not a positive integer or 'all'")
    if args.chunk < 1:
        ap.error(f"--chunk: {args.chunk} is not a positive integer")
    n = None if args.lesions == "all" else int(args.lesions)
    data = lesion_data(observed_courses("laleh2022", arm="immunotherapy"), min_scans=3, lesions=n)
    if data.ID.nunique() <= 2 * args.chunk:
        ap.error(f"--lesions {args.lesions}: {data.ID.nunique()} lesions, but the chunks run only above 2 x --chunk "
                 f"({2 * args.chunk}): both ways would be one vmap")
    model = mechanistic_nlme_model("immunotherapy", random=("growth_rate", "kill_rate"))
    d = nlme._prepare(model, data)
    eng = nlme._engine(model)
    jd = nlme._device_data(d)
    p0 = [t.initial for t in model.thetas] + [model.omega_matrix[i, j] for i, j in eng.omega_index] + list(model.sigma)
    p = jnp.asarray(p0, float)
    eta0 = jnp.zeros((len(d.ids), len(model.etas)))
    last = d.obs_t.max(axis=1)
    print(f"{len(d.ids)} lesions, {int(d.mask.sum())} scans; last scan day: median {np.median(last):.0f}, max {last.max():.0f}; "
          f"chunks of {args.chunk}", flush=True)

    def evaluation(chunk):
        """(seconds, per-lesion OFV terms, etas, found) of one first evaluation."""
        nlme._SORTED_CHUNK = chunk
        t0 = time.perf_counter()
        eta, _, local, found = nlme._conditional_modes(eng, p, eta0, jd)
        vals, _ = eng.values_and_jacobian(p, eta, local, jd)
        vals = np.asarray(vals)
        return time.perf_counter() - t0, vals, np.asarray(eta), np.asarray(found)

    modes = {"one vmap": 0, "sorted chunks": args.chunk}
    for name, chunk in modes.items():
        s, vals, _, found = evaluation(chunk)
        print(f"{name:<14} first call (compiles): {s:7.1f} s, OFV {vals.sum():.6f}, modes not found: {int((~found).sum())}", flush=True)
    times = {name: [] for name in modes}
    last_run = {}
    for name in ("one vmap", "sorted chunks", "sorted chunks", "one vmap"):
        s, vals, eta, found = evaluation(modes[name])
        last_run[name] = (vals, eta, found)
        times[name].append(s)
        print(f"{name:<14} warm: {s:7.2f} s", flush=True)
    (v1, e1, f1), (v2, e2, f2) = last_run["one vmap"], last_run["sorted chunks"]
    print(f"same result: |OFV difference| {abs(v1.sum() - v2.sum()):.2e}, max |eta difference| {np.max(np.abs(e1 - e2)):.2e}")
    both = f1 & f2
    gap = np.abs(v1 - v2)
    print(f"  lesions whose conditional mode was found both ways ({int(both.sum())}): largest |OFV difference| of one "
          f"lesion {np.max(gap[both], initial=0.0):.2e}, max |eta difference| {np.max(np.abs(e1 - e2)[both], initial=0.0):.2e}; "
          f"the others ({int((~both).sum())}): largest |OFV difference| {np.max(gap[~both], initial=0.0):.2e}")
    a, b = np.mean(times["one vmap"]), np.mean(times["sorted chunks"])
    print(f"first FOCE-I evaluation, warm (mean of 2): one vmap {a:.2f} s, sorted chunks {b:.2f} s: {a / b:.2f}x")
    print(f"reproduce: .venv/bin/python bench/inner_chunks.py --lesions {args.lesions} --chunk {args.chunk}")
    nlme._SORTED_CHUNK = modes["sorted chunks"]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
