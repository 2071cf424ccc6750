"""Tests of ``bittile.ir.dtypes`` against independent references.

The references are written here from the format definitions (sign, biased exponent, mantissa,
subnormals, the three conventions for special values), from numpy (float16, float32) and from
ml_dtypes (bfloat16, the OCP f8/f6/f4 types, the sub-byte integers). Nothing here reuses the
arithmetic of the module under test.

Notes on the references:

- ml_dtypes converts float64 to its narrow floats through float32 (double rounding: e.g.
  ``1.0625 + 2**-40`` becomes f8e4m3fn 1.0 instead of 1.125), so it is consulted only on inputs
  that are exactly float32; near-tie float64 inputs are checked against the definition instead.
- ml_dtypes does not saturate f8e4m3fn/f8e5m2 overflow and maps NaN to -0 in the "fn" sub-byte
  types; those cases are tested against the bittile specification directly.
"""

from __future__ import annotations

import math
import pickle
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from bittile.errors import BittileError, DTypeError
from bittile.ir import dtypes as D
from bittile.ir.dtypes import ALL_DTYPES, dtype_from_name, float_type, int_type

# ==== the specification, written out independently ===============================================

#: Named float types: name -> (exponent bits, mantissa bits, convention).
NAMED_FLOATS = {
    "f16": (5, 10, "ieee"),
    "bf16": (8, 7, "ieee"),
    "f32": (8, 23, "ieee"),
    "f8e4m3": (4, 3, "fn"),
    "f8e5m2": (5, 2, "ieee"),
    "f6e3m2": (3, 2, "finite"),
    "f6e2m3": (2, 3, "finite"),
    "f4e2m1": (2, 1, "finite"),
}
NAMED_INTS = [f"u{b}" for b in (*range(1, 9), 16, 32)] + [f"i{b}" for b in (*range(1, 9), 16, 32)]

#: Every float layout of at most 8 bits that ``float_type`` accepts.
SMALL_FLOAT_FIELDS = [(e, m) for e in range(1, 8) for m in range(0, 8 - e)]


def small_float_convention(e: int, m: int) -> str:
    """e4m3 and e5m2 are the OCP FP8 types; every other layout follows Tilus (all finite)."""
    return {(4, 3): "fn", (5, 2): "ieee"}.get((e, m), "finite")


def ref_float(code: int, e: int, m: int, convention: str) -> float:
    """The value of one float code, from the definition, computed exactly with Fractions."""
    bits = 1 + e + m
    negative = (code >> (bits - 1)) & 1
    biased = (code >> m) & ((1 << e) - 1)
    frac = code & ((1 << m) - 1)
    bias = 2 ** (e - 1) - 1
    all_ones = (1 << e) - 1
    if convention == "ieee" and biased == all_ones:
        mag = math.inf if frac == 0 else math.nan
    elif convention == "fn" and biased == all_ones and frac == (1 << m) - 1:
        mag = math.nan
    elif biased == 0:  # zero and subnormals
        mag = float(Fraction(frac, 1 << m) * Fraction(2) ** (1 - bias))
    else:
        mag = float((1 + Fraction(frac, 1 << m)) * Fraction(2) ** (biased - bias))
    return -mag if negative else mag


def ref_int(code: int, bits: int, signed: bool) -> int:
    """Two's complement (signed) or plain binary (unsigned) value of a code."""
    code &= (1 << bits) - 1
    if signed and code >= 1 << (bits - 1):
        return code - (1 << bits)
    return code


def ref_table(e: int, m: int, convention: str) -> np.ndarray:
    return np.array([ref_float(c, e, m, convention) for c in range(1 << (1 + e + m))])


