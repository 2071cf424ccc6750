"""``tile.view``: reinterpret each worker's bits (Tilus semantics, see
``backends/interp/semantics.py``). The layouts are known at compile time, so the bit movement
is computed here as a table of *segments* (a run of bits of one source element that lands in
one result element) and the generated code walks that table."""

from __future__ import annotations

import numpy as np
from llvmlite import ir

from bittile.backends.llvm.codegen import KernelCodegen, emits
from bittile.backends.llvm.tiles import I32, I64, const, scalar_type
from bittile.ir import ops
from bittile.ir.layout import RegisterLayout
from bittile.ir.ops.convert import default_layout


def view_segments(src_bits: int, src_layout: RegisterLayout, dst_bits: int,
                  dst_layout: RegisterLayout) -> np.ndarray:
    """Rows ``(dst, dst_shift, src, src_shift, nbits)``: result element ``dst`` holds, from bit
    ``dst_shift`` up, ``nbits`` bits of source element ``src`` starting at bit ``src_shift``
    (elements as flat row-major indices). Each result element is taken from the first worker
    that holds it."""
    src_index = src_layout.inverse_table()
    dst_index = dst_layout.inverse_table()
    rows, seen = [], set()
    for w in range(dst_index.shape[0]):
        for local, d in enumerate(dst_index[w]):
            d = int(d)
            if d in seen:
                continue
            seen.add(d)
            pos, end = local * dst_bits, (local + 1) * dst_bits
            while pos < end:
                s_local, s_shift = divmod(pos, src_bits)
                n = min(end - pos, src_bits - s_shift)
                rows.append((d, pos - local * dst_bits, int(src_index[w, s_local]), s_shift, n))
                pos += n
    return np.asarray(rows, dtype=np.int64).reshape(-1, 5)


def _global_array(cg: KernelCodegen, name: str, values) -> ir.GlobalVariable:
    ty = ir.ArrayType(I32, len(values))
    gv = ir.GlobalVariable(cg.module, ty, name=cg.module.get_unique_name(name))
    gv.global_constant = True
    gv.linkage = "internal"
    gv.initializer = ir.Constant(ty, [int(v) for v in values])
    return gv


@emits(ops.ViewOp)
def _view(op: ops.ViewOp, cg: KernelCodegen):
    b = cg.b
    src_t = op.x.type
    src = cg.materialize(cg.tile(op.x))
    segments = view_segments(src_t.dtype.bits, src_t.layout or default_layout(src_t.shape),
                             op.dtype.bits, op.layout or default_layout(op.shape))
    out = cg.new_buffer(op.dtype, op.shape)
    tmp = cg.alloca(I64, out.numel, name="bits")

    def clear(i):
        b.store(const(0), b.gep(tmp, [i], source_etype=I64))

    cg.loops.range(b, const(0), const(out.numel), clear, name="clr")
    columns = [_global_array(cg, f"view.{n}", segments[:, c])
               for c, n in enumerate(("dst", "dsh", "src", "ssh", "n"))]
    src_mask = const((1 << src_t.dtype.bits) - 1)

    def segment(i):
        def col(c):
            ptr = b.gep(columns[c], [ir.Constant(I32, 0), i], source_etype=columns[c].value_type)
            return b.zext(b.load(ptr, typ=I32), I64)

        d, dsh, s, ssh, n = (col(c) for c in range(5))
        code = b.and_(b.zext(src.element_linear(b, s), I64), src_mask)
        piece = b.and_(b.lshr(code, ssh), b.sub(b.shl(const(1), n), const(1)))
        slot = b.gep(tmp, [d], source_etype=I64)
        b.store(b.or_(b.load(slot, typ=I64), b.shl(piece, dsh)), slot)

    cg.loops.range(b, const(0), const(len(segments)), segment, name="seg")

    def finish(i):
        bits = b.load(b.gep(tmp, [i], source_etype=I64), typ=I64)
        out.store_linear(b, i, b.trunc(bits, scalar_type(op.dtype)))

    cg.loops.range(b, const(0), const(out.numel), finish, name="fin")
    cg.bind(op.out, out)
