"""Public hypothesis strategies for testing tile kernels (see docs/testing.md).

- :func:`dtypes`: bittile dtypes (all, or only integer / float ones);
- :func:`layouts`: register layouts of a shape;
- :func:`tensors`: numpy arrays of values of a dtype (edge values mixed in: extremes, zeros of
  both signs, the smallest subnormal, infinities and NaN where the dtype has them);
- :func:`packed_tensors`: the same values packed into a :class:`bittile.PackedTensor`;
- :func:`kernels`: random well-typed tile programs (elementwise chains, reductions, loads and
  stores at edges, casts between any dtypes, views, dots, loops and ifs) as
  :class:`TileProgram`, which carries the program's ``.tile`` source.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from bittile.ir import dtypes as D
from bittile.ir.dtypes import DType
from bittile.testing.ir_strategies import (
    DEFAULT_DTYPES,
    GeneratedKernel,
    kernels_with_sizes,
    register_layouts,
)

__all__ = ["dtypes", "layouts", "tensors", "packed_tensors", "kernels", "TileProgram"]


def dtypes(kind: str | None = None) -> st.SearchStrategy[DType]:
    """Any bittile dtype; ``kind`` = "int", "uint", "float", "arith" (dtypes that support
    arithmetic) or None for all."""
    pool = [d for d in D.ALL_DTYPES
            if kind is None or d.kind == kind or (kind == "arith" and d.supports_arithmetic)
            or (kind == "int" and d.is_int)]
    if not pool:
        raise ValueError(f"no dtypes of kind {kind!r}")
    return st.sampled_from(pool)


def layouts(shape: Sequence[int], replication: bool = True):
    """Register layouts of ``shape`` (products of up to three primitives, sometimes
    replicated)."""
    return register_layouts(tuple(shape), replication)


def _edge_values(dtype: DType) -> np.ndarray:
    if dtype.is_int:
        return np.array([0, 1, -1, dtype.min, dtype.max], dtype=np.float64).clip(dtype.min,
                                                                                   dtype.max)
    values = [0.0, -0.0, 1.0, -1.0, dtype.max, -dtype.max, dtype.smallest_subnormal,
              dtype.smallest_normal]
    if dtype.has_inf:
        values += [np.inf, -np.inf]
    if dtype.has_nan:
        values.append(np.nan)
    return np.array(values, dtype=np.float64)


@st.composite
def tensors(draw, dtype: DType, shape: Sequence[int], *, edges: bool = True,
            nonfinite: bool = True):
    """Values of ``dtype`` (int64 or float64 carriers, as ``dtype.decode`` gives) of ``shape``:
    uniformly random codes, with edge values mixed in when ``edges``."""
    shape = tuple(shape)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << dtype.bits, size=shape, dtype=np.uint64)
    values = dtype.decode(codes).reshape(shape).astype(np.float64 if dtype.is_float else np.int64)
    if edges and values.size:
        chosen = rng.random(shape) < 0.25
        values[chosen] = rng.choice(_edge_values(dtype), size=int(chosen.sum()))
    if dtype.is_float and not nonfinite:
        values = np.where(np.isfinite(values), values, 0.0)
    return values


def packed_tensors(dtype: DType, shape: Sequence[int], **options):
    """:func:`tensors` packed into a :class:`bittile.PackedTensor`."""
    from bittile.runtime.packed import pack

    return tensors(dtype, shape, **options).map(lambda values: pack(values, dtype))


@dataclass
class TileProgram:
    """A generated kernel with its ``.tile`` source and the sizes to launch it with."""

    source: str
    generated: GeneratedKernel

    @property
    def kernel(self):
        """The kernel's IR, as the generator built it."""
        return self.generated.kernel

    @property
    def sizes(self) -> dict[str, int]:
        return self.generated.sizes

    def compile(self):
        """The kernel lowered from :attr:`source` (what a user's ``.tile`` file would give)."""
        from bittile.dsl.module import load_source

        module = load_source(self.source, "generated.tile")
        (kernel,) = module.kernels.values()
        return kernel.specialize()

    def random_arguments(self, rng: np.random.Generator, nonfinite: bool = False) -> dict[str, Any]:
        return self.generated.random_arguments(rng, nonfinite)

    def __repr__(self) -> str:
        return f"TileProgram(sizes={self.sizes}, scalars={self.generated.scalars})\n{self.source}"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


def kernels(max_ops: int = 20, dtypes: Iterable[DType] | None = None, **options):
    """Random tile programs (:class:`TileProgram`); options as for
    :func:`bittile.testing.ir_strategies.kernels_with_sizes` (``control_flow``, ``layouts``,
    ``nonfinite``, ``exclude_ops``)."""
    from bittile.testing.tile_source import NotExpressible, kernel_to_tile

    def to_program(generated: GeneratedKernel):
        try:
            return TileProgram(kernel_to_tile(generated.kernel), generated)
        except NotExpressible:
            return None

    return (kernels_with_sizes(max_ops, dtypes if dtypes is not None else DEFAULT_DTYPES,
                               **options)
            .map(to_program).filter(lambda p: p is not None))
