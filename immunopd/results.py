"""Build the labelled result of a simulation: an ``xarray.Dataset`` with units and provenance.

Variable names are a stable interface read by the CLI, notebooks and other tools: the model
states (:data:`immunopd.models.core.STATES`), the observables
(:data:`immunopd.models.core.OBSERVABLES`), every parameter as a ``(patient,)`` variable, and
``solver_status`` / ``num_steps``. xarray drops attrs in arithmetic, so units are set here.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np
import xarray as xr

from .models.core import OBSERVABLES, STATE_UNITS
from .models.pk import TARGETS

__all__ = ["build_dataset", "package_versions", "time_course_attrs"]


def package_versions() -> dict[str, str]:
    out = {}
    for name in ("immunopd", "jax", "diffrax", "equinox", "xarray", "numpy"):
        try:
            out[f"{name}_version"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[f"{name}_version"] = "unknown"
    return out


def time_course_attrs(name: str) -> dict[str, str]:
    """Units and long name of a state or observable kept over time."""
    if name in OBSERVABLES:
        unit, description = OBSERVABLES[name]
        return {"units": unit, "long_name": description}
    return {"units": STATE_UNITS[name], "long_name": name.replace("_", " ")}


def build_dataset(*, model, ts, obs, values, n, status, steps, attrs, dosed_mg) -> xr.Dataset:
    """``obs``: ``{name: (patient, time)}`` for the states and observables to keep, in the
    order they are to appear."""
    dims = ("patient", "time")
    data = {name: xr.Variable(dims, v, time_course_attrs(name)) for name, v in obs.items()}
    for spec in model.parameters:
        v = np.broadcast_to(np.asarray(values[spec.name], dtype=np.float64), (n,)).copy()
        data[spec.name] = xr.Variable(
            ("patient",), v, {"units": spec.unit, "long_name": spec.description, "source": spec.source, "kind": "parameter"}
        )
    for k, target in enumerate(TARGETS):
        data[f"dosed_anti_{target}"] = xr.Variable(
            ("patient",), dosed_mg[:, k], {"units": "mg", "long_name": f"total anti-{target} amount infused by the last output time"}
        )
    data["solver_status"] = xr.Variable(
        ("patient",), status.astype(np.int32), {"long_name": "diffrax result code (0 = success)", "units": "1"}
    )
    data["num_steps"] = xr.Variable(("patient",), steps.astype(np.int64), {"long_name": "accepted + rejected solver steps", "units": "1"})
    coords = {
        "patient": ("patient", np.arange(n), {"long_name": "virtual patient index"}),
        "time": ("time", np.asarray(ts, dtype=np.float64), {"units": "day", "long_name": "time since treatment start"}),
    }
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update({"title": "immunopd simulation", "conventions": "units in each variable's 'units' attr", **package_versions(), **attrs})
    return ds
