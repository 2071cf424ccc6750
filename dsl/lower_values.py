"""Values, types and messages shared by the parts of the lowering (dsl/lower.py)."""

from __future__ import annotations

from dataclasses import dataclass

from bittile.errors import (
    DTypeError,
    IRError,
    LayoutError,
    Loc,
    PackingError,
)
from bittile.ir.core import Value
from bittile.ir.dtypes import DType, f32, i32, u1
from bittile.ir.layout import RegisterLayout
from bittile.ir.types import ScalarType, TensorType, TileType

_CONVERTED = (IRError, LayoutError, DTypeError, PackingError)

#: the dtype a compile-time number gets when nothing else decides it
DEFAULT_DTYPE = {"int": i32, "float": f32, "bool": u1}

_ARITH = {"+": "add", "-": "sub", "*": "mul", "/": "div", "%": "rem",
          "&": "and", "|": "or", "^": "xor", "<<": "shl", ">>": "shr"}
_COMPARE = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_LOGIC = {"&&": "and", "||": "or"}
_BITWISE = {"&", "|", "^", "<<", ">>"}

_DEFAULT_HINT = "see docs/language.md for the rules of the tile language"
_SHAPE_HINT = ("tile shapes, axes and layouts are compile-time values: literals, compile-time "
               "parameters and arithmetic on them (not loads, block_id, sizes, loop variables "
               "or scalar parameters)")


def num_kind(v) -> str | None:
    """"bool", "int" or "float" for a compile-time number, else None."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    return None


def is_number(v) -> bool:
    return num_kind(v) is not None


def is_runtime(v) -> bool:
    """A runtime scalar or tile (not a tensor)."""
    return isinstance(v, Value) and isinstance(v.type, (ScalarType, TileType))


def is_tile(v) -> bool:
    return isinstance(v, Value) and isinstance(v.type, TileType)


def is_tensor(v) -> bool:
    return isinstance(v, Value) and isinstance(v.type, TensorType)


def type_str(t) -> str:
    """``f32[16, 64]`` for a tile type (with ``@ layout``), ``i32`` for a scalar type."""
    if isinstance(t, TileType):
        text = f"{t.dtype}{list(t.shape)}"
        return f"{text} @ {t.layout}" if t.layout is not None else text
    if isinstance(t, TensorType):
        return f"{t.dtype}[{', '.join(map(str, t.shape))}]"
    return str(t)


def describe(v) -> str:
    """A short description of a lowering value for diagnostics."""
    if v is None:
        return "nothing"
    if isinstance(v, Value):
        if isinstance(v.type, TileType):
            return f"a {type_str(v.type)} tile"
        if isinstance(v.type, TensorType):
            return f"the global tensor {v.name_hint}: {type_str(v.type)}"
        return f"a runtime {v.type.dtype} scalar"
    kind = num_kind(v)
    if kind == "bool":
        return f"the compile-time bool {'true' if v else 'false'}"
    if kind is not None:
        return f"the compile-time {kind} {v!r}"
    if isinstance(v, DType):
        return f"the dtype {v}"
    if isinstance(v, RegisterLayout):
        return f"the layout {v}"
    if isinstance(v, tuple):
        return "a list"
    text = repr(v)
    return f"a {type(v).__name__} ({text[:40]}{'...' if len(text) > 40 else ''})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _adopts(kind: str, dtype: DType) -> bool:
    """Whether a compile-time number of ``kind`` can take ``dtype``."""
    if kind == "bool":
        return dtype == u1
    if kind == "float":
        return dtype.is_float
    return True


@dataclass
class _Return:
    value: object


@dataclass
class LayoutRequest:
    """A layout given by ``e @ L`` for a builtin that can produce it directly."""

    layout: RegisterLayout
    loc: Loc | None


# ---- the lowering --------------------------------------------------------------------------
