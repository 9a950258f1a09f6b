"""Forecasting with the mechanistic population model (issue 16, item 5), on TumorGrowth.jl's protocol.

Protocol (as bench/laleh2022.py, whose docstring gives the source): the lesions of
``flat_patient_data.csv`` with >= 6 readings, all 14 arms; each lesion's last 2 readings are held
out and predicted; error = mean |predicted - observed| normalized volume over those 2 points,
averaged over lesions after TumorGrowth.jl's filter (drop a lesion where some model's error is
NaN, infinite or > 0.1). Published best (all arms): 0.00272664 (their general Bertalanffy).

Mechanistic forecast: per arm (immunotherapy: atezolizumab 1200 mg Q3W; chemotherapy: docetaxel
75 mg/m2 Q3W, each from the lesion's baseline scan, as :mod:`immunopd.popfit` assumes),

1. the population model (FOCE-I, :func:`immunopd.popfit.popfit`) is fitted to a random sample of
   ``--train`` training lesions of that arm: lesions of the arm with >= 3 readings, each scored
   lesion cut to its first n - 2 readings (the held-out points are never used);
2. each scored lesion's individual parameters are its MAP estimates with that population as the
   prior (:func:`immunopd.nlme.map_estimates`) from its first n - 2 readings;
3. the diameters predicted at the 2 held-out times are turned into normalized volume as the data
   are (0.52 D^3 over the dataset's largest volume).

The curve models are refitted in the same run on the same lesions (bench/laleh2022.py's
``holdout_errors``) so that the table compares like with like.

Reproduce with:  .venv/bin/python bench/popforecast.py [--train 150]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

import immunopd  # noqa: E402,F401
from immunopd import nlme  # noqa: E402
from immunopd.popfit import mechanistic_nlme_model, popfit  # noqa: E402

import laleh2022  # noqa: E402

HOLDOUTS = 2
FREE = {"immunotherapy": ("baseline_tumor_volume", "growth_rate", "kill_rate"),
        "chemotherapy": ("baseline_tumor_volume", "growth_rate", "chemo_kill_ratio")}
RANDOM = {"immunotherapy": ("growth_rate", "kill_rate"), "chemotherapy": ("growth_rate", "chemo_kill_ratio")}


def all_records() -> pd.DataFrame:
    path = os.path.join(os.path.dirname(__file__), "..", "data", "laleh2022", "flat_patient_data.csv")
    df = pd.read_csv(path)
    df["lesion"] = df.Pt_hashID
    df["arm"] = np.where(df.Study_Arm.isin(laleh2022.IMMUNOTHERAPY), "immunotherapy", "chemotherapy")
    return df


def nonmem_rows(df: pd.DataFrame) -> pd.DataFrame:
    """ID, TIME (days since the lesion's first reading), AMT, DV (diameter, mm), BASEVOL (mm3)."""
    out = []
    for lesion, g in df.groupby("lesion", sort=False):
        t = g.T_days.to_numpy(float)
        d = g.Lesion_diam.to_numpy(float)
        out.append(pd.DataFrame({"ID": lesion, "TIME": t - t[0], "AMT": 0.0, "DV": d,
                                 "BASEVOL": math.pi / 6 * d[0] ** 3}))
    return pd.concat(out, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=150, help="training lesions per arm for the population fit (default 150)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--maxiter", type=int, default=100)
    ap.add_argument("--arms", default="immunotherapy,chemotherapy",
                    help="arms to forecast (default both; a lesion of an arm left out has no mechanistic forecast and"
                         " the filter then drops it for every model)")
    ap.add_argument("--initial", default=None, help="initial values of the immunotherapy fit, NAME=VALUE,... (THETA names);"
                                                    " take them from a fit that never saw the scored lesions' held-out scans")
    ap.add_argument("--out-dir", default=None, help="also write each arm's fit (popfit_<arm>.nc, with a 100-replicate VPC)"
                                                    " and its VPC/GOF figure (.png)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    df = all_records()
    vol_scale = float((df.Lesion_vol / df.Lesion_normvol).median())  # the dataset's largest volume, mm3
    scored_ids = df[df.readings >= 6].lesion.unique()
    from_end = df.groupby("lesion", sort=False).cumcount(ascending=False)
    train_rows = df[~df.lesion.isin(scored_ids) | (from_end >= HOLDOUTS)]
    train_rows = train_rows[train_rows.groupby("lesion").lesion.transform("size") >= 3]
    errors, timing = {}, {}
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    for arm in arms:
        t0 = time.perf_counter()
        pool = train_rows[train_rows.arm == arm].lesion.unique()
        pick = rng.choice(pool, size=min(args.train, pool.size), replace=False)
        data = nonmem_rows(train_rows[train_rows.lesion.isin(pick)])
        # the lesions' body surface areas are not in the data: a docetaxel dose in mg/m2 is given for
        # the model's default body surface area (its source is in the parameter table)
        from immunopd.solve import resolve_model

        bsa = resolve_model(None).parameters["body_surface_area"].default
        extra = {"params": {"body_surface_area": bsa}} if arm == "chemotherapy" else {}
        start = None
        if args.initial and arm == "immunotherapy":
            start = {k.strip(): float(v) for k, v in (item.split("=") for item in args.initial.split(","))}
        model = mechanistic_nlme_model(arm, FREE[arm], random=RANDOM[arm], initial=start, **extra)
        pf = popfit(data, arm=arm, model=model, initial=start, covariance="sandwich", maxiter=args.maxiter,
                    replicates=100 if args.out_dir else 2, progress=True)
        est = pf.fit.estimates()
        fit_s = time.perf_counter() - t0
        print(f"{arm}: population fit on {len(pick)} training lesions ({len(data)} scans) in {fit_s:.0f} s"
              f" (covariance step and VPC included)")
        print(pf.report(), flush=True)
        if args.out_dir:
            from immunopd.io import write_netcdf
            from immunopd.popfit import plot_popfit, time_course_check

            os.makedirs(args.out_dir, exist_ok=True)
            write_netcdf(pf.to_dataset(), os.path.join(args.out_dir, f"popfit_{arm}.nc"))
            plot_popfit(pf, os.path.join(args.out_dir, f"popfit_{arm}.png"))
            tc = time_course_check(model, data, est, seed=args.seed)
            print(f"{'time-course figure (training lesions)':<40} {'observed':>9} {'simulated from the fit':>23}")
            for key in tc["observed"]:
                print(f"{key:<40} {tc['observed'][key]:>9.3g} {tc['simulated'][key]:>23.3g}")
        scored = df[df.lesion.isin(scored_ids) & (df.arm == arm)]
        fe = scored.groupby("lesion", sort=False).cumcount(ascending=False)
        cond = nonmem_rows(scored[fe >= HOLDOUTS])
        post = nlme.map_estimates(model, cond, est)
        test = scored[fe < HOLDOUTS]
        first_day = scored.groupby("lesion", sort=False).T_days.first()
        times = np.stack([g.T_days.to_numpy(float) - first_day[l] for l, g in test.groupby("lesion", sort=False)])
        order = [l for l, _ in test.groupby("lesion", sort=False)]
        ind = post.individual.sel(subject=order).values
        diam = nlme.predict_individuals(model, ind, times)
        pred = 0.52 * np.maximum(diam, 0.0) ** 3 / vol_scale
        obs = np.stack([g.Lesion_normvol.to_numpy(float) for _, g in test.groupby("lesion", sort=False)])
        err = np.mean(np.abs(pred - obs), axis=1)
        found = post.map_found.sel(subject=order).values
        err[~found] = np.nan
        errors.update(dict(zip(order, err)))
        timing[arm] = (fit_s, time.perf_counter() - t0 - fit_s, len(pick), len(order), int((~found).sum()))
    mech = pd.Series(errors, name="mechanistic_population_map")
    curves = laleh2022.records()
    curve_err = pd.DataFrame({m: laleh2022.holdout_errors(curves, m, size="Lesion_normvol", held_out=HOLDOUTS, scored=HOLDOUTS)
                              for m in laleh2022.MODELS})
    table = curve_err.join(mech)
    bad = table.isna().any(axis=1) | np.isinf(table).any(axis=1) | (table > 0.1).any(axis=1)
    kept = table[~bad]
    arm_of = df.groupby("lesion").arm.first()
    if len(arms) < 2:
        print(f"\nonly {arms} forecast mechanistically: the other arm's lesions are dropped for every model below")
    print(f"\nlesions with >= 6 readings: {len(table)}; dropped by the NaN/inf/> 0.1 filter (any model): {int(bad.sum())}; "
          f"kept {len(kept)}")
    print(f"{'model':<30} {'MAE all arms':>13} {'immunotherapy':>14} {'chemotherapy':>13}   published (TumorGrowth.jl)")
    for m in [*laleh2022.MODELS, "mechanistic_population_map"]:
        name, pub = laleh2022.PUBLISHED.get(m, (None, None))
        io = kept[m][arm_of.loc[kept.index] == "immunotherapy"]
        ch = kept[m][arm_of.loc[kept.index] == "chemotherapy"]
        print(f"{m:<30} {kept[m].mean():>13.5f} {io.mean():>14.5f} {ch.mean():>13.5f}   {f'{pub:.5f} ({name})' if pub else '-'}")
    for arm, (fs, ms, nt, ns, nf) in timing.items():
        print(f"{arm}: population fit {fs:.0f} s on {nt} lesions; MAP forecasts of {ns} lesions {ms:.0f} s "
              f"({nf} MAP modes not found)")
    target = 0.0026
    got = kept["mechanistic_population_map"].mean()
    print(f"\ntarget (issue 16): mean MAE <= {target} over all lesions; mechanistic {got:.5f} -> "
          f"{'met' if got <= target else f'missed by {got - target:.5f}'}; best published 0.00273, our general "
          f"Bertalanffy {kept['general_bertalanffy'].mean():.5f}")
    print("reproduce: .venv/bin/python bench/popforecast.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
