"""Typed quantities: conversions by the table, and mismatches that name both units."""

import pytest

import immunopd as ip
from immunopd.errors import InputError, ParameterError
from immunopd.units import convert, parse_value


def test_conversions_by_definition():
    assert convert(1.0, "lb", "kg") == pytest.approx(0.45359237, rel=1e-15)  # the international pound
    assert convert(500.0, "ng/mL", "ug/mL") == pytest.approx(0.5, rel=1e-15)
    assert convert(1.0, "mg/L", "ug/mL") == 1.0
    assert convert(1.0, "mL", "mm3") == pytest.approx(1000.0, rel=1e-15)
    assert convert(2.0, "L/h", "L/day") == pytest.approx(48.0, rel=1e-15)
    assert convert(3.0, "week", "day") == 21.0
    assert parse_value("154 lb", "kg", "weight") == pytest.approx(69.85322498, rel=1e-9)


def test_mismatch_names_both_units():
    with pytest.raises(InputError, match=r"weight: cannot convert 'mg/L' \(concentration\) to 'kg' \(mass\)"):
        parse_value("70 mg/L", "kg", "weight")
    with pytest.raises(InputError, match=r"x unit = 'furlong' is not allowed"):
        convert(1.0, "furlong", "mm", "x")


def test_typed_parameters_and_weight_in_simulate():
    a = ip.simulate("bexmarilimab 1 mg/kg q3w x2", {"pembrolizumab_ec50": "500 ng/mL"}, days=30, weight="154 lb")
    b = ip.simulate("bexmarilimab 1 mg/kg q3w x2", {"pembrolizumab_ec50": 0.5}, days=30, weight=69.85322498)
    assert float(a.pembrolizumab_ec50[0]) == pytest.approx(0.5, rel=1e-15)
    assert float(a.dosed.sel(drug="bexmarilimab")[0]) == pytest.approx(2 * 69.85322498, rel=1e-9)
    assert a.tumor_volume.values[0] == pytest.approx(b.tumor_volume.values[0], rel=1e-9)
    with pytest.raises(InputError, match=r"params\['pembrolizumab_ec50'\]: cannot convert 'mg' \(mass\) to 'ug/mL' \(concentration\)"):
        ip.simulate(None, {"pembrolizumab_ec50": "0.5 mg"}, days=3)
    with pytest.raises(ParameterError, match=r"a plain number in ng/mL/\(1e6 cells day\)"):
        ip.simulate(None, {"sclever1_release": "3 mg"}, days=3)


def test_cli_weight_with_units(tmp_path, capsys):
    from immunopd.cli import main

    out = tmp_path / "r.nc"
    assert main(["simulate", "--regimen", "bexmarilimab 1 mg/kg q3w x1", "--weight", "154 lb", "--days", "10", "--out", str(out)]) == 0
    assert main(["simulate", "--weight", "70 mg/L", "--days", "10", "--out", str(out)]) == 2
    assert "cannot convert 'mg/L' (concentration) to 'kg' (mass)" in capsys.readouterr().err
