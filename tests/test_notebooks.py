"""Notebooks are tests: each runs top to bottom on the shipped data, and its numbers are checked."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _run(name, timeout=300):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # nbclient waits only 4 s for a cell's last outputs by default and then drops them silently;
    # on a loaded 2-core CI machine that lost a printed line once, so wait longer and fail loudly
    NotebookClient(nb, timeout=timeout, kernel_name="python3", iopub_timeout=60, raise_on_iopub_timeout=True,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "stream"
    )


@pytest.mark.slow
def test_fit_published_response_notebook():
    text = _run("01_fit_published_response.ipynb")
    assert "best model: stein" in text
    assert "lesions plotted: 88" in text


@pytest.mark.slow
def test_virtual_dosing_notebook():
    import re

    text = _run("02_virtual_dosing.ipynb")
    assert "observed lesions: 1061" in text and "twins: 1061" in text
    # the twins' share of responding lesions at weeks 6, 12 and 24 is within 5 points of the data's (issue #14's target)
    shares = re.findall(r"week (\d+): share <= -30 %: observed ([0-9.]+), twins ([0-9.]+)", text)
    assert [w for w, _, _ in shares] == ["6", "12", "24"]
    assert all(abs(float(o) - float(t)) <= 5 for _, o, t in shares), shares
    assert "sClever-1 and response adjusted for baseline tumor volume" in text
    assert "logistic coefficient of ln sClever-1: unadjusted" in text


@pytest.mark.slow
def test_sensitivity_notebook():
    import re

    text = _run("03_sensitivity.ipynb")
    gap = float(re.search(r"relative gap ([0-9.e+-]+)", text).group(1))
    assert gap < 1e-4  # forward-mode AD vs central difference
    assert "written and read back equal: True" in text
    overlap = int(re.search(r"top-4 overlap: (\d) of 4", text).group(1))
    assert overlap >= 2  # Morris screening and Sobol agree on most of the leading parameters


@pytest.mark.slow
def test_population_fit_notebook():
    text = _run("04_population_fit.ipynb", timeout=1200)  # the mechanistic fit compiles for minutes
    assert "OFV: immunopd 586.27" in text and "NONMEM 586.2761" in text
    assert "lesions: 8" in text
    assert "observed percentiles inside the simulated 90 % intervals" in text
    assert "MAP found: True" in text


@pytest.mark.slow
def test_forecast_notebook():
    text = _run("05_forecast.ipynb", timeout=1200)  # MAP, NUTS and five regimens compile for minutes
    assert "MAP + Laplace status: converged" in text
    assert "R-hat:" in text and "divergences:" in text
    assert "recommendation:" in text
    assert "later scans inside the 80 % interval:" in text
