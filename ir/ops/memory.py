"""Loads and stores of tiles at offsets of global tensors."""

from __future__ import annotations

from typing import ClassVar

from bittile.errors import IRError
from bittile.ir.core import (
    Op,
    Value,
    attr,
    operand,
    operands,
    register_op,
    result,
)
from bittile.ir.layout import RegisterLayout
from bittile.ir.ops._util import (
    _check_index,
    _check_result,
    _check_value_type,
    _int_tuple,
)
from bittile.ir.types import TensorType, TileType


# ---- memory ---------------------------------------------------------------------------------
def _check_offsets(op: Op, tensor: Value, offsets: tuple[Value, ...]) -> None:
    _check_value_type(op, tensor, "the tensor", TensorType)
    if len(offsets) != tensor.type.rank:
        raise op.error(
            f"a rank-{tensor.type.rank} tensor needs {tensor.type.rank} offsets, "
            f"got {len(offsets)}"
        )
    for i, off in enumerate(offsets):
        _check_index(op, off, f"offset {i}")


@register_op
class LoadOp(Op):
    """Read the tile ``tensor[offsets + i]`` for every index ``i`` of ``shape``; elements
    outside the tensor read as zero."""

    name: ClassVar[str] = "tile.load"
    tensor: Value = operand()
    offsets: tuple[Value, ...] = operands()
    shape: tuple[int, ...] = attr()
    layout: RegisterLayout | None = attr(None)
    #: elements per vector access along the last dimension (set by ``vectorize``); a hint for
    #: backends, meaningless to the interpreter
    vector_width: int | None = attr(None)
    out: Value = result()

    @classmethod
    def create(cls, tensor: Value, offsets, shape, layout=None, loc=None) -> LoadOp:
        shape = _int_tuple(shape, "shape", loc)
        if not isinstance(tensor.type, TensorType):
            raise IRError(f"load reads a global tensor, got {tensor.type}", loc)
        out = Value(TileType(tensor.type.dtype, shape, layout))
        return cls(tensor=tensor, offsets=tuple(offsets), shape=shape, layout=layout, out=out,
                   loc=loc)

    def verify(self):
        _check_offsets(self, self.tensor, self.offsets)
        if len(self.shape) != self.tensor.type.rank:
            raise self.error(
                f"tile shape {list(self.shape)} has rank {len(self.shape)}, "
                f"the tensor has rank {self.tensor.type.rank}"
            )
        _check_result(self, TileType(self.tensor.type.dtype, self.shape, self.layout))
        _check_vector_width(self, self.shape)


def _check_vector_width(op: Op, shape: tuple[int, ...]) -> None:
    width = op.vector_width
    if width is None:
        return
    if (not isinstance(width, int) or isinstance(width, bool) or width < 1
            or width & (width - 1) or shape[-1] % width):
        raise op.error(
            f"vector_width {width!r} must be a power of two dividing the last dimension "
            f"({shape[-1]})"
        )


@register_op
class StoreOp(Op):
    """Write ``value`` to ``tensor[offsets + i]``; elements outside the tensor are dropped."""

    name: ClassVar[str] = "tile.store"
    tensor: Value = operand()
    offsets: tuple[Value, ...] = operands()
    value: Value = operand()
    vector_width: int | None = attr(None)

    @classmethod
    def create(cls, tensor: Value, offsets, value: Value, loc=None) -> StoreOp:
        return cls(tensor=tensor, offsets=tuple(offsets), value=value, loc=loc)

    def verify(self):
        _check_offsets(self, self.tensor, self.offsets)
        _check_value_type(self, self.value, "the stored value", TileType)
        if self.value.type.dtype != self.tensor.type.dtype:
            raise self.error(
                f"stores a {self.value.type.dtype} tile into a {self.tensor.type.dtype} tensor",
                hint="cast the tile to the tensor's dtype first",
            )
        if self.value.type.rank != self.tensor.type.rank:
            raise self.error(
                f"stores a rank-{self.value.type.rank} tile into a rank-"
                f"{self.tensor.type.rank} tensor"
            )
        _check_vector_width(self, self.value.type.shape)


