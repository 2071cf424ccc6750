"""The lookup-table matmul (backends/llvm/lut.py): layout, tile functions on every CPU level the
host can run, the whole-matrix driver, and accumulator bounds. Every result is compared with
float64 numpy arithmetic of x @ (alpha * q + beta)."""

from __future__ import annotations

import ctypes
import mmap
import threading
import time

import numpy as np
import pytest

pytest.importorskip("llvmlite")

from llvmlite import ir  # noqa: E402

from bittile.backends.llvm import jit  # noqa: E402
from bittile.backends.llvm.lut import (  # noqa: E402
    LutMatmul,
    LutSpec,
    emit_lut_tables,
    emit_lut_tile,
    emit_lut_tile_tables,
    make_plan,
    repack,
    tables_bytes,
    tile_bytes,
    unrepack,
)
from bittile.errors import BittileError  # noqa: E402


def _runnable(level: str) -> bool:
    try:
        jit.resolve_level(level)
    except BittileError:
        return False
    return level == "host" or jit.llvm().get_process_triple().startswith("x86_64")


LEVELS = [lv for lv in ("sse", "avx2", "host") if _runnable(lv)]
INT8_NMSE = 5e-5
EXACT_NMSE = 1e-10
P = ctypes.c_void_p


def reference(x, codes, alpha, beta, group_k):
    """float64 x @ (alpha * q + beta), alpha/beta per run of group_k along K."""
    k = codes.shape[0]
    a = np.repeat(alpha.astype(np.float64), group_k, 0)[:k]
    b = np.repeat(beta.astype(np.float64), group_k, 0)[:k]
    return x.astype(np.float64) @ (a * codes + b)


def nmse(got, ref):
    return float(((got - ref) ** 2).sum() / (ref ** 2).sum())


