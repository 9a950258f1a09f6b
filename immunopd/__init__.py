"""immunopd: mechanistic PD models of cancer immunotherapy and its resistance.

JAX runs in float64 in this package: importing immunopd enables ``jax_enable_x64`` once (at
once if JAX is already imported, else through ``JAX_ENABLE_X64=1``, which JAX reads when it is
first imported, so child processes inherit it).

JAX, diffrax and xarray load only when something needs them: the declarations (parameters,
drugs, regimens) and the command line's ``--help``, ``params``, ``drugs`` and ``datasets``
answer without them. ``simulate``, ``exposure``, ``write_netcdf`` and ``open_result`` are imported on first
use (PEP 562).
"""

import os as _os
import sys as _sys

if "jax" in _sys.modules:
    _sys.modules["jax"].config.update("jax_enable_x64", True)
else:
    _os.environ["JAX_ENABLE_X64"] = "1"

from .dosing import PRESETS as PRESETS  # noqa: E402
from .dosing import DoseSeries as DoseSeries  # noqa: E402
from .dosing import Regimen as Regimen  # noqa: E402
from .errors import ImmunopdError as ImmunopdError  # noqa: E402
from .errors import InputError as InputError  # noqa: E402
from .errors import ParameterError as ParameterError  # noqa: E402
from .errors import RegimenError as RegimenError  # noqa: E402
from .errors import SolverError as SolverError  # noqa: E402
from .models.core import PARAMETERS as PARAMETERS  # noqa: E402
from .models.core import core_model as core_model  # noqa: E402
from .models.drugs import DRUGS as DRUGS  # noqa: E402
from .drugs import Drug as Drug  # noqa: E402
from .spec import Model as Model  # noqa: E402
from .spec import Mechanism as Mechanism  # noqa: E402

#: public names imported on first use: name -> module
_LAZY = {"simulate": "solve", "write_netcdf": "io", "open_result": "io", "exposure": "exposures"}


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):  # a submodule not imported yet (``ip.io``, ``ip.trial``), as before
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


try:
    from importlib.metadata import version as _version

    __version__ = _version("immunopd")
except Exception:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"
