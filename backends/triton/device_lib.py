"""Device functions that generated kernels call, in Triton's language.

This file is never imported: the code generator copies the source of the functions a kernel
uses into the kernel's module (each under ``@triton.jit``), so that a generated module is one
self-contained file that Triton can read, in interpreter mode or compiled. Keep every function
self-contained apart from calls to other functions of this file (the generator follows those
calls by name) and free of module-level names other than ``tl``.

Representation (see ``codegen.py``): a float is either its *value* in an f32 (exact for every
bittile float type) or its *code*, the bit pattern in an int32. Conversions follow
``ir/dtypes.py`` bit for bit: round to nearest even, saturation on request, one canonical NaN
(positive, all exponent and mantissa bits set). They use integer operations and f32
arithmetic that is exact or rounds once, ported from ``backends/llvm/numerics.py``; no bf16
arithmetic (Triton's interpreter has none).
"""

import triton.language as tl

# ---- codes -> values ---------------------------------------------------------------------------


def _decode_f16(code):
    return code.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


def _decode_bf16(code):
    return (code << 16).to(tl.float32, bitcast=True)


def _decode_narrow(code, BITS: tl.constexpr, M: tl.constexpr, BIAS: tl.constexpr,
                   FIRST_SPECIAL: tl.constexpr, MIN_NORMAL: tl.constexpr):
    # Normal codes: the magnitude shifted into f32's fields, rebiased. Subnormals get the
    # smallest normal's exponent and subtract 2^emin in f32 (exact). Codes from FIRST_SPECIAL
    # up (inf and NaN) get f32's all-ones exponent with their mantissa.
    sign = (code & (1 << (BITS - 1))) << (32 - BITS)
    mag = code & ((1 << (BITS - 1)) - 1)
    bits = (mag << (23 - M)) + ((127 - BIAS) << 23)
    if FIRST_SPECIAL > 0:
        bits = tl.where(mag >= FIRST_SPECIAL, bits | 0x7F800000, bits)
    if M > 0:
        as_min_normal = (bits + (1 << 23)).to(tl.float32, bitcast=True)
        sub = (as_min_normal - MIN_NORMAL).to(tl.int32, bitcast=True)
        bits = tl.where(mag < (1 << M), sub, bits)
    else:
        bits = tl.where(mag == 0, 0, bits)
    return (bits | sign).to(tl.float32, bitcast=True)


# ---- values -> codes ---------------------------------------------------------------------------


def _encode_f32(x):
    return tl.where(x != x, 0x7FFFFFFF, x.to(tl.int32, bitcast=True))


def _encode_f16(x, SAT: tl.constexpr):
    if SAT:
        x = _saturate(x, 65504.0)
    code = x.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    return tl.where(x != x, 0x7FFF, code)


def _encode_narrow(x, BITS: tl.constexpr, M: tl.constexpr, BIAS: tl.constexpr,
                   SUBNORMAL: tl.constexpr, MAGIC: tl.constexpr, MAGIC_BITS: tl.constexpr,
                   LIMIT: tl.constexpr, INF_CODE: tl.constexpr, NAN_CODE: tl.constexpr):
    # Normal range: rebias and shift right by 23 - M rounding to nearest even (add half a
    # quantum minus one plus the kept lowest bit); a carry lands on the next binade's code.
    # Below the normal range (SUBNORMAL): adding MAGIC = 2^(emin - M + 23) makes f32's ulp
    # the target's quantum, so the FPU rounds. LIMIT clamps (the largest finite code, or
    # inf's for IEEE arithmetic); INF_CODE > 0 keeps infinities when saturating.
    bits = x.to(tl.int32, bitcast=True)
    mag = bits & 0x7FFFFFFF
    sign = (bits >> (32 - BITS)) & (1 << (BITS - 1))
    odd = (mag >> (23 - M)) & 1
    code = (mag + (((BIAS - 127) << 23) + (1 << (22 - M)) - 1) + odd) >> (23 - M)
    if SUBNORMAL:
        total = mag.to(tl.float32, bitcast=True) + MAGIC
        sub = total.to(tl.int32, bitcast=True) - MAGIC_BITS
        code = tl.where(mag < ((128 - BIAS) << 23), sub, code)
    code = tl.minimum(code, LIMIT)
    if INF_CODE > 0:
        code = tl.where(mag == 0x7F800000, INF_CODE, code)
    return tl.where(mag > 0x7F800000, NAN_CODE, code | sign)


def _saturate(x, MAX: tl.constexpr):
    # finite values beyond +-MAX clamp to it; infinities and NaN stay
    big = (tl.abs(x) > MAX) & (tl.abs(x) < float("inf"))
    return tl.where(big, tl.where(x < 0, -MAX, MAX), x)


# ---- rounding values to a dtype ----------------------------------------------------------------


def _round_f16(x):
    return x.to(tl.float16).to(tl.float32)


