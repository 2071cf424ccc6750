"""bittile's value conversions as LLVM IR, bit-exact to ``ir/dtypes.py``.

Representation (shared with the LLVM codegen): a value of an integer dtype of N bits is an LLVM
``iN`` (two's complement when signed); a value of a float dtype is its *code*, an ``iN`` holding
the bit pattern. Floats are computed as LLVM ``float``: every bittile float value is exact in
f32, so :func:`decode` is exact and :func:`encode` rounds once.

Every function takes an ``ir.IRBuilder`` and scalar *or vector* values and emits straight-line
code: integer and float arithmetic, ``select`` and intrinsics that lower to plain instructions
(``umin``, ``smax``, ``fabs``, ``roundeven``). No branches, no tables, no library calls and no
``half``/``bfloat`` types, which may lower to compiler-rt calls (``__truncsfhf2``...) that do not
resolve in the JIT; the loop vectorizer can widen all of it.

The rounding works on f32 bit patterns: a narrower float's normal codes are the f32 pattern
rebiased and shifted right with round-to-nearest-even; its subnormals (which lie in f32's
normal range, except bf16's, which are f32's own subnormals) are rounded by the FPU with a
"magic" addend that makes f32's ulp equal to the target's quantum. A double input is first
rounded to f32 *to odd*, which keeps the second rounding correct (f32 has at least two more
significand bits than every narrower bittile float). The default floating-point environment is
assumed: round to nearest even, subnormals neither flushed nor treated as zero.
"""

from __future__ import annotations

from llvmlite import ir

from bittile.errors import InternalError
from bittile.ir.dtypes import DType

__all__ = [
    "code_type",
    "decode",
    "encode",
    "float_to_int",
    "int_to_int",
    "int_to_float",
    "float_to_float",
    "canonicalize_nan",
    "round_arith",
]

_I32 = ir.IntType(32)
_F32 = ir.FloatType()
_F64 = ir.DoubleType()
_F32_ABS = 0x7FFFFFFF  # f32 magnitude mask, and the canonical f32 NaN
_F32_INF = 0x7F800000  # f32 +inf pattern (exponent mask)


# ---- small IR helpers ----------------------------------------------------------------------
def code_type(dtype: DType) -> ir.IntType:
    """The LLVM type holding one value (integer dtypes) or one code (float dtypes)."""
    return ir.IntType(dtype.bits)


def _like(scalar: ir.Type, value) -> ir.Type:
    """``scalar``, or a vector of it with as many lanes as ``value``'s type has."""
    ty = value.type
    return ir.VectorType(scalar, ty.count) if isinstance(ty, ir.VectorType) else scalar


def _elem(value) -> ir.Type:
    ty = value.type
    return ty.element if isinstance(ty, ir.VectorType) else ty


def _const(scalar: ir.Type, like, number) -> ir.Constant:
    """A constant (splat over ``like``'s lanes). Integers are wrapped to the type's width and
    written signed, the spelling LLVM's parser accepts for every width."""
    if isinstance(scalar, ir.IntType):
        n = scalar.width
        number &= (1 << n) - 1
        number = number - (1 << n) if number >> (n - 1) else number
    return ir.Constant(_like(scalar, like), number)


def _i32(like, number: int) -> ir.Constant:
    return _const(_I32, like, number)


def _mangle(ty: ir.Type) -> str:
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{_mangle(ty.element)}"
    if isinstance(ty, ir.IntType):
        return f"i{ty.width}"
    return {"float": "f32", "double": "f64"}[str(ty)]


def _intrinsic(b: ir.IRBuilder, name: str, *args):
    """Call the overloaded intrinsic ``llvm.<name>`` on operands of one type."""
    ty = args[0].type
    full = f"llvm.{name}.{_mangle(ty)}"
    fn = b.module.globals.get(full)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ty, [ty] * len(args)), full)
    return b.call(fn, list(args))


def _umin(b, x, limit: int):
    return _intrinsic(b, "umin", x, _const(_elem(x), x, limit))


def _is_double(value) -> bool:
    return isinstance(_elem(value), ir.DoubleType)


def _check_float_value(value, what: str) -> None:
    if not isinstance(_elem(value), (ir.FloatType, ir.DoubleType)):
        raise InternalError(f"{what} takes a float or double value, not {value.type}")


