"""A numba + numbalsoda peer for bench/simulate.py: the core model written by hand as a compiled
C callback, integrated by numbalsoda's LSODA, many patients at once from threads.

Why this peer: it is what a careful user without immunopd would write for a fast population
simulation on CPUs (a compiled right-hand side, a stiff/non-stiff switching solver, no Python
per step), so it measures what the compiled, batched diffrax solve buys over that, not over
interpreter overhead as the scipy loop does.

What it integrates: the 11 PD states of immunopd.models.core (ln Vs, Vr, D, E, X, R, M, Mc, S,
memory and the inflammatory swelling I, with the Gompertz law; the adverse-event hazard, read by
nothing, is left out) plus the two-compartment PK of both antibodies as 4 ODE states (central,
peripheral); the bookkeeping "eliminated" states are left out, since nothing read here depends
on them. Like tests/reference.py it integrates segment by segment between infusion edges, so
the zero-order infusion rate is constant within each LSODA call (LSODA knows nothing about the
jumps). Per-patient parameters and the state at time 0 are read from an immunopd Dataset, so
both peers solve the same patients from the same start; the equations are written again here
and checked against immunopd by bench/simulate.py before anything is timed.

Parallelism: the patient loop is one ``@njit(parallel=True, nogil=True)`` function whose
``prange`` splits the patients over as many threads as immunopd uses for its compiled calls
(``immunopd.integrate.threads()``, so both peers get the same cores). Measured on 2 cores against a
ThreadPoolExecutor running 16-patient chunks of the same loop compiled ``nogil`` without
``parallel``: prange was 2-14 % faster in each of 6 interleaved runs of 4,000-10,000 patients
(with other processes loading the machine, so roughly; patients cost nearly the same, about
2,600 rhs calls each, so its static split balances well).

numbalsoda's ``lsoda_wrapper`` builds a fresh C++ ``LSODA`` object on every call, so concurrent
calls share no solver state.
"""

from __future__ import annotations

import functools
import time
from collections import namedtuple

import numpy as np

import immunopd as ip

try:
    import numba
    from numba import carray, cfunc, njit, prange
    from numbalsoda import lsoda, lsoda_sig

    IMPORT_ERROR: str | None = None
except ImportError as exc:  # the bench skips this peer with this message
    IMPORT_ERROR = f"{exc} (install with: .venv/bin/pip install -e '.[bench]')"

__all__ = ["IMPORT_ERROR", "PARAMETERS", "PeerProblem", "from_immunopd", "from_dataset", "solve", "compile_seconds", "versions"]

# ----------------------------------------------------------------------------- parameter names
_PD = (
    "growth_rate", "carrying_capacity", "kill_rate", "kill_exponent", "kill_half_ratio", "resistant_kill_fraction",
    "tumor_cell_volume", "dead_clearance", "extinction_rate",
    "antigen_loss_rate", "effector_influx", "tcell_exclusion", "effector_expansion", "expansion_half_volume",
    "effector_death", "exhaustion_rate", "exhausted_death", "reinvigoration_rate", "checkpoint_strength",
    "pdl1_baseline", "pdl1_upregulation", "ifn_half_effector", "treg_influx", "treg_recruitment", "treg_death",
    "mdsc_influx", "mdsc_recruitment", "mdsc_death", "macrophage_influx", "macrophage_recruitment",
    "macrophage_death", "recruitment_half_volume", "treg_suppression", "mdsc_suppression", "reprogramming_rate",
    "sclever1_healthy", "sclever1_release", "sclever1_inflammation_boost", "sclever1_release_block",
    "sclever1_clearance", "sclever1_suppression", "metabolic_suppression", "memory_formation", "memory_death", "memory_recall",
    "inflammatory_swelling", "inflammation_clearance",
)
_PK = ("clearance", "central_volume", "intercompartmental_clearance", "peripheral_volume", "tumor_partition", "ec50")
_TARGETS = ("pd1", "clever1")  # the peer's two antibody slots (the core model's targets, in its order)

#: the drug in each slot: immunopd names each drug's PK parameters after it (``pembrolizumab_clearance`` ...)
PK_PREFIX = {"pd1": "pembrolizumab", "clever1": "bexmarilimab"}

#: The immunopd parameter (Dataset variable) behind each slot of the per-patient array, in
#: array order: the one place that ties the hand-written rhs to immunopd's names.
PARAMETERS: tuple[str, ...] = _PD + tuple(f"{PK_PREFIX[t]}_{q}" for t in _TARGETS for q in _PK) + ("body_weight",)


def _individual_pk(ds, drug: str) -> dict[str, np.ndarray]:
    """Each patient's individual PK values (weight and sex effects applied) of ``drug``, by the
    drug's own record with the Dataset's per-patient parameters, so both peers use the same
    covariate model rather than a copy of it."""
    model = ip.core_model()
    return model.drug(drug).individual({name: ds[name].values for name in model.parameters.names}, np)


