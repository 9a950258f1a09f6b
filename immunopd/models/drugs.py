"""The drugs immunopd knows, one declaration each (see :class:`immunopd.drugs.Drug`).

Values and their sources:

- pembrolizumab: Ahamadi et al. 2017 (doi:10.1002/psp4.12139), Table 3 as transcribed in
  nlmixr2lib ``Ahamadi_2017_pembrolizumab``; weight on CL and Q (exponent 0.595) and on V1
  and V2 (0.489), reference 76.8 kg; female -15.2 % CL, -13.4 % V1 (reference male); albumin
  (reference 39.6 g/L) ^-0.907 on CL and ^-0.208 on V1; eGFR (reference 88.47) ^0.135 on CL;
  ECOG >= 1 -7.39 % CL. Tumor burden, tumor type and prior ipilimumab are not modelled.
- nivolumab: Bajaj et al. 2017 (doi:10.1002/psp4.12143), Table 1 as transcribed in
  nlmixr2lib ``Bajaj_2017_nivolumab``; clearance falls over time (Emax -0.295, T50 1410 h,
  Hill 3.15); reference a female of 80 kg, so male is exp(0.165) on CL and exp(0.152) on VC;
  weight exponents 0.566 (CL) and 0.597 (VC); eGFR (reference 90) ^0.186 and ECOG >= 1 exp(0.172)
  on CL. Q and VP have no covariates in the source. Race (Asian exp(-0.125) on CL) is not modelled.
- bexmarilimab: no public population PK; typical IgG4 values, all marked assumed.
- atezolizumab (anti-PD-L1): Stroh et al. 2017 (doi:10.1002/cpt.587), linear two-compartment, as
  held fixed in Chan et al. 2025 (doi:10.1002/psp4.13310; nlmixr2lib ``Chan_2025_atezolizumab``);
  weight (reference 77 kg) ^0.808 on CL, ^0.559 on V1; albumin (reference 40 g/L) ^-1.12 on CL,
  ^-0.350 on V1; female -12.9 % V1, -27.2 % V2. Tumor burden and anti-drug antibodies are not
  modelled; the later-reported fall of clearance over time (17-22 %) is not in this source.
- durvalumab (anti-PD-L1): Abegesah et al. 2025 (doi:10.1007/s00280-024-04743-8; nlmixr2lib
  ``Abegesah_2025_durvalumab``), the AstraZeneca model with clearance falling in time (Tmax -0.498,
  TC50 61.3 day, Hill 1); weight (69.4 kg) ^0.338 CL, ^0.515 V1; albumin (39 g/L) ^-0.589 CL;
  eGFR stands in for its creatinine clearance (85.66 mL/min) ^0.136; female -16.1 % CL, -14.0 % V1;
  ECOG >= 1 -5.01 % CL. Baverel et al. 2018's small Michaelis-Menten term (about 2 % of elimination
  at approved doses) is not in this model.
- avelumab (anti-PD-L1): Masters et al. 2022 (doi:10.1002/psp4.12771; nlmixr2lib
  ``Masters_2022_avelumab``), the refit of Wilkins et al. 2019's structure (doi:10.1002/psp4.12406):
  CL (1 - 0.0853 S(t)), T50 99.24 day, Hill 2.086; weight (80 kg, nlmixr2lib's assumption) ^0.4714
  CL, ^0.4694 V1, ^0.5826 V2, ^1 Q. The typical patient's terminal half-life (4.3 d at t = 0, 4.7 d
  at steady state) is below the label's 6.1 d because the label's is a summary over patients and
  this model's V2 varies with CV about 150 %: the mean over Table 1's patients is 6.0 d
  (tests/test_drugs.py).
- ipilimumab (anti-CTLA-4): Sanghavi et al. 2020 (doi:10.1002/psp4.12477; nlmixr2lib
  ``Sanghavi_2020_ipilimumab``), monotherapy clearance in time (Emax -0.0644, T50 105.8 day, Hill
  7.43); weight (80 kg) ^0.694 on CL and Q, ^0.600 on VC and VP. Its LDH, line-of-therapy, tumor-
  type and nivolumab co-medication effects are not modelled.
- docetaxel: three compartments; clearance 21 L/h/m2 times BSA (Taxotere label; Bruno et al.
  1996, doi:10.1007/BF02353487, found CL proportional to BSA), volumes and distribution clearances
  of Ozawa et al. 2007 (doi:10.1111/j.1349-7006.2007.00615.x; nlmixr2lib ``Ozawa_2007_docetaxel``).
  Bruno 1996's own volumes were not found in a source read here. The gamma phase is 16.6 h at
  1.82 m2 (Ozawa's own model: 16.9 h), against 11.1 h in the SmPC (phase I, short sampling) and
  116 h in the US label (sampling to 8-22 days): a disagreement between sources, kept and stated
  (Ozawa's V3 225 L makes Vss 239 L against the SmPC's 113 L); Cmax and AUC match the label.
- mir25_antagomir: no clinical miR-25 inhibitor exists; PK and potency all marked assumed.
"""

