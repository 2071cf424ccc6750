"""Helpers shared by the op definitions."""

from __future__ import annotations

from bittile.errors import IRError, Loc
from bittile.ir.core import (
    Op,
    Value,
)
from bittile.ir.dtypes import DType
from bittile.ir.types import ScalarType, TileType, Type


# ---- helpers ------------------------------------------------------------------------------------
def _dtype_of(t: Type) -> DType:
    return t.dtype


def _shape_of(t: Type) -> tuple[int, ...] | None:
    """A tile's shape, or None for a scalar."""
    return t.shape if isinstance(t, TileType) else None


def _check_value_type(op: Op, value: Value, what: str, *allowed: type) -> None:
    if not isinstance(value, Value):
        raise op.error(f"{what} must be an SSA value, got {type(value).__name__}")
    if not isinstance(value.type, allowed):
        names = " or ".join(a.__name__ for a in allowed)
        raise op.error(f"{what} must be a {names}, got {value.type}")


def _check_index(op: Op, value: Value, what: str) -> None:
    _check_value_type(op, value, what, ScalarType)
    if not value.type.dtype.is_int:
        raise op.error(f"{what} must be an integer scalar, got {value.type}")


def _elementwise_type(dtype: DType, operand_types: list[Type], loc: Loc | None, name: str) -> Type:
    """Result type of an elementwise op: a tile if any operand is a tile (all tiles must share
    one shape; scalars splat), else a scalar. The layout survives when all tiles agree on it."""
    tiles = [t for t in operand_types if isinstance(t, TileType)]
    if not tiles:
        return ScalarType(dtype)
    shapes = {t.shape for t in tiles}
    if len(shapes) > 1:
        listed = " and ".join(str(list(s)) for s in sorted(shapes))
        raise IRError(
            f"{name}: operand shapes differ: {listed}",
            loc,
            "broadcast operands to one shape first",
        )
    layouts = {t.layout for t in tiles}
    layout = layouts.pop() if len(layouts) == 1 else None
    return TileType(dtype, tiles[0].shape, layout)


def _check_result(op: Op, expected: Type) -> None:
    got = op.result.type
    if got != expected:
        raise op.error(f"result type is {got}, expected {expected}")


def _int_tuple(values, what: str, loc: Loc | None) -> tuple[int, ...]:
    try:
        out = tuple(values)
    except TypeError:
        raise IRError(f"{what} must be a list of ints, got {values!r}", loc) from None
    if any(not isinstance(v, int) or isinstance(v, bool) for v in out):
        raise IRError(f"{what} must be a list of ints, got {list(out)}", loc)
    return out




def _check_kind(op: Op, dtype: DType, kind: str) -> None:
    """Arithmetic ops need an arithmetic dtype of the accepted kind ("float", "int", "num")."""
    if not dtype.supports_arithmetic:
        raise op.error(
            f"no arithmetic on {dtype}: it is a storage format",
            hint="cast to f16, bf16 or f32 first",
        )
    if kind == "float" and not dtype.is_float:
        raise op.error(f"needs a float operand, got {dtype}")
    if kind == "int" and not dtype.is_int:
        raise op.error(f"needs an integer operand, got {dtype}")


def _verify_same_dtype(op: Op, *values: Value) -> None:
    for i, v in enumerate(values):
        _check_value_type(op, v, f"operand {i}", ScalarType, TileType)
    dtypes = {v.type.dtype for v in values}
    if len(dtypes) > 1:
        listed = " and ".join(sorted(d.name for d in dtypes))
        raise op.error(f"operands have different dtypes: {listed}", hint="cast one of them")
