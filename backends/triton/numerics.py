"""bittile's numerics as Triton expressions (text), bit-exact to ``ir/dtypes.py`` and
``backends/interp/semantics.py``.

Carriers (what a generated kernel holds for a value of each dtype):

- integers of up to 31 bits and ``i32``: an int32 holding the value (sign-extended or, for
  unsigned types, non-negative); ``u32``: a uint32;
- floats: their *value* in an f32 (exact for every bittile float; a NaN stands for the
  canonical NaN) or their *code* in an int32 (the bit pattern, non-negative except f32's).

Every function returns an expression; the device functions it names (``_decode_narrow``...)
live in ``device_lib.py`` and are copied into the generated module when used.
"""

from __future__ import annotations

from bittile.errors import InternalError
from bittile.ir.dtypes import DType

__all__ = [
    "int_carrier", "memory_type", "decode", "encode", "round_value", "round_f64", "wrap",
    "cast", "constant", "float_literal",
]


def int_carrier(dtype: DType) -> str:
    """The Triton type holding values of integer ``dtype``."""
    return "tl.uint32" if dtype.kind == "uint" and dtype.bits == 32 else "tl.int32"


def memory_type(dtype: DType) -> str | None:
    """The Triton element type of a tensor of ``dtype`` in memory (signed integers of the
    element's width, uint8 for unsigned bytes), or None for packed (bitstream) tensors."""
    if dtype.bits == 8:
        return "tl.int8" if dtype.kind == "int" else "tl.uint8"
    if dtype.bits == 16:
        return "tl.int16"
    if dtype.bits == 32:
        return "tl.int32"
    return None


def float_literal(value: float) -> str:
    """A Python expression of ``value`` that Triton accepts inside a kernel."""
    if value != value:
        return 'float("nan")'
    if value in (float("inf"), float("-inf")):
        return 'float("inf")' if value > 0 else '-float("inf")'
    return repr(float(value))


def constant(value, dtype: DType, form: str) -> str:
    """A typed scalar holding constant ``value`` of ``dtype`` in carrier ``form``."""
    if dtype.is_int:
        return f"tl.cast({int(value)}, {int_carrier(dtype)})"
    if form == "val":
        return f"tl.cast({float_literal(float(value))}, tl.float32)"
    code = int(dtype.encode([float(value)], saturate=False)[0])
    if dtype.bits == 32 and code >= 1 << 31:
        code -= 1 << 32
    return f"tl.cast({code}, tl.int32)"


# ---- integers ----------------------------------------------------------------------------------
def wrap(dtype: DType, x: str) -> str:
    """An int32 result of arithmetic reduced modulo 2^bits into ``dtype``'s range."""
    if dtype.bits >= 32:
        return x
    if dtype.kind == "int":
        shift = 32 - dtype.bits
        return f"(({x} << {shift}) >> {shift})"
    return f"({x} & {(1 << dtype.bits) - 1})"


def _int_to_int(x: str, src: DType, dst: DType) -> str:
    if src == dst:
        return x
    if int_carrier(src) == "tl.uint32":
        if dst.max >= src.max:
            return x
        return f"tl.minimum({x}, {dst.max}).to(tl.int32)"
    if int_carrier(dst) == "tl.uint32":
        return x if src.min >= 0 else f"tl.maximum({x}, 0).to(tl.uint32)"
    if dst.min > src.min:
        x = f"tl.maximum({x}, {dst.min})"
    if dst.max < src.max:
        x = f"tl.minimum({x}, {dst.max})"
    return x


# ---- floats ------------------------------------------------------------------------------------
def _is_wide(dtype: DType) -> bool:
    """f16, bf16 and f32: the float types with arithmetic, held as values."""
    return dtype.is_float and dtype.bits >= 16


def _inf_code(dtype: DType) -> int:
    return ((1 << dtype.exponent) - 1) << dtype.mantissa


