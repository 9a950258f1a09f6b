"""SBML Level 3 Version 2 export of one patient's model and regimen (checked by libRoadRunner).

:func:`to_sbml` writes the core model for one parameter set: every parameter of the table
(with its unit as an SBML unit definition), the 14 states as rate rules on non-constant
parameters (the antigen-presenting volume as ``tumor_sensitive_log`` = ln Vs, as the solver
integrates it, with ``tumor_sensitive`` as an assignment rule), the observables as assignment
rules, and the regimen as events that switch each infusion's rate on at its start and off at
its end. The antibody PK is written as its ODEs (immunopd's solver uses their exact solution;
the two agree, see tests/test_sbml.py).

Two things are written as numbers rather than formulas, and the file says so in its notes:
the initial immune state (immunopd solves a scalar root for it) and the individual,
weight-scaled PK values (``*_individual`` parameters, from body weight at export time).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from .errors import InputError, describe

__all__ = ["to_sbml", "unit_definition_parts"]

_BASE = {
    "day": ("second", 1, 0, 86400.0),
    "mm3": ("metre", 3, -3, 1.0),
    "mm": ("metre", 1, -3, 1.0),
    "L": ("litre", 1, 0, 1.0),
    "mL": ("litre", 1, -3, 1.0),
    "mg": ("gram", 1, -3, 1.0),
    "ug": ("gram", 1, -6, 1.0),
    "ng": ("gram", 1, -9, 1.0),
    "kg": ("gram", 1, 3, 1.0),
    "cells": ("item", 1, 0, 1.0),
}


def unit_definition_parts(unit: str) -> list[tuple[str, int, int, float]]:
    """Our unit text (e.g. ``"mm3/(1e6 cells day)"``) as SBML (kind, exponent, scale, multiplier) parts."""
    text = unit.strip()
    if text in ("-", "1", ""):
        return [("dimensionless", 1, 0, 1.0)]
    if text == "%":
        return [("dimensionless", 1, 0, 0.01)]
    out: list[tuple[str, int, int, float]] = []
    _parse_unit(text, 1, out, unit)
    return [p for p in out if not (p[0] == "dimensionless" and p[3] == 1.0)] or [("dimensionless", 1, 0, 1.0)]


def _split_top(text: str) -> list[str]:
    depth, start, parts = 0, 0, []
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == "/" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def _parse_unit(text: str, sign: int, out: list, whole: str) -> None:
    for k, part in enumerate(_split_top(text.strip())):
        s = sign if k == 0 else -sign
        part = part.strip()
        if part.startswith("(") and part.endswith(")"):
            _parse_unit(part[1:-1], s, out, whole)
            continue
        multiplier = 1.0
        for tok in part.split():
            if re.fullmatch(r"\d+(\.\d*)?(e[-+]?\d+)?", tok):
                multiplier *= float(tok)
                continue
            if tok not in _BASE:
                raise InputError(describe("unit token", tok, f"one of {sorted(_BASE)} (in unit {whole!r})"))
            kind, exp, scale, mult = _BASE[tok]
            out.append((kind, s * exp, scale, mult * multiplier))
            multiplier = 1.0
        if multiplier != 1.0:
            out.append(("dimensionless", s, 0, multiplier))


def _unit_id(unit: str) -> str:
    s = unit.replace("%", "percent").replace("/", "_per_").replace("(", "").replace(")", "").replace(" ", "_").replace("-", "dimensionless")
    return "u_" + re.sub(r"[^A-Za-z0-9_]", "", s.replace(".", "p"))


def _growth(law: str) -> str:
    vg = "max(tumor_volume, 1e-6)"
    return {
        "exponential": "growth_rate",
        "logistic": f"growth_rate * (1 - {vg} / carrying_capacity)",
        "gompertz": f"growth_rate * ln(carrying_capacity / {vg})",
        "bertalanffy": f"growth_rate / (1 - bertalanffy_exponent) * ((carrying_capacity / {vg})^(1 - bertalanffy_exponent) - 1)",
    }[law]


def to_sbml(regimen=None, params: Mapping | None = None, *, weight: float | None = None, growth_law: str = "gompertz",
            horizon: float = 365.0) -> str:
    """SBML L3V2 text for one patient (scalar parameters) under ``regimen`` up to ``horizon`` days."""
    import jax.numpy as jnp
    import libsbml

    from .models.core import OBSERVABLES, STATE_UNITS
    from .solve import _drug_constants, prepare

    model, reg, values, n, weight_given = prepare(regimen, params, weight=weight, growth_law=growth_law)
    if n != 1 or any(np.ndim(v) for v in values.values()):
        raise InputError(describe("params", "arrays over patients", "scalar values: SBML export is for one patient"))
    p = {k: float(v) for k, v in values.items()}
    p.update(_drug_constants(reg))
    pj = {k: jnp.asarray(v) for k, v in p.items()}
    pkv = {t: tuple(float(x) for x in vals) for t, vals in model.pk_values(pj).items()}
    y0 = np.asarray(model.initial_state(pj), dtype=float)
    doses = reg.doses(horizon, weight=p["body_weight"] if weight_given else None)

    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId("immunopd_core")
    m.setName(f"immunopd core model ({growth_law}), regimen: {reg.describe()}")
    m.setTimeUnits("day")
    notes = ("<body xmlns='http://www.w3.org/1999/xhtml'><p>Exported by immunopd. Initial immune state: quasi-steady "
             "state at baseline volume, computed by immunopd and written as numbers. *_individual PK parameters: "
             "allometrically scaled to body weight at export time.</p></body>")
    m.setNotes(notes)
    units_done: set[str] = set()

    def unit(u: str) -> str:
        uid = _unit_id(u)
        if uid not in units_done:
            ud = m.createUnitDefinition()
            ud.setId(uid)
            ud.setName(u)
            for kind, exp, scale, mult in unit_definition_parts(u):
                x = ud.createUnit()
                x.setKind(libsbml.UnitKind_forName(kind))
                x.setExponent(exp)
                x.setScale(scale)
                x.setMultiplier(mult)
            units_done.add(uid)
        return uid

    ud = m.createUnitDefinition()
    ud.setId("day")
    x = ud.createUnit()
    x.setKind(libsbml.UNIT_KIND_SECOND), x.setExponent(1), x.setScale(0), x.setMultiplier(86400.0)

    def param(pid, value, u, constant=True, name=None):
        q = m.createParameter()
        q.setId(pid)
        q.setValue(float(value))
        q.setConstant(constant)
        q.setUnits(unit(u))
        if name:
            q.setName(name)
        return q

    for spec in model.parameters:
        param(spec.name, p[spec.name], spec.unit, name=spec.description)
    for k, v in _drug_constants(reg).items():
        param(k, v, "kg" if k.endswith("ref_weight") else "-")
    for target in model.targets:
        for label, val, u in zip(("cl", "v1", "q", "v2"), pkv[target], ("L/day", "L", "L/day", "L")):
            param(f"{target}_{label}_individual", val, u)
        param(f"infusion_rate_{target}", 0.0, "mg/day", constant=False)

    # states (rate rules on non-constant parameters)
    state_ids = ["tumor_sensitive_log"] + list(model.states[1:])
    for i, sid in enumerate(state_ids):
        param(sid, y0[i], "-" if i == 0 else STATE_UNITS[model.states[i]], constant=False)

    sld0 = (6.0 * (math.exp(y0[0]) + y0[1]) / math.pi) ** (1.0 / 3.0)
    param("sld_baseline", sld0, "mm")
    rules = {
        "tumor_sensitive": ("exp(tumor_sensitive_log)", "mm3"),
        "tumor_volume": ("tumor_sensitive + tumor_resistant", "mm3"),
        "ifn_signal": ("effector / (effector + ifn_half_effector)", "-"),
        "pdl1_level": ("pdl1_baseline + pdl1_upregulation * ifn_signal", "1"),
        "anti_pd1_conc": ("anti_pd1_central / pd1_v1_individual", "ug/mL"),
        "anti_clever1_conc": ("anti_clever1_central / clever1_v1_individual", "ug/mL"),
        "pd1_occupancy": ("pd1_tumor_partition * max(anti_pd1_conc, 0) / (pd1_tumor_partition * max(anti_pd1_conc, 0) + pd1_ec50)", "1"),
        "clever1_occupancy": ("clever1_tumor_partition * max(anti_clever1_conc, 0) / (clever1_tumor_partition * max(anti_clever1_conc, 0) + clever1_ec50)", "1"),
        "killing_factor": ("1 / (1 + checkpoint_strength * pdl1_level * (1 - pd1_occupancy)) / (1 + treg_suppression * treg + mdsc_suppression * mdsc)"
                           " / (1 + sclever1_suppression * sclever1_plasma) / (1 + metabolic_suppression * tumor_volume)", "1"),
        "growth_specific": (_growth(growth_law), "1/day"),
        "kill_specific": ("kill_rate * killing_factor * effector / (kill_half_volume + tumor_volume)", "1/day"),
        "sld": ("(6 * max(tumor_volume, 0) / pi)^(1/3)", "mm"),
        "pct_change": ("100 * (sld / sld_baseline - 1)", "%"),
        "cd8_density": ("1e6 * effector / max(tumor_volume, 1e-9)", "cells/mm3"),
        "infiltration_score": ("cd8_density / (cd8_density + infiltration_half_density)", "1"),
    }
    rates = {
        "tumor_sensitive_log": "growth_specific - kill_specific - antigen_loss_rate",
        "tumor_resistant": "growth_specific * tumor_resistant - resistant_kill_fraction * kill_specific * tumor_resistant + antigen_loss_rate * tumor_sensitive",
        "effector": "effector_influx * (1 - tcell_exclusion) + effector_expansion * killing_factor * effector * tumor_sensitive / (expansion_half_volume + tumor_sensitive)"
                    " - effector_death * effector - exhaustion_rate * pdl1_level * (1 - pd1_occupancy) * effector + reinvigoration_rate * pd1_occupancy * exhausted",
        "exhausted": "exhaustion_rate * pdl1_level * (1 - pd1_occupancy) * effector - reinvigoration_rate * pd1_occupancy * exhausted - exhausted_death * exhausted",
        "treg": "treg_influx + treg_recruitment * tumor_volume / (recruitment_half_volume + tumor_volume) - treg_death * treg",
        "mdsc": "mdsc_influx + mdsc_recruitment * tumor_volume / (recruitment_half_volume + tumor_volume) - mdsc_death * mdsc",
        "clever1_macrophage": "macrophage_influx + macrophage_recruitment * tumor_volume / (recruitment_half_volume + tumor_volume)"
                              " - macrophage_death * clever1_macrophage - reprogramming_rate * clever1_occupancy * clever1_macrophage",
        "sclever1_plasma": "sclever1_release * clever1_macrophage * (1 + sclever1_inflammation_boost * ifn_signal) * (1 - sclever1_release_block * clever1_occupancy)"
                           " - sclever1_clearance * (sclever1_plasma - sclever1_healthy)",
    }
    for target, a in (("pd1", "anti_pd1"), ("clever1", "anti_clever1")):
        cl, v1, q, v2 = (f"{target}_{x}_individual" for x in ("cl", "v1", "q", "v2"))
        rates[f"{a}_central"] = f"infusion_rate_{target} - {cl} * {a}_central / {v1} - {q} * ({a}_central / {v1} - {a}_peripheral / {v2})"
        rates[f"{a}_peripheral"] = f"{q} * ({a}_central / {v1} - {a}_peripheral / {v2})"
        rates[f"{a}_eliminated"] = f"{cl} * {a}_central / {v1}"
    for rid, (formula, u) in rules.items():
        param(rid, 0.0, u, constant=False)
        rule = m.createAssignmentRule()
        rule.setVariable(rid)
        rule.setMath(_math(libsbml, formula))
    for sid in state_ids:
        rule = m.createRateRule()
        rule.setVariable(sid)
        rule.setMath(_math(libsbml, rates[sid]))
    unknown = set(OBSERVABLES) - set(rules)
    assert not unknown, unknown  # every observable is exported

    from .models.pk import DRUGS

    for k, (drug, start, amount, duration) in enumerate(doses):
        target = DRUGS[drug].target
        rate = amount / duration
        for label, t, sign in (("start", start, "+"), ("end", start + duration, "-")):
            ev = m.createEvent()
            ev.setId(f"dose{k + 1}_{label}")
            ev.setUseValuesFromTriggerTime(True)
            trig = ev.createTrigger()
            trig.setInitialValue(False)
            trig.setPersistent(True)
            trig.setMath(_math(libsbml, f"time >= {t!r}"))
            ea = ev.createEventAssignment()
            ea.setVariable(f"infusion_rate_{target}")
            ea.setMath(_math(libsbml, f"infusion_rate_{target} {sign} {rate!r}"))
    text = libsbml.writeSBMLToString(doc)
    doc2 = libsbml.readSBMLFromString(text)
    errors = [doc2.getError(i) for i in range(doc2.getNumErrors()) if doc2.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    if errors:
        raise RuntimeError("invalid SBML produced: " + "; ".join(e.getMessage() for e in errors[:3]))
    return text


def _math(libsbml, formula: str):
    ast = libsbml.parseL3Formula(formula)
    if ast is None:
        raise RuntimeError(f"cannot parse {formula!r}: {libsbml.getLastParseL3Error()}")
    return ast
