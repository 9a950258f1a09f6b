"""The standard figure of a simulate, exposure, trial, biomarker, sensitivity or fit result (``immunopd plot RESULT --out fig.png``).

The kind of result is read from the file itself (its attrs and variables), never from its name:

| kind | recognised by | figure |
| --- | --- | --- |
| simulation | title "immunopd simulation", a ``time`` dim | SLD (or the first state) over time; concentration per drug; occupancy per target |
| exposure | attrs ``kind = "exposure"`` | Cmax and Ctrough per dose (each drug), occupancy at trough |
| trial | ``regimen`` dim and ``best_pct_change`` | waterfall per regimen and Kaplan–Meier PFS |
| sensitivity-local | ``S`` over (output, parameter) | tornado of d ln y / d ln p at the last time, per output |
| sensitivity-global | attrs ``method_key`` | Sobol/eFAST S1 and ST bars (Morris: mu* and sigma), per output |
| fit | ``estimate`` over (lesion, parameter) | fitted curves of up to 12 lesions, with their scans when the file holds them |
"""

from __future__ import annotations

import os
import textwrap

import numpy as np
import xarray as xr

from .errors import InputError, describe

__all__ = ["KINDS", "detect", "plot_result", "open_any"]

KINDS = ("simulation", "exposure", "trial", "sensitivity-local", "sensitivity-global", "fit")
MAX_PANELS = 4
MAX_LESIONS = 12


def open_any(path: str | os.PathLike) -> xr.Dataset:
    """A netCDF file or zarr store, loaded; a file neither can read is an error naming it."""
    p = str(path)
    try:
        if p.endswith(".zarr"):
            with xr.open_zarr(p) as ds:
                return ds.load()
        from .io import open_result

        return open_result(p)
    except (OSError, ValueError) as exc:
        raise InputError(describe("RESULT", p, f"a netCDF (.nc) or zarr (.zarr) result written by immunopd ({type(exc).__name__}: "
                                               f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})")) from None


def detect(ds: xr.Dataset, name: str = "RESULT", path=None) -> str:
    """The kind of result ``ds`` (read from ``path``, named in the error) is (one of :data:`KINDS`),
    from its attrs and variables."""
    attrs = ds.attrs
    if attrs.get("kind") == "exposure":
        return "exposure"
    if "method_key" in attrs and "parameter" in ds.dims:
        return "sensitivity-global"
    if "S" in ds and {"output", "parameter"} <= set(ds["S"].dims):
        return "sensitivity-local"
    if "regimen" in ds.dims and "best_pct_change" in ds:
        return "trial"
    if "estimate" in ds and {"lesion", "parameter"} <= set(ds["estimate"].dims):
        return "fit"
    if attrs.get("title") == "immunopd simulation" and "time" in ds.dims:
        return "simulation"
    shown = {k: attrs[k] for k in list(attrs)[:4]}
    what = str(path) if path is not None else attrs.get("title", "a file without a title")
    raise InputError(describe(name, what,
                              f"a result of immunopd simulate, exposure, trial, biomarker, sensitivity or fit (kinds: {', '.join(KINDS)}); "
                              f"this file (title {attrs.get('title', 'none')!r}) has variables {sorted(ds.data_vars)[:8]} and attrs {shown}"))


def plot_result(path: str | os.PathLike, out: str | os.PathLike) -> str:
    """Draw the standard figure of the result at ``path`` into the PNG ``out`` (atomic); return its kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import save_figure

    ds = open_any(path)
    kind = detect(ds, path=path)
    fig = {"simulation": _simulation, "exposure": _exposure, "trial": _trial, "sensitivity-local": _local,
           "sensitivity-global": _global, "fit": _fit}[kind](ds, plt)
    fig.suptitle(f"{kind}: {os.path.basename(str(path))}", fontsize=9)
    fig.tight_layout()
    try:
        save_figure(fig, out)
    finally:
        plt.close(fig)
    return kind


def _panels(plt, n: int, width: float = 4.2, height: float = 3.2):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def _label(v: xr.DataArray, width: int = 38) -> str:
    """The variable's long name and unit, wrapped: a long name on one line runs off the figure."""
    return "\n".join(textwrap.wrap(f"{v.attrs.get('long_name', v.name)} ({v.attrs.get('units', '?')})", width))


def _simulation(ds, plt):
    size = next((n for n in ("sld", "tumor_volume") if n in ds), None)
    if size is None:
        size = next((n for n, v in ds.data_vars.items() if v.dims == ("patient", "time")), None)
    extra = [n for n in ("concentration", "occupancy") if n in ds and ds[n].size]
    fig, axes = _panels(plt, max(1, (size is not None) + len(extra)))
    t = ds.time.values
    patients = ds.patient.values[:20]
    i = 0
    if size is not None:
        for p in patients:
            axes[0].plot(t, ds[size].sel(patient=p).values, lw=0.8)
        axes[0].set_ylabel(_label(ds[size]))
        i = 1
    for name in extra:
        ax, dim = axes[i], "drug" if name == "concentration" else "target"
        for label in ds[dim].values:
            ax.plot(t, ds[name].sel({dim: label}).isel(patient=0).values, label=str(label))
        ax.set_ylabel(_label(ds[name]))
        ax.legend(fontsize=7)
        i += 1
    for ax in axes:
        ax.set_xlabel("time since treatment start (day)")
    axes[0].set_title(str(ds.attrs.get("regimen", "")), fontsize=8)
    return fig


