"""Test configuration: float64 JAX (set by importing immunopd) and strict rank promotion."""

import jax
import pytest

import immunopd  # noqa: F401  (enables float64)

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def default_params():
    return immunopd.PARAMETERS.defaults()
