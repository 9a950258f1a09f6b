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
"""

from __future__ import annotations

from ..drugs import CovariateEffect, Drug, PKValue, Potency
from ..pkmodels import LinearPK, TimeVaryingClearancePK

__all__ = ["DRUGS", "PRESETS", "STANDARD_REGIMENS", "EXAMPLE_REGIMEN"]

_AHAMADI = "Ahamadi et al. 2017, CPT Pharmacometrics Syst Pharmacol 6:49, doi:10.1002/psp4.12139 (Table 3, as transcribed in nlmixr2lib Ahamadi_2017_pembrolizumab)"
_BAJAJ = "Bajaj et al. 2017, CPT Pharmacometrics Syst Pharmacol 6:58, doi:10.1002/psp4.12143 (Table 1, as transcribed in nlmixr2lib Bajaj_2017_nivolumab)"
_IGG_ASSUMED = "assumed: no public population PK for bexmarilimab; typical IgG4 two-compartment values (cf. pembrolizumab/nivolumab)"
_PARTITION = PKValue(0.2, "assumed: tumor interstitial/serum IgG ratio 0.1-0.3 (QSP-IO implies 0.86; model-reference 3.3)")


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
    potency=Potency(0.535, "ug/mL", "functional IC50", "IL-2 stimulation IC50 0.535 ug/mL, Elassaiss-Schaap et al. 2017, doi:10.1002/psp4.12132"),
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
    presets={"200mg-q3w": "200 mg q3w over 30 min", "400mg-q6w": "400 mg q6w over 30 min", "2mgkg-q3w": "2 mg/kg q3w over 30 min"},
    description="anti-PD-1 (Keytruda); label doses 200 mg Q3W or 400 mg Q6W, 30-min infusion",
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
    potency=Potency(2.6, "nM", "binding KD", "KD 2.6 nM (QSP-IO example 1, citing Wang et al. 2014, doi:10.1158/2326-6066.CIR-14-0040)"),
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
    tumor_partition=PKValue(0.2, "assumed: as for anti-PD-1"),
    covariates=tuple(_weight(role, 0.5, 70.0, _IGG_ASSUMED) for role in
                     ("clearance", "intercompartmental_clearance", "central_volume", "peripheral_volume")),
    presets={"1mgkg-q3w": "1 mg/kg q3w over 60 min"},
    description="anti-Clever-1 (macrophage-reprogramming antibody, Faron); no approved dose",
    default_duration_min=60.0,
)

#: every drug by name
DRUGS: dict[str, Drug] = {d.name: d for d in (PEMBROLIZUMAB, NIVOLUMAB, BEXMARILIMAB)}

#: approved (and study) regimens, ``<drug>-<preset>`` -> regimen text
PRESETS: dict[str, str] = {k: v for d in DRUGS.values() for k, v in d.preset_texts().items()}

#: the regimens the demo, the biomarker experiment, calibration and the CLI examples use
STANDARD_REGIMENS: dict[str, str] = {
    "anti-PD-1": PRESETS["pembrolizumab-200mg-q3w"],
    "anti-PD-1 + anti-Clever-1": PRESETS["pembrolizumab-200mg-q3w"] + "; " + PRESETS["bexmarilimab-1mgkg-q3w"],
    "anti-Clever-1": PRESETS["bexmarilimab-1mgkg-q3w"],
    "anti-PD-1 Q4W": PRESETS["nivolumab-480mg-q4w"],
}

#: the regimen text that error messages and help give as an example
EXAMPLE_REGIMEN = "pembrolizumab 200 mg q3w x8"
