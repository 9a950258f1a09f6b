"""Compiling less (issue #18): JAX's persistent compilation cache between processes, and batch
sizes padded to a few buckets so a new number of patients reuses a compiled solve. (The suite
itself runs with the cache off, IMMUNOPD_NO_CACHE=1 in conftest.py, so it never writes into the
user's cache; the cache tests below use their own folders.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import immunopd as ip
from immunopd.integrate import bucket, chunk_size

REPO = Path(ip.__file__).resolve().parents[1]

SCRIPT = """
import immunopd as ip
from jax import monitoring
hits = []
monitoring.register_event_listener(lambda event, **kw: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None)
ip.simulate("pembrolizumab 200 mg q3w", days=23, outputs=["tumor_volume"])
import jax, os
print(len(hits), jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache, os.environ.get("EQX_ON_ERROR"))
"""


def _run(env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMMUNOPD_", "JAX_", "EQX_"))}
    env.update({"PYTHONPATH": str(REPO), **env_extra})
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, env=env, timeout=600).stdout


def test_second_process_loads_the_compiled_solver_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first = _run({"IMMUNOPD_CACHE_DIR": str(cache)})
    # nothing to load yet; the solver is written (equinox's checks as NaN: a host callback is never cached)
    assert first == f"0 {cache} True nan\n"
    assert [p.name.split("-")[0] for p in cache.iterdir()] == ["jit_one_patient"]
    second = _run({"IMMUNOPD_CACHE_DIR": str(cache)})
    assert second == f"1 {cache} True nan\n"  # the solver loaded, not compiled


def test_default_cache_folder_and_off_switch(tmp_path):
    home = tmp_path / "xdg"
    assert _run({"XDG_CACHE_HOME": str(home)}).split()[1:] == [str(home / "immunopd" / "jax"), "True", "nan"]
    assert (home / "immunopd" / "jax").is_dir()
    off = tmp_path / "off"
    assert _run({"IMMUNOPD_CACHE_DIR": str(off), "IMMUNOPD_NO_CACHE": "1"}) == "0 None False None\n"
    assert not off.exists()


def test_batch_sizes_are_padded_to_a_few_buckets():
    assert [bucket(n) for n in (1, 2, 3, 4, 5, 33, 64, 65, 128)] == [1, 2, 4, 4, 8, 64, 64, 128, 128]
    assert [chunk_size(n, 2) for n in (129, 256, 257, 600, 1025, 100_000)] == [128, 128, 256, 512, 512, 512]
    assert chunk_size(700, 1) == 512


def test_a_new_batch_size_reuses_the_compiled_solve_with_identical_results():
    """3 patients, then the same 3 and a 4th: one compiled program (both pad to 4), and the first
    three patients' numbers identical bit for bit; a 5th patient opens the next bucket (8)."""
    from immunopd.solve import check_times, problem

    g = ip.PARAMETERS["growth_rate"].default * np.array([1.0, 1.2, 0.8, 1.1, 0.9])
    fn = problem("pembrolizumab 200 mg q3w", None, ts=check_times(None, 31), outputs=("tumor_volume",)).fn
    assert fn._cache_size() == 0  # days=31 is used nowhere else in this module
    three = ip.simulate("pembrolizumab 200 mg q3w", {"growth_rate": g[:3]}, days=31, outputs=["tumor_volume"])
    four = ip.simulate("pembrolizumab 200 mg q3w", {"growth_rate": g[:4]}, days=31, outputs=["tumor_volume"])
    assert fn._cache_size() == 1
    np.testing.assert_array_equal(three.tumor_volume.values, four.tumor_volume.values[:3])
    assert three.sizes["patient"] == 3 and four.sizes["patient"] == 4
    ip.simulate("pembrolizumab 200 mg q3w", {"growth_rate": g}, days=31, outputs=["tumor_volume"])
    assert fn._cache_size() == 2
