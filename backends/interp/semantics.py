"""The numeric meaning of every value-computing op, on carrier arrays.

Values of a dtype are carried exactly: integers in int64, floats in float64 (see
``ir/dtypes.py``). This module is the specification the other backends are checked against:

- float arithmetic is computed in float64 and rounded to nearest even in the op's dtype, with
  overflow giving inf (for +, -, *, / and sqrt this is the correctly rounded IEEE result, since
  float64 has more than twice the significand bits of f32 plus two); transcendental functions
  are the float64 result rounded once, so backends match them to a few ulps, not bit-exactly;
- min/max propagate NaN; ``rem`` on floats is C's ``fmod`` (sign of the dividend);
- integer arithmetic wraps modulo 2^bits; ``div`` truncates toward zero and ``rem`` has the
  sign of the dividend (C); division by zero gives quotient 0 and remainder the dividend, so
  ``a == (a / b) * b + a % b`` always holds;
- shifts by an amount outside ``[0, bits)`` give 0 (``shl``, unsigned ``shr``) or the sign
  fill (signed ``shr``); signed ``shr`` is arithmetic;
- comparisons give 0 or 1 (``u1``), false for any NaN operand except ``ne``;
- ``cast`` converts values (round to nearest even, saturate; see ``ir/dtypes.py``);
- ``view`` reinterprets each worker's bits (Tilus semantics; see :func:`view`), and moving
  data (load, store, view, where, reshape...) preserves every bit, NaN payloads included;
- ``dot`` and ``sum`` compute in float64 (int64 for integers) and round once.
"""

from __future__ import annotations

import numpy as np

from bittile.errors import InternalError
from bittile.ir.dtypes import DType
from bittile.ir.layout import RegisterLayout

__all__ = ["round_arith", "unary", "binary", "compare", "cast", "view", "dot", "reduce"]


def round_arith(values, dtype: DType) -> np.ndarray:
    """An arithmetic result (float64 or int64) as a value of ``dtype``."""
    values = np.asarray(values)
    if dtype.is_int:
        return dtype.wrap(values)
    if dtype.name == "f32":
        return values.astype(np.float32).astype(np.float64)
    if dtype.name == "f16":
        return values.astype(np.float16).astype(np.float64)
    return dtype.round(values, saturate=False)


# ---- unary ---------------------------------------------------------------------------------
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


_FLOAT_UNARY = {
    "neg": np.negative, "abs": np.abs, "exp": np.exp, "exp2": np.exp2, "log": np.log,
    "log2": np.log2, "sqrt": np.sqrt, "rsqrt": lambda x: 1.0 / np.sqrt(x), "sin": np.sin,
    "cos": np.cos, "tanh": np.tanh, "sigmoid": _sigmoid, "floor": np.floor, "ceil": np.ceil,
    "round": np.rint,
}
_INT_UNARY = {"neg": np.negative, "abs": np.abs, "not": np.invert}


def unary(kind: str, x: np.ndarray, dtype: DType) -> np.ndarray:
    table = _INT_UNARY if dtype.is_int else _FLOAT_UNARY
    with np.errstate(all="ignore"):
        return round_arith(table[kind](x), dtype)


# ---- binary --------------------------------------------------------------------------------
def _int_div(a, b):
    safe = np.where(b == 0, 1, b)
    q = np.abs(a) // np.abs(safe)
    q = np.where((a < 0) != (safe < 0), -q, q)
    return np.where(b == 0, 0, q)


def _int_rem(a, b):
    return a - _int_div(a, b) * b


def _shift_out_of_range(b, dtype: DType):
    return (b < 0) | (b >= dtype.bits)


def _shl(a, b, dtype: DType):
    amount = np.where(_shift_out_of_range(b, dtype), 0, b)
    return np.where(_shift_out_of_range(b, dtype), 0, np.left_shift(a, amount))


def _shr(a, b, dtype: DType):
    out = _shift_out_of_range(b, dtype)
    amount = np.where(out, 0, b)
    shifted = np.right_shift(a, amount)
    fill = np.where(a < 0, -1, 0) if dtype.kind == "int" else np.zeros_like(a)
    return np.where(out, fill, shifted)


