"""cse: common-subexpression elimination.

Precondition: a verified kernel. Postcondition: a verified kernel with bit-identical
interpreter results in which no side-effect-free op repeats an op available before it: two ops
are the same computation when they have the same class, the same (rewritten) operands, the
same attributes and the same result types; the later one is replaced by the earlier one's
results.

Scoping follows the blocks: a value from an enclosing block is reused inside a loop body or
branch, a value defined inside one is never reused after it (or in the other branch). The
regions of other ops (``tile.fused`` bodies...) are closed programs: nothing from outside is
reused in them.

Merged: every op with results and without regions. Never merged: ops without results (stores:
an op without results exists for its effect), ops with regions (loops, branches, fused ops)
and yields. Reading memory: an op with a tensor operand (``tile.load``, ``packed.load_words``)
is pure between writes: it is not reused across an op without results that takes the same
tensor (a store), whether that store comes before it in the same block or anywhere inside a
loop or branch in between (a loop body's stores also come before its loads from the second
iteration on). Tensors given to a launch do not alias one another (each is read into its own
buffer, see the interpreter), so a store to another tensor does not matter.

Float constants are keyed by their bits, so ``-0.0`` and ``0.0`` stay apart.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable, Sequence
from typing import ClassVar

from bittile.ir import ops
from bittile.ir.core import Block, Kernel, Op, Value
from bittile.ir.types import TensorType
from bittile.passes.base import Pass, register_pass
from bittile.passes.rewrite import Rewriter

__all__ = ["CSEPass"]

#: ops whose regions see the values of the enclosing blocks
_OPEN_REGIONS = (ops.ForOp, ops.IfOp)

Scopes = list[dict[Hashable, tuple[Value, ...]]]


@register_pass
class CSEPass(Pass):
    """Replace every recomputation of an available value by that value."""

    name: ClassVar[str] = "cse"

    def run(self, kernel: Kernel) -> Kernel:
        return _CSE().run(kernel)


def _freeze(value) -> Hashable:
    """An attribute as a dict key that tells apart what the interpreter tells apart."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, (tuple, list)):
        return tuple(_freeze(v) for v in value)
    return (type(value).__name__, value)


def _tensors(op: Op) -> set[int]:
    return {id(v) for v in op.operands if isinstance(v.type, TensorType)}


def _is_write(op: Op) -> bool:
    return not op.results and not op.regions and not isinstance(op, ops.YieldOp)


def _written_tensors(op: Op) -> set[int]:
    """The tensors ``op`` writes, itself or anywhere inside its regions."""
    inner = (o for region in op.regions for o in region.walk())
    return {t for o in (op, *inner) if _is_write(o) for t in _tensors(o)}


class _CSE(Rewriter):
    def __init__(self) -> None:
        super().__init__()
        # one table per open block, innermost last: key -> the results of the first such op
        self.scopes: Scopes = [{}]
        self.owners: list[Op] = []  # the ops whose regions are being rewritten

    def rewrite(self, op: Op, operands: tuple[Value, ...]) -> Sequence[Value] | None:
        if op.regions or _is_write(op):
            self.forget_reads(_written_tensors(op))
            return None
        if not op.results or isinstance(op, ops.YieldOp):
            return None
        key = (
            type(op),
            tuple(id(v) for v in operands),
            tuple((name, _freeze(v)) for name, v in sorted(op.attributes.items())),
            tuple(r.type for r in op.results),
        )
        for scope in reversed(self.scopes):
            if key in scope:
                return scope[key]
        results = self.clone(op, operands).results
        self.scopes[-1][key] = results
        return results

    def clone(self, op: Op, operands: tuple[Value, ...]) -> Op:
        self.owners.append(op)
        try:
            return super().clone(op, operands)
        finally:
            self.owners.pop()

    def clone_region(self, block: Block) -> Block:
        outer = self.scopes
        open_region = isinstance(self.owners[-1], _OPEN_REGIONS)
        self.scopes = [*outer, {}] if open_region else [{}]
        try:
            return super().clone_region(block)
        finally:
            self.scopes = outer

    def forget_reads(self, tensors: set[int]) -> None:
        """Make ops reading ``tensors`` unavailable (they were just written)."""
        if not tensors:
            return
        for scope in self.scopes:
            for key in [k for k in scope if tensors.intersection(k[1])]:
                del scope[key]
