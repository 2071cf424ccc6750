"""The NumPy interpreter: executes IR one tile op at a time (one NumPy call per op) and the grid
as a Python loop. It is the executable specification of the IR.

The interpreter holds integers as int64 values and floats as their bit patterns (uint64), so
that moving data (loads, stores, views, where, reshapes) is bit-exact, NaN payloads included;
ops that compute decode their operands, compute with ``semantics``, and encode the result.

Each op class has one evaluator, registered in ``EVALUATORS`` (registering a class twice is an
error). An evaluator receives the op and a :class:`Frame` and returns the values of the op's
results (a tuple) or None for ops without results.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from bittile.backends.interp import semantics
from bittile.errors import BittileError, InternalError, LaunchError
from bittile.ir import ops
from bittile.ir.core import Block, Kernel, Op, Value
from bittile.ir.dtypes import DType
from bittile.ir.ops.convert import default_layout
from bittile.ir.types import TileType
from bittile.runtime.launch import BoundArgs, bind_arguments

__all__ = ["run", "run_bound", "EVALUATORS"]

Evaluator = Callable[[Op, "Frame"], "tuple | None"]
EVALUATORS: dict[type, Evaluator] = {}


def evaluates(*classes: type):
    def register(fn: Evaluator) -> Evaluator:
        for cls in classes:
            if cls in EVALUATORS:
                raise InternalError(f"{cls.__name__} has two interpreter evaluators")
            EVALUATORS[cls] = fn
        return fn

    return register


def values_of(held: np.ndarray, dtype: DType) -> np.ndarray:
    """Held data (see the module docstring) as carrier values."""
    return dtype.decode(held) if dtype.is_float else held


def hold(values, dtype: DType) -> np.ndarray:
    """Carrier values (already rounded to ``dtype``) as held data."""
    values = np.asarray(values)
    if dtype.is_float:
        return dtype.encode(values, saturate=False).astype(np.uint64)
    return values.astype(np.int64)


def held_type(dtype: DType) -> np.dtype:
    return np.dtype(np.uint64 if dtype.is_float else np.int64)


class GlobalTensor:
    """A tensor argument during a launch: its held data and whether it changed."""

    def __init__(self, arg):
        self.arg = arg
        self.dtype = arg.dtype
        self.shape = arg.shape
        codes = arg.codes.reshape(arg.shape)
        self.values = codes.astype(np.uint64) if self.dtype.is_float else self.dtype.decode(codes)
        self.written = np.zeros(arg.shape, dtype=bool)

    def codes(self) -> np.ndarray:
        if self.dtype.is_float:
            return self.values.reshape(-1)
        return self.dtype.encode(self.values).astype(np.uint64).reshape(-1)


class Frame:
    """The state of one program instance: values of SSA values, tensors, block ids, sizes."""

    def __init__(self, tensors, scalars, sizes, block_ids, params):
        self.env: dict[int, np.ndarray] = {}
        self.tensors: dict[int, GlobalTensor] = {}
        self.sizes = sizes
        self.block_ids = block_ids
        for param, value in params:
            if param.name in tensors:
                self.tensors[id(value)] = tensors[param.name]
            else:
                dtype = param.type.dtype
                self.env[id(value)] = hold(scalars[param.name], dtype)

    def __getitem__(self, value: Value) -> np.ndarray:
        return self.env[id(value)]

    def tensor(self, value: Value) -> GlobalTensor:
        return self.tensors[id(value)]

    def bind(self, values, arrays) -> None:
        for v, a in zip(values, arrays):
            self.env[id(v)] = a


def run(kernel: Kernel, *args, **kwargs) -> None:
    """Launch ``kernel`` over its grid; tensors the kernel stores to are updated in place."""
    run_bound(kernel, bind_arguments(kernel, args, kwargs))


def run_bound(kernel: Kernel, bound: BoundArgs) -> None:
    tensors = {name: GlobalTensor(arg) for name, arg in bound.tensors.items()}
    params = list(zip(kernel.params, kernel.body.args))
    for block_ids in itertools.product(*(range(n) for n in bound.grid)):
        frame = Frame(tensors, bound.scalars, bound.sizes, block_ids, params)
        execute_block(kernel.body, frame)
    for t in tensors.values():
        t.arg.write_back(t.codes(), t.written)


def execute_block(block: Block, frame: Frame) -> tuple:
    """Run ``block``'s ops; return the values its yield gives (empty for the kernel body)."""
    for op in block.ops:
        if isinstance(op, ops.YieldOp):
            return tuple(frame[v] for v in op.values)
        evaluator = EVALUATORS.get(type(op))
        if evaluator is None:
            raise InternalError(f"the interpreter has no evaluator for {op.name}")
        try:
            outputs = evaluator(op, frame)
        except BittileError as exc:
            raise exc.with_loc(op.loc) from None
        if outputs is not None:
            frame.bind(op.results, outputs)
    return ()


# ---- sources -----------------------------------------------------------------------------------
@evaluates(ops.ConstantOp)
def _constant(op, frame):
    return (hold(op.value, op.dtype),)


@evaluates(ops.BlockIdOp)
def _block_id(op, frame):
    return (np.asarray(frame.block_ids[op.axis], np.int64),)


@evaluates(ops.SizeOp)
def _size(op, frame):
    return (np.asarray(frame.sizes[op.symbol], np.int64),)


@evaluates(ops.ArangeOp)
def _arange(op, frame):
    return (np.arange(op.size, dtype=np.int64),)


