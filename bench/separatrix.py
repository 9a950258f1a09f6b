"""Why FOCE-I fits of the mechanistic model stop on precision loss: a lesion on the tumor-immune threshold.

The first objective evaluation of the chemotherapy-arm prior fit (bench/forecast_prior.py --arm
chemotherapy, its 60 lesions, seed 0, start values, initial OMEGA --omega: 0.5, where that fit first
failed, by default): each lesion's conditional
etas, its share of the outer gradient, and, for the lesion with the largest share, its prediction at
its conditional mode with the baseline volume 1 % lower and higher, and d(diameter)/d(baseline volume)
by forward-mode AD and by central differences at two steps, at the fit's tolerance (rtol 1e-6) and at
rtol 1e-9. A jump between -1 % and +1 % that stays at the tighter tolerance is the model's dynamics
(bistable control vs escape), not the solver.

Reproduce with:  .venv/bin/python bench/separatrix.py [--omega 0.5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from immunopd import nlme  # noqa: E402
from immunopd.popfit import mechanistic_nlme_model, mechanistic_predictor  # noqa: E402

from forecast_prior import ARM_PARAMS, ARMS  # noqa: E402
from popforecast import all_records, nonmem_rows  # noqa: E402


def main() -> None:
    import jax
    import jax.numpy as jnp

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--omega", type=float, default=0.5)
    ap.add_argument("--lesions", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    arm = "chemotherapy"
    df = all_records()
    rng = np.random.default_rng(args.seed)  # the same draw as bench/forecast_prior.py
    a = df[df.arm == arm]
    long = a[a.readings >= 6].lesion.unique()
    held_out = set(rng.choice(long, size=long.size // 2, replace=False))
    pool = np.array([x for x in a[a.readings >= 3].lesion.unique() if x not in held_out])
    pick = rng.choice(pool, size=min(args.lesions, pool.size), replace=False)
    data = nonmem_rows(df[df.lesion.isin(pick)])
    free, random, start = ARMS[arm]
    model = mechanistic_nlme_model(arm, free, random=random, initial=start, omega=args.omega, params=ARM_PARAMS[arm])
    d = nlme._prepare(model, data)
    eng = nlme._engine(model)
    names = model.parameter_names()
    p0 = jnp.asarray([t.initial for t in model.thetas] + [model.omega_matrix[i, j] for i, j in eng.omega_index] + list(model.sigma))
    jd = nlme._device_data(d)
    t0 = time.perf_counter()
    eta, gmax, local, found = nlme._conditional_modes(eng, p0, jnp.zeros((len(d.ids), len(random))), jd)
    _, jac = eng.values_and_jacobian(p0, eta, local, jd)
    jac = np.asarray(jac)
    print(f"{len(d.ids)} lesions, OMEGA {args.omega:g} at the start values; conditional modes in {time.perf_counter() - t0:.0f} s;"
          f" not found for {int((~found).sum())}")
    total = jac.sum(axis=0)
    worst = int(np.argmax(np.abs(jac[:, 0])))
    print("outer gradient (natural scale):", ", ".join(f"{n} {g:.3g}" for n, g in zip(names, total)))
    print(f"largest share: lesion {d.ids[worst]} (conditional etas {np.round(np.asarray(eta[worst]), 3).tolist()},"
          f" mode found: {bool(found[worst])}): " + ", ".join(f"{n} {g:.3g}" for n, g in zip(names, jac[worst])))
    m = d.mask[worst]
    ts = jnp.asarray(d.obs_t[worst][m])
    q0 = np.asarray(local[0][worst])
    print(f"scans (day: mm): {', '.join(f'{t:g}: {y:g}' for t, y in zip(d.obs_t[worst][m], d.y[worst][m]))}")
    print(f"individual parameters at the mode: {dict(zip(free, q0.round(6).tolist()))}")
    for rtol, atol in ((1e-6, 1e-8), (1e-9, 1e-11)):
        pred = mechanistic_predictor(arm, free, params=ARM_PARAMS[arm], rtol=rtol, atol=atol, max_steps=100_000)
        f = jax.jit(lambda q: pred.forward(dict(zip(free, q)), None, None, ts))
        print(f"rtol {rtol:g}:")
        for s in (0.99, 1.0, 1.01):
            print(f"  baseline volume x {s:<5g} diameter (mm): {np.asarray(f(jnp.asarray(q0 * np.array([s, 1, 1])))).round(2).tolist()}")
        print(f"  d diameter / d V0 (mm per mm3), forward AD: {np.asarray(jax.jacfwd(f)(jnp.asarray(q0)))[:, 0].round(4).tolist()}")
        for rel in (1e-5, 1e-3):
            dq = q0 * np.array([rel, 0.0, 0.0])
            fd = (np.asarray(f(jnp.asarray(q0 + dq))) - np.asarray(f(jnp.asarray(q0 - dq)))) / (2 * dq[0])
            print(f"  central differences, relative step {rel:g}: {fd.round(4).tolist()}")


if __name__ == "__main__":
    main()