from __future__ import annotations

from ..drugs import CovariateEffect, Drug, PKValue, Potency
from ..pkmodels import LinearPK, TimeVaryingClearancePK

__all__ = ["DRUGS", "PRESETS", "COMBINATIONS", "STANDARD_REGIMENS", "ARM_REGIMENS", "EXAMPLE_REGIMEN"]

_AHAMADI = "Ahamadi et al. 2017, CPT Pharmacometrics Syst Pharmacol 6:49, doi:10.1002/psp4.12139 (Table 3, as transcribed in nlmixr2lib Ahamadi_2017_pembrolizumab)"
_BAJAJ = "Bajaj et al. 2017, CPT Pharmacometrics Syst Pharmacol 6:58, doi:10.1002/psp4.12143 (Table 1, as transcribed in nlmixr2lib Bajaj_2017_nivolumab)"
_IGG_ASSUMED = "assumed: no public population PK for bexmarilimab; typical IgG4 two-compartment values (cf. pembrolizumab/nivolumab)"
_DE_SOUSA_LINHARES = ("De Sousa Linhares et al. 2019, Sci Rep 9:11472, doi:10.1038/s41598-019-47910-1 (abstract; one PD-1 "
                      "reporter platform for five PD-1/PD-L1 antibodies)")
_PARTITION = PKValue(0.3, "tumor interstitial/plasma ratio of an anti-PD-L1 IgG in tumor-bearing mice, about 0.3 at its lowest "
                          "(Deng et al. 2016, mAbs 8:593, doi:10.1080/19420862.2015.1136043); a mouse value, applied to human lesions")


def _weight(role: str, exponent: float, reference: float, source: str) -> CovariateEffect:
    return CovariateEffect(role, "body_weight", "power", exponent, reference, source, lower=0.0, upper=2.0)


