"""Benchmark: one patient, then 1,000 and 10,000 virtual patients, one year of
pembrolizumab 200 mg Q3W plus bexmarilimab 1 mg/kg Q3W, daily output; and, in the same run,
scipy solve_ivp (LSODA) looping over patients on the same model and regimen, libRoadRunner
(CVODE on the SBML export) looping over 200 of the same virtual patients, and a numba-compiled
rhs integrated by numbalsoda's LSODA over 10,000 of them on all cores (bench/numba_peer.py).

Reproduce with:  .venv/bin/python bench/simulate.py   (or: make bench)
Options: --sizes 1000 10000  --scipy-patients 20  --repeats 2  --roadrunner-patients 200
         --numbalsoda-patients 10000

Patient-years per second = patients x (simulated days / 365) / wall seconds. Compile time is
reported apart from run time (the first call compiles, later calls on the same grid reuse it).
The scipy loop (tests/reference.py) integrates the full 14-state ODE between infusion edges
(it has no jump handling) with the model's right-hand side compiled once by jax.jit and called
per step: the same equations and tolerances (rtol 1e-6, atol 1e-9). The numbalsoda peer
(pip install -e '.[bench]'; skipped with a message when missing) is the same model written
again by hand, parameters and start state read from immunopd's own result; it is checked
against immunopd on 20 patients before it is timed, and keeps only the tumor volume, so it is
compared with immunopd's tumor-volume-only run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402

import immunopd as ip  # noqa: E402
from bench import numba_peer  # noqa: E402
from tests.reference import scipy_solve  # noqa: E402

from immunopd.integrate import threads  # noqa: E402
from immunopd.solve import all_outputs  # noqa: E402  (the numbalsoda peer uses immunopd's thread count: same cores)

REGIMEN = "pembrolizumab 200 mg q3w; bexmarilimab 1 mg/kg q3w over 60 min"
DAYS = 365.0
VARIED = {"growth_rate": 0.3, "effector_influx": 0.5, "sclever1_release": 0.5, "effector_expansion": 0.2, "body_weight": 0.2}


def population(n: int, seed: int = 1, pool: int = 10_000) -> dict[str, np.ndarray]:
    """The first n of one seeded pool of virtual patients (so every peer loops over the same
    patients as the batched runs): log-normal variability around the defaults, clipped to bounds."""
    rng = np.random.default_rng(seed)
    out = {}
    size = max(n, pool)
    for name, sigma in VARIED.items():
        spec = ip.PARAMETERS[name]
        out[name] = np.clip(spec.default * np.exp(sigma * rng.standard_normal(size)), spec.lower, spec.upper)[:n]
    return out


def timed(fn, repeats=1):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
    return best, res


def scipy_loop(params: dict[str, np.ndarray], n: int) -> float:
    """Wall seconds for LSODA over the first n patients (rtol 1e-6, atol 1e-9), warm.

    Uses the tests' scipy reference (segment by segment between infusion edges, the model's
    rhs compiled once with the parameters as arguments); one untimed patient first, so no
    JAX compilation is charged to the loop.
    """
    times = np.arange(0.0, DAYS + 1)

    def one(i):
        single = {k: float(v[i]) for k, v in params.items()}
        weight = single.pop("body_weight")
        scipy_solve(REGIMEN, single, times=times, weight=weight, method="LSODA", rtol=1e-6, atol=1e-9)

    one(0)
    start = time.perf_counter()
    for i in range(n):
        one(i)
    return time.perf_counter() - start


def roadrunner_loop(params: dict[str, np.ndarray], n: int) -> float | None:
    """Patient-years/s of libRoadRunner looping over n patients, each exported to SBML by immunopd
    and loaded once (export and load are not timed: only simulate calls, warm, with the same
    tolerances and daily output). None when libroadrunner is not installed."""
    try:
        import roadrunner
    except ImportError:
        return None
    from immunopd.sbml import to_sbml

    runners = []
    for i in range(n):
        single = {k: float(v[i]) for k, v in params.items()}
        weight = single.pop("body_weight")
        rr = roadrunner.RoadRunner(to_sbml(REGIMEN, single, weight=weight, horizon=DAYS))
        rr.integrator.relative_tolerance = 1e-6
        rr.integrator.absolute_tolerance = 1e-9
        rr.timeCourseSelections = ["time", "tumor_volume"]
        runners.append(rr)
    runners[0].simulate(0, DAYS, int(DAYS) + 1)
    runners[0].reset()
    start = time.perf_counter()
    for rr in runners:
        rr.simulate(0, DAYS, int(DAYS) + 1)
    wall = time.perf_counter() - start
    return n * DAYS / 365.0 / wall


def _worst_relative(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| / b over the points where both volumes are positive normal numbers (the
    tumor can be driven below 1e-300 mm3: immunopd integrates ln Vs, so its volume underflows to
    0 there, flushed from denormals, and a relative error of those points says nothing)."""
    tiny = np.finfo(np.float64).tiny
    both = (a >= tiny) & (b >= tiny)
    return float(np.max(np.abs(a[both] - b[both]) / b[both]))


