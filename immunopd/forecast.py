"""Precision dosing for one patient: the posterior of their parameters from early scans, and forecasts
under candidate regimens (model-informed precision dosing with the mechanistic model).

The population model of :mod:`immunopd.popfit` (typical values, OMEGA and SIGMA of a FOCE-I fit)
is the prior. Given one lesion's (or one patient's SLD) scans under the regimen given so far,

1. :func:`posterior` conditions it on those scans: ``method="laplace"`` is the MAP (NONMEM's
   POSTHOC, :func:`immunopd.nlme.map_estimates`) with the Laplace approximation of the posterior
   (a normal at the mode with the inverse first-order Hessian as covariance); ``method="nuts"``
   samples the full posterior with NumPyro's NUTS over the same JAX model, gradients through the
   ODE solver (R-hat, bulk ESS and divergences are reported; a run that fails them has status
   "not converged", never silent numbers);
2. :func:`forecast` simulates every posterior draw under each candidate regimen (the regimen
   given so far up to the decision day, then the candidate) and reports, per regimen, the
   probability of response (a % change <= -30 % from the baseline scan) and of progression
   (>= +20 % and >= 5 mm above the nadir; RECIST 1.1) by ``at_day`` and the % change at
   ``at_day``, with the paired difference to the first candidate and its credible interval.
   The result is an ArviZ ``InferenceData`` (posterior, posterior_predictive, observed_data,
   constant_data, and a ``forecast`` group with the endpoint table).

Conventions:

- time is days since the first dose (day 0); the first scan is the baseline, at or before day 0,
  and the model starts from it at day 0 (as the population model was fitted); every later scan
  is after day 0;
- sizes are longest diameters (or sums of them, SLD) in mm; a later scan may be 0 mm (a lesion
  that disappeared) but the baseline must be positive;
- endpoints are read on the latent (error-free) trajectory on a weekly grid; the fan chart and
  predictive intervals include the residual error of the population model.

The covariates a forecast uses: ``body_weight`` (kg) and ``body_surface_area`` (m2) dose mg/kg
and mg/m2 regimens and enter the drugs' PK; ``infiltration`` ``"hot"``/``"cold"`` sets the
model's ``tcell_exclusion`` (0, or 0.9 as :class:`immunopd.population.Covariates` gives cold
tumors; the shipped prior was fitted without it). ``baseline_sclever1`` (ng/mL) sets the
patient's ``sclever1_release`` (a fixed individual parameter, no eta): the release that makes
the model's pre-treatment plasma sClever-1, at the prior's typical parameters and the patient's
baseline volume, equal the measurement (found by fixed-point steps on the level's excess over
``sclever1_healthy``). Through ``sclever1_suppression`` it then weakens the patient's effectors
in the posterior and in every forecast. This is the model's assumption, not an estimate: the
prior was fitted to diameters only (no sClever-1 in its data), and the ng/mL scale, the release
and the suppression per ng/mL are assumed (README, "What is assumed").
"""

from __future__ import annotations

import dataclasses
import math
import os
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, describe

__all__ = ["Scans", "Prior", "individualize", "read_scans", "scans_from_arrays", "load_prior", "shipped_priors", "DEFAULT_PRIOR", "compose_regimen",
           "posterior", "forecast", "forecast_table", "plot_forecast", "COVARIATES"]

_PRIORS = Path(__file__).with_name("priors")
#: the prior shipped with the package (bench/forecast_prior.py writes it)
DEFAULT_PRIOR = _PRIORS / "laleh2022_immunotherapy.nc"


def shipped_priors() -> dict:
    """The priors shipped in ``immunopd/priors`` by the arm of data/laleh2022 they were fitted to
    (``laleh2022_<arm>.nc``, written by bench/forecast_prior.py): ``{arm: path}``."""
    return {f.stem.split("_", 1)[1]: f for f in sorted(_PRIORS.glob("laleh2022_*.nc"))}

#: covariates a forecast accepts: name -> (unit, what it does)
COVARIATES: dict[str, tuple[str, str]] = {
    "body_weight": ("kg", "doses mg/kg regimens; drugs' PK covariate"),
    "body_surface_area": ("m2", "doses mg/m2 regimens; PK covariate of the drugs whose clearance scales with it"),
    "infiltration": ("hot|cold", "cold sets tcell_exclusion = 0.9 (T-cell influx cut 10x)"),
    "baseline_sclever1": ("ng/mL", "sets sclever1_release so the model's baseline plasma sClever-1 equals it (an assumed effect:"
                                   " no sClever-1 in the prior's data)"),
}
COLD_EXCLUSION = 0.9  # as immunopd.population.Covariates.cold_exclusion
RESPONSE_PCT = -30.0  # RECIST 1.1 partial response: >= 30 % decrease from baseline
PROGRESSION_PCT = 20.0  # RECIST 1.1 progression: >= 20 % above the nadir ...
PROGRESSION_MM = 5.0  # ... and >= 5 mm absolute increase
#: tidy CSV column names (unit in the name) -> factor to the internal unit (day, mm)
TIME_COLUMNS = {"time_day": 1.0, "day": 1.0, "time_week": 7.0, "week": 7.0}
SIZE_COLUMNS = {"sld_mm": ("diameter", 1.0), "diameter_mm": ("diameter", 1.0), "size_mm": ("diameter", 1.0),
                "sld_cm": ("diameter", 10.0), "diameter_cm": ("diameter", 10.0), "volume_mm3": ("volume", 1.0)}
NONMEM_TIME_UNITS = {"day": 1.0, "week": 7.0, "h": 1.0 / 24.0}
NONMEM_SIZE_UNITS = {"mm": ("diameter", 1.0), "cm": ("diameter", 10.0), "mm3": ("volume", 1.0)}


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Scans:
    """One patient's scans: ``time_day`` (n,) days since the first dose, the first at day 0 (the
    baseline, moved there from at or before day 0); ``size_mm`` (n,) longest diameter / SLD in
    mm; ``rows`` (n,) the rows they came from (1 = the first data row) for messages."""

    time_day: np.ndarray
    size_mm: np.ndarray
    rows: np.ndarray
    source: str = "arrays"
    baseline_day: float = 0.0

    def first(self, k: int) -> "Scans":
        """The first ``k`` scans (the baseline and k - 1 on treatment)."""
        return dataclasses.replace(self, time_day=self.time_day[:k], size_mm=self.size_mm[:k], rows=self.rows[:k])


