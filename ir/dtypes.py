"""Data types of any bit width, and exact conversions between them and float64/int64.

A :class:`DType` is a frozen value. Integer types are two's complement (signed) or plain binary
(unsigned) of 1..32 bits. Float types are sign-magnitude with ``exponent`` and ``mantissa``
field widths and one of three conventions for special values:

- ``"ieee"``: the all-ones exponent encodes inf (zero mantissa) and NaN (f16, bf16, f32, f8e5m2);
- ``"fn"``: no infinities, NaN only at the all-ones code of each sign (OCP f8e4m3);
- ``"finite"``: every code is a finite number (Tilus sub-byte floats, OCP f4e2m1 and f6 types).

The exponent bias is always ``2^(e-1) - 1``.

Conversion semantics (the specification every backend follows):

- float -> float and float -> int round to nearest, ties to even, and saturate finite values to
  the target's finite range; infinities stay infinite where the target has them and saturate
  otherwise; NaN stays NaN where the target has it and becomes 0 otherwise;
- int -> int and int -> float are value conversions with the same rounding and saturation;
- arithmetic results (see the interpreter) round to nearest even without saturating: overflow
  gives inf in IEEE types.

Values are carried exactly in float64 (every float type here has at most 24 significand bits and
an exponent range inside float64's) and int64. ``encode`` maps carried values to bit patterns
("codes", unsigned integers), ``decode`` maps codes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from bittile.errors import DTypeError

__all__ = [
    "DType",
    "int_type",
    "float_type",
    "dtype_from_name",
    "ALL_DTYPES",
    "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u16", "u32",
    "i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i16", "i32",
    "f16", "bf16", "f32", "f8e4m3", "f8e5m2", "f6e3m2", "f6e2m3", "f4e2m1",
    "boolean",
]


@dataclass(frozen=True)
class DType:
    """A data type: kind ("int", "uint" or "float") and bit width, plus float field widths."""

    kind: str
    bits: int
    exponent: int = 0
    mantissa: int = 0
    special: str = "none"  # floats: "ieee" | "fn" | "finite"; ints: "none"
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", _default_name(self))

    def __repr__(self) -> str:
        return f"bittile.{self.name}"

    def __str__(self) -> str:
        return self.name

    def __reduce__(self):
        return (dtype_from_name, (self.name,))

    def __getitem__(self, shape):
        """``f16["M", "K"]`` in a Python kernel's annotations: a tensor parameter. The frontend
        reads annotations from the source; this only keeps evaluating them harmless."""
        return ("tensor", self, shape)

    # ---- classification -------------------------------------------------------------------
    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def is_signed(self) -> bool:
        return self.kind == "int" or self.kind == "float"

    @property
    def is_subbyte(self) -> bool:
        return self.bits < 8

    @property
    def supports_arithmetic(self) -> bool:
        """Arithmetic is defined on integers and on f16, bf16 and f32; narrower floats are
        storage formats that are cast to a wider type first."""
        return self.is_int or (self.is_float and self.bits >= 16)

    @property
    def has_inf(self) -> bool:
        return self.special == "ieee"

    @property
    def has_nan(self) -> bool:
        return self.special in ("ieee", "fn")

    @property
    def bias(self) -> int:
        return (1 << (self.exponent - 1)) - 1

    # ---- ranges ----------------------------------------------------------------------------
    @cached_property
    def max_code(self) -> int:
        """The code of the largest finite value (for floats: of the positive one)."""
        if self.kind == "uint":
            return (1 << self.bits) - 1
        if self.kind == "int":
            return (1 << (self.bits - 1)) - 1
        magnitude_codes = 1 << (self.bits - 1)
        if self.special == "ieee":
            return ((1 << self.exponent) - 1 << self.mantissa) - 1
        if self.special == "fn":
            return magnitude_codes - 2
        return magnitude_codes - 1

    @property
    def max(self) -> float | int:
        if self.is_int:
            return self.max_code
        return float(_decode_float_magnitude(np.array([self.max_code], np.int64), self)[0])

    @property
    def min(self) -> float | int:
        if self.kind == "uint":
            return 0
        if self.kind == "int":
            return -(1 << (self.bits - 1))
        return -self.max

    @property
    def smallest_normal(self) -> float:
        self._require_float("smallest_normal")
        return 2.0 ** (1 - self.bias)

    @property
    def smallest_subnormal(self) -> float:
        self._require_float("smallest_subnormal")
        return 2.0 ** (1 - self.bias - self.mantissa)

    def _require_float(self, what: str) -> None:
        if not self.is_float:
            raise DTypeError(f"{what} is defined for float types only, not {self.name}")

    # ---- codes and values ------------------------------------------------------------------
    @property
    def code_dtype(self) -> np.dtype:
        """The smallest unsigned numpy type that holds one code."""
        for nbits, np_type in ((8, np.uint8), (16, np.uint16), (32, np.uint32)):
            if self.bits <= nbits:
                return np.dtype(np_type)
        raise AssertionError(self.bits)

    @property
    def carrier(self) -> np.dtype:
        """The numpy type that carries values of this type exactly."""
        return np.dtype(np.float64 if self.is_float else np.int64)

    def value_table(self) -> np.ndarray:
        """Every value, indexed by code (2^bits entries); only for types of at most 8 bits."""
        if self.bits > 8:
            raise DTypeError(f"value tables exist for types of at most 8 bits, not {self.name}")
        return self._table

    @cached_property
    def _table(self) -> np.ndarray:
        table = self.decode(np.arange(1 << self.bits, dtype=np.uint64))
        table.setflags(write=False)
        return table

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes (any unsigned integer array; only the low ``bits`` bits are used) to values."""
        codes = np.asarray(codes).astype(np.uint64) & np.uint64((1 << self.bits) - 1)
        if self.kind == "uint":
            return codes.astype(np.int64)
        if self.kind == "int":
            signed = codes.astype(np.int64)
            return np.where(signed >= (1 << (self.bits - 1)), signed - (1 << self.bits), signed)
        native = _NUMPY_EQUIVALENT.get(self.name)
        if native is not None:  # f16, f32: numpy decodes the same bits, only faster
            word = np.dtype(f"<u{self.bits // 8}")
            with np.errstate(invalid="ignore"):  # signalling NaNs quieten, as intended
                return codes.astype(word).view(native).astype(np.float64)
        return _decode_float(codes.astype(np.int64), self)

    def encode(self, values, *, saturate: bool = True) -> np.ndarray:
        """Values to codes (``code_dtype``), rounding to nearest even.

        ``saturate=True`` is the conversion semantics (finite values clamp to the finite
        range); ``saturate=False`` is the arithmetic semantics (overflow gives inf for IEEE
        types; types without inf still clamp, having nothing else to give).
        """
        values = np.asarray(values)
        if self.is_int:
            codes = _encode_int(values, self)
        elif self.name in ("f16", "f32"):
            codes = _encode_native_float(values.astype(np.float64), self, saturate)
        else:
            codes = _encode_float(values.astype(np.float64), self, saturate)
        return codes.astype(self.code_dtype)

    def round(self, values, *, saturate: bool = True) -> np.ndarray:
        """Values to the nearest values of this type, in the carrier type."""
        return self.decode(self.encode(values, saturate=saturate))

    def wrap(self, values: np.ndarray) -> np.ndarray:
        """Integer values modulo 2^bits into this type's range (two's complement)."""
        if not self.is_int:
            raise DTypeError(f"wrap is defined for integer types only, not {self.name}")
        return self.decode(np.asarray(values, np.int64).astype(np.uint64))

    def numpy_dtype(self) -> np.dtype | None:
        """The numpy dtype with the same bits in memory, if numpy has one."""
        return _NUMPY_EQUIVALENT.get(self.name)


