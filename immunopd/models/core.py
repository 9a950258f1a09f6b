"""The immunopd core model, declared: tumor, CD8 effectors, suppressors, sClever-1, two targets.

Structure: the 12-state sketch of model-core.md, tumor as volumes (mm3) and immune cells as
counts (1e6 cells), because clinical data (SLD, volumes) and the published reduced models
(Kuznetsov et al. 1994) are on that scale. Drug amounts are not states of this declaration:
each dosed drug brings its own PK (:mod:`immunopd.models.drugs`), and the equations read only
the occupancy of each target (``pd1_occupancy``, ``clever1_occupancy``).

The equations, as :meth:`immunopd.spec.Model.describe` prints them (V = Vs + Vr viable volume,
v_c one cell's volume)::

    P      = P0 + P_up E/(E + K_ifn)                     PD-L1, adaptive upregulation
    f_chk  = 1 / (1 + s_chk P (1 - RO_PD1))              PD-1/PD-L1 checkpoint
    f_sup  = 1 / (1 + s_R R + s_M M)                     Tregs and MDSCs
    f_scl  = 1 / (1 + s_S S)                             sClever-1 on activated T cells
    f_met  = 1 / (1 + s_met V)                           nutrient competition
    f      = f_chk f_sup f_scl f_met
    x      = f E 1e6 v_c / V                             effective effector:tumor cell ratio
    kill   = d x^l / (h^l + x^l)                         per unit viable volume, 1/day (de Pillis 2005)
    z_i    = 1 / (1 + (V_i / v_c)^4)                     ~1 once clone i is below one cell

    dVs/dt = g(V) (1 - z_s) Vs - kill Vs - mu Vs - k_ext z_s Vs
    dVr/dt = g(V) (1 - z_r) Vr - eps kill Vr + mu Vs - k_ext z_r Vr
    dD/dt  = kill Vs + eps kill Vr + k_ext (z_s Vs + z_r Vr) - k_D D     dead cells, cleared slowly
    dE/dt  = sigma_E (1 - excl) + alpha_E f E Vs/(K_a + Vs) - delta_E E
             - xi P (1 - RO_PD1) E + rho_rev RO_PD1 X
    a      = Vs/(K_a + Vs)                               antigen signal
    dTm/dt = k_mem (1 - a) E - delta_mem Tm                memory formed as antigen wanes
    (dE/dt gains + k_rec a Tm - k_mem (1 - a) E: recall re-expands effectors, memory self-renews)
    dX/dt  = xi P (1 - RO_PD1) E - rho_rev RO_PD1 X - delta_X X
    dR/dt  = sigma_R + alpha_R V/(K_V + V) - delta_R R
    dM/dt  = sigma_M + alpha_M V/(K_V + V) - delta_M M
    dMc/dt = sigma_Mc + alpha_Mc V/(K_V + V) - delta_Mc Mc - r_rep RO_CLEVER1 Mc
    dS/dt  = k_rel Mc (1 + gamma E/(E + K_ifn)) (1 - I_max RO_CLEVER1) - k_S (S - S0)

    dI/dt  = q (kill Vs + eps kill Vr) - k_I I          inflammatory swelling (infiltrate, oedema)

    measured lesion volume Vs + Vr + D + I (0 below one cell); sld its spherical diameter

Why this shape (issue #14): killing saturates in the effector:tumor ratio, so no lesion is killed
faster than d per day however few cells are left; killed cells stay in the lesion until cleared
at k_D, so a scan shrinks at most at k_D (in volume) and never collapses in days; a clone below
one cell has no growth and is drained, so it is extinct and cannot regrow from a sub-cellular
remnant. The earlier kill, saturating only in tumor volume (Kuznetsov et al. 1994), is kept as
``core_model(kill="volume")`` because it has the small stable dormant state of that paper.

g(V) is one of the laws of :mod:`immunopd.models.growth` (default Gompertz), chosen by
:func:`core_model`.

Resistance mechanisms, each switched off by setting its parameter to 0 (no code edits):
tumor recruitment of suppressors (treg_recruitment, mdsc_recruitment,
macrophage_recruitment), suppression by them (treg_suppression, mdsc_suppression), antigen
loss (antigen_loss_rate), PD-L1 upregulation (pdl1_upregulation), the checkpoint itself
(checkpoint_strength), metabolic suppression (metabolic_suppression), exhaustion
(exhaustion_rate), sClever-1 impairing effectors (sclever1_suppression) and T-cell exclusion
("cold" tumors, tcell_exclusion: 0 = hot, 0.9 = influx cut 10x).

With every switch at 0 and no drug the model reduces to viable tumor, dead cells and effectors
(V, D, E) with the ratio-dependent kill of de Pillis et al. 2005 (Cancer Res 65:7950,
doi:10.1158/0008-5472.CAN-05-0564), tested against scipy in tests/test_model_numerics.py.

The antigen-presenting volume is integrated as ln Vs (``State(log=True)``), so it stays
positive by construction even when the response drives it down by many orders of magnitude;
results report Vs itself in mm3.

Initial state: the lesion starts at ``baseline_tumor_volume`` (fractions ``resistant_fraction0``
antigen-loss and ``dead_fraction0`` dead, 0 by default); every immune state starts at the
untreated steady state for that fixed volume, solved numerically from these equations
(:func:`immunopd.initial.initial_state`).
"""

from __future__ import annotations

import functools

from ..errors import InputError, describe
from ..spec import Assignment, Flux, Mechanism, Model, Observable, State, Target
from .growth import GROWTH_LAWS, growth_expression
from .parameters import Parameter

