"""Interpreter elementwise ops: unary, binary, compare and where, on every integer type
(exhaustive operand pairs up to 8 bits) and on f16 / bf16 / f32.

Integer references use Python integers (object arrays) and the C rules spelled out in the
interpreter's specification: wraparound modulo 2^bits, division truncating toward zero (computed
here by float division and truncation), remainder by ``math.fmod``, x / 0 == 0 and x % 0 == x,
shifts outside [0, bits) give 0 or the sign fill. Float references are numpy float16 / float32
arithmetic, ml_dtypes (and torch) bfloat16 arithmetic, and numpy's float32 transcendental
functions within one ulp.
"""

from __future__ import annotations

import functools
import itertools
import math

import ml_dtypes
import numpy as np
import pytest
import torch

import bittile
from bittile import IRError, PackedTensor
from bittile.backends import interp
from bittile.ir.builder import KernelBuilder

INT_TYPES = [d for d in bittile.ALL_DTYPES if d.is_int]
INT_IDS = [d.name for d in INT_TYPES]
INT_BINARY = ["add", "sub", "mul", "div", "rem", "min", "max", "and", "or", "xor", "shl", "shr"]
INT_UNARY = ["neg", "abs", "not"]
COMPARES = ["eq", "ne", "lt", "le", "gt", "ge"]


# ---- packing by hand -----------------------------------------------------------------------------
def pack(codes, dt) -> PackedTensor:
    codes = np.asarray(codes).astype(np.uint64).reshape(-1)
    bits = np.unpackbits(codes.astype("<u8").view(np.uint8).reshape(-1, 8), axis=1,
                         bitorder="little")[:, : dt.bits]
    return PackedTensor(np.packbits(bits.reshape(-1), bitorder="little"), (codes.size,), dt)


def unpack(p: PackedTensor) -> np.ndarray:
    n, bits = p.shape[0], p.dtype.bits
    stream = np.unpackbits(np.asarray(p.data), bitorder="little")[: n * bits].reshape(n, bits)
    return (stream.astype(np.uint64) << np.arange(bits, dtype=np.uint64)).sum(
        axis=1, dtype=np.uint64)


