"""Reductions, broadcasting, reshaping, permutation and dot."""

from __future__ import annotations

import math
from typing import ClassVar

from bittile.errors import IRError
from bittile.ir.core import (
    Op,
    Value,
    abstract_op,
    attr,
    operand,
    register_op,
    result,
)
from bittile.ir.layout import RegisterLayout
from bittile.ir.ops._util import (
    _check_kind,
    _check_result,
    _check_value_type,
    _int_tuple,
)
from bittile.ir.types import ScalarType, TileType, Type

# ---- reductions and shape changes -----------------------------------------------------------


def _reduced_type(t: TileType, axis: int, keepdims: bool) -> Type:
    if keepdims:
        shape = t.shape[:axis] + (1,) + t.shape[axis + 1:]
    else:
        shape = t.shape[:axis] + t.shape[axis + 1:]
    if not shape:
        return ScalarType(t.dtype)
    return TileType(t.dtype, shape)


@abstract_op
class ReduceOp(Op):
    """Base of reductions along ``axis``; reducing a 1-D tile without keepdims gives a scalar.
    Float sums are computed in float64 and rounded once to the dtype."""

    kind: ClassVar[str] = ""
    x: Value = operand()
    axis: int = attr()
    keepdims: bool = attr(False)
    out: Value = result()

    @classmethod
    def create(cls, x: Value, axis: int, keepdims: bool = False, loc=None) -> ReduceOp:
        t = x.type
        if not isinstance(t, TileType):
            raise IRError(f"{cls.kind} reduces a tile, got {t}", loc)
        if not -t.rank <= axis < t.rank:
            raise IRError(f"axis {axis} is out of range for a rank-{t.rank} tile", loc)
        axis %= t.rank
        out = Value(_reduced_type(t, axis, keepdims))
        return cls(x=x, axis=axis, keepdims=keepdims, out=out, loc=loc)

    def verify(self):
        _check_value_type(self, self.x, "the operand", TileType)
        _check_kind(self, self.x.type.dtype, "num")
        if not isinstance(self.axis, int) or not 0 <= self.axis < self.x.type.rank:
            raise self.error(f"axis {self.axis} is out of range for {self.x.type}")
        _check_result(self, _reduced_type(self.x.type, self.axis, self.keepdims))


@register_op
class ReduceSumOp(ReduceOp):
    name: ClassVar[str] = "tile.reduce_sum"
    kind: ClassVar[str] = "sum"


@register_op
class ReduceMaxOp(ReduceOp):
    name: ClassVar[str] = "tile.reduce_max"
    kind: ClassVar[str] = "max"


@register_op
class ReduceMinOp(ReduceOp):
    name: ClassVar[str] = "tile.reduce_min"
    kind: ClassVar[str] = "min"


REDUCE_OPS = {"sum": ReduceSumOp, "max": ReduceMaxOp, "min": ReduceMinOp}


@register_op
class BroadcastOp(Op):
    """Expand size-1 dimensions (or a scalar) to ``shape``."""

    name: ClassVar[str] = "tile.broadcast"
    x: Value = operand()
    shape: tuple[int, ...] = attr()
    layout: RegisterLayout | None = attr(None)
    out: Value = result()

    @classmethod
    def create(cls, x: Value, shape, layout=None, loc=None) -> BroadcastOp:
        shape = _int_tuple(shape, "shape", loc)
        out = Value(TileType(x.type.dtype, shape, layout))
        return cls(x=x, shape=shape, layout=layout, out=out, loc=loc)

    def verify(self):
        _check_value_type(self, self.x, "the operand", ScalarType, TileType)
        t = self.x.type
        if isinstance(t, TileType):
            ok = len(t.shape) == len(self.shape) and all(
                s == d or s == 1 for s, d in zip(t.shape, self.shape)
            )
            if not ok:
                raise self.error(
                    f"cannot broadcast shape {list(t.shape)} to {list(self.shape)}",
                    hint="only dimensions of size 1 expand; use reshape to add dimensions",
                )
        _check_result(self, TileType(t.dtype, self.shape, self.layout))


