"""Doses and regimens: built in code, parsed from text, expanded for the solver.

A dose series is one record in the mrgsolve/NONMEM sense (drug, amount, unit, start time,
interval, count, infusion duration): ``ev(amt, ii, addl, tinf)``. A :class:`Regimen` is a
tuple of series. Text such as ::

    "pembrolizumab 200 mg q3w x8; bexmarilimab 1 mg/kg q3w x8 over 60 min"

parses clause by clause (clauses separated by ``;``). Each clause is::

    <drug> <amount> <mg | mg/kg | mg/m2> [q<N><h|d|w>] [x<count>] [over <N> <min|h>] [from day <N> | from week <N>]

- ``q3w`` is every 3 weeks (``qw`` = every week, ``q21d`` = every 21 days); the unit letter
  is required and converted, never dropped.
- ``x8`` is the number of doses (8 doses: days 0, 21, ..., 147 for q3w). With an interval
  and no count, doses repeat until the end of the simulation (doses at or after the end
  time are not given).
- ``over`` is the IV infusion duration (default: the drug's own, 30 min for the PD-1
  antibodies' labels). ``bolus`` (or ``over 0 min``) gives the dose at once, for drugs whose
  PK model allows it (antibodies are infused).
- ``from day 21`` delays the first dose (default day 0).
- ``skip 3,4`` misses doses 3 and 4 (numbered from 1 in the planned schedule).
- ``delay 3 by 1w`` gives dose 3 one week late and shifts every later dose with it (a delayed
  cycle restarts the interval, as in trial protocols); several ``delay`` terms add up.

A clause may also be a preset name (see :data:`PRESETS`, declared with each drug; case does
not matter), and ``none`` is the untreated regimen. mg/kg amounts are resolved against a body
weight in kg and mg/m2 amounts against a body surface area in m2 (given, or from height and
weight by the Mosteller formula, :func:`immunopd.units.mosteller_bsa`); without them they are an
error, never a silent default.

The state is continuous at every dose time (infusions only), so an observation at a dose
time is the same whichever side of the dose it is taken; the infusion is "on" on
``[start, start + duration)``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .drugs import known_drug, known_drugs
from .errors import RegimenError, describe
from .models.drugs import EXAMPLE_REGIMEN, PRESETS
from .units import AMOUNT_UNITS, TIME_UNITS, to_days

__all__ = ["DoseSeries", "Regimen", "PRESETS", "InfusionSchedule"]

DEFAULT_DURATION_DAYS = 30.0 / 1440.0

#: Plausibility ceiling of one dose, per amount unit. The largest single doses given in oncology
#: are of the order of 10-25 g (high-dose methotrexate, 12 g/m2; for antibodies, the 20 mg/kg of
#: phase-1 escalations, ~2 g), so about 100 g per dose (100,000 mg; 1,000 mg/kg at 100 kg;
#: 50,000 mg/m2 at 2 m2) is beyond any clinical or dose-escalation regimen. The ceilings catch
#: exponent and unit slips (``1e9 mg``, grams typed as mg), not dosing choices.
MAX_DOSE: dict[str, float] = {"mg": 1e5, "mg/kg": 1e3, "mg/m2": 5e4}

#: Two infusions of one drug may touch (back to back) but not overlap by more than this (day),
#: so that doses written to the nearest digit of a decimal day still count as back to back.
OVERLAP_TOLERANCE_DAYS = 1e-6


def known_presets() -> dict[str, str]:
    """Every preset of every known drug (the package's and those models registered) and the
    combinations, lower-case name -> text."""
    from .models.drugs import COMBINATIONS

    return {k.lower(): v for k, v in {**{k: v for d in known_drugs().values() for k, v in d.preset_texts().items()},
                                      **COMBINATIONS}.items()}

_GRAMMAR = (
    "'<drug> <amount> <mg|mg/kg|mg/m2> [q<N><h|d|w>] [x<count>] [over <N> <min|h> | bolus] [from day <N>] [skip <N>,...] [delay <N> by <N> <d|w>]', "
    f"a preset ({', '.join(PRESETS)}) or 'none'"
)


def _finite_positive(field: str, value: float, allowed: str = "a finite number > 0") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise RegimenError(describe(field, value, allowed))
    if not math.isfinite(value) or value <= 0:
        raise RegimenError(describe(field, value, allowed))
    return float(value)


@dataclass(frozen=True)
class DoseSeries:
    """``count`` IV infusions of ``amount`` ``unit`` of ``drug``, every ``interval`` days.

    Times are in days. ``count=None`` with an interval repeats until the end of the
    simulation. A single dose has ``interval=None`` and ``count=1``.
    """

    drug: str
    amount: float
    unit: str = "mg"
    start: float = 0.0
    interval: float | None = None
    count: int | None = 1
    duration: float | None = None  # day; None: the drug's default infusion time; 0: bolus
    field: str = "dose"  # where this series came from, for error messages
    skip: tuple[int, ...] = ()  # dose numbers (from 1) not given
    delays: tuple[tuple[int, float], ...] = ()  # (dose number, days late); later doses shift too

    def __post_init__(self) -> None:
        f = self.field
        if not isinstance(self.drug, str) or known_drug(self.drug) is None:
            raise RegimenError(describe(f"{f}.drug", self.drug, f"one of {sorted(known_drugs())}"))
        object.__setattr__(self, "drug", self.drug.lower())
        record = known_drug(self.drug)
        _finite_positive(f"{f}.amount", self.amount)
        if self.unit not in AMOUNT_UNITS:
            raise RegimenError(describe(f"{f}.unit", self.unit, f"one of {list(AMOUNT_UNITS)}"))
        if self.amount > MAX_DOSE[self.unit]:
            raise RegimenError(describe(f"{f}.amount", self.amount,
                                        f"at most {MAX_DOSE[self.unit]:g} {self.unit} per dose (a plausibility limit: "
                                        "no clinical regimen comes near it; check the exponent and the unit)"))
        if isinstance(self.start, bool) or not isinstance(self.start, (int, float)) or not math.isfinite(self.start) or self.start < 0:
            raise RegimenError(describe(f"{f}.start", self.start, "a finite time >= 0 day"))
        if self.duration is None:
            object.__setattr__(self, "duration", record.default_duration_min / 1440.0)
        if record.pk.allows_bolus and self.duration == 0:
            pass
        else:
            allowed = ("a finite infusion duration >= 0 day (0: bolus)" if record.pk.allows_bolus else
                       f"a finite infusion duration > 0 day ({self.drug} is infused: its PK model allows no bolus)")
            _finite_positive(f"{f}.duration", self.duration, allowed)
        if self.interval is None:
            if self.count not in (1, None):
                raise RegimenError(describe(f"{f}.count", self.count, "1 when no interval is given"))
            object.__setattr__(self, "count", 1)
        else:
            _finite_positive(f"{f}.interval", self.interval, "a finite interval > 0 day")
            if self.duration > self.interval + OVERLAP_TOLERANCE_DAYS:
                raise RegimenError(describe(f"{f}.duration", self.duration,
                                            f"an infusion duration <= the interval ({self.interval:g} day): "
                                            "the infusions of one series must not overlap"))
            if self.count is not None and (
                isinstance(self.count, bool) or not isinstance(self.count, (int, np.integer)) or self.count < 1
            ):
                raise RegimenError(describe(f"{f}.count", self.count, "an integer >= 1, or None to repeat until the end"))
        if len(set(self.skip)) != len(self.skip):
            raise RegimenError(describe(f"{f}.skip", list(self.skip), "each dose number at most once"))
        for k in self.skip:
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or (self.count is not None and k > self.count):
                raise RegimenError(describe(f"{f}.skip", k, f"dose numbers from 1 to {self.count if self.count is not None else 'the last dose'}"))
        for k, days in self.delays:
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or (self.count is not None and k > self.count):
                raise RegimenError(describe(f"{f}.delay dose number", k, f"dose numbers from 1 to {self.count if self.count is not None else 'the last dose'}"))
            _finite_positive(f"{f}.delay of dose {k}", days, "a finite delay > 0 day")

    @property
    def target(self) -> str:
        return known_drug(self.drug).target

    @property
    def is_bolus(self) -> bool:
        return self.duration == 0

    def times(self, horizon: float) -> np.ndarray:
        """Start times (day) of the doses given before ``horizon``."""
        if self.interval is None:
            times = np.array([self.start])
        else:
            n = self.count if self.count is not None else max(0, math.ceil((horizon - self.start) / self.interval))
            times = self.start + self.interval * np.arange(n)
        for k, days in self.delays:
            times[k - 1 :] += days
        given = np.ones(times.size, dtype=bool)
        given[[k - 1 for k in self.skip if k <= times.size]] = False
        times = times[given]
        return times[times < horizon]

    def check_horizon(self, horizon: float) -> None:
        """Refuse a series that gives no dose before ``horizon`` (day): it was written for
        a longer simulation (or every dose is skipped), and running it would silently dose nothing."""
        if self.times(horizon).size:
            return
        if self.start >= horizon:
            raise RegimenError(describe(f"{self.field}.start", self.start,
                                        f"a first dose before the end of the simulation (day {horizon:g})"))
        raise RegimenError(describe(self.field, self.describe(), f"a series that gives at least one dose before the end of the simulation (day {horizon:g})"))

    def describe(self) -> str:
        text = f"{self.drug} {self.amount:g} {self.unit}"
        if self.interval is not None:
            text += f" q{self.interval:g}d" + (f" x{self.count}" if self.count is not None else "")
        text += " bolus" if self.is_bolus else f" over {self.duration * 1440:g} min"
        if self.start:
            text += f" from day {self.start:g}"
        if self.skip:
            text += " skip " + ",".join(str(k) for k in self.skip)
        for k, days in self.delays:
            text += f" delay {k} by {days:g}d"
        return text


@dataclass(frozen=True)
class InfusionSchedule:
    """Padded arrays for the solver, one row per dosed drug (day, mg/day, mg).

    ``drugs``: the drug names of the rows; ``starts``/``ends``: (drugs, doses); ``rates``:
    (patients, drugs, doses) infusion rates, zero for padding and boluses; ``boluses``:
    (patients, drugs, doses) amounts given at once at ``starts``; ``jump_times``: sorted
    (jumps,) dose edges for the step-size controller, padded with inf.
    """

    drugs: tuple[str, ...]
    starts: np.ndarray
    ends: np.ndarray
    rates: np.ndarray
    boluses: np.ndarray
    jump_times: np.ndarray
    dosed_mg: np.ndarray  # (patients, drugs): total amount started before the horizon


@dataclass(frozen=True)
class Regimen:
    """An ordered collection of :class:`DoseSeries`; ``text`` keeps what the user typed."""

    series: tuple[DoseSeries, ...] = ()
    text: str = ""

    def __post_init__(self) -> None:
        by_target: dict[str, set[str]] = {}
        for s in self.series:
            by_target.setdefault(s.target, set()).add(s.drug)
        for target, drugs in by_target.items():
            if len(drugs) > 1:
                raise RegimenError(describe(f"regimen drugs on target {target}", sorted(drugs),
                                            "at most one drug per target in a regimen (they would compete for one binding site)"))

    # ---------------------------------------------------------------- constructors
    @classmethod
    def parse(cls, text: str) -> "Regimen":
        """Parse regimen text (see the module docstring for the grammar)."""
        if not isinstance(text, str):
            raise RegimenError(describe("regimen", text, f"a string such as {EXAMPLE_REGIMEN!r}"))
        if not text.strip():
            raise RegimenError(describe("regimen", text, "non-empty regimen text (no treatment: 'none'): " + _GRAMMAR))
        clauses = [c.strip() for c in text.split(";")]
        series: list[DoseSeries] = []
        for k, clause in enumerate(clauses):
            if not clause:
                if len(clauses) > 1:
                    raise RegimenError(describe(f"regimen clause {k + 1}", clause, "a non-empty clause: " + _GRAMMAR))
                continue
            series.extend(_parse_clause(clause, f"regimen clause {k + 1} ({clause!r})"))
        return cls(tuple(series), text=text.strip())

    @classmethod
    def preset(cls, name: str) -> "Regimen":
        text = known_presets().get(name.lower()) if isinstance(name, str) else None
        if text is None:
            raise RegimenError(describe("regimen preset", name, f"one of {list(PRESETS)}"))
        return cls.parse(text)

    @classmethod
    def repeated(
        cls, drug: str, amount: float, unit: str = "mg", *, every_days: float | None = None,
        count: int | None = None, start_day: float = 0.0, duration_min: float | None = None,
    ) -> "Regimen":
        """``count`` infusions every ``every_days`` days, e.g. ``repeated('pembrolizumab', 200, 'mg', every_days=21, count=8)``."""
        s = DoseSeries(drug, amount, unit, start=start_day, interval=every_days,
                       count=count if every_days is not None else 1, duration=None if duration_min is None else duration_min / 1440.0)
        return cls((s,), text=s.describe())

    def __add__(self, other: "Regimen") -> "Regimen":
        texts = [t for t in (self.text, other.text) if t]
        return Regimen(self.series + other.series, text="; ".join(texts))

    # ---------------------------------------------------------------- queries
    def drug_for(self, target: str) -> str | None:
        return next((s.drug for s in self.series if s.target == target), None)

    def describe(self) -> str:
        return self.text or ("; ".join(s.describe() for s in self.series) if self.series else "none")

    @property
    def drugs(self) -> tuple[str, ...]:
        """The drugs this regimen doses, in order of first appearance."""
        return tuple(dict.fromkeys(s.drug for s in self.series))

    def check_horizon(self, horizon: float) -> None:
        """Refuse a regimen in which a drug gets no dose before ``horizon`` (day): it names a
        treatment the simulation would never give (``from day 400`` with 30 days). A later phase
        of a drug that is given (a preset's maintenance from week 12 in an 8-week run) is only
        cut short by the end, and allowed. See :meth:`DoseSeries.check_horizon` for the message."""
        for drug in self.drugs:
            series = [s for s in self.series if s.drug == drug]
            if not any(s.times(horizon).size for s in series):
                series[0].check_horizon(horizon)

    def max_doses_per_drug(self, horizon: float) -> int:
        """The largest number of doses of one drug before ``horizon`` (for padding)."""
        counts: dict[str, int] = {}
        for s in self.series:
            counts[s.drug] = counts.get(s.drug, 0) + len(s.times(horizon))
        return max(counts.values(), default=0)

    def doses(self, horizon: float, weight: float | None = None, bsa: float | None = None) -> list[tuple[str, float, float, float]]:
        """Expanded doses ``(drug, start day, amount mg, duration day)`` before ``horizon`` (duration 0: bolus)."""
        out = []
        for s in self.series:
            amount = float(_amount_mg(s, weight, bsa))
            out += [(s.drug, float(t), amount, s.duration) for t in s.times(horizon)]
        return sorted(out, key=lambda d: d[1])

    def schedule(
        self, horizon: float, weights: np.ndarray | None, n_patients: int, drugs: tuple[str, ...] | None = None,
        pad_to: int = 8, min_doses: int = 0, bsas: np.ndarray | None = None,
    ) -> InfusionSchedule:
        """Expand into padded solver arrays for ``n_patients`` (weights in kg and body surface
        areas ``bsas`` in m2, or None when not given).

        ``drugs`` orders the rows (default: this regimen's drugs); it may name more drugs than
        the regimen doses (their rows stay empty), so regimens of a trial share one shape. The
        dose axis is padded to a multiple of ``pad_to`` and to at least ``min_doses``.
        """
        drugs = self.drugs if drugs is None else tuple(drugs)
        missing = [d for d in self.drugs if d not in drugs]
        if missing:
            raise RegimenError(describe("regimen drug", missing[0], f"one of the drugs of this run: {list(drugs)}"))
        per_drug: dict[str, list[tuple[float, float, np.ndarray, bool]]] = {d: [] for d in drugs}
        for s in self.series:
            amount = np.broadcast_to(_amount_mg(s, weights, bsas), (n_patients,))
            for t in s.times(horizon):
                per_drug[s.drug].append((float(t), float(t) + s.duration, amount, s.is_bolus))
        n = max([len(v) for v in per_drug.values()] + [1, min_doses])
        n = pad_to * math.ceil(n / pad_to)
        rows = max(len(drugs), 0)
        starts = np.full((rows, n), horizon + 1.0)
        ends = np.full((rows, n), horizon + 2.0)
        rates = np.zeros((n_patients, rows, n))
        boluses = np.zeros((n_patients, rows, n))
        dosed = np.zeros((n_patients, rows))
        edges: list[float] = []
        for k, drug in enumerate(drugs):
            doses = sorted(per_drug[drug], key=lambda d: d[0])
            for (a0, a1, _, _), (b0, _, _, _) in zip(doses, doses[1:]):
                if b0 < a1 - OVERLAP_TOLERANCE_DAYS:
                    raise RegimenError(describe(f"regimen {drug} dose at day {b0:g}", self.describe(),
                                                f"doses of one drug that do not overlap (the infusion from day {a0:g} runs to day {a1:g})"))
            for j, (t0, t1, amount, bolus) in enumerate(doses):
                starts[k, j], ends[k, j] = t0, t1
                if bolus:
                    boluses[:, k, j] = amount
                    edges.append(t0)
                else:
                    rates[:, k, j] = amount / (t1 - t0)
                    edges += [t0, t1]
                dosed[:, k] += amount
        jumps = np.array(sorted(set(edges)), dtype=float)
        padded = np.full(max(2 * rows * n, 1), np.inf)
        padded[: len(jumps)] = jumps
        return InfusionSchedule(drugs, starts, ends, rates, boluses, padded, dosed)


def _amount_mg(s: DoseSeries, weight, bsa=None):
    """Dose amount in mg; ``weight`` (kg) and ``bsa`` (m2) are numbers, arrays over patients or None."""
    if s.unit == "mg":
        return s.amount
    if s.unit == "mg/m2":
        if bsa is None:
            raise RegimenError(describe(
                "body surface area", None,
                f"a body surface area in m2 (needed by the mg/m2 dose '{s.describe()}'): pass bsa=... (m2) or height=... (cm) "
                "with weight=... (kg), or --bsa / --height with --weight"))
        return s.amount * np.asarray(bsa, dtype=float)
    if weight is None:
        raise RegimenError(
            describe("body weight", None, f"a weight in kg (needed by the mg/kg dose '{s.describe()}'): pass weight=... or --weight")
        )
    return s.amount * np.asarray(weight, dtype=float)


_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_CLAUSE = re.compile(rf"^(?P<drug>[A-Za-z][\w-]*)\s+(?P<amount>[-+]?{_NUMBER}|nan|inf)\s*(?P<unit>[A-Za-z/]+(?:2|²)?)(?P<rest>.*)$", re.I)
_INTERVAL = re.compile(rf"^q\s*(?P<n>{_NUMBER})?\s*(?P<unit>[a-z]+)?$")
_COUNT = re.compile(r"^[x×]\s*(?P<n>\d+)$")


def _parse_clause(clause: str, field: str) -> list[DoseSeries]:
    if clause.lower() == "none":
        return []
    preset = known_presets().get(clause.lower())
    if preset is not None:
        return list(Regimen.parse(preset).series)
    m = _CLAUSE.match(clause)
    if m is None:
        raise RegimenError(describe(field, clause, _GRAMMAR))
    drug = m.group("drug").lower()
    if known_drug(drug) is None:
        raise RegimenError(describe(f"{field} drug", m.group("drug"), f"one of {sorted(known_drugs())}"))
    amount = float(m.group("amount"))
    unit = m.group("unit").lower().replace("²", "2")
    if unit not in AMOUNT_UNITS:
        raise RegimenError(describe(f"{field} amount unit", m.group("unit"), f"one of {list(AMOUNT_UNITS)}"))
    tokens = m.group("rest").lower().split()
    interval = count = None
    duration = None
    start = 0.0
    skip: list[int] = []
    delays: list[tuple[int, float]] = []
    seen: dict[str, str] = {}  # term kind -> the text that set it: each at most once per clause

    def once(kind: str, j: int) -> None:
        """Refuse a second term of one kind (``x8 x9``, ``q3w q2w``, two ``over``): never keep the last."""
        text = " ".join(tokens[i:j])
        if kind in seen:
            raise RegimenError(describe(f"{field} {kind}", text, f"one {kind} per clause (already {seen[kind]!r})"))
        seen[kind] = text

    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("q"):
            im = _INTERVAL.match(tok)
            if im is None or im.group("unit") is None or im.group("unit") not in TIME_UNITS or im.group("unit") in ("min", "minute", "minutes"):
                raise RegimenError(describe(f"{field} interval", tok, "q<N><h|d|w>, e.g. q3w, q21d, qw (a time unit is required)"))
            once("interval", i + 1)
            interval = to_days(float(im.group("n") or 1), im.group("unit"), f"{field} interval")
            i += 1
        elif _COUNT.match(tok):
            once("count", i + 1)
            count = int(_COUNT.match(tok).group("n"))
            i += 1
        elif tok == "skip":
            if i + 1 >= len(tokens) or not re.fullmatch(r"\d+(,\d+)*", tokens[i + 1]):
                raise RegimenError(describe(f"{field} skip", " ".join(tokens[i:i + 2]), "'skip <N>[,<N>...]' with dose numbers from 1, e.g. skip 3,4"))
            skip += [int(k) for k in tokens[i + 1].split(",")]
            i += 2
        elif tok == "delay":
            if i + 2 >= len(tokens) or not tokens[i + 1].isdigit() or tokens[i + 2] != "by":
                raise RegimenError(describe(f"{field} delay", " ".join(tokens[i:i + 4]), "'delay <dose number> by <N> <d|w>', e.g. delay 3 by 1w"))
            dose_number = int(tokens[i + 1])
            days, i = _number_with_unit(tokens, i + 3, f"{field} delay of dose {dose_number}")
            delays.append((dose_number, days))
        elif tok == "bolus":
            once("infusion duration", i + 1)
            duration, i = 0.0, i + 1
        elif tok == "over":
            value, j = _number_with_unit(tokens, i + 1, f"{field} infusion duration")
            once("infusion duration", j)
            duration, i = value, j
        elif tok in ("from", "starting", "start"):
            j = i + 1
            if j < len(tokens) and tokens[j] in ("day", "week", "d", "w"):
                unit_tok = tokens[j]
                if j + 1 >= len(tokens):
                    raise RegimenError(describe(f"{field} start", " ".join(tokens[i:]), "'from day <N>' or 'from week <N>'"))
                try:
                    value = to_days(float(tokens[j + 1]), unit_tok, f"{field} start")
                except ValueError:
                    raise RegimenError(describe(f"{field} start", " ".join(tokens[i:j + 2]), "'from day <N>' or 'from week <N>'")) from None
                j += 2
            else:
                value, j = _number_with_unit(tokens, j, f"{field} start")
            once("start", j)
            start, i = value, j
        else:
            raise RegimenError(describe(f"{field} term", tok, _GRAMMAR))
    if count is not None and interval is None:
        if count != 1:
            raise RegimenError(describe(f"{field} count", f"x{count}", "a count only together with an interval such as q3w"))
    return [DoseSeries(drug, amount, unit, start=start, interval=interval,
                       count=count if interval is not None else 1, duration=duration, field=field,
                       skip=tuple(skip), delays=tuple(delays))]


def _number_with_unit(tokens: list[str], i: int, field: str) -> tuple[float, int]:
    """Read '<N> <unit>' or '<N><unit>' starting at tokens[i]; return (days, next index)."""
    if i >= len(tokens):
        raise RegimenError(describe(field, "", "a number with a time unit, e.g. 60 min"))
    m = re.match(rf"^({_NUMBER})([a-z]*)$", tokens[i])
    if m is None:
        raise RegimenError(describe(field, tokens[i], "a number with a time unit, e.g. 60 min"))
    value, unit = float(m.group(1)), m.group(3)
    nxt = i + 1
    if not unit:
        if nxt >= len(tokens):
            raise RegimenError(describe(f"{field} unit", "", f"one of {sorted(set(TIME_UNITS))}"))
        unit, nxt = tokens[nxt], nxt + 1
    if unit not in TIME_UNITS:
        raise RegimenError(describe(f"{field} unit", unit, f"one of {sorted(set(TIME_UNITS))}"))
    return to_days(value, unit, field), nxt
