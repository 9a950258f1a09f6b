"""xarray export with provenance, written safely.

Files are written to a temporary file in the target's folder and renamed into place only
when complete, so a failed or interrupted write never leaves a half-written file where a
good one was. A new file gets the permissions the umask allows (``0o666 & ~umask``, as ``open``
gives), a replaced one keeps its own; netCDF variables are zlib-compressed (lossless).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
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


def umask() -> int:
    """This process's umask (read without changing it where Linux allows)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only a fallback)
    os.umask(mask)
    return mask


def _final_mode(path: Path) -> int:
    """The mode a finished file gets: a replaced file's own, else ``0o666 & ~umask`` (mkstemp makes 0600)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~umask()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=_folder(path))
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _final_mode(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


#: zlib level of netCDF variables: 4 gives nearly all of level 9's reduction at a fraction of its time
COMPLEVEL = 4
#: variables smaller than this are stored as they are: HDF5's index of a chunked (compressed)
#: variable costs a few KiB, more than a small variable saves (a 2-patient result grew 2.4x)
MIN_COMPRESSED_BYTES = 4096
#: encodings kept from a variable (CF packing and time units); the rest (chunk sizes, contiguity of
#: a file it was read from) would clash with compression
_KEPT_ENCODING = ("dtype", "_FillValue", "units", "calendar", "scale_factor", "add_offset")


def compressed_encoding(ds: xr.Dataset) -> dict[str, dict]:
    """zlib (with byte shuffle) for every numeric variable of at least :data:`MIN_COMPRESSED_BYTES`;
    scalars and strings (which HDF5 cannot usefully chunk) and small variables are stored as they are."""
    out = {}
    for name, v in ds.variables.items():
        if v.dtype.kind in "biuf" and v.ndim >= 1 and v.nbytes >= MIN_COMPRESSED_BYTES:
            kept = {k: val for k, val in v.encoding.items() if k in _KEPT_ENCODING}
            out[name] = {**kept, "zlib": True, "complevel": COMPLEVEL, "shuffle": True}
    return out


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike, *, compress: bool = True) -> Path:
    """Write ``ds`` to netCDF-4 (h5netcdf engine) at ``path`` atomically, zlib-compressed
    (lossless: values read back identical) unless ``compress=False``; return the path."""
    with atomic_file(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=compressed_encoding(ds) if compress else None)
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
