"""NONMEM-style event records: round trips and malformed records named by row."""

import io
import re

import numpy as np
import pandas as pd
import pytest

from immunopd import Regimen
from immunopd.errors import InputError
from immunopd.nonmem import read_nonmem, to_nonmem

DRUGS = {1: "pembrolizumab", 2: "bexmarilimab", 3: "nivolumab"}


def test_round_trip_of_regimens_observations_and_covariates():
    regs = {1: "pembrolizumab 200 mg q3w x8; bexmarilimab 1 mg/kg q3w x4 over 60 min",
            2: "nivolumab 480 mg q4w x3 delay 2 by 1w skip 3"}
    obs = pd.DataFrame({"ID": [1, 1, 2], "time_days": [0.0, 42.0, 56.0], "observable": ["sld"] * 3, "DV": [50.0, 41.5, 60.0]})
    df = to_nonmem(regs, observations=obs, weight={1: 70.0}, drugs=DRUGS, covariates={1: {"WT": 70.0}, 2: {"WT": 82.5}})
    back = read_nonmem(df, drugs=DRUGS)
    for pid, text in regs.items():
        assert back.regimens[pid].doses(400) == Regimen.parse(text).doses(400, weight=70.0)
    pd.testing.assert_frame_equal(back.observations[["ID", "time_days", "observable", "DV"]], obs)
    assert back.covariates.loc[2, "WT"] == 82.5
    # a regular series is one record with II/ADDL, as NONMEM users write it
    pem = df[(df.ID == 1) & (df.CMT == 1)]
    assert len(pem) == 1 and pem.ADDL.iloc[0] == 7 and pem.II.iloc[0] == 21.0


def test_reads_a_hand_written_csv_in_hours_with_rate():
    text = """ID,TIME,AMT,EVID,CMT,DV,RATE,II,ADDL,MDV,WT
1,0,200,1,1,.,400,504,2,1,70
1,0,0,0,3,48,.,.,.,0,70
1,1008,0,0,3,.,.,.,.,1,70
1,1008.5,0,0,3,30.5,.,.,.,0,70
"""
    d = read_nonmem(io.StringIO(text), time_unit="h")
    doses = d.regimens[1].doses(400)
    # 200 mg at 400 mg/h = 0.5 h infusions every 504 h = 21 days, 3 doses
    assert [round(t, 12) for _, t, _, _ in doses] == [0.0, 21.0, 42.0]
    assert all(abs(dur - 0.5 / 24) < 1e-15 for *_, dur in doses)
    np.testing.assert_allclose(d.observations.time_days, [0.0, 1008.5 / 24], rtol=1e-15)
    assert d.observations.DV.tolist() == [48.0, 30.5]


@pytest.mark.parametrize("row, message", [
    ("1,0,200,5,1,.,30,0,0,1", r"row 2 EVID = 5\.?0? is not allowed; allowed: 0 \(observation\), 1 \(dose\) or 2"),
    ("1,0,.,1,1,.,30,0,0,1", r"row 2 AMT = nan is not allowed; allowed: a dose amount > 0 mg"),
    ("1,-1,200,1,1,.,30,0,0,1", r"row 2 TIME = -1 is not allowed; allowed: a finite time >= 0 day"),
    ("1,0,200,1,9,.,30,0,0,1", r"row 2 CMT = 9\.?0? is not allowed; allowed: a dosing compartment"),
    ("1,0,200,1,1,.,0,0,0,1", r"row 2 RATE/DUR = \(0\.0, nan\) is not allowed; allowed: RATE > 0"),
    ("1,0,200,3,1,.,30,0,0,1", r"row 2 EVID = 3 is not allowed; .*resets \(3, 4\) are not supported"),
    ("1,0,200,1,1,.,30,0,2,1", r"row 2 II = 0\.0 is not allowed; allowed: an interdose interval > 0 day when ADDL > 0"),
    ("1,0,200,1,1,.,abc,0,0,1", r"row 2 RATE = 'abc' is not allowed; allowed: a number"),
])
def test_malformed_records_are_named_by_row(row, message):
    text = "ID,TIME,AMT,EVID,CMT,DV,RATE,II,ADDL,MDV\n1,0,0,0,3,50,.,.,.,0\n" + row + "\n"
    with pytest.raises(InputError, match=message):
        read_nonmem(io.StringIO(text))