@register_op
class ReshapeOp(Op):
    """The same elements in row-major order, with another shape."""

    name: ClassVar[str] = "tile.reshape"
    x: Value = operand()
    shape: tuple[int, ...] = attr()
    layout: RegisterLayout | None = attr(None)
    out: Value = result()

    @classmethod
    def create(cls, x: Value, shape, layout=None, loc=None) -> ReshapeOp:
        shape = _int_tuple(shape, "shape", loc)
        out = Value(TileType(x.type.dtype, shape, layout))
        return cls(x=x, shape=shape, layout=layout, out=out, loc=loc)

    def verify(self):
        _check_value_type(self, self.x, "the operand", TileType)
        if math.prod(self.shape) != self.x.type.size:
            raise self.error(
                f"cannot reshape {list(self.x.type.shape)} ({self.x.type.size} elements) "
                f"to {list(self.shape)} ({math.prod(self.shape)} elements)"
            )
        _check_result(self, TileType(self.x.type.dtype, self.shape, self.layout))


@register_op
class PermuteOp(Op):
    """Transpose: result dimension ``i`` is operand dimension ``dims[i]``."""

    name: ClassVar[str] = "tile.permute"
    x: Value = operand()
    dims: tuple[int, ...] = attr()
    out: Value = result()

    @classmethod
    def create(cls, x: Value, dims, loc=None) -> PermuteOp:
        dims = _int_tuple(dims, "dims", loc)
        t = x.type
        if not isinstance(t, TileType) or sorted(dims) != list(range(t.rank)):
            raise IRError(f"permute dims {list(dims)} do not fit {t}", loc)
        layout = t.layout.permute(dims) if t.layout is not None else None
        out = Value(TileType(t.dtype, tuple(t.shape[d] for d in dims), layout))
        return cls(x=x, dims=dims, out=out, loc=loc)

    def verify(self):
        _check_value_type(self, self.x, "the operand", TileType)
        t = self.x.type
        if sorted(self.dims) != list(range(t.rank)):
            raise self.error(f"dims {list(self.dims)} are not a permutation of 0..{t.rank - 1}")
        if self.out.type.shape != tuple(t.shape[d] for d in self.dims):
            raise self.error(f"result shape {list(self.out.type.shape)} does not match")


@register_op
class DotOp(Op):
    """``acc + a @ b`` for ``a[M, K]``, ``b[K, N]``, ``acc[M, N]``; ``a`` and ``b`` share a
    dtype, the result has the accumulator's type. Products and sums are computed exactly (to
    float64 precision) and rounded once to the accumulator's dtype."""

    name: ClassVar[str] = "tile.dot"
    a: Value = operand()
    b: Value = operand()
    acc: Value = operand()
    out: Value = result()

    @classmethod
    def create(cls, a: Value, b: Value, acc: Value, loc=None) -> DotOp:
        return cls(a=a, b=b, acc=acc, out=Value(acc.type), loc=loc)

    def verify(self):
        for what, v in (("a", self.a), ("b", self.b), ("the accumulator", self.acc)):
            _check_value_type(self, v, what, TileType)
            if v.type.rank != 2:
                raise self.error(f"{what} must be a 2-D tile, got {v.type}")
        (m, k), (k2, n) = self.a.type.shape, self.b.type.shape
        if k != k2 or self.acc.type.shape != (m, n):
            raise self.error(
                f"shapes do not chain: a {list(self.a.type.shape)}, b {list(self.b.type.shape)},"
                f" accumulator {list(self.acc.type.shape)}",
                hint="dot computes acc[M, N] + a[M, K] @ b[K, N]",
            )
        if self.a.type.dtype != self.b.type.dtype:
            raise self.error(
                f"a is {self.a.type.dtype} but b is {self.b.type.dtype}",
                hint="cast both operands to one dtype",
            )
        acc_dtype = self.acc.type.dtype
        if not acc_dtype.supports_arithmetic:
            raise self.error(f"the accumulator cannot be {acc_dtype}")
        if self.a.type.dtype.is_float != acc_dtype.is_float:
            raise self.error(
                f"{self.a.type.dtype} operands need a "
                f"{'float' if self.a.type.dtype.is_float else 'integer'} accumulator, "
                f"got {acc_dtype}"
            )
        _check_result(self, self.acc.type)


