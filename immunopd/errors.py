"""Exceptions raised for bad input, and the one helper that words them.

Every message names the field (a dotted path such as ``regimen.doses[2].amount``), the
value received and what is allowed, so a user can fix the input without reading code.
"""

from __future__ import annotations

__all__ = [
    "ImmunopdError",
    "InputError",
    "InputTypeError",
    "RegimenError",
    "ParameterError",
    "SolverError",
    "ModelSpecError",
    "OutputError",
    "describe",
]


class ImmunopdError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(ImmunopdError, ValueError):
    """A value has the right type but is not allowed (negative, NaN, unknown name...)."""


class InputTypeError(ImmunopdError, TypeError):
    """A value has the wrong type."""


class RegimenError(InputError):
    """A dose or regimen (object or text) is malformed."""


class ParameterError(InputError):
    """A parameter name is unknown or its value is outside its bounds."""


class SolverError(ImmunopdError, ArithmeticError):
    """The ODE solver failed for one or more patients."""


class ModelSpecError(ImmunopdError, ValueError):
    """A model, drug or mechanism declaration is inconsistent (unknown name, duplicate, cycle)."""


class OutputError(ImmunopdError, OSError):
    """A result could not be written (disk full, no permission, read-only file system...). The
    message names the path and the system's reason; ``errno`` is the system's code. Nothing was
    replaced: a file already at the path is unchanged and no temporary file is left."""


def describe(field: str, value: object, allowed: str) -> str:
    """Word an input error: ``<field> = <value!r> is not allowed; allowed: <allowed>``."""
    return f"{field} = {value!r} is not allowed; allowed: {allowed}"
