"""The numbalsoda peer of bench/simulate.py is the model written again by hand; its speed ratio
means something only if it solves the same equations. numba and numbalsoda are optional (they
need a Fortran compiler), so this runs the peer's own right-hand side and segment loop in plain
Python: numba's decorators become identities and numbalsoda's LSODA becomes scipy's, and the
result must match immunopd at tight tolerance on patients where every term acts (inflammatory
swelling included). bench/simulate.py checks the compiled peer the same way before timing it.
"""

import types

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import immunopd as ip
from bench import numba_peer as peer


class _CFunc:
    """Stands in for a numba cfunc: callable, with the function itself as its 'address'."""

    def __init__(self, f):
        self.address = f


def _scipy_lsoda(address, y, t_eval, data, rtol, atol, mxstep):
    def rates(t, u):
        du = np.zeros_like(u)
        address(t, u, du, data)
        return du

    sol = solve_ivp(rates, (t_eval[0], t_eval[-1]), y, method="LSODA", t_eval=t_eval, rtol=rtol, atol=atol)
    return sol.y.T.copy(), sol.success


@pytest.fixture
def python_peer(monkeypatch):
    shims = {"cfunc": lambda *a, **k: _CFunc, "lsoda_sig": None, "carray": lambda arr, shape: arr,
             "njit": lambda *a, **k: (lambda f: f), "prange": range, "lsoda": _scipy_lsoda,
             "numba": types.SimpleNamespace(set_num_threads=lambda n: None, config=types.SimpleNamespace(NUMBA_NUM_THREADS=1))}
    for name, value in shims.items():
        monkeypatch.setattr(peer, name, value, raising=False)
    peer._compiled.cache_clear()
    yield peer
    peer._compiled.cache_clear()


def test_the_peer_solves_immunopds_equations(python_peer):
    times = np.arange(0.0, 181.0, 7.0)
    params = {"inflammatory_swelling": np.array([0.0, 1.0, 4.0]), "inflammation_clearance": np.array([0.05, 0.02, 0.2]),
              "antigen_loss_rate": np.array([0.0, 1e-3, 0.0])}
    regimen = "pembrolizumab 200 mg q3w; bexmarilimab 1 mg/kg q3w"
    ds = ip.simulate(regimen, params, times=times, weight=70.0, outputs=list(peer.PD_STATES) + ["tumor_volume"],
                     rtol=1e-10, atol=1e-12)
    assert float(ds.inflammation.max()) > 1000.0  # the swelling term really acts
    volume, status = python_peer.solve(python_peer.from_dataset(ds, regimen, times), rtol=1e-10, atol=1e-12)
    assert np.all(status == 0)
    np.testing.assert_allclose(volume, ds.tumor_volume.values, rtol=1e-6)