def decode(dtype: DType, code: str) -> str:
    """The f32 value of a code of float ``dtype``."""
    if dtype.name == "f32":
        return f"{code}.to(tl.float32, bitcast=True)"
    if dtype.name == "f16":
        return f"_decode_f16({code})"
    if dtype.name == "bf16":
        return f"_decode_bf16({code})"
    if dtype.bits > 16 or dtype.exponent >= 8:
        raise InternalError(f"no decoder for {dtype}")
    if dtype.special == "ieee":
        first_special = _inf_code(dtype)
    elif dtype.special == "fn":
        first_special = (1 << (dtype.bits - 1)) - 1
    else:
        first_special = 0
    min_normal = float_literal(2.0 ** (1 - dtype.bias))
    return (f"_decode_narrow({code}, {dtype.bits}, {dtype.mantissa}, {dtype.bias}, "
            f"{first_special}, {min_normal})")


def encode(dtype: DType, value: str, saturate: bool) -> str:
    """The code of an f32 value in float ``dtype``: ``dtype.encode(value, saturate=...)``."""
    if dtype.name == "f32":
        return f"_encode_f32({value})"
    if dtype.name == "f16":
        return f"_encode_f16({value}, {int(saturate)})"
    m, bias = dtype.mantissa, dtype.bias
    subnormal = dtype.exponent < 8
    emin = 1 - bias
    magic = float_literal(2.0 ** (emin - m + 23)) if subnormal else "0.0"
    magic_bits = (emin - m + 23 + 127) << 23 if subnormal else 0
    limit = _inf_code(dtype) if dtype.has_inf and not saturate else dtype.max_code
    inf_code = _inf_code(dtype) if dtype.has_inf and saturate else 0
    nan_code = (1 << (dtype.bits - 1)) - 1 if dtype.has_nan else 0
    return (f"_encode_narrow({value}, {dtype.bits}, {m}, {bias}, {int(subnormal)}, {magic}, "
            f"{magic_bits}, {limit}, {inf_code}, {nan_code})")


def round_value(dtype: DType, value: str, saturate: bool = False) -> str:
    """An f32 value rounded to wide float ``dtype`` (an f32 value again); ``saturate`` clamps
    finite overflow to the largest finite value (conversions) instead of giving inf."""
    if dtype.name == "f32":
        return value
    if saturate:
        value = f"_saturate({value}, {float_literal(float(dtype.max))})"
    if dtype.name == "f16":
        return f"_round_f16({value})"
    if dtype.name == "bf16":
        return f"_round_bf16({value})"
    raise InternalError(f"{dtype} is not held as a value")


def round_f64(dtype: DType, value: str, saturate: bool = False) -> str:
    """An f64 value rounded once to float ``dtype``, as that dtype's carrier (value or code).
    Narrower than f32 it goes through f32 rounded to odd, which keeps the rounding single."""
    if dtype.name == "f32":
        return f"{value}.to(tl.float32)"
    as_f32 = f"_f32_odd({value})"
    if _is_wide(dtype):
        return round_value(dtype, as_f32, saturate)
    return encode(dtype, as_f32, saturate)


def _int_to_float(x: str, src: DType, dst: DType) -> str:
    exact_in_f32 = src.bits <= 24
    if exact_in_f32 or dst.name == "f32" or dst.max < 2.0**24:
        # exact, or rounded once by the conversion, or saturating anyway beyond 2^24
        value = f"{x}.to(tl.float32)"
        if _is_wide(dst):
            return round_value(dst, value, saturate=True)
        return encode(dst, value, saturate=True)
    return round_f64(dst, f"{x}.to(tl.float64)", saturate=True)


def _float_to_int(value: str, dst: DType) -> str:
    lo, above = float(dst.min), float(dst.max + 1)
    unsigned32 = int(int_carrier(dst) == "tl.uint32")
    return (f"_float_to_int({value}, {float_literal(lo)}, {float_literal(above)}, {dst.max}, "
            f"{unsigned32})")


def cast(x: str, src: DType, dst: DType) -> str:
    """``semantics.cast`` from ``src`` to ``dst``. ``x`` is the source's integer carrier or
    f32 value; the result is ``dst``'s integer carrier, f32 value (f16, bf16, f32) or code
    (narrower floats)."""
    if src.is_int and dst.is_int:
        return _int_to_int(x, src, dst)
    if src.is_int:
        return _int_to_float(x, src, dst)
    if dst.is_int:
        return _float_to_int(x, dst)
    if _is_wide(dst):
        return round_value(dst, x, saturate=True) if dst != src else x
    return encode(dst, x, saturate=True)
