"""LLVM IR for the lookup-table matmul (see ``lut_plan`` for the layouts, ``docs/lut.md`` for the
math): the per-row table builder, the n-group kernels, the tile function and the whole-matrix
driver. Internal; the API is in ``lut.py``.

Scratch ("rows"): one record of ``Rows.stride`` bytes per activation row, holding

- ``tab``: the tables, 16 int8 (or 16 float in exact mode) per group of four activations;
- ``rbyte`` (vbmi): the integer multiplier of each table; ``mult``: per slice and plane (mod 4)
  the dword of the four multipliers of the slice times ``2^(b % 4)``;
- ``shalf``: per run, half the float step of the tables; ``sx``: per run, the sum of x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llvmlite import ir

from bittile.backends.llvm.lut_plan import Plan

I1, I8, I16, I32, I64 = (ir.IntType(n) for n in (1, 8, 16, 32, 64))
F32 = ir.FloatType()
PTR = ir.PointerType()
VOID = ir.VoidType()

#: most slices (or groups) of one run unrolled in the K loop body
UNROLL = 8
#: software prefetch distance (bytes) of the weights in single-row kernels (0: none)
PREFETCH = 0


def vt(t, n):
    return ir.VectorType(t, n)


def cvec(t, values):
    return ir.Constant(vt(t, len(values)), [ir.Constant(t, v) for v in values])


def splatc(t, n, v):
    return cvec(t, [v] * n)


def _vector_attrs(fn: ir.Function, bits: int) -> None:
    fn.attributes.add("nounwind")
    if bits >= 512:
        # set.add: llvmlite only knows keyword attributes; these are LLVM string attributes
        set.add(fn.attributes, '"prefer-vector-width"="512"')
        set.add(fn.attributes, '"min-legal-vector-width"="512"')
    elif bits >= 256:
        set.add(fn.attributes, '"prefer-vector-width"="256"')


@dataclass(frozen=True)
class Rows:
    """Geometry of the per-row scratch record."""

    groups: int  #: tables per row (padded K / 4)
    kvalid: int  #: K of x read per row (multiple of run_k)
    tab_bytes: int  #: bytes per table
    planes: int  #: multiplier dwords per slice (vbmi), else 0
    runs: int  #: runs per row

    @property
    def off_rbyte(self):
        return self.groups * self.tab_bytes

    @property
    def off_mult(self):
        return self.off_rbyte + (self.groups if self.planes else 0)

    @property
    def off_shalf(self):
        return -(-(self.off_mult + (self.groups // 4) * self.planes * 4) // 4) * 4

    @property
    def off_sx(self):
        return self.off_shalf + 4 * self.runs

    @property
    def stride(self):
        return -(-(self.off_sx + 4 * self.runs) // 64) * 64

    # the builder's own scratch (on its stack): per group sum |x|, sum x, largest sum |x| of
    # the run; read 16 groups at a time
    @property
    def tmp_groups(self):
        return -(-self.groups // 16) * 16

    @property
    def off_asum(self):
        return 0

    @property
    def off_gsum(self):
        return 4 * self.tmp_groups

    @property
    def off_gmax(self):
        return 8 * self.tmp_groups

    @property
    def tmp_bytes(self):
        return 12 * self.tmp_groups


def rows_for(plan: Plan, kpad: int, kvalid: int) -> Rows:
    return Rows(kpad // 4, kvalid, 64 if plan.kind == "exact" else 16,
                min(plan.bits, 4) if plan.kind == "vbmi" else 0, kvalid // plan.run_k)


class Emitter:
    """Emits the functions of one plan into one llvmlite module."""

    def __init__(self, module: ir.Module, plan: Plan, prefix: str):
        self.module = module
        self.plan = plan
        self.prefix = prefix
        self.b: ir.IRBuilder = None
        self.has_fma = plan.level.vector_bits >= 256 or "fma" in _feats(plan)

    # ------------------------------------------------------------------ basics
    def function(self, name, argtys, internal=True) -> ir.Function:
        fn = ir.Function(self.module, ir.FunctionType(VOID, argtys), name)
        if internal:
            fn.linkage = "internal"
        _vector_attrs(fn, self.plan.level.vector_bits)
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        return fn

    def stack(self, nbytes):
        """An opaque pointer to ``nbytes`` of 64-byte aligned stack (llvmlite would type it)."""
        slot = self.b.alloca(ir.ArrayType(I8, nbytes))
        slot.align = 64
        slot.type = PTR
        return slot

    def intrinsic(self, name, ret, args):
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name)
        return fn

    def call(self, name, ret, args):
        return self.b.call(self.intrinsic(name, ret, [a.type for a in args]), args)

    def i64(self, v):
        return I64(v) if isinstance(v, int) else v

    def add(self, a, c):
        if isinstance(a, int) and isinstance(c, int):
            return I64(a + c)
        if isinstance(c, int) and c == 0:
            return self.i64(a)
        return self.b.add(self.i64(a), self.i64(c))

    def mul(self, a, c):
        if isinstance(a, int) and isinstance(c, int):
            return I64(a * c)
        if isinstance(c, int) and c == 1:
            return self.i64(a)
        return self.b.mul(self.i64(a), self.i64(c))

    def ptr(self, base, off):
        if isinstance(off, int) and off == 0:
            return base
        return self.b.gep(base, [self.i64(off)], source_etype=I8)

    def load(self, ty, base, off=0, align=1):
        return self.b.load(self.ptr(base, off), typ=ty, align=align)

    def store(self, val, base, off=0, align=1):
        self.b.store(val, self.ptr(base, off), align=align)

    def splat(self, val, n):
        v = self.b.insert_element(ir.Constant(vt(val.type, n), ir.Undefined), val, I32(0))
        return self.b.shuffle_vector(v, ir.Constant(vt(val.type, n), ir.Undefined),
                                     ir.Constant(vt(I32, n), [0] * n))

    def fmadd(self, a, b, c):
        if self.has_fma:
            return self.call(f"llvm.fma.{_suffix(a.type)}", a.type, [a, b, c])
        return self.b.fadd(self.b.fmul(a, b), c)

    def loop(self, count, init, body):
        """A counted loop ``for i in range(count)`` carrying the values ``init``; ``body(i, vals)``
        returns the new values. A static count of 0 or 1 emits no loop."""
        if isinstance(count, int) and count <= 1:
            return list(init) if count == 0 else list(body(I64(0), list(init)))
        b = self.b
        pre = b.block
        header = b.append_basic_block("loop")
        bodyb = b.append_basic_block("body")
        exitb = b.append_basic_block("exit")
        b.branch(header)
        b.position_at_end(header)
        i = b.phi(I64)
        i.add_incoming(I64(0), pre)
        phis = []
        for v in init:
            p = b.phi(v.type)
            p.add_incoming(v, pre)
            phis.append(p)
        b.cbranch(b.icmp_signed("<", i, self.i64(count)), bodyb, exitb)
        b.position_at_end(bodyb)
        new = body(i, list(phis))
        end = b.block
        i.add_incoming(b.add(i, I64(1)), end)
        for p, v in zip(phis, new):
            p.add_incoming(v, end)
        b.branch(header)
        b.position_at_end(exitb)
        return phis

    def load_f(self, base, off_elems, lanes, valid):
        """``lanes`` floats at ``base[off_elems]``, only the first ``valid`` read (rest 0)."""
        if valid >= lanes:
            return self.load(vt(F32, lanes), base, self.mul(off_elems, 4))
        v = splatc(F32, lanes, 0.0)
        for i in range(valid):
            x = self.load(F32, base, self.mul(self.add(off_elems, i), 4))
            v = self.b.insert_element(v, x, I32(i))
        return v

    def store_f(self, val, base, off_elems, lanes, valid):
        if valid >= lanes:
            self.store(val, base, self.mul(off_elems, 4))
            return
        for i in range(valid):
            self.store(self.b.extract_element(val, I32(i)), base,
                       self.mul(self.add(off_elems, i), 4))

    # ------------------------------------------------------------------ table builder
    def hreduce(self, v, op):
        """Tree reduction of a vector with the binary builder method ``op``."""
        b, n = self.b, v.type.count
        while n > 1:
            n //= 2
            lo = b.shuffle_vector(v, v, cvec(I32, list(range(n))))
            hi = b.shuffle_vector(v, v, cvec(I32, list(range(n, 2 * n))))
            v = op(lo, hi)
        return b.extract_element(v, I32(0))

    def fmax(self, a, c):
        return self.b.select(self.b.fcmp_unordered(">", a, c), a, c)

    def x_block(self, x, g0, count):
        """x_j[i] = x[4 (g0 + i) + j] for i < 16 (i < count read, rest 0), j < 4."""
        b = self.b
        if count == 16:
            v = [self.load(vt(F32, 16), x, self.add(self.mul(g0, 16), 64 * c)) for c in range(4)]
        else:
            v = []
            for c in range(4):
                u = splatc(F32, 16, 0.0)
                for e in range(16):
                    if (16 * c + e) // 4 < count:
                        xe = self.load(F32, x, self.add(self.mul(g0, 16), 4 * (16 * c + e)))
                        u = b.insert_element(u, xe, I32(e))
                v.append(u)
        out = []
        for j in range(4):
            half = cvec(I32, [4 * i + j for i in range(8)])
            lo = b.shuffle_vector(v[0], v[1], half)
            hi = b.shuffle_vector(v[2], v[3], half)
            out.append(b.shuffle_vector(lo, hi, cvec(I32, list(range(16)))))
        return out

    def store_prefix(self, val, base, off, count):
        """Store the first ``count`` elements of ``val``."""
        n = val.type.count
        if count < n:
            val = self.b.shuffle_vector(val, val, cvec(I32, list(range(count))))
        self.store(val, base, off)

    def emit_row_builder(self, rows: Rows) -> ir.Function:
        """``row(ptr x, ptr rec)``: the tables of one row of ``rows.kvalid`` activations, 16
        groups at a time: (A) per group sum |x| and sum x, (B) per run the largest sum |x| (the
        float scale) and the sum of x, (C) the tables."""
        plan = self.plan
        fn = self.function(f"{self.prefix}.row", [PTR, PTR])
        x, rec = fn.args
        b = self.b
        tmp = self.stack(rows.tmp_bytes)
        gpr = plan.run_k // 4
        vbmi, exact = plan.kind == "vbmi", plan.kind == "exact"
        rmax = float(plan.rmax)
        gvalid = rows.kvalid // 4
        zero16 = splatc(F32, 16, 0.0)
        fabs = "llvm.fabs.v16f32"

        def blocks(body):
            full, tail = divmod(gvalid, 16)
            self.loop(full, [], lambda i, _: body(self.mul(i, 16), 16) or [])
            if tail:
                body(I64(16 * full), tail)

        # (A)
        def pass_a(g0, count):
            xj = self.x_block(x, g0, count)
            a = self.call(fabs, vt(F32, 16), [xj[0]])
            s4 = xj[0]
            for j in range(1, 4):
                a = b.fadd(a, self.call(fabs, vt(F32, 16), [xj[j]]))
                s4 = b.fadd(s4, xj[j])
            self.store_prefix(a, tmp, self.add(self.mul(g0, 4), rows.off_asum), count)
            self.store_prefix(s4, tmp, self.add(self.mul(g0, 4), rows.off_gsum), count)

        blocks(pass_a)

        # (B)
        def run_b(r, _):
            g0 = self.mul(r, gpr)
            if gpr % 16 == 0:
                def red(i, vals):
                    off = self.mul(self.add(g0, self.mul(i, 16)), 4)
                    a = self.load(vt(F32, 16), tmp, self.add(off, rows.off_asum))
                    s4 = self.load(vt(F32, 16), tmp, self.add(off, rows.off_gsum))
                    return [self.fmax(vals[0], a), b.fadd(vals[1], s4)]

                vm, vs = self.loop(gpr // 16, [zero16, zero16], red)
                gmax, ssum = self.hreduce(vm, self.fmax), self.hreduce(vs, b.fadd)
                gv = self.splat(gmax, 16)
                self.loop(gpr // 16, [], lambda i, _: self.store(gv, tmp, self.add(
                    self.mul(self.add(g0, self.mul(i, 16)), 4), rows.off_gmax)) or [])
            else:
                def red(i, vals):
                    off = self.mul(self.add(g0, i), 4)
                    a = self.load(F32, tmp, self.add(off, rows.off_asum))
                    s4 = self.load(F32, tmp, self.add(off, rows.off_gsum))
                    return [self.fmax(vals[0], a), b.fadd(vals[1], s4)]

                gmax, ssum = self.loop(gpr, [F32(0.0), F32(0.0)], red)
                self.loop(gpr, [], lambda i, _: self.store(gmax, tmp, self.add(
                    self.mul(self.add(g0, i), 4), rows.off_gmax)) or [])
            self.store(ssum, rec, self.add(self.mul(r, 4), rows.off_sx))
            if exact:
                shalf = F32(0.5)
            else:
                shalf = b.fdiv(gmax, F32(2 * 127.0 * rmax))
            self.store(shalf, rec, self.add(self.mul(r, 4), rows.off_shalf))
            return []

        self.loop(rows.kvalid // plan.run_k, [], run_b)

        # (C)
        if exact:
            ety, esize = F32, 4
        else:
            ety, esize = I8, 1
        mirror = []
        for g in range(16):
            for e in range(16):
                mirror.append(e * 16 + g if e < 8 else 128 + (15 - e) * 16 + g)

        def concat(vs):
            while len(vs) > 1:
                n = vs[0].type.count
                vs = [b.shuffle_vector(vs[i], vs[i + 1], cvec(I32, list(range(2 * n))))
                      for i in range(0, len(vs), 2)]
            return vs[0]

        def pass_c(g0, count):
            xj = self.x_block(x, g0, count)
            pq = [b.fsub(b.fsub(zero16, xj[0]), xj[1]), b.fsub(xj[0], xj[1]),
                  b.fsub(xj[1], xj[0]), b.fadd(xj[0], xj[1])]
            w2 = [b.fsub(b.fsub(zero16, xj[2]), xj[3]), b.fsub(xj[2], xj[3])]
            tabs = [b.fadd(pq[i & 3], w2[i >> 2]) for i in range(8)]
            if not exact:
                goff = self.mul(g0, 4)
                a = self.load(vt(F32, 16), tmp, self.add(goff, rows.off_asum))
                gm = self.load(vt(F32, 16), tmp, self.add(goff, rows.off_gmax))
                pos = b.fcmp_ordered(">", gm, zero16)
                safe = b.select(pos, gm, splatc(F32, 16, 1.0))
                if vbmi:
                    # r_g = ceil(a rmax / gmax) in [1, rmax]; step = gmax r_g / (127 rmax)
                    inv = b.select(pos, b.fdiv(splatc(F32, 16, rmax), safe), zero16)
                    rg = self.call("llvm.ceil.v16f32", vt(F32, 16), [b.fmul(a, inv)])
                    one, top = splatc(F32, 16, 1.0), splatc(F32, 16, rmax)
                    rg = b.select(b.fcmp_ordered("<", rg, one), one, rg)
                    rg = b.select(b.fcmp_ordered(">", rg, top), top, rg)
                    qv = b.fdiv(b.fmul(inv, splatc(F32, 16, 127.0)), rg)
                    self.store_prefix(b.trunc(b.fptosi(rg, vt(I32, 16)), vt(I8, 16)), rec,
                                      self.add(g0, rows.off_rbyte), count)
                else:
                    qv = b.select(pos, b.fdiv(splatc(F32, 16, 127.0), safe), zero16)
                lim, nlim = splatc(I32, 16, 127), splatc(I32, 16, -127)
                qs = []
                for t in tabs:
                    t = self.call("llvm.rint.v16f32", vt(F32, 16), [b.fmul(t, qv)])
                    qi = b.fptosi(t, vt(I32, 16))
                    qi = b.select(b.icmp_signed(">", qi, lim), lim, qi)
                    qi = b.select(b.icmp_signed("<", qi, nlim), nlim, qi)
                    qs.append(b.trunc(qi, vt(I8, 16)))
                tabs = qs
            allv = concat(tabs)
            neg = b.fsub(ir.Constant(allv.type, None), allv) if exact else b.sub(
                ir.Constant(allv.type, None), allv)
            out = b.shuffle_vector(allv, neg, cvec(I32, mirror))
            self.store_prefix(out, rec, self.mul(g0, 16 * esize), 16 * count)

        blocks(pass_c)
        # zero tables for the K padding of the tile
        for g in range(gvalid, rows.groups):
            self.store(ir.Constant(vt(ety, 16), None), rec, g * 16 * esize)
            if vbmi:
                self.store(I8(1), rec, rows.off_rbyte + g)
        if vbmi:
            def mults(s, _):
                rd = self.load(I32, rec, self.add(self.mul(s, 4), rows.off_rbyte))
                for p in range(rows.planes):
                    off = self.add(self.mul(s, 4 * rows.planes), rows.off_mult + 4 * p)
                    self.store(b.shl(rd, I32(p)), rec, off)
                return []

            self.loop(rows.groups // 4, [], mults)
        b.ret_void()
        return fn

    # ------------------------------------------------------------------ lookups
    def lookup_bytes(self, table, idx):
        """int8 table lookup of every byte of ``idx`` (vbmi: 64-entry ``vpermb``; else per
        128-bit lane 16-entry ``pshufb``)."""
        isa, n = self.plan.isa, idx.type.count
        if isa == "vbmi":
            return self.call("llvm.x86.avx512.permvar.qi.512", table.type, [table, idx])
        names = {"avx512bw": "llvm.x86.avx512.pshuf.b.512", "avx2": "llvm.x86.avx2.pshuf.b",
                 "ssse3": "llvm.x86.ssse3.pshuf.b.128"}
        if isa in names:
            return self.call(names[isa], table.type, [table, idx])
        # generic form (the table is the same in every lane): a tree of selects on the index
        # bits over the 16 entries, each broadcast
        b = self.b
        level = [self.splat(b.extract_element(table, I32(e)), n) for e in range(16)]
        bit = 1
        while len(level) > 1:
            on = b.icmp_unsigned("!=", b.and_(idx, splatc(I8, n, bit)), splatc(I8, n, 0))
            level = [b.select(on, level[i + 1], level[i]) for i in range(0, len(level), 2)]
            bit *= 2
        return level[0]

    def widen_bytes(self, lookups, plane, parity):
        """int16 ``2^plane *`` the even (parity 0) or odd bytes of ``lookups`` (``pmaddubsw``)."""
        b, n = self.b, lookups.type.count
        names = {"avx512bw": "llvm.x86.avx512.pmaddubs.w.512", "avx2": "llvm.x86.avx2.pmadd.ub.sw",
                 "ssse3": "llvm.x86.ssse3.pmadd.ub.sw.128"}
        if self.plan.isa in names:
            m = cvec(I8, [(1 << plane) if i % 2 == parity else 0 for i in range(n)])
            return self.call(names[self.plan.isa], vt(I16, n // 2), [m, lookups])
        sel = ir.Constant(vt(I32, n // 2), [I32(2 * i + parity) for i in range(n // 2)])
        h = b.sext(b.shuffle_vector(lookups, lookups, sel), vt(I16, n // 2))
        return b.shl(h, splatc(I16, n // 2, plane)) if plane else h

    def widen_words(self, acc, parity):
        """int32 of the even / odd words of ``acc`` (``pmaddwd`` with 1, 0)."""
        b, n = self.b, acc.type.count
        names = {"avx512bw": "llvm.x86.avx512.pmaddw.d.512", "avx2": "llvm.x86.avx2.pmadd.wd",
                 "ssse3": "llvm.x86.sse2.pmadd.wd"}
        if self.plan.isa in names:
            m = cvec(I16, [1 if i % 2 == parity else 0 for i in range(n)])
            return self.call(names[self.plan.isa], vt(I32, n // 2), [acc, m])
        sel = ir.Constant(vt(I32, n // 2), [I32(2 * i + parity) for i in range(n // 2)])
        return b.sext(b.shuffle_vector(acc, acc, sel), vt(I32, n // 2))

    def lookup_floats(self, tab_ptr, idx):
        """float table (16 floats at ``tab_ptr``) lookup of the low 4 bits of every i32 lane."""
        b, n, isa = self.b, idx.type.count, self.plan.isa
        if isa in ("avx512bw", "vbmi") and n == 16:
            t = self.load(vt(F32, 16), tab_ptr)
            return self.call("llvm.x86.avx512.permvar.sf.512", t.type, [t, idx])
        if isa in ("avx512bw", "avx2") and n == 8:
            lo = self.call("llvm.x86.avx2.permps", vt(F32, 8),
                           [self.load(vt(F32, 8), tab_ptr), idx])
            hi = self.call("llvm.x86.avx2.permps", vt(F32, 8),
                           [self.load(vt(F32, 8), tab_ptr, 32), idx])
            upper = b.icmp_unsigned("!=", b.and_(idx, splatc(I32, n, 8)), splatc(I32, n, 0))
            return b.select(upper, hi, lo)
        idx = b.and_(idx, splatc(I32, n, 15))
        out = ir.Constant(vt(F32, n), ir.Undefined)
        for i in range(n):
            k = b.zext(b.extract_element(idx, I32(i)), I64)
            v = self.load(F32, tab_ptr, b.mul(k, I64(4)))
            out = b.insert_element(out, v, I32(i))
        return out

    # ------------------------------------------------------------------ kernels
    def emit_kernel(self, rows: Rows, mb: int, nbk: int, nvl: int, nvalid: int | None):
        """``kern(ptr rec, i64 kt, ptr w, ptr alpha, ptr beta, ptr y, i64 lda, i64 ldy)``:
        ``y[m, n] += ...`` for ``mb`` rows (records from ``rec``), the ``nbk`` weight vectors
        from ``w`` (layout stride ``nvl`` vectors per slice and plane) of K tile ``kt``; alpha,
        beta and y point at the first output; only the first ``nvalid`` outputs exist."""
        name = f"{self.prefix}.k{mb}x{nbk}s{nvl}v{nvalid}"
        fn = self.module.globals.get(name)
        if fn is not None:
            return fn
        saved = self.b
        fn = self.function(name, [PTR, I64, PTR, PTR, PTR, PTR, I64, I64])
        k = _Kernel(self, rows, mb, nbk, nvl, nvalid, fn.args)
        k.emit()
        self.b.ret_void()
        self.b = saved
        return fn


def _signed32(v):
    return v - (1 << 32) if v >= 1 << 31 else v


def _feats(plan):
    from bittile.backends.llvm.lut_plan import _features

    return _features(plan.level)


def _suffix(ty):
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{_suffix(ty.element)}"
    return "f32" if ty == F32 else f"i{ty.width}"


class _Kernel:
    """The K loop of one kernel (see ``Emitter.emit_kernel``)."""

    def __init__(self, em: Emitter, rows: Rows, mb, nbk, nvl, nvalid, args):
        self.em, self.b, self.plan, self.rows = em, em.b, em.plan, rows
        self.mb, self.nbk, self.nvl = mb, nbk, nvl
        self.nvalid = nbk * em.plan.vec_n if nvalid is None else nvalid
        self.rec, kt, self.w, self.alpha, self.beta, self.y, self.lda, self.ldy = args
        plan = self.plan
        self.nruns = plan.spec.block_k // plan.run_k  # runs of one K tile
        # offsets of this K tile inside the records
        self.tab0 = em.mul(kt, (plan.kp // 4) * rows.tab_bytes)
        self.mult0 = em.mul(kt, (plan.kp // 16) * rows.planes * 4) if rows.planes else None
        self.run0 = em.mul(kt, self.nruns)
        self.rec_m = [em.ptr(self.rec, m * rows.stride) for m in range(mb)]
        kind = plan.kind
        self.nh = 2 if kind == "vbmi" and plan.bits > 4 else 1
        if kind == "vbmi":
            self.acc_type = vt(I32, 16)
            self.accs_per = 2 * self.nh  # (h, half)
        elif kind == "shuf":
            self.acc_type = vt(I16, plan.vbytes // 2)
            self.accs_per = 4  # (h, parity)
        else:
            self.acc_type = vt(F32, plan.vbytes // 4)
            self.accs_per = 8  # (h, t)
        self.nacc = mb * nbk * self.accs_per

    def zero_accs(self):
        z = ir.Constant(self.acc_type, None)
        return [z] * self.nacc

    def ai(self, m, j, q):
        return (m * self.nbk + j) * self.accs_per + q

    # -------------------------------------------------------------- K structure
    def emit(self):
        plan, em = self.plan, self.em
        if plan.kind == "vbmi" and plan.run_k % 16:
            self.emit_unaligned()
            return
        spr = plan.run_k // plan.slice_k  # slices per run

        def run_body(r, _):
            accs = self.slice_range(em.mul(r, spr), spr, self.zero_accs())
            self.flush(r, accs)
            return []

        em.loop(self.nruns, [], run_body)

    def emit_unaligned(self):
        """vbmi with runs that do not fill slices (group_k not a multiple of 16): a period of
        lcm(run_k, 16) holds at most four runs; slices shared by two runs are looked up once and
        accumulated twice with masked multipliers, the others run in loops."""
        plan, em = self.plan, self.em
        per = math.lcm(plan.run_k, 16)
        rpp, spp = per // plan.run_k, per // 16
        full_mask = 0xFFFFFFFF

        def pieces_of(sl, runs_valid):
            pieces = {}
            for t in range(4):
                run = (16 * sl + 4 * t) // plan.run_k
                if run < runs_valid:
                    pieces[run] = pieces.get(run, 0) | (0xFF << (8 * t))
            return pieces

        def period(p, runs_valid):
            s0 = em.mul(p, spp)
            r0 = em.mul(p, rpp)
            accs = {}
            sl = 0
            nsl = min(spp, -(-runs_valid * plan.run_k // 16))
            while sl < nsl:
                pieces = pieces_of(sl, runs_valid)
                if list(pieces.values()) == [full_mask]:
                    run = next(iter(pieces))
                    count = 1
                    while sl + count < nsl and pieces_of(sl + count, runs_valid) == pieces:
                        count += 1
                    accs[run] = self.slice_range(em.add(s0, sl), count,
                                                 accs.get(run) or self.zero_accs())
                    sl += count
                else:
                    for run in pieces:
                        accs.setdefault(run, self.zero_accs())
                    masks = [None if pieces[r] == full_mask else _signed32(pieces[r])
                             for r in pieces]
                    new = self.slice_vbmi(em.add(s0, sl), [accs[r] for r in pieces], masks)
                    for run, a in zip(pieces, new):
                        accs[run] = a
                    sl += 1
                for run in sorted(accs):
                    if (run + 1) * plan.run_k <= 16 * sl:
                        self.flush(em.add(r0, run), accs.pop(run))
            for run in sorted(accs):
                self.flush(em.add(r0, run), accs[run])

        kvalid = plan.spec.block_k
        full = kvalid // per
        em.loop(full, [], lambda p, _: period(p, rpp) or [])
        rest = (kvalid % per) // plan.run_k
        if rest:
            period(I64(full), rest)

    def slice_range(self, s0, count, accs):
        """Slices s0 .. s0 + count - 1 of one run (a loop, unrolled up to UNROLL)."""
        em = self.em
        if count <= UNROLL:
            for u in range(count):
                accs = self.slice(em.add(s0, u), accs)
            return accs
        u = max(d for d in range(1, UNROLL + 1) if count % d == 0)

        def blk(i, accs):
            s = em.add(s0, em.mul(i, u))
            for v in range(u):
                accs = self.slice(em.add(s, v), accs)
            return accs

        return em.loop(count // u, accs, blk)

    # -------------------------------------------------------------- one slice
    def wvec(self, s, b, j):
        plan, em = self.plan, self.em
        off = em.mul(em.add(em.mul(em.add(em.mul(s, plan.bits), b), self.nvl), j), plan.vbytes)
        if PREFETCH and self.mb == 1:
            em.b.call(em.intrinsic("llvm.prefetch.p0", VOID, [PTR, I32, I32, I32]),
                      [em.ptr(self.w, em.add(off, PREFETCH)), I32(0), I32(3), I32(1)])
        return em.load(vt(I8, plan.vbytes), self.w, off)

    def nibbles(self, v):
        b, n = self.b, v.type.count
        lo = b.and_(v, splatc(I8, n, 15))
        sh = b.bitcast(b.lshr(b.bitcast(v, vt(I16, n // 2)), splatc(I16, n // 2, 4)), v.type)
        hi = b.and_(sh, splatc(I8, n, 15))
        return lo, hi

    def slice(self, s, accs):
        """Accumulate slice s (a runtime index) into accs."""
        kind = self.plan.kind
        if kind == "vbmi":
            return self.slice_vbmi(s, [accs], [None])[0]
        if kind == "shuf":
            return self.slice_shuf(s, accs)
        return self.slice_exact(s, accs)

    def slice_vbmi(self, s, accsets, masks):
        plan, em, b = self.plan, self.em, self.b
        accsets = [list(a) for a in accsets]
        sel = cvec(I8, [16 * (i % 4) for i in range(64)])
        for bp in range(plan.bits):
            idx = []
            for j in range(self.nbk):
                lo, hi = self.nibbles(self.wvec(s, bp, j))
                idx.append((b.or_(lo, sel), b.or_(hi, sel)))
            half = bp // 4
            for m in range(self.mb):
                tab = em.load(vt(I8, 64), self.rec_m[m], em.add(self.tab0, em.mul(s, 64)))
                moff = em.add(em.add(self.mult0, em.mul(s, 4 * self.rows.planes)),
                              self.rows.off_mult + 4 * (bp % 4))
                mult = em.splat(em.load(I32, self.rec_m[m], moff), 16)
                looked = [[em.lookup_bytes(tab, idx[j][h]) for h in range(2)]
                          for j in range(self.nbk)]
                for accs, mask in zip(accsets, masks):
                    mm = mult if mask is None else b.and_(mult, splatc(I32, 16, mask))
                    for j in range(self.nbk):
                        for h in range(2):
                            q = self.ai(m, j, h * self.nh + half)
                            lk = b.bitcast(looked[j][h], vt(I32, 16))
                            accs[q] = em.call("llvm.x86.avx512.vpdpbusd.512", vt(I32, 16),
                                              [accs[q], mm, lk])
        return accsets

    def slice_shuf(self, g, accs):
        plan, em, b = self.plan, self.em, self.b
        accs = list(accs)
        n = plan.vbytes
        bcast = ir.Constant(vt(I32, n), [I32(i % 16) for i in range(n)])
        tabs = []
        for m in range(self.mb):
            t16 = em.load(vt(I8, 16), self.rec_m[m], em.add(self.tab0, em.mul(g, 16)))
            tabs.append(b.shuffle_vector(t16, t16, bcast))
        for bp in range(plan.bits):
            idx = [self.nibbles(self.wvec(g, bp, j)) for j in range(self.nbk)]
            for m in range(self.mb):
                for j in range(self.nbk):
                    for h in range(2):
                        lk = em.lookup_bytes(tabs[m], idx[j][h])
                        for par in range(2):
                            q = self.ai(m, j, 2 * h + par)
                            accs[q] = b.add(accs[q], em.widen_bytes(lk, bp, par))
        return accs

    def slice_exact(self, g, accs):
        plan, em, b = self.plan, self.em, self.b
        accs = list(accs)
        lanes = plan.vbytes // 4
        for bp in range(plan.bits):
            for j in range(self.nbk):
                v = b.bitcast(self.wvec(g, bp, j), vt(I32, lanes))
                idx = [[b.lshr(v, splatc(I32, lanes, 8 * t + 4 * h)) if 8 * t + 4 * h else v
                        for t in range(4)] for h in range(2)]
                for m in range(self.mb):
                    tp = em.ptr(self.rec_m[m], em.add(self.tab0, em.mul(g, 64)))
                    for h in range(2):
                        for t in range(4):
                            f = em.lookup_floats(tp, idx[h][t])
                            if bp:
                                f = b.fmul(f, splatc(F32, lanes, float(1 << bp)))
                            q = self.ai(m, j, 4 * h + t)
                            accs[q] = b.fadd(accs[q], f)
        return accs

    # -------------------------------------------------------------- flush
    def flush(self, r, accs):
        """y += alpha * shalf[run] * I + (alpha (2^bits - 1) / 2 + beta) * sx[run] for run r
        (index within the K tile) and its accumulators."""
        plan, em, b = self.plan, self.em, self.b
        lanes = plan.flanes
        rg = em.add(self.run0, r)  # run index in the records
        per = plan.spec.group_k // plan.run_k
        a = r if per == 1 else b.udiv(em.i64(r), I64(per))  # alpha row
        cst = splatc(F32, lanes, ((1 << plan.bits) - 1) / 2)
        scal = []
        for m in range(self.mb):
            sh = em.load(F32, self.rec_m[m], em.add(em.mul(rg, 4), self.rows.off_shalf))
            sx = em.load(F32, self.rec_m[m], em.add(em.mul(rg, 4), self.rows.off_sx))
            scal.append((em.splat(sh, lanes), em.splat(sx, lanes)))
        for j in range(self.nbk):
            for nb, conv in self.parts():
                nb += j * plan.vec_n
                if nb >= self.nvalid:
                    continue
                valid = min(lanes, self.nvalid - nb)
                arow = em.add(em.mul(a, self.lda), nb)
                al = em.load_f(self.alpha, arow, lanes, valid)
                be = em.load_f(self.beta, arow, lanes, valid)
                c = em.fmadd(al, cst, be)
                for m in range(self.mb):
                    f = conv(accs, self.ai(m, j, 0))
                    sh, sx = scal[m]
                    yoff = em.add(em.mul(self.ldy, m), nb) if m else I64(nb)
                    yv = em.load_f(self.y, yoff, lanes, valid)
                    yv = em.fmadd(b.fmul(f, sh), al, yv)
                    yv = em.fmadd(c, sx, yv)
                    em.store_f(yv, self.y, yoff, lanes, valid)

    def parts(self):
        """(n offset within the weight vector, accumulators -> float vector) per float vector
        of outputs; ``conv(accs, base)`` with base the first accumulator of (m, j)."""
        plan, b = self.plan, self.b
        q = plan.vbytes // 4
        out = []
        if plan.kind == "vbmi":
            def conv(accs, base, h):
                v = accs[base + h * self.nh]
                if self.nh == 2:  # planes 4.. were accumulated with weights 2^(b-4)
                    v = b.add(v, b.shl(accs[base + h * self.nh + 1], splatc(I32, 16, 4)))
                return b.sitofp(v, vt(F32, 16))

            for h in range(2):
                out.append((16 * h, lambda accs, base, h=h: conv(accs, base, h)))
        elif plan.kind == "shuf":
            # accumulator (h, par) word w = byte 2w + par; pmaddwd part d: dword i = byte
            # 4i + 2d + par, i.e. n = (par + 2d) * V/4 + i (see the layout)
            def conv(accs, base, h, par, d):
                w = self.em.widen_words(accs[base + 2 * h + par], d)
                return b.sitofp(w, vt(F32, q))

            for h in range(2):
                for par in range(2):
                    for d in range(2):
                        out.append((plan.ns * h + (par + 2 * d) * q,
                                    lambda accs, base, h=h, par=par, d=d:
                                    conv(accs, base, h, par, d)))
        else:
            for h in range(2):
                for t in range(4):
                    out.append((plan.ns * h + t * q,
                                lambda accs, base, h=h, t=t: accs[base + 4 * h + t]))
        return out