# The rhs addresses the array by these slot names (stable whatever immunopd calls them), then
# by values derived once per patient: individual (weight-scaled) PK rate constants and central
# volume, and the infusion rate of the current segment (mg/day).
_DERIVED = tuple(f"{t}_{q}" for t in _TARGETS for q in ("k10", "k12", "k21", "v1")) + ("pd1_rate", "clever1_rate")
_SLOT_NAMES = _PD + tuple(f"{t}_{q}" for t in _TARGETS for q in _PK) + ("body_weight",) + _DERIVED
_Slots = namedtuple("_Slots", _SLOT_NAMES)
S = _Slots(*range(len(_SLOT_NAMES)))  # a global tuple of ints: numba freezes it as constants
N_SLOTS = len(_SLOT_NAMES)

#: the PD states, in the peer's own order (matched to immunopd's by name; tumor_sensitive integrated as its log, as immunopd does)
PD_STATES = ("tumor_sensitive", "tumor_resistant", "tumor_dead", "effector", "exhausted", "treg", "mdsc",
             "clever1_macrophage", "sclever1_plasma", "memory", "inflammation")
N_STATES = len(PD_STATES) + 2 * len(_TARGETS)  # + central and peripheral amount per antibody
_TINY_VOLUME = 1e-6  # as immunopd.models.growth: volumes below this are this inside the log


