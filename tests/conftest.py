"""Test configuration: float64 JAX (set by importing immunopd), strict rank promotion, and no
persistent compilation cache (the suite must not write into the user's ~/.cache/immunopd; the
cache's own tests use folders of their own)."""

import os

os.environ.setdefault("IMMUNOPD_NO_CACHE", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

import immunopd  # noqa: F401, E402  (enables float64)

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """Each test module starts without the previous modules' compiled programs: XLA:CPU holds
    about 700 memory mappings per program and the suite compiles more than the kernel's
    default limit of 65,530 mappings allows in one process (see
    immunopd.integrate.release_compiled_if_needed)."""
    yield
    jax.clear_caches()


@pytest.fixture(scope="session")
def default_params():
    return immunopd.PARAMETERS.defaults()