class SmallFloatRef:
    """Saturating round-to-nearest-even onto a float format of at most 8 bits, by table search."""

    def __init__(self, e: int, m: int):
        self.e, self.m = e, m
        self.bits = 1 + e + m
        self.convention = small_float_convention(e, m)
        self.table = ref_table(e, m, self.convention)
        magnitudes = self.table[: 1 << (self.bits - 1)]
        finite = np.isfinite(magnitudes)
        self.max_code = int(np.flatnonzero(finite).max())
        assert finite[: self.max_code + 1].all()
        self.mags = magnitudes[: self.max_code + 1]
        assert (np.diff(self.mags) > 0).all(), "magnitude codes must be monotone"
        self.max = float(self.mags[-1])
        # Overflow: the value above max in the format with an unbounded exponent is max + ulp.
        self.ulp_at_max = 2.0 ** (math.floor(math.log2(self.max)) - m)
        self.overflow_tie = self.max + self.ulp_at_max / 2
        # A tie at overflow_tie goes to the even one of max_code and max_code + 1.
        self.tie_overflows = self.max_code % 2 == 1

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Codes for finite ``x`` (saturating), and a mask of the inputs that were exact ties."""
        x = np.asarray(x, np.float64)
        a = np.abs(x)
        n = len(self.mags)
        hi = np.searchsorted(self.mags, a, side="left")  # first magnitude >= a
        hi_c = np.minimum(hi, n - 1)
        lo_c = np.maximum(hi_c - 1, 0)
        # Consecutive values differ by at most a factor 2, so these sums and doublings are exact.
        s = self.mags[lo_c] + self.mags[hi_c]
        with np.errstate(over="ignore"):
            twice = 2 * a
        exact = self.mags[hi_c] == a
        tie = (twice == s) & ~exact & (hi < n)
        even = np.where(lo_c % 2 == 0, lo_c, hi_c)
        code = np.where(twice < s, lo_c, np.where(twice > s, hi_c, even))
        code = np.where(exact, hi_c, code)
        code = np.where(hi >= n, n - 1, code)
        code = code | (np.signbit(x).astype(np.int64) << (self.bits - 1))
        return code, tie

    def encode_unsaturated(self, x: np.ndarray) -> np.ndarray:
        """Arithmetic semantics: IEEE formats give inf when RNE would pass max."""
        code, _ = self.encode(x)
        if self.convention != "ieee":
            return code
        a = np.abs(np.asarray(x, np.float64))
        over = (a > self.overflow_tie) | ((a == self.overflow_tie) & self.tie_overflows)
        inf_code = ((1 << self.e) - 1) << self.m
        sign = np.signbit(x).astype(np.int64) << (self.bits - 1)
        return np.where(over, inf_code | sign, code)


_REFS: dict[tuple[int, int], SmallFloatRef] = {}


def small_ref(e: int, m: int) -> SmallFloatRef:
    if (e, m) not in _REFS:
        _REFS[(e, m)] = SmallFloatRef(e, m)
    return _REFS[(e, m)]


def assert_same_floats(got, expected, context: str = "", inputs=None) -> None:
    """Equal values, NaN matching NaN, and equal signs of zero."""
    got = np.asarray(got, np.float64)
    expected = np.asarray(expected, np.float64)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    nan_e = np.isnan(expected)
    bad = (np.isnan(got) != nan_e) | (
        ~nan_e & ((got != expected) | (np.signbit(got) != np.signbit(expected)))
    )
    if bad.any():
        idx = np.flatnonzero(bad)[:8]
        rows = [
            f"  [{i}] input={inputs.reshape(-1)[i]!r} " if inputs is not None else f"  [{i}] "
            for i in idx
        ]
        rows = [
            f"{r}expected={expected.reshape(-1)[i]!r} got={got.reshape(-1)[i]!r}"
            for r, i in zip(rows, idx, strict=True)
        ]
        pytest.fail(f"{context}: {int(bad.sum())} mismatches\n" + "\n".join(rows))


def assert_same_codes(got, expected, inputs, context: str = "") -> None:
    got = np.asarray(got).astype(np.int64)
    expected = np.asarray(expected).astype(np.int64)
    assert got.shape == expected.shape
    bad = got != expected
    if bad.any():
        idx = np.flatnonzero(bad)[:8]
        rows = [
            f"  input={np.asarray(inputs).reshape(-1)[i]!r} expected code={expected[i]:#x} "
            f"got code={got[i]:#x}"
            for i in idx
        ]
        pytest.fail(f"{context}: {int(bad.sum())} mismatches\n" + "\n".join(rows))


def small_dtype_id(fields) -> str:
    e, m = fields
    return f"e{e}m{m}"


# ==== names, fields and the catalogue =============================================================
def test_all_dtypes_is_the_specified_catalogue():
    names = sorted(dt.name for dt in ALL_DTYPES)
    assert names == sorted([*NAMED_INTS, *NAMED_FLOATS])
    assert len(set(ALL_DTYPES)) == len(ALL_DTYPES)


@pytest.mark.parametrize("name", sorted(NAMED_FLOATS))
def test_named_float_fields(name):
    dt = dtype_from_name(name)
    e, m, convention = NAMED_FLOATS[name]
    assert getattr(D, name) == dt
    assert (dt.bits, dt.exponent, dt.mantissa) == (1 + e + m, e, m)
    assert dt.is_float and not dt.is_int and dt.is_signed
    assert dt.has_inf == (convention == "ieee")
    assert dt.has_nan == (convention in ("ieee", "fn"))
    assert dt.name == name == str(dt)


@pytest.mark.parametrize("name", NAMED_INTS)
def test_named_int_fields(name):
    dt = dtype_from_name(name)
    bits = int(name[1:])
    assert getattr(D, name) == dt == int_type(bits, name[0] == "i")
    assert dt.bits == bits
    assert dt.is_int and not dt.is_float
    assert dt.is_signed == (name[0] == "i")
    assert dt.name == name == str(dt)


@pytest.mark.parametrize("fields", SMALL_FLOAT_FIELDS, ids=small_dtype_id)
def test_float_type_fields(fields):
    e, m = fields
    dt = float_type(e, m)
    assert (dt.bits, dt.exponent, dt.mantissa) == (1 + e + m, e, m)
    convention = small_float_convention(e, m)
    assert dt.has_inf == (convention == "ieee")
    assert dt.has_nan == (convention in ("ieee", "fn"))
    assert dt.is_float


def test_float_type_returns_the_named_types():
    assert float_type(2, 1) is D.f4e2m1
    assert float_type(4, 3) is D.f8e4m3
    assert float_type(5, 2) is D.f8e5m2
    assert float_type(3, 2) is D.f6e3m2
    assert float_type(2, 3) is D.f6e2m3
    # other 8-bit layouts are Tilus floats, not OCP ones
    assert float_type(3, 4) != D.f8e4m3
    assert not float_type(3, 4).has_nan and not float_type(6, 1).has_inf


def test_equality_and_hash():
    floats = [float_type(e, m) for e, m in SMALL_FLOAT_FIELDS]
    ints = [int_type(b, s) for b in range(1, 33) for s in (False, True)]
    wide = [D.f16, D.bf16, D.f32]
    every = floats + ints + wide
    assert len(set(every)) == len(every) == len(SMALL_FLOAT_FIELDS) + 64 + 3
    for dt in every:
        again = dtype_from_name(dt.name)
        assert again == dt and hash(again) == hash(dt)
    assert float_type(3, 4) == float_type(3, 4)
    assert hash(float_type(3, 4)) == hash(float_type(3, 4))
    assert int_type(7, True) == D.i7 and int_type(7, False) == D.u7
    assert D.i8 != D.u8 and D.f16 != D.bf16 and D.u1 != D.i1
    assert {int_type(4, True): "x"}[D.i4] == "x"


def every_dtype():
    seen = []
    for dt in (
        list(ALL_DTYPES)
        + [float_type(e, m) for e, m in SMALL_FLOAT_FIELDS]
        + [int_type(b, s) for b in range(1, 33) for s in (False, True)]
    ):
        if dt not in seen:
            seen.append(dt)
    return seen


@pytest.mark.parametrize("dt", every_dtype(), ids=str)
def test_name_and_pickle_round_trip(dt):
    assert dtype_from_name(dt.name) == dt
    assert dtype_from_name(dt.name).name == dt.name
    assert dtype_from_name(dt) == dt
    clone = pickle.loads(pickle.dumps(dt))
    assert clone == dt and clone.name == dt.name and hash(clone) == hash(dt)
    assert (clone.has_inf, clone.has_nan, clone.bits) == (dt.has_inf, dt.has_nan, dt.bits)


def test_name_aliases():
    assert dtype_from_name("bool") == D.u1 == D.boolean
    assert dtype_from_name("f8e3m4") == float_type(3, 4)
    assert dtype_from_name("u12") == int_type(12, False)
    assert dtype_from_name("i31") == int_type(31, True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: int_type(0, False),
        lambda: int_type(0, True),
        lambda: int_type(33, False),
        lambda: int_type(33, True),
        lambda: int_type(-1, True),
        lambda: int_type(64, True),
        lambda: float_type(0, 3),
        lambda: float_type(5, 5),
        lambda: float_type(4, 4),
        lambda: float_type(8, 0),
        lambda: float_type(5, 10),
        lambda: float_type(2, -1),
        lambda: float_type(-1, 2),
    ],
)
def test_invalid_constructors(make):
    with pytest.raises(DTypeError):
        make()


@pytest.mark.parametrize(
    "name",
    ["", "u0", "i0", "u33", "i64", "u", "f64", "float32", "int8", "F16", "x8", "f9e4m4",
     "f8e4m4", "f7e4m3", "f8e0m7", "f16e5m10", "f4e2m1 ", "bf8"],
)
def test_unknown_names(name):
    with pytest.raises(DTypeError):
        dtype_from_name(name)
    assert issubclass(DTypeError, BittileError)


# ==== value tables ================================================================================
@pytest.mark.parametrize("fields", SMALL_FLOAT_FIELDS, ids=small_dtype_id)
def test_small_float_value_table_matches_definition(fields):
    e, m = fields
    dt = float_type(e, m)
    table = dt.value_table()
    assert table.dtype == np.float64 and table.shape == (1 << dt.bits,)
    expected = ref_table(e, m, small_float_convention(e, m))
    assert_same_floats(table, expected, f"value table of {dt}", np.arange(1 << dt.bits))
    # decode agrees with the table, also for codes given with junk above the low bits
    codes = np.arange(1 << dt.bits, dtype=np.uint64)
    assert_same_floats(dt.decode(codes), expected, f"decode {dt}")
    junk = codes | np.uint64(0xABC << dt.bits)
    assert_same_floats(dt.decode(junk), expected, f"decode {dt} with high bits set")


ML_FLOATS = {
    name: getattr(ml_dtypes, ml)
    for name, ml in [
        ("f8e4m3", "float8_e4m3fn"),
        ("f8e5m2", "float8_e5m2"),
        ("f6e3m2", "float6_e3m2fn"),
        ("f6e2m3", "float6_e2m3fn"),
        ("f4e2m1", "float4_e2m1fn"),
    ]
    if hasattr(ml_dtypes, ml)
}
ML_INTS = {
    name: getattr(ml_dtypes, ml)
    for name, ml in [
        ("i1", "int1"), ("i2", "int2"), ("i4", "int4"),
        ("u1", "uint1"), ("u2", "uint2"), ("u4", "uint4"),
    ]
    if hasattr(ml_dtypes, ml)
}


def test_ml_dtypes_has_the_reference_types():
    assert set(ML_FLOATS) == {"f8e4m3", "f8e5m2", "f6e3m2", "f6e2m3", "f4e2m1"}
    assert {"i2", "i4", "u2", "u4"} <= set(ML_INTS)


@pytest.mark.parametrize("name", sorted(ML_FLOATS))
def test_float_value_table_matches_ml_dtypes(name):
    dt = dtype_from_name(name)
    codes = np.arange(1 << dt.bits, dtype=np.uint8)
    expected = codes.view(ML_FLOATS[name]).astype(np.float64)
    assert_same_floats(dt.value_table(), expected, f"{name} vs ml_dtypes", codes)


def test_tilus_e3m4_agrees_with_ml_dtypes_on_finite_codes():
    # ml_dtypes.float8_e3m4 is IEEE-like (inf/NaN at exponent 7); bittile's e3m4 is all finite.
    dt = float_type(3, 4)
    codes = np.arange(256, dtype=np.uint8)
    ml = codes.view(ml_dtypes.float8_e3m4).astype(np.float64)
    ordinary = ((codes >> 4) & 7) != 7
    assert_same_floats(dt.value_table()[ordinary], ml[ordinary], "e3m4 vs ml_dtypes")
    assert np.isfinite(dt.value_table()).all()
    assert dt.max == 31.0


@pytest.mark.parametrize("name", sorted(ML_INTS))
def test_int_value_table_matches_ml_dtypes(name):
    dt = dtype_from_name(name)
    codes = np.arange(1 << dt.bits, dtype=np.uint8)
    expected = codes.view(ML_INTS[name]).astype(np.int64)
    table = dt.value_table()
    assert table.dtype == np.int64
    np.testing.assert_array_equal(table, expected)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("signed", [False, True])
def test_int_value_table_matches_twos_complement(bits, signed):
    dt = int_type(bits, signed)
    expected = np.array([ref_int(c, bits, signed) for c in range(1 << bits)], np.int64)
    np.testing.assert_array_equal(dt.value_table(), expected)
    np.testing.assert_array_equal(dt.decode(np.arange(1 << bits, dtype=np.uint16)), expected)


@pytest.mark.parametrize("bits", [9, 12, 16, 17, 24, 31, 32])
@pytest.mark.parametrize("signed", [False, True])
def test_wide_int_decode(bits, signed):
    dt = int_type(bits, signed)
    rng = np.random.default_rng(bits * 2 + signed)
    edges = [0, 1, (1 << (bits - 1)) - 1, 1 << (bits - 1), (1 << bits) - 1, (1 << bits) - 2]
    codes = np.concatenate([np.array(edges), rng.integers(0, 1 << bits, 3000)]).astype(np.uint64)
    expected = np.array([ref_int(int(c), bits, signed) for c in codes], np.int64)
    np.testing.assert_array_equal(dt.decode(codes), expected)
    if bits in (16, 32):
        all_codes = (
            np.arange(1 << 16, dtype=np.uint16) if bits == 16 else codes.astype(np.uint32)
        )
        np_type = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
        np.testing.assert_array_equal(
            dt.decode(all_codes), all_codes.view(np_type).astype(np.int64)
        )
        assert dt.numpy_dtype() == np_type
    with pytest.raises(DTypeError):
        dt.value_table()


WIDE_FLOATS = {
    "f16": (np.float16, np.uint16),
    "bf16": (ml_dtypes.bfloat16, np.uint16),
    "f32": (np.float32, np.uint32),
}


def wide_values(name: str, codes: np.ndarray) -> np.ndarray:
    float_type_, code_type = WIDE_FLOATS[name]
    with np.errstate(invalid="ignore"):  # signalling NaN payloads
        return np.asarray(codes).astype(code_type).view(float_type_).astype(np.float64)


@pytest.mark.parametrize("name", ["f16", "bf16"])
def test_16bit_float_decode_exhaustive(name):
    dt = dtype_from_name(name)
    codes = np.arange(1 << 16, dtype=np.uint16)
    assert_same_floats(dt.decode(codes), wide_values(name, codes), f"{name} decode", codes)
    # the definition, on a sample of codes that includes every special region
    e, m, conv = NAMED_FLOATS[name]
    rng = np.random.default_rng(16)
    sample = np.unique(np.concatenate([
        rng.integers(0, 1 << 16, 1500),
        [0, 1, 2, (1 << m) - 1, 1 << m, 0x8000, 0x8001],
        np.arange(((1 << e) - 1) << m, (((1 << e) - 1) << m) + 4),
        np.arange((1 << 15) - 4, (1 << 15) + 4),
        np.arange((1 << 16) - 4, 1 << 16),
    ])).astype(np.int64)
    expected = np.array([ref_float(int(c), e, m, conv) for c in sample])
    assert_same_floats(dt.decode(sample.astype(np.uint16)), expected, f"{name} vs definition")
    with pytest.raises(DTypeError):
        dt.value_table()


def test_f32_decode_sample():
    dt = D.f32
    rng = np.random.default_rng(32)
    specials = np.array(
        [0, 1, 2, 0x007FFFFF, 0x00800000, 0x3F800000, 0x7F7FFFFF, 0x7F800000, 0x7F800001,
         0x7FC00000, 0x7FFFFFFF, 0x80000000, 0x80000001, 0xFF7FFFFF, 0xFF800000, 0xFFFFFFFF],
        np.uint64,
    )
    codes = np.concatenate([specials, rng.integers(0, 1 << 32, 1_000_000, dtype=np.uint64)])
    codes32 = codes.astype(np.uint32)
    assert_same_floats(dt.decode(codes32), wide_values("f32", codes32), "f32 decode")
    sample = codes[:3000]
    expected = np.array([ref_float(int(c), 8, 23, "ieee") for c in sample])
    assert_same_floats(dt.decode(sample), expected, "f32 vs definition")


# ==== ranges ======================================================================================
@pytest.mark.parametrize("fields", SMALL_FLOAT_FIELDS, ids=small_dtype_id)
def test_small_float_range_is_the_table_extremes(fields):
    e, m = fields
    dt = float_type(e, m)
    ref = small_ref(e, m)
    table = ref.table
    finite = table[np.isfinite(table)]
    positive = finite[finite > 0]
    codes = np.arange(1 << dt.bits)
    normal = ((codes >> m) & ((1 << e) - 1)) != 0
    positive_normal = table[normal & np.isfinite(table) & (table > 0)]
    assert dt.max == finite.max()
    assert dt.min == finite.min() == -finite.max()
    assert dt.smallest_subnormal == positive.min()
    assert dt.smallest_normal == positive_normal.min()
    assert dt.max == ref.max


@pytest.mark.parametrize(
    "name, finfo",
    [("f16", np.finfo(np.float16)), ("bf16", ml_dtypes.finfo(ml_dtypes.bfloat16)),
     ("f32", np.finfo(np.float32))]
    + [(n, ml_dtypes.finfo(t)) for n, t in sorted(ML_FLOATS.items())],
)
def test_float_range_matches_finfo(name, finfo):
    dt = dtype_from_name(name)
    assert dt.max == float(finfo.max)
    assert dt.min == float(finfo.min)
    assert dt.smallest_normal == float(finfo.smallest_normal)
    assert dt.smallest_subnormal == float(finfo.smallest_subnormal)


def test_documented_maxima():
    assert D.f8e4m3.max == 448.0 and D.f8e4m3.min == -448.0
    assert D.f8e5m2.max == 57344.0
    assert D.f6e3m2.max == 28.0 and D.f6e2m3.max == 7.5 and D.f4e2m1.max == 6.0
    assert D.f16.max == 65504.0
    assert D.f4e2m1.smallest_subnormal == 0.5 and D.f4e2m1.smallest_normal == 1.0
    assert D.f8e4m3.smallest_subnormal == 2.0**-9 and D.f8e5m2.smallest_subnormal == 2.0**-16
    # f8e4m3: NaN only at 0x7f and 0xff; f8e5m2: inf at 0x7c/0xfc and NaN above
    t = D.f8e4m3.value_table()
    assert np.isnan(t[0x7F]) and np.isnan(t[0xFF]) and np.isnan(t).sum() == 2
    assert t[0x7E] == 448.0 and t[0xFE] == -448.0
    t = D.f8e5m2.value_table()
    assert t[0x7C] == np.inf and t[0xFC] == -np.inf and np.isnan(t).sum() == 6
    assert t[0x7B] == 57344.0


@pytest.mark.parametrize("bits", range(1, 33))
def test_int_ranges(bits):
    u, i = int_type(bits, False), int_type(bits, True)
    assert (u.min, u.max) == (0, 2**bits - 1)
    assert (i.min, i.max) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if bits <= 8:
        assert u.max == u.value_table().max() and i.min == i.value_table().min()
    for dt in (u, i):
        with pytest.raises(DTypeError):
            dt.smallest_normal  # noqa: B018
        with pytest.raises(DTypeError):
            dt.smallest_subnormal  # noqa: B018


# ==== float encoding, formats of at most 8 bits ===================================================
def small_float_inputs(ref: SmallFloatRef, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mags = ref.mags
    mids = (mags[:-1] + mags[1:]) / 2
    mids32 = mids.astype(np.float32)
    t = ref.overflow_tie
    tiny = mags[1]
    parts = [
        mags,
        mids,
        np.nextafter(mids, np.inf),
        np.nextafter(mids, -np.inf),
        np.nextafter(mids32, np.float32(np.inf)).astype(np.float64),
        np.nextafter(mids32, np.float32(0)).astype(np.float64),
        np.array([t, np.nextafter(t, np.inf), np.nextafter(t, 0), ref.max * 1.25, 2 * ref.max,
                  ref.max * 1e6, 1e300, np.finfo(np.float64).max]),
        np.array([tiny / 2, tiny / 4, tiny * 0.75, tiny * 1.5, 5e-324, 1e-300]),
        2.0 ** rng.uniform(math.log2(tiny) - 3, math.log2(ref.max) + 2, 600),
    ]
    x = np.concatenate(parts)
    return np.concatenate([x, -x])


@pytest.mark.parametrize("fields", SMALL_FLOAT_FIELDS, ids=small_dtype_id)
def test_small_float_encode_rounds_to_nearest_even_and_saturates(fields):
    e, m = fields
    dt = float_type(e, m)
    ref = small_ref(e, m)
    x = small_float_inputs(ref, seed=e * 8 + m)
    expected, tie = ref.encode(x)
    if m == 0:
        # with no mantissa bits "even" is ambiguous; the ties are checked separately below
        x, expected = x[~tie], expected[~tie]
    got = dt.encode(x)
    assert got.dtype == np.uint8
    assert_same_codes(got, expected, x, f"{dt}.encode")
    assert_same_codes(dt.encode(x, saturate=False), ref.encode_unsaturated(x), x,
                      f"{dt}.encode(saturate=False)")
    assert_same_floats(dt.round(x), ref.table[expected], f"{dt}.round", x)


@pytest.mark.parametrize("fields", [f for f in SMALL_FLOAT_FIELDS if f[1] > 0], ids=small_dtype_id)
def test_small_float_ties_go_to_the_even_code(fields):
    """Layouts with mantissa bits (no mantissa: see test_zero_mantissa_ties_go_to_the_even_code)."""
    e, m = fields
    dt = float_type(e, m)
    ref = small_ref(e, m)
    mags = ref.mags
    mids = (mags[:-1] + mags[1:]) / 2
    lower = np.arange(len(mids))
    expected = np.where(lower % 2 == 0, lower, lower + 1)
    assert_same_codes(dt.encode(mids), expected, mids, f"{dt} ties")
    sign = 1 << (dt.bits - 1)
    assert_same_codes(dt.encode(-mids), expected | sign, -mids, f"{dt} negative ties")
    assert_same_codes(dt.encode(np.nextafter(mids, np.inf)), lower + 1, mids, f"{dt} above ties")
    assert_same_codes(dt.encode(np.nextafter(mids, 0)), lower, mids, f"{dt} below ties")


ZERO_MANTISSA = [(e, 0) for e in range(1, 8)]


@pytest.mark.parametrize("fields", ZERO_MANTISSA, ids=small_dtype_id)
def test_zero_mantissa_ties_go_to_the_even_code(fields):
    """The issue's rule, "ties go to the even code", applied to layouts with no mantissa bits.

    Consecutive values are 2^k (code c) and 2^(k+1) (code c+1); their midpoint 1.5 * 2^k
    should encode as whichever of c, c+1 is even.
    """
    e, m = fields
    dt = float_type(e, m)
    mags = small_ref(e, m).mags
    mids = (mags[:-1] + mags[1:]) / 2
    lower = np.arange(len(mids))
    expected = np.where(lower % 2 == 0, lower, lower + 1)
    assert_same_codes(dt.encode(mids), expected, mids, f"{dt} ties")


@pytest.mark.parametrize("fields", SMALL_FLOAT_FIELDS, ids=small_dtype_id)
def test_small_float_specials_follow_the_spec(fields):
    e, m = fields
    dt = float_type(e, m)
    ref = small_ref(e, m)
    sign = 1 << (dt.bits - 1)
    convention = ref.convention
    inf_code = ((1 << e) - 1) << m
    for saturate in (True, False):
        codes = dt.encode(np.array([np.inf, -np.inf, 0.0, -0.0]), saturate=saturate)
        if convention == "ieee":
            assert list(codes) == [inf_code, inf_code | sign, 0, sign]
        else:  # inf saturates to max
            assert list(codes) == [ref.max_code, ref.max_code | sign, 0, sign]
        nan_codes = dt.encode(np.array([np.nan, -np.nan]), saturate=saturate).astype(np.int64)
        values = dt.decode(nan_codes)
        if convention == "finite":  # NaN becomes 0
            assert (values == 0).all(), nan_codes
        else:
            assert np.isnan(values).all(), nan_codes
        if convention == "fn":
            assert ((nan_codes & (sign - 1)) == sign - 1).all()
    np.testing.assert_array_equal(np.signbit(dt.round(np.array([-0.0, 0.0]))), [True, False])
    # a tiny negative value rounds to -0 (keeps the sign)
    assert dt.encode(np.array([-ref.mags[1] / 4]))[0] == sign


@pytest.mark.parametrize("name", sorted(ML_FLOATS) + ["e3m4"])
def test_small_float_encode_matches_ml_dtypes_where_specs_agree(name):
    if name == "e3m4":
        dt, ml_type = float_type(3, 4), ml_dtypes.float8_e3m4
        limit = float(ml_dtypes.finfo(ml_type).max)  # ml_dtypes' e3m4 has inf above 15.5
    else:
        dt, ml_type = dtype_from_name(name), ML_FLOATS[name]
        limit = dt.max
    ref = small_ref(dt.exponent, dt.mantissa)
    x = small_float_inputs(ref, seed=99)
    with np.errstate(over="ignore"):
        exact_f32 = x.astype(np.float32).astype(np.float64) == x
    x = x[exact_f32 & (np.abs(x) <= limit)]
    assert x.size > 50
    expected = x.astype(ml_type).view(np.uint8)
    assert_same_codes(dt.encode(x), expected, x, f"{name} vs ml_dtypes")


def test_ocp_and_tilus_literal_cases():
    """Hand-derived from the OCP FP8/FP4 definitions (not from ml_dtypes)."""
    f4 = D.f4e2m1  # values 0, 0.5, 1, 1.5, 2, 3, 4, 6 at codes 0..7
    x = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.9, 7.0, 1e9, -0.25, -5.0, -7.0]
    assert list(f4.encode(np.array(x))) == [0, 2, 2, 4, 4, 6, 6, 7, 7, 7, 8, 14, 15]
    assert list(f4.round(np.array([6.9, 2.6, 0.3]))) == [6.0, 3.0, 0.5]
    e4 = D.f8e4m3
    x = [448.0, 464.0, 464.0001, 470.0, 500.0, 1e9, np.inf, -np.inf, -1e9, 2.0**-10, 1.0625]
    assert list(e4.encode(np.array(x))) == [
        0x7E, 0x7E, 0x7E, 0x7E, 0x7E, 0x7E, 0x7E, 0xFE, 0xFE, 0x00, 0x38,
    ]
    assert e4.encode(np.array([np.nan]))[0] == 0x7F
    e5 = D.f8e5m2
    x = np.array([57344.0, 61439.0, 61440.0, 1e9, np.inf, -np.inf])
    assert list(e5.encode(x)) == [0x7B, 0x7B, 0x7B, 0x7B, 0x7C, 0xFC]
    assert list(e5.encode(x, saturate=False)) == [0x7B, 0x7B, 0x7C, 0x7C, 0x7C, 0xFC]
    assert 0x7C < e5.encode(np.array([np.nan]))[0] <= 0x7F


# ==== float encoding, 16 and 32 bits ==============================================================
def random_float64(rng, n, lo_exp, hi_exp):
    mags = rng.uniform(1.0, 2.0, n) * 2.0 ** rng.integers(lo_exp, hi_exp, n).astype(np.float64)
    return np.where(rng.random(n) < 0.5, -mags, mags)


WIDE_RANGES = {"f16": (-30, 18), "bf16": (-140, 130), "f32": (-156, 130)}


@pytest.mark.parametrize("name", sorted(WIDE_FLOATS))
def test_wide_float_round_matches_numpy_and_ml_dtypes(name):
    dt = dtype_from_name(name)
    float_type_, code_type = WIDE_FLOATS[name]
    rng = np.random.default_rng(len(name))
    x = random_float64(rng, 200_000, *WIDE_RANGES[name])
    x = np.concatenate([x, [0.0, -0.0, np.inf, -np.inf, 5e-324, -5e-324, 1e300, -1e300]])
    if name == "bf16":
        # ml_dtypes rounds float64 -> bfloat16 through float32 (double rounding): feed it
        # float32 values only; exact float64 ties are covered by the tie test below.
        with np.errstate(over="ignore"):
            x = x.astype(np.float32).astype(np.float64)
    with np.errstate(over="ignore"):
        expected_codes = x.astype(float_type_).view(code_type)
    assert_same_codes(dt.encode(x, saturate=False), expected_codes, x, f"{name} unsaturated")
    expected = expected_codes.view(float_type_).astype(np.float64)
    assert_same_floats(dt.round(x, saturate=False), expected, f"{name}.round(saturate=False)", x)
    # saturating: finite overflow clamps to +-max, inf stays inf
    saturated = np.where(np.isinf(expected) & np.isfinite(x), np.sign(x) * dt.max, expected)
    assert_same_floats(dt.round(x), saturated, f"{name}.round", x)
    assert dt.encode(x).dtype == np.dtype(code_type)


def wide_tie_codes(name: str) -> np.ndarray:
    """Positive finite codes below the max code (so that code + 1 is finite too)."""
    if name == "f32":
        rng = np.random.default_rng(7)
        edges = np.array([0, 1, 2, 3, 0x007FFFFE, 0x007FFFFF, 0x00800000, 0x3F7FFFFF,
                          0x3F800000, 0x7F7FFFFE])
        return np.concatenate([edges, rng.integers(0, 0x7F7FFFFF, 300_000)]).astype(np.int64)
    e, m, _ = NAMED_FLOATS[name]
    return np.arange(0, ((((1 << e) - 1) << m) - 1), dtype=np.int64)


@pytest.mark.parametrize("name", sorted(WIDE_FLOATS))
def test_wide_float_ties_built_from_bits(name):
    dt = dtype_from_name(name)
    codes = wide_tie_codes(name)
    lo = wide_values(name, codes)
    hi = wide_values(name, codes + 1)
    tie = (lo + hi) / 2  # exact in float64
    even = np.where(codes % 2 == 0, codes, codes + 1)
    sign = 1 << (dt.bits - 1)
    for s, x_sign in ((0, 1.0), (sign, -1.0)):
        assert_same_codes(dt.encode(x_sign * tie), even | s, x_sign * tie, f"{name} ties")
        above = np.nextafter(tie, np.inf) * x_sign
        assert_same_codes(dt.encode(above), (codes + 1) | s, above, f"{name} above ties")
        below = np.nextafter(tie, 0) * x_sign
        assert_same_codes(dt.encode(below), codes | s, below, f"{name} below ties")
    # the library conversion agrees on the exact ties (float32-representable)
    float_type_, code_type = WIDE_FLOATS[name]
    np.testing.assert_array_equal(tie.astype(float_type_).view(code_type), even)


@pytest.mark.parametrize("name", sorted(WIDE_FLOATS))
def test_wide_float_overflow_and_underflow(name):
    dt = dtype_from_name(name)
    e, m, _ = NAMED_FLOATS[name]
    max_value = (2 - 2.0**-m) * 2.0 ** (2 ** (e - 1) - 1)
    assert dt.max == max_value
    over = max_value + 2.0 ** (2 ** (e - 1) - 1 - m) / 2  # tie between max (odd) and 2^(emax+1)
    x = np.array([over, np.nextafter(over, 0), np.nextafter(over, np.inf), 1e300, np.inf])
    x = np.concatenate([x, -x])
    unsat = dt.round(x, saturate=False)
    np.testing.assert_array_equal(
        unsat, [np.inf, max_value, np.inf, np.inf, np.inf] + [-np.inf, -max_value] + [-np.inf] * 3
    )
    sat = dt.round(x)
    np.testing.assert_array_equal(
        sat, [max_value] * 4 + [np.inf] + [-max_value] * 4 + [-np.inf]
    )
    tiny = 2.0 ** (2 - 2 ** (e - 1) - m)
    assert dt.smallest_subnormal == tiny
    x = np.array([tiny / 2, np.nextafter(tiny / 2, 1), -tiny / 2, tiny * 1.5, tiny * 2.5])
    np.testing.assert_array_equal(dt.round(x), [0.0, tiny, -0.0, 2 * tiny, 2 * tiny])
    assert np.signbit(dt.round(np.array([-tiny / 2])))[0]
    assert np.isnan(dt.round(np.array([np.nan]))[0])


# ==== integers ====================================================================================
def rne_int(x: float) -> int:
    """Round half to even, from the definition, on an exact float."""
    f = Fraction(x)
    floor = math.floor(f)
    rest = f - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2 == 1):
        return floor + 1
    return floor


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("signed", [False, True])
def test_small_int_encode_decode(bits, signed):
    dt = int_type(bits, signed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    values = np.arange(lo - 70, hi + 71, dtype=np.int64)
    clipped = [min(max(int(v), lo), hi) for v in values]
    expected = np.array([v % (1 << bits) for v in clipped], np.int64)
    codes = dt.encode(values)
    assert codes.dtype == np.uint8
    assert_same_codes(codes, expected, values, f"{dt}.encode(int)")
    np.testing.assert_array_equal(dt.decode(codes), clipped)
    # the same values as floats, plus every half-integer tie and its neighbours
    fl = values.astype(np.float64)
    ties = fl + 0.5
    x = np.concatenate([fl, ties, np.nextafter(ties, np.inf), np.nextafter(ties, -np.inf),
                        np.array([-0.0, 1e300, -1e300])])
    expected = np.array([min(max(rne_int(v), lo), hi) % (1 << bits) for v in x], np.int64)
    assert_same_codes(dt.encode(x), expected, x, f"{dt}.encode(float)")
    specials = dt.encode(np.array([np.nan, np.inf, -np.inf]))
    assert list(specials) == [0, hi % (1 << bits), lo % (1 << bits)]
    assert list(dt.round(np.array([np.nan, np.inf, -np.inf]))) == [0, hi, lo]


def test_int_rounding_examples():
    x = np.array([2.5, 3.5, -2.5, -3.5, 0.5, -0.5, 1.5, 126.5, 127.5, -128.5, 300.0, -1e9])
    assert list(D.i8.round(x)) == [2, 4, -2, -4, 0, 0, 2, 126, 127, -128, 127, -128]
    assert list(D.u8.round(x)) == [2, 4, 0, 0, 0, 0, 2, 126, 128, 0, 255, 0]
    assert list(D.i32.round(np.array([2.5, -2.5, 3.5]))) == [2, -2, 4]
    assert list(D.u4.round(np.array([14.5, 15.5, 16.0]))) == [14, 15, 15]


@pytest.mark.parametrize("bits", [9, 16, 24, 31, 32])
@pytest.mark.parametrize("signed", [False, True])
def test_wide_int_encode(bits, signed):
    dt = int_type(bits, signed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    rng = np.random.default_rng(bits)
    ints = np.concatenate([
        rng.integers(lo - (1 << bits), hi + (1 << bits), 5000),
        rng.integers(lo, hi + 1, 5000),
        [lo, hi, lo - 1, hi + 1, 0, -1, 1],
    ]).astype(np.int64)
    clipped = [min(max(int(v), lo), hi) for v in ints]
    expected = np.array([v % (1 << bits) for v in clipped], np.int64)
    codes = dt.encode(ints)
    assert codes.dtype == dt.code_dtype
    assert_same_codes(codes, expected, ints, f"{dt}.encode(int)")
    np.testing.assert_array_equal(dt.decode(codes), clipped)
    floats = rng.uniform(lo * 1.5 - 10, hi * 1.5 + 10, 5000)
    floats = np.concatenate([floats, np.round(floats) + 0.5])
    expected = np.array([min(max(rne_int(v), lo), hi) for v in floats], np.int64)
    np.testing.assert_array_equal(dt.round(floats), expected)


@pytest.mark.parametrize(
    "dt, values, expected",
    [
        (D.u32, [2**64 - 1, 2**63, 2**32], [2**32 - 1] * 3),
        (D.u8, [2**63, 2**63 + 5, 256], [255] * 3),
        (D.i8, [2**64 - 1, 200], [127, 127]),
        (D.i32, [2**63 + 1], [2**31 - 1]),
    ],
    ids=["u32", "u8", "i8", "i32"],
)
def test_int_encode_saturates_uint64_inputs(dt, values, expected):
    """Int -> int conversion saturates; numpy uint64 inputs above 2^63 must not wrap negative."""
    got = dt.round(np.array(values, np.uint64))
    assert list(got) == expected, f"{dt}.round(uint64 {values}) = {list(got)}"


@pytest.mark.parametrize("bits", [*range(1, 9), 12, 16, 31, 32])
@pytest.mark.parametrize("signed", [False, True])
def test_wrap_is_modulo(bits, signed):
    dt = int_type(bits, signed)
    rng = np.random.default_rng(bits + 100 * signed)
    values = np.concatenate([
        rng.integers(-(1 << 45), 1 << 45, 3000),
        np.arange(-(1 << min(bits, 10)) - 3, (1 << min(bits, 10)) + 3),
    ]).astype(np.int64)
    expected = [ref_int(int(v) % (1 << bits), bits, signed) for v in values]
    np.testing.assert_array_equal(dt.wrap(values), expected)
    with pytest.raises(DTypeError):
        D.f16.wrap(values)


def test_wrap_examples():
    assert list(D.u8.wrap(np.array([256 + 5, -1, 511]))) == [5, 255, 255]
    assert list(D.i8.wrap(np.array([200, 128, -129, 127]))) == [-56, -128, 127, 127]
    assert list(D.i1.wrap(np.array([0, 1, 2, 3, -1]))) == [0, -1, 0, -1, -1]
    assert list(D.u1.wrap(np.array([0, 1, 2, 3, -1]))) == [0, 1, 0, 1, 1]