def empty(n, dt) -> PackedTensor:
    return PackedTensor(np.zeros((n * dt.bits + 7) // 8, np.uint8), (n,), dt)


def irange(dt):
    if dt.kind == "uint":
        return 0, (1 << dt.bits) - 1
    return -(1 << (dt.bits - 1)), (1 << (dt.bits - 1)) - 1


def to_codes(values, dt) -> np.ndarray:
    return np.array([int(v) & ((1 << dt.bits) - 1) for v in values], np.uint64)


def from_codes(codes, dt) -> list[int]:
    lo, _ = irange(dt)
    out = [int(c) for c in codes]
    if lo < 0:
        out = [c - (1 << dt.bits) if c >= 1 << (dt.bits - 1) else c for c in out]
    return out


# ---- kernels -------------------------------------------------------------------------------------
@functools.cache
def binary_kernel(kind, dt, n, compare=False):
    kb = KernelBuilder(f"{kind}_{dt}")
    a = kb.tensor("a", dt, ["N"])
    c = kb.tensor("b", dt, ["N"])
    y = kb.tensor("y", bittile.u1 if compare else dt, ["N"])
    b = kb.builder
    x, z = b.load(a, [0], [n]), b.load(c, [0], [n])
    b.store(y, [0], b.compare(kind, x, z) if compare else b.binary(kind, x, z))
    return kb.finish()


@functools.cache
def unary_kernel(kind, dt, n):
    kb = KernelBuilder(f"{kind}_{dt}")
    a = kb.tensor("a", dt, ["N"])
    y = kb.tensor("y", dt, ["N"])
    b = kb.builder
    b.store(y, [0], b.unary(kind, b.load(a, [0], [n])))
    return kb.finish()


# ---- integer operands ----------------------------------------------------------------------------
@functools.cache
def int_pairs(dt) -> tuple[list[int], list[int]]:
    lo, hi = irange(dt)
    if dt.bits <= 8:
        vals = list(range(lo, hi + 1))
        pairs = list(itertools.product(vals, vals))
    else:
        rng = np.random.default_rng(dt.bits)
        edge = sorted({lo, lo + 1, lo + 2, hi, hi - 1, hi // 2, 0, 1, 2, 3, 7, 8, 15, 16, 17,
                       31, 32, 33, dt.bits - 1, dt.bits, dt.bits + 1}
                      | ({-1, -2, -3, -7, -8, -31, -32, -33} if lo < 0 else set()))
        edge = [v for v in edge if lo <= v <= hi]
        pairs = list(itertools.product(edge, edge))
        rand = rng.integers(lo, hi, size=(3000, 2), endpoint=True).tolist()
        small = rng.integers(max(lo, -3), dt.bits + 3, size=1000).tolist()
        pairs += [tuple(p) for p in rand]
        # shift amounts near the range
        pairs += [(r[0], s) for r, s in zip(rand[:1000], small, strict=True)]
        pairs += [(r[0], r[1] % 97 - 48 if lo < 0 else r[1] % 49)  # small divisors
                  for r in rand[:1000]]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def wrap(v: int, dt) -> int:
    lo, _ = irange(dt)
    return (v - lo) % (1 << dt.bits) + lo


def ref_int_binary(kind, a: int, b: int, dt) -> int:
    signed = dt.kind == "int"
    if kind == "add":
        return wrap(a + b, dt)
    if kind == "sub":
        return wrap(a - b, dt)
    if kind == "mul":
        return wrap(a * b, dt)
    if kind == "div":
        return 0 if b == 0 else wrap(int(a / b), dt)  # float division truncated: C semantics
    if kind == "rem":
        return a if b == 0 else wrap(int(math.fmod(a, b)), dt)
    if kind == "min":
        return min(a, b)
    if kind == "max":
        return max(a, b)
    if kind == "and":
        return wrap(a & b, dt)
    if kind == "or":
        return wrap(a | b, dt)
    if kind == "xor":
        return wrap(a ^ b, dt)
    in_range = 0 <= b < dt.bits
    if kind == "shl":
        return wrap(a << b, dt) if in_range else 0
    if kind == "shr":
        if in_range:
            return wrap(a >> b, dt)  # Python's >> is arithmetic; a >= 0 when unsigned
        return -1 if (signed and a < 0) else 0
    raise AssertionError(kind)


def run_int_binary(kind, dt, a, b, compare=False):
    n = len(a)
    y = empty(n, bittile.u1 if compare else dt)
    interp.run(binary_kernel(kind, dt, n, compare), pack(to_codes(a, dt), dt),
               pack(to_codes(b, dt), dt), y)
    return from_codes(unpack(y), y.dtype)


def check_lists(kind, dt, a, b, got, expected):
    bad = [(x, y, g, e) for x, y, g, e in zip(a, b, got, expected, strict=False) if g != e]
    assert not bad, f"{kind} on {dt}: {len(bad)} wrong, e.g. (a, b, got, expected) {bad[:6]}"


@pytest.mark.parametrize("kind", INT_BINARY)
@pytest.mark.parametrize("dt", INT_TYPES, ids=INT_IDS)
def test_int_binary(dt, kind):
    a, b = int_pairs(dt)
    got = run_int_binary(kind, dt, a, b)
    expected = [ref_int_binary(kind, x, y, dt) for x, y in zip(a, b, strict=False)]
    check_lists(kind, dt, a, b, got, expected)


@pytest.mark.parametrize("dt", INT_TYPES, ids=INT_IDS)
def test_int_div_rem_identity(dt):
    """a == (a / b) * b + a % b (wrapping), including b == 0."""
    a, b = int_pairs(dt)
    q = run_int_binary("div", dt, a, b)
    r = run_int_binary("rem", dt, a, b)
    bad = [(x, y) for x, y, qq, rr in zip(a, b, q, r, strict=False) if wrap(qq * y + rr, dt) != x]
    assert not bad, bad[:6]


@pytest.mark.parametrize("kind", COMPARES)
@pytest.mark.parametrize("dt", INT_TYPES, ids=INT_IDS)
def test_int_compare(dt, kind):
    a, b = int_pairs(dt)
    got = run_int_binary(kind, dt, a, b, compare=True)
    fn = {"eq": lambda x, y: x == y, "ne": lambda x, y: x != y, "lt": lambda x, y: x < y,
          "le": lambda x, y: x <= y, "gt": lambda x, y: x > y, "ge": lambda x, y: x >= y}[kind]
    check_lists(kind, dt, a, b, got, [int(fn(x, y)) for x, y in zip(a, b, strict=False)])


@pytest.mark.parametrize("kind", INT_UNARY)
@pytest.mark.parametrize("dt", INT_TYPES, ids=INT_IDS)
def test_int_unary(dt, kind):
    lo, hi = irange(dt)
    if dt.bits <= 16:
        a = list(range(lo, hi + 1))
    else:
        a = sorted({lo, lo + 1, hi, hi - 1, 0, 1, 2} | set(
            np.random.default_rng(1).integers(lo, hi, 2000, endpoint=True).tolist()))
        a = [v for v in a if lo <= v <= hi]
    y = empty(len(a), dt)
    interp.run(unary_kernel(kind, dt, len(a)), pack(to_codes(a, dt), dt), y)
    got = from_codes(unpack(y), dt)
    fn = {"neg": lambda v: -v, "abs": abs, "not": lambda v: ~v}[kind]
    check_lists(kind, dt, a, a, got, [wrap(fn(v), dt) for v in a])


@pytest.mark.parametrize(
    "dt, kind, a, b, expected",
    [
        ("u1", "add", 1, 1, 0), ("i1", "add", -1, -1, 0), ("i1", "neg", -1, None, -1),
        ("i1", "div", -1, -1, -1), ("i1", "mul", -1, -1, -1), ("u1", "shl", 1, 1, 0),
        ("i8", "div", -128, -1, -128), ("i8", "rem", -128, -1, 0), ("i8", "div", -7, 2, -3),
        ("i8", "rem", -7, 2, -1), ("i8", "rem", 7, -2, 1), ("i8", "div", 7, 0, 0),
        ("i8", "rem", -7, 0, -7), ("u8", "div", 200, 0, 0), ("u8", "rem", 200, 0, 200),
        ("i8", "shr", -128, 7, -1), ("i8", "shr", -128, 8, -1), ("i8", "shr", 64, 8, 0),
        ("i8", "shr", -5, -1, -1), ("i8", "shl", 1, -1, 0), ("u8", "shr", 200, 8, 0),
        ("u8", "shr", 200, 7, 1), ("i8", "shl", 1, 7, -128), ("u32", "mul", 2**32 - 1,
                                                               2**32 - 1, 1),
        ("i32", "mul", -2**31, -1, -2**31), ("i32", "div", -2**31, -1, -2**31),
        ("u32", "shr", 2**31, 31, 1), ("i32", "shr", -2**31, 31, -1),
        ("i32", "shr", -2**31, 32, -1), ("u16", "sub", 0, 1, 65535), ("i8", "abs", -128, None,
                                                                       -128),
        ("u8", "neg", 1, None, 255), ("u8", "not", 0, None, 255), ("i4", "not", 7, None, -8),
    ],
)
def test_int_named_cases(dt, kind, a, b, expected):
    t = bittile.dtype_from_name(dt)
    if b is None:
        y = empty(1, t)
        interp.run(unary_kernel(kind, t, 1), pack(to_codes([a], t), t), y)
        got = from_codes(unpack(y), t)[0]
    else:
        got = run_int_binary(kind, t, [a], [b])[0]
    assert got == expected


# ---- floats --------------------------------------------------------------------------------------
NP_FLOAT = {"f16": np.float16, "f32": np.float32, "bf16": ml_dtypes.bfloat16}
WORD = {"f16": np.uint16, "f32": np.uint32, "bf16": np.uint16}
FLOAT_NAMES = ["f16", "bf16", "f32"]


@functools.cache
def float_pairs(name):
    t = NP_FLOAT[name]
    fi = ml_dtypes.finfo(t) if name == "bf16" else np.finfo(t)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, 3.0, -7.25, float(fi.max),
               -float(fi.max), float(fi.tiny), float(fi.smallest_subnormal),
               -float(fi.smallest_subnormal), float(fi.eps), 1.0 + float(fi.eps), 100.0]
    a, b = map(list, zip(*itertools.product(special, special), strict=False))
    rng = np.random.default_rng(len(name))
    n = 4000
    logu = rng.choice([-1.0, 1.0], (2, n)) * 2.0 ** rng.uniform(-20, 20, (2, n))
    a += logu[0].tolist()
    b += logu[1].tolist()
    # nearby magnitudes: cancellation in sub and halfway cases in add
    b += (logu[0] * rng.uniform(0.5, 2.0, n)).tolist()
    a += logu[0].tolist()
    bits = rng.integers(0, 1 << (8 * np.dtype(WORD[name]).itemsize), (2, n), dtype=np.uint64)
    with np.errstate(invalid="ignore"):
        ra = bits[0].astype(WORD[name]).view(t).astype(np.float64)
        rb = bits[1].astype(WORD[name]).view(t).astype(np.float64)
    a += ra.tolist()
    b += rb.tolist()
    with np.errstate(over="ignore"):
        return np.array(a, np.float32).astype(t), np.array(b, np.float32).astype(t)


def run_float_binary(kind, name, a, b, compare=False):
    dt = bittile.dtype_from_name(name)
    n = a.size
    if compare:
        y = empty(n, bittile.u1)
        interp.run(binary_kernel(kind, dt, n, True), a, b, y)
        return unpack(y).astype(np.int64)
    y = np.zeros(n, NP_FLOAT[name])
    interp.run(binary_kernel(kind, dt, n), a, b, y)
    return y


def ref_float_binary(kind, name, a, b):
    """numpy arithmetic in the type itself (float16 / float32); bf16 through float32 and one
    rounding, which is exact for + - * / (24 >= 2 * 8 + 2)."""
    t = NP_FLOAT[name]
    work = np.float32 if name == "bf16" else t
    x, y = a.astype(work), b.astype(work)
    fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
          "rem": np.fmod, "min": np.minimum, "max": np.maximum}[kind]
    with np.errstate(all="ignore"):
        return fn(x, y).astype(t)


