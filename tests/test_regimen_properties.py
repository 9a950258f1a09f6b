"""Property tests of the regimen parser: valid text round-trips through describe(); any other
text is either a regimen or the project's InputError, never another exception."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from immunopd.dosing import Regimen
from immunopd.drugs import known_drug
from immunopd.errors import InputError

DRUGS = ("pembrolizumab", "nivolumab", "atezolizumab", "bexmarilimab", "ipilimumab", "docetaxel")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def clauses(draw):
    """One valid clause, written with numbers describe() prints exactly (<= 6 significant digits)."""
    drug = draw(st.sampled_from(DRUGS))
    amount = draw(st.integers(1, 9999)) / draw(st.sampled_from([10, 100]))  # 0.01-999.9: below every MAX_DOSE
    unit = draw(st.sampled_from(["mg", "mg/kg", "mg/m2"]))
    text = f"{drug} {amount:g} {unit}"
    interval_days = None
    if draw(st.booleans()):
        n, letter = draw(st.integers(1, 8)), draw(st.sampled_from("dw"))
        interval_days = n * (7 if letter == "w" else 1)
        text += f" q{n}{letter}"
        if draw(st.booleans()):
            text += f" x{draw(st.integers(1, 12))}"
    if draw(st.booleans()):
        text += f" over {draw(st.integers(1, 180))} min"
    if draw(st.booleans()):
        text += f" from day {draw(st.integers(0, 300))}"
    return text


@SETTINGS
@given(st.lists(clauses(), min_size=1, max_size=3, unique_by=lambda c: known_drug(c.split()[0]).target))
def test_valid_regimen_text_round_trips_through_describe(parts):
    text = "; ".join(parts)
    reg = Regimen.parse(text)
    again = Regimen.parse("; ".join(s.describe() for s in reg.series))
    assert len(again.series) == len(reg.series) == len(parts)
    for a, b in zip(reg.series, again.series, strict=True):
        assert (a.drug, a.amount, a.unit, a.start, a.interval, a.count) == (b.drug, b.amount, b.unit, b.start, b.interval, b.count)
        assert math.isclose(a.duration, b.duration, rel_tol=1e-12)
    doses = reg.doses(400.0, weight=70.0, bsa=1.8)
    assert all(d[2] > 0 and d[3] > 0 for d in doses)


VOCABULARY = ["pembrolizumab", "nivolumab", "bexmarilimab", "docetaxel", "aspirin", "200", "1", "0", "-5", "1e9", "nan", "inf",
              "0.5", "mg", "mg/kg", "mg/m2", "mcg", "q3w", "q21d", "qw", "q3", "q0d", "x8", "x0", "x", "over", "30", "min", "h",
              "d", "bolus", "from", "day", "week", "skip", "3,4", "2,2", "delay", "by", "1w", ";", "none", "pembrolizumab-200mg-q3w"]


@SETTINGS
@given(st.one_of(st.lists(st.sampled_from(VOCABULARY), max_size=12).map(" ".join), st.text(max_size=40)))
def test_any_text_is_a_regimen_or_an_input_error(text):
    try:
        reg = Regimen.parse(text)
    except InputError:
        return
    try:
        reg.schedule(400.0, 70.0, 1, bsas=1.8)
        reg.check_horizon(400.0)
    except InputError:
        pass


@pytest.mark.parametrize("text", ["pembrolizumab 200 mg q3w x8 x9", "nivolumab 240 mg q2w q4w", "pembrolizumab 200 mg q1d over 2 d"])
def test_known_contradictions_are_input_errors(text):
    with pytest.raises(InputError):
        Regimen.parse(text)