def _check_scans(t, y, rows, where: str, time_col: str, size_col: str, raw_t=None, raw_y=None) -> Scans:
    """``raw_t``/``raw_y``: the file's cells before conversion, so that a message names the text
    the user typed ('12 mm') rather than the NaN it became."""
    t = np.asarray(t, float)
    y = np.asarray(y, float)

    def shown(raw, values, i):
        """The cell as the file holds it (text as typed, a number as a float, in the column's own
        unit), else the converted value."""
        if raw is None:
            return float(values[i])
        return raw[i] if isinstance(raw[i], str) else float(raw[i])

    for i in range(t.size):
        if not np.isfinite(t[i]):
            raise InputError(describe(f"{where} row {rows[i]}, column {time_col}", shown(raw_t, t, i), "a finite time"))
        if not np.isfinite(y[i]) or y[i] < 0:
            raise InputError(describe(f"{where} row {rows[i]}, column {size_col}", shown(raw_y, y, i), "a finite size >= 0"))
    if t.size and y[0] <= 0:
        raise InputError(describe(f"{where} row {rows[0]}, column {size_col}", float(y[0]),
                                  "a positive baseline size (the first scan sets the model's baseline volume)"))
    for i in range(1, t.size):
        if t[i] <= t[i - 1]:
            raise InputError(describe(f"{where} row {rows[i]}, column {time_col}", float(t[i]),
                                      f"a time after the previous scan's ({t[i - 1]:g}, row {rows[i - 1]}): scans in time order,"
                                      " one per time"))
    if t.size and t[0] > 0:
        raise InputError(describe(f"{where} row {rows[0]}, column {time_col}", float(t[0]),
                                  "a baseline scan at or before the first dose (day 0): the model starts at treatment start"))
    for i in range(1, t.size):
        if t[i] <= 0:
            raise InputError(describe(f"{where} row {rows[i]}, column {time_col}", float(t[i]),
                                      "a scan after the first dose (day 0): only the first scan (the baseline) may be at or before"
                                      " it, since the model starts at treatment start"))
    base = float(t[0]) if t.size else 0.0
    t = t.copy()
    if t.size:
        t[0] = 0.0
    return Scans(t, y, np.asarray(rows), where, base)


def scans_from_arrays(time_day, size_mm) -> Scans:
    """:class:`Scans` from arrays (days since the first dose; mm), checked as :func:`read_scans` does."""
    t = np.atleast_1d(np.asarray(time_day, float))
    y = np.atleast_1d(np.asarray(size_mm, float))
    if t.shape != y.shape or t.ndim != 1:
        raise InputError(describe("size_mm", y.shape, f"one size per time (times have shape {t.shape})"))
    return _check_scans(t, y, np.arange(1, t.size + 1), "scans", "time_day", "size_mm")


def read_scans(path, *, time_unit: str | None = None, size_unit: str | None = None, patient=None) -> Scans:
    """Read one patient's scans from a CSV file (or a pandas DataFrame).

    Tidy layout: a time column named with its unit (``time_day``, ``day``, ``time_week``,
    ``week``: since the first dose) and a size column named with its unit (``sld_mm``,
    ``diameter_mm``, ``size_mm``, ``sld_cm``, ``diameter_cm`` or ``volume_mm3``, a volume turned
    into the diameter of a sphere). NONMEM layout: ``ID``, ``TIME``, ``DV`` (rows with ``MDV`` = 1
    or ``EVID`` != 0 are not scans), with ``time_unit`` (day, week, h) and ``size_unit`` (mm, cm,
    mm3) required since the file does not say; ``patient`` picks an ID when there are several.
    Rows are numbered from 1 (the first data row) in messages.
    """
    import pandas as pd

    where = str(path) if not isinstance(path, pd.DataFrame) else "scans"
    if isinstance(path, pd.DataFrame):
        df = path.reset_index(drop=True)
    else:
        if not os.path.isfile(path):
            raise InputError(describe("scans", str(path), "an existing CSV file"))
        try:
            df = pd.read_csv(path)
        except Exception as exc:  # noqa: BLE001 - pandas raises many kinds; the message names the file
            raise InputError(describe("scans", str(path), f"a readable CSV file ({type(exc).__name__}: {exc})")) from None
    cols = {c.strip(): c for c in df.columns}
    rows = np.arange(1, len(df) + 1)
    if {"TIME", "DV"} <= set(cols):
        if time_unit not in NONMEM_TIME_UNITS:
            raise InputError(describe("time_unit", time_unit, f"one of {list(NONMEM_TIME_UNITS)} (a NONMEM-style file does not say"
                                      " its units)"))
        if size_unit not in NONMEM_SIZE_UNITS:
            raise InputError(describe("size_unit", size_unit, f"one of {list(NONMEM_SIZE_UNITS)} (a NONMEM-style file does not say"
                                      " its units)"))
        keep = np.ones(len(df), bool)
        if "ID" in cols:
            ids = df[cols["ID"]].to_numpy()
            uniq = list(dict.fromkeys(ids.tolist()))
            if patient is None and len(uniq) > 1:
                raise InputError(describe("patient", None, f"one of the file's IDs {uniq[:10]} (it holds {len(uniq)} patients)"))
            if patient is not None:
                match = [u for u in uniq if str(u) == str(patient)]
                if not match:
                    raise InputError(describe("patient", patient, f"one of the file's IDs {uniq[:10]}"))
                keep &= np.array([str(i) == str(patient) for i in ids])
        if "MDV" in cols:
            keep &= df[cols["MDV"]].to_numpy() == 0
        if "EVID" in cols:
            keep &= df[cols["EVID"]].to_numpy() == 0
        t = pd.to_numeric(df[cols["TIME"]], errors="coerce").to_numpy(float) * NONMEM_TIME_UNITS[time_unit]
        kind, factor = NONMEM_SIZE_UNITS[size_unit]
        y = pd.to_numeric(df[cols["DV"]], errors="coerce").to_numpy(float)
        raw_t, raw_y = df[cols["TIME"]].to_numpy(object)[keep], df[cols["DV"]].to_numpy(object)[keep]
        t, y, rows, time_col, size_col = t[keep], y[keep], rows[keep], "TIME", "DV"
    else:
        if time_unit is not None or size_unit is not None:
            raise InputError(describe("time_unit/size_unit", (time_unit, size_unit),
                                      "None for a tidy file: its column names carry the units"))
        tcols = [c for c in cols if c.lower() in TIME_COLUMNS]
        scols = [c for c in cols if c.lower() in SIZE_COLUMNS]
        if len(tcols) != 1:
            raise InputError(describe(f"{where} time column", sorted(cols), f"exactly one of {list(TIME_COLUMNS)} (the unit is part of"
                                      " the name), or a NONMEM-style file with TIME and DV"))
        if len(scols) != 1:
            raise InputError(describe(f"{where} size column", sorted(cols), f"exactly one of {list(SIZE_COLUMNS)} (the unit is part"
                                      " of the name), or a NONMEM-style file with TIME and DV"))
        time_col, size_col = tcols[0], scols[0]
        kind, factor = SIZE_COLUMNS[size_col.lower()]
        t = pd.to_numeric(df[cols[time_col]], errors="coerce").to_numpy(float) * TIME_COLUMNS[time_col.lower()]
        y = pd.to_numeric(df[cols[size_col]], errors="coerce").to_numpy(float)
        raw_t, raw_y = df[cols[time_col]].to_numpy(object), df[cols[size_col]].to_numpy(object)
    if kind == "volume":
        bad = ~np.isfinite(y) | (y < 0)
        y = np.where(bad, y, np.cbrt(6.0 / math.pi * np.where(bad, 1.0, y)))
    else:
        y = y * factor
    if t.size == 0:
        raise InputError(describe(f"{where} scans", 0, "at least one scan row"))
    return _check_scans(t, y, rows, where, time_col, size_col, raw_t, raw_y)


