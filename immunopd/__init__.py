"""immunopd: mechanistic PD models of cancer immunotherapy and its resistance.

JAX runs in float64 in this package: importing immunopd enables ``jax_enable_x64`` once (at
once if JAX is already imported, else through ``JAX_ENABLE_X64=1``, which JAX reads when it is
first imported, so child processes inherit it). It also turns on JAX's persistent compilation
cache in :func:`compilation_cache_dir` (``IMMUNOPD_CACHE_DIR``, default
``~/.cache/immunopd/jax``; ``IMMUNOPD_NO_CACHE=1`` switches it off).

JAX, diffrax and xarray load only when something needs them: the declarations (parameters,
drugs, regimens) and the command line's ``--help``, ``params``, ``drugs`` and ``datasets``
answer without them. ``simulate``, ``exposure``, ``write_netcdf`` and ``open_result`` are imported on first
use (PEP 562).
"""

import os as _os
import sys as _sys

#: compiles shorter than this (s) are not written to the persistent cache (the solver takes several)
CACHE_MIN_COMPILE_SECONDS = 0.5


def compilation_cache_dir() -> str | None:
    """Where compiled solvers are kept between processes: ``IMMUNOPD_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/immunopd/jax`` (``~/.cache/immunopd/jax``); None when ``IMMUNOPD_NO_CACHE``
    is set to anything but ``0`` or when ``JAX_COMPILATION_CACHE_DIR`` chose another place."""
    if _os.environ.get("IMMUNOPD_NO_CACHE", "").strip() not in ("", "0"):
        return None
    own = _os.environ.get("IMMUNOPD_CACHE_DIR", "").strip()
    if own:
        return own
    base = _os.environ.get("XDG_CACHE_HOME", "").strip() or _os.path.join(_os.path.expanduser("~"), ".cache")
    return _os.path.join(base, "immunopd", "jax")


def _configure_jax() -> None:
    """float64, and JAX's persistent compilation cache (a second CLI call loads the compiled
    solver instead of compiling it again). Through the environment while JAX is not imported (JAX
    reads it on import; child processes such as Dask workers inherit it), else jax.config. A cache
    directory the user gave JAX (JAX_COMPILATION_CACHE_DIR) is left as it is."""
    settings = {"jax_enable_x64": True}
    folder = compilation_cache_dir()
    if folder is None and _os.environ.get("IMMUNOPD_NO_CACHE", "").strip() not in ("", "0"):
        settings["jax_enable_compilation_cache"] = False
    elif folder is not None and not _os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        settings["jax_compilation_cache_dir"] = folder
        settings["jax_persistent_cache_min_compile_time_secs"] = CACHE_MIN_COMPILE_SECONDS
        # JAX does not cache a program with host callbacks, and equinox's runtime checks are host
        # callbacks unless EQX_ON_ERROR=nan (read when equinox is imported, so only if it is not
        # yet). On immunopd's solves they check what is validated before (output times increasing
        # and within the solve; the solver's own failures are result codes, throw=False).
        if "equinox" not in _sys.modules:
            _os.environ.setdefault("EQX_ON_ERROR", "nan")
    if "jax" in _sys.modules:
        for name, value in settings.items():
            _sys.modules["jax"].config.update(name, value)
    else:
        for name, value in settings.items():
            _os.environ[name.upper()] = str(int(value) if isinstance(value, bool) else value)


_configure_jax()

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
