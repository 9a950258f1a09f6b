"""SBML Level 3 Version 2 export of one patient's model and regimen, generated from its declaration.

:func:`to_sbml` writes, for one parameter set, everything from the model specification
(:mod:`immunopd.spec`), so no equation is restated here:

- every parameter of the table (with its unit as an SBML unit definition);
- every assignment of the model as an assignment rule (the same expression text the JAX
  right-hand side evaluates, printed as SBML infix by :meth:`immunopd.expr.Expression.to_sbml`);
- every state as a rate rule on a non-constant parameter, its rate summed from the model's
  fluxes (a state integrated in log space, as the solver does, is ``<name>_log``, with
  ``<name>`` as an assignment rule);
- each dosed drug's PK as ODEs (immunopd's solver uses their exact solution; the two agree,
  see tests/test_sbml.py), its covariate effects as formulas of the patient covariates, a
  time-varying clearance as a formula of ``time``, and each target's occupancy as the
  competitive-binding formula of the drugs on it;
- the observables as assignment rules, and the regimen as events that switch each infusion's
  rate on at its start and off at its end (a bolus adds its amount at once).

One thing is written as numbers rather than formulas, and the file says so in its notes: the
initial state of the states without an ``initial`` expression (immunopd solves the untreated
steady state for them), and the values at time 0 that observables refer to (``*_at_start``).
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
    "g": ("gram", 1, 0, 1.0),
    "mg": ("gram", 1, -3, 1.0),
    "ug": ("gram", 1, -6, 1.0),
    "ng": ("gram", 1, -9, 1.0),
    "kg": ("gram", 1, 3, 1.0),
    "cells": ("item", 1, 0, 1.0),
    "min": ("second", 1, 0, 60.0),
    "m2": ("metre", 2, 0, 1.0),
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


def _pk_formulas(drug) -> tuple[dict[str, str], dict[str, str]]:
    """(assignment rules, rate rules) of one drug's PK as SBML infix, from its record."""
    rules: dict[str, str] = {}
    for role in drug.pk.roles:
        factors = [drug.parameter_name(role)]
        for c in drug.covariates:
            if c.role != role:
                continue
            eff = drug.covariate_parameter(c)
            if c.form == "power":
                factors.append(f"({c.covariate} / {c.reference!r})^{eff}")
            elif c.form == "exponential":
                factors.append(f"exp({eff} * ({c.covariate} - {c.reference!r}))")
            else:
                factors.append(f"(1 + {eff})^{c.covariate}")
        rules[f"{drug.name}_{role}_individual"] = " * ".join(factors)
    ind = {role: f"{drug.name}_{role}_individual" for role in drug.pk.roles}
    cl = ind["clearance"]
    if "clearance_hill" in ind:
        h, t50, emax = ind["clearance_hill"], ind["clearance_t50"], ind["clearance_emax"]
        change = f"{emax} * time^{h} / ({t50}^{h} + time^{h})"
        rules[f"{drug.name}_clearance_at_time"] = (f"{cl} * exp({change})" if drug.pk.form == "exponential" else f"{cl} * (1 + {change})")
        cl = f"{drug.name}_clearance_at_time"
    n = drug.pk.compartments
    names = [f"{drug.name}_central"] + [f"{drug.name}_peripheral_{i}" for i in range(1, n)]
    vols = [ind["central_volume"]] + [ind.get("peripheral_volume"), ind.get("peripheral_volume_2")][: n - 1]
    qs = [ind.get("intercompartmental_clearance"), ind.get("intercompartmental_clearance_2")][: n - 1]
    conc = [f"{a} / {v}" for a, v in zip(names, vols)]
    rates = {names[0]: f"infusion_rate_{drug.name} - {cl} * {conc[0]}"}
    for i in range(1, n):
        flow = f"{qs[i - 1]} * ({conc[0]} - {conc[i]})"
        rates[names[0]] += f" - {flow}"
        rates[names[i]] = flow
    rates[f"{drug.name}_eliminated"] = f"{cl} * {conc[0]}"
    rules[f"{drug.name}_concentration"] = conc[0]
    return rules, rates


def _state_rate(model, state) -> str:
    """The rate rule of one state, summed from the model's fluxes, as SBML infix."""
    per_capita, total = [], []
    for f in model.fluxes:
        rate = model.expression(f"flux:{f.name}").to_sbml()
        for ref, sign in ((f.source, "-"), (f.sink, "+")):
            if ref != state.name:
                continue
            if state.log and f.per == state.name:
                per_capita.append(f"{sign} ({rate})")
            else:
                total.append(f"{sign} ({rate})" + (f" * {f.per}" if f.per else ""))
    if state.log:
        text = " ".join(per_capita) + (f" + ({' '.join(total)}) / {state.name}" if total else "")
    else:
        text = " ".join(total)
    return text.strip() or "0"


