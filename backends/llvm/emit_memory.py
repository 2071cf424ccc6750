"""Loads and stores of tiles at offsets of global tensors.

A tensor is dense and row-major; an element of an n-bit dtype occupies bits ``[i*n, (i+1)*n)``
of its bitstream (LSB first), so 8/16/32-bit elements are plain integers in memory and sub-byte
elements are read from one byte, or two when they straddle a byte boundary. Every access is
bounds-checked per tile row: the in-bounds part of a row is one contiguous loop (which LLVM
vectorizes), the rest reads as zero or is not written.

A load of one row (at least ``PREFETCH_MIN_BYTES``) whose offsets change with an enclosing
loop is taken to stream through its tensor: it also asks the cache for the same number of
bytes right after the row (``llvm.prefetch``, clamped to the tensor; a prefetch reads nothing
into the program and never faults), so that the next iteration's row arrives while this one is
computed on. Sub-byte stores change only their own
bits, with atomic and/or on the bytes, so blocks running on other threads may store to
neighbouring elements of the same byte.
"""

from __future__ import annotations

from llvmlite import ir

from bittile.backends.llvm.codegen import KernelCodegen, emits
from bittile.backends.llvm.tiles import I8, I16, I32, const, scalar_type, strides_of
from bittile.ir import ops
from bittile.ir.dtypes import DType


def _clamp(b: ir.IRBuilder, v: ir.Value, lo: ir.Value, hi: ir.Value) -> ir.Value:
    v = b.select(b.icmp_signed("<", v, lo), lo, v)
    return b.select(b.icmp_signed(">", v, hi), hi, v)


class _Window:
    """Where a tile sits in a tensor: per outer index, the tensor's flat index of the row's
    first element and the in-bounds column range ``[lo, hi)`` of the row."""

    def __init__(self, cg: KernelCodegen, tensor, offsets, shape):
        b = cg.b
        self.cg, self.shape = cg, tuple(shape)
        self.dims = cg.tensor_dims[id(tensor)]
        self.offs = [cg.index(o) for o in offsets]
        # row-major strides of the tensor, from its runtime dimensions
        strides, acc = [], const(1)
        for d in reversed(self.dims):
            strides.append(acc)
            acc = b.mul(acc, d)
        self.tstrides = strides[::-1]

    def rows(self, body) -> None:
        """``body(outer_idx, row_start, lo, hi)`` for every row of the tile."""
        cg, b = self.cg, self.cg.b
        if not self.shape:
            body([], const(0), const(0), const(1))
            return
        n = self.shape[-1]

        def row(idx):
            ok = ir.Constant(ir.IntType(1), 1)
            start = const(0)
            for i, off, dim, stride in zip(idx, self.offs, self.dims, self.tstrides):
                c = b.add(off, i)
                inside = b.and_(b.icmp_signed(">=", c, const(0)), b.icmp_signed("<", c, dim))
                ok = b.and_(ok, inside)
                start = b.add(start, b.mul(c, stride))
            off = self.offs[-1]
            start = b.add(start, off)
            lo = _clamp(b, b.sub(const(0), off), const(0), const(n))
            hi = _clamp(b, b.sub(self.dims[-1], off), lo, const(n))
            hi = b.select(ok, hi, lo)
            body(idx, start, lo, hi)

        cg.loops.nest(b, self.shape[:-1], row)


def read_element(b: ir.IRBuilder, base: ir.Value, index: ir.Value, dtype: DType) -> ir.Value:
    """Element ``index`` (i64) of the bitstream at ``base``."""
    bits = dtype.bits
    if bits in (8, 16, 32):
        return b.load(b.gep(base, [index], source_etype=scalar_type(dtype)), typ=scalar_type(dtype))
    bitpos = b.mul(index, const(bits))
    byte = b.lshr(bitpos, const(3))
    shift = b.trunc(b.and_(bitpos, const(7)), I16)
    lo = b.zext(b.load(b.gep(base, [byte], source_etype=I8), typ=I8), I16)
    if 8 % bits == 0:
        word = lo
    else:
        # The next byte only when the element reaches into it (it exists then).
        spans = b.icmp_unsigned(">", b.add(shift, ir.Constant(I16, bits)), ir.Constant(I16, 8))
        at = b.select(spans, b.add(byte, const(1)), byte)
        hi = b.zext(b.load(b.gep(base, [at], source_etype=I8), typ=I8), I16)
        hi = b.select(spans, hi, ir.Constant(I16, 0))
        word = b.or_(lo, b.shl(hi, ir.Constant(I16, 8)))
    return b.trunc(b.lshr(word, shift), scalar_type(dtype))


def write_element(b: ir.IRBuilder, base: ir.Value, index: ir.Value, value: ir.Value,
                  dtype: DType) -> None:
    bits = dtype.bits
    if bits in (8, 16, 32):
        b.store(value, b.gep(base, [index], source_etype=scalar_type(dtype)))
        return
    bitpos = b.mul(index, const(bits))
    byte = b.lshr(bitpos, const(3))
    shift = b.trunc(b.and_(bitpos, const(7)), I16)
    mask = b.shl(ir.Constant(I16, (1 << bits) - 1), shift)
    placed = b.shl(b.zext(value, I16), shift)
    _merge_byte(b, b.gep(base, [byte], source_etype=I8), b.trunc(mask, I8), b.trunc(placed, I8))
    if 8 % bits:
        eight = ir.Constant(I16, 8)
        spans = b.icmp_unsigned(">", b.add(shift, ir.Constant(I16, bits)), eight)
        at = b.select(spans, b.add(byte, const(1)), byte)
        hi_mask = b.select(spans, b.trunc(b.lshr(mask, eight), I8), ir.Constant(I8, 0))
        hi_bits = b.select(spans, b.trunc(b.lshr(placed, eight), I8), ir.Constant(I8, 0))
        _merge_byte(b, b.gep(base, [at], source_etype=I8), hi_mask, hi_bits)


