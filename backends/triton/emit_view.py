"""``tile.view``: reinterpret each worker's bits (Tilus semantics, see
``backends/interp/semantics.py``).

Views of unannotated tiles (one worker, row-major bits) that keep every dimension but the last
and whose bit widths divide each other by a power of two are arithmetic: packing sums shifted
groups of codes, unpacking shifts out each code. Every other view is a gather: the layouts are
known at compile time, so each result element's bits are described by a table of *segments*
(a run of bits of one source element), passed to the kernel as an int32 array, two rows per
segment slot: the padded position of the source element, and its shifts and bit count."""

from __future__ import annotations

import math

import numpy as np

from bittile.backends.triton.codegen import KernelCodegen, emits, padded
from bittile.ir import ops
from bittile.ir.dtypes import DType
from bittile.ir.layout import RegisterLayout
from bittile.ir.ops.convert import default_layout


def _to_code(dtype: DType, carrier: str) -> str:
    """A carrier as the uint32 holding its ``dtype.bits``-bit code (upper bits clear)."""
    code = f"{carrier}.to(tl.uint32, bitcast=True)"
    if dtype.is_int and dtype.bits < 32:
        code = f"({code} & {(1 << dtype.bits) - 1})"
    return code


def _from_code(dtype: DType, code: str) -> str:
    """A uint32 code (upper bits clear) as ``dtype``'s carrier (an int, or a float code)."""
    n = dtype.bits
    if dtype.kind == "int":
        if n == 32:
            return f"({code}).to(tl.int32, bitcast=True)"
        return f"((({code}) << {32 - n}).to(tl.int32, bitcast=True) >> {32 - n})"
    if dtype.kind == "uint" and n == 32:
        return code
    return f"({code}).to(tl.int32, bitcast=True)"


def _padded_positions(shape: tuple[int, ...]) -> np.ndarray:
    """The padded row-major position of every logical (row-major) element of ``shape``."""
    pshape = padded(shape)
    index = np.indices(shape).reshape(len(shape), -1)
    return np.ravel_multi_index(tuple(index), pshape).astype(np.int64)


def view_table(src_bits: int, src_layout: RegisterLayout, src_shape, dst_bits: int,
               dst_layout: RegisterLayout, dst_shape) -> np.ndarray:
    """``[2 * slots, padded result size]`` int32: for each segment slot, the padded position
    of the source element and ``src_shift | dst_shift << 8 | bits << 16`` (0 bits: unused)."""
    src_index = src_layout.inverse_table()
    dst_index = dst_layout.inverse_table()
    src_pos = _padded_positions(tuple(src_shape))
    dst_pos = _padded_positions(tuple(dst_shape))
    segments: dict[int, list[tuple[int, int]]] = {}
    for w in range(dst_index.shape[0]):
        for local, d in enumerate(dst_index[w]):
            d = int(d)
            if d in segments:  # replicated: every worker gives it the same bits
                continue
            rows = segments[d] = []
            pos, end = local * dst_bits, (local + 1) * dst_bits
            while pos < end:
                s_local, s_shift = divmod(pos, src_bits)
                n = min(end - pos, src_bits - s_shift)
                packed = s_shift | (pos - local * dst_bits) << 8 | n << 16
                rows.append((int(src_pos[src_index[w, s_local]]), packed))
                pos += n
    slots = max(len(r) for r in segments.values())
    table = np.zeros((2 * slots, math.prod(padded(tuple(dst_shape)))), np.int64)
    for d, rows in segments.items():
        for k, (source, packed) in enumerate(rows):
            table[2 * k, dst_pos[d]] = source
            table[2 * k + 1, dst_pos[d]] = packed
    return table.astype(np.int32)


def _arithmetic_view(cg: KernelCodegen, op: ops.ViewOp, codes: str) -> str | None:
    """The codes of the result of a view of row-major bits along the last dimension, or None
    when the view is not of that kind."""
    src_t = op.x.type
    sb, db = src_t.dtype.bits, op.dtype.bits
    rows_kept = op.shape[:-1] == src_t.shape[:-1]
    default = ((src_t.layout is None or src_t.layout == default_layout(src_t.shape))
               and (op.layout is None or op.layout == default_layout(op.shape)))
    ratio = max(sb, db) // min(sb, db)
    if not (rows_kept and default and max(sb, db) % min(sb, db) == 0
            and ratio & (ratio - 1) == 0):
        return None
    lead = list(padded(src_t.shape[:-1]))
    rank = len(src_t.shape)
    if ratio == 1:
        return codes
    if db > sb:  # pack groups of `ratio` codes
        grouped = f"tl.reshape({codes}, {lead + [padded(op.shape)[-1], ratio]})"
        shifts = f"(tl.arange(0, {ratio}) * {sb}).to(tl.uint32)"
        return f"tl.reduce({grouped} << {shifts}, {rank}, tl.standard._sum_combine)"
    index = "[" + ", ".join([":"] * rank + ["None"]) + "]"
    spread = f"({codes}{index} >> (tl.arange(0, {ratio}) * {db})) & {(1 << db) - 1}"
    return f"tl.reshape({spread}, {list(padded(op.shape))})"


def _table_view(cg: KernelCodegen, op: ops.ViewOp, codes: str) -> str:
    src_t = op.x.type
    table = view_table(src_t.dtype.bits, src_t.layout or default_layout(src_t.shape),
                       src_t.shape, op.dtype.bits, op.layout or default_layout(op.shape),
                       op.shape)
    ptr = cg.add_table(table, "view")
    total = table.shape[1]
    flat = cg.assign("view_source", f"tl.reshape({codes}, [{math.prod(padded(src_t.shape))}])")
    position = cg.assign("view_position", f"tl.arange(0, {total})")
    out = None
    for k in range(table.shape[0] // 2):
        source = f"tl.load({ptr} + {2 * k * total} + {position})"
        packed = cg.assign("segment", f"tl.load({ptr} + {(2 * k + 1) * total} + {position})")
        ones = f"((tl.cast(1, tl.int64) << (({packed} >> 16) & 63)) - 1).to(tl.uint32)"
        piece = (f"((tl.gather({flat}, {source}, 0) >> ({packed} & 31)) & {ones}) "
                 f"<< (({packed} >> 8) & 31)")
        out = cg.assign("view_bits", piece if out is None else f"{out} | {piece}")
    return f"tl.reshape({out}, {list(padded(op.shape))})"


@emits(ops.ViewOp)
def _view(op: ops.ViewOp, cg: KernelCodegen):
    src = op.x.type.dtype
    codes = cg.assign("view_codes", _to_code(src, cg.get(op.x, "int" if src.is_int else "code")))
    same = (op.x.type.shape == op.shape and src.bits == op.dtype.bits
            and (op.x.type.layout or default_layout(op.shape))
            == (op.layout or default_layout(op.shape)))
    result = codes if same else _arithmetic_view(cg, op, codes)
    if result is None:
        result = _table_view(cg, op, codes)
    cg.define(op.out, _from_code(op.dtype, result), hint="view")