def _default_name(dt: DType) -> str:
    if dt.kind == "uint":
        return f"u{dt.bits}"
    if dt.kind == "int":
        return f"i{dt.bits}"
    return f"f{dt.bits}e{dt.exponent}m{dt.mantissa}"


# ---- integer conversion ------------------------------------------------------------------------
def _encode_int(values: np.ndarray, dt: DType) -> np.ndarray:
    lo, hi = dt.min, dt.max
    if values.dtype.kind == "f":
        clean = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=hi, neginf=lo)
        ints = np.rint(np.clip(clean, lo, hi)).astype(np.int64)
    elif values.dtype.kind == "u":
        ints = np.minimum(values, np.uint64(hi)).astype(np.int64)
    else:
        ints = np.clip(values.astype(np.int64), lo, hi)
    return (ints & ((1 << dt.bits) - 1)).astype(np.uint64)


# ---- float conversion --------------------------------------------------------------------------
def _decode_float_magnitude(mag: np.ndarray, dt: DType) -> np.ndarray:
    """Magnitude codes (sign bit cleared) to finite non-negative values."""
    m = dt.mantissa
    biased = mag >> m
    frac = mag & ((1 << m) - 1)
    significand = np.where(biased > 0, frac + (1 << m), frac).astype(np.float64)
    exponent = np.maximum(biased, 1) - dt.bias - m
    return np.ldexp(significand, exponent.astype(np.int32))


