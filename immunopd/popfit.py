"""Population (FOCE-I) fit of the declared mechanistic model to lesions' diameter courses.

:func:`mechanistic_predictor` turns a declared model (default: the core model) and one fixed
regimen into an :mod:`immunopd.nlme` predictor of a lesion's longest diameter (mm) at its scan
times, so that :func:`immunopd.nlme.fit` estimates typical values, log-normal between-lesion
variances and the residual error of a few parameters (every other one at its default).

Conventions (documented simplifications):

- time is days since the lesion's baseline scan, and the arm's regimen starts at that scan
  (day 0) for every lesion; nlme's dose arrays are ignored (the regimen is fixed per fit);
- each lesion is one "subject" (lesions of one patient are treated as independent);
- the immune states start at the untreated steady state of the baseline volume, as in
  :mod:`immunopd.fitting.mechanistic`;
- the typical baseline volume is tied to the lesion's baseline scan:
  ``baseline_tumor_volume = V0_RATIO * BASEVOL`` with the covariate ``BASEVOL = pi/6 D0^3``
  (mm3, D0 the baseline diameter), so ``V0_RATIO`` near 1 and its eta absorbs measurement
  error at the baseline scan; a free carrying capacity likewise is ``K_RATIO * BASEVOL``;
  growth and kill rates have population typical values;
- the residual error is combined (proportional + additive, mm): lesions that disappear are
  measured as 0 mm.

Derivatives: the ODE solve is wrapped in a ``jax.custom_jvp`` whose tangent is the forward-mode
Jacobian through diffrax (``ForwardMode``), which is linear in the tangent and therefore also
transposes for the reverse mode nlme uses (gradient and Hessian of the conditional objective
in eta, exact outer gradients through the conditional etas).

:func:`popfit` runs the fit and adds a VPC (:func:`vpc`) and goodness-of-fit data
(:func:`gof`); :func:`plot_popfit` draws both.
"""

from __future__ import annotations

import json
import math
import time as _time
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import InputError, describe

__all__ = ["mechanistic_predictor", "mechanistic_nlme_model", "lesion_data", "popfit", "vpc", "gof", "plot_popfit",
           "DEFAULT_RANDOM", "ARM_FREE", "ARM_CODES", "PopFit"]

#: the individual parameters :func:`mechanistic_predictor` and :func:`mechanistic_nlme_model` fit by
#: default, each with a between-lesion random effect (what single-lesion fits identify on the
#: immunotherapy arms; :func:`popfit`'s defaults are per arm, :data:`ARM_FREE`)
DEFAULT_RANDOM = ("baseline_tumor_volume", "growth_rate", "kill_rate")
#: parameters whose typical value is a THETA times the lesion's baseline volume ``BASEVOL`` (mm3):
#: name -> (THETA name, description). The carrying capacity too: lesions span three decades of
#: volume, and a plateau is a multiple of the lesion's own size far more than a common volume.
RELATIVE_TO_BASEVOL = {"baseline_tumor_volume": ("V0_RATIO", "typical baseline volume / (pi/6 D0^3)"),
                       "carrying_capacity": ("K_RATIO", "typical carrying capacity / (pi/6 D0^3)")}
_THETA_OF = {name: theta for name, (theta, _) in RELATIVE_TO_BASEVOL.items()}
_VPC_PERCENTILES = (5.0, 50.0, 95.0)
#: the ``ARM`` covariate's codes (:func:`lesion_covariates`)
ARM_CODES = {"immunotherapy": 0.0, "chemotherapy": 1.0}
#: the individual parameters :func:`popfit` fits by default, per arm: the immune kill rate where the
#: drug is a checkpoint inhibitor, docetaxel's kill where it is chemotherapy, both for both arms
ARM_FREE = {"immunotherapy": DEFAULT_RANDOM,
            "chemotherapy": ("baseline_tumor_volume", "growth_rate", "chemo_kill_ratio"),
            "all": ("baseline_tumor_volume", "growth_rate", "kill_rate", "chemo_kill_ratio")}


def _theta_name(parameter: str) -> str:
    return _THETA_OF.get(parameter, "POP_" + parameter.upper())