def problem(rng, bits, m, k, n, group_k):
    codes = rng.integers(0, 1 << bits, (k, n))
    ga = -(-k // group_k)
    alpha = rng.uniform(0.5, 1.5, (ga, n)).astype(np.float32)
    # zero points near the middle: the result is not dominated by the mean of the codes
    beta = (-alpha * ((1 << bits) - 1) / 2 + rng.normal(0, 0.2, (ga, n))).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    return x, codes, alpha, beta


# ---------------------------------------------------------------- guarded memory

_libc = ctypes.CDLL(None, use_errno=True)
_PAGE = mmap.PAGESIZE
_keep = []


def guarded(arr: np.ndarray) -> np.ndarray:
    """A copy of ``arr`` that ends at an inaccessible page and starts right after one: reading
    or writing outside it crashes the process (which fails the test run)."""
    nbytes = max(arr.nbytes, 1)
    body = -(-nbytes // _PAGE) * _PAGE
    mm = mmap.mmap(-1, body + 2 * _PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    for addr in (base, base + _PAGE + body):
        assert _libc.mprotect(ctypes.c_void_p(addr), _PAGE, 0) == 0
    out = np.frombuffer(mm, arr.dtype, arr.size, _PAGE + body - arr.nbytes).reshape(arr.shape)
    out[...] = arr
    _keep.append(mm)
    return out


# ---------------------------------------------------------------- layout


LAYOUT_SPECS = [
    LutSpec(4, 1, 64, 100, 32, level="host"),
    LutSpec(3, 1, 40, 33, 8, level="host"),
    LutSpec(1, 1, 16, 300, 16, level="host"),
    LutSpec(8, 1, 12, 7, 4, level="host"),
    LutSpec(2, 1, 48, 70, 48, level="sse"),
    LutSpec(4, 1, 32, 65, 32, level="avx2"),
    LutSpec(4, 1, 32, 65, 32, exact=True, level="avx2"),
    LutSpec(2, 1, 64, 129, 64, intrinsics=False, level="host"),
]


@pytest.mark.parametrize("spec", [s for s in LAYOUT_SPECS if s.level in LEVELS], ids=str)
def test_repack_roundtrip_and_axes(spec):
    rng = np.random.default_rng(0)
    k, n = 3 * spec.block_k - 4, 2 * spec.block_n + 5  # partial tiles in both directions
    codes = rng.integers(0, 1 << spec.bits, (k, n))
    packed = repack(codes, spec, k_axis=0)
    kt, nt = -(-k // spec.block_k), -(-n // spec.block_n)
    assert packed.dtype == np.uint8 and packed.ndim == 1
    assert packed.size == kt * nt * tile_bytes(spec)
    np.testing.assert_array_equal(unrepack(packed, spec, k, n), codes)
    np.testing.assert_array_equal(repack(codes.T, spec, k_axis=1), packed)
    np.testing.assert_array_equal(unrepack(packed, spec, k, n, k_axis=1), codes.T)
    # outside the matrix the tiles hold code 0
    whole = unrepack(packed, spec, kt * spec.block_k, nt * spec.block_n)
    assert not whole[k:].any() and not whole[:, n:].any()
    np.testing.assert_array_equal(whole[:k, :n], codes)


def _nibble(codes, plane, ks, n):
    return sum(((int(codes[k, n]) >> plane) & 1) << j for j, k in enumerate(ks))


def test_vbmi_layout_bytes(monkeypatch):
    """Byte 4i + t of vector (slice s, plane b, vector j): low nibble = plane b of codes
    k = 16s + 4t + 0..3 at n = 32j + i, high nibble the same at n + 16. The layout is numpy
    code, so it is checked on any host: the plan is made as for an AVX-512 VBMI + VNNI CPU."""
    from bittile.backends.llvm import jit, lut_plan

    vbmi = jit.CpuLevel("host", "sapphirerapids", "", 512, ())
    monkeypatch.setattr(jit, "resolve_level", lambda name=None: vbmi)
    monkeypatch.setattr(lut_plan, "_features",
                        lambda level: frozenset({"avx512f", "avx512bw", "avx512vbmi",
                                                 "avx512vnni"}))
    # a level name of its own, so that the (cached) plans of the real host are not mixed in
    spec = LutSpec(3, 1, 32, 128, 32, level="vbmi-layout-test")
    plan = make_plan(spec)
    assert plan.kind == "vbmi"
    codes = np.random.default_rng(1).integers(0, 8, (32, 128))
    packed = repack(codes, spec)
    for s in range(2):
        for b in range(3):
            for j in range(4):
                for p in (0, 5, 18, 63):
                    i, t = divmod(p, 4)
                    ks = range(16 * s + 4 * t, 16 * s + 4 * t + 4)
                    want = _nibble(codes, b, ks, 32 * j + i) | (
                        _nibble(codes, b, ks, 32 * j + 16 + i) << 4)
                    assert packed[((s * 3 + b) * 4 + j) * 64 + p] == want


@pytest.mark.parametrize("level", [lv for lv in ("sse", "avx2") if lv in LEVELS])
def test_shuf_layout_bytes(level):
    """Byte p of vector (group g, plane b, vector j) of V bytes: low nibble = plane b of codes
    k = 4g + 0..3 at n = 2Vj + (p % 4) V/4 + p // 4, high nibble the same at n + V."""
    spec = LutSpec(2, 1, 8, 256, 8, level=level)
    plan = make_plan(spec)
    v = plan.vbytes
    codes = np.random.default_rng(2).integers(0, 4, (8, 256))
    packed = repack(codes, spec)
    for g in range(2):
        for b in range(2):
            for j in range(plan.nv):
                for p in range(v):
                    n = 2 * v * j + (p % 4) * (v // 4) + p // 4
                    ks = range(4 * g, 4 * g + 4)
                    want = _nibble(codes, b, ks, n) | (_nibble(codes, b, ks, n + v) << 4)
                    assert packed[((g * 2 + b) * plan.nv + j) * v + p] == want


def test_repack_and_spec_errors():
    spec = LutSpec(2, 1, 16, 16, 16)
    with pytest.raises(BittileError):
        repack(np.full((4, 4), 4), spec)
    with pytest.raises(BittileError):
        repack(np.full((4, 4), -1), spec)
    for bad in (LutSpec(0, 1, 16, 16, 16), LutSpec(9, 1, 16, 16, 16), LutSpec(2, 1, 18, 16, 6),
                LutSpec(2, 1, 16, 16, 12), LutSpec(2, 1, 16, 16, 6), LutSpec(2, 0, 16, 16, 16)):
        with pytest.raises(BittileError):
            tile_bytes(bad)
    with pytest.raises(BittileError):
        tile_bytes(LutSpec(2, 1, 16, 16, 16, level="pentium"))


# ---------------------------------------------------------------- tile functions

# (bits, m, block_k, block_n, group_k, exact)
TILE_CASES = [
    (1, 1, 128, 64, 32, False),
    (2, 3, 40, 50, 8, False),  # K not a multiple of 16, odd N, small groups
    (3, 32, 128, 40, 128, False),  # M = 32, per-channel
    (4, 1, 256, 37, 128, False),
    (4, 3, 96, 130, 4, False),  # a scale per group of four
    (8, 2, 256, 48, 32, False),
    (4, 3, 64, 33, 32, True),
    (1, 1, 32, 20, 4, True),
    (3, 2, 48, 70, 16, True),
]


def _name(case):
    return "t_" + "_".join(str(int(v)) for v in case)


@pytest.fixture(scope="module", params=LEVELS)
def tiles(request):
    """Every TILE_CASES tile function (and the two-step variant of the first ones) for one level,
    compiled into one module."""
    level = request.param
    module = ir.Module(name="lut_test")
    specs = {}
    for case in TILE_CASES:
        bits, m, bk, bn, gk, exact = case
        spec = LutSpec(bits, m, bk, bn, gk, exact=exact, level=level)
        emit_lut_tile(module, spec, _name(case))
        specs[_name(case)] = spec
    for case in TILE_CASES[:2]:
        spec = specs[_name(case)]
        emit_lut_tables(module, spec, _name(case) + "_tables")
        emit_lut_tile_tables(module, spec, _name(case) + "_pre")
    text = str(module)
    jm = jit.JitModule(text, jit.resolve_level(level))
    return level, specs, jm, text


def _run_tile(jm, name, spec, x, codes, alpha, beta, acc):
    fn = jm.function(name, None, P, P, P, P, P)
    w = guarded(repack(codes, spec))
    x, alpha, beta, acc = (guarded(a) for a in (x, alpha, beta, acc))
    fn(x.ctypes.data, w.ctypes.data, alpha.ctypes.data, beta.ctypes.data, acc.ctypes.data)
    return np.array(acc)


@pytest.mark.parametrize("case", TILE_CASES, ids=_name)
def test_tile(tiles, case):
    level, specs, jm, _ = tiles
    spec = specs[_name(case)]
    rng = np.random.default_rng(hash(case) % 2**32)
    x, codes, alpha, beta = problem(rng, spec.bits, spec.m, spec.block_k, spec.block_n,
                                    spec.group_k)
    acc0 = rng.standard_normal((spec.m, spec.block_n)).astype(np.float32)
    got = _run_tile(jm, _name(case), spec, x, codes, alpha, beta, acc0.copy())
    err = nmse(got.astype(np.float64) - acc0, reference(x, codes, alpha, beta, spec.group_k))
    assert err <= (EXACT_NMSE if spec.exact else INT8_NMSE), (level, err)
    if not spec.exact:
        assert err > 1e-9  # int8 tables really were used


def test_tile_with_precomputed_tables(tiles):
    level, specs, jm, _ = tiles
    for case in TILE_CASES[:2]:
        spec = specs[_name(case)]
        rng = np.random.default_rng(5)
        x, codes, alpha, beta = problem(rng, spec.bits, spec.m, spec.block_k, spec.block_n,
                                        spec.group_k)
        acc = np.zeros((spec.m, spec.block_n), np.float32)
        one = _run_tile(jm, _name(case), spec, x, codes, alpha, beta, acc)
        tab = guarded(np.zeros(tables_bytes(spec), np.uint8))
        jm.function(_name(case) + "_tables", None, P, P)(guarded(x).ctypes.data, tab.ctypes.data)
        w = guarded(repack(codes, spec))
        two = guarded(acc)
        jm.function(_name(case) + "_pre", None, P, P, P, P, P)(
            tab.ctypes.data, w.ctypes.data, guarded(alpha).ctypes.data,
            guarded(beta).ctypes.data, two.ctypes.data)
        np.testing.assert_array_equal(one, two)


def test_instruction_sets(tiles):
    """512-bit vectors where the level has AVX-512BW; nothing wider than the level allows."""
    level, specs, jm, text = tiles
    asm = jm.assembly()
    bits = jit.resolve_level(level).vector_bits
    if bits >= 512:
        assert '"prefer-vector-width"="512"' in text and '"min-legal-vector-width"="512"' in text
        assert "%zmm" in asm
    if bits < 512:
        assert "%zmm" not in asm
    if bits < 256:
        assert "%ymm" not in asm
    if make_plan(next(iter(specs.values()))).kind == "vbmi":
        assert "vpermb" in asm and "vpdpbusd" in asm
    elif level in ("sse", "avx2"):
        assert "pshufb" in asm and "pmaddubsw" in asm


@pytest.mark.parametrize("level", LEVELS)
def test_accumulators_do_not_overflow(level):
    """Every lookup returns the extreme table entry: activations of equal magnitude and codes
    whose bits match their signs (every lookup +127), or all activations negative and all codes
    2^bits - 1 (every lookup -127). A wrapped int16 or int32 accumulator would be far off; the
    int8 tables are exact here, only float32 rounding remains."""
    module = ir.Module(name="adv")
    cases = [(bits, 1024, 8 if bits == 8 else 2) for bits in (1, 4, 8)] + [(4, 4096, 1)]
    for bits, k, m in cases:
        emit_lut_tile(module, LutSpec(bits, m, k, 64, k, level=level), f"adv{bits}_{k}")
    jm = jit.JitModule(str(module), jit.resolve_level(level))
    rng = np.random.default_rng(3)
    for bits, k, m in cases:
        spec = LutSpec(bits, m, k, 64, k, level=level)
        for sign in ("pos", "neg", "mixed"):
            if sign == "mixed":
                x = np.where(rng.random((1, k)) < 0.5, -1.0, 1.0).astype(np.float32) * 3e4
                x = x.repeat(m, 0)
            else:
                x = np.full((m, k), 3e4 if sign == "pos" else -3e4, np.float32)
            top = (1 << bits) - 1
            codes = np.where(x[:1].T > 0, top, 0).repeat(64, 1)
            if sign == "neg":
                codes[:] = top
            alpha = np.ones((1, 64), np.float32)
            beta = np.zeros((1, 64), np.float32)
            acc = np.zeros((m, 64), np.float32)
            got = _run_tile(jm, f"adv{bits}_{k}", spec, x, codes, alpha, beta, acc)
            ref = reference(x, codes, alpha, beta, k)
            assert nmse(got, ref) <= 1e-9, (level, bits, k, sign)


@pytest.mark.parametrize("level", ["host"])
def test_generic_ir_form(level):
    """The form without x86 intrinsics (what other targets get) computes the same."""
    rng = np.random.default_rng(4)
    module = ir.Module(name="generic")
    specs = [LutSpec(2, 2, 64, 70, 32, level=level, intrinsics=False),
             LutSpec(3, 1, 32, 40, 16, exact=True, level=level, intrinsics=False)]
    for i, spec in enumerate(specs):
        assert make_plan(spec).isa == "generic"
        emit_lut_tile(module, spec, f"g{i}")
    jm = jit.JitModule(str(module), jit.resolve_level(level))
    for i, spec in enumerate(specs):
        x, codes, alpha, beta = problem(rng, spec.bits, spec.m, spec.block_k, spec.block_n,
                                        spec.group_k)
        acc = np.zeros((spec.m, spec.block_n), np.float32)
        got = _run_tile(jm, f"g{i}", spec, x, codes, alpha, beta, acc)
        err = nmse(got, reference(x, codes, alpha, beta, spec.group_k))
        assert err <= (EXACT_NMSE if spec.exact else INT8_NMSE)


# ---------------------------------------------------------------- whole matrices


@pytest.mark.parametrize("bits,group_k,k_axis", [(4, 128, 0), (2, 32, 1), (3, 1000, 0)])
def test_matmul(bits, group_k, k_axis):
    rng = np.random.default_rng(bits)
    k, n = 1000, 700  # neither a multiple of the tiles
    x, codes, alpha, beta = problem(rng, bits, 32, k, n, group_k)
    mm = LutMatmul(codes if k_axis == 0 else codes.T, alpha, beta, bits=bits, group_k=group_k,
                   k_axis=k_axis, num_threads=2)
    ref = reference(x, codes, alpha, beta, group_k)
    for m in (1, 3, 32):
        y = mm(x[:m])
        assert y.shape == (m, n) and y.dtype == np.float32
        assert nmse(y, ref[:m]) <= INT8_NMSE
    assert mm(x[0]).shape == (n,)
    one = LutMatmul(codes if k_axis == 0 else codes.T, alpha, beta, bits=bits,
                    group_k=group_k, k_axis=k_axis, num_threads=1)
    np.testing.assert_array_equal(one(x[:3]), mm(x[:3]))


def test_matmul_exact_and_levels():
    rng = np.random.default_rng(7)
    x, codes, alpha, beta = problem(rng, 4, 5, 300, 200, 100)
    ref = reference(x, codes, alpha, beta, 100)
    y = LutMatmul(codes, alpha, beta, bits=4, group_k=100, exact=True)(x)
    assert nmse(y, ref) <= EXACT_NMSE
    for level in LEVELS:
        if level != "host":
            y = LutMatmul(codes, alpha, None if level == "sse" else beta, bits=4, group_k=100,
                          level=level)(x)
            want = ref if level != "sse" else reference(x, codes, alpha, 0 * beta, 100)
            assert nmse(y, want) <= INT8_NMSE
    with pytest.raises(BittileError):
        LutMatmul(codes, alpha[:1], beta, bits=4, group_k=100)


def test_matmul_repeated_and_concurrent_calls():
    """Worker threads are reused, fall asleep between calls, may outnumber the cores, and serve
    several matrices called from several Python threads at once."""
    rng = np.random.default_rng(8)
    x, codes, alpha, beta = problem(rng, 2, 4, 256, 300, 64)
    want = LutMatmul(codes, alpha, beta, bits=2, group_k=64, num_threads=1)(x)
    mms = [LutMatmul(codes, alpha, beta, bits=2, group_k=64, block_n=32, num_threads=t)
           for t in (2, 3)]
    for mm in mms:
        for _ in range(30):
            np.testing.assert_array_equal(mm(x), want)
        time.sleep(0.01)
        np.testing.assert_array_equal(mm(x), want)
    ok = []

    def hammer(mm):
        ok.extend(np.array_equal(mm(x), want) for _ in range(30))

    threads = [threading.Thread(target=hammer, args=(mm,)) for mm in mms * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(ok) == 120 and all(ok)
