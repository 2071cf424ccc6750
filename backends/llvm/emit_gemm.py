"""Float dots with wide results, as a register-blocked micro-kernel on explicit vectors.

The operands are decoded once into f32 buffers, ``b``'s rows padded with zeros to whole column
blocks, and the result is computed in blocks of ``MR`` rows (the last block takes the rows
left, so no row is computed that is not in the result) by ``NR`` columns held in vector
registers: per step along K, ``NR / lanes`` vectors of ``b``'s row and one broadcast of ``a``
per row feed a fused multiply-add each. ``NR`` is two vectors, or four for matrix-vector
products (at most two rows), where each broadcast is used by fewer FMAs. Accumulation is in
f32 within the dot (the products are exact inside the FMA), then the accumulator dtype's
rounding; the interpreter sums in float64, so results agree to float rounding, not bit for bit.
"""

from __future__ import annotations

from llvmlite import ir

from bittile.backends.llvm import numerics
from bittile.backends.llvm.tiles import F32, Tile, const, linear_index, unravel

MR = 4


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _column_vectors(m: int, n: int, lanes: int) -> int:
    """Vectors per block of columns: two for row blocks of ``MR`` rows (``2 * MR`` accumulators),
    four when there are at most two rows (a matrix-vector product: each step along K then
    loads four vectors of ``b`` per broadcast of ``a``), never more than ``n`` needs."""
    return max(1, min(4 if m <= 2 else 2, _cdiv(n, lanes)))


