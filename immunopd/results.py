"""Build the labelled result of a simulation: an ``xarray.Dataset`` with units and provenance.

Variable names are a stable interface read by the CLI, notebooks and other tools, and all of
them come from the model's declaration: its states and observables as ``(patient, time)``;
``concentration(patient, drug, time)``, ``occupancy(patient, target, time)`` and
``drug_amount(patient, drug, compartment, time)`` (drug and target names are coordinates, not
parts of variable names); every parameter as a ``(patient,)`` variable carrying its own unit
and source; ``dosed(patient, drug)``, ``solver_status`` and ``num_steps``. xarray drops attrs
in arithmetic, so units are set here.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np
import xarray as xr

from .integrate import DRUG_OUTPUTS
from .pkmodels import COMPARTMENTS

__all__ = ["build_dataset", "package_versions", "time_course_attrs", "model_attrs", "drug_coords", "as_dims"]


def package_versions() -> dict[str, str]:
    out = {}
    for name in ("immunopd", "jax", "diffrax", "equinox", "xarray", "numpy"):
        try:
            out[f"{name}_version"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[f"{name}_version"] = "unknown"
    return out


def model_attrs(model) -> dict[str, str]:
    """The model's identity for a result's attrs."""
    return {"model": model.name, "growth_law": model.variant, "mechanisms": "; ".join(m.name for m in model.mechanisms),
            "targets": ", ".join(model.target_names)}


def time_course_attrs(model, name: str) -> dict[str, str]:
    """Units and long name of an output kept over time."""
    if name in DRUG_OUTPUTS:
        _, unit, description = DRUG_OUTPUTS[name]
        return {"units": unit, "long_name": description}
    unit, description = model.unit_of(name)
    return {"units": unit, "long_name": description}


def as_dims(name: str, array: np.ndarray, lead: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """Dims and data of an output whose solver layout is ``lead + (time, extra...)``: the extra
    (drug/target/compartment) dims move before ``time``, as in ``concentration(patient, drug, time)``."""
    extra = DRUG_OUTPUTS[name][0] if name in DRUG_OUTPUTS else ()
    if not extra:
        return lead + ("time",), array
    k = len(lead)
    order = list(range(k)) + list(range(k + 1, k + 1 + len(extra))) + [k]
    return lead + extra + ("time",), np.transpose(array, order)


def drug_coords(model, drugs) -> dict:
    """The drug, target and compartment coordinates, with each drug's target and PK model."""
    names = [d.name for d in drugs]
    return {
        "drug": ("drug", np.array(names, dtype=object if not names else str), {"long_name": "dosed drug"}),
        "drug_target": ("drug", np.array([d.target for d in drugs], dtype=object if not names else str), {"long_name": "target of each drug"}),
        "drug_pk_model": ("drug", np.array([d.pk.describe() for d in drugs], dtype=object if not names else str),
                          {"long_name": "PK model of each drug"}),
        "target": ("target", np.array(model.target_names, dtype=str), {"long_name": "drug target"}),
        "compartment": ("compartment", np.array(COMPARTMENTS, dtype=str), {"long_name": "PK compartment ('eliminated' is cumulative)"}),
    }


def build_dataset(*, model, ts, obs, values, n, status, steps, attrs, dosed_mg, drugs) -> xr.Dataset:
    """``obs``: ``{name: (patient, time, ...)}`` for the outputs to keep, in the order they are to appear."""
    data = {}
    for name, v in obs.items():
        dims, arr = as_dims(name, v, ("patient",))
        data[name] = xr.Variable(dims, arr, time_course_attrs(model, name))
    for spec in model.parameters:
        v = np.broadcast_to(np.asarray(values[spec.name], dtype=np.float64), (n,)).copy()
        data[spec.name] = xr.Variable(
            ("patient",), v, {"units": spec.unit, "long_name": spec.description, "source": spec.source, "kind": "parameter"}
        )
    data["dosed"] = xr.Variable(("patient", "drug"), np.asarray(dosed_mg, dtype=np.float64).reshape(n, len(drugs)),
                                {"units": "mg", "long_name": "total amount of each drug dosed by the last output time"})
    data["solver_status"] = xr.Variable(
        ("patient",), status.astype(np.int32), {"long_name": "diffrax result code (0 = success; 99 = no untreated steady state)", "units": "1"}
    )
    data["num_steps"] = xr.Variable(("patient",), steps.astype(np.int64), {"long_name": "accepted + rejected solver steps", "units": "1"})
    coords = {
        "patient": ("patient", np.arange(n), {"long_name": "virtual patient index"}),
        "time": ("time", np.asarray(ts, dtype=np.float64), {"units": "day", "long_name": "time since treatment start"}),
        **drug_coords(model, drugs),
    }
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update({"title": "immunopd simulation", "conventions": "units in each variable's 'units' attr", **package_versions(), **attrs})
    return ds
