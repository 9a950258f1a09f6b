"""Notebooks are tests: each runs top to bottom on the shipped data, and its numbers are checked."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _run(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "stream"
    )


@pytest.mark.slow
def test_fit_published_response_notebook():
    text = _run("01_fit_published_response.ipynb")
    assert "best model: stein" in text
    assert "lesions plotted: 88" in text