def _decode_float(codes: np.ndarray, dt: DType) -> np.ndarray:
    sign_bit = 1 << (dt.bits - 1)
    negative = (codes & sign_bit) != 0
    mag = codes & (sign_bit - 1)
    values = _decode_float_magnitude(mag, dt)
    if dt.special == "ieee":
        inf_code = ((1 << dt.exponent) - 1) << dt.mantissa
        values = np.where(mag == inf_code, np.inf, values)
        values = np.where(mag > inf_code, np.nan, values)
    elif dt.special == "fn":
        values = np.where(mag == sign_bit - 1, np.nan, values)
    return np.where(negative, -values, values)


def _encode_float(x: np.ndarray, dt: DType, saturate: bool) -> np.ndarray:
    """Round-to-nearest-even encoding valid for every float layout up to 24 significand bits.

    With ``k = max(floor(log2|x|), emin)``, ``|x| / 2^(k - m)`` counts quanta of the binade
    (normal: in [2^m, 2^(m+1)); subnormal: [0, 2^m)); with ``n`` that count rounded, the
    magnitude code is ``(k - emin) * 2^m + n``, and a carry of ``n`` into the next binade
    lands on the right code. The division is by a power of two, hence exact. Ties go to the
    even code.
    """
    m, emin = dt.mantissa, 1 - dt.bias
    sign = np.signbit(x)
    a = np.abs(x)
    finite = np.isfinite(a)
    safe = np.where(finite, a, 0.0)
    _, e2 = np.frexp(safe)
    k = np.where(safe == 0, emin, np.maximum(e2.astype(np.int64) - 1, emin))
    scaled = np.ldexp(safe, (m - k).astype(np.int32))
    lower = np.floor(scaled)
    mag_lower = (k - emin) * (1 << m) + lower.astype(np.int64)
    # Nearest code; a tie goes to the even code (for m >= 1 that is rint's even significand,
    # for m = 0 it decides between two binades).
    mag = np.where(scaled - lower > 0.5, mag_lower + 1, mag_lower)
    mag = np.where(scaled - lower == 0.5, mag_lower + (mag_lower & 1), mag)
    max_code = dt.max_code
    if dt.has_inf:
        inf_code = ((1 << dt.exponent) - 1) << m
        mag = np.minimum(mag, max_code if saturate else inf_code)
        mag = np.where(np.isinf(a), inf_code, mag)
    else:
        mag = np.minimum(mag, max_code)
        mag = np.where(np.isinf(a), max_code, mag)
    if dt.has_nan:
        nan_code = (1 << (dt.bits - 1)) - 1
        mag = np.where(np.isnan(a), nan_code, mag)
        sign = np.where(np.isnan(a), False, sign)  # one canonical NaN, whatever numpy made
    else:
        mag = np.where(np.isnan(a), 0, mag)
        sign = np.where(np.isnan(a), False, sign)
    return (mag | np.where(sign, 1 << (dt.bits - 1), 0)).astype(np.uint64)


def _encode_native_float(x: np.ndarray, dt: DType, saturate: bool) -> np.ndarray:
    """f16 and f32 through numpy's own correctly rounded conversion (same results as
    :func:`_encode_float`, NaN canonicalized the same way: positive, all mantissa bits set)."""
    native = _NUMPY_EQUIVALENT[dt.name]
    word = np.dtype(f"<u{dt.bits // 8}")
    if saturate:
        x = np.where(np.isfinite(x), np.clip(x, -dt.max, dt.max), x)
    with np.errstate(over="ignore", invalid="ignore"):  # NaNs are replaced below
        codes = x.astype(native).view(word).astype(np.uint64)
    nan_code = np.uint64((1 << (dt.bits - 1)) - 1)
    return np.where(np.isnan(x), nan_code, codes)


