"""Sources (constants, block ids, sizes, arange, full), casts and elementwise ops.

Elementwise emitters never look at shapes: a scalar operand broadcasts against a tile in
Triton as it splats in the IR, so the same code computes scalar ops, tile ops and the bodies
of fused ops (run once on whole tiles, as the interpreter does)."""

from __future__ import annotations

from bittile.backends.triton import numerics
from bittile.backends.triton.codegen import KernelCodegen, emits
from bittile.errors import InternalError
from bittile.ir import ops
from bittile.ir.dtypes import DType

# ---- sources -----------------------------------------------------------------------------------


@emits(ops.ConstantOp)
def _constant(op: ops.ConstantOp, cg: KernelCodegen):
    cg.define(op.out, numerics.constant(op.value, op.dtype, cg.primary(op.out)))


@emits(ops.BlockIdOp)
def _block_id(op: ops.BlockIdOp, cg: KernelCodegen):
    if op.axis < len(cg.block_ids):
        cg.bind(op.out, "int", cg.block_ids[op.axis])
    else:  # an axis beyond the grid: the interpreter's block_ids has no entry either
        raise InternalError(f"block_id({op.axis}) on a grid of rank {len(cg.block_ids)}")


@emits(ops.SizeOp)
def _size(op: ops.SizeOp, cg: KernelCodegen):
    cg.bind(op.out, "int", cg.sizes[op.symbol])


@emits(ops.ArangeOp)
def _arange(op: ops.ArangeOp, cg: KernelCodegen):
    (size,) = cg.shape(op.out)
    expr = f"tl.arange(0, {size})"
    if numerics.int_carrier(op.dtype) == "tl.uint32":
        expr += ".to(tl.uint32)"
    cg.define(op.out, expr)


@emits(ops.FullOp)
def _full(op: ops.FullOp, cg: KernelCodegen):
    value = cg.get(op.value, cg.primary(op.out))
    cg.define(op.out, f"tl.broadcast_to({value}, {list(cg.shape(op.out))})")


# ---- casts -------------------------------------------------------------------------------------


@emits(ops.CastOp)
def _cast(op: ops.CastOp, cg: KernelCodegen):
    src, dst = op.x.type.dtype, op.dtype
    x = cg.get(op.x, "int" if src.is_int else "val")
    cg.define(op.out, numerics.cast(x, src, dst), hint="cast", shape=cg.shape(op.x))


# ---- integer ops -------------------------------------------------------------------------------


def _int_unary(kind: str, x: str, dtype: DType) -> str:
    if kind == "neg":
        return numerics.wrap(dtype, f"(0 - {x})")
    if kind == "not":
        return numerics.wrap(dtype, f"(~{x})") if dtype.kind == "uint" else f"(~{x})"
    if kind == "abs":
        return numerics.wrap(dtype, f"tl.abs({x})") if dtype.kind == "int" else x
    raise InternalError(f"no integer {kind}")


def _int_binary(kind: str, x: str, y: str, y_value, dtype: DType, cg: KernelCodegen) -> str:
    if kind in ("add", "sub", "mul"):
        symbol = {"add": "+", "sub": "-", "mul": "*"}[kind]
        return numerics.wrap(dtype, f"({x} {symbol} {y})")
    if kind in ("and", "or", "xor"):
        return f"({x} {dict(zip(('and', 'or', 'xor'), '&|^'))[kind]} {y})"
    if kind in ("min", "max"):
        return f"tl.{'minimum' if kind == 'min' else 'maximum'}({x}, {y})"
    if kind in ("div", "rem"):
        return _int_division(kind, x, y, y_value, dtype, cg)
    if kind in ("shl", "shr"):
        return _shift(kind, x, y, dtype, cg)
    raise InternalError(f"no integer {kind}")


def _int_division(kind: str, x: str, y: str, y_value, dtype: DType, cg: KernelCodegen) -> str:
    # C division with x / 0 == 0 and x % 0 == x; MIN / -1 wraps to MIN (= MIN / 1)
    divisor = cg.constant_value(y_value)
    if isinstance(divisor, int) and divisor != 0 and (divisor != -1 or dtype.bits < 32):
        op = "//" if kind == "div" else "%"
        return numerics.wrap(dtype, f"({x} {op} {y})")
    unsafe = f"({y} == 0)"
    if dtype.kind == "int" and dtype.bits == 32:
        unsafe = f"({unsafe} | (({x} == {dtype.min}) & ({y} == -1)))"
    safe = cg.assign("divisor", f"tl.where({unsafe}, 1, {y})")
    if kind == "div":
        return numerics.wrap(dtype, f"tl.where({y} == 0, 0, {x} // {safe})")
    return f"tl.where({y} == 0, {x}, {x} % {safe})"


def _shift(kind: str, x: str, y: str, dtype: DType, cg: KernelCodegen) -> str:
    # amounts outside [0, bits) give 0 (shl, unsigned shr) or the sign fill (signed shr)
    outside = f"({y} >= {dtype.bits})"
    if dtype.kind == "int":
        outside = f"(({y} < 0) | {outside})"
    outside = cg.assign("out_of_range", outside)
    amount = cg.assign("amount", f"tl.where({outside}, 0, {y})")
    if kind == "shl":
        return f"tl.where({outside}, 0, {numerics.wrap(dtype, f'({x} << {amount})')})"
    fill = f"tl.where({x} < 0, -1, 0)" if dtype.kind == "int" else "0"
    return f"tl.where({outside}, {fill}, {x} >> {amount})"


# ---- float ops (on f32 values) -----------------------------------------------------------------