def assert_bits_equal(got, expected, a, b, what, zero_sign=True):
    g = got.astype(np.float64)
    e = expected.astype(np.float64)
    nan_ok = np.isnan(g) & np.isnan(e)
    same = (g == e) & ((np.signbit(g) == np.signbit(e)) | (not zero_sign)) | nan_ok
    bad = np.nonzero(~same)[0]
    rows = [f"({a[i]!r}, {b[i]!r}) -> got {g[i]!r}, expected {e[i]!r}" for i in bad[:6]]
    assert bad.size == 0, f"{what}: {bad.size} wrong of {g.size}:\n  " + "\n  ".join(rows)


@pytest.mark.parametrize("kind", ["add", "sub", "mul", "div", "rem", "min", "max"])
@pytest.mark.parametrize("name", FLOAT_NAMES)
def test_float_binary_bit_exact(name, kind):
    a, b = float_pairs(name)
    got = run_float_binary(kind, name, a, b)
    expected = ref_float_binary(kind, name, a, b)
    # IEEE leaves the sign of min/max of +0 and -0 open; everything else is bit-exact.
    assert_bits_equal(got, expected, a, b, f"{kind} {name}", zero_sign=kind not in ("min", "max"))


@pytest.mark.parametrize("kind", ["add", "sub", "mul", "div"])
def test_bf16_binary_matches_torch(kind):
    a, b = float_pairs("bf16")
    ta = torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    tb = torch.from_numpy(b.view(np.int16).copy()).view(torch.bfloat16)
    fn = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}[kind]
    expected = fn(ta, tb).view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    got = run_float_binary(kind, "bf16", a, b)
    assert_bits_equal(got, expected, a, b, f"{kind} bf16 vs torch")


