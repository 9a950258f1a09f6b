"""immunopd: mechanistic PD models of cancer immunotherapy and its resistance.

JAX runs in float64 in this package: importing immunopd sets ``jax_enable_x64`` once.
"""

import jax

jax.config.update("jax_enable_x64", True)

from .dosing import PRESETS as PRESETS  # noqa: E402
from .dosing import DoseSeries as DoseSeries  # noqa: E402
from .dosing import Regimen as Regimen  # noqa: E402
from .errors import ImmunopdError as ImmunopdError  # noqa: E402
from .errors import InputError as InputError  # noqa: E402
from .errors import ParameterError as ParameterError  # noqa: E402
from .errors import RegimenError as RegimenError  # noqa: E402
from .errors import SolverError as SolverError  # noqa: E402
from .io import open_result as open_result  # noqa: E402
from .io import write_netcdf as write_netcdf  # noqa: E402
from .models.core import PARAMETERS as PARAMETERS  # noqa: E402
from .models.core import core_model as core_model  # noqa: E402
from .models.drugs import DRUGS as DRUGS  # noqa: E402
from .drugs import Drug as Drug  # noqa: E402
from .spec import Model as Model  # noqa: E402
from .spec import Mechanism as Mechanism  # noqa: E402
from .solve import simulate as simulate  # noqa: E402

try:
    from importlib.metadata import version as _version

    __version__ = _version("immunopd")
except Exception:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"
