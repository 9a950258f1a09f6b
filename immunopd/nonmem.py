"""NONMEM-style event-record datasets (as read by NONMEM, Monolix, nlmixr2 and mrgsolve).

One row per event: ``ID, TIME, AMT, EVID, CMT, DV, RATE or DUR, II, ADDL, MDV`` plus covariate
columns (``WT`` for body weight in kg, say). :func:`read_nonmem` turns dose records into one
:class:`~immunopd.dosing.Regimen` per ID and observation records into a tidy table that the
fitting code reads; :func:`to_nonmem` writes a regimen (and observations) back.

Conventions (stated, not guessed):

- ``TIME`` is in ``time_unit`` (default day); ``RATE`` in mg per ``time_unit``; ``DUR`` and
  ``II`` in ``time_unit``; ``AMT`` in mg.
- ``EVID``: 0 observation, 1 dose, 2 other event (kept as a covariate row, no dose, no
  observation). 3 and 4 (resets) are valid NONMEM codes that this model cannot honour: they
  are errors, as is any other code.
- ``CMT`` of a dose names the drug through ``drugs`` (default :func:`default_drugs`: CMT k is
  the first drug the model declares for its k-th target, i.e. ``{1: pembrolizumab,
  2: bexmarilimab}`` for the core model). ``CMT`` of an observation names the observable
  through ``observables`` (default: ``sld`` at the CMT after the drugs', 3 for the core model).
- Antibodies are infused: a dose needs ``RATE > 0`` or ``DUR > 0`` (``RATE = -2``, "duration
  modelled", and boluses are errors naming the row).
- ``MDV = 1`` on an observation row (or a missing ``DV``) means no observation.
- ``DV`` of an observation is a size or level in its own unit: >= 0 (log-transformed DVs are not
  read).
- Items this reader cannot honour are refused by name where they mean anything: ``SS`` (steady
  state), ``CENS`` and ``BLQ`` (censored observations) must be 0 or missing; ``LIMIT``/``LLOQ``
  are never covariates. Every other extra column is a covariate. An empty file is an error.

Every malformed record is an error naming its row number (1-based, as a spreadsheet shows the
data rows below the header) and the column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .dosing import DoseSeries, Regimen
from .errors import InputError, describe
from .units import TIME_UNITS

__all__ = ["read_nonmem", "to_nonmem", "NonmemData", "default_drugs", "default_observables"]


def default_drugs(model=None) -> dict[int, str]:
    """CMT -> drug: CMT k is the first drug ``model`` declares for its k-th target."""
    from .solve import resolve_model

    model = resolve_model(model)
    out: dict[int, str] = {}
    for k, target in enumerate(model.target_names, start=1):
        first = next((d.name for d in model.drugs if d.target == target), None)
        if first is not None:
            out[k] = first
    return out


def default_observables(model=None) -> dict[int, str]:
    """CMT -> observable: ``sld`` at the CMT after the drugs'."""
    from .solve import resolve_model

    return {len(resolve_model(model).target_names) + 1: "sld"}
REQUIRED = ("ID", "TIME", "AMT", "EVID", "CMT")
#: optional NONMEM data items this reader honours
ITEMS = ("DV", "RATE", "DUR", "II", "ADDL", "MDV")
#: NONMEM data items it cannot honour, with why: a non-zero value is an error naming the row, never
#: a covariate or a dose read another way (all-zero columns carry no meaning and are dropped)
UNSUPPORTED = {
    "SS": "steady-state dosing (SS = 1, 2 or 3) is not modelled; write the doses that reach the steady state as II/ADDL records",
    "CENS": "censored (below the quantification limit) observations are not modelled; drop them or set MDV = 1",
    "BLQ": "below-quantification flags are not modelled; drop those observations or set MDV = 1",
}
#: the limit that goes with CENS/BLQ: meaningful only with them, so never a covariate
CENSORING_LIMITS = ("LIMIT", "LLOQ")


