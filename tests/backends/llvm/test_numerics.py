"""The LLVM backend's value conversions (``backends/llvm/numerics.py``) against ``ir/dtypes.py``.

Every conversion runs inside small JIT-compiled loops over numpy buffers: once written on
scalars (the loop vectorizer widens it; the remainder runs scalar) and once written on
``<8 x ...>`` vectors directly, at the SSE level (x86-64-v2, no F16C, no AVX) and at the host's
own level. Codes of at most 16 bits are tested exhaustively; f32 and double inputs over the
ties, near-ties and range edges of every target plus millions of random bit patterns.
"""

from __future__ import annotations

import ctypes
import functools
import re

import numpy as np
import pytest
from llvmlite import ir

import bittile
from bittile.backends.llvm import numerics as nx
from bittile.backends.llvm.jit import JitModule, resolve_level
from bittile.errors import BittileError, InternalError
from bittile.ir.dtypes import float_type, int_type

LEVELS = ["sse", "host"]
WIDTHS = [1, 8]  # 1: scalar code that the loop vectorizer widens; 8: explicit <8 x ...>
# odd layouts: no subnormals (m = 0), a one-bit exponent (bias 0), a wide exponent
ODD = [float_type(1, 0), float_type(1, 6), float_type(7, 0), float_type(5, 1),
       float_type(2, 2), float_type(3, 0)]
FLOATS = [bittile.f32, bittile.f16, bittile.bf16, bittile.f8e4m3, bittile.f8e5m2,
          bittile.f6e3m2, bittile.f6e2m3, bittile.f4e2m1, *ODD]
# the named integer types, and two where f32 stops being exact
INTS = [d for d in bittile.ALL_DTYPES if d.is_int] + [int_type(24, False), int_type(25, True)]
# Explicit-vector kernels cover these types only (compile time): each code path once or more.
VECTOR_TYPES = {bittile.f32, bittile.f16, bittile.bf16, bittile.f8e4m3, bittile.f8e5m2,
                bittile.f4e2m1, float_type(1, 0), float_type(7, 0), bittile.u1, bittile.i1,
                bittile.u4, bittile.i4, bittile.u8, bittile.i8, bittile.u16, bittile.i16,
                bittile.u32, bittile.i32}
# int_to_float from sources of at most 8 bits (sitofp then encode, as from 16 bits) targets
SMALL_INT_TARGETS = [bittile.f32, bittile.f16, bittile.bf16, bittile.f8e4m3, bittile.f4e2m1,
                     float_type(1, 0)]
RNG_SEED = 20240611
N_RANDOM_F32 = 2_000_000
N_RANDOM_F64 = 100_000

I32 = ir.IntType(32)
I64 = ir.IntType(64)
STORAGE = {"u32": I32, "f32": ir.FloatType(), "f64": ir.DoubleType()}


# ---- JIT kernels ---------------------------------------------------------------------------------
def _widen(b: ir.IRBuilder, value):
    """An op's result (an integer of at most 32 bits, or a float) as i32 lanes to store."""
    ty = value.type
    elem = ty.element if isinstance(ty, ir.VectorType) else ty
    wide = ir.VectorType(I32, ty.count) if isinstance(ty, ir.VectorType) else I32
    if isinstance(elem, ir.FloatType):
        return b.bitcast(value, wide)
    return value if elem.width == 32 else b.zext(value, wide)


