"""Symbolic integer expressions: tensor shapes such as ``[M, K // G]`` and grid sizes.

Symbols are sizes bound at launch (from the shapes of tensor arguments) or integer scalar
parameters. Division is floor division; ``cdiv`` is ceiling division. Expressions fold constants
as they are built, so ``Const`` subexpressions never combine with each other.
"""

from __future__ import annotations

import abc
import operator
from dataclasses import dataclass

from bittile.errors import IRError

__all__ = ["SymExpr", "Sym", "Const", "BinExpr", "sym", "as_expr", "cdiv", "BINARY_OPS"]


def _floordiv(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("division by zero in a size expression")
    return a // b


def _cdiv(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("division by zero in a size expression")
    return -(-a // b)


def _mod(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("modulo by zero in a size expression")
    return a % b


#: operator name -> (function, printed infix symbol or None for call syntax, precedence)
BINARY_OPS = {
    "add": (operator.add, "+", 1),
    "sub": (operator.sub, "-", 1),
    "mul": (operator.mul, "*", 2),
    "floordiv": (_floordiv, "//", 2),
    "mod": (_mod, "%", 2),
    "cdiv": (_cdiv, None, 3),
    "min": (min, None, 3),
    "max": (max, None, 3),
}


class SymExpr(abc.ABC):
    """Base of symbolic integer expressions; supports + - * // % with ints and expressions."""

    precedence = 3

    @abc.abstractmethod
    def evaluate(self, env: dict[str, int]) -> int:
        """The value with every symbol taken from ``env``."""

    @abc.abstractmethod
    def symbols(self) -> frozenset[str]:
        """The names this expression uses."""

    def __add__(self, other):
        return _binary("add", self, other)

    def __radd__(self, other):
        return _binary("add", other, self)

    def __sub__(self, other):
        return _binary("sub", self, other)

    def __rsub__(self, other):
        return _binary("sub", other, self)

    def __mul__(self, other):
        return _binary("mul", self, other)

    def __rmul__(self, other):
        return _binary("mul", other, self)

    def __floordiv__(self, other):
        return _binary("floordiv", self, other)

    def __rfloordiv__(self, other):
        return _binary("floordiv", other, self)

    def __mod__(self, other):
        return _binary("mod", self, other)

    def __rmod__(self, other):
        return _binary("mod", other, self)


@dataclass(frozen=True)
class Const(SymExpr):
    value: int

    def evaluate(self, env):
        return self.value

    def symbols(self):
        return frozenset()

    def __str__(self):
        return str(self.value)


@dataclass(frozen=True)
class Sym(SymExpr):
    name: str

    def evaluate(self, env):
        try:
            return env[self.name]
        except KeyError:
            raise IRError(f"size {self.name!r} is not bound") from None

    def symbols(self):
        return frozenset({self.name})

    def __str__(self):
        return self.name


@dataclass(frozen=True)
class BinExpr(SymExpr):
    op: str
    lhs: SymExpr
    rhs: SymExpr

    @property
    def precedence(self) -> int:  # type: ignore[override]
        return BINARY_OPS[self.op][2]

    def evaluate(self, env):
        fn = BINARY_OPS[self.op][0]
        return fn(self.lhs.evaluate(env), self.rhs.evaluate(env))

    def symbols(self):
        return self.lhs.symbols() | self.rhs.symbols()

    def __str__(self):
        _, symbol, prec = BINARY_OPS[self.op]
        if symbol is None:
            return f"{self.op}({self.lhs}, {self.rhs})"
        left = str(self.lhs) if self.lhs.precedence >= prec else f"({self.lhs})"
        # Right operands of the same precedence need parentheses: a - (b - c), a // (b * c).
        right = str(self.rhs) if self.rhs.precedence > prec else f"({self.rhs})"
        return f"{left} {symbol} {right}"


ExprLike = SymExpr | int | str


def as_expr(value: ExprLike) -> SymExpr:
    if isinstance(value, SymExpr):
        return value
    if isinstance(value, bool):
        raise IRError(f"a size expression cannot be a bool ({value!r})")
    if isinstance(value, int):
        return Const(value)
    if isinstance(value, str) and value.isidentifier():
        return Sym(value)
    raise IRError(f"not a size expression: {value!r}")


def sym(name: str) -> Sym:
    return Sym(name)


def _binary(op: str, lhs: ExprLike, rhs: ExprLike) -> SymExpr:
    lhs, rhs = as_expr(lhs), as_expr(rhs)
    if isinstance(lhs, Const) and isinstance(rhs, Const):
        return Const(BINARY_OPS[op][0](lhs.value, rhs.value))
    return BinExpr(op, lhs, rhs)


def cdiv(a: ExprLike, b: ExprLike) -> SymExpr:
    return _binary("cdiv", a, b)


def sym_min(a: ExprLike, b: ExprLike) -> SymExpr:
    return _binary("min", a, b)


def sym_max(a: ExprLike, b: ExprLike) -> SymExpr:
    return _binary("max", a, b)


def make_binary(op: str, lhs: ExprLike, rhs: ExprLike) -> SymExpr:
    """Build ``op(lhs, rhs)`` by operator name (one of ``BINARY_OPS``)."""
    if op not in BINARY_OPS:
        raise IRError(f"unknown size operator {op!r}")
    return _binary(op, lhs, rhs)