def mechanistic_predictor(regimen="immunotherapy", free: Sequence[str] = DEFAULT_RANDOM, *, model=None, params=None,
                          horizon: float = 2000.0, solver: str = "tsit5", rtol: float = 1e-6, atol: float = 1e-8,
                          max_steps: int = 4_096, arm_covariate: str = "ARM"):
    """An nlme predictor ``predict(params, dose_times, dose_amounts, obs_times) -> diameter (mm)``.

    ``regimen``: an arm name of :data:`immunopd.models.drugs.ARM_REGIMENS`, regimen text or a
    :class:`Regimen`, started at day 0 (the baseline scan) for every lesion; or a mapping
    ``{arm code: regimen}`` (e.g. ``{0: "immunotherapy", 1: "chemotherapy"}``): each lesion then
    gets the regimen of its own code, which the predictor reads from ``params[arm_covariate]``
    (a data item: ``predict.covariates`` names it for nlme's ``predictor_covariates``). ``free``:
    the individual parameters read from ``params`` (every other one at its default or the value
    in the ``params`` argument of this function); ``horizon``: the last day doses are scheduled
    for (observation times beyond it see no further doses). ``dose_times``/``dose_amounts``
    are ignored. ``obs_times`` may be padded with anything below the last real time (nlme pads
    with 0): the solve uses their running maximum.
    """
    import diffrax
    import jax
    import jax.numpy as jnp

    from .integrate import one_patient_solver
    from .models.drugs import ARM_REGIMENS
    from .solve import prepare, resolve_model

    def named(r):
        return ARM_REGIMENS[r] if isinstance(r, str) and r in ARM_REGIMENS else r

    by_arm = isinstance(regimen, Mapping)
    if by_arm:
        if not regimen:
            raise InputError(describe("regimen", dict(regimen), "a regimen, or a mapping {arm code: regimen} with one or more arms"))
        arms = {}
        for code, r in regimen.items():
            c = float(code) if isinstance(code, (int, float, np.integer, np.floating)) and not isinstance(code, bool) else math.nan
            if not math.isfinite(c):
                raise InputError(describe("regimen arm code", code, "a finite number (the arm's code in the data)"))
            arms[c] = named(r)
        if not isinstance(arm_covariate, str) or not arm_covariate:
            raise InputError(describe("arm_covariate", arm_covariate, "a data column name"))
    else:
        arms = {None: named(regimen)}
    model = resolve_model(model, "gompertz")
    free = tuple(free)
    if not free or len(set(free)) != len(free):
        raise InputError(describe("free", list(free), "a non-empty list of distinct parameter names"))
    for name in free:
        model.parameters[name]  # an unknown name raises, naming the table
    prepared = {c: prepare(r, params, model=model) for c, r in arms.items()}
    model, _, values, n, given = next(iter(prepared.values()))
    if n != 1:
        raise InputError(describe("params", "arrays over patients", "scalar values: the fixed parameters are shared"))
    # every arm's schedule over the drugs of all arms (rows of an undosed drug stay empty), to one
    # dose count and one number of dose edges, so that the arms stack and a lesion's is one gather
    names = tuple(dict.fromkeys(d for _, reg, *_ in prepared.values() for d in reg.drugs))
    drugs = tuple(model.drug(d) for d in names)
    weights = values["body_weight"] if "body_weight" in given else None
    bsas = values["body_surface_area"] if "body_surface_area" in given else None

    def schedule(reg, min_doses=0):
        return reg.schedule(float(horizon), weights, 1, drugs=names, bsas=bsas, min_doses=min_doses)

    scheds = [schedule(reg) for _, reg, *_ in prepared.values()]
    doses = max(sc.starts.shape[1] for sc in scheds)
    scheds = [schedule(reg, doses) for _, reg, *_ in prepared.values()]
    edges = max(np.size(sc.jump_times) for sc in scheds)

    def jumps_of(sc):
        jt = np.where(np.isfinite(sc.jump_times), sc.jump_times, horizon + 1.0)
        return np.concatenate([jt, np.full(edges - jt.size, horizon + 1.0)])

    stacked = tuple(jnp.asarray(np.stack(x)) for x in ([sc.starts for sc in scheds], [sc.ends for sc in scheds],
                                                        [sc.rates[0] for sc in scheds], [sc.boluses[0] for sc in scheds],
                                                        [jumps_of(sc) for sc in scheds]))
    codes = jnp.asarray([c for c in arms] if by_arm else [0.0])
    base = {k: jnp.asarray(float(v)) for k, v in values.items()}
    one = one_patient_solver(model, drugs, solver, rtol, atol, max_steps, ("sld",), adjoint=diffrax.ForwardMode())

    def solve(theta, ts, dose_args):
        q = dict(base) | {name: theta[i] for i, name in enumerate(free)}
        picked, status, _ = one(q, *dose_args, ts)
        return jnp.where(status == 0, picked["sld"], jnp.nan)

    @jax.custom_jvp
    def core(theta, ts, dose_args):
        return solve(theta, ts, dose_args)

    @core.defjvp
    def core_jvp(primals, tangents):
        theta, ts, dose_args = primals
        dtheta = tangents[0]
        f = solve(theta, ts, dose_args)
        jac = jax.jacfwd(solve)(theta, ts, dose_args)
        return f, jac @ dtheta

    def arm_of(p):
        """(the lesion's dose arrays, whether its code is an arm's). nlme refuses codes outside the
        model's categories when it reads the data; a code that reaches the prediction anyway
        matches no arm, and its prediction is NaN."""
        if not by_arm:
            return tuple(a[0] for a in stacked), True
        match = codes == jax.lax.stop_gradient(jnp.asarray(p[arm_covariate], float))
        k = jnp.argmax(match)
        return tuple(a[k] for a in stacked), jnp.any(match)

    def predictor(through):
        def predict(p, dose_times, dose_amounts, obs_times):
            ts = jax.lax.cummax(jnp.asarray(obs_times, float), axis=0)
            dose_args, known = arm_of(p)
            f = through(jnp.stack([jnp.asarray(p[name], float) for name in free]), ts, dose_args)
            return f if not by_arm else jnp.where(known, f, jnp.nan)

        return predict

    predict, predict_forward = predictor(core), predictor(solve)

    # nlme's estimation differentiates the prediction in forward mode only; nested forward mode
    # through the solve itself is several times cheaper than through the custom JVP rule
    predict.forward = predict_forward
    predict.free = free
    predict.model = model
    predict.covariates = (arm_covariate,) if by_arm else ()
    predict.arm_codes = tuple(arms) if by_arm else ()
    predict.regimen = (f"by {arm_covariate}: " + "; ".join(f"{c:g} = {reg.describe()}" for c, (_, reg, *_) in prepared.items())
                       if by_arm else next(iter(prepared.values()))[1].describe())
    return predict


