"""Ops that produce values from nothing: constants, block ids, sizes, arange, full."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from bittile.errors import IRError, Loc
from bittile.ir.core import (
    Op,
    Value,
    attr,
    operand,
    register_op,
    result,
)
from bittile.ir.dtypes import DType, i32
from bittile.ir.layout import RegisterLayout
from bittile.ir.ops._util import (
    _check_result,
    _check_value_type,
    _int_tuple,
)
from bittile.ir.types import ScalarType, TileType


# ---- sources --------------------------------------------------------------------------------
@register_op
class ConstantOp(Op):
    """A scalar constant. ``value`` is an int for integer types and a float (exactly
    representable in ``dtype``) for float types."""

    name: ClassVar[str] = "arith.constant"
    value: Any = attr()
    dtype: DType = attr()
    out: Value = result()

    @classmethod
    def create(cls, value, dtype: DType, loc: Loc | None = None) -> ConstantOp:
        if dtype.is_int:
            if isinstance(value, float) and not value.is_integer():
                raise IRError(f"constant {value!r} is not an integer, so it cannot be {dtype}", loc)
            value = int(value)
        else:
            value = float(value)
        return cls(value=value, dtype=dtype, out=Value(ScalarType(dtype)), loc=loc)

    def verify(self):
        _check_result(self, ScalarType(self.dtype))
        if self.dtype.is_int:
            if not isinstance(self.value, int) or isinstance(self.value, bool):
                raise self.error(f"an integer constant needs an int value, got {self.value!r}")
            if not self.dtype.min <= self.value <= self.dtype.max:
                raise self.error(
                    f"{self.value} is outside the range of {self.dtype} "
                    f"[{self.dtype.min}, {self.dtype.max}]"
                )
        else:
            if not isinstance(self.value, float):
                raise self.error(f"a float constant needs a float value, got {self.value!r}")
            rounded = float(self.dtype.round([self.value], saturate=False)[0])
            if not (rounded == self.value or (math.isnan(rounded) and math.isnan(self.value))):
                raise self.error(f"{self.value!r} is not exactly representable in {self.dtype}")


@register_op
class BlockIdOp(Op):
    """The index of this program instance along grid axis ``axis`` (an i32)."""

    name: ClassVar[str] = "tile.block_id"
    axis: int = attr()
    out: Value = result()

    @classmethod
    def create(cls, axis: int, loc: Loc | None = None) -> BlockIdOp:
        return cls(axis=axis, out=Value(ScalarType(i32)), loc=loc)

    def verify(self):
        if not isinstance(self.axis, int) or isinstance(self.axis, bool) or self.axis < 0:
            raise self.error(f"axis must be a non-negative int, got {self.axis!r}")
        _check_result(self, ScalarType(i32))


@register_op
class SizeOp(Op):
    """The launch-time value of the size symbol ``symbol`` (an i32)."""

    name: ClassVar[str] = "tile.size"
    symbol: str = attr()
    out: Value = result()

    @classmethod
    def create(cls, symbol: str, loc: Loc | None = None) -> SizeOp:
        return cls(symbol=symbol, out=Value(ScalarType(i32)), loc=loc)

    def verify(self):
        if not isinstance(self.symbol, str) or not self.symbol.isidentifier():
            raise self.error(f"symbol must be an identifier, got {self.symbol!r}")
        _check_result(self, ScalarType(i32))


@register_op
class ArangeOp(Op):
    """The 1-D tile ``[0, 1, ..., size - 1]`` of an integer type."""

    name: ClassVar[str] = "tile.arange"
    size: int = attr()
    dtype: DType = attr()
    layout: RegisterLayout | None = attr(None)
    out: Value = result()

    @classmethod
    def create(cls, size: int, dtype: DType = i32, layout=None, loc=None) -> ArangeOp:
        return cls(
            size=size, dtype=dtype, layout=layout,
            out=Value(TileType(dtype, (size,), layout)), loc=loc,
        )

    def verify(self):
        if not self.dtype.is_int:
            raise self.error(f"arange produces integers, not {self.dtype}")
        if self.size - 1 > self.dtype.max:
            raise self.error(f"arange({self.size}) does not fit in {self.dtype}")
        _check_result(self, TileType(self.dtype, (self.size,), self.layout))


@register_op
class FullOp(Op):
    """A tile of ``shape`` filled with the scalar ``value``."""

    name: ClassVar[str] = "tile.full"
    value: Value = operand()
    shape: tuple[int, ...] = attr()
    layout: RegisterLayout | None = attr(None)
    out: Value = result()

    @classmethod
    def create(cls, value: Value, shape, layout=None, loc=None) -> FullOp:
        shape = _int_tuple(shape, "shape", loc)
        out = Value(TileType(value.type.dtype, shape, layout))
        return cls(value=value, shape=shape, layout=layout, out=out, loc=loc)

    def verify(self):
        _check_value_type(self, self.value, "value", ScalarType)
        _check_result(self, TileType(self.value.type.dtype, self.shape, self.layout))


