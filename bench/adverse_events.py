"""Calibration and check of the grade >= 3 treatment-related adverse-event hazards.

The hazard of a first grade >= 3 treatment-related adverse event (immunopd/models/core.py,
mechanism "treatment-related adverse events") is linear in its four parameters::

    h(t) = h_pd B(t) + h_ctla4 O(t) (1 + f B(t)) + h_chemo E(t)

(B: PD-1/PD-L1 blockade, O: CTLA-4 occupancy, E: cytotoxic effect, all 0-1), so each
parameter follows in closed form from the published one-year rates of four regimens, for a
typical patient (75 kg, 1.85 m2) treated for one year as scheduled:

    nivolumab 3 mg/kg Q2W -> h_pd;  ipilimumab 3 mg/kg Q3W x4 -> h_ctla4;
    nivolumab + ipilimumab (then nivolumab 3 mg/kg Q2W) -> f;  docetaxel 75 mg/m2 Q3W -> h_chemo.

The trials' patients were treated until progression or toxicity, most for less than a year
(median PFS 2.8-6.9 months), so the rates are read here as the one-year risk under continued
treatment: an approximation, stated in the README. The script then prints, for the calibration
regimens and for regimens not used in it (atezolizumab in OAK; pembrolizumab 10 mg/kg Q3W in
KEYNOTE-006), the typical patient's one-year probability and the incidence in a virtual
population, beside the published rate and its 95 % Clopper-Pearson CI.

Reproduce with:  .venv/bin/python bench/adverse_events.py   [--patients 1000]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import immunopd as ip  # noqa: E402
from immunopd.endpoints import response_rate  # noqa: E402
from immunopd.population import sample  # noqa: E402
from immunopd.trial import run_trial  # noqa: E402

ZERO = {"irae_hazard_pd1_axis": 0.0, "irae_hazard_ctla4": 0.0, "irae_combination_factor": 0.0, "chemo_toxicity_hazard": 0.0}
NIVO = "nivolumab 3 mg/kg q2w"
IPI = "ipilimumab 3 mg/kg q3w x4 over 90 min"
COMBO = "nivolumab 1 mg/kg q3w x4; ipilimumab 3 mg/kg q3w x4 over 90 min; nivolumab 3 mg/kg q2w from week 12"
DTX = "docetaxel 75 mg/m2 q3w over 60 min"
#: name -> (regimen, events, patients, source, used in the calibration)
PUBLISHED = {
    "nivolumab 3 mg/kg Q2W": (NIVO, 51, 313, "CheckMate 067, Larkin 2015 doi:10.1056/NEJMoa1504030", True),
    "ipilimumab 3 mg/kg Q3W x4": (IPI, 85, 311, "CheckMate 067", True),
    "nivolumab + ipilimumab": (COMBO, 172, 313, "CheckMate 067", True),
    "docetaxel 75 mg/m2 Q3W": (DTX, 247, 578, "OAK, Fehrenbacher 2018 doi:10.1016/j.jtho.2018.04.039", True),
    "atezolizumab 1200 mg Q3W": ("atezolizumab 1200 mg q3w", 90, 609, "OAK (counts not verified)", False),
    "pembrolizumab 10 mg/kg Q3W": ("pembrolizumab 10 mg/kg q3w", 28, 277, "KEYNOTE-006, Robert 2015 doi:10.1056/NEJMoa1503093 (counts not verified)", False),
}
UNIT = 0.01  # a hazard inside every parameter's bounds; the integrals are divided by it


def integral(regimen: str, term: dict) -> float:
    ps = {**ZERO, **term}
    ds = ip.simulate(regimen, ps, days=365, weight=75.0, bsa=1.85, outputs=["irae_cumulative_hazard"], rtol=1e-8, atol=1e-10)
    return float(ds.irae_cumulative_hazard[0, -1]) / UNIT


def calibrate() -> dict[str, float]:
    b_nivo = integral(NIVO, {"irae_hazard_pd1_axis": UNIT})
    o_ipi = integral(IPI, {"irae_hazard_ctla4": UNIT})
    b_combo = integral(COMBO, {"irae_hazard_pd1_axis": UNIT})
    o_combo = integral(COMBO, {"irae_hazard_ctla4": UNIT})
    bo_combo = integral(COMBO, {"irae_hazard_ctla4": UNIT, "irae_combination_factor": 1.0}) - o_combo
    e_dtx = integral(DTX, {"chemo_toxicity_hazard": UNIT})
    h_pd = -np.log1p(-51 / 313) / b_nivo
    h_c = -np.log1p(-85 / 311) / o_ipi
    f = (-np.log1p(-172 / 313) - h_pd * b_combo - h_c * o_combo) / (h_c * bo_combo)
    return {"irae_hazard_pd1_axis": h_pd, "irae_hazard_ctla4": h_c, "irae_combination_factor": f,
            "chemo_toxicity_hazard": -np.log1p(-247 / 578) / e_dtx}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1000)
    args = ap.parse_args(argv)
    table = ip.core_model().parameters
    print("calibrated hazards (closed form) beside the package defaults")
    for name, value in calibrate().items():
        default = table[name].default
        print(f"  {name:<26} {value:.4g}   default {default:.4g}   ratio {value / default:.4f}")
    pop = sample(args.patients, seed=1)
    trial = run_trial({k: v[0] for k, v in PUBLISHED.items()}, pop, days=365, outputs=("sld",))
    print(f"\none-year grade >= 3 treatment-related AE, typical patient and {args.patients} virtual patients (seed 1), "
          "beside the published rate (95 % Clopper-Pearson CI)")
    print(f"{'regimen':<28}{'typical %':>10}{'virtual % (95% CI)':>22}{'published % (95% CI)':>24}  in CI  fitted  source")
    for k, (regimen, events, n, source, fitted) in PUBLISHED.items():
        p = float(ip.simulate(regimen, times=np.array([0.0, 365.0]), weight=75.0, bsa=1.85,
                              outputs=["adverse_event_probability"]).adverse_event_probability[0, -1])
        rate, lo, hi = response_rate(np.arange(n) < events)
        d = trial.sel(regimen=k)
        virt = f"{100 * float(d.adverse_event_rate):.1f} ({100 * float(d.adverse_event_rate_lower):.1f}-{100 * float(d.adverse_event_rate_upper):.1f})"
        inside = "yes" if lo <= float(d.adverse_event_rate) <= hi else "NO"
        print(f"{k:<28}{100 * p:>10.1f}{virt:>22}{f'{100 * rate:.1f} ({100 * lo:.1f}-{100 * hi:.1f})':>24}  {inside:<5}  "
              f"{'yes' if fitted else 'no':<6}  {source}")
    print("\nreproduce: .venv/bin/python bench/adverse_events.py --patients", args.patients)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
