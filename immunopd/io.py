"""xarray export with provenance, written safely.

Files are written to a temporary file in the target's folder and renamed into place only
when complete, so a failed or interrupted write never leaves a half-written file where a
good one was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import xarray as xr

from .errors import InputError, describe

__all__ = ["write_netcdf", "write_zarr", "replace_folder", "save_figure", "write_text", "atomic_file", "open_result"]


def _folder(path: Path) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(describe("output path folder", str(folder), "an existing folder"))
    return folder


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=_folder(path))
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to netCDF-4 (h5netcdf engine) at ``path`` atomically; return the path."""
    with atomic_file(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return Path(path)


def write_zarr(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to a zarr store at ``path``: into a temporary folder beside it, renamed over
    ``path`` only when complete (a previous store is moved aside first and removed after).
    Zarr format 2, whose fixed-width string dtypes for labels are stable."""
    path = Path(path)
    folder = _folder(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=folder))
    try:
        ds.to_zarr(tmp / "store.zarr", mode="w", zarr_format=2)
        replace_folder(tmp / "store.zarr", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def replace_folder(complete: Path, path: Path) -> None:
    """Rename the finished folder ``complete`` to ``path`` (on the same file system). A folder
    already at ``path`` is first moved aside, then removed, so ``path`` never holds a mix."""
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=_folder(path)))
        os.replace(path, old / "previous")
        os.replace(complete, path)
        shutil.rmtree(old)
    else:
        os.replace(complete, path)


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG at ``path`` atomically."""
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def open_result(path: str | os.PathLike) -> xr.Dataset:
    """Open a result written by :func:`write_netcdf` (loaded into memory, file closed)."""
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()
