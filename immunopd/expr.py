"""Model expressions: one text, two consumers (the JAX right-hand side and the SBML export).

An expression is Python arithmetic over names (states, parameters, assignments, target
occupancies) and a few functions, e.g. ``"kill_rate * killing_factor * effector / (kill_half_volume + tumor_volume)"``.
It is parsed once with :mod:`ast`, its free names are checked against the model, and it is then

- evaluated with ``jax.numpy`` functions (under ``jit`` this happens once, at trace time), and
- printed as SBML Level 3 infix (``**`` -> ``^``, ``log`` -> ``ln``, ``where`` -> ``piecewise``),
  which ``libsbml.parseL3Formula`` reads.

So the equations exist once: nothing in the SBML writer restates them.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field

from .errors import ModelSpecError, describe

__all__ = ["Expression", "FUNCTIONS"]

#: functions an expression may call: name -> (number of arguments, SBML L3 infix name)
FUNCTIONS: dict[str, tuple[int, str]] = {
    "exp": (1, "exp"),
    "log": (1, "ln"),
    "sqrt": (1, "sqrt"),
    "abs": (1, "abs"),
    "max": (2, "max"),
    "min": (2, "min"),
    "where": (3, "piecewise"),  # where(condition, if_true, if_false)
}
#: names every expression may use besides the model's own
CONSTANTS: dict[str, float] = {"pi": math.pi}

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "^"}
_COMPARE = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<="}
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "^": 4}


@dataclass(frozen=True)
class Expression:
    """A parsed model expression. ``where`` names what it defines, for error messages."""

    text: str
    where: str = "expression"
    names: frozenset[str] = field(init=False)
    _code: object = field(init=False, repr=False, compare=False)
    _tree: ast.AST = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ModelSpecError(describe(self.where, self.text, "a non-empty expression text"))
        try:
            tree = ast.parse(self.text.strip(), mode="eval")
        except SyntaxError as err:
            raise ModelSpecError(describe(self.where, self.text, f"Python arithmetic ({err.msg})")) from None
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                    raise ModelSpecError(describe(f"{self.where} function", ast.unparse(node.func), f"one of {sorted(FUNCTIONS)}"))
                arity = FUNCTIONS[node.func.id][0]
                if len(node.args) != arity or node.keywords:
                    raise ModelSpecError(describe(f"{self.where} call", ast.unparse(node), f"{node.func.id} with {arity} positional argument(s)"))
            elif isinstance(node, ast.Name):
                if node.id not in FUNCTIONS:
                    names.add(node.id)
            elif not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Load, ast.Compare, ast.USub, ast.UAdd,
                                       *_BINOPS, *_COMPARE)):
                raise ModelSpecError(describe(f"{self.where} syntax", type(node).__name__, "numbers, names, + - * / **, comparisons and calls"))
        object.__setattr__(self, "names", frozenset(names - set(CONSTANTS)))
        object.__setattr__(self, "_tree", tree)
        object.__setattr__(self, "_code", compile(tree, f"<{self.where}>", "eval"))

    def __reduce__(self):  # code objects do not pickle: rebuild from the text (Dask workers)
        return (Expression, (self.text, self.where))

    def evaluate(self, env: dict, functions: dict):
        """The value with ``env`` (name -> array) and ``functions`` (e.g. the jnp versions)."""
        return eval(self._code, {"__builtins__": {}, **functions, **CONSTANTS}, env)  # noqa: S307 - parsed and checked above

    def to_sbml(self, rename: dict[str, str] | None = None) -> str:
        """SBML L3 infix text (names renamed through ``rename`` where given)."""
        return _sbml(self._tree.body, rename or {})


def _sbml(node: ast.AST, rename: dict[str, str], parent: int = 0) -> str:
    if isinstance(node, ast.Constant):
        return repr(float(node.value))
    if isinstance(node, ast.Name):
        return rename.get(node.id, node.id)
    if isinstance(node, ast.UnaryOp):
        inner = _sbml(node.operand, rename, 3)
        return f"-{inner}" if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp):
        op = _BINOPS[type(node.op)]
        prec = _PRECEDENCE[op]
        # right operands of - / ^ need brackets at equal precedence (a - (b - c)); ^ is right-assoc
        left = _sbml(node.left, rename, prec + (1 if op == "^" else 0))
        right = _sbml(node.right, rename, prec + (0 if op == "^" else 1) if op in "-/^" else prec)
        text = f"{left} {op} {right}"
        return f"({text})" if prec < parent else text
    if isinstance(node, ast.Compare):
        if len(node.ops) != 1:
            raise ModelSpecError(describe("comparison", ast.unparse(node), "one comparison (a < b)"))
        return f"({_sbml(node.left, rename)} {_COMPARE[type(node.ops[0])]} {_sbml(node.comparators[0], rename)})"
    if isinstance(node, ast.Call):
        name = node.func.id
        args = [_sbml(a, rename) for a in node.args]
        if name == "where":
            cond, yes, no = args
            return f"piecewise({yes}, {cond}, {no})"
        return f"{FUNCTIONS[name][1]}({', '.join(args)})"
    raise ModelSpecError(describe("expression node", type(node).__name__, "arithmetic"))
