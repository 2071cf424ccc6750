"""How tiles exist in generated code, and the loops that walk them.

A scalar of dtype ``d`` is an LLVM ``iN`` with ``N = d.bits``: the value for integer dtypes,
the bit pattern ("code") for float dtypes, exactly as the interpreter holds them, so moving data
is bit-exact. A tile is one of:

- :class:`BufferTile`: its elements in a stack buffer, row-major, one *storage* integer each
  (8, 16 or 32 bits; signed integers sign-extended, everything else zero-extended);
- :class:`LazyTile`: a function that emits the code computing the element at an index.

Elementwise ops, broadcasts, reshapes and permutes give lazy tiles, so a chain of them costs no
memory traffic: the consumer's loop (a store, a reduction, a dot) evaluates the whole chain per
element. Loads, reductions, dots, views, loop-carried values and values used more than once
are materialized into buffers (see ``codegen.py``).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence

from llvmlite import ir

from bittile.ir.dtypes import DType

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I16 = ir.IntType(16)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()
PTR = ir.PointerType()

__all__ = ["scalar_type", "storage_type", "Tile", "BufferTile", "LazyTile", "ScalarSplat",
           "Loops", "const", "strides_of"]


def scalar_type(dtype: DType) -> ir.IntType:
    """The LLVM type of a scalar of ``dtype`` (its value or its code)."""
    return ir.IntType(dtype.bits)


def storage_type(dtype: DType) -> ir.IntType:
    """The integer a buffer stores one element of ``dtype`` in."""
    for bits in (8, 16, 32):
        if dtype.bits <= bits:
            return ir.IntType(bits)
    raise AssertionError(dtype)


def const(value: int, ty: ir.IntType = I64) -> ir.Constant:
    return ir.Constant(ty, value)


def strides_of(shape: Sequence[int]) -> list[int]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return strides[::-1]


def to_storage(b: ir.IRBuilder, value: ir.Value, dtype: DType) -> ir.Value:
    st = storage_type(dtype)
    if st.width == dtype.bits:
        return value
    return b.sext(value, st) if dtype.is_int and dtype.is_signed else b.zext(value, st)


def from_storage(b: ir.IRBuilder, value: ir.Value, dtype: DType) -> ir.Value:
    st = storage_type(dtype)
    return value if st.width == dtype.bits else b.trunc(value, scalar_type(dtype))


class Tile(abc.ABC):
    """A tile during code generation: a dtype, a static shape, and a way to read elements."""

    dtype: DType
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @abc.abstractmethod
    def element(self, b: ir.IRBuilder, idx: Sequence[ir.Value]) -> ir.Value:
        """Emit the code reading the element at ``idx`` (i64 values); return its value."""


class BufferTile(Tile):
    def __init__(self, dtype: DType, shape: Sequence[int], ptr: ir.Value):
        self.dtype, self.shape, self.ptr = dtype, tuple(shape), ptr

    def address_linear(self, b: ir.IRBuilder, lin: ir.Value) -> ir.Value:
        return b.gep(self.ptr, [lin], inbounds=True, source_etype=storage_type(self.dtype))

    def element(self, b, idx):
        return self.element_linear(b, linear_index(b, idx, self.shape))

    def element_linear(self, b, lin):
        raw = b.load(self.address_linear(b, lin), typ=storage_type(self.dtype))
        return from_storage(b, raw, self.dtype)

    def store_linear(self, b, lin, value) -> None:
        b.store(to_storage(b, value, self.dtype), self.address_linear(b, lin))

    def reshaped(self, shape: Sequence[int]) -> BufferTile:
        return BufferTile(self.dtype, shape, self.ptr)


class LazyTile(Tile):
    def __init__(self, dtype: DType, shape: Sequence[int],
                 fn: Callable[[ir.IRBuilder, Sequence[ir.Value]], ir.Value]):
        self.dtype, self.shape, self._fn = dtype, tuple(shape), fn

    def element(self, b, idx):
        return self._fn(b, idx)


class ScalarSplat(Tile):
    """A scalar seen as a tile of any shape (scalar operands of elementwise ops)."""

    def __init__(self, dtype: DType, shape: Sequence[int], value: ir.Value):
        self.dtype, self.shape, self.value = dtype, tuple(shape), value

    def element(self, b, idx):
        return self.value


_NOWRAP = ("nuw", "nsw")


def linear_index(b: ir.IRBuilder, idx: Sequence[ir.Value], shape: Sequence[int]) -> ir.Value:
    """Row-major flat index of ``idx`` (i64 values) in a tile of ``shape``."""
    if not shape:
        return const(0)
    lin = None
    for i, stride in zip(idx, strides_of(shape)):
        # tile indices are small and non-negative: the flags let LLVM fold the divisions of
        # reshapes (e.g. (n * 4096 + k) / 128) into plain index arithmetic
        term = i if stride == 1 else b.mul(i, const(stride), flags=_NOWRAP)
        lin = term if lin is None else b.add(lin, term, flags=_NOWRAP)
    return lin


def unravel(b: ir.IRBuilder, lin: ir.Value, shape: Sequence[int]) -> list[ir.Value]:
    """The multi-index of flat index ``lin`` in ``shape`` (constant divisions)."""
    out = []
    for stride, n in zip(strides_of(shape), shape):
        q = lin if stride == 1 else b.udiv(lin, const(stride))
        out.append(q if n == math.prod(shape) // stride else b.urem(q, const(n)))
    return out


class Loops:
    """Counted loops with i64 induction variables, built with phis."""

    def __init__(self, fn: ir.Function):
        self.fn = fn

    def range(self, b: ir.IRBuilder, lo: ir.Value, hi: ir.Value,
              body: Callable[[ir.Value], None], name: str = "i") -> None:
        """``for i in [lo, hi): body(i)``; ``b`` ends positioned after the loop."""
        pre = b.block
        header = self.fn.append_basic_block(f"{name}.head")
        inner = self.fn.append_basic_block(f"{name}.body")
        done = self.fn.append_basic_block(f"{name}.done")
        b.branch(header)
        b.position_at_end(header)
        i = b.phi(I64, name=name)
        i.add_incoming(lo, pre)
        b.cbranch(b.icmp_signed("<", i, hi), inner, done)
        b.position_at_end(inner)
        body(i)
        nxt = b.add(i, const(1))
        i.add_incoming(nxt, b.block)
        b.branch(header)
        b.position_at_end(done)

    def nest(self, b: ir.IRBuilder, shape: Sequence[int],
             body: Callable[[list[ir.Value]], None]) -> None:
        """Loops over every index of ``shape`` in row-major order (the last index fastest)."""
        def level(d: int, idx: list[ir.Value]) -> None:
            if d == len(shape):
                body(idx)
                return
            if shape[d] == 1:
                level(d + 1, [*idx, const(0)])
                return
            self.range(b, const(0), const(shape[d]), lambda i: level(d + 1, [*idx, i]),
                       name=f"d{d}")
        level(0, [])
