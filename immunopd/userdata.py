"""A user's own tumor-size data: read, checked and put in immunopd's units (``immunopd fit --data my.csv``).

Two layouts are read:

- **tidy CSV**: one row per measurement; an identifier column ``lesion`` and/or ``patient`` (both:
  a lesion is identified by the pair); a time column whose name carries its unit,
  ``time_days``, ``time_weeks`` or ``time_hours`` (or ``time`` with ``--time-unit``); a size
  column whose name carries its unit, ``diameter_mm``, ``diameter_cm``, ``volume_mm3``,
  ``volume_cm3`` or ``volume_ml`` (or ``size`` with ``--size-unit``);
- **NONMEM-style**: ``ID``, ``TIME`` and ``DV`` (units from ``--time-unit`` and ``--size-unit``,
  which are then required); rows with ``EVID`` != 0 or ``MDV`` = 1 (doses, missing) are skipped.

Times become days and sizes mm (diameters) or mm3 (volumes). Every other column that is constant
within each lesion (``study``, ``arm``, ``patient``...) is kept as a per-lesion covariate of the
result, so fits can be joined back to the source table.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from .errors import InputError, describe

__all__ = ["read_size_table", "SIZE_COLUMNS", "TIME_COLUMNS", "per_lesion_covariates", "observations"]

#: size column name -> (quantity, unit): converted to mm (diameters) or mm3 (volumes)
SIZE_COLUMNS: dict[str, tuple[str, str]] = {
    "diameter_mm": ("diameter", "mm"), "diameter_cm": ("diameter", "cm"),
    "volume_mm3": ("volume", "mm3"), "volume_cm3": ("volume", "cm3"), "volume_ml": ("volume", "mL"),
}
#: time column name -> unit
TIME_COLUMNS: dict[str, str] = {"time_days": "day", "time_weeks": "week", "time_hours": "hour"}
_CANONICAL = {"diameter": ("diameter_mm", "mm", "longest diameter"), "volume": ("volume_mm3", "mm3", "tumor volume")}
_SIZE_UNITS = {"mm": "diameter", "cm": "diameter", "mm3": "volume", "cm3": "volume", "mL": "volume", "ml": "volume"}


def read_size_table(path: str | os.PathLike, *, time_unit: str | None = None, size_unit: str | None = None) -> pd.DataFrame:
    """Read ``path`` (module docstring) into a table with columns ``lesion``, ``time_days``, and
    ``diameter_mm`` or ``volume_mm3``, plus the file's other columns; ``attrs`` say what was converted."""
    path = str(path)
    try:
        raw = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(describe("--data", path, f"a readable CSV file ({type(exc).__name__}: {exc})")) from None
    if raw.empty:
        raise InputError(describe("--data", path, "a CSV file with at least one data row"))
    columns = list(raw.columns)
    nonmem = {"ID", "TIME", "DV"} <= set(columns)
    lower = {c.lower(): c for c in columns}
    if nonmem:
        if time_unit is None or size_unit is None:
            raise InputError(describe("--time-unit/--size-unit", (time_unit, size_unit),
                                      "both given for a NONMEM-style file (ID, TIME, DV carry no units), e.g. --time-unit day --size-unit mm"))
        keep = np.ones(len(raw), dtype=bool)
        if "EVID" in raw:
            keep &= pd.to_numeric(raw["EVID"], errors="coerce").fillna(1).to_numpy() == 0
        if "MDV" in raw:
            keep &= pd.to_numeric(raw["MDV"], errors="coerce").fillna(0).to_numpy() == 0
        raw = raw[keep].reset_index(drop=True)
        id_col, time_col, size_col = "ID", "TIME", "DV"
        t_unit = time_unit
        quantity, s_unit = _size_unit(size_unit)
        ids = raw[id_col].astype(str)
        layout = "NONMEM-style (ID, TIME, DV; EVID != 0 and MDV = 1 rows skipped)"
    else:
        has_lesion, has_patient = "lesion" in lower, "patient" in lower
        if not (has_lesion or has_patient):
            raise InputError(describe("--data columns", columns, "a 'lesion' or 'patient' column identifying each series "
                                                                 "(or NONMEM-style ID, TIME, DV)"))
        if has_lesion and has_patient:
            ids = raw[lower["patient"]].astype(str) + "/" + raw[lower["lesion"]].astype(str)
        else:
            ids = raw[lower["lesion" if has_lesion else "patient"]].astype(str)
        times = [c for c in columns if c.lower() in TIME_COLUMNS or c.lower() == "time"]
        if len(times) != 1:
            raise InputError(describe("--data time column", times or None,
                                      f"exactly one of {list(TIME_COLUMNS)} (the unit in the name), or 'time' with --time-unit"))
        time_col = times[0]
        if time_col.lower() == "time":
            if time_unit is None:
                raise InputError(describe("--time-unit", None, f"a time unit for column 'time' (day, week, hour), or name the column one of {list(TIME_COLUMNS)}"))
            t_unit = time_unit
        else:
            if time_unit is not None:
                raise InputError(describe("--time-unit", time_unit, f"nothing: column {time_col!r} names its own unit"))
            t_unit = TIME_COLUMNS[time_col.lower()]
        sizes = [c for c in columns if c.lower() in SIZE_COLUMNS or c.lower() == "size"]
        if len(sizes) != 1:
            raise InputError(describe("--data size column", sizes or None,
                                      f"exactly one of {list(SIZE_COLUMNS)} (the unit in the name), or 'size' with --size-unit"))
        size_col = sizes[0]
        if size_col.lower() == "size":
            if size_unit is None:
                raise InputError(describe("--size-unit", None, "a size unit for column 'size': mm or cm (diameter), mm3, cm3 or mL (volume)"))
            quantity, s_unit = _size_unit(size_unit)
        else:
            if size_unit is not None:
                raise InputError(describe("--size-unit", size_unit, f"nothing: column {size_col!r} names its own unit"))
            quantity, s_unit = SIZE_COLUMNS[size_col.lower()]
        layout = "tidy CSV"
    from .units import QUANTITY_UNITS, TIME_UNITS

    if t_unit not in TIME_UNITS:
        raise InputError(describe("--time-unit", t_unit, f"one of {sorted(TIME_UNITS)}"))
    name, unit, long_name = _CANONICAL[quantity]
    factor = QUANTITY_UNITS[s_unit][1] / QUANTITY_UNITS[unit][1]
    table = pd.DataFrame({"lesion": ids})
    for column, target, scale in ((time_col, "time_days", TIME_UNITS[t_unit]), (size_col, name, factor)):
        values = pd.to_numeric(raw[column], errors="coerce")
        bad = values.isna().to_numpy() & raw[column].notna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(describe(f"--data column {column!r} row {i + 1} (lesion {ids.iloc[i]!r})", raw[column].iloc[i],
                                      "a number (empty for a missing value)"))
        table[target] = values.to_numpy(dtype=float) * scale
    for c in columns:
        if c not in (time_col, size_col, "ID") and c not in table:
            table[c] = raw[c].to_numpy()
    missing = table["time_days"].isna() | table[name].isna()
    table = table[~missing].reset_index(drop=True)
    if table.empty:
        raise InputError(describe("--data", path, f"at least one row with both {time_col!r} and {size_col!r}"))
    table.attrs.update({"dataset": path, "layout": layout, "size_column": name, "size_unit": unit, "size_long_name": long_name,
                        "conversion": f"{time_col} ({t_unit}) -> time_days (day); {size_col} ({s_unit}) -> {name} ({unit})",
                        "rows_without_a_measurement": int(missing.sum())})
    return table