def build_kernel(module, name, in_kind, in_bits, ops, width):
    """``void name(ptr in, ptr out_0, ..., ptr out_k, i64 n)``: for each element (``width`` at a
    time) ``x = in[i]`` (an integer input truncated to ``in_bits``), ``out_k[i] = ops[k](b,
    x)`` widened to 32 bits. ``n`` must be a multiple of ``width``; no pointers alias."""
    args = [ir.PointerType()] * (1 + len(ops)) + [I64]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args), name)
    for arg in fn.args[:-1]:
        arg.add_attribute("noalias")
    src, outs, n = fn.args[0], fn.args[1:-1], fn.args[-1]
    entry, loop, done = (fn.append_basic_block(x) for x in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", n, ir.Constant(I64, 0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(ir.Constant(I64, 0), entry)

    def vec(t):
        return t if width == 1 else ir.VectorType(t, width)

    store_ty = STORAGE[in_kind]
    align = 8 if in_kind == "f64" else 4
    x = b.load(b.gep(src, [i], source_etype=store_ty), typ=vec(store_ty), align=align)
    if in_kind == "u32" and in_bits < 32:
        x = b.trunc(x, vec(ir.IntType(in_bits)))
    for out, op in zip(outs, ops):
        b.store(_widen(b, op(b, x)), b.gep(out, [i], source_etype=I32), align=4)
    nxt = b.add(i, ir.Constant(I64, width))
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_signed("<", nxt, n), loop, done)
    b.position_at_end(done)
    b.ret_void()


def run(jit: JitModule, name: str, x: np.ndarray, n_out: int, width: int) -> np.ndarray:
    """Outputs ``[n_out, len(x)]`` (uint32) of kernel ``name`` on ``x``."""
    n = len(x)
    padded = np.concatenate([x, np.zeros(-n % width, x.dtype)]) if n % width else x
    padded = np.ascontiguousarray(padded)
    out = np.empty((n_out, len(padded)), np.uint32)
    args = [ctypes.c_void_p] * (1 + n_out) + [ctypes.c_int64]
    fn = jit.function(name, None, *args)
    fn(padded.ctypes.data, *(row.ctypes.data for row in out), len(padded))
    return out[:, :n]


def _code_ops(src):
    """From a code of float ``src``: its decoded f32 and every float_to_float. (Every value of
    these types is also among the f32 inputs, which go through every float -> int.)"""
    ops = [lambda b, x: nx.decode(b, x, src)]
    ops += [lambda b, x, d=d: nx.float_to_float(b, x, src, d) for d in FLOATS]
    return ops


def _float_ops(dst):
    """From a float or double: the encodes into ``dst`` (saturating, not; round_arith is the
    latter, checked for the arithmetic types)."""
    if dst.is_int:
        return [lambda b, x: nx.float_to_int(b, x, dst)]
    ops = [lambda b, x: nx.encode(b, x, dst, saturate=True),
           lambda b, x: nx.encode(b, x, dst, saturate=False)]
    if dst.supports_arithmetic:
        ops.append(lambda b, x: nx.round_arith(b, x, dst))
    return ops


def _canonical_ops(kind):
    """canonicalize_nan on floats, or on doubles as two 32-bit words."""
    if kind == "f32":
        return [lambda b, x: nx.canonicalize_nan(b, x)]

    def word(shift):
        def op(b, x):
            ty = x.type
            ity = ir.VectorType(I64, ty.count) if isinstance(ty, ir.VectorType) else I64
            bits = b.bitcast(nx.canonicalize_nan(b, x), ity)
            return b.trunc(b.lshr(bits, ir.Constant(ity, shift)),
                           ir.VectorType(I32, ty.count) if isinstance(ty, ir.VectorType)
                           else I32)
        return op
    return [word(0), word(32)]


def _int_targets(src):
    return INTS + (FLOATS if src.bits >= 16 else SMALL_INT_TARGETS)


def _int_ops(src):
    ops = [lambda b, x, d=d: nx.int_to_int(b, x, src, d) for d in INTS]
    ops += [lambda b, x, d=d: nx.int_to_float(b, x, src, d)
            for d in _int_targets(src)[len(INTS):]]
    return ops


def _with_width(types, width):
    return [t for t in types if width == 1 or t in VECTOR_TYPES]


def _kernels(group: str, module: ir.Module, width: int) -> None:
    if group == "code":
        for src in _with_width(FLOATS, width):
            build_kernel(module, f"code_{src.name}_w{width}", "u32", src.bits, _code_ops(src),
                         width)
    elif group == "float":
        for kind in ("f32", "f64"):
            for dst in _with_width(FLOATS + INTS, width):
                build_kernel(module, f"{kind}_to_{dst.name}_w{width}", kind, 0, _float_ops(dst),
                             width)
            build_kernel(module, f"{kind}_canonical_w{width}", kind, 0, _canonical_ops(kind),
                         width)
    else:
        for src in _with_width(INTS, width):
            build_kernel(module, f"int_{src.name}_w{width}", "u32", src.bits, _int_ops(src),
                         width)


