"""Exposure summaries per drug and dose interval (what PKNCA or mrgsolve users tabulate).

:func:`exposure` simulates a regimen on its own output grid, not the daily one of
:func:`immunopd.simulate`: every dose edge of every drug (infusion starts *and ends*), every
interval end, and a uniform grid of ``step_days`` between them. So a daily output never hides
Cmax: it is read at the infusion ends themselves.

For dose ``k`` of a drug the interval runs from its start to the start of dose ``k + 1``; the
last dose's interval ends one dosing interval of its series later, or at the end of the
simulation if that comes first (``complete`` is then False). Per (patient, drug, dose_interval):

- ``cmax`` / ``tmax``: the largest serum concentration in the interval (infusion end included
  exactly; for a bolus the post-dose value) and its time;
- ``ctrough``: the concentration just before the next dose (the left limit: a bolus given at
  that instant is not counted);
- ``auc``: the integral of the concentration over the interval. For drugs with exact
  (time-invariant linear) PK it is exact: the cumulative eliminated amount that
  :mod:`immunopd.pkexact` integrates in closed form, divided by the (constant) clearance. For
  the others (clearance changing in time) it is the composite Simpson rule on the grid (no dose
  edge falls inside a Simpson panel), with the Richardson estimate of its error in ``auc_error``;
- ``cavg`` = ``auc`` / interval length;
- ``time_above``: time the concentration spends above ``above`` (when given), crossings located
  between grid points by log-linear interpolation where it falls (exact for a mono-exponential
  decline) and linear where it rises (during an infusion); in any case off by at most one grid
  step per crossing where the concentration is monotone between points;
- ``trough_occupancy``: the model's occupancy of the drug's target at the trough (competitive
  binding with the concentrations of every dosed drug at that instant).

Why a separate function rather than more variables of ``simulate``: the dose-interval axis is
per drug and its grid (dose edges, ~24 points a day) is not the output grid a time course is
wanted on; a trial's Datasets concatenate over regimens whose dose intervals differ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import xarray as xr

from .errors import InputError, InputTypeError, RegimenError, describe

__all__ = ["exposure", "exposure_table", "dose_intervals"]

#: default grid step between dose edges (day): one hour
DEFAULT_STEP_DAYS = 1.0 / 24.0


def _as_regimen(regimen):
    from .dosing import Regimen

    if isinstance(regimen, Regimen):
        return regimen
    if isinstance(regimen, str):
        return Regimen.parse(regimen)
    raise InputTypeError(describe("regimen", regimen, "a Regimen or regimen text that doses at least one drug"))


def dose_intervals(regimen, days: float) -> dict[str, list[tuple[float, float, float, bool]]]:
    """Per drug, its doses before ``days`` as ``(start, infusion end, interval end, complete)`` (day)."""
    doses: dict[str, list[tuple[float, float, float | None]]] = {d: [] for d in regimen.drugs}
    for s in regimen.series:
        for t in s.times(days):
            doses[s.drug].append((float(t), float(t) + s.duration, s.interval))
    out = {}
    for drug, items in doses.items():
        items.sort(key=lambda d: d[0])
        rows = []
        for k, (t0, t1, interval) in enumerate(items):
            if k + 1 < len(items):
                rows.append((t0, t1, items[k + 1][0], True))
            elif interval is not None and t0 + interval <= days:
                rows.append((t0, t1, t0 + interval, True))
            else:
                rows.append((t0, t1, float(days), False))
        out[drug] = rows
    return out


def _thresholds(above, drugs) -> dict[str, float]:
    """``above``: None, a number (ug/mL, every drug), text with a unit ('10 ug/mL') or a mapping drug -> either."""
    from .units import parse_value

    def one(field, value):
        if isinstance(value, str):
            value = parse_value(value, "ug/mL", field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise InputError(describe(field, value, "a finite concentration > 0 (ug/mL, or text with a unit such as '500 ng/mL')"))
        return float(value)

    if above is None:
        return {}
    if isinstance(above, Mapping):
        for name in above:
            if name not in drugs:
                raise InputError(describe("above drug", name, f"a drug of the regimen: {list(drugs)}"))
        return {d: one(f"above[{d!r}]", v) for d, v in above.items()}
    return {d: one("above", above) for d in drugs}


def _grid(breakpoints: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Output times and the index of each breakpoint in them: each gap split into a multiple of 4
    equal panels of at most ``step`` (Simpson on h and on 2h both fit)."""
    pieces, index, n_total = [], [], 0
    for a, b in zip(breakpoints[:-1], breakpoints[1:]):
        n = 4 * max(1, math.ceil((b - a) / (4 * step)))
        pieces.append(np.linspace(a, b, n + 1)[:-1])
        index.append(n_total)
        n_total += n
    pieces.append(breakpoints[-1:])
    index.append(n_total)
    return np.concatenate(pieces), np.asarray(index)