# ----------------------------------------------------------------------------- compiled code
@functools.lru_cache(maxsize=1)
def _compiled():
    """Build the cfunc rhs and the parallel patient loop (compiled on first use, so the bench can
    time the JIT apart and importing this module stays cheap)."""

    @cfunc(lsoda_sig, cache=False, error_model="numpy")
    def rhs(t, u, du, data):
        y = carray(u, (N_STATES,))
        d = carray(du, (N_STATES,))
        p = carray(data, (N_SLOTS,))
        vs = np.exp(y[0])
        vr, dead, e, x, r, m, mc, s, mem, infl = y[1], y[2], y[3], y[4], y[5], y[6], y[7], y[8], y[9], y[10]
        v = vs + vr
        # receptor occupancies in the tumor from the central concentrations (ug/mL)
        exposed1 = p[S.pd1_tumor_partition] * max(y[11] / p[S.pd1_v1], 0.0)
        ro1 = exposed1 / (exposed1 + p[S.pd1_ec50])
        exposed2 = p[S.clever1_tumor_partition] * max(y[13] / p[S.clever1_v1], 0.0)
        ro2 = exposed2 / (exposed2 + p[S.clever1_ec50])
        # the checkpoint, suppression, sClever-1 and metabolic factors of immunopd.models.core
        ifn = e / (e + p[S.ifn_half_effector])
        pdl1 = p[S.pdl1_baseline] + p[S.pdl1_upregulation] * ifn
        f = (1.0 / (1.0 + p[S.checkpoint_strength] * pdl1 * (1.0 - ro1))
             / (1.0 + p[S.treg_suppression] * r + p[S.mdsc_suppression] * m)
             / (1.0 + p[S.sclever1_suppression] * s)
             / (1.0 + p[S.metabolic_suppression] * v))
        # the Gompertz law of immunopd.models.growth, the ratio-dependent kill and extinction below one cell
        g = p[S.growth_rate] * np.log(p[S.carrying_capacity] / max(v, _TINY_VOLUME))
        vc = p[S.tumor_cell_volume]
        ratio = f * e * 1e6 * vc / max(v, vc)
        rl = ratio ** p[S.kill_exponent]
        kill = p[S.kill_rate] * rl / (p[S.kill_half_ratio] ** p[S.kill_exponent] + rl)
        ext_s = 1.0 / (1.0 + (vs / vc) ** 4)
        ext_r = 1.0 / (1.0 + (vr / vc) ** 4)
        exhaustion = p[S.exhaustion_rate] * pdl1 * (1.0 - ro1) * e
        reinvigoration = p[S.reinvigoration_rate] * ro1 * x
        expansion = p[S.effector_expansion] * f * e * vs / (p[S.expansion_half_volume] + vs)
        saturation = v / (p[S.recruitment_half_volume] + v)
        killed_r = p[S.resistant_kill_fraction] * kill * vr
        d[0] = g * (1.0 - ext_s) - kill - p[S.antigen_loss_rate] - p[S.extinction_rate] * ext_s
        d[1] = g * (1.0 - ext_r) * vr - killed_r - p[S.extinction_rate] * ext_r * vr + p[S.antigen_loss_rate] * vs
        d[2] = kill * vs + killed_r + p[S.extinction_rate] * (ext_s * vs + ext_r * vr) - p[S.dead_clearance] * dead
        d[10] = p[S.inflammatory_swelling] * (kill * vs + killed_r) - p[S.inflammation_clearance] * infl
        antigen = vs / (p[S.expansion_half_volume] + vs)  # memory forms as antigen wanes, recalls effectors when it returns
        formation = p[S.memory_formation] * (1.0 - antigen) * e
        d[3] = (p[S.effector_influx] * (1.0 - p[S.tcell_exclusion]) + expansion - p[S.effector_death] * e
                - exhaustion + reinvigoration - formation + p[S.memory_recall] * antigen * mem)
        d[9] = formation - p[S.memory_death] * mem
        d[4] = exhaustion - reinvigoration - p[S.exhausted_death] * x
        d[5] = p[S.treg_influx] + p[S.treg_recruitment] * saturation - p[S.treg_death] * r
        d[6] = p[S.mdsc_influx] + p[S.mdsc_recruitment] * saturation - p[S.mdsc_death] * m
        d[7] = (p[S.macrophage_influx] + p[S.macrophage_recruitment] * saturation - p[S.macrophage_death] * mc
                - p[S.reprogramming_rate] * ro2 * mc)
        release = p[S.sclever1_release] * mc * (1.0 + p[S.sclever1_inflammation_boost] * ifn)
        d[8] = release * (1.0 - p[S.sclever1_release_block] * ro2) - p[S.sclever1_clearance] * (s - p[S.sclever1_healthy])
        # two-compartment PK with zero-order input (two-compartment PK as in immunopd.pkmodels.LinearPK.rhs)
        a1c, a1p, a2c, a2p = y[11], y[12], y[13], y[14]
        d[11] = p[S.pd1_rate] - (p[S.pd1_k10] + p[S.pd1_k12]) * a1c + p[S.pd1_k21] * a1p
        d[12] = p[S.pd1_k12] * a1c - p[S.pd1_k21] * a1p
        d[13] = p[S.clever1_rate] - (p[S.clever1_k10] + p[S.clever1_k12]) * a2c + p[S.clever1_k21] * a2p
        d[14] = p[S.clever1_k12] * a2c - p[S.clever1_k21] * a2p

    @njit(inline="always")
    def measured(ln_vs, vr, dead, infl, vc):
        lesion = np.exp(ln_vs) + vr + dead + infl
        return lesion if lesion >= vc else 0.0

    address = rhs.address

    @njit(parallel=True, nogil=True, cache=False)
    def patients(y0s, data, seg_rates, t_eval, seg_offsets, out_index, rtol, atol, mxstep, volume, status):
        """Every patient, each segment one LSODA call from its start edge to its end edge through
        the output times inside it; writes the measured tumor volume (Vs + Vr + D + I, 0 below one cell) and a status (0 ok, else 1 +
        the failed segment). Patients write disjoint rows: no reduction, so thread-independent."""
        n_seg = seg_offsets.size - 1
        for i in prange(y0s.shape[0]):
            p = data[i].copy()
            y = y0s[i].copy()
            volume[i, 0] = measured(y[0], y[1], y[2], y[10], p[S.tumor_cell_volume])
            for j in range(n_seg):
                p[S.pd1_rate] = seg_rates[i, j, 0]
                p[S.clever1_rate] = seg_rates[i, j, 1]
                a, b = seg_offsets[j], seg_offsets[j + 1]
                usol, ok = lsoda(address, y, t_eval[a:b], data=p, rtol=rtol, atol=atol, mxstep=mxstep)
                if not ok:
                    status[i] = j + 1
                    volume[i, :] = np.nan
                    break
                for k in range(1, b - a):
                    if out_index[a + k] >= 0:
                        volume[i, out_index[a + k]] = measured(usol[k, 0], usol[k, 1], usol[k, 2], usol[k, 10], p[S.tumor_cell_volume])
                y = usol[b - a - 1].copy()

    return patients


# ----------------------------------------------------------------------------- problem
class PeerProblem(namedtuple("PeerProblem", "y0s data seg_rates t_eval seg_offsets out_index times")):
    """Arrays for :func:`solve`: initial states (n, 15), per-patient parameter arrays (n, N_SLOTS),
    infusion rates per segment (n, segments, 2) in mg/day, the flattened per-segment LSODA
    times with their offsets, the output index of each of those times (-1: an edge that is
    not an output time), and the output times."""


def from_immunopd(regimen: str, params: dict[str, np.ndarray], weight: np.ndarray, times: np.ndarray) -> PeerProblem:
    """The peer's problem for the patients of ``params``, from one short ``ip.simulate`` (to day
    1, untimed by the bench) that gives every resolved per-patient parameter (drug-specific PK
    defaults included) and the state at time 0."""
    ds = ip.simulate(regimen, params, times=[0.0, 1.0], weight=weight, outputs=list(PD_STATES))
    return from_dataset(ds, regimen, times)