PEMBROLIZUMAB = Drug(
    name="pembrolizumab",
    target="pd1",
    kind="antibody (humanized IgG4)",
    molecular_weight_kda=146.0,
    pk=LinearPK(2),
    pk_values={
        "clearance": PKValue(0.22, _AHAMADI),
        "central_volume": PKValue(3.48, _AHAMADI),
        "intercompartmental_clearance": PKValue(0.795, _AHAMADI),
        "peripheral_volume": PKValue(4.06, _AHAMADI),
    },
    potency=Potency(0.0399, "ug/mL", "functional EC50",
                    "EC50 39.90 ng/mL (95 % CI 34.01-46.80) for blocking PD-1 signalling in a Jurkat T-cell reporter assay, "
                    "measured beside nivolumab (76.17 ng/mL) in one study: " + _DE_SOUSA_LINHARES + "; the binding KD of 29 pM "
                    "(Keytruda BLA pharmacology review as cited in modelling abstracts, primary document not read) and nivolumab's "
                    "2.6 nM came from different sources and platforms and made the two drugs differ 90-fold in potency, where this "
                    "assay finds 1.9-fold. Other values, not used: the functional IL-2 IC50 0.535 ug/mL (Elassaiss-Schaap et al. "
                    "2017, doi:10.1002/psp4.12132; no nivolumab value in the same assay) and one platform's binding KDs, 4 nM "
                    "pembrolizumab and 7.2 nM nivolumab (Brown et al. 2020, doi:10.1371/journal.pone.0229206, analogues on a "
                    "hydrogel chip)"),
    tumor_partition=_PARTITION,
    covariates=(
        _weight("clearance", 0.595, 76.8, _AHAMADI),
        _weight("intercompartmental_clearance", 0.595, 76.8, _AHAMADI),
        _weight("central_volume", 0.489, 76.8, _AHAMADI),
        _weight("peripheral_volume", 0.489, 76.8, _AHAMADI),
        CovariateEffect("clearance", "female", "categorical", -0.152, 0.0, _AHAMADI, lower=-0.99, upper=5.0),
        CovariateEffect("central_volume", "female", "categorical", -0.134, 0.0, _AHAMADI, lower=-0.99, upper=5.0),
        CovariateEffect("clearance", "albumin", "power", -0.907, 39.6, _AHAMADI),
        CovariateEffect("central_volume", "albumin", "power", -0.208, 39.6, _AHAMADI),
        CovariateEffect("clearance", "egfr", "power", 0.135, 88.47, _AHAMADI),
        CovariateEffect("clearance", "ecog_1_or_more", "categorical", -0.0739, 0.0, _AHAMADI, lower=-0.99, upper=5.0),
    ),
    # the trials' stopping rule: at most 35 cycles (about 2 years), then off therapy (KEYNOTE-010,
    # Herbst et al. 2016 Lancet 387:1540, doi:10.1016/S0140-6736(15)01281-7)
    presets={"200mg-q3w": "200 mg q3w over 30 min", "400mg-q6w": "400 mg q6w over 30 min", "2mgkg-q3w": "2 mg/kg q3w over 30 min",
             "200mg-q3w-35-cycles": "200 mg q3w x35 over 30 min"},
    description="anti-PD-1 (Keytruda); label doses 200 mg Q3W or 400 mg Q6W, 30-min infusion; at most 35 cycles in the trials",
)

NIVOLUMAB = Drug(
    name="nivolumab",
    target="pd1",
    kind="antibody (human IgG4)",
    molecular_weight_kda=146.0,
    pk=TimeVaryingClearancePK(2),
    pk_values={
        "clearance": PKValue(0.2256, _BAJAJ + ": CL0 9.40 mL/h"),
        "central_volume": PKValue(3.63, _BAJAJ),
        "intercompartmental_clearance": PKValue(0.7704, _BAJAJ + ": 32.1 mL/h"),
        "peripheral_volume": PKValue(2.78, _BAJAJ),
        "clearance_emax": PKValue(-0.295, _BAJAJ),
        "clearance_t50": PKValue(58.75, _BAJAJ + ": T50 1410 h"),
        "clearance_hill": PKValue(3.15, _BAJAJ),
    },
    potency=Potency(0.07617, "ug/mL", "functional EC50",
                    "EC50 76.17 ng/mL (95 % CI 64.95-89.34) for blocking PD-1 signalling in a Jurkat T-cell reporter assay, "
                    "measured beside pembrolizumab in one study: " + _DE_SOUSA_LINHARES + " (was KD 2.6 nM, QSP-IO example 1 "
                    "citing Wang et al. 2014, another source and kind of measurement than pembrolizumab's)"),
    tumor_partition=_PARTITION,
    covariates=(
        _weight("clearance", 0.566, 80.0, _BAJAJ),
        _weight("central_volume", 0.597, 80.0, _BAJAJ),
        # the source's reference is female: male = exp(0.165) on CL, exp(0.152) on VC
        CovariateEffect("clearance", "female", "exponential", -0.165, 1.0, _BAJAJ),
        CovariateEffect("central_volume", "female", "exponential", -0.152, 1.0, _BAJAJ),
        CovariateEffect("clearance", "egfr", "power", 0.186, 90.0, _BAJAJ),
        CovariateEffect("clearance", "ecog_1_or_more", "exponential", 0.172, 0.0, _BAJAJ),
    ),
    presets={"240mg-q2w": "240 mg q2w over 30 min", "480mg-q4w": "480 mg q4w over 30 min"},
    description="anti-PD-1 (Opdivo); label doses 240 mg Q2W or 480 mg Q4W, 30-min infusion",
)

