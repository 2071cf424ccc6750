"""Structured control flow: for, if and yield."""

from __future__ import annotations

from typing import ClassVar

from bittile.ir.core import (
    Block,
    Op,
    Value,
    operand,
    operands,
    region,
    register_op,
    results,
)
from bittile.ir.ops._util import (
    _check_index,
    _check_value_type,
)
from bittile.ir.types import ScalarType, Type


# ---- control flow ---------------------------------------------------------------------------
@register_op
class YieldOp(Op):
    """Ends a nested block, giving the values of its parent op's results."""

    name: ClassVar[str] = "scf.yield"
    values: tuple[Value, ...] = operands()


def _check_yield(op: Op, block: Block, expected: list[Type], what: str) -> None:
    if not block.ops or not isinstance(block.ops[-1], YieldOp):
        raise op.error(f"the {what} must end with a yield")
    got = [v.type for v in block.ops[-1].values]
    if got != expected:
        raise op.error(
            f"the {what} yields ({', '.join(map(str, got))}) but "
            f"({', '.join(map(str, expected))}) is expected",
            hint="a value carried by a loop keeps its type in every iteration",
        )


@register_op
class ForOp(Op):
    """``for iv in range(lo, hi, step)`` (Python semantics; step 0 is a launch error) carrying
    ``inits`` through the body's yield; the results are the final carried values."""

    name: ClassVar[str] = "scf.for"
    lo: Value = operand()
    hi: Value = operand()
    step: Value = operand()
    inits: tuple[Value, ...] = operands()
    body: Block = region()
    outs: tuple[Value, ...] = results()

    def verify(self):
        for what, v in (("lo", self.lo), ("hi", self.hi), ("step", self.step)):
            _check_index(self, v, f"the loop bound {what}")
        if not (self.lo.type == self.hi.type == self.step.type):
            raise self.error("the loop bounds must have one dtype")
        carried = [v.type for v in self.inits]
        args = [a.type for a in self.body.args]
        if args != [self.lo.type, *carried]:
            raise self.error("the body's arguments must be the counter and the carried values")
        if [r.type for r in self.outs] != carried:
            raise self.error("the results must have the types of the carried values")
        _check_yield(self, self.body, carried, "loop body")


@register_op
class IfOp(Op):
    """``if cond != 0`` run ``then_body`` else ``else_body``; both yield the results."""

    name: ClassVar[str] = "scf.if"
    cond: Value = operand()
    then_body: Block = region()
    else_body: Block = region()
    outs: tuple[Value, ...] = results()

    def verify(self):
        _check_value_type(self, self.cond, "the condition", ScalarType)
        if not self.cond.type.dtype.is_int:
            raise self.error(f"the condition must be an integer scalar, got {self.cond.type}")
        expected = [r.type for r in self.outs]
        for block, what in ((self.then_body, "then branch"), (self.else_body, "else branch")):
            if block.args:
                raise self.error(f"the {what} takes no arguments")
            _check_yield(self, block, expected, what)