def _check_code(value, dtype: DType, what: str) -> None:
    elem = _elem(value)
    if not (isinstance(elem, ir.IntType) and elem.width == dtype.bits):
        raise InternalError(f"{what}: a {dtype.name} value is an i{dtype.bits}, not {value.type}")


def _require(dtype: DType, float_kind: bool, what: str) -> None:
    if dtype.is_float != float_kind:
        kind = "float" if float_kind else "integer"
        raise InternalError(f"{what} takes a {kind} dtype, not {dtype.name}")


def _is_f32(dtype: DType) -> bool:
    return dtype.bits == 32 and dtype.is_float


# ---- codes -> float ----------------------------------------------------------------------------
def decode(b: ir.IRBuilder, code, dtype: DType):
    """A float dtype's code (``iN``) as the exact LLVM ``float``; NaN codes give a NaN.

    f32 is a bitcast and bf16 a shift (its exponent field is f32's, so even its subnormals are
    f32's). Narrower layouts rebias the exponent with one integer add; see :func:`_decode_narrow`.
    """
    _require(dtype, True, "decode")
    _check_code(code, dtype, "decode")
    if dtype.bits == 32:
        return b.bitcast(code, _like(_F32, code))
    wide = b.zext(code, _like(_I32, code))
    if dtype.exponent == 8:
        return b.bitcast(b.shl(wide, _i32(wide, 32 - dtype.bits)), _like(_F32, code))
    return b.bitcast(_decode_narrow(b, wide, dtype), _like(_F32, code))


def _decode_narrow(b: ir.IRBuilder, c, dtype: DType):
    """f32 bits of a code (zero-extended to i32) of a layout with fewer than 8 exponent bits.

    Normal codes: magnitude shifted into f32's fields plus ``(127 - bias) << 23``. Subnormals
    (biased exponent 0) get the smallest normal's exponent instead, i.e. the value plus
    2^emin, and subtract 2^emin in float: exact (Sterbenz) and never an f32 subnormal, so it is
    right even with denormals flushed. Special codes get f32's all-ones exponent with their
    mantissa kept, which makes inf inf and every NaN code a NaN.
    """
    m, bits = dtype.mantissa, dtype.bits
    sign_bit = 1 << (bits - 1)
    sign = b.shl(b.and_(c, _i32(c, sign_bit)), _i32(c, 32 - bits))
    mag = b.and_(c, _i32(c, sign_bit - 1))
    fields = b.shl(mag, _i32(c, 23 - m))
    normal = b.add(fields, _i32(c, (127 - dtype.bias) << 23))
    if dtype.special != "finite":
        first_special = ((1 << dtype.exponent) - 1) << m if dtype.has_inf else sign_bit - 1
        special = b.icmp_unsigned(">=", mag, _i32(c, first_special))
        normal = b.select(special, b.or_(normal, _i32(c, _F32_INF)), normal)
    tiny = b.icmp_unsigned("<", mag, _i32(c, 1 << m))
    if m == 0:  # no subnormals: the only code below the normal range is zero
        sub = _i32(c, 0)
    else:
        as_min_normal = b.bitcast(b.add(normal, _i32(c, 1 << 23)), _like(_F32, c))
        min_normal = _const(_F32, c, 2.0 ** (1 - dtype.bias))
        sub = b.bitcast(b.fsub(as_min_normal, min_normal), _like(_I32, c))
    return b.or_(b.select(tiny, sub, normal), sign)


# ---- float -> codes ----------------------------------------------------------------------------
def encode(b: ir.IRBuilder, value, dtype: DType, *, saturate: bool):
    """``dtype.encode(value, saturate=saturate)``: the code (``iN``) of a ``float`` or ``double``.

    Round to nearest even. ``saturate`` clamps finite overflow to +-max (conversions); without
    it IEEE types overflow to inf (arithmetic results). Infinities stay infinite where the type
    has them and become +-max otherwise; NaN becomes the canonical NaN (positive, all exponent
    and mantissa bits set), or +0 in types without NaN. Integer dtypes: :func:`float_to_int`.
    """
    _check_float_value(value, "encode")
    if dtype.is_int:
        return float_to_int(b, value, dtype)
    if _is_f32(dtype):
        if _is_double(value):
            return _encode_f32_from_double(b, value, saturate)
        return b.bitcast(canonicalize_nan(b, value), _like(_I32, value))
    if _is_double(value):
        bits = _round_to_odd_f32(b, value)
    else:
        bits = b.bitcast(value, _like(_I32, value))
    return _encode_narrow(b, bits, dtype, saturate)


