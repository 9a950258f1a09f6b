"""Property tests of the experiment-file loader (issue #18): a valid experiment file loads with
what it says; any other TOML document, however malformed, is either an Experiment or the
project's InputError, never another exception (KeyError, TypeError, ...)."""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from immunopd.errors import InputError
from immunopd.trial import Experiment, load_experiment

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# keys the loader knows, mixed with near misses and junk, so random documents hit every branch
KEYS = ["experiment", "population", "regimens", "name", "days", "scan_interval_days", "outputs", "missed_dose_probability",
        "seed", "growth_law", "solver", "rtol", "atol", "adverse_events", "hold_days", "patients", "cv", "uniform",
        "correlation", "typical", "covariates", "file", "growth_rate", "kill_rate", "weight_median_kg", "cold_fraction",
        "pembro", "dayz", "Population", "x"]
REGIMEN_TEXTS = ["pembrolizumab 200 mg q3w", "nivolumab-240mg-q2w", "none", "", "aspirin 5 mg", "pembrolizumab 200 mg q3w x8 x9",
                 "docetaxel 75 mg/m2 q3w over 60 min"]

scalars = st.one_of(
    st.integers(-5, 5000), st.floats(allow_nan=False, allow_infinity=False, width=32), st.booleans(),
    st.sampled_from(REGIMEN_TEXTS), st.text(alphabet="abc_ -", max_size=6))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(scalars, max_size=3),
                                                       st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)), max_leaves=12)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=4)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(float(v)) if math.isfinite(v) else "0.0"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f'"{k}" = {toml_value(x)}' for k, x in v.items()) + "}"


def toml(doc: dict) -> str:
    """TOML text of ``doc``: scalars and arrays at the top, each table as an inline table."""
    return "\n".join(f'"{k}" = {toml_value(v)}' for k, v in doc.items()) + "\n"


@SETTINGS
@given(documents)
def test_any_document_is_an_experiment_or_an_input_error(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("exp") / "random.toml"
    path.write_text(toml(doc))
    try:
        exp = load_experiment(path)
    except InputError:
        return
    assert isinstance(exp, Experiment) and exp.regimens  # a loaded experiment has regimens


@SETTINGS
@given(st.dictionaries(st.sampled_from(["pembrolizumab 200 mg Q3W", "nivolumab", "combo"]),
                       st.sampled_from(["pembrolizumab 200 mg q3w", "nivolumab-240mg-q2w", "docetaxel 75 mg/m2 q3w over 60 min"]),
                       min_size=1, max_size=3),
       st.integers(1, 5000), st.integers(0, 2**31), st.sampled_from([42, 56, 63]))
def test_valid_documents_load_with_what_they_say(tmp_path_factory, regimens, patients, seed, scan):
    doc = {"experiment": {"days": 365, "scan_interval_days": scan, "outputs": ["sld"]},
           "population": {"patients": patients, "seed": seed, "cv": {"growth_rate": 0.5}},
           "regimens": regimens}
    path = tmp_path_factory.mktemp("exp") / "valid.toml"
    path.write_text(toml(doc))
    exp = load_experiment(path)
    assert exp.regimens == regimens
    assert exp.population["patients"] == patients and exp.population["seed"] == seed
    assert exp.settings["scan_interval_days"] == scan and exp.settings["outputs"] == ("sld",)