def mechanistic_nlme_model(regimen="immunotherapy", free: Sequence[str] = DEFAULT_RANDOM, *, model=None,
                           random: Sequence[str] | None = None, initial: dict | None = None, omega: float = 0.3,
                           sigma=(0.01, 1.0), **predictor_kws):
    """The :class:`immunopd.nlme.NLMEModel` of ``free`` with log-normal etas on ``random`` (default:
    every free parameter), typical values ``POP_<NAME>`` (the parameter defaults unless
    ``initial`` says otherwise) and, for the baseline volume and the carrying capacity,
    ``V0_RATIO * BASEVOL`` and ``K_RATIO * BASEVOL`` (covariate, mm3; initial 1 and the ratio of
    the two parameters' defaults); combined residual error in mm (``sigma``: proportional then
    additive variance). ``regimen`` as :func:`mechanistic_predictor` takes it: a mapping
    ``{arm code: regimen}`` makes the arm covariate (``ARM`` by default) a data item of the
    model, its levels the mapping's codes."""
    from .nlme import NLMEModel, Theta

    predict = mechanistic_predictor(regimen, free, model=model, **predictor_kws)
    m = predict.model
    random = tuple(free) if random is None else tuple(random)
    for k, name in enumerate(random):
        if name not in free:
            raise InputError(describe(f"random[{k}]", name, f"one of the free parameters {list(free)}"))
    thetas, units = [], {"DV": "mm", "TIME": "day", "AMT": "mg", "BASEVOL": "mm3"}
    for name in free:
        spec = m.parameters[name]
        units[name] = spec.unit
        t = _theta_name(name)
        relative = name in RELATIVE_TO_BASEVOL
        default = float(spec.default) / float(m.parameters["baseline_tumor_volume"].default) if relative else float(spec.default)
        init = (initial or {}).get(t, default)
        unit = "1" if relative else spec.unit
        desc = RELATIVE_TO_BASEVOL[name][1] if relative else f"typical {name}"
        thetas.append(Theta(t, init, 0.0, unit=unit, description=desc))
    uses_base = any(name in RELATIVE_TO_BASEVOL for name in free)
    covariates = (("BASEVOL",) if uses_base else ()) + tuple(predict.covariates)
    for c in predict.covariates:
        units[c] = "1"

    def typical(theta, cov):
        out = {}
        for name in free:
            t = theta[_theta_name(name)]
            out[name] = t * cov["BASEVOL"] if name in RELATIVE_TO_BASEVOL else t
        return out

    return NLMEModel(name=f"{m.name} ({m.variant}), {predict.regimen} from the baseline scan", thetas=tuple(thetas),
                     parameters=free, typical=typical, predict=predict, etas=random, omega=tuple([omega] * len(random)),
                     sigma=tuple(sigma), error="combined", covariates=covariates, units=units,
                     categories={c: predict.arm_codes for c in predict.covariates},
                     predictor_covariates=tuple(predict.covariates))


def lesion_data(courses, min_scans: int = 4, lesions: int | None = None, columns=None):
    """NONMEM-layout data (ID, TIME, AMT, DV, BASEVOL) of ``courses`` ``[(lesion, days, mm), ...]``
    (as :func:`immunopd.calibration.observed_courses` gives): the first ``lesions`` with at
    least ``min_scans`` scans, in their order. ``columns``: further per-lesion columns,
    ``{column: {lesion: value}}`` (e.g. :func:`lesion_covariates`)."""
    import pandas as pd

    rows = []
    kept = 0
    for lesion, t, d in courses:
        if len(t) < min_scans:
            continue
        if lesions is not None and kept >= lesions:
            break
        kept += 1
        basevol = math.pi / 6 * float(d[0]) ** 3
        extra = {}
        for col, values in (columns or {}).items():
            if str(lesion) not in values:
                raise InputError(describe(f"columns[{col!r}]", f"no value for lesion {lesion}", "a value for every lesion"))
            extra[col] = values[str(lesion)]
        for ti, di in zip(t, d):
            rows.append({"ID": str(lesion), "TIME": float(ti), "AMT": 0.0, "DV": float(di), "BASEVOL": basevol, **extra})
    if not kept:
        raise InputError(describe("lesions", 0, f"at least one lesion with >= {min_scans} scans"))
    return pd.DataFrame(rows)


def lesion_covariates(dataset: str = "laleh2022", arm: str = "immunotherapy") -> dict[str, dict[str, float]]:
    """Per-lesion covariates of a shipped dataset for :func:`lesion_data`: ``STUDY`` (the study's
    number in the data, 1-5 for Laleh 2022) and ``ARM`` (0 immunotherapy, 1 chemotherapy)."""
    from .datasets import load

    df = load(dataset, clean=True)
    if arm != "all":
        df = df[df.arm == arm]
    first = df.groupby("lesion", sort=False).first()
    return {"STUDY": {str(k): float(v) for k, v in first["study"].items()},
            "ARM": {str(k): ARM_CODES[v] for k, v in first["arm"].items()}}


# ----------------------------------------------------------------------------- diagnostics
def _subjects(model, data):
    """Per subject: padded observation times (S, O), mask, DV, covariates (nlme's layout)."""
    from .nlme import _prepare

    return _prepare(model, data)