def _level(name: str):
    try:
        return resolve_level(name)
    except BittileError as e:  # e.g. not an x86 host
        pytest.skip(str(e))


@functools.cache
def jit(level: str, group: str) -> JitModule:
    """The kernels of ``group`` ("code", "float" or "int") at both widths, compiled for
    ``level``."""
    module = ir.Module(name=f"numerics_{group}")
    for width in WIDTHS:
        _kernels(group, module, width)
    return JitModule(str(module), _level(level))


# ---- inputs and references -----------------------------------------------------------------------
def quiet(fn):
    """NaN payloads and out-of-range values are cast on purpose: no numpy warnings."""

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        with np.errstate(invalid="ignore", over="ignore"):
            return fn(*args, **kwargs)

    return inner


def _f32(bits) -> np.ndarray:
    return np.asarray(bits, np.uint32).view(np.float32)


def _all_codes(dt) -> np.ndarray:
    return np.arange(1 << dt.bits, dtype=np.uint32)


def _finite_magnitudes(dt) -> np.ndarray:
    """Every finite non-negative value of ``dt`` (<= 16 bits), ascending, as float64."""
    vals = dt.decode(np.arange(1 << (dt.bits - 1), dtype=np.uint64))
    return vals[np.isfinite(vals)]


def _edges(dt) -> np.ndarray:
    """The values of ``dt``, the midpoints between neighbours (ties) and the first value past
    the largest finite one, with both signs (float64; all exact in f32)."""
    vals = _finite_magnitudes(dt)
    step = vals[-1] - vals[-2]
    ext = np.append(vals, vals[-1] + step)
    mids = (ext[:-1] + ext[1:]) / 2
    pts = np.concatenate([vals, mids, ext[-1:]])
    return np.concatenate([pts, -pts])


@quiet
def _neighbours_f32(x64: np.ndarray) -> np.ndarray:
    x = x64.astype(np.float32)  # exact: every value and tie of these types is an f32
    return np.concatenate([x, np.nextafter(x, np.float32(np.inf)),
                           np.nextafter(x, np.float32(-np.inf))])


def _neighbours_f64(x64: np.ndarray) -> np.ndarray:
    return np.concatenate([x64, np.nextafter(x64, np.inf), np.nextafter(x64, -np.inf)])


def _int_edges() -> np.ndarray:
    """Integers and half-integers around 0 and around every integer type's bounds (float64)."""
    centres = {0.0}
    for d in INTS:
        centres |= {float(d.min), float(d.max), float(d.max) + 1}
    base = np.array(sorted(centres))[:, None] + np.arange(-4, 4.5, 0.5)[None, :]
    base = np.concatenate([base.ravel(), np.arange(-300, 300, 0.25)])
    return np.concatenate([base, -base])


def _specials_f32() -> np.ndarray:
    bits = [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7F800001, 0x7FC00000, 0x7FFFFFFF,
            0xFFFFFFFF, 0xFF800001, 0xFFC00000, 0x7F7FFFFF, 0xFF7FFFFF, 0x00800000, 0x00000001,
            0x807FFFFF, 0x3F800000, 0xBF800000]
    return _f32(bits)


def _targeted_random(rng, dt, n: int) -> np.ndarray:
    """Random f32 values with exponents in and a little beyond ``dt``'s range."""
    emin, emax = 1 - dt.bias - dt.mantissa - 3, (1 << dt.exponent) - 1 - dt.bias + 3
    exps = rng.integers(max(emin + 127, 0), min(emax + 127, 255), n, endpoint=True)
    bits = (exps.astype(np.uint32) << 23) | rng.integers(0, 1 << 23, n).astype(np.uint32)
    bits |= rng.integers(0, 2, n).astype(np.uint32) << 31
    return _f32(bits)


