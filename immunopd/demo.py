"""What ``make demo`` runs: a small version of the virtual dosing experiment, then the
three-patient-type comparison.

Part 1 (:func:`run_small_trial`): one virtual twin per immunotherapy lesion of the shipped
Laleh 2022 data, matched on its whole measured time course among 20,000 plausible patients
(:func:`immunopd.calibration.calibrate_time_courses`), then anti-PD-1 alone vs with
anti-Clever-1 on the twins, with the RECIST endpoint table and the sClever-1 and hot/cold strata.

Part 2: three regimens (no treatment; pembrolizumab 200 mg Q3W; pembrolizumab 200 mg Q3W plus
bexmarilimab 1 mg/kg Q3W) on three patient types built from the default parameters: a hot
tumor (defaults), a cold tumor (tcell_exclusion 0.9: effector influx cut 10x) and a hot tumor
with 5x sClever-1 release. One year, daily output, body weight 70 kg.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .io import save_figure, write_netcdf
from .models.core import PARAMETERS
from .models.drugs import STANDARD_REGIMENS
from .solve import simulate

__all__ = ["REGIMENS", "PATIENT_TYPES", "run_demo", "demo_dataset"]

REGIMENS: dict[str, str] = {
    "untreated": "none",
    "anti-PD-1": STANDARD_REGIMENS["anti-PD-1"],
    "anti-PD-1 + anti-Clever-1": STANDARD_REGIMENS["anti-PD-1 + anti-Clever-1"],
}
PATIENT_TYPES: dict[str, dict[str, float]] = {
    "hot": {},
    "cold": {"tcell_exclusion": 0.9},
    "high sClever-1": {"sclever1_release": 5 * PARAMETERS["sclever1_release"].default},
}


def demo_dataset(days: float = 365.0, weight: float = 70.0) -> xr.Dataset:
    """Dims (regimen, patient, time): one batched solve per regimen."""
    names = list(PATIENT_TYPES)
    keys = sorted({k for over in PATIENT_TYPES.values() for k in over})

    params = {k: np.array([PATIENT_TYPES[n].get(k, PARAMETERS[k].default) for n in names]) for k in keys}
    runs = [simulate(text, params, days=days, weight=weight) for text in REGIMENS.values()]
    regimen_texts = [r.attrs["regimen"] for r in runs]
    for r in runs:
        for k in ("regimen", "drugs"):
            r.attrs.pop(k, None)
    ds = xr.concat(runs, dim="regimen", data_vars="all", coords="minimal", compat="override", combine_attrs="override",
                   join="outer")  # regimens dose different drugs: the union, NaN where a regimen has none
    ds = ds.assign_coords(
        regimen=("regimen", list(REGIMENS)), regimen_text=("regimen", regimen_texts), patient_type=("patient", names)
    )
    ds.attrs["title"] = "immunopd demo: virtual dosing comparison"
    return ds


def summary_table(ds: xr.Dataset, day: float = 182.0) -> str:
    """Best % change in SLD up to ``day`` and change at the end, per regimen and patient type."""
    lines = [f"{'regimen':<28} {'patient':<16} {'best %chg to d' + format(day, 'g'):>18} {'%chg at end':>12}  RECIST-like"]
    within = ds.sel(time=ds.time <= day)
    for reg in ds.regimen.values:
        for i, ptype in enumerate(ds.patient_type.values):
            best = float(within.pct_change.sel(regimen=reg).isel(patient=i).min())
            end = float(ds.pct_change.sel(regimen=reg).isel(patient=i)[-1])
            label = "PR/CR" if best <= -30 else ("PD" if end >= 20 else "SD")
            lines.append(f"{reg:<28} {ptype:<16} {best:>18.1f} {end:>12.1f}  {label}")
    return "\n".join(lines)


def run_small_trial(out_dir: Path, plausible_patients: int = 20000, seed: int = 1) -> xr.Dataset:
    """Calibrate, run the biomarker experiment, print the endpoint tables, write trial.nc and plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plots
    from .biomarker import REGIMENS as BIO
    from .calibration import calibrate_time_courses, plausible_population
    from .trial import endpoint_table, run_trial, strata_table, stratify

    cal = calibrate_time_courses(plausible_population(plausible_patients, seed=seed), seed=seed, progress=True)
    print(cal.report())
    trial = run_trial(BIO, cal.population, days=365, outputs=("sld", "pct_change"), progress=True)
    print()
    print(endpoint_table(trial))
    for by in ("baseline_sclever1", "cold"):
        print()
        print(strata_table(stratify(trial, by, seed=seed)))
    write_netcdf(trial, out_dir / "trial.nc")
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    plots.waterfall(trial, "anti-PD-1", ax=axes[0])
    plots.waterfall(trial, "anti-PD-1 + anti-Clever-1", ax=axes[1])
    plots.kaplan_meier_plot(trial, ax=axes[2])
    fig.tight_layout()
    save_figure(fig, out_dir / "trial.png", dpi=100)
    plt.close(fig)
    print(f"\nwrote {out_dir / 'trial.nc'} and {out_dir / 'trial.png'}\n")
    return trial


def run_demo(out_dir: Path) -> xr.Dataset:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    run_small_trial(out_dir)
    ds = demo_dataset()
    write_netcdf(ds, out_dir / "demo.nc")
    fig, axes = plt.subplots(1, ds.sizes["patient"], figsize=(13, 4), sharey=True)
    for ax, i in zip(np.atleast_1d(axes), range(ds.sizes["patient"])):
        for reg in ds.regimen.values:
            ax.semilogy(ds.time, ds.tumor_volume.sel(regimen=reg).isel(patient=i), label=reg)
        ax.set_title(f"{ds.patient_type.values[i]} tumor")
        ax.set_xlabel("time since treatment start (day)")
        ax.set_ylim(1, 2e6)
    np.atleast_1d(axes)[0].set_ylabel("tumor volume (mm3)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    png = save_figure(fig, out_dir / "demo.png")
    plt.close(fig)
    print(summary_table(ds))
    print(f"\nwrote {out_dir / 'demo.nc'} and {png}")
    return ds
