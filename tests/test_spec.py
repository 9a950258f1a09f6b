"""The model as one declaration: a new drug, target and state need no package edit; names are checked.

The toy extension below is written here, outside the package: a target ("toy_receptor"), a
drug on it with its own PK (one compartment, allowing boluses), and tissue-resident memory T
cells (one formation and one decay term) whose formation the toy drug's occupancy boosts. It is simulated,
checked against closed forms and scipy, exported to SBML and re-simulated by libRoadRunner.
"""

import ast
import pathlib
import re

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import immunopd as ip
from immunopd.drugs import Drug, PKValue, Potency
from immunopd.errors import ModelSpecError, RegimenError
from immunopd.models.parameters import Parameter
from immunopd.pkmodels import LinearPK
from immunopd.spec import Flux, Mechanism, Observable, State, Target

from .reference import scipy_solve

TOY_SOURCE = "assumed: a toy declared by tests/test_spec.py"
TOY_DRUG = Drug(
    name="toymab",
    target="toy_receptor",
    kind="toy",
    molecular_weight_kda=150.0,
    pk=LinearPK(1, allows_bolus=True),
    pk_values={"clearance": PKValue(0.5, TOY_SOURCE), "central_volume": PKValue(5.0, TOY_SOURCE)},
    potency=Potency(10.0, "nM", "binding KD", TOY_SOURCE),  # 1.5 ug/mL
    tumor_partition=PKValue(1.0, TOY_SOURCE),
    presets={"100mg-qw": "100 mg qw bolus"},
)
MEMORY = Mechanism(
    "tissue-resident memory T cells",
    "effectors form tissue-resident memory cells, more so when the toy receptor is occupied; those cells decay",
    states=(State("resident_memory", "1e6 cells", "tissue-resident memory CD8 T cells", initial="0"),),
    parameters=(
        Parameter("resident_formation", 0.01, "1/day", 0.0, 1.0, TOY_SOURCE, "resident memory formation per effector"),
        Parameter("resident_decay", 0.005, "1/day", 1e-4, 1.0, TOY_SOURCE, "resident memory cell loss"),
        Parameter("resident_boost", 3.0, "-", 0.0, 10.0, TOY_SOURCE, "extra formation at full toy occupancy", scale="linear"),
    ),
    fluxes=(
        Flux("resident_formation", "resident_formation * (1 + resident_boost * toy_receptor_occupancy)", sink="resident_memory", per="effector"),
        Flux("resident_decay", "resident_decay", source="resident_memory", per="resident_memory"),
    ),
    observables=(Observable("resident_fraction", "1", "resident_memory / (resident_memory + effector)", "resident_memory / (resident_memory + effector)"),),
    targets=(Target("toy_receptor", "Toy", "a receptor declared by a test"),),
)


@pytest.fixture(scope="module")
def toy():
    return ip.core_model().extend(MEMORY, drugs=(TOY_DRUG,), name="core + resident memory")


def test_toy_drug_pk_is_its_closed_form(toy):
    """One-compartment boluses: C(t) = sum_k (D/V) exp(-CL/V (t - t_k)); occupancy C/(C + EC50)."""
    times = np.arange(0.5, 30.0, 0.5)
    ds = ip.simulate("toymab 100 mg qw bolus", times=times, model=toy, rtol=1e-10, atol=1e-12)
    k, v = 0.5 / 5.0, 5.0
    expected = sum(np.where(times >= t0, 100.0 / v * np.exp(-k * (times - t0)), 0.0) for t0 in (0.0, 7.0, 14.0, 21.0, 28.0))
    np.testing.assert_allclose(ds.concentration.sel(drug="toymab").values[0], expected, rtol=1e-12)
    ec50 = 10.0 * 150.0 / 1000.0
    np.testing.assert_allclose(ds.occupancy.sel(target="toy_receptor").values[0], expected / (expected + ec50), rtol=1e-12)
    amounts = ds.drug_amount.sel(drug="toymab").fillna(0).sum("compartment").values[0]
    np.testing.assert_allclose(amounts, 100.0 * (np.floor(times / 7.0) + 1), rtol=1e-12)  # mass balance (a bolus at t counts at t)
    assert ds.toymab_clearance.attrs["source"] == TOY_SOURCE


