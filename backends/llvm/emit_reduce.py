"""Reductions and dots. Floats accumulate in double (the specification computes in float64 and
rounds once; double accumulation differs from that only in the order of the float64 sums),
integers in i64 (wrapping at the end, which is exact)."""

from __future__ import annotations

from llvmlite import ir

from bittile.backends.llvm import numerics
from bittile.backends.llvm.codegen import KernelCodegen, emits
from bittile.backends.llvm.emit_compute import run_scalar_body
from bittile.backends.llvm.tiles import (
    F32,
    F64,
    I64,
    BufferTile,
    LazyTile,
    Tile,
    const,
    linear_index,
    scalar_type,
)
from bittile.ir import ops
from bittile.ir.dtypes import DType
from bittile.ir.types import TileType

_REASSOC = ("reassoc",)


def _acc_type(dtype: DType, kind: str) -> ir.Type:
    if kind == "sum":
        return F64 if dtype.is_float else I64
    return F32 if dtype.is_float else scalar_type(dtype)


def _widen(b, value, dtype: DType, kind: str):
    """An element (code or integer) as an accumulator value."""
    if dtype.is_float:
        f = numerics.decode(b, value, dtype)
        return b.fpext(f, F64) if kind == "sum" else f
    if kind == "sum":
        return b.sext(value, I64) if dtype.is_signed else b.zext(value, I64)
    return value


def _init(dtype: DType, kind: str) -> ir.Constant:
    if kind == "sum":
        return ir.Constant(_acc_type(dtype, kind), 0.0 if dtype.is_float else 0)
    if dtype.is_float:
        return ir.Constant(F32, float("-inf") if kind == "max" else float("inf"))
    bound = dtype.min if kind == "max" else dtype.max
    return ir.Constant(scalar_type(dtype), bound & ((1 << dtype.bits) - 1))


def _combine(b: ir.IRBuilder, acc, x, dtype: DType, kind: str):
    if kind == "sum":
        return b.fadd(acc, x, flags=_REASSOC) if dtype.is_float else b.add(acc, x)
    if dtype.is_float:
        # NaN propagates: once the accumulator is NaN nothing replaces it
        better = b.fcmp_ordered(">" if kind == "max" else "<", x, acc)
        take = b.or_(better, b.fcmp_unordered("uno", x, x))
        return b.select(take, x, acc)
    op = ">" if kind == "max" else "<"
    better = b.icmp_signed(op, x, acc) if dtype.is_signed else b.icmp_unsigned(op, x, acc)
    return b.select(better, x, acc)


def _narrow(b, acc, dtype: DType, kind: str):
    """An accumulator value as a value of ``dtype`` (rounded once)."""
    if dtype.is_float:
        return numerics.round_arith(b, acc, dtype)
    return b.trunc(acc, scalar_type(dtype)) if kind == "sum" else acc


@emits(*ops.REDUCE_OPS.values())
def _reduce(op, cg: KernelCodegen):
    b, kind = cg.b, op.kind
    x = cg.tile(op.x)
    dtype = x.dtype
    scalar_result = not isinstance(op.out.type, TileType)  # a rank-1 tile summed to a scalar
    out_shape = () if scalar_result else op.out.type.shape
    kept = tuple(s for d, s in enumerate(x.shape) if d != op.axis)
    n_out = max(1, len(kept) and _prod(kept))
    acc_ty = _acc_type(dtype, kind)
    acc = cg.alloca(acc_ty, n_out, name="acc")

    def init(i):
        b.store(_init(dtype, kind), b.gep(acc, [i], source_etype=acc_ty))

    cg.loops.range(b, const(0), const(n_out), init, name="init")

    def step(idx):
        j = linear_index(b, [i for d, i in enumerate(idx) if d != op.axis], kept)
        slot = b.gep(acc, [j], source_etype=acc_ty)
        value = _widen(b, x.element(b, idx), dtype, kind)
        b.store(_combine(b, b.load(slot, typ=acc_ty), value, dtype, kind), slot)

    cg.loops.nest(b, x.shape, step)
    if scalar_result:
        value = b.load(b.gep(acc, [const(0)], source_etype=acc_ty), typ=acc_ty)
        cg.bind(op.out, _narrow(b, value, dtype, kind))
        return
    out = cg.new_buffer(dtype, out_shape)

    def finish(i):
        out.store_linear(b, i, _narrow(b, b.load(b.gep(acc, [i], source_etype=acc_ty),
                                                 typ=acc_ty), dtype, kind))

    cg.loops.range(b, const(0), const(n_out), finish, name="fin")
    cg.bind(op.out, out)


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# ---- dot ---------------------------------------------------------------------------------------
def _decoded_rows(cg: KernelCodegen, tile: Tile, dtype: DType) -> Tile | BufferTile:
    """``tile``'s values (f32 for floats), in a buffer, so that the dot's inner loop reads plain
    numbers once per use instead of decoding (or dequantizing) again."""
    b = cg.b
    ty = F32 if dtype.is_float else I64
    ptr = cg.alloca(ty, tile.numel, name="opnd")

    def body(idx):
        v = _widen(b, tile.element(b, idx), dtype, "sum")
        if dtype.is_float:
            v = b.fptrunc(v, F32)  # exact: the value came from f32
        b.store(v, b.gep(ptr, [linear_index(b, idx, tile.shape)], source_etype=ty))

    cg.loops.nest(b, tile.shape, body)
    return ptr