__all__ = ["PARAMETERS", "TARGETS", "core_model", "MECHANISMS", "KILL_LAWS"]

_KUZ = "Kuznetsov et al. 1994, Bull Math Biol 56:295, doi:10.1007/BF02460644"
_QSPIO_TNBC = "QSP-IO TNBC, Wang et al. 2021, J Immunother Cancer 9:e002100, doi:10.1136/jitc-2020-002100 (DOI unverified; values read in HanwenWang95/QSPIO-TNBC)"
_AE_CAL = ("calibrated: bench/adverse_events.py solves the four hazards so a typical 75 kg, 1.85 m2 patient treated for one year has the published "
       "grade 3-4 treatment-related adverse-event rates: CheckMate 067 (Larkin et al. 2015, doi:10.1056/NEJMoa1504030) nivolumab 3 mg/kg "
       "Q2W 16.3 %, ipilimumab 3 mg/kg Q3W x4 27.3 %, nivolumab + ipilimumab 55.0 %; OAK (Rittmeyer et al. 2017, "
       "doi:10.1016/S0140-6736(16)32517-X; update Fehrenbacher et al. 2018, doi:10.1016/j.jtho.2018.04.039) docetaxel 42.7 %")
_CAL = "calibrated: chosen with the other 'calibrated' values so the defaults show the five behaviours of model-core.md (tests/test_behaviour.py)"


def _p(name, default, unit, lower, upper, source, description, switch="", scale="log"):
    return Parameter(name, float(default), unit, float(lower), float(upper), source, description, switch, scale)