@pytest.mark.parametrize("name", FLOAT_NAMES)
def test_min_max_propagate_nan(name):
    t = NP_FLOAT[name]
    a = np.array([np.nan, 1.0, np.nan, -np.inf, 2.0], np.float32).astype(t)
    b = np.array([1.0, np.nan, np.nan, np.nan, -3.0], np.float32).astype(t)
    mn = run_float_binary("min", name, a, b).astype(np.float64)
    mx = run_float_binary("max", name, a, b).astype(np.float64)
    assert np.isnan(mn[:4]).all() and np.isnan(mx[:4]).all()
    assert mn[4] == -3.0 and mx[4] == 2.0


@pytest.mark.parametrize("kind", COMPARES)
@pytest.mark.parametrize("name", FLOAT_NAMES)
def test_float_compare_with_nan(name, kind):
    a, b = float_pairs(name)
    got = run_float_binary(kind, name, a, b, compare=True)
    fn = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
          "gt": np.greater, "ge": np.greater_equal}[kind]
    expected = fn(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    bad = np.nonzero(got != expected)[0]
    assert bad.size == 0, [(a[i], b[i], got[i]) for i in bad[:6]]


def test_float_overflow_gives_inf_not_saturation():
    a = np.array([65504, -65504, 60000, 2.0], np.float16)
    b = np.array([65504, -65504, 60000, 1e-7], np.float16)
    got = run_float_binary("add", "f16", a, b)
    assert np.isposinf(got[0]) and np.isneginf(got[1]) and np.isposinf(got[2]) and got[3] == 2
    f = np.array([3e38], np.float32)
    assert np.isposinf(run_float_binary("mul", "f32", f, f)[0])
    assert np.isposinf(run_float_binary("div", "f32", np.ones(1, np.float32),
                                        np.zeros(1, np.float32))[0])


# ---- float unary ---------------------------------------------------------------------------------
EXACT_UNARY = {"neg": np.negative, "abs": np.abs, "sqrt": np.sqrt, "floor": np.floor,
               "ceil": np.ceil, "round": np.rint}
TRANSCENDENTAL = ["exp", "exp2", "log", "log2", "sin", "cos", "tanh", "sigmoid", "rsqrt"]


@functools.cache
def float_unary_inputs(name):
    t = NP_FLOAT[name]
    rng = np.random.default_rng(9)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 1.0, -1.0,
               4.0, 1e-3, 100.0, 88.0, 89.0, -104.0, 11.0, 12.0, -17.0]
    vals = np.concatenate([special, rng.uniform(-10, 10, 3000),
                           rng.choice([-1, 1], 2000) * 2.0 ** rng.uniform(-24, 20, 2000),
                           np.round(rng.uniform(-100, 100, 500)) + 0.5])
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "f16":
            vals = np.concatenate([vals, np.arange(0, 1 << 16, 3, dtype=np.uint16)
                                   .view(np.float16).astype(np.float64)])
        return vals.astype(np.float32).astype(t)