#: unary ops whose f32 result is exact in the operand's type (no rounding needed)
_EXACT_UNARY = {"neg": "-{}", "abs": "tl.abs({})", "floor": "tl.floor({})",
                "ceil": "tl.ceil({})", "round": "_rint({})"}
_ROUNDED_UNARY = {"exp": "tl.exp({})", "exp2": "tl.exp2({})", "log": "tl.log({})",
                  "log2": "tl.log2({})", "sqrt": "tl.sqrt_rn({})",
                  "rsqrt": "tl.div_rn(1.0, tl.sqrt_rn({}))", "sin": "tl.sin({})",
                  "cos": "tl.cos({})", "sigmoid": "_sigmoid({})"}
#: computed in f64 (for accuracy), rounded once
_F64_UNARY = {"tanh": "_tanh({})"}


def _float_unary(kind: str, x: str, dtype: DType) -> str:
    if kind in _EXACT_UNARY:
        return _EXACT_UNARY[kind].format(x)
    if kind in _ROUNDED_UNARY:
        return numerics.round_value(dtype, _ROUNDED_UNARY[kind].format(x))
    if kind in _F64_UNARY:
        return numerics.round_f64(dtype, _F64_UNARY[kind].format(x))
    raise InternalError(f"no float {kind}")


def _float_binary(kind: str, x: str, y: str, dtype: DType) -> str:
    if kind in ("add", "sub", "mul"):
        symbol = {"add": "+", "sub": "-", "mul": "*"}[kind]
        return numerics.round_value(dtype, f"({x} {symbol} {y})")
    if kind == "div":
        return numerics.round_value(dtype, f"tl.div_rn({x}, {y})")
    if kind == "rem":  # exact
        return f"_fmod({x}, {y})"
    if kind in ("min", "max"):
        return f"_f{kind}({x}, {y})"
    if kind == "pow":
        return numerics.round_f64(dtype, f"_pow({x}, {y})")
    raise InternalError(f"no float {kind}")


_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


@emits(*(ops.unary_op_class(k) for k in ops.UNARY_OPS))
def _unary(op, cg: KernelCodegen):
    dtype = op.x.type.dtype
    if dtype.is_int:
        expr = _int_unary(op.kind, cg.get(op.x, "int"), dtype)
    else:
        expr = _float_unary(op.kind, cg.get(op.x, "val"), dtype)
    cg.define(op.out, expr, shape=cg.shape(op.x))


def _elementwise_shape(cg: KernelCodegen, *values):
    """The shape of an elementwise result: that of its tile operands (None if all are
    scalars)."""
    for v in values:
        shape = cg.shape(v)
        if shape is not None:
            return shape
    return None


#: binary ops computed with comparisons of their operands
_COMPOSITE = {"div", "rem", "shl", "shr", "min", "max", "pow"}


@emits(*(ops.binary_op_class(k) for k in ops.BINARY_OPS))
def _binary(op, cg: KernelCodegen):
    dtype = op.lhs.type.dtype
    form = "int" if dtype.is_int else "val"
    x, y = cg.get(op.lhs, form), cg.get(op.rhs, form)
    shape = _elementwise_shape(cg, op.lhs, op.rhs)
    if (op.kind in _COMPOSITE and shape is not None
            and None in (cg.shape(op.lhs), cg.shape(op.rhs))):
        # splat the scalar first: Triton's interpreter mislabels a scalar comparison's type
        # when it broadcasts it, which these ops' masks would do
        if cg.shape(op.lhs) is None:
            x = cg.assign("splat", f"tl.broadcast_to({x}, {list(shape)})")
        else:
            y = cg.assign("splat", f"tl.broadcast_to({y}, {list(shape)})")
    if dtype.is_int:
        expr = _int_binary(op.kind, x, y, op.rhs, dtype, cg)
    else:
        expr = _float_binary(op.kind, x, y, dtype)
    cg.define(op.out, expr, shape=_elementwise_shape(cg, op.lhs, op.rhs))


@emits(*(ops.compare_op_class(k) for k in ops.COMPARE_OPS))
def _compare(op, cg: KernelCodegen):
    form = "int" if op.lhs.type.dtype.is_int else "val"
    x, y = cg.get(op.lhs, form), cg.get(op.rhs, form)
    cg.define(op.out, f"{x} {_COMPARE[op.kind]} {y}",
              shape=_elementwise_shape(cg, op.lhs, op.rhs))


@emits(ops.WhereOp)
def _where(op: ops.WhereOp, cg: KernelCodegen):
    form = cg.primary(op.out)
    cond = cg.get(op.cond, "pred")
    a, b = cg.get(op.a, form), cg.get(op.b, form)
    cg.define(op.out, f"tl.where({cond}, {a}, {b})",
              shape=_elementwise_shape(cg, op.cond, op.a, op.b))


# ---- fused ops ---------------------------------------------------------------------------------


def run_scalar_body(op, inputs, cg: KernelCodegen) -> list[str]:
    """Emit a fused op's scalar body on whole tiles; the names of what it yields, each
    broadcast to the op's padded shape and in the form of the corresponding result."""
    for arg, v in zip(op.body.args, inputs):
        cg.alias(arg, v)
    cg.emit_block(op.body)
    return list(op.body.ops[-1].values)


@emits(ops.FusedElementwiseOp)
def _fused(op: ops.FusedElementwiseOp, cg: KernelCodegen):
    shape = cg.shape(op.outs[0])
    for out, value in zip(op.outs, run_scalar_body(op, op.inputs, cg)):
        name = cg.get(value, cg.primary(out))
        if cg.shape(value) is None:
            name = f"tl.broadcast_to({name}, {list(shape)})"
        cg.define(out, name, hint="fused", shape=shape)
