"""Model specifications: states, fluxes, assignments, observables, targets and mechanisms.

A model is declared, not written: each :class:`Mechanism` brings its states, parameters,
intermediate quantities (:class:`Assignment`) and the fluxes that move or create amount
(:class:`Flux`), and :class:`Model` assembles them, checks every name, and derives from the
one declaration

- the right-hand side over named states (:meth:`Model.derivatives`), which the integrator,
  the scipy reference and the SBML export all use;
- the pre-treatment initial state (:meth:`Model.initial_state`): states with an ``initial``
  expression take it, the others solve the untreated system's steady state at baseline by a
  damped Newton iteration in log space, with a status when none is found;
- the observables, the parameter table (model parameters + every drug's own), the targets.

Equations read states and parameters by name: ``env["effector"]``, never ``y[2]``. The
integration layer (:mod:`immunopd.integrate`) is the only place that packs states into a
vector, through :attr:`Model.state_names`.

A flux ``Flux("killing", rate="kill_per_volume", source="tumor_sensitive", per="tumor_sensitive")``
removes ``rate * tumor_sensitive`` per day from its source and adds it to its sink (either may
be omitted: production or loss). ``per`` marks a per-capita rate; for a state integrated in
log space (``State(log=True)``) a per-capita flux enters ``d ln x/dt`` as the rate itself, so
the state stays positive and exact however far it falls.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from .errors import ModelSpecError, describe
from .expr import Expression
from .models.parameters import Parameter, ParameterTable

__all__ = ["State", "Assignment", "Flux", "Observable", "Target", "Mechanism", "Model"]


@dataclass(frozen=True)
class State:
    """One state: ``unit`` of its value, ``log`` if integrated as its natural log.

    ``initial`` is an expression of parameters for its pre-treatment value; ``None`` means it
    starts at the untreated steady state (solved for, from ``guess``, default 1).
    """

    name: str
    unit: str
    description: str
    log: bool = False
    initial: str | None = None
    guess: str | None = None


@dataclass(frozen=True)
class Assignment:
    """A named intermediate quantity (an SBML assignment rule)."""

    name: str
    expression: str
    unit: str
    description: str


@dataclass(frozen=True)
class Flux:
    """``rate`` (times state ``per`` when given) leaves ``source`` and enters ``sink`` per day."""

    name: str
    rate: str
    source: str | None = None
    sink: str | None = None
    per: str | None = None
    description: str = ""


@dataclass(frozen=True)
class Observable:
    """An output over time: ``expression`` (default: the assignment of the same name).

    Observables may use ``<name>_at_start``: the value of any assignment or observable at
    time 0 (e.g. the baseline diameter of a % change).
    """

    name: str
    unit: str
    description: str
    expression: str | None = None


@dataclass(frozen=True)
class Target:
    """What a drug acts on: a receptor (PD-1, Clever-1, ...) or a non-antibody effect site.

    Expressions read its fractional occupancy (0-1) as ``<name>_occupancy``; with no drug on
    it, 0. ``label`` is how people write it.
    """

    name: str
    label: str
    description: str
    kind: str = "receptor"  # or "effect site"


@dataclass(frozen=True)
class Mechanism:
    """A part of the biology: the states, parameters and terms it adds."""

    name: str
    description: str
    states: tuple[State, ...] = ()
    parameters: tuple[Parameter, ...] = ()
    assignments: tuple[Assignment, ...] = ()
    fluxes: tuple[Flux, ...] = ()
    observables: tuple[Observable, ...] = ()
    targets: tuple[Target, ...] = ()


def _unique(kind: str, names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ModelSpecError(describe(f"{kind} name", name, "unique names (declared twice)"))
        seen.add(name)


@dataclass(frozen=True, eq=False)
class Model:
    """A model assembled from mechanisms and the drugs it can dose.

    Hashable by identity, so compiled solvers are cached per model object: build a model once
    and reuse it (:func:`immunopd.models.core.core_model` returns shared instances).
    """

    name: str
    mechanisms: tuple[Mechanism, ...]
    drugs: tuple = ()  # immunopd.drugs.Drug records
    description: str = ""
    variant: str = ""  # e.g. the growth law: part of the model's identity in results
    # derived at construction
    states: tuple[State, ...] = field(init=False)
    targets: tuple[Target, ...] = field(init=False)
    parameters: ParameterTable = field(init=False)
    assignments: tuple[Assignment, ...] = field(init=False)  # in evaluation order
    fluxes: tuple[Flux, ...] = field(init=False)
    observables: tuple[Observable, ...] = field(init=False)
    _expr: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        mechs = self.mechanisms
        _unique("mechanism", (m.name for m in mechs))
        states = tuple(s for m in mechs for s in m.states)
        targets = tuple(t for m in mechs for t in m.targets)
        assignments = [a for m in mechs for a in m.assignments]
        fluxes = tuple(f for m in mechs for f in m.fluxes)
        observables = tuple(o for m in mechs for o in m.observables)
        _unique("state", (s.name for s in states))
        _unique("target", (t.name for t in targets))
        _unique("flux", (f.name for f in fluxes))
        _unique("observable", (o.name for o in observables))
        target_names = {t.name for t in targets}
        drug_names = [d.name for d in self.drugs]
        _unique("drug", drug_names)
        from .drugs import register

        for d in self.drugs:
            register(d)
            if d.target not in target_names:
                raise ModelSpecError(describe(f"drug {d.name}.target", d.target, f"a target of model {self.name!r}: {sorted(target_names)}"))
        own = [p for m in mechs for p in m.parameters]
        drug_params = [p for d in self.drugs for p in d.parameters()]
        table = ParameterTable(tuple(own + drug_params))  # raises on duplicates
        for d in self.drugs:
            for cov in d.covariates:
                if cov.covariate not in table:
                    raise ModelSpecError(describe(f"drug {d.name} covariate", cov.covariate, "a parameter of the model (patient covariate)"))

        occupancy_names = {f"{t}_occupancy" for t in target_names}
        base = {s.name for s in states} | set(table.names) | occupancy_names
        # every name is defined once across states, parameters, assignments and occupancies
        _unique("state, parameter, assignment or occupancy", [s.name for s in states] + list(table.names)
                + [a.name for a in assignments] + sorted(occupancy_names))
        expr: dict[str, Expression] = {}
        for a in assignments:
            expr[a.name] = Expression(a.expression, f"assignment {a.name}")
        ordered = _topological(assignments, expr, base)
        known = base | {a.name for a in assignments}
        state_names = {s.name for s in states}
        for f in fluxes:
            e = Expression(f.rate, f"flux {f.name}.rate")
            _check_names(e, known, f"flux {f.name}.rate")
            for role in ("source", "sink", "per"):
                ref = getattr(f, role)
                if ref is not None and ref not in state_names:
                    raise ModelSpecError(describe(f"flux {f.name}.{role}", ref, f"a state of the model: {sorted(state_names)}"))
            if f.source is None and f.sink is None:
                raise ModelSpecError(describe(f"flux {f.name}", "no source and no sink", "a source, a sink or both"))
            expr[f"flux:{f.name}"] = e
        param_names = set(table.names)
        for s in states:
            if s.initial is not None:
                e = Expression(s.initial, f"state {s.name}.initial")
                _check_names(e, param_names, f"state {s.name}.initial (parameters only)")
                expr[f"initial:{s.name}"] = e
            if s.guess is not None:
                e = Expression(s.guess, f"state {s.name}.guess")
                _check_names(e, param_names, f"state {s.name}.guess (parameters only)")
                expr[f"guess:{s.name}"] = e
        at_start = {f"{n}_at_start" for n in known - param_names} | {f"{o.name}_at_start" for o in observables}
        for o in observables:
            if o.expression is None:
                if o.name not in known:
                    raise ModelSpecError(describe(f"observable {o.name}", o.name, "the name of a state or assignment, or an expression"))
                continue
            e = Expression(o.expression, f"observable {o.name}")
            _check_names(e, known | at_start | {x.name for x in observables}, f"observable {o.name}")
            expr[f"observable:{o.name}"] = e
        _topological_observables(observables, expr)
        for name, value in (("states", states), ("targets", targets), ("parameters", table), ("assignments", tuple(ordered)),
                            ("fluxes", fluxes), ("observables", observables), ("_expr", expr)):
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ names
    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def log_states(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states if s.log)

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.targets)

    @property
    def observable_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.observables)

    @functools.cached_property
    def drug_index(self) -> dict:
        return {d.name: d for d in self.drugs}

    def drug(self, name: str):
        """The drug record called ``name`` (case-insensitive)."""
        key = name.lower() if isinstance(name, str) else name
        if key not in self.drug_index:
            raise ModelSpecError(describe("drug", name, f"a drug of model {self.name!r}: {sorted(self.drug_index)}"))
        return self.drug_index[key]

    def state(self, name: str) -> State:
        return next(s for s in self.states if s.name == name)

    def unit_of(self, name: str) -> tuple[str, str]:
        """(unit, description) of a state or observable."""
        for s in self.states:
            if s.name == name:
                return s.unit, s.description
        for o in self.observables:
            if o.name == name:
                return o.unit, o.description
        raise ModelSpecError(describe("output name", name, f"a state or observable of {self.name!r}"))

    # ------------------------------------------------------------------ derived models
    def extend(self, *mechanisms: Mechanism, drugs: Iterable = (), name: str | None = None) -> "Model":
        """A new model with more mechanisms and drugs (the declaration is not edited in place)."""
        return replace(self, name=name or self.name, mechanisms=self.mechanisms + tuple(mechanisms), drugs=self.drugs + tuple(drugs))

    def without(self, mechanism: str) -> "Model":
        """The same model without one mechanism (everything that uses its names must go too)."""
        if mechanism not in {m.name for m in self.mechanisms}:
            raise ModelSpecError(describe("mechanism", mechanism, f"one of {[m.name for m in self.mechanisms]}"))
        return replace(self, mechanisms=tuple(m for m in self.mechanisms if m.name != mechanism))

    # ------------------------------------------------------------------ evaluation
    def environment(self, states: Mapping, p: Mapping, occupancy: Mapping, np_like) -> dict:
        """Every state (natural units), parameter, occupancy and assignment by name.

        ``states`` holds integration coordinates (ln x for log states); ``occupancy`` maps
        target name -> occupancy (missing targets are 0); ``np_like`` is ``jax.numpy`` or numpy.
        """
        funcs = _functions(np_like)
        env = dict(p)
        for s in self.states:
            env[s.name] = np_like.exp(states[s.name]) if s.log else states[s.name]
        for t in self.targets:
            env[f"{t.name}_occupancy"] = occupancy.get(t.name, 0.0)
        for a in self.assignments:
            env[a.name] = self._expr[a.name].evaluate(env, funcs)
        return env

    def derivatives(self, env: Mapping, np_like) -> dict:
        """d/dt of each state in integration coordinates (d ln x/dt for log states)."""
        funcs = _functions(np_like)
        total: dict[str, object] = {s.name: 0.0 for s in self.states}
        per_capita: dict[str, object] = {s.name: 0.0 for s in self.states}
        logs = set(self.log_states)
        for f in self.fluxes:
            rate = self._expr[f"flux:{f.name}"].evaluate(env, funcs)
            for state, sign in ((f.source, -1.0), (f.sink, 1.0)):
                if state is None:
                    continue
                if state in logs and f.per == state:
                    per_capita[state] = per_capita[state] + sign * rate
                else:
                    amount = rate * env[f.per] if f.per is not None else rate
                    total[state] = total[state] + sign * amount
        out = {}
        for s in self.states:
            if s.log:
                # only divide when something enters other than per capita: x underflows to 0 far
                # into an eradication, where per-capita terms alone stay exact (and 0/0 would be NaN)
                mixed = self._mixed_log_states
                out[s.name] = per_capita[s.name] + total[s.name] / env[s.name] if s.name in mixed else per_capita[s.name]
            else:
                out[s.name] = total[s.name]
        return out

    @functools.cached_property
    def _mixed_log_states(self) -> frozenset[str]:
        """Log states that some flux changes other than per capita."""
        return frozenset(st for f in self.fluxes for st in (f.source, f.sink)
                         if st in self.log_states and f.per != st)

    def observe(self, env: Mapping, start_env: Mapping | None, np_like) -> dict:
        """Every observable at one time, given the environment there and at time 0."""
        funcs = _functions(np_like)
        out: dict[str, object] = {}
        at_start = start_env is None  # evaluating at time 0 itself: x_at_start is x
        extra = {f"{k}_at_start": v for k, v in (env if at_start else start_env).items()}
        local = {**env, **extra}
        for o in self.observables:
            value = env[o.name] if o.expression is None else self._expr[f"observable:{o.name}"].evaluate(local, funcs)
            out[o.name] = value
            local[o.name] = value
            if at_start:
                local[f"{o.name}_at_start"] = value
        return out

    def initial_values(self, p: Mapping, np_like) -> dict:
        """Each state's ``initial`` expression or ``guess`` (default 1), by name, natural units."""
        funcs = _functions(np_like)
        out = {}
        for s in self.states:
            key = f"initial:{s.name}" if s.initial is not None else f"guess:{s.name}"
            out[s.name] = self._expr[key].evaluate(dict(p), funcs) if key in self._expr else 1.0
        return out

    def expression(self, key: str) -> Expression:
        """The parsed expression of an assignment (its name), ``flux:<name>``, ``observable:<name>``,
        ``initial:<state>`` or ``guess:<state>`` (for exporters)."""
        return self._expr[key]

    # ------------------------------------------------------------------ documentation
    def describe(self) -> str:
        """The equations as text, generated from the declaration (``immunopd model``)."""
        lines = [f"model {self.name}" + (f" ({self.variant})" if self.variant else ""), ""]
        for m in self.mechanisms:
            lines.append(f"[{m.name}] {m.description}")
            for a in m.assignments:
                lines.append(f"    {a.name} = {a.expression}   [{a.unit}]")
            for f in m.fluxes:
                amount = f"{f.rate} * {f.per}" if f.per else f.rate
                lines.append(f"    {f.name}: {f.source or '0'} -> {f.sink or '0'} at {amount}")
        return "\n".join(lines)


