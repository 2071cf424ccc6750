"""Emitters for sources, elementwise ops, fused ops and shape changes: everything that gives a
tile computed element by element (lazily, see ``tiles.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from llvmlite import ir

from bittile.backends.llvm import numerics
from bittile.backends.llvm.codegen import KernelCodegen, emits
from bittile.backends.llvm.scalar_ops import constant_code, emit_scalar_op
from bittile.backends.llvm.tiles import (
    I32,
    BufferTile,
    LazyTile,
    ScalarSplat,
    Tile,
    const,
    linear_index,
    scalar_type,
    unravel,
)
from bittile.ir import ops
from bittile.ir.core import Block
from bittile.ir.dtypes import i32
from bittile.ir.types import TileType


# ---- sources -----------------------------------------------------------------------------------
@emits(ops.ConstantOp)
def _constant(op, cg: KernelCodegen):
    cg.bind(op.out, constant_code(op.value, op.dtype))


@emits(ops.BlockIdOp)
def _block_id(op, cg: KernelCodegen):
    cg.bind(op.out, cg.b.trunc(cg.block_ids[op.axis], I32))


@emits(ops.SizeOp)
def _size(op, cg: KernelCodegen):
    cg.bind(op.out, cg.b.trunc(cg.sizes[op.symbol], I32))


@emits(ops.ArangeOp)
def _arange(op, cg: KernelCodegen):
    dtype = op.dtype

    def element(b, idx):
        if dtype.is_int:
            return b.trunc(idx[0], scalar_type(dtype))
        return numerics.int_to_float(b, b.trunc(idx[0], I32), i32, dtype)

    cg.bind_lazy(op.out, LazyTile(dtype, (op.size,), element))


@emits(ops.FullOp)
def _full(op, cg: KernelCodegen):
    cg.bind(op.out, ScalarSplat(op.value.type.dtype, op.shape, cg.scalar(op.value)))


# ---- elementwise -------------------------------------------------------------------------------
@emits(*(ops.unary_op_class(k) for k in ops.UNARY_OPS),
       *(ops.binary_op_class(k) for k in ops.BINARY_OPS),
       *(ops.compare_op_class(k) for k in ops.COMPARE_OPS),
       ops.WhereOp, ops.CastOp)
def _elementwise(op, cg: KernelCodegen):
    out = op.results[0]
    if not isinstance(out.type, TileType):
        cg.bind(out, emit_scalar_op(cg.b, op, [cg.scalar(v) for v in op.operands]))
        return
    shape = out.type.shape
    tiles = [cg.tile(v, shape) for v in op.operands]

    def element(b, idx):
        return emit_scalar_op(b, op, [t.element(b, idx) for t in tiles])

    cg.bind_lazy(out, LazyTile(out.type.dtype, shape, element))


def run_scalar_body(b: ir.IRBuilder, body: Block, inputs: Sequence[ir.Value]) -> list[ir.Value]:
    """The values a fused op's scalar program yields for input values ``inputs``."""
    local = {id(a): v for a, v in zip(body.args, inputs)}
    for inner in body.ops[:-1]:
        local[id(inner.results[0])] = emit_scalar_op(
            b, inner, [local[id(v)] for v in inner.operands])
    return [local[id(v)] for v in body.ops[-1].values]


@emits(ops.FusedElementwiseOp)
def _fused(op: ops.FusedElementwiseOp, cg: KernelCodegen):
    shape = op.shape
    tiles = [cg.tile(v, shape) for v in op.inputs]

    def outputs(b, idx):
        return run_scalar_body(b, op.body, [t.element(b, idx) for t in tiles])

    if len(op.outs) == 1:
        out = op.outs[0]
        cg.bind_lazy(out, LazyTile(out.type.dtype, shape, lambda b, idx: outputs(b, idx)[0]))
        return
    # Several results: compute the program once per element, into one buffer each.
    buffers = [cg.new_buffer(r.type.dtype, shape) for r in op.outs]
    b = cg.b

    def body(idx):
        lin = linear_index(b, idx, shape)
        for buf, v in zip(buffers, outputs(b, idx)):
            buf.store_linear(b, lin, v)

    cg.loops.nest(b, shape, body)
    for r, buf in zip(op.outs, buffers):
        cg.bind(r, buf)


# ---- shapes ------------------------------------------------------------------------------------
@emits(ops.ConvertLayoutOp)
def _convert_layout(op, cg: KernelCodegen):
    cg.bind(op.out, cg.env[id(op.x)])


@emits(ops.BroadcastOp)
def _broadcast(op, cg: KernelCodegen):
    x = cg.env[id(op.x)]
    if not isinstance(x, Tile):
        cg.bind(op.out, ScalarSplat(op.x.type.dtype, op.shape, x))
        return
    if isinstance(x, ScalarSplat):
        cg.bind(op.out, ScalarSplat(x.dtype, op.shape, x.value))
        return
    keep = [s != 1 for s in x.shape]

    def element(b, idx):
        return x.element(b, [i if k else _zero() for i, k in zip(idx, keep)])

    cg.bind_lazy(op.out, LazyTile(x.dtype, op.shape, element))


def _zero():
    return const(0)


@emits(ops.ReshapeOp)
def _reshape(op, cg: KernelCodegen):
    x = cg.tile(op.x)
    if isinstance(x, BufferTile):
        cg.bind(op.out, x.reshaped(op.shape))
        return
    if isinstance(x, ScalarSplat):
        cg.bind(op.out, ScalarSplat(x.dtype, op.shape, x.value))
        return

    def element(b, idx):
        return x.element(b, unravel(b, linear_index(b, idx, op.shape), x.shape))

    cg.bind_lazy(op.out, LazyTile(x.dtype, op.shape, element))


@emits(ops.PermuteOp)
def _permute(op, cg: KernelCodegen):
    x = cg.tile(op.x)
    shape = op.out.type.shape

    def element(b, idx):
        src = [None] * len(idx)
        for i, d in enumerate(op.dims):
            src[d] = idx[i]
        return x.element(b, src)

    cg.bind_lazy(op.out, LazyTile(x.dtype, shape, element))