def _size_unit(unit: str) -> tuple[str, str]:
    if unit not in _SIZE_UNITS:
        raise InputError(describe("--size-unit", unit, "mm or cm (diameter), mm3, cm3 or mL (volume)"))
    return _SIZE_UNITS[unit], "mL" if unit == "ml" else unit


def per_lesion_covariates(table: pd.DataFrame, lesions, skip=("lesion", "time_days", "diameter_mm", "volume_mm3",
                                                               "normalized_volume")) -> dict[str, np.ndarray]:
    """Columns of ``table`` constant within every lesion, as arrays in the order of ``lesions``."""
    out = {}
    groups = table.groupby("lesion", sort=False)
    for c in table.columns:
        if c in skip or re.fullmatch(r"(EVID|MDV|AMT|CMT|RATE)", str(c)):
            continue
        if (groups[c].nunique(dropna=False) <= 1).all():
            first = groups[c].first()
            values = first.reindex(list(lesions)).to_numpy()
            out[str(c)] = values.astype(str) if values.dtype == object else values
    return out


def observations(table: pd.DataFrame, lesions, size: str) -> tuple[np.ndarray, np.ndarray]:
    """(lesion, obs) arrays of times (day) and sizes, sorted by time, NaN-padded."""
    groups = {k: g.sort_values("time_days", kind="stable") for k, g in table.groupby("lesion", sort=False)}
    width = max(len(g) for g in groups.values())
    t = np.full((len(lesions), width), np.nan)
    y = np.full((len(lesions), width), np.nan)
    for i, les in enumerate(lesions):
        g = groups[les]
        t[i, : len(g)] = g["time_days"].to_numpy(dtype=float)
        y[i, : len(g)] = g[size].to_numpy(dtype=float)
    return t, y