def _population_predictions(model, d, estimates: dict, eta):
    """Predictions (R, S, O) at etas ``eta`` (R, S, k) and the ``estimates``' THETAs."""
    import jax
    import jax.numpy as jnp

    theta = {t.name: jnp.asarray(float(estimates[t.name])) for t in model.thetas}
    cov = {c: jnp.asarray(v) for c, v in d.cov.items()}

    def one(eta_s, cov_s, ts):
        tv = model.typical(theta, cov_s)
        p = {n: tv[n] * jnp.exp(eta_s[model.etas.index(n)]) if n in model.etas else tv[n] for n in model.parameters}
        return model.predict(p | {c: cov_s[c] for c in model.predictor_covariates}, jnp.zeros(1), jnp.zeros(1), ts)

    per_sub = jax.jit(jax.vmap(one))
    return np.stack([np.asarray(per_sub(jnp.asarray(e), cov, jnp.asarray(d.obs_t))) for e in eta])


def _simulate(model, d, estimates: dict, replicates: int, seed: int):
    """Simulated DV (replicates, S, O) from the population: eta ~ N(0, Omega), combined error."""
    rng = np.random.default_rng(seed)
    k = len(model.etas)
    om = np.zeros((k, k))
    for i, a in enumerate(model.etas):
        for j, b in enumerate(model.etas):
            key = f"OMEGA({a},{b})" if f"OMEGA({a},{b})" in estimates else f"OMEGA({b},{a})"
            om[i, j] = estimates.get(key, 0.0)
    sig = [float(estimates[f"SIGMA({s})"]) for s in model.sigma_names]
    n_sub, n_obs = d.obs_t.shape
    eta = rng.multivariate_normal(np.zeros(k), om, size=(replicates, n_sub))
    f = _population_predictions(model, d, estimates, eta)
    var = {"additive": lambda f: sig[0] + 0 * f, "proportional": lambda f: sig[0] * f**2,
           "combined": lambda f: sig[0] * f**2 + sig[1]}[model.error](f)
    return f + np.sqrt(var) * rng.standard_normal(f.shape)


def _ratio(y, t, mask):
    """y / y at the baseline scan per subject, NaN where masked or at the baseline scan."""
    base = y[..., :1]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = y / base
    return np.where(mask & (t > 0), out, np.nan)


def _quiet_nanpercentile(a, q, axis):
    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(a, q, axis=axis)


def _vpc_bins(obs_ratio, sim_ratio, obs_t, pred_ratio, bins: int):
    """Percentiles of the % change over ``bins`` equal-count time bins of one stratum's subjects;
    ``pred_ratio`` (S, O) prediction-corrects (Bergstrand et al. 2011) when given."""
    pcts = np.asarray(_VPC_PERCENTILES)
    finite = np.isfinite(obs_ratio)
    t_obs = obs_t[finite]
    edges = np.unique(np.quantile(t_obs, np.linspace(0, 1, int(bins) + 1)))
    if len(edges) == 1:  # every scan on one day: one bin
        edges = np.repeat(edges, 2)
    edges[-1] += 1e-9
    nb = len(edges) - 1
    which = np.clip(np.searchsorted(edges, obs_t, side="right") - 1, 0, nb - 1)
    if pred_ratio is not None:
        # pcY = Y PRED_bin / PRED on the ratio to baseline (bounded below by 0), PRED_bin the
        # median PRED ratio of the bin's observations
        factor = np.full(obs_t.shape, np.nan)
        for b in range(nb):
            inb = (which == b) & finite
            if inb.any():
                factor[inb] = np.median(pred_ratio[inb]) / pred_ratio[inb]
        obs_ratio, sim_ratio = obs_ratio * factor, sim_ratio * factor[None]
    obs, sim = 100.0 * (obs_ratio - 1.0), 100.0 * (sim_ratio - 1.0)
    observed = np.full((nb, len(pcts)), np.nan)
    simulated = np.full((sim.shape[0], nb, len(pcts)), np.nan)
    count, mid = np.zeros(nb, int), np.full(nb, np.nan)
    for b in range(nb):
        inb = which == b
        o = obs[inb]
        o = o[np.isfinite(o)]
        count[b] = o.size
        if o.size:
            mid[b] = np.median(obs_t[inb & np.isfinite(obs)])
            observed[b] = np.percentile(o, pcts)
        simulated[:, b] = _quiet_nanpercentile(sim[:, inb], pcts, axis=1).T
    lo, med, hi = (_quiet_nanpercentile(simulated, q, axis=0) for q in (5, 50, 95))
    return {"observed": observed, "simulated_median": med, "simulated_lower": lo, "simulated_upper": hi,
            "n_observed": count, "time": mid, "bin_start": edges[:-1], "bin_end": edges[1:]}


