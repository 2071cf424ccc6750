"""Elementwise ops: one class per operation, grouped in families that share fields.

Operands of one op share a dtype; a scalar operand splats over a tile. Float results round to
the dtype after every op (no saturation: overflow is inf); integer results wrap modulo 2^bits.
The exact semantics of each kind are the interpreter's (``backends/interp/elementwise.py``).
"""

from __future__ import annotations

from typing import ClassVar

from bittile.errors import IRError
from bittile.ir.core import Op, Value, abstract_op, operand, register_op, result
from bittile.ir.dtypes import u1
from bittile.ir.ops._util import (
    _check_kind,
    _check_result,
    _check_value_type,
    _elementwise_type,
    _verify_same_dtype,
)
from bittile.ir.types import ScalarType, TileType

__all__ = [
    "UnaryOp", "BinaryOp", "CompareOp", "WhereOp",
    "UNARY_OPS", "BINARY_OPS", "COMPARE_OPS", "unary_op_class", "binary_op_class",
    "compare_op_class",
]


@abstract_op
class UnaryOp(Op):
    """Base of unary elementwise ops; ``accepts`` is "float", "int" or "num"."""

    kind: ClassVar[str] = ""
    accepts: ClassVar[str] = "num"
    x: Value = operand()
    out: Value = result()

    @classmethod
    def create(cls, x: Value, loc=None) -> UnaryOp:
        out_t = _elementwise_type(x.type.dtype, [x.type], loc, cls.kind)
        return cls(x=x, out=Value(out_t), loc=loc)

    def verify(self):
        _check_value_type(self, self.x, "the operand", ScalarType, TileType)
        _check_kind(self, self.x.type.dtype, self.accepts)
        dtype = self.x.type.dtype
        _check_result(self, _elementwise_type(dtype, [self.x.type], self.loc, self.kind))


@abstract_op
class BinaryOp(Op):
    """Base of binary arithmetic and bitwise ops."""

    kind: ClassVar[str] = ""
    accepts: ClassVar[str] = "num"
    lhs: Value = operand()
    rhs: Value = operand()
    out: Value = result()

    @classmethod
    def result_dtype(cls, lhs: Value):
        return lhs.type.dtype

    @classmethod
    def create(cls, lhs: Value, rhs: Value, loc=None) -> BinaryOp:
        out_t = _elementwise_type(cls.result_dtype(lhs), [lhs.type, rhs.type], loc, cls.kind)
        return cls(lhs=lhs, rhs=rhs, out=Value(out_t), loc=loc)

    def verify(self):
        _verify_same_dtype(self, self.lhs, self.rhs)
        _check_kind(self, self.lhs.type.dtype, self.accepts)
        types = [self.lhs.type, self.rhs.type]
        dtype = self.result_dtype(self.lhs)
        _check_result(self, _elementwise_type(dtype, types, self.loc, self.kind))


@abstract_op
class CompareOp(BinaryOp):
    """Base of comparisons: the result is ``u1`` (1 for true), IEEE semantics for NaN."""

    @classmethod
    def result_dtype(cls, lhs: Value):
        return u1


def _family(base, prefix: str, kinds: dict[str, str]) -> dict[str, type]:
    classes = {}
    for kind, accepts in kinds.items():
        class_name = "".join(p.capitalize() for p in kind.split("_")) + "Op"
        namespace = {
            "name": f"{prefix}.{kind}",
            "kind": kind,
            "accepts": accepts,
            "__doc__": f"Elementwise ``{kind}``.",
            "__module__": __name__,
            "__qualname__": class_name,
        }
        classes[kind] = register_op(type(class_name, (base,), namespace))
    return classes


#: kind -> operand kinds accepted ("float", "int" or "num")
UNARY_OPS = {
    "neg": "num", "abs": "num", "not": "int",
    "exp": "float", "exp2": "float", "log": "float", "log2": "float", "sqrt": "float",
    "rsqrt": "float", "sin": "float", "cos": "float", "tanh": "float", "sigmoid": "float",
    "floor": "float", "ceil": "float", "round": "float",
}
BINARY_OPS = {
    "add": "num", "sub": "num", "mul": "num", "div": "num", "rem": "num",
    "min": "num", "max": "num", "pow": "float",
    "and": "int", "or": "int", "xor": "int", "shl": "int", "shr": "int",
}
COMPARE_OPS = {"eq": "num", "ne": "num", "lt": "num", "le": "num", "gt": "num", "ge": "num"}

_UNARY = _family(UnaryOp, "math", UNARY_OPS)
_BINARY = _family(BinaryOp, "arith", BINARY_OPS)
_COMPARE = _family(CompareOp, "cmp", COMPARE_OPS)
globals().update({cls.__name__: cls for cls in (*_UNARY.values(), *_BINARY.values(),
                                                  *_COMPARE.values())})
__all__ += [cls.__name__ for cls in (*_UNARY.values(), *_BINARY.values(), *_COMPARE.values())]


def _lookup(table: dict[str, type], kind: str, what: str):
    try:
        return table[kind]
    except KeyError:
        raise IRError(f"unknown {what} {kind!r}; known: {', '.join(table)}") from None


def unary_op_class(kind: str) -> type[UnaryOp]:
    return _lookup(_UNARY, kind, "unary op")


def binary_op_class(kind: str) -> type[BinaryOp]:
    return _lookup(_BINARY, kind, "binary op")


def compare_op_class(kind: str) -> type[CompareOp]:
    return _lookup(_COMPARE, kind, "comparison")


@register_op
class WhereOp(Op):
    """``cond ? a : b`` elementwise; ``cond`` is ``u1``."""

    name: ClassVar[str] = "tile.where"
    cond: Value = operand()
    a: Value = operand()
    b: Value = operand()
    out: Value = result()

    @classmethod
    def create(cls, cond: Value, a: Value, b: Value, loc=None) -> WhereOp:
        out_t = _elementwise_type(a.type.dtype, [cond.type, a.type, b.type], loc, "where")
        return cls(cond=cond, a=a, b=b, out=Value(out_t), loc=loc)

    def verify(self):
        _check_value_type(self, self.cond, "the condition", ScalarType, TileType)
        if self.cond.type.dtype != u1:
            raise self.error(f"the condition must be u1, got {self.cond.type.dtype}")
        _verify_same_dtype(self, self.a, self.b)
        types = [self.cond.type, self.a.type, self.b.type]
        _check_result(self, _elementwise_type(self.a.type.dtype, types, self.loc, "where"))
