"""Does FOCE-I's OFV at one parameter point depend on where the conditional etas start?

The mechanistic population model on the first N immunotherapy lesions with >= 3 scans (etas on
growth and kill rates, the initial THETAs of bench/popforecast.py): the conditional modes at p0
from eta = 0, then, for each excursion (a typical rate times a factor, as a BFGS trial point
might be), the modes there, and the modes back at p0 started from those. A lesion whose
conditional density has more than one mode can end in another one, and the OFV at p0 changes:
the objective a BFGS line search sees is then not a function of the parameters alone (README,
"Every immunotherapy lesion with the study effect").

Reproduce with:  .venv/bin/python bench/inner_modes.py 100 3
"""
import os
import sys
import time

import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from immunopd import nlme  # noqa: E402
from immunopd.calibration import observed_courses  # noqa: E402
from immunopd.popfit import lesion_data, mechanistic_nlme_model  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
factor = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
initial = {"V0_RATIO": 0.91, "POP_GROWTH_RATE": 0.0016, "POP_KILL_RATE": 0.0084}
data = lesion_data(observed_courses("laleh2022", arm="immunotherapy"), min_scans=3, lesions=n)
model = mechanistic_nlme_model("immunotherapy", random=("growth_rate", "kill_rate"), initial=initial)
d = nlme._prepare(model, data); eng = nlme._engine(model); jd = nlme._device_data(d)
names = model.parameter_names()
p0 = [t.initial for t in model.thetas] + [model.omega_matrix[i, j] for i, j in eng.omega_index] + list(model.sigma)
p0 = np.asarray(p0, float)
k = len(model.etas)

def ofv(p, eta0):
    eta, gmax, local, found = nlme._conditional_modes(eng, jnp.asarray(p), jnp.asarray(eta0), jd)
    vals, _ = eng.values_and_jacobian(jnp.asarray(p), eta, local, jd)
    return np.asarray(vals), np.asarray(eta), np.asarray(found)

t = time.time()
va, ea, fa = ofv(p0, np.zeros((len(d.ids), k)))
print(f"{len(d.ids)} lesions; at p0 from eta=0: OFV {va.sum():.4f}, modes found {fa.sum()}  ({time.time()-t:.0f} s)", flush=True)
for name, f in (("POP_GROWTH_RATE", factor), ("POP_KILL_RATE", factor), ("POP_KILL_RATE", 1 / factor)):
    p1 = p0.copy(); p1[names.index(name)] *= f
    _, e1, _ = ofv(p1, ea)
    vb, eb, fb = ofv(p0, e1)
    diff = np.abs(vb - va)
    moved = np.max(np.abs(eb - ea), axis=1)
    print(f"back at p0 from the etas of {name} x {f:g}: OFV {vb.sum():.4f} (diff {vb.sum() - va.sum():+.4f});"
          f" lesions with |dOFV| > 1e-3: {int((diff > 1e-3).sum())} (largest {diff.max():.3g}),"
          f" with an eta moved > 1e-3: {int((moved > 1e-3).sum())}; modes found {fb.sum()}", flush=True)
print(f"reproduce: .venv/bin/python bench/inner_modes.py {n} {factor:g}")
