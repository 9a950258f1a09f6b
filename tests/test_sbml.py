"""SBML export, checked by an independent simulator: libRoadRunner (CVODE) against immunopd."""

import numpy as np
import pytest

roadrunner = pytest.importorskip("roadrunner")
libsbml = pytest.importorskip("libsbml")

from immunopd import simulate  # noqa: E402
from immunopd.cli import main  # noqa: E402
from immunopd.sbml import to_sbml, unit_definition_parts  # noqa: E402

OUTPUTS = ["tumor_volume", "sld", "effector", "exhausted", "treg", "clever1_macrophage", "sclever1_plasma",
           "killing_factor", "pct_change"]


def outputs(ds):
    """The SBML ids to compare and immunopd's values for them (drug- and target-indexed ones by coordinate)."""
    out = {name: ds[name].values[0] for name in OUTPUTS}
    for drug in ds.drug.values:
        out[f"{drug}_concentration"] = ds.concentration.sel(drug=drug).values[0]
        out[f"{drug}_central"] = ds.drug_amount.sel(drug=drug, compartment="central").values[0]
    for target in ds.target.values:
        out[f"{target}_occupancy"] = ds.occupancy.sel(target=target).values[0]
    return out

CASES = [
    ("pembrolizumab 200 mg q3w x6; bexmarilimab 1 mg/kg q3w x4 over 60 min", {}, "gompertz"),
    ("nivolumab 480 mg q4w x3", {"tcell_exclusion": 0.9, "sclever1_release": 4.0, "female": 1.0, "egfr": 60.0, "ecog_1_or_more": 1.0}, "gompertz"),
    ("pembrolizumab 200 mg q3w x4", {"albumin": 32.0, "egfr": 70.0, "female": 1.0}, "gompertz"),
    # antigen loss, and the inflammatory swelling that a scan measures with the lesion
    ("pembrolizumab 400 mg q6w x2 delay 2 by 1w", {"antigen_loss_rate": 1e-3, "growth_rate": 0.006, "inflammatory_swelling": 2.0,
                                                   "inflammation_clearance": 0.1}, "logistic"),
    ("bexmarilimab 3 mg/kg q2w x5 over 60 min", {"kill_rate": 30.0, "resistant_fraction0": 0.2}, "bertalanffy"),
    # anti-PD-L1 with anti-CTLA-4 (Treg depletion, priming), the proportional clearance-in-time form, the 3-cmt taxane by BSA
    ("atezolizumab 1200 mg q3w x4; ipilimumab 3 mg/kg q3w x4", {"albumin": 35.0, "female": 1.0}, "gompertz"),
    ("avelumab 800 mg q2w x6; mir25_antagomir 5 mg/kg qw x8", {"tcell_exclusion": 0.9}, "gompertz"),
    ("docetaxel 75 mg/m2 q3w x4; durvalumab 1500 mg q4w x3", {"body_surface_area": 1.9, "ecog_1_or_more": 1.0}, "gompertz"),
]


def roadrunner_run(xml, days, names):
    rr = roadrunner.RoadRunner(xml)
    rr.integrator.relative_tolerance = 1e-10
    rr.integrator.absolute_tolerance = 1e-12
    rr.integrator.max_steps = 200_000
    rr.timeCourseSelections = ["time"] + list(names)
    return rr.simulate(0, days, days + 1)


@pytest.mark.parametrize("regimen, params, law", CASES)
def test_roadrunner_reproduces_immunopd(regimen, params, law):
    days = 150
    xml = to_sbml(regimen, params, weight=70.0, growth_law=law, horizon=days)
    ds = simulate(regimen, params, weight=70.0, growth_law=law, days=days, rtol=1e-10, atol=1e-12)
    ours_all = outputs(ds)
    out = roadrunner_run(xml, days, ours_all)
    np.testing.assert_allclose(out[:, 0], np.arange(days + 1.0))
    for k, (name, ours) in enumerate(ours_all.items(), start=1):
        theirs = out[:, k]
        scale = np.abs(ours).max()
        if name == "pct_change":  # 100 (sld/sld0 - 1) crosses 0: compare as 1e-5 relative in sld, i.e. 1e-3 points
            np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-3, err_msg=name)
            continue
        big = np.abs(ours) > 1e-6 * scale  # relative error where the value is not ~0 (e.g. drug before dosing)
        np.testing.assert_allclose(theirs[big], ours[big], rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(theirs[~big], ours[~big], atol=1e-5 * scale, err_msg=name)


def test_document_is_valid_sbml_with_units_and_events():
    xml = to_sbml("pembrolizumab 200 mg q3w x2", horizon=60)
    doc = libsbml.readSBMLFromString(xml)
    assert doc.getLevel() == 3 and doc.getVersion() == 2
    assert doc.checkConsistency() == 0 or all(
        doc.getError(i).getSeverity() < libsbml.LIBSBML_SEV_ERROR for i in range(doc.getNumErrors()))
    m = doc.getModel()
    assert m.getNumEvents() == 4  # two infusions: start and end each
    assert m.getParameter("sclever1_release").getUnits() == "u_ng_per_mL_per_1e6_cells_day"
    ud = m.getUnitDefinition("u_ng_per_mL_per_1e6_cells_day")
    assert ud.getNumUnits() == 4  # gram, litre, item, second


def test_unit_parts():
    assert unit_definition_parts("1/(ng/mL)") == [("gram", -1, -9, 1.0), ("litre", 1, -3, 1.0)]
    assert unit_definition_parts("1e6 cells/day") == [("item", 1, 0, 1e6), ("second", -1, 0, 86400.0)]


def test_cli_export_sbml(tmp_path, capsys):
    out = tmp_path / "model.xml"
    assert main(["export-sbml", "--regimen", "pembrolizumab 200 mg q3w x4", "--days", "100", "--out", str(out)]) == 0
    # time, 12 model states (with dead cells, inflammatory swelling, memory and the adverse-event hazard), 3 PK states
    assert roadrunner.RoadRunner(str(out)).simulate(0, 10, 11).shape == (11, 1 + 12 + 3)
    assert "wrote" in capsys.readouterr().out
