"""Float dots with wide results, as a register-blocked micro-kernel on explicit vectors.

The operands are decoded once into f32 buffers padded to whole blocks (zeros outside), and the
result is computed in blocks of ``MR`` rows by ``NR = 2 * lanes`` columns held in vector
registers: per step along K, two vectors of ``b``'s row and ``MR`` broadcasts of ``a``'s column
feed ``2 * MR`` fused multiply-adds. Accumulation is in f32 within the dot (the products are
exact inside the FMA), then the accumulator dtype's rounding; the interpreter sums in float64,
so results agree to float rounding, not bit for bit.
"""

from __future__ import annotations

from llvmlite import ir

from bittile.backends.llvm import numerics
from bittile.backends.llvm.tiles import F32, Tile, const, linear_index

MR = 4


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def emit_float_gemm(cg, a: Tile, bt: Tile, acc: Tile, out_value) -> None:
    b, loops = cg.b, cg.loops
    m, kdim = a.shape
    n = bt.shape[1]
    lanes = max(4, cg.vector_bits // 32)
    nr = 2 * lanes
    mp, np_ = _cdiv(m, MR) * MR, _cdiv(n, nr) * nr
    vec = ir.VectorType(F32, lanes)
    zero = ir.Constant(F32, 0.0)

    def padded_buffer(tile: Tile, rows: int, cols: int, rows_p: int, cols_p: int, name: str):
        ptr = cg.alloca(F32, rows_p * cols_p, name=name)

        def fill(i, j):
            inside = b.and_(b.icmp_signed("<", i, const(rows)), b.icmp_signed("<", j, const(cols)))
            slot = b.gep(ptr, [b.add(b.mul(i, const(cols_p)), j)], source_etype=F32)
            with b.if_else(inside) as (then, otherwise):
                with then:
                    v = tile.element(b, [i, j])
                    b.store(numerics.decode(b, v, tile.dtype), slot)
                with otherwise:
                    b.store(zero, slot)

        loops.range(b, const(0), const(rows_p), lambda i: loops.range(
            b, const(0), const(cols_p), lambda j: fill(i, j), name="j"), name="i")
        return ptr

    a_buf = padded_buffer(a, m, kdim, mp, kdim, "a")
    b_buf = padded_buffer(bt, kdim, n, kdim, np_, "b")
    c_buf = padded_buffer(acc, m, n, mp, np_, "c")
    name = f"llvm.fma.v{lanes}f32"
    fma = cg.module.globals.get(name) or ir.Function(cg.module,
                                                     ir.FunctionType(vec, [vec, vec, vec]), name)

    def vptr(ptr, index):
        return b.bitcast(b.gep(ptr, [index], source_etype=F32), vec.as_pointer())

    def vload(ptr, index):
        return b.load(vptr(ptr, index), typ=vec, align=4)

    def vstore(value, ptr, index):
        b.store(value, vptr(ptr, index), align=4)

    def block(mb, nb):
        row0 = b.mul(mb, const(MR))
        col0 = b.mul(nb, const(nr))
        c_index = [[b.add(b.mul(b.add(row0, const(i)), const(np_)), b.add(col0, const(j * lanes)))
                    for j in range(2)] for i in range(MR)]
        start = b.block
        head = cg.fn.append_basic_block("mk.head")
        body = cg.fn.append_basic_block("mk.body")
        done = cg.fn.append_basic_block("mk.done")
        inits = [[vload(c_buf, c_index[i][j]) for j in range(2)] for i in range(MR)]
        b.branch(head)
        b.position_at_end(head)
        k = b.phi(const(0).type, name="k")
        k.add_incoming(const(0), start)
        accs = [[b.phi(vec) for _ in range(2)] for _ in range(MR)]
        for i in range(MR):
            for j in range(2):
                accs[i][j].add_incoming(inits[i][j], start)
        b.cbranch(b.icmp_signed("<", k, const(kdim)), body, done)
        b.position_at_end(body)
        b_row = b.add(b.mul(k, const(np_)), col0)
        bvec = [vload(b_buf, b.add(b_row, const(j * lanes))) for j in range(2)]
        new = []
        for i in range(MR):
            a_ik = b.load(b.gep(a_buf, [b.add(b.mul(b.add(row0, const(i)), const(kdim)), k)],
                                source_etype=F32), typ=F32)
            splat = b.shuffle_vector(b.insert_element(ir.Constant(vec, ir.Undefined), a_ik,
                                                      const(0, ir.IntType(32))),
                                     ir.Constant(vec, ir.Undefined),
                                     ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                 [0] * lanes))
            new.append([b.call(fma, [splat, bvec[j], accs[i][j]]) for j in range(2)])
        for i in range(MR):
            for j in range(2):
                accs[i][j].add_incoming(new[i][j], body)
        k.add_incoming(b.add(k, const(1)), body)
        b.branch(head)
        b.position_at_end(done)
        for i in range(MR):
            for j in range(2):
                vstore(accs[i][j], c_buf, c_index[i][j])

    loops.range(b, const(0), const(mp // MR), lambda mb: loops.range(
        b, const(0), const(np_ // nr), lambda nb: block(mb, nb), name="nb"), name="mb")

    out = cg.new_buffer(acc.dtype, (m, n))

    def finish(idx):
        i, j = idx
        v = b.load(b.gep(c_buf, [b.add(b.mul(i, const(np_)), j)], source_etype=F32), typ=F32)
        out.store_linear(b, linear_index(b, idx, (m, n)), numerics.round_arith(b, v, acc.dtype))

    loops.nest(b, (m, n), finish)
    cg.bind(out_value, out)