WIDE = (bittile.f32, bittile.f16, bittile.bf16)


@functools.cache
def _uniform_f32() -> np.ndarray:
    """Random f32 bit patterns: every exponent, NaNs, infinities, subnormals."""
    rng = np.random.default_rng(RNG_SEED)
    return _f32(rng.integers(0, 1 << 32, N_RANDOM_F32, dtype=np.uint64))


@functools.cache
@quiet
def _near(dt, n: int, kind: str) -> np.ndarray:
    """Random values with exponents in and a little beyond ``dt``'s range (doubles: with
    random bits below f32's precision too)."""
    rng = np.random.default_rng([RNG_SEED, dt.bits, dt.exponent, n, kind == "f64"])
    x = _targeted_random(rng, dt, n)
    if kind == "f32":
        return x
    return x.astype(np.float64) * (1 + rng.random(n) * 2.0**-23)


@functools.cache
def f32_inputs(dst) -> np.ndarray:
    """f32 inputs for target ``dst``: specials; ``dst``'s values, ties and the first overflowing
    value, each +-1 ulp (f16's and bf16's for f32 and integer targets too, and a sample of them
    for the others); integer edges; random bit patterns (all of them for the wide targets, a
    sample for the rest) and random values near every type's range."""
    parts = [_specials_f32(), _neighbours_f32(_int_edges())]
    wide = dst in WIDE or dst.is_int
    parts.append(_uniform_f32() if dst in WIDE else _uniform_f32()[:300_000])
    for t in FLOATS:
        parts.append(_near(t, 200_000 if t == dst else 5_000, "f32"))
        if t.bits <= 16:
            edges = _neighbours_f32(_edges(t))
            parts.append(edges if t == dst or (wide and t in WIDE) else edges[::5])
    return np.concatenate(parts)


@functools.cache
@quiet
def f64_inputs(dst) -> np.ndarray:
    """Double inputs for target ``dst``: a sample of its f32 inputs; its ties +-1 double ulp
    (a double between two f32 values, where rounding through f32 first would go wrong); for
    f32, its own ties; values beyond f32's range; random doubles near every type's range and
    random bit patterns."""
    rng = np.random.default_rng(RNG_SEED + 1)
    parts = [f32_inputs(dst)[::5].astype(np.float64)]
    for t in FLOATS:
        parts.append(_near(t, 30_000 if t == dst else 3_000, "f64"))
        if t.bits <= 16 and (t == dst or (dst in WIDE and t in WIDE)):
            parts.append(_neighbours_f64(_edges(t)))
    if dst == bittile.f32 or dst.is_int:
        x = _uniform_f32()[:100_000]
        x = x[np.isfinite(x)]
        f32_mids = (x.astype(np.float64) + np.nextafter(x, np.float32(np.inf))) / 2
        parts.append(_neighbours_f64(f32_mids))
        parts.append(_neighbours_f64(_int_edges()))
    top = float(np.finfo(np.float32).max)
    parts.append(_neighbours_f64(np.array([top, top + 2.0**103, top + 2.0**104, 1e39, 1e300,
                                           np.inf, 2.0**-149, 2.0**-150, 2.0**-151, 1e-300,
                                           5e-324, 0.0, np.nan])))
    parts.append(rng.integers(0, 1 << 64, N_RANDOM_F64, dtype=np.uint64).view(np.float64))
    return np.concatenate(parts)


@functools.cache
def _int_centres() -> np.ndarray:
    """Integers worth testing around: 0, 2^24, every integer type's bounds, every float
    type's largest finite value and its integer-valued values and ties."""
    centres = [np.array([0, 1 << 24, -(1 << 24), 1 << 31, (1 << 32) - 1])]
    for d in INTS + FLOATS[1:]:
        centres.append(np.array([int(d.max), int(d.min)]))
        if d.is_float:
            e = _edges(d)
            centres.append(e[(e == np.round(e)) & (np.abs(e) < 2.0**33)].astype(np.int64))
    return np.unique(np.concatenate(centres))