def _check_covariates(covariates: Mapping | None) -> dict:
    out = {}
    for name, value in dict(covariates or {}).items():
        if name not in COVARIATES:
            raise InputError(describe("covariates", name, f"one of {list(COVARIATES)} (units: "
                                      + ", ".join(f"{k} {u}" for k, (u, _) in COVARIATES.items()) + ")"))
        if name == "infiltration":
            if value not in ("hot", "cold"):
                raise InputError(describe("covariates.infiltration", value, "'hot' or 'cold'"))
            out[name] = value
            continue
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise InputError(describe(f"covariates.{name}", value, f"a number in {COVARIATES[name][0]}")) from None
        if not np.isfinite(v) or v <= 0:
            raise InputError(describe(f"covariates.{name}", value, f"a finite number > 0 ({COVARIATES[name][0]})"))
        out[name] = v
    return out


# ----------------------------------------------------------------------------- the prior
@dataclass(frozen=True)
class Prior:
    """A population model as a prior: the FOCE-I estimates (``estimates``: THETA/OMEGA/SIGMA by
    name), the individual parameters (``free``) and those with etas (``etas``), ``omega`` (k, k),
    the residual error (combined: ``sigma`` = (proportional, additive mm^2) variances), the model's
    growth law, the fit's description and the IDs of the lesions it was fitted to (``training_subjects``:
    never score a forecast on them)."""

    estimates: dict
    free: tuple
    etas: tuple
    omega: np.ndarray
    sigma: tuple
    growth_law: str
    description: str
    source: str
    training_subjects: tuple = ()
    status: str = "?"  # the population fit's status ("converged", or "not converged: ..." / "covariance step failed: ...")

    def typical(self, baseline_mm: float) -> dict:
        """Typical individual parameters of a lesion whose baseline scan is ``baseline_mm``."""
        from .popfit import RELATIVE_TO_BASEVOL, _theta_name

        basevol = math.pi / 6.0 * baseline_mm**3
        out = {}
        for name in self.free:
            theta = self.estimates[_theta_name(name)]
            out[name] = theta * basevol if name in RELATIVE_TO_BASEVOL else theta
        return out


def load_prior(path=None) -> Prior:
    """The prior from a population fit written by ``immunopd popfit --out`` (a mechanistic fit),
    or a shipped prior by its arm name (:func:`shipped_priors`); default :data:`DEFAULT_PRIOR`."""
    import xarray as xr

    shipped = shipped_priors()
    if path is None:
        path = DEFAULT_PRIOR
    elif str(path) in shipped:
        path = shipped[str(path)]
    if not Path(path).is_file():
        raise InputError(describe("prior", str(path), "an existing netCDF file written by `immunopd popfit --out`, or a shipped "
                                  f"prior: {sorted(shipped)}"))
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    if ds.attrs.get("kind") != "popfit" or "individual_parameter" not in ds.coords or "baseline_tumor_volume" not in \
            [str(x) for x in ds.individual_parameter.values]:
        raise InputError(describe("prior", str(path), "a mechanistic population fit (`immunopd popfit --model mechanistic --out`)"))
    est = {str(k): float(v) for k, v in zip(ds.parameter.values, ds.estimate.values)}
    etas = tuple(str(x) for x in ds.eta.values)
    k = len(etas)
    om = np.array([[est.get(f"OMEGA({a},{b})", est.get(f"OMEGA({b},{a})", 0.0)) for b in etas] for a in etas]).reshape(k, k)
    if ds.attrs.get("categorical_effects"):
        raise InputError(describe("prior", str(path), "a population fit without covariate effects (`popfit --covariate`):"
                                  " a forecast would take every patient at the reference level"))
    if ds.attrs.get("error_model") != "combined":
        raise InputError(describe("prior error model", ds.attrs.get("error_model"), "'combined' (what popfit fits)"))
    sigma = (est["SIGMA(proportional)"], est["SIGMA(additive)"])
    law = "gompertz"
    model_text = str(ds.attrs.get("model", ""))
    if "(" in model_text:
        law = model_text.split("(", 1)[1].split(")", 1)[0]
    desc = (f"FOCE-I fit of {int(ds.attrs.get('n_subjects', 0))} lesions, OFV {float(ds.ofv):.2f}; {model_text}; status: "
            f"{ds.attrs.get('status', '?')}")
    if "prior_training" in ds.attrs:
        desc += f"; trained on {ds.attrs['prior_training']}"
    subjects = tuple(str(x) for x in ds.subject.values) if "subject" in ds.coords else ()
    return Prior(est, tuple(str(x) for x in ds.individual_parameter.values), etas, om, sigma, law, desc, str(path), subjects,
                 str(ds.attrs.get("status", "?")))


# ----------------------------------------------------------------------------- regimens
def _truncate(series, day: float):
    """The doses of ``series`` planned before ``day`` (a series with none is dropped)."""
    out = []
    for s in series:
        if s.interval is None:
            if s.start < day:
                out.append(s)
            continue
        n_max = s.count if s.count is not None else max(0, math.ceil((day - s.start) / s.interval)) + 1
        planned = s.start + s.interval * np.arange(n_max)
        for k, days in s.delays:
            planned[k - 1:] += days
        n = int(np.sum(planned < day))
        if n == 0:
            continue
        out.append(dataclasses.replace(s, count=n, skip=tuple(k for k in s.skip if k <= n),
                                       delays=tuple((k, d) for k, d in s.delays if k <= n)))
    return tuple(out)


