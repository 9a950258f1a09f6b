"""One-patient forecasts on held-out scans (issue 17, items 4 and 6): accuracy, interval coverage and speed.

Protocol: every lesion of one arm of data/laleh2022 (flat_patient_data.csv; --arm immunotherapy:
atezolizumab 1200 mg Q3W, chemotherapy: docetaxel 75 mg/m2 Q3W, from the baseline scan) with >= 6
readings, with the prior shipped for that arm. For k = 2 and k = 3, each lesion's first k
scans (the baseline and k - 1 on treatment) condition the forecast and every later scan is
predicted; the error is |predicted - observed| longest diameter (mm; also in TumorGrowth.jl's
normalized volume), averaged per lesion, then over lesions. Intervals: the share of later scans
inside the 80 % and 90 % predictive intervals (target: within 5 points of nominal).

Forecasters (each sees only the first k scans):
- ``mechanistic MAP + Laplace``: the shipped prior (immunopd/priors; bench/forecast_prior.py fits
  it outside a held-out half of these lesions, and every lesion it was fitted to is left out
  here), the MAP etas and their Laplace covariance
  (:func:`immunopd.nlme.map_estimates`), point forecast at the MAP, intervals from eta draws plus
  the prior's residual error;
- ``mechanistic population only``: the same prior without the patient's scans beyond the baseline
  (eta = 0 for the point, eta ~ N(0, OMEGA) for the intervals);
- ``general Bertalanffy, population MAP``: the curve the way the mechanistic model is used, MAP +
  Laplace from the same k scans with the curve's own FOCE-I population (immunopd.popcurves; etas
  on the initial volume, rate and plateau, the exponent a population value) as the prior, fitted
  to the lesions the mechanistic prior was fitted to (never a scored one);
- ``general Bertalanffy`` and ``exponential`` curves fitted by least squares to the same k scans
  alone (bench/laleh2022's batched fitter; a curve with more parameters than scans is not
  identifiable and is reported as such, not scored).

Speed (item 6): MAP + Laplace of one patient warm (``immunopd.forecast.posterior``), and NUTS
with 4 chains x 1,000 draws (500 warm-up) warm, on one lesion.

Reproduce with:  .venv/bin/python bench/forecast.py [--lesions 520] [--draws 100] [--skip-nuts]
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

from immunopd import forecast as fc  # noqa: E402
from immunopd import nlme  # noqa: E402
from immunopd.dosing import Regimen  # noqa: E402
from immunopd.models.drugs import ARM_REGIMENS  # noqa: E402

from forecast_prior import ARM_PARAMS  # noqa: E402
from popforecast import all_records, nonmem_rows  # noqa: E402

LEVELS = (0.8, 0.9)


def _predictive(model, prior, ind_draws, times, rng):
    """Diameters with residual error (S, M, O) of individual-parameter draws (S, M, P) at times (S, O)."""
    s, m, p = ind_draws.shape
    t = np.repeat(times, m, axis=0)
    f = nlme.predict_individuals(model, ind_draws.reshape(s * m, p), t).reshape(s, m, -1)
    prop, add = prior.sigma
    return np.maximum(f + np.sqrt(prop * f**2 + add) * rng.standard_normal(f.shape), 0.0)


def _coverage(pred, obs, mask):
    out = {}
    for lvl in LEVELS:
        lo = np.quantile(pred, (1 - lvl) / 2, axis=1)
        hi = np.quantile(pred, 1 - (1 - lvl) / 2, axis=1)
        inside = (obs >= lo) & (obs <= hi)
        out[lvl] = 100.0 * inside[mask].mean()
    return out


def _misses(pred, obs, mask, lvl=0.9):
    """Where the observed scans fall outside the ``lvl`` predictive interval: (% above, % below) of
    the later scans, and the mean signed error of the predictive median (mm). One-sided misses
    and a signed error mean a biased forecast; even misses, intervals that are too narrow."""
    lo = np.quantile(pred, (1 - lvl) / 2, axis=1)
    hi = np.quantile(pred, 1 - (1 - lvl) / 2, axis=1)
    med = np.quantile(pred, 0.5, axis=1)
    return (100.0 * (obs > hi)[mask].mean(), 100.0 * (obs < lo)[mask].mean(), float(np.mean((med - obs)[mask])))


def _miss_note(pred, obs, mask):
    above, below, signed = _misses(pred, obs, mask)
    return f"outside the 90 % PI: {above:.1f} % above, {below:.1f} % below; median - observed {signed:+.2f} mm"


def _curve_population(records, prior, name="general_bertalanffy"):
    """FOCE-I fit of the curve's population model (immunopd.popcurves) to the lesions the prior was
    fitted to (never a scored one): the prior of the curve's MAP forecasts."""
    from immunopd.popcurves import fit_curve_population

    train = nonmem_rows(records[records.lesion.isin(prior.training_subjects)])
    t0 = time.perf_counter()
    fit = fit_curve_population(name, train, covariance=None, maxiter=300)
    return fit, f"population fit on the prior's {train.ID.nunique()} lesions ({time.perf_counter() - t0:.0f} s): {fit.status}"


