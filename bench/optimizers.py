"""scipy's BFGS against the anchored quasi-Newton on the mechanistic population model.

Both are FOCE-I on the same lesions (the first N immunotherapy lesions with >= min-scans scans;
etas on the growth and kill rates; initial THETAs of bench/popforecast.py, OMEGA 0.3). They differ
only in the outer optimizer (:data:`immunopd.nlme.OPTIMIZERS`): scipy's BFGS starts every
objective evaluation's conditional etas from the previous evaluation's, whatever point that was;
the anchored iteration starts every trial point from the last accepted point's and caps the step.
Printed per optimizer: status, OFV, BFGS iterations, objective evaluations, estimation time
(compilation paid by a warm-up call before either), and the OFV at the estimate evaluated again
with every conditional eta started from zero (a check that the reported OFV does not depend on
the path that led to it).

Reproduce with:  .venv/bin/python bench/optimizers.py --lesions 100 --min-scans 3 --maxiter 60
"""
import argparse
import os
import sys
import time

import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from immunopd import nlme  # noqa: E402
from immunopd.calibration import observed_courses  # noqa: E402
from immunopd.popfit import lesion_data, mechanistic_nlme_model  # noqa: E402

INITIAL = {"V0_RATIO": 0.91, "POP_GROWTH_RATE": 0.0016, "POP_KILL_RATE": 0.0084}


def ofv_from_zero(model, data, estimates):
    d = nlme._prepare(model, data)
    eng = nlme._engine(model)
    jd = nlme._device_data(d)
    p = jnp.asarray([estimates[n] for n in model.parameter_names()])
    eta, _, local, found = nlme._conditional_modes(eng, p, jnp.zeros((len(d.ids), len(model.etas))), jd)
    vals, _ = eng.values_and_jacobian(p, eta, local, jd)
    return float(np.sum(vals)), int(np.sum(~np.asarray(found)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lesions", type=int, default=100)
    ap.add_argument("--min-scans", type=int, default=3)
    ap.add_argument("--maxiter", type=int, default=60)
    ap.add_argument("--max-step", type=float, default=1.0)
    ap.add_argument("--order", default="anchored,bfgs", help="optimizers in the order run (comma-separated)")
    args = ap.parse_args()
    for name in args.order.split(","):
        nlme.check_optimizer(name, args.max_step)
    data = lesion_data(observed_courses("laleh2022", arm="immunotherapy"), min_scans=args.min_scans, lesions=args.lesions)
    model = mechanistic_nlme_model("immunotherapy", random=("growth_rate", "kill_rate"), initial=INITIAL)
    print(f"{data.ID.nunique()} lesions, {len(data)} scans; warm-up (compilation) ...", flush=True)
    t = time.perf_counter()
    nlme.fit(model, data, initial=INITIAL, covariance=None, maxiter=0, optimizer="anchored")
    print(f"warm-up {time.perf_counter() - t:.0f} s", flush=True)
    rows = []
    for opt in args.order.split(","):
        t = time.perf_counter()
        f = nlme.fit(model, data, initial=INITIAL, covariance=None, maxiter=args.maxiter, gtol=1e-2, optimizer=opt,
                     max_step=args.max_step)
        el = time.perf_counter() - t
        again, lost = ofv_from_zero(model, data, f.estimates())
        a = f.dataset.attrs
        rows.append((opt, el))
        print(f"\n{opt}: {el:.0f} s, {a['iterations']} iterations, {a['objective_evaluations']} evaluations;"
              f" OFV {f.ofv:.3f}; from eta = 0 at the estimate: {again:.3f} ({lost} modes not found)\n"
              f"  status: {f.estimation_status}\n  estimates: "
              + ", ".join(f"{k} {v:.4g}" for k, v in f.estimates().items()), flush=True)
    if len(rows) == 2:
        print(f"\ntime ratio {rows[1][0]} / {rows[0][0]}: {rows[1][1] / rows[0][1]:.2f}")
    print(f"reproduce: .venv/bin/python bench/optimizers.py --lesions {args.lesions} --min-scans {args.min_scans}"
          f" --maxiter {args.maxiter} --max-step {args.max_step:g} --order {args.order}")


if __name__ == "__main__":
    main()