def vpc(model, data, estimates: dict, *, replicates: int = 100, bins: int = 6, seed: int = 0,
        stratify: str | None = None, prediction_corrected: bool = False):
    """Visual predictive check of the % change in diameter from each lesion's baseline scan.

    ``replicates`` copies of the data set are simulated from the population at ``estimates``
    (nlme parameter names; eta ~ N(0, OMEGA), residual error as fitted) on each lesion's own
    scan times; the observed and simulated 5th/50th/95th percentiles of the % change are taken
    over ``bins`` time bins of equal observation counts (baseline scans excluded: 0 % by
    definition). Returns an xarray Dataset over (bin, percentile) with the simulated
    percentiles' median and 90 % interval across replicates.

    ``stratify``: a data column with one value per lesion (e.g. ``STUDY``): one VPC per value,
    each with its own bins, over a leading ``stratum`` dimension (bins a stratum lacks are NaN).
    ``prediction_corrected``: the pcVPC of Bergstrand et al. 2011 (AAPS J 13:143,
    doi:10.1208/s12248-011-9255-z) on the diameter's ratio to its baseline, observed and
    simulated alike multiplied by the bin's median population prediction (eta = 0) over the
    observation's own, so that lesions scanned at different times within a bin are comparable.
    """
    import xarray as xr

    if isinstance(replicates, bool) or int(replicates) != replicates or int(replicates) < 2:
        raise InputError(describe("replicates", replicates, "an integer >= 2"))
    if isinstance(bins, bool) or int(bins) != bins or int(bins) < 1:
        raise InputError(describe("bins", bins, "an integer >= 1"))
    if stratify is not None:
        if stratify not in getattr(data, "columns", ()):
            raise InputError(describe("stratify", stratify, f"a column of the data: {list(getattr(data, 'columns', []))}"))
        if data[stratify].isna().any():
            raise InputError(describe("stratify", stratify, "a column with a value on every row (it has missing values)"))
        per_subject = data.groupby("ID", sort=False)[stratify].nunique()
        if (per_subject > 1).any():
            raise InputError(describe("stratify", stratify, "a column with one value per lesion (ID)"))
    d = _subjects(model, data)
    obs = _ratio(d.y, d.obs_t, d.mask)
    sim = _ratio(_simulate(model, d, estimates, int(replicates), seed), d.obs_t[None], d.mask[None])
    pred = None
    if prediction_corrected:
        pred = _ratio(_population_predictions(model, d, estimates, np.zeros((1, len(d.ids), len(model.etas))))[0],
                      d.obs_t, d.mask)
        used = np.isfinite(obs)
        if not np.all(np.isfinite(pred[used]) & (pred[used] > 0)):
            raise InputError(describe("prediction_corrected", True, "population predictions (PRED) that are finite and"
                                      " positive at every scan and baseline; some are not at these estimates"))
    if stratify is None:
        groups = [(None, np.ones(len(d.ids), bool))]
    else:
        value = data.groupby("ID", sort=False)[stratify].first()
        per_id = np.asarray([value.loc[i] for i in d.ids])
        groups = [(v, per_id == v) for v in sorted(set(per_id.tolist()))]
    empty = [v for v, sel in groups if not np.isfinite(obs[sel]).any()]
    if empty:
        raise InputError(describe("stratify", stratify or "(none)", f"strata with at least one scan after the baseline;"
                                  f" {empty} have none"))
    tables = [_vpc_bins(obs[sel], sim[:, sel], d.obs_t[sel], None if pred is None else pred[sel], bins) for _, sel in groups]
    nb = max(len(t["n_observed"]) for t in tables)

    def stack(key, fill):
        out = []
        for t in tables:
            a = np.asarray(t[key], float)
            pad = [(0, 0)] * a.ndim
            pad[0] = (0, nb - a.shape[0])
            out.append(np.pad(a, pad, constant_values=fill))
        return np.stack(out)

    pcts = np.asarray(_VPC_PERCENTILES)
    pc = {"units": "%", "long_name": "change in diameter from the lesion's baseline scan"}
    note = " (prediction-corrected)" if prediction_corrected else ""
    dims2, dims1 = ("stratum", "bin", "percentile"), ("stratum", "bin")
    ds = xr.Dataset(
        {"observed": (dims2, stack("observed", np.nan), pc | {"long_name": "observed percentile of the % change" + note}),
         "simulated_median": (dims2, stack("simulated_median", np.nan), pc | {"long_name": "median over replicates of the simulated percentile" + note}),
         "simulated_lower": (dims2, stack("simulated_lower", np.nan), pc | {"long_name": "5th percentile over replicates of the simulated percentile" + note}),
         "simulated_upper": (dims2, stack("simulated_upper", np.nan), pc | {"long_name": "95th percentile over replicates of the simulated percentile" + note}),
         "n_observed": (dims1, stack("n_observed", 0).astype(int), {"units": "1", "long_name": "observations in the bin (baselines excluded)"}),
         "time": (dims1, stack("time", np.nan), {"units": "day", "long_name": "median observation time in the bin (days since baseline)"}),
         "bin_start": (dims1, stack("bin_start", np.nan), {"units": "day"}), "bin_end": (dims1, stack("bin_end", np.nan), {"units": "day"})},
        coords={"bin": np.arange(nb), "percentile": ("percentile", pcts, {"units": "%"}),
                "stratum": ("stratum", [v if v is not None else "all" for v, _ in groups],
                            {"long_name": f"value of {stratify}" if stratify else "all lesions (not stratified)"})},
        attrs={"replicates": int(replicates), "seed": int(seed), "prediction_corrected": int(bool(prediction_corrected)),
               "stratified_by": stratify or "",
               "description": "VPC of the % change in diameter; simulated from the population estimates with each lesion's"
                              " own scan times (eta ~ N(0, OMEGA), residual error as fitted)"
                              + ("; prediction-corrected (Bergstrand et al. 2011)" if prediction_corrected else "")})
    return ds if stratify is not None else ds.isel(stratum=0, drop=True)


