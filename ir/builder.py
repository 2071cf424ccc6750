"""Build IR kernels op by op; result types are inferred and every op is verified as it is made.

::

    kb = KernelBuilder("scale")
    x = kb.tensor("x", f32, ["N"])
    y = kb.tensor("y", f32, ["N"])
    kb.grid(cdiv("N", 128))
    b = kb.builder
    n0 = b.mul(b.block_id(0), 128)
    b.store(y, [n0], b.mul(b.load(x, [n0], [128]), 2.0))
    kernel = kb.finish()

Python ints and floats given where a value is expected become constants: ints are i32 unless
the other operand says otherwise, floats take the dtype of the other operand.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from bittile.errors import IRError, Loc
from bittile.ir import ops
from bittile.ir.core import Block, Kernel, Op, Param, Value
from bittile.ir.dtypes import DType, f32, i32
from bittile.ir.symbolic import as_expr
from bittile.ir.types import ScalarType, TensorType, TileType

__all__ = ["Builder", "KernelBuilder", "ForLoop", "IfBuilder"]

ValueLike = Any  # Value | int | float


class Builder:
    """Appends ops to the current block; ``loc`` is attached to every op it creates."""

    def __init__(self, block: Block | None = None, loc: Loc | None = None):
        self._blocks: list[Block] = [block if block is not None else Block()]
        self.loc = loc

    @property
    def block(self) -> Block:
        return self._blocks[-1]

    @contextmanager
    def at(self, loc: Loc | None):
        """Attach ``loc`` to the ops created inside the ``with`` block."""
        saved, self.loc = self.loc, loc
        try:
            yield self
        finally:
            self.loc = saved

    @contextmanager
    def inside(self, block: Block):
        """Append the ops created inside the ``with`` block to ``block``."""
        self._blocks.append(block)
        try:
            yield block
        finally:
            self._blocks.pop()

    def insert(self, op: Op) -> Op:
        op.verify()
        self.block.ops.append(op)
        return op

    def _one(self, op: Op) -> Value:
        return self.insert(op).result

    # ---- operands ----------------------------------------------------------------------
    def value(self, x: ValueLike, like: Value | DType | None = None) -> Value:
        """``x`` as a Value; Python numbers become constants (of ``like``'s dtype if given)."""
        if isinstance(x, Value):
            return x
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise IRError(f"expected a value or a number, got {x!r}", self.loc)
        if isinstance(like, DType):
            dtype = like
        else:
            dtype = getattr(getattr(like, "type", None), "dtype", None)
        if dtype is None:
            dtype = i32 if isinstance(x, int) else f32
        return self.constant(x, dtype)

    def _pair(self, a: ValueLike, b: ValueLike) -> tuple[Value, Value]:
        if not isinstance(a, Value) and isinstance(b, Value):
            return self.value(a, b), b
        a = self.value(a)
        return a, self.value(b, a)

    # ---- sources -----------------------------------------------------------------------
    def constant(self, value, dtype: DType) -> Value:
        return self._one(ops.ConstantOp.create(value, dtype, self.loc))

    def block_id(self, axis: int) -> Value:
        return self._one(ops.BlockIdOp.create(axis, self.loc))

    def size(self, symbol: str) -> Value:
        return self._one(ops.SizeOp.create(symbol, self.loc))

    def arange(self, size: int, dtype: DType = i32, layout=None) -> Value:
        return self._one(ops.ArangeOp.create(size, dtype, layout, self.loc))

    def full(self, value: ValueLike, shape, dtype: DType | None = None, layout=None) -> Value:
        scalar = self.value(value, dtype)
        return self._one(ops.FullOp.create(scalar, shape, layout, self.loc))

    def zeros(self, shape, dtype: DType, layout=None) -> Value:
        return self.full(0 if dtype.is_int else 0.0, shape, dtype, layout)

    # ---- memory ------------------------------------------------------------------------
    def load(self, tensor: Value, offsets, shape, layout=None) -> Value:
        offs = [self.value(o) for o in offsets]
        return self._one(ops.LoadOp.create(tensor, offs, shape, layout, self.loc))

    def store(self, tensor: Value, offsets, value: Value) -> None:
        offs = [self.value(o) for o in offsets]
        self.insert(ops.StoreOp.create(tensor, offs, value, self.loc))

    # ---- conversions -------------------------------------------------------------------
    def cast(self, x: Value, dtype: DType) -> Value:
        return self._one(ops.CastOp.create(x, dtype, self.loc))

    def view(self, x: Value, dtype: DType, shape=None, layout=None) -> Value:
        return self._one(ops.ViewOp.create(x, dtype, shape, layout, self.loc))

    def convert_layout(self, x: Value, layout) -> Value:
        return self._one(ops.ConvertLayoutOp.create(x, layout, self.loc))

    # ---- elementwise -------------------------------------------------------------------
    def unary(self, kind: str, x: ValueLike) -> Value:
        return self._one(ops.unary_op_class(kind).create(self.value(x), self.loc))

    def binary(self, kind: str, a: ValueLike, b: ValueLike) -> Value:
        a, b = self._pair(a, b)
        return self._one(ops.binary_op_class(kind).create(a, b, self.loc))

    def compare(self, kind: str, a: ValueLike, b: ValueLike) -> Value:
        a, b = self._pair(a, b)
        return self._one(ops.compare_op_class(kind).create(a, b, self.loc))

    def where(self, cond: Value, a: ValueLike, b: ValueLike) -> Value:
        a, b = self._pair(a, b)
        return self._one(ops.WhereOp.create(cond, a, b, self.loc))

    def add(self, a, b):
        return self.binary("add", a, b)

    def sub(self, a, b):
        return self.binary("sub", a, b)

    def mul(self, a, b):
        return self.binary("mul", a, b)

    def div(self, a, b):
        return self.binary("div", a, b)

    # ---- reductions and shapes ---------------------------------------------------------
    def reduce(self, kind: str, x: Value, axis: int, keepdims: bool = False) -> Value:
        if kind not in ops.REDUCE_OPS:
            raise IRError(f"unknown reduction {kind!r}; known: sum, max, min", self.loc)
        return self._one(ops.REDUCE_OPS[kind].create(x, axis, keepdims, self.loc))

    def sum(self, x: Value, axis: int, keepdims: bool = False) -> Value:
        return self.reduce("sum", x, axis, keepdims)

    def broadcast(self, x: ValueLike, shape, layout=None) -> Value:
        return self._one(ops.BroadcastOp.create(self.value(x), shape, layout, self.loc))

    def reshape(self, x: Value, shape, layout=None) -> Value:
        return self._one(ops.ReshapeOp.create(x, shape, layout, self.loc))

    def permute(self, x: Value, dims) -> Value:
        return self._one(ops.PermuteOp.create(x, dims, self.loc))

    def dot(self, a: Value, b: Value, acc: Value) -> Value:
        return self._one(ops.DotOp.create(a, b, acc, self.loc))

    # ---- control flow ------------------------------------------------------------------
    @contextmanager
    def for_range(self, lo: ValueLike, hi: ValueLike, step: ValueLike = 1, inits=()):
        """``with b.for_range(lo, hi, step, [acc0]) as loop:`` ... ``loop.yield_(acc)``;
        afterwards ``loop.results`` are the final carried values."""
        lo_v = self.value(lo)
        hi_v, step_v = self.value(hi, lo_v), self.value(step, lo_v)
        init_vs = tuple(self.value(v) for v in inits)
        body = Block(args=[Value(lo_v.type, "i")] + [Value(v.type) for v in init_vs])
        loop = ForLoop(self, body)
        self._blocks.append(body)
        try:
            yield loop
        finally:
            self._blocks.pop()
        if not body.ops or not isinstance(body.ops[-1], ops.YieldOp):
            if init_vs:
                raise IRError("a loop that carries values must end with loop.yield_(...)", self.loc)
            body.ops.append(ops.YieldOp(values=(), loc=self.loc))
        outs = tuple(Value(v.type) for v in init_vs)
        op = ops.ForOp(lo=lo_v, hi=hi_v, step=step_v, inits=init_vs, body=body, outs=outs,
                       loc=self.loc)
        self.insert(op)
        loop.results = list(outs)

    @contextmanager
    def if_(self, cond: Value):
        """``with b.if_(c) as br:`` then ``with br.then_(): ... br.yield_(x)`` and likewise
        ``br.else_()``; afterwards ``br.results``."""
        branch = IfBuilder(self, cond)
        yield branch
        branch.finish()

    def yield_(self, *values: ValueLike) -> None:
        self.insert(ops.YieldOp(values=tuple(self.value(v) for v in values), loc=self.loc))


class ForLoop:
    def __init__(self, builder: Builder, body: Block):
        self._builder = builder
        self.body = body
        self.iv: Value = body.args[0]
        self.carried: list[Value] = body.args[1:]
        self.results: list[Value] = []

    def yield_(self, *values: ValueLike) -> None:
        self._builder.yield_(*values)


class IfBuilder:
    def __init__(self, builder: Builder, cond: Value):
        self._builder = builder
        self.cond = cond
        self.then_body = Block()
        self.else_body = Block()
        self.results: list[Value] = []

    @contextmanager
    def _branch(self, block: Block):
        self._builder._blocks.append(block)
        try:
            yield self
        finally:
            self._builder._blocks.pop()

    def then_(self):
        return self._branch(self.then_body)

    def else_(self):
        return self._branch(self.else_body)

    def yield_(self, *values: ValueLike) -> None:
        self._builder.yield_(*values)

    def finish(self) -> None:
        loc = self._builder.loc
        for block in (self.then_body, self.else_body):
            if not block.ops or not isinstance(block.ops[-1], ops.YieldOp):
                block.ops.append(ops.YieldOp(values=(), loc=loc))
        outs = tuple(Value(v.type) for v in self.then_body.ops[-1].values)
        op = ops.IfOp(cond=self.cond, then_body=self.then_body, else_body=self.else_body,
                      outs=outs, loc=loc)
        self._builder.insert(op)
        self.results = list(outs)


class KernelBuilder:
    """Declares a kernel's parameters and grid, then builds its body with ``.builder``."""

    def __init__(self, name: str, loc: Loc | None = None):
        self.name = name
        self.loc = loc
        self.params: list[Param] = []
        self.body = Block()
        self.builder = Builder(self.body, loc)
        self._grid: tuple = ()

    def _param(self, name: str, type_) -> Value:
        if any(p.name == name for p in self.params):
            raise IRError(f"parameter {name!r} is declared twice", self.loc)
        self.params.append(Param(name, type_))
        value = Value(type_, name)
        self.body.args.append(value)
        return value

    def tensor(self, name: str, dtype: DType, shape) -> Value:
        return self._param(name, TensorType(dtype, tuple(as_expr(s) for s in shape)))

    def scalar(self, name: str, dtype: DType) -> Value:
        return self._param(name, ScalarType(dtype))

    def grid(self, *dims) -> None:
        self._grid = tuple(as_expr(d) for d in dims)

    def finish(self, verify: bool = True) -> Kernel:
        from bittile.ir.verifier import verify_kernel

        kernel = Kernel(self.name, tuple(self.params), self._grid or (as_expr(1),), self.body,
                        self.loc)
        if verify:
            verify_kernel(kernel)
        return kernel


def tile_type(dtype: DType, shape, layout=None) -> TileType:
    return TileType(dtype, tuple(shape), layout)
