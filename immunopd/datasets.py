"""Loaders for the published response data shipped in ``data/``.

``load("laleh2022")`` returns a tidy ``pandas.DataFrame``, one row per measurement, rows in
the published order, with columns:

| column | meaning |
| --- | --- |
| ``study`` | study id 1-5 |
| ``trial`` | FIR, POPLAR, BIRCH, OAK or IMvigor210 |
| ``study_arm`` | the published arm label, ``Study_<s>_Arm_<a>`` |
| ``arm`` | ``"immunotherapy"`` (atezolizumab) or ``"chemotherapy"`` (docetaxel) |
| ``drug`` | ``"atezolizumab"`` or ``"docetaxel"`` |
| ``patient`` | patient id (32 hex characters and the study suffix) |
| ``lesion`` | lesion id; one target lesion per patient, so equal to ``patient`` |
| ``time_days`` | study day of the scan, relative to treatment start (baseline scans <= 0) |
| ``diameter_mm`` | longest diameter as published (mm) |
| ``volume_mm3`` | 0.52 x diameter^3, as published (the authors' sphere approximation) |
| ``normalized_volume`` | volume / 6,163,223.04 mm3 (the largest volume in the data), the scale on which Laleh 2022 and TumorGrowth.jl report errors |

Source: Ghaffari Laleh et al. 2022, PLoS Comput Biol 18:e1009822,
doi:10.1371/journal.pcbi.1009822 (S1 Data, CC BY), as restructured by TumorGrowth.jl
(``flat_patient_data.csv``, MIT). Arm 1 of POPLAR (study 2) and OAK (study 4) is docetaxel; every
other arm is atezolizumab (the mapping and its evidence are in ``data/laleh2022/README.md``).

Quirks (see the data README): one lesion's days are not sorted, seven lesions have two rows
on the same day (six with equal values, one, ``0332bdd735b55b898d994c7449d52dec-S5``, with 12 and
41 mm). ``load(name)`` keeps every row as published. ``load(name, clean=True)`` sorts each
lesion by day, drops exact same-day duplicates and drops lesions whose same-day readings
disagree; what it removed is listed in ``table.attrs["cleaning"]``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError, describe

__all__ = ["DATASETS", "load", "data_dir", "summary"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    citation: str
    licence: str
    files: tuple[str, ...]


DATASETS: dict[str, DatasetInfo] = {
    "laleh2022": DatasetInfo(
        name="laleh2022",
        title="target-lesion longest diameters under atezolizumab or docetaxel (FIR, POPLAR, BIRCH, OAK, IMvigor210)",
        citation="Ghaffari Laleh N et al. PLoS Comput Biol 2022;18:e1009822, doi:10.1371/journal.pcbi.1009822; "
        "restructured by TumorGrowth.jl (Blaom & Okon, arXiv:2502.07964)",
        licence="CC BY (S1 Data); TumorGrowth.jl files MIT",
        files=("laleh2022/flat_patient_data.csv",),
    ),
}

_TRIALS = {1: "FIR", 2: "POPLAR", 3: "BIRCH", 4: "OAK", 5: "IMvigor210"}
_CHEMO_ARMS = {"Study_2_Arm_1", "Study_4_Arm_1"}
_COLUMNS = ["Pt_hashID", "Study_Arm", "Study_id", "Arm_id", "T_days", "Lesion_diam", "Lesion_vol", "Lesion_normvol"]


def data_dir() -> Path:
    """The ``data/`` folder: beside the package in a source checkout."""
    here = Path(__file__).resolve().parent.parent / "data"
    if not here.is_dir():
        raise InputError(describe("data folder", str(here), "the repository's data/ folder (install from a source checkout)"))
    return here


def load(name: str, clean: bool = False) -> pd.DataFrame:
    """Load a shipped dataset as a tidy table (see the module docstring for the columns and ``clean``)."""
    if name not in DATASETS:
        raise InputError(describe("dataset", name, f"one of {sorted(DATASETS)}"))
    path = data_dir() / DATASETS[name].files[0]
    raw = pd.read_csv(path)
    missing = [c for c in _COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(describe(f"{path.name} columns", missing, f"present: {_COLUMNS}"))
    study = raw["Study_id"].astype(int)
    table = pd.DataFrame(
        {
            "study": study,
            "trial": study.map(_TRIALS),
            "study_arm": raw["Study_Arm"].astype(str),
            "arm": ["chemotherapy" if a in _CHEMO_ARMS else "immunotherapy" for a in raw["Study_Arm"]],
            "drug": ["docetaxel" if a in _CHEMO_ARMS else "atezolizumab" for a in raw["Study_Arm"]],
            "patient": raw["Pt_hashID"].astype(str),
            "lesion": raw["Pt_hashID"].astype(str),
            "time_days": raw["T_days"].astype(float),
            "diameter_mm": raw["Lesion_diam"].astype(float),
            "volume_mm3": raw["Lesion_vol"].astype(float),
            "normalized_volume": raw["Lesion_normvol"].astype(float),
        }
    )
    table.attrs.update({"dataset": name, "citation": DATASETS[name].citation, "licence": DATASETS[name].licence,
                        "source_file": str(path.relative_to(data_dir().parent))})
    return _clean(table) if clean else table


def _clean(table: pd.DataFrame) -> pd.DataFrame:
    attrs = dict(table.attrs)
    conflicting = [
        lesion for lesion, g in table.groupby("lesion", sort=False) if g.groupby("time_days")["diameter_mm"].nunique().max() > 1
    ]
    kept = table[~table["lesion"].isin(conflicting)]
    order = kept.assign(_row=np.arange(len(kept))).sort_values(["lesion", "time_days", "_row"], kind="stable")
    deduped = order.drop_duplicates(subset=["lesion", "time_days"], keep="first")
    lesion_order = {les: i for i, les in enumerate(dict.fromkeys(table["lesion"]))}
    out = deduped.sort_values(by=["lesion", "time_days"], key=lambda c: c.map(lesion_order) if c.name == "lesion" else c, kind="stable")
    out = out.drop(columns="_row").reset_index(drop=True)
    out.attrs = attrs | {
        "cleaning": f"sorted by day within each lesion; dropped {len(order) - len(deduped)} exact same-day duplicate rows; "
        f"dropped {len(conflicting)} lesion(s) with disagreeing same-day readings: {conflicting}"
    }
    return out


def from_baseline(dataset: str, arm: str):
    """``(lesion, baseline row, t days, d mm)`` per lesion of ``arm``: the baseline is the last scan
    on or before day 0 (the first scan when there is none before treatment), ``t``/``d`` the
    baseline and every later scan; lesions with a 0 mm baseline or no later scan are left out."""
    if arm not in ("immunotherapy", "chemotherapy", "all"):
        raise InputError(describe("arm", arm, "'immunotherapy', 'chemotherapy' or 'all'"))
    df = load(dataset, clean=True)
    if arm != "all":
        df = df[df.arm == arm]
    for lesion, g in df.groupby("lesion", sort=False):
        g = g.sort_values("time_days")
        pre = g[g.time_days <= 0]
        base = pre.iloc[-1] if len(pre) else g.iloc[0]
        post = g[g.time_days > base.time_days]
        if base.diameter_mm <= 0 or post.empty:
            continue
        t = np.concatenate([[base.time_days], post.time_days.to_numpy(float)])
        d = np.concatenate([[base.diameter_mm], post.diameter_mm.to_numpy(float)])
        yield lesion, base, t, d


def summary() -> str:
    """One block per shipped dataset: counts per arm and the citation (``immunopd datasets``)."""
    blocks = []
    for name, info in DATASETS.items():
        t = load(name)
        lines = [f"{name}: {info.title}", f"  {t['lesion'].nunique()} lesions, {len(t)} measurements, {t['study'].nunique()} studies"]
        # the lesions calibration and population fits can use: one pass over every arm
        usable = Counter(str(base.arm) for _, base, _, _ in from_baseline(name, "all"))
        for arm, group in t.groupby("arm"):
            lines.append(f"  {arm}: {group['lesion'].nunique()} lesions, {len(group)} measurements; "
                         f"{usable[str(arm)]} usable (what calibrate and popfit use: after cleaning, 'immunopd.datasets.load(clean=True)', with a baseline > 0 mm and a later scan)")
        lines += [f"  cite: {info.citation}", f"  licence: {info.licence}"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