def gof(fit_dataset):
    """Goodness-of-fit data from an nlme result Dataset: DV, PRED, IPRED, CWRES, IWRES and TIME
    per observation (DV vs PRED/IPRED, CWRES vs TIME/PRED)."""
    keep = ["ID", "TIME", "DV", "PRED", "IPRED", "CWRES", "IWRES"]
    out = fit_dataset[keep].copy()
    out.attrs = {"description": "goodness of fit: DV vs PRED and IPRED, CWRES vs TIME and vs PRED"}
    return out


class PopFit:
    """What :func:`popfit` returns: the nlme fit (:attr:`fit`, its :attr:`dataset`), :attr:`vpc`,
    :attr:`gof` and the wall time :attr:`elapsed_s`."""

    def __init__(self, fit, vpc_ds, gof_ds, elapsed_s: float):
        self.fit, self.vpc, self.gof, self.elapsed_s = fit, vpc_ds, gof_ds, elapsed_s

    @property
    def dataset(self):
        return self.fit.dataset

    def to_dataset(self):
        """The nlme result with the VPC variables added (prefixed ``vpc_``), for one netCDF file."""
        ds = self.fit.dataset.copy()
        for k, v in self.vpc.data_vars.items():
            ds[f"vpc_{k}"] = v.rename({dim: f"vpc_{dim}" for dim in v.dims if dim in ("bin", "percentile", "stratum")})
        ds = ds.drop_vars(["vpc_bin"], errors="ignore")
        ds = ds.assign_coords(vpc_percentile=("vpc_percentile", self.vpc.percentile.values, {"units": "%"}))
        if "stratum" in self.vpc.dims:
            ds = ds.assign_coords(vpc_stratum=("vpc_stratum", self.vpc.stratum.values, self.vpc.stratum.attrs))
        ds.attrs["vpc_replicates"] = self.vpc.attrs["replicates"]
        ds.attrs["vpc_prediction_corrected"] = self.vpc.attrs.get("prediction_corrected", 0)
        ds.attrs["vpc_stratified_by"] = self.vpc.attrs.get("stratified_by", "")
        ds.attrs["elapsed_total_s"] = float(self.elapsed_s)
        ds.attrs["kind"] = "popfit"
        return ds

    def report(self) -> str:
        return self.fit.report() + f"\ntotal wall time (fit, covariance step, VPC): {self.elapsed_s:.1f} s"


def popfit(data=None, *, dataset: str = "laleh2022", arm: str = "immunotherapy", lesions: int | None = 20,
           min_scans: int = 4, free: Sequence[str] | None = None, random: Sequence[str] | None = None, model=None,
           initial: dict | None = None,
           covariance: str | None = "sandwich", maxiter: int = 200, gtol: float = 1e-2, replicates: int = 100,
           seed: int = 0, progress: bool = False, covariates=None, stratify: str | None = None,
           prediction_corrected: bool = False, optimizer: str = "bfgs", max_step: float = 1.0) -> PopFit:
    """FOCE-I fit of the mechanistic model to lesions, with a VPC and goodness-of-fit data.

    ``arm``: ``"immunotherapy"``, ``"chemotherapy"`` or ``"all"`` (both arms in one fit, each
    lesion on its own arm's regimen through the ``ARM`` covariate, 0 immunotherapy and 1
    chemotherapy). ``data``: NONMEM-layout lesion data (ID, TIME days since baseline, AMT, DV
    mm, BASEVOL mm3, and ARM with ``arm="all"``; see :func:`lesion_data`), default the first
    ``lesions`` lesions of ``dataset``'s arm with at least ``min_scans`` scans (with ``"all"``:
    the first ``lesions`` of each arm). ``free``: the individual parameters fitted (default
    :data:`ARM_FREE` of the arm). ``model``: an :class:`immunopd.nlme.NLMEModel` (default
    :func:`mechanistic_nlme_model` of the arm's regimen and ``free``; docetaxel's mg/m2 dose is
    given for the model's default body surface area, as the data carry none). ``gtol``: the
    BFGS convergence tolerance on the unconstrained scale (1e-2: the ODE solve's own tolerance
    limits how far the gradient can be driven). ``initial``: initial values by parameter name
    (THETA names, ``OMEGA(a,b)``, ``SIGMA(...)``), as :func:`immunopd.nlme.fit` takes them.
    ``covariates``: categorical effects on typical values, ``{parameter: column}`` (e.g.
    ``{"kill_rate": "STUDY"}``), the column's smallest value the reference
    (:func:`immunopd.nlme.with_categorical_effect`); the default data carry ``STUDY`` and ``ARM``
    (:func:`lesion_covariates`). ``stratify`` and ``prediction_corrected`` go to :func:`vpc`;
    ``optimizer`` and ``max_step`` to :func:`immunopd.nlme.fit`.
    """
    from . import nlme
    from .models.drugs import ARM_REGIMENS

    if lesions is not None and (isinstance(lesions, bool) or not isinstance(lesions, (int, np.integer)) or lesions < 1):
        raise InputError(describe("lesions", lesions, "a positive integer (or None for every lesion)"))
    if arm not in (*ARM_REGIMENS, "all"):
        raise InputError(describe("arm", arm, f"one of {[*ARM_REGIMENS, 'all']}"))
    nlme.check_optimizer(optimizer, max_step)
    if data is None:
        from .calibration import observed_courses

        import pandas as pd

        arms = list(ARM_CODES) if arm == "all" else [arm]
        columns = lesion_covariates(dataset, arm)
        data = pd.concat([lesion_data(observed_courses(dataset, arm=a), min_scans=min_scans, lesions=lesions,
                                      columns=columns) for a in arms], ignore_index=True)
    if model is None:
        from .solve import resolve_model

        free = ARM_FREE[arm] if free is None else free
        regimen = {code: a for a, code in ARM_CODES.items()} if arm == "all" else arm
        # the data carry no body size: docetaxel's mg/m2 dose for the model's default body surface area
        params = None if arm == "immunotherapy" else {
            "body_surface_area": float(resolve_model(None).parameters["body_surface_area"].default)}
        model = mechanistic_nlme_model(regimen, free, random=random, initial=initial, params=params)
    for parameter, column in (covariates or {}).items():
        if column not in data.columns:
            raise InputError(describe(f"covariates[{parameter!r}]", column, f"a column of the data: {list(data.columns)}"))
        levels = sorted(float(v) for v in np.unique(data[column].to_numpy(float)))
        if len(levels) < 2:
            raise InputError(describe(f"covariates[{parameter!r}]", column, f"a column with two or more values in the"
                                      f" fitted lesions (it has {levels})"))
        model = nlme.with_categorical_effect(model, parameter, column, levels)
    if stratify is not None and stratify not in data.columns:
        raise InputError(describe("stratify", stratify, f"a column of the data: {list(data.columns)}"))
    t0 = _time.perf_counter()
    result = nlme.fit(model, data, initial=initial, covariance=covariance, maxiter=maxiter, gtol=gtol, progress=progress,
                      optimizer=optimizer, max_step=max_step)
    v = vpc(model, data, result.estimates(), replicates=replicates, seed=seed, stratify=stratify,
            prediction_corrected=prediction_corrected)
    g = gof(result.dataset)
    return PopFit(result, v, g, _time.perf_counter() - t0)