def _encode_f32_from_double(b: ir.IRBuilder, d, saturate: bool):
    """double -> f32 code: ``fptrunc`` is the correctly rounded conversion (overflow to inf);
    saturation turns an inf that came from a finite double into +-max, the pattern just below
    inf of the same sign."""
    t = b.bitcast(b.fptrunc(d, _like(_F32, d)), _like(_I32, d))
    if saturate:
        finite = b.fcmp_ordered("<", _intrinsic(b, "fabs", d), _const(_F64, d, float("inf")))
        is_inf = b.icmp_unsigned("==", b.and_(t, _i32(t, _F32_ABS)), _i32(t, _F32_INF))
        t = b.select(b.and_(finite, is_inf), b.sub(t, _i32(t, 1)), t)
    return b.select(b.fcmp_unordered("uno", d, d), _i32(t, _F32_ABS), t)


def _round_to_odd_f32(b: ir.IRBuilder, d):
    """f32 bits of a double rounded toward zero, with the last bit set if that was inexact.

    Rounding to odd into a format with at least two more significand bits than the target and
    then to nearest even in the target equals one rounding to nearest even (Boldo and
    Melquiond), so doubles need no separate rounding path. ``fptrunc`` rounds to nearest; when
    that moved away from zero, one step back (the bits minus one, for either sign) is the
    truncation. A finite double beyond f32's range becomes f32's odd largest finite; NaN stays
    NaN.
    """
    t = b.fptrunc(d, _like(_F32, d))
    back = b.fpext(t, d.type)
    bits = b.bitcast(t, _like(_I32, d))
    away = b.fcmp_ordered(">", _intrinsic(b, "fabs", back), _intrinsic(b, "fabs", d))
    bits = b.add(bits, b.sext(away, bits.type))
    inexact = b.fcmp_unordered("!=", back, d)
    return b.or_(bits, b.zext(inexact, bits.type))


def _encode_narrow(b: ir.IRBuilder, bits, dtype: DType, saturate: bool):
    """f32 bits -> code of a float layout narrower than f32 (see the module docstring)."""
    m, n_bits = dtype.mantissa, dtype.bits
    mag = b.and_(bits, _i32(bits, _F32_ABS))
    sign = b.and_(b.lshr(bits, _i32(bits, 32 - n_bits)), _i32(bits, 1 << (n_bits - 1)))
    code = _round_normal(b, mag, dtype)
    if dtype.exponent < 8:  # bf16's subnormals are f32's: the shift above rounds them already
        tiny = b.icmp_signed("<", mag, _i32(bits, (128 - dtype.bias) << 23))
        code = b.select(tiny, _round_subnormal(b, mag, dtype), code)
    inf_code = ((1 << dtype.exponent) - 1) << m
    code = _umin(b, code, inf_code if dtype.has_inf and not saturate else dtype.max_code)
    if dtype.has_inf and saturate:
        is_inf = b.icmp_unsigned("==", mag, _i32(bits, _F32_INF))
        code = b.select(is_inf, _i32(bits, inf_code), code)
    code = b.or_(code, sign)
    nan_code = (1 << (n_bits - 1)) - 1 if dtype.has_nan else 0
    is_nan = b.icmp_signed(">", mag, _i32(bits, _F32_INF))
    code = b.select(is_nan, _i32(bits, nan_code), code)
    return b.trunc(code, _like(ir.IntType(n_bits), bits))


def _round_normal(b: ir.IRBuilder, mag, dtype: DType):
    """Magnitude code of an f32 magnitude in the target's normal range (or above it).

    Rebias the exponent, then shift right by ``23 - m`` rounding to nearest even: add half a
    quantum minus one plus the kept part's lowest bit. A carry out of the mantissa lands on
    the next binade's first code, and past the largest finite code on the overflow codes,
    which the caller clamps. For m = 0 the kept lowest bit is the exponent's, so ties between
    binades go to the even code, as in ``ir/dtypes.py``.
    """
    shift = 23 - dtype.mantissa
    odd = b.and_(b.lshr(mag, _i32(mag, shift)), _i32(mag, 1))
    bias_and_half = ((dtype.bias - 127) << 23) + (1 << (shift - 1)) - 1
    return b.lshr(b.add(b.add(mag, _i32(mag, bias_and_half)), odd), _i32(mag, shift))