_FLOAT_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "rem": np.fmod,
    "min": np.minimum, "max": np.maximum, "pow": np.power,
}
_INT_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": _int_div, "rem": _int_rem,
    "min": np.minimum, "max": np.maximum, "and": np.bitwise_and, "or": np.bitwise_or,
    "xor": np.bitwise_xor,
}


def binary(kind: str, a: np.ndarray, b: np.ndarray, dtype: DType) -> np.ndarray:
    with np.errstate(all="ignore"):
        if dtype.is_int:
            a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
            if kind == "shl":
                return round_arith(_shl(a, b, dtype), dtype)
            if kind == "shr":
                return round_arith(_shr(a, b, dtype), dtype)
            return round_arith(_INT_BINARY[kind](a, b), dtype)
        return round_arith(_FLOAT_BINARY[kind](a, b), dtype)


_COMPARE = {
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
    "gt": np.greater, "ge": np.greater_equal,
}


def compare(kind: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return _COMPARE[kind](a, b).astype(np.int64)


# ---- conversions ---------------------------------------------------------------------------
def cast(x: np.ndarray, src: DType, dst: DType) -> np.ndarray:
    if dst.is_int:
        return dst.decode(dst.encode(x))
    return dst.round(np.asarray(x, np.float64), saturate=True)


def _codes_to_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """[..., n] codes -> [..., n * bits] bits, LSB of each code first."""
    b = (codes[..., None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)
    return b.reshape(*codes.shape[:-1], codes.shape[-1] * bits)


def _bits_to_codes(bit_rows: np.ndarray, bits: int) -> np.ndarray:
    grouped = bit_rows.reshape(*bit_rows.shape[:-1], -1, bits)
    weights = np.uint64(1) << np.arange(bits, dtype=np.uint64)
    return (grouped * weights).sum(axis=-1, dtype=np.uint64)


def view(
    codes: np.ndarray,
    src_bits: int,
    src_layout: RegisterLayout,
    dst_bits: int,
    dst_layout: RegisterLayout,
) -> np.ndarray:
    """Reinterpret bit patterns per worker: worker ``w``'s codes in local order, concatenated
    LSB-first, are cut into ``dst_bits``-bit codes placed in ``dst_layout``'s local order. A
    replicated result element must come out the same from every worker holding it."""
    src_index = src_layout.inverse_table()  # [workers, locals] -> flat logical index
    dst_index = dst_layout.inverse_table()
    per_worker = np.asarray(codes, np.uint64).reshape(-1)[src_index]
    new_codes = _bits_to_codes(_codes_to_bits(per_worker, src_bits), dst_bits)
    out = np.zeros(int(np.prod(dst_layout.shape)), np.uint64)
    out[dst_index.reshape(-1)] = new_codes.reshape(-1)
    if not np.array_equal(out[dst_index], new_codes):
        raise InternalError(
            "view: workers that replicate one element of the result hold different bits; "
            "the result layout's replication does not match the source's"
        )
    return out.reshape(dst_layout.shape)


# ---- dot and reductions --------------------------------------------------------------------
def dot(a: np.ndarray, b: np.ndarray, acc: np.ndarray, acc_dtype: DType) -> np.ndarray:
    with np.errstate(all="ignore"):
        if acc_dtype.is_int:
            return round_arith(np.matmul(a.astype(np.int64), b.astype(np.int64)) + acc, acc_dtype)
        return round_arith(np.matmul(a, b) + acc, acc_dtype)


def reduce(kind: str, x: np.ndarray, axis: int, keepdims: bool, dtype: DType) -> np.ndarray:
    with np.errstate(all="ignore"):
        if kind == "sum":
            return round_arith(np.sum(x, axis=axis, keepdims=keepdims), dtype)
        fn = np.max if kind == "max" else np.min
        return fn(x, axis=axis, keepdims=keepdims)