@dataclass(frozen=True)
class NonmemData:
    """What a dataset holds: ``regimens`` per ID, ``observations`` (columns ID, time_days,
    observable, CMT, DV) and ``covariates`` (first value per ID of every extra column)."""

    regimens: dict
    observations: pd.DataFrame
    covariates: pd.DataFrame

    def fitting_table(self, observable: str = "sld", size_column: str = "diameter_mm") -> pd.DataFrame:
        """Observations of ``observable`` as the tidy table the fitting code reads (columns
        ``lesion`` = ID, ``time_days``, ``size_column``), for ``immunopd.fitting.fit_lesions``."""
        obs = self.observations[self.observations.observable == observable]
        if obs.empty:
            raise InputError(describe("observable", observable, f"one of {sorted(set(self.observations.observable))}"))
        return pd.DataFrame({"lesion": obs.ID.astype(str).to_numpy(), "time_days": obs.time_days.to_numpy(), size_column: obs.DV.to_numpy()})


def _row(i) -> str:
    return f"row {i + 1}"


def read_nonmem(
    data: str | Path | pd.DataFrame,
    *,
    time_unit: str = "day",
    drugs: Mapping[int, str] | None = None,
    observables: Mapping[int, str] | None = None,
    model=None,
) -> NonmemData:
    """Read an event-record dataset (CSV path or DataFrame); see the module docstring."""
    from .solve import resolve_model

    model = resolve_model(model)
    drugs = dict(default_drugs(model) if drugs is None else drugs)
    observables = dict(default_observables(model) if observables is None else observables)
    for cmt, drug in drugs.items():
        if drug not in model.drug_index:
            raise InputError(describe(f"drugs[{cmt}]", drug, f"one of {sorted(model.drug_index)}"))
    if time_unit not in TIME_UNITS:
        raise InputError(describe("time_unit", time_unit, f"one of {sorted(set(TIME_UNITS))}"))
    scale = TIME_UNITS[time_unit]
    if isinstance(data, pd.DataFrame):
        df = data.copy()
    else:
        try:
            df = pd.read_csv(data, na_values=["."])
        except pd.errors.EmptyDataError:
            raise InputError(describe("dataset", str(data), "a CSV file with a header row (ID, TIME, AMT, EVID, CMT, ...) and event records")) from None
        except pd.errors.ParserError as exc:
            raise InputError(describe("dataset", str(data), f"a well-formed CSV file ({str(exc).strip()})")) from None
    df.columns = [str(c).strip().upper() for c in df.columns]
    for col in REQUIRED:
        if col not in df.columns:
            raise InputError(describe("dataset column", col, f"present; columns are {list(df.columns)}"))
    if df.empty:
        raise InputError(describe("dataset records", 0, "at least one event record below the header"))
    for col in ("TIME", "AMT", "EVID", "CMT", "DV", "RATE", "DUR", "II", "ADDL", "MDV", *UNSUPPORTED, *CENSORING_LIMITS):
        if col in df.columns:
            bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise InputError(describe(f"{_row(i)} {col}", df[col].iloc[i], "a number (or '.' for missing)"))
            df[col] = pd.to_numeric(df[col], errors="coerce")
    for col, meaning in UNSUPPORTED.items():  # NONMEM items this reader cannot honour: refused by name where they mean anything
        if col in df.columns:
            used = df[col].notna().to_numpy() & (df[col].fillna(0).to_numpy() != 0)
            if used.any():
                i = int(np.flatnonzero(used)[0])
                raise InputError(describe(f"{_row(i)} {col}", float(df[col].iloc[i]), f"0 or missing: {meaning}"))
    covariate_cols = [c for c in df.columns if c not in {*REQUIRED, *ITEMS, *UNSUPPORTED, *CENSORING_LIMITS}]

    series: dict[object, list[DoseSeries]] = {}
    obs_rows = []
    last_time: dict[object, float] = {}
    for i, rec in enumerate(df.itertuples(index=False)):
        r = rec._asdict()
        pid, t = r["ID"], r["TIME"]
        if pd.isna(pid):
            raise InputError(describe(f"{_row(i)} ID", pid, "an ID on every record"))
        if pd.isna(t) or not math.isfinite(t) or t < 0:
            raise InputError(describe(f"{_row(i)} TIME", t, f"a finite time >= 0 {time_unit}"))
        if t < last_time.get(pid, -math.inf):
            raise InputError(describe(f"{_row(i)} TIME", t, f"times sorted within ID {pid} (previous {last_time[pid]:g})"))
        last_time[pid] = t
        evid = r["EVID"]
        if evid == 0:
            mdv = r.get("MDV", 0)
            if (not pd.isna(mdv) and mdv == 1) or pd.isna(r.get("DV", np.nan)):
                continue
            if not math.isfinite(r["DV"]) or r["DV"] < 0:
                raise InputError(describe(f"{_row(i)} DV", r["DV"], "a finite observation >= 0 (a size or a level in its own unit; "
                                          "log-transformed DVs are not read), or MDV = 1 / '.' for none"))
            cmt = int(r["CMT"]) if not pd.isna(r["CMT"]) else None
            obs_rows.append({"ID": pid, "time_days": t * scale, "CMT": cmt, "observable": observables.get(cmt, f"cmt{cmt}"),
                             "DV": float(r["DV"])})
        elif evid == 1:
            series.setdefault(pid, []).append(_dose(i, r, drugs, scale, time_unit))
        elif evid == 2:
            continue
        elif evid in (3, 4):
            raise InputError(describe(f"{_row(i)} EVID", int(evid), "0 (observation), 1 (dose) or 2 (other); resets (3, 4) are not supported"))
        else:
            raise InputError(describe(f"{_row(i)} EVID", evid, "0 (observation), 1 (dose) or 2 (other)"))
    ids = list(dict.fromkeys(df["ID"]))
    regimens = {pid: Regimen(tuple(series.get(pid, ())), text="; ".join(s.describe() for s in series.get(pid, ())) or "none")
                for pid in ids}
    observations = pd.DataFrame(obs_rows, columns=["ID", "time_days", "CMT", "observable", "DV"])
    covariates = df.groupby("ID", sort=False)[covariate_cols].first() if covariate_cols else pd.DataFrame(index=pd.Index(ids, name="ID"))
    return NonmemData(regimens=regimens, observations=observations, covariates=covariates)