def test_a_drug_brings_its_presets(toy):
    """The README's example: a preset declared with the toy drug parses like any other (case-insensitive)."""
    assert ip.Regimen.parse("TOYMAB-100mg-qw").describe() == "TOYMAB-100mg-qw"
    series = ip.Regimen.preset("toymab-100mg-qw").series[0]
    assert (series.drug, series.amount, series.interval, series.is_bolus) == ("toymab", 100.0, 7.0, True)
    ds = ip.simulate("pembrolizumab 200 mg q3w; toymab-100mg-qw", model=toy, days=30)
    assert list(ds.drug.values) == ["pembrolizumab", "toymab"] and float(ds.dosed.sel(drug="toymab")[0]) == 500.0


def test_toy_memory_state_follows_its_fluxes(toy):
    """With the toy drug off, d(resident_memory)/dt = f E - d M from M(0) = 0: integrate M against the model's
    own effector course (trapezoid-free: scipy with E interpolated from a fine grid) and compare."""
    times = np.arange(0.0, 200.0, 0.25)
    ds = ip.simulate(None, times=times, model=toy, rtol=1e-10, atol=1e-12)
    e = ds.effector.values[0]
    sol = solve_ivp(lambda t, m: 0.01 * np.interp(t, times, e) - 0.005 * m, (0, times[-1]), [0.0], t_eval=times,
                    rtol=1e-11, atol=1e-13, max_step=0.25)
    np.testing.assert_allclose(ds.resident_memory.values[0], sol.y[0], rtol=1e-4, atol=1e-8)
    assert ds.resident_memory.values[0, 0] == 0.0 and ds.resident_fraction.values[0, -1] > 0


def test_toy_model_agrees_with_scipy_radau(toy):
    """Core + resident memory with pembrolizumab and the toy drug (infused, so scipy's reference can take it):
    every state within 1e-5 of Radau at rtol 1e-10."""
    regimen = "pembrolizumab 200 mg q3w x3; toymab 50 mg q2w x4 over 1 h"
    times = np.arange(0.0, 91.0, 3.0)
    ds = ip.simulate(regimen, times=times, model=toy, rtol=1e-9, atol=1e-11)
    names, ref = scipy_solve(regimen, times=times, model=toy)
    for name in ("effector", "resident_memory", "treg", "sclever1_plasma"):
        want = ref[:, names.index(name)]
        mask = np.abs(want) > 1e-9
        np.testing.assert_allclose(ds[name].values[0][mask], want[mask], rtol=1e-5, err_msg=name)


def test_toy_model_sbml_agrees_with_libroadrunner(toy):
    roadrunner = pytest.importorskip("roadrunner")
    from immunopd.sbml import to_sbml

    regimen = "pembrolizumab 200 mg q3w x3; toymab 100 mg qw x6 bolus"
    days = 84
    xml = to_sbml(regimen, model=toy, horizon=days)
    rr = roadrunner.RoadRunner(xml)
    rr.integrator.relative_tolerance, rr.integrator.absolute_tolerance = 1e-10, 1e-12
    names = ["resident_memory", "effector", "tumor_volume", "toy_receptor_occupancy", "toymab_concentration", "resident_fraction"]
    rr.timeCourseSelections = ["time"] + names
    out = rr.simulate(0, days, days + 1)
    ds = ip.simulate(regimen, model=toy, days=days, rtol=1e-10, atol=1e-12)
    ours = {"toy_receptor_occupancy": ds.occupancy.sel(target="toy_receptor").values[0],
            "toymab_concentration": ds.concentration.sel(drug="toymab").values[0]}
    for k, name in enumerate(names, start=1):
        want = ours[name] if name in ours else ds[name].values[0]
        big = np.abs(want) > 1e-6 * np.abs(want).max()
        np.testing.assert_allclose(out[big, k], want[big], rtol=1e-5, err_msg=name)


