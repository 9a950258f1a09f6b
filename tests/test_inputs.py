"""Bad input gets a clear error naming the field, the value and what is allowed; regimens parse exactly."""

import re

import numpy as np
import pytest

import immunopd as ip
from immunopd.dosing import DoseSeries, Regimen
from immunopd.errors import InputError, ParameterError, RegimenError


@pytest.mark.parametrize(
    "text,message",
    [
        ("pembrolizumab -200 mg q3w", "regimen clause 1 ('pembrolizumab -200 mg q3w').amount = -200.0 is not allowed; allowed: a finite number > 0"),
        ("pembrolizumab nan mg q3w", "regimen clause 1 ('pembrolizumab nan mg q3w').amount = nan is not allowed; allowed: a finite number > 0"),
        ("aspirin 200 mg q3w", "regimen clause 1 ('aspirin 200 mg q3w') drug = 'aspirin' is not allowed; allowed: one of ['atezolizumab', 'avelumab', 'bexmarilimab', 'docetaxel', 'durvalumab', 'ipilimumab', 'mir25_antagomir', 'nivolumab', 'pembrolizumab'"),
        ("pembrolizumab 200 mcg q3w", "regimen clause 1 ('pembrolizumab 200 mcg q3w') amount unit = 'mcg' is not allowed; allowed: one of ['mg', 'mg/kg', 'mg/m2']"),
        ("pembrolizumab 200 mg q3", "regimen clause 1 ('pembrolizumab 200 mg q3') interval = 'q3' is not allowed; allowed: q<N><h|d|w>, e.g. q3w, q21d, qw (a time unit is required)"),
        ("pembrolizumab 200 mg q3w sometimes", "regimen clause 1 ('pembrolizumab 200 mg q3w sometimes') term = 'sometimes' is not allowed"),
        ("pembrolizumab 200 mg q3w over 30 parsecs", "regimen clause 1 ('pembrolizumab 200 mg q3w over 30 parsecs') infusion duration unit = 'parsecs' is not allowed"),
        ("200 mg pembrolizumab", "regimen clause 1 ('200 mg pembrolizumab') = '200 mg pembrolizumab' is not allowed; allowed: '<drug> <amount> <mg|mg/kg|mg/m2>"),
        ("pembrolizumab 200 mg q3w; nivolumab 240 mg q2w", "regimen drugs on target pd1 = ['nivolumab', 'pembrolizumab'] is not allowed; allowed: at most one drug per target"),
        ("pembrolizumab 200 mg q3w;", "regimen clause 2 = '' is not allowed; allowed: a non-empty clause"),
    ],
)
def test_malformed_regimen_text(text, message):
    # the list of known drugs ends with any a test module's extended model registered (e.g. 'toymab')
    with pytest.raises(RegimenError, match=re.escape(message)):
        Regimen.parse(text)


@pytest.mark.parametrize(
    "outputs,message",
    [
        (["sld", "tumour"], "outputs = 'tumour' is not allowed; allowed: state or observable names: ['tumor_sensitive'"),
        ("sld", "outputs = 'sld' is not allowed; allowed: None or a non-empty list of state/observable names"),
        ([], "outputs = [] is not allowed; allowed: None or a non-empty list of state/observable names"),
    ],
)
def test_unknown_outputs(outputs, message):
    with pytest.raises(InputError, match=re.escape(message)):
        ip.simulate(None, days=10, outputs=outputs)


def test_mg_per_kg_without_weight():
    msg = "body weight = None is not allowed; allowed: a weight in kg (needed by the mg/kg dose 'bexmarilimab 1 mg/kg q21d over 60 min')"
    with pytest.raises(RegimenError, match=re.escape(msg)):
        ip.simulate("bexmarilimab 1 mg/kg q3w over 60 min", days=30)