def _round_subnormal(b: ir.IRBuilder, mag, dtype: DType):
    """Magnitude code of an f32 magnitude below the target's smallest normal 2^emin.

    Adding ``M = 2^(emin - m + 23)`` puts the sum in the binade where f32's ulp is exactly
    the target's subnormal quantum 2^(emin - m), so the FPU's rounding to nearest even is the
    wanted one and the sum's bits minus M's count quanta: the subnormal code, or 2^m (the
    smallest normal's code) when it rounds up. The sum is a normal f32, and any f32
    subnormal input is far below half the smallest target subnormal, so flushing modes would
    not change the result.
    """
    emin = 1 - dtype.bias
    magic = 2.0 ** (emin - dtype.mantissa + 23)
    as_float = b.bitcast(mag, _like(_F32, mag))
    total = b.fadd(as_float, _const(_F32, mag, magic))
    magic_bits = (emin - dtype.mantissa + 23 + 127) << 23
    return b.sub(b.bitcast(total, _like(_I32, mag)), _i32(mag, magic_bits))


def round_arith(b: ir.IRBuilder, value, dtype: DType):
    """An arithmetic result (``float`` or ``double``) as a code of float ``dtype``: round to
    nearest even, overflow to inf where the type has it (``encode`` with ``saturate=False``)."""
    _require(dtype, True, "round_arith")
    return encode(b, value, dtype, saturate=False)


def canonicalize_nan(b: ir.IRBuilder, value):
    """``value`` (``float`` or ``double``) with every NaN replaced by the canonical one
    (positive, all exponent and mantissa bits set), so stored bits do not depend on which
    NaN the hardware produced."""
    _check_float_value(value, "canonicalize_nan")
    width = 64 if _is_double(value) else 32
    int_ty = ir.IntType(width)
    nan = b.bitcast(_const(int_ty, value, (1 << (width - 1)) - 1), value.type)
    return b.select(b.fcmp_unordered("uno", value, value), nan, value)


# ---- conversions -------------------------------------------------------------------------------
def float_to_int(b: ir.IRBuilder, value, dtype: DType):
    """A ``float``/``double`` as integer ``dtype`` (``iN``): NaN -> 0, otherwise clamp to the
    type's range (infinities included) and round half to even.

    The clamp happens in float: the bounds are exact in f32 up to 24-bit types, wider types
    go through double. After clamping, ``fptosi`` to i32 cannot overflow; u32 is shifted down
    by 2^31 so that it can use the signed conversion too (an unsigned one is emulated on x86).
    """
    _require(dtype, False, "float_to_int")
    _check_float_value(value, "float_to_int")
    lo, hi = dtype.min, dtype.max
    if max(-lo, hi) > 1 << 24 and not _is_double(value):
        value = b.fpext(value, _like(_F64, value))
    fty = _elem(value)
    x = b.select(b.fcmp_unordered("uno", value, value), _const(fty, value, 0.0), value)
    x = b.select(b.fcmp_ordered("<", x, _const(fty, x, float(lo))), _const(fty, x, float(lo)), x)
    x = b.select(b.fcmp_ordered(">", x, _const(fty, x, float(hi))), _const(fty, x, float(hi)), x)
    x = _intrinsic(b, "roundeven", x)
    i32 = _like(_I32, x)
    if hi >= 1 << 31:  # u32
        shifted = b.fsub(x, _const(fty, x, 2.0**31))
        return b.xor(b.fptosi(shifted, i32), _i32(x, 1 << 31))
    return _resize(b, b.fptosi(x, i32), dtype.bits, signed=True)


def _resize(b: ir.IRBuilder, value, bits: int, *, signed: bool):
    """``value`` truncated or extended (by sign or zero) to ``bits`` bits."""
    width = _elem(value).width
    ty = _like(ir.IntType(bits), value)
    if bits < width:
        return b.trunc(value, ty)
    if bits > width:
        return b.sext(value, ty) if signed else b.zext(value, ty)
    return value


