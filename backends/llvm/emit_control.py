"""``scf.for`` and ``scf.if``. Scalars flow through phis; tiles through buffers: a loop-carried
tile lives in one buffer for the whole loop (what the body yields is copied into it at the end
of each iteration), and an ``if`` writes each tile result into a buffer from both branches."""

from __future__ import annotations

from llvmlite import ir

from bittile.backends.llvm.codegen import KernelCodegen, emits
from bittile.backends.llvm.tiles import I1, I32, I64, BufferTile, Tile, const, scalar_type
from bittile.ir import ops
from bittile.ir.core import Block
from bittile.ir.types import TileType

ZERO_STEP = 1  # codegen.ERRORS


def _yielded(block: Block):
    last = block.ops[-1] if block.ops else None
    return list(last.values) if isinstance(last, ops.YieldOp) else []


def _is_tile(v) -> bool:
    return isinstance(v.type, TileType)


@emits(ops.ForOp)
def _for(op: ops.ForOp, cg: KernelCodegen):
    b = cg.b
    lo = cg.index(op.lo)
    hi = cg.index(op.hi)
    step = cg.index(op.step)
    ok = cg.fn.append_basic_block("step.ok")
    bad = cg.fn.append_basic_block("step.zero")
    b.cbranch(b.icmp_signed("==", step, const(0)), bad, ok)
    b.position_at_end(bad)
    b.ret(const(ZERO_STEP, I32))
    b.position_at_end(ok)

    carried: list[BufferTile | None] = []
    for init, out in zip(op.inits, op.outs):
        if _is_tile(out):
            buf = cg.new_buffer(out.type.dtype, out.type.shape)
            cg.materialize(cg.tile(init, out.type.shape), into=buf)
            carried.append(buf)
        else:
            carried.append(None)

    pre = b.block
    header = cg.fn.append_basic_block("for.head")
    body = cg.fn.append_basic_block("for.body")
    done = cg.fn.append_basic_block("for.done")
    b.branch(header)
    b.position_at_end(header)
    iv = b.phi(I64, name="iv")
    iv.add_incoming(lo, pre)
    phis = {}
    for i, (init, out) in enumerate(zip(op.inits, op.outs)):
        if carried[i] is None:
            phi = b.phi(scalar_type(out.type.dtype))
            phi.add_incoming(cg.scalar(init), pre)
            phis[i] = phi
    up = b.icmp_signed(">", step, const(0))
    more = b.select(up, b.icmp_signed("<", iv, hi), b.icmp_signed(">", iv, hi))
    b.cbranch(more, body, done)

    b.position_at_end(body)
    cg.bind(op.body.args[0], b.trunc(iv, scalar_type(op.body.args[0].type.dtype)))
    for i, arg in enumerate(op.body.args[1:]):
        cg.bind(arg, carried[i] if carried[i] is not None else phis[i])
    cg.emit_block(op.body)
    _copy_yields(cg, _yielded(op.body), carried)
    for i, v in enumerate(_yielded(op.body)):
        if carried[i] is None:
            phis[i].add_incoming(cg.scalar(v), b.block)
    iv.add_incoming(b.add(iv, step), b.block)
    b.branch(header)

    b.position_at_end(done)
    for i, out in enumerate(op.outs):
        cg.bind(out, carried[i] if carried[i] is not None else phis[i])


def _copy_yields(cg: KernelCodegen, values, targets) -> None:
    """Write yielded tiles into their buffers as one parallel assignment: every yielded value is
    first made a buffer of its own (it may read any target), then copied."""
    staged = []
    target_ptrs = {id(t.ptr) for t in targets if t is not None}
    for v, target in zip(values, targets):
        if target is None:
            continue
        tile: Tile = cg.tile(v, target.shape)
        if isinstance(tile, BufferTile) and tile.ptr is target.ptr:
            continue  # yields its own buffer back: nothing to do
        if not isinstance(tile, BufferTile) or id(tile.ptr) in target_ptrs:
            tile = cg.materialize(tile, into=cg.new_buffer(target.dtype, target.shape))
        staged.append((target, tile))
    for target, tile in staged:
        cg.copy_buffer(target, tile)


@emits(ops.IfOp)
def _if(op: ops.IfOp, cg: KernelCodegen):
    b = cg.b
    cond = cg.scalar(op.cond)
    if cond.type != I1:
        cond = b.icmp_unsigned("!=", cond, ir.Constant(cond.type, 0))
    buffers = [cg.new_buffer(r.type.dtype, r.type.shape) if _is_tile(r) else None
               for r in op.outs]
    then_bb = cg.fn.append_basic_block("if.then")
    else_bb = cg.fn.append_basic_block("if.else")
    merge = cg.fn.append_basic_block("if.end")
    b.cbranch(cond, then_bb, else_bb)
    incoming = []
    for bb, region in ((then_bb, op.then_body), (else_bb, op.else_body)):
        b.position_at_end(bb)
        cg.emit_block(region)
        values = _yielded(region)
        for v, buf in zip(values, buffers):
            if buf is not None:
                cg.materialize(cg.tile(v, buf.shape), into=buf)
        incoming.append(([cg.scalar(v) if buf is None else None
                          for v, buf in zip(values, buffers)], b.block))
        b.branch(merge)
    b.position_at_end(merge)
    for i, r in enumerate(op.outs):
        if buffers[i] is not None:
            cg.bind(r, buffers[i])
            continue
        phi = b.phi(scalar_type(r.type.dtype))
        for values, block in incoming:
            phi.add_incoming(values[i], block)
        cg.bind(r, phi)
