"""Broadcasts, reshapes, permutations, reductions and dots."""

from __future__ import annotations

from bittile.backends.triton import numerics
from bittile.backends.triton.codegen import KernelCodegen, emits, padded
from bittile.backends.triton.emit_compute import run_scalar_body
from bittile.backends.triton.emit_memory import arange
from bittile.ir import ops
from bittile.ir.dtypes import DType


@emits(ops.BroadcastOp)
def _broadcast(op: ops.BroadcastOp, cg: KernelCodegen):
    x = cg.get(op.x, cg.primary(op.out))
    cg.define(op.out, f"tl.broadcast_to({x}, {list(cg.shape(op.out))})")


@emits(ops.ConvertLayoutOp)
def _convert_layout(op: ops.ConvertLayoutOp, cg: KernelCodegen):
    form = cg.primary(op.out)
    cg.bind(op.out, form, cg.get(op.x, form))


@emits(ops.PermuteOp)
def _permute(op: ops.PermuteOp, cg: KernelCodegen):
    x = cg.get(op.x, cg.primary(op.out))
    if list(op.dims) == sorted(op.dims):
        cg.bind(op.out, cg.primary(op.out), x)
        return
    cg.define(op.out, f"tl.permute({x}, {tuple(op.dims)})")


# ---- reshape -----------------------------------------------------------------------------------


def same_padded_order(src: tuple[int, ...], dst: tuple[int, ...]) -> bool:
    """Whether every element sits at the same row-major position of the padded tiles of both
    shapes, so that a reshape of the padded tile is the reshape of the tile: true when the
    shapes agree apart from dimensions of 1, or when every dimension but the first (of each
    shape, dimensions of 1 left out) is a power of two."""
    s = [d for d in src if d != 1]
    t = [d for d in dst if d != 1]
    if s == t:
        return True
    return all(d & (d - 1) == 0 for d in s[1:] + t[1:])


def gather_reshape(cg: KernelCodegen, x: str, src: tuple[int, ...], dst: tuple[int, ...],
                   hint: str) -> str:
    """``x`` (padded ``src``) reshaped to ``dst`` by a gather: every element of the padded
    result reads the padded position of the logical element it is (padding reads 0)."""
    psrc, pdst = padded(src), padded(dst)
    rank = len(dst)
    terms, valid = [], []
    stride = 1
    for axis in range(rank - 1, -1, -1):
        ar = arange(pdst[axis], axis, rank)
        terms.append(f"{ar} * {stride}" if stride != 1 else ar)
        if pdst[axis] != dst[axis]:
            valid.append(f"({ar} < {dst[axis]})")
        stride *= dst[axis]
    flat = cg.assign(f"{hint}_logical", " + ".join(reversed(terms)))
    if valid:
        flat = cg.assign(f"{hint}_logical", f"tl.where({' & '.join(valid)}, {flat}, 0)")
    parts = []
    stride, pstride = 1, 1
    for axis in range(len(src) - 1, -1, -1):
        coord = f"({flat} // {stride}) % {src[axis]}" if stride != 1 else f"{flat} % {src[axis]}"
        parts.append(f"({coord}) * {pstride}" if pstride != 1 else f"({coord})")
        stride *= src[axis]
        pstride *= psrc[axis]
    total_src = 1
    for d in psrc:
        total_src *= d
    total_dst = 1
    for d in pdst:
        total_dst *= d
    index = cg.assign(f"{hint}_source", f"tl.reshape({' + '.join(reversed(parts))}, "
                      f"[{total_dst}])")
    gathered = f"tl.gather(tl.reshape({x}, [{total_src}]), {index}, 0)"
    return f"tl.reshape({gathered}, {list(pdst)})"


@emits(ops.ReshapeOp)
def _reshape(op: ops.ReshapeOp, cg: KernelCodegen):
    form = cg.primary(op.out)
    x = cg.get(op.x, form)
    src, dst = op.x.type.shape, op.shape
    if padded(src) == padded(dst) and same_padded_order(src, dst):
        cg.bind(op.out, form, x)
    elif same_padded_order(src, dst):
        cg.define(op.out, f"tl.reshape({x}, {list(padded(dst))})")
    else:
        cg.define(op.out, gather_reshape(cg, x, src, dst, "reshape"))


# ---- reductions --------------------------------------------------------------------------------


def _identity(kind: str, dtype: DType) -> str:
    if dtype.is_float:
        return {"sum": "0.0", "max": '-float("inf")', "min": 'float("inf")'}[kind]
    if kind == "sum":
        return "0"
    return str(dtype.min if kind == "max" else dtype.max)


#: Triton's own combine functions: Triton's interpreter recognizes them (and runs one NumPy
#: reduction); calling ``tl.sum`` and friends instead would tie the generated module to the
#: mode triton itself was imported in
_COMBINE = {"sum": "tl.standard._sum_combine", "max": "tl.standard._elementwise_max",
            "min": "tl.standard._elementwise_min"}


def _reduction(x: str, kind: str, axis: int, keepdims: bool) -> str:
    return f"tl.reduce({x}, {axis}, {_COMBINE[kind]}, keep_dims={keepdims})"