BEXMARILIMAB = Drug(
    name="bexmarilimab",
    target="clever1",
    kind="antibody (humanized IgG4)",
    molecular_weight_kda=146.0,
    pk=LinearPK(2),
    pk_values={
        "clearance": PKValue(0.2, _IGG_ASSUMED),
        "central_volume": PKValue(3.5, _IGG_ASSUMED),
        "intercompartmental_clearance": PKValue(0.8, _IGG_ASSUMED),
        "peripheral_volume": PKValue(3.5, _IGG_ASSUMED),
    },
    potency=Potency(1.0, "nM", "assumed", "assumed: KD 1 nM; no public affinity value found"),
    tumor_partition=_PARTITION,
    covariates=tuple(_weight(role, 0.5, 70.0, _IGG_ASSUMED) for role in
                     ("clearance", "intercompartmental_clearance", "central_volume", "peripheral_volume")),
    presets={"1mgkg-q3w": "1 mg/kg q3w over 60 min"},
    description="anti-Clever-1 (macrophage-reprogramming antibody, Faron); no approved dose",
    default_duration_min=60.0,
)

_STROH = ("Stroh et al. 2017, Clin Pharmacol Ther 102:305, doi:10.1002/cpt.587 (as held fixed in Chan et al. 2025, "
          "doi:10.1002/psp4.13310, transcribed in nlmixr2lib Chan_2025_atezolizumab)")
_ABEGESAH = "Abegesah et al. 2025, Cancer Chemother Pharmacol 95:23, doi:10.1007/s00280-024-04743-8 (as transcribed in nlmixr2lib Abegesah_2025_durvalumab)"
_MASTERS = ("Masters et al. 2022, CPT Pharmacometrics Syst Pharmacol 11:458, doi:10.1002/psp4.12771, Table 1 (refit of Wilkins et al. "
            "2019, doi:10.1002/psp4.12406; as transcribed in nlmixr2lib Masters_2022_avelumab, Q corrected to 0.03352 L/h)")
_SANGHAVI = "Sanghavi et al. 2020, CPT Pharmacometrics Syst Pharmacol 9:29, doi:10.1002/psp4.12477, Table 2 (as transcribed in nlmixr2lib Sanghavi_2020_ipilimumab)"
_OZAWA = "Ozawa et al. 2007, Cancer Sci 98:1985, doi:10.1111/j.1349-7006.2007.00615.x, Table 2 (as transcribed in nlmixr2lib Ozawa_2007_docetaxel)"
_TAXOTERE = "Taxotere (docetaxel) label, section 5.2: mean total clearance 21 L/h/m2; CL proportional to BSA as in Bruno et al. 1996, doi:10.1007/BF02353487"
_QSPIO_KD = ("as used in the QSP-IO model code (Sove et al. 2020, doi:10.1002/psp4.12546), attributed there to Wang et al. 2014; "
             "primary source not verified")
_MAB_PARTITION = _PARTITION


def _categorical(role: str, covariate: str, effect: float, source: str) -> CovariateEffect:
    return CovariateEffect(role, covariate, "categorical", effect, 0.0, source, lower=-0.99, upper=5.0)


ATEZOLIZUMAB = Drug(
    name="atezolizumab",
    target="pdl1",
    kind="antibody (humanized IgG1, Fc-engineered)",
    molecular_weight_kda=145.0,
    pk=LinearPK(2),
    pk_values={
        "clearance": PKValue(0.200, _STROH),
        "central_volume": PKValue(3.28, _STROH),
        "intercompartmental_clearance": PKValue(0.546, _STROH),
        "peripheral_volume": PKValue(3.63, _STROH),
    },
    potency=Potency(0.4, "nM", "binding KD", "KD 0.4 nM to PD-L1, " + _QSPIO_KD),
    tumor_partition=_MAB_PARTITION,
    covariates=(
        _weight("clearance", 0.808, 77.0, _STROH),
        _weight("central_volume", 0.559, 77.0, _STROH),
        CovariateEffect("clearance", "albumin", "power", -1.12, 40.0, _STROH),
        CovariateEffect("central_volume", "albumin", "power", -0.350, 40.0, _STROH),
        _categorical("central_volume", "female", -0.129, _STROH),
        _categorical("peripheral_volume", "female", -0.272, _STROH),
    ),
    presets={"1200mg-q3w": "1200 mg q3w over 60 min", "840mg-q2w": "840 mg q2w over 60 min", "1680mg-q4w": "1680 mg q4w over 60 min"},
    description="anti-PD-L1 (Tecentriq); label doses 1200 mg Q3W, 840 mg Q2W or 1680 mg Q4W, first infusion over 60 min",
    default_duration_min=60.0,
)

