"""T-MAC-style lookup-table (LUT) matmul for low-bit weights on the CPU.

``sum_k x[k] * (alpha * q[k, n] + beta)`` with unsigned ``bits``-bit codes ``q``: the codes are
split into bit planes, every group of four activations gets a 16-entry table of the signed sums
``sum_j +-x_j`` (8 computed, 8 mirrored), quantized to int8, and each plane of four codes becomes
one 4-bit index into it; byte shuffles (``vpermb`` / ``pshufb``) do the lookups and integer
dot-product instructions accumulate them. ``docs/lut.md`` derives it and describes the layouts.

API:

- ``LutSpec``, ``tile_bytes(spec)``, ``repack(codes, spec, k_axis)`` (and ``unrepack``);
- ``emit_lut_tile(module, spec, name)``: ``void name(float* x, uint8* wtile, float* alpha,
  float* beta, float* acc)``, one tile, tables built on its stack;
- the same split in two, for callers that reuse the tables of a row block over many N tiles:
  ``emit_lut_tables(module, spec, name)``: ``void name(float* x, uint8* tables)`` and
  ``emit_lut_tile_tables(module, spec, name)``: ``void name(uint8* tables, uint8* wtile,
  float* alpha, float* beta, float* acc)``, with ``tables_bytes(spec)`` bytes of scratch;
- ``LutMatmul``: a whole matrix, repacked once, multiplied by one compiled native function per
  thread.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading

import numpy as np
from llvmlite import ir

from bittile.backends.llvm.lut_emit import I64, PTR, Emitter, Rows, rows_for
from bittile.backends.llvm.lut_plan import (
    LutSpec,
    Plan,
    make_plan,
    period_k,
    repack,
    tile_bytes,
    unrepack,
)
from bittile.errors import BittileError

__all__ = ["LutSpec", "tile_bytes", "repack", "unrepack", "emit_lut_tile", "emit_lut_tables",
           "emit_lut_tile_tables", "tables_bytes", "LutMatmul", "make_plan"]


def _blocking(plan: Plan, m: int) -> tuple[int, int]:
    """(rows, weight vectors) handled at once by one kernel call."""
    if plan.kind == "exact":
        return 1, 1
    if plan.kind == "vbmi":
        return (1, plan.nv) if m == 1 else (4 if plan.bits <= 4 else 2, 2)
    # pshufb kernels: four int16 accumulators per row and vector, plus 2 * bits multipliers
    return (1, plan.nv) if m == 1 else (2, 1)


def _chunks(total: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(size, total - i)) for i in range(0, total, size)]


def tables_bytes(spec: LutSpec) -> int:
    """Scratch bytes of the tables of ``spec.m`` rows (``emit_lut_tables``)."""
    plan = make_plan(spec)
    return spec.m * rows_for(plan, plan.kp, spec.block_k).stride


def _tile_body(em: Emitter, rows: Rows, rec, w, alpha, beta, acc):
    """Calls of the kernels covering one tile for spec.m rows (static)."""
    plan, spec, b = em.plan, em.plan.spec, em.b
    mb, nbk = _blocking(plan, spec.m)
    woff, n0 = 0, 0
    for nvec, gbytes in zip(plan.ngroups, plan.ngroup_bytes):
        for j0, cnt in _chunks(nvec, nbk):
            nfirst = n0 + j0 * plan.vec_n
            nvalid = spec.block_n - nfirst
            if nvalid <= 0:
                continue
            for m0, mcnt in _chunks(spec.m, mb):
                kern = em.emit_kernel(rows, mcnt, cnt, nvec,
                                      nvalid if nvalid < cnt * plan.vec_n else None)
                b.call(kern, [em.ptr(rec, m0 * rows.stride), I64(0),
                              em.ptr(w, woff + j0 * plan.vbytes), em.ptr(alpha, 4 * nfirst),
                              em.ptr(beta, 4 * nfirst),
                              em.ptr(acc, 4 * (m0 * spec.block_n + nfirst)),
                              I64(spec.block_n), I64(spec.block_n)])
        woff += gbytes
        n0 += nvec * plan.vec_n


def _build_rows(em: Emitter, rowfn, rows: Rows, x, rec, m):
    for i in range(m):
        em.b.call(rowfn, [em.ptr(x, 4 * i * em.plan.spec.block_k), em.ptr(rec, i * rows.stride)])


def emit_lut_tile(module: ir.Module, spec: LutSpec, name: str) -> ir.Function:
    """Adds ``void name(float* x, uint8* wtile, float* alpha, float* beta, float* acc)``:
    for m < spec.m, n < spec.block_n, ``acc[m*block_n + n] += sum_{k < block_k} x[m*block_k + k]
    * (alpha[(k // group_k)*block_n + n] * q[k, n] + beta[(k // group_k)*block_n + n])`` with q
    the codes of the tile ``wtile`` (see ``repack``). The tables live on its stack."""
    plan = make_plan(spec)
    rows = rows_for(plan, plan.kp, spec.block_k)
    em = Emitter(module, plan, name)
    rowfn = em.emit_row_builder(rows)
    fn = em.function(name, [PTR] * 5, internal=False)
    x, w, alpha, beta, acc = fn.args
    rec = em.stack(spec.m * rows.stride)
    _build_rows(em, rowfn, rows, x, rec, spec.m)
    _tile_body(em, rows, rec, w, alpha, beta, acc)
    em.b.ret_void()
    return fn


def emit_lut_tables(module: ir.Module, spec: LutSpec, name: str) -> ir.Function:
    """Adds ``void name(float* x, uint8* tables)``: the tables of the ``spec.m`` rows of x
    ([m, block_k]) into ``tables`` (``tables_bytes(spec)`` bytes, any alignment)."""
    plan = make_plan(spec)
    rows = rows_for(plan, plan.kp, spec.block_k)
    em = Emitter(module, plan, name)
    rowfn = em.emit_row_builder(rows)
    fn = em.function(name, [PTR, PTR], internal=False)
    _build_rows(em, rowfn, rows, fn.args[0], fn.args[1], spec.m)
    em.b.ret_void()
    return fn


def emit_lut_tile_tables(module: ir.Module, spec: LutSpec, name: str) -> ir.Function:
    """Adds ``void name(uint8* tables, uint8* wtile, float* alpha, float* beta, float* acc)``:
    ``emit_lut_tile`` with the tables made by ``emit_lut_tables`` (of the same spec)."""
    plan = make_plan(spec)
    rows = rows_for(plan, plan.kp, spec.block_k)
    em = Emitter(module, plan, name)
    fn = em.function(name, [PTR] * 5, internal=False)
    _tile_body(em, rows, *fn.args)
    em.b.ret_void()
    return fn


# ---------------------------------------------------------------------- whole matrix


def _yield_symbol() -> bool:
    """Whether JIT code may call ``sched_yield`` (registered with LLVM on first use)."""
    global _have_yield
    if _have_yield is None:
        from bittile.backends.llvm import jit

        try:
            addr = ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value
        except (AttributeError, OSError, TypeError):
            addr = None
        if addr:
            jit.llvm().add_symbol("sched_yield", addr)
        _have_yield = bool(addr)
    return _have_yield


_have_yield = None


def _futex_syscall() -> int | None:
    """The futex system call's number when JIT code may call ``syscall`` (Linux on x86-64 or
    AArch64; registered with LLVM on first use), else None."""
    global _futex
    if _futex is None:
        import platform
        import sys

        number = {"x86_64": 202, "aarch64": 98}.get(platform.machine())
        addr = None
        if sys.platform.startswith("linux") and number is not None:
            try:
                addr = ctypes.cast(ctypes.CDLL(None).syscall, ctypes.c_void_p).value
            except (AttributeError, OSError, TypeError):
                addr = None
        if addr:
            from bittile.backends.llvm import jit

            jit.llvm().add_symbol("syscall", addr)
        _futex = number if addr else 0
    return _futex or None


_futex = None


def _is_x86() -> bool:
    from bittile.backends.llvm import jit

    return jit.llvm().get_process_triple().startswith(("x86_64", "i686", "i386"))


def _emit_pause(em, polls):
    """One poll of a spin loop: ``pause`` and, every 16th poll, ``sched_yield`` (a spinning
    thread must not starve the one it waits for when both share a core). Returns polls + 1."""
    b = em.b
    if _is_x86():
        b.call(em.intrinsic("llvm.x86.sse2.pause", ir.VoidType(), []), [])
    nxt = b.add(polls, I64(1))
    if _yield_symbol():
        rare = b.append_basic_block("yield")
        cont = b.append_basic_block("polled")
        b.cbranch(b.icmp_unsigned("==", b.and_(nxt, I64(15)), I64(0)), rare, cont)
        b.position_at_end(rare)
        b.call(em.intrinsic("sched_yield", ir.IntType(32), []), [])
        b.branch(cont)
        b.position_at_end(cont)
    return nxt


def _emit_driver(module: ir.Module, plan: Plan, name: str, ktiles: int, ntiles: int) -> Rows:
    """``void name(float* x, i64 M, uint8* w, float* alpha, float* beta, float* y,
    uint8* scratch, i64* counters, i64* ends, i64 T, i64 t)``: builds the tables of x [M, K]
    into scratch, then ``y[M, ldn] = x @ W`` for the N tiles it claims (see below). alpha/beta
    [K / group_k, ldn] are padded (ldn = ntiles * block_n); each of the T threads of a call
    runs it with its own t and scratch and the same counters (T + 1 of them) and ends; the
    call of thread 0 returns when every thread has finished."""
    spec = plan.spec
    kall = ktiles * spec.block_k
    rows = rows_for(plan, kall, kall)
    em = Emitter(module, plan, name)
    rowfn = em.emit_row_builder(rows)
    ldn = ntiles * spec.block_n
    b_one, nb_one = _blocking(plan, 1)
    mbm, nbm = _blocking(plan, 2)

    # per n-group: every m block
    ngfns = {}
    for nvec in sorted(set(plan.ngroups)):
        fn = em.function(f"{name}.ng{nvec}", [PTR, I64, I64, PTR, PTR, PTR, PTR])
        rec, m_rows, kt, w, alpha, beta, y = fn.args
        b = em.b

        def call(kern, m0, j0, em=em, rec=rec, kt=kt, w=w, alpha=alpha, beta=beta, y=y):
            nf = j0 * plan.vec_n
            em.b.call(kern, [em.ptr(rec, em.mul(m0, rows.stride)), kt,
                             em.ptr(w, j0 * plan.vbytes), em.ptr(alpha, 4 * nf),
                             em.ptr(beta, 4 * nf),
                             em.ptr(y, em.add(em.mul(m0, 4 * ldn), 4 * nf)),
                             I64(ldn), I64(ldn)])

        one = b.append_basic_block("one")
        many = b.append_basic_block("many")
        done = b.append_basic_block("done")
        b.cbranch(b.icmp_signed("==", m_rows, I64(1)), one, many)
        b.position_at_end(one)
        for j0, cnt in _chunks(nvec, nb_one):
            call(em.emit_kernel(rows, 1, cnt, nvec, None), 0, j0)
        b.branch(done)
        b.position_at_end(many)
        full = b.udiv(m_rows, I64(mbm))
        rem = b.urem(m_rows, I64(mbm))
        for j0, cnt in _chunks(nvec, nbm):
            kern = em.emit_kernel(rows, mbm, cnt, nvec, None)
            em.loop(full, [], lambda i, _, kern=kern, j0=j0: call(kern, em.mul(i, mbm), j0)
                    or [])
            if mbm > 1:
                after = b.append_basic_block("after")
                m0 = em.mul(full, mbm)
                sw = b.switch(rem, after)
                for r in range(1, mbm):
                    blk = b.append_basic_block(f"rem{r}")
                    sw.add_case(I64(r), blk)
                    b.position_at_end(blk)
                    call(em.emit_kernel(rows, r, cnt, nvec, None), m0, j0)
                    b.branch(after)
                b.position_at_end(after)
        b.branch(done)
        b.position_at_end(done)
        b.ret_void()
        ngfns[nvec] = fn

    fn = em.function(name, [PTR, I64, PTR, PTR, PTR, PTR, PTR, PTR, PTR, I64, I64],
                     internal=False)
    x, m_rows, w, alpha, beta, y, scratch, counters, ends, nthreads, tid = fn.args
    b = em.b
    def build(i, _):
        b.call(rowfn, [em.ptr(x, em.mul(i, 4 * kall)), em.ptr(scratch, em.mul(i, rows.stride))])
        return []

    em.loop(m_rows, [], build)
    ngroups, gbytes = plan.ngroups, plan.ngroup_bytes
    nfull = sum(1 for v in ngroups if v == plan.nv)
    gn = plan.nv * plan.vec_n

    def tile(nt):
        # y[:, tile] = 0
        yt = em.ptr(y, em.mul(nt, 4 * spec.block_n))
        lanes = 16 if plan.level.vector_bits >= 512 else 8 if plan.level.vector_bits >= 256 else 4

        def zero_row(i, _):
            for c in range(spec.block_n // lanes):
                em.store(ir.Constant(ir.VectorType(ir.FloatType(), lanes), None), yt,
                         em.add(em.mul(i, 4 * ldn), 4 * lanes * c))
            for c in range(spec.block_n // lanes * lanes, spec.block_n):
                em.store(ir.Constant(ir.FloatType(), 0.0), yt, em.add(em.mul(i, 4 * ldn), 4 * c))
            return []

        em.loop(m_rows, [], zero_row)

        def ktile(kt, _):
            wt = em.ptr(w, em.mul(em.add(em.mul(kt, ntiles), nt), plan.tile_bytes))
            arow = em.mul(kt, (spec.block_k // spec.group_k) * ldn)
            n0 = em.mul(nt, spec.block_n)

            def group(g, _, nvec, goff, gn0):
                nn = em.add(n0, gn0)
                an = em.mul(em.add(arow, nn), 4)
                b.call(ngfns[nvec], [scratch, m_rows, kt, em.ptr(wt, goff), em.ptr(alpha, an),
                                     em.ptr(beta, an), em.ptr(y, em.mul(nn, 4))])
                return []

            em.loop(nfull, [], lambda g, _: group(g, _, plan.nv, em.mul(g, gbytes[0]),
                                                  em.mul(g, gn)))
            if len(ngroups) > nfull:
                group(None, None, ngroups[-1], nfull * gbytes[0], nfull * gn)
            return []

        em.loop(ktiles, [], ktile)

    # Thread t of T works on its own range of N tiles, [counters[t], ends[t]), claiming one tile
    # at a time (atomically incrementing counters[t]), then helps the others with theirs.
    def steal(k, _):
        v = b.urem(b.add(tid, k), nthreads)
        cptr = em.ptr(counters, b.mul(v, I64(8)))
        end = em.load(I64, ends, b.mul(v, I64(8)))
        claim = b.append_basic_block("claim")
        work = b.append_basic_block("work")
        done = b.append_basic_block("done")
        b.branch(claim)
        b.position_at_end(claim)
        nt = b.atomic_rmw("add", cptr, I64(1), "monotonic")
        b.cbranch(b.icmp_signed("<", nt, end), work, done)
        b.position_at_end(work)
        tile(nt)
        b.branch(claim)
        b.position_at_end(done)
        return []

    em.loop(nthreads, [], steal)

    # counters[T] counts finished threads; thread 0 returns only when all have finished (a
    # spin: waking a blocked Python thread costs more than the last tile of the others)
    done_ptr = em.ptr(counters, b.mul(nthreads, I64(8)))
    b.atomic_rmw("add", done_ptr, I64(1), "release")
    entry = b.block
    spin = b.append_basic_block("spin")
    wait = b.append_basic_block("wait")
    out = b.append_basic_block("out")
    b.cbranch(b.icmp_signed("==", tid, I64(0)), spin, out)
    b.position_at_end(spin)
    polls = b.phi(I64)
    polls.add_incoming(I64(0), entry)
    ld = b.load_atomic(done_ptr, "acquire", 8, typ=I64)
    b.cbranch(b.icmp_signed("<", ld, nthreads), wait, out)
    b.position_at_end(wait)
    polls.add_incoming(_emit_pause(em, polls), b.block)
    b.branch(spin)
    b.position_at_end(out)
    b.ret_void()
    return rows


#: how long (TSC ticks, or polls) a worker keeps polling for the next call before it sleeps.
#: 0: a worker sleeps at once. On a 2-core machine any polling made torch work interleaved
#: with bittile calls (the MiniLM example) 4-6x slower, while a native futex wake costs
#: back-to-back GEMV launches little (benchmarks/gemv.py within its noise).
SPIN_TICKS = 0
#: the native driver's arguments (see ``_emit_driver``): ptr, i64, 7 x ptr, i64, i64
_DRIVER_ARGS = ("ptr", "i64") + ("ptr",) * 7 + ("i64", "i64")

_native_lock = threading.Lock()
_native = None
_stack_lock = threading.Lock()
WORKER_STACK_BYTES = 64 << 20


def _worker_natives():
    """``i64 lut_worker(i64* job, i64 seen, i64 ticks)``: while ``job[0]`` (the generation) is
    posted within ``ticks`` TSC ticks (or polls) of the last job, calls the driver ``job[1]`` on
    the arguments ``job[2:13]``; then, where the futex system call is available, sleeps on it
    until the next post and never returns, else returns the last generation seen.
    ``void lut_post(i64* job, i64 gen)``: publishes a job (and wakes a sleeping worker).
    ``void lut_wait(i64* counter, i64 target)``: polls (pausing, and yielding the CPU now and
    then) until ``*counter >= target``."""
    global _native
    with _native_lock:
        if _native is None:
            from bittile.backends.llvm import jit

            pause = "call void @llvm.x86.sse2.pause()\n  " if _is_x86() else ""
            if _yield_symbol():  # see _emit_pause
                pause += ("%low = and i64 %n, 15\n  %rare = icmp eq i64 %low, 15\n"
                          "  br i1 %rare, label %yield, label %polled\n"
                          "yield:\n  %yr = call i32 @sched_yield()\n  br label %polled")
            else:
                pause += "br label %polled"
            loads, params = [], []
            for i, ty in enumerate(_DRIVER_ARGS):
                loads.append(f"%q{i} = getelementptr i64, ptr %job, i64 {i + 2}\n"
                             f"  %a{i} = load {ty}, ptr %q{i}, align 8")
                params.append(f"{ty} %a{i}")
            loads = "\n  ".join(loads)
            futex = _futex_syscall()
            if futex is None:  # back to Python, which sleeps on an event (see _Worker)
                wake, sleep, decl = "", "ret i64 %seen", ""
            else:
                # job[15] says the worker sleeps (or is about to) on the futex of job[0]'s
                # low word; both sides use sequentially consistent accesses, so either the
                # poster sees the flag and wakes it, or the worker sees the new generation
                # (and the kernel's compare-and-sleep closes the gap between)
                wake = (f"%fl = getelementptr i64, ptr %job, i64 15\n"
                        f"  %sl = load atomic i64, ptr %fl seq_cst, align 8\n"
                        f"  %sleeps = icmp ne i64 %sl, 0\n"
                        f"  br i1 %sleeps, label %dowake, label %done\n"
                        f"dowake:\n"
                        f"  %wr = call i64 (i64, ...) @syscall(i64 {futex}, ptr %job, "
                        f"i32 129, i32 1)\n"
                        f"  br label %done\n"
                        f"done:")
                sleep = (f"%sf = getelementptr i64, ptr %job, i64 15\n"
                         f"  store atomic i64 1, ptr %sf seq_cst, align 8\n"
                         f"  %g2 = load atomic i64, ptr %job seq_cst, align 8\n"
                         f"  %idle2 = icmp eq i64 %g2, %seen\n"
                         f"  br i1 %idle2, label %dosleep, label %woke\n"
                         f"dosleep:\n"
                         f"  %lo = trunc i64 %seen to i32\n"
                         f"  %sr = call i64 (i64, ...) @syscall(i64 {futex}, ptr %job, "
                         f"i32 128, i32 %lo, ptr null)\n"
                         f"  br label %woke\n"
                         f"woke:\n"
                         f"  store atomic i64 0, ptr %sf seq_cst, align 8\n"
                         f"  br label %idle")
                decl = "declare i64 @syscall(i64, ...)"
            woke_edge = "" if futex is None else ", [%seen, %woke]"
            text = f"""
{decl}
declare i64 @llvm.readcyclecounter()
declare void @llvm.x86.sse2.pause()
declare i32 @sched_yield()
define void @lut_post(ptr %job, i64 %gen) nounwind {{
  store atomic i64 %gen, ptr %job seq_cst, align 8
  {wake}
  ret void
}}
define i64 @lut_worker(ptr %job, i64 %seen0, i64 %ticks) {{
entry:
  br label %idle
idle:
  %seen = phi i64 [%seen0, %entry], [%g, %run]{woke_edge}
  %t0 = call i64 @llvm.readcyclecounter()
  br label %poll
poll:
  %n = phi i64 [0, %idle], [%n1, %polled]
  %g = load atomic i64, ptr %job acquire, align 8
  %new = icmp ne i64 %g, %seen
  br i1 %new, label %run, label %wait
wait:
  {pause}
polled:
  %t = call i64 @llvm.readcyclecounter()
  %dt = sub i64 %t, %t0
  %n1 = add i64 %n, 1
  %late = icmp sgt i64 %dt, %ticks
  %many = icmp sgt i64 %n1, %ticks
  %stop = or i1 %late, %many
  br i1 %stop, label %out, label %poll
run:
  %fp = getelementptr i64, ptr %job, i64 1
  %fn = load ptr, ptr %fp, align 8
  {loads}
  call void %fn({", ".join(params)})
  br label %idle
out:
  {sleep}
}}
"""
            text += f"""
define void @lut_wait(ptr %counter, i64 %target) {{
entry:
  br label %poll
poll:
  %n = phi i64 [0, %entry], [%n1, %polled]
  %c = load atomic i64, ptr %counter acquire, align 8
  %ok = icmp sge i64 %c, %target
  br i1 %ok, label %out, label %wait
wait:
  {pause}
polled:
  %n1 = add i64 %n, 1
  br label %poll
out:
  ret void
}}
"""
            m = jit.JitModule(text)
            i64, vp = ctypes.c_int64, ctypes.c_void_p
            _native = (m.function("lut_worker", i64, vp, i64, i64),
                       m.function("lut_post", None, vp, i64),
                       m.function("lut_wait", None, vp, i64))
    return _native


class _Worker:
    """A thread that runs native driver calls posted to it. It runs them from native code
    (without the GIL): after a call it polls for the next one for ``SPIN_TICKS``, then sleeps
    on a futex in native code as well (Linux), so that waking it never waits for the GIL;
    elsewhere it returns to Python and sleeps on an event. The caller learns the end of a call
    from the driver itself (see ``_emit_driver``) or from a counter the job increments."""

    def __init__(self):
        self._job = np.zeros(16, np.int64)
        self._event = threading.Event()
        self._gen = 0
        self._sleeping = False
        # kernels launched on these threads keep their tiles on the stack (as on the launch
        # pool's threads, backends/llvm/launch.py)
        with _stack_lock:
            old = threading.stack_size()
            threading.stack_size(WORKER_STACK_BYTES)
            try:
                threading.Thread(target=self._loop, daemon=True, name="bittile-lut").start()
            finally:
                threading.stack_size(old)

    def _loop(self):
        run = _worker_natives()[0]
        addr = self._job.ctypes.data
        seen = 0
        while True:
            seen = run(addr, seen, SPIN_TICKS)
            self._sleeping = True  # from now on a poster sets the event
            if self._job[0] == seen:
                self._event.wait()
                self._event.clear()
            self._sleeping = False

    def start(self, fn_addr: int, args: tuple):
        """Post a call of the driver at fn_addr with the ints ``args``."""
        self._job[1] = fn_addr
        self._job[2:2 + len(args)] = args
        self._gen += 1
        _worker_natives()[1](self._job.ctypes.data, self._gen)
        if self._sleeping:  # (read after the post: see _loop)
            self._event.set()


_pool_lock = threading.Lock()
_workers: list[_Worker] = []


def _forget_workers_after_fork() -> None:
    """A forked child has none of the parent's threads: its idle-worker list must not hand out
    workers that no longer run (a launch would wait for them forever)."""
    global _pool_lock
    _workers.clear()
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers_after_fork)


def _num_threads() -> int:
    env = os.environ.get("BITTILE_NUM_THREADS")
    return max(1, int(env)) if env else (os.cpu_count() or 1)


def _take_workers(n: int) -> list[_Worker]:
    """n idle workers (returned with ``_give_workers``)."""
    _worker_natives()  # compiled here, not in a worker thread (an error there would hang us)
    with _pool_lock:
        got = [_workers.pop() for _ in range(min(n, len(_workers)))]
    return got + [_Worker() for _ in range(n - len(got))]


def _give_workers(ws: list[_Worker]) -> None:
    with _pool_lock:
        _workers.extend(ws)


class LutMatmul:
    """``y = x @ (alpha * q + beta)`` for a fixed low-bit weight matrix.

    ``codes``: [K, N] (``k_axis=0``) or [N, K] (``k_axis=1``) integer codes in [0, 2^bits);
    ``alpha``, ``beta``: [ceil(K / group_k), N] scales and offsets (beta None: 0). ``exact``,
    ``level``, ``intrinsics``: as in ``LutSpec``; ``block_k`` (a multiple of lcm(group_k, 16);
    default: all of K) and ``block_n`` (default: one n-group of the layout) choose the tiles.

    Calling it with x [M, K] (or [K]) returns y [M, N] (or [N]) float32: one native call per
    thread (``num_threads``, default ``BITTILE_NUM_THREADS`` or the CPU count), each building
    the tables of x once and then computing N tiles (its own range first, then helping the
    others); the calling thread makes one of the calls, persistent workers the others. Calls of
    one instance are serialized.
    """

    def __init__(self, codes, alpha, beta=None, *, bits: int, group_k: int, k_axis: int = 0,
                 exact: bool = False, level: str = "host", block_k: int | None = None,
                 block_n: int | None = None, intrinsics: bool = True,
                 num_threads: int | None = None):
        codes = np.asarray(codes)
        if codes.ndim != 2:
            raise BittileError("LutMatmul needs 2-D codes")
        k, n = codes.shape if k_axis == 0 else codes.shape[::-1]
        self.K, self.N, self.bits, self.group_k = k, n, bits, group_k
        probe = make_plan(LutSpec(bits, 1, group_k, 1, group_k, exact, level, intrinsics))
        unit = math.lcm(group_k, 16, period_k(probe))
        if block_k is None:
            block_k = -(-k // unit) * unit
        elif block_k % unit:
            raise BittileError(f"block_k must be a multiple of {unit} here")
        if block_n is None:
            block_n = probe.nv * probe.vec_n
        self.spec = LutSpec(bits, 1, block_k, block_n, group_k, exact, level, intrinsics)
        self.plan = make_plan(self.spec)
        self.ktiles = -(-k // block_k)
        self.ntiles = -(-n // block_n)
        self.kpad, self.ldn = self.ktiles * block_k, self.ntiles * block_n
        self.weights = repack(codes, self.spec, k_axis)
        ga = self.kpad // group_k
        alpha = np.asarray(alpha, np.float32)
        if alpha.shape != (-(-k // group_k), n):
            raise BittileError(f"alpha must have shape {(-(-k // group_k), n)}, "
                               f"not {alpha.shape}")
        self.alpha = np.zeros((ga, self.ldn), np.float32)
        self.alpha[:alpha.shape[0], :n] = alpha
        self.beta = np.zeros_like(self.alpha)
        if beta is not None:
            beta = np.asarray(beta, np.float32)
            if beta.shape != alpha.shape:
                raise BittileError("beta must have the shape of alpha")
            self.beta[:beta.shape[0], :n] = beta
        self.num_threads = num_threads or _num_threads()
        self._compile()
        self._lock = threading.Lock()
        self._cached = None

    def _compile(self):
        from bittile.backends.llvm import jit

        module = ir.Module(name="lut")
        self.rows = _emit_driver(module, self.plan, "lut_mm", self.ktiles, self.ntiles)
        self.ir = str(module)
        self.jit = jit.JitModule(self.ir, self.plan.level)
        p, i = ctypes.c_void_p, ctypes.c_int64
        self._fn = self.jit.function("lut_mm", None, p, i, p, p, p, p, p, p, p, i, i)
        self._fn_addr = self.jit.address("lut_mm")

    def _state(self, m: int):
        """Buffers and ctypes arguments of calls with m rows (cached for the last m)."""
        st = self._cached
        if st is not None and st[0] == m:
            return st
        nthreads = max(1, min(self.num_threads, self.ntiles))
        xbuf = np.zeros((m, self.kpad), np.float32)
        ybuf = np.zeros((m, self.ldn), np.float32)
        scratch = [np.empty(m * self.rows.stride + 64, np.uint8) for _ in range(nthreads)]
        starts = np.array([self.ntiles * t // nthreads for t in range(nthreads)], np.int64)
        ends = np.array([self.ntiles * (t + 1) // nthreads for t in range(nthreads)], np.int64)
        counters = np.zeros(nthreads + 1, np.int64)
        starts = np.append(starts, 0)  # counters[T] counts finished threads
        common = (xbuf.ctypes.data, m, self.weights.ctypes.data, self.alpha.ctypes.data,
                  self.beta.ctypes.data, ybuf.ctypes.data)
        args = []
        for t in range(nthreads):
            sp = scratch[t].ctypes.data
            args.append(common + (sp + (-sp % 64), counters.ctypes.data, ends.ctypes.data,
                                  nthreads, t))
        st = (m, xbuf, ybuf, counters, starts, args, (scratch, ends))
        self._cached = st
        return st

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        squeeze = x.ndim == 1
        if squeeze:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.K:
            raise BittileError(f"x must be [M, {self.K}], not {list(x.shape)}")
        with self._lock:
            _, xbuf, ybuf, counters, starts, args, _ = self._state(x.shape[0])
            xbuf[:, :self.K] = x
            counters[:] = starts
            fn = self._fn
            if len(args) == 1:
                fn(*args[0])
            else:
                workers = _take_workers(len(args) - 1)
                for wk, a in zip(workers, args[1:]):
                    wk.start(self._fn_addr, a)
                fn(*args[0])  # returns when every thread has finished
                _give_workers(workers)
            out = ybuf[:, :self.N].copy()
        return out[0] if squeeze else out
