"""The immunopd core model: tumor, CD8 effectors, suppressors, sClever-1, two antibodies.

Structure (chosen from the two in the design notes): the 12-state sketch of model-core.md,
tumor as volumes (mm3) and immune cells as counts (1e6 cells), because clinical data (SLD,
volumes) and the published reduced models (Kuznetsov et al. 1994) are on that scale. Two
bookkeeping states accumulate the eliminated amount of each antibody so that drug mass
balance can be checked. The refined 14-state QSP-IO-style structure (dead cells, M1, PD-L1 as
a state) is left for a later model.

States (index, name, unit)::

    0  tumor_sensitive           ln(mm3)    ln Vs, antigen-presenting tumor (log-state, see below)
    1  tumor_resistant           mm3        Vr, antigen-loss (immune-escaped) subclone
    2  effector                  1e6 cells  E, functional CD8 T cells in the tumor
    3  exhausted                 1e6 cells  X, PD-1-high dysfunctional CD8 T cells
    4  treg                      1e6 cells  R, regulatory T cells
    5  mdsc                      1e6 cells  M, myeloid-derived suppressor cells
    6  clever1_macrophage        1e6 cells  Mc, Clever-1+ (M2-like) macrophages
    7  sclever1_plasma           ng/mL      S, soluble Clever-1 in plasma
    8  anti_pd1_central          mg         A1c
    9  anti_pd1_peripheral       mg         A1p
    10 anti_pd1_eliminated       mg         cumulative CL * C1 (bookkeeping)
    11 anti_clever1_central      mg         A2c
    12 anti_clever1_peripheral   mg         A2p
    13 anti_clever1_eliminated   mg         cumulative CL * C2 (bookkeeping)

Equations (V = Vs + Vr; C1 = A1c/V1 in ug/mL; RO1, RO2 from :mod:`immunopd.models.pk`)::

    P      = P0 + P_up E/(E + K_ifn)                     PD-L1, adaptive upregulation
    f_chk  = 1 / (1 + s_chk P (1 - RO1))                 PD-1/PD-L1 checkpoint
    f_sup  = 1 / (1 + s_R R + s_M M)                     Tregs and MDSCs
    f_scl  = 1 / (1 + s_S S)                             sClever-1 on activated T cells
    f_met  = 1 / (1 + s_met V)                           nutrient competition
    f      = f_chk f_sup f_scl f_met
    kill   = k_kill f E / (K_E + V)                      per unit tumor volume, 1/day

    dVs/dt = g(V) Vs - kill Vs - mu Vs
    dVr/dt = g(V) Vr - eps kill Vr + mu Vs
    dE/dt  = sigma_E (1 - excl) + alpha_E f E Vs/(K_a + Vs) - delta_E E
             - xi P (1 - RO1) E + rho_rev RO1 X
    dX/dt  = xi P (1 - RO1) E - rho_rev RO1 X - delta_X X
    dR/dt  = sigma_R + alpha_R V/(K_V + V) - delta_R R
    dM/dt  = sigma_M + alpha_M V/(K_V + V) - delta_M M
    dMc/dt = sigma_Mc + alpha_Mc V/(K_V + V) - delta_Mc Mc - r_rep RO2 Mc
    dS/dt  = k_rel Mc (1 + gamma E/(E + K_ifn)) (1 - I_max RO2) - k_S (S - S0)

plus two-compartment PK for each antibody. g(V) is one of the laws in
:mod:`immunopd.models.growth` (default Gompertz).

Resistance mechanisms, each switched off by setting its parameter to 0 (no code edits):
tumor recruitment of suppressors (treg_recruitment, mdsc_recruitment,
macrophage_recruitment), suppression by them (treg_suppression, mdsc_suppression), antigen
loss (antigen_loss_rate), PD-L1 upregulation (pdl1_upregulation), the checkpoint itself
(checkpoint_strength), metabolic suppression (metabolic_suppression), exhaustion
(exhaustion_rate), sClever-1 impairing effectors (sclever1_suppression) and T-cell exclusion
("cold" tumors, tcell_exclusion: 0 = hot, 0.9 = influx cut 10x).

With every switch at 0 and no drug the model reduces to the Kuznetsov-type two-state model

    dV/dt = g(V) V - k_kill E V/(K_E + V)
    dE/dt = sigma_E + alpha_E E V/(K_a + V) - delta_E E

(Kuznetsov et al. 1994, Bull Math Biol 56:295, doi:10.1007/BF02460644, with
its mass-action kill replaced by a kill that saturates in tumor volume).

The antigen-presenting volume is integrated as ln Vs (d ln Vs/dt = g(V) - kill - mu), so it stays
positive by construction even when the response drives it down by many orders of magnitude;
results report Vs itself in mm3 (:data:`LOG_STATES`).

Initial state: the tumor starts at ``baseline_tumor_volume`` (a fraction
``resistant_fraction0`` of it antigen-loss), the immune states at their quasi-steady state for
that fixed volume with no drug (:func:`initial_state`), and the drug states at 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from . import pk
from .growth import GROWTH_LAWS, specific_growth_rate
from .parameters import Parameter, ParameterTable

__all__ = ["STATES", "STATE_UNITS", "LOG_STATES", "PARAMETERS", "OBSERVABLES", "CoreModel", "core_model"]

STATES: tuple[str, ...] = (
    "tumor_sensitive",
    "tumor_resistant",
    "effector",
    "exhausted",
    "treg",
    "mdsc",
    "clever1_macrophage",
    "sclever1_plasma",
    "anti_pd1_central",
    "anti_pd1_peripheral",
    "anti_pd1_eliminated",
    "anti_clever1_central",
    "anti_clever1_peripheral",
    "anti_clever1_eliminated",
)
STATE_UNITS: dict[str, str] = {
    "tumor_sensitive": "mm3",
    "tumor_resistant": "mm3",
    "effector": "1e6 cells",
    "exhausted": "1e6 cells",
    "treg": "1e6 cells",
    "mdsc": "1e6 cells",
    "clever1_macrophage": "1e6 cells",
    "sclever1_plasma": "ng/mL",
    "anti_pd1_central": "mg",
    "anti_pd1_peripheral": "mg",
    "anti_pd1_eliminated": "mg",
    "anti_clever1_central": "mg",
    "anti_clever1_peripheral": "mg",
    "anti_clever1_eliminated": "mg",
}
IDX = {name: i for i, name in enumerate(STATES)}
#: states integrated as natural logs; results exponentiate them back to STATE_UNITS
LOG_STATES: tuple[str, ...] = ("tumor_sensitive",)

_KUZ = "Kuznetsov et al. 1994, Bull Math Biol 56:295, doi:10.1007/BF02460644"
_QSPIO_TNBC = "QSP-IO TNBC, Wang et al. 2021, J Immunother Cancer 9:e002100, doi:10.1136/jitc-2020-002100 (DOI unverified; values read in HanwenWang95/QSPIO-TNBC)"
_CAL = "calibrated: chosen with the other 'calibrated' values so the defaults show the five behaviours of model-core.md (tests/test_behaviour.py)"


def _p(name, default, unit, lower, upper, source, description, switch="", scale="log"):
    return Parameter(name, float(default), unit, float(lower), float(upper), source, description, switch, scale)


def _pk_parameters(target: str, drug: pk.Drug) -> list[Parameter]:
    label = {"pd1": "anti-PD-1", "clever1": "anti-Clever-1"}[target]
    return [
        _p(f"{target}_clearance", drug.clearance, "L/day", 0.01, 5.0, drug.pk_source,
           f"{label} linear clearance at the drug's reference weight ({drug.ref_weight:g} kg); defaults follow the dosed drug"),
        _p(f"{target}_central_volume", drug.central_volume, "L", 0.5, 20.0, drug.pk_source, f"{label} central volume"),
        _p(f"{target}_intercompartmental_clearance", drug.intercompartmental_clearance, "L/day", 0.01, 10.0,
           drug.pk_source, f"{label} intercompartmental clearance"),
        _p(f"{target}_peripheral_volume", drug.peripheral_volume, "L", 0.5, 30.0, drug.pk_source, f"{label} peripheral volume"),
        _p(f"{target}_ec50", drug.ec50, "ug/mL", 1e-3, 100.0, drug.ec50_source, f"{label} tumor concentration for 50 % occupancy"),
    ]


PARAMETERS = ParameterTable(
    tuple(
        [
            # --- tumor -------------------------------------------------------------------
            _p("baseline_tumor_volume", 10000.0, "mm3", 1.0, 1e6,
               "assumed: 10 cm3, one lesion of 26.7 mm diameter (the size at which behaviour 1 is stated)",
               "tumor volume at the start of the simulation (treatment start)"),
            _p("resistant_fraction0", 0.0, "-", 0.0, 0.99, "assumed: no antigen-loss cells at baseline",
               "fraction of the baseline volume that is antigen-loss", scale="linear"),
            _p("growth_rate", 0.003, "1/day", 1e-5, 1.0, _CAL + "; untreated doubling time at 10 cm3 within 40-200 days",
               "lambda of the growth law"),
            _p("carrying_capacity", 1e6, "mm3", 1e3, 1e8,
               "assumed: 1 L, order of the largest tumor burdens in patients (QSP-IO example 1 uses 20 cm diameter)",
               "K of the logistic, Gompertz and Bertalanffy laws"),
            _p("bertalanffy_exponent", 2.0 / 3.0, "-", 0.05, 0.95,
               "classical von Bertalanffy value 2/3 (Benzekry et al. 2014, doi:10.1371/journal.pcbi.1003800)",
               "gamma of the generalized von Bertalanffy law", scale="linear"),
            _p("kill_rate", 45.5, "mm3/(1e6 cells day)", 0.0, 1e4,
               "QSP-IO example 1 k_C,T = 18/day per T cell (Sove et al. 2020, doi:10.1002/psp4.12546; authors' estimate) "
               "converted with 1 mm3 = 3.96e5 cancer cells (QSP-IO cell volume 2527 um3): 18/0.396 = 45.5",
               "maximal tumor volume killed per effector"),
            _p("kill_half_volume", 100.0, "mm3", 1e-3, 1e6, _CAL,
               "tumor volume at which kill per volume is halved from its small-tumor value"),
            _p("resistant_kill_fraction", 0.02, "-", 0.0, 1.0,
               "assumed: antigen-loss cells escape most but not all killing (epsilon << 1)",
               "kill of antigen-loss cells relative to antigen-presenting ones", scale="linear"),
            _p("antigen_loss_rate", 0.0, "1/day", 0.0, 0.1,
               "assumed: off by default (no per-patient estimate); 1e-3/day shows acquired resistance",
               "rate at which antigen-presenting cells become antigen-loss", switch="antigen loss", scale="linear"),
            # --- effectors ---------------------------------------------------------------
            _p("effector_influx", 0.68, "1e6 cells/day", 1e-6, 10.0, _CAL + "; Kuznetsov's s = 1.3e4 cells/day for a mouse lymphoma",
               "baseline infiltration of CD8 effectors (sigma_E)"),
            _p("tcell_exclusion", 0.0, "-", 0.0, 0.999,
               "assumed: 0 = hot; 0.9 reproduces the model-core 'cold' patient (influx cut 10x)",
               "fraction of effector influx blocked ('cold' tumor)", switch="cold tumor (low infiltration)", scale="linear"),
            _p("effector_expansion", 0.2, "1/day", 0.0, 2.0,
               _CAL + "; Kuznetsov's p = 0.1245/day gave no response in this structure, as in the prototype of model-reference 4.9 (0.5/day there)",
               "maximal antigen-driven expansion of effectors (alpha_E)"),
            _p("expansion_half_volume", 20.19, "mm3", 1e-3, 1e6, _KUZ + " (g = 2.019e7 cells at 1e6 cells/mm3)",
               "antigen-presenting volume for half-maximal expansion (K_a)"),
            _p("effector_death", 0.0412, "1/day", 1e-3, 2.0, _KUZ + " (d)", "effector death rate (delta_E)"),
            _p("exhaustion_rate", 0.06, "1/day", 0.0, 2.0,
               _CAL + "; QSP-IO k_T = 0.1/day (Sove et al. 2020, doi:10.1002/psp4.12546; authors' estimate) lowered to 0.06",
               "PD-1-driven exhaustion per unit PD-L1 (xi)", switch="T-cell exhaustion"),
            _p("exhausted_death", 0.03, "1/day", 1e-3, 1.0, "QSP-IO example 1 k_clear = 0.03/day (Sove et al. 2020, doi:10.1002/psp4.12546; authors' estimate)",
               "loss of exhausted T cells (delta_X)"),
            _p("reinvigoration_rate", 0.02, "1/day", 0.0, 1.0,
               "assumed: exhausted-cell reinvigoration by anti-PD-1 (concept: Hawi et al. 2026, doi:10.1007/s11538-026-01594-7; no value published)",
               "rate at which PD-1 blockade returns exhausted cells to function (rho_rev)"),
            # --- checkpoint --------------------------------------------------------------
            _p("checkpoint_strength", 1.0, "-", 0.0, 100.0, _CAL,
               "inhibition of killing per unit free PD-L1 engagement (s_chk)", switch="PD-1/PD-L1 checkpoint"),
            _p("pdl1_baseline", 1.0, "-", 0.0, 10.0, "assumed: PD-L1 expressed relative to the untreated, uninflamed tumor",
               "constitutive PD-L1 level (P0)", scale="linear"),
            _p("pdl1_upregulation", 5.0, "-", 0.0, 20.0,
               "QSP-IO TNBC r_PDL1,IFNg = 6x induction (Shin et al. 2017) -> up to 5 above baseline; Kosinsky et al. 2018, doi:10.1186/s40425-018-0327-9",
               "maximal effector-driven (IFN-gamma) PD-L1 increase (P_up)", switch="adaptive PD-L1 upregulation"),
            _p("ifn_half_effector", 7.4, "1e6 cells", 1e-3, 1e4, _CAL,
               "effector count for half-maximal IFN-gamma signalling (K_ifn)"),
            # --- suppressors -------------------------------------------------------------
            _p("treg_influx", 0.01, "1e6 cells/day", 0.0, 10.0, "assumed: small tumor-independent influx",
               "baseline Treg influx (sigma_R)", scale="linear"),
            _p("treg_recruitment", 0.1, "1e6 cells/day", 0.0, 10.0, _CAL + "; CD8:Treg near 2.4 as in QSP-IO example 1",
               "maximal tumor-driven Treg recruitment (alpha_R)", switch="tumor recruitment of Tregs"),
            _p("treg_death", 0.1, "1/day", 1e-3, 2.0,
               "Robertson-Tessi et al. 2012, J Theor Biol 294:56, doi:10.1016/j.jtbi.2011.10.027 (DOI unverified; functional Treg decay 0.1/day)", "Treg loss (delta_R)"),
            _p("mdsc_influx", 0.005, "1e6 cells/day", 0.0, 10.0, "assumed: small tumor-independent influx",
               "baseline MDSC influx (sigma_M)", scale="linear"),
            _p("mdsc_recruitment", 0.03, "1e6 cells/day", 0.0, 10.0, _CAL,
               "maximal tumor-driven MDSC recruitment (alpha_M)", switch="tumor recruitment of MDSCs"),
            _p("mdsc_death", 0.015, "1/day", 1e-3, 2.0, _QSPIO_TNBC + " (MDSC death 0.015/day)", "MDSC loss (delta_M)"),
            _p("macrophage_influx", 0.01, "1e6 cells/day", 0.0, 10.0, "assumed: small tumor-independent influx",
               "baseline Clever-1+ macrophage influx (sigma_Mc)", scale="linear"),
            _p("macrophage_recruitment", 0.1, "1e6 cells/day", 0.0, 10.0, _CAL,
               "maximal tumor-driven Clever-1+ macrophage recruitment (alpha_Mc)", switch="tumor recruitment of Clever-1+ macrophages"),
            _p("macrophage_death", 0.02, "1/day", 1e-3, 2.0, _QSPIO_TNBC + " (macrophage death 0.02/day)",
               "Clever-1+ macrophage loss (delta_Mc)"),
            _p("recruitment_half_volume", 5000.0, "mm3", 1.0, 1e7, "assumed: recruitment saturates for tumors of a few cm3",
               "tumor volume for half-maximal suppressor recruitment (K_V)"),
            _p("treg_suppression", 0.25, "1/(1e6 cells)", 0.0, 100.0, _CAL + "; Robertson-Tessi's k3 = 11 left no responders (model-reference 4.9)",
               "suppression of effector function per Treg (s_R)", switch="Treg suppression"),
            _p("mdsc_suppression", 0.08, "1/(1e6 cells)", 0.0, 100.0, _CAL,
               "suppression of effector function per MDSC (s_M)", switch="MDSC suppression"),
            _p("reprogramming_rate", 0.05, "1/day", 0.0, 2.0,
               "assumed: anti-Clever-1 repolarises Clever-1+ macrophages (Virtakoivu 2021, doi:10.1158/1078-0432.CCR-20-4862; no rate published)",
               "loss of Clever-1+ macrophages per unit Clever-1 occupancy (r_rep)"),
            # --- soluble Clever-1 --------------------------------------------------------
            _p("sclever1_healthy", 5.0, "ng/mL", 0.0, 1e4,
               "assumed: no published healthy plasma level found; sets the scale of S",
               "plasma sClever-1 without tumor (S0)", scale="linear"),
            _p("sclever1_release", 1.35, "ng/mL/(1e6 cells day)", 0.0, 1e3,
               "assumed: release by Clever-1+ macrophages (Prince et al. 2025, Theranostics 15:7501, doi:10.7150/thno.110544); scale arbitrary",
               "sClever-1 release per Clever-1+ macrophage (k_rel)", switch="sClever-1 release", scale="linear"),
            _p("sclever1_inflammation_boost", 1.0, "-", 0.0, 20.0,
               "assumed: release rises after IFN-gamma (Prince et al. 2025, qualitative)",
               "extra release at full inflammation (gamma)", scale="linear"),
            _p("sclever1_release_block", 0.8, "-", 0.0, 1.0,
               "assumed: bexmarilimab lowers plasma sClever-1 (Prince et al. 2025; magnitude unknown)",
               "maximal block of release by anti-Clever-1 (I_max)", scale="linear"),
            _p("sclever1_clearance", 0.69, "1/day", 1e-3, 20.0, "assumed: half-life 1 day; no data",
               "sClever-1 plasma clearance (k_S)"),
            _p("sclever1_suppression", 0.05, "1/(ng/mL)", 0.0, 10.0, _CAL + "; impairment of activated T cells by sClever-1 (Prince et al. 2025)",
               "effector impairment per ng/mL sClever-1 (s_S)", switch="sClever-1 impairing effectors"),
            # --- metabolism --------------------------------------------------------------
            _p("metabolic_suppression", 1e-5, "1/mm3", 0.0, 1e-2,
               "assumed: nutrient competition grows with tumor burden (Kareva & Berezovskaya 2015, doi:10.1016/j.jtbi.2015.06.007; no value)",
               "effector impairment per mm3 of tumor (s_met)", switch="metabolic suppression"),
            # --- readouts ----------------------------------------------------------------
            _p("infiltration_half_density", 100.0, "cells/mm3", 1.0, 1e5,
               "assumed: near QSP-IO example 1 baseline CD8 density (76 cells/uL)",
               "CD8 density at which infiltration_score = 0.5"),
            _p("body_weight", 70.0, "kg", 20.0, 250.0, "assumed: typical adult; PK scales from each drug's reference weight",
               "patient body weight (mg/kg doses need it given explicitly)"),
        ]
        + _pk_parameters("pd1", pk.DRUGS["pembrolizumab"])
        + [_p("pd1_tumor_partition", 0.2, "-", 0.01, 1.0,
              "assumed: tumor interstitial/serum IgG ratio 0.1-0.3 (QSP-IO implies 0.86; model-reference 3.3)",
              "anti-PD-1 tumor-to-serum concentration ratio", scale="linear")]
        + _pk_parameters("clever1", pk.DRUGS["bexmarilimab"])
        + [_p("clever1_tumor_partition", 0.2, "-", 0.01, 1.0, "assumed: as for anti-PD-1",
              "anti-Clever-1 tumor-to-serum concentration ratio", scale="linear")]
    )
)


def _effects(y, p, ro_pd1):
    """Factors shared by the rhs, the initial state and the observables."""
    vs, vr, e = jnp.exp(y[0]), y[1], y[2]
    r, m, s = y[4], y[5], y[7]
    v = vs + vr
    ifn = e / (e + p["ifn_half_effector"])
    pdl1 = p["pdl1_baseline"] + p["pdl1_upregulation"] * ifn
    f_chk = 1.0 / (1.0 + p["checkpoint_strength"] * pdl1 * (1.0 - ro_pd1))
    f_sup = 1.0 / (1.0 + p["treg_suppression"] * r + p["mdsc_suppression"] * m)
    f_scl = 1.0 / (1.0 + p["sclever1_suppression"] * s)
    f_met = 1.0 / (1.0 + p["metabolic_suppression"] * v)
    return v, ifn, pdl1, f_chk * f_sup * f_scl * f_met


def _recruitment(v, p, influx, recruitment):
    return p[influx] + p[recruitment] * v / (p["recruitment_half_volume"] + v)


@dataclass(frozen=True)
class CoreModel:
    """The core model for one growth law (a static choice: each law compiles once).

    Use :func:`core_model` to get the shared instance for a law, so compiled solvers are
    reused across calls.
    """

    growth_law: str = "gompertz"
    name: str = "immunopd-core"

    def __post_init__(self) -> None:
        if self.growth_law not in GROWTH_LAWS:
            from ..errors import InputError, describe

            raise InputError(describe("growth_law", self.growth_law, f"one of {list(GROWTH_LAWS)}"))

    states = STATES
    state_units = STATE_UNITS
    parameters = PARAMETERS
    targets = pk.TARGETS

    # ------------------------------------------------------------------ dynamics
    def pk_values(self, p):
        """Individual PK values (weight-scaled), computed once per patient outside the ODE."""
        out = {}
        for target in self.targets:
            ref_w, e_cl, e_v = p[f"{target}_ref_weight"], p[f"{target}_cl_exponent"], p[f"{target}_v_exponent"]
            w = p["body_weight"]
            out[target] = (
                pk.weight_scaled(p[f"{target}_clearance"], w, ref_w, e_cl),
                pk.weight_scaled(p[f"{target}_central_volume"], w, ref_w, e_v),
                pk.weight_scaled(p[f"{target}_intercompartmental_clearance"], w, ref_w, e_cl),
                pk.weight_scaled(p[f"{target}_peripheral_volume"], w, ref_w, e_v),
            )
        return out

    def occupancies(self, y, p, pkv):
        c1 = y[IDX["anti_pd1_central"]] / pkv["pd1"][1]
        c2 = y[IDX["anti_clever1_central"]] / pkv["clever1"][1]
        ro1 = pk.occupancy(c1, p["pd1_tumor_partition"], p["pd1_ec50"])
        ro2 = pk.occupancy(c2, p["clever1_tumor_partition"], p["clever1_ec50"])
        return c1, c2, ro1, ro2

    def pd_rhs(self, y, p, ro1, ro2):
        """d/dt of the 8 PD states (indices 0-7) given the two receptor occupancies."""
        log_vs, vr, e, x, r, m, mc, s = (y[i] for i in range(8))
        vs = jnp.exp(log_vs)
        v, ifn, pdl1, f = _effects(y, p, ro1)
        g = specific_growth_rate(
            self.growth_law, v, p["growth_rate"], p["carrying_capacity"], p["bertalanffy_exponent"]
        )
        kill = p["kill_rate"] * f * e / (p["kill_half_volume"] + v)
        exhaustion = p["exhaustion_rate"] * pdl1 * (1.0 - ro1) * e
        reinvigoration = p["reinvigoration_rate"] * ro1 * x
        expansion = p["effector_expansion"] * f * e * vs / (p["expansion_half_volume"] + vs)
        d_log_vs = g - kill - p["antigen_loss_rate"]
        d_vr = g * vr - p["resistant_kill_fraction"] * kill * vr + p["antigen_loss_rate"] * vs
        d_e = (
            p["effector_influx"] * (1.0 - p["tcell_exclusion"])
            + expansion
            - p["effector_death"] * e
            - exhaustion
            + reinvigoration
        )
        d_x = exhaustion - reinvigoration - p["exhausted_death"] * x
        d_r = _recruitment(v, p, "treg_influx", "treg_recruitment") - p["treg_death"] * r
        d_m = _recruitment(v, p, "mdsc_influx", "mdsc_recruitment") - p["mdsc_death"] * m
        d_mc = (
            _recruitment(v, p, "macrophage_influx", "macrophage_recruitment")
            - p["macrophage_death"] * mc
            - p["reprogramming_rate"] * ro2 * mc
        )
        release = p["sclever1_release"] * mc * (1.0 + p["sclever1_inflammation_boost"] * ifn)
        d_s = release * (1.0 - p["sclever1_release_block"] * ro2) - p["sclever1_clearance"] * (
            s - p["sclever1_healthy"]
        )
        return jnp.stack([d_log_vs, d_vr, d_e, d_x, d_r, d_m, d_mc, d_s])

    def rhs(self, y, p, pkv, infusion_rate):
        """dy/dt of all 14 states, PK as ODEs. ``y``: (14,); ``infusion_rate``: (2,) mg/day per target.

        The compiled solver integrates only :meth:`pd_rhs` and takes the PK from its exact
        solution (:func:`immunopd.models.pk.advance`); this full form is the reference the tests
        integrate with scipy.
        """
        _, _, ro1, ro2 = self.occupancies(y, p, pkv)
        pk_derivs = []
        for k, target in enumerate(self.targets):
            base = IDX[f"anti_{target}_central"]
            d_c, d_p, elim = pk.two_compartment(y[base], y[base + 1], infusion_rate[k], *pkv[target])
            pk_derivs += [d_c, d_p, elim]
        return jnp.concatenate([self.pd_rhs(y[:8], p, ro1, ro2), jnp.stack(pk_derivs)])

    # ------------------------------------------------------------------ initial state
    def initial_state(self, p):
        """Baseline state: tumor at its baseline volume, immune states quasi-steady, no drug.

        The effector count solves ``dE/dt = 0`` with X, R, M, Mc and S at their steady
        states for the fixed baseline volume (a scalar root, found by bisection in log E and
        polished by one Newton step so gradients follow the implicit function theorem). If
        the untreated immune response has no steady state (expansion outruns every loss),
        E starts at its influx-only value sigma_E/delta_E.
        """
        v0 = p["baseline_tumor_volume"]
        vr = p["resistant_fraction0"] * v0
        vs = v0 - vr
        r = _recruitment(v0, p, "treg_influx", "treg_recruitment") / p["treg_death"]
        m = _recruitment(v0, p, "mdsc_influx", "mdsc_recruitment") / p["mdsc_death"]
        mc = _recruitment(v0, p, "macrophage_influx", "macrophage_recruitment") / p["macrophage_death"]
        zero = jnp.zeros_like(v0)

        def state_for(e):
            ifn = e / (e + p["ifn_half_effector"])
            s = p["sclever1_healthy"] + p["sclever1_release"] * mc * (
                1.0 + p["sclever1_inflammation_boost"] * ifn
            ) / p["sclever1_clearance"]
            pdl1 = p["pdl1_baseline"] + p["pdl1_upregulation"] * ifn
            x = p["exhaustion_rate"] * pdl1 * e / p["exhausted_death"]
            return jnp.stack([jnp.log(vs), vr, e, x, r, m, mc, s] + [zero] * 6)

        def residual(log_e):
            e = jnp.exp(log_e)
            y = state_for(e)
            _, _, pdl1, f = _effects(y, p, 0.0)
            net = (
                p["effector_expansion"] * f * vs / (p["expansion_half_volume"] + vs)
                - p["effector_death"]
                - p["exhaustion_rate"] * pdl1
            )
            # divided by e: a decreasing function of log e with the same root as dE/dt
            return p["effector_influx"] * (1.0 - p["tcell_exclusion"]) / e + net

        lo, hi = jnp.log(1e-12) * jnp.ones_like(v0), jnp.log(1e8) * jnp.ones_like(v0)

        def bisect(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            positive = residual(mid) > 0
            return jnp.where(positive, mid, lo), jnp.where(positive, hi, mid)

        lo, hi = jax.lax.fori_loop(0, 80, bisect, (lo, hi))
        log_e = jax.lax.stop_gradient(0.5 * (lo + hi))
        log_e = log_e - residual(log_e) / jax.grad(residual)(log_e)
        has_root = residual(jnp.log(1e8)) < 0
        e = jnp.where(has_root, jnp.exp(log_e), p["effector_influx"] * (1.0 - p["tcell_exclusion"]) / p["effector_death"])
        return state_for(e)

    # ------------------------------------------------------------------ observables
    def observables(self, y, p, pkv, y0):
        """Derived outputs for one time point (``y`` shape (14,)); see OBSERVABLES for units."""
        c1, c2, ro1, ro2 = self.occupancies(y, p, pkv)
        v, ifn, pdl1, f = _effects(y, p, ro1)
        sld = (6.0 * jnp.maximum(v, 0.0) / jnp.pi) ** (1.0 / 3.0)
        v0 = jnp.exp(y0[0]) + y0[1]
        sld0 = (6.0 * v0 / jnp.pi) ** (1.0 / 3.0)
        density = 1e6 * y[2] / jnp.maximum(v, 1e-9)
        return {
            "tumor_volume": v,
            "sld": sld,
            "pct_change": 100.0 * (sld / sld0 - 1.0),
            "anti_pd1_conc": c1,
            "anti_clever1_conc": c2,
            "pd1_occupancy": ro1,
            "clever1_occupancy": ro2,
            "pdl1_level": pdl1,
            "killing_factor": f,
            "cd8_density": density,
            "infiltration_score": density / (density + p["infiltration_half_density"]),
        }


OBSERVABLES: dict[str, tuple[str, str]] = {
    "tumor_volume": ("mm3", "total tumor volume Vs + Vr"),
    "sld": ("mm", "longest diameter of one spherical lesion of the tumor volume, (6 V / pi)^(1/3)"),
    "pct_change": ("%", "change of sld from its value at time 0 (treatment start)"),
    "anti_pd1_conc": ("ug/mL", "anti-PD-1 serum concentration A1c / V1"),
    "anti_clever1_conc": ("ug/mL", "anti-Clever-1 serum concentration A2c / V1"),
    "pd1_occupancy": ("1", "PD-1 receptor occupancy in the tumor, 0-1"),
    "clever1_occupancy": ("1", "Clever-1 receptor occupancy in the tumor, 0-1"),
    "pdl1_level": ("1", "PD-L1 expression relative to the constitutive level scale"),
    "killing_factor": ("1", "product of the checkpoint, suppression, sClever-1 and metabolic factors, 0-1"),
    "cd8_density": ("cells/mm3", "functional CD8 effectors per mm3 of tumor"),
    "infiltration_score": ("1", "hot/cold score: cd8_density / (cd8_density + infiltration_half_density)"),
}

@functools.lru_cache(maxsize=None)
def core_model(growth_law: str = "gompertz") -> CoreModel:
    """The shared :class:`CoreModel` for ``growth_law`` (one compiled solver per law)."""
    return CoreModel(growth_law=growth_law)