def _curve_map(fit, cond, times_all, draws, rng):
    """MAP + Laplace forecasts of a curve population model: point (S, O) and predictive draws (S, M, O)."""
    import jax.numpy as jnp

    model = fit.model
    est = fit.estimates()
    post = nlme.map_estimates(model, cond, est)
    point = nlme.predict_individuals(model, post.individual.values, times_all)
    theta = {t.name: jnp.asarray(est[t.name]) for t in model.thetas}
    basevol = cond.groupby("ID", sort=False).BASEVOL.first().to_numpy()
    ind = []
    for s in range(len(basevol)):
        tv = model.typical(theta, {c: jnp.asarray(basevol[s]) for c in model.covariates})
        eta = rng.multivariate_normal(post.ebe.values[s], post.ebe_covariance.values[s], size=draws)
        ind.append(np.stack([float(tv[n]) * (np.exp(eta[:, model.etas.index(n)]) if n in model.etas else 1.0)
                             * np.ones(draws) for n in model.parameters], axis=1))
    ind = np.stack(ind)
    s_, m, p = ind.shape
    f = nlme.predict_individuals(model, ind.reshape(s_ * m, p), np.repeat(times_all, m, axis=0)).reshape(s_, m, -1)
    prop, add = est["SIGMA(proportional)"], est["SIGMA(additive)"]
    pred = np.maximum(f + np.sqrt(prop * f**2 + add) * rng.standard_normal(f.shape), 0.0)
    return point, pred, int((~post.map_found.values).sum())


def _mae(pred, obs, mask):
    err = np.where(mask, np.abs(pred - obs), np.nan)
    per = np.nanmean(err, axis=1)
    return float(np.nanmean(per)), per