def int_inputs(dt) -> np.ndarray:
    """Codes of integer ``dt``: all of them up to 16 bits, else values near the centres above
    and random values of every bit length."""
    if dt.bits <= 16:
        return _all_codes(dt)
    rng = np.random.default_rng(RNG_SEED + 2)
    around = _int_centres()[:, None] + np.arange(-2, 3)[None, :]
    lengths = rng.integers(0, 33, 200_000)
    rand = rng.integers(0, 1 << 32, 200_000, dtype=np.int64) & ((1 << lengths) - 1)
    values = np.concatenate([around.ravel(), rand, -rand])
    values = values[(values >= dt.min) & (values <= dt.max)]
    return (values & ((1 << dt.bits) - 1)).astype(np.uint32)


def assert_codes(got: np.ndarray, want: np.ndarray, inputs, what: str) -> None:
    want = np.asarray(want).astype(np.uint32)
    bad = np.flatnonzero(got != want)
    if bad.size:
        i = bad[:8]
        pytest.fail(f"{what}: {bad.size} of {got.size} differ; inputs {list(inputs[i])}, "
                    f"got {[hex(v) for v in got[i]]}, want {[hex(v) for v in want[i]]}")


@quiet
def assert_f32_bits(got_bits: np.ndarray, want: np.ndarray, inputs, what: str) -> None:
    """f32 results equal bit for bit, or both NaN."""
    want_bits = want.astype(np.float32).view(np.uint32)
    nan_ok = np.isnan(want) & np.isnan(got_bits.view(np.float32))
    bad = np.flatnonzero((got_bits != want_bits) & ~nan_ok)
    if bad.size:
        i = bad[:8]
        pytest.fail(f"{what}: {bad.size} of {got_bits.size} differ; inputs {list(inputs[i])}, "
                    f"got {[hex(v) for v in got_bits[i]]}, "
                    f"want {[hex(v) for v in want_bits[i]]}")


# ---- tests ---------------------------------------------------------------------------------------
params = pytest.mark.parametrize
LEVEL_WIDTH = [pytest.param(level, width, id=f"{level}-w{width}")
               for level in LEVELS for width in WIDTHS]


def cases(types):
    """(level, width, dtype) for every dtype that has a kernel of that width."""
    return [pytest.param(level, width, t, id=f"{level}-w{width}-{t}")
            for level in LEVELS for width in WIDTHS for t in _with_width(types, width)]


@functools.cache
@quiet
def _code_reference(src):
    if src.bits <= 16:
        codes = _all_codes(src)
    else:
        edges = [_neighbours_f32(_edges(t))[::3] for t in (bittile.f16, bittile.bf16)]
        x = np.concatenate([_specials_f32(), _uniform_f32()[:300_000], *edges])
        codes = x.view(np.uint32)
    values = src.decode(codes)
    wants = [dst.encode(values, saturate=True) for dst in FLOATS]
    return codes, values, wants


@params("level,width,src", cases(FLOATS))
def test_decode_and_convert_codes(level, width, src):
    """Every code of every float type of at most 16 bits (f32: a sample of f32 inputs) decoded,
    and converted to every float type."""
    codes, values, wants = _code_reference(src)
    out = run(jit(level, "code"), f"code_{src.name}_w{width}", codes, 1 + len(FLOATS), width)
    assert_f32_bits(out[0], values, codes, f"decode {src}")
    for got, dst, want in zip(out[1:], FLOATS, wants):
        assert_codes(got, want, codes, f"{src} -> {dst}")


@functools.cache
@quiet
def _encode_reference(kind, dst):
    x = f32_inputs(dst) if kind == "f32" else f64_inputs(dst)
    x64 = x.astype(np.float64)
    if dst.is_int:
        return x, [dst.encode(x64)]
    saturated = dst.encode(x64, saturate=True)
    # Only a saturated +-max can come out differently without saturation (ir/dtypes.py clamps
    # to another bound, nothing else changes): ask the reference about those inputs only.
    unsaturated = saturated.copy()
    at_max = np.flatnonzero((saturated & ((1 << (dst.bits - 1)) - 1)) == dst.max_code)
    unsaturated[at_max] = dst.encode(x64[at_max], saturate=False)
    return x, [saturated, unsaturated]