def to_sbml(regimen=None, params: Mapping | None = None, *, weight: float | None = None, growth_law: str = "gompertz",
            horizon: float = 365.0, model=None, height: float | None = None, bsa: float | None = None) -> str:
    """SBML L3V2 text for one patient (scalar parameters) of ``model`` under ``regimen`` up to ``horizon`` days
    (``weight`` kg, ``height`` cm, ``bsa`` m2 as in :func:`immunopd.simulate`)."""
    import jax
    import jax.numpy as jnp
    import libsbml

    from .initial import initial_state
    from .integrate import status_message
    from .solve import prepare

    if isinstance(horizon, bool) or not isinstance(horizon, (int, float)) or not math.isfinite(horizon) or horizon <= 0:
        raise InputError(describe("horizon", horizon, "a finite export horizon > 0 (day)"))
    model, reg, values, n, given = prepare(regimen, params, weight=weight, height=height, bsa=bsa, growth_law=growth_law, model=model)
    if n != 1 or any(np.ndim(v) for v in values.values()):
        raise InputError(describe("params", "arrays over patients", "scalar values: SBML export is for one patient"))
    p = {k: float(v) for k, v in values.items()}
    pj = {k: jnp.asarray(v) for k, v in p.items()}
    y0, ok = jax.jit(lambda q: initial_state(model, q))(pj)
    if not bool(ok):
        from .errors import SolverError

        raise SolverError(f"cannot export: {status_message(99)}")
    start_env = model.environment(y0, pj, {}, jnp)
    start = {**{k: float(v) for k, v in start_env.items() if k not in p}, **{k: float(v) for k, v in model.observe(start_env, None, jnp).items()}}
    doses = reg.doses(horizon, weight=p["body_weight"] if "body_weight" in given else None,
                     bsa=p["body_surface_area"] if "body_surface_area" in given else None)
    drugs = [model.drug(d) for d in reg.drugs]

    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId(re.sub(r"\W", "_", model.name))
    m.setName(f"{model.name} ({model.variant}), regimen: {reg.describe()}")
    m.setTimeUnits("day")
    notes = ("<body xmlns='http://www.w3.org/1999/xhtml'><p>Exported by immunopd from the model declaration. Initial state of "
             "the states without an initial expression: the untreated steady state at baseline, solved by immunopd and written "
             "as numbers; *_at_start: values at time 0, as numbers.</p></body>")
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

    def assign(rid, formula, u):
        param(rid, 0.0, u, constant=False)
        rule = m.createAssignmentRule()
        rule.setVariable(rid)
        rule.setMath(_math(libsbml, formula))

    for spec in model.parameters:
        param(spec.name, p[spec.name], spec.unit, name=spec.description)
    rates: dict[str, str] = {}
    for drug in drugs:
        rules, drug_rates = _pk_formulas(drug)
        param(f"infusion_rate_{drug.name}", 0.0, "mg/day", constant=False)
        for rid, formula in rules.items():
            assign(rid, formula, "ug/mL" if rid.endswith("_concentration") else "-")
        for sid in drug_rates:
            param(sid, 0.0, "mg", constant=False)
        rates.update(drug_rates)
    for target in model.target_names:
        on = [d for d in drugs if d.target == target]
        exposure = " + ".join(f"{d.name}_tumor_partition * max({d.name}_concentration, 0) / {d.name}_ec50" for d in on) or "0"
        assign(f"{target}_occupancy", f"({exposure}) / (1 + {exposure})", "1")
    for s_ in model.states:
        sid = f"{s_.name}_log" if s_.log else s_.name
        param(sid, float(y0[s_.name]), "-" if s_.log else s_.unit, constant=False)
        rates[sid] = _state_rate(model, s_)
        if s_.log:
            assign(s_.name, f"exp({sid})", s_.unit)
    for a in model.assignments:
        assign(a.name, model.expression(a.name).to_sbml(), a.unit)
    referenced = {n for o in model.observables if o.expression is not None
                  for n in model.expression(f"observable:{o.name}").names if n.endswith("_at_start")}
    for name in sorted(referenced):
        param(name, start[name[: -len("_at_start")]], "-")
    for o in model.observables:
        if o.expression is not None:
            assign(o.name, model.expression(f"observable:{o.name}").to_sbml(), o.unit)
    for sid, formula in rates.items():
        rule = m.createRateRule()
        rule.setVariable(sid)
        rule.setMath(_math(libsbml, formula))

    for k, (drug, t0, amount, duration) in enumerate(doses):
        events = [("bolus", t0, f"{drug}_central", f"{drug}_central + {amount!r}")] if duration == 0 else [
            ("start", t0, f"infusion_rate_{drug}", f"infusion_rate_{drug} + {amount / duration!r}"),
            ("end", t0 + duration, f"infusion_rate_{drug}", f"infusion_rate_{drug} - {amount / duration!r}"),
        ]
        for label, t, target, formula in events:
            ev = m.createEvent()
            ev.setId(f"dose{k + 1}_{label}")
            ev.setUseValuesFromTriggerTime(True)
            trig = ev.createTrigger()
            trig.setInitialValue(False)
            trig.setPersistent(True)
            trig.setMath(_math(libsbml, f"time >= {t!r}"))
            ea = ev.createEventAssignment()
            ea.setVariable(target)
            ea.setMath(_math(libsbml, formula))
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