DURVALUMAB = Drug(
    name="durvalumab",
    target="pdl1",
    kind="antibody (human IgG1, Fc-engineered)",
    molecular_weight_kda=146.0,
    pk=TimeVaryingClearancePK(2),
    pk_values={
        "clearance": PKValue(0.298, _ABEGESAH),
        "central_volume": PKValue(3.42, _ABEGESAH),
        "intercompartmental_clearance": PKValue(0.452, _ABEGESAH),
        "peripheral_volume": PKValue(1.99, _ABEGESAH),
        "clearance_emax": PKValue(-0.498, _ABEGESAH + ": Tmax"),
        "clearance_t50": PKValue(61.3, _ABEGESAH + ": TC50"),
        "clearance_hill": PKValue(1.0, _ABEGESAH + ": Hill fixed to 1"),
    },
    potency=Potency(0.667, "nM", "binding KD", "KD 0.667 nM to human PD-L1 as usually quoted from Stewart et al. 2015, Cancer Immunol Res "
                    "3:1052, doi:10.1158/2326-6066.CIR-14-0191; not verified in a source read here"),
    tumor_partition=_MAB_PARTITION,
    covariates=(
        _weight("clearance", 0.338, 69.4, _ABEGESAH),
        _weight("central_volume", 0.515, 69.4, _ABEGESAH),
        CovariateEffect("clearance", "albumin", "power", -0.589, 39.0, _ABEGESAH),
        CovariateEffect("clearance", "egfr", "power", 0.136, 85.66, _ABEGESAH + " (creatinine clearance, mL/min, read as eGFR)"),
        _categorical("clearance", "female", -0.161, _ABEGESAH),
        _categorical("central_volume", "female", -0.140, _ABEGESAH),
        _categorical("clearance", "ecog_1_or_more", -0.0501, _ABEGESAH),
    ),
    presets={"10mgkg-q2w": "10 mg/kg q2w over 60 min", "1500mg-q4w": "1500 mg q4w over 60 min"},
    description="anti-PD-L1 (Imfinzi); label doses 10 mg/kg Q2W or 1500 mg Q4W (>= 30 kg), 60-min infusion",
    default_duration_min=60.0,
)

AVELUMAB = Drug(
    name="avelumab",
    target="pdl1",
    kind="antibody (human IgG1, ADCC-competent)",
    molecular_weight_kda=147.0,
    pk=TimeVaryingClearancePK(2, form="proportional"),
    pk_values={
        "clearance": PKValue(0.6456, _MASTERS + ": 0.0269 L/h"),
        "central_volume": PKValue(3.196, _MASTERS),
        "intercompartmental_clearance": PKValue(0.8045, _MASTERS + ": 0.03352 L/h"),
        "peripheral_volume": PKValue(0.7278, _MASTERS),
        "clearance_emax": PKValue(-0.08533, _MASTERS + ": Imax"),
        "clearance_t50": PKValue(99.24, _MASTERS),
        "clearance_hill": PKValue(2.086, _MASTERS),
    },
    potency=Potency(0.4, "nM", "assumed", "assumed: no verified avelumab affinity found; set equal to atezolizumab's"),
    tumor_partition=_MAB_PARTITION,
    covariates=(
        _weight("clearance", 0.4714, 80.0, _MASTERS + " (reference 80 kg assumed by nlmixr2lib)"),
        _weight("central_volume", 0.4694, 80.0, _MASTERS + " (reference 80 kg assumed by nlmixr2lib)"),
        _weight("peripheral_volume", 0.5826, 80.0, _MASTERS + " (reference 80 kg assumed by nlmixr2lib)"),
        _weight("intercompartmental_clearance", 1.0, 80.0, _MASTERS + " (exponent fixed to 1)"),
    ),
    presets={"800mg-q2w": "800 mg q2w over 60 min", "10mgkg-q2w": "10 mg/kg q2w over 60 min"},
    description="anti-PD-L1 (Bavencio); label dose 800 mg Q2W (earlier 10 mg/kg Q2W), 60-min infusion",
    default_duration_min=60.0,
)

