"""Tests of ``bittile.runtime.packed`` (``pack``, ``unpack``, ``PackedTensor``).

Expected values, codes and bytes are computed here from the definitions (two's complement,
sign/exponent/mantissa floats, the LSB-first bitstream) or from numpy/ml_dtypes, never from the
code under test.
"""

from __future__ import annotations

import math
from fractions import Fraction

import hypothesis.extra.numpy as hnp
import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bittile.errors import DTypeError, PackingError
from bittile.ir import dtypes as D
from bittile.ir.dtypes import ALL_DTYPES, float_type, int_type
from bittile.runtime.packed import PackedTensor, pack, unpack

# ==== references ==================================================================================
SMALL_FLOAT_FIELDS = [(e, m) for e in range(1, 8) for m in range(0, 8 - e)]
WIDE_FLOATS = {  # name -> (numpy type, code type, exponent, mantissa)
    "f16": (np.float16, np.uint16, 5, 10),
    "bf16": (ml_dtypes.bfloat16, np.uint16, 8, 7),
    "f32": (np.float32, np.uint32, 8, 23),
}


def convention(dt) -> str:
    """From the issue: e4m3 is OCP (NaN only, at all-ones), e5m2 and >8-bit floats are IEEE,
    every other float of at most 8 bits is Tilus (all finite)."""
    if dt.bits > 8:
        return "ieee"
    return {(4, 3): "fn", (5, 2): "ieee"}.get((dt.exponent, dt.mantissa), "finite")


def ref_float(code: int, e: int, m: int, conv: str) -> float:
    bits = 1 + e + m
    negative = (code >> (bits - 1)) & 1
    biased = (code >> m) & ((1 << e) - 1)
    frac = code & ((1 << m) - 1)
    bias = 2 ** (e - 1) - 1
    top = (1 << e) - 1
    if conv == "ieee" and biased == top:
        mag = math.inf if frac == 0 else math.nan
    elif conv == "fn" and biased == top and frac == (1 << m) - 1:
        mag = math.nan
    elif biased == 0:
        mag = float(Fraction(frac, 1 << m) * Fraction(2) ** (1 - bias))
    else:
        mag = float((1 + Fraction(frac, 1 << m)) * Fraction(2) ** (biased - bias))
    return -mag if negative else mag


_TABLES: dict = {}


def ref_small_table(dt) -> np.ndarray:
    key = (dt.exponent, dt.mantissa)
    if key not in _TABLES:
        _TABLES[key] = np.array(
            [ref_float(c, dt.exponent, dt.mantissa, convention(dt)) for c in range(1 << dt.bits)]
        )
    return _TABLES[key]


def ref_values(dt, codes: np.ndarray) -> np.ndarray:
    """The values of ``codes`` (int64 array) in ``dt``, from the definitions."""
    codes = np.asarray(codes, np.int64)
    if dt.is_int:
        if dt.is_signed:
            return np.where(codes >= 1 << (dt.bits - 1), codes - (1 << dt.bits), codes)
        return codes
    if dt.bits <= 8:
        return ref_small_table(dt)[codes]
    float_type_, code_type, _, _ = WIDE_FLOATS[dt.name]
    with np.errstate(invalid="ignore"):
        return codes.astype(code_type).view(float_type_).astype(np.float64)