def test_missing_column_and_unsorted_time():
    with pytest.raises(InputError, match=r"dataset column = 'EVID' is not allowed"):
        read_nonmem(pd.DataFrame({"ID": [1], "TIME": [0], "AMT": [1], "CMT": [1]}))
    text = "ID,TIME,AMT,EVID,CMT,DV,DUR\n1,5,0,0,3,50,.\n1,2,0,0,3,50,.\n"
    with pytest.raises(InputError, match=r"row 2 TIME = 2 is not allowed; allowed: times sorted within ID 1"):
        read_nonmem(io.StringIO(text))


def test_mg_per_kg_needs_weight_to_write():
    with pytest.raises(InputError, match=r"weight\[1\] = None is not allowed"):
        to_nonmem({1: "bexmarilimab 1 mg/kg q3w x2"})
    assert np.isclose(to_nonmem({1: "bexmarilimab 1 mg/kg q3w x2"}, weight={1: 64.0}).AMT.iloc[0], 64.0)


def test_observations_become_fitting_data():
    from immunopd.fitting import fit_lesions

    t = np.array([0.0, 42, 84, 126, 168, 210])
    rows = [{"ID": i, "time_days": tt, "observable": "sld", "DV": 30 * np.exp(g * tt)} for i, g in ((1, 0.004), (2, 0.002)) for tt in t]
    d = read_nonmem(to_nonmem({1: "pembrolizumab 200 mg q3w x2", 2: "none"}, observations=pd.DataFrame(rows)))
    table = d.fitting_table()
    fits = fit_lesions(table, "exponential", size="diameter_mm", error_model="proportional")
    np.testing.assert_allclose(fits.estimate.sel(parameter="growth_rate").values, [0.004, 0.002], rtol=1e-6)


HEADER = "ID,TIME,AMT,EVID,CMT,DV,RATE,II,ADDL,MDV"


@pytest.mark.parametrize("extra, rows, message", [
    ("SS", ["1,0,200,1,1,.,400,504,0,1,1"],
     "row 1 SS = 1.0 is not allowed; allowed: 0 or missing: steady-state dosing (SS = 1, 2 or 3) is not modelled; "
     "write the doses that reach the steady state as II/ADDL records"),
    ("CENS", ["1,0,200,1,1,.,400,.,.,1,0", "1,21,0,0,3,1,.,.,.,0,1"],
     "row 2 CENS = 1.0 is not allowed; allowed: 0 or missing: censored (below the quantification limit) observations are not modelled"),
    ("BLQ", ["1,0,200,1,1,.,400,.,.,1,.", "1,21,0,0,3,1,.,.,.,0,1"],
     "row 2 BLQ = 1.0 is not allowed; allowed: 0 or missing: below-quantification flags are not modelled"),
    ("WT", ["1,0,200,1,1,.,400,.,.,1,70", "1,21,0,0,3,-3,.,.,.,0,70"],
     "row 2 DV = -3.0 is not allowed; allowed: a finite observation >= 0 (a size or a level in its own unit; log-transformed DVs are not read)"),
])
def test_nonmem_items_are_honoured_or_refused_by_name(extra, rows, message):
    """SS is never read as a single dose, CENS/BLQ never as covariates, a negative DV never as a size."""
    text = f"{HEADER},{extra}\n" + "\n".join(rows) + "\n"
    with pytest.raises(InputError, match=re.escape(message)):
        read_nonmem(io.StringIO(text), time_unit="h")


def test_all_zero_censoring_and_steady_state_columns_are_not_covariates():
    text = f"{HEADER},SS,CENS,LLOQ,WT\n1,0,200,1,1,.,400,.,.,1,0,.,1,70\n1,21,0,0,3,40,.,.,.,0,.,0,1,70\n"
    d = read_nonmem(io.StringIO(text), time_unit="h")
    assert list(d.covariates.columns) == ["WT"] and d.observations.DV.tolist() == [40.0]


@pytest.mark.parametrize("text, message", [
    ("", "dataset = '<_io.StringIO"),
    (HEADER + "\n", "dataset records = 0 is not allowed; allowed: at least one event record below the header"),
])
def test_empty_dataset_is_an_input_error(text, message):
    with pytest.raises(InputError, match=re.escape(message)):
        read_nonmem(io.StringIO(text))


def test_empty_csv_file_names_the_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(InputError, match=re.escape(
            f"dataset = '{path}' is not allowed; allowed: a CSV file with a header row (ID, TIME, AMT, EVID, CMT, ...) and event records")):
        read_nonmem(path)