IPILIMUMAB = Drug(
    name="ipilimumab",
    target="ctla4",
    kind="antibody (human IgG1)",
    molecular_weight_kda=148.0,
    pk=TimeVaryingClearancePK(2),
    pk_values={
        "clearance": PKValue(0.3384, _SANGHAVI + ": CL0 14.1 mL/h"),
        "central_volume": PKValue(3.95, _SANGHAVI),
        "intercompartmental_clearance": PKValue(0.6696, _SANGHAVI + ": 27.9 mL/h"),
        "peripheral_volume": PKValue(3.18, _SANGHAVI),
        "clearance_emax": PKValue(-0.0644, _SANGHAVI + " (monotherapy; -0.202 more with nivolumab, not modelled)"),
        "clearance_t50": PKValue(105.8, _SANGHAVI + ": T50 2540 h"),
        "clearance_hill": PKValue(7.43, _SANGHAVI),
    },
    potency=Potency(18.2, "nM", "binding KD", "KD 18.2 nM to CTLA-4, " + _QSPIO_KD),
    tumor_partition=_MAB_PARTITION,
    covariates=(
        _weight("clearance", 0.694, 80.0, _SANGHAVI),
        _weight("intercompartmental_clearance", 0.694, 80.0, _SANGHAVI),
        _weight("central_volume", 0.600, 80.0, _SANGHAVI),
        _weight("peripheral_volume", 0.600, 80.0, _SANGHAVI),
    ),
    presets={"3mgkg-q3w-x4": "3 mg/kg q3w x4 over 90 min", "1mgkg-q6w": "1 mg/kg q6w over 30 min"},
    description="anti-CTLA-4 (Yervoy); melanoma 3 mg/kg Q3W x4 (90-min infusion in CheckMate 067), NSCLC 1 mg/kg Q6W with nivolumab",
    default_duration_min=90.0,
)

DOCETAXEL = Drug(
    name="docetaxel",
    target="tubulin",
    kind="small molecule (taxane)",
    molecular_weight_kda=0.80788,
    pk=LinearPK(3),
    pk_values={
        "clearance": PKValue(504.0, _TAXOTERE + ": 21 L/h/m2 x 24 h at BSA 1 m2"),
        "central_volume": PKValue(6.94, _OZAWA),
        "intercompartmental_clearance": PKValue(133.9, _OZAWA + ": Q2 5.58 L/h"),
        "peripheral_volume": PKValue(7.39, _OZAWA),
        "intercompartmental_clearance_2": PKValue(300.0, _OZAWA + ": Q3 12.5 L/h"),
        "peripheral_volume_2": PKValue(225.0, _OZAWA),
    },
    potency=Potency(0.05, "ug/mL", "assumed",
                    "assumed: total plasma docetaxel of 0.05 ug/mL (62 nM; about 3 nM unbound at the label's >95 % protein binding) "
                    "for half-maximal cytotoxic effect, in the low-nM range of in-vitro taxane IC50s"),
    tumor_partition=PKValue(1.0, "assumed: a small molecule equilibrates between plasma and tumor interstitium"),
    covariates=(CovariateEffect("clearance", "body_surface_area", "power", 1.0, 1.0, _TAXOTERE, lower=0.0, upper=2.0),),
    presets={"75mgm2-q3w": "75 mg/m2 q3w over 60 min"},
    description="taxane chemotherapy (Taxotere); NSCLC second line 75 mg/m2 Q3W, 1-hour infusion (the OAK and POPLAR control arm)",
    default_duration_min=60.0,
)