# ---- the named types ---------------------------------------------------------------------------
def int_type(bits: int, signed: bool) -> DType:
    """The integer type of ``bits`` (1..32) bits."""
    if not isinstance(bits, int) or not 1 <= bits <= 32:
        raise DTypeError(f"integer types have 1 to 32 bits, not {bits!r}")
    return DType("int" if signed else "uint", bits)


def float_type(exponent: int, mantissa: int) -> DType:
    """The float with these field widths and a sign bit, at most 8 bits in total.

    Sub-byte and non-OCP 8-bit layouts follow Tilus (every code finite, bias 2^(e-1)-1);
    e4m3 and e5m2 are the OCP FP8 types ``f8e4m3`` and ``f8e5m2``.
    """
    if not (isinstance(exponent, int) and isinstance(mantissa, int)):
        raise DTypeError("float_type takes integer exponent and mantissa widths")
    if exponent < 1 or mantissa < 0 or 1 + exponent + mantissa > 8:
        raise DTypeError(
            f"float_type({exponent}, {mantissa}) needs exponent >= 1, mantissa >= 0 and at most "
            "8 bits in total (sign + exponent + mantissa)",
            hint="use f16, bf16 or f32 for wider floats",
        )
    bits = 1 + exponent + mantissa
    name = f"f{bits}e{exponent}m{mantissa}"
    if name in _BY_NAME:
        return _BY_NAME[name]
    return DType("float", bits, exponent, mantissa, "finite")


u1, u2, u3, u4, u5, u6, u7, u8 = (int_type(b, False) for b in range(1, 9))
i1, i2, i3, i4, i5, i6, i7, i8 = (int_type(b, True) for b in range(1, 9))
u16, u32 = int_type(16, False), int_type(32, False)
i16, i32 = int_type(16, True), int_type(32, True)
f16 = DType("float", 16, 5, 10, "ieee", "f16")
bf16 = DType("float", 16, 8, 7, "ieee", "bf16")
f32 = DType("float", 32, 8, 23, "ieee", "f32")
f8e4m3 = DType("float", 8, 4, 3, "fn", "f8e4m3")
f8e5m2 = DType("float", 8, 5, 2, "ieee", "f8e5m2")
f6e3m2 = DType("float", 6, 3, 2, "finite", "f6e3m2")
f6e2m3 = DType("float", 6, 2, 3, "finite", "f6e2m3")
f4e2m1 = DType("float", 4, 2, 1, "finite", "f4e2m1")
#: Comparisons produce ``u1`` values (0 or 1); ``boolean`` is that type.
boolean = u1

ALL_DTYPES: tuple[DType, ...] = (
    u1, u2, u3, u4, u5, u6, u7, u8, u16, u32,
    i1, i2, i3, i4, i5, i6, i7, i8, i16, i32,
    f16, bf16, f32, f8e4m3, f8e5m2, f6e3m2, f6e2m3, f4e2m1,
)
_BY_NAME: dict[str, DType] = {dt.name: dt for dt in ALL_DTYPES}
_BY_NAME["bool"] = u1

_NUMPY_EQUIVALENT = {
    "u8": np.dtype(np.uint8), "u16": np.dtype(np.uint16), "u32": np.dtype(np.uint32),
    "i8": np.dtype(np.int8), "i16": np.dtype(np.int16), "i32": np.dtype(np.int32),
    "f16": np.dtype(np.float16), "f32": np.dtype(np.float32),
}


def dtype_from_name(name: str) -> DType:
    """The dtype spelled ``name``: a named type, ``uN``/``iN`` (1..32) or ``fNeEmM`` (<= 8 bits)."""
    if isinstance(name, DType):
        return name
    if name in _BY_NAME:
        return _BY_NAME[name]
    import re

    if m := re.fullmatch(r"([ui])(\d+)", name):
        return int_type(int(m[2]), m[1] == "i")
    if m := re.fullmatch(r"f(\d+)e(\d+)m(\d+)", name):
        dt = float_type(int(m[2]), int(m[3]))
        if dt.bits == int(m[1]):
            return dt
    raise DTypeError(
        f"unknown dtype {name!r}",
        hint="dtypes are u1..u32, i1..i32, f16, bf16, f32, f8e4m3, f8e5m2, f6e3m2, f6e2m3, "
        "f4e2m1, or fNeEmM for other floats of at most 8 bits",
    )