def _k_unroll(accumulators: int) -> int:
    """Independent accumulator sets for a block of ``accumulators`` vectors: enough that about
    eight FMAs are in flight (an FMA's latency is about four cycles, two issue per cycle)."""
    return max(1, min(4, 8 // accumulators))


def emit_float_gemm(cg, a: Tile, bt: Tile, acc: Tile, out_value) -> None:
    b, loops = cg.b, cg.loops
    m, kdim = a.shape
    n = bt.shape[1]
    lanes = max(4, cg.vector_bits // 32)
    nv = _column_vectors(m, n, lanes)
    nr = nv * lanes
    np_ = _cdiv(n, nr) * nr
    vec = ir.VectorType(F32, lanes)
    zero = ir.Constant(F32, 0.0)

    # a block of few accumulators would wait on the FMA latency: it keeps KU independent sets,
    # each taking every KU-th step along K (K padded with zeros), summed at the end
    ku = _k_unroll(min(m, MR) * nv)
    kp = _cdiv(kdim, ku) * ku

    def padded_buffer(tile: Tile, rows: int, cols: int, cols_p: int, name: str,
                      rows_p: int | None = None):
        """``tile`` decoded to f32, rows of ``cols_p`` (zeros past ``cols``), then zero rows up
        to ``rows_p``."""
        rows_p = rows if rows_p is None else rows_p
        ptr = cg.alloca(F32, rows_p * cols_p, name=name)

        def fill(i, j):
            v = numerics.decode(b, tile.element(b, [i, j]), tile.dtype)
            b.store(v, b.gep(ptr, [b.add(b.mul(i, const(cols_p)), j)], source_etype=F32))

        def clear(i, j):
            b.store(zero, b.gep(ptr, [b.add(b.mul(i, const(cols_p)), j)], source_etype=F32))

        def row(i):
            loops.range(b, const(0), const(cols), lambda j: fill(i, j), name="j")
            loops.range(b, const(cols), const(cols_p), lambda j: clear(i, j), name="jz")

        if cols == cols_p:
            # one flat loop: with short rows, LLVM would otherwise unroll the loop along a
            # row and vectorize across rows, with gathers and scatters
            def flat(lin):
                i, j = unravel(b, lin, (rows, cols))
                v = numerics.decode(b, tile.element(b, [i, j]), tile.dtype)
                b.store(v, b.gep(ptr, [lin], source_etype=F32))

            loops.range(b, const(0), const(rows * cols), flat, name="ij")
        else:
            loops.range(b, const(0), const(rows), row, name="i")
        loops.range(b, const(rows * cols_p), const(rows_p * cols_p),
                    lambda lin: b.store(zero, b.gep(ptr, [lin], source_etype=F32)), name="rz")
        return ptr

    a_buf = padded_buffer(a, m, kdim, kp, "a")
    b_buf = padded_buffer(bt, kdim, n, np_, "b", rows_p=kp)
    c_buf = padded_buffer(acc, m, n, np_, "c")
    name = f"llvm.fma.v{lanes}f32"
    fma = cg.module.globals.get(name) or ir.Function(cg.module,
                                                     ir.FunctionType(vec, [vec, vec, vec]), name)

    def vptr(ptr, index):
        return b.bitcast(b.gep(ptr, [index], source_etype=F32), vec.as_pointer())

    def vload(ptr, index):
        return b.load(vptr(ptr, index), typ=vec, align=4)

    def vstore(value, ptr, index):
        b.store(value, vptr(ptr, index), align=4)

    def block(row0, nb, mr):
        """Rows [row0, row0 + mr) by columns [nb * nr, (nb + 1) * nr) of the result."""
        col0 = b.mul(nb, const(nr))
        c_index = [[b.add(b.mul(b.add(row0, const(i)), const(np_)), b.add(col0, const(j * lanes)))
                    for j in range(nv)] for i in range(mr)]
        start = b.block
        head = cg.fn.append_basic_block("mk.head")
        body = cg.fn.append_basic_block("mk.body")
        done = cg.fn.append_basic_block("mk.done")
        inits = [[[vload(c_buf, c_index[i][j]) if u == 0 else ir.Constant(vec, [0.0] * lanes)
                   for j in range(nv)] for i in range(mr)] for u in range(ku)]
        b.branch(head)
        b.position_at_end(head)
        k = b.phi(const(0).type, name="k")
        k.add_incoming(const(0), start)
        accs = [[[b.phi(vec) for _ in range(nv)] for _ in range(mr)] for _ in range(ku)]
        for u in range(ku):
            for i in range(mr):
                for j in range(nv):
                    accs[u][i][j].add_incoming(inits[u][i][j], start)
        b.cbranch(b.icmp_signed("<", k, const(kp)), body, done)
        b.position_at_end(body)
        new = []
        for u in range(ku):
            ku_ = b.add(k, const(u))
            b_row = b.add(b.mul(ku_, const(np_)), col0)
            bvec = [vload(b_buf, b.add(b_row, const(j * lanes))) for j in range(nv)]
            rows = []
            for i in range(mr):
                a_ik = b.load(b.gep(a_buf, [b.add(b.mul(b.add(row0, const(i)), const(kp)), ku_)],
                                    source_etype=F32), typ=F32)
                splat = b.shuffle_vector(
                    b.insert_element(ir.Constant(vec, ir.Undefined), a_ik,
                                     const(0, ir.IntType(32))),
                    ir.Constant(vec, ir.Undefined),
                    ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))
                rows.append([b.call(fma, [splat, bvec[j], accs[u][i][j]]) for j in range(nv)])
            new.append(rows)
        for u in range(ku):
            for i in range(mr):
                for j in range(nv):
                    accs[u][i][j].add_incoming(new[u][i][j], body)
        k.add_incoming(b.add(k, const(ku)), body)
        b.branch(head)
        b.position_at_end(done)
        for i in range(mr):
            for j in range(nv):
                total = accs[0][i][j]
                for u in range(1, ku):
                    total = b.fadd(total, accs[u][i][j])
                vstore(total, c_buf, c_index[i][j])

    def column_blocks(row0, mr):
        loops.range(b, const(0), const(np_ // nr), lambda nb: block(row0, nb, mr), name="nb")

    full, tail = divmod(m, MR)
    if full:
        loops.range(b, const(0), const(full),
                    lambda mb: column_blocks(b.mul(mb, const(MR)), MR), name="mb")
    if tail:
        column_blocks(const(full * MR), tail)

    out = cg.new_buffer(acc.dtype, (m, n))

    def finish(idx):
        i, j = idx
        v = b.load(b.gep(c_buf, [b.add(b.mul(i, const(np_)), j)], source_etype=F32), typ=F32)
        out.store_linear(b, linear_index(b, idx, (m, n)), numerics.round_arith(b, v, acc.dtype))

    loops.nest(b, (m, n), finish)
    cg.bind(out_value, out)
