"""Fused ops: elementwise programs held in a region, run over whole tiles.

Both ops carry a *scalar program*: a region whose arguments are scalars (one per input, of the
input's dtype) and whose ops are elementwise ops on scalars, ending in ``scf.yield``. Running
it on tiles means running every op of it elementwise, a scalar input splatting over the tile,
so a fused op computes exactly what the tile ops it replaces computed (the interpreter runs the
region once on whole tiles: ``backends/interp/fused.py``).

- ``tile.fused`` (:class:`FusedElementwiseOp`): the tiles of ``shape`` that the program yields;
- ``tile.dequant_dot`` (:class:`DequantDotOp`): ``acc + a @ b`` where one dot operand is the
  program's result, computed from a low-bit tile and its side inputs (scales, zero points), so
  that backends can dequantize inside the dot instead of materializing the operand.

Textual form (generic, see ``ir/printer.py``)::

    %9 = tile.fused(%4, %7, %8) ({
    ^(%10: u4, %11: f32, %12: f32):
      %13 = tile.cast(%10) {dtype = f32} : f32
      %14 = arith.sub(%13, %11) : f32
      %15 = arith.mul(%14, %12) : f32
      scf.yield(%15)
    }) {shape = [32, 16]} : tile<f32[32, 16]>
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from bittile.errors import IRError
from bittile.ir.core import (
    Block,
    Op,
    Value,
    attr,
    operand,
    operands,
    region,
    register_op,
    result,
    results,
)
from bittile.ir.ops._util import _check_value_type, _int_tuple
from bittile.ir.ops.control import YieldOp
from bittile.ir.ops.convert import CastOp
from bittile.ir.ops.elementwise import BinaryOp, UnaryOp, WhereOp
from bittile.ir.ops.shape import DotOp
from bittile.ir.ops.sources import ConstantOp
from bittile.ir.types import ScalarType, TileType

__all__ = [
    "ELEMENTWISE_OPS",
    "FusedElementwiseOp",
    "DequantDotOp",
    "is_elementwise_tile_op",
    "build_scalar_body",
]

#: ops whose meaning is elementwise: applied to tiles, each element of the result depends only
#: on the elements at the same index of the operands (comparisons are BinaryOps)
ELEMENTWISE_OPS: tuple[type[Op], ...] = (UnaryOp, BinaryOp, WhereOp, CastOp)


def is_elementwise_tile_op(op: Op) -> bool:
    """An elementwise op producing a tile (so it can be fused with its tile neighbours)."""
    return isinstance(op, ELEMENTWISE_OPS) and isinstance(op.results[0].type, TileType)


# ---- scalar programs ----------------------------------------------------------------------------
def _verify_scalar_program(op: Op, body: Block, inputs: Sequence[Value]) -> list[Value]:
    """Check that ``body`` is a closed scalar program over ``inputs``; return what it yields."""
    expected = [ScalarType(v.type.dtype) for v in inputs]
    got = [a.type for a in body.args]
    if got != expected:
        raise op.error(
            f"the body's arguments are ({', '.join(map(str, got))}) but the inputs need "
            f"({', '.join(map(str, expected))})",
            hint="the body takes one scalar argument per input, of the input's dtype",
        )
    if not body.ops or not isinstance(body.ops[-1], YieldOp):
        raise op.error("the body must end with a yield")
    defined = {id(a) for a in body.args}
    for i, inner in enumerate(body.ops):
        if isinstance(inner, YieldOp) and i != len(body.ops) - 1:
            raise op.error("a yield must be the last op of the body")
        if not isinstance(inner, (*ELEMENTWISE_OPS, ConstantOp, YieldOp)):
            raise op.error(
                f"the body may only hold elementwise ops, not {inner.name}",
                hint="keep loads, reductions, shape changes and views outside the fused op",
            )
        for v in inner.operands:
            if id(v) not in defined:
                raise op.error(
                    f"the body's {inner.name} uses {v!r}, which is not defined in the body",
                    hint="values from outside the fused op are passed in as its inputs",
                )
        for r in inner.results:
            if not isinstance(r.type, ScalarType):
                raise op.error(f"the body computes on scalars, but {inner.name} gives {r.type}")
            defined.add(id(r))
    return list(body.ops[-1].values)


def build_scalar_body(
    members: Sequence[Op], inputs: Sequence[Value], outputs: Sequence[Value]
) -> Block:
    """The scalar program computing ``outputs`` from ``inputs`` with the tile ops ``members``.

    ``members`` are elementwise tile ops (or ``tile.fused`` ops, whose bodies are inlined) in
    program order; every operand of a member is one of ``inputs`` or a result of an earlier
    member; every output is a result of a member. Each member becomes the same op on scalars
    of the same dtypes, with the member's location.
    """
    body = Block(args=[Value(ScalarType(v.type.dtype), v.name_hint) for v in inputs])
    local: dict[int, Value] = {id(v): a for v, a in zip(inputs, body.args)}
    for member in members:
        if isinstance(member, FusedElementwiseOp):
            _inline_fused(member, local, body)
            continue
        new_operands = tuple(local[id(v)] for v in member.operands)
        new_results = tuple(Value(ScalarType(r.type.dtype), r.name_hint) for r in member.results)
        body.ops.append(_scalar_clone(member, new_operands, new_results))
        local.update((id(old), new) for old, new in zip(member.results, new_results))
    loc = members[-1].loc if members else None
    body.ops.append(YieldOp(values=tuple(local[id(v)] for v in outputs), loc=loc))
    return body


def _scalar_clone(op: Op, new_operands: tuple[Value, ...], new_results: tuple[Value, ...]) -> Op:
    new = type(op).from_generic(new_operands, op.attributes, new_results, (), op.loc)
    new.verify()
    return new


def _inline_fused(fused: FusedElementwiseOp, local: dict[int, Value], body: Block) -> None:
    inner: dict[int, Value] = {
        id(a): local[id(v)] for a, v in zip(fused.body.args, fused.inputs)
    }
    for op in fused.body.ops[:-1]:
        new_results = tuple(Value(r.type, r.name_hint) for r in op.results)
        body.ops.append(_scalar_clone(op, tuple(inner[id(v)] for v in op.operands), new_results))
        inner.update((id(old), new) for old, new in zip(op.results, new_results))
    for out, yielded in zip(fused.outs, fused.body.ops[-1].values):
        local[id(out)] = inner[id(yielded)]


# ---- the ops ------------------------------------------------------------------------------------
@register_op
class FusedElementwiseOp(Op):
    """A chain of elementwise tile ops as one op: the tiles of ``shape`` whose elements are the
    values the body yields, the body being run at every index with the elements of the input
    tiles there (scalar inputs splat). Inputs are scalars or tiles of ``shape``; result ``i``
    is a tile of ``shape`` with the dtype of the ``i``-th yielded value (and any layout)."""

    name: ClassVar[str] = "tile.fused"
    inputs: tuple[Value, ...] = operands()
    shape: tuple[int, ...] = attr()
    body: Block = region()
    outs: tuple[Value, ...] = results()

    @classmethod
    def create(cls, inputs, shape, body: Block, result_types=None, loc=None) -> FusedElementwiseOp:
        """``result_types`` defaults to tiles of ``shape`` (no layout) of the yielded dtypes."""
        shape = _int_tuple(shape, "shape", loc)
        if result_types is None:
            if not body.ops or not isinstance(body.ops[-1], YieldOp):
                raise IRError("tile.fused: the body must end with a yield", loc)
            result_types = [TileType(v.type.dtype, shape) for v in body.ops[-1].values]
        outs = tuple(Value(t) for t in result_types)
        return cls(inputs=tuple(inputs), shape=shape, body=body, outs=outs, loc=loc)

    def verify(self):
        _int_tuple(self.shape, "shape", self.loc)
        if not self.shape or any(s < 1 for s in self.shape):
            raise self.error(f"shape must be a non-empty list of positive ints, not "
                             f"{list(self.shape)}")
        for i, v in enumerate(self.inputs):
            _check_value_type(self, v, f"input {i}", ScalarType, TileType)
            if isinstance(v.type, TileType) and v.type.shape != self.shape:
                raise self.error(
                    f"input {i} has shape {list(v.type.shape)}, not the fused shape "
                    f"{list(self.shape)}",
                    hint="broadcast or reshape inputs outside the fused op",
                )
        yielded = _verify_scalar_program(self, self.body, self.inputs)
        if len(yielded) != len(self.outs):
            raise self.error(f"the body yields {len(yielded)} values for {len(self.outs)} results")
        for i, (r, y) in enumerate(zip(self.outs, yielded)):
            t = r.type
            if not isinstance(t, TileType) or t.shape != self.shape or t.dtype != y.type.dtype:
                raise self.error(
                    f"result {i} is {t}, but the body yields {y.type} for a tile of shape "
                    f"{list(self.shape)}"
                )


@register_op
class DequantDotOp(Op):
    """``acc + a @ b`` where the operand named by ``dequantized`` ("b" or "a") is computed
    elementwise by the body from the low-bit tile ``w`` and the side inputs ``params`` (scales,
    zero points: tiles of ``w``'s shape or scalars), and the other operand is ``x``.

    Exactly ``tile.dot(a, b, acc)`` of that operand, which therefore has ``w``'s shape and the
    dtype the body yields (the dtype of ``x``); the result has the accumulator's type."""

    name: ClassVar[str] = "tile.dequant_dot"
    x: Value = operand()
    acc: Value = operand()
    w: Value = operand()
    params: tuple[Value, ...] = operands()
    dequantized: str = attr("b")
    body: Block = region()
    out: Value = result()

    @property
    def body_inputs(self) -> tuple[Value, ...]:
        return (self.w, *self.params)

    @classmethod
    def create(cls, x, acc, w, params, body: Block, dequantized: str = "b",
               loc=None) -> DequantDotOp:
        return cls(x=x, acc=acc, w=w, params=tuple(params), dequantized=dequantized, body=body,
                   out=Value(acc.type), loc=loc)

    def verify(self):
        if self.dequantized not in ("a", "b"):
            raise self.error(f'dequantized must be "a" or "b", not {self.dequantized!r}')
        _check_value_type(self, self.x, "the dense operand", TileType)
        _check_value_type(self, self.w, "the low-bit operand", TileType)
        for i, v in enumerate(self.params):
            _check_value_type(self, v, f"side input {i}", ScalarType, TileType)
            if isinstance(v.type, TileType) and v.type.shape != self.w.type.shape:
                raise self.error(
                    f"side input {i} has shape {list(v.type.shape)}, not the shape "
                    f"{list(self.w.type.shape)} of the low-bit operand",
                    hint="broadcast side inputs to the low-bit operand's shape",
                )
        yielded = _verify_scalar_program(self, self.body, self.body_inputs)
        if len(yielded) != 1:
            raise self.error(f"the body yields {len(yielded)} values, not one")
        operand_type = TileType(yielded[0].type.dtype, self.w.type.shape)
        self._verify_dot(operand_type)

    def _verify_dot(self, operand_type: TileType) -> None:
        """The checks of ``tile.dot`` on the operands this op multiplies."""
        dense = Value(self.x.type)
        computed = Value(operand_type)
        a, b = (dense, computed) if self.dequantized == "b" else (computed, dense)
        try:
            DotOp(a=a, b=b, acc=self.acc, out=self.out, loc=self.loc).verify()
        except IRError as exc:
            message = exc.message.removeprefix(f"{DotOp.name}: ")
            raise self.error(f"as a dot: {message}", exc.hint) from None
