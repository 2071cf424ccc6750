"""IR types: frozen values with structural equality.

- :class:`ScalarType`: one value of a dtype (indices, sizes, loop counters, scalar parameters);
- :class:`TensorType`: a global tensor with a symbolic shape such as ``[M, K // G]``; its
  elements are stored as bittile's dense bitstream (``ir/bitstream.py``);
- :class:`TileType`: a register tile with a static shape and an optional layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bittile.errors import IRError
from bittile.ir.dtypes import DType
from bittile.ir.symbolic import SymExpr, as_expr

if TYPE_CHECKING:
    from bittile.ir.layout import RegisterLayout

__all__ = ["ScalarType", "TensorType", "TileType", "Type", "is_scalar", "is_tile"]


@dataclass(frozen=True)
class ScalarType:
    dtype: DType

    def __str__(self) -> str:
        return self.dtype.name


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: tuple[SymExpr, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(as_expr(s) for s in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return f"tensor<{self.dtype.name}[{', '.join(map(str, self.shape))}]>"


@dataclass(frozen=True)
class TileType:
    dtype: DType
    shape: tuple[int, ...]
    layout: RegisterLayout | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        if not shape or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in shape):
            raise IRError(
                f"a tile has a non-empty static shape of positive ints, got {list(shape)}"
            )
        object.__setattr__(self, "shape", shape)
        if self.layout is not None and tuple(self.layout.shape) != shape:
            raise IRError(
                f"layout {self.layout} has shape {list(self.layout.shape)}, "
                f"but the tile has shape {list(shape)}"
            )

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def with_(self, *, dtype: DType | None = None, shape=None, layout=None, keep_layout=True):
        """A copy with some fields replaced (the layout is dropped when the shape changes)."""
        new_shape = tuple(shape) if shape is not None else self.shape
        if layout is None and keep_layout and new_shape == self.shape:
            layout = self.layout
        return TileType(dtype or self.dtype, new_shape, layout)

    def __str__(self) -> str:
        text = f"{self.dtype.name}[{', '.join(map(str, self.shape))}]"
        if self.layout is not None:
            text += f" @ {self.layout}"
        return f"tile<{text}>"


Type = ScalarType | TensorType | TileType


def is_scalar(t: Type) -> bool:
    return isinstance(t, ScalarType)


def is_tile(t: Type) -> bool:
    return isinstance(t, TileType)