def _dose(i, r, drugs, scale, time_unit) -> DoseSeries:
    amt, cmt = r["AMT"], r["CMT"]
    if pd.isna(amt) or amt <= 0:
        raise InputError(describe(f"{_row(i)} AMT", amt, "a dose amount > 0 mg on a dose record (EVID 1)"))
    if pd.isna(cmt) or int(cmt) not in drugs:
        raise InputError(describe(f"{_row(i)} CMT", cmt, f"a dosing compartment of {drugs}"))
    rate = r.get("RATE", np.nan)
    dur = r.get("DUR", np.nan)
    if not pd.isna(rate) and rate > 0:
        duration = amt / rate * scale
    elif not pd.isna(dur) and dur > 0:
        duration = dur * scale
    else:
        raise InputError(describe(f"{_row(i)} RATE/DUR", (rate, dur),
                                  f"RATE > 0 (mg/{time_unit}) or DUR > 0 ({time_unit}): antibodies are infused, boluses are not modelled"))
    ii = r.get("II", np.nan)
    addl = r.get("ADDL", np.nan)
    addl = 0 if pd.isna(addl) else addl
    if addl < 0 or addl != int(addl):
        raise InputError(describe(f"{_row(i)} ADDL", addl, "a whole number of additional doses >= 0"))
    if addl > 0 and (pd.isna(ii) or ii <= 0):
        raise InputError(describe(f"{_row(i)} II", ii, f"an interdose interval > 0 {time_unit} when ADDL > 0"))
    return DoseSeries(drugs[int(cmt)], float(amt), "mg", start=float(r["TIME"]) * scale,
                      interval=float(ii) * scale if addl > 0 else None, count=int(addl) + 1 if addl > 0 else 1,
                      duration=duration, field=f"dataset {_row(i)}")