def from_dataset(ds, regimen: str, times: np.ndarray) -> PeerProblem:
    """The peer's problem for the patients of an immunopd result ``ds`` (any output times, as
    long as it holds the PD states at time 0 and the parameter variables).

    The state at time 0 and the parameters are ``ds``'s own numbers, so the two peers start
    from the same point; the individual PK values come from each drug's record (:func:`_individual_pk`); the infusions are immunopd's expansion of the regimen, cut
    into segments between infusion edges with each segment's rate taken at its midpoint, as
    tests/reference.py does. ``times``: the output times, starting at 0.
    """
    times = np.asarray(times, dtype=np.float64)
    reg = ip.Regimen.parse(regimen)
    n = ds.sizes["patient"]
    base = ds.sel(time=0.0)
    y0s = np.zeros((n, N_STATES))
    for k, name in enumerate(PD_STATES):
        y0s[:, k] = base[name].values
    y0s[:, 0] = np.log(y0s[:, 0])  # integrated as ln Vs, like immunopd (the PK amounts start at 0)

    data = np.zeros((n, N_SLOTS))
    data[:, : len(PARAMETERS)] = np.stack([ds[name].values for name in PARAMETERS], axis=1)
    w = data[:, S.body_weight]
    for t in _TARGETS:
        ind = _individual_pk(ds, PK_PREFIX[t])
        cl, v1 = ind["clearance"], ind["central_volume"]
        q, v2 = ind["intercompartmental_clearance"], ind["peripheral_volume"]
        data[:, getattr(S, f"{t}_k10")] = cl / v1
        data[:, getattr(S, f"{t}_k12")] = q / v1
        data[:, getattr(S, f"{t}_k21")] = q / v2
        data[:, getattr(S, f"{t}_v1")] = v1

    sched = reg.schedule(float(times[-1]), w, n, drugs=tuple(PK_PREFIX[t] for t in _TARGETS))
    jumps = sched.jump_times[np.isfinite(sched.jump_times)]
    edges = np.unique(np.concatenate([[times[0]], jumps, [times[-1]]]))
    edges = edges[(edges >= times[0]) & (edges <= times[-1])]
    mids = 0.5 * (edges[:-1] + edges[1:])
    on = (mids[None, :, None] >= sched.starts[:, None, :]) & (mids[None, :, None] < sched.ends[:, None, :])
    seg_rates = np.einsum("nkd,ksd->nsk", sched.rates, on.astype(float))  # (patients, segments, targets)

    # each segment's LSODA times: its start edge, the output times inside, its end edge
    t_eval, out_index, offsets = [], [], [0]
    for a, b in zip(edges[:-1], edges[1:]):
        inside = np.flatnonzero((times > a) & (times < b))
        end = np.flatnonzero(times == b)
        t_eval.append(np.concatenate([[a], times[inside], [b]]))
        out_index.append(np.concatenate([[-1], inside, end if end.size else [-1]]))
        offsets.append(offsets[-1] + t_eval[-1].size)
    return PeerProblem(y0s, np.ascontiguousarray(data), np.ascontiguousarray(seg_rates),
                       np.concatenate(t_eval), np.asarray(offsets, dtype=np.int64),
                       np.concatenate(out_index).astype(np.int64), times)


def solve(prob: PeerProblem, *, rtol: float = 1e-6, atol: float = 1e-9, workers: int | None = None,
          mxstep: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Tumor volume (patients, times) in mm3 and a status per patient (0 = success), on
    ``workers`` threads (default: numba's maximum, the CPU count)."""
    patients = _compiled()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS if workers is None else min(workers, numba.config.NUMBA_NUM_THREADS))
    n = prob.y0s.shape[0]
    volume = np.full((n, prob.times.size), np.nan)
    status = np.zeros(n, dtype=np.int64)
    patients(prob.y0s, prob.data, prob.seg_rates, prob.t_eval, prob.seg_offsets, prob.out_index,
             rtol, atol, mxstep, volume, status)
    return volume, status


def compile_seconds(prob: PeerProblem) -> float:
    """Seconds spent compiling (numba JIT of the rhs and the loop): the first solve of one patient
    minus a second, warm solve of the same patient."""
    one = prob._replace(y0s=prob.y0s[:1], data=prob.data[:1], seg_rates=prob.seg_rates[:1])
    t0 = time.perf_counter()
    solve(one)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    solve(one)
    return first - (time.perf_counter() - t0)


def versions() -> str:
    """numba and numbalsoda versions, for the bench header."""
    import importlib.metadata

    return f"numba {numba.__version__}, numbalsoda {importlib.metadata.version('numbalsoda')}"