def numbalsoda_agreement(n: int = 20) -> float:
    """Check the numbalsoda peer against immunopd on the first n patients before timing it, and
    return the max relative error of tumor volume at a tight tolerance (the model check).

    At the bench tolerance (rtol 1e-6, atol 1e-9) the two differ by a few 1e-3 in relative
    volume on this workload: the tumor collapses by hundreds of e-folds within weeks, and each
    solver's global error there is ~3e-3 from a tight solution, in different directions. So the
    equations are checked at rtol 1e-10, atol 1e-13 (immunopd with dopri8), where the two must
    agree to 1e-5; the bench-tolerance difference and each one's error are printed beside it.
    """
    pop = population(n)
    w = pop.pop("body_weight")
    prob = numba_peer.from_immunopd(REGIMEN, pop, w, np.arange(0.0, DAYS + 1))
    compile_s = numba_peer.compile_seconds(prob)
    print(f"numbalsoda peer ({numba_peer.versions()}): numba JIT compile {compile_s:.2f} s (not timed below)")
    vols = {}
    for label, rtol, atol, solver in (("bench", 1e-6, 1e-9, "tsit5"), ("tight", 1e-10, 1e-13, "dopri8")):
        peer, status = numba_peer.solve(prob, rtol=rtol, atol=atol, workers=threads())
        if status.any():
            raise RuntimeError(f"numbalsoda failed for patients {np.flatnonzero(status).tolist()} at rtol {rtol:g}")
        ref = ip.simulate(REGIMEN, pop, days=DAYS, weight=w, outputs=["tumor_volume"], rtol=rtol, atol=atol, solver=solver)
        vols[label] = peer, ref.tumor_volume.values
    (peer6, ip6), (peer10, ip10) = vols["bench"], vols["tight"]
    tight = _worst_relative(peer10, ip10)
    print(f"numbalsoda vs immunopd, {n} patients, daily tumor volume, max relative error: "
          f"{_worst_relative(peer6, ip6):.1e} at rtol 1e-6/atol 1e-9 (each from a tight solution: numbalsoda "
          f"{_worst_relative(peer6, ip10):.1e}, immunopd {_worst_relative(ip6, ip10):.1e}); "
          f"{tight:.1e} at rtol 1e-10/atol 1e-13 (required < 1e-5: same model, parameters, doses, start)")
    return tight


