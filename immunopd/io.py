"""xarray export with provenance, written safely.

Files are written to a temporary file in the target's folder and renamed into place only
when complete, so a failed or interrupted write never leaves a half-written file where a
good one was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import xarray as xr

from .errors import InputError, describe

__all__ = ["write_netcdf", "open_result"]


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to netCDF-4 (h5netcdf engine) at ``path`` atomically; return the path."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(describe("output path folder", str(folder), "an existing folder"))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def open_result(path: str | os.PathLike) -> xr.Dataset:
    """Open a result written by :func:`write_netcdf` (loaded into memory, file closed)."""
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()