def ref_pack(codes, bits: int) -> bytes:
    """The bitstream, bit by bit: element i at bits [i*bits, (i+1)*bits), LSB first."""
    out = bytearray((len(codes) * bits + 7) // 8)
    for i, code in enumerate(codes):
        for j in range(bits):
            if (int(code) >> j) & 1:
                pos = i * bits + j
                out[pos // 8] |= 1 << (pos % 8)
    return bytes(out)


def ref_max(dt):
    """(largest finite value, its code) from the definition."""
    if dt.is_int:
        return ((1 << (dt.bits - 1)) - 1 if dt.is_signed else (1 << dt.bits) - 1), None
    if dt.bits <= 8:
        table = ref_small_table(dt)[: 1 << (dt.bits - 1)]
        code = int(np.flatnonzero(np.isfinite(table)).max())
        return float(table[code]), code
    _, _, e, m = WIDE_FLOATS[dt.name]
    code = (((1 << e) - 1) << m) - 1
    return float(ref_values(dt, np.array([code]))[0]), code


def ref_overflow_threshold(dt):
    """(t, tie_overflows): a magnitude overflows when it exceeds t, or equals t and the tie
    rounds up. t is halfway between max and the next value of the format with an unbounded
    exponent (max + one ulp of max's binade); the tie goes to the even code."""
    top, code = ref_max(dt)
    ulp = 2.0 ** (math.floor(math.log2(top)) - dt.mantissa)
    return top + ulp / 2, code % 2 == 1


def same_values(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Elementwise: equal, NaN matches NaN, zero signs match."""
    got = np.asarray(got)
    expected = np.asarray(expected)
    if got.dtype.kind != "f" and expected.dtype.kind != "f":
        return got == expected
    got = got.astype(np.float64)
    expected = expected.astype(np.float64)
    nan = np.isnan(expected)
    return np.where(
        nan, np.isnan(got), (got == expected) & (np.signbit(got) == np.signbit(expected))
    )


def error_message(excinfo) -> str:
    return str(excinfo.value)


# ==== the dtypes under test =======================================================================
def _pack_dtypes():
    every = list(ALL_DTYPES)
    for e, m in SMALL_FLOAT_FIELDS:
        if float_type(e, m) not in every:
            every.append(float_type(e, m))
    every += [int_type(12, False), int_type(17, True), int_type(24, False), int_type(31, True)]
    return every


PACK_DTYPES = _pack_dtypes()
SMALL_FLOATS = [dt for dt in PACK_DTYPES if dt.is_float and dt.bits <= 8]
ALL_FLOATS = [dt for dt in PACK_DTYPES if dt.is_float]
INT_DTYPES = [dt for dt in PACK_DTYPES if dt.is_int]
SHAPES = [(1,), (7,), (129,), (3, 5), (2, 3, 7), (0,), ()]


def test_dtype_catalogue_covers_every_width():
    widths = {dt.bits for dt in PACK_DTYPES}
    assert set(range(1, 9)) | {16, 32} <= widths
    assert len(SMALL_FLOATS) == len(SMALL_FLOAT_FIELDS)


# ==== round trips =================================================================================
@st.composite
def representable(draw, dt, shape):
    """(values, codes): values of ``dt`` and their codes (-1 where the value is a NaN or was
    produced by rounding a random float, so has no single expected code)."""
    if dt.bits <= 8 or dt.is_int or draw(st.booleans()):
        hi = (1 << dt.bits) - 1
        codes = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, hi)))
        values = ref_values(dt, codes)
        if dt.is_float:
            codes = np.where(np.isnan(values), -1, codes)
        return values, codes
    # random finite floats rounded to the type by numpy / ml_dtypes
    float_type_, _, _, _ = WIDE_FLOATS[dt.name]
    top = float(ref_max(dt)[0])
    raw = draw(
        hnp.arrays(np.float64, shape, elements=st.floats(-top, top, allow_subnormal=True))
    )
    values = raw.astype(float_type_).astype(np.float64)
    return values, np.full(shape, -1, np.int64)


@pytest.mark.parametrize("dt", PACK_DTYPES, ids=str)
@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_pack_unpack_round_trip(dt, data):
    shape = data.draw(st.sampled_from(SHAPES), label="shape")
    values, codes = data.draw(representable(dt, shape), label="values")
    packed = pack(values, dt)
    assert packed.shape == shape and packed.dtype == dt
    assert packed.data.dtype == np.uint8
    assert packed.data.size == (math.prod(shape) * dt.bits + 7) // 8 == packed.nbytes
    back = unpack(packed)
    assert back.shape == shape
    assert back.dtype == (np.float64 if dt.is_float else np.int64)
    ok = same_values(back, values)
    assert ok.all(), (values[~ok], back[~ok])
    got_codes = packed.codes()
    assert got_codes.dtype == dt.code_dtype and got_codes.shape == shape
    known = codes >= 0
    np.testing.assert_array_equal(got_codes[known].astype(np.int64), codes[known])


@pytest.mark.parametrize("dt", PACK_DTYPES, ids=str)
def test_packed_bytes_match_reference_layout(dt):
    rng = np.random.default_rng(dt.bits * 7 + dt.exponent)
    for count in (1, 2, 3, 5, 8, 11, 17):
        codes = rng.integers(0, 1 << dt.bits, count, dtype=np.int64)
        values = ref_values(dt, codes)
        if dt.is_float:
            keep = ~np.isnan(values)
            codes, values = codes[keep], values[keep]
        expected = ref_pack(codes.tolist(), dt.bits)
        assert pack(values, dt).data.tobytes() == expected, (dt, codes, values)
        assert PackedTensor.from_codes(codes, dt).data.tobytes() == expected


def test_known_packed_bytes():
    # f4e2m1: 1.0 -> 0b0010, -6.0 -> 0b1111, 0.5 -> 0b0001; element 0 in the low nibble
    assert pack(np.array([1.0, -6.0, 0.5]), "f4e2m1").data.tolist() == [0xF2, 0x01]
    # i3: -1 -> 0b111, 2 -> 0b010, -4 -> 0b100
    assert pack(np.array([-1, 2, -4]), "i3").data.tolist() == [0b00010111, 0b1]
    # u1
    assert pack(np.array([1, 0, 1, 1, 0, 0, 0, 1, 1]), "u1").data.tolist() == [0b10001101, 1]
    # f8e4m3: 1.0 = 0x38, f8e5m2: 1.0 = 0x3c, bf16 1.0 = 0x3f80 little-endian
    assert pack(np.array([1.0, -448.0]), "f8e4m3").data.tolist() == [0x38, 0xFE]
    assert pack(np.array([1.0, -np.inf]), "f8e5m2").data.tolist() == [0x3C, 0xFC]
    assert pack(np.array([1.0]), "bf16").data.tolist() == [0x80, 0x3F]
    assert pack(np.array([-1]), "i32").data.tolist() == [0xFF] * 4


def test_scalar_and_list_inputs():
    packed = pack(2.0, "f6e3m2")
    assert packed.shape == () and unpack(packed).item() == 2.0
    packed = pack([[1, 2], [3, -4]], "i4")
    assert packed.shape == (2, 2)
    np.testing.assert_array_equal(unpack(packed), [[1, 2], [3, -4]])
    packed = pack(np.array([True, False, True]), "u1")
    np.testing.assert_array_equal(unpack(packed), [1, 0, 1])


# ==== PackedTensor and codes ======================================================================
@pytest.mark.parametrize("dt", PACK_DTYPES, ids=str)
def test_from_codes_round_trip(dt):
    rng = np.random.default_rng(dt.bits)
    for shape in ((3, 5), (0,), (1,), (2, 3, 7)):
        codes = rng.integers(0, 1 << dt.bits, shape, dtype=np.int64).astype(dt.code_dtype)
        packed = PackedTensor.from_codes(codes, dt.name)
        assert packed.dtype == dt and packed.shape == shape
        got = packed.codes()
        assert got.dtype == dt.code_dtype
        np.testing.assert_array_equal(got, codes)
        assert packed.data.tobytes() == ref_pack(codes.reshape(-1).tolist(), dt.bits)
        ok = same_values(unpack(packed), ref_values(dt, codes.astype(np.int64)))
        assert ok.all()


@pytest.mark.parametrize(
    "dt", [D.u1, D.i3, D.f4e2m1, D.u7, D.f8e4m3, int_type(12, False), D.f16, D.i32], ids=str
)
def test_from_codes_rejects_codes_that_do_not_fit(dt):
    with pytest.raises(PackingError):
        PackedTensor.from_codes(np.array([0, 1 << dt.bits], np.int64), dt)
    with pytest.raises(PackingError):
        PackedTensor.from_codes(np.array([-1], np.int64), dt)
    with pytest.raises(PackingError):
        PackedTensor.from_codes(np.array([1.0]), dt)


@pytest.mark.parametrize("code", [2**64 - 1, 2**63, 2**63 + 1])
def test_from_codes_rejects_huge_uint64_codes(code):
    """A uint64 code >= 2^63 does not fit in 8 bits either (it must not wrap to a small code)."""
    with pytest.raises(PackingError):
        packed = PackedTensor.from_codes(np.array([code], np.uint64), D.u8)
        pytest.fail(f"from_codes accepted uint64 code {code} for u8, codes() = {packed.codes()}")


def test_packed_tensor_on_numpy_buffer():
    values = np.array([[1, -2, 3], [0, -4, 3]])
    packed = pack(values, "i3")
    again = PackedTensor(packed.data, [2, 3], "i3")
    assert again.data is packed.data  # never copied
    assert again.shape == (2, 3) and again.dtype == D.i3 and again.size == 6
    np.testing.assert_array_equal(unpack(again), values)
    # a longer buffer is fine: only the first nbytes are read
    longer = np.concatenate([packed.data, np.full(5, 0xFF, np.uint8)])
    np.testing.assert_array_equal(unpack(PackedTensor(longer, (2, 3), D.i3)), values)
    assert "i3" in repr(again)


@pytest.mark.parametrize(
    "dt, shape, nbytes",
    [(D.u3, (3, 5), 6), (D.f4e2m1, (7,), 4), (D.u1, (9,), 2), (D.i32, (2,), 8), (D.f16, (3,), 6),
     (float_type(1, 6), (2,), 2), (int_type(17, True), (3,), 7)],
    ids=str,
)
def test_buffer_too_small(dt, shape, nbytes):
    PackedTensor(np.zeros(nbytes, np.uint8), shape, dt)
    with pytest.raises(PackingError):
        PackedTensor(np.zeros(nbytes - 1, np.uint8), shape, dt)
    with pytest.raises(PackingError):
        PackedTensor(torch.zeros(nbytes - 1, dtype=torch.uint8), shape, dt)


@pytest.mark.parametrize(
    "buffer",
    [np.zeros(8, np.int8), np.zeros(8, np.uint16), np.zeros(8, np.float32), b"\x00" * 8,
     [0] * 8, torch.zeros(8, dtype=torch.int8), torch.zeros(8, dtype=torch.float32)],
    ids=["int8", "uint16", "float32", "bytes", "list", "torch-int8", "torch-float32"],
)
def test_buffer_must_be_uint8(buffer):
    with pytest.raises(PackingError):
        PackedTensor(buffer, (4,), "u4")


def test_packed_tensor_argument_errors():
    with pytest.raises(PackingError):
        PackedTensor(np.zeros(4, np.uint8), (-1, 2), "u4")
    with pytest.raises(DTypeError):
        PackedTensor(np.zeros(4, np.uint8), (2,), "u0")
    with pytest.raises(PackingError):
        unpack(np.zeros(4, np.uint8))
    with pytest.raises(PackingError):
        pack(np.array(["a", "b"]), "u8")
    with pytest.raises(PackingError):
        pack(np.array([1 + 2j]), "f32")
    with pytest.raises(DTypeError):
        pack(np.array([1.0]), "f8e4m4")


# ==== torch interop ===============================================================================
def test_torch_uint8_buffer():
    values = np.array([[0.5, -1.5, 6.0], [-0.0, 3.0, 0.0]])
    raw = pack(values, "f4e2m1").data
    buf = torch.from_numpy(raw.copy())
    packed = PackedTensor(buf, (2, 3), "f4e2m1")
    assert packed.data is buf
    ok = same_values(unpack(packed), values)
    assert ok.all()
    np.testing.assert_array_equal(packed.codes(), [[1, 11, 7], [8, 5, 0]])
    # the tensor is used in place, not copied: writing to it changes what is read
    buf[0] = 0x22  # elements 0 and 1 become code 2 (1.0)
    np.testing.assert_array_equal(unpack(packed)[0, :2], [1.0, 1.0])
    # a 2-D uint8 tensor holds the same bytes
    buf2 = torch.from_numpy(np.concatenate([raw, [0]]).reshape(2, 2).astype(np.uint8))
    ok = same_values(unpack(PackedTensor(buf2, (2, 3), D.f4e2m1)), values)
    assert ok.all()


@pytest.mark.parametrize(
    "tensor, dt, expected",
    [
        (torch.tensor([[1.5, -2.0], [6.0, 0.5]]), "f4e2m1", [[1.5, -2.0], [6.0, 0.5]]),
        (torch.tensor([1, -2, 3], dtype=torch.int8), "i3", [1, -2, 3]),
        (torch.tensor([7, 0, 255], dtype=torch.uint8), "u8", [7, 0, 255]),
        (torch.tensor([2**31 - 1, -(2**31)], dtype=torch.int32), "i32", [2**31 - 1, -(2**31)]),
        (torch.tensor([True, False, True]), "u1", [1, 0, 1]),
        (torch.tensor([1.0078125, -3.0e38, 1e-40], dtype=torch.bfloat16), "bf16", None),
        (torch.tensor([65504.0, -6.0e-8, 0.1], dtype=torch.float16), "f16", None),
        (torch.tensor([448.0, -0.001953125]), "f8e4m3", [448.0, -0.001953125]),
        (torch.tensor([0.1, 1e-30, -3.4e38], dtype=torch.float64), "f32", None),
    ],
    ids=["f4", "i3", "u8", "i32", "bool", "bf16", "f16", "e4m3", "f32"],
)
def test_pack_accepts_torch_tensors(tensor, dt, expected):
    if expected is None:  # exactly representable: the tensor's own values, through float64
        if tensor.dtype == torch.float64:
            expected = tensor.numpy().astype(np.float32).astype(np.float64)
        else:
            expected = tensor.float().numpy().astype(np.float64)
        tensor = tensor if tensor.dtype != torch.float64 else torch.from_numpy(expected)
    packed = pack(tensor, dt)
    ok = same_values(unpack(packed), np.asarray(expected))
    assert ok.all(), unpack(packed)


# ==== out-of-range values =========================================================================
@pytest.mark.parametrize("dt", ALL_FLOATS, ids=str)
def test_float_overflow_threshold(dt):
    top, _ = ref_max(dt)
    t, tie_overflows = ref_overflow_threshold(dt)
    below = float(np.nextafter(t, 0))
    above = float(np.nextafter(t, np.inf))
    for sign in (1.0, -1.0):
        # just below the threshold: packs, rounding to +-max
        np.testing.assert_array_equal(unpack(pack(np.array([sign * below]), dt)), [sign * top])
        # beyond it: an error naming the type and the value
        with pytest.raises(PackingError) as excinfo:
            pack(np.array([0.0, sign * above]), dt)
        message = error_message(excinfo)
        assert dt.name in message and str(sign * above) in message, message
        # the threshold itself: out exactly when the tie rounds up (to the even code)
        if tie_overflows:
            with pytest.raises(PackingError) as excinfo:
                pack(np.array([sign * t]), dt)
            assert dt.name in error_message(excinfo) and str(sign * t) in error_message(excinfo)
        else:
            np.testing.assert_array_equal(unpack(pack(np.array([sign * t]), dt)), [sign * top])
        # saturate=True clamps instead
        far = np.array([sign * above, sign * t, sign * top * 4, sign * 1e300])
        np.testing.assert_array_equal(unpack(pack(far, dt, saturate=True)), [sign * top] * 4)


def test_f4e2m1_threshold_examples():
    assert unpack(pack(np.array([6.9, -6.9, 6.999]), "f4e2m1")).tolist() == [6.0, -6.0, 6.0]
    for bad in (7.0, -7.0, 8.0, 100.0):
        with pytest.raises(PackingError) as excinfo:
            pack(np.array([1.0, bad]), "f4e2m1")
        assert "f4e2m1" in error_message(excinfo) and str(bad) in error_message(excinfo)
    assert unpack(pack(np.array([7.0, -100.0]), "f4e2m1", saturate=True)).tolist() == [6.0, -6.0]
    # OCP e4m3: 464 is a tie that rounds down to 448 (even code 0x7e); e5m2: 61440 rounds to inf
    assert unpack(pack(np.array([464.0]), "f8e4m3")).tolist() == [448.0]
    with pytest.raises(PackingError):
        pack(np.array([464.5]), "f8e4m3")
    with pytest.raises(PackingError):
        pack(np.array([61440.0]), "f8e5m2")
    assert unpack(pack(np.array([61439.0]), "f8e5m2")).tolist() == [57344.0]
    with pytest.raises(PackingError):
        pack(np.array([65520.0]), "f16")
    assert unpack(pack(np.array([65519.99]), "f16")).tolist() == [65504.0]


@pytest.mark.parametrize("dt", ALL_FLOATS, ids=str)
def test_nan_and_inf(dt):
    conv = convention(dt)
    top, _ = ref_max(dt)
    for value, has in ((np.nan, conv != "finite"), (np.inf, conv == "ieee"),
                       (-np.inf, conv == "ieee")):
        x = np.array([1.0, value])
        if has:
            ok = same_values(unpack(pack(x, dt)), x)
            assert ok.all()
        else:
            with pytest.raises(PackingError) as excinfo:
                pack(x, dt)
            message = error_message(excinfo)
            assert dt.name in message and str(value) in message, message
    # saturate=True: inf clamps to the finite range, NaN becomes 0, where the type lacks them
    got = unpack(pack(np.array([np.nan, np.inf, -np.inf]), dt, saturate=True))
    if conv == "ieee":
        expected = [np.nan, np.inf, -np.inf]
    elif conv == "fn":
        expected = [np.nan, top, -top]
    else:
        expected = [0.0, top, -top]
    assert np.isnan(got[0]) == np.isnan(expected[0])
    np.testing.assert_array_equal(got[1:], expected[1:])
    if conv == "finite":
        assert got[0] == 0.0


@pytest.mark.parametrize("dt", INT_DTYPES, ids=str)
def test_int_out_of_range(dt):
    hi, _ = ref_max(dt)
    lo = -hi - 1 if dt.is_signed else 0
    np.testing.assert_array_equal(unpack(pack(np.array([lo, hi, 0]), dt)), [lo, hi, 0])
    np.testing.assert_array_equal(unpack(pack(np.array([float(lo), float(hi)]), dt)), [lo, hi])
    for bad in (hi + 1, lo - 1, hi + 1000):
        with pytest.raises(PackingError) as excinfo:
            pack(np.array([lo, bad], np.int64), dt)
        message = error_message(excinfo)
        assert dt.name in message and str(bad) in message, message
    for bad in (0.5, -1.25, float(hi) + 0.5, np.nan, np.inf, -np.inf, float(hi + 1)):
        with pytest.raises(PackingError) as excinfo:
            pack(np.array([0.0, bad]), dt)
        message = error_message(excinfo)
        assert dt.name in message and str(bad) in message, message
    # saturate=True: clamp, round half to even, NaN -> 0
    x = np.array([hi + 1.0, lo - 1.0, 2.5, np.nan, np.inf, -np.inf, 1e300, 0.5])
    expected = [hi, lo, min(max(2, lo), hi), 0, hi, lo, hi, 0]
    np.testing.assert_array_equal(unpack(pack(x, dt, saturate=True)), expected)
    ints = np.array([hi + 1, lo - 1, hi + 7], np.int64)
    np.testing.assert_array_equal(unpack(pack(ints, dt, saturate=True)), [hi, lo, hi])


@pytest.mark.parametrize("dt", [D.u8, D.i8, D.u32], ids=str)
def test_saturate_huge_uint64(dt):
    """saturate=True clamps uint64 values >= 2^63 to max (they must not wrap to negative)."""
    hi, _ = ref_max(dt)
    values = np.array([2**64 - 1, 2**63], np.uint64)
    with pytest.raises(PackingError):
        pack(values, dt)
    got = unpack(pack(values, dt, saturate=True))
    assert got.tolist() == [hi, hi], f"pack(uint64 {values.tolist()}, {dt}, saturate=True)"


def test_error_names_the_first_offending_value():
    with pytest.raises(PackingError) as excinfo:
        pack(np.array([[1, 2], [300, 400]]), "u8")
    message = error_message(excinfo)
    assert "300" in message and "u8" in message
    # in-range non-representable floats are not errors: they round (2.25 -> 2, a tie to even)
    assert unpack(pack(np.array([0.5, 1.5, 2.25]), "f4e2m1")).tolist() == [0.5, 1.5, 2.0]