def run_unary(kind, name, x):
    dt = bittile.dtype_from_name(name)
    y = np.zeros(x.size, NP_FLOAT[name])
    interp.run(unary_kernel(kind, dt, x.size), x, y)
    return y


@pytest.mark.parametrize("kind", sorted(EXACT_UNARY))
@pytest.mark.parametrize("name", FLOAT_NAMES)
def test_float_unary_exact(name, kind):
    x = float_unary_inputs(name)
    work = np.float32 if name == "bf16" else NP_FLOAT[name]
    with np.errstate(all="ignore"):
        expected = EXACT_UNARY[kind](x.astype(work)).astype(NP_FLOAT[name])
    got = run_unary(kind, name, x)
    assert_bits_equal(got, expected, x, x, f"{kind} {name}")


def ordered(v: np.ndarray, name: str) -> np.ndarray:
    """Bit patterns mapped to integers in the order of the values (+0 and -0 both 0)."""
    word = v.view(WORD[name]).astype(np.int64)
    sign = 1 << (8 * v.dtype.itemsize - 1)
    mag = word & (sign - 1)
    return np.where(word & sign, -mag, mag)


def ref_transcendental(kind, x: np.ndarray, work) -> np.ndarray:
    with np.errstate(all="ignore"):
        x = x.astype(work)
        if kind == "sigmoid":  # numpy has no sigmoid: the formula
            return 1 / (1 + np.exp(-x))
        if kind == "rsqrt":
            return 1 / np.sqrt(x)
        return getattr(np, kind)(x)