def _draw_vpc(ax, v, title):
    for j, (q, style) in enumerate(zip(v.percentile.values, ("--", "-", "--"))):
        ax.fill_between(v.time, v.simulated_lower[:, j], v.simulated_upper[:, j], color="C0" if j != 1 else "C1", alpha=0.25)
        ax.plot(v.time, v.observed[:, j], "k" + style, marker="o", ms=3, label=f"observed P{q:g}")
    ax.axhline(-30, color="grey", lw=0.5)
    ax.axhline(20, color="grey", lw=0.5)
    pc = "pc" if v.attrs.get("prediction_corrected") else ""
    ax.set(xlabel="days since baseline scan", ylabel=f"{'prediction-corrected ' if pc else ''}change in diameter (%)",
           title=f"{pc}VPC {title}({v.attrs['replicates']} replicates)")
    ax.legend(fontsize=7)


def plot_popfit(pf: PopFit, path) -> None:
    """A PNG at ``path``: the VPC and four goodness-of-fit panels (DV vs PRED, DV vs IPRED,
    CWRES vs TIME, CWRES vs PRED); a stratified VPC adds one panel per stratum below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import save_figure

    v, g = pf.vpc, pf.gof
    strata = list(v.stratum.values) if "stratum" in v.dims else []
    extra = -(-len(strata) // 3)
    fig, axes = plt.subplots(2 + extra, 3, figsize=(14, 8 + 4 * extra), squeeze=False)
    if strata:
        axes[0, 0].axis("off")
        axes[0, 0].text(0, 0.5, f"VPC stratified by {v.attrs['stratified_by']}: one panel per value below", fontsize=9)
        for k, value in enumerate(strata):
            _draw_vpc(axes[2 + k // 3, k % 3], v.isel(stratum=k), f"{v.attrs['stratified_by']} = {value} ")
        for k in range(len(strata), 3 * extra):
            axes[2 + k // 3, k % 3].axis("off")
    else:
        _draw_vpc(axes[0, 0], v, "")
    dv, pred, ipred, cw, t = (g[k].values for k in ("DV", "PRED", "IPRED", "CWRES", "TIME"))
    for ax, x, name in ((axes[0, 1], pred, "PRED"), (axes[0, 2], ipred, "IPRED")):
        ax.scatter(x, dv, s=6, alpha=0.6)
        hi = float(np.nanmax(np.concatenate([x, dv]))) if dv.size else 1.0
        ax.plot([0, hi], [0, hi], "k-", lw=0.8)
        ax.set(xlabel=f"{name} (mm)", ylabel="DV (mm)", title=f"DV vs {name}")
    for ax, x, name in ((axes[1, 0], t, "TIME (day)"), (axes[1, 1], pred, "PRED (mm)")):
        ax.scatter(x, cw, s=6, alpha=0.6)
        ax.axhline(0, color="k", lw=0.8)
        for y in (-2, 2):
            ax.axhline(y, color="grey", ls="--", lw=0.6)
        ax.set(xlabel=name, ylabel="CWRES", title=f"CWRES vs {name.split()[0]}")
    axes[1, 2].axis("off")
    a = pf.dataset.attrs
    axes[1, 2].text(0, 0.5, f"{a['n_subjects']} lesions, {a['n_observations']} scans\nOFV {float(pf.dataset.ofv):.2f}\n"
                    f"{pf.fit.status[:60]}", fontsize=9, va="center")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# ----------------------------------------------------------------------------- populations from the fit
def _estimates_of(result) -> tuple[dict, "xr.Dataset"]:  # noqa: F821
    ds = result.dataset if hasattr(result, "dataset") else result
    if "estimate" not in ds or "parameter" not in ds.coords:
        raise InputError(describe("result", type(result).__name__, "an nlme fit or its Dataset (immunopd popfit --out)"))
    return {str(k): float(v) for k, v in zip(ds.parameter.values, ds.estimate.values)}, ds


def population_from_fit(result, n: int, *, seed: int = 0, model=None):
    """A virtual population of ``n`` patients drawn from a mechanistic population fit.

    ``result``: :class:`PopFit`, :class:`immunopd.nlme.NLMEFit` or the Dataset ``immunopd popfit``
    writes. Each patient's fitted parameters are their typical values times ``exp(eta)``, eta ~
    N(0, OMEGA) as estimated; the baseline volume is ``V0_RATIO`` times the baseline volume of a
    fitted lesion drawn with replacement (the data's covariate distribution; a free carrying
    capacity is ``K_RATIO`` times the same lesion's); every other
    parameter keeps the value the fit held it at (the model default). Usable by every trial
    command (``Population.to_netcdf``), beside the acceptance-rejection calibration.
    """
    from .population import Population

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(describe("n", n, "a positive integer"))
    fit = result.fit if isinstance(result, PopFit) else result
    est, ds = _estimates_of(fit)
    free = [str(x) for x in ds.individual_parameter.values]
    etas = [str(x) for x in ds.eta.values]
    k = len(etas)
    om = np.zeros((k, k))
    for i, a in enumerate(etas):
        for j, b in enumerate(etas):
            om[i, j] = est.get(f"OMEGA({a},{b})", est.get(f"OMEGA({b},{a})", 0.0))
    rng = np.random.default_rng(seed)
    eta = rng.multivariate_normal(np.zeros(k), om, size=int(n))
    effects = json.loads(ds.attrs.get("categorical_effects", "[]"))
    read = json.loads(ds.attrs.get("predictor_covariates", "[]"))
    on_arm = [e["theta"] for e in effects if e["covariate"] in read]
    if on_arm:  # an arm is a treatment, not a trait a virtual patient carries into every trial's regimen
        raise InputError(describe("result", f"a fit with effects of the arm ({', '.join(on_arm)})",
                                  f"a fit without effects of {', '.join(read)} (a virtual patient takes no arm: the trial"
                                  " gives the regimen)"))
    # with covariate effects each patient takes one fitted lesion's covariates together (its
    # study and its baseline volume); without, only the baseline volume is drawn (as before), unless
    # a second parameter scales with it (the carrying capacity): then both come from one lesion
    relative = [name for name in free if name in RELATIVE_TO_BASEVOL]
    same_lesion = bool(effects) or len(relative) > 1
    lesion = rng.choice(ds.sizes["subject"], size=int(n), replace=True) if same_lesion else None
    params = {}
    for name in free:
        theta = est[_theta_name(name)]
        if name in RELATIVE_TO_BASEVOL:
            if "covariate_BASEVOL" not in ds:
                raise InputError(describe("result", "a fit without the BASEVOL covariate", "a mechanistic popfit result"))
            basevol = ds["covariate_BASEVOL"].values
            value = theta * (basevol[lesion] if same_lesion else rng.choice(basevol, size=int(n), replace=True))
        else:
            value = np.full(int(n), theta)
        for e in effects:
            if e["parameter"] == name:
                value = value * np.where(ds[f"covariate_{e['covariate']}"].values[lesion] == e["level"], est[e["theta"]], 1.0)
        if name in etas:
            value = value * np.exp(eta[:, etas.index(name)])
        params[name] = value
    from .solve import resolve_model

    table = resolve_model(model).parameters
    clipped = {}
    for name, value in params.items():  # a log-normal tail can leave the parameter table's range
        spec = table[name]
        out = (value < spec.lower) | (value > spec.upper)
        if out.any():
            clipped[name] = int(out.sum())
            params[name] = np.clip(value, spec.lower, spec.upper)
    return Population.from_params(params, model=model, seed=int(seed), source="immunopd popfit", clipped=clipped,
                                  description=f"drawn from a FOCE-I population fit ({ds.attrs.get('n_subjects')} lesions,"
                                              f" OFV {float(ds.ofv):.2f}): typical values x exp(eta), eta ~ N(0, OMEGA);"
                                              " baseline volumes V0_RATIO x BASEVOL resampled from the fitted lesions"
                                              + ("; each patient's covariates (" + ", ".join(sorted({e["covariate"] for e in effects}))
                                                 + ") and BASEVOL from the same fitted lesion" if effects else ""))


def time_course_check(model, data, estimates: dict, *, seed: int = 0) -> dict:
    """The time-course figures of issue 14 (:func:`immunopd.calibration.time_course_figures`) of
    the observed lesions in ``data`` and of one simulated copy of them from the population at
    ``estimates`` (each lesion's own scan times, eta ~ N(0, OMEGA), residual error as fitted):
    ``{"observed": {...}, "simulated": {...}}``."""
    from .calibration import time_course_figures

    d = _subjects(model, data)
    sim = np.maximum(_simulate(model, d, estimates, 1, seed)[0], 0.0)
    obs, simc = [], []
    for s in range(len(d.ids)):
        m = d.mask[s]
        obs.append((d.obs_t[s][m], d.y[s][m]))
        simc.append((d.obs_t[s][m], sim[s][m]))
    return {"observed": time_course_figures(obs), "simulated": time_course_figures(simc)}
