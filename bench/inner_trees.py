"""FOCE-I's first objective evaluation on lesions, timed for two source trees of immunopd.

A change to nlme's inner problem (batching, compilation, expansions) is judged against the code
before it: check the older commit out beside this one (``git worktree add /tmp/before <commit>``)
and give both trees. Each tree runs in a fresh process (its own compilation, its own imports,
nothing shared), in the order given: the first evaluation of a fit (conditional modes from
eta = 0 at the model's initial estimates, then the OFV and its gradient) once with compilation,
then ``--warm`` times warm. Etas on the growth and kill rates, as bench/population.py fits.

The per-lesion OFV terms, etas and found flags are compared between the trees: lesions whose
conditional mode both find must agree; those neither finds (a flat or cliff-like likelihood
along an eta) may end at different points.

Reproduce with:  git worktree add /tmp/before bfe8eba
                 .venv/bin/python bench/inner_trees.py --lesions 400 /tmp/before . /tmp/before .
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

_CHILD = r'''
import json, sys, time
tree, n, warm, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, tree)
import numpy as np
import jax.numpy as jnp
from immunopd import nlme
from immunopd.calibration import observed_courses
from immunopd.popfit import lesion_data, mechanistic_nlme_model
data = lesion_data(observed_courses("laleh2022", arm="immunotherapy"), min_scans=3, lesions=n)
model = mechanistic_nlme_model("immunotherapy", random=("growth_rate", "kill_rate"))
d = nlme._prepare(model, data)
eng = nlme._engine(model)
jd = nlme._device_data(d)
om = model.omega_matrix
p = jnp.asarray([t.initial for t in model.thetas] + [om[i, j] for i, j in eng.omega_index] + list(model.sigma), float)
eta0 = jnp.zeros((len(d.ids), len(model.etas)))
times = []
for rep in range(1 + warm):
    t0 = time.perf_counter()
    eta, gmax, local, found = nlme._conditional_modes(eng, p, eta0, jd)
    vals, jac = eng.values_and_jacobian(p, eta, local, jd)
    vals, jac = np.asarray(vals), np.asarray(jac)
    times.append(time.perf_counter() - t0)
np.savez(out, vals=vals, eta=np.asarray(eta), found=np.asarray(found))
print(json.dumps({"file": nlme.__file__, "lesions": len(d.ids), "times": times}))
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", help="source trees (folders holding immunopd/), run in this order; a tree may repeat")
    ap.add_argument("--lesions", type=int, default=400, help="immunotherapy lesions with >= 3 scans (default %(default)s)")
    ap.add_argument("--warm", type=int, default=2, help="warm evaluations after the compiling one (default %(default)s)")
    args = ap.parse_args()
    trees = [os.path.abspath(t) for t in args.trees]
    for t in trees:
        if not os.path.isfile(os.path.join(t, "immunopd", "nlme.py")):
            ap.error(f"trees: {t!r} holds no immunopd/nlme.py")
    if len(set(trees)) != 2:
        ap.error(f"trees: {len(set(trees))} distinct trees given; give exactly two (each may repeat)")
    if args.lesions < 1 or args.warm < 1:
        ap.error("--lesions and --warm must be positive integers")
    warm = {t: [] for t in trees}
    first = {t: [] for t in trees}
    last = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, tree in enumerate(trees):
            out = os.path.join(tmp, f"{k}.npz")
            run = subprocess.run([sys.executable, "-c", _CHILD, tree, str(args.lesions), str(args.warm), out],
                                 capture_output=True, text=True, check=False)
            if run.returncode:
                print(run.stderr[-3000:], file=sys.stderr)
                return 1
            rec = json.loads(run.stdout.strip().splitlines()[-1])
            if not rec["file"].startswith(tree):
                print(f"{tree}: imported {rec['file']} instead", file=sys.stderr)
                return 1
            first[tree].append(rec["times"][0])
            warm[tree] += rec["times"][1:]
            with np.load(out) as z:
                last[tree] = {key: z[key] for key in z.files}
            print(f"{tree}: {rec['lesions']} lesions, first call (compiles) {rec['times'][0]:.1f} s, warm "
                  + ", ".join(f"{s:.1f}" for s in rec["times"][1:]) + f" s; OFV {last[tree]['vals'].sum():.6f}", flush=True)
    a, b = list(dict.fromkeys(trees))
    za, zb = last[a], last[b]
    both = za["found"] & zb["found"]
    gap = np.abs(za["vals"] - zb["vals"])
    print(f"OFV difference {zb['vals'].sum() - za['vals'].sum():+.6g}; lesions found by both ({int(both.sum())}): largest "
          f"|OFV difference| {np.max(gap[both], initial=0.0):.2e}, largest |eta difference| "
          f"{np.max(np.abs(za['eta'] - zb['eta'])[both], initial=0.0):.2e}; the others ({int((~both).sum())}): "
          f"|OFV difference| {gap[~both].sum():.3g} in all")
    print(f"warm first evaluation, mean: {a} {np.mean(warm[a]):.1f} s, {b} {np.mean(warm[b]):.1f} s: "
          f"{np.mean(warm[a]) / np.mean(warm[b]):.2f}x; first call with compilation, mean: {np.mean(first[a]):.1f} s, "
          f"{np.mean(first[b]):.1f} s")
    print("reproduce: .venv/bin/python bench/inner_trees.py --lesions", args.lesions, "--warm", args.warm,
          " ".join(args.trees))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