@pytest.mark.parametrize(
    "times,message",
    [
        ([0, 2, 1], "times[2] = 1.0 is not allowed; allowed: strictly increasing output times (out of order: times[1] = 2)"),
        ([0, 1, 1, 2], "times[2] = 1.0 is not allowed; allowed: strictly increasing output times (a duplicate: times[1] = 1)"),
        ([0, np.nan], "times[1] = nan is not allowed; allowed: finite times >= 0 day"),
        ([-1, 3], "times[0] = -1.0 is not allowed; allowed: finite times >= 0 day"),
    ],
)
def test_bad_output_times(times, message):
    with pytest.raises(InputError, match=re.escape(message)):
        ip.simulate(None, times=times)


def test_unknown_parameter_name():
    with pytest.raises(ParameterError, match=re.escape("parameter name = 'growth_rat' is not allowed; allowed: one of the")) as err:
        ip.simulate(None, {"growth_rat": 0.01}, days=10)
    assert "did you mean growth_rate" in str(err.value)


@pytest.mark.parametrize(
    "params,message",
    [
        ({"growth_rate": 5.0}, "params['growth_rate'] = 5.0 is not allowed; allowed: [1e-05, 1] 1/day"),
        ({"tcell_exclusion": np.array([0.0, 1.2])}, "params['tcell_exclusion'] = 1.2 is not allowed; allowed: [0, 0.999] -"),
        ({"kill_rate": np.nan}, "params['kill_rate'] = nan is not allowed; allowed: finite numbers (no NaN or inf)"),
        ({"growth_rate": [0.003, 0.004], "kill_rate": [1.0, 2.0, 3.0]}, "len(params['kill_rate']) = 3 is not allowed; allowed: 2 (the length of params['growth_rate'])"),
    ],
)
def test_parameter_values_checked(params, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        ip.simulate(None, params, days=10)


def test_other_bad_arguments():
    with pytest.raises(InputError, match=re.escape("growth_law = 'linear' is not allowed; allowed: one of ['exponential', 'logistic', 'gompertz', 'bertalanffy']")):
        ip.simulate(None, days=10, growth_law="linear")
    with pytest.raises(InputError, match=re.escape("solver = 'rk4' is not allowed; allowed: one of ['tsit5', 'dopri5', 'dopri8', 'kvaerno5']")):
        ip.simulate(None, days=10, solver="rk4")
    with pytest.raises(InputError, match=re.escape("days = -5 is not allowed; allowed: a finite simulation length > 0 (day)")):
        ip.simulate(None, days=-5)
    with pytest.raises(RegimenError, match=re.escape("dose.amount = -1 is not allowed; allowed: a finite number > 0")):
        DoseSeries("pembrolizumab", -1)


def test_regimen_text_equals_explicit_series():
    """Text and code build identical dose series; x8 gives 8 doses 21 days apart; 'from day' shifts them."""
    parsed = Regimen.parse("pembrolizumab 200 mg q3w x8; bexmarilimab 1 mg/kg q1w x3 over 60 min from day 7")
    s1 = DoseSeries("pembrolizumab", 200.0, "mg", start=0.0, interval=21.0, count=8, duration=30 / 1440)
    s2 = DoseSeries("bexmarilimab", 1.0, "mg/kg", start=7.0, interval=7.0, count=3, duration=60 / 1440)
    for got, want in zip(parsed.series, (s1, s2), strict=True):
        assert (got.drug, got.amount, got.unit, got.start, got.interval, got.count) == (
            want.drug, want.amount, want.unit, want.start, want.interval, want.count)
        assert got.duration == pytest.approx(want.duration, rel=1e-15)
    doses = parsed.doses(horizon=365.0, weight=80.0)
    pembro = [d for d in doses if d[0] == "pembrolizumab"]
    assert [d[1] for d in pembro] == [0, 21, 42, 63, 84, 105, 126, 147]
    assert [(d[1], d[2]) for d in doses if d[0] == "bexmarilimab"] == [(7, 80.0), (14, 80.0), (21, 80.0)]
    assert Regimen.parse("pembrolizumab 200 mg q21d x8").series[0].interval == 21.0
    assert Regimen.parse("nivolumab 240 mg q2w").series[0].interval == 14.0
    assert Regimen.parse("bexmarilimab 1 mg/kg qw x2 over 1 h").series[0].duration == pytest.approx(1 / 24)


def test_presets_and_open_ended_repeats():
    reg = Regimen.preset("nivolumab-480mg-q4w")
    assert [d[1] for d in reg.doses(horizon=100.0)] == [0, 28, 56, 84]
    assert [d[2] for d in reg.doses(horizon=100.0)] == [480.0] * 4
    assert Regimen.parse("pembrolizumab-400mg-q6w").doses(horizon=85.0)[-1][1] == 84
    with pytest.raises(RegimenError, match=re.escape("regimen preset = 'pembro' is not allowed")):
        Regimen.preset("pembro")
    assert Regimen.parse("none").series == ()


def test_each_drug_carries_its_own_pk_parameters_and_sources():
    ds = ip.simulate("nivolumab 240 mg q2w", days=5)
    assert float(ds.nivolumab_clearance[0]) == pytest.approx(0.2256)
    assert "Bajaj" in ds.nivolumab_clearance.attrs["source"] and "Ahamadi" in ds.pembrolizumab_clearance.attrs["source"]
    assert ds.attrs["drugs"] == "nivolumab" and list(ds.drug.values) == ["nivolumab"]
    ds = ip.simulate("nivolumab 240 mg q2w", {"nivolumab_clearance": 0.3}, days=5)
    assert float(ds.nivolumab_clearance[0]) == pytest.approx(0.3)


def test_params_must_be_a_mapping():
    from immunopd.errors import InputTypeError

    with pytest.raises(InputTypeError, match=re.escape("params = [('growth_rate', 0.1)] is not allowed; allowed: a mapping")):
        ip.simulate(None, [("growth_rate", 0.1)], days=5)


@pytest.mark.parametrize(
    "text,message",
    [
        ("pembrolizumab 200 mg q3w x8 x9", "regimen clause 1 ('pembrolizumab 200 mg q3w x8 x9') count = 'x9' is not allowed; allowed: one count per clause (already 'x8')"),
        ("pembrolizumab 200 mg q3w q2w", "regimen clause 1 ('pembrolizumab 200 mg q3w q2w') interval = 'q2w' is not allowed; allowed: one interval per clause (already 'q3w')"),
        ("pembrolizumab 200 mg over 30 min over 1 h", "regimen clause 1 ('pembrolizumab 200 mg over 30 min over 1 h') infusion duration = 'over 1 h' is not allowed; allowed: one infusion duration per clause (already 'over 30 min')"),
        ("mir25_antagomir 5 mg/kg bolus over 1 h", "regimen clause 1 ('mir25_antagomir 5 mg/kg bolus over 1 h') infusion duration = 'over 1 h' is not allowed; allowed: one infusion duration per clause (already 'bolus')"),
        ("nivolumab 240 mg from day 3 from week 2", "regimen clause 1 ('nivolumab 240 mg from day 3 from week 2') start = 'from week 2' is not allowed; allowed: one start per clause (already 'from day 3')"),
        ("pembrolizumab 200 mg q1d over 2 d", "regimen clause 1 ('pembrolizumab 200 mg q1d over 2 d').duration = 2.0 is not allowed; allowed: an infusion duration <= the interval (1 day): the infusions of one series must not overlap"),
        ("pembrolizumab 200 mg q3w x4 skip 2,2", "regimen clause 1 ('pembrolizumab 200 mg q3w x4 skip 2,2').skip = [2, 2] is not allowed; allowed: each dose number at most once"),
        ("pembrolizumab 1e9 mg", "regimen clause 1 ('pembrolizumab 1e9 mg').amount = 1000000000.0 is not allowed; allowed: at most 100000 mg per dose (a plausibility limit: no clinical regimen comes near it; check the exponent and the unit)"),
        ("bexmarilimab 2000 mg/kg", "regimen clause 1 ('bexmarilimab 2000 mg/kg').amount = 2000.0 is not allowed; allowed: at most 1000 mg/kg per dose"),
        ("docetaxel 75000 mg/m2", "regimen clause 1 ('docetaxel 75000 mg/m2').amount = 75000.0 is not allowed; allowed: at most 50000 mg/m2 per dose"),
        ("", "regimen = '' is not allowed; allowed: non-empty regimen text (no treatment: 'none'): '<drug> <amount>"),
        ("   ", "regimen = '   ' is not allowed; allowed: non-empty regimen text (no treatment: 'none')"),
    ],
)
def test_contradictory_or_impossible_regimen_text(text, message):
    """A repeated term is never resolved by keeping the last one; impossible doses are refused."""
    with pytest.raises(RegimenError, match=re.escape(message)):
        Regimen.parse(text)


def test_infusions_of_one_drug_must_not_overlap_but_may_touch():
    reg = Regimen.parse("pembrolizumab 200 mg over 1 d; pembrolizumab 100 mg from day 0.5")
    msg = ("regimen pembrolizumab dose at day 0.5 = 'pembrolizumab 200 mg over 1 d; pembrolizumab 100 mg from day 0.5' is not allowed; "
           "allowed: doses of one drug that do not overlap (the infusion from day 0 runs to day 1)")
    with pytest.raises(RegimenError, match=re.escape(msg)):
        reg.schedule(30.0, None, 1)
    back_to_back = Regimen.parse("pembrolizumab 200 mg q1d x3 over 1 d")  # duration == interval: continuous, allowed
    assert back_to_back.schedule(30.0, None, 1).rates[0, 0, :3] == pytest.approx([200.0] * 3)


def test_a_series_that_never_doses_before_the_end_is_an_error():
    with pytest.raises(RegimenError, match=re.escape(
            "regimen clause 1 ('pembrolizumab 200 mg q3w from day 400').start = 400.0 is not allowed; "
            "allowed: a first dose before the end of the simulation (day 30)")):
        ip.simulate("pembrolizumab 200 mg q3w from day 400", days=30)
    with pytest.raises(RegimenError, match=re.escape(
            "regimen clause 1 ('pembrolizumab 200 mg q3w x2 skip 1,2') = 'pembrolizumab 200 mg q21d x2 over 30 min skip 1,2' is not allowed; "
            "allowed: a series that gives at least one dose before the end of the simulation (day 30)")):
        Regimen.parse("pembrolizumab 200 mg q3w x2 skip 1,2").check_horizon(30.0)
    Regimen.parse("pembrolizumab 200 mg q3w from day 29").check_horizon(30.0)
    with pytest.raises(RegimenError, match=re.escape("regimen clause 2 ('bexmarilimab 1 mg/kg q3w from day 400').start = 400.0 is not allowed")):
        Regimen.parse("pembrolizumab 200 mg q3w; bexmarilimab 1 mg/kg q3w from day 400").check_horizon(30.0)
    Regimen.preset("nivolumab-ipilimumab-melanoma-q2w").check_horizon(30.0)  # its maintenance (week 12) is only cut short


def test_preset_names_are_case_insensitive_like_drug_names():
    want = Regimen.preset("nivolumab-480mg-q4w").series
    assert Regimen.parse("Nivolumab-480MG-Q4W").series == want
    assert Regimen.preset("NIVOLUMAB-480mg-q4w").series == want
    upper = Regimen.parse("NIVOLUMAB 480 MG Q4W").series[0]
    assert (upper.drug, upper.amount, upper.unit, upper.interval, upper.count) == ("nivolumab", 480.0, "mg", 28.0, None)
