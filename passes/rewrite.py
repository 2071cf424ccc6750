"""Rewriting kernels: clone a kernel op by op, letting a hook replace any op.

Passes never mutate their input. A :class:`Rewriter` walks the kernel in program order,
mapping every old value to its new value; for each op it calls :meth:`Rewriter.rewrite` with
the op and its already-mapped operands. The hook either returns ``None`` (keep the op: it is
cloned with the new operands, its regions rewritten recursively) or the values that replace
the op's results (an empty tuple erases an op without results), having built any new ops with
``self.builder``, which appends to the current block and stamps them with the op's location.
"""

from __future__ import annotations

from collections.abc import Sequence

from bittile.errors import InternalError
from bittile.ir.builder import Builder
from bittile.ir.core import Block, Kernel, Op, Value

__all__ = ["Rewriter"]


class Rewriter:
    """Override :meth:`rewrite`; call :meth:`run`."""

    def __init__(self) -> None:
        self.mapping: dict[int, Value] = {}
        self.builder = Builder()

    # ---- the hook ----------------------------------------------------------------------
    def rewrite(self, op: Op, operands: tuple[Value, ...]) -> Sequence[Value] | None:
        return None

    # ---- machinery ---------------------------------------------------------------------
    def run(self, kernel: Kernel) -> Kernel:
        self.mapping = {}
        body = Block(args=list(kernel.body.args))
        for arg in kernel.body.args:
            self.mapping[id(arg)] = arg
        self.builder = Builder(body)
        self.visit_block(kernel.body)
        return Kernel(kernel.name, kernel.params, kernel.grid, body, kernel.loc)

    def lookup(self, value: Value) -> Value:
        try:
            return self.mapping[id(value)]
        except KeyError:
            raise InternalError(f"rewriter: {value!r} used before it was rewritten") from None

    def visit_block(self, block: Block) -> None:
        for op in block.ops:
            self.visit_op(op)

    def visit_op(self, op: Op) -> None:
        operands = tuple(self.lookup(v) for v in op.operands)
        with self.builder.at(op.loc):
            replacement = self.rewrite(op, operands)
        if replacement is None:
            self.clone(op, operands)
            return
        replacement = tuple(replacement)
        if len(replacement) != len(op.results):
            raise InternalError(
                f"rewriter replaced {op.name}'s {len(op.results)} results with "
                f"{len(replacement)} values"
            )
        for old, new in zip(op.results, replacement):
            self.mapping[id(old)] = new

    def clone_region(self, block: Block) -> Block:
        new = Block(args=[Value(a.type, a.name_hint) for a in block.args])
        for old, fresh in zip(block.args, new.args):
            self.mapping[id(old)] = fresh
        with self.builder.inside(new):
            self.visit_block(block)
        return new

    def clone(self, op: Op, operands: tuple[Value, ...]) -> Op:
        regions = tuple(self.clone_region(r) for r in op.regions)
        results = tuple(Value(r.type, r.name_hint) for r in op.results)
        new = type(op).from_generic(operands, op.attributes, results, regions, op.loc)
        self.builder.block.ops.append(new)
        for old, fresh in zip(op.results, results):
            self.mapping[id(old)] = fresh
        return new