MIR25_ANTAGOMIR = Drug(
    name="mir25_antagomir",
    target="mir25",
    kind="oligonucleotide (antagomir)",
    molecular_weight_kda=7.5,
    pk=LinearPK(1),
    pk_values={
        "clearance": PKValue(0.33, "assumed: no clinical miR-25 inhibitor; tissue half-life about 3 weeks (order of LNA anti-miRs such as "
                             "miravirsen, Janssen et al. 2013, doi:10.1056/NEJMoa1209026)"),
        "central_volume": PKValue(10.0, "assumed: no clinical miR-25 inhibitor; distribution volume of an oligonucleotide into tissues"),
    },
    potency=Potency(1.0, "ug/mL", "assumed", "assumed: no potency data; half of miR-25 sequestered at 1 ug/mL tissue exposure"),
    tumor_partition=PKValue(0.5, "assumed: oligonucleotides accumulate in tissues; no tumor data"),
    covariates=(_weight("clearance", 1.0, 70.0, "assumed: clearance proportional to weight"),
                _weight("central_volume", 1.0, 70.0, "assumed: volume proportional to weight")),
    presets={"5mgkg-qw": "5 mg/kg qw over 30 min"},
    description="miR-25 inhibitor (hypothetical; the cold-to-hot intervention); dosing after the anti-miR-122 miravirsen's weekly mg/kg schedule",
)

#: every drug by name
DRUGS: dict[str, Drug] = {d.name: d for d in (PEMBROLIZUMAB, NIVOLUMAB, BEXMARILIMAB, ATEZOLIZUMAB, DURVALUMAB, AVELUMAB, IPILIMUMAB,
                                              DOCETAXEL, MIR25_ANTAGOMIR)}

#: combination and sequence regimens of several drugs, name -> regimen text. The melanoma schedule
#: (Opdivo/Yervoy labels; CheckMate 067, Larkin et al. 2015, doi:10.1056/NEJMoa1504030): nivolumab
#: 1 mg/kg + ipilimumab 3 mg/kg Q3W x4, then nivolumab alone; the labels say only "after completing
#: 4 doses", so the first single-agent dose is placed one 3-week cycle after the 4th (week 12).
COMBINATIONS: dict[str, str] = {
    "nivolumab-ipilimumab-melanoma-q2w": "nivolumab 1 mg/kg q3w x4 over 30 min; ipilimumab 3 mg/kg q3w x4 over 90 min; "
                                         "nivolumab 240 mg q2w over 30 min from week 12",
    "nivolumab-ipilimumab-melanoma-q4w": "nivolumab 1 mg/kg q3w x4 over 30 min; ipilimumab 3 mg/kg q3w x4 over 90 min; "
                                         "nivolumab 480 mg q4w over 30 min from week 12",
}

#: approved (and study) regimens, ``<drug>-<preset>`` and the combinations -> regimen text
PRESETS: dict[str, str] = {**{k: v for d in DRUGS.values() for k, v in d.preset_texts().items()}, **COMBINATIONS}

#: the regimens the demo, the biomarker experiment, calibration and the CLI examples use
STANDARD_REGIMENS: dict[str, str] = {
    "anti-PD-1": PRESETS["pembrolizumab-200mg-q3w"],
    "anti-PD-1 + anti-Clever-1": PRESETS["pembrolizumab-200mg-q3w"] + "; " + PRESETS["bexmarilimab-1mgkg-q3w"],
    "anti-Clever-1": PRESETS["bexmarilimab-1mgkg-q3w"],
    "anti-PD-1 Q4W": PRESETS["nivolumab-480mg-q4w"],
    "anti-PD-L1": PRESETS["atezolizumab-1200mg-q3w"],
    "docetaxel": PRESETS["docetaxel-75mgm2-q3w"],
    "anti-PD-1 + anti-CTLA-4": PRESETS["nivolumab-ipilimumab-melanoma-q2w"],
}

#: the therapy of each arm of the shipped data (data/laleh2022): the arm's own drug at its trial
#: dose (FIR, POPLAR, BIRCH, OAK, IMvigor210: atezolizumab 1200 mg Q3W; the POPLAR and OAK control
#: arms: docetaxel 75 mg/m2 Q3W over 1 h)
ARM_REGIMENS: dict[str, str] = {"immunotherapy": PRESETS["atezolizumab-1200mg-q3w"], "chemotherapy": PRESETS["docetaxel-75mgm2-q3w"]}

#: the regimen text that error messages and help give as an example
EXAMPLE_REGIMEN = "pembrolizumab 200 mg q3w x8"