@evaluates(ops.FullOp)
def _full(op, frame):
    return (np.full(op.shape, frame[op.value]),)


# ---- memory ------------------------------------------------------------------------------------
def _window(tensor: GlobalTensor, offsets, shape):
    """Index arrays of the tile's elements in the tensor and the in-bounds mask."""
    starts = [int(o) for o in offsets]
    grids = np.indices(shape, dtype=np.int64)
    coords = [g + s for g, s in zip(grids, starts)]
    mask = np.ones(shape, dtype=bool)
    for c, n in zip(coords, tensor.shape):
        mask &= (c >= 0) & (c < n)
    clipped = tuple(np.where(mask, c, 0) for c in coords)
    return clipped, mask


@evaluates(ops.LoadOp)
def _load(op, frame):
    tensor = frame.tensor(op.tensor)
    index, mask = _window(tensor, [frame[o] for o in op.offsets], op.shape)
    if tensor.values.size == 0:
        return (np.zeros(op.shape, held_type(tensor.dtype)),)
    return (np.where(mask, tensor.values[index], 0).astype(held_type(tensor.dtype)),)


@evaluates(ops.StoreOp)
def _store(op, frame):
    tensor = frame.tensor(op.tensor)
    value = frame[op.value]
    shape = op.value.type.shape
    index, mask = _window(tensor, [frame[o] for o in op.offsets], shape)
    if mask.any():
        where = tuple(i[mask] for i in index)
        tensor.values[where] = value[mask]
        tensor.written[where] = True


# ---- conversions -------------------------------------------------------------------------------
@evaluates(ops.CastOp)
def _cast(op, frame):
    src = op.x.type.dtype
    return (hold(semantics.cast(values_of(frame[op.x], src), src, op.dtype), op.dtype),)


@evaluates(ops.ViewOp)
def _view(op, frame):
    src_t: TileType = op.x.type
    src_layout = src_t.layout or default_layout(src_t.shape)
    dst_layout = op.layout or default_layout(op.shape)
    x = frame[op.x]
    codes = x if src_t.dtype.is_float else src_t.dtype.encode(x).astype(np.uint64)
    out = semantics.view(codes, src_t.dtype.bits, src_layout, op.dtype.bits, dst_layout)
    return (out if op.dtype.is_float else op.dtype.decode(out),)


@evaluates(ops.ConvertLayoutOp)
def _convert_layout(op, frame):
    return (frame[op.x],)


# ---- elementwise -------------------------------------------------------------------------------
@evaluates(*(ops.unary_op_class(k) for k in ops.UNARY_OPS))
def _unary(op, frame):
    dtype = op.x.type.dtype
    return (hold(semantics.unary(op.kind, values_of(frame[op.x], dtype), dtype), dtype),)


@evaluates(*(ops.binary_op_class(k) for k in ops.BINARY_OPS))
def _binary(op, frame):
    dtype = op.lhs.type.dtype
    a, b = values_of(frame[op.lhs], dtype), values_of(frame[op.rhs], dtype)
    return (hold(semantics.binary(op.kind, a, b, dtype), dtype),)


@evaluates(*(ops.compare_op_class(k) for k in ops.COMPARE_OPS))
def _compare(op, frame):
    dtype = op.lhs.type.dtype
    a, b = values_of(frame[op.lhs], dtype), values_of(frame[op.rhs], dtype)
    return (semantics.compare(op.kind, a, b),)


@evaluates(ops.WhereOp)
def _where(op, frame):
    return (np.where(frame[op.cond] != 0, frame[op.a], frame[op.b]),)


# ---- reductions and shapes ---------------------------------------------------------------------
@evaluates(*ops.REDUCE_OPS.values())
def _reduce(op, frame):
    dtype = op.x.type.dtype
    x = values_of(frame[op.x], dtype)
    return (hold(semantics.reduce(op.kind, x, op.axis, op.keepdims, dtype), dtype),)


@evaluates(ops.BroadcastOp)
def _broadcast(op, frame):
    return (np.broadcast_to(frame[op.x], op.shape).copy(),)


@evaluates(ops.ReshapeOp)
def _reshape(op, frame):
    return (frame[op.x].reshape(op.shape),)


@evaluates(ops.PermuteOp)
def _permute(op, frame):
    return (np.transpose(frame[op.x], op.dims).copy(),)


@evaluates(ops.DotOp)
def _dot(op, frame):
    ab, acc = op.a.type.dtype, op.acc.type.dtype
    a, b = values_of(frame[op.a], ab), values_of(frame[op.b], ab)
    return (hold(semantics.dot(a, b, values_of(frame[op.acc], acc), acc), acc),)


# ---- control flow ------------------------------------------------------------------------------
@evaluates(ops.ForOp)
def _for(op, frame):
    lo, hi, step = int(frame[op.lo]), int(frame[op.hi]), int(frame[op.step])
    if step == 0:
        raise LaunchError("a loop's step is 0", hint="loops need a non-zero step")
    carried = tuple(frame[v] for v in op.inits)
    for i in range(lo, hi, step):
        frame.bind(op.body.args, (np.asarray(i, np.int64), *carried))
        carried = execute_block(op.body, frame)
    return carried


@evaluates(ops.IfOp)
def _if(op, frame):
    block = op.then_body if int(frame[op.cond]) != 0 else op.else_body
    return execute_block(block, frame)