def ulp_distance(got, expected, x, name, what, limit):
    gn, en = np.isnan(got.astype(np.float64)), np.isnan(expected.astype(np.float64))
    assert np.array_equal(gn, en), (what, [x[i] for i in np.nonzero(gn != en)[0][:6]])
    dist = np.abs(ordered(got, name) - ordered(expected, name))[~gn]
    if dist.size and dist.max() > limit:
        worst = int(np.argmax(dist))
        pytest.fail(f"{what}: {int((dist > limit).sum())} results off by more than {limit} "
                    f"ulp, worst at x={x[~gn][worst]!r}: got {got[~gn][worst]!r}, expected "
                    f"{expected[~gn][worst]!r}")


@pytest.mark.parametrize("kind", TRANSCENDENTAL)
@pytest.mark.parametrize("name", FLOAT_NAMES)
def test_float_transcendental_within_one_ulp(name, kind):
    """Within 1 ulp of the float64 function rounded to the dtype, and within 2 ulps of numpy's
    own float32 functions (numpy's SIMD float32 exp/log are themselves up to ~1 ulp off the
    correctly rounded result, so a correctly rounded backend can be 2 ulps from them)."""
    x = float_unary_inputs(name)
    got = run_unary(kind, name, x)
    t = NP_FLOAT[name]
    with np.errstate(all="ignore"):
        precise = ref_transcendental(kind, x, np.float64).astype(t)
        single = ref_transcendental(kind, x, np.float32).astype(t)
    ulp_distance(got, precise, x, name, f"{kind} {name} vs float64", 1)
    if kind in ("sigmoid", "rsqrt"):  # not numpy functions; the float32 formulas lose accuracy
        return
    ulp_distance(got, single, x, name, f"{kind} {name} vs numpy float32", 1 if t != np.float32
                 else 2)


def test_pow_within_one_ulp_and_special_cases():
    rng = np.random.default_rng(12)
    a = rng.uniform(0.01, 10, 2000).astype(np.float32)
    b = rng.uniform(-8, 8, 2000).astype(np.float32)
    special_a = np.array([0.0, 0.0, -8.0, np.nan, 2.0, -2.0, 1.0, np.inf], np.float32)
    special_b = np.array([-1.0, 2.0, 1 / 3, 0.0, 0.5, 3.0, np.nan, -1.0], np.float32)
    a, b = np.concatenate([a, special_a]), np.concatenate([b, special_b])
    got = run_float_binary("pow", "f32", a, b)
    with np.errstate(all="ignore"):
        expected = np.power(a, b)
    gn, en = np.isnan(got), np.isnan(expected)
    assert np.array_equal(gn, en)
    dist = np.abs(ordered(got, "f32") - ordered(expected, "f32"))[~gn]
    assert dist.max() <= 1
    tail = got[-8:].tolist()
    assert tail[:2] == [np.inf, 0.0] and np.isnan(tail[2])
    assert tail[3:] == [1.0, float(np.float32(np.sqrt(2))), -8.0, 1.0, 0.0]


# ---- where, splats, scalars ----------------------------------------------------------------------
def test_where_tiles_and_scalar_splats():
    kb = KernelBuilder("where")
    a = kb.tensor("a", bittile.i16, ["N"])
    c = kb.tensor("c", bittile.i16, ["N"])
    s = kb.scalar("s", bittile.i16)
    y1 = kb.tensor("y1", bittile.i16, ["N"])
    y2 = kb.tensor("y2", bittile.i16, ["N"])
    y3 = kb.tensor("y3", bittile.i16, ["N"])
    b = kb.builder
    x, z = b.load(a, [0], [8]), b.load(c, [0], [8])
    cond = b.compare("lt", x, z)
    b.store(y1, [0], b.where(cond, x, z))
    b.store(y2, [0], b.where(cond, 7, z))
    b.store(y3, [0], b.where(b.compare("ge", x, s), s, x))
    kernel = kb.finish()
    av = np.array([1, -5, 3, 0, 32767, -32768, 9, 4], np.int16)
    cv = np.array([2, -6, 3, 1, -1, 0, 10, -4], np.int16)
    outs = [np.zeros(8, np.int16) for _ in range(3)]
    interp.run(kernel, av, cv, -3, *outs)
    np.testing.assert_array_equal(outs[0], np.minimum(av, cv))
    np.testing.assert_array_equal(outs[1], np.where(av < cv, 7, cv))
    np.testing.assert_array_equal(outs[2], np.where(av >= -3, -3, av))


