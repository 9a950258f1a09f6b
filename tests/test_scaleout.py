"""Chunked, resumable runs: resume after an interruption, a worker killed mid-run, safe writes."""

import errno
import os
import signal
import threading
import time

import numpy as np
import pytest
import xarray as xr

from immunopd.errors import InputError
from immunopd.population import sample
from immunopd.scaleout import run_trial_to_zarr
from immunopd.trial import run_trial

REGS = {"pembrolizumab": "pembrolizumab 200 mg q3w", "untreated": "none"}
SETTINGS = dict(days=60, outputs=("sld",))


@pytest.fixture(scope="module")
def pop():
    return sample(240, seed=4)


@pytest.fixture(scope="module")
def reference(pop, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    run = run_trial_to_zarr(REGS, pop, out, chunk_patients=40, **SETTINGS)
    assert run.computed == tuple(range(6)) and run.reused == ()
    with xr.open_zarr(out) as ds:
        return ds.load()


def test_chunked_result_equals_the_in_process_trial(reference, pop):
    """Same variables, coordinates, units and values as run_trial's Dataset; the store only adds
    the number of chunks to the attrs."""
    direct = run_trial(REGS, pop, **SETTINGS)
    for name in ("sld", "best_response", "pfs_days", "orr", "dcr", "median_pfs_days", "growth_rate", "cold"):
        np.testing.assert_array_equal(reference[name].values, direct[name].values, err_msg=name)
    stored = reference.copy()
    assert stored.attrs.pop("chunks_written") == 6
    xr.testing.assert_identical(stored, direct)


def test_interrupted_run_resumes_with_only_the_missing_chunks(pop, tmp_path, reference):
    out = tmp_path / "t.zarr"

    def stop_after_two(k, seen=[]):
        seen.append(k)
        if len(seen) == 2:
            raise KeyboardInterrupt  # as Ctrl-C would, between chunks

    with pytest.raises(KeyboardInterrupt):
        run_trial_to_zarr(REGS, pop, out, chunk_patients=40, on_chunk_done=stop_after_two, **SETTINGS)
    assert not out.exists() and len(list((tmp_path / "t.zarr.parts").glob("part-*.done"))) == 2
    run = run_trial_to_zarr(REGS, pop, out, chunk_patients=40, **SETTINGS)
    assert run.reused == (0, 1) and run.computed == (2, 3, 4, 5)
    with xr.open_zarr(out) as ds:
        xr.testing.assert_identical(ds.load().drop_attrs(), reference.drop_attrs())
    assert not (tmp_path / "t.zarr.parts").exists()


def test_parts_of_a_different_run_are_not_mixed_in(pop, tmp_path):
    out = tmp_path / "t.zarr"
    with pytest.raises(KeyboardInterrupt):
        run_trial_to_zarr(REGS, pop, out, chunk_patients=40, on_chunk_done=lambda k: (_ for _ in ()).throw(KeyboardInterrupt),
                          **SETTINGS)
    with pytest.raises(InputError, match=r"partial results folder = .* is not allowed; allowed: parts of this same run only"):
        run_trial_to_zarr(REGS, pop, out, chunk_patients=40, days=61, outputs=("sld",))


def test_failed_write_keeps_the_previous_result_and_disk_full_is_named(pop, tmp_path, monkeypatch):
    out = tmp_path / "t.zarr"
    small = pop.isel(np.arange(40))
    run_trial_to_zarr(REGS, small, out, chunk_patients=40, **SETTINGS)
    with xr.open_zarr(out) as ds:
        before = ds.load()

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_zarr", full)
    with pytest.raises(InputError, match=r"no space left on the device while writing .*t\.zarr"):
        run_trial_to_zarr(REGS, small, out, chunk_patients=40, **{**SETTINGS, "days": 59})
    monkeypatch.undo()
    with xr.open_zarr(out) as ds:
        xr.testing.assert_identical(ds.load(), before)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.mark.slow
def test_a_worker_killed_mid_run_changes_nothing(pop, tmp_path, reference):
    distributed = pytest.importorskip("distributed")
    from immunopd.scaleout import local_client

    client = local_client(2)
    try:
        # glibc's dynamic mmap threshold stays on in immunopd's workers (see scaleout.WORKER_CONFIG)
        assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset")).values()) == {"unset"}
        out = tmp_path / "d.zarr"
        parts = tmp_path / "d.zarr.parts"
        killed = []

        def killer():
            deadline = time.time() + 120
            while time.time() < deadline and not list(parts.glob("part-*.done")):
                time.sleep(0.05)
            worker = list(client.scheduler_info()["workers"])[0]
            pid = client.run(os.getpid, workers=[worker])[worker]
            os.kill(pid, signal.SIGKILL)  # the nanny restarts it; its in-flight task goes elsewhere
            killed.append(worker)

        t = threading.Thread(target=killer)
        t.start()
        run = run_trial_to_zarr(REGS, pop, out, client=client, chunk_patients=20, **SETTINGS)
        t.join()
        assert killed and sorted(run.computed) == list(range(12))
        with xr.open_zarr(out) as ds:
            got = ds.load()
        for name in ("sld", "best_response", "pfs_days", "orr", "median_pfs_days"):
            np.testing.assert_array_equal(got[name].values, reference[name].values, err_msg=name)
    finally:
        client.close()
        client.cluster.close()


def test_sensitivity_evaluations_in_resumable_chunks_equal_one_pass(tmp_path):
    from immunopd import sensitivity as sa
    from immunopd.scaleout import evaluate_distributed

    names = ["growth_rate", "kill_rate"]
    prob = sa.define(names, sa.ranges_around_defaults(names, 2))
    X = sa.sample(prob, "sobol", 16, seed=1)
    out = sa.Outputs(tumor_days=(30.0,), sclever1_days=(30.0,), time_step_days=10)
    Y, grid = sa.evaluate(prob, X, regimen="pembrolizumab 200 mg q3w", days=30, outputs=out)
    with pytest.raises(KeyboardInterrupt):
        evaluate_distributed(prob, X, tmp_path / "p", chunk_samples=16, regimen="pembrolizumab 200 mg q3w", days=30, outputs=out,
                             on_chunk_done=lambda k: (_ for _ in ()).throw(KeyboardInterrupt) if k == 1 else None)
    Y2, grid2 = evaluate_distributed(prob, X, tmp_path / "p", chunk_samples=16, regimen="pembrolizumab 200 mg q3w", days=30, outputs=out)
    np.testing.assert_array_equal(grid, grid2)
    for k in Y:
        np.testing.assert_array_equal(Y[k], Y2[k])


def test_cli_trial_to_zarr(tmp_path, capsys):
    from immunopd.cli import main

    out = tmp_path / "t.zarr"
    assert main(["trial", "--regimen", "pembrolizumab 200 mg q3w", "--patients", "30", "--days", "42",
                 "--chunk-patients", "10", "--out", str(out)]) == 0
    assert "ORR" in capsys.readouterr().out
    with xr.open_zarr(out) as ds:
        assert ds.sizes["patient"] == 30 and ds.attrs["chunks_written"] == 3
    assert main(["trial", "--regimen", "none", "--workers", "2", "--out", str(tmp_path / "t.nc")]) == 2
    assert "a .zarr path when --workers" in capsys.readouterr().err
