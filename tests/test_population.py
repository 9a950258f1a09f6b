"""Virtual populations: reproducible sampling, the log-normal CV, correlations, covariates, netCDF."""

import json

import numpy as np
import pytest
import xarray as xr

from immunopd.errors import InputError, ParameterError
from immunopd.models.core import PARAMETERS
from immunopd.population import Covariates, Population, sample


def test_same_seed_same_population_and_different_seed_differs():
    a, b, c = sample(50, seed=3), sample(50, seed=3), sample(50, seed=4)
    xr.testing.assert_identical(a.data, b.data)
    assert not np.allclose(a.data.growth_rate, c.data.growth_rate)


def test_lognormal_cv_median_and_correlation():
    pop = sample(40_000, seed=1, cv={"growth_rate": 0.5, "kill_rate": 0.3}, correlation={("growth_rate", "kill_rate"): 0.6},
                 covariates=Covariates(weight_median_kg=None, baseline_volume_median_mm3=None, cold_fraction=None))
    g, k = pop.data.growth_rate.values, pop.data.kill_rate.values
    # CV of a log-normal with omega^2 = ln(1 + CV^2) is CV; median is the typical value
    assert np.std(g) / np.mean(g) == pytest.approx(0.5, rel=0.03)
    assert np.median(g) == pytest.approx(PARAMETERS["growth_rate"].default, rel=0.02)
    assert np.corrcoef(np.log(g), np.log(k))[0, 1] == pytest.approx(0.6, abs=0.015)
    assert set(pop.parameter_names) == {"growth_rate", "kill_rate"}


def test_draws_respect_parameter_bounds():
    pop = sample(5000, seed=2, cv={"effector_influx": 3.0})
    spec = PARAMETERS["effector_influx"]
    assert pop.data.effector_influx.max() <= spec.upper and pop.data.effector_influx.min() >= spec.lower


def test_covariates_cold_fraction_and_sclever1():
    pop = sample(4000, seed=5, covariates=Covariates(cold_fraction=0.25))
    cold = pop.data.cold.values.astype(bool)
    assert cold.mean() == pytest.approx(0.25, abs=0.02)
    np.testing.assert_array_equal(pop.data.tcell_exclusion.values, np.where(cold, 0.9, 0.0))
    # baseline sClever-1 follows its release rate (the biomarker is a model output, not a free draw)
    r = np.corrcoef(np.log(pop.data.sclever1_release), np.log(pop.data.baseline_sclever1))[0, 1]
    assert r > 0.5
    assert np.median(pop.data.body_weight) == pytest.approx(75.0, rel=0.02)


def test_baseline_volume_defaults_match_the_shipped_data():
    from immunopd.calibration import observed_responses

    obs = observed_responses()
    v = np.pi / 6 * obs.baseline_mm.to_numpy() ** 3
    cov = Covariates()
    assert np.median(v) == pytest.approx(cov.baseline_volume_median_mm3, rel=0.01)
    assert np.std(np.log(v)) == pytest.approx(cov.baseline_volume_log_sd, abs=0.01)


def test_uniform_plausible_sampling():
    pop = sample(3000, seed=1, cv={}, uniform={"resistant_fraction0": (0.1, 0.5)})
    x = pop.data.resistant_fraction0.values
    assert x.min() >= 0.1 and x.max() < 0.5 and np.mean(x) == pytest.approx(0.3, abs=0.01)


def test_log_uniform_sampling_gives_each_decade_equal_weight():
    """ln x is uniform on (ln 1e-5, ln 0.1): a quarter of the draws below 10^(-5 + 0.25 x 4) = 1e-4,
    the median at sqrt(1e-5 x 0.1) = 1e-3. Tolerances about 4 standard errors at n = 20,000 (the
    median's is 3.3 % relative, the quarter's 0.0031)."""
    pop = sample(20000, seed=2, cv={}, log_uniform={"antigen_loss_rate": (1e-5, 0.1)})
    x = pop.data.antigen_loss_rate.values
    assert x.min() >= 1e-5 and x.max() < 0.1
    assert np.median(x) == pytest.approx(1e-3, rel=0.14)
    assert np.mean(x < 1e-4) == pytest.approx(0.25, abs=0.013)
    assert json.loads(pop.data.attrs["log_uniform"]) == {"antigen_loss_rate": [1e-5, 0.1]}


def test_netcdf_round_trip_and_subset(tmp_path):
    pop = sample(30, seed=9)
    pop.to_netcdf(tmp_path / "pop.nc")
    back = Population.open(tmp_path / "pop.nc")
    xr.testing.assert_identical(pop.data, back.data)
    sub = back.isel(np.array([3, 7]))
    assert len(sub) == 2 and list(sub.data.patient.values) == [3, 7]
    assert sub.params()["growth_rate"][1] == pop.data.growth_rate.values[7]


def test_bad_population_input():
    with pytest.raises(ParameterError, match="growth_rat"):
        sample(10, seed=1, cv={"growth_rat": 0.3})
    with pytest.raises(InputError, match=r"cv\['growth_rate'\] = -0\.1 is not allowed"):
        sample(10, seed=1, cv={"growth_rate": -0.1})
    with pytest.raises(InputError, match=r"n = 0 is not allowed"):
        sample(0, seed=1)
    with pytest.raises(InputError, match="positive-definite"):
        sample(10, seed=1, cv={"growth_rate": 0.3, "kill_rate": 0.3, "effector_influx": 0.3},
               correlation={("growth_rate", "kill_rate"): 0.9, ("growth_rate", "effector_influx"): 0.9, ("kill_rate", "effector_influx"): -0.9})
    with pytest.raises(InputError, match=r"uniform\['resistant_fraction0'\]"):
        sample(10, seed=1, uniform={"resistant_fraction0": (0.5, 2.0)})
    with pytest.raises(InputError, match=r"log_uniform\['antigen_loss_rate'\] = \(0\.0, 0\.01\) is not allowed.*0 < low < high"):
        sample(10, seed=1, log_uniform={"antigen_loss_rate": (0.0, 0.01)})
    with pytest.raises(InputError, match=r"uniform and log_uniform = \['antigen_loss_rate'\]"):
        sample(10, seed=1, uniform={"antigen_loss_rate": (0.0, 0.01)}, log_uniform={"antigen_loss_rate": (1e-4, 0.01)})
    with pytest.raises(InputError, match="covariates.cold_fraction = 1.5"):
        Covariates(cold_fraction=1.5)
