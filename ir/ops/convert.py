"""Value conversion (cast), bit reinterpretation (view) and layout conversion."""

from __future__ import annotations

from typing import ClassVar

from bittile.errors import IRError
from bittile.ir.core import (
    Op,
    Value,
    attr,
    operand,
    register_op,
    result,
)
from bittile.ir.dtypes import DType
from bittile.ir.layout import RegisterLayout
from bittile.ir.ops._util import (
    _check_result,
    _check_value_type,
    _int_tuple,
)
from bittile.ir.types import ScalarType, TileType


# ---- conversions ----------------------------------------------------------------------------
@register_op
class CastOp(Op):
    """Convert each value to ``dtype`` (round to nearest even, saturate; see ir/dtypes.py)."""

    name: ClassVar[str] = "tile.cast"
    x: Value = operand()
    dtype: DType = attr()
    out: Value = result()

    @classmethod
    def create(cls, x: Value, dtype: DType, loc=None) -> CastOp:
        t = x.type
        out_t = ScalarType(dtype) if isinstance(t, ScalarType) else t.with_(dtype=dtype)
        return cls(x=x, dtype=dtype, out=Value(out_t), loc=loc)

    def verify(self):
        _check_value_type(self, self.x, "the operand", ScalarType, TileType)
        t = self.x.type
        if isinstance(t, ScalarType):
            expected = ScalarType(self.dtype)
        else:
            expected = t.with_(dtype=self.dtype)
        _check_result(self, expected)


def default_layout(shape: tuple[int, ...]) -> RegisterLayout:
    """The layout that ``view`` assumes for an unannotated tile: one worker holding every
    element in row-major order, so a view reinterprets the row-major bitstream."""
    from bittile.ir.layout import local

    return local(*shape)


@register_op
class ViewOp(Op):
    """Reinterpret bits: each worker's elements, in local order, are concatenated LSB-first and
    read back as ``dtype`` elements in the result's local order (Tilus semantics). Tiles without
    a layout use ``local(*shape)``, i.e. the row-major bitstream."""

    name: ClassVar[str] = "tile.view"
    x: Value = operand()
    dtype: DType = attr()
    shape: tuple[int, ...] = attr()
    layout: RegisterLayout | None = attr(None)
    out: Value = result()

    @classmethod
    def create(cls, x: Value, dtype: DType, shape=None, layout=None, loc=None) -> ViewOp:
        t = x.type
        if not isinstance(t, TileType):
            raise IRError(f"view reinterprets a tile, got {t}", loc)
        if shape is None:
            if layout is not None:
                shape = layout.shape
            else:
                last_bits = t.shape[-1] * t.dtype.bits
                if last_bits % dtype.bits:
                    raise IRError(
                        f"view of {t} as {dtype}: the last dimension holds {last_bits} bits, "
                        f"not a multiple of {dtype.bits}", loc,
                    )
                shape = (*t.shape[:-1], last_bits // dtype.bits)
        shape = _int_tuple(shape, "shape", loc)
        out = Value(TileType(dtype, shape, layout))
        return cls(x=x, dtype=dtype, shape=shape, layout=layout, out=out, loc=loc)

    def verify(self):
        _check_value_type(self, self.x, "the operand", TileType)
        _check_result(self, TileType(self.dtype, self.shape, self.layout))
        src = self.x.type.layout or default_layout(self.x.type.shape)
        dst = self.layout or default_layout(self.shape)
        if src.num_workers != dst.num_workers:
            raise self.error(
                f"the source layout has {src.num_workers} workers, the result "
                f"layout {dst.num_workers}"
            )
        src_bits = src.local_size * self.x.type.dtype.bits
        dst_bits = dst.local_size * self.dtype.bits
        if src_bits != dst_bits:
            raise self.error(
                f"each worker holds {src_bits} bits of {self.x.type} but {dst_bits} bits "
                f"of the result {self.out.type}",
                hint="the bits per worker must match; change the result shape or layout",
            )
        if not _replication_consistent(src, self.x.type.dtype.bits, dst, self.dtype.bits):
            raise self.error(
                f"the workers that share an element of the result layout {dst} would give it "
                f"different bits from the source layout {src}",
                hint="replicate the result the way the source is replicated",
            )


def _replication_consistent(src, src_bits: int, dst, dst_bits: int) -> bool:
    """Whether every worker holding a result element gets it from the same source bits.

    Source bit ``b`` of logical element ``e`` is named ``e * src_bits + b``; cutting each
    worker's named bits into result elements must name each result element's bits the same
    way in every worker that holds it."""
    import numpy as np

    names = src.inverse_table()[..., None] * src_bits + np.arange(src_bits)
    per_element = names.reshape(dst.num_workers, dst.local_size, dst_bits)
    target = dst.inverse_table().reshape(-1)
    first = np.full((dst.size, dst_bits), -1, dtype=np.int64)
    first[target] = per_element.reshape(-1, dst_bits)
    return bool(np.array_equal(first[target], per_element.reshape(-1, dst_bits)))


@register_op
class ConvertLayoutOp(Op):
    """The same tile with another layout (values unchanged)."""

    name: ClassVar[str] = "tile.convert_layout"
    x: Value = operand()
    layout: RegisterLayout = attr()
    out: Value = result()

    @classmethod
    def create(cls, x: Value, layout: RegisterLayout, loc=None) -> ConvertLayoutOp:
        t = x.type
        return cls(x=x, layout=layout, out=Value(TileType(t.dtype, t.shape, layout)), loc=loc)

    def verify(self):
        _check_value_type(self, self.x, "the operand", TileType)
        t = self.x.type
        _check_result(self, TileType(t.dtype, t.shape, self.layout))