def compose_regimen(given, candidate: str, decision_day: float):
    """The whole course of one candidate: ``given`` (regimen text or :class:`Regimen`, from day 0)
    up to ``decision_day``, then ``candidate``:

    - ``"continue"``: the given regimen goes on unchanged;
    - ``"stop"``: no dose from ``decision_day`` on; ``"stop at day N"`` / ``"stop at week N"``:
      the given regimen goes on until day N since the first dose (e.g. stopping after 1 or 2 years);
    - ``"continue + <regimen>"``: the given regimen goes on and ``<regimen>`` is added from
      ``decision_day`` (e.g. ``"continue + bexmarilimab 1 mg/kg q3w"``);
    - any other text is a regimen (grammar of :mod:`immunopd.dosing`) replacing the given one from
      ``decision_day`` (its ``from day`` counts from the decision day).
    """
    from .dosing import Regimen
    from .errors import RegimenError

    given = Regimen.parse(given) if isinstance(given, str) else given
    if not isinstance(candidate, str) or not candidate.strip():
        raise InputError(describe("regimen", candidate, "'continue', 'stop', 'stop at day N', 'continue + <regimen>' or regimen text"))
    text = " ".join(candidate.lower().split())
    if text == "continue":
        return Regimen(given.series, text=f"{given.describe()} (continued)")
    if text == "stop":
        text = f"stop at day {decision_day:g}"
    if text.startswith("stop at "):
        words = text.split()
        try:
            value = float(words[3])
            unit = words[2]
            if len(words) != 4 or unit not in ("day", "week"):
                raise ValueError
        except (ValueError, IndexError):
            raise InputError(describe("regimen", candidate, "'stop at day N' or 'stop at week N'")) from None
        stop_day = value * (7.0 if unit == "week" else 1.0)
        if stop_day < decision_day:
            raise InputError(describe("regimen", candidate, f"a stop on or after the decision day ({decision_day:g}): the scans already"
                                      " saw the doses before it"))
        return Regimen(_truncate(given.series, stop_day), text=f"{given.describe()} until day {stop_day:g}")
    keep = given.series if text.startswith("continue +") else _truncate(given.series, decision_day)
    body = candidate.split("+", 1)[1] if text.startswith("continue +") else candidate
    try:
        new = Regimen.parse(body.strip())
    except RegimenError as exc:
        raise InputError(describe("regimen", candidate, f"a candidate regimen ({exc})")) from None
    shifted = tuple(dataclasses.replace(s, start=s.start + decision_day) for s in new.series)
    label = (f"{given.describe()} + {new.describe()} from day {decision_day:g}" if text.startswith("continue +")
             else f"{given.describe()} until day {decision_day:g}, then {new.describe()}")
    return Regimen(keep + shifted, text=label)


# ----------------------------------------------------------------------------- the posterior
_MODELS: dict = {}


def _fixed_params(covariates: dict) -> dict:
    fixed = {k: covariates[k] for k in ("body_weight", "body_surface_area") if k in covariates}
    if covariates.get("infiltration") == "cold":
        fixed["tcell_exclusion"] = COLD_EXCLUSION
    return fixed


SCLEVER1_PARAMETER = "sclever1_release"
_SCLEVER1_RTOL = 1e-6  # relative mismatch of the model's baseline sClever-1 to the measurement
_SCLEVER1_ITERATIONS = 30


def individualize(prior: Prior, covariates: Mapping | None, baseline_mm: float) -> Prior:
    """``prior`` with the patient's ``sclever1_release`` as a fixed individual parameter (no eta)
    when ``covariates`` has ``baseline_sclever1`` (ng/mL); otherwise ``prior`` itself.

    The release is the one at which the model's pre-treatment plasma sClever-1, at the prior's
    typical parameters, the patient's baseline volume (from ``baseline_mm``) and fixed covariates,
    equals the measurement: the excess of that level over ``sclever1_healthy`` is proportional to
    the release up to sClever-1's own feedback, so each step scales the release by the ratio of
    the wanted to the current excess until they agree to :data:`_SCLEVER1_RTOL`. A prior that
    already carries it is returned as it is."""
    from .popfit import _theta_name
    from .solve import resolve_model, simulate

    cov = _check_covariates(covariates)
    if "baseline_sclever1" not in cov or SCLEVER1_PARAMETER in prior.free:
        return prior
    measured = cov["baseline_sclever1"]
    model = resolve_model(None, prior.growth_law)
    healthy = float(model.parameters["sclever1_healthy"].default)
    if measured <= healthy:
        raise InputError(describe("covariates.baseline_sclever1", measured,
                                  f"a level above the model's tumor-free plasma sClever-1, sclever1_healthy = {healthy:g} ng/mL"
                                  " (assumed; the release is set from the excess over it)"))
    params = {k: float(v) for k, v in prior.typical(float(baseline_mm)).items()} | _fixed_params(cov)
    upper = float(model.parameters[SCLEVER1_PARAMETER].upper)

    def level(release):
        ds = simulate(None, params | {SCLEVER1_PARAMETER: release}, times=[0.0, 1.0], model=model, outputs=("sclever1_plasma",))
        return float(np.asarray(ds["sclever1_plasma"].values).reshape(-1)[0])

    # the excess over the healthy level is proportional to the release times the macrophages' IFN-driven
    # boost, and sClever-1 feeds back (weaker effectors, less IFN): fixed-point steps on that ratio
    release = float(model.parameters[SCLEVER1_PARAMETER].default)
    typical_level = current = level(release)
    for _ in range(_SCLEVER1_ITERATIONS):
        if not np.isfinite(current) or current <= healthy:
            raise InputError(describe("covariates.baseline_sclever1", measured, "a model whose baseline sClever-1 is above "
                                      f"sclever1_healthy (the typical patient's is {typical_level:g} ng/mL)"))
        if abs(current - measured) <= _SCLEVER1_RTOL * measured:
            break
        release *= (measured - healthy) / (current - healthy)
        if release > upper:
            raise InputError(describe("covariates.baseline_sclever1", measured, "a level the model reaches with sclever1_release"
                                      f" <= {upper:g} ng/mL/(1e6 cells day) (its bound; the typical patient's level is"
                                      f" {typical_level:.3g} ng/mL)"))
        current = level(release)
    else:
        raise InputError(describe("covariates.baseline_sclever1", measured, f"a level the model's baseline reaches (after"
                                  f" {_SCLEVER1_ITERATIONS} steps it was {current:.6g} ng/mL)"))
    return dataclasses.replace(prior, free=tuple(prior.free) + (SCLEVER1_PARAMETER,),
                               estimates=dict(prior.estimates) | {_theta_name(SCLEVER1_PARAMETER): release})


def _nlme_model(prior: Prior, regimen, covariates: dict, horizon: float):
    """The nlme model of ``prior`` on ``regimen`` (cached: a warm forecast reuses its compilations)."""
    from .popfit import mechanistic_nlme_model
    from .solve import resolve_model

    fixed = _fixed_params(covariates)
    key = (prior.source, tuple(prior.free), tuple(prior.etas), prior.growth_law, regimen.describe(), tuple(sorted(fixed.items())),
           float(horizon))
    hit = _MODELS.get(key)
    if hit is None:
        hit = mechanistic_nlme_model(regimen, prior.free, model=resolve_model(None, prior.growth_law), random=prior.etas,
                                     params=fixed or None, horizon=float(horizon))
        _MODELS[key] = hit
    return hit


def _data_of(scans: Scans):
    import pandas as pd

    return pd.DataFrame({"ID": "patient", "TIME": scans.time_day, "AMT": 0.0, "DV": scans.size_mm,
                         "BASEVOL": math.pi / 6.0 * float(scans.size_mm[0]) ** 3})


