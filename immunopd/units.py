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

__all__ = ["TIME_UNITS", "AMOUNT_UNITS", "to_days", "parse_quantity"]

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

#: dose-amount units: "mg" is absolute, "mg/kg" is multiplied by body weight in kg
AMOUNT_UNITS: tuple[str, ...] = ("mg", "mg/kg")

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