_ALL = {p.name: p for p in (

    # --- tumor -------------------------------------------------------------------
    _p("baseline_tumor_volume", 10000.0, "mm3", 1.0, 1e6,
       "assumed: 10 cm3, one lesion of 26.7 mm diameter (the size at which behaviour 1 is stated)",
       "tumor volume at the start of the simulation (treatment start)"),
    _p("resistant_fraction0", 0.0, "-", 0.0, 0.99, "assumed: no antigen-loss cells at baseline",
       "fraction of the baseline volume that is antigen-loss", scale="linear"),
    _p("dead_fraction0", 0.0, "-", 0.0, 0.9,
       "assumed: the lesion is all viable at treatment start (an escaped tumor kills little of itself untreated)",
       "fraction of the baseline volume that is dead cells not yet cleared", scale="linear"),
    _p("growth_rate", 0.003, "1/day", 1e-5, 1.0, _CAL + "; untreated doubling time at 10 cm3 within 40-200 days",
       "lambda of the growth law"),
    _p("carrying_capacity", 1e6, "mm3", 1e3, 1e8,
       "assumed: 1 L, order of the largest tumor burdens in patients (QSP-IO example 1 uses 20 cm diameter)",
       "K of the logistic, Gompertz and Bertalanffy laws"),
    _p("bertalanffy_exponent", 2.0 / 3.0, "-", 0.05, 0.95,
       "classical von Bertalanffy value 2/3 (Benzekry et al. 2014, doi:10.1371/journal.pcbi.1003800)",
       "gamma of the generalized von Bertalanffy law", scale="linear"),
    _p("kill_rate", 5.80, "1/day", 0.0, 100.0,
       "de Pillis, Radunskaya & Wiseman 2005, Cancer Res 65:7950, doi:10.1158/0008-5472.CAN-05-0564 (human patient 9: d = 5.80/day; "
       "values read in two independent reimplementations of the paper, the paper's table not seen)",
       "maximal fraction of viable tumor killed per day, reached at a high effector:tumor ratio (d)"),
    _p("kill_exponent", 1.36, "-", 0.2, 4.0, "de Pillis et al. 2005, doi:10.1158/0008-5472.CAN-05-0564 (human patient 9: l = 1.36)",
       "steepness of the kill in the effector:tumor cell ratio (l)", scale="linear"),
    _p("kill_half_ratio", 0.05, "-", 1e-4, 100.0,
       _CAL + "; de Pillis et al. 2005 (doi:10.1158/0008-5472.CAN-05-0564) fitted s = 0.25 = h^l (h = 0.36) to in-vitro lysis "
       "assays, where effector:target ratios are far above those in tumors: with it no default patient responds",
       "effective effector:tumor cell ratio at which kill is half its maximum (h)"),
    _p("kill_rate_per_effector", 45.5, "mm3/(1e6 cells day)", 0.0, 1e4,
       "QSP-IO example 1 k_C,T = 18/day per T cell (Sove et al. 2020, doi:10.1002/psp4.12546; authors' estimate) "
       "converted with 1 mm3 = 3.96e5 cancer cells (QSP-IO cell volume 2527 um3): 18/0.396 = 45.5",
       "maximal tumor volume killed per effector (kill='volume' only)"),
    _p("kill_half_volume", 100.0, "mm3", 1e-3, 1e6, "calibrated: with the earlier defaults, the five behaviours of model-core.md",
       "tumor volume at which kill per volume is halved from its small-tumor value (kill='volume' only)"),
    _p("tumor_cell_volume", 2.527e-6, "mm3", 1e-7, 1e-4,
       "QSP-IO cancer cell volume 2527 um3 (Sove et al. 2020, doi:10.1002/psp4.12546)",
       "volume of one tumor cell: converts volumes to cell counts, and below it a clone is extinct"),
    _p("dead_clearance", 0.03, "1/day", 1e-3, 0.3,
       "calibrated: the dead-cell clearance sets how fast a lesion can shrink on scans; chosen so the responders' median log-diameter "
       "slope is near Laleh 2022's (bench/fidelity.py); Simeoni et al. 2004 (doi:10.1158/0008-5472.CAN-03-2524) estimated 0.97/day "
       "for mouse xenografts, far faster than human lesions shrink",
       "clearance of dead tumor cells from the lesion"),
    _p("inflammatory_swelling", 0.0, "mm3/mm3", 0.0, 20.0,
       "assumed: pseudo-progression, a lesion that grows on scans before it shrinks, is attributed to immune infiltrate, oedema "
       "and necrosis around the attack (Wolchok et al. 2009, Clin Cancer Res 15:7412, doi:10.1158/1078-0432.CCR-09-1624; "
       "Chiou & Burotto 2015, J Clin Oncol 33:3541, doi:10.1200/JCO.2015.61.6870); no magnitude published: 0 (off) for the "
       "default patient, log-uniform 0.001-4 in the plausible population (immunopd.calibration.PLAUSIBLE_LOG_UNIFORM)",
       "non-tumor volume (infiltrate and oedema) the lesion gains per unit of tumor volume killed by effectors",
       switch="inflammatory swelling (pseudo-progression)", scale="linear"),
    _p("inflammation_clearance", 0.05, "1/day", 1e-3, 1.0,
       "assumed: half-life 14 days, so swelling seen at the first (6-week) scan resolves by the next ones, as pseudo-progression "
       "does within weeks to a few months (Wolchok et al. 2009, doi:10.1158/1078-0432.CCR-09-1624); no rate published",
       "clearance of the inflammatory swelling from the lesion"),
    _p("extinction_rate", 1.0, "1/day", 1e-2, 10.0,
       "assumed: a clone under one cell is gone; its remaining volume is drained at this rate so it cannot regrow (a numerical "
       "device, value immaterial once large against growth)",
       "loss rate of a clone below one cell"),
    _p("resistant_kill_fraction", 0.002, "-", 0.0, 1.0,
       "assumed: antigen-loss cells escape nearly all killing (epsilon << 1; at the maximal kill of 5.8/day, 0.002 leaves them net growth)",
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
    _p("effector_expansion", 0.13, "1/day", 0.0, 2.0,
       _CAL + " (with the ratio-dependent kill: 0.13/day gives the hot patient a PR at day 58 and the cold one none in a year; 0.2 "
       "let the cold one respond at day 112); Kuznetsov's p = 0.1245/day (doi:10.1007/BF02460644)",
       "maximal antigen-driven expansion of effectors (alpha_E)"),
    _p("expansion_half_volume", 20.19, "mm3", 1e-3, 1e6, _KUZ + " (g = 2.019e7 cells at 1e6 cells/mm3)",
       "antigen-presenting volume for half-maximal expansion (K_a)"),
    _p("effector_death", 0.0412, "1/day", 1e-3, 2.0, _KUZ + " (d)", "effector death rate (delta_E)"),
    _p("exhaustion_rate", 0.06, "1/day", 0.0, 2.0,
       _CAL + "; QSP-IO k_T = 0.1/day (Sove et al. 2020, doi:10.1002/psp4.12546; authors' estimate) lowered to 0.06",
       "PD-1-driven exhaustion per unit PD-L1 (xi)", switch="T-cell exhaustion"),
    _p("exhausted_death", 0.03, "1/day", 1e-3, 1.0, "QSP-IO example 1 k_clear = 0.03/day (Sove et al. 2020, doi:10.1002/psp4.12546; authors' estimate)",
       "loss of exhausted T cells (delta_X)"),
    _p("memory_formation", 0.004, "1/day", 0.0, 1.0,
       "Kaech & Wherry 2007, Immunity 27:393, doi:10.1016/j.immuni.2007.08.007 (5-10 % of effectors survive contraction as "
       "memory): at effector_death 0.0412/day, 0.004/(0.004 + 0.0412) = 9 % of effectors leaving the pool become memory; "
       "formation only once antigen wanes",
       "rate at which effectors become memory T cells when antigen is low", switch="memory T cells"),
    _p("memory_death", 0.002, "1/day", 1e-5, 1.0,
       "assumed: memory half-life of about a year; quiescent human CD8 memory divides less than once a year (Akondy et al. 2017, "
       "Nature 552:362, doi:10.1038/nature24633) and persists for years",
       "loss of memory T cells"),
    _p("memory_recall", 0.1, "1/day", 0.0, 5.0,
       "assumed: memory cells re-expand into effectors within days of antigen re-encounter (recall is faster than priming; "
       "Kaech & Wherry 2007, doi:10.1016/j.immuni.2007.08.007); rate not published for tumors",
       "rate at which memory T cells become effectors at full antigen (the pool self-renews: memory is not consumed)"),
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
    _p("body_surface_area", 1.82, "m2", 0.5, 3.5,
       "assumed: typical adult, the Mosteller BSA of 170 cm and 70 kg (Mosteller 1987, doi:10.1056/NEJM198710223171717)",
       "patient body surface area (mg/m2 doses need it given explicitly, or height with weight)"),
    # --- CTLA-4 blockade -----------------------------------------------------------
    _p("ctla4_priming_boost", 1.0, "-", 0.0, 20.0,
       "assumed: CTLA-4 blockade enhances priming of new effectors (Leach, Krummel & Allison 1996, Science 271:1734, "
       "doi:10.1126/science.271.5256.1734); magnitude assumed: full blockade doubles effector influx",
       "extra effector influx (priming) at full CTLA-4 occupancy, relative to the baseline influx",
       switch="CTLA-4 blockade of priming", scale="linear"),
    _p("ctla4_treg_depletion", 0.05, "1/day", 0.0, 2.0,
       "assumed: Fc-mediated depletion of intratumoral Tregs by anti-CTLA-4 (Simpson et al. 2013, J Exp Med 210:1695, "
       "doi:10.1084/jem.20130579, in mice); Sharma et al. 2019 (Clin Cancer Res 25:1233, doi:10.1158/1078-0432.CCR-18-0762) "
       "found none in human tumors after ipilimumab: set 0 for that view. Rate assumed",
       "Treg loss per day at full CTLA-4 occupancy (ADCC)", switch="CTLA-4 Treg depletion", scale="linear"),
    # --- cytotoxic chemotherapy ---------------------------------------------------
    _p("chemo_kill_ratio", 30.0, "-", 0.0, 1000.0,
       "calibrated: Norton-Simon kill, proportional to the unperturbed growth rate (Norton & Simon 1977, Cancer Treat Rep 61:1307); "
       "once killed cells are cleared slowly (issue #14) the earlier 10 gave no docetaxel response (0 of 1,500 plausible patients "
       "shrank 8 %); 30 with a between-patient CV of 1.5 in the plausible population lets the best-response calibration accept "
       "2,257 of 8,000 patients for the 399 docetaxel lesions of Laleh 2022 (ORR 27.2 vs 27.3 %; seed 1); not fitted",
       "tumor kill at full cytotoxic effect, as a multiple of the specific growth rate g(V)",
       switch="cytotoxic chemotherapy", scale="linear"),
    _p("chemo_lymphodepletion", 0.2, "1/day", 0.0, 5.0,
       "assumed: taxanes are myelo- and lymphodepleting (docetaxel label: grade 4 neutropenia 65-76 % at 100 mg/m2); rate assumed",
       "effector loss per day at full cytotoxic effect", switch="chemotherapy lymphodepletion", scale="linear"),
    _p("icd_priming_boost", 0.5, "-", 0.0, 20.0,
       "assumed: immunogenic cell death releases antigen and boosts priming (Kroemer et al. 2013, Annu Rev Immunol 31:51, "
       "doi:10.1146/annurev-immunol-032712-100008; docetaxel: Hodge et al. 2013, Int J Cancer 133:624, doi:10.1002/ijc.28070); magnitude assumed",
       "extra effector influx at full cytotoxic effect, relative to the baseline influx", switch="immunogenic cell death", scale="linear"),
    # --- treatment-related adverse events -----------------------------------------
    _p("irae_hazard_pd1_axis", 4.891e-4, "1/day", 0.0, 0.1, _AE_CAL,
       "hazard of a first grade >= 3 treatment-related adverse event at full PD-1/PD-L1 blockade",
       switch="immune-related adverse events", scale="linear"),
    _p("irae_hazard_ctla4", 3.621e-3, "1/day", 0.0, 1.0, _AE_CAL,
       "hazard of a first grade >= 3 treatment-related adverse event at full CTLA-4 occupancy", scale="linear"),
    _p("irae_combination_factor", 0.9605, "-", 0.0, 100.0, _AE_CAL,
       "extra CTLA-4 hazard under full PD-1/PD-L1 blockade, as a multiple of the CTLA-4 hazard", scale="linear"),
    _p("chemo_toxicity_hazard", 0.04942, "1/day", 0.0, 10.0, _AE_CAL,
       "hazard of a first grade >= 3 treatment-related adverse event at full cytotoxic effect", scale="linear"),
    # --- miR-25 blockade ----------------------------------------------------------
    _p("mir25_infiltration_gain", 0.8, "-", 0.0, 1.0,
       "assumed: blocking miR-25 turns 'cold' tumors 'hot' (UC San Diego study, 2026, as summarised at "
       "lifeboat.com/blog/2026/06/why-some-tumors-resist-immunotherapy-blocking-mir-25-may-help-turn-cold-cancers-hot; primary "
       "paper and any magnitude not verified)",
       "share of the excluded effector influx restored at full miR-25 blockade", switch="miR-25 blockade (cold to hot)",
       scale="linear"),
)}


def _params(*names: str) -> tuple[Parameter, ...]:
    return tuple(_ALL[n] for n in names)


#: the targets of the core model (drugs name one of these; see immunopd.models.drugs)
TARGETS: tuple[Target, ...] = (
    Target("pd1", "PD-1", "PD-1 on tumor-infiltrating T cells: blocking it releases the PD-1/PD-L1 checkpoint"),
    Target("clever1", "Clever-1", "Clever-1 (stabilin-1) on M2-like tumor-associated macrophages"),
    Target("pdl1", "PD-L1", "PD-L1 on tumor and myeloid cells: blocking it releases the same checkpoint from the ligand side"),
    Target("ctla4", "CTLA-4", "CTLA-4 on activated T cells and Tregs: blocking it enhances priming; Fc-competent antibodies deplete Tregs"),
    Target("tubulin", "beta-tubulin", "microtubules of dividing tumor cells: the cytotoxic effect site of taxanes (its 'occupancy' is the "
           "fractional effect C/(C + IC50))", kind="effect site"),
    Target("mir25", "miR-25", "the microRNA miR-25 in tumor cells: an antagomir's 'occupancy' is the fraction of miR-25 it sequesters",
           kind="effect site"),
)
_TARGET = {t.name: t for t in TARGETS}


def _recruited(influx: str, recruitment: str) -> str:
    return f"{influx} + {recruitment} * viable_volume / (recruitment_half_volume + viable_volume)"


def _extinct(volume: str) -> str:
    """Smooth indicator (0-1) that a clone is below about one cell; 1/2 at exactly one cell."""
    return f"1 / (1 + ({volume} / tumor_cell_volume) ** 4)"


_TUMOR = Mechanism(
    "tumor",
    "antigen-presenting and antigen-loss viable volumes growing by one law, killed by effectors into dead cells that are "
    "cleared slowly; the attack brings inflammatory swelling (infiltrate, oedema) that a scan measures with the lesion until "
    "cleared, so a lesion can grow before it shrinks (pseudo-progression); a clone below one cell is extinct",
    states=(
        State("tumor_sensitive", "mm3", "viable antigen-presenting tumor volume Vs (integrated as ln Vs)", log=True,
              initial="baseline_tumor_volume * (1 - resistant_fraction0 - dead_fraction0)"),
        State("tumor_resistant", "mm3", "viable antigen-loss (immune-escaped) subclone volume Vr",
              initial="baseline_tumor_volume * resistant_fraction0"),
        State("tumor_dead", "mm3", "dead tumor cells not yet cleared from the lesion (D)", initial="baseline_tumor_volume * dead_fraction0"),
        # starts at 0 like D: an escaped tumor's untreated attack is small, so both build up only slowly untreated
        State("inflammation", "mm3", "non-tumor volume of the lesion: immune infiltrate and oedema (I)", initial="0"),
    ),
    parameters=_params("baseline_tumor_volume", "resistant_fraction0", "dead_fraction0", "growth_rate", "carrying_capacity",
                       "bertalanffy_exponent", "resistant_kill_fraction", "tumor_cell_volume", "dead_clearance", "extinction_rate",
                       "inflammatory_swelling", "inflammation_clearance"),
    assignments=(
        Assignment("viable_volume", "tumor_sensitive + tumor_resistant", "mm3", "viable tumor volume Vs + Vr"),
        Assignment("lesion_volume", "viable_volume + tumor_dead + inflammation", "mm3",
                   "what a scan measures: viable and dead tumor and inflammatory swelling Vs + Vr + D + I"),
        Assignment("tumor_volume", "where(lesion_volume >= tumor_cell_volume, lesion_volume, 0)", "mm3",
                   "measured lesion volume Vs + Vr + D + I (0 below one cell)"),
        Assignment("sensitive_extinct", _extinct("tumor_sensitive"), "1", "0-1: the antigen-presenting clone is below one cell"),
        Assignment("resistant_extinct", _extinct("tumor_resistant"), "1", "0-1: the antigen-loss clone is below one cell"),
    ),
    fluxes=(
        Flux("growth_sensitive", "specific_growth * (1 - sensitive_extinct)", sink="tumor_sensitive", per="tumor_sensitive"),
        Flux("growth_resistant", "specific_growth * (1 - resistant_extinct)", sink="tumor_resistant", per="tumor_resistant"),
        Flux("killing_sensitive", "kill_per_volume", source="tumor_sensitive", sink="tumor_dead", per="tumor_sensitive"),
        Flux("killing_resistant", "resistant_kill_fraction * kill_per_volume", source="tumor_resistant", sink="tumor_dead",
             per="tumor_resistant"),
        Flux("extinction_sensitive", "extinction_rate * sensitive_extinct", source="tumor_sensitive", sink="tumor_dead",
             per="tumor_sensitive"),
        Flux("extinction_resistant", "extinction_rate * resistant_extinct", source="tumor_resistant", sink="tumor_dead",
             per="tumor_resistant"),
        Flux("dead_clearance", "dead_clearance", source="tumor_dead", per="tumor_dead"),
        Flux("inflammatory_swelling",
             "inflammatory_swelling * kill_per_volume * (tumor_sensitive + resistant_kill_fraction * tumor_resistant)",
             sink="inflammation"),
        Flux("inflammation_clearance", "inflammation_clearance", source="inflammation", per="inflammation"),
    ),
)

#: how effectors kill: the default saturates in the effector:tumor cell ratio (de Pillis et al. 2005),
#: so no lesion is killed faster than kill_rate; "volume" is the earlier Kuznetsov-type kill that
#: saturates in tumor volume only, kept for the dormancy regime (Kuznetsov et al. 1994)
KILL_LAWS: tuple[str, ...] = ("ratio", "volume")

_KILL = {
    "ratio": Mechanism(
        "ratio-dependent killing",
        "effector kill saturating in the effector:tumor cell ratio (de Pillis et al. 2005, doi:10.1158/0008-5472.CAN-05-0564)",
        parameters=_params("kill_rate", "kill_exponent", "kill_half_ratio"),
        assignments=(
            Assignment("effector_tumor_ratio", "killing_factor * effector * 1e6 * tumor_cell_volume / max(viable_volume, tumor_cell_volume)",
                       "1", "effective effector:tumor cell ratio (effectors weighted by the killing factor)"),
            Assignment("kill_per_volume",
                       "kill_rate * effector_tumor_ratio ** kill_exponent / (kill_half_ratio ** kill_exponent + effector_tumor_ratio ** kill_exponent)",
                       "1/day", "fraction of antigen-presenting volume killed per day (ratio-dependent, at most kill_rate)"),
        ),
    ),
    "volume": Mechanism(
        "volume-saturating killing",
        "effector kill per unit volume falling with tumor volume only (Kuznetsov et al. 1994 with a saturating kill): unbounded as "
        "the tumor shrinks, but it has the small stable dormant equilibrium of that paper",
        parameters=_params("kill_rate_per_effector", "kill_half_volume"),
        assignments=(Assignment("kill_per_volume", "kill_rate_per_effector * killing_factor * effector / (kill_half_volume + viable_volume)",
                                "1/day", "fraction of antigen-presenting volume killed per day"),),
    ),
}


_ANTIGEN_LOSS = Mechanism(
    "antigen loss",
    "antigen-presenting cells become antigen-loss cells (acquired resistance)",
    parameters=_params("antigen_loss_rate"),
    fluxes=(Flux("antigen_loss", "antigen_loss_rate", source="tumor_sensitive", sink="tumor_resistant", per="tumor_sensitive"),),
)

_EFFECTORS = Mechanism(
    "effector response",
    "CD8 effector influx (cut in cold tumors), antigen-driven expansion and death",
    states=(State("effector", "1e6 cells", "functional CD8 T cells in the tumor (E)",
                  guess="effector_influx * (1 - tcell_exclusion) / effector_death"),),
    parameters=_params("effector_influx", "tcell_exclusion", "effector_expansion", "expansion_half_volume", "effector_death",
                       "ifn_half_effector"),
    assignments=(Assignment("ifn_signal", "effector / (effector + ifn_half_effector)", "1", "IFN-gamma signalling, 0-1"),),
    fluxes=(
        Flux("effector_influx", "effector_influx * (1 - tcell_exclusion)", sink="effector"),
        Flux("effector_expansion", "effector_expansion * killing_factor * tumor_sensitive / (expansion_half_volume + tumor_sensitive)",
             sink="effector", per="effector"),
        Flux("effector_death", "effector_death", source="effector", per="effector"),
    ),
)

_MEMORY = Mechanism(
    "memory T cells",
    "effectors become memory cells once antigen wanes; memory cells recall effectors when antigen returns and renew themselves, "
    "so a responder stays controlled after therapy stops",
    states=(State("memory", "1e6 cells", "tumor-specific CD8 memory T cells (Tm)", guess="0.01"),),
    parameters=_params("memory_formation", "memory_death", "memory_recall"),
    assignments=(Assignment("antigen_signal", "tumor_sensitive / (expansion_half_volume + tumor_sensitive)", "1",
                            "antigen stimulation by the antigen-presenting volume, 0-1"),),
    fluxes=(
        Flux("memory_formation", "memory_formation * (1 - antigen_signal)", source="effector", sink="memory", per="effector"),
        Flux("memory_death", "memory_death", source="memory", per="memory"),
        # recall adds effectors without consuming memory: self-renewing divisions (assumed)
        Flux("memory_recall", "memory_recall * antigen_signal * memory", sink="effector"),
    ),
)

_CHECKPOINT = Mechanism(
    "PD-1/PD-L1 checkpoint",
    "PD-L1 (constitutive and IFN-gamma induced) engaging PD-1 inhibits killing, exhausts effectors; PD-1 or PD-L1 blockade "
    "reverses both (PD-L2 and B7-1 are not modelled: anti-PD-1 and anti-PD-L1 differ only by their PK and potency)",
    states=(State("exhausted", "1e6 cells", "PD-1-high dysfunctional CD8 T cells (X)", guess="1.0"),),
    parameters=_params("checkpoint_strength", "pdl1_baseline", "pdl1_upregulation", "exhaustion_rate", "exhausted_death",
                       "reinvigoration_rate"),
    assignments=(
        Assignment("pdl1_level", "pdl1_baseline + pdl1_upregulation * ifn_signal", "1",
                   "PD-L1 expression relative to the constitutive level scale"),
        Assignment("checkpoint_engagement", "pdl1_level * (1 - pd1_occupancy) * (1 - pdl1_occupancy)", "1",
                   "PD-1/PD-L1 engagement: PD-L1 level times the free share of both partners (either antibody blocks the pair)"),
        Assignment("checkpoint_blockade", "1 - (1 - pd1_occupancy) * (1 - pdl1_occupancy)", "1",
                   "share of PD-1/PD-L1 pairs blocked by anti-PD-1 or anti-PD-L1, 0-1"),
        Assignment("checkpoint_factor", "1 / (1 + checkpoint_strength * checkpoint_engagement)", "1",
                   "effector function left by the PD-1/PD-L1 checkpoint, 0-1"),
    ),
    fluxes=(
        Flux("exhaustion", "exhaustion_rate * checkpoint_engagement", source="effector", sink="exhausted", per="effector"),
        Flux("reinvigoration", "reinvigoration_rate * checkpoint_blockade", source="exhausted", sink="effector", per="exhausted"),
        Flux("exhausted_death", "exhausted_death", source="exhausted", per="exhausted"),
    ),
    targets=(_TARGET["pd1"], _TARGET["pdl1"]),
)

_SUPPRESSORS = Mechanism(
    "suppressive populations",
    "Tregs and MDSCs recruited by the tumor suppress effector function",
    states=(
        State("treg", "1e6 cells", "regulatory T cells (R)", guess="(treg_influx + treg_recruitment) / treg_death"),
        State("mdsc", "1e6 cells", "myeloid-derived suppressor cells (M)", guess="(mdsc_influx + mdsc_recruitment) / mdsc_death"),
    ),
    parameters=_params("treg_influx", "treg_recruitment", "treg_death", "mdsc_influx", "mdsc_recruitment", "mdsc_death",
                       "recruitment_half_volume", "treg_suppression", "mdsc_suppression"),
    assignments=(Assignment("suppression_factor", "1 / (1 + treg_suppression * treg + mdsc_suppression * mdsc)", "1",
                            "effector function left by Tregs and MDSCs, 0-1"),),
    fluxes=(
        Flux("treg_recruitment", _recruited("treg_influx", "treg_recruitment"), sink="treg"),
        Flux("treg_death", "treg_death", source="treg", per="treg"),
        Flux("mdsc_recruitment", _recruited("mdsc_influx", "mdsc_recruitment"), sink="mdsc"),
        Flux("mdsc_death", "mdsc_death", source="mdsc", per="mdsc"),
    ),
)

_CLEVER1 = Mechanism(
    "Clever-1 macrophages and soluble Clever-1",
    "Clever-1+ macrophages recruited by the tumor release sClever-1, which impairs activated T cells; anti-Clever-1 "
    "repolarises the macrophages and blocks release",
    states=(
        State("clever1_macrophage", "1e6 cells", "Clever-1+ (M2-like) macrophages (Mc)",
              guess="(macrophage_influx + macrophage_recruitment) / macrophage_death"),
        State("sclever1_plasma", "ng/mL", "soluble Clever-1 in plasma (S)", guess="sclever1_healthy + 1"),
    ),
    parameters=_params("macrophage_influx", "macrophage_recruitment", "macrophage_death", "reprogramming_rate",
                       "sclever1_healthy", "sclever1_release", "sclever1_inflammation_boost", "sclever1_release_block",
                       "sclever1_clearance", "sclever1_suppression"),
    assignments=(Assignment("sclever1_factor", "1 / (1 + sclever1_suppression * sclever1_plasma)", "1",
                            "effector function left by sClever-1, 0-1"),),
    fluxes=(
        Flux("macrophage_recruitment", _recruited("macrophage_influx", "macrophage_recruitment"), sink="clever1_macrophage"),
        Flux("macrophage_death", "macrophage_death", source="clever1_macrophage", per="clever1_macrophage"),
        Flux("macrophage_reprogramming", "reprogramming_rate * clever1_occupancy", source="clever1_macrophage", per="clever1_macrophage"),
        Flux("sclever1_release",
             "sclever1_release * clever1_macrophage * (1 + sclever1_inflammation_boost * ifn_signal) * (1 - sclever1_release_block * clever1_occupancy)",
             sink="sclever1_plasma"),
        Flux("sclever1_clearance", "sclever1_clearance * (sclever1_plasma - sclever1_healthy)", source="sclever1_plasma"),
    ),
    targets=(_TARGET["clever1"],),
)

_CTLA4 = Mechanism(
    "CTLA-4 checkpoint",
    "CTLA-4 blockade boosts priming of new effectors and (Fc-competent antibodies) depletes intratumoral Tregs",
    parameters=_params("ctla4_priming_boost", "ctla4_treg_depletion"),
    fluxes=(
        Flux("ctla4_priming", "ctla4_priming_boost * ctla4_occupancy * effector_influx * (1 - tcell_exclusion)", sink="effector"),
        Flux("ctla4_treg_depletion", "ctla4_treg_depletion * ctla4_occupancy", source="treg", per="treg"),
    ),
    targets=(_TARGET["ctla4"],),
)

_CHEMOTHERAPY = Mechanism(
    "cytotoxic chemotherapy",
    "a taxane kills dividing tumor cells in proportion to their growth rate (Norton-Simon), depletes effectors, and its "
    "immunogenic cell death boosts priming",
    parameters=_params("chemo_kill_ratio", "chemo_lymphodepletion", "icd_priming_boost"),
    assignments=(Assignment("chemo_kill_per_volume", "chemo_kill_ratio * tubulin_occupancy * max(specific_growth, 0)", "1/day",
                            "fraction of tumor volume killed by chemotherapy per day"),),
    fluxes=(
        Flux("chemo_kill_sensitive", "chemo_kill_per_volume", source="tumor_sensitive", sink="tumor_dead", per="tumor_sensitive"),
        Flux("chemo_kill_resistant", "chemo_kill_per_volume", source="tumor_resistant", sink="tumor_dead", per="tumor_resistant"),
        Flux("chemo_lymphodepletion", "chemo_lymphodepletion * tubulin_occupancy", source="effector", per="effector"),
        Flux("immunogenic_priming", "icd_priming_boost * tubulin_occupancy * effector_influx * (1 - tcell_exclusion)", sink="effector"),
    ),
    targets=(_TARGET["tubulin"],),
)

_MIR25 = Mechanism(
    "miR-25 blockade",
    "sequestering miR-25 restores part of the effector influx that exclusion blocks in cold tumors (no effect in hot ones)",
    parameters=_params("mir25_infiltration_gain"),
    fluxes=(Flux("mir25_restored_influx", "mir25_infiltration_gain * mir25_occupancy * effector_influx * tcell_exclusion",
                 sink="effector"),),
    targets=(_TARGET["mir25"],),
)

_ADVERSE_EVENTS = Mechanism(
    "treatment-related adverse events",
    "the cumulative hazard of a first grade >= 3 treatment-related adverse event, driven by checkpoint blockade (immune-related) "
    "and cytotoxic exposure; a trial draws each patient's event from it",
    states=(State("irae_cumulative_hazard", "1", "cumulative hazard of a first grade >= 3 treatment-related adverse event",
                  initial="0"),),
    parameters=_params("irae_hazard_pd1_axis", "irae_hazard_ctla4", "irae_combination_factor", "chemo_toxicity_hazard"),
    assignments=(Assignment("adverse_event_probability", "1 - exp(-irae_cumulative_hazard)", "1",
                            "probability of at least one grade >= 3 treatment-related adverse event since treatment start"),),
    fluxes=(Flux("adverse_event_hazard",
                 "irae_hazard_pd1_axis * checkpoint_blockade + irae_hazard_ctla4 * ctla4_occupancy * (1 + irae_combination_factor * "
                 "checkpoint_blockade) + chemo_toxicity_hazard * tubulin_occupancy", sink="irae_cumulative_hazard"),),
    observables=(Observable("adverse_event_probability", "1",
                            "probability of at least one grade >= 3 treatment-related adverse event since treatment start"),),
)

_METABOLISM = Mechanism(
    "metabolic suppression",
    "nutrient competition with the tumor impairs effectors, and the product of all suppressive factors",
    parameters=_params("metabolic_suppression"),
    assignments=(
        Assignment("metabolic_factor", "1 / (1 + metabolic_suppression * viable_volume)", "1", "effector function left by nutrient competition"),
        Assignment("killing_factor", "checkpoint_factor * suppression_factor * sclever1_factor * metabolic_factor", "1",
                   "product of the checkpoint, suppression, sClever-1 and metabolic factors, 0-1"),
    ),
)

_READOUTS = Mechanism(
    "readouts",
    "what scans and biopsies measure",
    parameters=_params("infiltration_half_density", "body_weight", "body_surface_area") + (
        _p("female", 0.0, "-", 0.0, 1.0, "assumed: 0 (male), the reference category of pembrolizumab's popPK (Ahamadi et al. 2017, doi:10.1002/psp4.12139)",
           "sex as a 0/1 indicator (1 = female), a PK covariate", scale="linear"),
        _p("albumin", 39.6, "g/L", 10.0, 60.0, "assumed: 39.6 g/L, the reference (median) albumin of pembrolizumab's popPK (Ahamadi et al. 2017, doi:10.1002/psp4.12139)",
           "serum albumin, a PK covariate"),
        _p("egfr", 88.47, "mL/min/(1.73 m2)", 5.0, 200.0, "assumed: 88.47, the reference eGFR of pembrolizumab's popPK (Ahamadi et al. 2017, doi:10.1002/psp4.12139)",
           "estimated glomerular filtration rate, a PK covariate"),
        _p("ecog_1_or_more", 0.0, "-", 0.0, 1.0, "assumed: 0 (ECOG performance status 0), the reference category of both anti-PD-1 popPK models",
           "ECOG performance status >= 1 as a 0/1 indicator, a PK covariate", scale="linear"),
    ),
    assignments=(
        # the condition reads lesion_volume, not tumor_volume (itself a where): AMICI 1.0.1 initialises
        # nested piecewise conditions in one pass and keeps a wrong value (AMICI issue #3233)
        Assignment("sld", "where(lesion_volume >= tumor_cell_volume, (6 * max(lesion_volume, tumor_cell_volume) / pi) ** (1 / 3), 0)", "mm",
                   "longest diameter of one spherical lesion of the tumor volume, (6 V / pi)^(1/3)"),
        Assignment("cd8_density", "1e6 * effector / max(tumor_volume, 1e-9)", "cells/mm3", "functional CD8 effectors per mm3 of tumor"),
    ),
    observables=(
        Observable("tumor_volume", "mm3", "measured lesion volume: viable and dead tumor and inflammatory swelling Vs + Vr + D + I (0 below one cell)"),
        Observable("viable_volume", "mm3", "viable tumor volume Vs + Vr"),
        Observable("sld", "mm", "longest diameter of one spherical lesion of the tumor volume, (6 V / pi)^(1/3)"),
        Observable("pct_change", "%", "change of sld from its value at time 0 (treatment start)", "100 * (sld / sld_at_start - 1)"),
        Observable("pdl1_level", "1", "PD-L1 expression relative to the constitutive level scale"),
        Observable("killing_factor", "1", "product of the checkpoint, suppression, sClever-1 and metabolic factors, 0-1"),
        Observable("cd8_density", "cells/mm3", "functional CD8 effectors per mm3 of tumor"),
        Observable("infiltration_score", "1", "hot/cold score: cd8_density / (cd8_density + infiltration_half_density)",
                   "cd8_density / (cd8_density + infiltration_half_density)"),
    ),
)


def _growth_mechanism(law: str) -> Mechanism:
    return Mechanism(
        f"{law} growth",
        f"tumor growth law: {law} (immunopd.models.growth)",
        assignments=(Assignment("specific_growth", growth_expression(law, "viable_volume"), "1/day", f"specific growth rate g(V) of the {law} law"),),
    )


#: the mechanisms of the core model, growth and kill laws excepted (core_model chooses them)
MECHANISMS: tuple[Mechanism, ...] = (_TUMOR, _ANTIGEN_LOSS, _EFFECTORS, _MEMORY, _CHECKPOINT, _SUPPRESSORS, _CLEVER1, _CTLA4,
                                     _CHEMOTHERAPY, _MIR25, _ADVERSE_EVENTS, _METABOLISM, _READOUTS)


@functools.lru_cache(maxsize=None)
def core_model(growth_law: str = "gompertz", kill: str = "ratio") -> Model:
    """The shared core model for ``growth_law`` and ``kill`` law (one compiled solver per model object).

    ``kill``: "ratio" (default; de Pillis et al. 2005) or "volume" (Kuznetsov-type, for the
    dormancy regime). The model's ``variant`` names both when ``kill`` is not the default.
    """
    if growth_law not in GROWTH_LAWS:
        raise InputError(describe("growth_law", growth_law, f"one of {list(GROWTH_LAWS)}"))
    if kill not in KILL_LAWS:
        raise InputError(describe("kill", kill, f"one of {list(KILL_LAWS)}"))
    from .drugs import DRUGS

    mechanisms = MECHANISMS[:1] + (_KILL[kill],) + MECHANISMS[1:] + (_growth_mechanism(growth_law),)
    variant = growth_law if kill == "ratio" else f"{growth_law}, {kill} kill"
    return Model("immunopd-core", mechanisms, drugs=tuple(DRUGS.values()),
                 description="tumor, CD8 effectors, suppressors, sClever-1; PD-1 and Clever-1 targets", variant=variant)


#: the parameter table of the default (Gompertz) core model: its own and every drug's
PARAMETERS = core_model().parameters
