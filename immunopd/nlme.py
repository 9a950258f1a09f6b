"""Nonlinear mixed-effects estimation (FOCE with interaction) for any JAX prediction function.

A :class:`NLMEModel` declares

- fixed effects :class:`Theta` (name, initial value, bounds, unit),
- ``typical(theta, covariates) -> {parameter: typical value}``: the typical-value expressions
  (JAX; ``theta`` and ``covariates`` are dicts of scalars, categorical covariates enter as
  numeric codes, e.g. ``jnp.where(cov["APGR"] < 5, 1 + theta["APGR_V"], 1)``),
- which individual parameters carry a log-normal random effect (``P_i = typical * exp(eta)``),
  with a diagonal or full ``omega`` (variance scale, as NONMEM),
- ``predict(params, dose_times, dose_amounts, obs_times) -> predictions`` (JAX; one subject;
  dose arrays are padded with zero amounts, which must contribute nothing; ``params`` holds the
  individual parameters and, under their own names, the ``predictor_covariates``: data items
  the prediction reads itself, never differentiated),
- the residual error: ``"additive"`` (var = s_add), ``"proportional"`` (var = s_prop f^2) or
  ``"combined"`` (var = s_prop f^2 + s_add), SIGMA on the variance scale as NONMEM's
  ``Y = F + F*EPS(1) + EPS(2)``.

:func:`pk_predictor` adapts an immunopd PK declaration (:class:`immunopd.pkmodels.LinearPK`,
1 to 3 compartments, IV boluses into the central compartment, by superposition) into such a
predictor; :func:`pheno_model` is NONMEM's phenobarbital model written with it.

Estimation (:func:`fit`), NONMEM's FOCE with INTERACTION (METHOD=1 INTERACTION):

- inner problem: per subject the conditional mode eta_i of
  ``sum_j [log R_ij + (y_ij - f_ij)^2 / R_ij] + eta' Omega^-1 eta`` by damped Newton (exact
  Hessian, Fisher-scoring Hessian where that one is not positive definite, backtracking on the
  true objective), vmapped over subjects and warm-started from the previous outer evaluation's
  etas (``optimizer="bfgs"``) or from the last accepted outer point's (``"anchored"``).
  Derivatives of the prediction are needed up to second order only: one forward-over-forward
  pass through ``predict`` at the current individual parameters q gives f, df/dq and d2f/dq2,
  and every further derivative is taken of the quadratic model ``f + J dq + dq' H dq / 2``
  (same value, gradient and Hessian at q). An ODE predictor is therefore solved once per
  subject and Newton step, never differentiated in reverse mode; a predictor may carry a
  ``.forward`` attribute, a forward-mode-only variant with the same values, used for this.
  The Newton steps expand along the eta-carrying parameters only (the others do not move in
  the inner problem); the full expansion, which the outer gradient needs, is taken at the mode.
  Subjects run in batches of ``_SORTED_CHUNK`` ordered by last observation time, all of one
  shape, so that the inner problem compiles once;
- objective (NONMEM's OFV, -2 log-likelihood without the ``N log 2 pi`` constant), per subject
  the Laplace approximation with the first-order (expected-information) Hessian evaluated at
  the conditional eta, residual variance included (the "interaction"):
  ``sum_j [log R_j + (y_j - f_j)^2 / R_j] + eta' Omega^-1 eta + log|Omega| + log|A|`` with
  ``A = Omega^-1 + sum_j [G_j G_j' / R_j + dR_j dR_j' / (2 R_j^2)]``, ``G = df/deta``,
  ``dR = dR/deta``. On pheno it reproduces NONMEM's per-subject OBJ (``pheno.phi``) to 2e-5;
- outer problem: BFGS (scipy's, or the anchored iteration of :func:`fit`) over an unconstrained scale (bounded THETAs through log/logit
  maps, OMEGA through a log-Cholesky factor, SIGMA through logs). Its gradient is exact
  forward-mode AD through the inner solution by the implicit function theorem, written as one
  Newton step from the (stopped-gradient) converged eta: the value is unchanged and its
  derivative is ``-H^-1 dg/dtheta`` (the step taken on the local quadratic model at the mode:
  the third derivatives of f it drops are multiplied by the inner gradient, zero at the mode).
  No finite differences in the estimation;
- covariance step: NONMEM's default sandwich ``R^-1 S R^-1`` (``R`` the Hessian of the OFV,
  ``S`` the sum over subjects of the outer products of their log-likelihood gradients, i.e. a
  quarter of those of their OFV gradients), in NONMEM's parameterisation (THETA, OMEGA and SIGMA elements as variances and
  covariances). The subjects' gradients are exact (AD, as above); the Hessian is central
  differences of that exact gradient (relative step 1e-4, the etas re-solved at each point; an
  AD Hessian through two Newton steps is exact too but took 39 s to compile against 5 s).
  ``covariance="R"`` gives ``R^-1``, ``"S"`` gives ``S^-1`` (NONMEM's MATRIX=R/S).

Statuses are text: :attr:`NLMEFit.estimation_status` is ``"converged"`` or ``"not converged:
<why>"``; :attr:`NLMEFit.covariance_status` is ``"ok"``, ``"not requested"`` or ``"covariance
step failed: <why>"``; standard errors are NaN only where that status says why.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError, InputTypeError, ModelSpecError, ParameterError, describe

__all__ = ["Theta", "NLMEModel", "CategoricalEffect", "with_categorical_effect", "NLMEFit", "fit", "map_estimates", "predict_individuals", "pk_predictor", "pheno_model", "read_nonmem_table",
           "ERROR_MODELS", "METHOD", "OPTIMIZERS"]

ERROR_MODELS = ("additive", "proportional", "combined")
METHOD = "FOCE-I (first-order conditional estimation with interaction)"
_SIGMAS = {"additive": ("additive",), "proportional": ("proportional",), "combined": ("proportional", "additive")}


# ----------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Theta:
    """A fixed effect: ``lower < initial < upper`` (NONMEM's ``$THETA (lower, initial, upper)``)."""

    name: str
    initial: float
    lower: float = -math.inf
    upper: float = math.inf
    unit: str = "1"
    description: str = ""

    def __post_init__(self) -> None:
        if not (self.lower < self.initial < self.upper):
            raise ParameterError(describe(f"Theta({self.name!r}).initial", self.initial,
                                          f"strictly between its bounds {self.lower} and {self.upper}"))


@dataclass(frozen=True, eq=False)
class NLMEModel:
    """A population model: see the module docstring. ``omega`` holds initial variances (one per
    eta, ``omega_structure="diagonal"``) or an initial matrix (``"full"``); ``sigma`` the initial
    residual variances in the order of :data:`ERROR_MODELS`' SIGMA names (combined:
    proportional then additive)."""

    name: str
    thetas: tuple[Theta, ...]
    parameters: tuple[str, ...]
    typical: Callable
    predict: Callable
    etas: tuple[str, ...]
    omega: tuple
    sigma: tuple[float, ...]
    error: str = "proportional"
    omega_structure: str = "diagonal"
    covariates: tuple[str, ...] = ()
    units: Mapping[str, str] = field(default_factory=dict)  # parameter -> unit; "DV", "TIME", "AMT" too
    #: categorical covariates -> their allowed levels (the data are checked against them)
    categories: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    #: the categorical effects on typical values (see :func:`with_categorical_effect`)
    categorical_effects: tuple["CategoricalEffect", ...] = ()
    #: covariates the prediction reads itself (each one of ``covariates``), passed to ``predict``
    #: in its parameter dict under their own names and never differentiated, as NONMEM's $PK and
    #: $PRED read data items (e.g. the arm, which picks a lesion's regimen)
    predictor_covariates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [t.name for t in self.thetas]
        if len(set(names)) != len(names):
            raise ModelSpecError(describe("NLMEModel.thetas", names, "distinct names"))
        for k, e in enumerate(self.etas):
            if e not in self.parameters:
                raise ParameterError(describe(f"NLMEModel.etas[{k}]", e, f"one of the individual parameters {list(self.parameters)}"))
        if len(set(self.etas)) != len(self.etas) or not self.etas:
            raise ModelSpecError(describe("NLMEModel.etas", list(self.etas), "one or more distinct parameter names"))
        if self.error not in ERROR_MODELS:
            raise InputError(describe("NLMEModel.error", self.error, ", ".join(ERROR_MODELS)))
        if self.omega_structure not in ("diagonal", "full"):
            raise InputError(describe("NLMEModel.omega_structure", self.omega_structure, "'diagonal' or 'full'"))
        om = self.omega_matrix
        if om.shape != (len(self.etas), len(self.etas)) or not np.all(np.isfinite(om)):
            raise InputError(describe("NLMEModel.omega", self.omega, f"{len(self.etas)} finite initial variances"
                                      " (diagonal) or a symmetric matrix of that size (full)"))
        if np.any(np.linalg.eigvalsh(om) <= 0) or not np.allclose(om, om.T):
            raise InputError(describe("NLMEModel.omega", self.omega, "a symmetric positive-definite initial matrix"))
        if isinstance(self.predictor_covariates, str):
            raise InputTypeError(describe("NLMEModel.predictor_covariates", self.predictor_covariates,
                                          "a tuple of covariate names, e.g. ('ARM',)"))
        for k, c in enumerate(self.predictor_covariates):
            if c in self.parameters:
                raise InputError(describe(f"NLMEModel.predictor_covariates[{k}]", c, "a name that is not an individual"
                                          f" parameter's {list(self.parameters)} (the prediction reads both from one dict)"))
            if c not in self.covariates:
                raise InputError(describe(f"NLMEModel.predictor_covariates[{k}]", c,
                                          f"one of the model's covariates {list(self.covariates)}"))
        if len(self.sigma) != len(_SIGMAS[self.error]) or any(not (s > 0) for s in self.sigma):
            raise InputError(describe("NLMEModel.sigma", self.sigma, f"{len(_SIGMAS[self.error])} positive variance(s)"
                                      f" for the {self.error} error model ({', '.join(_SIGMAS[self.error])})"))

    @property
    def omega_matrix(self) -> np.ndarray:
        om = np.asarray(self.omega, dtype=float)
        return np.diag(om) if self.omega_structure == "diagonal" and om.ndim == 1 else om

    @property
    def sigma_names(self) -> tuple[str, ...]:
        return _SIGMAS[self.error]

    def parameter_names(self) -> list[str]:
        """NONMEM-style names of the estimated parameters, in the order of the estimate vector."""
        names = [t.name for t in self.thetas]
        k = len(self.etas)
        for i in range(k):
            for j in range(i + 1):
                if self.omega_structure == "full" or i == j:
                    names.append(f"OMEGA({self.etas[i]},{self.etas[j]})")
        names += [f"SIGMA({s})" for s in self.sigma_names]
        return names


@dataclass(frozen=True)
class CategoricalEffect:
    """Typical ``parameter`` times THETA ``theta`` where covariate ``covariate`` equals ``level``."""

    theta: str
    parameter: str
    covariate: str
    level: float
    reference: float


def with_categorical_effect(model: NLMEModel, parameter: str, covariate: str, levels: Sequence[float]) -> NLMEModel:
    """``model`` with a categorical covariate effect on the typical value of ``parameter``.

    ``levels``: the covariate's values (numbers, as in a NONMEM data set); the first is the
    reference. For each other level L a THETA ``<PARAMETER>_<COVARIATE><L>`` (initial 1, bounds
    0 to infinity) multiplies the typical value of subjects with ``covariate == L``, NONMEM's
    ``TV = THETA(1) * THETA(k)**(STUDY.EQ.L)``. A subject whose value is not among ``levels`` is
    refused when the data are read.
    """
    import jax.numpy as jnp

    if parameter not in model.parameters:
        raise InputError(describe("parameter", parameter, f"one of the model's individual parameters {list(model.parameters)}"))
    if not isinstance(covariate, str) or not covariate:
        raise InputError(describe("covariate", covariate, "a data column name"))
    try:
        lv = tuple(float(v) for v in levels)
    except (TypeError, ValueError):
        raise InputError(describe("levels", levels, "numbers (the covariate's codes in the data)")) from None
    if len(lv) < 2 or len(set(lv)) != len(lv) or not all(math.isfinite(v) for v in lv):
        raise InputError(describe("levels", list(levels), "two or more distinct finite numbers (the first is the reference)"))
    if covariate in model.categories and set(model.categories[covariate]) != set(lv):
        raise InputError(describe("levels", list(levels), f"the levels {covariate} already has in this model:"
                                  f" {list(model.categories[covariate])}"))
    effects = []
    for v in lv[1:]:
        name = f"{parameter.upper()}_{covariate}{v:g}"
        effects.append(CategoricalEffect(name, parameter, covariate, v, lv[0]))
    taken = [t.name for t in model.thetas]
    clash = [e.theta for e in effects if e.theta in taken]
    if clash:
        raise InputError(describe("parameter", parameter, f"a parameter without an effect of {covariate} already (THETAs"
                                  f" {clash} exist)"))
    thetas = tuple(Theta(e.theta, 1.0, 0.0, unit="1", description=f"typical {parameter} at {covariate} = {e.level:g}"
                         f" relative to {covariate} = {e.reference:g}") for e in effects)
    base = model.typical

    def typical(theta, cov):
        out = dict(base(theta, cov))
        factor = 1.0
        for e in effects:
            factor = factor * jnp.where(cov[covariate] == e.level, theta[e.theta], 1.0)
        out[parameter] = out[parameter] * factor
        return out

    from dataclasses import replace

    covs = model.covariates if covariate in model.covariates else (*model.covariates, covariate)
    units = dict(model.units)
    units.setdefault(covariate, "1")
    return replace(model, thetas=model.thetas + thetas, typical=typical, covariates=covs, units=units,
                   categories={**model.categories, covariate: lv},
                   categorical_effects=model.categorical_effects + tuple(effects))


# ----------------------------------------------------------------------------- predictors
def pk_predictor(pk=None, roles: Mapping[str, str] | None = None) -> Callable:
    """A predictor of the central concentration after IV boluses, from an immunopd PK declaration.

    ``pk`` is a :class:`immunopd.pkmodels.LinearPK` (default: one compartment); ``roles`` maps
    its roles (``clearance``, ``central_volume``, ...) to the model's individual parameter names
    (default: the roles themselves). Boluses superpose exactly: the central amount ``dt`` after a
    unit bolus is ``sum_m exp(-l_m dt) P_m[0, 0]`` with the propagator of
    :meth:`LinearPK.propagator`; one compartment uses ``exp(-CL/V dt)`` directly. Units follow
    the data (CL in L/h with times in h gives mg/L from mg and L).
    """
    from .pkmodels import LinearPK

    pk = LinearPK(compartments=1, allows_bolus=True) if pk is None else pk
    if not isinstance(pk, LinearPK) or not getattr(pk, "exact", False):
        raise InputTypeError(describe("pk", pk, "an exact LinearPK declaration (1-3 compartments)"))
    roles = dict(roles or {r: r for r in pk.roles})
    missing = [r for r in pk.roles if r not in roles]
    if missing:
        raise ParameterError(describe("roles", roles, f"a parameter name for every role of the model: {list(pk.roles)}"))

    def predict(params, dose_times, dose_amounts, obs_times):
        import jax.numpy as jnp

        v = {r: params[roles[r]] for r in pk.roles}
        dt = obs_times[:, None] - dose_times[None, :]
        after = dt >= 0
        dt = jnp.where(after, dt, 0.0)
        if pk.compartments == 1:
            unit = jnp.exp(-v["clearance"] / v["central_volume"] * dt)
        else:
            lam, proj, _, _ = pk.propagator(v)
            unit = jnp.exp(-lam[None, None, :] * dt[..., None]) @ proj[:, 0, 0]
        amount = jnp.sum(jnp.where(after, dose_amounts[None, :] * unit, 0.0), axis=1)
        return amount / v["central_volume"]

    return predict


def pheno_model() -> NLMEModel:
    """NONMEM's phenobarbital model (``data/pheno/pheno.mod``) with its initial estimates.

    ``TVCL = THETA(1)*WGT``, ``TVV = THETA(2)*WGT``, ``IF(APGR.LT.5) TVV = TVV*(1+THETA(3))``,
    ``CL = TVCL*EXP(ETA(1))``, ``V = TVV*EXP(ETA(2))``, ``Y = F + F*EPS(1)``; times in h.
    """
    import jax.numpy as jnp

    def typical(theta, cov):
        tvv = theta["POP_VC"] * cov["WGT"]
        return {"CL": theta["POP_CL"] * cov["WGT"],
                "V": jnp.where(cov["APGR"] < 5, tvv * (1 + theta["COVAPGR"]), tvv)}

    return NLMEModel(
        name="pheno (phenobarbital, one-compartment IV bolus)",
        thetas=(Theta("POP_CL", 0.00469307, 0.0, unit="L/h/kg", description="clearance per kg"),
                Theta("POP_VC", 1.00916, 0.0, unit="L/kg", description="volume per kg"),
                Theta("COVAPGR", 0.1, -0.99, unit="1", description="fractional change of V with Apgar < 5")),
        parameters=("CL", "V"), typical=typical,
        predict=pk_predictor(roles={"clearance": "CL", "central_volume": "V"}),
        etas=("CL", "V"), omega=(0.0309626, 0.031128), sigma=(0.0130865,), error="proportional",
        covariates=("WGT", "APGR"),
        units={"CL": "L/h", "V": "L", "DV": "mg/L", "TIME": "h", "AMT": "mg", "WGT": "kg", "APGR": "1"})


def read_nonmem_table(path) -> "pd.DataFrame":  # noqa: F821
    """A NONMEM data file or table (whitespace separated, ``TABLE NO.`` lines and ``@`` comments
    skipped) as a DataFrame."""
    import pandas as pd

    with open(path) as fh:
        lines = [ln for ln in fh if not ln.startswith("TABLE NO.") and not ln.lstrip().startswith("@")]
    from io import StringIO

    return pd.read_csv(StringIO("".join(lines)), sep=r"\s+")


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class _Data:
    ids: np.ndarray  # (S,)
    dose_t: np.ndarray  # (S, D)
    dose_a: np.ndarray
    obs_t: np.ndarray  # (S, O)
    y: np.ndarray
    mask: np.ndarray
    cov: dict  # name -> (S,)
    rows: list  # per subject: the data-frame index of each observation


def _prepare(model: NLMEModel, data) -> _Data:
    import pandas as pd

    if not isinstance(data, pd.DataFrame):
        raise InputTypeError(describe("data", type(data).__name__, "a pandas DataFrame in NONMEM layout (ID, TIME, AMT, DV, ...)"))
    need = ["ID", "TIME", "AMT", "DV", *model.covariates]
    missing = [c for c in need if c not in data.columns]
    if missing:
        raise InputError(describe("data columns", list(data.columns), f"columns including {missing} (ID, TIME, AMT, DV and the"
                                  f" model's covariates {list(model.covariates)})"))
    for c in ["TIME", "AMT", "DV", *model.covariates]:
        if not pd.api.types.is_numeric_dtype(data[c]):
            raise InputTypeError(describe(f"data[{c!r}]", str(data[c].dtype), "numbers (code a categorical covariate as integers)"))
        if not np.all(np.isfinite(data[c].to_numpy(float))):
            raise InputError(describe(f"data[{c!r}]", "NaN or infinite values", "finite numbers"))
    if not data.index.is_unique:
        dup = data.index[data.index.duplicated()].unique()[:3].tolist()
        raise InputError(describe("data index", f"repeated labels {dup}", "one label per row (the results name each observation"
                                  " by its row label): data.reset_index(drop=True), or pd.concat(..., ignore_index=True)"))
    if "EVID" in data.columns:
        is_dose = data["EVID"].to_numpy() == 1
        is_obs = data["EVID"].to_numpy() == 0
    else:
        is_dose = data["AMT"].to_numpy() > 0
        is_obs = ~is_dose
    if "MDV" in data.columns:
        is_obs = is_obs & (data["MDV"].to_numpy() == 0)
    if np.any(data["AMT"].to_numpy()[is_dose] < 0):
        raise InputError(describe("data['AMT']", "negative dose amounts", "amounts >= 0"))
    ids, dts, das, ots, ys, rows = [], [], [], [], [], []
    cov = {c: [] for c in model.covariates}
    for sid, g in data.groupby("ID", sort=False):
        dose, obs = is_dose[data.index.get_indexer(g.index)], is_obs[data.index.get_indexer(g.index)]
        if not obs.any():
            raise InputError(describe(f"subject ID {sid}", "no observations", "at least one observation record"
                                      " (EVID=0/MDV=0, or AMT=0 when there is no EVID column) per subject"))
        y = g["DV"].to_numpy(float)[obs]
        if model.error == "proportional" and np.any(y <= 0):
            t_bad = g["TIME"].to_numpy(float)[obs][y <= 0][0]
            raise InputError(describe(f"subject ID {sid} DV at TIME {t_bad:g}", float(y[y <= 0][0]),
                                      "positive observations with the proportional error model (a zero concentration"
                                      " is usually below the limit of quantification: drop it or use 'combined')"))
        for c in model.covariates:
            vals = np.unique(g[c].to_numpy(float))
            if len(vals) != 1:
                raise InputError(describe(f"covariate {c} of subject ID {sid}", vals.tolist(),
                                          "one value per subject (time-varying covariates are not supported)"))
            if c in model.categories and vals[0] not in model.categories[c]:
                raise InputError(describe(f"covariate {c} of subject ID {sid}", float(vals[0]),
                                          f"one of the model's levels {list(model.categories[c])}"))
            cov[c].append(vals[0])
        ids.append(sid)
        dts.append(g["TIME"].to_numpy(float)[dose])
        das.append(g["AMT"].to_numpy(float)[dose])
        ots.append(g["TIME"].to_numpy(float)[obs])
        ys.append(y)
        rows.append(np.asarray(g.index)[obs])

    def pad(arrs, fill=0.0):
        n = max(1, max(len(a) for a in arrs))
        out = np.full((len(arrs), n), fill)
        for i, a in enumerate(arrs):
            out[i, : len(a)] = a
        return out

    mask = pad([np.ones(len(y)) for y in ys]).astype(bool)
    obs_t = pad(ots)
    return _Data(np.asarray(ids), pad(dts), pad(das), obs_t, pad(ys, 1.0), mask,
                 {c: np.asarray(v, float) for c, v in cov.items()}, rows)


# ----------------------------------------------------------------------------- the objective
class _Engine:
    """JAX functions of the natural parameter vector ``p`` (THETA, OMEGA elements, SIGMA)."""

    def __init__(self, model: NLMEModel):
        import jax
        import jax.numpy as jnp

        self.model = model
        nt, k = len(model.thetas), len(model.etas)
        full = model.omega_structure == "full"
        self.omega_index = [(i, j) for i in range(k) for j in range(i + 1) if full or i == j]
        no = len(self.omega_index)
        ns = len(model.sigma_names)
        self.sizes = (nt, no, ns)
        eta_pos = {e: i for i, e in enumerate(model.etas)}
        theta_names = [t.name for t in model.thetas]
        error = model.error

        def unpack(p):
            theta = {n: p[i] for i, n in enumerate(theta_names)}
            om = jnp.zeros((k, k))
            for m, (i, j) in enumerate(self.omega_index):
                om = om.at[i, j].set(p[nt + m]).at[j, i].set(p[nt + m])
            return theta, om, p[nt + no:]

        def variance(f, sig):
            if error == "additive":
                return sig[0] + 0.0 * f
            if error == "proportional":
                return sig[0] * f**2
            return sig[0] * f**2 + sig[1]

        def individual(theta, cov, eta):
            tv = model.typical(theta, cov)
            return {n: (tv[n] * jnp.exp(eta[eta_pos[n]]) if n in eta_pos else tv[n]) for n in model.parameters}

        read = tuple(model.predictor_covariates)

        def with_data_items(params, cov):
            return params | {c: cov[c] for c in read} if read else params

        def fr(eta, p, s):
            """(f, R) at the observations of subject s (padding: f = 1, R = 1)."""
            theta, _, sig = unpack(p)
            f = model.predict(with_data_items(individual(theta, s["cov"], eta), s["cov"]), s["dose_t"], s["dose_a"], s["obs_t"])
            f = jnp.where(s["mask"], f, 1.0)
            r = jnp.where(s["mask"], variance(f, sig), 1.0)
            return f, r

        def h(eta, p, s):
            """Conditional objective: -2 log p(y, eta) without constants and log|Omega|."""
            _, om, _ = unpack(p)
            f, r = fr(eta, p, s)
            ll = jnp.sum(jnp.where(s["mask"], jnp.log(r) + (s["y"] - f) ** 2 / r, 0.0))
            return ll + eta @ jnp.linalg.solve(om, eta)

        def fisher(eta, p, s):
            """A = Omega^-1 + sum G G'/R + dR dR'/(2 R^2) (half the expected Hessian of h)."""
            _, om, _ = unpack(p)
            f, r = fr(eta, p, s)
            g, dr = jax.jacfwd(lambda e: fr(e, p, s))(eta)
            m = s["mask"][:, None]
            g, dr = jnp.where(m, g, 0.0), jnp.where(m, dr, 0.0)
            return jnp.linalg.inv(om) + g.T @ (g / r[:, None]) + 0.5 * dr.T @ (dr / r[:, None] ** 2)

        def ofv_subject(eta, p, s):
            _, om, _ = unpack(p)
            return h(eta, p, s) + jnp.linalg.slogdet(om)[1] + jnp.linalg.slogdet(fisher(eta, p, s))[1]

        # ---- the local quadratic model of the prediction in the individual parameters q
        # The estimation needs derivatives of the prediction up to second order only (Newton's
        # Hessian of h, and the outer gradient of the Laplace term). One forward-over-forward pass
        # through ``predict`` at the current q gives f, J = df/dq and H = d2f/dq2 exactly; every
        # derivative after that is taken of the quadratic q -> f + J dq + dq'H dq / 2, which has
        # the same value, gradient and Hessian at that q. An ODE predictor is then solved once per
        # subject and Newton step instead of once per nested AD level (third-order terms appear
        # only multiplied by the inner gradient, which is zero at the conditional mode).
        params = tuple(model.parameters)

        def qvec(theta, cov, eta):
            ind = individual(theta, cov, eta)
            return jnp.stack([jnp.asarray(ind[n], float) for n in params])

        forward = getattr(model.predict, "forward", model.predict)

        def predict_q(q, s):
            f = forward(with_data_items(dict(zip(params, q)), s["cov"]), s["dose_t"], s["dose_a"], s["obs_t"])
            return jnp.where(s["mask"], f, 1.0)

        def second_order(q, s, along=None):
            """(q, f, J, H): the local quadratic model, exact up to second derivatives at q. With
            ``along`` (individual parameters, k) only along its columns, J and H embedded with
            zeros in the other directions (exact wherever q moves within their span)."""
            to_q = (lambda x: x) if along is None else (lambda x: q + along @ x)

            def level0(x):
                y = predict_q(to_q(x), s)
                return y, y

            def level1(x):
                jac, f = jax.jacfwd(level0, has_aux=True)(x)
                return jac, (jac, f)

            hes, (jac, f) = jax.jacfwd(level1, has_aux=True)(q if along is None else jnp.zeros(along.shape[1]))
            if along is None:
                return q, f, jac, hes
            return q, f, jac @ along.T, jnp.einsum("oab,ia,jb->oij", hes, along, along)

        # Only the individual parameters that carry an eta move during the inner problem, so its
        # Newton steps need J and H along those alone: with etas on 2 of 3 parameters that is
        # 1 + 2 + 2 + 4 forward-mode lanes through the solve instead of 1 + 3 + 3 + 9. The full
        # expansion, which the outer gradient needs, is taken once at the mode.
        moved = [params.index(e) for e in model.etas]
        eta_directions = jnp.eye(len(params))[:, moved] if _EXPAND_ETA_DIRECTIONS_ONLY and len(moved) < len(params) else None

        def fr_local(eta, p, s, t):
            theta, _, sig = unpack(p)
            q0, f0, jac, hes = t
            dq = qvec(theta, s["cov"], eta) - q0
            f = f0 + jac @ dq + 0.5 * jnp.einsum("oij,i,j->o", hes, dq, dq)
            f = jnp.where(s["mask"], f, 1.0)
            return f, jnp.where(s["mask"], variance(f, sig), 1.0)

        def h_local(eta, p, s, t):
            _, om, _ = unpack(p)
            f, r = fr_local(eta, p, s, t)
            ll = jnp.sum(jnp.where(s["mask"], jnp.log(r) + (s["y"] - f) ** 2 / r, 0.0))
            return ll + eta @ jnp.linalg.solve(om, eta)

        def fisher_local(eta, p, s, t):
            _, om, _ = unpack(p)
            f, r = fr_local(eta, p, s, t)
            g, dr = jax.jacfwd(lambda e: fr_local(e, p, s, t))(eta)
            m = s["mask"][:, None]
            g, dr = jnp.where(m, g, 0.0), jnp.where(m, dr, 0.0)
            return jnp.linalg.inv(om) + g.T @ (g / r[:, None]) + 0.5 * dr.T @ (dr / r[:, None] ** 2)

        def ofv_local(eta, p, s, t):
            _, om, _ = unpack(p)
            return h_local(eta, p, s, t) + jnp.linalg.slogdet(om)[1] + jnp.linalg.slogdet(fisher_local(eta, p, s, t))[1]

        grad_local = jax.grad(h_local)
        hess_local = jax.hessian(h_local)

        def newton_direction(eta, p, s, t):
            """H^-1 g on the local model (H replaced by 2A where not positive definite)."""
            g = grad_local(eta, p, s, t)
            hh = hess_local(eta, p, s, t)
            chol = jnp.linalg.cholesky(hh)
            ok = jnp.all(jnp.isfinite(chol))
            hh = jnp.where(ok, hh, 2.0 * fisher_local(eta, p, s, t))
            return jnp.linalg.solve(hh, g)

        def capped(d):
            """A step moving no eta by more than _MAX_ETA_STEP: far from the mode a Newton step can
            ask for parameters e^10 times the typical value, where an ODE predictor is stiff."""
            return d * jnp.minimum(1.0, _MAX_ETA_STEP / jnp.maximum(jnp.max(jnp.abs(d)), 1e-300))

        def solve_subject(eta0, p, s, tol, maxiter):
            """Damped Newton on h from eta0: the step from the local quadratic model of the
            prediction (exact gradient and Hessian of h), its length halved until the true h
            does not increase. (Gauss-Newton steps, one first-order pass each, were tried: on
            the mechanistic model they need many more iterations and end slower.)"""
            theta = unpack(p)[0]

            def expand(eta):
                return second_order(qvec(theta, s["cov"], eta), s, eta_directions)

            def decrement(eta, t):
                """g' H^-1 g: what a Newton step could still lower h by (twice)."""
                return grad_local(eta, p, s, t) @ newton_direction(eta, p, s, t)

            def cond(c):
                _, _, it, gmax, dec, stuck = c
                return (it < maxiter) & (gmax > tol) & (dec > _DECREMENT_TOL) & ~stuck

            # a subject stops at |dh/deta| <= tol, or once a Newton step could lower h by less
            # than _DECREMENT_TOL (an ODE prediction is piecewise smooth at its solver's
            # tolerance, so its |dh/deta| can level off above tol), or when no step lowers h
            def body(c):
                eta, t, it, _, _, _ = c
                h0 = h_local(eta, p, s, t)  # = h(eta): the local model is exact at its centre
                d = capped(newton_direction(eta, p, s, t))

                def search(direction, skip):
                    def shorter(lc):
                        a, _, k = lc
                        return a * 0.5, h(eta - 0.5 * a * direction, p, s), k + 1

                    def worse(lc):
                        _, val, k = lc
                        return ~skip & (k < 8) & ~(jnp.isfinite(val) & (val <= h0))

                    return jax.lax.while_loop(worse, shorter, (jnp.asarray(1.0), h(eta - direction, p, s), 0))[:2]

                a, val = search(d, jnp.asarray(False))
                ok = jnp.isfinite(val) & (val <= h0)
                # a nearly singular Hessian gives a huge Newton step that no halving rescues: then
                # the Fisher-scoring step (A is positive definite), searched the same way
                d2 = capped(jnp.linalg.solve(2.0 * fisher_local(eta, p, s, t), grad_local(eta, p, s, t)))
                a2, val2 = search(d2, ok)  # (vmapped, a cond would run both branches anyway)
                d = jnp.where(ok, d, d2)
                a, val = jnp.where(ok, a, a2), jnp.where(ok, val, val2)
                ok = jnp.isfinite(val) & (val <= h0)
                new = jnp.where(ok, eta - a * d, eta)
                tn = expand(new)
                gnew = jnp.max(jnp.abs(grad_local(new, p, s, tn)))
                return new, tn, it + 1, gnew, decrement(new, tn), ~ok

            t0 = expand(eta0)
            g0 = jnp.max(jnp.abs(grad_local(eta0, p, s, t0)))
            eta, t, _, gmax, dec, stuck = jax.lax.while_loop(cond, body, (eta0, t0, 0, g0, decrement(eta0, t0), False))
            if eta_directions is not None:
                t = second_order(qvec(theta, s["cov"], eta), s)
            return eta, gmax, dec, t, stuck

        def corrected(eta_star, p, s, t):
            """eta(p) with exact first derivatives (implicit function theorem): one Newton step
            from the converged, stopped-gradient eta."""
            eta = jax.lax.stop_gradient(eta_star)
            return eta - jnp.linalg.solve(hess_local(eta, p, s, t), grad_local(eta, p, s, t))

        def per_subject(p, etas, ts, data):
            return jax.vmap(lambda e, t, s: ofv_local(corrected(e, p, s, t), p, s, t))(etas, ts, data)

        def solve_all(p, etas0, data, tol, maxiter):
            return jax.vmap(lambda e, s: solve_subject(e, p, s, tol, maxiter))(etas0, data)

        self.unpack = unpack
        self.fr = fr
        self.h = h
        self.fisher = fisher
        self.individual = individual
        # maxiter is traced, not static: the first pass and the stragglers' continuation run the
        # same compiled program (compiling the inner problem of an ODE model takes minutes)
        self.solve_all = jax.jit(solve_all)
        self.natural_jit = jax.jit(self.natural)
        self.natural_jacobian = jax.jit(jax.jacfwd(self.natural))
        # per-subject OFV and its exact gradient in p (forward mode over the local quadratic
        # models: few parameters, many subjects, and no further solve of the prediction)
        self.values_and_jacobian = jax.jit(lambda p, e, t, d: (per_subject(p, e, t, d),
                                                               jax.jacfwd(lambda q: per_subject(q, e, t, d))(p)))
        self.per_subject = jax.jit(lambda p, e, d: jax.vmap(lambda ee, s: ofv_subject(ee, p, s))(e, d))
        self.fisher_all = jax.jit(lambda p, e, d: jax.vmap(lambda ee, s: fisher(ee, p, s))(e, d))
        self.fr_all = jax.jit(lambda p, e, d: jax.vmap(lambda ee, s: fr(ee, p, s))(e, d))
        self.jac_all = jax.jit(lambda p, e, d: jax.vmap(lambda ee, s: jax.jacfwd(lambda x: fr(x, p, s)[0])(ee))(e, d))

    # ------------------------------------------------------------- parameter scales
    def natural(self, u):
        """Natural parameters from the unconstrained vector (numpy in, numpy out; also JAX)."""
        import jax.numpy as jnp

        nt, no, ns = self.sizes
        out = []
        for t, x in zip(self.model.thetas, u[:nt]):
            lo, hi = t.lower, t.upper
            if math.isinf(lo) and math.isinf(hi):
                out.append(x * max(abs(t.initial), 1e-8))
            elif math.isinf(hi):
                out.append(lo + jnp.exp(x))
            elif math.isinf(lo):
                out.append(hi - jnp.exp(x))
            else:
                out.append(lo + (hi - lo) / (1 + jnp.exp(-x)))
        k = len(self.model.etas)
        lmat = jnp.zeros((k, k))
        for m, (i, j) in enumerate(self.omega_index):
            lmat = lmat.at[i, j].set(jnp.exp(u[nt + m]) if i == j else u[nt + m])
        om = lmat @ lmat.T
        out += [om[i, j] for i, j in self.omega_index]
        out += [jnp.exp(x) for x in u[nt + no:]]
        return jnp.stack(out)

    def unconstrained(self, p) -> np.ndarray:
        nt, no, _ = self.sizes
        out = []
        for t, x in zip(self.model.thetas, p[:nt]):
            lo, hi = t.lower, t.upper
            if math.isinf(lo) and math.isinf(hi):
                out.append(x / max(abs(t.initial), 1e-8))
            elif math.isinf(hi):
                out.append(math.log(x - lo))
            elif math.isinf(lo):
                out.append(math.log(hi - x))
            else:
                out.append(math.log((x - lo) / (hi - x)))
        k = len(self.model.etas)
        om = np.zeros((k, k))
        for m, (i, j) in enumerate(self.omega_index):
            om[i, j] = om[j, i] = p[nt + m]
        lmat = np.linalg.cholesky(om)
        out += [math.log(lmat[i, j]) if i == j else lmat[i, j] for i, j in self.omega_index]
        out += [math.log(x) for x in p[nt + no:]]
        return np.asarray(out, float)


_ENGINES: dict[int, tuple] = {}


def _engine(model: NLMEModel) -> _Engine:
    """One engine (hence one set of compilations) per model object."""
    hit = _ENGINES.get(id(model))
    if hit is None or hit[0] is not model:
        hit = (model, _Engine(model))
        _ENGINES[id(model)] = hit
    return hit[1]


# ----------------------------------------------------------------------------- estimation
_INNER_TOL = 1e-7  # largest |d h / d eta| at the conditional mode (the OFV is evaluated one Newton step on: error O(tol^2))
_INNER_ACCEPT = 1e-5  # a conditional mode whose |d h / d eta| stays above this ...
_DECREMENT_TOL = 1e-9  # ... or whose Newton decrement g'H^-1 g (h units, -2 log-likelihood) stays above
_DECREMENT_ACCEPT = 1e-6  # this is reported as not found
_INNER_MAXITER = 40
_MAX_ETA_STEP = 1.0  # largest change of one eta in one Newton step (a factor e on the parameter)
_INNER_CHUNK = 8  # Newton iterations of the first pass; the stragglers go on for the rest of _INNER_MAXITER
#: subjects per batch of the inner problem (0: one batch of everyone, the stragglers' continuation
#: padded to everyone too; a comparison mode). See bench/inner_chunks.py for what it gains (the
#: lesions' follow-up runs from a few weeks to 772 days).
_SORTED_CHUNK = 16
#: the inner problem's Newton steps expand the prediction along the eta-carrying parameters only
#: (False: along every individual parameter, as the outer gradient's final expansion does). Read
#: when an engine is built; :func:`_engine` keeps one per model, so set it before the first fit.
_EXPAND_ETA_DIRECTIONS_ONLY = True
_COND_LIMIT = 1e13  # condition number above which a covariance matrix counts as singular
_REMEMBERED_MODES = 64  # evaluated points whose conditional etas fit() keeps (a few line searches' worth)
_FD_STEP = 1e-4  # relative step of the central differences giving the R matrix


#: half the curvature of the OFV (R's units) along a 100 % change of a parameter below which the
#: objective counts as not depending on it at all
_FLAT_CURVATURE = 1e-6


def _matrix_problem(name: str, m: np.ndarray, names: Sequence[str], rel: np.ndarray) -> str | None:
    """Why the covariance step's matrix ``m`` (R or S) cannot be inverted, or ``None``.

    Read on its diagonal for relative changes (``rel``: the parameters' scales), where a diagonal
    at most 1e-9 of the largest in size is flagged (negative ones included): at most
    :data:`_FLAT_CURVATURE` in size, the objective does not depend on that parameter; negative,
    negative curvature (``m`` not positive definite, e.g. R at a point that is not a minimum);
    otherwise it is negligible only beside the largest (a badly scaled matrix), and the message
    names both. With nothing flagged, the conditioning of m's correlation form (scale-free)
    decides."""
    m = 0.5 * (m + m.T)
    dg = np.diag(m) * rel**2
    largest = int(np.argmax(np.abs(dg)))
    tiny = np.abs(dg) <= 1e-9 * np.abs(dg[largest])
    flat = tiny & (np.abs(dg) <= _FLAT_CURVATURE)
    negative = ~flat & (dg < 0)
    small = tiny & ~flat & (dg > 0)

    def listed(mask):
        idx = np.flatnonzero(mask)
        return ", ".join(names[i] for i in idx), ", ".join(f"{dg[i]:.3g}" for i in idx)

    problems = []
    if flat.any():
        problems.append(f"the objective does not depend on {listed(flat)[0]}")
    if negative.any():
        problems.append("negative curvature along {} ({}, for relative changes)".format(*listed(negative)))
    if small.any():
        problems.append("its diagonal along {} ({}, for relative changes) is below 1e-9 of that along".format(*listed(small))
                        + f" {names[largest]} ({dg[largest]:.3g})")
    if problems:
        what = "not positive definite" if negative.any() else "singular"
        return f"{name} matrix {what}: " + "; ".join(problems)
    ev, vec = np.linalg.eigh(m / np.sqrt(np.outer(np.diag(m), np.diag(m))))
    if ev[0] <= 0 or ev[-1] / ev[0] > _COND_LIMIT:
        what = "not positive definite" if ev[0] <= 0 else "singular"
        worst = names[int(np.argmax(np.abs(vec[:, 0])))]
        return (f"{name} matrix {what} (eigenvalues of its correlation form {ev[0]:.3g} to {ev[-1]:.3g}; the direction"
                f" of the smallest is mostly {worst})")
    return None


@dataclass
class NLMEFit:
    """The result of :func:`fit`: :attr:`dataset` (xarray, with units) and :meth:`report`."""

    model: NLMEModel
    dataset: object
    estimation_status: str
    covariance_status: str

    @property
    def status(self) -> str:
        """``"converged"``, or the first failure: ``"not converged: ..."`` / ``"covariance step failed: ..."``."""
        if self.estimation_status != "converged":
            return self.estimation_status
        if self.covariance_status.startswith("covariance step failed"):
            return self.covariance_status
        return "converged"

    @property
    def converged(self) -> bool:
        return self.estimation_status == "converged"

    @property
    def ofv(self) -> float:
        return float(self.dataset["ofv"])

    def estimates(self) -> dict[str, float]:
        ds = self.dataset
        return {str(k): float(v) for k, v in zip(ds.parameter.values, ds.estimate.values)}

    def standard_errors(self) -> dict[str, float]:
        ds = self.dataset
        return {str(k): float(v) for k, v in zip(ds.parameter.values, ds.se.values)}

    def report(self) -> str:
        """A NONMEM/nlmixr2-like text report."""
        ds = self.dataset
        a = ds.attrs
        bar = "-" * 78
        lines = [bar, f"immunopd.nlme: {a['model']}", f"method: {a['method']}",
                 f"subjects: {a['n_subjects']}   observations: {a['n_observations']}   residual error: {a['error_model']}",
                 f"estimation: {self.estimation_status} ({a['optimizer']}; {a['iterations']} iterations,"
                 f" {a['objective_evaluations']} objective evaluations, {a['elapsed_s']:.2f} s)",
                 f"covariance step ({a['covariance_matrix']}): {self.covariance_status}",
                 f"status: {self.status}", bar,
                 f"OBJECTIVE FUNCTION VALUE WITHOUT CONSTANT: {float(ds.ofv):.6f}",
                 f"OBJECTIVE FUNCTION VALUE WITH CONSTANT:    {float(ds.ofv) + a['n_observations'] * math.log(2 * math.pi):.6f}",
                 bar]

        def se_text(i):
            se = float(ds.se.values[i])
            if not np.isfinite(se):
                return f"{'n/a':>12} {'':>8}"
            return f"{se:12.5g} {100 * float(ds.rse.values[i]):7.1f}%"

        kinds = ds.kind.values
        for kind, head in (("theta", "THETA"), ("omega", "OMEGA (variance)"), ("sigma", "SIGMA (variance)")):
            lines.append(f"{head:<28}{'estimate':>12} {'SE':>12} {'RSE':>8}   unit / note")
            for i in np.flatnonzero(kinds == kind):
                name = str(ds.parameter.values[i])
                est = float(ds.estimate.values[i])
                note = str(ds.unit.values[i])
                if kind == "omega" and "," in name:
                    a1, a2 = name[6:-1].split(",")
                    if a1 == a2:
                        note = f"SD {math.sqrt(est):.4g} (CV {100 * math.sqrt(math.expm1(est)):.1f}%)"
                if kind == "sigma":
                    note = f"SD {math.sqrt(est):.4g}"
                lines.append(f"  {name:<26}{est:12.5g} {se_text(i)}   {note}")
            lines.append("")
        shr = ", ".join(f"{e} {float(v):.1f}%" for e, v in zip(ds.eta.values, ds.eta_shrinkage_sd.values))
        lines += [f"ETA shrinkage (SD): {shr}", f"EPS shrinkage (SD): {float(ds.eps_shrinkage_sd):.1f}%",
                  "ETABAR: " + ", ".join(f"{e} {float(v):+.4g}" for e, v in zip(ds.eta.values, ds.ebe.mean('subject').values)),
                  bar]
        return "\n".join(lines)


def _device_data(d: _Data) -> dict:
    """The per-subject arrays of prepared data as JAX arrays (leading axis: subject)."""
    import jax.numpy as jnp

    return {"dose_t": jnp.asarray(d.dose_t), "dose_a": jnp.asarray(d.dose_a), "obs_t": jnp.asarray(d.obs_t),
            "y": jnp.asarray(d.y), "mask": jnp.asarray(d.mask), "cov": {c: jnp.asarray(v) for c, v in d.cov.items()}}


def _conditional_modes(eng, p, eta0, jd):
    """Each subject's conditional mode of eta at the natural parameters ``p``: (eta (S, k),
    max |dh/deta| (S,), the local quadratic models at the modes, found (S,) bool)."""
    import jax
    import jax.numpy as jnp

    # A vmapped Newton loop costs as many ODE steps and iterations as its slowest subject. So the
    # subjects are ordered by last observation time and cut into small batches (a batch then
    # pays for its own follow-up and iterations, not the longest of all), each batch runs
    # _INNER_CHUNK iterations, and the few subjects still iterating go on, in the same order, in
    # batches of the same size: every call has one shape, so the inner problem compiles once.
    n_sub = int(eta0.shape[0])
    order = np.argsort(np.max(np.asarray(jd["obs_t"]), axis=1), kind="stable")
    size = max(1, min(n_sub, _SORTED_CHUNK) if _SORTED_CHUNK > 0 else n_sub)
    eta = np.array(eta0, float)
    gmax, dec, stuck = np.full(n_sub, np.inf), np.full(n_sub, np.inf), np.zeros(n_sub, bool)
    local: list[np.ndarray] = []

    def run(part, maxiter):
        idx = np.concatenate([part, np.full(size - part.size, part[-1])])  # padded with copies of the last
        sub = jax.tree_util.tree_map(lambda a: a[idx], jd)
        e2, g2, d2, l2, s2 = eng.solve_all(p, jnp.asarray(eta[idx]), sub, _INNER_TOL, maxiter)
        n = part.size
        eta[part], gmax[part], dec[part], stuck[part] = (np.asarray(x)[:n] for x in (e2, g2, d2, s2))
        if not local:
            local.extend(np.empty((n_sub,) + np.shape(x)[1:]) for x in l2)
        for full, new in zip(local, l2):
            full[part] = np.asarray(new)[:n]

    for lo in range(0, n_sub, size):
        run(order[lo: lo + size], _INNER_CHUNK)
    still = ~(gmax <= _INNER_TOL) & ~(dec <= _DECREMENT_TOL) & ~stuck
    todo = order[still[order]]
    for lo in range(0, todo.size, size):
        run(todo[lo: lo + size], _INNER_MAXITER - _INNER_CHUNK)
    found = (gmax <= _INNER_ACCEPT) | (dec <= _DECREMENT_ACCEPT)
    return jnp.asarray(eta), gmax, tuple(jnp.asarray(x) for x in local), found


def map_estimates(model: NLMEModel, data, estimates: Mapping[str, float]):
    """Each subject's maximum a posteriori etas with the population at ``estimates`` as the prior
    (NONMEM's POSTHOC step: FOCE-I's inner problem at fixed THETA, OMEGA and SIGMA; only the
    rows of ``data`` are used). ``estimates``: every parameter of
    :meth:`NLMEModel.parameter_names` (e.g. :meth:`NLMEFit.estimates`).

    Returns an xarray Dataset: ``ebe`` (subject, eta), ``individual`` (subject,
    individual_parameter) at the MAP etas, ``map_found`` (subject; False where the mode was not
    found, see :func:`fit`), ``ebe_covariance`` (subject, eta, eta_2: the inverse first-order
    Hessian, the Laplace approximation of the posterior).
    """
    import jax
    import jax.numpy as jnp
    import xarray as xr

    names = model.parameter_names()
    missing = [n for n in names if n not in estimates]
    if missing:
        raise ParameterError(describe("estimates", sorted(estimates), f"a value for every parameter of the model; missing {missing}"))
    p = jnp.asarray([float(estimates[n]) for n in names])
    d = _prepare(model, data)
    eng = _engine(model)
    jd = _device_data(d)
    eta, _, _, found = _conditional_modes(eng, p, jnp.zeros((len(d.ids), len(model.etas))), jd)
    theta = eng.unpack(p)[0]
    indiv = jax.vmap(lambda c, e: jnp.stack([jnp.asarray(eng.individual(theta, c, e)[n], float)
                                             for n in model.parameters]))(jd["cov"], eta)
    a = np.asarray(eng.fisher_all(p, eta, jd))
    etas = list(model.etas)
    return xr.Dataset(
        {"ebe": (("subject", "eta"), np.asarray(eta), {"units": "1", "long_name": "MAP estimate of eta (population prior)"}),
         "individual": (("subject", "individual_parameter"), np.asarray(indiv),
                        {"long_name": "individual parameter at the MAP etas (units in 'individual_unit')"}),
         "map_found": ("subject", np.asarray(found), {"long_name": "whether the conditional mode was found"}),
         "ebe_covariance": (("subject", "eta", "eta_2"), np.linalg.inv(a),
                            {"units": "1", "long_name": "conditional covariance of eta (inverse first-order Hessian)"})},
        coords={"subject": d.ids, "eta": etas, "eta_2": etas, "individual_parameter": list(model.parameters),
                "individual_unit": ("individual_parameter", [model.units.get(n, "") for n in model.parameters])},
        attrs={"model": model.name, "method": "MAP (POSTHOC) at fixed population parameters"})


def predict_individuals(model: NLMEModel, individual, times, dose_times=None, dose_amounts=None,
                        covariates: Mapping | None = None) -> np.ndarray:
    """Predictions ``(S, O)`` of subjects with individual parameters ``individual`` ``(S, P)`` (in
    the order of ``model.parameters``, e.g. :func:`map_estimates`' ``individual``) at ``times``
    ``(S, O)``, each row non-decreasing; doses ``(S, D)`` as in the data (zero amounts pad);
    ``covariates``: ``{name: (S,)}`` for each of the model's ``predictor_covariates``."""
    import jax
    import jax.numpy as jnp

    q = np.asarray(individual, float)
    t = np.asarray(times, float)
    if q.ndim != 2 or q.shape[1] != len(model.parameters):
        raise InputError(describe("individual", q.shape, f"an array (subjects, {len(model.parameters)})"))
    if t.ndim != 2 or t.shape[0] != q.shape[0]:
        raise InputError(describe("times", t.shape, f"an array ({q.shape[0]}, observations)"))
    if np.any(np.diff(t, axis=1) < 0):
        raise InputError(describe("times", "a decreasing row", "non-decreasing times per subject"))
    dt = np.zeros((len(q), 1)) if dose_times is None else np.asarray(dose_times, float)
    da = np.zeros_like(dt) if dose_amounts is None else np.asarray(dose_amounts, float)
    given = dict(covariates or {})
    items = {}
    for c in model.predictor_covariates:
        if c not in given:
            raise InputError(describe("covariates", sorted(given), f"a value per subject for each of {list(model.predictor_covariates)}"
                                      " (the covariates the model's prediction reads)"))
        v = np.asarray(given[c], float)
        if v.shape != (len(q),):
            raise InputError(describe(f"covariates[{c!r}]", v.shape, f"one value per subject: shape ({len(q)},)"))
        levels = model.categories.get(c)
        bad = ~np.isfinite(v) if levels is None else ~np.isin(v, levels)
        if bad.any():
            raise InputError(describe(f"covariates[{c!r}]", float(v[bad][0]),
                                      "a finite number" if levels is None else f"one of the model's levels {list(levels)}"))
        items[c] = jnp.asarray(v)
    hit = _PREDICTORS.get(id(model))
    if hit is None or hit[0] is not model:  # one compiled function per model object: a warm call does not retrace
        predict = getattr(model.predict, "forward", model.predict)  # values only: the forward-only variant where there is one
        one = lambda qq, tt, a, b, c: predict(dict(zip(model.parameters, qq)) | c, a, b, tt)  # noqa: E731
        hit = (model, jax.jit(jax.vmap(one)))
        _PREDICTORS[id(model)] = hit
    return np.array(hit[1](jnp.asarray(q), jnp.asarray(t), jnp.asarray(dt), jnp.asarray(da), items))


_PREDICTORS: dict[int, tuple] = {}

OPTIMIZERS = {"bfgs": "scipy BFGS on an unconstrained scale",
              "anchored": "anchored quasi-Newton (BFGS, the step capped on the unconstrained scale, backtracking to"
                          " sufficient decrease, every trial point's conditional etas started from the last accepted"
                          " point's)"}
_ARMIJO = 1e-4  # sufficient decrease: f(u + a d) <= f(u) + _ARMIJO a g'd
_MAX_BACKTRACKS = 12  # step reductions (at most) before the line search is declared failed
_MAX_EXPANSIONS = 3  # step doublings (at most) when the first step is accepted with the slope still steep
_CURVATURE = 0.9  # the slope at the accepted point counts as still steep below this fraction of the initial slope


def check_optimizer(optimizer, max_step) -> None:
    """Raise InputError unless ``optimizer`` is one of :data:`OPTIMIZERS` and ``max_step`` a finite number > 0."""
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise InputError(describe("optimizer", optimizer, f"one of {list(OPTIMIZERS)}"))
    if not (isinstance(max_step, (int, float, np.integer, np.floating)) and not isinstance(max_step, (bool, np.bool_))
            and math.isfinite(max_step) and max_step > 0):
        raise InputError(describe("max_step", max_step, "a finite number > 0 (unconstrained scale)"))


def _anchored_bfgs(evaluate, state, u0, *, gtol, maxiter, max_step, callback=None):
    """Minimise the OFV by BFGS whose trial points all start the inner problem from the accepted
    point's conditional etas (``evaluate(u, eta_start) -> (f, g)``, leaving the etas it found in
    ``state["eta"]``). The step is capped so that no coordinate moves more than ``max_step``; the
    line search backtracks from the capped quasi-Newton step to sufficient decrease (Armijo) and
    extends a first step accepted with the slope still steep (see below). ``callback(u)`` after each accepted step,
    with ``state["ofv"]`` the accepted value. Returns a scipy-like OptimizeResult with the
    accepted point's etas as ``eta`` (also left in ``state["eta"]``)."""
    from scipy.optimize import OptimizeResult

    u = np.asarray(u0, float)
    f, g = evaluate(u, state["eta"])
    eta = state["eta"]
    if not np.isfinite(f):
        return OptimizeResult(x=u, fun=f, jac=g, nit=0, eta=eta, success=False,
                              message="the objective is not finite at the initial estimates")
    n = u.size

    def steepest(grad):  # the first step (and any restart) moves no coordinate by more than max_step
        return np.eye(n) * min(1.0, max_step / max(float(np.max(np.abs(grad))), 1e-12))

    h = steepest(g)
    message, success, nit = f"maximum number of iterations ({maxiter}) reached", False, 0
    for nit in range(1, maxiter + 1):
        if np.max(np.abs(g)) <= gtol:
            message, success, nit = "gradient below gtol", True, nit - 1
            break
        d = -h @ g
        if not (np.all(np.isfinite(d)) and float(g @ d) < 0):  # not a descent direction: steepest descent again
            h = steepest(g)
            d = -h @ g
        slope = float(g @ d)
        cap = max_step / max(float(np.max(np.abs(d))), 1e-300)
        tried: dict[bytes, tuple] = {}

        def at_point(x, anchor=eta):  # one evaluation per point
            x = np.asarray(x, float)
            key = x.tobytes()
            if key not in tried:
                fx, gx = evaluate(x, anchor)
                tried[key] = (fx, gx, state["eta"] if np.isfinite(fx) else None, x)
            return tried[key]

        def trial(alpha):
            return at_point(u + alpha * d)

        def sufficient(out):  # a step that rounds back to u is no decrease (it would repeat forever)
            alpha = float((out[3] - u) @ d) / float(d @ d)
            return np.isfinite(out[0]) and alpha > 0 and out[0] <= f + _ARMIJO * alpha * slope

        # Backtracking from the capped unit step to the first point with sufficient decrease
        # (Armijo), then, if that was the first step tried and the slope there is still steep
        # (the curvature condition not met), doubling it within the cap while the OFV keeps
        # falling: one evaluation per iteration when the quasi-Newton step is good, a few when it
        # is not. A strong-Wolfe search (scipy's) here spent more than 12 minutes of evaluations
        # in one iteration's zoom phase on every immunotherapy lesion: where a lesion's
        # conditional mode jumps, the slope along the line is not continuous and the curvature
        # condition may never be met.
        alpha = min(1.0, cap)
        accepted, first = None, True
        for _ in range(_MAX_BACKTRACKS + 1):
            out = trial(alpha)
            if sufficient(out):
                accepted = out
                break
            first = False
            if np.isfinite(out[0]):  # minimiser of the quadratic through f, the slope and f(alpha), in [0.1, 0.5] alpha
                a_q = -slope * alpha ** 2 / (2.0 * (out[0] - f - slope * alpha))
                alpha = float(np.clip(a_q, 0.1 * alpha, 0.5 * alpha))
            else:
                alpha *= 0.25
        if accepted is not None and first:
            for _ in range(_MAX_EXPANSIONS):
                if alpha >= cap or float(accepted[1] @ d) >= _CURVATURE * slope:
                    break
                alpha = min(2.0 * alpha, cap)
                out = trial(alpha)
                if not (sufficient(out) and out[0] < accepted[0]):
                    break
                accepted = out
        if accepted is None:
            message = f"line search found no sufficient decrease of the OFV in {_MAX_BACKTRACKS} step reductions"
            nit -= 1
            break
        f1, g1, eta1, u1 = accepted
        s_, y = u1 - u, g1 - g
        sy = float(s_ @ y)
        if sy > 1e-10 * np.linalg.norm(s_) * np.linalg.norm(y):
            rho = 1.0 / sy
            v = np.eye(n) - rho * np.outer(s_, y)
            h = v @ h @ v.T + rho * np.outer(s_, s_)
        u, f, g, eta = u1, f1, g1, eta1
        state["ofv"] = float(f)
        if callback is not None:
            callback(u)
    else:
        if np.max(np.abs(g)) <= gtol:
            message, success = "gradient below gtol", True
    state["eta"], state["ofv"] = eta, float(f)
    return OptimizeResult(x=u, fun=f, jac=g, nit=nit, eta=eta, success=success, message=message)


def fit(model: NLMEModel, data, *, initial: Mapping[str, float] | None = None, covariance: str | None = "sandwich",
        maxiter: int = 500, gtol: float = 1e-3, progress: bool = False, optimizer: str = "bfgs",
        max_step: float = 1.0) -> NLMEFit:
    """Estimate ``model`` on ``data`` (NONMEM layout: ID, TIME, AMT, DV, optional EVID/MDV and the
    model's covariate columns) by FOCE with interaction. See the module docstring.

    ``initial`` overrides initial values by parameter name (THETA names, ``OMEGA(a,b)``,
    ``SIGMA(...)``); ``covariance`` is ``"sandwich"`` (NONMEM's default), ``"R"``, ``"S"`` or
    ``None``; ``gtol`` is the largest |gradient| of the OFV on the unconstrained scale accepted as
    converged.

    ``optimizer``: ``"bfgs"`` is scipy's BFGS (Wolfe line search); every objective evaluation
    starts the conditional etas from the previous evaluation's, so where a subject's conditional
    density has two modes the OFV a line search sees can depend on the points tried before.
    ``"anchored"`` is a BFGS iteration of our own in which every trial point starts the
    conditional etas from those of the last accepted point and no step moves any coordinate of
    the unconstrained scale (logs of positive THETAs, logits of bounded ones, the log-Cholesky
    factor of OMEGA, logs of SIGMA) by more than ``max_step``; the line search backtracks to
    sufficient decrease (Armijo) and takes one evaluation per iteration where the quasi-Newton
    step is good. Within an iteration the objective is then a function of the parameters alone,
    and trial points stay near the modes they continue from. ``maxiter``: outer iterations at most (an integer >= 0).
    """
    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize

    if covariance not in ("sandwich", "R", "S", None):
        raise InputError(describe("covariance", covariance, "'sandwich', 'R', 'S' or None"))
    check_optimizer(optimizer, max_step)
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 0:
        raise InputError(describe("maxiter", maxiter, "an integer >= 0"))
    d = _prepare(model, data)
    eng = _engine(model)
    names = model.parameter_names()
    p0 = [t.initial for t in model.thetas]
    om0 = model.omega_matrix
    p0 += [om0[i, j] for i, j in eng.omega_index]
    p0 += list(model.sigma)
    p0 = np.asarray(p0, float)
    for k, v in (initial or {}).items():
        if k not in names:
            raise ParameterError(describe(f"initial[{k!r}]", v, f"one of the model's parameters {names}"))
        p0[names.index(k)] = float(v)
    try:
        u0 = eng.unconstrained(p0)
    except (ValueError, np.linalg.LinAlgError):
        raise ParameterError(describe("initial", dict(zip(names, p0.tolist())), "values inside the bounds and a"
                                      " positive-definite OMEGA")) from None
    jd = _device_data(d)
    n_sub, k = len(d.ids), len(model.etas)
    # "modes": the conditional etas found at each recently evaluated point (keyed by the point):
    # the final evaluation starts from those of the accepted point, not from the last trial
    # point's (a rejected line-search step), so it lands in the modes the optimizer accepted
    state = {"eta": jnp.zeros((n_sub, k)), "evals": 0, "inner_ok": True, "modes": {}}
    t0 = _time.perf_counter()

    def inner(p, eta0):
        return _conditional_modes(eng, p, eta0, jd)

    def at(p, eta0):
        """(OFV, its gradient in p, per-subject gradients, conditional etas, whether each
        subject's conditional mode was found) at p."""
        eta, gmax, local, found = inner(p, eta0)
        if not np.all(np.isfinite(gmax)):
            eta, gmax, local, found = inner(p, jnp.zeros((n_sub, k)))
        vals, jac = eng.values_and_jacobian(p, eta, local, jd)
        jac = np.asarray(jac)
        return float(np.sum(vals)), jac.sum(axis=0), jac, eta, found

    def fun(u):
        key = np.asarray(u, float).tobytes()
        if state.get("last", (None,))[0] == key:
            return state["last"][1]
        out = evaluate(u)
        state["last"] = (key, out)
        if np.isfinite(out[0]):
            state["modes"][key] = state["eta"]
            while len(state["modes"]) > _REMEMBERED_MODES:
                state["modes"].pop(next(iter(state["modes"])))
        return out

    def evaluate(u, eta_start=None):
        state["evals"] += 1
        u = jnp.asarray(u)
        val, gp, _, eta, _ = at(eng.natural_jit(u), state["eta"] if eta_start is None else eta_start)
        g = gp @ np.asarray(eng.natural_jacobian(u))
        if not (np.isfinite(val) and np.all(np.isfinite(g))):
            return np.inf, np.zeros_like(g)
        state["eta"] = eta
        state["ofv"] = float(val)
        return val, g

    bar = None
    if progress:  # a long fit says where it is: BFGS iterations with the current OFV (the first evaluation compiles)
        from tqdm.auto import tqdm

        bar = tqdm(total=maxiter, desc="FOCE-I (first step compiles)", unit="iteration")

    def advance(u):
        if bar is not None:
            bar.set_description("FOCE-I")
            bar.set_postfix(OFV=f"{state.get('ofv', float('nan')):.3f}", evaluations=state["evals"])
            bar.update(1)

    try:
        if optimizer == "anchored":
            res = _anchored_bfgs(evaluate, state, u0, gtol=gtol, maxiter=maxiter, max_step=float(max_step),
                                 callback=advance if bar is not None else None)
        else:
            # BFGS's first step is the negative gradient: on an OFV of thousands that moves parameters
            # by factors of e^100, where an ODE predictor takes its maximum steps. The first step is
            # scaled to move no parameter by more than 0.5 on the unconstrained (log) scale instead.
            g0 = fun(u0)[1]
            scale = min(1.0, 0.5 / max(float(np.max(np.abs(g0))), 1e-12)) if np.all(np.isfinite(g0)) else 1.0
            res = minimize(fun, u0, jac=True, method="BFGS",
                           options={"gtol": gtol, "maxiter": maxiter, "hess_inv0": scale * np.eye(u0.size)},
                           callback=advance if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    u_hat = res.x
    p_hat = np.asarray(eng.natural_jit(jnp.asarray(u_hat)))
    if optimizer == "anchored":
        eta_start = res.eta
    else:
        eta_start = state["modes"].get(np.asarray(u_hat, float).tobytes(), state["eta"])
    ofv, gp, gs, eta_hat, found = at(jnp.asarray(p_hat), eta_start)
    g = gp @ np.asarray(eng.natural_jacobian(jnp.asarray(u_hat)))
    elapsed = _time.perf_counter() - t0

    problems = []
    if not np.isfinite(ofv):
        problems.append("the objective is not finite at the estimate")
    worst = int(np.argmax(np.abs(g))) if g.size else 0
    if not np.all(np.abs(g) <= gtol):
        problems.append(f"largest |gradient| {abs(g[worst]):.3g} ({names[worst]}) above {gtol:g} after"
                        f" {res.nit} iterations ({res.message})")
    bad = np.flatnonzero(~found)
    if bad.size:
        problems.append(f"conditional etas not found for subject(s) {d.ids[bad].tolist()}")
    for i, t in enumerate(model.thetas):
        for b in (t.lower, t.upper):
            if math.isfinite(b) and abs(p_hat[i] - b) <= 1e-3 * max(abs(b), abs(p_hat[i]), 1e-8):
                problems.append(f"{t.name} = {p_hat[i]:.6g} is at its bound {b:g}")
    estimation_status = "converged" if not problems else "not converged: " + "; ".join(problems)

    cov = np.full((len(names), len(names)), np.nan)
    if covariance is None:
        covariance_status = "not requested"
    else:
        # NONMEM's R: half the Hessian of the OFV, by central differences of the exact gradient
        # (the conditional etas re-solved at each shifted point)
        hess = np.zeros((len(names), len(names)))
        for i in range(len(names)):
            step = _FD_STEP * max(abs(p_hat[i]), 1e-8)
            shifted = [at(jnp.asarray(p_hat + sgn * step * np.eye(len(names))[i]), eta_hat)[1] for sgn in (1, -1)]
            hess[i] = (shifted[0] - shifted[1]) / (2 * step)
        r = 0.25 * (hess + hess.T)
        s = 0.25 * gs.T @ gs  # NONMEM's S: sum of outer products of the subjects' log-likelihood gradients
        covariance_status = "ok"
        if not (np.all(np.isfinite(r)) and np.all(np.isfinite(s))):
            covariance_status = "covariance step failed: the R or S matrix is not finite"
        else:
            checks = {"R": r, "S": s} if covariance == "sandwich" else {covariance: r if covariance == "R" else s}
            rel = np.maximum(np.maximum(np.abs(p_hat), np.abs(p0)), 1e-8)
            for nm, m in checks.items():
                problem = _matrix_problem(nm, m, names, rel)
                if problem is not None:
                    covariance_status = "covariance step failed: " + problem
                    break
            if covariance_status == "ok":
                if covariance == "sandwich":
                    rinv = np.linalg.inv(r)
                    cov = rinv @ s @ rinv
                elif covariance == "R":
                    cov = np.linalg.inv(r)
                else:
                    cov = np.linalg.inv(s)
                cov = 0.5 * (cov + cov.T)
                if np.any(np.diag(cov) <= 0):
                    covariance_status = "covariance step failed: a variance of the estimates is not positive"
                    cov = np.full_like(cov, np.nan)

    ds = _dataset(model, eng, d, jd, names, p0, p_hat, eta_hat, ofv, cov)
    if covariance is not None:  # kept whether or not they inverted (NONMEM's $COV PRINT=R,S): a failed step can be read
        ds["r_matrix"] = (("parameter", "parameter_2"), r, {"long_name": "R: half the Hessian of the OFV (central"
                                                            " differences of its exact gradient)"})
        ds["s_matrix"] = (("parameter", "parameter_2"), s, {"long_name": "S: sum over subjects of the outer products of"
                                                            " their log-likelihood gradients"})
    ds.attrs.update({"model": model.name, "method": METHOD, "error_model": model.error,
                     "n_subjects": n_sub, "n_observations": int(d.mask.sum()),
                     "optimizer": OPTIMIZERS[optimizer] + ", gradients by JAX AD through the conditional etas"
                                  " (implicit function theorem)",
                     "iterations": int(res.nit), "objective_evaluations": int(state["evals"]), "elapsed_s": elapsed,
                     "max_step": float(max_step) if optimizer == "anchored" else "none (scipy BFGS)",
                     "covariance_matrix": {"sandwich": "R^-1 S R^-1", "R": "R^-1", "S": "S^-1", None: "none"}[covariance],
                     "estimation_status": estimation_status, "covariance_status": covariance_status,
                     "status": "", "ofv_convention": "-2 log-likelihood without the N log(2 pi) constant (NONMEM)"})
    if model.categorical_effects:  # read back by popfit.population_from_fit
        import json

        ds.attrs["categorical_effects"] = json.dumps([e.__dict__ for e in model.categorical_effects])
    if model.predictor_covariates:
        import json

        ds.attrs["predictor_covariates"] = json.dumps(list(model.predictor_covariates))
    out = NLMEFit(model, ds, estimation_status, covariance_status)
    ds.attrs["status"] = out.status
    return out


def _dataset(model, eng, d, jd, names, p0, p_hat, eta_hat, ofv, cov):
    import jax.numpy as jnp
    import xarray as xr

    p = jnp.asarray(p_hat)
    nt, no, ns = eng.sizes
    kind = ["theta"] * nt + ["omega"] * no + ["sigma"] * ns
    units = [t.unit for t in model.thetas] + ["1"] * (no + ns)
    se = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(se, se)
    theta, om, sig = eng.unpack(p)
    om = np.asarray(om)
    sub_ofv = np.asarray(eng.per_subject(p, eta_hat, jd))
    a = np.asarray(eng.fisher_all(p, eta_hat, jd))
    eta_cov = np.linalg.inv(a)  # conditional covariance of the etas (NONMEM's ETC)
    f_i, r_i = (np.asarray(x) for x in eng.fr_all(p, eta_hat, jd))
    zeros = jnp.zeros_like(eta_hat)
    f_0, _ = (np.asarray(x) for x in eng.fr_all(p, zeros, jd))
    g = np.asarray(eng.jac_all(p, eta_hat, jd))  # (S, O, k)
    eta = np.asarray(eta_hat)
    cwres = np.zeros_like(f_i)
    for s in range(len(d.ids)):
        m = d.mask[s]
        gs = g[s][m]
        c = gs @ om @ gs.T + np.diag(r_i[s][m])
        resid = d.y[s][m] - (f_i[s][m] - gs @ eta[s])
        w, v = np.linalg.eigh(c)
        cwres[s, m] = (v / np.sqrt(w)) @ v.T @ resid  # symmetric inverse square root
    m = d.mask
    rows = np.concatenate(d.rows)
    per_obs = {"ID": np.repeat(d.ids, m.sum(1)), "TIME": d.obs_t[m], "DV": d.y[m], "PRED": f_0[m], "IPRED": f_i[m],
               "RES": d.y[m] - f_0[m], "IRES": d.y[m] - f_i[m], "IWRES": (d.y[m] - f_i[m]) / np.sqrt(r_i[m]),
               "CWRES": cwres[m]}
    order = np.argsort(rows, kind="stable")
    du, tu = model.units.get("DV", ""), model.units.get("TIME", "")
    obs_attrs = {"ID": {"long_name": "subject identifier"}, "TIME": {"units": tu, "long_name": "time of the observation"},
                 "DV": {"units": du, "long_name": "observation"},
                 "PRED": {"units": du, "long_name": "population prediction (eta = 0)"},
                 "IPRED": {"units": du, "long_name": "individual prediction at the conditional etas"},
                 "RES": {"units": du, "long_name": "DV - PRED"}, "IRES": {"units": du, "long_name": "DV - IPRED"},
                 "IWRES": {"units": "1", "long_name": "(DV - IPRED) / residual SD at the conditional etas"},
                 "CWRES": {"units": "1", "long_name": "conditional weighted residual (Hooker et al. 2007, FOCE-I linearisation)"}}
    sd_eta = eta.std(axis=0)
    shrink = 100 * (1 - sd_eta / np.sqrt(np.diag(om)))
    shrink_var = 100 * (1 - eta.var(axis=0) / np.diag(om))
    iwres = per_obs["IWRES"]
    indiv = np.stack([np.asarray(eng.individual(theta, {c: jnp.asarray(v[s]) for c, v in d.cov.items()},
                                                jnp.asarray(eta[s]))[n]) for s in range(len(d.ids))
                      for n in model.parameters]).reshape(len(d.ids), len(model.parameters))
    etas = list(model.etas)
    ds = xr.Dataset(
        {"estimate": ("parameter", p_hat, {"long_name": "estimate (THETA in 'unit'; OMEGA and SIGMA as variances)"}),
         "initial": ("parameter", p0, {"long_name": "initial value"}),
         "se": ("parameter", se, {"long_name": "standard error from the covariance step (NaN: see covariance_status)"}),
         "rse": ("parameter", se / np.abs(p_hat), {"units": "1", "long_name": "relative standard error SE / |estimate|"}),
         "covariance": (("parameter", "parameter_2"), cov, {"long_name": "covariance matrix of the estimates"}),
         "correlation": (("parameter", "parameter_2"), corr, {"units": "1", "long_name": "correlation of the estimates"}),
         "ofv": ((), ofv, {"units": "1", "long_name": "objective function value, -2 log-likelihood without the N log(2 pi) constant"}),
         "subject_ofv": ("subject", sub_ofv, {"units": "1", "long_name": "each subject's contribution to the OFV"}),
         "ebe": (("subject", "eta"), eta, {"units": "1", "long_name": "empirical Bayes estimate (conditional mode) of eta"}),
         "ebe_covariance": (("subject", "eta", "eta_2"), eta_cov,
                            {"units": "1", "long_name": "conditional covariance of eta (inverse first-order Hessian)"}),
         "individual": (("subject", "individual_parameter"), indiv,
                        {"long_name": "individual parameter at the empirical Bayes estimate (units in 'individual_unit')"}),
         "eta_shrinkage_sd": ("eta", shrink, {"units": "%", "long_name": "eta shrinkage, 1 - SD(EBE) / omega (SD scale)"}),
         "eta_shrinkage_var": ("eta", shrink_var, {"units": "%", "long_name": "eta shrinkage, 1 - var(EBE) / omega^2"}),
         "eps_shrinkage_sd": ((), 100 * (1 - np.sqrt(np.mean(iwres**2))),
                              {"units": "%", "long_name": "epsilon shrinkage, 1 - SD(IWRES) about 0 (NONMEM's EPSSHRINKSD)"}),
         **{k: ("observation", np.asarray(v)[order], obs_attrs[k]) for k, v in per_obs.items()},
         **{f"covariate_{c}": ("subject", np.asarray(v), {"units": model.units.get(c, ""), "long_name": f"covariate {c}"})
            for c, v in d.cov.items()}},
        coords={"parameter": names, "parameter_2": names, "kind": ("parameter", kind), "unit": ("parameter", units),
                "subject": d.ids, "eta": etas, "eta_2": etas, "individual_parameter": list(model.parameters),
                "individual_unit": ("individual_parameter", [model.units.get(n, "") for n in model.parameters]),
                "observation": ("observation", np.sort(rows), {"long_name": "row of the input data"})})
    return ds