def _round_bf16(x):
    bits = x.to(tl.int32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
    return tl.where(x != x, x, rounded.to(tl.float32, bitcast=True))


def _f32_odd(d):
    # f64 -> f32 rounded to odd (toward zero, last bit set when inexact): a second rounding
    # to a type with at most 22 significand bits is then the correctly rounded result
    t = d.to(tl.float32)
    back = t.to(tl.float64)
    bits = t.to(tl.int32, bitcast=True)
    bits = bits - (tl.abs(back) > tl.abs(d)).to(tl.int32)
    bits = bits | (back != d).to(tl.int32)
    return bits.to(tl.float32, bitcast=True)


def _rint(x):
    # round half to even: below 2^23 adding and subtracting 2^23 rounds in the FPU
    a = tl.abs(x)
    r = tl.where(a < 8388608.0, (a + 8388608.0) - 8388608.0, a)
    return tl.where(x.to(tl.int32, bitcast=True) < 0, -r, r)


# ---- conversions to integers -------------------------------------------------------------------


def _float_to_int(x, LO: tl.constexpr, ABOVE: tl.constexpr, HI: tl.constexpr,
                  UNSIGNED32: tl.constexpr):
    # NaN -> 0, round half to even, clamp to [LO, HI]; LO and ABOVE (= HI + 1) are powers of
    # two or zero, exact in f32, and below ABOVE the conversion is exact
    r = tl.maximum(_rint(tl.where(x != x, 0.0, x)), LO)
    above = r >= ABOVE
    inside = tl.where(above, 0.0, r)
    if UNSIGNED32:  # (one return: Triton wants one return type even for constexpr branches)
        out = tl.where(above, HI, inside.to(tl.uint32))
    else:
        out = tl.where(above, HI, inside.to(tl.int32))
    return out


# ---- arithmetic --------------------------------------------------------------------------------


def _fmin(x, y):
    # numpy's minimum: the first operand when it is NaN or not greater
    return tl.where((x <= y) | (x != x), x, y)


def _fmax(x, y):
    return tl.where((x >= y) | (x != x), x, y)


def _sigmoid(x):
    e = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, tl.div_rn(1.0, 1.0 + e), tl.div_rn(e, 1.0 + e))


def _tanh(x):
    # in f64 (returned unrounded): (1 - e^-2a) / (1 + e^-2a) loses no f32 digit above 1e-8
    d = x.to(tl.float64)
    a = tl.abs(d)
    e = tl.exp(-2.0 * a)
    t = tl.where(a < 1e-8, a, (1.0 - e) / (1.0 + e))
    return tl.where(x.to(tl.int32, bitcast=True) < 0, -t, t)


def _pow(x, y):
    # C's pow in f64 (returned unrounded): |x|^y = 2^(y log2|x|), then the special cases
    xd = x.to(tl.float64)
    yd = y.to(tl.float64)
    ax = tl.abs(xd)
    r = tl.exp2(yd * tl.log2(ax))
    y_int = tl.floor(yd) == yd
    y_odd = y_int & (tl.floor(yd * 0.5) != yd * 0.5)
    r = tl.where((x.to(tl.int32, bitcast=True) < 0) & y_odd, -r, r)
    finite_neg = (xd < 0) & (xd > -float("inf"))
    r = tl.where(finite_neg & ~y_int & (tl.abs(yd) < float("inf")), float("nan"), r)
    one = (yd == 0) | (xd == 1) | ((ax == 1) & (tl.abs(yd) == float("inf")))
    return tl.where(one, 1.0, r)


def _fmod(x, y):
    # C's fmod, exact: with |x| = mx 2^ex and |y| = my 2^ey (integer significands), the
    # remainder of mx 2^(ex-ey) by my, computed 39 bits of exponent difference at a time
    xb = x.to(tl.int32, bitcast=True)
    yb = y.to(tl.int32, bitcast=True)
    ax = xb & 0x7FFFFFFF
    ay = yb & 0x7FFFFFFF
    ex = ax >> 23
    ey = ay >> 23
    mx = tl.where(ex == 0, ax, (ax & 0x7FFFFF) | 0x800000).to(tl.int64)
    my = tl.where(ey == 0, ay, (ay & 0x7FFFFF) | 0x800000).to(tl.int64)
    ey = tl.maximum(ey, 1)
    d = tl.maximum(ex, 1) - ey
    my_safe = tl.where(my == 0, 1, my)
    r = mx % my_safe
    for _ in range(7):
        k = tl.minimum(tl.maximum(d, 0), 39)
        r = (r << k) % my_safe
        d = d - k
    power = tl.where(ey >= 24, (ey - 23) << 23, 1 << tl.minimum(ey - 1, 30))
    res = r.to(tl.float32) * power.to(tl.float32, bitcast=True)
    res = tl.where(xb < 0, -res, res)
    res = tl.where(ax < ay, x, res)
    invalid = (ay == 0) | (ax >= 0x7F800000) | (ay > 0x7F800000)
    return tl.where(invalid, float("nan"), res)