def emit_dot(cg: KernelCodegen, a: Tile, bt: Tile, acc_tile: Tile, out_value) -> None:
    """``acc + a @ bt`` into a new buffer bound to ``out_value``."""
    m, kdim = a.shape
    n = bt.shape[1]
    if acc_tile.dtype.is_float and n >= 8:
        from bittile.backends.llvm.emit_gemm import emit_float_gemm

        emit_float_gemm(cg, a, bt, acc_tile, out_value)
        return
    b = cg.b
    in_dtype, acc_dtype = a.dtype, acc_tile.dtype
    is_float = acc_dtype.is_float
    cty = F64 if is_float else I64
    c = cg.alloca(cty, m * n, name="c")

    def init(idx):
        lin = linear_index(b, idx, (m, n))
        b.store(_widen(b, acc_tile.element(b, idx), acc_dtype, "sum"),
                b.gep(c, [lin], source_etype=cty))

    cg.loops.nest(b, (m, n), init)
    a_vals = _decoded_rows(cg, a, in_dtype)
    b_vals = _decoded_rows(cg, bt, in_dtype)
    vty = F32 if in_dtype.is_float else I64

    def product(mi, ki, ni):
        av = b.load(b.gep(a_vals, [b.add(b.mul(mi, const(kdim)), ki)], source_etype=vty),
                    typ=vty)
        bv = b.load(b.gep(b_vals, [b.add(b.mul(ki, const(n)), ni)], source_etype=vty), typ=vty)
        if is_float:
            return b.fmul(b.fpext(av, F64), b.fpext(bv, F64))
        return b.mul(av, bv)

    def accumulate(slot, value):
        old = b.load(slot, typ=cty)
        b.store(b.fadd(old, value, flags=_REASSOC) if is_float else b.add(old, value), slot)

    def c_slot(mi, ni):
        return b.gep(c, [b.add(b.mul(mi, const(n)), ni)], source_etype=cty)

    loops = cg.loops
    if n >= 8:
        # rows of b stream through the innermost loop (vectorized along n)
        loops.range(b, const(0), const(m), lambda mi: loops.range(
            b, const(0), const(kdim), lambda ki: loops.range(
                b, const(0), const(n), lambda ni: accumulate(c_slot(mi, ni),
                                                             product(mi, ki, ni)),
                name="n"), name="k"), name="m")
    else:
        # narrow results (matrix-vector): the innermost loop is the reduction along k
        loops.range(b, const(0), const(m), lambda mi: loops.range(
            b, const(0), const(n), lambda ni: loops.range(
                b, const(0), const(kdim), lambda ki: accumulate(c_slot(mi, ni),
                                                                product(mi, ki, ni)),
                name="k"), name="n"), name="m")
    out = cg.new_buffer(acc_dtype, (m, n))

    def finish(i):
        v = b.load(b.gep(c, [i], source_etype=cty), typ=cty)
        out.store_linear(b, i, _narrow(b, v, acc_dtype, "sum"))

    cg.loops.range(b, const(0), const(m * n), finish, name="fin")
    cg.bind(out_value, out)


@emits(ops.DotOp)
def _dot(op, cg: KernelCodegen):
    emit_dot(cg, cg.tile(op.a), cg.tile(op.b), cg.tile(op.acc), op.out)


@emits(ops.DequantDotOp)
def _dequant_dot(op: ops.DequantDotOp, cg: KernelCodegen):
    lut = cg.lut_dots.get(id(op))
    if lut is not None:
        from bittile.backends.llvm.lut_dot import emit_lut_dot

        emit_lut_dot(cg, *lut)
        return
    shape = op.w.type.shape
    inputs = [cg.tile(v, shape) for v in op.body_inputs]
    dtype = op.x.type.dtype

    def element(b, idx):
        return run_scalar_body(b, op.body, [t.element(b, idx) for t in inputs])[0]

    computed = LazyTile(dtype, shape, element)
    dense = cg.tile(op.x)
    a, bt = (dense, computed) if op.dequantized == "b" else (computed, dense)
    emit_dot(cg, a, bt, cg.tile(op.acc), op.out)
