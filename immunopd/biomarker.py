"""The sClever-1 biomarker experiment: anti-PD-1 alone vs with anti-Clever-1, by stratum.

Clinical background (model-reference.md): high plasma soluble Clever-1 is associated with
resistance to anti-PD-1, and the anti-Clever-1 antibody bexmarilimab lowers its release by
repolarising Clever-1+ macrophages. The virtual experiment: take the population calibrated to
the published immunotherapy response (:mod:`immunopd.calibration`), give every patient both
arms (an in-silico crossover: the same patients in both regimens), and report ORR and PFS per
stratum of baseline plasma sClever-1 (below / above the median) and of baseline infiltration
(hot / cold), with 95% CIs and the paired ORR difference.

Everything the answer depends on that is assumed is in the parameter table: the bexmarilimab
PK and all sClever-1 terms are placeholders ("assumed"), so the figures show what the model
implies, not a clinical prediction.
"""

from __future__ import annotations

import xarray as xr

from .calibration import calibrate, plausible_population
from .models.drugs import STANDARD_REGIMENS
from .population import Population
from .trial import run_trial, stratify, strata_table

__all__ = ["REGIMENS", "run_biomarker_experiment", "biomarker_report"]

REGIMENS: dict[str, str] = {name: STANDARD_REGIMENS[name] for name in ("anti-PD-1", "anti-PD-1 + anti-Clever-1")}


def run_biomarker_experiment(
    population: Population | None = None,
    *,
    plausible_patients: int = 10_000,
    seed: int = 1,
    days: float = 365.0,
    progress: bool = False,
) -> tuple[xr.Dataset, dict[str, xr.Dataset]]:
    """Run the experiment; return the trial Dataset and ``{"sclever1": ..., "infiltration": ...}``
    stratified endpoints. Without ``population`` the calibrated one is built first (seeded)."""
    if population is None:
        population = calibrate(plausible_population(plausible_patients, seed=seed), seed=seed, progress=progress).population
    trial = run_trial(REGIMENS, population, days=days, outputs=("sld", "pct_change"), progress=progress)
    strata = {
        "sclever1": stratify(trial, "baseline_sclever1", quantiles=[0.5], seed=seed),
        "infiltration": stratify(trial, "cold", seed=seed),
    }
    return trial, strata


def biomarker_report(trial: xr.Dataset, strata: dict[str, xr.Dataset]) -> str:
    from .trial import endpoint_table

    return "\n\n".join([endpoint_table(trial)] + [strata_table(s) for s in strata.values()])