def int_to_int(b: ir.IRBuilder, value, src: DType, dst: DType):
    """An integer value converted to another integer type, saturating: clamp to ``dst``'s
    range (reading ``value`` as signed or unsigned per ``src``), then resize."""
    _require(src, False, "int_to_int")
    _require(dst, False, "int_to_int")
    _check_code(value, src, "int_to_int")
    ity = _elem(value)
    if src.is_signed:
        if dst.min > src.min:
            value = _intrinsic(b, "smax", value, _const(ity, value, dst.min))
        if dst.max < src.max:
            value = _intrinsic(b, "smin", value, _const(ity, value, dst.max))
        # a value clamped into an unsigned range is non-negative: sign extension is right
        return _resize(b, value, dst.bits, signed=True)
    if dst.max < src.max:
        value = _intrinsic(b, "umin", value, _const(ity, value, dst.max))
    return _resize(b, value, dst.bits, signed=False)


def int_to_float(b: ir.IRBuilder, value, src: DType, dst: DType):
    """An integer value as a code of float ``dst``, rounded to nearest even and saturated
    (``dst.encode(exact value, saturate=True)``).

    Up to 24 bits the value is exact in f32, so one ``sitofp`` (on the value widened to i32)
    and an encode do it; f32 itself needs no encode at all. Wider sources round once to f32
    with ``sitofp``/``uitofp``, or go through double (exact) for narrower targets, where an
    f32 rounding first would round twice.
    """
    _require(src, False, "int_to_float")
    _require(dst, True, "int_to_float")
    _check_code(value, src, "int_to_float")
    k = src.bits
    if k <= 24:
        wide = _resize(b, value, 32, signed=src.is_signed)
        as_float = b.sitofp(wide, _like(_F32, value))
        if _is_f32(dst):
            return b.bitcast(as_float, _like(_I32, value))
        return encode(b, as_float, dst, saturate=True)
    if _is_f32(dst):
        wide = _resize(b, value, 32, signed=src.is_signed)
        if src.is_signed or k < 32:
            as_float = b.sitofp(wide, _like(_F32, value))
        else:
            as_float = b.uitofp(wide, _like(_F32, value))
        return b.bitcast(as_float, _like(_I32, value))
    return encode(b, _int_to_double(b, value, src), dst, saturate=True)


def _int_to_double(b: ir.IRBuilder, value, src: DType):
    """The exact double of a value of up to 32 bits; u32 is offset by 2^31 so that it uses the
    native signed conversion."""
    wide = _resize(b, value, 32, signed=src.is_signed)
    dty = _like(_F64, value)
    if src.is_signed or src.bits < 32:
        return b.sitofp(wide, dty)
    flipped = b.sitofp(b.xor(wide, _i32(wide, 1 << 31)), dty)
    return b.fadd(flipped, _const(_F64, value, 2.0**31))


def float_to_float(b: ir.IRBuilder, code, src: DType, dst: DType):
    """A code of float ``src`` converted to float ``dst``: ``encode(decode(code), dst,
    saturate=True)``, so NaN becomes ``dst``'s canonical NaN (or 0) even when ``src == dst``."""
    _require(src, True, "float_to_float")
    _require(dst, True, "float_to_float")
    _check_code(code, src, "float_to_float")
    if src == dst:
        return _canonicalize_nan_code(b, code, src)
    return encode(b, decode(b, code, src), dst, saturate=True)


def _canonicalize_nan_code(b: ir.IRBuilder, code, dtype: DType):
    """A code with NaN codes replaced by the canonical NaN; the identity conversion."""
    if not dtype.has_nan:
        return code
    ity = _elem(code)
    mag_mask = (1 << (dtype.bits - 1)) - 1
    mag = b.and_(code, _const(ity, code, mag_mask))
    first_nan = (((1 << dtype.exponent) - 1) << dtype.mantissa) + 1 if dtype.has_inf else mag_mask
    is_nan = b.icmp_unsigned(">=", mag, _const(ity, code, first_nan))
    return b.select(is_nan, _const(ity, code, mag_mask), code)
