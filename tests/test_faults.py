"""Faults while writing results (issue #18, class 5): a full disk, a read-only file system and
Ctrl-C during a run are reported in one line, leave no temporary file, and never replace a good
result. The file systems are small tmpfs mounts (the tests run as root here and in CI; where
mounting is not permitted they are skipped and say why)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import immunopd
from immunopd.cli import main
from immunopd.errors import OutputError
from immunopd.io import save_figure, write_netcdf, write_text, write_zarr

REPO = Path(immunopd.__file__).resolve().parents[1]  # subprocesses import this tree's immunopd
TAIL = "; nothing was replaced (a file already at that path is unchanged and no partial file is left)"


def _mount(folder: Path, options: str) -> None:
    folder.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root and mount permission): {proc.stderr.strip() or proc.returncode}")


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs: room for a small file, not for a result."""
    folder = tmp_path / "fs"
    _mount(folder, "size=64k")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def _big() -> xr.Dataset:
    """800 KB of incompressible numbers: more than the 64 KiB file system holds, compressed or not."""
    return xr.Dataset({"x": (("patient", "time"), np.random.default_rng(0).random((1000, 100)), {"units": "mm3"})})


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(np.random.default_rng(0).random((500, 500)))  # noise: a PNG of several hundred KB
    return fig


def _write(kind: str, path: Path):
    if kind == "netcdf":
        return write_netcdf(_big(), path)
    if kind == "zarr":
        return write_zarr(_big(), path)
    if kind == "png":
        return save_figure(_figure(), path)
    return write_text("0123456789" * 20_000, path)


SUFFIX = {"netcdf": ".nc", "zarr": ".zarr", "png": ".png", "text": ".txt"}


def _good(kind: str, path: Path) -> None:
    """A small good result at ``path`` (a zarr store for zarr, a file otherwise)."""
    if kind == "zarr":
        write_zarr(xr.Dataset({"x": ("a", np.arange(3.0))}), path)
    else:
        path.write_bytes(b"a good result\n")


def _contents(path: Path) -> dict:
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return {"": path.read_bytes()}


@pytest.mark.parametrize("kind", list(SUFFIX))
def test_disk_full_is_one_clear_error_and_keeps_the_good_result(kind, small_fs):
    path = small_fs / f"result{SUFFIX[kind]}"
    _good(kind, path)
    before = _contents(path)
    with pytest.raises(OutputError) as info:
        _write(kind, path)
    assert str(info.value) == f"cannot write {str(path)!r}: no space left on device [errno 28]" + TAIL
    assert info.value.errno == 28
    assert sorted(os.listdir(small_fs)) == [path.name]  # no .part file or folder left
    assert _contents(path) == before


@pytest.mark.parametrize("kind", list(SUFFIX))
def test_disk_full_leaves_nothing_where_there_was_nothing(kind, small_fs):
    path = small_fs / f"result{SUFFIX[kind]}"
    with pytest.raises(OutputError, match=r"no space left on device \[errno 28\]"):
        _write(kind, path)
    assert os.listdir(small_fs) == []


@pytest.mark.parametrize("kind", list(SUFFIX))
def test_read_only_file_system_is_one_clear_error_and_keeps_the_good_result(kind, tmp_path):
    folder = tmp_path / "ro"
    _mount(folder, "size=1m")
    try:
        path = folder / f"result{SUFFIX[kind]}"
        _good(kind, path)
        before = _contents(path)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        with pytest.raises(OutputError) as info:
            _write(kind, path)
        assert str(info.value) == f"cannot write {str(path)!r}: read-only file system [errno 30]" + TAIL
        assert sorted(os.listdir(folder)) == [path.name] and _contents(path) == before
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_cli_refuses_a_read_only_output_folder_before_running(tmp_path, capsys):
    folder = tmp_path / "ro"
    _mount(folder, "size=64k,ro")
    try:
        assert main(["export-sbml", "--out", str(folder / "model.xml")]) == 2
        assert capsys.readouterr().err == (f"immunopd: error: --out folder = {str(folder)!r} is not allowed; "
                                           "allowed: a folder this user may write in\n")
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_cli_text_output_on_a_full_disk(small_fs, capsys, monkeypatch):
    """export-sbml writes ~100 KB of SBML: more than 64 KiB."""
    out = small_fs / "model.xml"
    out.write_bytes(b"<sbml/>\n")
    assert main(["export-sbml", "--regimen", "pembrolizumab 200 mg q3w", "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"immunopd: error: cannot write {str(out)!r}: no space left on device [errno 28]{TAIL}\n"
    assert os.listdir(small_fs) == ["model.xml"] and out.read_bytes() == b"<sbml/>\n"


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "IMMUNOPD_NO_CACHE": "1"}


def test_cli_netcdf_on_a_full_disk_no_crash(small_fs):
    """The reported fault: `immunopd simulate` onto a full disk ended with exit 139 (SIGSEGV inside
    HDF5) and dozens of h5py tracebacks. Now: exit 2, one line, the good file untouched."""
    out = small_fs / "result.nc"
    out.write_bytes(b"a good result\n")
    proc = subprocess.run([sys.executable, "-m", "immunopd.cli", "simulate", "--regimen", "pembrolizumab 200 mg q3w",
                           "--days", "365", "--out", str(out)], capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr == f"immunopd: error: cannot write {str(out)!r}: no space left on device [errno 28]{TAIL}\n"
    assert os.listdir(small_fs) == ["result.nc"] and out.read_bytes() == b"a good result\n"


def test_cli_ctrl_c_during_a_trial_exits_130_without_a_traceback(tmp_path):
    """A real SIGINT while an in-process trial runs over an existing file: exit 130 (it was
    -11, a crash in the interpreter's shutdown under XLA's threads), one line after the progress
    bar, no traceback, the existing file unchanged and nothing else left."""
    out = tmp_path / "existing.nc"
    out.write_bytes(b"a good result\n")
    # Ctrl-C in a terminal reaches a process whose SIGINT is at its default; a test suite started in
    # the background by a shell without job control (`make test &`) passes SIGINT on as ignored, and
    # Python then rightly leaves it ignored, so the child restores Python's own handler first
    argv = ["trial", "--regimen", "pembrolizumab 200 mg q3w", "--patients", "20000", "--out", str(out)]
    start = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             f"sys.argv = ['immunopd'] + {argv!r}; runpy.run_module('immunopd.cli', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", start],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=tmp_path)
    err = bytearray()
    reader = threading.Thread(target=lambda: [err.extend(b) for b in iter(lambda: os.read(proc.stderr.fileno(), 4096), b"")])
    reader.start()
    deadline = time.monotonic() + 300
    while b"512/20000" not in err and proc.poll() is None and time.monotonic() < deadline:  # the first chunk is done: running
        time.sleep(0.05)
    assert proc.poll() is None, "the trial ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    proc.stdout.read()
    assert proc.wait(timeout=300) == 130
    reader.join(timeout=60)
    text = err.decode()
    lines = [ln for ln in text.replace("\r", "\n").split("\n") if ln.strip() and not ln.startswith("trial:")]
    assert lines == ["immunopd: interrupted; no output was replaced by a partial one "
                     "(a .zarr trial resumes when the same command is run again)"], text[-2000:]
    assert "Traceback" not in text
    assert os.listdir(tmp_path) == ["existing.nc"] and out.read_bytes() == b"a good result\n"