def _simpson(y: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Composite Simpson over the last axis (an even number of panels of width h)."""
    return h / 3.0 * (y[..., 0] + y[..., -1] + 4.0 * y[..., 1:-1:2].sum(-1) + 2.0 * y[..., 2:-1:2].sum(-1))


def exposure(regimen, params: Mapping | None = None, *, days: float = 365.0, weight=None, height=None, bsa=None,
             growth_law: str = "gompertz", model=None, above=None, step_days: float = DEFAULT_STEP_DAYS, solver: str = "tsit5",
             rtol: float = 1e-6, atol: float = 1e-9, max_steps: int = 100_000, on_failure: str = "raise") -> xr.Dataset:
    """Exposure per (patient, drug, dose_interval): Cmax, Tmax, Ctrough, AUC, Cavg, time above a
    concentration and target occupancy at trough (module docstring for the definitions).

    Arguments as :func:`immunopd.simulate`; ``above``: a concentration threshold in ug/mL (a
    number, text with a unit, or a mapping drug -> threshold); ``step_days``: the largest grid
    step between dose edges (day, default 1 hour).
    """
    from .solve import check_times, simulate

    regimen = _as_regimen(regimen)
    if not regimen.drugs:
        raise RegimenError(describe("regimen", regimen.describe(), "a regimen that doses at least one drug (exposure of no treatment is 0)"))
    check_times(None, days)
    if isinstance(step_days, bool) or not isinstance(step_days, (int, float)) or not math.isfinite(step_days) or not (0 < step_days <= 1):
        raise InputError(describe("step_days", step_days, "a grid step in day, > 0 and <= 1"))
    thresholds = _thresholds(above, regimen.drugs)
    regimen.check_horizon(float(days))
    intervals = dose_intervals(regimen, float(days))
    edges = {0.0, float(days)}
    for rows in intervals.values():
        for t0, t1, end, _ in rows:
            edges.update((t0, min(t1, float(days)), end))
    breakpoints = np.array(sorted(edges))
    ts, bp_index = _grid(breakpoints, float(step_days))
    where = {float(t): int(i) for t, i in zip(breakpoints, bp_index)}

    ds = simulate(regimen, params, times=ts, weight=weight, height=height, bsa=bsa, growth_law=growth_law, model=model,
                  solver=solver, rtol=rtol, atol=atol, max_steps=max_steps, on_failure=on_failure,
                  outputs=("concentration", "occupancy", "drug_amount"))
    from .solve import resolve_model

    model = resolve_model(model, growth_law)
    n = ds.sizes["patient"]
    drugs = [str(d) for d in ds.drug.values]
    records = [model.drug(d) for d in drugs]
    p = {spec.name: ds[spec.name].values for spec in model.parameters}
    conc = ds.concentration.transpose("patient", "drug", "time").values
    eliminated = ds.drug_amount.sel(compartment="eliminated").transpose("patient", "drug", "time").values
    indiv = [r.individual(p, np) for r in records]

    # boluses at each breakpoint: the left limit of a concentration subtracts them
    weights = ds.body_weight.values if ds.attrs.get("body_weight_given") else None
    bsas = ds.body_surface_area.values if ds.attrs.get("body_surface_area_given") else None
    sched = regimen.schedule(float(days), weights, n, drugs=tuple(drugs), bsas=bsas)
    dose_mg = sched.rates * (sched.ends - sched.starts)[None] + sched.boluses  # (patient, drug, doses)

    def left(i: int) -> np.ndarray:
        """(patient, drug) concentrations just before output time ts[i]."""
        c = conc[:, :, i].copy()
        if sched.boluses.any():
            for j in range(len(drugs)):
                hit = sched.starts[j] == ts[i]
                if hit.any():
                    c[:, j] -= sched.boluses[:, j, hit].sum(-1) / np.broadcast_to(indiv[j]["central_volume"], (n,))
        return c

    def occupancy_of(c: np.ndarray, j: int) -> np.ndarray:
        target = records[j].target
        x = np.zeros(n)
        for k, r in enumerate(records):
            if r.target == target:
                x = x + r.partition(p) * np.maximum(c[:, k], 0.0) / r.ec50(p)
        return x / (1.0 + x)

    kmax = max(len(rows) for rows in intervals.values())
    shape = (n, len(drugs), kmax)
    out = {name: np.full(shape, np.nan) for name in ("cmax", "tmax", "ctrough", "auc", "auc_error", "cavg", "trough_occupancy",
                                                     "time_above", "dose")}
    starts = np.full((len(drugs), kmax), np.nan)
    ends = np.full((len(drugs), kmax), np.nan)
    complete = np.zeros((len(drugs), kmax), dtype=bool)
    for j, drug in enumerate(drugs):
        exact = records[j].pk.exact
        cl = np.broadcast_to(indiv[j]["clearance"], (n,)) if exact else None
        for k, (t0, _, t_end, full) in enumerate(intervals[drug]):
            i0, i1 = where[t0], where[t_end]
            starts[j, k], ends[j, k], complete[j, k] = t0, t_end, full
            c_end = left(i1)[:, j]
            y = np.concatenate([conc[:, j, i0:i1], c_end[:, None]], axis=1)  # (patient, points), last one the left limit
            best = np.argmax(y, axis=1)
            out["cmax"][:, j, k] = y[np.arange(n), best]
            out["tmax"][:, j, k] = ts[i0:i1 + 1][best]
            out["ctrough"][:, j, k] = c_end
            out["trough_occupancy"][:, j, k] = occupancy_of(left(i1), j)
            out["dose"][:, j, k] = dose_mg[:, j, k]
            if exact:
                out["auc"][:, j, k] = (eliminated[:, j, i1] - eliminated[:, j, i0]) / cl
                out["auc_error"][:, j, k] = 0.0
            else:
                fine = coarse = 0.0
                cuts = [i for i in bp_index if i0 <= i <= i1]
                for a, b in zip(cuts[:-1], cuts[1:]):
                    seg = y[:, a - i0: b - i0 + 1]
                    h = (ts[b] - ts[a]) / (b - a)
                    fine = fine + _simpson(seg, h)
                    coarse = coarse + _simpson(seg[:, ::2], 2 * h)
                out["auc"][:, j, k] = fine
                out["auc_error"][:, j, k] = np.abs(fine - coarse) / 15.0
            out["cavg"][:, j, k] = out["auc"][:, j, k] / (t_end - t0)
            if drug in thresholds:
                out["time_above"][:, j, k] = _time_above(ts[i0:i1 + 1], y, thresholds[drug])

    attrs = {
        "cmax": ("ug/mL", "largest serum concentration in the dose interval (infusion ends included exactly)"),
        "tmax": ("day", "time of cmax since treatment start"),
        "ctrough": ("ug/mL", "serum concentration just before the next dose (end of the interval)"),
        "auc": ("ug*day/mL", "area under the serum concentration curve over the dose interval"),
        "auc_error": ("ug*day/mL", "estimated absolute error of auc (0: exact from the cumulative elimination; else Richardson "
                                   "estimate of the composite Simpson rule)"),
        "cavg": ("ug/mL", "average serum concentration over the dose interval (auc / interval length)"),
        "trough_occupancy": ("1", "occupancy of the drug's target in the tumor at the trough, 0-1"),
        "time_above": ("day", "time in the dose interval with the serum concentration above the drug's 'above' threshold "
                              "(NaN: no threshold given)"),
        "dose": ("mg", "amount of the dose that starts the interval"),
    }
    data = {name: (("patient", "drug", "dose_interval"), out[name], {"units": u, "long_name": ln}) for name, (u, ln) in attrs.items()}
    coords = {
        "patient": ("patient", np.arange(n), {"long_name": "virtual patient index"}),
        "drug": ("drug", np.array(drugs, dtype=str), {"long_name": "dosed drug"}),
        "drug_target": ("drug", np.array([r.target for r in records], dtype=str), {"long_name": "target of each drug"}),
        "dose_interval": ("dose_interval", np.arange(1, kmax + 1), {"long_name": "dose number of the drug (1 = first dose)", "units": "1"}),
        "interval_start": (("drug", "dose_interval"), starts, {"units": "day", "long_name": "dose start (interval start)"}),
        "interval_end": (("drug", "dose_interval"), ends, {"units": "day",
                                                            "long_name": "next dose start, or one dosing interval after the last dose, "
                                                                         "or the end of the simulation"}),
        "complete": (("drug", "dose_interval"), complete, {"long_name": "True when the interval ends at the next (or the next "
                                                                        "scheduled) dose; False when the simulation ended first"}),
        "above_threshold": ("drug", np.array([thresholds.get(d, np.nan) for d in drugs]),
                            {"units": "ug/mL", "long_name": "concentration threshold of time_above (NaN: none)"}),
        "auc_method": ("drug", np.array(["exact (cumulative elimination / clearance)" if r.pk.exact else
                                         f"composite Simpson, grid step <= {step_days:g} day" for r in records], dtype=str),
                       {"long_name": "how auc was integrated"}),
    }
    result = xr.Dataset(data, coords=coords)
    result.attrs.update({k: v for k, v in ds.attrs.items() if k != "title"})
    result.attrs.update({"title": "immunopd exposure summary", "kind": "exposure", "days": float(days), "step_days": float(step_days)})
    result["solver_status"] = ds.solver_status
    for spec in model.parameters:
        if spec.name in ("body_weight", "body_surface_area"):
            result[spec.name] = ds[spec.name]
    return result


def _time_above(t: np.ndarray, y: np.ndarray, threshold: float) -> np.ndarray:
    """Time with ``y`` > ``threshold`` on the grid ``t`` (patient, points), crossings log-linear."""
    ya, yb = y[:, :-1], y[:, 1:]
    dt = np.diff(t)[None, :]
    above_a, above_b = ya > threshold, yb > threshold
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = (ya > 0) & (yb > 0)
        frac_log = (np.log(threshold) - np.log(ya)) / (np.log(yb) - np.log(ya))
        frac_lin = (threshold - ya) / (yb - ya)
        # a fall is (near) exponential between doses: log-linear; a rise happens during an infusion,
        # where C = C0 e^{-ks} + R/CL (1 - e^{-ks}) is (near) linear in s: linear
        frac = np.clip(np.where(positive & (yb < ya), frac_log, frac_lin), 0.0, 1.0)  # where in the step the crossing is
    part = np.where(above_a & above_b, dt, 0.0)
    part = np.where(above_a & ~above_b, frac * dt, part)
    part = np.where(~above_a & above_b, (1.0 - frac) * dt, part)
    return part.sum(axis=1)


def exposure_table(ds: xr.Dataset, patient: int = 0) -> str:
    """One patient's exposure as a fixed-width text table (the ``immunopd exposure`` output)."""
    head = (f"{'drug':<16} {'dose':>4} {'start d':>8} {'end d':>8} {'dose mg':>8} {'Cmax ug/mL':>11} {'Tmax d':>8} "
            f"{'Ctrough ug/mL':>14} {'AUC ug*d/mL':>12} {'Cavg ug/mL':>11} {'t>thr d':>8} {'occ trough':>10}")
    lines = [head, "-" * len(head)]
    d = ds.isel(patient=patient)
    cut_short = False  # the footnote only under a table with a cut-short interval
    for drug in d.drug.values:
        x = d.sel(drug=drug)
        for k in range(x.sizes["dose_interval"]):
            row = x.isel(dose_interval=k)
            if not np.isfinite(float(row.interval_start)):
                continue
            above = float(row.time_above)
            mark = " " if bool(row.complete) else "*"
            cut_short |= mark == "*"
            lines.append(
                f"{str(drug):<16} {int(row.dose_interval):>4} {float(row.interval_start):>8.3f} {float(row.interval_end):>7.3f}{mark} "
                f"{float(row.dose):>8.1f} {float(row.cmax):>11.4g} {float(row.tmax):>8.3f} {float(row.ctrough):>14.4g} "
                f"{float(row.auc):>12.5g} {float(row.cavg):>11.4g} {(f'{above:.3f}' if np.isfinite(above) else '-'):>8} "
                f"{float(row.trough_occupancy):>10.4f}")
    if cut_short:
        lines.append("* the simulation ended before the next dose: the interval is cut short (its trough is the last time point)")
    return "\n".join(lines)
