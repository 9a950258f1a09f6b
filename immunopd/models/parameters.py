"""Parameter records and tables: name, default, unit, bounds, source.

A table is plain data that fitting, sensitivity, population sampling, the CLI and the docs
all read. It converts user overrides into the parameter pytree the model consumes (a dict
of float64 arrays, one entry per parameter, each of shape ``()`` or ``(patients,)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, describe

__all__ = ["Parameter", "ParameterTable"]


@dataclass(frozen=True)
class Parameter:
    """One model parameter.

    ``lower``/``upper`` are the plausible range used for validation, fitting bounds and
    global sensitivity ranges. ``switch`` names the resistance mechanism the parameter turns
    off when set to 0 (empty if it is not a switch). ``source`` is a paper with DOI, or
    "assumed: <reason>" / "calibrated: <what it was tuned to>".
    """

    name: str
    default: float
    unit: str
    lower: float
    upper: float
    source: str
    description: str
    switch: str = ""
    scale: str = "log"  # how it is sampled/fitted when positive: "log" or "linear"

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ParameterError(describe("parameter.name", self.name, "a valid Python identifier"))
        if not (self.lower <= self.default <= self.upper):
            raise ParameterError(
                describe(f"parameter {self.name}.default", self.default, f"[{self.lower}, {self.upper}]")
            )
        if not self.source:
            raise ParameterError(describe(f"parameter {self.name}.source", self.source, "a citation or 'assumed: why'"))
        if self.scale not in ("log", "linear"):
            raise ParameterError(describe(f"parameter {self.name}.scale", self.scale, "'log' or 'linear'"))


@dataclass(frozen=True)
class ParameterTable:
    """An ordered, immutable collection of :class:`Parameter` records."""

    parameters: tuple[Parameter, ...]
    _index: dict[str, Parameter] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, Parameter] = {}
        for p in self.parameters:
            if p.name in index:
                raise ParameterError(describe("parameter.name", p.name, "unique names (duplicate found)"))
            index[p.name] = p
        object.__setattr__(self, "_index", index)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self.parameters)

    def __len__(self) -> int:
        return len(self.parameters)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> Parameter:
        try:
            return self._index[name]
        except KeyError:
            raise ParameterError(self._unknown_message(name)) from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.parameters}

    def _unknown_message(self, name: str) -> str:
        close = [n for n in self.names if name.lower() in n or n in name.lower()][:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        return describe("parameter name", name, f"one of the {len(self)} names listed by `immunopd params`{hint}")

    def resolve(
        self, overrides: Mapping[str, float | Iterable[float]] | None = None, *, check_bounds: bool = True
    ) -> tuple[dict[str, np.ndarray], int | None]:
        """Merge ``overrides`` into the defaults and validate them.

        Returns the parameter dict (float64 arrays of shape ``()`` or ``(n,)``) and the
        batch size ``n`` (``None`` when every value is a scalar).

        Raises :class:`~immunopd.errors.ParameterError` for an unknown name, a non-finite
        value, a value outside ``[lower, upper]`` or batch arrays of different lengths.
        """
        values: dict[str, np.ndarray] = {p.name: np.asarray(p.default, dtype=np.float64) for p in self}
        batch: int | None = None
        batch_from = ""
        for name, raw in (overrides or {}).items():
            spec = self[name]
            if isinstance(raw, str):  # "500 ng/mL": a number with a unit, converted to the table's unit
                from ..units import QUANTITY_UNITS, parse_value

                if spec.unit not in QUANTITY_UNITS:
                    raise ParameterError(describe(f"params[{name!r}]", raw, f"a plain number in {spec.unit} (no unit conversion for it)"))
                raw = parse_value(raw, spec.unit, f"params[{name!r}]")
            arr = np.asarray(raw, dtype=np.float64)
            if arr.ndim > 1:
                raise ParameterError(describe(f"params[{name!r}]", raw, "a number or a 1-D array over patients"))
            if not np.all(np.isfinite(arr)):
                raise ParameterError(describe(f"params[{name!r}]", raw, "finite numbers (no NaN or inf)"))
            if check_bounds:
                bad = (arr < spec.lower) | (arr > spec.upper)
                if np.any(bad):
                    first = float(arr[bad].flat[0]) if arr.ndim else float(arr)
                    raise ParameterError(
                        describe(f"params[{name!r}]", first, f"[{spec.lower:g}, {spec.upper:g}] {spec.unit}")
                    )
            if arr.ndim == 1:
                if batch is not None and arr.shape[0] != batch:
                    raise ParameterError(
                        describe(
                            f"len(params[{name!r}])",
                            arr.shape[0],
                            f"{batch} (the length of params[{batch_from!r}]); all batched parameters share one length",
                        )
                    )
                if arr.shape[0] == 0:
                    raise ParameterError(describe(f"len(params[{name!r}])", 0, "at least one patient"))
                batch, batch_from = arr.shape[0], name
            values[name] = arr
        return values, batch

    def to_markdown(self) -> str:
        """The table as Markdown: name, default, unit, bounds, switch, source."""
        rows = ["| name | default | unit | bounds | switches off | source |", "|---|---|---|---|---|---|"]
        for p in self:
            rows.append(
                f"| {p.name} | {p.default:.4g} | {p.unit} | [{p.lower:.3g}, {p.upper:.3g}] | {p.switch or '-'} | {p.source} |"
            )
        return "\n".join(rows)

    def to_text(self, width: int = 110) -> str:
        """A plain-text table for terminals (``immunopd params``)."""
        lines = [f"{'name':<28} {'default':>11} {'unit':<22} {'bounds':<22} source"]
        for p in self:
            bounds = f"[{p.lower:.3g}, {p.upper:.3g}]"
            source = p.source if len(p.source) < width - 86 else p.source[: width - 89] + "..."
            lines.append(f"{p.name:<28} {p.default:>11.4g} {p.unit:<22} {bounds:<22} {source}")
            if p.switch:
                lines.append(f"{'':<28} {'':>11} 0 switches off: {p.switch}")
        return "\n".join(lines)
