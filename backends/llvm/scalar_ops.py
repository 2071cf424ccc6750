"""The elementwise ops on scalars (``iN`` values and codes, see ``tiles.py``), following
``backends/interp/semantics.py`` exactly.

The same functions compute scalar SSA ops, every element of a lazy tile, and the bodies of
fused ops, so there is one implementation of each op's numerics. Float operands are decoded to
f32, computed in f32 and rounded back to the op's dtype (for +, -, *, /, sqrt this is the
correctly rounded result the interpreter computes through float64: f32 has more than twice the
significand bits of f16 and bf16 plus two); NaN results become the canonical NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

from llvmlite import ir

from bittile.backends.llvm import numerics
from bittile.backends.llvm.tiles import F32, I1, scalar_type
from bittile.errors import InternalError
from bittile.ir import ops
from bittile.ir.core import Op
from bittile.ir.dtypes import DType, u1

__all__ = ["emit_scalar_op", "constant_code", "decode", "encode_arith"]


def constant_code(value, dtype: DType) -> ir.Constant:
    """The ``iN`` constant holding ``value`` as ``dtype`` holds it."""
    if dtype.is_int:
        return ir.Constant(scalar_type(dtype), int(value) & ((1 << dtype.bits) - 1))
    code = int(dtype.encode([float(value)], saturate=False)[0])
    return ir.Constant(scalar_type(dtype), code)


def decode(b: ir.IRBuilder, code: ir.Value, dtype: DType) -> ir.Value:
    return numerics.decode(b, code, dtype)


def encode_arith(b: ir.IRBuilder, value: ir.Value, dtype: DType) -> ir.Value:
    return numerics.round_arith(b, value, dtype)


def _intrinsic(b: ir.IRBuilder, name: str, *args: ir.Value) -> ir.Value:
    fn = b.module.declare_intrinsic(name, [args[0].type])
    return b.call(fn, list(args))


# ---- integers --------------------------------------------------------------------------------
def _int_const(dtype: DType, value: int) -> ir.Constant:
    return ir.Constant(scalar_type(dtype), value & ((1 << dtype.bits) - 1))


def _shift_out_of_range(b: ir.IRBuilder, amount: ir.Value, dtype: DType) -> ir.Value:
    """``amount`` (a value of ``dtype``) is negative or at least ``dtype.bits``."""
    out = ir.Constant(I1, 0)
    if dtype.is_signed:
        out = b.icmp_signed("<", amount, _int_const(dtype, 0))
        if dtype.bits <= dtype.max:
            out = b.or_(out, b.icmp_signed(">=", amount, _int_const(dtype, dtype.bits)))
    elif dtype.bits <= dtype.max:
        out = b.icmp_unsigned(">=", amount, _int_const(dtype, dtype.bits))
    return out


def _int_div(b: ir.IRBuilder, x, y, dtype: DType):
    zero = _int_const(dtype, 0)
    by_zero = b.icmp_unsigned("==", y, zero)
    if dtype.is_signed:
        # MIN / -1 overflows in LLVM (undefined); the wrapped answer is MIN = MIN / 1.
        overflow = b.and_(b.icmp_unsigned("==", x, _int_const(dtype, dtype.min)),
                          b.icmp_unsigned("==", y, _int_const(dtype, -1)))
        safe = b.select(b.or_(by_zero, overflow), _int_const(dtype, 1), y)
        q = b.sdiv(x, safe)
    else:
        q = b.udiv(x, b.select(by_zero, _int_const(dtype, 1), y))
    return b.select(by_zero, zero, q)


def _int_binary(b: ir.IRBuilder, kind: str, x, y, dtype: DType):
    signed = dtype.is_signed
    if kind == "add":
        return b.add(x, y)
    if kind == "sub":
        return b.sub(x, y)
    if kind == "mul":
        return b.mul(x, y)
    if kind == "div":
        return _int_div(b, x, y, dtype)
    if kind == "rem":
        return b.sub(x, b.mul(_int_div(b, x, y, dtype), y))
    if kind in ("min", "max"):
        op = "<" if kind == "min" else ">"
        less = b.icmp_signed(op, x, y) if signed else b.icmp_unsigned(op, x, y)
        return b.select(less, x, y)
    if kind == "and":
        return b.and_(x, y)
    if kind == "or":
        return b.or_(x, y)
    if kind == "xor":
        return b.xor(x, y)
    out = _shift_out_of_range(b, y, dtype)
    amount = b.select(out, _int_const(dtype, 0), y)
    if kind == "shl":
        return b.select(out, _int_const(dtype, 0), b.shl(x, amount))
    if kind == "shr":
        if signed:
            fill = b.ashr(x, _int_const(dtype, dtype.bits - 1))
            return b.select(out, fill, b.ashr(x, amount))
        return b.select(out, _int_const(dtype, 0), b.lshr(x, amount))
    raise InternalError(f"no integer {kind}")


def _int_unary(b: ir.IRBuilder, kind: str, x, dtype: DType):
    if kind == "neg":
        return b.sub(_int_const(dtype, 0), x)
    if kind == "not":
        return b.xor(x, _int_const(dtype, -1))
    if kind == "abs":
        if not dtype.is_signed:
            return x
        negative = b.icmp_signed("<", x, _int_const(dtype, 0))
        return b.select(negative, b.sub(_int_const(dtype, 0), x), x)
    raise InternalError(f"no integer {kind}")


# ---- floats (computed on f32 values) -------------------------------------------------------
def _f32(value: float) -> ir.Constant:
    return ir.Constant(F32, value)


def _float_unary(b: ir.IRBuilder, kind: str, x):
    if kind == "neg":
        return b.fneg(x)
    simple = {"abs": "llvm.fabs", "exp": "llvm.exp", "exp2": "llvm.exp2", "log": "llvm.log",
              "log2": "llvm.log2", "sqrt": "llvm.sqrt", "sin": "llvm.sin", "cos": "llvm.cos",
              "floor": "llvm.floor", "ceil": "llvm.ceil", "round": "llvm.rint",
              "tanh": "llvm.tanh"}
    if kind in simple:
        return _intrinsic(b, simple[kind], x)
    if kind == "rsqrt":
        return b.fdiv(_f32(1.0), _intrinsic(b, "llvm.sqrt", x))
    if kind == "sigmoid":
        e = _intrinsic(b, "llvm.exp", b.fneg(x))
        return b.fdiv(_f32(1.0), b.fadd(_f32(1.0), e))
    raise InternalError(f"no float {kind}")


def _float_binary(b: ir.IRBuilder, kind: str, x, y):
    if kind == "add":
        return b.fadd(x, y)
    if kind == "sub":
        return b.fsub(x, y)
    if kind == "mul":
        return b.fmul(x, y)
    if kind == "div":
        return b.fdiv(x, y)
    if kind == "rem":
        return b.frem(x, y)
    if kind == "pow":
        return _intrinsic(b, "llvm.pow", x, y)
    if kind in ("min", "max"):
        # numpy: the first operand if it is NaN or wins the (non-strict) comparison.
        op = "<=" if kind == "min" else ">="
        keep = b.or_(b.fcmp_ordered(op, x, y), b.fcmp_unordered("uno", x, x))
        return b.select(keep, x, y)
    raise InternalError(f"no float {kind}")


_FCMP = {"eq": ("==", True), "ne": ("!=", False), "lt": ("<", True), "le": ("<=", True),
         "gt": (">", True), "ge": (">=", True)}


def _compare(b: ir.IRBuilder, kind: str, x, y, dtype: DType):
    op, ordered = _FCMP[kind]
    if dtype.is_float:
        x, y = decode(b, x, dtype), decode(b, y, dtype)
        return b.fcmp_ordered(op, x, y) if ordered else b.fcmp_unordered(op, x, y)
    if dtype.is_signed:
        return b.icmp_signed(op, x, y)
    return b.icmp_unsigned(op, x, y)


def _cast(b: ir.IRBuilder, x, src: DType, dst: DType):
    if src == dst:
        return x
    if src.is_int and dst.is_int:
        return numerics.int_to_int(b, x, src, dst)
    if src.is_int:
        return numerics.int_to_float(b, x, src, dst)
    if dst.is_int:
        return numerics.float_to_int(b, decode(b, x, src), dst)
    return numerics.float_to_float(b, x, src, dst)


def emit_scalar_op(b: ir.IRBuilder, op: Op, args: Sequence[ir.Value]) -> ir.Value:
    """The value of elementwise op ``op`` (one result) on scalar operand values ``args``."""
    if isinstance(op, ops.ConstantOp):
        return constant_code(op.value, op.dtype)
    if isinstance(op, ops.CastOp):
        return _cast(b, args[0], op.x.type.dtype, op.dtype)
    if isinstance(op, ops.WhereOp):
        cond = args[0]
        if cond.type != I1:
            cond = b.icmp_unsigned("!=", cond, ir.Constant(cond.type, 0))
        return b.select(cond, args[1], args[2])
    if isinstance(op, ops.CompareOp):
        out = _compare(b, op.kind, args[0], args[1], op.lhs.type.dtype)
        assert scalar_type(u1) == I1
        return out
    if isinstance(op, ops.UnaryOp):
        dtype = op.x.type.dtype
        if dtype.is_int:
            return _int_unary(b, op.kind, args[0], dtype)
        return encode_arith(b, _float_unary(b, op.kind, decode(b, args[0], dtype)), dtype)
    if isinstance(op, ops.BinaryOp):
        dtype = op.lhs.type.dtype
        if dtype.is_int:
            return _int_binary(b, op.kind, args[0], args[1], dtype)
        x, y = decode(b, args[0], dtype), decode(b, args[1], dtype)
        return encode_arith(b, _float_binary(b, op.kind, x, y), dtype)
    raise InternalError(f"{op.name} is not an elementwise op")
