"""xarray export with provenance, written safely.

Files are written to a temporary file in the target's folder and renamed into place only
when complete, so a failed or interrupted write never leaves a half-written file where a
good one was. A new file gets the permissions the umask allows (``0o666 & ~umask``, as ``open``
gives), a replaced one keeps its own; netCDF variables are zlib-compressed (lossless).

A write the system refuses (disk full, a read-only file system, no permission) raises
:class:`~immunopd.errors.OutputError` naming the path and the system's reason, after removing
the temporary file: the path keeps what it held. HDF5 is never shown the error itself: when
it meets a failed write it fails again on every object it then releases (dozens of
tracebacks) and can crash the interpreter (exit 139 seen with a full disk), so netCDF goes
through a file object that records the first failed write and lets HDF5 finish (see
:class:`_RecordingFile`).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import xarray as xr

from .errors import ImmunopdError, InputError, OutputError, describe

__all__ = ["write_netcdf", "write_zarr", "replace_folder", "remove_tree", "save_figure", "write_text", "atomic_file", "open_result",
           "output_error"]


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


def output_error(path, exc: OSError) -> OutputError:
    """``exc`` (a refused write) as one line naming ``path`` and the system's reason."""
    reason = os.strerror(exc.errno) if exc.errno else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    code = f" [errno {exc.errno}]" if exc.errno else ""
    err = OutputError(f"cannot write {str(path)!r}: {reason[:1].lower()}{reason[1:]}{code}; nothing was replaced "
                      "(a file already at that path is unchanged and no partial file is left)")
    err.errno = exc.errno
    return err


def _refused(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and not isinstance(exc, ImmunopdError)


def _fsync(path) -> None:
    """Flush ``path`` to its device, so a write the device refuses late (NFS, quotas) shows here."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.
    An OSError (disk full, read-only, no permission) becomes :class:`OutputError` naming ``path``."""
    path = Path(path)
    folder = _folder(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise output_error(path, exc) from exc
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync(tmp)
        os.chmod(tmp, _final_mode(path))
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if _refused(exc):
            raise output_error(path, exc) from exc
        raise


class _RecordingFile(io.RawIOBase):
    """A binary file for HDF5 (h5py's file-object driver) that never reports a failed write to it.

    The first OSError of a write, truncate or flush is kept in :attr:`error` and later writes
    are dropped (the position still advances), so HDF5 completes and closes normally; the
    caller raises :attr:`error` afterwards and discards the file. Told of the failure directly,
    HDF5 errors on every object it releases and may crash the process (exit 139 on a full
    tmpfs). Reads past what was written return zeros (h5py fills a short read)."""

    def __init__(self, raw):
        super().__init__()
        self._raw = raw
        self.error: OSError | None = None

    def readable(self):
        return True

    def writable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        return self._raw.seek(offset, whence)

    def tell(self):
        return self._raw.tell()

    def readinto(self, buffer):
        return self._raw.readinto(buffer)

    def write(self, data):
        view = memoryview(data).cast("B")
        n = len(view)
        if self.error is None:
            try:
                done = 0
                while done < n:  # a raw write may write less than asked
                    done += self._raw.write(view[done:])
                return n
            except OSError as exc:
                self.error = exc
        self._raw.seek(n, io.SEEK_CUR)  # dropped, as if written
        return n

    def truncate(self, size=None):
        if self.error is None:
            try:
                return self._raw.truncate(size)
            except OSError as exc:
                self.error = exc
        return self.tell() if size is None else size

    def flush(self):
        if self.error is None and not self._raw.closed:
            try:
                self._raw.flush()
            except OSError as exc:
                self.error = exc


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
    encoding = compressed_encoding(ds) if compress else None
    with atomic_file(path) as tmp, open(tmp, "r+b", buffering=0) as raw:
        out = _RecordingFile(raw)
        try:
            ds.to_netcdf(out, engine="h5netcdf", encoding=encoding)
        except Exception as exc:
            if out.error is not None:  # HDF5 failed because a write did: the write's reason
                raise out.error from exc
            raise
        if out.error is not None:
            raise out.error
    return Path(path)


def write_zarr(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to a zarr store at ``path``: into a temporary folder beside it, renamed over
    ``path`` only when complete (a previous store is moved aside first and removed after).
    Zarr format 2, whose fixed-width string dtypes for labels are stable."""
    path = Path(path)
    folder = _folder(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=folder))
    except OSError as exc:
        raise output_error(path, exc) from exc
    try:
        ds.to_zarr(tmp / "store.zarr", mode="w", zarr_format=2)
        replace_folder(tmp / "store.zarr", path)
    except BaseException as exc:
        remove_tree(tmp)
        if _refused(exc):
            raise output_error(path, exc) from exc
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return path


def remove_tree(folder: Path, settle_s: float = 0.1, limit_s: float = 5.0) -> None:
    """Remove ``folder``, and again until it stays away for ``settle_s``: after one chunk write
    fails, zarr's other writes go on in its event loop and recreate folders under it."""
    deadline = time.monotonic() + limit_s
    while True:
        shutil.rmtree(folder, ignore_errors=True)
        time.sleep(settle_s)
        if not os.path.lexists(folder) or time.monotonic() > deadline:
            return


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
        # "tight": a long y-axis label is kept inside the image instead of clipped at its edge
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
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