def test_the_toy_left_the_core_model_alone(toy):
    core = ip.core_model()
    assert "resident_memory" not in core.state_names and "toy_receptor" not in core.target_names
    assert "toymab" not in core.drug_index
    with pytest.raises(RegimenError, match=r"regimen drug = 'toymab' is not allowed; allowed: a drug of model 'immunopd-core'"):
        ip.simulate("toymab 10 mg", days=5)


def test_declaration_errors_name_what_is_wrong():
    core = ip.core_model()
    bad_name = Mechanism("bad", "uses an unknown name", fluxes=(Flux("f", "no_such_rate * effector", sink="effector"),))
    with pytest.raises(ModelSpecError, match=r"flux f.rate name = 'no_such_rate' is not allowed"):
        core.extend(bad_name)
    bad_state = Mechanism("bad", "a flux into a missing state", fluxes=(Flux("f", "1", sink="nowhere"),))
    with pytest.raises(ModelSpecError, match=r"flux f.sink = 'nowhere' is not allowed; allowed: a state of the model"):
        core.extend(bad_state)
    with pytest.raises(ModelSpecError, match=r"state name = 'effector' is not allowed; allowed: unique names"):
        core.extend(Mechanism("dup", "a second effector", states=(State("effector", "1e6 cells", "again"),)))
    with pytest.raises(ModelSpecError, match=r"drug toymab.target = 'toy_receptor' is not allowed"):
        core.extend(drugs=(TOY_DRUG,))
    from immunopd.spec import Assignment

    loop = Mechanism("loop", "a cycle", assignments=(Assignment("a_", "b_ + 1", "1", ""), Assignment("b_", "a_ * 2", "1", "")))
    with pytest.raises(ModelSpecError, match=r"assignment cycle = 'a_ -> b_ -> a_' is not allowed"):
        core.extend(loop)


def test_two_drugs_on_one_target_is_an_error_naming_both():
    with pytest.raises(RegimenError, match=re.escape("regimen drugs on target pd1 = ['nivolumab', 'pembrolizumab'] is not allowed")):
        ip.Regimen.parse("pembrolizumab 200 mg q3w; nivolumab 240 mg q2w")


def test_antibodies_refuse_a_bolus():
    with pytest.raises(RegimenError, match=r"pembrolizumab is infused: its PK model allows no bolus"):
        ip.Regimen.parse("pembrolizumab 200 mg bolus")


def test_the_equations_exist_once():
    """The SBML writer and the initial state have no equations of their own: every rate text in
    the SBML export is generated from the declaration (no state name appears in sbml.py or initial.py)."""
    root = pathlib.Path(ip.__file__).parent
    for module in ("sbml.py", "initial.py", "integrate.py", "solve.py"):
        text = (root / module).read_text()
        for state in ip.core_model().state_names:
            assert f'"{state}"' not in text, (module, state)


def _literals(path: pathlib.Path):
    """String constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_no_drug_or_target_literal_outside_the_declarations():
    """No string literal in package code names a drug or target (as a word or a '_'-separated part),
    outside immunopd/models/ where they are declared: everything else reads the declarations.
    Exempt: a literal that is itself a declared parameter name (``pdl1_upregulation`` is read by
    name, as any parameter), and datasets.py, whose labels say which drug the published patients
    received (a fact of the data, not of the model)."""
    root = pathlib.Path(ip.__file__).parent
    core = ip.core_model()
    names = set(core.drug_index) | set(core.target_names)
    declared = set(core.parameters.names)
    hits = []
    for path in sorted(root.rglob("*.py")):
        if path.parent.name == "models" or path.name == "datasets.py":
            continue
        for line, text in _literals(path):
            if text in declared:
                continue
            words = set(re.split(r"[^a-z0-9]+", text.lower())) | set(re.split(r"[^a-z0-9]+|_", text.lower()))
            if words & names:
                hits.append(f"{path.relative_to(root)}:{line}: {text!r}")
    assert not hits, "\n".join(hits)