@emits(*ops.REDUCE_OPS.values())
def _reduce(op, cg: KernelCodegen):
    dtype = op.x.type.dtype
    x = cg.get(op.x, "int" if dtype.is_int else "val")
    shape = cg.shape(op.x)
    real = op.x.type.shape[op.axis]
    if shape[op.axis] != real:
        inside = f"{arange(shape[op.axis], op.axis, len(shape))} < {real}"
        x = cg.assign("masked", f"tl.where({inside}, {x}, {_identity(op.kind, dtype)})")
    if op.kind == "sum":
        total = _reduction(x, "sum", op.axis, op.keepdims)
        expr = numerics.wrap(dtype, total) if dtype.is_int else numerics.round_value(dtype, total)
    elif dtype.is_int:
        expr = _reduction(x, op.kind, op.axis, op.keepdims)
    else:
        # Triton's max/min skip NaN; the specification's propagate it
        best = cg.assign(op.kind, _reduction(x, op.kind, op.axis, op.keepdims))
        has_nan = cg.assign("has_nan", _reduction(f"({x} != {x}).to(tl.int32)", "max", op.axis,
                                                  op.keepdims))
        expr = f'tl.where({has_nan} != 0, float("nan"), {best})'
    cg.define(op.out, expr, hint=op.kind)


# ---- dot ---------------------------------------------------------------------------------------


def _exact_in_f16(dtype: DType) -> bool:
    return dtype.is_float and (dtype.name == "f16" or (
        dtype.bits <= 8 and dtype.exponent <= 5 and dtype.mantissa <= 10))


def emit_matmul(cg: KernelCodegen, out, a: str, b: str, acc: str, ab: DType, acc_dtype: DType,
                shapes: tuple[tuple[int, int], tuple[int, int]]) -> None:
    """Bind ``out`` to ``acc + a @ b``: ``a`` and ``b`` are names of the operands in their
    arithmetic form (f32 values or integer carriers), ``shapes`` their real shapes."""
    (m, k), (_, n) = shapes
    pm, pk, pn = padded((m, k, n))
    if pk != k:  # padding along K must not contribute (and may hold inf or NaN)
        zero = "0.0" if ab.is_float else "0"
        a = cg.assign("a_k", f"tl.where({arange(pk, 1, 2)} < {k}, {a}, {zero})")
        b = cg.assign("b_k", f"tl.where({arange(pk, 0, 2)} < {k}, {b}, {zero})")
    if ab.is_float:
        if min(pm, pn, pk) >= 16:
            if _exact_in_f16(ab):  # exact products either way; f16 operands use tensor cores
                total = f"tl.dot({a}.to(tl.float16), {b}.to(tl.float16), {acc})"
            else:
                total = f'tl.dot({a}, {b}, {acc}, input_precision="ieee")'
        else:
            total = f"{_reduction(f'{a}[:, :, None] * {b}[None, :, :]', 'sum', 1, False)} + {acc}"
        cg.define(out, numerics.round_value(acc_dtype, total), hint="dot")
        return
    # integers: products and sums modulo 2^32 are exact modulo 2^bits of the accumulator
    if numerics.int_carrier(ab) == "tl.uint32":
        a, b = (f"{x}.to(tl.int32, bitcast=True)" for x in (a, b))
    if numerics.int_carrier(acc_dtype) == "tl.uint32":
        acc = f"{acc}.to(tl.int32, bitcast=True)"
    int8 = ab.bits < 8 or (ab.bits == 8 and ab.kind == "int")
    if int8 and min(pm, pn) >= 16 and pk >= 32:
        total = f"tl.dot({a}.to(tl.int8), {b}.to(tl.int8), {acc})"
    else:
        total = f"{_reduction(f'{a}[:, :, None] * {b}[None, :, :]', 'sum', 1, False)} + {acc}"
    total = numerics.wrap(acc_dtype, total)
    if numerics.int_carrier(acc_dtype) == "tl.uint32":
        total = f"({total}).to(tl.uint32, bitcast=True)"
    cg.define(out, total, hint="dot")


def _operands(cg: KernelCodegen, values, dtypes) -> list[str]:
    return [cg.get(v, "int" if dtype.is_int else "val") for v, dtype in zip(values, dtypes)]


@emits(ops.DotOp)
def _dot(op: ops.DotOp, cg: KernelCodegen):
    ab, acc_dtype = op.a.type.dtype, op.acc.type.dtype
    a, b, acc = _operands(cg, (op.a, op.b, op.acc), (ab, ab, acc_dtype))
    emit_matmul(cg, op.out, a, b, acc, ab, acc_dtype, (op.a.type.shape, op.b.type.shape))


@emits(ops.DequantDotOp)
def _dequant_dot(op: ops.DequantDotOp, cg: KernelCodegen):
    ab, acc_dtype = op.x.type.dtype, op.acc.type.dtype
    (computed,) = run_scalar_body(op, op.body_inputs, cg)
    w_shape = op.w.type.shape
    form = "int" if ab.is_int else "val"
    name = cg.get(computed, form)
    if cg.shape(computed) is None:
        name = cg.assign("dequantized", f"tl.broadcast_to({name}, {list(padded(w_shape))})")
    dense, acc = _operands(cg, (op.x, op.acc), (ab, acc_dtype))
    if op.dequantized == "b":
        a, b, shapes = dense, name, (op.x.type.shape, w_shape)
    else:
        a, b, shapes = name, dense, (w_shape, op.x.type.shape)
    emit_matmul(cg, op.out, a, b, acc, ab, acc_dtype, shapes)