@params("kind", ["f32", "f64"])
@params("level,width,dst", cases(FLOATS + INTS))
def test_encode(level, width, kind, dst):
    """encode (both modes), round_arith and float_to_int from float and from double."""
    x, wants = _encode_reference(kind, dst)
    if dst.is_int:
        out = run(jit(level, "float"), f"{kind}_to_{dst.name}_w{width}", x, 1, width)
        assert_codes(out[0], wants[0], x, f"{kind} -> {dst}")
        return
    n_out = 3 if dst.supports_arithmetic else 2
    out = run(jit(level, "float"), f"{kind}_to_{dst.name}_w{width}", x, n_out, width)
    assert_codes(out[0], wants[0], x, f"{kind} -> {dst} saturating")
    assert_codes(out[1], wants[1], x, f"{kind} -> {dst} not saturating")
    if dst.supports_arithmetic:
        assert_codes(out[2], wants[1], x, f"{kind} -> {dst} round_arith")


@params("level,width", LEVEL_WIDTH)
@params("kind", ["f32", "f64"])
def test_canonicalize_nan(level, width, kind):
    """Every NaN (any sign, any payload) becomes the canonical one; everything else keeps its
    bits."""
    x = f32_inputs(bittile.f16) if kind == "f32" else f64_inputs(bittile.f32)
    n_out = 1 if kind == "f32" else 2
    out = run(jit(level, "float"), f"{kind}_canonical_w{width}", x, n_out, width)
    if kind == "f32":
        want = np.where(np.isnan(x), np.uint32(0x7FFFFFFF), x.view(np.uint32))
        assert_codes(out[0], want, x, "canonicalize_nan f32")
    else:
        want = np.where(np.isnan(x), np.uint64(0x7FFFFFFFFFFFFFFF), x.view(np.uint64))
        got = out[0].astype(np.uint64) | (out[1].astype(np.uint64) << np.uint64(32))
        assert np.array_equal(got, want)


@functools.cache
def _int_reference(src):
    codes = int_inputs(src)
    values = src.decode(codes)
    wants = [dst.encode(values if dst.is_int else values.astype(np.float64), saturate=True)
             for dst in _int_targets(src)]
    return codes, wants


@params("level,width,src", cases(INTS))
def test_int_conversions(level, width, src):
    """int_to_int from every integer type to every integer type, int_to_float to every float
    type (from sources of up to 8 bits: to a selection)."""
    codes, wants = _int_reference(src)
    targets = _int_targets(src)
    out = run(jit(level, "int"), f"int_{src.name}_w{width}", codes, len(targets), width)
    for got, dst, want in zip(out, targets, wants):
        assert_codes(got, want, codes, f"{src} -> {dst}")


# ---- the generated code --------------------------------------------------------------------------
def _function_ir(text: str, name: str) -> str:
    match = re.search(rf"define [^\n]*@\"?{name}\"?\(.*?\n}}\n", text, re.S)
    assert match, name
    return match.group(0)


@params("level", LEVELS)
def test_loops_vectorize(level):
    """The scalar-written loops of the hot conversions come out vectorized (the loop vectorizer
    accepted every instruction): at least 4 lanes (2 from doubles) at every level."""
    for group, name in [("float", "f32_to_f16_w1"), ("float", "f32_to_bf16_w1"),
                        ("code", "code_f16_w1"), ("code", "code_bf16_w1"),
                        ("int", "int_u4_w1"), ("int", "int_i4_w1"), ("int", "int_u8_w1"),
                        ("float", "f64_to_f16_w1"), ("float", "f32_to_i32_w1")]:
        body = _function_ir(jit(level, group).optimized_ir, name)
        lanes = [int(n) for n in re.findall(r"<(\d+) x (?:i32|float|double)>", body)]
        assert "vector.body" in body and lanes, name
        assert max(lanes) >= (2 if name.startswith("f64") else 4), name


