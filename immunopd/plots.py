"""Plots: trials (waterfall, spider, Kaplan–Meier per regimen) and sensitivity (tornado, Sobol
bars with CIs, heatmap of time-resolved indices), with matplotlib on result Datasets.

Each function draws into ``ax`` (a new figure when omitted) and returns the axes, so
notebooks can compose them; nothing here computes an endpoint (see :mod:`immunopd.endpoints`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from . import endpoints as ep

__all__ = ["waterfall", "spider", "kaplan_meier_plot", "tornado", "sobol_bars", "index_heatmap"]

_COLORS = {"CR": "#1a9850", "PR": "#91cf60", "SD": "#fee08b", "PD": "#d73027", "NE": "#bbbbbb"}


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 4))
    return ax


def waterfall(trial: xr.Dataset, regimen, ax=None):
    """Best % change of every patient under ``regimen``, sorted, coloured by best response."""
    ax = _axes(ax)
    d = trial.sel(regimen=regimen)
    best = d.best_pct_change.values
    resp = d.best_response.values
    order = np.argsort(-np.nan_to_num(best, nan=-np.inf))
    colors = [_COLORS[ep.RESPONSES[int(r)]] for r in resp[order]]
    ax.bar(np.arange(best.size), np.clip(best[order], -100, 100), width=1.0, color=colors)
    ax.axhline(20, color="k", lw=0.6, ls="--")
    ax.axhline(-30, color="k", lw=0.6, ls="--")
    ax.set_xlabel("virtual patient (sorted)")
    ax.set_ylabel("best % change of SLD (clipped at +100)")
    ax.set_title(f"{regimen}: ORR {100 * float(d.orr):.1f}%")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=c, label=k) for k, c in _COLORS.items() if k != "NE"], fontsize=7, ncol=4)
    return ax


def spider(trial: xr.Dataset, regimen, patients: int = 60, seed: int = 0, ax=None):
    """% change of SLD over time for a random sample of patients, coloured by best response."""
    ax = _axes(ax)
    d = trial.sel(regimen=regimen)
    rng = np.random.default_rng(seed)
    idx = rng.choice(d.sizes["patient"], size=min(patients, d.sizes["patient"]), replace=False)
    pct = d.pct_change.values if "pct_change" in d else 100 * (d.sld.values / d.sld.values[:, :1] - 1)
    for i in idx:
        ax.plot(d.time.values, np.clip(pct[i], -100, 150), color=_COLORS[ep.RESPONSES[int(d.best_response.values[i])]], lw=0.8)
    ax.axhline(20, color="k", lw=0.6, ls="--")
    ax.axhline(-30, color="k", lw=0.6, ls="--")
    ax.set_xlabel("time since treatment start (day)")
    ax.set_ylabel("% change of SLD (clipped at +150)")
    ax.set_title(f"{regimen}: {idx.size} patients")
    return ax


def kaplan_meier_plot(trial: xr.Dataset, ax=None, mask=None, label_suffix: str = ""):
    """Kaplan–Meier PFS per regimen with the 95% log-log band; ``mask`` selects patients."""
    ax = _axes(ax)
    for r in trial.regimen.values:
        d = trial.sel(regimen=r)
        keep = np.ones(d.sizes["patient"], bool) if mask is None else np.asarray(mask, bool)
        keep &= d.solver_status.values == 0 if "solver_status" in d else True
        km = ep.kaplan_meier(d.pfs_days.values[keep], d.progressed.values[keep])
        t = np.concatenate([[0.0], km["time"]])
        line = ax.step(t, np.concatenate([[1.0], km["survival"]]), where="post", label=f"{r}{label_suffix}")[0]
        ax.fill_between(t, np.concatenate([[1.0], km["lower"]]), np.concatenate([[1.0], km["upper"]]),
                        step="post", color=line.get_color(), alpha=0.15)
    ax.set_xlabel("time since treatment start (day)")
    ax.set_ylabel("progression-free (Kaplan-Meier)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    return ax


# ---------------------------------------------------------------------- sensitivity plots
def tornado(local: xr.Dataset, output: str, time: float, patient: int = 0, ax=None):
    """Local normalized sensitivities of ``output`` at ``time`` (day), largest |S| on top."""
    ax = _axes(ax)
    s = local.S.sel(output=output).isel(patient=patient).sel(time=time, method="nearest")
    order = np.argsort(np.abs(np.nan_to_num(s.values)))
    ax.barh(np.arange(order.size), s.values[order], color=["C3" if v < 0 else "C0" for v in s.values[order]])
    ax.set_yticks(np.arange(order.size), [str(p) for p in s.parameter.values[order]], fontsize=8)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel(f"d ln {output} / d ln p at day {float(s.time):g}")
    return ax


def sobol_bars(gsa: xr.Dataset, output: str, ax=None):
    """First-order and total Sobol indices of ``output`` with their confidence intervals."""
    ax = _axes(ax)
    d = gsa.sel(output=output)
    x = np.arange(d.sizes["parameter"])
    ax.bar(x - 0.2, d.S1, width=0.4, yerr=d.S1_conf, capsize=2, label="S1 (first order)")
    ax.bar(x + 0.2, d.ST, width=0.4, yerr=d.ST_conf, capsize=2, label="ST (total)")
    ax.set_xticks(x, [str(p) for p in d.parameter.values], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("Sobol index")
    ax.set_title(output)
    ax.legend(fontsize=8)
    return ax


def index_heatmap(gsa: xr.Dataset, variable: str = "ST_log10_tumor_volume", ax=None):
    """Time-resolved indices as a (parameter x time) heatmap."""
    ax = _axes(ax)
    v = gsa[variable]
    im = ax.pcolormesh(gsa.time.values, np.arange(v.sizes["parameter"]), v.transpose("parameter", "time").values,
                       shading="nearest", vmin=0, vmax=1, cmap="viridis")
    ax.set_yticks(np.arange(v.sizes["parameter"]), [str(p) for p in v.parameter.values], fontsize=8)
    ax.set_xlabel("time since treatment start (day)")
    ax.set_title(variable)
    ax.figure.colorbar(im, ax=ax)
    return ax