def _check_names(e: Expression, known: set[str], where: str) -> None:
    unknown = sorted(e.names - known)
    if unknown:
        raise ModelSpecError(describe(f"{where} name", unknown[0], "a state, parameter, assignment or <target>_occupancy of the model"))


def _topological(assignments: list[Assignment], expr: dict, base: set[str]) -> list[Assignment]:
    """Assignments in an order where each comes after what it reads; errors for unknown names and cycles."""
    by_name = {a.name: a for a in assignments}
    for a in assignments:
        _check_names(expr[a.name], base | set(by_name), f"assignment {a.name}")
    done: list[Assignment] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ModelSpecError(describe("assignment cycle", " -> ".join(chain + (name,)), "assignments that do not depend on themselves"))
        state[name] = 1
        for dep in sorted(expr[name].names & set(by_name)):
            visit(dep, chain + (name,))
        state[name] = 2
        done.append(by_name[name])

    for a in assignments:
        visit(a.name, ())
    return done


def _topological_observables(observables: tuple[Observable, ...], expr: dict) -> None:
    seen: set[str] = set()
    names = {o.name for o in observables}
    for o in observables:
        key = f"observable:{o.name}"
        if key in expr:
            later = (expr[key].names & names) - seen
            if later:
                raise ModelSpecError(describe(f"observable {o.name}", sorted(later)[0], "observables declared before the ones that use them"))
        seen.add(o.name)


@functools.lru_cache(maxsize=4)
def _functions_for(np_name: str) -> dict:
    if np_name == "jax":
        import jax.numpy as xp
    else:
        import numpy as xp
    return {"exp": xp.exp, "log": xp.log, "sqrt": xp.sqrt, "abs": xp.abs, "max": xp.maximum, "min": xp.minimum, "where": xp.where}


def _functions(np_like) -> dict:
    return _functions_for("jax" if np_like.__name__.startswith("jax") else "numpy")