def test_where_with_scalar_condition_and_float_nan():
    kb = KernelBuilder("where_s")
    a = kb.tensor("a", bittile.f32, ["N"])
    p = kb.scalar("p", bittile.i32)
    y = kb.tensor("y", bittile.f32, ["N"])
    b = kb.builder
    x = b.load(a, [0], [4])
    cond = b.compare("gt", p, 0)  # a u1 scalar
    b.store(y, [0], b.where(cond, x, b.unary("neg", x)))
    kernel = kb.finish()
    av = np.array([1.5, -0.0, np.nan, np.inf], np.float32)
    for pv, expected in ((1, av), (0, -av)):
        out = np.zeros(4, np.float32)
        interp.run(kernel, av, pv, out)
        assert_bits_equal(out, expected, av, av, f"where p={pv}")


def test_scalar_tile_splat_both_orders():
    kb = KernelBuilder("splat")
    a = kb.tensor("a", bittile.u8, ["N"])
    s = kb.scalar("s", bittile.u8)
    ys = [kb.tensor(f"y{i}", bittile.u8, ["N"]) for i in range(5)]
    b = kb.builder
    x = b.load(a, [0], [6])
    b.store(ys[0], [0], b.sub(x, 3))  # tile - constant
    b.store(ys[1], [0], b.sub(3, x))  # constant - tile
    b.store(ys[2], [0], b.binary("shl", s, x))  # scalar << tile
    b.store(ys[3], [0], b.div(s, x))  # scalar / tile (by zero gives 0)
    b.store(ys[4], [0], b.full(b.mul(s, s), [6]))  # scalar op scalar, then splat
    kernel = kb.finish()
    av = np.array([0, 1, 2, 7, 8, 255], np.uint8)
    outs = [np.zeros(6, np.uint8) for _ in ys]
    interp.run(kernel, av, 200, *outs)
    a64 = av.astype(np.int64)
    np.testing.assert_array_equal(outs[0], (a64 - 3) % 256)
    np.testing.assert_array_equal(outs[1], (3 - a64) % 256)
    np.testing.assert_array_equal(outs[2], [(200 << int(k)) % 256 if k < 8 else 0 for k in av])
    np.testing.assert_array_equal(outs[3], [200 // int(k) if k else 0 for k in av])
    np.testing.assert_array_equal(outs[4], np.full(6, 200 * 200 % 256))


def test_float_splat_constant_rounds_in_dtype():
    kb = KernelBuilder("fsplat")
    a = kb.tensor("a", bittile.bf16, ["N"])
    y = kb.tensor("y", bittile.bf16, ["N"])
    b = kb.builder
    b.store(y, [0], b.add(b.load(a, [0], [3]), 1.0))
    kernel = kb.finish()
    av = np.array([256.0, 0.00390625, -1.0], ml_dtypes.bfloat16)
    out = np.zeros(3, ml_dtypes.bfloat16)
    interp.run(kernel, av, out)
    expected = (av.astype(np.float32) + 1).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(out.view(np.uint16), expected.view(np.uint16))


@pytest.mark.parametrize("dt", [bittile.f8e4m3, bittile.f8e5m2, bittile.f6e3m2, bittile.f4e2m1])
def test_arithmetic_on_storage_floats_is_rejected(dt):
    kb = KernelBuilder("bad")
    a = kb.tensor("a", dt, [4])
    x = kb.builder.load(a, [0], [4])
    with pytest.raises(IRError, match="storage format"):
        kb.builder.binary("add", x, x)
    with pytest.raises(IRError, match="storage format"):
        kb.builder.unary("exp", x)


def test_bitwise_ops_rejected_on_floats_and_exp_on_ints():
    kb = KernelBuilder("bad")
    a = kb.tensor("a", bittile.f32, [4])
    c = kb.tensor("c", bittile.i32, [4])
    x = kb.builder.load(a, [0], [4])
    z = kb.builder.load(c, [0], [4])
    with pytest.raises(IRError):
        kb.builder.binary("and", x, x)
    with pytest.raises(IRError):
        kb.builder.unary("exp", z)
    with pytest.raises(IRError, match="different dtypes"):
        kb.builder.add(x, z)