def to_nonmem(
    regimens: Mapping[object, Regimen | str],
    *,
    observations: pd.DataFrame | None = None,
    covariates: Mapping[object, Mapping[str, float]] | None = None,
    horizon: float = 365.0,
    time_unit: str = "day",
    drugs: Mapping[int, str] | None = None,
    observables: Mapping[int, str] | None = None,
    weight: Mapping[object, float] | None = None,
    model=None,
    bsa: Mapping[object, float] | None = None,
) -> pd.DataFrame:
    """Event records for ``{ID: regimen}`` (doses before ``horizon`` days, one row per series with
    II/ADDL, DUR in ``time_unit``), plus observation rows from ``observations`` (columns ID,
    time_days, observable, DV). mg/kg doses are resolved with ``weight[ID]`` (kg), mg/m2 doses with
    ``bsa[ID]`` (m2)."""
    drugs = dict(default_drugs(model) if drugs is None else drugs)
    observables = dict(default_observables(model) if observables is None else observables)
    cmt_of = {}
    for cmt, drug in drugs.items():
        cmt_of.setdefault(drug, cmt)
    obs_cmt = {name: cmt for cmt, name in observables.items()}
    if time_unit not in TIME_UNITS:
        raise InputError(describe("time_unit", time_unit, f"one of {sorted(set(TIME_UNITS))}"))
    scale = TIME_UNITS[time_unit]
    rows = []
    for pid, reg in regimens.items():
        reg = Regimen.parse(reg) if isinstance(reg, str) else reg
        for s in reg.series:
            if s.drug not in cmt_of:
                raise InputError(describe("regimen drug", s.drug, f"a drug with a dosing compartment in {drugs}"))
            amount = {"mg": lambda: s.amount, "mg/kg": lambda: s.amount * _size(weight, pid, "weight", "a body weight in kg", "mg/kg"),
                      "mg/m2": lambda: s.amount * _size(bsa, pid, "bsa", "a body surface area in m2", "mg/m2")}[s.unit]()
            times = s.times(horizon)
            # a series with skips or delays is no longer regular: one record per dose
            regular = not s.skip and not s.delays and times.size > 1
            groups = [(times[0], times.size - 1)] if regular else [(t, 0) for t in times]
            for t0, addl in groups:
                rows.append({"ID": pid, "TIME": t0 / scale, "AMT": amount, "EVID": 1, "CMT": cmt_of[s.drug], "DV": np.nan,
                             "DUR": s.duration / scale, "II": (s.interval / scale) if addl else 0.0, "ADDL": addl, "MDV": 1})
    if observations is not None:
        for r in observations.itertuples(index=False):
            if r.observable not in obs_cmt:
                raise InputError(describe("observation observable", r.observable, f"one of {sorted(obs_cmt)}"))
            rows.append({"ID": r.ID, "TIME": r.time_days / scale, "AMT": 0.0, "EVID": 0, "CMT": obs_cmt[r.observable], "DV": r.DV,
                         "DUR": 0.0, "II": 0.0, "ADDL": 0, "MDV": 0})
    out = pd.DataFrame(rows, columns=["ID", "TIME", "AMT", "EVID", "CMT", "DV", "DUR", "II", "ADDL", "MDV"])
    # doses before observations at the same time, as NONMEM reads them
    out = out.sort_values(["ID", "TIME", "EVID"], ascending=[True, True, False], kind="stable").reset_index(drop=True)
    for name, values in _covariate_columns(covariates, out).items():
        out[name] = values
    return out


def _size(values, pid, name, what, unit) -> float:
    if values is None or pid not in values:
        raise InputError(describe(f"{name}[{pid!r}]", None, f"{what} for every ID with {unit} doses"))
    return float(values[pid])


def _covariate_columns(covariates, out):
    if not covariates:
        return {}
    names = sorted({k for v in covariates.values() for k in v})
    return {n: out["ID"].map(lambda pid, n=n: covariates.get(pid, {}).get(n, np.nan)) for n in names}