def _merge_byte(b: ir.IRBuilder, ptr, mask, bits) -> None:
    """Set the ``mask`` bits of the byte at ``ptr`` to ``bits``, atomically per operation (the
    other bits may belong to elements another thread stores)."""
    b.atomic_rmw("and", ptr, b.xor(mask, ir.Constant(I8, 0xFF)), "monotonic")
    b.atomic_rmw("or", ptr, bits, "monotonic")


PREFETCH_MIN_BYTES = 256
CACHE_LINE = 64


def loop_varying(kernel) -> set[int]:
    """Ids of the values that depend on the induction variable of a loop around them."""
    varying: set[int] = set()

    def walk(block) -> None:
        for op in block.ops:
            if isinstance(op, ops.ForOp):
                varying.add(id(op.body.args[0]))
            if any(id(v) in varying for v in op.operands):
                varying.update(id(r) for r in op.results)
            for region in op.regions:
                walk(region)

    walk(kernel.body)
    return varying


def _streams(op: ops.LoadOp, cg: KernelCodegen) -> bool:
    """Whether ``op`` loads one row of at least PREFETCH_MIN_BYTES at offsets that change with
    an enclosing loop."""
    if not op.shape or any(n != 1 for n in op.shape[:-1]):
        return False
    if op.shape[-1] * op.tensor.type.dtype.bits < 8 * PREFETCH_MIN_BYTES:
        return False
    varying = cg.__dict__.get("_loop_varying")
    if varying is None:
        varying = cg._loop_varying = loop_varying(cg.kernel)
    return any(id(o) in varying for o in op.offsets)


def _prefetch_next(cg: KernelCodegen, base, dims, start, width: int, dtype: DType) -> None:
    """Prefetch the bytes of the ``width`` elements after the row that starts at element
    ``start`` of the tensor at ``base`` (of runtime dimensions ``dims``), as far as the tensor
    goes."""
    b = cg.b
    name = "llvm.prefetch.p0"
    fn = cg.module.globals.get(name) or ir.Function(
        cg.module, ir.FunctionType(ir.VoidType(), [ir.PointerType(), I32, I32, I32]), name)
    numel = const(1)
    for d in dims:
        numel = b.mul(numel, d)
    bits = const(dtype.bits)
    size = b.udiv(b.add(b.mul(numel, bits), const(7)), const(8))
    first = _clamp(b, b.sdiv(b.mul(b.add(start, const(width)), bits), const(8)), const(0), size)
    end = _clamp(b, b.sdiv(b.mul(b.add(start, const(2 * width)), bits), const(8)), first, size)
    lines = b.sdiv(b.add(b.sub(end, first), const(CACHE_LINE - 1)), const(CACHE_LINE))

    def line(i):
        at = b.add(first, b.mul(i, const(CACHE_LINE)))
        # a read, to be kept in every cache level, of data
        b.call(fn, [b.gep(base, [at], source_etype=I8), const(0, I32), const(3, I32),
                    const(1, I32)])

    cg.loops.range(b, const(0), lines, line, name="pf")


@emits(ops.LoadOp)
def _load(op: ops.LoadOp, cg: KernelCodegen) -> None:
    if id(op) in cg.lut_loads:
        return  # read by a table-lookup dot straight from the repacked weights
    b = cg.b
    dtype = op.tensor.type.dtype
    base = cg.scalar(op.tensor)
    out = cg.new_buffer(dtype, op.shape)
    win = _Window(cg, op.tensor, op.offsets, op.shape)
    width = op.shape[-1] if op.shape else 1
    zero = ir.Constant(scalar_type(dtype), 0)
    row_strides = strides_of(op.shape[:-1])

    def row(idx, start, lo, hi):
        first = const(0)
        for i, s in zip(idx, row_strides):
            first = b.add(first, b.mul(i, const(s * width)))

        def fill(j):
            out.store_linear(b, b.add(first, j), zero)

        def copy(j):
            v = read_element(b, base, b.add(start, j), dtype)
            out.store_linear(b, b.add(first, j), v)

        # a row wholly inside the tensor (the usual case) is copied with a constant trip
        # count, which LLVM turns into inline vector moves rather than a call to memcpy
        whole = b.and_(b.icmp_signed("==", lo, const(0)), b.icmp_signed("==", hi, const(width)))
        with b.if_else(whole) as (inside, edge):
            with inside:
                cg.loops.range(b, const(0), const(width), copy, name="ldw")
            with edge:
                cg.loops.range(b, const(0), lo, fill, name="zlo")
                cg.loops.range(b, lo, hi, copy, name="ld")
                cg.loops.range(b, hi, const(width), fill, name="zhi")

    win.rows(row)
    if _streams(op, cg):
        start = const(0)
        for off, stride in zip(win.offs, win.tstrides):
            start = b.add(start, b.mul(off, stride))
        _prefetch_next(cg, base, win.dims, start, width, dtype)
    cg.bind(op.out, out)


@emits(ops.StoreOp)
def _store(op: ops.StoreOp, cg: KernelCodegen) -> None:
    b = cg.b
    dtype = op.tensor.type.dtype
    base = cg.scalar(op.tensor)
    shape = op.value.type.shape
    value = cg.tile(op.value, shape)
    win = _Window(cg, op.tensor, op.offsets, shape)

    def row(idx, start, lo, hi):
        def put(j):
            element = value.element(b, [*idx, j] if shape else [])
            write_element(b, base, b.add(start, j), element, dtype)

        cg.loops.range(b, lo, hi, put, name="st")

    win.rows(row)