@functools.cache
def _small_module(level: str) -> JitModule:
    """Every public function on a few types, scalar and vector, to read the assembly of."""
    module = ir.Module(name="numerics_small")
    u4, i32 = bittile.u4, bittile.i32
    f16, f32, bf16, e4m3 = bittile.f16, bittile.f32, bittile.bf16, bittile.f8e4m3
    code_ops = [lambda b, x: nx.decode(b, x, f16),
                lambda b, x: nx.float_to_float(b, x, f16, bf16),
                lambda b, x: nx.float_to_float(b, x, f16, e4m3),
                lambda b, x: nx.float_to_float(b, x, f16, f16),
                lambda b, x: nx.float_to_int(b, nx.decode(b, x, f16), u4)]
    float_ops = [lambda b, x: nx.encode(b, x, f16, saturate=True),
                 lambda b, x: nx.round_arith(b, x, bf16),
                 lambda b, x: nx.encode(b, x, f32, saturate=True),
                 lambda b, x: nx.float_to_int(b, x, i32),
                 lambda b, x: nx.float_to_int(b, x, bittile.u32),
                 lambda b, x: nx.float_to_int(b, x, u4)]
    int_ops = [lambda b, x: nx.int_to_float(b, x, i32, f16),
               lambda b, x: nx.int_to_float(b, x, i32, f32),
               lambda b, x: nx.int_to_float(b, x, i32, e4m3),
               lambda b, x: nx.int_to_int(b, x, i32, bittile.u8)]
    uint_ops = [lambda b, x: nx.int_to_float(b, x, bittile.u32, bf16),
                lambda b, x: nx.int_to_float(b, x, bittile.u32, f32)]
    for width in WIDTHS:
        build_kernel(module, f"code_w{width}", "u32", 16, code_ops, width)
        build_kernel(module, f"f32_w{width}", "f32", 0, float_ops, width)
        build_kernel(module, f"f64_w{width}", "f64", 0, float_ops, width)
        build_kernel(module, f"int_w{width}", "u32", 32, int_ops + uint_ops, width)
    return JitModule(str(module), _level(level))


@params("level", LEVELS)
def test_no_calls(level):
    """No library calls (``__truncsfhf2``, ``__extendhfsf2``, ``roundevenf``...) and no
    half/bfloat: every intrinsic the conversions use lowers to plain instructions."""
    module = _small_module(level)
    assert not re.search(r"\b(half|bfloat)\b", module.optimized_ir)
    calls = re.findall(r"^\s*(?:call|jmp)\w*\s+([^\s.]\S*)", module.assembly(), re.M)
    assert not calls, sorted(set(calls))[:10]


def test_sse_code_has_no_avx():
    """The SSE level really is SSE: no ymm/zmm registers, no VEX-encoded instructions."""
    asm = _small_module("sse").assembly()
    assert "%xmm" in asm
    assert "%ymm" not in asm and "%zmm" not in asm
    assert not re.search(r"^\s*v(cvt|add|sub|pblend|blend|pmin)", asm, re.M)


def test_vector_constants_and_types():
    """The functions accept vectors and keep their lane count; codes are iN."""
    module = ir.Module()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), []), "f")
    b = ir.IRBuilder(fn.append_basic_block())
    v = ir.Constant(ir.VectorType(ir.IntType(4), 16), 3)
    f = nx.decode(b, v, bittile.f4e2m1)
    assert str(f.type) == "<16 x float>"
    assert str(nx.encode(b, f, bittile.f6e2m3, saturate=True).type) == "<16 x i6>"
    assert str(nx.int_to_int(b, v, bittile.u4, bittile.i2).type) == "<16 x i2>"
    assert str(nx.int_to_float(b, v, bittile.i4, bittile.bf16).type) == "<16 x i16>"
    assert nx.code_type(bittile.f8e5m2) == ir.IntType(8)
    with pytest.raises(InternalError):
        nx.decode(b, v, bittile.f8e4m3)  # an i4 is not an f8 code
