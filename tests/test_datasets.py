"""The shipped Laleh et al. 2022 data: counts as published and checked in data/laleh2022/README.md."""

import numpy as np
import pytest

from immunopd.cli import main
from immunopd.datasets import load
from immunopd.errors import InputError


@pytest.fixture(scope="module")
def laleh():
    return load("laleh2022")


def test_counts_match_the_data_readme(laleh):
    assert len(laleh) == 8416
    assert laleh["lesion"].nunique() == 1461
    assert laleh["study"].nunique() == 5 and laleh["study_arm"].nunique() == 14
    per_lesion = laleh.groupby("lesion").size()
    assert (per_lesion >= 6).sum() == 641
    # docetaxel arms: POPLAR arm 1 (75 lesions) and OAK arm 1 (324)
    chemo = laleh[laleh["arm"] == "chemotherapy"]
    assert chemo["lesion"].nunique() == 75 + 324
    assert set(chemo["study_arm"]) == {"Study_2_Arm_1", "Study_4_Arm_1"}
    assert laleh[laleh["arm"] == "immunotherapy"]["lesion"].nunique() == 1461 - 399


def test_volume_conventions(laleh):
    """Volume is 0.52 x LD^3 and the normalized volume divides by 0.52 x 228^3 (Laleh et al. 2022 code)."""
    np.testing.assert_allclose(laleh["volume_mm3"], 0.52 * laleh["diameter_mm"] ** 3, rtol=1e-9)
    np.testing.assert_allclose(laleh["normalized_volume"], laleh["volume_mm3"] / 6_163_223.04, rtol=1e-9, atol=1e-15)
    assert laleh.attrs["citation"].startswith("Ghaffari Laleh")


def test_unknown_dataset():
    with pytest.raises(InputError, match=r"dataset = 'laleh' is not allowed; allowed: one of \['laleh2022'\]"):
        load("laleh")


def test_cli_datasets(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "1461 lesions, 8416 measurements, 5 studies" in out and "doi:10.1371/journal.pcbi.1009822" in out
    # one immunotherapy lesion (0332bdd7...-S5, readings of 12 and 41 mm on day 57) is dropped by cleaning: 1,061 are used
    assert "immunotherapy: 1062 lesions, 6409 measurements; 1061 usable" in out


def test_clean_sorts_dedupes_and_reports():
    raw = load("laleh2022")
    clean = load("laleh2022", clean=True)
    groups = clean.groupby("lesion")
    assert all(g.time_days.is_monotonic_increasing and g.time_days.is_unique for _, g in groups)
    assert clean.lesion.nunique() == 1460  # the one lesion with 12 and 41 mm on the same day is dropped
    assert len(clean) == len(raw) - 6 - 4  # six exact duplicates, and that lesion's 4 rows
    assert "0332bdd735b55b898d994c7449d52dec-S5" in clean.attrs["cleaning"]