def _exposure(ds, plt):
    fig, axes = _panels(plt, 2)
    d = ds.isel(patient=0)
    for drug in d.drug.values:
        x = d.sel(drug=drug)
        keep = np.isfinite(x.interval_start.values)
        k = x.dose_interval.values[keep]
        axes[0].plot(k, x.cmax.values[keep], "o-", label=f"{drug} Cmax")
        axes[0].plot(k, x.ctrough.values[keep], "s--", label=f"{drug} Ctrough")
        axes[1].plot(k, x.trough_occupancy.values[keep], "o-", label=f"{drug} ({str(x.drug_target.values)})")
    axes[0].set_ylabel("serum concentration (ug/mL)")
    axes[1].set_ylabel(_label(ds.trough_occupancy))
    for ax in axes:
        ax.set_xlabel("dose number")
        ax.legend(fontsize=7)
    return fig


def _trial(ds, plt):
    from .plots import kaplan_meier_plot, waterfall

    regimens = list(ds.regimen.values)[: MAX_PANELS - 1]
    fig, axes = _panels(plt, len(regimens) + 1)
    for ax, r in zip(axes, regimens):
        waterfall(ds, r, ax=ax)
        ax.title.set_fontsize(8)
    if "pfs_days" in ds and "progressed" in ds:
        kaplan_meier_plot(ds, ax=axes[-1])
    else:
        axes[-1].set_axis_off()
    return fig


def _local(ds, plt):
    from .plots import tornado

    outputs = list(ds.output.values)[:MAX_PANELS]
    fig, axes = _panels(plt, len(outputs), height=max(3.2, 0.25 * ds.sizes["parameter"]))
    last = float(ds.time.values[-1])
    for ax, o in zip(axes, outputs):
        tornado(ds, str(o), last, ax=ax)
        ax.set_title(str(o), fontsize=8)
    return fig


def _global(ds, plt):
    if "output" not in ds.dims:  # only time-resolved indices
        from .plots import index_heatmap

        fig, axes = _panels(plt, 1, width=7)
        index_heatmap(ds, next(n for n in ds.data_vars if n.startswith(("ST_", "mu_star_"))), ax=axes[0])
        return fig
    outputs = list(ds.output.values)[:MAX_PANELS]
    fig, axes = _panels(plt, len(outputs))
    for ax, o in zip(axes, outputs):
        if "ST" in ds:
            from .plots import sobol_bars

            sobol_bars(ds, str(o), ax=ax)
        else:  # Morris
            d = ds.sel(output=o)
            x = np.arange(d.sizes["parameter"])
            ax.bar(x - 0.2, d.mu_star, width=0.4, yerr=d.mu_star_conf, capsize=2, label="mu* (mean |elementary effect|)")
            ax.bar(x + 0.2, d.sigma, width=0.4, label="sigma")
            ax.set_xticks(x, [str(p) for p in d.parameter.values], rotation=60, ha="right", fontsize=8)
            ax.set_title(str(o))
            ax.legend(fontsize=7)
    return fig


def _fit(ds, plt):
    from .fitting.curves import CURVE_MODELS

    model = ds.attrs.get("model")
    if model not in CURVE_MODELS:
        raise InputError(describe("RESULT attrs model", model, f"a curve model of immunopd fit: {sorted(CURVE_MODELS)}"))
    spec = CURVE_MODELS[model]
    order = np.argsort(~ds.converged.values.astype(bool), kind="stable") if "converged" in ds else np.arange(ds.sizes["lesion"])
    lesions = order[:MAX_LESIONS]
    fig, axes = _panels(plt, 1, width=7, height=4.5)
    ax = axes[0]
    has_obs = "observed_size" in ds and "observed_time" in ds
    unit = ds.attrs.get("size_unit", ds.attrs.get("size_column", "size"))
    for i, les in enumerate(lesions):
        est = ds.estimate.isel(lesion=les)
        if not np.all(np.isfinite(est.values)):
            continue
        if has_obs:
            t_obs = ds.observed_time.isel(lesion=les).values
            y_obs = ds.observed_size.isel(lesion=les).values
            ok = np.isfinite(t_obs) & np.isfinite(y_obs)
            t_lo, t_hi = (float(t_obs[ok].min()), float(t_obs[ok].max())) if ok.any() else (0.0, 365.0)
        else:
            t_lo, t_hi = 0.0, 365.0
        t = np.linspace(min(t_lo, 0.0), max(t_hi, 1.0), 200)
        values = {str(n): float(v) for n, v in zip(ds.parameter.values, est.values)}
        y = np.asarray(spec.function(t, values))
        line = ax.plot(t, y, lw=1.0, label=str(ds.lesion.values[les])[:12])[0]
        if has_obs:
            ax.plot(t_obs[ok], y_obs[ok], "o", ms=3, color=line.get_color())
    ax.set_xlabel("time since treatment start (day)")
    ax.set_ylabel(str(unit))
    ax.set_title(f"{model} fits ({len(lesions)} of {ds.sizes['lesion']} lesions, converged first)", fontsize=8)
    ax.legend(fontsize=6, ncol=2)
    return fig