def numbalsoda_loop(n: int, repeats: int) -> tuple[float, int]:
    """(patient-years/s, failed patients) of the numbalsoda peer over the first n patients, warm
    (compiled by :func:`numbalsoda_agreement`), on as many threads as immunopd's solves use,
    best of ``repeats``; building its inputs (one short immunopd call) is not timed."""
    pop = population(n)
    w = pop.pop("body_weight")
    prob = numba_peer.from_immunopd(REGIMEN, pop, w, np.arange(0.0, DAYS + 1))
    wall, (_, status) = timed(lambda: numba_peer.solve(prob, workers=threads()), repeats)
    return n * DAYS / 365.0 / wall, int(np.count_nonzero(status))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--scipy-patients", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--roadrunner-patients", type=int, default=200)
    ap.add_argument("--numbalsoda-patients", type=int, default=10000)
    args = ap.parse_args()
    print(f"# immunopd {ip.__version__}, jax {jax.__version__} ({jax.default_backend()}), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus")
    years = DAYS / 365.0

    one = population(1)
    w1 = one.pop("body_weight")
    t0 = time.perf_counter()
    ip.simulate(REGIMEN, one, days=DAYS, weight=w1)
    first = time.perf_counter() - t0
    run1, ds1 = timed(lambda: ip.simulate(REGIMEN, one, days=DAYS, weight=w1), args.repeats)
    print(f"one patient: first call {first:.2f} s (compile + run), warm run {run1 * 1e3:.1f} ms, "
          f"compile ~{first - run1:.2f} s, steps {int(ds1.num_steps[0])}")

    figures = {"compile_s": round(first - run1, 2), "one_patient_ms": round(run1 * 1e3, 1)}
    # two ways a user asks: every state, observable and drug/target-indexed output over time
    # (the default Dataset), or only the tumor volume over time (simulate(outputs=...), like the
    # libRoadRunner peer's timeCourseSelections); both daily, with the same solves
    for label, outputs in (("", None), ("_tumor_only", ("tumor_volume",))):
        for n in args.sizes:
            pop = population(n)
            w = pop.pop("body_weight")
            ip.simulate(REGIMEN, pop, days=DAYS, weight=w, outputs=outputs)  # compile for this batch shape
            wall, ds = timed(lambda: ip.simulate(REGIMEN, pop, days=DAYS, weight=w, outputs=outputs), args.repeats)
            steps = ds.num_steps.values
            rate = n * years / wall
            kept = f"all {len(all_outputs(ip.core_model()))} outputs" if outputs is None else "tumor_volume only"
            print(f"{n:>6} patients, {kept}: {wall:.2f} s, {rate:,.0f} patient-years/s, steps mean {steps.mean():.0f} max {steps.max()}")
            figures[f"py_per_s_{n}{label}"] = round(rate)

    pop = population(args.scipy_patients)
    wall = scipy_loop(pop, args.scipy_patients)
    scipy_rate = args.scipy_patients * years / wall
    print(f"scipy LSODA loop, {args.scipy_patients} patients: {wall:.2f} s, {scipy_rate:,.1f} patient-years/s")
    best = max(v for k, v in figures.items() if k.startswith("py_per_s_") and not k.endswith("_tumor_only"))
    figures["scipy_py_per_s"] = round(scipy_rate, 1)
    figures["ratio_vs_scipy"] = round(best / scipy_rate, 1)
    rr_rate = roadrunner_loop(population(args.roadrunner_patients), args.roadrunner_patients)
    if rr_rate is not None:
        print(f"libRoadRunner loop (SBML export, CVODE, rtol 1e-6, atol 1e-9), {args.roadrunner_patients} patients: "
              f"{rr_rate:,.1f} patient-years/s")
        figures["roadrunner_py_per_s"] = round(rr_rate, 1)
        # the peer keeps only the tumor volume, so compare with the run that does the same
        best_selected = max(v for k, v in figures.items() if k.endswith("_tumor_only"))
        figures["ratio_vs_roadrunner"] = round(best_selected / rr_rate, 1)
    if numba_peer.IMPORT_ERROR is not None:
        print(f"numbalsoda peer skipped: {numba_peer.IMPORT_ERROR}")
    elif not numbalsoda_agreement() < 1e-5:  # (a NaN fails too)
        print("numbalsoda peer NOT timed: it disagrees with immunopd at a tight tolerance (see above)")
    else:
        n = args.numbalsoda_patients
        nb_rate, failed = numbalsoda_loop(n, args.repeats)
        # the peer keeps only the tumor volume: compare with immunopd's tumor-only run of the
        # same size, or of the largest size run when that size was not
        sizes = [k for k in figures if k.endswith("_tumor_only")]
        same = f"py_per_s_{n}_tumor_only"
        ours = same if same in figures else max(sizes, key=lambda k: int(k.split("_")[3]))
        print(f"numbalsoda LSODA loop (numba rhs, prange on {threads()} threads), {n} patients, tumor volume kept: "
              f"{nb_rate:,.0f} patient-years/s" + (f", {failed} failed" if failed else "")
              + f"; immunopd ({ours}) / numbalsoda = {figures[ours] / nb_rate:.2f}")
        figures["numbalsoda_py_per_s"] = round(nb_rate)
        figures["ratio_vs_numbalsoda"] = round(figures[ours] / nb_rate, 2)
    print("reproduce: .venv/bin/python bench/simulate.py " + " ".join(sys.argv[1:]))
    print("bench: simulate " + " ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
