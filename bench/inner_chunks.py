"""FOCE-I's inner problem on many lesions: how its batching and its expansions pay.

Every FOCE-I objective evaluation first finds each lesion's conditional mode of eta (damped
Newton, each iteration a second-order expansion of the ODE prediction by forward-over-forward AD
through the solve). Two choices are timed here, on the same lesions, each way in its own engine
(its own compilation, timed apart as the first call):

- batching: one vmap over everyone, against batches of ``immunopd.nlme._SORTED_CHUNK`` lesions
  ordered by last scan (a vmapped solve runs as many steps and Newton iterations as its slowest
  lane, and follow-up runs from a few weeks to 772 days); ``--one-batch`` adds the former;
- the expansion of the Newton steps: along the eta-carrying parameters only (the default; with
  etas on the growth and kill rates, 9 forward-mode lanes through the solve instead of 16) or
  along every individual parameter (``nlme._EXPAND_ETA_DIRECTIONS_ONLY = False``). The outer
  gradient's full expansion is taken once at the mode either way.

Timed: the first objective evaluation of a fit (conditional modes from eta = 0 at the initial
estimates, then the OFV and its gradient), first with compilation, then warm in alternating
order (A B B A). The bench prints how far the ways' OFVs, gradients and modes differ.

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
    ap.add_argument("--chunk", type=int, default=nlme._SORTED_CHUNK, help="lesions per batch (default %(default)s)")
    ap.add_argument("--one-batch", action="store_true", help="also time one vmap over every lesion (the stragglers then continue padded to every lesion too)")
    args = ap.parse_args()
    if args.lesions != "all" and (not args.lesions.isdigit() or int(args.lesions) < 1):
        ap.error(f"--lesions: {args.lesions!r} is not a positive integer or 'all'")
    if args.chunk < 1:
        ap.error(f"--chunk: {args.chunk} is not a positive integer")
    n = None if args.lesions == "all" else int(args.lesions)
    data = lesion_data(observed_courses("laleh2022", arm="immunotherapy"), min_scans=3, lesions=n)
    if data.ID.nunique() <= args.chunk:
        ap.error(f"--lesions {args.lesions}: {data.ID.nunique()} lesions, not more than one batch (--chunk {args.chunk})")
    model = mechanistic_nlme_model("immunotherapy", random=("growth_rate", "kill_rate"))
    d = nlme._prepare(model, data)
    jd = nlme._device_data(d)
    eta0 = jnp.zeros((len(d.ids), len(model.etas)))
    last = d.obs_t.max(axis=1)
    print(f"{len(d.ids)} lesions, {int(d.mask.sum())} scans; last scan day: median {np.median(last):.0f}, max {last.max():.0f}; "
          f"batches of {args.chunk}; etas on {', '.join(model.etas)} of {', '.join(model.parameters)}", flush=True)

    ways = {"batches, eta directions": (args.chunk, True), "batches, full expansion": (args.chunk, False)}
    if args.one_batch:
        ways["one vmap, eta directions"] = (0, True)
    engines = {}
    for name, (_, eta_only) in ways.items():
        nlme._EXPAND_ETA_DIRECTIONS_ONLY = eta_only
        engines[name] = nlme._Engine(model)
    nlme._EXPAND_ETA_DIRECTIONS_ONLY = True
    om, index = model.omega_matrix, engines[next(iter(ways))].omega_index
    p = jnp.asarray([t.initial for t in model.thetas] + [om[i, j] for i, j in index] + list(model.sigma), float)

    def evaluation(name):
        """(seconds, per-lesion OFV terms, OFV gradient, etas, found) of one first evaluation."""
        nlme._SORTED_CHUNK = ways[name][0]
        eng = engines[name]
        t0 = time.perf_counter()
        eta, _, local, found = nlme._conditional_modes(eng, p, eta0, jd)
        vals, jac = eng.values_and_jacobian(p, eta, local, jd)
        vals, jac = np.asarray(vals), np.asarray(jac)
        return time.perf_counter() - t0, vals, jac.sum(axis=0), np.asarray(eta), np.asarray(found)

    times = {name: [] for name in ways}
    last_run = {}
    for name in ways:
        s, vals, grad, _, found = evaluation(name)
        print(f"{name:<26} first call (compiles): {s:7.1f} s, OFV {vals.sum():.6f}, modes not found: {int((~found).sum())}",
              flush=True)
    order = list(ways) + list(ways)[::-1]
    for name in order:
        s, vals, grad, eta, found = evaluation(name)
        last_run[name] = (vals, grad, eta, found)
        times[name].append(s)
        print(f"{name:<26} warm: {s:7.2f} s", flush=True)
    ref = list(ways)[0]
    v1, g1, e1, f1 = last_run[ref]
    for name in list(ways)[1:]:
        v2, g2, e2, f2 = last_run[name]
        both = f1 & f2
        gap = np.abs(v1 - v2)
        print(f"{name} vs {ref}: |OFV difference| {abs(v1.sum() - v2.sum()):.2e}, largest relative gradient difference "
              f"{np.max(np.abs(g1 - g2) / np.maximum(np.abs(g1), 1e-12)):.2e}; modes found both ways ({int(both.sum())}): "
              f"largest |OFV difference| of one lesion {np.max(gap[both], initial=0.0):.2e}, max |eta difference| "
              f"{np.max(np.abs(e1 - e2)[both], initial=0.0):.2e}; the others ({int((~both).sum())}): largest |OFV "
              f"difference| {np.max(gap[~both], initial=0.0):.2e}")
    base = np.mean(times[ref])
    for name in ways:
        print(f"first FOCE-I evaluation, warm (mean of 2): {name} {np.mean(times[name]):.2f} s "
              f"({np.mean(times[name]) / base:.2f}x the time of {ref})")
    print(f"reproduce: .venv/bin/python bench/inner_chunks.py --lesions {args.lesions} --chunk {args.chunk}"
          + (" --one-batch" if args.one_batch else ""))
    nlme._SORTED_CHUNK = args.chunk
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
