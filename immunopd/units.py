"""The closed table of units a person may type, and conversion to the model's units.

Internal units are fixed: time in day, drug amount in mg, concentration in mg/L (= ug/mL),
tumor volume in mm3, cells in 1e6 cells. Conversion happens once, at the boundary (regimen
text, command line, Python helpers); nothing inside the solver knows about units.

A unit that is not in the table is an error naming the unit and listing the accepted ones,
never a silent guess (mrgsolve's regimen parser drops unit letters; we refuse them).
"""

from __future__ import annotations

import math
import re

from .errors import InputError, describe

__all__ = ["TIME_UNITS", "AMOUNT_UNITS", "QUANTITY_UNITS", "to_days", "parse_quantity", "convert", "parse_value", "mosteller_bsa"]

#: time units accepted from users, as multiples of one day
TIME_UNITS: dict[str, float] = {
    "min": 1.0 / 1440.0,
    "minute": 1.0 / 1440.0,
    "minutes": 1.0 / 1440.0,
    "h": 1.0 / 24.0,
    "hour": 1.0 / 24.0,
    "hours": 1.0 / 24.0,
    "d": 1.0,
    "day": 1.0,
    "days": 1.0,
    "w": 7.0,
    "wk": 7.0,
    "week": 7.0,
    "weeks": 7.0,
}

#: dose-amount units: "mg" is absolute, "mg/kg" is multiplied by body weight in kg, "mg/m2" by
#: body surface area in m2
AMOUNT_UNITS: tuple[str, ...] = ("mg", "mg/kg", "mg/m2")


def mosteller_bsa(height_cm, weight_kg):
    """Body surface area (m2) by the Mosteller formula, ``sqrt(height_cm * weight_kg / 3600)``
    (Mosteller 1987, N Engl J Med 317:1098, doi:10.1056/NEJM198710223171717). Arrays broadcast."""
    import numpy as np

    return np.sqrt(np.asarray(height_cm, dtype=float) * np.asarray(weight_kg, dtype=float) / 3600.0)

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z/]+)\s*$")


def to_days(value: float, unit: str, field: str = "time") -> float:
    """Convert ``value`` in ``unit`` (one of :data:`TIME_UNITS`) to days."""
    key = unit.strip().lower()
    if key not in TIME_UNITS:
        raise InputError(describe(f"{field} unit", unit, f"one of {sorted(set(TIME_UNITS))}"))
    if not math.isfinite(value):
        raise InputError(describe(field, value, "a finite number"))
    return float(value) * TIME_UNITS[key]


def parse_quantity(text: str | float | int, *, field: str, default_unit: str | None = None) -> float:
    """Parse a time such as ``"30 min"`` or ``"3 week"`` into days.

    A bare number is accepted only when ``default_unit`` is given (the CLI's ``--days``
    flag, whose unit is in its name).
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if default_unit is None:
            raise InputError(describe(field, text, "a number with a time unit, e.g. '30 min' or '3 week'"))
        return to_days(float(text), default_unit, field)
    if not isinstance(text, str):
        raise InputError(describe(field, text, "a string such as '30 min'"))
    match = _QUANTITY.match(text)
    if match is None:
        try:
            number = float(text)
        except ValueError:
            raise InputError(
                describe(field, text, "a number followed by a time unit, e.g. '30 min' or '3 week'")
            ) from None
        return parse_quantity(number, field=field, default_unit=default_unit)
    return to_days(float(match.group(1)), match.group(2), field)


#: units of typed quantities: unit -> (dimension, factor to the dimension's reference unit).
#: Reference units: mass mg, body weight kg (mass too: 1 kg = 1e6 mg), volume L, length mm,
#: tumor volume mm3 (1 mL = 1 cm3 = 1000 mm3), concentration ug/mL (= mg/L), time day.
QUANTITY_UNITS: dict[str, tuple[str, float]] = {
    "ng": ("mass", 1e-6), "ug": ("mass", 1e-3), "mg": ("mass", 1.0), "g": ("mass", 1e3), "kg": ("mass", 1e6),
    "lb": ("mass", 453592.37),  # international avoirdupois pound
    "mm": ("length", 1.0), "cm": ("length", 10.0), "m": ("length", 1000.0), "in": ("length", 25.4),
    "mm3": ("volume", 1e-6), "cm3": ("volume", 1e-3), "uL": ("volume", 1e-6), "mL": ("volume", 1e-3), "L": ("volume", 1.0),
    "ng/mL": ("concentration", 1e-3), "ug/mL": ("concentration", 1.0), "mg/L": ("concentration", 1.0),
    "mg/mL": ("concentration", 1e3), "ug/L": ("concentration", 1e-3),
    "L/day": ("flow", 1.0), "mL/day": ("flow", 1e-3), "L/h": ("flow", 24.0), "mL/h": ("flow", 24e-3),
    "1/day": ("rate", 1.0), "1/h": ("rate", 24.0), "1/week": ("rate", 1.0 / 7.0),
    **{u: ("time", f) for u, f in TIME_UNITS.items()},
}


def convert(value, from_unit: str, to_unit: str, field: str = "value"):
    """``value`` in ``from_unit`` expressed in ``to_unit``; a dimension mismatch names both units."""
    for u in (from_unit, to_unit):
        if u not in QUANTITY_UNITS:
            raise InputError(describe(f"{field} unit", u, f"one of {sorted(QUANTITY_UNITS)}"))
    (dim_a, fa), (dim_b, fb) = QUANTITY_UNITS[from_unit], QUANTITY_UNITS[to_unit]
    if dim_a != dim_b:
        raise InputError(
            f"{field}: cannot convert {from_unit!r} ({dim_a}) to {to_unit!r} ({dim_b}); give a quantity in {to_unit} "
            f"or another {dim_b} unit"
        )
    return value * (fa / fb)


_VALUE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z0-9/]+)\s*$")


def parse_value(text: str, to_unit: str, field: str) -> float:
    """``"154 lb"`` -> 69.85 for ``to_unit="kg"``: a number with a unit, converted."""
    match = _VALUE.match(text)
    if match is None:
        raise InputError(describe(field, text, f"a number with a unit, e.g. '1.5 {to_unit}'"))
    return float(convert(float(match.group(1)), match.group(2), to_unit, field))
