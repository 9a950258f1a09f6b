"""SBML export, checked by a second independent simulator: AMICI imports it, compiles it to C++ and
re-simulates it (CVODES), and must agree with immunopd's own solve.

AMICI is an optional extra (``pip install -e '.[amici]'``: it is built from source and compiles
each model with a C++ compiler), so this module is skipped where it is not installed.
"""

import os
import sysconfig

import numpy as np
import pytest

amici = pytest.importorskip("amici", minversion="1.0")
sundials = pytest.importorskip("amici.sim.sundials")
if not sundials.has_clibs:
    pytest.skip("amici was installed without its C++ extension", allow_module_level=True)

from amici.importers.sbml import SbmlImporter  # noqa: E402

from immunopd import simulate  # noqa: E402
from immunopd.sbml import to_sbml  # noqa: E402

DAYS = 150
# (model id, regimen, parameters, growth law). Every dose is an infusion (pembrolizumab over 30 min by
# default), so each case but the first runs the export's start/end events; the second has covariate
# effects on the PK, the third two drugs on two targets and the inflammatory swelling, the fourth nivolumab's clearance in ``time``.
CASES = [
    ("untreated", None, {}, "gompertz"),
    ("pembro_q3w", "pembrolizumab 200 mg q3w x4", {"albumin": 32.0, "egfr": 70.0, "female": 1.0}, "gompertz"),
    ("pembro_bexm", "pembrolizumab 200 mg q3w x6; bexmarilimab 1 mg/kg q3w x4 over 60 min", {"inflammatory_swelling": 2.0}, "gompertz"),
    ("nivo_q4w", "nivolumab 480 mg q4w x3", {"tcell_exclusion": 0.9, "sclever1_release": 4.0}, "logistic"),
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """{model id: (compiled AMICI model module, immunopd dataset)}, each case's export compiled once."""
    # AMICI builds each model's Python extension with the swig (and cmake) found on PATH, and the swig
    # must be the version amici itself was built with: pip installs that one next to the interpreter
    # (a dependency of amici), which is not on PATH unless the environment is activated; a system swig
    # of another version builds a module that fails to load ("'SwigPyObject' object has no attribute
    # 'module'"), and without one the build fails.
    out = {}
    for mid, regimen, params, law in CASES:
        root = tmp_path_factory.mktemp(f"amici_{mid}")
        xml = root / "model.xml"
        xml.write_text(to_sbml(regimen, params, weight=70.0, growth_law=law, horizon=DAYS))
        name = f"immunopd_amici_{mid}"  # a compiled model cannot be unloaded: one name per case and session
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PATH", sysconfig.get_path("scripts") + os.pathsep + os.environ.get("PATH", ""))
            SbmlImporter(str(xml)).sbml2amici(name, root / name, generate_sensitivity_code=False)
        module = amici.import_model_module(name, root / name)
        ds = simulate(regimen, params, weight=70.0, growth_law=law, days=DAYS, rtol=1e-10, atol=1e-12)
        out[mid] = module, ds
    return out


def amici_outputs(module, ds, days=DAYS, **changes):
    """{name: (immunopd's values, AMICI's)} for every immunopd output over time, from a fresh AMICI model
    (with parameters ``changes`` set), at rtol 1e-10 / atol 1e-12. AMICI's default observables are every
    state and every assignment-rule target of the SBML, as ``y<id>``."""
    model = module.get_model()
    for pid, value in changes.items():
        model.set_free_parameter_by_id(pid, value)
    model.set_timepoints(np.arange(days + 1.0))
    solver = model.create_solver()
    solver.set_relative_tolerance(1e-10)
    solver.set_absolute_tolerance(1e-12)
    solver.set_max_steps(200_000)
    rdata = sundials.run_simulation(model, solver)
    assert rdata.status == 0, f"AMICI simulation failed with status {rdata.status}"
    np.testing.assert_allclose(rdata.ts, np.arange(days + 1.0))
    y = {oid[1:]: rdata.y[:, k] for k, oid in enumerate(model.get_observable_ids())}
    ours = {name: ds[name].values[0] for name, v in ds.data_vars.items() if v.dims == ("patient", "time")}
    for drug in ds.drug.values:
        ours[f"{drug}_concentration"] = ds.concentration.sel(drug=drug).values[0]
        for comp in ds.compartment.values:
            amount = ds.drug_amount.sel(drug=drug, compartment=comp).values[0]
            if not np.isnan(amount).all():  # NaN: a compartment the drug's PK model does not have
                ours[f"{drug}_{comp}"] = amount
    for target in ds.target.values:
        ours[f"{target}_occupancy"] = ds.occupancy.sel(target=target).values[0]
    missing = sorted(set(ours) - set(y))
    assert not missing, f"immunopd outputs with no AMICI observable: {missing}"
    return {name: (v, y[name]) for name, v in ours.items()}


def split(ours):
    """Where a value is compared relatively: not ~0 (a drug before its first dose, an undosed occupancy)."""
    scale = np.abs(ours).max()
    return np.abs(ours) > 1e-6 * scale, scale


def max_relative_difference(pairs):
    worst = 0.0
    for ours, theirs in pairs.values():
        big, _ = split(ours)
        if big.any():
            worst = max(worst, float(np.max(np.abs(theirs[big] / ours[big] - 1))))
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("mid", [c[0] for c in CASES])
def test_amici_reproduces_immunopd(compiled, mid):
    """AMICI's CVODES solve of the compiled SBML agrees with immunopd's at 1e-5 relative, daily for 150 days,
    on every state, observable, assignment output, drug amount, concentration and occupancy.

    Both solvers run at rtol 1e-10 / atol 1e-12, so the difference is set by what differs in the
    formulation: immunopd solves the PK exactly and integrates the rest in its own state space, AMICI
    integrates the PK as ODEs with root-found events at each infusion's start and end. Measured
    (AMICI 1.0.1, before the model's issue-14 dynamics): at most 2e-9 relative untreated, 4e-7 for nivolumab, 2.2e-6 and
    4.2e-6 for the treated pembrolizumab cases, on the sensitive tumor volume (and what follows it) during the
    response, which amplifies small differences: 0.1 % more kill_rate moves it by 33 %
    (test_amici_comparison_detects_a_changed_parameter). 1e-5 is the tolerance of the libRoadRunner
    check (tests/test_sbml.py): above that noise, far below the effect of a 0.1 % change of a
    parameter. As there, values ~0 (a drug before its first dose, an undosed
    occupancy) are compared absolutely at 1e-5 of the output's largest magnitude, and pct_change, which crosses 0,
    absolutely at 1e-3 percentage points.
    """
    module, ds = compiled[mid]
    for name, (ours, theirs) in amici_outputs(module, ds).items():
        if name == "pct_change":  # 100 (sld/sld0 - 1) crosses 0: 1e-5 relative in sld is 1e-3 points (as in tests/test_sbml.py)
            np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-3, err_msg=name)
            continue
        big, scale = split(ours)
        np.testing.assert_allclose(theirs[big], ours[big], rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(theirs[~big], ours[~big], atol=1e-5 * scale, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("pid", ["kill_rate", "pembrolizumab_clearance"])
def test_amici_comparison_detects_a_changed_parameter(compiled, pid):
    """The comparison can fail: the same compiled model with one parameter 0.1 % off differs from
    immunopd's solve by more than the 1e-5 tolerance (measured: 0.33 for kill_rate, 0.13 for the
    clearance)."""
    module, ds = compiled["pembro_q3w"]
    value = float(ds[pid].values[0])
    assert max_relative_difference(amici_outputs(module, ds, **{pid: value * 1.001})) > 1e-5
