"""Choosing the table-lookup (T-MAC) lowering for ``tile.dequant_dot``, and emitting it.

A dequantizing dot qualifies when

1. its low-bit operand is a ``tile.load`` of a kernel tensor of an integer dtype of at most
   8 bits that the kernel only reads, and every use of that tensor is such a dot's load (the
   kernel then receives the tensor *repacked* into the lookup layout, see ``lut.py``);
2. the body is affine in the code: ``f(q, p...) = alpha(p) * q + beta(p)``, checked on its ops
   (``q`` only reaches a cast to float, then adds, subtracts, multiplications and divisions by
   values that do not depend on ``q``);
3. the side inputs (scales, zero points) are constant over runs of ``group_k`` (a multiple of
   4) along K in the tile: found by tracing which source element each tile element comes from
   through reshapes, broadcasts and permutes (:func:`provenance`);
4. the load's offsets are provably multiples of the tile's extents (so a tile of the tensor is a
   tile of the repacked layout), and the number of dense rows M is at most
   ``BITTILE_LUT_MAX_M`` (the heuristic: table lookup wins for small M, dequantize-and-FMA
   for larger M; ``BITTILE_DOT_LOWERING=fma`` or ``lut`` overrides it).

Weights outside the tensor read as code 0 in both lowerings (padding of the repacked tiles,
masked loads of the plain one), so both compute the same function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bittile.ir import ops
from bittile.ir.core import Kernel, Op, Value
from bittile.ir.types import ScalarType, TensorType

__all__ = ["LutDot", "plan_lut_dots", "provenance", "known_divisor"]


@dataclass(frozen=True)
class LutDot:
    """A dequantizing dot lowered to table lookups."""

    op: ops.DequantDotOp
    load: ops.LoadOp
    param_index: int  #: index of the weight among the kernel's tensor parameters
    k_axis: int  #: the K axis of the weight tensor (and of its loaded tile)
    group_k: int
    m: int
    #: the offsets of the load the dense operand comes from, when it is a load (through shape
    #: changes) of a tensor the kernel never writes: equal offsets give equal tables
    dense_key: tuple | None = None


def _producers(kernel: Kernel) -> dict[int, Op]:
    return {id(r): op for op in kernel.walk() for r in op.results}


# ---- affinity of the body in the code ----------------------------------------------------------
def body_is_affine(op: ops.DequantDotOp) -> bool:
    """The body computes ``alpha * q + beta`` with alpha and beta independent of ``q``."""
    body = op.body
    q = body.args[0]
    dependent = {id(q)}
    for inner in body.ops[:-1]:
        deps = [id(v) in dependent for v in inner.operands]
        if not any(deps):
            continue
        result = inner.results[0]
        if isinstance(inner, ops.CastOp):
            if inner.operands[0] is not q or not inner.dtype.is_float:
                return False
        elif isinstance(inner, ops.BinaryOp) and not isinstance(inner, ops.CompareOp):
            if inner.kind in ("add", "sub"):
                pass
            elif inner.kind == "mul" and sum(deps) == 1:
                pass
            elif inner.kind == "div" and deps == [True, False]:
                pass
            else:
                return False
            if id(q) in (id(v) for v in inner.operands):
                return False  # integer arithmetic on the code itself
        elif isinstance(inner, ops.UnaryOp) and inner.kind == "neg":
            if inner.operands[0] is q:
                return False
        else:
            return False
        dependent.add(id(result))
    return True


# ---- provenance and constancy ------------------------------------------------------------------
class _Ids:
    def __init__(self):
        self.next = 0

    def fresh(self, shape) -> np.ndarray:
        n = math.prod(shape)
        out = np.arange(self.next, self.next + n, dtype=np.int64).reshape(shape)
        self.next += n
        return out


def provenance(value: Value, producers: dict[int, Op], ids: _Ids | None = None) -> np.ndarray:
    """An integer per element of tile ``value`` (a scalar gives one id): elements with the same
    id are certainly equal (they come from the same elements of the same sources)."""
    ids = ids or _Ids()
    if isinstance(value.type, ScalarType):
        return ids.fresh(())
    shape = value.type.shape
    op = producers.get(id(value))
    if isinstance(op, (ops.ReshapeOp, ops.ConvertLayoutOp)):
        return provenance(op.x, producers, ids).reshape(shape)
    if isinstance(op, ops.BroadcastOp):
        return np.broadcast_to(provenance(op.x, producers, ids), shape)
    if isinstance(op, ops.PermuteOp):
        return np.transpose(provenance(op.x, producers, ids), op.dims)
    if isinstance(op, ops.FullOp):
        return np.broadcast_to(ids.fresh(()), shape)
    if isinstance(op, (ops.UnaryOp, ops.BinaryOp, ops.WhereOp, ops.CastOp,
                       ops.FusedElementwiseOp)) and len(op.results) == 1:
        parts = [np.broadcast_to(provenance(v, producers, ids), shape).reshape(-1)
                 for v in op.operands]
        _, inverse = np.unique(np.stack(parts, axis=1), axis=0, return_inverse=True)
        base = ids.next
        ids.next += len(inverse)
        return inverse.reshape(shape) + base
    return ids.fresh(shape)


def constant_run(prov: np.ndarray, axis: int) -> int:
    """The largest run length ``g`` dividing the extent along ``axis``, a multiple of 4, such
    that ``prov`` is constant on every aligned run of ``g`` along ``axis`` (0 if none)."""
    extent = prov.shape[axis]
    moved = np.moveaxis(prov, axis, -1)
    for g in sorted((d for d in range(4, extent + 1, 4) if extent % d == 0), reverse=True):
        runs = moved.reshape(*moved.shape[:-1], extent // g, g)
        if np.all(runs == runs[..., :1]):
            return g
    return 0


# ---- divisibility of offsets -------------------------------------------------------------------
def known_divisor(value: Value, producers: dict[int, Op], loops: dict[int, ops.ForOp]) -> int:
    """A positive integer that certainly divides ``value`` (0 means the value is 0)."""
    op = producers.get(id(value))
    if isinstance(op, ops.ConstantOp) and op.dtype.is_int:
        return abs(int(op.value))
    if isinstance(op, ops.BinaryOp) and op.kind in ("mul", "add", "sub"):
        a = known_divisor(op.lhs, producers, loops)
        b = known_divisor(op.rhs, producers, loops)
        return a * b if op.kind == "mul" else math.gcd(a, b)
    loop = loops.get(id(value))
    if loop is not None:
        return math.gcd(known_divisor(loop.lo, producers, loops),
                        known_divisor(loop.step, producers, loops))
    return 1


def _divides(divisor: int, tile: int) -> bool:
    return divisor == 0 or divisor % tile == 0


# ---- planning ----------------------------------------------------------------------------------
def plan_lut_dots(kernel: Kernel, max_m: int, force: bool = False) -> list[LutDot]:
    """The dequantizing dots of ``kernel`` (after the llvm pipeline) that take the table-lookup
    lowering."""
    producers = _producers(kernel)
    loops = {id(op.body.args[0]): op for op in kernel.walk() if isinstance(op, ops.ForOp)}
    tensor_params = [v for p, v in zip(kernel.params, kernel.body.args)
                     if isinstance(p.type, TensorType)]
    index_of = {id(v): i for i, v in enumerate(tensor_params)}
    candidates: dict[int, list[LutDot]] = {}
    rejected: set[int] = set()
    uses: dict[int, int] = {}
    for op in kernel.walk():
        for v in op.operands:
            uses[id(v)] = uses.get(id(v), 0) + 1
    for op in kernel.walk():
        if isinstance(op, (ops.StoreOp, ops.StoreWordsOp)):
            rejected.add(id(op.tensor))
        if isinstance(op, (ops.LoadOp, ops.LoadWordsOp)):
            candidates.setdefault(id(op.tensor), [])
        if not isinstance(op, ops.DequantDotOp):
            continue
        found = _qualify(op, producers, loops, index_of, max_m, force)
        if found is not None and uses.get(id(found.load.out)) == 1:
            candidates.setdefault(id(found.load.tensor), []).append(found)
    # every load of a repacked tensor must belong to a qualifying dot
    loads_of = {}
    for op in kernel.walk():
        if isinstance(op, (ops.LoadOp, ops.LoadWordsOp)):
            loads_of.setdefault(id(op.tensor), []).append(op)
    chosen = []
    for tensor_id, dots in candidates.items():
        if not dots or tensor_id in rejected:
            continue
        if len(loads_of.get(tensor_id, [])) != len(dots):
            continue
        if len({(d.k_axis, d.op.w.type.shape) for d in dots}) != 1:
            continue  # one repacked layout per tensor
        params = {id(v) for v in kernel.body.args}
        chosen.extend(_with_dense_key(d, producers, rejected, params) for d in dots)
    return chosen


def _with_dense_key(dot: LutDot, producers, written: set[int], params: set[int]) -> LutDot:
    value = dot.op.x
    while True:
        op = producers.get(id(value))
        if isinstance(op, (ops.ReshapeOp, ops.PermuteOp, ops.BroadcastOp, ops.ConvertLayoutOp,
                           ops.CastOp)):  # functions of the loaded values alone
            value = op.x
            continue
        if isinstance(op, ops.FusedElementwiseOp) and len(op.outs) == 1:
            tiles = [v for v in op.inputs if not isinstance(v.type, ScalarType)]
            fixed = all(isinstance(producers.get(id(v)), ops.ConstantOp) or id(v) in params
                        for v in op.inputs if isinstance(v.type, ScalarType))
            if len(tiles) == 1 and fixed:  # elementwise on the load, with launch constants
                value = tiles[0]
                continue
        break
    if (isinstance(op, ops.LoadOp) and id(op.tensor) not in written
            and 1 <= len(op.offsets) <= 2):
        from dataclasses import replace

        return replace(dot, dense_key=tuple(op.offsets))
    return dot


def _qualify(op: ops.DequantDotOp, producers, loops, index_of, max_m, force) -> LutDot | None:
    load = producers.get(id(op.w))
    if not isinstance(load, ops.LoadOp) or id(load.tensor) not in index_of:
        return None
    dtype = load.tensor.type.dtype
    if not dtype.is_int or dtype.bits > 8 or load.tensor.type.rank != 2:
        return None
    if not body_is_affine(op):
        return None
    k_axis = 1 if op.dequantized == "a" else 0
    block = op.w.type.shape
    m = op.x.type.shape[1] if op.dequantized == "a" else op.x.type.shape[0]
    if not force and m > max_m:
        return None
    if block[k_axis] % 4:
        return None
    group = block[k_axis]
    ids = _Ids()
    for side in op.params:
        if isinstance(side.type, ScalarType):
            continue
        group = math.gcd(group, constant_run(provenance(side, producers, ids), k_axis) or 1)
    if group % 4:
        return None
    for axis, offset in enumerate(load.offsets):
        if not _divides(known_divisor(offset, producers, loops), block[axis]):
            return None
    return LutDot(op, load, index_of[id(load.tensor)], k_axis, group, m)


# ---- code generation ---------------------------------------------------------------------------
def lut_spec(plan: LutDot, exact: bool, level: str):
    from bittile.backends.llvm.lut import LutSpec

    shape = plan.op.w.type.shape
    return LutSpec(bits=plan.load.tensor.type.dtype.bits, m=plan.m,
                   block_k=shape[plan.k_axis], block_n=shape[1 - plan.k_axis],
                   group_k=plan.group_k, exact=exact, level=level)


def emit_lut_dot(cg, plan: LutDot, spec) -> None:
    """``acc + a @ b`` of ``plan.op`` by table lookups on the repacked weight tile."""
    from llvmlite import ir

    from bittile.backends.llvm import numerics
    from bittile.backends.llvm.emit_compute import run_scalar_body
    from bittile.backends.llvm.lut import (
        emit_lut_tables,
        emit_lut_tile_tables,
        tables_bytes,
        tile_bytes,
    )
    from bittile.backends.llvm.tiles import F32, I8, PTR, const, scalar_type

    op, b, loops = plan.op, cg.b, cg.loops
    ka, wdtype = plan.k_axis, plan.load.tensor.type.dtype
    kd, rn, m, g = spec.block_k, spec.block_n, spec.m, spec.group_k
    fns = cg.lut_functions.get(spec)
    if fns is None:
        name = f"bittile_lut{len(cg.lut_functions)}"
        fns = (emit_lut_tables(cg.module, spec, name + ".tables"),
               emit_lut_tile_tables(cg.module, spec, name))
        for fn in fns:  # kept out of line: inlined into a large block function they run slower
            fn.attributes.add("noinline")
        cg.lut_functions[spec] = fns
    tables_fn, tile_fn = fns

    def f32_slot(ptr, i):
        return b.gep(ptr, [i], source_etype=F32)

    def tile_index(k, n):
        return [k, n] if ka == 0 else [n, k]

    # alpha and beta per (run of g along K, output n), from the body at two codes
    ngroups = kd // g
    alpha = cg.alloca(F32, ngroups * rn, name="alpha")
    beta = cg.alloca(F32, ngroups * rn, name="beta")
    sides = [cg.tile(v, op.w.type.shape) for v in op.params]
    v1 = 1 if wdtype.max >= 1 else -1
    offset = (1 << (wdtype.bits - 1)) if wdtype.is_signed else 0
    qtype = scalar_type(wdtype)

    # In the side inputs' own tiles K runs along axis ka; walking the loop nest in that order
    # (K innermost when ka == 1) keeps their reads contiguous so the loop vectorizes. With K
    # innermost the coefficients come out [n][group] and are transposed for the lookup kernel.
    k_inner = ka == 1
    staged = (cg.alloca(F32, ngroups * rn, name="alpha_t"),
              cg.alloca(F32, ngroups * rn, name="beta_t")) if k_inner else (alpha, beta)

    def coefficients(gi, n):
        idx = tile_index(b.mul(gi, const(g), flags=("nuw", "nsw")), n)
        side_values = [t.element(b, idx) for t in sides]
        out_dtype = op.x.type.dtype

        def f(v):
            code = ir.Constant(qtype, v & ((1 << wdtype.bits) - 1))
            return numerics.decode(b, run_scalar_body(b, op.body, [code, *side_values])[0],
                                   out_dtype)

        f0, f1 = f(0), f(v1)
        a = b.fsub(f1, f0) if v1 == 1 else b.fsub(f0, f1)
        slot = b.add(b.mul(n, const(ngroups)), gi) if k_inner else \
            b.add(b.mul(gi, const(rn)), n)
        b.store(a, f32_slot(staged[0], slot))
        b.store(b.fsub(f0, b.fmul(a, ir.Constant(F32, float(offset)))),
                f32_slot(staged[1], slot))

    if k_inner:
        loops.range(b, const(0), const(rn), lambda n: loops.range(
            b, const(0), const(ngroups), lambda gi: coefficients(gi, n), name="g"), name="n")

        def transpose_block(src, dst, gb, nb, lanes):
            """dst[g][n] = src[n][g] for the lanes x lanes block at (gb, nb)."""
            vec = ir.VectorType(F32, lanes)
            rows = []
            for i in range(lanes):  # rows n of src, columns g
                at = b.add(b.mul(b.add(b.mul(nb, const(lanes)), const(i)), const(ngroups)),
                           b.mul(gb, const(lanes)))
                rows.append(b.load(b.bitcast(f32_slot(src, at), vec.as_pointer()), typ=vec,
                                   align=4))
            rows = transposed_vectors(b, rows, lanes)
            for i in range(lanes):  # rows g of dst, columns n
                at = b.add(b.mul(b.add(b.mul(gb, const(lanes)), const(i)), const(rn)),
                           b.mul(nb, const(lanes)))
                b.store(rows[i], b.bitcast(f32_slot(dst, at), vec.as_pointer()), align=4)

        lanes = max(4, cg.vector_bits // 32)
        if ngroups % lanes == 0 and rn % lanes == 0:
            # lanes x lanes blocks transposed in registers (LLVM would gather element by
            # element from a scalar loop)
            for t, final in zip(staged, (alpha, beta)):
                loops.range(b, const(0), const(ngroups // lanes), lambda gb, t=t, final=final:
                            loops.range(b, const(0), const(rn // lanes),
                                        lambda nb: transpose_block(t, final, gb, nb, lanes),
                                        name="nb"), name="gb")
        else:
            def transpose(gi, n):
                src = b.add(b.mul(n, const(ngroups)), gi)
                dst = b.add(b.mul(gi, const(rn)), n)
                for t, final in zip(staged, (alpha, beta)):
                    b.store(b.load(f32_slot(t, src), typ=F32), f32_slot(final, dst))

            loops.range(b, const(0), const(ngroups), lambda gi: loops.range(
                b, const(0), const(rn), lambda n: transpose(gi, n), name="n"), name="g")

    else:
        loops.range(b, const(0), const(ngroups), lambda gi: loops.range(
            b, const(0), const(rn), lambda n: coefficients(gi, n), name="n"), name="g")

    # the dense operand as rows of K, and the accumulator as [m, n], in f32
    dense, acc = cg.tile(op.x), cg.tile(op.acc)
    xs = cg.alloca(F32, m * kd, name="xrows")
    accs = cg.alloca(F32, m * rn, name="accrows")
    transposed = op.dequantized == "a"

    def dense_row(mi, k):
        v = dense.element(b, [k, mi] if transposed else [mi, k])
        b.store(numerics.decode(b, v, dense.dtype), f32_slot(xs, b.add(b.mul(mi, const(kd)), k)))

    def acc_row(mi, n):
        v = acc.element(b, [n, mi] if transposed else [mi, n])
        b.store(numerics.decode(b, v, acc.dtype), f32_slot(accs, b.add(b.mul(mi, const(rn)), n)))

    def build_tables(into):
        loops.range(b, const(0), const(m), lambda mi: loops.range(
            b, const(0), const(kd), lambda k: dense_row(mi, k), name="k"), name="m")
        b.call(tables_fn, [xs, into])

    loops.range(b, const(0), const(m), lambda mi: loops.range(
        b, const(0), const(rn), lambda n: acc_row(mi, n), name="n"), name="m")

    # the weight tile in the repacked tensor, or a tile of zero codes outside it
    weights = plan.load.tensor
    dims = cg.tensor_dims[id(weights)]
    k0 = cg.index(plan.load.offsets[ka])
    n0 = cg.index(plan.load.offsets[1 - ka])
    ktiles = b.udiv(b.add(dims[ka], const(kd - 1)), const(kd))
    ntiles = b.udiv(b.add(dims[1 - ka], const(rn - 1)), const(rn))
    kt, nt = b.sdiv(k0, const(kd)), b.sdiv(n0, const(rn))
    inside = b.and_(b.and_(b.icmp_signed(">=", k0, const(0)), b.icmp_signed(">=", n0, const(0))),
                    b.and_(b.icmp_signed("<", kt, ktiles), b.icmp_signed("<", nt, ntiles)))
    nbytes = tile_bytes(spec)
    tile_at = b.gep(cg.scalar(weights), [b.mul(b.add(b.mul(kt, ntiles), nt), const(nbytes))],
                    source_etype=I8)
    zeros = cg.zero_bytes(nbytes)
    tables = _tables_for(cg, plan, spec, tables_bytes(spec), inside, kt, build_tables)
    b.call(tile_fn, [tables, b.select(inside, tile_at, zeros), alpha, beta, accs])

    out = cg.new_buffer(acc.dtype, op.out.type.shape)

    def result(mi, n):
        v = b.load(f32_slot(accs, b.add(b.mul(mi, const(rn)), n)), typ=F32)
        lin = b.add(b.mul(n, const(m)), mi) if transposed else b.add(b.mul(mi, const(rn)), n)
        out.store_linear(b, lin, numerics.round_arith(b, v, acc.dtype))

    loops.range(b, const(0), const(m), lambda mi: loops.range(
        b, const(0), const(rn), lambda n: result(mi, n), name="n"), name="m")
    cg.bind(op.out, out)
    assert PTR is not None


def transposed_vectors(b, rows: list, lanes: int) -> list:
    """The transpose of the ``lanes`` x ``lanes`` matrix whose rows are the vectors ``rows``:
    for each bit d of the index, element (i, j) with bit d of i clear and set in j trades places
    with (i + d, j - d); swapping every bit of the row index with the column's is the
    transpose. Each step is two two-source shuffles per pair of rows."""
    from llvmlite import ir

    rows = list(rows)
    d = lanes // 2
    while d:
        for i in range(lanes):
            if i & d:
                continue
            lo, hi = rows[i], rows[i + d]
            # new lo: lo where bit d of j is clear, else hi[j - d]; new hi: lo[j + d] where
            # clear, else hi (indices into the concatenation lo ++ hi)
            mask_lo = [j if not j & d else lanes + j - d for j in range(lanes)]
            mask_hi = [j + d if not j & d else lanes + j for j in range(lanes)]
            i32 = ir.IntType(32)
            rows[i] = b.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(i32, lanes), mask_lo))
            rows[i + d] = b.shuffle_vector(lo, hi,
                                           ir.Constant(ir.VectorType(i32, lanes), mask_hi))
        d //= 2
    return rows


def _tables_for(cg, plan: LutDot, spec, nbytes: int, inside, kt, build_tables):
    """The lookup tables of the dense operand: built into a stack buffer, or, when the dense
    operand is a load of a tensor the kernel never writes (so equal load offsets mean equal
    tables), cached per K tile in the worker thread's scratch memory and built only when that
    K tile's offsets change: a thread then builds each row block's tables once, not once per
    output tile."""
    from llvmlite import ir

    from bittile.backends.llvm.tiles import I8, I64, const

    b = cg.b
    local = cg.alloca(I8, nbytes, name="tables")
    key_parts = plan.dense_key
    if key_parts is None:
        build_tables(local)
        return local
    ka, kd = plan.k_axis, spec.block_k
    weights_slot = cg.dims_slot[id(plan.load.tensor)] + ka

    def count(bb, ints_ptr):
        k = bb.load(bb.gep(ints_ptr, [const(weights_slot)], source_etype=I64), typ=I64)
        return bb.udiv(bb.add(k, const(kd - 1)), const(kd))

    region = cg.scalar_region_cache.get(id(plan.op))
    if region is None:
        region = cg.scalar_region_cache[id(plan.op)] = cg.scratch_region(
            b, None, count, nbytes)
    slots, keys, _ = region(b)
    key = const(0)
    for part in key_parts:
        key = b.or_(b.shl(key, const(32)), b.zext(b.bitcast(cg.scalar(part), ir.IntType(32)), I64))
    stride = -(-nbytes // 64) * 64
    cached = b.gep(slots, [b.mul(kt, const(stride))], source_etype=I8)
    key_slot = b.gep(keys, [kt], source_etype=I64)
    with b.if_else(inside) as (then, otherwise):
        with then:
            stale = b.icmp_signed("!=", b.load(key_slot, typ=I64), key)
            with b.if_then(stale):
                build_tables(cached)
                b.store(key, key_slot)
        with otherwise:
            build_tables(local)
    return b.select(inside, cached, local)