def _curve(df, lesions, k, model):
    from immunopd.fitting.batched import fit_lesions
    from immunopd.fitting.curves import CURVE_MODELS

    spec = CURVE_MODELS[model]
    rows = df[df.lesion.isin(lesions)].copy()
    rows["time_days"] = rows.groupby("lesion", sort=False).T_days.transform(lambda s: s - s.iloc[0])
    first = rows.groupby("lesion", sort=False).cumcount() < k
    if len(spec.names) > k:
        return None, f"{len(spec.names)} parameters from {k} scans: not identifiable, not scored"
    fits = fit_lesions(rows[first], model, size="Lesion_diam", error_model="additive", on_invalid="flag", max_steps=2000)
    preds = {}
    for lesion, g in rows[~first].groupby("lesion", sort=False):
        est = fits.estimate.sel(lesion=lesion).values
        preds[lesion] = (np.asarray(spec.function(g.time_days.to_numpy(), dict(zip(spec.names, est))))
                         if np.all(np.isfinite(est)) else np.full(len(g), np.nan))
    return preds, f"{int(np.isfinite(fits.estimate.values).all(axis=1).sum())} of {len(lesions)} fits finite"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lesions", type=int, default=None, help="score a random sample of this many lesions (default all)")
    ap.add_argument("--draws", type=int, default=100, help="predictive draws per lesion (default 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arm", choices=tuple(ARM_PARAMS), default="immunotherapy",
                    help="score this arm's lesions with the prior shipped for it")
    ap.add_argument("--skip-nuts", action="store_true")
    ap.add_argument("--speed-only", action="store_true", help="only the speed figures (item 6)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    df = all_records()
    records = df
    vol_scale = float((df.Lesion_vol / df.Lesion_normvol).median())  # the dataset's largest volume, mm3
    prior = fc.load_prior(args.arm)
    df = df[(df.arm == args.arm) & (df.readings >= 6)]
    trained = df.lesion.isin(prior.training_subjects)
    print(f"left out: {df[trained].lesion.nunique()} lesions with >= 6 readings that the prior was fitted to")
    df = df[~trained]
    lesions = df.lesion.unique()
    if args.lesions:
        lesions = rng.choice(lesions, size=min(args.lesions, lesions.size), replace=False)
        df = df[df.lesion.isin(lesions)]
    lesions = list(dict.fromkeys(df.lesion))
    given = Regimen.parse(ARM_REGIMENS[args.arm])
    covariates = ARM_PARAMS[args.arm]  # the fixed parameters the arm's prior was fitted with
    model = fc._nlme_model(prior, given, covariates, 2000.0)
    print(f"prior: {prior.description}")
    print(f"scored: {len(lesions)} {args.arm}-arm lesions with >= 6 readings, none seen by the prior, on {given.describe()}")
    groups = [g for _, g in df.groupby("lesion", sort=False)]
    n_max = max(len(g) for g in groups)
    times_all = np.stack([np.pad(g.T_days.to_numpy(float) - g.T_days.iloc[0], (0, n_max - len(g)), mode="edge") for g in groups])
    diam_all = np.stack([np.pad(g.Lesion_diam.to_numpy(float), (0, n_max - len(g)), mode="edge") for g in groups])
    valid = np.stack([np.arange(n_max) < len(g) for g in groups])
    rows = []
    curve_fit = None if args.speed_only else _curve_population(records, prior)
    if curve_fit is not None:
        print(f"general Bertalanffy {curve_fit[1]}", flush=True)
    for k in () if args.speed_only else (2, 3):
        t0 = time.perf_counter()
        cond = pd.DataFrame({"ID": np.repeat(lesions, k), "TIME": times_all[:, :k].ravel(), "AMT": 0.0,
                             "DV": diam_all[:, :k].ravel(), "BASEVOL": np.repeat(math.pi / 6 * diam_all[:, 0] ** 3, k)})
        post = nlme.map_estimates(model, cond, prior.estimates)
        map_s = time.perf_counter() - t0
        later = valid & (np.arange(n_max) >= k)
        obs = diam_all
        typical = [prior.typical(float(d0)) for d0 in diam_all[:, 0]]

        def individuals(eta):  # (S, M, k) etas -> (S, M, P) individual parameters, each lesion at its own typical values
            return np.stack([fc._individual(prior, typical[s], eta[s]) for s in range(len(lesions))])
        # MAP + Laplace
        mode = post.ebe.values
        covs = post.ebe_covariance.values
        ind_mode = individuals(mode[:, None])[:, 0]
        point = nlme.predict_individuals(model, ind_mode, times_all)
        eta_draws = np.stack([rng.multivariate_normal(mode[s], covs[s], size=args.draws) for s in range(len(lesions))])
        ind_draws = individuals(eta_draws)
        pred = _predictive(model, prior, ind_draws, times_all, rng)
        mae, per = _mae(point, obs, later)
        cov = _coverage(pred, obs, later)
        nv = _mae(0.52 * np.maximum(point, 0) ** 3 / vol_scale, 0.52 * obs**3 / vol_scale, later)[0]
        rows.append((k, "mechanistic MAP + Laplace", mae, nv, cov[0.8], cov[0.9],
                     f"{int((~post.map_found.values).sum())} modes not found; {time.perf_counter() - t0:.0f} s"
                     f" (MAP {map_s:.0f} s); {_miss_note(pred, obs, later)}"))
        # population only
        t1 = time.perf_counter()
        ind_typ = individuals(np.zeros((len(lesions), 1, len(prior.etas))))[:, 0]
        point0 = nlme.predict_individuals(model, ind_typ, times_all)
        eta0 = rng.multivariate_normal(np.zeros(len(prior.etas)), prior.omega, size=(len(lesions), args.draws))
        ind0 = individuals(eta0)
        pred0 = _predictive(model, prior, ind0, times_all, rng)
        mae0, _ = _mae(point0, obs, later)
        cov0 = _coverage(pred0, obs, later)
        nv0 = _mae(0.52 * np.maximum(point0, 0) ** 3 / vol_scale, 0.52 * obs**3 / vol_scale, later)[0]
        rows.append((k, "mechanistic population only", mae0, nv0, cov0[0.8], cov0[0.9],
                     f"{time.perf_counter() - t1:.0f} s; {_miss_note(pred0, obs, later)}"))
        # the general Bertalanffy curve as the mechanistic model is used: MAP + Laplace with its own
        # population (fitted to the prior's lesions) as the prior, from the same k scans
        t2 = time.perf_counter()
        pc, predc, nf = _curve_map(curve_fit[0], cond, times_all, args.draws, rng)
        mae_c, _ = _mae(pc, obs, later)
        cov_c = _coverage(predc, obs, later)
        nv_c = _mae(0.52 * np.maximum(pc, 0) ** 3 / vol_scale, 0.52 * obs**3 / vol_scale, later)[0]
        rows.append((k, "general Bertalanffy, population MAP", mae_c, nv_c, cov_c[0.8], cov_c[0.9],
                     f"{nf} modes not found; {time.perf_counter() - t2:.0f} s; {_miss_note(predc, obs, later)}"))
        for curve in ("general_bertalanffy", "exponential"):
            preds, note = _curve(df, lesions, k, curve)
            if preds is None:
                rows.append((k, curve, np.nan, np.nan, np.nan, np.nan, note))
                continue
            pc = np.full_like(obs, np.nan)
            for s, lesion in enumerate(lesions):
                p = preds.get(lesion)
                if p is not None:
                    pc[s, k:k + len(p)] = p
            mae_c, _ = _mae(pc, obs, later)
            nv_c = _mae(0.52 * np.maximum(pc, 0) ** 3 / vol_scale, 0.52 * obs**3 / vol_scale, later)[0]
            rows.append((k, curve, mae_c, nv_c, np.nan, np.nan, note + "; no predictive interval"))
        print(f"k = {k}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    n_later = {k: int((valid & (np.arange(n_max) >= k)).sum()) for k in (2, 3)}
    if not args.speed_only:
        print(f"\nheld-out scans: {n_later[2]} (from 2 scans), {n_later[3]} (from 3 scans); {args.draws} predictive draws per lesion")
    if rows:
        print(f"{'scans':>5} {'forecaster':<36} {'MAE mm':>8} {'MAE norm. vol':>14} {'80 % PI cover':>14} {'90 % PI cover':>14}  note")
    for k, name, mae, nv, c80, c90, note in rows:
        def f(x, fmt):
            return "-" if not np.isfinite(x) else format(x, fmt)
        print(f"{k:>5} {name:<36} {f(mae, '.2f'):>8} {f(nv, '.5f'):>14} {f(c80, '.1f'):>14} {f(c90, '.1f'):>14}  {note}")
    for k, name, mae, nv, c80, c90, note in rows:
        if name.startswith("mechanistic MAP"):
            ok = abs(c80 - 80) <= 5 and abs(c90 - 90) <= 5
            print(f"coverage target (within 5 points of nominal), from {k} scans: {'met' if ok else 'NOT met'}"
                  f" (80 %: {c80:.1f}, 90 %: {c90:.1f})")
    # ---------------------------------------------------------------- speed (item 6)
    g = groups[0]
    scans = fc.scans_from_arrays(g.T_days.to_numpy(float)[:3] - g.T_days.iloc[0], g.Lesion_diam.to_numpy(float)[:3])
    fc.posterior(scans, given, prior=prior, covariates=covariates)  # compile
    t = []
    for _ in range(5):
        t0 = time.perf_counter()
        fc.posterior(scans, given, prior=prior, covariates=covariates)
        t.append(time.perf_counter() - t0)
    print(f"\nspeed: MAP + Laplace of one patient (3 scans), warm: median {np.median(t):.3f} s over 5 (target <= 1 s:"
          f" {'met' if np.median(t) <= 1 else 'NOT met'})")
    if not args.skip_nuts:
        t0 = time.perf_counter()
        fc.posterior(scans, given, prior=prior, covariates=covariates, method="nuts", draws=1000, chains=4, warmup=500, seed=1)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        p = fc.posterior(scans, given, prior=prior, covariates=covariates, method="nuts", draws=1000, chains=4, warmup=500, seed=2)
        warm = time.perf_counter() - t0
        d = p["diagnostics"]
        print(f"speed: NUTS 4 chains x 1,000 draws (500 warm-up), one patient: {warm:.1f} s warm ({cold:.1f} s with compilation;"
              f" target <= 60 s: {'met' if warm <= 60 else 'NOT met'}); status {p['status']}; R-hat"
              f" {np.round(d['r_hat'], 3).tolist()}, bulk ESS {np.round(d['ess_bulk']).tolist()}, divergences {d['divergences']}; mean leapfrog steps {d['mean_leapfrog_steps']:.1f}; {d['threads']} thread(s)")
    print("\nreproduce: .venv/bin/python bench/forecast.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