def _individual(prior: Prior, typical: dict, eta):
    """Individual parameters (draws, P) in the order of ``prior.free`` from etas (draws, k)."""
    eta = np.atleast_2d(eta)
    cols = []
    for name in prior.free:
        v = np.full(eta.shape[0], typical[name])
        if name in prior.etas:
            v = v * np.exp(eta[:, prior.etas.index(name)])
        cols.append(v)
    return np.stack(cols, axis=1)


def posterior(scans: Scans, given, *, prior: Prior | None = None, covariates: Mapping | None = None,
              method: str = "laplace", draws: int = 1000, chains: int = 4, warmup: int = 500, seed: int = 0,
              min_scans: int = 2, horizon: float = 2000.0) -> dict:
    """The posterior of one patient's etas given ``scans`` under ``given`` (regimen from day 0).

    Returns a dict: ``eta`` (chains, draws, k), ``individual`` (chains, draws, P), ``mode`` (k,)
    and ``mode_covariance`` (k, k) (the Laplace approximation), ``method``, ``status``
    ("converged" or "not converged: ..."), ``diagnostics`` (NUTS: r_hat, ess_bulk per eta,
    divergences, mean_leapfrog_steps, mean_accept_prob, threads), ``elapsed_s``, ``typical`` and the nlme model used.
    """
    from . import nlme

    if method not in ("laplace", "nuts"):
        raise InputError(describe("method", method, "'laplace' (MAP + Laplace) or 'nuts' (NumPyro NUTS)"))
    for field, value, low in (("draws", draws, 4), ("chains", chains, 1), ("warmup", warmup, 1), ("min_scans", min_scans, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InputError(describe(field, value, f"an integer >= {low}"))
    if not isinstance(scans, Scans):
        raise InputError(describe("scans", type(scans).__name__, "Scans (read_scans or scans_from_arrays)"))
    if scans.time_day.size < min_scans:
        raise InputError(describe(f"{scans.source} scans", int(scans.time_day.size),
                                  f"at least {min_scans} scans (the baseline and {min_scans - 1} on treatment) for a forecast"))
    prior = load_prior() if prior is None else prior
    cov = _check_covariates(covariates)
    from .dosing import Regimen

    given = Regimen.parse(given) if isinstance(given, str) else given
    t0 = _time.perf_counter()
    prior = individualize(prior, cov, float(scans.size_mm[0]))
    model = _nlme_model(prior, given, cov, horizon)
    typical = prior.typical(float(scans.size_mm[0]))
    mp = nlme.map_estimates(model, _data_of(scans), prior.estimates)
    mode = mp.ebe.values[0]
    mode_cov = mp.ebe_covariance.values[0]
    found = bool(mp.map_found.values[0])
    rng = np.random.default_rng(seed)
    out = {"mode": mode, "mode_covariance": mode_cov, "typical": typical, "model": model, "method": method,
           "map_found": found, "diagnostics": {}}
    if method == "laplace":
        eta = rng.multivariate_normal(mode, mode_cov, size=int(draws))[None]
        status = "converged" if found else "not converged: the MAP (conditional mode) was not found"
    else:
        eta, diag = _nuts(prior, model, scans, typical, mode, int(draws), int(chains), int(warmup), seed)
        out["diagnostics"] = diag
        problems = []
        if diag["divergences"]:
            problems.append(f"{diag['divergences']} divergent transitions")
        if np.nanmax(diag["r_hat"]) > 1.01 or not np.all(np.isfinite(diag["r_hat"])):
            problems.append(f"R-hat up to {np.nanmax(diag['r_hat']):.3f} (> 1.01)")
        min_ess = 100 * int(chains)
        if np.nanmin(diag["ess_bulk"]) < min_ess or not np.all(np.isfinite(diag["ess_bulk"])):
            problems.append(f"bulk ESS down to {np.nanmin(diag['ess_bulk']):.0f} (< {min_ess})")
        status = "converged" if not problems else "not converged: " + "; ".join(problems)
    out["eta"] = eta
    out["individual"] = _individual(prior, typical, eta.reshape(-1, eta.shape[-1])).reshape(*eta.shape[:2], len(prior.free))
    out["status"] = status
    out["elapsed_s"] = _time.perf_counter() - t0
    return out


#: compiled NUTS runs by (model, prior shape, scans, settings); at most _NUTS_CACHE_SIZE, the
#: oldest dropped first: each holds its model and a compiled program, so a long session that
#: forecasts for many models would otherwise keep them all
_NUTS_RUNNERS: dict = {}
_NUTS_CACHE_SIZE = 16
#: NUTS settings of `posterior(method='nuts')`
NUTS_SETTINGS = {"dense_mass": True, "target_accept_prob": 0.8}


#: chains per compiled call: fixed, so that a seed gives the same draws on any machine (the
#: number of cores only decides how many calls run at once)
CHAINS_PER_CALL = 2


def _nuts_runner(model, prior: Prior, n_obs: int, warmup: int, draws: int, per_call: int):
    """The compiled ``run(keys (C, 2), z0 (C, k), data) -> (z (C, draws, k), diverging, num_steps,
    accept_prob)`` of ``per_call`` vectorized NUTS chains on ``model``, cached per model, prior
    structure, scan count, lengths and settings: a new patient with as many scans reuses the
    compilation (the patient's scans, typical values, OMEGA's Cholesky factor and SIGMA are
    arguments, not constants).

    NumPyro's functional ``hmc`` API (not ``MCMC``): no effect-handler stack, and the program is
    compiled here, in the calling thread (``hmc`` keeps trace-time settings in closures), so the
    worker threads only execute it."""
    settings = dict(NUTS_SETTINGS)
    key = (id(model), tuple(prior.free), tuple(prior.etas), n_obs, warmup, draws, per_call, tuple(sorted(settings.items())))
    hit = _NUTS_RUNNERS.get(key)
    if hit is not None and hit[0] is model:
        _remember_runner(key, model, hit[1])
        return hit[1]
    import jax
    import jax.numpy as jnp
    from numpyro.infer.hmc import hmc

    which = np.array([prior.etas.index(n) if n in prior.etas else -1 for n in prior.free])
    has_eta, index = jnp.asarray(which >= 0), jnp.asarray(np.maximum(which, 0))
    forward = getattr(model.predict, "forward", model.predict)
    free = tuple(prior.free)
    k = len(prior.etas)

    def potential_gen(ts, y, base, chol, sigma):
        def potential(z):  # negative log posterior in z (eta = L z), the prior's combined error
            eta = chol @ z
            q = base * jnp.where(has_eta, jnp.exp(eta[index]), 1.0)
            f = forward(dict(zip(free, q)), jnp.zeros(1), jnp.zeros(1), ts)
            sd = jnp.sqrt(sigma[0] * f**2 + sigma[1])
            return 0.5 * jnp.sum(z**2) + jnp.sum(0.5 * ((y - f) / sd) ** 2 + jnp.log(sd))

        return potential

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")

    def chain(rng_key, z0, data):
        # forward-mode gradients: the value and its k derivatives in one solve with k tangents
        # (reverse mode through the adaptive solve is slower, measured on the 2-core CPU)
        state = init_kernel(z0, warmup, dense_mass=settings["dense_mass"], target_accept_prob=settings["target_accept_prob"],
                            forward_mode_differentiation=True, model_args=data, rng_key=rng_key)
        state = jax.lax.fori_loop(0, warmup, lambda i, s: sample_kernel(s, model_args=data), state)

        def draw(s, _):
            s = sample_kernel(s, model_args=data)
            return s, (s.z, s.diverging, s.num_steps, s.accept_prob)

        return jax.lax.scan(draw, state, None, length=draws)[1]

    f64, key0 = jnp.asarray(0.0).dtype, jax.random.PRNGKey(0)
    args = (jax.ShapeDtypeStruct((per_call,) + key0.shape, key0.dtype),
            jax.ShapeDtypeStruct((per_call, k), f64),
            (jax.ShapeDtypeStruct((n_obs,), f64), jax.ShapeDtypeStruct((n_obs,), f64), jax.ShapeDtypeStruct((len(free),), f64),
             jax.ShapeDtypeStruct((k, k), f64), jax.ShapeDtypeStruct((2,), f64)))
    run = jax.jit(jax.vmap(chain, in_axes=(0, 0, None))).lower(*args).compile()
    _remember_runner(key, model, run)
    return run


def _remember_runner(key, model, run) -> None:
    """Keep ``run`` as the most recently used entry; drop the least recently used beyond
    ``_NUTS_CACHE_SIZE``."""
    _NUTS_RUNNERS.pop(key, None)
    _NUTS_RUNNERS[key] = (model, run)
    while len(_NUTS_RUNNERS) > _NUTS_CACHE_SIZE:
        _NUTS_RUNNERS.pop(next(iter(_NUTS_RUNNERS)))


def _nuts(prior, model, scans, typical, mode, draws, chains, warmup, seed):
    """NUTS (NumPyro) over non-centred etas z (eta = L z, L L' = OMEGA); the potential is the
    negative log posterior (the population model's combined error at the scans, N(0, I) on z).
    Dense mass matrix, target acceptance 0.8 (NumPyro's and Stan's default), forward-mode
    gradients. Chains run in groups of :data:`CHAINS_PER_CALL` (one vectorized call each; a
    group waits for its longest trajectory), as many groups at once as the process has cores
    (:func:`immunopd.integrate.threads`; XLA releases the GIL). R-hat and bulk ESS are ArviZ's
    rank-normalized split estimates (Vehtari et al. 2021, doi:10.1214/20-BA1221)."""
    from concurrent.futures import ThreadPoolExecutor

    import arviz as az
    import jax
    import jax.numpy as jnp

    from .integrate import threads as cores

    k = len(prior.etas)
    chol = np.linalg.cholesky(prior.omega + 1e-12 * np.eye(k))
    data = (jnp.asarray(scans.time_day, float), jnp.asarray(scans.size_mm, float),
            jnp.asarray([typical[n] for n in prior.free], float), jnp.asarray(chol, float),
            jnp.asarray(prior.sigma, dtype=float))
    z0 = np.linalg.solve(chol, mode)
    jitter = np.random.default_rng(seed).normal(scale=0.1, size=(chains, k))  # chains start apart, near the mode
    inits = jnp.asarray(z0 + jitter)
    keys = jax.random.split(jax.random.PRNGKey(seed), chains)
    groups = [(g, min(g + CHAINS_PER_CALL, chains)) for g in range(0, chains, CHAINS_PER_CALL)]
    runners = {b - a: _nuts_runner(model, prior, int(scans.time_day.size), warmup, draws, b - a) for a, b in groups}

    def group(bounds):
        a, b = bounds
        return jax.tree_util.tree_map(np.asarray, runners[b - a](keys[a:b], inits[a:b], data))

    workers = max(1, min(cores(), len(groups)))
    if workers == 1:
        parts = [group(g) for g in groups]
    else:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(group, groups))
    z, diverging, steps, accept = (np.concatenate([p[i] for p in parts]) for i in range(4))  # (chains, draws, ...)
    eta = np.einsum("ij,cdj->cdi", chol, z)
    r_hat = np.array([float(az.rhat(eta[..., i])) for i in range(k)])
    ess = np.array([float(az.ess(eta[..., i], method="bulk")) for i in range(k)])
    return eta, {"r_hat": r_hat, "ess_bulk": ess, "divergences": int(diverging.sum()),
                 "mean_leapfrog_steps": float(steps.mean()), "mean_accept_prob": float(accept.mean()),
                 "threads": workers}


# ----------------------------------------------------------------------------- forecasts
def _trajectories(prior, regimen, covariates, horizon, individual, grid):
    """Latent diameters (draws, T) of ``individual`` (draws, P) on ``grid`` under ``regimen``."""
    from . import nlme

    model = _nlme_model(prior, regimen, covariates, horizon)
    times = np.broadcast_to(grid, (individual.shape[0], grid.size))
    return nlme.predict_individuals(model, individual, times)


def _endpoints(traj, grid, baseline_mm, at_day):
    """Per draw: responded by at_day, progressed by at_day, % change at at_day."""
    upto = grid <= at_day + 1e-9
    pct = 100.0 * (traj / baseline_mm - 1.0)
    responded = np.any((pct <= RESPONSE_PCT) & upto, axis=1)
    nadir = np.minimum.accumulate(np.concatenate([np.full((traj.shape[0], 1), baseline_mm), traj], axis=1), axis=1)[:, :-1]
    grew = (traj >= (1 + PROGRESSION_PCT / 100.0) * nadir) & (traj - nadir >= PROGRESSION_MM)
    progressed = np.any(grew & upto, axis=1)
    at = np.interp(at_day, grid, np.arange(grid.size))
    lo, hi = int(np.floor(at)), min(int(np.ceil(at)), grid.size - 1)
    w = at - lo
    change = (1 - w) * pct[:, lo] + w * pct[:, hi]
    return responded, progressed, change


def forecast(scans: Scans, regimens: Sequence[str], *, given, prior: Prior | None = None, covariates: Mapping | None = None,
             method: str = "laplace", decision_day: float | None = None, at_day: float | None = None,
             horizon_day: float | None = None, draws: int = 1000, chains: int = 4, warmup: int = 500,
             predictive_draws: int = 400, seed: int = 0, interval: float = 0.9, min_scans: int = 2):
    """Posterior predictive forecasts of one patient under candidate ``regimens``.

    ``scans``: :class:`Scans`; ``given``: the regimen given since day 0; ``regimens``: candidates
    for :func:`compose_regimen` (the first is the reference of the differences); ``decision_day``
    (default the last scan's day); ``at_day`` (default decision + 168, 24 weeks); ``horizon_day``
    (default at_day + 84). Returns ``arviz.InferenceData`` with groups posterior (eta and the
    individual parameters), posterior_predictive (``sld`` with residual error and ``sld_latent``,
    mm, dims (chain, draw, regimen, time)), observed_data (``sld`` at the scans), constant_data
    and ``forecast`` (per regimen: P(response), P(progression) by at_day, % change at at_day with
    its ``interval`` credible interval, and the paired differences to the first regimen).
    """
    import arviz as az
    import xarray as xr

    if isinstance(regimens, str) or not isinstance(regimens, Sequence) or not regimens:
        raise InputError(describe("regimens", regimens, "a non-empty list of candidate regimens"))
    if len(set(regimens)) != len(regimens):
        raise InputError(describe("regimens", list(regimens), "distinct candidates"))
    if not (0 < interval < 1):
        raise InputError(describe("interval", interval, "a probability in (0, 1), e.g. 0.9"))
    if isinstance(predictive_draws, bool) or not isinstance(predictive_draws, (int, np.integer)) or predictive_draws < 1:
        raise InputError(describe("predictive_draws", predictive_draws, "an integer >= 1"))
    from .dosing import Regimen

    given_reg = Regimen.parse(given) if isinstance(given, str) else given
    last = float(scans.time_day[-1])
    decision_day = last if decision_day is None else float(decision_day)
    if not np.isfinite(decision_day) or decision_day < last:
        raise InputError(describe("decision_day", decision_day, f"a day on or after the last scan (day {last:g})"))
    at_day = decision_day + 168.0 if at_day is None else float(at_day)
    if not np.isfinite(at_day) or at_day <= decision_day:
        raise InputError(describe("at_day", at_day, f"a day after the decision day ({decision_day:g})"))
    horizon_day = at_day + 84.0 if horizon_day is None else float(horizon_day)
    if not np.isfinite(horizon_day) or horizon_day < at_day:
        raise InputError(describe("horizon_day", horizon_day, f"a day on or after at_day ({at_day:g})"))
    cov = _check_covariates(covariates)
    courses = [compose_regimen(given_reg, r, decision_day) for r in regimens]  # every candidate checked before any solve
    from .dosing import _amount_mg

    for reg in (given_reg, *courses):  # a mg/kg or mg/m2 dose without the patient's weight or BSA: refused now, not mid-run
        for series in reg.series:
            _amount_mg(series, cov.get("body_weight"), cov.get("body_surface_area"))
    prior = individualize(load_prior() if prior is None else prior, cov, float(scans.size_mm[0]))
    # one dosing horizon for every patient up to day 2000 (the predictor's default), so that the given
    # regimen's compiled posterior serves the next patient too; the likelihood stops at the last scan
    horizon = max(2000.0, horizon_day + 1.0)
    post = posterior(scans, given_reg, prior=prior, covariates=cov, method=method, draws=draws, chains=chains,
                     warmup=warmup, seed=seed, min_scans=min_scans, horizon=horizon)
    n_chain, n_draw = post["eta"].shape[:2]
    per_chain = max(1, min(n_draw, int(math.ceil(predictive_draws / n_chain))))
    pick = np.linspace(0, n_draw - 1, per_chain).round().astype(int)
    ind = post["individual"][:, pick].reshape(-1, len(prior.free))
    grid = np.unique(np.concatenate([np.arange(0.0, horizon_day + 1e-9, 7.0), [at_day, decision_day, horizon_day]]))
    rng = np.random.default_rng(seed + 1)
    prop, add = prior.sigma
    latent, noisy, ends = [], [], []
    base_mm = float(scans.size_mm[0])
    t0 = _time.perf_counter()
    for reg in courses:
        traj = _trajectories(prior, reg, cov, horizon, ind, grid)
        if not np.all(np.isfinite(traj)):
            bad = int((~np.all(np.isfinite(traj), axis=1)).sum())
            raise InputError(describe("forecast", reg.describe(), f"solves that succeed ({bad} posterior draws failed)"))
        latent.append(traj)
        noisy.append(np.maximum(traj + np.sqrt(prop * traj**2 + add) * rng.standard_normal(traj.shape), 0.0))
        ends.append(_endpoints(traj, grid, base_mm, at_day))
    simulate_s = _time.perf_counter() - t0
    shape = (n_chain, per_chain, len(courses), grid.size)
    lat = np.stack(latent, axis=1).reshape(shape)
    noi = np.stack(noisy, axis=1).reshape(shape)
    names = list(regimens)
    lo_q, hi_q = (1 - interval) / 2, 1 - (1 - interval) / 2
    resp = np.stack([e[0] for e in ends])  # (R, draws)
    prog = np.stack([e[1] for e in ends])
    chg = np.stack([e[2] for e in ends])
    d_chg = chg - chg[0]
    boot = np.random.default_rng(seed + 2).integers(0, resp.shape[1], size=(500, resp.shape[1]))
    d_resp_b = resp[:, boot].mean(axis=2) - resp[0, boot].mean(axis=1)  # (R, 500) Monte Carlo spread of the paired difference
    d_prog_b = prog[:, boot].mean(axis=2) - prog[0, boot].mean(axis=1)
    summary = xr.Dataset(
        {"p_response": ("regimen", resp.mean(1), {"units": "1", "long_name": f"P(% change <= {RESPONSE_PCT:g} % by at_day)"}),
         "p_progression": ("regimen", prog.mean(1), {"units": "1", "long_name": "P(RECIST progression by at_day: >= +20 % and"
                                                                                " >= 5 mm above the nadir)"}),
         "pct_change_mean": ("regimen", chg.mean(1), {"units": "%", "long_name": "posterior mean % change at at_day"}),
         "pct_change_lower": ("regimen", np.quantile(chg, lo_q, axis=1), {"units": "%"}),
         "pct_change_upper": ("regimen", np.quantile(chg, hi_q, axis=1), {"units": "%"}),
         "diff_pct_change_mean": ("regimen", d_chg.mean(1), {"units": "%", "long_name": "paired difference to the first regimen"}),
         "diff_pct_change_lower": ("regimen", np.quantile(d_chg, lo_q, axis=1), {"units": "%"}),
         "diff_pct_change_upper": ("regimen", np.quantile(d_chg, hi_q, axis=1), {"units": "%"}),
         "diff_p_response": ("regimen", resp.mean(1) - resp[0].mean(), {"units": "1"}),
         "diff_p_response_lower": ("regimen", np.quantile(d_resp_b, lo_q, axis=1), {"units": "1", "long_name": "Monte Carlo interval"}),
         "diff_p_response_upper": ("regimen", np.quantile(d_resp_b, hi_q, axis=1), {"units": "1"}),
         "diff_p_progression": ("regimen", prog.mean(1) - prog[0].mean(), {"units": "1"}),
         "diff_p_progression_lower": ("regimen", np.quantile(d_prog_b, lo_q, axis=1), {"units": "1"}),
         "diff_p_progression_upper": ("regimen", np.quantile(d_prog_b, hi_q, axis=1), {"units": "1"}),
         "course": ("regimen", [c.describe() for c in courses])},
        coords={"regimen": names},
        attrs={"at_day": at_day, "decision_day": decision_day, "interval": interval, "reference": names[0],
               "draws_used": int(ind.shape[0]),
               "note": "endpoints on the latent trajectory on a weekly grid from day 0; % change from the baseline scan;"
                       " probability differences carry a Monte Carlo (bootstrap over draws) interval, % change differences"
                       " a posterior credible interval"})
    eta_names = list(prior.etas)
    posterior_ds = xr.Dataset(
        {"eta": (("chain", "draw", "random_effect"), post["eta"]),
         **{name: (("chain", "draw"), post["individual"][..., i], {"units": post["model"].units.get(name, "")})
            for i, name in enumerate(prior.free)}},
        coords={"chain": np.arange(n_chain), "draw": np.arange(n_draw), "random_effect": eta_names},
        attrs={"method": "MAP + Laplace" if method == "laplace" else "NumPyro NUTS", "status": post["status"],
               "elapsed_s": post["elapsed_s"], "prior": prior.description, "prior_file": prior.source,
               "prior_status": prior.status,
               **{f"r_hat_{e}": float(v) for e, v in zip(eta_names, post["diagnostics"].get("r_hat", []))},
               **{f"ess_bulk_{e}": float(v) for e, v in zip(eta_names, post["diagnostics"].get("ess_bulk", []))},
               **({"divergences": post["diagnostics"]["divergences"]} if post["diagnostics"] else {})})
    pp = xr.Dataset(
        {"sld": (("chain", "draw", "regimen", "time"), noi, {"units": "mm", "long_name": "predicted SLD with residual error"}),
         "sld_latent": (("chain", "draw", "regimen", "time"), lat, {"units": "mm", "long_name": "model SLD (no residual error)"})},
        coords={"chain": np.arange(n_chain), "draw": pick, "regimen": names, "time": grid},
        attrs={"time_units": "day since the first dose", "simulate_s": simulate_s})
    obs = xr.Dataset({"sld": ("scan", scans.size_mm, {"units": "mm"})},
                     coords={"scan": np.arange(scans.time_day.size), "time": ("scan", scans.time_day, {"units": "day"})})
    const = xr.Dataset({"mode": ("random_effect", post["mode"]),
                        "mode_covariance": (("random_effect", "random_effect_2"), post["mode_covariance"]),
                        "typical": ("individual_parameter", [post["typical"][n] for n in prior.free])},
                       coords={"random_effect": eta_names, "random_effect_2": eta_names,
                               "individual_parameter": list(prior.free)},
                       attrs={"given": given_reg.describe(), "baseline_day": scans.baseline_day, "baseline_mm": base_mm,
                              **{f"covariate_{k}": v for k, v in cov.items()}})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 'forecast' is a group of our own, outside ArviZ's scheme
        idata = az.InferenceData(posterior=posterior_ds, posterior_predictive=pp, observed_data=obs, constant_data=const,
                                 forecast=summary)
    return idata


def _sclever1_note(idata) -> str | None:
    s = idata.constant_data.attrs.get("covariate_baseline_sclever1")
    if s is None:
        return None
    release = float(idata.posterior[SCLEVER1_PARAMETER].values.reshape(-1)[0]) if SCLEVER1_PARAMETER in idata.posterior else float("nan")
    return (f"baseline sClever-1 {float(s):g} ng/mL: {SCLEVER1_PARAMETER} set to {release:.3g} ng/mL/(1e6 cells day) (an assumed"
            " effect; the prior's data have no sClever-1)")


def forecast_table(idata) -> str:
    """The recommendation table of a :func:`forecast` result, as text."""
    f = idata.forecast
    at = f.attrs["at_day"]
    lvl = int(round(100 * f.attrs["interval"]))
    ref = f.attrs["reference"]
    post = idata.posterior.attrs
    lines = [f"prior: {Path(str(post.get('prior_file', '?'))).name} (population fit status: {post.get('prior_status', '?')})",
             f"posterior: {post['method']}, status {post['status']}",
             f"endpoints by day {at:g} (decision day {f.attrs['decision_day']:g}); differences vs {ref!r}, {lvl} % intervals",
             f"{'regimen':<44} {'P(resp)':>8} {'P(prog)':>8} {'% change':>22} {'diff % change vs ref':>26} {'diff P(resp)':>22}"]
    for r in f.regimen.values:
        x = f.sel(regimen=r)
        chg = f"{float(x.pct_change_mean):+.1f} [{float(x.pct_change_lower):+.1f}, {float(x.pct_change_upper):+.1f}]"
        dchg = f"{float(x.diff_pct_change_mean):+.1f} [{float(x.diff_pct_change_lower):+.1f}, {float(x.diff_pct_change_upper):+.1f}]"
        dres = f"{float(x.diff_p_response):+.2f} [{float(x.diff_p_response_lower):+.2f}, {float(x.diff_p_response_upper):+.2f}]"
        lines.append(f"{str(r)[:44]:<44} {float(x.p_response):>8.2f} {float(x.p_progression):>8.2f} {chg:>22} {dchg:>26} {dres:>22}")
    better = [str(r) for r in f.regimen.values[1:] if float(f.sel(regimen=r).diff_pct_change_upper) < 0]
    if better:
        best = min(better, key=lambda r: float(f.sel(regimen=r).pct_change_mean))
        lines.append(f"recommendation: {best!r} (its % change at day {at:g} is below {ref!r}'s in the {lvl} % credible interval)")
    else:
        lines.append(f"recommendation: no candidate is credibly better than {ref!r} at day {at:g}")
    extra = _sclever1_note(idata)
    if extra:
        lines.append(extra)
    return "\n".join(lines)


def plot_forecast(idata, path) -> None:
    """A fan chart per regimen (5-95 % and 25-75 % predictive bands, median; observed scans)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import save_figure

    pp = idata.posterior_predictive
    names = [str(r) for r in pp.regimen.values]
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.4), sharey=True, squeeze=False)
    t = pp.time.values
    for ax, r in zip(axes[0], names):
        y = pp.sld.sel(regimen=r).values.reshape(-1, t.size)
        q = np.quantile(y, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
        ax.fill_between(t, q[0], q[4], color="C0", alpha=0.2, lw=0)
        ax.fill_between(t, q[1], q[3], color="C0", alpha=0.35, lw=0)
        ax.plot(t, q[2], color="C0")
        ax.plot(idata.observed_data.time.values, idata.observed_data.sld.values, "ko", ms=4)
        ax.axvline(idata.forecast.attrs["decision_day"], color="0.5", ls=":")
        ax.set_title(r[:40], fontsize=8)
        ax.set_xlabel("day since the first dose")
    axes[0][0].set_ylabel("SLD (mm)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
